//! What a witness decides (C2SP tlog-witness semantics, sans I/O): given the checkpoint of a
//! log it co-signed last, whether to co-sign a new one, to answer with a conflict, or to raise
//! an alarm because the log contradicts what it co-signed. The evidence of an alarm is the two
//! checkpoints, both signed by the log's owner.

use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash};
use crate::wire::SignedCheckpoint;

/// How a log contradicted a checkpoint its witness had co-signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Contradiction {
    /// Two roots for one size: the owner signed both, so anyone can check it (a fork, or a log
    /// rewritten to the same length).
    Fork,
    /// A newer checkpoint of a smaller log: entries were removed from the end.
    Rollback,
    /// A larger log whose consistency proof from the co-signed one does not verify: entries
    /// the witness had seen were changed or removed.
    Inconsistent,
}

impl Contradiction {
    pub fn as_str(self) -> &'static str {
        match self {
            Contradiction::Fork => "fork",
            Contradiction::Rollback => "rollback",
            Contradiction::Inconsistent => "inconsistent",
        }
    }

    /// Whether the two checkpoints alone prove it, to anyone holding the owner's key.
    pub fn self_evident(self) -> bool {
        self == Contradiction::Fork
    }
}

/// Evidence that a log contradicts itself: the checkpoint a witness co-signed (`earlier`) and
/// the one that contradicts it (`later`), both signed by the log's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: Contradiction,
    pub earlier: SignedCheckpoint,
    pub later: SignedCheckpoint,
}

impl Evidence {
    /// Whether the evidence holds as far as its two checkpoints can show: same owner and
    /// origin, and for a fork one size with two roots. (Signatures are checked by the caller,
    /// who knows the owner's key.)
    pub fn coherent(&self) -> bool {
        let (a, b) = (&self.earlier, &self.later);
        a.signer == b.signer
            && a.origin == b.origin
            && match self.kind {
                Contradiction::Fork => a.size == b.size && a.root != b.root,
                Contradiction::Rollback => b.size < a.size,
                Contradiction::Inconsistent => b.size > a.size,
            }
    }
}

/// A witness's answer to an add-checkpoint request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Consistent with what the witness co-signed (or the first it sees): co-sign and keep.
    Cosign,
    /// The request's old size is not the size the witness co-signed last: ask again from it.
    Conflict { size: u64 },
    /// The log contradicts the co-signed checkpoint.
    Contradicts(Contradiction),
}

/// C2SP tlog-witness add-checkpoint, for a checkpoint whose signature and origin the caller
/// has checked. `latest` is the checkpoint of this log the witness co-signed last.
pub fn add_checkpoint(
    latest: Option<&SignedCheckpoint>,
    old_size: u64,
    proof: &[Hash],
    cp: &SignedCheckpoint,
) -> Verdict {
    let Some(latest) = latest else {
        // The first checkpoint of a log this witness sees: from the empty tree, no proof.
        return if old_size == 0 && proof.is_empty() {
            Verdict::Cosign
        } else {
            Verdict::Conflict { size: 0 }
        };
    };
    if cp.size == latest.size && cp.root != latest.root {
        return Verdict::Contradicts(Contradiction::Fork);
    }
    if old_size != latest.size {
        return Verdict::Conflict { size: latest.size };
    }
    if cp.size < latest.size {
        // The owner claims consistency from a larger tree than it now has.
        return Verdict::Contradicts(Contradiction::Rollback);
    }
    if cp.size == latest.size || latest.size == 0 {
        // The same head again, or a log grown from empty: nothing to prove.
        return if proof.is_empty() {
            Verdict::Cosign
        } else {
            Verdict::Contradicts(Contradiction::Inconsistent)
        };
    }
    if merkle::verify_consistency(latest.size, cp.size, &latest.root, &cp.root, proof) {
        Verdict::Cosign
    } else {
        Verdict::Contradicts(Contradiction::Inconsistent)
    }
}

