//! The coordinator's side: the consensus EMs and the quality release as sequences of secure
//! sums, step for step the pooled drivers of `stats`.

use super::*;

/// Numbers the study's jobs and sums them through the aggregator.
struct Steps<'a, A> {
    agg: &'a mut A,
    study: String,
    step: u32,
    /// Raters R (every reader of the study).
    r: usize,
}

impl<'a, A: Aggregator> Steps<'a, A> {
    fn new(m: &Manifest, agg: &'a mut A, first_step: u32) -> Self {
        Steps {
            agg,
            study: m.study.id.clone(),
            step: first_step,
            r: m.all_readers().len(),
        }
    }

    async fn sum(&mut self, kind: JobKind, dim: usize) -> Result<Vec<u128>, EmError> {
        let job = Job {
            study: self.study.clone(),
            step: self.step,
            kind,
        };
        self.step += 1;
        let v = self.agg.sum(&job, dim).await?;
        if v.len() != dim {
            return Err(EmError::Dim {
                got: v.len(),
                expected: dim,
            });
        }
        Ok(v)
    }

    async fn staple(&mut self, kind: JobKind) -> Result<StapleStats, EmError> {
        let v = self.sum(kind, staple_dim(self.r)).await?;
        Ok(staple_from(&v, self.r))
    }

    async fn ds(&mut self, kind: JobKind, k: usize) -> Result<DsStats, EmError> {
        let v = self.sum(kind, ds_dim(self.r, k)).await?;
        Ok(ds_from(&v, self.r, k))
    }
}

/// Whether a manifest's binary STAPLE runs as one round.
pub fn wants_one_round(m: &Manifest) -> bool {
    m.consensus.method == Method::Staple
        && match m.consensus.protocol {
            Protocol::OneRound => true,
            Protocol::Iterative => false,
            Protocol::Auto => m.all_readers().len() <= ONE_ROUND_MAX_RATERS,
        }
}

/// Runs the study's consensus EM through the aggregator. `one_round` picks the one-round
/// STAPLE protocol (callers fall back to iterative when a site's policy refuses it).
pub async fn run_consensus<A: Aggregator>(
    m: &Manifest,
    agg: &mut A,
    one_round: bool,
    first_step: u32,
) -> Result<(ConsensusOutcome, u32), EmError> {
    let max_iterations = m.consensus.max_iterations.max(1);
    let mut s = Steps::new(m, agg, first_step);
    let outcome = match m.consensus.method {
        Method::Staple if one_round => staple_one_round(&mut s, max_iterations).await?,
        Method::Staple => staple_iterative(&mut s, max_iterations).await?,
        Method::MultilabelStaple => {
            multilabel_staple(&mut s, m.task.labels.len() + 1, max_iterations).await?
        }
        Method::DawidSkene => dawid_skene(&mut s, m.task.categories.len(), max_iterations).await?,
    };
    Ok((outcome, s.step))
}

/// One secure sum of the dense pattern histogram; the EM then runs on the sum.
async fn staple_one_round<A: Aggregator>(
    s: &mut Steps<'_, A>,
    max_iterations: u32,
) -> Result<ConsensusOutcome, EmError> {
    let r = s.r;
    if r > ONE_ROUND_MAX_RATERS {
        return Err(EmError::Mismatch(
            "too many raters for the one-round histogram",
        ));
    }
    let v = s.sum(JobKind::StapleHistogram, histogram_dim(r)).await?;
    let mut patterns: Vec<(u64, u64)> = v
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, &c)| (ternary_key(i, r), c as u64))
        .collect();
    patterns.sort_unstable();
    let hist = PatternHistogram {
        n_raters: r,
        patterns,
    };
    let res = staple::staple(
        &hist,
        &staple::StapleOptions {
            confidence_weight: 1.0,
            max_iterations,
        },
    )?;
    let units = hist
        .patterns
        .iter()
        .filter(|p| p.0 >> 32 != 0)
        .map(|p| p.1)
        .sum();
    Ok(ConsensusOutcome::Staple {
        params: res.params,
        iterations: res.iterations,
        converged: res.converged,
        voxels_ge_half: res.voxels_ge_half,
        probability_sum: res.probability_sum,
        units,
        one_round: true,
    })
}

/// One secure sum per E-step.
async fn staple_iterative<A: Aggregator>(
    s: &mut Steps<'_, A>,
    max_iterations: u32,
) -> Result<ConsensusOutcome, EmError> {
    let mut stats = s.staple(JobKind::StapleInit).await?;
    let mut params = staple::initial_params(&stats, 1.0);
    let mut iteration = 0u32;
    let mut converged = false;
    loop {
        let next = staple::m_step(&stats, &params);
        stats = s
            .staple(JobKind::StapleStep {
                params: next.clone(),
            })
            .await?;
        let stop = iteration > 0 && staple::converged(&next, &params);
        params = next;
        if stop {
            converged = true;
            break;
        }
        iteration += 1;
        if iteration >= max_iterations {
            break;
        }
    }
    Ok(ConsensusOutcome::Staple {
        params,
        iterations: iteration,
        converged,
        voxels_ge_half: stats.ge_half,
        probability_sum: stats.probability_sum(),
        units: stats.units,
        one_round: false,
    })
}

