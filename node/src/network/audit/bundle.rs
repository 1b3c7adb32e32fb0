//! Audit bundles and the cross-check. A bundle (`audit export --format bundle`) is what an
//! auditor needs to check one site's log without its database: the site's root-signed
//! certificate (so its key is the consortium's word, not the site's), every entry's canonical
//! bytes and signed head, the site's own checkpoints, the co-signatures its witnesses gave
//! them, and the checkpoints of other sites' logs it co-signed last. `audit cross-check` reads
//! the bundles of several sites with the consortium's public information and checks that each
//! log verifies, that it agrees with every checkpoint of it a witness co-signed (so a log
//! rewritten or truncated after it was witnessed fails even though it verifies alone), and
//! that every message one site logged as received the sender logged as sent, and back.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use fedanno_protocol::cert::{Certificate, ConsortiumInfo};
use fedanno_protocol::codec;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::limits::MAX_CERT_BYTES;
use fedanno_protocol::merkle::{self, Hash};
use fedanno_protocol::wire::{Cosignature, SignedCheckpoint};
use serde::{Deserialize, Serialize};

use super::event::{AuditEvent, EntryBody, MAX_ENTRY_BYTES};
use super::hexser::parse_hex;
use super::verify::Verifier;
use crate::network::consortium;
use crate::network::kinds::MessageKind;
use crate::site::Site;
use crate::site::identity::hex;

/// The format name a bundle starts with.
pub const FORMAT: &str = "fedanno-audit-bundle/v1";

/// Largest encoded checkpoint or co-signature in a bundle.
const MAX_ITEM: usize = 16 * 1024;

/// One site's audit log, self-contained. Binary items are hex of their canonical encoding.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub site: SiteId,
    /// The site's certificate (`certificate.bin`), signed by the consortium root.
    pub certificate: String,
    pub entries: Vec<BundleEntry>,
    /// This site's signed checkpoints.
    pub checkpoints: Vec<String>,
    /// Co-signatures of this site's checkpoints: the checkpoint's size and root, and the
    /// `cosignature/v1` co-signature.
    pub cosignatures: Vec<CosignedHead>,
    /// The checkpoint of each other site's log this site co-signed last.
    pub witnessed: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BundleEntry {
    pub seq: u64,
    /// The canonical entry body (hex); empty when the site withheld the entry from an auditor
    /// (outside the auditor's scope), which then gives only its `leaf` hash.
    pub body: String,
    /// The entry's leaf hash (hex), for a withheld entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<String>,
    /// The site's signature of the tree head after the entry (hex).
    pub signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CosignedHead {
    pub size: u64,
    pub root: String,
    pub cosignature: String,
}

/// The bundle of the site in `site`.
pub async fn export(site: &Site) -> Result<Bundle> {
    let cert_path = site
        .dir
        .join(consortium::SITE_DIR)
        .join(consortium::CERT_FILE);
    let certificate = std::fs::read(&cert_path).with_context(|| {
        format!(
            "a bundle needs the site's certificate ({})",
            cert_path.display()
        )
    })?;
    let me = &site.config.site.id;
    let mut entries = Vec::new();
    loop {
        let page = site
            .store
            .audit_raw_entries(entries.len() as i64, 10_000)
            .await?;
        if page.is_empty() {
            break;
        }
        entries.extend(page.into_iter().map(|r| BundleEntry {
            seq: r.seq.max(0) as u64,
            body: hex(&r.body),
            leaf: None,
            signature: hex(&r.signature),
        }));
    }
    let mut checkpoints = Vec::new();
    for row in site.store.audit_raw_checkpoints().await? {
        if row.is_own(me) {
            let cp = row
                .checkpoint()
                .map_err(|w| anyhow::anyhow!("checkpoint {}: {w}", row.id))?;
            checkpoints.push(hex(&codec::encode(&cp)));
        }
    }
    let cosignatures = site
        .store
        .audit_cosignatures()
        .await?
        .into_iter()
        .map(|(size, root, co)| CosignedHead {
            size,
            root: hex(&root),
            cosignature: hex(&codec::encode(&co)),
        })
        .collect();
    let witnessed = site
        .store
        .witness_all_latest()
        .await?
        .iter()
        .map(|cp| hex(&codec::encode(cp)))
        .collect();
    Ok(Bundle {
        format: FORMAT.into(),
        site: me.clone(),
        certificate: hex(&certificate),
        entries,
        checkpoints,
        cosignatures,
        witnessed,
    })
}

/// Hex of at most `max` bytes: the length is checked before anything is decoded.
fn unhex(s: &str, what: &str, max: usize) -> Result<Vec<u8>> {
    if s.len() > 2 * max {
        bail!("{what} is over {max} bytes");
    }
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{what} is not hex");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .collect()
}

fn decode<T: serde::de::DeserializeOwned + Serialize>(s: &str, what: &str) -> Result<T> {
    codec::decode(&unhex(s, what, MAX_ITEM)?, MAX_ITEM).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// One site's log as the cross-check rebuilt it.
struct Log {
    site: SiteId,
    key: [u8; 32],
    origin: String,
    /// The tree recomputed from the bundle's entries (the one `audit verify` uses).
    verifier: Verifier,
    events: Vec<(u64, AuditEvent)>,
    /// Entries the site withheld (outside an auditor's scope): verified by leaf hash only.
    withheld: u64,
    problem: Option<String>,
    bundle: Bundle,
}

impl Log {
    /// The root of the first `size` entries, if the log has that many.
    fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.verifier.size()).then(|| self.verifier.root_at(size))
    }
}

