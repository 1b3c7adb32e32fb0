//! SA-v1 tests: known answers for the pinned PRG and seed derivation, mask cancellation, every
//! refusal, signed objects, fixed point, bounded decoding and mutation fuzzing.

use std::collections::HashMap;

use super::*;
use crate::testkit::{XorShift, ed25519_key, hex, unhex, x25519_secret};

const COORD: u8 = 200;

/// One modification of a signed object.
type Tamper<T> = Box<dyn Fn(&mut T)>;

fn site(i: usize) -> SiteId {
    SiteId::new(format!("site-{i:03}")).unwrap()
}

fn sign_key(i: usize) -> Ed25519KeyPair {
    ed25519_key(i as u8)
}

fn round_secret(i: usize, attempt: u32) -> StaticSecret {
    x25519_secret(
        (i as u8)
            .wrapping_mul(7)
            .wrapping_add(attempt as u8)
            .wrapping_add(100),
    )
}

fn roster(n: usize, dim: u32) -> Roster {
    Roster {
        study: "liver-seg".into(),
        input: [9; 32],
        attempt: 0,
        schema: "staple-theta-v1".into(),
        dim,
        sites: (0..n).map(site).collect(),
        min_sites: 3,
        coordinator: site(COORD as usize),
        deadline: 1_800_000_000,
    }
}

fn site_keys(n: usize) -> HashMap<SiteId, [u8; 32]> {
    (0..n)
        .map(|i| (site(i), crypto::public_key(&sign_key(i))))
        .collect()
}

fn bundle(r: &Roster) -> Vec<RoundKey> {
    r.sites
        .iter()
        .enumerate()
        .map(|(i, s)| RoundKey::sign(r, s.clone(), &round_secret(i, r.attempt), &sign_key(i)))
        .collect()
}

fn random_vec(rng: &mut XorShift, dim: usize) -> Vec<u128> {
    (0..dim)
        .map(|_| (u128::from(rng.next()) << 64) | u128::from(rng.next()))
        .collect()
}

fn bytes_of(v: &[u128]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn mask_all(r: &Roster, xs: &[Vec<u128>]) -> Vec<MaskedInput> {
    let keys = bundle(r);
    let sk = site_keys(r.sites.len());
    verify_key_bundle(r, &keys, |s| sk.get(s).copied()).unwrap();
    r.sites
        .iter()
        .enumerate()
        .map(|(i, s)| mask_input(&xs[i], r, s, &round_secret(i, r.attempt), &keys).unwrap())
        .collect()
}

// ---- Known answers ----

#[test]
fn chacha20_block_rfc8439_2_3_2() {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    let nonce = unhex("000000090000004a00000000");
    let block = chacha20_block(&le_words::<8>(&key), 1, &le_words::<3>(&nonce));
    let bytes: Vec<u8> = block.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(
        hex(&bytes),
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e\
         d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    );
}

#[test]
fn mask_stream_rfc8439_a1_vectors() {
    // A.1 test vector #1: all-zero key and nonce, block counter 0.
    let s = mask_stream(&[0; 32], 8);
    assert_eq!(
        hex(&bytes_of(&s[..4])),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
         da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    );
    // A.1 test vector #2: the same key and nonce, block counter 1 (elements 4..8).
    assert_eq!(
        hex(&bytes_of(&s[4..])),
        "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed\
         29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"
    );
    // Element 0 is the first 16 bytes read little-endian.
    assert_eq!(
        s[0],
        u128::from_le_bytes(
            unhex("76b8e0ada0f13d90405d6ae55386bd28")
                .try_into()
                .unwrap()
        )
    );
    // A prefix of a longer stream is the shorter stream.
    assert_eq!(mask_stream(&[0; 32], 5), s[..5]);
    assert!(mask_stream(&[0; 32], 0).is_empty());
}

#[test]
fn mask_stream_matches_rustcrypto_chacha20() {
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    let mut rng = XorShift::new(0xc4a2);
    for dim in [1usize, 3, 4, 5, 17, 64, 1000, 4099] {
        let mut seed = [0u8; 32];
        for b in &mut seed {
            *b = rng.next() as u8;
        }
        let mut want = vec![0u8; dim * 16];
        let mut c = chacha20::ChaCha20::new(&seed.into(), &[0u8; 12].into());
        c.apply_keystream(&mut want);
        assert_eq!(bytes_of(&mask_stream(&seed, dim)), want, "dim {dim}");
    }
}

#[test]
fn x25519_rfc7748_6_1_shared_secret_and_pair_seed() {
    let a = StaticSecret::from(
        <[u8; 32]>::try_from(unhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ))
        .unwrap(),
    );
    let b = StaticSecret::from(
        <[u8; 32]>::try_from(unhex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ))
        .unwrap(),
    );
    let pa = crypto::x25519_public(&a);
    let pb = crypto::x25519_public(&b);
    assert_eq!(
        hex(&pb),
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    );
    let k = crypto::x25519(&a, &pb).unwrap();
    assert_eq!(
        hex(&*k),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
    // pair_seed is symmetric and is HKDF over exactly the documented info.
    let r = roster(3, 4);
    let (u, v) = (site(0), site(2));
    let s1 = pair_seed(&a, &pb, &r, &u, &v).unwrap();
    let s2 = pair_seed(&b, &pa, &r, &v, &u).unwrap();
    assert_eq!(*s1, *s2);
    let mut want = [0u8; 32];
    let mut info = b"mask".to_vec();
    info.extend_from_slice(&r.hash());
    info.push(8);
    info.extend_from_slice(b"site-000");
    info.push(8);
    info.extend_from_slice(b"site-002");
    crypto::hkdf_sha256(MASK_SALT, &*k, &[&info], &mut want).unwrap();
    assert_eq!(*s1, want);
    // Another roster (here: the next attempt) gives another seed from the same keys.
    let mut r2 = r.clone();
    r2.attempt = 1;
    assert_ne!(*pair_seed(&a, &pb, &r2, &u, &v).unwrap(), *s1);
    // Refusals.
    assert_eq!(pair_seed(&a, &pb, &r, &u, &u), Err(SecAggError::SameSite));
    assert_eq!(
        pair_seed(&a, &pb, &r, &u, &site(9)),
        Err(SecAggError::NotInRoster)
    );
    assert_eq!(
        pair_seed(&a, &[0; 32], &r, &u, &v),
        Err(SecAggError::LowOrderKey)
    );
}

