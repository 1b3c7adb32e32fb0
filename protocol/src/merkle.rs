//! RFC 6962 / RFC 9162 Merkle tree hashing and proofs, and the C2SP tlog-checkpoint text and
//! signed-note signature line (the one place both are written).
//!
//! This module owns the math of the audit log and nothing else: it does no I/O and keeps no
//! state. Proofs are built from a [`SubtreeSource`] that answers "what is the root of the
//! subtree over leaves `start..start+len`", so the same code serves an in-memory slice of leaf
//! hashes ([`inclusion_proof`], [`consistency_proof`]) and the node's SQLite table of complete
//! subtree hashes (O(log n) reads per proof). Verification follows RFC 9162 §2.1.3.2 and
//! §2.1.4.2 step by step and never panics on input.
//!
//! Hashes: `leaf = SHA-256(0x00 ‖ entry)`, `node = SHA-256(0x01 ‖ left ‖ right)`, the root of
//! the empty tree is `SHA-256("")`, and a tree of `n > 1` leaves splits at the largest power of
//! two smaller than `n`.

use ring::digest::{Context, SHA256, digest};
use thiserror::Error;

/// A SHA-256 value: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError<E> {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency needs 0 < old size ({old}) <= new size ({new})")]
    BadSizes { old: u64, new: u64 },
    #[error("reading the tree failed: {0}")]
    Source(E),
}

/// Something that knows the root hash of any subtree of a tree of leaves: the subtree over
/// leaves `start .. start + len` (`len >= 1`). Proof building asks only for subtrees that RFC
/// 6962 names; for a tree of size `n` every one of them is either complete and aligned
/// (`len` a power of two, `start` a multiple of `len`) or ends at the right edge of the tree.
pub trait SubtreeSource {
    type Error;
    fn subtree_root(&mut self, start: u64, len: u64) -> Result<Hash, Self::Error>;
}

/// `SHA-256(0x00 ‖ entry)`: the hash of one log entry, over exactly its stored bytes.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x00]);
    c.update(entry);
    to_hash(c.finish().as_ref())
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x01]);
    c.update(left);
    c.update(right);
    to_hash(c.finish().as_ref())
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, b"").as_ref())
}

/// MTH(D[n]) of RFC 6962 §2.1 over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split_point(leaves.len() as u64) as usize;
            let (l, r) = leaves.split_at(k.min(leaves.len()));
            node_hash(&root(l), &root(r))
        }
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of all `leaves`, leaf side
/// first (RFC 6962 §2.1.1 PATH).
pub fn inclusion_proof(
    leaves: &[Hash],
    index: u64,
) -> Result<Vec<Hash>, ProofError<std::convert::Infallible>> {
    inclusion_proof_from(&mut SliceSource(leaves), index, leaves.len() as u64)
}

/// The consistency proof between the first `old_size` leaves and all `leaves` (RFC 6962 §2.1.2
/// PROOF). Equal sizes give the empty proof.
pub fn consistency_proof(
    leaves: &[Hash],
    old_size: u64,
) -> Result<Vec<Hash>, ProofError<std::convert::Infallible>> {
    consistency_proof_from(&mut SliceSource(leaves), old_size, leaves.len() as u64)
}

/// [`inclusion_proof`] for a tree of `size` leaves known through `source`.
pub fn inclusion_proof_from<S: SubtreeSource>(
    source: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk from the root down to the leaf, collecting siblings; the proof lists them upwards.
    let mut walk = Descent::new(size, index);
    while walk.n > 1 {
        walk.step(source, walk.m < split_point(walk.n))?;
    }
    walk.out.reverse();
    Ok(walk.out)
}

/// [`consistency_proof`] between sizes `old_size` and `new_size` of a tree known through
/// `source`.
pub fn consistency_proof_from<S: SubtreeSource>(
    source: &mut S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start..start+n], b), unrolled: every step adds one hash, collected top-down.
    let mut walk = Descent::new(new_size, old_size);
    let mut whole_old_tree = true;
    while walk.m != walk.n {
        let left = walk.m <= split_point(walk.n);
        whole_old_tree &= left;
        walk.step(source, left)?;
    }
    if !whole_old_tree {
        let root = source.subtree_root(walk.start, walk.n);
        walk.out.push(root.map_err(ProofError::Source)?);
    }
    walk.out.reverse();
    Ok(walk.out)
}

/// A walk from the root of a tree of `n` leaves down towards leaf (or size) `m`, as RFC 6962's
/// PATH and SUBPROOF recurse: the subtree `start .. start + n` it is in, `m` relative to it,
/// and the sibling roots collected on the way (top-down).
struct Descent {
    start: u64,
    n: u64,
    m: u64,
    out: Vec<Hash>,
}

impl Descent {
    fn new(n: u64, m: u64) -> Self {
        Self {
            start: 0,
            n,
            m,
            out: Vec::new(),
        }
    }

