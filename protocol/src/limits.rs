//! Explicit size limits, in one place (rustls style): every decoder in fedanno checks a declared
//! length against one of these before allocating. Nothing here is hidden elsewhere, with one
//! exception: the secure-aggregation limits (`MAX_DIM`, `MAX_ROSTER`, `MIN_ROSTER` and the
//! message sizes) are part of [`crate::secagg`]'s public API and live there. The reader-study
//! limits below are re-exported by [`crate::reader_study`] and [`crate::jobs`].

/// Longest site identifier, in bytes.
pub const MAX_SITE_ID_LEN: usize = 32;

/// Longest DICOM UID (PS3.5 §9.1), in bytes.
pub const MAX_UID_LEN: usize = 64;

/// Longest patient pseudonym, in bytes (fits DICOM VR LO).
pub const MAX_PATIENT_PSEUDONYM_LEN: usize = 64;

/// Largest encoded envelope (request, response or gossip), in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// Largest encoded envelope carried by gossip, in bytes.
pub const MAX_GOSSIP_BYTES: usize = 256 * 1024;

/// Most recipients one sealed envelope may name.
pub const MAX_RECIPIENTS: usize = 256;

/// Longest free text field (notice topic/body, revocation reason, checkpoint origin), in bytes.
pub const MAX_TEXT: usize = 4096;

/// Largest encoded certificate or certificate request, in bytes.
pub const MAX_CERT_BYTES: usize = 4096;

/// Most entries in one revocation list.
pub const MAX_REVOKED: usize = 100_000;

/// Width of the per-sender replay window, in sequence numbers (a multiple of 64).
pub const REPLAY_WINDOW: u64 = 1024;

/// Largest accepted difference between a message's timestamp and the receiver's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Longest consortium name, display name or study id, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest libp2p peer id carried in a certificate, in bytes (a multihash of an Ed25519 key is
/// 38 bytes; RSA identities inline nothing larger than a 32-byte SHA-256 digest either).
pub const MAX_PEER_ID_LEN: usize = 128;

/// Longest revocation reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// Largest encoded revocation list, in bytes: room for [`MAX_REVOKED`] entries with short reasons.
pub const MAX_REVOCATION_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Largest consortium information file (postcard or text form), in bytes.
pub const MAX_CONSORTIUM_INFO_BYTES: usize = 1024;

/// Most distinct senders a [`crate::envelope::ReplayGuard`] tracks by default.
pub const MAX_REPLAY_SENDERS: usize = 4096;

/// Most roles one certificate may carry (each role at most once).
pub const MAX_ROLES: usize = 3;

// Reader studies: manifests, progress, jobs and releases.

/// Largest manifest text.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Largest job or release body.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;
/// Most reader kinds in a progress report.
pub const MAX_READ_COUNTS: usize = 16;
/// Most round keys in a bundle (the roster limit).
pub const MAX_KEYS: usize = crate::secagg::MAX_ROSTER;

/// Most raters (readers) in one job's parameters: a study names at most 32 readers, because
/// binary STAPLE's pattern keys hold 32 raters.
pub const MAX_RATERS: usize = 32;

/// Most entries of a per-class vector (class priors, label priors, label counts): a study has at
/// most 32 labels plus background, or 32 categories.
pub const MAX_CLASSES: usize = 64;

/// Most entries of a flattened confusion tensor: multi-label STAPLE has R × (L + 1) × L entries, at
/// most 32 × 34 × 33 = 35 904; Dawid–Skene R × K × K, at most 32 × 32 × 32 = 32 768. At 8 bytes
/// each this stays well below [`MAX_JOB_BYTES`].
pub const MAX_PARAMS: usize = 1 << 16;

/// The most bytes a request frame may have before its sender proved membership: a `Hello`
/// (a certificate and a nonce, well under 1 KiB) or a `Proof`.
pub const MAX_UNPROVEN_FRAME: usize = 4 * 1024;

/// The most listen addresses one member's entry in an address announcement may carry.
pub const MAX_ADDRESSES: usize = 8;

/// Hashes in an inclusion or consistency proof: at most two per level of a tree of 2^64
/// leaves.
pub const MAX_PROOF_HASHES: usize = 128;

/// Entries in one page of an auditor's fetch ([`crate::wire::AuditQuery::Entries`]).
pub const MAX_AUDIT_PAGE: usize = 256;

/// The most bytes one audit entry body may have (the node's own limit for what it logs).
pub const MAX_AUDIT_ENTRY_BYTES: usize = 64 * 1024;

/// Co-signatures or checkpoints in one answer to an auditor ([`crate::wire::AuditAnswer`]).
pub const MAX_AUDIT_HEADS: usize = 256;