/// Pinned forever: the roster encoding and hash, a pair seed, its stream and a masked input.
/// The expected values were computed independently (Python `cryptography`: X25519, HKDF-SHA256,
/// ChaCha20 with a zero nonce, and a hand-written postcard encoder for the roster).
#[test]
fn golden_vector() {
    let r = roster(3, 5);
    assert_eq!(hex(&r.to_bytes()), GOLDEN_ROSTER_BYTES);
    assert_eq!(hex(&r.hash()), GOLDEN_ROSTER_HASH);
    let keys = bundle(&r);
    let seed01 = pair_seed(&round_secret(0, 0), &keys[1].public, &r, &site(0), &site(1)).unwrap();
    assert_eq!(hex(&*seed01), GOLDEN_SEED_01);
    let st = mask_stream(&seed01, 2);
    assert_eq!(format!("{:032x} {:032x}", st[0], st[1]), GOLDEN_STREAM_01);
    let x: Vec<u128> = vec![1, 2, 3, encode_signed(-4), u128::MAX];
    let y = mask_input(&x, &r, &site(1), &round_secret(1, 0), &keys).unwrap();
    let got: Vec<String> = y.values.iter().map(|v| format!("{v:032x}")).collect();
    assert_eq!(got, GOLDEN_MASKED_1);
}

const GOLDEN_ROSTER_BYTES: &str = "096c697665722d736567\
    0909090909090909090909090909090909090909090909090909090909090909\
    000f737461706c652d74686574612d763105\
    0308736974652d30303008736974652d30303108736974652d303032\
    0308736974652d32303080a4a7da06";
const GOLDEN_ROSTER_HASH: &str = "78c6bfa9c0704836fe50c75b0bafd6dc5102deb9bdb0ac9be16e619609286773";
const GOLDEN_SEED_01: &str = "c50c02f3caeb1125fdb381b6a18b6c8157b7da68cb6611dd028b186023a0fb2b";
const GOLDEN_STREAM_01: &str = "900b6f6386fa33fa34fb793a13f70ef3 850331378448b4d33e297a712bd38195";
const GOLDEN_MASKED_1: [&str; 5] = [
    "69ca5527cf54914611d9a09b98f173fa",
    "d331f8bacae653ee37230d7ea5dabec4",
    "4e8c06aac3cfea2dd2a4977f12c2cf76",
    "bbc91265667b32c4d2567bcc2f4c819b",
    "a793c3617edcd9524341bbbf50d43eb7",
];

// ---- Masking ----

#[test]
fn masks_cancel() {
    let mut rng = XorShift::new(0x5ca1e);
    for (n, dim) in [(3usize, 257u32), (4, 64), (10, 33), (50, 8)] {
        let r = roster(n, dim);
        let d = dim as usize;
        let mut xs: Vec<Vec<u128>> = (0..n).map(|_| random_vec(&mut rng, d)).collect();
        // Values near 2^127 and negative signed values.
        xs[0][0] = (1u128 << 127) - 1;
        xs[1][0] = 1u128 << 127;
        xs[2][0] = encode_signed(-5);
        xs[0][1] = encode_signed(i128::MIN);
        xs[1][1] = encode_signed(-1);
        xs[2][1] = encode_signed(i128::MAX);
        let want: Vec<u128> = (0..d)
            .map(|j| xs.iter().fold(0u128, |a, x| a.wrapping_add(x[j])))
            .collect();
        let ys = mask_all(&r, &xs);
        assert_eq!(aggregate(&r, &ys).unwrap(), want, "{n} sites");
        // Any order of submission.
        let mut rev = ys.clone();
        rev.reverse();
        assert_eq!(aggregate(&r, &rev).unwrap(), want);
    }
    // Small signed values decode exactly.
    let r = roster(3, 2);
    let xs = vec![
        vec![encode_signed(-10), encode_signed(7)],
        vec![encode_signed(3), encode_signed(-7)],
        vec![encode_signed(-1), encode_signed(0)],
    ];
    let sum = aggregate(&r, &mask_all(&r, &xs)).unwrap();
    assert_eq!(
        sum.iter().map(|&v| decode_signed(v)).collect::<Vec<_>>(),
        [-8, 0]
    );
}

#[test]
fn masked_input_hides_every_element() {
    let r = roster(4, 1024);
    let x = vec![0u128; 1024];
    let keys = bundle(&r);
    for (i, s) in r.sites.iter().enumerate() {
        let y = mask_input(&x, &r, s, &round_secret(i, 0), &keys).unwrap();
        assert_eq!(y.site, *s);
        assert_eq!(y.roster_hash, r.hash());
        assert_eq!(y.values.iter().filter(|&&v| v == 0).count(), 0);
        // Roughly half the bits set: no structure left.
        let ones: u32 = y.values.iter().map(|v| v.count_ones()).sum();
        let total = 1024 * 128;
        assert!(ones > total * 45 / 100 && ones < total * 55 / 100);
    }
}

