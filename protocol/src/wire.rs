//! The application messages carried inside envelopes (request-response and gossip), and the
//! signed audit artefacts they carry: checkpoints, co-signatures and receipts.
//!
//! Messages are versioned by the envelope header (`PROTOCOL_VERSION`); new variants are only ever
//! appended, so a variant's postcard index never changes within a version. (Version 2 removed
//! the unused `Request::Hello`, `Response::Hello` and `Response::Ack`, renumbering the variants
//! after them.) Every free-text field is bounded at decode ([`MAX_TEXT`]).
//!
//! Checkpoints use the C2SP tlog-checkpoint text (`<origin>\n<size>\n<base64 root>\n`) signed bare
//! with Ed25519, as in a C2SP signed note, so standard note verifiers accept them
//! ([`SignedCheckpoint::to_signed_note`]). The checkpoint's `timestamp` is *not* signed (the
//! C2SP format has no time); freshness comes from witnesses' co-signatures, which sign a time.

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cert::Certificate;
use crate::codec::{self, CodecError, bounded, byte_array};
use crate::crypto::{self, DOMAIN_RECEIPT};
use crate::ids::SiteId;
use crate::limits::{
    MAX_ADDRESSES, MAX_AUDIT_ENTRY_BYTES, MAX_AUDIT_HEADS, MAX_AUDIT_PAGE, MAX_ENVELOPE_BYTES,
    MAX_GOSSIP_BYTES, MAX_PROOF_HASHES, MAX_RECIPIENTS, MAX_TEXT,
};
use crate::merkle;

/// Why a wire message or a signed artefact was refused. Never contains payload bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("malformed")]
    Malformed,
    #[error("signature does not verify")]
    BadSignature,
}

/// Why a peer refused a request. A closed set: no free text travels back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    PolicyDenied,
    NotAMember,
    Malformed,
    Replay,
    Unsupported,
    Busy,
    /// A witness refused a checkpoint that contradicts one it co-signed.
    Inconsistent,
    /// The sender's role does not permit this request (an auditor asking for anything but
    /// audit material).
    NotPermitted,
}

/// Request-response, point to point. (Membership is proven by [`Frame::Hello`], before any
/// request.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Ask a peer for its latest signed audit checkpoint.
    GetCheckpoint,
    /// C2SP tlog-witness add-checkpoint: ask a peer to co-sign our checkpoint, with a
    /// consistency proof from `old_size`, the size that witness last co-signed (0 and no proof
    /// the first time). A witness that co-signed another size answers
    /// [`Response::WitnessConflict`] with it.
    Witness {
        old_size: u64,
        #[serde(deserialize_with = "bounded::vec::<_, [u8; 32], MAX_PROOF_HASHES>")]
        proof: Vec<[u8; 32]>,
        checkpoint: SignedCheckpoint,
    },
    /// A coordinator's notice to one site; text only, no PHI by contract.
    Notice {
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        topic: String,
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        body: String,
    },
    /// Study coordination and secure-aggregation rounds.
    ReaderStudy(Box<crate::reader_study::ReaderStudyRequest>),
    /// An auditor fetches audit material (the only request an auditor may make).
    Audit(AuditQuery),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Checkpoint {
        checkpoint: SignedCheckpoint,
    },
    Cosigned {
        cosignature: Cosignature,
    },
    Refused {
        reason: RefusalReason,
    },
    /// The receiver's signed receipt for the request (ARCHITECTURE.md, "Audit log").
    Receipt {
        receipt: Receipt,
    },
    /// A study exchange's answer (round key, masked vector, statement).
    ReaderStudy(crate::reader_study::ReaderStudyResponse),
    /// The witness last co-signed this size of the log, not the request's `old_size`: ask
    /// again with a proof from it (tlog-witness's 409 Conflict).
    WitnessConflict {
        size: u64,
    },
    /// Audit material for an auditor.
    Audit(AuditAnswer),
}

