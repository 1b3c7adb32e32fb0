//! `fedanno bench audit`: appends per second with every append committed (WAL,
//! `synchronous=FULL`: one fsync per entry), proof sizes and times, and a full verify, on a
//! fresh site (or the one in `--keep DIR`, which is reused and grown).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use fedanno_protocol::ids::SiteId;
use serde::Serialize;

use super::{AuditEvent, AuditLog};
use crate::site::{self, Site};

#[derive(Debug, Serialize)]
pub struct AuditBench {
    pub appended: u64,
    pub log_size: u64,
    pub seconds: f64,
    pub appends_per_second: f64,
    pub mean_append_ms: f64,
    pub max_append_ms: f64,
    pub durability: &'static str,
    /// Inclusion proofs at the final size: largest and mean size in bytes over the sample.
    pub inclusion_proof_bytes_max: usize,
    pub inclusion_proof_bytes_mean: f64,
    pub inclusion_proof_ms_mean: f64,
    /// Consistency proof from half the log to all of it.
    pub consistency_proof_bytes: usize,
    pub verify_seconds: f64,
    pub verify_ok: bool,
    pub site_dir: String,
}

impl AuditBench {
    pub fn human(&self) -> String {
        format!(
            "audit: {} appends in {:.2} s = {:.0} appends/s ({}; mean {:.2} ms, max {:.2} ms per append); log of {} entries: inclusion proofs ≤ {} B (mean {:.0} B, {:.2} ms each), consistency {}→{} {} B; verify {:.2} s ({}); site {}",
            self.appended,
            self.seconds,
            self.appends_per_second,
            self.durability,
            self.mean_append_ms,
            self.max_append_ms,
            self.log_size,
            self.inclusion_proof_bytes_max,
            self.inclusion_proof_bytes_mean,
            self.inclusion_proof_ms_mean,
            self.log_size / 2 + 1,
            self.log_size,
            self.consistency_proof_bytes,
            self.verify_seconds,
            if self.verify_ok { "ok" } else { "FAILED" },
            self.site_dir
        )
    }
}

/// Appends `entries` events one by one, each committed before the next; `on_commit` is told
/// each committed seq (the kill -9 test reads it).
pub async fn run(
    entries: u64,
    keep: Option<PathBuf>,
    mut on_commit: impl FnMut(u64),
) -> Result<AuditBench> {
    let (root, temporary) = match keep {
        Some(p) => (p, false),
        None => (
            std::env::temp_dir().join(format!("fedanno-bench-audit-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let site_dir = root.join("site");
    if !site_dir.join(crate::site::config::CONFIG_FILE).exists() {
        site::init(&site_dir, "Bench Site", None)?;
    }
    let site = Site::open(&site_dir)?;
    let result = match AuditLog::open_site(&site).await {
        Ok(log) => measure(&log, entries, &mut on_commit).await,
        Err(e) => Err(e),
    };
    site.close();
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    let mut r = result?;
    r.site_dir = if temporary {
        "(temporary, removed)".into()
    } else {
        site_dir.display().to_string()
    };
    Ok(r)
}

async fn measure(
    log: &AuditLog,
    entries: u64,
    on_commit: &mut impl FnMut(u64),
) -> Result<AuditBench> {
    let peer = SiteId::new("bench-peer").context("site id")?;
    let t = Instant::now();
    let mut max_ms = 0f64;
    for i in 0..entries {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&i.to_le_bytes());
        let one = Instant::now();
        let e = log
            .record(AuditEvent::Sent {
                to: Some(peer.clone()),
                kind: "bench".into(),
                study: Some("S-BENCH".into()),
                round: i / 100,
                sequence: i,
                message_hash: h,
                bytes: 1024,
            })
            .await?;
        max_ms = max_ms.max(one.elapsed().as_secs_f64() * 1e3);
        on_commit(e.seq);
    }
    let seconds = t.elapsed().as_secs_f64();
    let cp = log.checkpoint().await?;
    let size = cp.size + 1;
    // Proofs for a spread of entries at the final size.
    let sample: Vec<u64> = (0..32u64).map(|k| k * size / 32).collect();
    let (mut max_b, mut sum_b) = (0usize, 0usize);
    let t = Instant::now();
    for &s in &sample {
        let p = log.prove_inclusion(s, Some(size)).await?;
        max_b = max_b.max(p.proof_bytes);
        sum_b += p.proof_bytes;
    }
    let proof_ms = t.elapsed().as_secs_f64() * 1e3 / sample.len() as f64;
    let consistency = log.prove_consistency(size / 2 + 1, Some(size)).await?;
    let t = Instant::now();
    let report = log.verify().await?;
    let verify_seconds = t.elapsed().as_secs_f64();
    Ok(AuditBench {
        appended: entries,
        log_size: size,
        seconds,
        appends_per_second: entries as f64 / seconds.max(1e-9),
        mean_append_ms: seconds * 1e3 / entries.max(1) as f64,
        max_append_ms: max_ms,
        durability: "WAL, synchronous=FULL, one transaction and fsync per append",
        inclusion_proof_bytes_max: max_b,
        inclusion_proof_bytes_mean: sum_b as f64 / sample.len() as f64,
        inclusion_proof_ms_mean: proof_ms,
        consistency_proof_bytes: consistency.proof_bytes,
        verify_seconds,
        verify_ok: report.ok,
        site_dir: String::new(),
    })
}
