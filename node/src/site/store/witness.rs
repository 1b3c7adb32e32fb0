//! Witness state: the checkpoint of each member's log this site co-signed last, the alarms
//! (with both signed checkpoints as evidence), and the co-signatures this site's own
//! checkpoints received. Every change commits together with the audit entry that records it.

use std::sync::Arc;

use fedanno_protocol::codec;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::limits::MAX_TEXT;
use fedanno_protocol::wire::{Cosignature, SignedCheckpoint};
use fedanno_protocol::witness::Evidence;
use ring::signature::Ed25519KeyPair;
use rusqlite::{OptionalExtension, params};

use super::Store;
use super::audit::{AuditEntry, AuditStoreError, append_with};
use crate::network::audit::AuditEvent;

/// Largest stored checkpoint or co-signature (origin and site id are bounded).
const MAX_STORED: usize = 2 * MAX_TEXT;

/// An alarm as stored: the accused site, the contradiction, who found it, the evidence, and
/// the audit entry that recorded it here.
#[derive(Debug, Clone)]
pub struct AlarmRow {
    pub site: String,
    pub kind: String,
    pub reported_by: String,
    pub earlier: SignedCheckpoint,
    pub later: SignedCheckpoint,
    pub entry_seq: u64,
}

fn decode_cp(bytes: &[u8]) -> Result<SignedCheckpoint, AuditStoreError> {
    codec::decode(bytes, MAX_STORED)
        .map_err(|e| AuditStoreError::Damaged(format!("a stored witness checkpoint: {e}")))
}

impl Store {
    /// The checkpoint of `site`'s log this site co-signed last.
    pub async fn witness_latest(
        &self,
        site: &SiteId,
    ) -> Result<Option<SignedCheckpoint>, AuditStoreError> {
        let site = site.to_string();
        self.audit_job(move |c| {
            let bytes: Option<Vec<u8>> = c
                .query_row(
                    "SELECT checkpoint FROM witness_latest WHERE site = ?1",
                    [&site],
                    |r| r.get(0),
                )
                .optional()?;
            bytes.map(|b| decode_cp(&b)).transpose()
        })
        .await
    }

