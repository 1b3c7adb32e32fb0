//! The tamper-evident audit log: an RFC 6962/9162 Merkle log of everything this node sends,
//! receives, refuses or decides, kept in SQLite by the store thread (`store/audit.rs`).
//!
//! This module owns what an entry says ([`event`]), the signed statements about the log
//! ([`checkpoint`]: C2SP tlog-checkpoints, per-entry signed heads, receipts), the
//! [`AuditLog`] handle the rest of the node records through, and verification ([`verify`]).
//! The Merkle math is `fedanno_protocol::merkle` (pure); SQL lives only in the store.
//!
//! **One origin per log.** Every checkpoint of a site's log carries the same C2SP origin
//! ([`log_origin`]): the origin of the log's first checkpoint once it has one; before that,
//! `fedanno.<consortium>/<site>` for the consortium the site joined, or the fixed
//! `fedanno.local/<site>` for a site that has joined none. The daemon, `fedanno audit
//! checkpoint` and `fedanno bench audit` all open the log through [`AuditLog::open`], and
//! `audit verify` refuses a checkpoint of the site under any other origin.
//!
//! It must not: put PHI into an entry (ids, pseudonyms, hashes and reasons only), re-encode a
//! body before hashing it, or let a caller send bytes before [`AuditLog::record`] returned
//! `Ok` (the entry is committed with fsync by then).

pub mod bench;
pub mod bundle;
pub mod checkpoint;
pub mod event;
pub mod hexser;
pub mod verify;

use std::path::Path;
use std::sync::Arc;

use fedanno_protocol::crypto;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::merkle::{self, Hash};
use fedanno_protocol::wire::Cosignature;
use fedanno_protocol::witness::Evidence;
use ring::signature::Ed25519KeyPair;
use serde::Serialize;
use thiserror::Error;

use crate::network::consortium;
use crate::site::Site;
use crate::site::clock::now;
use crate::site::config::KEYS_DIR;
use crate::site::identity;
use crate::site::store::Store;
pub use crate::site::store::{
    AuditEntry, AuditFilter, AuditStoreError, RawAuditRow, RawCheckpointRow, RawNode,
};
pub use checkpoint::{Receipt, SignedCheckpoint};
pub use event::{AuditEvent, EntryBody};
pub use verify::{Problem, VerifyReport};

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] AuditStoreError),
    #[error("cannot read the public signing key {path}: {reason}")]
    PublicKey { path: String, reason: String },
    #[error(
        "the proof built from the store does not verify (the log is damaged; run `fedanno audit verify`)"
    )]
    ProofMismatch,
}

/// The node's audit log: where every audited event is recorded and checkpoints are signed.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
    signer: Arc<Ed25519KeyPair>,
    origin: String,
    site: SiteId,
}

/// An inclusion proof, ready to hand to an auditor.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub size: u64,
    #[serde(with = "hexser::hash")]
    pub leaf_hash: Hash,
    #[serde(with = "hexser::hash")]
    pub root: Hash,
    #[serde(serialize_with = "hex_list")]
    pub proof: Vec<Hash>,
    pub proof_bytes: usize,
}

/// A consistency proof between two sizes of the log.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    #[serde(with = "hexser::hash")]
    pub old_root: Hash,
    #[serde(with = "hexser::hash")]
    pub new_root: Hash,
    #[serde(serialize_with = "hex_list")]
    pub proof: Vec<Hash>,
    pub proof_bytes: usize,
}

fn hex_list<S: serde::Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|h| crate::site::identity::hex(h)))
}

/// The log's origin line (C2SP): `fedanno.<consortium>/<site>`.
pub fn origin(consortium: &str, site: &SiteId) -> String {
    format!("fedanno.{consortium}/{site}")
}

/// What stands for the consortium in the origin of a site that has joined none.
pub const UNJOINED: &str = "local";

/// The one origin of `site`'s log in `store` (see the module notes): its first own stored
/// checkpoint's origin, else [`origin`] of `consortium` (the one the site joined), else of
/// [`UNJOINED`].
pub async fn log_origin(
    store: &Store,
    site: &SiteId,
    consortium: Option<&str>,
) -> Result<String, AuditError> {
    let first = store
        .audit_raw_checkpoints()
        .await?
        .into_iter()
        .find(|row| row.is_own(site));
    Ok(match first {
        Some(row) => row.origin,
        None => origin(consortium.unwrap_or(UNJOINED), site),
    })
}

