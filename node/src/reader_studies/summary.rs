//! Turns a finished study run into the [`ReaderStudyReport`] a coordinator publishes: only released
//! aggregates (consensus parameters, per-reader figures, agreement), the protocol facts
//! (rounds, restarts, bytes per site) and the audit checkpoints that cover the study.

use serde_json::json;

use super::jobs::{ConsensusOutcome, DICE_BINS, HD_EDGES, QualityOutcome};
use super::manifest::{Manifest, TaskKind};
use crate::reader_studies::report::{
    Agreement, AuditRef, CohenPair, ConsensusSummary, Histogram, PrivacySummary, ReaderPerformance,
    ReaderStudyReport, SiteSummary,
};
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
    let (protocol, units, parameters) = match consensus {
        ConsensusOutcome::Staple {
            params,
            voxels_ge_half,
            probability_sum,
            units,
            one_round,
            ..
        } => (
            if *one_round { "one-round" } else { "iterative" },
            *units,
            json!({
                "prior": params.prior,
                "sensitivity": named(readers.iter().map(|r| r.0.clone()), &params.sensitivity),
                "specificity": named(readers.iter().map(|r| r.0.clone()), &params.specificity),
                "voxels_ge_half": voxels_ge_half,
                "probability_sum": probability_sum,
            }),
        ),
        ConsensusOutcome::Multi {
            priors,
            label_counts,
            ..
        } => (
            "iterative",
            label_counts.iter().sum(),
            json!({ "priors": priors, "label_counts": label_counts }),
        ),
        ConsensusOutcome::DawidSkene {
            params,
            log_likelihood,
            units,
            ..
        } => (
            "iterative",
            *units,
            json!({
                "class_priors": named(m.task.categories.iter().cloned(), &params.class_priors),
                "log_likelihood": log_likelihood,
            }),
        ),
    };
    // (json! turns non-finite numbers into null.)
    let mut performance = Vec::new();
    for (i, (name, kind)) in readers.iter().enumerate() {
        let q = quality.and_then(|q| q.readers.get(i));
        let mut p = ReaderPerformance {
            reader: name.clone(),
            kind: kind.to_string(),
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
                TaskKind::Segmentation => {
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
                    if m.metrics.release.iter().any(|x| x == "hd95")
                        && q.hd95_histogram.len() + 1 == HD_EDGES.len()
                    {
                        p.hd95_histogram = Some(Histogram {
                            edges: HD_EDGES.to_vec(),
                            counts: q.hd95_histogram.clone(),
                        });
                    }
                }
                TaskKind::Classification => {
                    let k = m.task.categories.len();
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
                    if k == 2 {
                        // Category 2 = positive.
                        if let [tn, fp, fneg, tp] = q.confusion[..] {
                            p.sensitivity = fixed::ratio(u128::from(tp), u128::from(tp + fneg));
                            p.specificity = fixed::ratio(u128::from(tn), u128::from(tn + fp));
                        }
                    }
                }
            }
        }
        performance.push(p);
    }
    let agreement = quality.and_then(|q| q.agreement.as_ref()).map(|a| {
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
    });
    let mut released = vec![format!(
        "{} consensus parameters",
        m.consensus.method.as_str()
    )];
    if quality.is_some() {
        released.extend(m.metrics.release.iter().cloned());
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
    ReaderStudyReport {
        study: m.study.id.clone(),
        title: m.study.title.clone(),
        task: match m.task.kind {
            TaskKind::Segmentation => "segmentation".into(),
            TaskKind::Classification => "classification".into(),
        },
        generated_at: facts.generated_at,
        coordinator: facts.coordinator.clone(),
        sites: facts
            .sites
            .iter()
            .map(|s| SiteSummary {
                site: s.site.clone(),
                status: s.status.clone(),
                reason: s.reason.clone(),
                rounds: if s.status == "contributed" { facts.secure_rounds } else { 0 },
                bytes_sent: s.bytes_sent,
                bytes_received: s.bytes_received,
                messages: s.messages,
            })
            .collect(),
        consensus: ConsensusSummary {
            method: m.consensus.method.as_str().into(),
            protocol: protocol.into(),
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
        privacy: PrivacySummary {
            min_sites: m.privacy.min_sites,
            min_cases: m.privacy.min_cases,
            aggregation: "SA-v1: pairwise masks over Z_2^128 (X25519 + HKDF-SHA256 + ChaCha20), signed rosters, restart on dropout, differencing guard".into(),
            released,
            notes,
        },
        audit: facts.audit.clone(),
    }
}

/// `{name: value}` in order (non-finite values become null).
fn named(names: impl Iterator<Item = String>, values: &[f64]) -> serde_json::Value {
    serde_json::Value::Object(names.zip(values).map(|(n, &v)| (n, json!(v))).collect())
}