/// The consortium's key for the bundle's site, from its root-signed certificate (its validity
/// window is not checked: an audit looks back).
fn site_key(b: &Bundle, info: &ConsortiumInfo) -> Result<[u8; 32]> {
    let cert = Certificate::from_bytes(&unhex(&b.certificate, "the certificate", MAX_CERT_BYTES)?)
        .map_err(|e| anyhow::anyhow!("{}'s certificate: {e}", b.site))?;
    let unverified = cert
        .body_unverified()
        .map_err(|e| anyhow::anyhow!("{}'s certificate: {e}", b.site))?;
    let body = cert
        .verify(info, unverified.not_before)
        .map_err(|e| anyhow::anyhow!("{}'s certificate: {e}", b.site))?;
    if body.site_id != b.site {
        bail!(
            "{}'s bundle carries the certificate of {}",
            b.site,
            body.site_id
        );
    }
    Ok(body.signing_key)
}

/// Rebuilds the log of a bundle with the verifier of `audit verify`, under the key its
/// root-signed certificate gives.
fn rebuild(bundle: Bundle, info: &ConsortiumInfo) -> Result<Log> {
    let key = site_key(&bundle, info)?;
    let origin = super::origin(&info.name, &bundle.site);
    rebuild_keyed(bundle, key, origin)
}

/// Rebuilds a bundle's log under `key`: every body decoded and hashed into the tree in order
/// (a withheld entry by its leaf hash alone), every signed head and recorded checkpoint
/// checked, then every own checkpoint matched against the rebuilt roots.
fn rebuild_keyed(bundle: Bundle, key: [u8; 32], origin: String) -> Result<Log> {
    let mut log = Log {
        site: bundle.site.clone(),
        key,
        origin,
        verifier: Verifier::new(key),
        events: Vec::with_capacity(bundle.entries.len()),
        withheld: 0,
        problem: None,
        bundle,
    };
    for (i, e) in log.bundle.entries.iter().enumerate() {
        let seq = i as u64;
        match add_entry(&mut log.verifier, e, seq) {
            Ok(Some(body)) => log.events.push((seq, body.event)),
            Ok(None) => log.withheld += 1,
            Err(what) => {
                log.problem = Some(format!("entry {seq}: {what}"));
                return Ok(log);
            }
        }
    }
    for c in &log.bundle.checkpoints {
        let cp: SignedCheckpoint = decode(c, "a checkpoint")?;
        if cp.verify(&log.key).is_err() || log.root_at(cp.size) != Some(cp.root) {
            log.problem = Some(format!(
                "its checkpoint at size {} does not match the log",
                cp.size
            ));
        }
    }
    Ok(log)
}

/// Adds entry `seq` of a bundle to the verifier: its decoded body, or `None` when withheld.
fn add_entry(v: &mut Verifier, e: &BundleEntry, seq: u64) -> Result<Option<EntryBody>, String> {
    let sig = parse_hex::<64>(&e.signature).ok_or("has a malformed signature")?;
    if e.seq != seq {
        return Err("is out of place".into());
    }
    if e.body.is_empty()
        && let Some(leaf) = &e.leaf
    {
        let leaf = parse_hex::<32>(leaf).ok_or("has a malformed leaf hash")?;
        return v.add(leaf, None, None, &sig).map(|()| None);
    }
    let bytes = unhex(&e.body, "an entry body", MAX_ENTRY_BYTES).map_err(|e| e.to_string())?;
    match EntryBody::decode(&bytes) {
        Ok(body) if body.seq == seq => v
            .add(merkle::leaf_hash(&bytes), Some(&body), None, &sig)
            .map(|()| Some(body)),
        Ok(_) => Err("is out of place".into()),
        Err(_) => Err("does not decode".into()),
    }
}

