//! Federated EM and quality releases as a sequence of secure sums.
//!
//! A [`Job`] is what the coordinator asks every roster site to compute; [`compute`] is the
//! site's side (pure: local data in, a fixed-layout integer vector out); the drivers
//! ([`run_consensus`], [`run_quality`]) are the coordinator's side, written against an
//! [`Aggregator`] that returns the sum of every site's vector. The drivers repeat the pooled
//! drivers of `stats` step for step, and every vector is an exact integer encoding of the
//! `stats` sufficient statistics, so a federated run equals the pooled one bit for bit (see
//! the tests, where the aggregator is a plain sum over partitions).
//!
//! A job and the released [`ConsensusOutcome`] cross between sites in their wire form
//! ([`fedanno_protocol::jobs`], plain data whose bytes that crate pins); `wire` converts, and
//! checks the shapes of what it decodes. The statistics a job releases have typed names
//! ([`Statistic`]), the same names rosters and site policies use.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::manifest::{Manifest, Method, Metric, Protocol};
use fedanno_stats::StatsError;
use fedanno_stats::agreement::AgreementStats;
use fedanno_stats::dawid_skene::{self, DsParams, DsStats};
use fedanno_stats::fixed::{self, quantize_unit};
use fedanno_stats::majority::unique_argmax;
use fedanno_stats::multilabel::{
    self, LabelPatternHistogram, MultiLabelParams, MultiLabelSeed, MultiLabelStats,
};
use fedanno_stats::ratings::Ratings;
use fedanno_stats::staple::{self, PatternHistogram, StapleParams, StapleStats};
use fedanno_stats::surface::{self, Definition, Grid};

mod compute;
mod drivers;
mod layout;
mod statistic;
mod wire;

pub use compute::{bench_vector, compute, consensus_map, ds_labels};
pub use drivers::{run_consensus, run_quality, wants_one_round};
pub use layout::*;
pub use statistic::Statistic;
pub use wire::WireError;

/// Most raters for the one-round STAPLE histogram (3^R cells: absent, background, foreground).
pub const ONE_ROUND_MAX_RATERS: usize = 10;
/// Per-case Dice histogram: 20 bins of 0.05.
pub const DICE_BINS: usize = 20;
/// HD95 histogram edges (mm); the last bin is open, and one more cell counts undefined HD95.
pub const HD_EDGES: [f64; 12] = [
    0.0,
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    f64::INFINITY,
];

