//! Store jobs for the audit log (schema v3): append-only entries, the complete-subtree hashes
//! of the Merkle tree, and signed checkpoints.
//!
//! An append is one transaction on the store thread: read the O(log n) peaks of the current
//! tree, encode the body with its seq, hash it, add the new complete-subtree nodes, compute and
//! sign the new head, insert, commit. The connection runs WAL with `synchronous=FULL`, so when
//! the job answers the entry is on disk. Proofs read O(log n) stored hashes
//! ([`merkle::complete_subtrees`]). Nothing here trusts what it reads back for *verification*:
//! `audit::verify` recomputes everything from the raw rows ([`RawAuditRow`]).

use std::sync::Arc;

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::merkle::{self, Hash, SubtreeSource};
use ring::signature::Ed25519KeyPair;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use thiserror::Error;

use super::all_rows;
use super::{Store, StoreError};
use crate::network::audit::checkpoint::{self, SignedCheckpoint};
use crate::network::audit::event::{AuditEvent, BodyError, EntryBody};
use crate::network::audit::hexser;

#[derive(Debug, Error)]
pub enum AuditStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit log has {size} entries; {what} is out of range")]
    OutOfRange { size: u64, what: String },
    #[error("cannot encode the audit entry: {0}")]
    Body(#[from] BodyError),
    #[error("the audit log is damaged: {0}; run `fedanno audit verify`")]
    Damaged(String),
}

impl From<rusqlite::Error> for AuditStoreError {
    fn from(e: rusqlite::Error) -> Self {
        AuditStoreError::Store(StoreError::Sqlite(e))
    }
}

/// One entry as the log shows it (decoded from its stored body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub timestamp: u64,
    pub kind: String,
    pub peer: Option<String>,
    pub study: Option<String>,
    pub event: AuditEvent,
    #[serde(with = "hexser::hash")]
    pub leaf_hash: Hash,
    /// Root of the tree of entries `0..=seq` (signed in the row).
    #[serde(with = "hexser::hash")]
    pub root_after: Hash,
}

/// What `audit log` / `audit export` select. All conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub peer: Option<String>,
    pub study: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<u64>,
    /// Unix seconds, exclusive.
    pub until: Option<u64>,
    /// Entries with `seq >= from_seq`.
    pub from_seq: Option<u64>,
    pub limit: Option<u64>,
}

/// A row exactly as stored, for verification (lengths unchecked).
#[derive(Debug, Clone)]
pub struct RawAuditRow {
    pub seq: i64,
    pub timestamp: i64,
    pub kind: String,
    pub peer: Option<String>,
    pub study: Option<String>,
    pub body: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub root_after: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A stored interior node, as stored.
#[derive(Debug, Clone)]
pub struct RawNode {
    pub level: i64,
    pub idx: i64,
    pub hash: Vec<u8>,
}

/// A stored checkpoint row, as stored.
#[derive(Debug, Clone)]
pub struct RawCheckpointRow {
    pub id: i64,
    pub origin: String,
    pub size: i64,
    pub root: Vec<u8>,
    pub timestamp: i64,
    pub signer: String,
    pub signature: Vec<u8>,
    /// The `checkpoint` entry that recorded it (None for a checkpoint stored on its own).
    pub entry_seq: Option<i64>,
}

impl RawCheckpointRow {
    /// The stored checkpoint as the protocol's type (the row is its fields, column for
    /// column); `Err` says what is malformed.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, &'static str> {
        Ok(SignedCheckpoint {
            origin: self.origin.clone(),
            size: u64::try_from(self.size).map_err(|_| "negative size")?,
            root: to_hash(&self.root).ok_or("root is not 32 bytes")?,
            timestamp: u64::try_from(self.timestamp).unwrap_or(0),
            signature: self
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| "signature is not 64 bytes")?,
            signer: SiteId::new(self.signer.clone()).map_err(|_| "bad signer")?,
        })
    }

    /// Whether this is a checkpoint of `site`'s own log: signed by it, or recorded by one of
    /// the log's entries (whatever its signer column says).
    pub fn is_own(&self, site: &SiteId) -> bool {
        self.signer == site.as_str() || self.entry_seq.is_some()
    }
}

