//! `audit verify`: recompute the whole log from the stored bodies and check every stored hash,
//! node, signature and checkpoint against it. Stops at the first problem and names it: the
//! entry's seq and what is wrong.
//!
//! Order of checks, per entry in seq order: the seq is the next one (else entries are missing),
//! the body hashes to the stored leaf hash (else it was edited), the body decodes canonically
//! and says it is this seq (else rows were swapped, moved or inserted), the filter columns
//! agree with the body, the recomputed tree head equals the stored one and the site's
//! signature over that head verifies (else the row was forged or rewritten), and a
//! `checkpoint`/`cosigned` entry names a root the log really had. Then every stored interior
//! node, then every stored checkpoint of this site (signature with `keys/signing.pub`, the
//! log's one origin, size not beyond the log, root equal to the recomputed one).
//!
//! What no local check can see: entries removed from the end after the latest checkpoint that
//! left the site (witnessed by a peer) — hence checkpoints and co-signatures.

use std::collections::HashMap;

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::merkle::{self, Hash};
use serde::Serialize;

use super::checkpoint;
use super::event::{AuditEvent, EntryBody};
use super::{AuditError, hexser};
use crate::site::store::{RawAuditRow, RawCheckpointRow, RawNode, Store};

/// Rows read per store job.
const CHUNK: u32 = 4096;

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first bad entry, when one can be named.
    pub seq: Option<u64>,
    /// The stored checkpoint concerned (its row id), if any.
    pub checkpoint: Option<i64>,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Entries in the log (checked up to the first problem).
    pub size: u64,
    /// Root recomputed from the bodies (over the entries checked).
    #[serde(with = "hexser::hash")]
    pub root: Hash,
    pub entries_checked: u64,
    pub nodes_checked: u64,
    pub checkpoints_checked: u64,
    /// Checkpoints signed by other sites (kept, not checked here).
    pub foreign_checkpoints: u64,
    /// The one origin of this site's checkpoints (that of the first), if it has any.
    pub origin: Option<String>,
    /// Size of the largest valid checkpoint of this site.
    pub latest_checkpoint: Option<u64>,
    /// Entries after the latest checkpoint: protected by their own signatures, but their
    /// removal from the end of the log cannot be seen locally.
    pub entries_after_latest_checkpoint: u64,
    pub problem: Option<Problem>,
    /// Witness alarms this site raised or heard about other sites' logs (they do not make
    /// this log fail; see `audit log --kind alarm`).
    pub witness_alarms: Vec<String>,
}

/// A pass over one part of the log: `Ok(Err(problem))` names the first thing found wrong.
type Checked = Result<Result<(), Problem>, AuditError>;

/// Verifies the log in `store` against the site's Ed25519 public key.
pub async fn verify(
    store: &Store,
    public_key: &[u8; 32],
    site: &SiteId,
) -> Result<VerifyReport, AuditError> {
    let mut v = Verifier::new(*public_key);
    let mut report = VerifyReport {
        ok: false,
        size: 0,
        root: merkle::empty_root(),
        entries_checked: 0,
        nodes_checked: 0,
        checkpoints_checked: 0,
        foreign_checkpoints: 0,
        origin: None,
        latest_checkpoint: None,
        entries_after_latest_checkpoint: 0,
        problem: None,
        witness_alarms: store
            .witness_alarms()
            .await?
            .iter()
            .map(|a| {
                format!(
                    "{}'s log: {} (co-signed size {}, then size {}), reported by {}",
                    a.site, a.kind, a.earlier.size, a.later.size, a.reported_by
                )
            })
            .collect(),
    };
    let mut problem = v.check_entries(store).await?.err();
    if problem.is_none() {
        problem = check_nodes(store, &v, &mut report).await?.err();
    }
    if problem.is_none() {
        problem = check_checkpoints(store, &v, site, &mut report).await?.err();
    }
    report.size = v.size();
    report.entries_checked = v.size();
    report.root = v.root_at(v.size());
    report.ok = problem.is_none();
    if report.ok {
        report.entries_after_latest_checkpoint =
            report.size - report.latest_checkpoint.unwrap_or(0);
    }
    report.problem = problem;
    Ok(report)
}