#[derive(Debug, Error)]
pub enum EmError {
    #[error("{0}")]
    Stats(#[from] StatsError),
    #[error("a summed vector has {got} elements, expected {expected}")]
    Dim { got: usize, expected: usize },
    #[error("the job does not fit this site's data: {0}")]
    Mismatch(&'static str),
    #[error("aggregation failed: {0}")]
    Aggregate(String),
    #[error("a site refused the round: {0}")]
    Refused(String),
}

/// One computation every site performs for one secure sum. Its bytes are those of its wire
/// form ([`fedanno_protocol::jobs::Job`]): [`Job::to_bytes`], [`Job::from_bytes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub study: String,
    /// Position in the study's sequence of sums (makes every job's bytes distinct).
    pub step: u32,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// Binary STAPLE: the initial (vote-fraction) E-step.
    StapleInit,
    /// Binary STAPLE: an E-step under the parameters.
    StapleStep {
        params: StapleParams,
    },
    /// Binary STAPLE, one round: the dense pattern histogram (3^R cells).
    StapleHistogram,
    /// Multi-label STAPLE seed (label counts and majority-vote matrices).
    MultiSeed,
    MultiStep {
        params: MultiLabelParams,
        priors: Vec<f64>,
    },
    /// Voxels per output label under the final parameters.
    MultiCounts {
        params: MultiLabelParams,
        priors: Vec<f64>,
    },
    DsInit,
    DsStep {
        params: DsParams,
    },
    /// Per-reader overlap with the consensus segmentation.
    SegQuality {
        consensus: SegConsensus,
        hd95: bool,
    },
    /// Per-reader confusion against the Dawid–Skene consensus and agreement statistics.
    LabelQuality {
        params: DsParams,
    },
    /// Used only by `fedanno bench secagg`: `dim` pseudo-random elements derived from `seed`
    /// alone ([`bench_vector`]), so that real rounds can be timed without touching any data.
    /// The vector carries nothing about the site (not even its case count), so a policy that
    /// allows the statistic "bench" releases nothing. No study driver emits this job.
    Bench {
        dim: u32,
        seed: u64,
    },
}

/// The released consensus model a site turns into its local consensus masks.
#[derive(Debug, Clone, PartialEq)]
pub enum SegConsensus {
    Staple(StapleParams),
    Multi {
        params: MultiLabelParams,
        priors: Vec<f64>,
    },
}

impl Job {
    /// The statistic this job's vector releases (the roster's schema, what the policy sees).
    pub fn statistic(&self) -> Statistic {
        match self.kind {
            JobKind::StapleInit | JobKind::StapleStep { .. } => Statistic::Staple,
            JobKind::StapleHistogram => Statistic::StaplePatternHistogram,
            JobKind::MultiSeed | JobKind::MultiStep { .. } | JobKind::MultiCounts { .. } => {
                Statistic::MultilabelStaple
            }
            JobKind::DsInit | JobKind::DsStep { .. } => Statistic::DawidSkene,
            JobKind::SegQuality { .. } => Statistic::SegmentationMetrics,
            JobKind::LabelQuality { .. } => Statistic::Agreement,
            JobKind::Bench { .. } => Statistic::Bench,
        }
    }
}

/// One segmentation case at a site: its grid and the study readers' label maps, kept as runs
/// so that a site's study data costs its masks' runs, not their voxels; a case's maps are
/// unpacked only while a job works on that case.
#[derive(Debug, Clone)]
pub struct SegCase {
    /// The case's pseudonymous uid (local bookkeeping; never part of a vector).
    pub id: String,
    /// (x, y, z) voxels, x fastest.
    pub dims: [usize; 3],
    /// (x, y, z) spacing in mm.
    pub spacing: [f64; 3],
    /// (global rater index, label map), by rater index.
    pub readers: Vec<(usize, PackedMask)>,
}

/// A label map as runs of (value, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedMask {
    runs: Vec<(u8, u32)>,
    len: usize,
}

impl PackedMask {
    pub fn pack(labels: &[u8]) -> Self {
        PackedMask {
            runs: crate::annotations::codec::runs(labels),
            len: labels.len(),
        }
    }

    /// The label map.
    pub fn unpack(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for &(v, n) in &self.runs {
            out.resize(out.len() + n as usize, v);
        }
        out
    }

    /// Voxels.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl SegCase {
    /// A case of the readers' label maps (packed here).
    pub fn new(
        id: String,
        dims: [usize; 3],
        spacing: [f64; 3],
        readers: Vec<(usize, Vec<u8>)>,
    ) -> Self {
        SegCase {
            id,
            dims,
            spacing,
            readers: readers
                .into_iter()
                .map(|(r, m)| (r, PackedMask::pack(&m)))
                .collect(),
        }
    }

    /// The readers' label maps, unpacked (for one job on this case).
    pub fn masks(&self) -> Vec<(usize, Vec<u8>)> {
        self.readers.iter().map(|(r, m)| (*r, m.unpack())).collect()
    }

    fn grid(&self) -> Grid {
        Grid {
            dims: [self.dims[2], self.dims[1], self.dims[0]],
            spacing: [self.spacing[2], self.spacing[1], self.spacing[0]],
        }
    }
}

/// A site's pattern histograms, built on first use: every EM step of a study reads them, and
/// rebuilding them would cost a pass over every voxel per step.
#[derive(Debug, Clone, Default)]
pub struct Histograms {
    binary: OnceLock<PatternHistogram>,
    labels: OnceLock<LabelPatternHistogram>,
}