impl Store {
    /// Runs `f` on the store thread (one job, so one transaction at most).
    pub(super) async fn audit_job<T, F>(&self, f: F) -> Result<T, AuditStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, AuditStoreError> + Send + 'static,
    {
        self.call(move |c| Ok(f(c))).await?
    }

    /// Appends `event` as the next entry, signs the new tree head with `signer`, and commits
    /// (fsync) before answering. Only then may the caller act on the event (send the bytes).
    pub async fn audit_append(
        &self,
        event: AuditEvent,
        timestamp: u64,
        signer: Arc<Ed25519KeyPair>,
    ) -> Result<AuditEntry, AuditStoreError> {
        self.audit_job(move |c| append_tx(c, event, timestamp, &signer, None))
            .await
    }

    /// Appends the `checkpoint` entry for `cp` and stores `cp`, in one transaction.
    pub async fn audit_append_checkpoint(
        &self,
        cp: SignedCheckpoint,
        timestamp: u64,
        signer: Arc<Ed25519KeyPair>,
    ) -> Result<AuditEntry, AuditStoreError> {
        self.audit_job(move |c| {
            let event = AuditEvent::Checkpoint {
                size: cp.size,
                root: cp.root,
            };
            append_tx(c, event, timestamp, &signer, Some(&cp))
        })
        .await
    }

    /// Size and root of the log now.
    pub async fn audit_head(&self) -> Result<(u64, Hash), AuditStoreError> {
        self.audit_job(|c| {
            let size = log_size(c)?;
            let root = StoredTree::new(c).root_at(size)?;
            Ok((size, root))
        })
        .await
    }

    /// Root of the tree of the first `size` entries (`size` ≤ the log's size).
    pub async fn audit_root_at(&self, size: u64) -> Result<Hash, AuditStoreError> {
        self.audit_job(move |c| {
            check_size(c, size)?;
            StoredTree::new(c).root_at(size)
        })
        .await
    }

    /// Entries matching `filter`, in seq order.
    pub async fn audit_entries(
        &self,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>, AuditStoreError> {
        self.audit_job(move |c| select_entries(c, &filter)).await
    }

    /// One entry.
    pub async fn audit_entry(&self, seq: u64) -> Result<Option<AuditEntry>, AuditStoreError> {
        self.audit_job(move |c| {
            let row = c
                .query_row(
                    &format!("{SELECT_ROW} WHERE seq = ?1"),
                    [seq as i64],
                    raw_row,
                )
                .optional()?;
            row.map(decode_row).transpose()
        })
        .await
    }

    /// Stores a checkpoint without an entry (e.g. one received from a witness round trip).
    pub async fn audit_store_checkpoint(
        &self,
        cp: &SignedCheckpoint,
    ) -> Result<(), AuditStoreError> {
        let cp = cp.clone();
        self.audit_job(move |c| Ok(insert_checkpoint(c, &cp, None)?))
            .await
    }

    /// Every stored checkpoint, oldest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<SignedCheckpoint>, AuditStoreError> {
        let rows = self.audit_raw_checkpoints().await?;
        rows.iter()
            .map(|r| {
                r.checkpoint().map_err(|what| {
                    AuditStoreError::Damaged(format!("checkpoint {}: {what}", r.id))
                })
            })
            .collect()
    }

    /// Inclusion proof of entry `seq` in the tree of the first `size` entries.
    pub async fn audit_inclusion_proof(
        &self,
        seq: u64,
        size: u64,
    ) -> Result<Vec<Hash>, AuditStoreError> {
        self.audit_job(move |c| {
            check_size(c, size)?;
            merkle::inclusion_proof_from(&mut StoredTree::new(c), seq, size)
                .map_err(|e| proof_error(e, size))
        })
        .await
    }

    /// Consistency proof between the trees of the first `old` and `new` entries.
    pub async fn audit_consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, AuditStoreError> {
        self.audit_job(move |c| {
            check_size(c, new)?;
            merkle::consistency_proof_from(&mut StoredTree::new(c), old, new)
                .map_err(|e| proof_error(e, new))
        })
        .await
    }