#[test]
fn mask_input_refusals() {
    let r = roster(3, 4);
    let keys = bundle(&r);
    let x = vec![1u128; 4];
    assert_eq!(
        mask_input(&x[..3], &r, &site(0), &round_secret(0, 0), &keys),
        Err(SecAggError::DimensionMismatch {
            expected: 4,
            got: 3
        })
    );
    assert_eq!(
        mask_input(&x, &r, &site(5), &round_secret(0, 0), &keys),
        Err(SecAggError::NotInRoster)
    );
    // Someone else's secret (or a bundle carrying a substituted key for me).
    assert_eq!(
        mask_input(&x, &r, &site(0), &round_secret(1, 0), &keys),
        Err(SecAggError::OwnKeyMismatch)
    );
    assert_eq!(
        mask_input(&x, &r, &site(0), &round_secret(0, 0), &keys[..2]),
        Err(SecAggError::WrongCount {
            expected: 3,
            got: 2
        })
    );
    let mut bad = r.clone();
    bad.sites.swap(0, 1);
    assert_eq!(
        mask_input(&x, &bad, &site(0), &round_secret(0, 0), &keys),
        Err(SecAggError::RosterUnsorted)
    );
    let mut low = keys.clone();
    low[2].public = [0; 32];
    assert_eq!(
        mask_input(&x, &r, &site(0), &round_secret(0, 0), &low),
        Err(SecAggError::LowOrderKey)
    );
}

#[test]
fn aggregate_refusals() {
    let r = roster(3, 4);
    let mut rng = XorShift::new(77);
    let xs: Vec<Vec<u128>> = (0..3).map(|_| random_vec(&mut rng, 4)).collect();
    let ys = mask_all(&r, &xs);
    assert!(aggregate(&r, &ys).is_ok());
    assert_eq!(
        aggregate(&r, &ys[..2]),
        Err(SecAggError::WrongCount {
            expected: 3,
            got: 2
        })
    );
    let dup = vec![ys[0].clone(), ys[1].clone(), ys[1].clone()];
    assert_eq!(aggregate(&r, &dup), Err(SecAggError::DuplicateSite));
    let mut stranger = ys.clone();
    stranger[2].site = site(7);
    assert_eq!(aggregate(&r, &stranger), Err(SecAggError::NotInRoster));
    let mut wrong = ys.clone();
    wrong[1].roster_hash[0] ^= 1;
    assert_eq!(aggregate(&r, &wrong), Err(SecAggError::WrongRoster));
    let mut short = ys.clone();
    short[2].values.pop();
    assert_eq!(
        aggregate(&r, &short),
        Err(SecAggError::DimensionMismatch {
            expected: 4,
            got: 3
        })
    );
    let mut other = r.clone();
    other.attempt = 1;
    assert_eq!(aggregate(&other, &ys), Err(SecAggError::WrongRoster));
}

#[test]
fn key_bundle_refusals() {
    let r = roster(4, 4);
    let sk = site_keys(4);
    let lookup = |s: &SiteId| sk.get(s).copied();
    let keys = bundle(&r);
    assert_eq!(verify_key_bundle(&r, &keys, lookup), Ok(()));

    // Forged: a key re-signed by another site's signing key, or a tampered public key.
    let mut forged = keys.clone();
    forged[1] = RoundKey::sign(&r, site(1), &x25519_secret(42), &sign_key(3));
    assert_eq!(
        verify_key_bundle(&r, &forged, lookup),
        Err(SecAggError::BadSignature)
    );
    let mut tampered = keys.clone();
    tampered[2].public[5] ^= 1;
    assert_eq!(
        verify_key_bundle(&r, &tampered, lookup),
        Err(SecAggError::BadSignature)
    );

    // A key signed for another roster.
    let mut other = r.clone();
    other.attempt = 1;
    let mut replayed = keys.clone();
    replayed[3] = RoundKey::sign(&other, site(3), &round_secret(3, 0), &sign_key(3));
    assert_eq!(
        verify_key_bundle(&r, &replayed, lookup),
        Err(SecAggError::WrongRoster)
    );

    // Missing, duplicate, out of order, unknown.
    assert_eq!(
        verify_key_bundle(&r, &keys[..3], lookup),
        Err(SecAggError::WrongCount {
            expected: 4,
            got: 3
        })
    );
    let mut dup = keys.clone();
    dup[2] = keys[1].clone();
    assert_eq!(
        verify_key_bundle(&r, &dup, lookup),
        Err(SecAggError::DuplicateSite)
    );
    let mut swapped = keys.clone();
    swapped.swap(1, 2);
    assert_eq!(
        verify_key_bundle(&r, &swapped, lookup),
        Err(SecAggError::OutOfOrder)
    );
    let mut stranger = keys.clone();
    stranger[0] = RoundKey::sign(&r, site(9), &round_secret(9, 0), &sign_key(9));
    assert_eq!(
        verify_key_bundle(&r, &stranger, lookup),
        Err(SecAggError::NotInRoster)
    );
    assert_eq!(
        verify_key_bundle(&r, &keys, |s: &SiteId| (s != &site(2)).then(|| sk[s])),
        Err(SecAggError::UnknownSiteKey)
    );

    // Low-order public keys, properly signed by their site: all-zero, one, and a point of
    // order 8 (RFC 7748 §6.1 / the curve25519 small-subgroup list).
    let order8 = unhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    let mut one = [0u8; 32];
    one[0] = 1;
    for pk in [[0u8; 32], one, order8.try_into().unwrap()] {
        let mut low = keys.clone();
        low[1].public = pk;
        low[1].signature = crypto::sign(
            &sign_key(1),
            DOMAIN_ROUND_KEY,
            &codec::encode(&(&low[1].roster_hash, &low[1].site, &low[1].public)),
        );
        assert_eq!(low[1].verify(&sk[&site(1)]), Ok(()));
        assert_eq!(
            verify_key_bundle(&r, &low, lookup),
            Err(SecAggError::LowOrderKey)
        );
    }

    // A site republishing another site's public key.
    let mut copy = keys.clone();
    copy[3].public = keys[0].public;
    copy[3].signature = crypto::sign(
        &sign_key(3),
        DOMAIN_ROUND_KEY,
        &codec::encode(&(&copy[3].roster_hash, &copy[3].site, &copy[3].public)),
    );
    assert_eq!(
        verify_key_bundle(&r, &copy, lookup),
        Err(SecAggError::DuplicatePublicKey)
    );

    // An invalid roster is refused before anything else.
    let mut bad = r.clone();
    bad.dim = 0;
    assert!(matches!(
        verify_key_bundle(&bad, &keys, lookup),
        Err(SecAggError::BadDimension { .. })
    ));
}