/// Second pass: every stored interior node against the tree recomputed from the bodies, none
/// missing, none extra.
async fn check_nodes(store: &Store, v: &Verifier, report: &mut VerifyReport) -> Checked {
    let levels = v.levels();
    let mut expected = levels
        .iter()
        .enumerate()
        .skip(1)
        .flat_map(|(l, hs)| {
            hs.iter()
                .enumerate()
                .map(move |(i, h)| (l as i64, i as i64, *h))
        })
        .peekable();
    let mut after = None;
    // The log's size now, read once the first node beyond the verified entries turns up: a
    // log that grew during the check (a running node) has such nodes, one whose tail was
    // deleted has them too, but not the entries.
    let mut grown_to: Option<u64> = None;
    loop {
        let nodes = store.audit_raw_nodes(after, CHUNK).await?;
        let Some(last) = nodes.last() else { break };
        after = Some((last.level, last.idx));
        for n in &nodes {
            let end = (n.idx.max(0) as u64 + 1) << n.level.clamp(0, 63);
            if end > v.size() {
                let now = match grown_to {
                    Some(s) => s,
                    None => *grown_to.insert(store.audit_head().await?.0),
                };
                if now >= end {
                    continue;
                }
            }
            if let Err(p) = check_node(&mut expected, n, v.size()) {
                return Ok(Err(p));
            }
            report.nodes_checked += 1;
        }
    }
    Ok(match expected.next() {
        Some((l, i, _)) => Err(node_problem(l, i, "is missing")),
        None => Ok(()),
    })
}

/// One stored node against the next expected ones (`(level, idx, hash)` in stored order).
fn check_node(
    expected: &mut std::iter::Peekable<impl Iterator<Item = (i64, i64, Hash)>>,
    n: &RawNode,
    size: u64,
) -> Result<(), Problem> {
    match expected.peek() {
        // Expected nodes before this stored one are missing.
        Some(&(l, i, _)) if (l, i) < (n.level, n.idx) => Err(node_problem(l, i, "is missing")),
        Some(&(l, i, h)) if (l, i) == (n.level, n.idx) => {
            if n.hash.as_slice() != h.as_slice() {
                return Err(node_problem(
                    l,
                    i,
                    "differs from the one recomputed from the bodies",
                ));
            }
            expected.next();
            Ok(())
        }
        _ => Err(node_problem(
            n.level,
            n.idx,
            &format!(
                "is stored but a log of {size} entries has no such node (entries deleted from the end?)"
            ),
        )),
    }
}

/// Third pass: every stored checkpoint of this site, and every `checkpoint` entry's stored
/// checkpoint.
async fn check_checkpoints(
    store: &Store,
    v: &Verifier,
    site: &SiteId,
    report: &mut VerifyReport,
) -> Checked {
    let mut unmatched = v.checkpoint_events.clone();
    for row in store.audit_raw_checkpoints().await? {
        if !row.is_own(site) {
            report.foreign_checkpoints += 1;
            continue;
        }
        // Signed after the entries were read (a running node): not part of this check, unless
        // the log is now shorter than it (its tail deleted).
        let signed_for = row.size.max(0) as u64;
        if signed_for > v.size() && store.audit_head().await?.0 >= signed_for {
            continue;
        }
        let cp_size = match v.check_checkpoint(&row, &mut report.origin) {
            Ok(s) => s,
            Err(p) => return Ok(Err(p)),
        };
        if let Some(seq) = row.entry_seq.and_then(|s| usize::try_from(s).ok()) {
            unmatched.remove(&seq);
        }
        report.checkpoints_checked += 1;
        report.latest_checkpoint = Some(report.latest_checkpoint.unwrap_or(0).max(cp_size));
    }
    Ok(match unmatched.iter().min_by_key(|(s, _)| **s) {
        Some((&seq, &(cp_size, _))) => Err(Problem {
            seq: Some(seq as u64),
            checkpoint: None,
            what: format!(
                "entry {seq} records a checkpoint of size {cp_size} but its signed checkpoint is not stored (deleted)"
            ),
        }),
        None => Ok(()),
    })
}