    /// Up to `limit` rows with `seq >= from`, as stored.
    pub async fn audit_raw_entries(
        &self,
        from: i64,
        limit: u32,
    ) -> Result<Vec<RawAuditRow>, AuditStoreError> {
        self.audit_job(move |c| {
            let sql = format!("{SELECT_ROW} WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
            Ok(all_rows(c, &sql, params![from, limit], raw_row)?)
        })
        .await
    }

    /// Up to `limit` stored interior nodes after `(level, idx)`, in (level, idx) order.
    pub async fn audit_raw_nodes(
        &self,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<RawNode>, AuditStoreError> {
        self.audit_job(move |c| {
            let (l, i) = after.unwrap_or((i64::MIN, i64::MIN));
            let sql = "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) > (?1, ?2)
                       ORDER BY level, idx LIMIT ?3";
            Ok(all_rows(c, sql, params![l, i, limit], |r| {
                Ok(RawNode {
                    level: r.get(0)?,
                    idx: r.get(1)?,
                    hash: r.get(2)?,
                })
            })?)
        })
        .await
    }

    /// Every stored checkpoint row, as stored.
    pub async fn audit_raw_checkpoints(&self) -> Result<Vec<RawCheckpointRow>, AuditStoreError> {
        self.audit_job(|c| {
            let sql = "SELECT id, origin, size, root, timestamp, signer, signature, entry_seq
                       FROM audit_checkpoints ORDER BY id";
            let rows = all_rows(c, sql, [], |r| {
                Ok(RawCheckpointRow {
                    id: r.get(0)?,
                    origin: r.get(1)?,
                    size: r.get(2)?,
                    root: r.get(3)?,
                    timestamp: r.get(4)?,
                    signer: r.get(5)?,
                    signature: r.get(6)?,
                    entry_seq: r.get(7)?,
                })
            })?;
            Ok(rows)
        })
        .await
    }
}

const SELECT_ROW: &str = "SELECT seq, timestamp, kind, peer, reader_study, body, leaf_hash, root_after, signature FROM audit_entries";

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAuditRow> {
    Ok(RawAuditRow {
        seq: r.get(0)?,
        timestamp: r.get(1)?,
        kind: r.get(2)?,
        peer: r.get(3)?,
        study: r.get(4)?,
        body: r.get(5)?,
        leaf_hash: r.get(6)?,
        root_after: r.get(7)?,
        signature: r.get(8)?,
    })
}

fn decode_row(r: RawAuditRow) -> Result<AuditEntry, AuditStoreError> {
    let damaged = |what: &str| AuditStoreError::Damaged(format!("entry {}: {what}", r.seq));
    let body = EntryBody::decode(&r.body).map_err(|e| damaged(&e.to_string()))?;
    Ok(AuditEntry {
        seq: body.seq,
        timestamp: body.timestamp,
        kind: body.event.kind().to_string(),
        peer: body.event.peer(),
        study: body.event.study(),
        leaf_hash: to_hash(&r.leaf_hash).ok_or_else(|| damaged("leaf hash is not 32 bytes"))?,
        root_after: to_hash(&r.root_after).ok_or_else(|| damaged("root is not 32 bytes"))?,
        event: body.event,
    })
}

fn select_entries(c: &Connection, f: &AuditFilter) -> Result<Vec<AuditEntry>, AuditStoreError> {
    let mut sql = format!("{SELECT_ROW} WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut cond = |sql_part: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {sql_part} ?{}", args.len()));
    };
    if let Some(k) = &f.kind {
        cond("kind =", k.clone().into());
    }
    if let Some(p) = &f.peer {
        cond("peer =", p.clone().into());
    }
    if let Some(s) = &f.study {
        cond("reader_study =", s.clone().into());
    }
    if let Some(t) = f.since {
        cond("timestamp >=", (t.min(i64::MAX as u64) as i64).into());
    }
    if let Some(t) = f.until {
        cond("timestamp <", (t.min(i64::MAX as u64) as i64).into());
    }
    if let Some(s) = f.from_seq {
        cond("seq >=", (s.min(i64::MAX as u64) as i64).into());
    }
    sql.push_str(" ORDER BY seq");
    if let Some(l) = f.limit {
        sql.push_str(&format!(" LIMIT {}", l.min(i64::MAX as u64)));
    }
    let rows = all_rows(c, &sql, rusqlite::params_from_iter(args), raw_row)?;
    rows.into_iter().map(decode_row).collect()
}

