//! `fedanno bench witness`: the add-checkpoint round trip between two real nodes on loopback
//! (sign a checkpoint, consistency proof, co-signature, both sides' audit entries), the size of
//! an alarm's evidence, and `audit cross-check` of three sites' bundles of a given size.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fedanno_protocol::codec;
use fedanno_protocol::crypto::sha256;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::witness::{Contradiction, Evidence};
use serde::Serialize;

use crate::network::audit::bundle;
use crate::network::audit::{AuditEvent, AuditLog};
use crate::network::consortium;
use crate::network::daemon::StartOptions;
use crate::tools::local_consortium::{LocalConsortium, Member};

#[derive(Debug, Serialize)]
pub struct WitnessBench {
    pub rounds: usize,
    pub cosign_ms_median: f64,
    pub cosign_ms_p95: f64,
    pub evidence_bytes: usize,
    pub entries_per_site: u64,
    pub bundle_mb: f64,
    pub cross_check_seconds: f64,
    pub messages_matched: u64,
}

impl WitnessBench {
    pub fn human(&self) -> String {
        format!(
            "add-checkpoint round trip (site-c asks site-a, {} rounds): median {:.1} ms, p95 {:.1} ms; alarm evidence {} bytes; cross-check of 3 bundles x {} entries ({:.1} MB): {:.2} s, {} messages matched",
            self.rounds,
            self.cosign_ms_median,
            self.cosign_ms_p95,
            self.evidence_bytes,
            self.entries_per_site,
            self.bundle_mb,
            self.cross_check_seconds,
            self.messages_matched
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub async fn witness(rounds: usize, entries: u64) -> Result<WitnessBench> {
    let tmp = std::env::temp_dir().join(format!(
        "fedanno-bench-witness-{}-{}",
        std::process::id(),
        crate::site::clock::now()
    ));
    std::fs::create_dir_all(&tmp)?;
    let r = run(&tmp, rounds, entries).await;
    let _ = std::fs::remove_dir_all(&tmp);
    r
}

async fn run(tmp: &std::path::Path, rounds: usize, entries: u64) -> Result<WitnessBench> {
    let ids = ["site-a", "site-b", "site-c"];
    let local = LocalConsortium::create(tmp, "bench", &Member::list(&ids, "Bench"), 1)?;
    let nodes = local
        .start(|_| StartOptions::default(), Duration::from_secs(60))
        .await?;
    let a = local.sites[0].config.site.id.clone();
    let mut times = Vec::new();
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        nodes[2].handle.witness(a.clone()).await?;
        times.push(t.elapsed());
    }
    times.sort();
    for n in nodes {
        n.stop().await;
    }
    let cosigned = local.sites[0]
        .store
        .witness_latest(&local.sites[2].config.site.id)
        .await?
        .context("site-a co-signed nothing")?;
    let mut other = cosigned.clone();
    other.root[0] ^= 1;
    let evidence = Evidence {
        kind: Contradiction::Fork,
        earlier: cosigned,
        later: other,
    };
    let evidence_bytes = codec::encode(&evidence).len();
    grow(&local, entries).await?;
    let mut bundles = Vec::new();
    let mut bundle_bytes = 0;
    for s in &local.sites {
        let b = bundle::export(s).await?;
        bundle_bytes += serde_json::to_vec(&b)?.len();
        bundles.push(b);
    }
    let info = consortium::read_info(&local.dir.join("consortium").join(consortium::INFO_FILE))?;
    let t = Instant::now();
    let r = bundle::cross_check(bundles, &info, 0)?;
    let cross_check_seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(r.consistent, "the bench's logs do not cross-check: {r:?}");
    Ok(WitnessBench {
        rounds: times.len(),
        cosign_ms_median: percentile(&times, 0.5),
        cosign_ms_p95: percentile(&times, 0.95),
        evidence_bytes,
        entries_per_site: entries,
        bundle_mb: bundle_bytes as f64 / 1e6,
        cross_check_seconds,
        messages_matched: r.matched_messages,
    })
}

/// The `sent` and `received` entries of notice `sequence` from `from` to `to`.
fn notice_pair(
    from: &SiteId,
    to: &SiteId,
    sequence: u64,
    message_hash: [u8; 32],
) -> (AuditEvent, AuditEvent) {
    let sent = AuditEvent::Sent {
        to: Some(to.clone()),
        kind: "notice".into(),
        study: None,
        round: 0,
        sequence,
        message_hash,
        bytes: 200,
    };
    let received = AuditEvent::Received {
        from: from.clone(),
        kind: "notice".into(),
        study: None,
        round: 0,
        sequence,
        message_hash,
        bytes: 200,
    };
    (sent, received)
}

/// Grows every site's log to at least `entries` with matched messages: message m goes from
/// site m mod 3 to the next, logged `sent` there and `received` at the addressee.
async fn grow(local: &LocalConsortium, entries: u64) -> Result<()> {
    let mut logs = Vec::new();
    for s in &local.sites {
        logs.push((AuditLog::open_site(s).await?, s.config.site.id.clone()));
    }
    let mut m: u64 = 0;
    while logs[0].0.head().await?.0 < entries
        || logs[1].0.head().await?.0 < entries
        || logs[2].0.head().await?.0 < entries
    {
        let (from, to) = ((m % 3) as usize, ((m + 1) % 3) as usize);
        let hash = sha256(&m.to_be_bytes());
        let (sent, received) = notice_pair(&logs[from].1, &logs[to].1, m + 1, hash);
        logs[from].0.record(sent).await?;
        logs[to].0.record(received).await?;
        m += 1;
    }
    Ok(())
}
