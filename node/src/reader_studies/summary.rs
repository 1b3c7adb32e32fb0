//! Turns a finished study run into the [`ReaderStudyReport`] a coordinator publishes: only released
//! aggregates (consensus parameters, per-reader figures, agreement), the protocol facts
//! (rounds, restarts, bytes per site) and the audit checkpoints that cover the study.

use serde_json::json;

use super::jobs::{ConsensusOutcome, DICE_BINS, HD_EDGES, QualityOutcome, ReaderQuality};
use super::manifest::{Manifest, Metric, Protocol, TaskKind};
use crate::annotations::readers::ReaderKind;
use crate::reader_studies::report::{
    Agreement, AuditRef, CohenPair, ConsensusSummary, Histogram, PrivacySummary, ReaderPerformance,
    ReaderStudyReport, SiteSummary,
};
use fedanno_stats::agreement::AgreementStats;
use fedanno_stats::fixed;

/// Per-site traffic and status, gathered from the coordinator's store and audit log.
#[derive(Debug, Clone, Default)]
pub struct SiteFacts {
    pub site: String,
    pub status: String,
    pub reason: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages: u64,
}

/// Everything the report needs besides the released statistics.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub generated_at: u64,
    pub coordinator: String,
    pub sites: Vec<SiteFacts>,
    pub secure_rounds: u32,
    pub restarts: u32,
    pub dropped: Vec<String>,
    pub one_round_refused: Option<String>,
    pub audit: Vec<AuditRef>,
}

fn opt(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn kappa(x: f64) -> Option<f64> {
    opt(x)
}

pub fn build(
    m: &Manifest,
    consensus: &ConsensusOutcome,
    quality: Option<&QualityOutcome>,
    facts: &RunFacts,
) -> ReaderStudyReport {
    let readers = m.reader_list();
    let (protocol, units, parameters) = consensus_parameters(m, consensus, &readers);
    let performance = readers
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            let q = quality.and_then(|q| q.readers.get(i));
            performance(m, consensus, q, i, name, *kind)
        })
        .collect();
    let agreement = quality
        .and_then(|q| q.agreement.as_ref())
        .map(|a| agreement(m, &readers, a));
    ReaderStudyReport {
        study: m.study.id.clone(),
        title: m.study.title.clone(),
        task: m.task.kind,
        generated_at: facts.generated_at,
        coordinator: facts.coordinator.clone(),
        sites: site_summaries(facts),
        consensus: ConsensusSummary {
            method: m.consensus.method,
            protocol,
            secure_rounds: facts.secure_rounds,
            iterations: consensus.iterations(),
            converged: consensus.converged(),
            restarts: facts.restarts,
            dropped: facts.dropped.clone(),
            cases: match consensus {
                ConsensusOutcome::DawidSkene { units, .. } => *units,
                _ => quality
                    .map(|q| q.readers.iter().map(|r| r.cases).max().unwrap_or(0))
                    .unwrap_or(0),
            },
            units,
            parameters,
        },
        readers: performance,
        agreement,
        privacy: privacy(m, quality.is_some(), facts),
        audit: facts.audit.clone(),
    }
}

/// The protocol that ran, the consensus units, and the method's released parameters as JSON
/// (`json!` turns non-finite numbers into null).
fn consensus_parameters(
    m: &Manifest,
    consensus: &ConsensusOutcome,
    readers: &[(String, ReaderKind)],
) -> (Protocol, u64, serde_json::Value) {
    let names = || readers.iter().map(|r| r.0.clone());
    match consensus {
        ConsensusOutcome::Staple {
            params,
            voxels_ge_half,
            probability_sum,
            units,
            one_round,
            ..
        } => (
            if *one_round {
                Protocol::OneRound
            } else {
                Protocol::Iterative
            },
            *units,
            json!({
                "prior": params.prior,
                "sensitivity": named(names(), &params.sensitivity),
                "specificity": named(names(), &params.specificity),
                "voxels_ge_half": voxels_ge_half,
                "probability_sum": probability_sum,
            }),
        ),
        ConsensusOutcome::Multi {
            priors,
            label_counts,
            ..
        } => (
            Protocol::Iterative,
            label_counts.iter().sum(),
            json!({ "priors": priors, "label_counts": label_counts }),
        ),
        ConsensusOutcome::DawidSkene {
            params,
            log_likelihood,
            units,
            ..
        } => (
            Protocol::Iterative,
            *units,
            json!({
                "class_priors": named(m.task.categories.iter().cloned(), &params.class_priors),
                "log_likelihood": log_likelihood,
            }),
        ),
    }
}

/// Reader `i`'s figures: the consensus model's view of it, then its released quality.
fn performance(
    m: &Manifest,
    consensus: &ConsensusOutcome,
    q: Option<&ReaderQuality>,
    i: usize,
    name: &str,
    kind: ReaderKind,
) -> ReaderPerformance {
    let mut p = ReaderPerformance {
        reader: name.to_owned(),
        kind,
        cases: q.map_or(0, |q| q.cases),
        sensitivity: None,
        specificity: None,
        dice_pooled: None,
        dice_mean: None,
        dice_sd: None,
        dice_histogram: None,
        hd95_histogram: None,
        accuracy: None,
        confusion: None,
    };
    match consensus {
        ConsensusOutcome::Staple { params, .. } => {
            p.sensitivity = params.sensitivity.get(i).copied();
            p.specificity = params.specificity.get(i).copied();
        }
        ConsensusOutcome::DawidSkene { params, .. } => {
            p.confusion = Some(params.rater_confusion(i));
        }
        ConsensusOutcome::Multi { .. } => {}
    }
    if let Some(q) = q {
        match m.task.kind {
            TaskKind::Segmentation => segmentation_figures(&mut p, m, consensus, q),
            TaskKind::Classification => classification_figures(&mut p, m.task.categories.len(), q),
        }
    }
    p
}