fn log_size(c: &Connection) -> Result<u64, AuditStoreError> {
    let next: i64 = c.query_row(
        "SELECT coalesce(max(seq) + 1, 0) FROM audit_entries",
        [],
        |r| r.get(0),
    )?;
    Ok(next.max(0) as u64)
}

fn check_size(c: &Connection, size: u64) -> Result<(), AuditStoreError> {
    let have = log_size(c)?;
    if size > have {
        return Err(AuditStoreError::OutOfRange {
            size: have,
            what: format!("size {size}"),
        });
    }
    Ok(())
}

fn proof_error(e: merkle::ProofError<AuditStoreError>, size: u64) -> AuditStoreError {
    match e {
        merkle::ProofError::Source(e) => e,
        merkle::ProofError::IndexOutOfRange { index, .. } => AuditStoreError::OutOfRange {
            size,
            what: format!("entry {index}"),
        },
        merkle::ProofError::BadSizes { old, new } => AuditStoreError::OutOfRange {
            size: new,
            what: format!("old size {old} (it must be between 1 and {new})"),
        },
    }
}

fn to_hash(b: &[u8]) -> Option<Hash> {
    b.try_into().ok()
}

/// The stored tree seen through [`SubtreeSource`]: each complete subtree is one read (leaves
/// from `audit_entries.leaf_hash`, higher levels from `audit_nodes`).
pub(crate) struct StoredTree<'c> {
    conn: &'c Connection,
    pub(crate) reads: u64,
}

impl<'c> StoredTree<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Self {
        Self { conn, reads: 0 }
    }

    fn node(&mut self, level: u32, idx: u64) -> Result<Hash, AuditStoreError> {
        self.reads += 1;
        let idx_i = i64::try_from(idx).map_err(|_| AuditStoreError::Damaged("index".into()))?;
        let h: Option<Vec<u8>> = if level == 0 {
            self.conn
                .prepare_cached("SELECT leaf_hash FROM audit_entries WHERE seq = ?1")?
                .query_row([idx_i], |r| r.get(0))
                .optional()?
        } else {
            self.conn
                .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")?
                .query_row(params![level, idx_i], |r| r.get(0))
                .optional()?
        };
        h.as_deref().and_then(to_hash).ok_or_else(|| {
            AuditStoreError::Damaged(format!(
                "tree node (level {level}, index {idx}) is missing or malformed"
            ))
        })
    }

    fn root_at(&mut self, size: u64) -> Result<Hash, AuditStoreError> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        self.subtree_root(0, size)
    }
}

impl SubtreeSource for StoredTree<'_> {
    type Error = AuditStoreError;
    fn subtree_root(&mut self, start: u64, len: u64) -> Result<Hash, AuditStoreError> {
        let hashes = merkle::complete_subtrees(start, len)
            .into_iter()
            .map(|(l, i)| self.node(l, i))
            .collect::<Result<Vec<_>, _>>()?;
        merkle::fold_subtrees(&hashes)
            .ok_or_else(|| AuditStoreError::Damaged("empty subtree requested".into()))
    }
}

fn append_tx(
    c: &mut Connection,
    event: AuditEvent,
    timestamp: u64,
    signer: &Ed25519KeyPair,
    checkpoint: Option<&SignedCheckpoint>,
) -> Result<AuditEntry, AuditStoreError> {
    append_with(c, event, timestamp, signer, |tx, seq| match checkpoint {
        Some(cp) => Ok(insert_checkpoint(tx, cp, Some(seq))?),
        None => Ok(()),
    })
}

/// Appends `event` and runs `also` (given the new entry's row id) in the same transaction: the
/// entry and what it records commit together or not at all.
pub(super) fn append_with(
    c: &mut Connection,
    event: AuditEvent,
    timestamp: u64,
    signer: &Ed25519KeyPair,
    also: impl FnOnce(&Connection, i64) -> Result<(), AuditStoreError>,
) -> Result<AuditEntry, AuditStoreError> {
    let tx = c.transaction()?;
    let seq = log_size(&tx)?;
    let body = EntryBody::new(seq, timestamp, event);
    let bytes = body.encode()?;
    let leaf = merkle::leaf_hash(&bytes);
    let (root_after, new_nodes) = grow_tree(&tx, seq, leaf)?;
    let signature = checkpoint::sign_head(signer, seq + 1, &root_after);
    let entry = AuditEntry {
        seq,
        timestamp,
        kind: body.event.kind().to_string(),
        peer: body.event.peer(),
        study: body.event.study(),
        event: body.event,
        leaf_hash: leaf,
        root_after,
    };
    let seq_i = insert_entry(&tx, &entry, &bytes, &signature, &new_nodes)?;
    if let AuditEvent::Sent { sequence, .. } = &entry.event {
        keep_sent_high(&tx, *sequence)?;
    }
    also(&tx, seq_i)?;
    tx.commit()?;
    Ok(entry)
}

