//! What an audit entry says: [`AuditEvent`], and the canonical, versioned bytes of an entry
//! body ([`EntryBody`]) that the leaf hash covers.
//!
//! An entry body is postcard bytes of `EntryBody { version, seq, timestamp, event }`. The bytes
//! are produced once, stored as they are, and hashed as they are: nothing re-serialises before
//! hashing. Decoding refuses unknown versions, trailing bytes and any encoding that does not
//! re-encode to the same bytes, so one event has exactly one body.
//!
//! **No PHI.** Events hold site ids, peer ids, pseudonymous study ids, message kinds, counters,
//! hashes and policy reasons; never a patient identifier, original UID, date or pixel value.
//! Callers must keep it that way: `reason`/`what` strings are written by our code, not copied
//! from DICOM.

use fedanno_protocol::codec::{self, CodecError};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::merkle::Hash;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::checkpoint::Receipt;
use super::hexser;

/// Version of [`EntryBody`]'s encoding. A change to any type below changes the bytes, so it
/// must come with a new version (and a decoder for the old one).
pub const ENTRY_VERSION: u16 = 1;

/// Largest entry body accepted (reasons and texts are short by contract).
pub const MAX_ENTRY_BYTES: usize = fedanno_protocol::limits::MAX_AUDIT_ENTRY_BYTES;

/// One audited event. The variant decides the entry's `kind` column ([`AuditEvent::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A message left this node (recorded before the bytes were sent).
    Sent {
        to: Option<SiteId>,
        kind: String,
        study: Option<String>,
        round: u64,
        sequence: u64,
        #[serde(with = "hexser::hash")]
        message_hash: Hash,
        bytes: u64,
    },
    /// A message arrived and passed envelope checks.
    Received {
        from: SiteId,
        kind: String,
        study: Option<String>,
        round: u64,
        sequence: u64,
        #[serde(with = "hexser::hash")]
        message_hash: Hash,
        bytes: u64,
    },
    /// The policy gate decided on an outbound message.
    PolicyDecision {
        to: Option<SiteId>,
        kind: String,
        allowed: bool,
        rule: String,
        reasons: Vec<String>,
    },
    /// A connection or membership refusal (`peer`: a PeerId text or a SiteId).
    Refused { peer: String, reason: String },
    /// A message that failed envelope checks.
    Rejected {
        from: String,
        reason: String,
        #[serde(with = "hexser::opt_hash")]
        message_hash: Option<Hash>,
    },
    ReceiptIssued {
        to: SiteId,
        #[serde(with = "hexser::hash")]
        message_hash: Hash,
    },
    ReceiptReceived {
        from: SiteId,
        #[serde(with = "hexser::receipt")]
        receipt: Receipt,
    },
    /// This node signed a checkpoint of its own log at `size` with `root`.
    Checkpoint {
        size: u64,
        #[serde(with = "hexser::hash")]
        root: Hash,
    },
    /// A peer co-signed (witnessed) our checkpoint.
    Cosigned {
        by: SiteId,
        size: u64,
        #[serde(with = "hexser::hash")]
        root: Hash,
    },
    /// Consortium joined, revocation list updated, …
    Membership { what: String },
    /// A reader-study step at this site: launched, joined or declined (with reasons), cases
    /// assigned, a secure sum completed or aborted, a roster refused by the differencing
    /// guard, a release received. Named `study` in JSON and in the `kind` column.
    #[serde(rename = "study")]
    ReaderStudy { study: String, what: String },
    // New variants go last: a variant's position is its encoding in every stored entry.
    /// This site witnessed (co-signed) a member's checkpoint, consistent with the one it
    /// co-signed before.
    Witnessed {
        site: SiteId,
        size: u64,
        #[serde(with = "hexser::hash")]
        root: Hash,
    },
    /// A member's log contradicts a checkpoint a witness co-signed (`contradiction`: fork,
    /// rollback or inconsistent), found by `reported_by` (this site, or a member whose
    /// evidence this site checked as far as the evidence allows).
    Alarm {
        site: SiteId,
        contradiction: String,
        earlier_size: u64,
        later_size: u64,
        reported_by: SiteId,
    },
    /// The policy gate decided on an outbound message, which belongs to `study` if it is a
    /// reader study's (what `audit log --study` shows). Entries written before it existed are
    /// [`AuditEvent::PolicyDecision`]; both are `policy` entries.
    Decision {
        to: Option<SiteId>,
        kind: String,
        study: Option<String>,
        allowed: bool,
        rule: String,
        reasons: Vec<String>,
    },
}