// ---- Roster ----

#[test]
fn roster_validate() {
    let r = roster(3, 10);
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(r.index_of(&site(2)), Some(2));
    assert_eq!(r.index_of(&site(3)), None);

    let mut x = r.clone();
    x.sites.swap(0, 2);
    assert_eq!(x.validate(), Err(SecAggError::RosterUnsorted));
    let mut x = r.clone();
    x.sites[1] = site(0);
    assert_eq!(x.validate(), Err(SecAggError::DuplicateSite));
    assert_eq!(
        roster(2, 10).validate(),
        Err(SecAggError::RosterTooSmall { len: 2, min: 3 })
    );
    let mut x = roster(4, 10);
    x.min_sites = 5;
    assert_eq!(
        x.validate(),
        Err(SecAggError::RosterTooSmall { len: 4, min: 5 })
    );
    x.min_sites = u32::MAX;
    assert!(matches!(
        x.validate(),
        Err(SecAggError::RosterTooSmall { .. })
    ));
    x.min_sites = 4;
    assert_eq!(x.validate(), Ok(()));
    assert_eq!(roster(MAX_ROSTER, 10).validate(), Ok(()));
    assert_eq!(
        roster(MAX_ROSTER + 1, 10).validate(),
        Err(SecAggError::RosterTooLarge {
            len: MAX_ROSTER + 1,
            max: MAX_ROSTER
        })
    );
    assert_eq!(roster(3, MAX_DIM as u32).validate(), Ok(()));
    assert_eq!(
        roster(3, MAX_DIM as u32 + 1).validate(),
        Err(SecAggError::BadDimension {
            dim: MAX_DIM + 1,
            max: MAX_DIM
        })
    );
    assert!(roster(3, 0).validate().is_err());
    for bad in ["", "a\nb", &"x".repeat(MAX_NAME_LEN + 1)] {
        let mut x = r.clone();
        x.study = bad.to_string();
        assert_eq!(x.validate(), Err(SecAggError::BadName));
        let mut x = r.clone();
        x.schema = bad.to_string();
        assert_eq!(x.validate(), Err(SecAggError::BadName));
    }
    // Every field is in the hash.
    let h = r.hash();
    let variants: Vec<Roster> = vec![
        Roster {
            study: "other".into(),
            ..r.clone()
        },
        Roster {
            input: [8; 32],
            ..r.clone()
        },
        Roster {
            attempt: 1,
            ..r.clone()
        },
        Roster {
            schema: "s2".into(),
            ..r.clone()
        },
        Roster {
            dim: 11,
            ..r.clone()
        },
        Roster {
            sites: vec![site(0), site(1), site(3)],
            ..r.clone()
        },
        Roster {
            min_sites: 2,
            ..r.clone()
        },
        Roster {
            coordinator: site(1),
            ..r.clone()
        },
        Roster {
            deadline: 1,
            ..r.clone()
        },
    ];
    for v in variants {
        assert_ne!(v.hash(), h);
    }
}

// ---- Signed objects ----

fn coord_key() -> Ed25519KeyPair {
    ed25519_key(COORD)
}

fn coord_pk() -> [u8; 32] {
    crypto::public_key(&coord_key())
}

fn digest(i: u8) -> [u8; 32] {
    [i; 32]
}

/// Attempt 0 of 5 sites where site 4 did not submit, and the retry without it.
fn retry_pair() -> (Roster, AbortCertificate, Roster) {
    let r0 = roster(5, 8);
    let submitted = (0..4).map(|i| (site(i), digest(i as u8))).collect();
    let cert = AbortCertificate::sign(&r0, submitted, &coord_key());
    let r1 = Roster {
        attempt: 1,
        ..roster(4, 8)
    };
    (r0, cert, r1)
}