/// Checks a bundle fetched from a member whose key the caller holds: the log rebuilds and
/// its root at `size` is `root`. Returns the number of withheld entries.
pub(crate) fn check_fetched(
    bundle: Bundle,
    key: [u8; 32],
    origin: String,
    size: u64,
    root: Hash,
) -> Result<(Bundle, u64)> {
    let log = rebuild_keyed(bundle, key, origin)?;
    if let Some(p) = &log.problem {
        bail!("the fetched log does not verify: {p}");
    }
    if log.root_at(size) != Some(root) || log.verifier.size() != size {
        bail!("the fetched entries do not make the signed checkpoint of size {size}");
    }
    Ok((log.bundle, log.withheld))
}

/// One site in the cross-check's verdict.
#[derive(Debug, Serialize)]
pub struct SiteVerdict {
    pub site: SiteId,
    pub entries: u64,
    pub verified: bool,
    pub problem: Option<String>,
    /// The largest size of its log a witness co-signed, and by whom.
    pub newest_cosigned: Option<u64>,
    pub witnesses: Vec<SiteId>,
    /// The largest size whose checkpoint the quorum of distinct witnesses co-signed (and the
    /// log still has).
    pub witnessed_size: Option<u64>,
    /// Entries the site withheld from the auditor who fetched the bundle (outside its scope):
    /// they verify as part of the signed tree, but their messages cannot be matched.
    pub withheld: u64,
}

/// Something that does not agree.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub site: SiteId,
    pub what: String,
}

/// The cross-check's verdict.
#[derive(Debug, Serialize)]
pub struct CrossCheck {
    pub consistent: bool,
    pub sites: Vec<SiteVerdict>,
    pub matched_messages: u64,
    /// Messages whose other side could not be checked because that site withheld entries
    /// from the auditor (not findings).
    pub unchecked_messages: u64,
    pub findings: Vec<Finding>,
    pub alarms: Vec<Finding>,
}

/// Cross-checks the bundles of several sites of the consortium `info`; with `quorum` > 0, a log
/// of which no checkpoint was co-signed by that many distinct witnesses is a finding
/// (unwitnessed).
pub fn cross_check(bundles: Vec<Bundle>, info: &ConsortiumInfo, quorum: u32) -> Result<CrossCheck> {
    let mut logs = Vec::new();
    for b in bundles {
        if b.format != FORMAT {
            bail!("{}: not a {FORMAT} bundle", b.site);
        }
        logs.push(rebuild(b, info)?);
    }
    let keys: HashMap<SiteId, [u8; 32]> = logs.iter().map(|l| (l.site.clone(), l.key)).collect();
    let mut findings = Vec::new();
    let mut sites = Vec::new();
    for log in &logs {
        let heads = witnessed(log, &logs, &keys, &mut findings)?;
        let newest = heads.iter().map(|h| h.1).max();
        let mut witnesses: Vec<SiteId> = heads.iter().map(|h| h.0.clone()).collect();
        witnesses.sort();
        witnesses.dedup();
        let witnessed_size = quorum_size(log, &heads, quorum);
        if quorum > 0 && witnessed_size.is_none() {
            findings.push(Finding {
                site: log.site.clone(),
                what: format!("no checkpoint of this log was co-signed by {quorum} witnesses: it is unwitnessed"),
            });
        }
        sites.push(SiteVerdict {
            site: log.site.clone(),
            entries: log.verifier.size(),
            verified: log.problem.is_none(),
            problem: log.problem.clone(),
            newest_cosigned: newest,
            witnesses,
            witnessed_size,
            withheld: log.withheld,
        });
    }
    let (matched, unchecked) = match_messages(&logs, &mut findings);
    let alarms = alarms(&logs);
    Ok(CrossCheck {
        consistent: findings.is_empty() && alarms.is_empty() && sites.iter().all(|s| s.verified),
        sites,
        matched_messages: matched,
        unchecked_messages: unchecked,
        findings,
        alarms,
    })
}