/// What a checkpoint of a log seen without a proof (gossiped by its owner or by another
/// witness) shows against the one this witness co-signed: a fork, or (`newer`: the owner
/// published it after the co-signed one) a rollback. A larger log cannot be judged without a
/// proof: that is for its next add-checkpoint.
pub fn contradiction(
    cosigned: &SignedCheckpoint,
    seen: &SignedCheckpoint,
    newer: bool,
) -> Option<Contradiction> {
    if seen.size == cosigned.size && seen.root != cosigned.root {
        Some(Contradiction::Fork)
    } else if newer && seen.size < cosigned.size {
        Some(Contradiction::Rollback)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SiteId;
    use crate::merkle::{consistency_proof, leaf_hash, root};
    use crate::testkit::ed25519_key;

    fn cp(leaves: &[Hash]) -> SignedCheckpoint {
        SignedCheckpoint::sign(
            "fedanno.t/site-c",
            leaves.len() as u64,
            root(leaves),
            1,
            SiteId::new("site-c").unwrap(),
            &ed25519_key(4),
        )
    }

    fn leaves(n: u8, salt: u8) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i, salt])).collect()
    }

    #[test]
    fn a_growing_log_is_cosigned_and_a_rewritten_one_is_not() {
        let honest = leaves(20, 0);
        let first = cp(&honest[..7]);
        assert_eq!(add_checkpoint(None, 0, &[], &first), Verdict::Cosign);
        assert_eq!(
            add_checkpoint(None, 3, &[], &first),
            Verdict::Conflict { size: 0 }
        );
        let later = cp(&honest);
        let proof = consistency_proof(&honest, 7).unwrap();
        assert_eq!(
            add_checkpoint(Some(&first), 7, &proof, &later),
            Verdict::Cosign
        );
        // The wrong old size: a conflict naming the co-signed size.
        assert_eq!(
            add_checkpoint(Some(&first), 0, &[], &later),
            Verdict::Conflict { size: 7 }
        );
        // The same head again: co-signed again, with no proof.
        assert_eq!(
            add_checkpoint(Some(&first), 7, &[], &first),
            Verdict::Cosign
        );

        // Entry 3 dropped and the log rebuilt, then grown past the co-signed size.
        let mut rewritten = honest.clone();
        rewritten.remove(3);
        let forged = cp(&rewritten);
        let proof = consistency_proof(&rewritten, 7).unwrap();
        assert_eq!(
            add_checkpoint(Some(&first), 7, &proof, &forged),
            Verdict::Contradicts(Contradiction::Inconsistent)
        );
        // Rewritten to the same length: a fork, evident from the two checkpoints.
        let same = cp(&leaves(7, 1));
        assert_eq!(
            add_checkpoint(Some(&first), 7, &[], &same),
            Verdict::Contradicts(Contradiction::Fork)
        );
        // Truncated below the co-signed size.
        let short = cp(&honest[..5]);
        assert_eq!(
            add_checkpoint(Some(&first), 7, &[], &short),
            Verdict::Contradicts(Contradiction::Rollback)
        );
    }

    #[test]
    fn views_without_a_proof_show_forks_and_newer_rollbacks_only() {
        let honest = leaves(10, 0);
        let cosigned = cp(&honest[..6]);
        assert_eq!(
            contradiction(&cosigned, &cp(&leaves(6, 9)), false),
            Some(Contradiction::Fork)
        );
        assert_eq!(contradiction(&cosigned, &cp(&honest[..6]), true), None);
        // An older, smaller checkpoint delivered late is no contradiction; a newer one is.
        assert_eq!(contradiction(&cosigned, &cp(&honest[..4]), false), None);
        assert_eq!(
            contradiction(&cosigned, &cp(&honest[..4]), true),
            Some(Contradiction::Rollback)
        );
        assert_eq!(contradiction(&cosigned, &cp(&honest), true), None);
        let e = Evidence {
            kind: Contradiction::Fork,
            earlier: cosigned.clone(),
            later: cp(&leaves(6, 9)),
        };
        assert!(e.coherent() && e.kind.self_evident());
        let wrong = Evidence {
            kind: Contradiction::Fork,
            earlier: cosigned.clone(),
            later: cosigned,
        };
        assert!(!wrong.coherent());
    }
}