/// The seed, one secure sum per E-step, then the voxels per output label.
async fn multilabel_staple<A: Aggregator>(
    s: &mut Steps<'_, A>,
    l: usize,
    max_iterations: u32,
) -> Result<ConsensusOutcome, EmError> {
    let r = s.r;
    let seed = multi_seed_from(
        &s.sum(JobKind::MultiSeed, multi_seed_dim(r, l)).await?,
        r,
        l,
    );
    let priors = seed.priors();
    let mut params = seed.confusion();
    let mut iteration = 0u32;
    let mut converged = false;
    loop {
        let kind = JobKind::MultiStep {
            params: params.clone(),
            priors: priors.clone(),
        };
        let mass = s.sum(kind, r * (l + 1) * l).await?;
        let next = multilabel::m_step(&MultiLabelStats {
            n_raters: r,
            n_labels: l,
            mass,
        });
        let change = next.max_change(&params);
        params = next;
        if change < 1e-5 {
            converged = true;
            break;
        }
        iteration += 1;
        if iteration >= max_iterations {
            break;
        }
    }
    let kind = JobKind::MultiCounts {
        params: params.clone(),
        priors: priors.clone(),
    };
    let counts = s.sum(kind, l + 1).await?;
    Ok(ConsensusOutcome::Multi {
        params,
        priors,
        iterations: iteration,
        converged,
        label_counts: counts.into_iter().map(|c| c as u64).collect(),
    })
}

/// One secure sum per E-step, and one more for the final likelihood.
async fn dawid_skene<A: Aggregator>(
    s: &mut Steps<'_, A>,
    k: usize,
    max_iterations: u32,
) -> Result<ConsensusOutcome, EmError> {
    let mut params = dawid_skene::m_step(&s.ds(JobKind::DsInit, k).await?);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iterations {
        let kind = JobKind::DsStep {
            params: params.clone(),
        };
        let next = dawid_skene::m_step(&s.ds(kind, k).await?);
        iterations += 1;
        let change = next.max_change(&params);
        params = next;
        if change < 1e-10 {
            converged = true;
            break;
        }
    }
    let kind = JobKind::DsStep {
        params: params.clone(),
    };
    let last = s.ds(kind, k).await?;
    Ok(ConsensusOutcome::DawidSkene {
        log_likelihood: last.log_likelihood(),
        units: last.units,
        params,
        iterations,
        converged,
    })
}

/// Releases the per-reader quality statistics against the consensus.
pub async fn run_quality<A: Aggregator>(
    m: &Manifest,
    consensus: &ConsensusOutcome,
    agg: &mut A,
    first_step: u32,
) -> Result<(QualityOutcome, u32), EmError> {
    let mut s = Steps::new(m, agg, first_step);
    let r = s.r;
    let out = match consensus {
        ConsensusOutcome::Staple { .. } | ConsensusOutcome::Multi { .. } => {
            let kind = JobKind::SegQuality {
                consensus: consensus
                    .seg_consensus()
                    .ok_or(EmError::Mismatch("no segmentation consensus"))?,
                hd95: m.metrics.releases(Metric::Hd95),
            };
            seg_outcome(&s.sum(kind, seg_quality_dim(r)).await?, r)
        }
        ConsensusOutcome::DawidSkene { params, .. } => {
            let kind = JobKind::LabelQuality {
                params: params.clone(),
            };
            let v = s.sum(kind, label_quality_dim(r, params.k)).await?;
            label_outcome(&v, r, params.k)
        }
    };
    Ok((out, s.step))
}

fn seg_outcome(v: &[u128], r: usize) -> QualityOutcome {
    let mut w = Words::new(v);
    let readers = (0..r)
        .map(|_| {
            // Fields in layout order: struct fields evaluate top to bottom.
            ReaderQuality {
                cases: w.u64(),
                tp: w.u64(),
                fp: w.u64(),
                fn_: w.u64(),
                tn: w.u64(),
                dice_sum: w.next(),
                dice_sq_sum: w.next(),
                dice_cases: w.u64(),
                dice_histogram: w.take64(DICE_BINS),
                hd95_histogram: w.take64(HD_EDGES.len() - 1),
                hd95_undefined: w.u64(),
                confusion: Vec::new(),
            }
        })
        .collect();
    QualityOutcome {
        readers,
        consensus_counts: Vec::new(),
        agreement: None,
    }
}

fn label_outcome(v: &[u128], r: usize, k: usize) -> QualityOutcome {
    let mut w = Words::new(v);
    let readers = (0..r)
        .map(|_| ReaderQuality {
            confusion: w.take64(k * k),
            ..ReaderQuality::default()
        })
        .collect();
    let consensus_counts = w.take64(k);
    let rest: Vec<u128> = w.take(agreement_dim(r, k));
    QualityOutcome {
        readers,
        consensus_counts,
        agreement: Some(agreement_from(&rest, r, k)),
    }
}
