//! `fedanno bench secagg`: secure-aggregation rounds on real nodes, the arithmetic alone, and
//! the demo's traffic.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fedanno_protocol::ids::SiteId;
use serde::Serialize;

use crate::network::audit::AuditEvent;
use crate::network::daemon::StartOptions;
use crate::network::node::Node;
use crate::network::policy::Policy;
use crate::reader_studies::jobs::{self, Job, JobKind};
use crate::site::Site;
use crate::site::store::AuditFilter;
use crate::tools::local_consortium::{LocalConsortium, Member, launch_everywhere};

/// The policy of the benchmark's sites: `policies/research-site.toml`'s rules, with the masked
/// statistics listed, `bench` among them. The shipped policies are not changed for a benchmark.
const BENCH_POLICY: &str = r#"
name = "bench-site"
description = "fedanno bench secagg only: research-site rules, the study statistics and bench vectors"

[[rule]]
name = "membership and audit"
effect = "allow"
kinds = ["hello", "revocations", "addresses", "checkpoint", "witness", "receipt", "refusal"]
to_roles = ["*"]

[[rule]]
name = "study coordination"
effect = "allow"
kinds = ["study-announcement", "study-decision", "annotation-metadata", "secagg-keys", "secagg-statement"]
to_roles = ["*"]

[[rule]]
name = "masked statistics and benchmark vectors"
effect = "allow"
kinds = ["masked-vector"]
to_roles = ["coordinator"]
statistics = ["staple", "multilabel-staple", "dawid-skene", "agreement", "segmentation-metrics", "bench"]
min_sites = 3
min_cases = 10

[[rule]]
name = "published results"
effect = "allow"
kinds = ["result"]
to_roles = ["*"]
min_sites = 3
"#;

/// The study the benchmark's sites join (its statistics are never computed; rounds use
/// [`JobKind::Bench`](crate::reader_studies::jobs::JobKind::Bench) jobs).
pub const SECAGG_STUDY: &str = "bench-secagg";

#[derive(Debug, Clone)]
pub struct SecaggOptions {
    /// Node counts for the rounds over the network.
    pub nodes: Vec<usize>,
    /// Timed rounds per node count (after two untimed warm-up rounds).
    pub rounds: usize,
    pub dim: usize,
    /// Site counts for the arithmetic alone.
    pub sites: Vec<usize>,
    /// Repetitions per site count for the arithmetic.
    pub reps: usize,
    /// Also run `fedanno demo` and report its studies' rounds and traffic.
    pub demo: bool,
}

#[derive(Debug, Serialize)]
pub struct SecaggNetwork {
    pub nodes: usize,
    pub dim: usize,
    pub rounds: usize,
    /// Making the sites, their data, the nodes, launching/joining/assigning the study.
    pub setup_seconds: f64,
    pub round_ms_median: f64,
    pub round_ms_p95: f64,
    pub round_ms_min: f64,
    pub round_ms_max: f64,
    /// Per round, mean over the non-coordinator sites, from each site's own audit log
    /// (`sent` / `received` entries of the study: signed envelopes as framed on the wire).
    pub site_bytes_sent_per_round: f64,
    pub site_bytes_received_per_round: f64,
    /// Per round, at the coordinator (which talks to every other site).
    pub coordinator_bytes_sent_per_round: f64,
    pub coordinator_bytes_received_per_round: f64,
    /// The nodes' own count of payload bytes put on the wire, all nodes, per round.
    pub wire_bytes_all_nodes_per_round: f64,
    pub restarts: u32,
}

#[derive(Debug, Serialize)]
pub struct SecaggArithmetic {
    pub sites: usize,
    pub dim: usize,
    pub reps: usize,
    /// Medians over the repetitions, all sites' work of one round in one thread (ms).
    pub keys_ms: f64,
    pub verify_ms: f64,
    pub mask_ms: f64,
    pub aggregate_ms: f64,
    pub total_ms: f64,
    /// One site's share (keys + roster and bundle checks + masking), i.e. a round's critical
    /// path when the sites compute in parallel, plus the coordinator's sum.
    pub per_site_ms: f64,
    pub parallel_round_ms: f64,
    /// `total_ms / (sites * (sites - 1))`: flat when the cost is quadratic in the sites.
    pub us_per_ordered_pair: f64,
}