#[test]
fn signed_roster_sign_verify_and_tamper() {
    let r = roster(3, 8);
    let s = SignedRoster::sign(r.clone(), None, &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
    assert_eq!(
        s.verify(&crypto::public_key(&ed25519_key(1))),
        Err(SecAggError::BadSignature)
    );
    let tampers: Vec<Tamper<SignedRoster>> = vec![
        Box::new(|s| s.roster.study = "other".into()),
        Box::new(|s| s.roster.input[0] ^= 1),
        Box::new(|s| s.roster.schema = "other".into()),
        Box::new(|s| s.roster.dim += 1),
        Box::new(|s| s.roster.sites[2] = site(3)),
        Box::new(|s| s.roster.min_sites = 2),
        Box::new(|s| s.roster.coordinator = site(1)),
        Box::new(|s| s.roster.deadline += 1),
        Box::new(|s| s.signature[10] ^= 1),
    ];
    for t in &tampers {
        let mut x = s.clone();
        t(&mut x);
        assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));
    }
    // A signed but invalid roster is refused on its form.
    let bad = SignedRoster::sign(roster(2, 8), None, &coord_key());
    assert!(matches!(
        bad.verify(&coord_pk()),
        Err(SecAggError::RosterTooSmall { .. })
    ));
    // A retry needs the previous certificate; a first attempt may not carry one.
    let retry = SignedRoster::sign(
        Roster {
            attempt: 1,
            ..r.clone()
        },
        None,
        &coord_key(),
    );
    assert_eq!(retry.verify(&coord_pk()), Err(SecAggError::MissingPrevious));
    let (_, cert, _) = retry_pair();
    let first = SignedRoster::sign(roster(4, 8), Some(cert), &coord_key());
    assert_eq!(
        first.verify(&coord_pk()),
        Err(SecAggError::PreviousMismatch)
    );
}

#[test]
fn retry_with_previous_certificate() {
    let (r0, cert, r1) = retry_pair();
    assert_eq!(cert.verify(&coord_pk()), Ok(()));
    assert_eq!(cert.roster_hash, r0.hash());
    assert_eq!(
        cert.submitters().cloned().collect::<Vec<_>>(),
        (0..4).map(site).collect::<Vec<_>>()
    );
    let s = SignedRoster::sign(r1.clone(), Some(cert.clone()), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
    // The previous certificate is covered by the roster signature.
    let mut x = s.clone();
    x.previous.as_mut().unwrap().submitted.pop();
    assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));
    let mut x = s.clone();
    x.previous = None;
    assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));

    // Previous certificate for another input, another study, or not the previous attempt.
    let other_input = AbortCertificate::sign(
        &Roster {
            input: [1; 32],
            ..r0.clone()
        },
        vec![],
        &coord_key(),
    );
    let other_study = AbortCertificate::sign(
        &Roster {
            study: "brain".into(),
            ..r0.clone()
        },
        vec![],
        &coord_key(),
    );
    let other_attempt = AbortCertificate::sign(
        &Roster {
            attempt: 1,
            ..r0.clone()
        },
        vec![],
        &coord_key(),
    );
    for prev in [other_input, other_study, other_attempt] {
        let s = SignedRoster::sign(r1.clone(), Some(prev), &coord_key());
        assert_eq!(s.verify(&coord_pk()), Err(SecAggError::PreviousMismatch));
    }
    let s = SignedRoster::sign(
        Roster {
            attempt: 2,
            ..r1.clone()
        },
        Some(cert.clone()),
        &coord_key(),
    );
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::PreviousMismatch));
    // Signed by another key than the roster.
    let foreign = AbortCertificate::sign(&r0, vec![], &ed25519_key(1));
    let s = SignedRoster::sign(r1.clone(), Some(foreign), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::BadSignature));

    // The retry may not exclude a site the certificate says submitted.
    let excl = Roster {
        sites: vec![site(0), site(1), site(2), site(4)],
        ..r1.clone()
    };
    let s = SignedRoster::sign(excl, Some(cert.clone()), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::ExcludedSubmitter));

    // If every site submitted, only a retry over the same sites is acceptable.
    let all = AbortCertificate::sign(
        &r0,
        (0..5).map(|i| (site(i), digest(i as u8))).collect(),
        &coord_key(),
    );
    let bigger = Roster {
        attempt: 1,
        ..roster(6, 8)
    };
    let s = SignedRoster::sign(bigger, Some(all.clone()), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::CompleteAbort));
    let same = Roster {
        attempt: 1,
        ..r0.clone()
    };
    let s = SignedRoster::sign(same, Some(all), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
}

#[test]
fn abort_certificate_sign_verify_and_tamper() {
    let (_, cert, _) = retry_pair();
    assert_eq!(cert.verify(&coord_pk()), Ok(()));
    let tampers: Vec<Tamper<AbortCertificate>> = vec![
        Box::new(|c| c.roster_hash[0] ^= 1),
        Box::new(|c| c.study = "brain".into()),
        Box::new(|c| c.input[31] ^= 1),
        Box::new(|c| c.attempt = 7),
        Box::new(|c| c.roster[4] = site(9)),
        Box::new(|c| c.submitted[1].1[0] ^= 1),
        Box::new(|c| {
            c.submitted.pop();
        }),
        Box::new(|c| c.signature[63] ^= 1),
    ];
    for t in &tampers {
        let mut x = cert.clone();
        t(&mut x);
        assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));
    }
    // Malformed but signed: a submitter outside the roster, a duplicate, an unsorted roster.
    let r0 = roster(5, 8);
    let outside = AbortCertificate::sign(&r0, vec![(site(9), digest(1))], &coord_key());
    assert_eq!(outside.verify(&coord_pk()), Err(SecAggError::NotInRoster));
    let twice = AbortCertificate::sign(
        &r0,
        vec![(site(1), digest(1)), (site(1), digest(2))],
        &coord_key(),
    );
    assert_eq!(twice.verify(&coord_pk()), Err(SecAggError::DuplicateSite));
    let mut unsorted = r0.clone();
    unsorted.sites.swap(0, 1);
    let c = AbortCertificate::sign(&unsorted, vec![], &coord_key());
    assert_eq!(c.verify(&coord_pk()), Err(SecAggError::RosterUnsorted));
    // sign puts submissions in canonical order.
    let c = AbortCertificate::sign(
        &r0,
        vec![(site(3), digest(3)), (site(0), digest(0))],
        &coord_key(),
    );
    assert_eq!(c.verify(&coord_pk()), Ok(()));
    assert_eq!(c.submitted[0].0, site(0));
}