/// A site's data for one study, in the study's rater order.
#[derive(Debug, Clone)]
pub enum LocalData {
    Segmentation {
        n_raters: usize,
        /// Labels L including background (multi-label), 2 for binary.
        n_labels: usize,
        cases: Vec<SegCase>,
        /// Built on first use from `cases`.
        histograms: Histograms,
    },
    Classification {
        ratings: Ratings,
    },
}

impl LocalData {
    /// Cases behind this site's contribution.
    pub fn cases(&self) -> u64 {
        match self {
            LocalData::Segmentation { cases, .. } => cases.len() as u64,
            LocalData::Classification { ratings } => ratings
                .rows()
                .filter(|r| r.iter().any(Option::is_some))
                .count() as u64,
        }
    }

    /// Raters, labels, cases and histograms of segmentation data (`needs` names the job that
    /// needs them, for the error on classification data).
    fn segmentation(
        &self,
        needs: &'static str,
    ) -> Result<(usize, usize, &[SegCase], &Histograms), EmError> {
        match self {
            LocalData::Segmentation {
                n_raters,
                n_labels,
                cases,
                histograms,
            } => Ok((*n_raters, *n_labels, cases, histograms)),
            LocalData::Classification { .. } => Err(EmError::Mismatch(needs)),
        }
    }

    /// The binary pattern histogram of every case, raters embedded at their global positions.
    pub fn binary_histogram(&self) -> Result<&PatternHistogram, EmError> {
        let (n_raters, _, cases, histograms) =
            self.segmentation("binary STAPLE needs segmentations")?;
        if let Some(h) = histograms.binary.get() {
            return Ok(h);
        }
        // Cases on every core, one case's masks per worker at a time; merged histograms are
        // sorted, so the order of merging does not matter.
        let empty = || PatternHistogram {
            n_raters,
            patterns: Vec::new(),
        };
        let pooled = cases
            .par_iter()
            .map(|c| -> Result<PatternHistogram, EmError> {
                let masks = c.masks();
                let refs: Vec<&[u8]> = masks.iter().map(|r| r.1.as_slice()).collect();
                let positions: Vec<usize> = masks.iter().map(|r| r.0).collect();
                let h = PatternHistogram::from_raters(&refs, 1u8, None)?;
                Ok(h.embed(&positions, n_raters)?)
            })
            .try_reduce(empty, |mut a, b| {
                a.merge(&b)?;
                Ok(a)
            })?;
        Ok(histograms.binary.get_or_init(|| pooled))
    }

    /// The multi-label pattern histogram (every reader present on every case).
    pub fn label_histogram(&self) -> Result<&LabelPatternHistogram, EmError> {
        let (n_raters, n_labels, cases, histograms) =
            self.segmentation("multi-label STAPLE needs segmentations")?;
        if let Some(h) = histograms.labels.get() {
            return Ok(h);
        }
        if cases.iter().any(|c| c.readers.len() != n_raters) {
            return Err(EmError::Mismatch(
                "multi-label STAPLE needs every reader on every case",
            ));
        }
        let pooled = cases
            .par_iter()
            .map(|c| -> Result<Option<LabelPatternHistogram>, EmError> {
                let masks = c.masks();
                let refs: Vec<&[u8]> = masks.iter().map(|r| r.1.as_slice()).collect();
                Ok(Some(LabelPatternHistogram::from_raters(
                    &refs,
                    Some(n_labels),
                )?))
            })
            .try_reduce(
                || None,
                |a, b| match (a, b) {
                    (Some(mut a), Some(b)) => {
                        a.merge(&b)?;
                        Ok(Some(a))
                    }
                    (a, b) => Ok(a.or(b)),
                },
            )?;
        let pooled = pooled.ok_or(EmError::Mismatch("no cases"))?;
        Ok(histograms.labels.get_or_init(|| pooled))
    }
}

// ---------------------------------------------------------------------------------------------
// The coordinator's side.
// ---------------------------------------------------------------------------------------------