#[derive(Debug, Serialize)]
pub struct SecaggDemoReaderStudy {
    pub study: String,
    pub method: String,
    pub protocol: String,
    pub secure_rounds: u32,
    /// (site, bytes it sent, bytes it received) in the study, as the report gives them (from the
    /// coordinator's audit log; the coordinator's own row is 0 / 0).
    pub sites: Vec<(String, u64, u64)>,
    /// Mean over the sites other than the coordinator of (sent + received) / secure rounds.
    pub bytes_per_site_per_round: f64,
}

#[derive(Debug, Serialize)]
pub struct SecaggBench {
    pub network: Vec<SecaggNetwork>,
    pub arithmetic: Vec<SecaggArithmetic>,
    pub demo: Vec<SecaggDemoReaderStudy>,
    pub demo_seconds: Option<f64>,
}

impl SecaggBench {
    pub fn human(&self) -> String {
        let mut out = String::new();
        for n in &self.network {
            out.push_str(&format!(
                "secagg over the network: {} nodes (loopback TCP), {} elements, {} rounds: median {:.1} ms, p95 {:.1} ms (min {:.1}, max {:.1}); per round a site sends {:.0} B and receives {:.0} B, the coordinator sends {:.0} B and receives {:.0} B; {} restarts; set-up {:.1} s\n",
                n.nodes,
                n.dim,
                n.rounds,
                n.round_ms_median,
                n.round_ms_p95,
                n.round_ms_min,
                n.round_ms_max,
                n.site_bytes_sent_per_round,
                n.site_bytes_received_per_round,
                n.coordinator_bytes_sent_per_round,
                n.coordinator_bytes_received_per_round,
                n.restarts,
                n.setup_seconds
            ));
        }
        if !self.arithmetic.is_empty() {
            out.push_str(&format!(
                "secagg arithmetic alone (no network, one thread, {} elements, median of reps):\n{:>6} {:>9} {:>10} {:>9} {:>10} {:>10} {:>10} {:>13} {:>9}\n",
                self.arithmetic[0].dim,
                "sites",
                "keys ms",
                "verify ms",
                "mask ms",
                "sum ms",
                "total ms",
                "site ms",
                "parallel ms",
                "us/pair"
            ));
            for a in &self.arithmetic {
                out.push_str(&format!(
                    "{:>6} {:>9.2} {:>10.2} {:>9.2} {:>10.3} {:>10.2} {:>10.2} {:>13.2} {:>9.1}\n",
                    a.sites,
                    a.keys_ms,
                    a.verify_ms,
                    a.mask_ms,
                    a.aggregate_ms,
                    a.total_ms,
                    a.per_site_ms,
                    a.parallel_round_ms,
                    a.us_per_ordered_pair
                ));
            }
        }
        for d in &self.demo {
            let sites: Vec<String> = d
                .sites
                .iter()
                .map(|(s, sent, recv)| format!("{s} {sent} B sent / {recv} B received"))
                .collect();
            out.push_str(&format!(
                "demo study {} ({}, {}): {} secure rounds; {}; {:.0} B per site per round\n",
                d.study,
                d.method,
                d.protocol,
                d.secure_rounds,
                sites.join(", "),
                d.bytes_per_site_per_round
            ));
        }
        if let Some(s) = self.demo_seconds {
            out.push_str(&format!("demo ran in {s:.1} s\n"));
        }
        out
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// `fedanno bench secagg`.
pub async fn secagg(opts: &SecaggOptions) -> Result<SecaggBench> {
    anyhow::ensure!(
        (1..=fedanno_protocol::secagg::MAX_DIM).contains(&opts.dim),
        "--dim must be 1..={}",
        fedanno_protocol::secagg::MAX_DIM
    );
    let mut network = Vec::new();
    for &n in &opts.nodes {
        network.push(secagg_network(n, opts.rounds.max(1), opts.dim).await?);
    }
    let mut arithmetic = Vec::new();
    for &n in &opts.sites {
        let (dim, reps) = (opts.dim, opts.reps.max(1));
        arithmetic
            .push(tokio::task::spawn_blocking(move || secagg_arithmetic(n, dim, reps)).await??);
    }
    let (demo, demo_seconds) = if opts.demo {
        let (d, s) = secagg_demo().await?;
        (d, Some(s))
    } else {
        (Vec::new(), None)
    };
    Ok(SecaggBench {
        network,
        arithmetic,
        demo,
        demo_seconds,
    })
}

/// Site ids `site-a`, `site-b`, … (then `site-aa`, … past 26), sorted as the roster sorts.
fn bench_site_ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n)
        .map(|i| {
            let letter = |k: usize| (b'a' + (k % 26) as u8) as char;
            if i < 26 {
                format!("site-{}", letter(i))
            } else {
                format!("site-{}{}", letter(i / 26 - 1), letter(i))
            }
        })
        .collect();
    ids.sort();
    ids
}

