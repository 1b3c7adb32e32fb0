//! Study messages: the coordinator's signed manifest, the sites' decisions and progress, and the
//! secure-aggregation rounds ([`crate::secagg`]) that carry every released statistic.
//!
//! A round is two request-response exchanges between the coordinator and each roster site: `Keys`
//! (the signed roster; the site answers with its signed per-round X25519 key) and `Input` (the
//! signed roster, the key bundle and the job; the site answers with its masked vector). `Statement`
//! is asked by a site of another site: "did you submit under this roster?", the check that stops a
//! coordinator from differencing two rosters (ARCHITECTURE.md, "Secure aggregation"). The job
//! travels as bytes here; its form is [`crate::jobs::Job`] (and a consensus release's body is a
//! [`crate::jobs::ConsensusOutcome`]). The job's SHA-256 is the roster's `input`, so a site knows
//! exactly which computation a roster aggregates.

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use crate::codec::{self, bounded, byte_array};
use crate::crypto;
use crate::ids::SiteId;
use crate::limits::{MAX_NAME_LEN, MAX_RECIPIENTS, MAX_TEXT};
use crate::secagg::{MaskedInput, RoundKey, SignedRoster, SubmissionStatement};
use crate::wire::{Cosignature, SignedCheckpoint, WireError};

/// Signature domain of study manifests.
pub const DOMAIN_MANIFEST: &[u8] = b"fedanno-study-manifest-v1\0";
pub use crate::limits::{MAX_JOB_BYTES, MAX_KEYS, MAX_MANIFEST_BYTES, MAX_READ_COUNTS};

/// A study manifest (TOML text) signed by its coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub study: String,
    #[serde(deserialize_with = "bounded::string::<_, MAX_MANIFEST_BYTES>")]
    pub text: String,
    pub coordinator: SiteId,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

fn manifest_message(study: &str, text: &str, coordinator: &SiteId) -> Vec<u8> {
    codec::encode(&(study, text, coordinator))
}

impl SignedManifest {
    pub fn sign(study: &str, text: &str, coordinator: SiteId, key: &Ed25519KeyPair) -> Self {
        let signature = crypto::sign(
            key,
            DOMAIN_MANIFEST,
            &manifest_message(study, text, &coordinator),
        );
        Self {
            study: study.to_owned(),
            text: text.to_owned(),
            coordinator,
            signature,
        }
    }

    pub fn verify(&self, coordinator_key: &[u8; 32]) -> Result<(), WireError> {
        let m = manifest_message(&self.study, &self.text, &self.coordinator);
        if crypto::verify(coordinator_key, DOMAIN_MANIFEST, &m, &self.signature) {
            Ok(())
        } else {
            Err(WireError::BadSignature)
        }
    }

    /// SHA-256 of the signed content (what a decision or a report refers to).
    pub fn hash(&self) -> [u8; 32] {
        crypto::sha256(&manifest_message(
            &self.study,
            &self.text,
            &self.coordinator,
        ))
    }
}

/// Reads done at a site for a study, by reader kind (annotation metadata, no case data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCount {
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub kind: String,
    pub readers: u64,
    pub reads: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderStudyRequest {
    /// Coordinator → site: a study to consider.
    Announce { manifest: SignedManifest },
    /// Site → coordinator: joined or declined (a refusal carries nothing else).
    Decision {
        #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
        study: String,
        manifest_hash: [u8; 32],
        joined: bool,
    },
    /// Site → coordinator: cases assigned and reads done (counts only).
    Progress {
        #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
        study: String,
        cases: u64,
        #[serde(deserialize_with = "bounded::vec::<_, ReadCount, MAX_READ_COUNTS>")]
        reads: Vec<ReadCount>,
    },
    /// Coordinator → site: a round's roster; the answer is the site's signed round key.
    Keys { roster: SignedRoster },
    /// Coordinator → site: the key bundle and the job; the answer is the masked vector.
    Input {
        roster: SignedRoster,
        #[serde(deserialize_with = "bounded::vec::<_, RoundKey, MAX_KEYS>")]
        keys: Vec<RoundKey>,
        #[serde(deserialize_with = "bounded::bytes::<_, MAX_JOB_BYTES>")]
        job: Vec<u8>,
    },
    /// Site → site: did you submit a masked input under this roster?
    Statement { roster_hash: [u8; 32] },
    /// Coordinator → site: a released result (consensus parameters, the report).
    Release {
        #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
        study: String,
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        what: String,
        #[serde(deserialize_with = "bounded::bytes::<_, MAX_JOB_BYTES>")]
        body: Vec<u8>,
    },
    /// Coordinator → site, before the report is released: have your audit log co-signed by
    /// your witnesses now and show the checkpoint and its co-signatures.
    Witness {
        #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
        study: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderStudyResponse {
    Key {
        key: RoundKey,
    },
    Masked {
        input: MaskedInput,
    },
    Statement {
        statement: SubmissionStatement,
    },
    Accepted,
    /// The site's fresh checkpoint and the co-signatures its witnesses gave it.
    Witnessed {
        checkpoint: SignedCheckpoint,
        #[serde(deserialize_with = "bounded::vec::<_, Cosignature, MAX_RECIPIENTS>")]
        cosignatures: Vec<Cosignature>,
    },
}

impl ReaderStudyRequest {
    /// The study a request belongs to, where it names one.
    pub fn study(&self) -> Option<&str> {
        match self {
            ReaderStudyRequest::Announce { manifest } => Some(&manifest.study),
            ReaderStudyRequest::Decision { study, .. }
            | ReaderStudyRequest::Progress { study, .. }
            | ReaderStudyRequest::Release { study, .. }
            | ReaderStudyRequest::Witness { study } => Some(study),
            ReaderStudyRequest::Keys { roster } | ReaderStudyRequest::Input { roster, .. } => {
                Some(&roster.roster.study)
            }
            ReaderStudyRequest::Statement { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn key() -> Ed25519KeyPair {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap()
    }

    #[test]
    fn manifests_verify_and_tampering_is_caught() {
        let k = key();
        let pk = crypto::public_key(&k);
        let coord = SiteId::new("coord").unwrap();
        let m = SignedManifest::sign("s1", "title = \"x\"\n", coord.clone(), &k);
        m.verify(&pk).unwrap();
        let mut t = m.clone();
        t.text.push(' ');
        assert_eq!(t.verify(&pk), Err(WireError::BadSignature));
        let mut t = m.clone();
        t.study = "s2".into();
        assert_eq!(t.verify(&pk), Err(WireError::BadSignature));
        let mut t = m.clone();
        t.coordinator = SiteId::new("other").unwrap();
        assert_eq!(t.verify(&pk), Err(WireError::BadSignature));
        assert_eq!(
            t.verify(&crypto::public_key(&key())),
            Err(WireError::BadSignature)
        );
        assert_ne!(m.hash(), t.hash());
    }

    #[test]
    fn oversized_manifest_is_refused_at_decode() {
        let k = key();
        let big = "x".repeat(MAX_MANIFEST_BYTES + 1);
        let m = SignedManifest::sign("s", &big, SiteId::new("c").unwrap(), &k);
        let req = ReaderStudyRequest::Announce { manifest: m };
        let bytes = codec::encode(&req);
        assert!(codec::decode::<ReaderStudyRequest>(&bytes, usize::MAX / 2).is_err());
    }
}