/// The name of the consortium the site in `site_dir` joined (`consortium join` installed its
/// certificate and `consortium/consortium.info`, the files the daemon loads), or `None`.
pub fn joined_consortium(site_dir: &Path) -> anyhow::Result<Option<String>> {
    let dir = site_dir.join(consortium::SITE_DIR);
    if !dir.join(consortium::CERT_FILE).exists() {
        return Ok(None);
    }
    Ok(Some(
        consortium::read_info(&dir.join(consortium::INFO_FILE))?.name,
    ))
}

/// Reads a site's public signing key: `<keys>/signing.pub`, 64 hex digits.
pub fn read_public_key(path: &Path) -> Result<[u8; 32], AuditError> {
    let err = |reason: String| AuditError::PublicKey {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    hexser::parse_hex::<32>(&text).ok_or_else(|| err("not 64 hex digits".into()))
}

impl AuditLog {
    /// The site's log under its one origin ([`log_origin`]); `consortium` is the one the site
    /// joined, if any.
    pub async fn open(
        store: Store,
        signer: Arc<Ed25519KeyPair>,
        site: SiteId,
        consortium: Option<&str>,
    ) -> Result<Self, AuditError> {
        let origin = log_origin(&store, &site, consortium).await?;
        Ok(Self::new(store, signer, origin, site))
    }

    /// The log of the site in `site`'s directory, signed with its key, under its one origin
    /// (for the consortium it joined, if any): what `fedanno audit checkpoint` and `fedanno
    /// bench audit` sign with. The daemon opens the same log with [`AuditLog::open`].
    pub async fn open_site(site: &Site) -> anyhow::Result<Self> {
        let keys = identity::load(&site.dir.join(KEYS_DIR))?;
        let consortium = joined_consortium(&site.dir)?;
        Ok(Self::open(
            site.store.clone(),
            Arc::new(keys.signing),
            site.config.site.id.clone(),
            consortium.as_deref(),
        )
        .await?)
    }

    /// A log under an origin the caller chose (tests and tools; a site's own log is opened
    /// with [`AuditLog::open`]).
    pub fn new(store: Store, signer: Arc<Ed25519KeyPair>, origin: String, site: SiteId) -> Self {
        Self {
            store,
            signer,
            origin,
            site,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn public_key(&self) -> [u8; 32] {
        crypto::public_key(&self.signer)
    }

    /// Appends `event`. When this returns `Ok`, the entry is committed (fsync); only then may
    /// the caller send the bytes it describes.
    pub async fn record(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        Ok(self
            .store
            .audit_append(event, now(), self.signer.clone())
            .await?)
    }

    /// Signs the current head as a C2SP checkpoint, stores it and records a `checkpoint`
    /// entry, in one transaction.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let (size, root) = self.store.audit_head().await?;
        let cp = SignedCheckpoint::sign(
            &self.origin,
            size,
            root,
            now(),
            self.site.clone(),
            &self.signer,
        );
        self.store
            .audit_append_checkpoint(cp.clone(), cp.timestamp, self.signer.clone())
            .await?;
        Ok(cp)
    }

    /// Co-signs nothing itself: records that this site witnessed `cp` and keeps it as the
    /// latest checkpoint of its log, in one transaction.
    pub async fn witnessed(&self, cp: SignedCheckpoint) -> Result<AuditEntry, AuditError> {
        let event = AuditEvent::Witnessed {
            site: cp.signer.clone(),
            size: cp.size,
            root: cp.root,
        };
        Ok(self
            .store
            .witness_accept(cp, event, now(), self.signer.clone())
            .await?)
    }

    /// Records an alarm and its evidence (once per contradicting checkpoint); `None` when it
    /// was already recorded.
    pub async fn alarm(
        &self,
        evidence: Evidence,
        reported_by: SiteId,
    ) -> Result<Option<AuditEntry>, AuditError> {
        let event = AuditEvent::Alarm {
            site: evidence.later.signer.clone(),
            contradiction: evidence.kind.as_str().to_string(),
            earlier_size: evidence.earlier.size,
            later_size: evidence.later.size,
            reported_by: reported_by.clone(),
        };
        Ok(self
            .store
            .witness_alarm(evidence, reported_by, event, now(), self.signer.clone())
            .await?)
    }

    /// Keeps `by`'s co-signature of our checkpoint `cp` with its `cosigned` entry.
    pub async fn keep_cosignature(
        &self,
        cp: SignedCheckpoint,
        cosignature: Cosignature,
    ) -> Result<AuditEntry, AuditError> {
        let event = AuditEvent::Cosigned {
            by: cosignature.witness.clone(),
            size: cp.size,
            root: cp.root,
        };
        Ok(self
            .store
            .audit_keep_cosignature(cp, cosignature, event, now(), self.signer.clone())
            .await?)
    }

    /// The checkpoint of `site`'s log this site co-signed last.
    pub async fn witness_latest(
        &self,
        site: &SiteId,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        Ok(self.store.witness_latest(site).await?)
    }

    /// The largest size of our log that `witness` co-signed (0 if none).
    pub async fn cosigned_size(&self, witness: &SiteId) -> Result<u64, AuditError> {
        Ok(self.store.audit_cosigned_size(witness).await?)
    }

    /// The largest size of our log a quorum of `quorum` witnesses co-signed.
    pub async fn witnessed_size(&self, quorum: u32) -> Result<Option<u64>, AuditError> {
        Ok(self.store.audit_witnessed_size(quorum).await?)
    }

    /// Every alarm this site raised or heard.
    pub async fn alarms(&self) -> Result<Vec<crate::site::store::AlarmRow>, AuditError> {
        Ok(self.store.witness_alarms().await?)
    }

    /// Entries from `from` on, at most `count`, as stored (for an auditor's fetch).
    pub async fn raw_entries(
        &self,
        from: u64,
        count: u32,
    ) -> Result<Vec<crate::site::store::RawAuditRow>, AuditError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        Ok(self.store.audit_raw_entries(from, count).await?)
    }

    /// The co-signatures this site's checkpoints received: (size, root, co-signature).
    pub async fn cosignatures(&self) -> Result<Vec<(u64, Hash, Cosignature)>, AuditError> {
        Ok(self.store.audit_cosignatures().await?)
    }

    /// The checkpoint of each other log this site co-signed last.
    pub async fn all_witnessed(
        &self,
    ) -> Result<Vec<fedanno_protocol::wire::SignedCheckpoint>, AuditError> {
        Ok(self.store.witness_all_latest().await?)
    }

    /// The current size and root of the log.
    pub async fn head(&self) -> Result<(u64, Hash), AuditError> {
        Ok(self.store.audit_head().await?)
    }

    /// Verifies the whole log against this site's own public key.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify::verify(&self.store, &self.public_key(), &self.site).await
    }

    /// Inclusion proof of entry `seq` at `size` (default: the current size), checked before
    /// it is returned.
    pub async fn prove_inclusion(
        &self,
        seq: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, AuditError> {
        prove_inclusion(&self.store, seq, size).await
    }

    /// Consistency proof from `old` to `new` (default: the current size), checked.
    pub async fn prove_consistency(
        &self,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyProof, AuditError> {
        prove_consistency(&self.store, old, new).await
    }
}

/// `size`, or the log's size now.
async fn size_or_current(store: &Store, size: Option<u64>) -> Result<u64, AuditError> {
    Ok(match size {
        Some(s) => s,
        None => store.audit_head().await?.0,
    })
}

/// [`AuditLog::prove_inclusion`] without a signing key (auditors).
pub async fn prove_inclusion(
    store: &Store,
    seq: u64,
    size: Option<u64>,
) -> Result<InclusionProof, AuditError> {
    let size = size_or_current(store, size).await?;
    let proof = store.audit_inclusion_proof(seq, size).await?;
    let root = store.audit_root_at(size).await?;
    let entry = store
        .audit_entry(seq)
        .await?
        .ok_or(AuditError::ProofMismatch)?;
    if !merkle::verify_inclusion(&entry.leaf_hash, seq, size, &proof, &root) {
        return Err(AuditError::ProofMismatch);
    }
    Ok(InclusionProof {
        seq,
        size,
        leaf_hash: entry.leaf_hash,
        root,
        proof_bytes: proof.len() * 32,
        proof,
    })
}

/// [`AuditLog::prove_consistency`] without a signing key (auditors).
pub async fn prove_consistency(
    store: &Store,
    old: u64,
    new: Option<u64>,
) -> Result<ConsistencyProof, AuditError> {
    let new = size_or_current(store, new).await?;
    let proof = store.audit_consistency_proof(old, new).await?;
    let old_root = store.audit_root_at(old).await?;
    let new_root = store.audit_root_at(new).await?;
    if !merkle::verify_consistency(old, new, &old_root, &new_root, &proof) {
        return Err(AuditError::ProofMismatch);
    }
    Ok(ConsistencyProof {
        old_size: old,
        new_size: new,
        old_root,
        new_root,
        proof_bytes: proof.len() * 32,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::store::OpenMode;
    use ring::rand::SystemRandom;

    fn new_key() -> Arc<Ed25519KeyPair> {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Arc::new(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
    }

    #[tokio::test]
    async fn record_checkpoint_prove_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread) = Store::open(&dir.path().join("db"), OpenMode::Create).unwrap();
        let key = new_key();
        let site = SiteId::new("site-a").unwrap();
        let log = AuditLog::new(store.clone(), key, origin("demo", &site), site.clone());
        assert_eq!(log.origin(), "fedanno.demo/site-a");
        let empty = log.verify().await.unwrap();
        assert!(empty.ok && empty.size == 0 && empty.root == merkle::empty_root());
        for i in 0..9u64 {
            let e = log
                .record(AuditEvent::Membership {
                    what: format!("step {i}"),
                })
                .await
                .unwrap();
            assert_eq!(e.seq, i);
        }
        let cp = log.checkpoint().await.unwrap();
        assert_eq!(cp.size, 9);
        cp.verify(&log.public_key()).unwrap();
        let r = log.verify().await.unwrap();
        assert!(r.ok, "{:?}", r.problem);
        assert_eq!(
            (r.size, r.checkpoints_checked, r.latest_checkpoint),
            (10, 1, Some(9))
        );
        assert_eq!(r.entries_after_latest_checkpoint, 1);
        let p = log.prove_inclusion(3, Some(9)).await.unwrap();
        assert_eq!(p.root, cp.root);
        assert_eq!(p.proof_bytes, 4 * 32);
        let c = log.prove_consistency(4, None).await.unwrap();
        assert_eq!(c.new_size, 10);
        assert!(matches!(
            log.prove_consistency(0, None).await,
            Err(AuditError::Store(AuditStoreError::OutOfRange { .. }))
        ));
        // A verifier with another key names entry 0.
        let other = crypto::public_key(&new_key());
        let r = verify::verify(&store, &other, &site).await.unwrap();
        assert_eq!(r.problem.unwrap().seq, Some(0));
        drop((log, store));
        thread.join();
    }

    #[tokio::test]
    async fn a_log_keeps_the_origin_of_its_first_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread) = Store::open(&dir.path().join("db"), OpenMode::Create).unwrap();
        let key = new_key();
        let site = SiteId::new("site-a").unwrap();
        let other = SiteId::new("site-b").unwrap();
        // No checkpoint yet: the consortium joined, else the fixed unjoined origin.
        assert_eq!(
            log_origin(&store, &site, Some("c1")).await.unwrap(),
            "fedanno.c1/site-a"
        );
        assert_eq!(
            log_origin(&store, &site, None).await.unwrap(),
            "fedanno.local/site-a"
        );
        // Another site's checkpoint kept here does not decide this log's origin.
        let foreign = SignedCheckpoint::sign("fedanno.c9/site-b", 0, [0; 32], 1, other, &key);
        store.audit_store_checkpoint(&foreign).await.unwrap();
        let log = AuditLog::open(store.clone(), key.clone(), site.clone(), None)
            .await
            .unwrap();
        assert_eq!(log.origin(), "fedanno.local/site-a");
        log.checkpoint().await.unwrap();
        // Joining a consortium later does not give the log a second origin.
        let later = AuditLog::open(store.clone(), key, site.clone(), Some("c1"))
            .await
            .unwrap();
        assert_eq!(later.origin(), "fedanno.local/site-a");
        later.checkpoint().await.unwrap();
        let r = later.verify().await.unwrap();
        assert!(r.ok, "{:?}", r.problem);
        assert_eq!(r.checkpoints_checked, 2);
        assert_eq!(r.foreign_checkpoints, 1);
        assert_eq!(r.origin.as_deref(), Some("fedanno.local/site-a"));
        drop((log, later, store));
        thread.join();
    }
}