/// `n` sites with tiny data, certified, and their nodes on loopback TCP, fully connected.
async fn bench_nodes(tmp: &Path, ids: &[&str]) -> Result<(LocalConsortium, Vec<Node>)> {
    let policy = Policy::parse(BENCH_POLICY).context("the bench policy")?;
    let local = LocalConsortium::create(
        tmp,
        "bench-consortium",
        &Member::list(ids, "Bench Hospital"),
        1,
    )?;
    for (i, (s, id)) in local.sites.iter().zip(ids).enumerate() {
        // Tiny data: the rounds never read it, but a site only answers a roster of a study it
        // joined, was assigned cases in, and whose minimum number of cases it meets.
        crate::tools::demo::prepare_site(
            s,
            &tmp.join("synth").join(id),
            10,
            [16, 16, 8],
            i as u64 + 1,
            &format!("{id}-case-"),
            &crate::tools::demo::local_reader(id),
        )
        .await
        .with_context(|| format!("preparing {id}"))?;
    }
    let options = |_| StartOptions {
        policy: Some(policy.clone()),
        checkpoint_interval: Some(None),
        tap: None,
    };
    let nodes = local.start(options, Duration::from_secs(120)).await?;
    Ok((local, nodes))
}

/// The timed part of the network bench: round times, restarts, and where each node's audit
/// log and wire counter stood when timing began.
struct Timed {
    times: Vec<f64>,
    restarts: u32,
    marks: Vec<u64>,
    wire0: u64,
}

/// Two warm-up secure sums, then `rounds` timed ones, each checked against the plain sum.
async fn timed_sums(nodes: &[Node], study: &str, rounds: usize, dim: usize) -> Result<Timed> {
    let n = nodes.len();
    let coord = &nodes[0].handle;
    let roster: Vec<SiteId> = nodes.iter().map(|x| x.handle.site().clone()).collect();
    let warmup = 2;
    let mut t = Timed {
        times: Vec::with_capacity(rounds),
        restarts: 0,
        marks: Vec::new(),
        wire0: 0,
    };
    for step in 0..(warmup + rounds) as u32 {
        if step == warmup as u32 {
            for node in nodes {
                t.marks.push(node.handle.audit_head().await?.0);
                t.wire0 += node.handle.net_stats().await?.bytes_sent;
            }
        }
        let seed = 0x5ec_a660 + u64::from(step);
        let kind = JobKind::Bench {
            dim: dim as u32,
            seed,
        };
        let job = Job {
            study: study.to_string(),
            step,
            kind,
        };
        let before = coord.reader_study_progress(study).unwrap_or_default();
        let started = Instant::now();
        let sum = coord
            .secure_sum(study, job, dim, roster.clone())
            .await
            .map_err(|e| anyhow::anyhow!("secure sum {step}: {e}"))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        // Every site's vector is the same; the sum must be n times it, exactly.
        let x = jobs::bench_vector(dim as u32, seed)?;
        let want: Vec<u128> = x.iter().map(|v| v.wrapping_mul(n as u128)).collect();
        if sum != want {
            let wrong = sum.iter().zip(&want).filter(|(a, b)| a != b).count();
            anyhow::bail!(
                "WRONG SUM: secure sum {step} over {n} nodes differs from the plain sum of the sites' vectors in {wrong} of {dim} elements"
            );
        }
        let after = coord.reader_study_progress(study).unwrap_or_default();
        if step >= warmup as u32 {
            t.times.push(ms);
            t.restarts += after.restarts - before.restarts;
        }
    }
    Ok(t)
}