/// What an auditor may fetch from a site; the site's policy decides which (`audit-proof`
/// for heads and proofs, `audit-entries` for entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditQuery {
    /// A freshly signed checkpoint, the site's certificate, the co-signatures it holds of its
    /// checkpoints and the checkpoints of other logs it co-signed last.
    Heads,
    /// Entries `from..from + count` (at most [`MAX_AUDIT_PAGE`]; the answer may hold fewer).
    Entries { from: u64, count: u32 },
    /// A consistency proof from the tree of `old_size` entries to that of `new_size`.
    Consistency { old_size: u64, new_size: u64 },
    /// An inclusion proof of entry `index` in the tree of `size` entries.
    Inclusion { index: u64, size: u64 },
}

/// A site's answer to an [`AuditQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAnswer {
    Heads(Box<AuditHeads>),
    Entries {
        #[serde(deserialize_with = "bounded::vec::<_, AuditEntry, MAX_AUDIT_PAGE>")]
        entries: Vec<AuditEntry>,
    },
    Proof {
        #[serde(deserialize_with = "bounded::vec::<_, [u8; 32], MAX_PROOF_HASHES>")]
        hashes: Vec<[u8; 32]>,
    },
}

/// A site's heads for an auditor: a freshly signed checkpoint, its certificate, the newest
/// co-signatures it holds of its checkpoints, and the checkpoints of other logs it co-signed
/// last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHeads {
    pub checkpoint: SignedCheckpoint,
    pub certificate: Certificate,
    #[serde(deserialize_with = "bounded::vec::<_, CosignedHead, MAX_AUDIT_HEADS>")]
    pub cosignatures: Vec<CosignedHead>,
    #[serde(deserialize_with = "bounded::vec::<_, SignedCheckpoint, MAX_AUDIT_HEADS>")]
    pub witnessed: Vec<SignedCheckpoint>,
}

/// A co-signature a site holds of one of its checkpoints (size and root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignedHead {
    pub size: u64,
    pub root: [u8; 32],
    pub cosignature: Cosignature,
}

/// One audit entry as an auditor receives it: its canonical body, or only its leaf hash when
/// the entry is outside the auditor's scope (withheld); and the site's signature of the tree
/// head after it, which verifies either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(deserialize_with = "bounded::opt_bytes::<_, MAX_AUDIT_ENTRY_BYTES>")]
    pub body: Option<Vec<u8>>,
    pub leaf: [u8; 32],
    #[serde(with = "codec::byte_array")]
    pub signature: [u8; 64],
}

/// Published on a gossip topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    Checkpoint {
        checkpoint: SignedCheckpoint,
    },
    Notice {
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        topic: String,
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        body: String,
    },
    /// The consortium root's newest revocation list (`RevocationList::to_bytes`), passed on
    /// from node to node so that a site that missed the file still learns it: its root
    /// signature is what counts, not who passed it on.
    Revocations {
        #[serde(deserialize_with = "bounded::bytes::<_, MAX_GOSSIP_BYTES>")]
        list: Vec<u8>,
    },
    /// Where members listen, as the sender knows it (its own addresses, and those of the
    /// members it is connected to): hints for dialing, each ending in the member's `/p2p/`
    /// peer id. A wrong hint costs a failed dial; the membership proof decides who is who.
    Addresses {
        #[serde(deserialize_with = "bounded::vec::<_, MemberAddresses, MAX_RECIPIENTS>")]
        members: Vec<MemberAddresses>,
    },
    /// A witness co-signed a member's checkpoint: what it saw, so that the views of all
    /// witnesses meet (a log shown at one size with two roots is caught where they do).
    Cosigned {
        checkpoint: SignedCheckpoint,
        cosignature: Cosignature,
    },
    /// A witness found a member's log contradicting a checkpoint it had co-signed.
    Alarm {
        evidence: crate::witness::Evidence,
    },
}

/// The listen addresses of one member (multiaddress text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddresses {
    pub site: SiteId,
    #[serde(deserialize_with = "bounded::vec::<_, String, MAX_ADDRESSES>")]
    pub addrs: Vec<String>,
}