/// The largest size at which at least `quorum` distinct witnesses co-signed the root the log
/// has there.
fn quorum_size(log: &Log, heads: &[(SiteId, u64, Hash)], quorum: u32) -> Option<u64> {
    let mut by_head: HashMap<(u64, Hash), Vec<&SiteId>> = HashMap::new();
    for (w, size, root) in heads {
        if log.root_at(*size) == Some(*root) {
            let ws = by_head.entry((*size, *root)).or_default();
            if !ws.contains(&w) {
                ws.push(w);
            }
        }
    }
    by_head
        .into_iter()
        .filter(|(_, ws)| ws.len() as u64 >= u64::from(quorum.max(1)))
        .map(|((size, _), _)| size)
        .max()
}

/// Holds `log` against every checkpoint of it that a witness co-signed: the co-signatures in
/// its own bundle, and what the other sites' bundles say they co-signed last. Returns the
/// co-signed heads (witness, size, root).
fn witnessed(
    log: &Log,
    logs: &[Log],
    keys: &HashMap<SiteId, [u8; 32]>,
    findings: &mut Vec<Finding>,
) -> Result<Vec<(SiteId, u64, Hash)>> {
    let mut heads: Vec<(SiteId, u64, Hash)> = Vec::new();
    for c in &log.bundle.cosignatures {
        let co: Cosignature = decode(&c.cosignature, "a co-signature")?;
        let root: Hash = parse_hex::<32>(&c.root)
            .ok_or_else(|| anyhow::anyhow!("a co-signed root is not 32 hex bytes"))?;
        let cp = SignedCheckpoint {
            origin: log.origin.clone(),
            size: c.size,
            root,
            timestamp: 0,
            signature: [0; 64],
            signer: log.site.clone(),
        };
        if let Some(k) = keys.get(&co.witness)
            && co.verify(&cp, k).is_ok()
        {
            heads.push((co.witness, c.size, root));
        }
    }
    for other in logs.iter().filter(|o| o.site != log.site) {
        for w in &other.bundle.witnessed {
            let cp: SignedCheckpoint = decode(w, "a witnessed checkpoint")?;
            if cp.signer == log.site && cp.verify(&log.key).is_ok() {
                heads.push((other.site.clone(), cp.size, cp.root));
            }
        }
    }
    for (w, size, root) in &heads {
        match log.root_at(*size) {
            Some(r) if r == *root => {}
            Some(_) => findings.push(Finding {
                site: log.site.clone(),
                what: format!("{w} co-signed size {size} of this log with another root: the log was rewritten after it was witnessed"),
            }),
            None => findings.push(Finding {
                site: log.site.clone(),
                what: format!("{w} co-signed size {size}, but the log has {} entries: it was truncated", log.verifier.size()),
            }),
        }
    }
    Ok(heads)
}

/// A message as one side logged it.
struct Logged<'a> {
    site: &'a SiteId,
    seq: u64,
    peer: Option<&'a SiteId>,
    kind: &'a str,
    study: &'a Option<String>,
    round: u64,
    bytes: u64,
}

impl Logged<'_> {
    fn show(&self, side: &str) -> String {
        format!(
            "{side} entry {} at {} ({} {} bytes{})",
            self.seq,
            self.site,
            self.kind,
            self.bytes,
            self.study
                .as_ref()
                .map(|s| format!(", study {s} round {}", self.round))
                .unwrap_or_default()
        )
    }
}

type Sent<'a> = HashMap<Hash, Logged<'a>>;
type Received<'a> = HashMap<(Hash, &'a SiteId), Logged<'a>>;

/// Every `sent` and `received` entry of the logs, by message hash.
fn logged(logs: &[Log]) -> (Sent<'_>, Received<'_>) {
    let mut sent = HashMap::new();
    let mut received = HashMap::new();
    for log in logs {
        for (seq, e) in &log.events {
            match e {
                AuditEvent::Sent {
                    to,
                    kind,
                    study,
                    round,
                    message_hash,
                    bytes,
                    ..
                } => {
                    let l = Logged {
                        site: &log.site,
                        seq: *seq,
                        peer: to.as_ref(),
                        kind,
                        study,
                        round: *round,
                        bytes: *bytes,
                    };
                    sent.insert(*message_hash, l);
                }
                AuditEvent::Received {
                    from,
                    kind,
                    study,
                    round,
                    message_hash,
                    bytes,
                    ..
                } => {
                    let l = Logged {
                        site: &log.site,
                        seq: *seq,
                        peer: Some(from),
                        kind,
                        study,
                        round: *round,
                        bytes: *bytes,
                    };
                    received.insert((*message_hash, &log.site), l);
                }
                _ => {}
            }
        }
    }
    (sent, received)
}