/// Bytes a site's audit log says it sent and received in a study since entry `from`.
async fn audited_traffic(site: &Site, study: &str, from: u64) -> Result<(u64, u64)> {
    let filter = AuditFilter {
        study: Some(study.to_string()),
        from_seq: Some(from),
        ..Default::default()
    };
    let (mut sent, mut recv) = (0u64, 0u64);
    for e in site.store.audit_entries(filter).await? {
        match e.event {
            AuditEvent::Sent { bytes, .. } => sent += bytes,
            AuditEvent::Received { bytes, .. } => recv += bytes,
            _ => {}
        }
    }
    Ok((sent, recv))
}

/// Times the rounds on started nodes and measures their traffic.
async fn measure(
    local: &LocalConsortium,
    nodes: &[Node],
    rounds: usize,
    dim: usize,
    started: Instant,
) -> Result<SecaggNetwork> {
    let n = nodes.len();
    let ids: Vec<&str> = local
        .sites
        .iter()
        .map(|s| s.config.site.id.as_str())
        .collect();
    let text = crate::tools::demo::classification_manifest(&ids).replace(
        "id = \"nodule-size-class\"",
        &format!("id = \"{SECAGG_STUDY}\""),
    );
    let study = launch_everywhere(nodes, &text).await?;
    let setup_seconds = started.elapsed().as_secs_f64();
    let mut t = timed_sums(nodes, &study, rounds, dim).await?;
    // Traffic of the timed rounds, from each site's audit log.
    let (mut site_sent, mut site_recv, mut coord_sent, mut coord_recv) = (0, 0, 0, 0);
    let mut wire1 = 0u64;
    for (i, (node, site)) in nodes.iter().zip(&local.sites).enumerate() {
        wire1 += node.handle.net_stats().await?.bytes_sent;
        let (sent, recv) = audited_traffic(site, &study, t.marks[i]).await?;
        if i == 0 {
            (coord_sent, coord_recv) = (sent, recv);
        } else {
            site_sent += sent;
            site_recv += recv;
        }
    }
    t.times.sort_by(f64::total_cmp);
    let per_site = |b: u64| b as f64 / (rounds * (n - 1)) as f64;
    let per_round = |b: u64| b as f64 / rounds as f64;
    Ok(SecaggNetwork {
        nodes: n,
        dim,
        rounds,
        setup_seconds,
        round_ms_median: quantile(&t.times, 0.5),
        round_ms_p95: quantile(&t.times, 0.95),
        round_ms_min: t.times.first().copied().unwrap_or(f64::NAN),
        round_ms_max: t.times.last().copied().unwrap_or(f64::NAN),
        site_bytes_sent_per_round: per_site(site_sent),
        site_bytes_received_per_round: per_site(site_recv),
        coordinator_bytes_sent_per_round: per_round(coord_sent),
        coordinator_bytes_received_per_round: per_round(coord_recv),
        wire_bytes_all_nodes_per_round: per_round(wire1 - t.wire0),
        restarts: t.restarts,
    })
}