    /// Records that this site co-signs `cp` (entry `event`), and keeps it as the latest of its
    /// log, in one transaction.
    pub async fn witness_accept(
        &self,
        cp: SignedCheckpoint,
        event: AuditEvent,
        timestamp: u64,
        signer: Arc<Ed25519KeyPair>,
    ) -> Result<AuditEntry, AuditStoreError> {
        self.audit_job(move |c| {
            append_with(c, event, timestamp, &signer, |tx, _| {
                tx.execute(
                    "INSERT INTO witness_latest (site, checkpoint) VALUES (?1, ?2)
                     ON CONFLICT (site) DO UPDATE SET checkpoint = excluded.checkpoint",
                    params![cp.signer.as_str(), codec::encode(&cp)],
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Records an alarm (entry `event`) with its evidence, unless the same alarm (site, kind,
    /// contradicting checkpoint) is already recorded: then nothing is written and `None` is
    /// returned.
    pub async fn witness_alarm(
        &self,
        evidence: Evidence,
        reported_by: SiteId,
        event: AuditEvent,
        timestamp: u64,
        signer: Arc<Ed25519KeyPair>,
    ) -> Result<Option<AuditEntry>, AuditStoreError> {
        self.audit_job(move |c| {
            let later = codec::encode(&evidence.later);
            let site = evidence.later.signer.to_string();
            let kind = evidence.kind.as_str();
            let known: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM witness_alarms
                 WHERE site = ?1 AND kind = ?2 AND later = ?3)",
                params![site, kind, later],
                |r| r.get(0),
            )?;
            if known {
                return Ok(None);
            }
            let entry = append_with(c, event, timestamp, &signer, |tx, seq| {
                tx.execute(
                    "INSERT INTO witness_alarms
                     (site, kind, reported_by, earlier, later, entry_seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        site,
                        kind,
                        reported_by.as_str(),
                        codec::encode(&evidence.earlier),
                        later,
                        seq
                    ],
                )?;
                Ok(())
            })?;
            Ok(Some(entry))
        })
        .await
    }

    /// Every alarm, oldest first.
    pub async fn witness_alarms(&self) -> Result<Vec<AlarmRow>, AuditStoreError> {
        self.audit_job(|c| {
            let mut st = c.prepare(
                "SELECT site, kind, reported_by, earlier, later, entry_seq
                 FROM witness_alarms ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (site, kind, reported_by, earlier, later, seq) = row?;
                out.push(AlarmRow {
                    site,
                    kind,
                    reported_by,
                    earlier: decode_cp(&earlier)?,
                    later: decode_cp(&later)?,
                    entry_seq: seq.max(0) as u64,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Keeps a co-signature of this site's checkpoint `cp` (entry `event`), in one
    /// transaction.
    pub async fn audit_keep_cosignature(
        &self,
        cp: SignedCheckpoint,
        cosignature: Cosignature,
        event: AuditEvent,
        timestamp: u64,
        signer: Arc<Ed25519KeyPair>,
    ) -> Result<AuditEntry, AuditStoreError> {
        self.audit_job(move |c| {
            append_with(c, event, timestamp, &signer, |tx, _| {
                tx.execute(
                    "INSERT INTO audit_cosignatures (witness, size, root, cosignature)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        cosignature.witness.as_str(),
                        cp.size.min(i64::MAX as u64) as i64,
                        &cp.root[..],
                        codec::encode(&cosignature)
                    ],
                )?;
                Ok(())
            })
        })
        .await
    }

    /// The largest size of this site's log that `witness` co-signed.
    pub async fn audit_cosigned_size(&self, witness: &SiteId) -> Result<u64, AuditStoreError> {
        let witness = witness.to_string();
        self.audit_job(move |c| {
            let size: Option<i64> = c.query_row(
                "SELECT MAX(size) FROM audit_cosignatures WHERE witness = ?1",
                [&witness],
                |r| r.get(0),
            )?;
            Ok(size.unwrap_or(0).max(0) as u64)
        })
        .await
    }

    /// Every co-signature this site's checkpoints received: (size, root, co-signature).
    pub async fn audit_cosignatures(
        &self,
    ) -> Result<Vec<(u64, [u8; 32], Cosignature)>, AuditStoreError> {
        self.audit_job(|c| {
            let mut st =
                c.prepare("SELECT size, root, cosignature FROM audit_cosignatures ORDER BY id")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (size, root, co) = row?;
                let root: [u8; 32] = root
                    .try_into()
                    .map_err(|_| AuditStoreError::Damaged("a co-signed root".into()))?;
                let co = codec::decode(&co, MAX_STORED)
                    .map_err(|e| AuditStoreError::Damaged(format!("a co-signature: {e}")))?;
                out.push((size.max(0) as u64, root, co));
            }
            Ok(out)
        })
        .await
    }

    /// The checkpoint of every log this site co-signed last.
    pub async fn witness_all_latest(&self) -> Result<Vec<SignedCheckpoint>, AuditStoreError> {
        self.audit_job(|c| {
            let mut st = c.prepare("SELECT checkpoint FROM witness_latest ORDER BY site")?;
            let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode_cp(&row?)?);
            }
            Ok(out)
        })
        .await
    }

    /// The largest size of this site's log whose checkpoint `quorum` distinct witnesses
    /// co-signed (tlog-policy's quorum), if any.
    pub async fn audit_witnessed_size(&self, quorum: u32) -> Result<Option<u64>, AuditStoreError> {
        self.audit_job(move |c| {
            let size: Option<i64> = c
                .query_row(
                    "SELECT size FROM audit_cosignatures GROUP BY size, root
                     HAVING COUNT(DISTINCT witness) >= ?1 ORDER BY size DESC LIMIT 1",
                    [i64::from(quorum)],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(size.map(|s| s.max(0) as u64))
        })
        .await
    }
}