    /// One level down: into the left half (`left`), collecting the right half's root, or into
    /// the right half, collecting the left half's root.
    fn step<S: SubtreeSource>(
        &mut self,
        source: &mut S,
        left: bool,
    ) -> Result<(), ProofError<S::Error>> {
        let k = split_point(self.n);
        let sibling = if left {
            source.subtree_root(self.start + k, self.n - k)
        } else {
            source.subtree_root(self.start, k)
        };
        self.out.push(sibling.map_err(ProofError::Source)?);
        if left {
            self.n = k;
        } else {
            self.start += k;
            self.n -= k;
            self.m -= k;
        }
        Ok(())
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show that `leaf` is leaf `index` of the tree of `size`
/// leaves with root `root`?
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `new_size` leaves with root
/// `new_root` extends the tree of `old_size` leaves with root `old_root`? Equal sizes verify
/// with the empty proof when the roots are equal; an old size of 0 never verifies.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

/// The largest power of two smaller than `n` (`n >= 2`): where RFC 6962 splits a tree.
pub fn split_point(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete, aligned subtrees that make up leaves `start .. start + len`, left to right,
/// as `(level, index)`: the subtree `(l, i)` covers leaves `i·2^l .. (i+1)·2^l`. The root of
/// the range is the right-to-left fold of their hashes with [`node_hash`] — which equals
/// RFC 6962's MTH whenever the range is a subtree RFC 6962 names (aligned, or ending at the
/// tree's right edge). At most 2·64 pieces; a tree of `n` leaves needs at most log2(n) + 1.
pub fn complete_subtrees(start: u64, len: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let (mut s, end) = (start, start.saturating_add(len));
    while s < end {
        // The largest aligned block starting at `s` that fits before `end`.
        let align = if s == 0 {
            63
        } else {
            s.trailing_zeros().min(63)
        };
        let fit = 63 - (end - s).leading_zeros();
        let level = align.min(fit);
        out.push((level, s >> level));
        s += 1u64 << level;
    }
    out
}

/// Folds the hashes of consecutive complete subtrees (as [`complete_subtrees`] lists them)
/// into the root of their range: `node(h0, node(h1, … node(h_{k-2}, h_{k-1})))`.
pub fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The C2SP tlog-checkpoint body: `"{origin}\n{size}\n{base64(root)}\n"` (no extension lines).
/// This is the text a signed note signs.
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", base64(root))
}

/// The 4-byte key id of an Ed25519 signed-note key (C2SP signed-note):
/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[..4]`.
pub fn note_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    typed_key_id(name, 0x01, public_key)
}

/// A C2SP key id with signature type byte `kind` (0x01 a signed-note Ed25519 key, 0x04 an
/// Ed25519 `cosignature/v1` key): `SHA-256(name ‖ "\n" ‖ kind ‖ public key)[..4]`.
pub fn typed_key_id(name: &str, kind: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut c = Context::new(&SHA256);
    c.update(name.as_bytes());
    c.update(b"\n");
    c.update(&[kind]);
    c.update(public_key);
    let d = c.finish();
    let mut id = [0u8; 4];
    for (o, b) in id.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    id
}

/// A signed note signature line: `"— {name} {base64(key id ‖ signature)}\n"`.
pub fn note_signature_line(name: &str, public_key: &[u8; 32], signature: &[u8; 64]) -> String {
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&note_key_id(name, public_key));
    blob.extend_from_slice(signature);
    format!("\u{2014} {name} {}\n", base64(&blob))
}

/// Standard base64 with padding (RFC 4648 §4), as C2SP notes use.
pub fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    for (o, b) in h.iter_mut().zip(bytes) {
        *o = *b;
    }
    h
}

/// Subtree roots computed from a slice of leaf hashes (O(len) per call).
struct SliceSource<'a>(&'a [Hash]);

impl SubtreeSource for SliceSource<'_> {
    type Error = std::convert::Infallible;
    fn subtree_root(&mut self, start: u64, len: u64) -> Result<Hash, Self::Error> {
        let s = usize::try_from(start).unwrap_or(usize::MAX);
        let e = usize::try_from(start.saturating_add(len)).unwrap_or(usize::MAX);
        Ok(root(self.0.get(s..e).unwrap_or(&[])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("audit-entry-{i}").into_bytes())
            .collect()
    }

    fn flat(proof: &[Hash]) -> Vec<u8> {
        proof.iter().flatten().copied().collect()
    }

    /// SplitMix64, so the "random" indices are reproducible.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn known_answers() {
        // SHA-256("") and the RFC 6962 leaf hash of the empty entry (as in the CT test vectors).
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            checkpoint_text("example.com/log", 3, &[0u8; 32]),
            "example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn roots_and_proofs_match_ct_merkle_for_sizes_1_to_70() {
        let data = entries(70);
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut tree: MemoryBackedTree<sha2::Sha256, Vec<u8>> = MemoryBackedTree::new();
        let mut old_roots = Vec::new();
        let mut seed = 5u64;
        for n in 1..=70usize {
            tree.push(data[n - 1].clone());
            let ours = root(&leaves[..n]);
            let theirs = tree.root();
            assert_eq!(theirs.as_bytes().as_slice(), ours.as_slice(), "root {n}");
            old_roots.push(ours);

            // Inclusion: every index for small trees, random ones beyond.
            let indices: Vec<usize> = if n <= 20 {
                (0..n).collect()
            } else {
                (0..8)
                    .map(|_| (rng(&mut seed) % n as u64) as usize)
                    .collect()
            };
            for i in indices {
                let p = inclusion_proof(&leaves[..n], i as u64).unwrap();
                let theirs_p = tree.prove_inclusion(i);
                assert_eq!(flat(&p), theirs_p.as_bytes(), "inclusion {i} of {n}");
                assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &p, &ours));
                assert!(
                    theirs
                        .verify_inclusion(&data[i], i as u64, &theirs_p)
                        .is_ok()
                );
                // Wrong leaf, wrong index, truncated proof: all refused.
                assert!(
                    !verify_inclusion(&leaves[(i + 1) % n], i as u64, n as u64, &p, &ours)
                        || n == 1
                );
                if n > 1 {
                    assert!(!verify_inclusion(
                        &leaves[i],
                        ((i + 1) % n) as u64,
                        n as u64,
                        &p,
                        &ours
                    ));
                    assert!(!verify_inclusion(
                        &leaves[i],
                        i as u64,
                        n as u64,
                        &p[..p.len() - 1],
                        &ours
                    ));
                }
            }

            // Consistency from every old size (small) or random ones.
            let olds: Vec<usize> = if n <= 20 {
                (1..n).collect()
            } else {
                (0..8)
                    .map(|_| 1 + (rng(&mut seed) % (n as u64 - 1)) as usize)
                    .collect()
            };
            for m in olds {
                let p = consistency_proof(&leaves[..n], m as u64).unwrap();
                let theirs_p = tree.prove_consistency(n - m);
                assert_eq!(flat(&p), theirs_p.as_bytes(), "consistency {m} -> {n}");
                let old_root = old_roots[m - 1];
                assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &ours, &p),
                    "verify {m} -> {n}"
                );
                let mut old_ct: MemoryBackedTree<sha2::Sha256, Vec<u8>> = MemoryBackedTree::new();
                for d in &data[..m] {
                    old_ct.push(d.clone());
                }
                assert!(theirs.verify_consistency(&old_ct.root(), &theirs_p).is_ok());
                // A different old root or size is refused.
                let mut bad = old_root;
                bad[0] ^= 1;
                assert!(!verify_consistency(m as u64, n as u64, &bad, &ours, &p));
                if m + 1 < n {
                    assert!(!verify_consistency(
                        m as u64 + 1,
                        n as u64,
                        &old_root,
                        &ours,
                        &p
                    ));
                }
            }
            assert_eq!(
                consistency_proof(&leaves[..n], n as u64).unwrap(),
                Vec::<Hash>::new()
            );
            assert!(verify_consistency(n as u64, n as u64, &ours, &ours, &[]));
        }
    }

    #[test]
    fn complete_subtrees_fold_to_the_rfc_root() {
        let leaves: Vec<Hash> = entries(70).iter().map(|d| leaf_hash(d)).collect();
        for n in 1..=70u64 {
            let pieces = complete_subtrees(0, n);
            assert_eq!(pieces.len() as u32, n.count_ones());
            let hashes: Vec<Hash> = pieces
                .iter()
                .map(|&(l, i)| root(&leaves[(i << l) as usize..((i + 1) << l) as usize]))
                .collect();
            assert_eq!(fold_subtrees(&hashes).unwrap(), root(&leaves[..n as usize]));
            // Right-edge ranges of a tree, as proofs ask for them.
            for start in [n / 2, n.saturating_sub(3), n - 1] {
                let pieces = complete_subtrees(start, n - start);
                assert!(pieces.len() <= 2 * 64);
                let hashes: Vec<Hash> = pieces
                    .iter()
                    .map(|&(l, i)| root(&leaves[(i << l) as usize..((i + 1) << l) as usize]))
                    .collect();
                let covered: u64 = pieces.iter().map(|&(l, _)| 1u64 << l).sum();
                assert_eq!(covered, n - start);
                let _ = fold_subtrees(&hashes).unwrap();
            }
        }
        assert_eq!(fold_subtrees(&[]), None);
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let leaves: Vec<Hash> = entries(5).iter().map(|d| leaf_hash(d)).collect();
        assert!(matches!(
            inclusion_proof(&leaves, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        ));
        assert!(matches!(
            consistency_proof(&leaves, 0),
            Err(ProofError::BadSizes { .. })
        ));
        assert!(matches!(
            consistency_proof(&leaves, 6),
            Err(ProofError::BadSizes { .. })
        ));
        assert!(!verify_inclusion(&leaves[0], 7, 5, &[], &root(&leaves)));
        assert!(!verify_consistency(
            0,
            5,
            &empty_root(),
            &root(&leaves),
            &[]
        ));
        assert!(!verify_consistency(
            6,
            5,
            &empty_root(),
            &root(&leaves),
            &[]
        ));
        // Over-long proofs are refused.
        let mut p = inclusion_proof(&leaves, 2).unwrap();
        p.push([0u8; 32]);
        assert!(!verify_inclusion(&leaves[2], 2, 5, &p, &root(&leaves)));
        assert_eq!(split_point(0), 0);
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
    }
}