/// `n` sites with tiny data, nodes on loopback TCP, fully connected, all joined and assigned to
/// the study [`SECAGG_STUDY`]; then `rounds` timed secure sums of `dim`-element bench vectors.
async fn secagg_network(n: usize, rounds: usize, dim: usize) -> Result<SecaggNetwork> {
    anyhow::ensure!(
        (3..=256).contains(&n),
        "a round needs 3 to 256 nodes, not {n}"
    );
    let started = Instant::now();
    let tmp = std::env::temp_dir().join(format!(
        "fedanno-bench-secagg-{}-{n}-{}",
        std::process::id(),
        crate::site::clock::now()
    ));
    std::fs::create_dir_all(&tmp)?;
    let result = async {
        let ids = bench_site_ids(n);
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (local, nodes) = bench_nodes(&tmp, &id_refs).await?;
        let run = measure(&local, &nodes, rounds, dim, started).await;
        for node in nodes {
            node.stop().await;
        }
        for s in local.sites {
            s.close();
        }
        run
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// One round's arithmetic for `n` sites, no network: every site signs a round key, checks the
/// signed roster and the key bundle, masks its vector; the coordinator sums. Repeated `reps`
/// times with fresh keys; the sum is checked against the plain sum every time.
fn secagg_arithmetic(n: usize, dim: usize, reps: usize) -> Result<SecaggArithmetic> {
    anyhow::ensure!(
        (3..=256).contains(&n),
        "a roster has 3 to 256 sites, not {n}"
    );
    let sites = arithmetic::Sites::new(n)?;
    let mut steps: [Vec<f64>; 4] = Default::default();
    for rep in 0..reps {
        for (times, t) in steps.iter_mut().zip(sites.round(rep, dim)?) {
            times.push(t);
        }
    }
    let [keys_ms, verify_ms, mask_ms, aggregate_ms] = steps.map(median);
    let total_ms = keys_ms + verify_ms + mask_ms + aggregate_ms;
    let per_site_ms = (keys_ms + verify_ms + mask_ms) / n as f64;
    Ok(SecaggArithmetic {
        sites: n,
        dim,
        reps,
        keys_ms,
        verify_ms,
        mask_ms,
        aggregate_ms,
        total_ms,
        per_site_ms,
        parallel_round_ms: per_site_ms + aggregate_ms,
        us_per_ordered_pair: total_ms * 1e3 / (n * (n - 1)) as f64,
    })
}

/// The secure-aggregation arithmetic of one round, without a network.
mod arithmetic {
    use std::time::Instant;

    use anyhow::Result;
    use fedanno_protocol::crypto;
    use fedanno_protocol::ids::SiteId;
    use fedanno_protocol::secagg::{self, Roster, RoundKey, SignedRoster};
    use ring::rand::SecureRandom;
    use ring::signature::Ed25519KeyPair;
    use x25519_dalek::StaticSecret;

    /// `n` sites with fixed signing keys; the first coordinates.
    pub(super) struct Sites {
        ids: Vec<SiteId>,
        signing: Vec<Ed25519KeyPair>,
        publics: Vec<[u8; 32]>,
    }

    fn ms(t: Instant) -> f64 {
        t.elapsed().as_secs_f64() * 1e3
    }

    impl Sites {
        pub(super) fn new(n: usize) -> Result<Sites> {
            let ids: Vec<SiteId> = (0..n)
                .map(|i| SiteId::new(format!("site-{i:03}")))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let signing: Vec<Ed25519KeyPair> = (0..n)
                .map(|i| {
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                    Ed25519KeyPair::from_seed_unchecked(&seed)
                        .map_err(|e| anyhow::anyhow!("site key: {e}"))
                })
                .collect::<Result<_>>()?;
            let publics = signing.iter().map(crypto::public_key).collect();
            Ok(Sites {
                ids,
                signing,
                publics,
            })
        }

        fn secrets(&self) -> Result<Vec<StaticSecret>> {
            let rng = ring::rand::SystemRandom::new();
            (0..self.ids.len())
                .map(|_| {
                    let mut b = [0u8; 32];
                    rng.fill(&mut b)
                        .map_err(|_| anyhow::anyhow!("no randomness"))?;
                    Ok(StaticSecret::from(b))
                })
                .collect()
        }

        /// One round with fresh keys; milliseconds of its four steps (round keys, every
        /// site's checks, masking, the sum), the sum checked against the plain sum.
        pub(super) fn round(&self, rep: usize, dim: usize) -> Result<[f64; 4]> {
            let (ids, n) = (&self.ids, self.ids.len());
            let roster = Roster {
                study: super::SECAGG_STUDY.into(),
                input: crypto::sha256(&(rep as u64).to_le_bytes()),
                attempt: 0,
                schema: "bench".into(),
                dim: dim as u32,
                sites: ids.clone(),
                min_sites: 3,
                coordinator: ids[0].clone(),
                deadline: u64::MAX,
            };
            let signed = SignedRoster::sign(roster.clone(), None, &self.signing[0]);
            let secrets = self.secrets()?;
            let xs: Vec<Vec<u128>> = (0..n)
                .map(|i| {
                    crate::reader_studies::jobs::bench_vector(dim as u32, (rep * n + i) as u64)
                })
                .collect::<Result<_, _>>()?;
            let t = Instant::now();
            let keys: Vec<RoundKey> = (0..n)
                .map(|i| RoundKey::sign(&roster, ids[i].clone(), &secrets[i], &self.signing[i]))
                .collect();
            let keys_ms = ms(t);
            let t = Instant::now();
            let site_key = |s: &SiteId| ids.binary_search(s).ok().map(|i| self.publics[i]);
            for _ in 0..n {
                signed
                    .verify(&self.publics[0])
                    .map_err(|e| anyhow::anyhow!("roster: {e}"))?;
                secagg::verify_key_bundle(&roster, &keys, site_key)
                    .map_err(|e| anyhow::anyhow!("key bundle: {e}"))?;
            }
            let verify_ms = ms(t);
            let t = Instant::now();
            let inputs = (0..n)
                .map(|i| secagg::mask_input(&xs[i], &roster, &ids[i], &secrets[i], &keys))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("mask: {e}"))?;
            let mask_ms = ms(t);
            let t = Instant::now();
            let sum =
                secagg::aggregate(&roster, &inputs).map_err(|e| anyhow::anyhow!("sum: {e}"))?;
            let aggregate_ms = ms(t);
            let mut want = vec![0u128; dim];
            for x in &xs {
                for (w, v) in want.iter_mut().zip(x) {
                    *w = w.wrapping_add(*v);
                }
            }
            anyhow::ensure!(
                sum == want,
                "WRONG SUM: the masked sum of {n} sites differs from the plain sum of their vectors"
            );
            Ok([keys_ms, verify_ms, mask_ms, aggregate_ms])
        }
    }
}

/// Runs `fedanno demo` (defaults: 3 sites × 10 cases of 64×64×32) and reads each study's rounds
/// and per-site traffic from its report.
async fn secagg_demo() -> Result<(Vec<SecaggDemoReaderStudy>, f64)> {
    let summary = crate::tools::demo::run(crate::tools::demo::DemoOptions {
        out: None,
        cases: 10,
        size: [64, 64, 32],
    })
    .await?;
    let mut out = Vec::new();
    for st in &summary.studies {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&st.report_json)?)
                .with_context(|| format!("reading {}", st.report_json.display()))?;
        let rounds = report["consensus"]["secure_rounds"]
            .as_u64()
            .context("a report without consensus.secure_rounds")?;
        let coordinator = report["coordinator"].as_str().unwrap_or_default();
        let mut sites = Vec::new();
        for s in report["sites"]
            .as_array()
            .context("a report without sites")?
        {
            let field = |k: &str| s[k].as_u64().with_context(|| format!("sites[].{k}"));
            sites.push((
                s["site"].as_str().unwrap_or_default().to_string(),
                field("bytes_sent")?,
                field("bytes_received")?,
            ));
        }
        let others: Vec<_> = sites.iter().filter(|s| s.0 != coordinator).collect();
        let total: u64 = others.iter().map(|s| s.1 + s.2).sum();
        out.push(SecaggDemoReaderStudy {
            study: st.study.clone(),
            method: st.method.clone(),
            protocol: st.protocol.clone(),
            secure_rounds: rounds as u32,
            bytes_per_site_per_round: total as f64
                / (others.len().max(1) as f64 * rounds.max(1) as f64),
            sites,
        });
    }
    if !summary.kept {
        let _ = std::fs::remove_dir_all(&summary.out);
    }
    Ok((out, summary.seconds))
}