#[test]
fn round_key_and_statement_sign_verify_and_tamper() {
    let r = roster(3, 8);
    let pk = crypto::public_key(&sign_key(1));
    let k = RoundKey::sign(&r, site(1), &round_secret(1, 0), &sign_key(1));
    assert_eq!(k.public, crypto::x25519_public(&round_secret(1, 0)));
    assert_eq!(k.verify(&pk), Ok(()));
    assert_eq!(
        k.verify(&crypto::public_key(&sign_key(2))),
        Err(SecAggError::BadSignature)
    );
    let tampers: Vec<Tamper<RoundKey>> = vec![
        Box::new(|k| k.roster_hash[3] ^= 1),
        Box::new(|k| k.site = site(2)),
        Box::new(|k| k.public[0] ^= 1),
        Box::new(|k| k.signature[0] ^= 1),
    ];
    for t in &tampers {
        let mut x = k.clone();
        t(&mut x);
        assert_eq!(x.verify(&pk), Err(SecAggError::BadSignature));
    }

    let st = SubmissionStatement::sign(&r, site(1), true, &sign_key(1));
    assert_eq!(st.roster_hash, r.hash());
    assert_eq!(st.verify(&pk), Ok(()));
    let tampers: Vec<Tamper<SubmissionStatement>> = vec![
        Box::new(|s| s.roster_hash[3] ^= 1),
        Box::new(|s| s.site = site(2)),
        Box::new(|s| s.submitted = false),
        Box::new(|s| s.signature[0] ^= 1),
    ];
    for t in &tampers {
        let mut x = st.clone();
        t(&mut x);
        assert_eq!(x.verify(&pk), Err(SecAggError::BadSignature));
    }
    // Domains separate the objects: a statement's signature is not a round key's.
    let m = codec::encode(&(&st.roster_hash, &st.site, st.submitted));
    assert!(crypto::verify(&pk, DOMAIN_STATEMENT, &m, &st.signature));
    assert!(!crypto::verify(&pk, DOMAIN_ROUND_KEY, &m, &st.signature));
}