/// Sums one vector per site for a job (secure aggregation in a study; a plain sum in tests).
pub trait Aggregator {
    fn sum(
        &mut self,
        job: &Job,
        dim: usize,
    ) -> impl Future<Output = Result<Vec<u128>, EmError>> + Send;
}

/// The study's consensus, as released. Its bytes are those of its wire form
/// ([`fedanno_protocol::jobs::ConsensusOutcome`]): [`ConsensusOutcome::to_bytes`],
/// [`ConsensusOutcome::from_bytes`]; it serialises to JSON (serde) for the site's own records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ConsensusOutcome {
    Staple {
        params: StapleParams,
        iterations: u32,
        converged: bool,
        voxels_ge_half: u64,
        probability_sum: f64,
        units: u64,
        one_round: bool,
    },
    Multi {
        params: MultiLabelParams,
        priors: Vec<f64>,
        iterations: u32,
        converged: bool,
        label_counts: Vec<u64>,
    },
    DawidSkene {
        params: DsParams,
        iterations: u32,
        converged: bool,
        log_likelihood: f64,
        units: u64,
    },
}

impl ConsensusOutcome {
    pub fn iterations(&self) -> u32 {
        match self {
            ConsensusOutcome::Staple { iterations, .. }
            | ConsensusOutcome::Multi { iterations, .. }
            | ConsensusOutcome::DawidSkene { iterations, .. } => *iterations,
        }
    }
    pub fn converged(&self) -> bool {
        match self {
            ConsensusOutcome::Staple { converged, .. }
            | ConsensusOutcome::Multi { converged, .. }
            | ConsensusOutcome::DawidSkene { converged, .. } => *converged,
        }
    }

    /// The model a site's consensus masks follow (segmentation consensus only).
    pub fn seg_consensus(&self) -> Option<SegConsensus> {
        match self {
            ConsensusOutcome::Staple { params, .. } => Some(SegConsensus::Staple(params.clone())),
            ConsensusOutcome::Multi { params, priors, .. } => Some(SegConsensus::Multi {
                params: params.clone(),
                priors: priors.clone(),
            }),
            ConsensusOutcome::DawidSkene { .. } => None,
        }
    }
}

/// One reader's released quality figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReaderQuality {
    pub cases: u64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub dice_sum: u128,
    pub dice_sq_sum: u128,
    pub dice_cases: u64,
    pub dice_histogram: Vec<u64>,
    pub hd95_histogram: Vec<u64>,
    pub hd95_undefined: u64,
    /// Classification: rows = consensus category, columns = the reader's category.
    pub confusion: Vec<u64>,
}

impl ReaderQuality {
    pub fn sensitivity(&self) -> Option<f64> {
        fixed::ratio(u128::from(self.tp), u128::from(self.tp + self.fn_))
    }
    pub fn specificity(&self) -> Option<f64> {
        fixed::ratio(u128::from(self.tn), u128::from(self.tn + self.fp))
    }
    pub fn dice_pooled(&self) -> Option<f64> {
        fixed::ratio(
            2 * u128::from(self.tp),
            2 * u128::from(self.tp) + u128::from(self.fp) + u128::from(self.fn_),
        )
    }
    pub fn dice_mean(&self) -> Option<f64> {
        (self.dice_cases > 0).then(|| fixed::to_f64(self.dice_sum) / self.dice_cases as f64)
    }
    /// Sample standard deviation of the per-case Dice.
    pub fn dice_sd(&self) -> Option<f64> {
        let n = self.dice_cases as f64;
        if self.dice_cases < 2 {
            return None;
        }
        let mean = fixed::to_f64(self.dice_sum) / n;
        let var = (fixed::to_f64(self.dice_sq_sum) - n * mean * mean) / (n - 1.0);
        Some(var.max(0.0).sqrt())
    }
}

/// The released quality statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityOutcome {
    pub readers: Vec<ReaderQuality>,
    /// Classification only: cases per consensus category and the agreement statistics.
    pub consensus_counts: Vec<u64>,
    pub agreement: Option<AgreementStats>,
}

#[cfg(test)]
mod tests;