/// Overlap with the consensus: sensitivity and specificity (unless binary STAPLE's parameters
/// give them), Dice, and the Dice and HD95 histograms.
fn segmentation_figures(
    p: &mut ReaderPerformance,
    m: &Manifest,
    consensus: &ConsensusOutcome,
    q: &ReaderQuality,
) {
    if !matches!(consensus, ConsensusOutcome::Staple { .. }) {
        p.sensitivity = q.sensitivity();
        p.specificity = q.specificity();
    }
    p.dice_pooled = q.dice_pooled();
    p.dice_mean = q.dice_mean();
    p.dice_sd = q.dice_sd();
    if q.dice_histogram.len() == DICE_BINS {
        p.dice_histogram = Some(Histogram {
            edges: (0..=DICE_BINS)
                .map(|b| b as f64 / DICE_BINS as f64)
                .collect(),
            counts: q.dice_histogram.clone(),
        });
    }
    if m.metrics.releases(Metric::Hd95) && q.hd95_histogram.len() + 1 == HD_EDGES.len() {
        p.hd95_histogram = Some(Histogram {
            edges: HD_EDGES.to_vec(),
            counts: q.hd95_histogram.clone(),
        });
    }
}

/// Against the consensus category: cases, accuracy, the row-normalised confusion, and for two
/// categories (the second positive) sensitivity and specificity.
fn classification_figures(p: &mut ReaderPerformance, k: usize, q: &ReaderQuality) {
    let total: u64 = q.confusion.iter().sum();
    p.cases = total;
    let agree: u64 = (0..k).filter_map(|c| q.confusion.get(c * k + c)).sum();
    p.accuracy = fixed::ratio(u128::from(agree), u128::from(total));
    let rows: Vec<Vec<f64>> = q
        .confusion
        .chunks(k.max(1))
        .map(|row| {
            let s: u64 = row.iter().sum();
            row.iter()
                .map(|&x| if s == 0 { 0.0 } else { x as f64 / s as f64 })
                .collect()
        })
        .collect();
    p.confusion = Some(rows);
    if k == 2
        && let [tn, fp, fneg, tp] = q.confusion[..]
    {
        p.sensitivity = fixed::ratio(u128::from(tp), u128::from(tp + fneg));
        p.specificity = fixed::ratio(u128::from(tn), u128::from(tn + fp));
    }
}

fn agreement(m: &Manifest, readers: &[(String, ReaderKind)], a: &AgreementStats) -> Agreement {
    let values = fedanno_stats::ratings::numeric_values(&m.task.categories);
    let rep = a.finalize(values.as_deref());
    let name = |i: usize| {
        readers
            .get(i)
            .map_or_else(|| "?".to_string(), |r| r.0.clone())
    };
    Agreement {
        categories: m.task.categories.clone(),
        units: rep.units,
        percent: opt(rep.percent_agreement),
        fleiss: kappa(rep.fleiss_kappa),
        krippendorff: kappa(rep.krippendorff_alpha.ordinal),
        krippendorff_level: "ordinal".into(),
        cohen: rep
            .cohen_pairwise
            .iter()
            .filter(|p| p.kappa.n_items > 0)
            .map(|p| CohenPair {
                a: name(p.raters[0]),
                b: name(p.raters[1]),
                units: p.kappa.n_items,
                kappa: kappa(p.kappa.kappa_quadratic),
                weights: "quadratic".into(),
            })
            .collect(),
    }
}

fn site_summaries(facts: &RunFacts) -> Vec<SiteSummary> {
    facts
        .sites
        .iter()
        .map(|s| SiteSummary {
            site: s.site.clone(),
            status: s.status.clone(),
            reason: s.reason.clone(),
            rounds: if s.status == "contributed" {
                facts.secure_rounds
            } else {
                0
            },
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            messages: s.messages,
        })
        .collect()
}

/// The thresholds, what was released, and the notes on how.
fn privacy(m: &Manifest, quality_released: bool, facts: &RunFacts) -> PrivacySummary {
    let mut released = vec![format!(
        "{} consensus parameters",
        m.consensus.method.as_str()
    )];
    if quality_released {
        released.extend(m.metrics.release.iter().map(|x| x.as_str().to_owned()));
    }
    let mut notes = vec![
        "Every vector left its site masked; the coordinator saw only sums over the roster.".into(),
        "Per-iteration EM statistics are protected by secure aggregation, not by differential privacy.".into(),
    ];
    if let Some(why) = &facts.one_round_refused {
        notes.push(format!(
            "One-round STAPLE was refused ({why}); the iterative protocol ran instead."
        ));
    }
    if !facts.dropped.is_empty() {
        notes.push(format!(
            "Dropped during the run (rounds restarted without them): {}.",
            facts.dropped.join(", ")
        ));
    }
    PrivacySummary {
        min_sites: m.privacy.min_sites,
        min_cases: m.privacy.min_cases,
        aggregation: "SA-v1: pairwise masks over Z_2^128 (X25519 + HKDF-SHA256 + ChaCha20), signed rosters, restart on dropout, differencing guard".into(),
        released,
        notes,
    }
}

/// `{name: value}` in order (non-finite values become null).
fn named(names: impl Iterator<Item = String>, values: &[f64]) -> serde_json::Value {
    serde_json::Value::Object(names.zip(values).map(|(n, &v)| (n, json!(v))).collect())
}