#[test]
fn check_retry_refuses_excluding_a_provable_submitter() {
    let (r0, cert, r1) = retry_pair();
    // The coordinator lied: site 3 submitted, the certificate omits it, the retry excludes it.
    let lying = AbortCertificate::sign(
        &r0,
        (0..3).map(|i| (site(i), digest(i as u8))).collect(),
        &coord_key(),
    );
    let r1_without_3 = Roster {
        sites: vec![site(0), site(1), site(2)],
        ..r1.clone()
    };
    let s = SignedRoster::sign(r1_without_3, Some(lying), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
    let sk = site_keys(5);
    let lookup = |s: &SiteId| sk.get(s).copied();
    let claim = SubmissionStatement::sign(&r0, site(3), true, &sign_key(3));
    assert_eq!(
        check_retry(&s, std::slice::from_ref(&claim), lookup),
        Err(SecAggError::ExcludedSubmitter)
    );
    // What does not prove anything is ignored.
    let denial = SubmissionStatement::sign(&r0, site(3), false, &sign_key(3));
    let other_roster = SubmissionStatement::sign(&r1, site(3), true, &sign_key(3));
    let mut forged = claim.clone();
    forged.signature[0] ^= 1;
    let by_other_key = SubmissionStatement::sign(&r0, site(3), true, &sign_key(2));
    let included = SubmissionStatement::sign(&r0, site(1), true, &sign_key(1));
    assert_eq!(
        check_retry(
            &s,
            &[denial, other_roster, forged, by_other_key, included],
            lookup
        ),
        Ok(())
    );
    assert_eq!(
        check_retry(&s, std::slice::from_ref(&claim), |_: &SiteId| None),
        Ok(())
    );
    // The honest retry keeps site 3 and passes; a first attempt passes.
    let honest = SignedRoster::sign(r1, Some(cert), &coord_key());
    assert_eq!(
        check_retry(&honest, std::slice::from_ref(&claim), lookup),
        Ok(())
    );
    let first = SignedRoster::sign(r0, None, &coord_key());
    assert_eq!(check_retry(&first, &[claim], lookup), Ok(()));
}

#[test]
fn domains_are_distinct_and_nul_terminated() {
    let all = [
        DOMAIN_ROSTER,
        DOMAIN_ROUND_KEY,
        DOMAIN_ABORT,
        DOMAIN_STATEMENT,
        MASK_SALT,
        crypto::DOMAIN_CERT,
        crypto::DOMAIN_CERT_REQUEST,
        crypto::DOMAIN_CRL,
        crypto::DOMAIN_ENVELOPE,
        crypto::DOMAIN_COSIGN,
        crypto::DOMAIN_RECEIPT,
        crypto::SEAL_SALT,
    ];
    for (i, a) in all.iter().enumerate() {
        assert_eq!(a.last(), Some(&0));
        assert_eq!(a.iter().filter(|&&b| b == 0).count(), 1);
        for b in &all[i + 1..] {
            assert!(!a.starts_with(b) && !b.starts_with(a));
        }
    }
}

// ---- Fixed point ----

#[test]
fn fixed_point() {
    for (x, f) in [
        (0.0, 16),
        (1.5, 16),
        (-1.5, 16),
        (-0.0, 3),
        (1e-6, 40),
        (-123456.789, 32),
        (0.1, 52),
    ] {
        let e = encode_fixed(x, f).unwrap();
        let back = decode_fixed(e, f).unwrap();
        assert!(
            (back - x).abs() <= 0.5 / 2f64.powi(f as i32),
            "{x} at {f} bits"
        );
    }
    assert_eq!(encode_fixed(1.0, 16), Ok(1 << 16));
    assert_eq!(encode_fixed(-1.0, 0), Ok(u128::MAX));
    assert_eq!(encode_fixed(2.5, 0), Ok(3));
    assert_eq!(encode_fixed(-2.5, 0), Ok(encode_signed(-3)));
    assert_eq!(encode_fixed(0.75, 1), Ok(2));
    // Sums decode.
    let s = [0.25, -1.0, 3.5]
        .iter()
        .fold(0u128, |a, &x| a.wrapping_add(encode_fixed(x, 20).unwrap()));
    assert_eq!(decode_fixed(s, 20), Ok(2.75));
    // Range: |x|·2^frac < 2^100.
    assert!(encode_fixed(2f64.powi(99), 0).is_ok());
    assert_eq!(
        encode_fixed(2f64.powi(100), 0),
        Err(SecAggError::OutOfRange)
    );
    assert_eq!(
        encode_fixed(-2f64.powi(100), 0),
        Err(SecAggError::OutOfRange)
    );
    assert_eq!(encode_fixed(1.0, 100), Err(SecAggError::OutOfRange));
    assert!(encode_fixed(1.0, 99).is_ok());
    assert_eq!(encode_fixed(f64::MAX, 1), Err(SecAggError::OutOfRange));
    assert_eq!(encode_fixed(f64::NAN, 8), Err(SecAggError::NotFinite));
    assert_eq!(encode_fixed(f64::INFINITY, 8), Err(SecAggError::NotFinite));
    assert_eq!(
        encode_fixed(f64::NEG_INFINITY, 8),
        Err(SecAggError::NotFinite)
    );
    assert_eq!(
        encode_fixed(1.0, MAX_FRAC_BITS + 1),
        Err(SecAggError::BadFracBits(127))
    );
    assert_eq!(
        decode_fixed(0, u32::MAX),
        Err(SecAggError::BadFracBits(u32::MAX))
    );
    // Wrapped or random values are refused by decode_fixed.
    assert_eq!(
        decode_fixed(1u128 << 126, 0),
        Err(SecAggError::LikelyWrapped)
    );
    assert_eq!(
        decode_fixed(encode_signed(-(1i128 << 126)), 0),
        Err(SecAggError::LikelyWrapped)
    );
    assert_eq!(
        decode_fixed(u128::MAX / 2, 0),
        Err(SecAggError::LikelyWrapped)
    );
    assert!(decode_fixed((1u128 << 126) - 1, 0).is_ok());
    // Signed embedding round trips at the extremes.
    for v in [0i128, 1, -1, i128::MIN, i128::MAX] {
        assert_eq!(decode_signed(encode_signed(v)), v);
    }
    assert_eq!(encode_signed(-1), u128::MAX);
}

// ---- Decoding ----

#[test]
fn round_trips_through_bytes() {
    let (r0, cert, r1) = retry_pair();
    let s = SignedRoster::sign(r1.clone(), Some(cert.clone()), &coord_key());
    assert_eq!(SignedRoster::from_bytes(&s.to_bytes()).unwrap(), s);
    assert_eq!(Roster::from_bytes(&r0.to_bytes()).unwrap(), r0);
    assert_eq!(
        AbortCertificate::from_bytes(&cert.to_bytes()).unwrap(),
        cert
    );
    let k = RoundKey::sign(&r1, site(1), &round_secret(1, 1), &sign_key(1));
    assert_eq!(RoundKey::from_bytes(&k.to_bytes()).unwrap(), k);
    let st = SubmissionStatement::sign(&r0, site(2), true, &sign_key(2));
    assert_eq!(SubmissionStatement::from_bytes(&st.to_bytes()).unwrap(), st);
    // The largest masked input (all values maximal) fits its limit, and hash = SHA-256(bytes).
    let big = MaskedInput {
        roster_hash: [1; 32],
        site: site(0),
        values: vec![u128::MAX; MAX_DIM],
    };
    let b = big.to_bytes();
    assert!(b.len() <= MAX_MASKED_INPUT_BYTES);
    assert_eq!(MaskedInput::from_bytes(&b).unwrap(), big);
    assert_eq!(big.hash(), crypto::sha256(&b));
    // The largest signed roster (full roster, full previous certificate) fits its limit.
    let full = Roster {
        attempt: 1,
        study: "s".repeat(MAX_NAME_LEN),
        schema: "t".repeat(MAX_NAME_LEN),
        ..roster(MAX_ROSTER, 8)
    };
    let full0 = Roster {
        attempt: 0,
        ..full.clone()
    };
    let c = AbortCertificate::sign(
        &full0,
        full0
            .sites
            .iter()
            .map(|s| (s.clone(), [0xff; 32]))
            .collect(),
        &coord_key(),
    );
    let s = SignedRoster::sign(full, Some(c), &coord_key());
    assert!(
        s.to_bytes().len() <= MAX_SECAGG_MESSAGE_BYTES,
        "{}",
        s.to_bytes().len()
    );
    assert!(SignedRoster::from_bytes(&s.to_bytes()).is_ok());
}

/// Replaces the postcard varint at `at` (of `old_len` bytes) by `value`'s varint.
fn with_varint(b: &[u8], at: usize, old_len: usize, value: u64) -> Vec<u8> {
    let mut out = b[..at].to_vec();
    out.extend(postcard::to_stdvec(&value).unwrap());
    out.extend_from_slice(&b[at + old_len..]);
    out
}

#[test]
fn decoding_is_bounded() {
    // MaskedInput: 32-byte hash, site (1 + 8 bytes), then the values' length prefix.
    let m = MaskedInput {
        roster_hash: [0; 32],
        site: site(0),
        values: vec![1, 2, 3],
    };
    let b = m.to_bytes();
    assert_eq!(b[41], 3);
    for declared in [MAX_DIM as u64 + 1, 1 << 40, u64::MAX] {
        let huge = with_varint(&b, 41, 1, declared);
        assert!(MaskedInput::from_bytes(&huge).is_err());
    }
    // One element too many, with the data present, is refused too.
    let over = MaskedInput {
        values: vec![0; MAX_DIM + 1],
        ..m.clone()
    };
    assert!(MaskedInput::from_bytes(&over.to_bytes()).is_err());

    // Roster: the sites' length prefix follows study, input, attempt, schema, dim.
    let r = roster(3, 5);
    let b = r.to_bytes();
    let at = 1 + r.study.len() + 32 + 1 + 1 + r.schema.len() + 1;
    assert_eq!(b[at], 3);
    for declared in [MAX_ROSTER as u64 + 1, 1 << 40, u64::MAX] {
        assert!(Roster::from_bytes(&with_varint(&b, at, 1, declared)).is_err());
    }
    let over = roster(MAX_ROSTER + 1, 5);
    assert!(Roster::from_bytes(&over.to_bytes()).is_err());
    let long = Roster {
        study: "x".repeat(MAX_NAME_LEN + 1),
        ..r.clone()
    };
    assert!(Roster::from_bytes(&long.to_bytes()).is_err());

    // AbortCertificate: both vectors are bounded.
    let (_, cert, _) = retry_pair();
    let big = AbortCertificate {
        submitted: (0..MAX_ROSTER + 1).map(|i| (site(i), [0; 32])).collect(),
        ..cert.clone()
    };
    assert!(AbortCertificate::from_bytes(&big.to_bytes()).is_err());
    let big = AbortCertificate {
        roster: (0..MAX_ROSTER + 1).map(site).collect(),
        ..cert
    };
    assert!(AbortCertificate::from_bytes(&big.to_bytes()).is_err());
}

#[test]
fn mutated_secagg_messages_never_panic_or_verify() {
    let (r0, cert, r1) = retry_pair();
    let signed = SignedRoster::sign(r1.clone(), Some(cert.clone()), &coord_key());
    let key = RoundKey::sign(&r1, site(1), &round_secret(1, 1), &sign_key(1));
    let st = SubmissionStatement::sign(&r0, site(2), true, &sign_key(2));
    let sk = site_keys(5);
    let keys = bundle(&r1);
    let mut rng = XorShift::new(0x5ec_a66);
    let xs: Vec<Vec<u128>> = (0..4).map(|_| random_vec(&mut rng, 8)).collect();
    let ys = mask_all(&r1, &xs);
    let seeds = [
        signed.to_bytes(),
        cert.to_bytes(),
        key.to_bytes(),
        st.to_bytes(),
        ys[0].to_bytes(),
        r1.to_bytes(),
    ];
    let mut decoded = 0;
    for i in 0..20_000 {
        let seed = &seeds[i % seeds.len()];
        let m = rng.mutate(seed);
        if &m == seed {
            continue;
        }
        if let Ok(x) = SignedRoster::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&coord_pk()).is_err(),
                "roster mutation {i} verified"
            );
            let _ = check_retry(&x, std::slice::from_ref(&st), |s| sk.get(s).copied());
        }
        if let Ok(x) = AbortCertificate::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&coord_pk()).is_err(),
                "certificate mutation {i} verified"
            );
        }
        if let Ok(x) = RoundKey::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&sk[&site(1)]).is_err(),
                "key mutation {i} verified"
            );
            let mut b = keys.clone();
            b[1] = x;
            assert!(verify_key_bundle(&r1, &b, |s| sk.get(s).copied()).is_err());
        }
        if let Ok(x) = SubmissionStatement::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&sk[&site(2)]).is_err(),
                "statement mutation {i} verified"
            );
        }
        if let Ok(x) = MaskedInput::from_bytes(&m) {
            decoded += 1;
            let mut b = ys.clone();
            b[0] = x;
            // Either refused or, if only values changed, a different (wrong) sum: never a panic.
            let _ = aggregate(&r1, &b);
        }
        if let Ok(x) = Roster::from_bytes(&m) {
            decoded += 1;
            let _ = x.validate();
            let _ = verify_key_bundle(&x, &keys, |s| sk.get(s).copied());
            let _ = mask_input(&xs[0], &x, &site(0), &round_secret(0, 1), &keys);
            let _ = aggregate(&x, &ys);
        }
    }
    assert!(decoded > 0);
}