/// One request-response frame on the wire. A connection starts with a membership proof
/// ([`crate::membership`]): the dialer's `Hello`, answered by the listener's `Challenge`, then
/// the dialer's `Proof`, answered by the listener's `Welcome`. Only proven members exchange
/// `Envelope`s; a refusal carries only its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Hello {
        certificate: Certificate,
        #[serde(with = "codec::byte_array")]
        nonce: [u8; 32],
    },
    Envelope {
        #[serde(deserialize_with = "bounded::bytes::<_, MAX_ENVELOPE_BYTES>")]
        bytes: Vec<u8>,
    },
    Refused {
        reason: RefusalReason,
    },
    Challenge {
        #[serde(with = "codec::byte_array")]
        nonce: [u8; 32],
    },
    Proof {
        #[serde(with = "codec::byte_array")]
        signature: [u8; 64],
    },
    /// The listener's proof, and what a newly proven member needs to join the rest: where the
    /// listener and the members it knows listen, and the newest revocation list it holds.
    Welcome {
        certificate: Certificate,
        #[serde(with = "codec::byte_array")]
        signature: [u8; 64],
        #[serde(deserialize_with = "bounded::vec::<_, MemberAddresses, MAX_RECIPIENTS>")]
        members: Vec<MemberAddresses>,
        #[serde(deserialize_with = "bounded::opt_bytes::<_, MAX_GOSSIP_BYTES>")]
        revocations: Option<Vec<u8>>,
    },
}

macro_rules! wire_bytes {
    ($t:ty, $max:expr) => {
        impl $t {
            pub fn to_bytes(&self) -> Vec<u8> {
                codec::encode(self)
            }
            /// Decodes one message of at most the limit's bytes.
            pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
                codec::decode(b, $max)
            }
        }
    };
}
wire_bytes!(Request, MAX_ENVELOPE_BYTES);
wire_bytes!(Response, MAX_ENVELOPE_BYTES);
wire_bytes!(Gossip, MAX_GOSSIP_BYTES);
// An envelope plus the frame's own few bytes of framing.
wire_bytes!(Frame, MAX_ENVELOPE_BYTES + 64);

impl Frame {
    /// The length of `Frame::Envelope` around an envelope of `envelope_len` bytes (variant
    /// byte, varint length, bytes): what both ends count as a message's size on the wire, so
    /// that a `sent` entry and the matching `received` entry name the same number.
    pub fn envelope_frame_len(envelope_len: usize) -> u64 {
        let mut varint = 1;
        let mut n = envelope_len >> 7;
        while n > 0 {
            varint += 1;
            n >>= 7;
        }
        1 + varint + envelope_len as u64
    }
}

/// A signed audit-log checkpoint (C2SP tlog-checkpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The log's unique name, e.g. `fedanno.<consortium>/<site>`; no control characters.
    #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// When it was signed (Unix seconds); informational, not covered by the signature.
    pub timestamp: u64,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
    pub signer: SiteId,
}

impl SignedCheckpoint {
    /// The checkpoint body: `{origin}\n{size}\n{base64 root}\n`.
    pub fn text(&self) -> String {
        merkle::checkpoint_text(&self.origin, self.size, &self.root)
    }

    pub fn sign(
        origin: &str,
        size: u64,
        root: [u8; 32],
        timestamp: u64,
        signer: SiteId,
        key: &Ed25519KeyPair,
    ) -> Self {
        let signature = crypto::sign(
            key,
            b"",
            merkle::checkpoint_text(origin, size, &root).as_bytes(),
        );
        Self {
            origin: origin.to_owned(),
            size,
            root,
            timestamp,
            signature,
            signer,
        }
    }

    /// Checks the origin's form and the signature by `key` over [`Self::text`].
    pub fn verify(&self, key: &[u8; 32]) -> Result<(), WireError> {
        if !valid_origin(&self.origin) {
            return Err(WireError::Malformed);
        }
        if crypto::verify(key, b"", self.text().as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(WireError::BadSignature)
        }
    }