impl AuditEvent {
    /// The entry kind: what `audit log --kind` filters on.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Sent { .. } => "sent",
            AuditEvent::Received { .. } => "received",
            AuditEvent::PolicyDecision { .. } | AuditEvent::Decision { .. } => "policy",
            AuditEvent::Refused { .. } => "refused",
            AuditEvent::Rejected { .. } => "rejected",
            AuditEvent::ReceiptIssued { .. } => "receipt-issued",
            AuditEvent::ReceiptReceived { .. } => "receipt-received",
            AuditEvent::Checkpoint { .. } => "checkpoint",
            AuditEvent::Cosigned { .. } => "cosigned",
            AuditEvent::Membership { .. } => "membership",
            AuditEvent::ReaderStudy { .. } => "study",
            AuditEvent::Witnessed { .. } => "witnessed",
            AuditEvent::Alarm { .. } => "alarm",
        }
    }

    /// The peer the event concerns, if any: what `audit log --peer` filters on.
    pub fn peer(&self) -> Option<String> {
        match self {
            AuditEvent::Sent { to, .. }
            | AuditEvent::PolicyDecision { to, .. }
            | AuditEvent::Decision { to, .. } => to.as_ref().map(|s| s.to_string()),
            AuditEvent::Received { from, .. }
            | AuditEvent::ReceiptIssued { to: from, .. }
            | AuditEvent::ReceiptReceived { from, .. }
            | AuditEvent::Cosigned { by: from, .. }
            | AuditEvent::Witnessed { site: from, .. }
            | AuditEvent::Alarm { site: from, .. } => Some(from.to_string()),
            AuditEvent::Refused { peer, .. } => Some(peer.clone()),
            AuditEvent::Rejected { from, .. } => Some(from.clone()),
            AuditEvent::Checkpoint { .. }
            | AuditEvent::Membership { .. }
            | AuditEvent::ReaderStudy { .. } => None,
        }
    }

    /// The (pseudonymous) study the event belongs to, if any.
    pub fn study(&self) -> Option<String> {
        match self {
            AuditEvent::Sent { study, .. }
            | AuditEvent::Received { study, .. }
            | AuditEvent::Decision { study, .. } => study.clone(),
            AuditEvent::ReaderStudy { study, .. } => Some(study.clone()),
            _ => None,
        }
    }
}

/// The stored body of entry `seq`. `seq` is inside the hashed bytes, so a row moved to another
/// position no longer matches its place in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    pub version: u16,
    pub seq: u64,
    /// Wall clock, Unix seconds (informative only: order is `seq`).
    pub timestamp: u64,
    pub event: AuditEvent,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("entry body is {len} bytes, more than the {MAX_ENTRY_BYTES}-byte limit")]
    TooLarge { len: usize },
    #[error("entry body has unsupported version {0}")]
    UnsupportedVersion(u16),
    #[error("entry body does not decode")]
    Malformed,
    #[error("entry body is not in canonical form")]
    NotCanonical,
}

impl EntryBody {
    pub fn new(seq: u64, timestamp: u64, event: AuditEvent) -> Self {
        Self {
            version: ENTRY_VERSION,
            seq,
            timestamp,
            event,
        }
    }