fn keep_sent_high(c: &Connection, sequence: u64) -> Result<(), AuditStoreError> {
    c.execute(
        "INSERT INTO sent_sequence (id, high) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET high = max(high, excluded.high)",
        [sequence.min(i64::MAX as u64) as i64],
    )?;
    Ok(())
}

impl Store {
    /// The highest envelope sequence this site sent, as kept with its `sent` entries; for a
    /// log from before that was kept, found once from the entries and kept from then on.
    pub async fn audit_sent_high(&self) -> Result<u64, AuditStoreError> {
        self.audit_job(|c| {
            let kept: Option<i64> = c
                .query_row("SELECT high FROM sent_sequence WHERE id = 0", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(h) = kept {
                return Ok(h.max(0) as u64);
            }
            let sent = select_entries(
                c,
                &AuditFilter {
                    kind: Some("sent".into()),
                    ..Default::default()
                },
            )?;
            let high = sent
                .iter()
                .filter_map(|e| match &e.event {
                    AuditEvent::Sent { sequence, .. } => Some(*sequence),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            keep_sent_high(c, high)?;
            Ok(high)
        })
        .await
    }
}

/// A complete subtree: (level, index, hash).
type Subtree = (u32, u64, Hash);

/// Adds leaf `seq` to the stored tree of `seq` entries: merges it with the equal-sized peaks
/// (each merge is a new complete subtree). Returns the root after it and the new subtrees.
fn grow_tree(
    c: &Connection,
    seq: u64,
    leaf: Hash,
) -> Result<(Hash, Vec<Subtree>), AuditStoreError> {
    // The peaks of the current tree: one complete subtree per set bit of `seq`.
    let mut peaks: Vec<Subtree> = {
        let mut t = StoredTree::new(c);
        merkle::complete_subtrees(0, seq)
            .into_iter()
            .map(|(l, i)| t.node(l, i).map(|h| (l, i, h)))
            .collect::<Result<_, _>>()?
    };
    let (mut level, mut idx, mut h) = (0u32, seq, leaf);
    let mut new_nodes = Vec::new();
    while idx & 1 == 1 {
        let Some((pl, pi, ph)) = peaks.pop() else {
            return Err(AuditStoreError::Damaged("tree peaks are missing".into()));
        };
        if pl != level || pi != idx - 1 {
            return Err(AuditStoreError::Damaged(format!(
                "tree peak ({pl}, {pi}) where ({level}, {}) was expected",
                idx - 1
            )));
        }
        h = merkle::node_hash(&ph, &h);
        level += 1;
        idx >>= 1;
        new_nodes.push((level, idx, h));
    }
    peaks.push((level, idx, h));
    let hashes: Vec<Hash> = peaks.iter().map(|p| p.2).collect();
    let root = merkle::fold_subtrees(&hashes).unwrap_or_else(merkle::empty_root);
    Ok((root, new_nodes))
}

/// Inserts the row of `e` (with its stored `body` and head `signature`) and the new interior
/// nodes. Returns the row's seq.
fn insert_entry(
    c: &Connection,
    e: &AuditEntry,
    body: &[u8],
    signature: &[u8; 64],
    new_nodes: &[Subtree],
) -> Result<i64, AuditStoreError> {
    let seq = i64::try_from(e.seq).map_err(|_| AuditStoreError::Damaged("log full".into()))?;
    c.prepare_cached(
        "INSERT INTO audit_entries (seq, timestamp, kind, peer, reader_study, body, leaf_hash, root_after, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        seq,
        e.timestamp.min(i64::MAX as u64) as i64,
        e.kind,
        e.peer,
        e.study,
        body,
        &e.leaf_hash[..],
        &e.root_after[..],
        &signature[..]
    ])?;
    let mut ins =
        c.prepare_cached("INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for (l, i, h) in new_nodes {
        ins.execute(params![l, *i as i64, &h[..]])?;
    }
    Ok(seq)
}

fn insert_checkpoint(
    c: &Connection,
    cp: &SignedCheckpoint,
    entry_seq: Option<i64>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit_checkpoints (origin, size, root, timestamp, signer, signature, entry_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            cp.origin,
            cp.size.min(i64::MAX as u64) as i64,
            &cp.root[..],
            cp.timestamp.min(i64::MAX as u64) as i64,
            cp.signer.as_str(),
            &cp.signature[..],
            entry_seq
        ],
    )?;
    Ok(())
}

/// Test hook: what a dishonest site could do to its own log with its own key. Keeps the
/// entries `keep` accepts, drops the rest, and rebuilds the log (entries, tree, signed heads)
/// re-signed with `signer`; each kept `checkpoint` entry becomes a new checkpoint of the
/// rebuilt head under `origin`; `cosigned` entries, which name roots of the old log, are
/// dropped too. The co-signatures table and witness state are left alone. Returns the new size.
#[cfg(feature = "test-hooks")]
impl Store {
    pub async fn rewrite_audit_log(
        &self,
        keep: impl Fn(&AuditEntry) -> bool + Send + 'static,
        signer: Arc<Ed25519KeyPair>,
        origin: String,
        site: SiteId,
    ) -> Result<u64, AuditStoreError> {
        self.audit_job(move |c| {
            let all = select_entries(c, &AuditFilter::default())?;
            c.execute_batch(
                "DELETE FROM audit_checkpoints; DELETE FROM audit_nodes; DELETE FROM audit_entries;",
            )?;
            let kept = all
                .into_iter()
                .filter(|e| keep(e) && !matches!(e.event, AuditEvent::Cosigned { .. }));
            for e in kept {
                match e.event {
                    AuditEvent::Checkpoint { .. } => {
                        let size = log_size(c)?;
                        let root = StoredTree::new(c).root_at(size)?;
                        let cp = SignedCheckpoint::sign(
                            &origin,
                            size,
                            root,
                            e.timestamp,
                            site.clone(),
                            &signer,
                        );
                        let event = AuditEvent::Checkpoint { size, root };
                        append_tx(c, event, e.timestamp, &signer, Some(&cp))?;
                    }
                    event => {
                        append_tx(c, event, e.timestamp, &signer, None)?;
                    }
                }
            }
            log_size(c)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::store::OpenMode;
    use ring::rand::SystemRandom;

    fn key() -> Arc<Ed25519KeyPair> {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Arc::new(Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
    }

    fn event(i: u64) -> AuditEvent {
        AuditEvent::Sent {
            to: Some(SiteId::new(if i.is_multiple_of(2) { "b" } else { "c" }).unwrap()),
            kind: "notice".into(),
            study: i.is_multiple_of(3).then(|| "S-1".to_string()),
            round: i,
            sequence: i,
            message_hash: [i as u8; 32],
            bytes: 10 * i,
        }
    }

    #[tokio::test]
    async fn appends_match_the_in_memory_tree_and_proofs_take_log_n_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread) = Store::open(&dir.path().join("db"), OpenMode::Create).unwrap();
        let k = key();
        // Appends are durable at commit: WAL with synchronous=FULL (2).
        let sync: i64 = store
            .call(|c| Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(sync, 2);
        assert_eq!(store.audit_head().await.unwrap(), (0, merkle::empty_root()));
        let mut leaves = Vec::new();
        for i in 0..70u64 {
            let e = store
                .audit_append(event(i), 1000 + i, k.clone())
                .await
                .unwrap();
            assert_eq!(e.seq, i);
            leaves.push(e.leaf_hash);
            assert_eq!(e.root_after, merkle::root(&leaves));
            let pk = fedanno_protocol::crypto::public_key(&k);
            let row = &store.audit_raw_entries(i as i64, 1).await.unwrap()[0];
            assert!(checkpoint::verify_head(
                &pk,
                i + 1,
                &e.root_after,
                &row.signature
            ));
        }
        assert_eq!(
            store.audit_head().await.unwrap(),
            (70, merkle::root(&leaves))
        );
        for size in [1u64, 2, 3, 13, 32, 33, 64, 70] {
            let r = store.audit_root_at(size).await.unwrap();
            assert_eq!(r, merkle::root(&leaves[..size as usize]));
            for seq in [0, size / 2, size - 1] {
                let p = store.audit_inclusion_proof(seq, size).await.unwrap();
                assert_eq!(
                    p,
                    merkle::inclusion_proof(&leaves[..size as usize], seq).unwrap()
                );
                assert!(merkle::verify_inclusion(
                    &leaves[seq as usize],
                    seq,
                    size,
                    &p,
                    &r
                ));
            }
            for old in [1, size / 2 + 1, size] {
                let old = old.min(size);
                let p = store.audit_consistency_proof(old, 70).await.unwrap();
                assert_eq!(p, merkle::consistency_proof(&leaves, old).unwrap());
            }
        }
        assert!(matches!(
            store.audit_inclusion_proof(70, 70).await,
            Err(AuditStoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            store.audit_root_at(71).await,
            Err(AuditStoreError::OutOfRange { .. })
        ));
        // Read counts: a proof needs O(log n) stored hashes.
        let reads = store
            .call(|c| {
                let mut worst = 0u64;
                for size in 1..=70u64 {
                    for seq in 0..size {
                        let mut t = StoredTree::new(c);
                        merkle::inclusion_proof_from(&mut t, seq, size).unwrap();
                        worst = worst.max(t.reads);
                    }
                    for old in 1..size {
                        let mut t = StoredTree::new(c);
                        merkle::consistency_proof_from(&mut t, old, size).unwrap();
                        worst = worst.max(t.reads);
                    }
                }
                Ok(worst)
            })
            .await
            .unwrap();
        // log2(70) ≈ 6.1: at most ~2·log2(n) reads.
        assert!(reads <= 14, "{reads} reads for a proof in a tree of 70");
        drop(store);
        thread.join();
    }

    #[tokio::test]
    async fn filters_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread) = Store::open(&dir.path().join("db"), OpenMode::Create).unwrap();
        let k = key();
        for i in 0..10u64 {
            store
                .audit_append(event(i), 1000 + i, k.clone())
                .await
                .unwrap();
        }
        let f = |kind: Option<&str>, peer: Option<&str>, study: Option<&str>, since| AuditFilter {
            kind: kind.map(Into::into),
            peer: peer.map(Into::into),
            study: study.map(Into::into),
            since,
            ..Default::default()
        };
        assert_eq!(
            store
                .audit_entries(f(None, None, None, None))
                .await
                .unwrap()
                .len(),
            10
        );
        assert_eq!(
            store
                .audit_entries(f(None, Some("b"), None, None))
                .await
                .unwrap()
                .len(),
            5
        );
        assert_eq!(
            store
                .audit_entries(f(None, None, Some("S-1"), None))
                .await
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            store
                .audit_entries(f(Some("sent"), Some("c"), None, Some(1005)))
                .await
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            store
                .audit_entries(f(Some("received"), None, None, None))
                .await
                .unwrap()
                .len(),
            0
        );

        let (size, root) = store.audit_head().await.unwrap();
        let cp = SignedCheckpoint::sign("o", size, root, 5, SiteId::new("a").unwrap(), &k);
        let e = store
            .audit_append_checkpoint(cp.clone(), 2000, k.clone())
            .await
            .unwrap();
        assert_eq!(e.seq, 10);
        assert_eq!(e.event, AuditEvent::Checkpoint { size, root });
        assert_eq!(store.audit_checkpoints().await.unwrap(), vec![cp.clone()]);
        let raw = store.audit_raw_checkpoints().await.unwrap();
        assert_eq!(raw[0].entry_seq, Some(10));
        store.audit_store_checkpoint(&cp).await.unwrap();
        assert_eq!(store.audit_checkpoints().await.unwrap().len(), 2);
        assert_eq!(store.audit_entry(10).await.unwrap().unwrap(), e);
        assert_eq!(store.audit_entry(11).await.unwrap(), None);
        drop(store);
        thread.join();
    }
}