    /// The checkpoint as a C2SP signed note, with the origin as the key name: text, a blank
    /// line, and the signature line ([`merkle::note_signature_line`]).
    pub fn to_signed_note(&self, key: &[u8; 32]) -> String {
        format!(
            "{}\n{}",
            self.text(),
            merkle::note_signature_line(&self.origin, key, &self.signature)
        )
    }
}

/// A C2SP origin: non-empty, at most [`MAX_TEXT`] bytes, no control characters (so no newline
/// and no NUL, which keeps the bare-signed text out of every `fedanno-*\0` signature domain).
pub fn valid_origin(origin: &str) -> bool {
    !origin.is_empty() && origin.len() <= MAX_TEXT && !origin.chars().any(char::is_control)
}

/// A witness's co-signature of a checkpoint: C2SP tlog-cosignature `cosignature/v1`, an
/// Ed25519 signature over `"cosignature/v1\ntime <timestamp>\n"` followed by the checkpoint
/// body. It states that, as of `timestamp`, this is the largest consistent tree head of the
/// log the witness has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosignature {
    pub witness: SiteId,
    pub timestamp: u64,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

impl Cosignature {
    pub fn sign(
        checkpoint: &SignedCheckpoint,
        witness: SiteId,
        timestamp: u64,
        key: &Ed25519KeyPair,
    ) -> Self {
        let signature = crypto::sign(key, b"", &cosign_message(checkpoint, timestamp));
        Self {
            witness,
            timestamp,
            signature,
        }
    }

    pub fn verify(&self, checkpoint: &SignedCheckpoint, key: &[u8; 32]) -> Result<(), WireError> {
        if !valid_origin(&checkpoint.origin) || self.timestamp > i64::MAX as u64 {
            return Err(WireError::Malformed);
        }
        let msg = cosign_message(checkpoint, self.timestamp);
        if crypto::verify(key, b"", &msg, &self.signature) {
            Ok(())
        } else {
            Err(WireError::BadSignature)
        }
    }

    /// The co-signature as a C2SP note signature line under the witness's key name `name`:
    /// `"— <name> base64(key id ‖ timestamp ‖ signature)"`, key id with type byte 0x04.
    pub fn note_line(&self, name: &str, public_key: &[u8; 32]) -> String {
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&merkle::typed_key_id(name, 0x04, public_key));
        blob.extend_from_slice(&self.timestamp.to_be_bytes());
        blob.extend_from_slice(&self.signature);
        format!("\u{2014} {name} {}\n", merkle::base64(&blob))
    }
}

/// The `cosignature/v1` signed message. A checkpoint body cannot start with it: its second
/// line would be a size, never `time …`.
fn cosign_message(checkpoint: &SignedCheckpoint, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{}", checkpoint.text()).into_bytes()
}

/// The receiver's signed commitment that it logged a message (ARCHITECTURE.md, "Audit log"), over
/// `"fedanno-receipt-v1\0" ‖ postcard(receiver, message_hash, log_size, log_root)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub receiver: SiteId,
    pub message_hash: [u8; 32],
    pub log_size: u64,
    pub log_root: [u8; 32],
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

impl Receipt {
    pub fn sign(
        receiver: SiteId,
        message_hash: [u8; 32],
        log_size: u64,
        log_root: [u8; 32],
        key: &Ed25519KeyPair,
    ) -> Self {
        let msg = codec::encode(&(&receiver, &message_hash, log_size, &log_root));
        let signature = crypto::sign(key, DOMAIN_RECEIPT, &msg);
        Self {
            receiver,
            message_hash,
            log_size,
            log_root,
            signature,
        }
    }

    pub fn verify(&self, key: &[u8; 32]) -> Result<(), WireError> {
        let msg = codec::encode(&(
            &self.receiver,
            &self.message_hash,
            self.log_size,
            &self.log_root,
        ));
        if crypto::verify(key, DOMAIN_RECEIPT, &msg, &self.signature) {
            Ok(())
        } else {
            Err(WireError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests;