    /// The canonical bytes (postcard).
    pub fn encode(&self) -> Result<Vec<u8>, BodyError> {
        let bytes = codec::encode(self);
        if bytes.is_empty() {
            return Err(BodyError::Malformed);
        }
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(BodyError::TooLarge { len: bytes.len() });
        }
        Ok(bytes)
    }

    /// Decodes stored bytes, refusing other versions, trailing bytes and non-canonical forms.
    pub fn decode(bytes: &[u8]) -> Result<Self, BodyError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(BodyError::TooLarge { len: bytes.len() });
        }
        // The version leads the body, so an unknown one is named before the rest is read.
        let (version, _) =
            postcard::take_from_bytes::<u16>(bytes).map_err(|_| BodyError::Malformed)?;
        if version != ENTRY_VERSION {
            return Err(BodyError::UnsupportedVersion(version));
        }
        codec::decode(bytes, MAX_ENTRY_BYTES).map_err(|e| match e {
            CodecError::NonCanonical => BodyError::NotCanonical,
            CodecError::Oversized { len, .. } => BodyError::TooLarge { len },
            CodecError::Truncated | CodecError::TrailingBytes { .. } | CodecError::Malformed => {
                BodyError::Malformed
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn samples() -> Vec<AuditEvent> {
        let b = SiteId::new("site-b").unwrap();
        vec![
            AuditEvent::Sent {
                to: Some(b.clone()),
                kind: "witness".into(),
                study: Some("S-1".into()),
                round: 3,
                sequence: 9,
                message_hash: [7; 32],
                bytes: 1234,
            },
            AuditEvent::Received {
                from: b.clone(),
                kind: "checkpoint".into(),
                study: None,
                round: 0,
                sequence: 1,
                message_hash: [8; 32],
                bytes: 99,
            },
            AuditEvent::PolicyDecision {
                to: None,
                kind: "gossip".into(),
                allowed: false,
                rule: "min-sites".into(),
                reasons: vec!["only 2 sites".into()],
            },
            AuditEvent::Refused {
                peer: "12D3KooW".into(),
                reason: "no certificate".into(),
            },
            AuditEvent::Rejected {
                from: "site-c".into(),
                reason: "replayed".into(),
                message_hash: None,
            },
            AuditEvent::ReceiptIssued {
                to: b.clone(),
                message_hash: [1; 32],
            },
            AuditEvent::ReceiptReceived {
                from: b.clone(),
                receipt: Receipt {
                    receiver: b.clone(),
                    message_hash: [2; 32],
                    log_size: 5,
                    log_root: [3; 32],
                    signature: [4; 64],
                },
            },
            AuditEvent::Checkpoint {
                size: 4,
                root: [5; 32],
            },
            AuditEvent::Cosigned {
                by: b,
                size: 4,
                root: [5; 32],
            },
            AuditEvent::Membership {
                what: "joined".into(),
            },
        ]
    }

    #[test]
    fn every_event_round_trips_canonically() {
        for (i, e) in samples().into_iter().enumerate() {
            let body = EntryBody::new(i as u64, 1_700_000_000, e);
            let bytes = body.encode().unwrap();
            assert_eq!(bytes[0], ENTRY_VERSION as u8);
            assert_eq!(EntryBody::decode(&bytes).unwrap(), body);
            // JSON shows hashes as hex.
            let j = serde_json::to_string(&body.event).unwrap();
            assert!(!j.contains("[7,7"), "{j}");
        }
    }

    #[test]
    fn every_variant_keeps_its_index() {
        // The first byte of an event is its variant's position: stored entries depend on it,
        // so a new variant goes last and none moves.
        let h = [0u8; 32];
        let s = || SiteId::new("site-a").unwrap();
        let expected: [(AuditEvent, u8); 3] = [
            (
                AuditEvent::ReaderStudy {
                    study: "s".into(),
                    what: "w".into(),
                },
                10,
            ),
            (
                AuditEvent::Witnessed {
                    site: s(),
                    size: 1,
                    root: h,
                },
                11,
            ),
            (
                AuditEvent::Decision {
                    to: None,
                    kind: "k".into(),
                    study: Some("s".into()),
                    allowed: true,
                    rule: "r".into(),
                    reasons: vec![],
                },
                13,
            ),
        ];
        for (e, index) in expected {
            assert_eq!(fedanno_protocol::codec::encode(&e)[0], index, "{e:?}");
        }
    }

    #[test]
    fn golden_bytes_of_a_checkpoint_entry() {
        // Pinning the encoding: a change here needs a new ENTRY_VERSION.
        let body = EntryBody::new(
            2,
            300,
            AuditEvent::Checkpoint {
                size: 2,
                root: [0xab; 32],
            },
        );
        let mut expected = vec![0x01, 0x02, 0xac, 0x02, 0x07, 0x02];
        expected.extend([0xab; 32]);
        assert_eq!(body.encode().unwrap(), expected);
    }

    #[test]
    fn golden_bytes_and_json_of_a_receipt_entry() {
        // Pinning the encoding of an entry that embeds a receipt: a change here needs a new
        // ENTRY_VERSION.
        let body = EntryBody::new(3, 100, samples().swap_remove(6));
        let mut expected = vec![0x01, 0x03, 0x64, 0x06];
        expected.extend(b"\x06site-b\x06site-b");
        expected.extend([2; 32]);
        expected.push(5);
        expected.extend([3; 32]);
        expected.extend([4; 64]);
        assert_eq!(body.encode().unwrap(), expected);
        assert_eq!(EntryBody::decode(&expected).unwrap(), body);
        // JSON (audit log, export) shows the receipt's hashes and signature as hex.
        let j = serde_json::to_value(&body.event).unwrap();
        let r = &j["receipt_received"]["receipt"];
        assert_eq!(r["message_hash"], "02".repeat(32));
        assert_eq!(r["log_root"], "03".repeat(32));
        assert_eq!(r["signature"], "04".repeat(64));
        assert_eq!(r["receiver"], "site-b");
        assert_eq!(r["log_size"], 5);
        let back: AuditEvent = serde_json::from_value(j).unwrap();
        assert_eq!(back, body.event);
    }

    #[test]
    fn bad_bodies_are_refused() {
        let body = EntryBody::new(0, 1, AuditEvent::Membership { what: "x".into() });
        let mut bytes = body.encode().unwrap();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(EntryBody::decode(&trailing), Err(BodyError::Malformed));
        assert_eq!(
            EntryBody::decode(&bytes[..bytes.len() - 1]),
            Err(BodyError::Malformed)
        );
        bytes[0] = 2;
        assert_eq!(
            EntryBody::decode(&bytes),
            Err(BodyError::UnsupportedVersion(2))
        );
        // An over-long varint for the version (0x81 0x00 = 1) is not canonical.
        let mut long = vec![0x81, 0x00];
        long.extend_from_slice(&body.encode().unwrap()[1..]);
        assert!(EntryBody::decode(&long).is_err());
        let big = EntryBody::new(
            0,
            1,
            AuditEvent::Membership {
                what: "x".repeat(70_000),
            },
        );
        assert!(matches!(big.encode(), Err(BodyError::TooLarge { .. })));
    }
}