/// Every `received` with its `sent` at the sender (same size, study and round), and every
/// `sent` to a site in the check with its `received` there; returns the matched count and
/// the count of messages whose other side is a site that withheld entries (not checkable).
fn match_messages(logs: &[Log], findings: &mut Vec<Finding>) -> (u64, u64) {
    let (sent, received) = logged(logs);
    let present: Vec<&SiteId> = logs.iter().map(|l| &l.site).collect();
    let withheld: Vec<&SiteId> = logs
        .iter()
        .filter(|l| l.withheld > 0)
        .map(|l| &l.site)
        .collect();
    let (mut matched, mut unchecked) = (0, 0);
    for ((hash, _), r) in &received {
        let Some(from) = r.peer.filter(|f| present.contains(f)) else {
            continue;
        };
        let what = match sent.get(hash) {
            Some(s)
                if s.site == from
                    && s.bytes == r.bytes
                    && s.study == r.study
                    && s.round == r.round =>
            {
                matched += 1;
                continue;
            }
            Some(s) => format!(
                "{} and {} disagree about message {}",
                s.show("sent"),
                r.show("received"),
                hex(&hash[..8])
            ),
            None if withheld.contains(&from) => {
                unchecked += 1;
                continue;
            }
            None => format!(
                "{} from {from}, which has no sent entry for message {}",
                r.show("received"),
                hex(&hash[..8])
            ),
        };
        findings.push(Finding {
            site: from.clone(),
            what,
        });
    }
    for (hash, s) in &sent {
        // Membership-proof frames are not envelopes: only their sender logs them.
        if s.kind == MessageKind::Hello.as_str() {
            continue;
        }
        if let Some(to) = s.peer.filter(|t| present.contains(t))
            && !received.contains_key(&(*hash, to))
        {
            if withheld.contains(&to) {
                unchecked += 1;
                continue;
            }
            findings.push(Finding {
                site: to.clone(),
                what: format!(
                    "{} to {to}, which has no received entry for message {}",
                    s.show("sent"),
                    hex(&hash[..8])
                ),
            });
        }
    }
    (matched, unchecked)
}

fn alarms(logs: &[Log]) -> Vec<Finding> {
    let mut out = Vec::new();
    for log in logs {
        for (seq, e) in &log.events {
            if let AuditEvent::Alarm {
                site,
                contradiction,
                earlier_size,
                later_size,
                reported_by,
            } = e
            {
                out.push(Finding {
                    site: site.clone(),
                    what: format!("alarm at {} (entry {seq}): {contradiction}, co-signed size {earlier_size} then {later_size}, reported by {reported_by}", log.site),
                });
            }
        }
    }
    out
}

/// The verdict as a self-contained HTML page for the auditor's file (no scripts, no external
/// resources; every string escaped).
pub fn render_html(r: &CrossCheck) -> String {
    use crate::reader_studies::report::esc;
    let verdict = if r.consistent { "CONSISTENT" } else { "FAILED" };
    let mut rows = String::new();
    for s in &r.sites {
        let witnesses: Vec<String> = s.witnesses.iter().map(|w| w.to_string()).collect();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(s.site.as_str()),
            s.entries,
            esc(s.problem.as_deref().unwrap_or("verified")),
            s.newest_cosigned.map_or("none".into(), |n| n.to_string()),
            s.witnessed_size.map_or("none".into(), |n| n.to_string()),
            esc(&witnesses.join(", "))
        ));
    }
    let list = |items: &[Finding]| -> String {
        if items.is_empty() {
            return "<p>None.</p>".into();
        }
        let li: String = items
            .iter()
            .map(|f| format!("<li><b>{}</b>: {}</li>", esc(f.site.as_str()), esc(&f.what)))
            .collect();
        format!("<ul>{li}</ul>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedanno audit cross-check: {verdict}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px}}.v{{font-size:1.4em}}</style></head>\
         <body><h1>Audit cross-check</h1><p class=\"v\">Verdict: <b>{verdict}</b>: {} sites, {} messages matched, {} findings, {} alarms.</p>\
         <h2>Sites</h2><table><tr><th>site</th><th>entries</th><th>log</th><th>newest co-signed size</th><th>witnessed by a quorum up to</th><th>witnesses</th></tr>{rows}</table>\
         <h2>Findings</h2>{}<h2>Alarms</h2>{}</body></html>\n",
        r.sites.len(),
        r.matched_messages,
        r.findings.len(),
        r.alarms.len(),
        list(&r.findings),
        list(&r.alarms)
    )
}