fn node_problem(level: i64, idx: i64, what: &str) -> Problem {
    let first = u64::try_from(idx)
        .ok()
        .and_then(|i| u32::try_from(level).ok().and_then(|l| i.checked_shl(l)));
    let last = first.and_then(|f| {
        u32::try_from(level)
            .ok()
            .and_then(|l| 1u64.checked_shl(l))
            .map(|w| f + w - 1)
    });
    Problem {
        seq: first,
        checkpoint: None,
        what: format!(
            "stored tree node (level {level}, index {idx}) over entries {}..={} {what}",
            first.map(|f| f.to_string()).unwrap_or("?".into()),
            last.map(|f| f.to_string()).unwrap_or("?".into())
        ),
    }
}

/// The log recomputed from entry bodies, one entry at a time: the database's rows here, a
/// bundle's entries in `bundle.rs`.
pub(super) struct Verifier {
    key: [u8; 32],
    leaves: Vec<Hash>,
    /// roots[i] = root of entries 0..=i.
    roots: Vec<Hash>,
    /// Peaks of the tree so far: (level, hash).
    peaks: Vec<(u32, Hash)>,
    /// `checkpoint` entries: seq → (size, root) they record.
    checkpoint_events: HashMap<usize, (u64, Hash)>,
}

impl Verifier {
    pub(super) fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            leaves: Vec::new(),
            roots: Vec::new(),
            peaks: Vec::new(),
            checkpoint_events: HashMap::new(),
        }
    }

    /// Entries verified so far.
    pub(super) fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub(super) fn root_at(&self, size: u64) -> Hash {
        match size.checked_sub(1) {
            None => merkle::empty_root(),
            Some(i) => self
                .roots
                .get(i as usize)
                .copied()
                .unwrap_or_else(merkle::empty_root),
        }
    }

    /// First pass: every entry, in seq order.
    async fn check_entries(&mut self, store: &Store) -> Checked {
        let mut from = 0i64;
        loop {
            let rows = store.audit_raw_entries(from, CHUNK).await?;
            let Some(last) = rows.last() else { break };
            from = last.seq.saturating_add(1);
            for row in &rows {
                if let Err(p) = self.entry(row) {
                    return Ok(Err(p));
                }
            }
        }
        Ok(Ok(()))
    }

    fn entry(&mut self, row: &RawAuditRow) -> Result<(), Problem> {
        let seq = self.size();
        let bad = |what: String| Problem {
            seq: Some(seq),
            checkpoint: None,
            what: format!("entry {seq}: {what}"),
        };
        let (leaf, body) = entry_body(row, seq).map_err(bad)?;
        self.add(leaf, Some(&body), Some(&row.root_after), &row.signature)
            .map_err(bad)
    }

    /// Adds the next entry (its leaf hash and decoded body) to the recomputed tree and checks
    /// its signed head, the stored head `stored_root` when the source keeps one, and the
    /// checkpoint the entry records, if any (`body` is `None` for an entry withheld from an
    /// auditor: only its place in the signed tree is checked). The error says what is wrong
    /// with the entry.
    pub(super) fn add(
        &mut self,
        leaf: Hash,
        body: Option<&EntryBody>,
        stored_root: Option<&[u8]>,
        signature: &[u8],
    ) -> Result<(), String> {
        let seq = self.size();
        let root = self.extend(leaf);
        if stored_root.is_some_and(|r| r != root.as_slice()) {
            return Err(
                "the stored tree head after it differs from the recomputed one (rows inserted, removed or rewritten)".into(),
            );
        }
        if !checkpoint::verify_head(&self.key, seq + 1, &root, signature) {
            return Err(
                "its signature does not verify with the site's public key: the row was forged or rewritten".into(),
            );
        }
        if let Some(body) = body
            && let AuditEvent::Checkpoint { size, root: r }
            | AuditEvent::Cosigned { size, root: r, .. } = &body.event
        {
            if *size > seq || self.root_at(*size) != *r {
                return Err(format!(
                    "records a checkpoint of size {size} whose root is not the log's root at that size"
                ));
            }
            if matches!(body.event, AuditEvent::Checkpoint { .. }) {
                self.checkpoint_events.insert(seq as usize, (*size, *r));
            }
        }
        self.leaves.push(leaf);
        self.roots.push(root);
        Ok(())
    }

    /// Adds `leaf` to the peaks of the tree and returns the new root.
    fn extend(&mut self, leaf: Hash) -> Hash {
        let (mut level, mut h) = (0u32, leaf);
        while let Some(&(pl, ph)) = self.peaks.last() {
            if pl != level {
                break;
            }
            self.peaks.pop();
            h = merkle::node_hash(&ph, &h);
            level += 1;
        }
        self.peaks.push((level, h));
        let hashes: Vec<Hash> = self.peaks.iter().map(|p| p.1).collect();
        merkle::fold_subtrees(&hashes).unwrap_or_else(merkle::empty_root)
    }

    /// One stored checkpoint of this site against the recomputed log: its signature, its
    /// origin (the log's one origin: that of its first checkpoint, kept in `origin`), its size
    /// and root, and the entry that recorded it. Returns its size.
    fn check_checkpoint(
        &self,
        row: &RawCheckpointRow,
        origin: &mut Option<String>,
    ) -> Result<u64, Problem> {
        let bad = |what: String| Problem {
            seq: row.entry_seq.and_then(|s| u64::try_from(s).ok()),
            checkpoint: Some(row.id),
            what: format!(
                "checkpoint {}{}: {what}",
                row.id,
                row.entry_seq
                    .map(|s| format!(" (recorded by entry {s})"))
                    .unwrap_or_default()
            ),
        };
        let cp = row
            .checkpoint()
            .map_err(|what| bad(format!("malformed row ({what})")))?;
        if cp.verify(&self.key).is_err() {
            return Err(bad("its signature does not verify with the site's public key: the stored checkpoint was edited or is not this site's".into()));
        }
        let origin = origin.get_or_insert_with(|| cp.origin.clone());
        if cp.origin != *origin {
            return Err(bad(format!(
                "it is signed under origin {:?}, but this log's checkpoints are under {origin:?}: one log has one origin",
                cp.origin
            )));
        }
        let size = self.size();
        if cp.size > size {
            return Err(Problem {
                seq: Some(size),
                checkpoint: Some(row.id),
                what: format!(
                    "checkpoint {} is signed for {} entries but the log has {size}: entries {size}..{} were deleted",
                    row.id,
                    cp.size,
                    cp.size - 1
                ),
            });
        }
        if self.root_at(cp.size) != cp.root {
            return Err(bad(format!(
                "the log's root at size {} differs from the signed one: an entry below {} was changed",
                cp.size, cp.size
            )));
        }
        if let Some(seq) = row.entry_seq {
            let recorded = usize::try_from(seq)
                .ok()
                .and_then(|s| self.checkpoint_events.get(&s));
            if recorded != Some(&(cp.size, cp.root)) {
                return Err(bad(format!(
                    "entry {seq} does not record this checkpoint (size {})",
                    cp.size
                )));
            }
        }
        Ok(cp.size)
    }

    /// Every level of the tree over the verified leaves: levels[l][i] covers leaves
    /// i·2^l .. (i+1)·2^l.
    fn levels(&self) -> Vec<Vec<Hash>> {
        let mut levels = vec![self.leaves.clone()];
        while let Some(below) = levels.last()
            && below.len() >= 2
        {
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|p| merkle::node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        levels
    }
}

/// The checks of one stored entry that need only its row: its position, leaf hash, body and
/// filter columns. Returns its leaf hash and decoded body.
fn entry_body(row: &RawAuditRow, seq: u64) -> Result<(Hash, EntryBody), String> {
    if row.seq != seq as i64 {
        return Err(format!(
            "is missing: the next stored entry is {} (entries were deleted)",
            row.seq
        ));
    }
    let leaf = merkle::leaf_hash(&row.body);
    if row.leaf_hash.as_slice() != leaf.as_slice() {
        return Err("its body does not match its stored leaf hash: the entry was edited".into());
    }
    let body = EntryBody::decode(&row.body).map_err(|e| format!("{e}"))?;
    if body.seq != seq {
        return Err(format!(
            "holds the body of entry {}: rows were swapped, moved or inserted",
            body.seq
        ));
    }
    let ev = &body.event;
    if row.timestamp != body.timestamp as i64
        || row.kind != ev.kind()
        || row.peer != ev.peer()
        || row.study != ev.study()
    {
        return Err("its timestamp/kind/peer/study columns differ from what its body says".into());
    }
    Ok((leaf, body))
}
