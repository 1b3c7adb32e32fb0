//! Jobs and the released consensus as they cross between sites: conversions between the
//! statistics types the drivers use and their wire form ([`fedanno_protocol::jobs`]), which alone
//! fixes the bytes. Encoding always succeeds; decoding checks the protocol's size limits, then
//! that the shapes agree (one sensitivity per specificity, a confusion tensor of the stated
//! size, ...), so that a crafted job or release is an error, never a panic or a misread.

use fedanno_protocol::codec::CodecError;
use fedanno_protocol::jobs::{self as wire, MAX_CLASSES, MAX_RATERS};
use thiserror::Error;

use super::{
    ConsensusOutcome, DsParams, Job, JobKind, MultiLabelParams, SegConsensus, StapleParams,
};

/// Why job or release bytes were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("malformed {0}")]
    Shape(&'static str),
}

impl Job {
    /// The canonical bytes every site hashes and decodes.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::Job::from(self).to_bytes()
    }

    /// Decodes a job: bounded, canonical, and of consistent shape.
    pub fn from_bytes(b: &[u8]) -> Result<Job, WireError> {
        Job::try_from(wire::Job::from_bytes(b)?)
    }

    /// The roster's input id: SHA-256 of the job's canonical bytes.
    pub fn input_id(&self) -> [u8; 32] {
        wire::Job::from(self).input_id()
    }
}

impl ConsensusOutcome {
    /// The canonical bytes of the release.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::ConsensusOutcome::from(self).to_bytes()
    }

    /// Decodes a released consensus: bounded, canonical, and of consistent shape.
    pub fn from_bytes(b: &[u8]) -> Result<ConsensusOutcome, WireError> {
        ConsensusOutcome::try_from(wire::ConsensusOutcome::from_bytes(b)?)
    }
}

/// A count as the wire carries it. Every count a study produces is far below `u32::MAX` (the
/// manifest's limits); a larger one saturates, and the receiver refuses its shape.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn check(ok: bool, what: &'static str) -> Result<(), WireError> {
    if ok {
        Ok(())
    } else {
        Err(WireError::Shape(what))
    }
}

/// A statistics type's wire form (the orphan rule keeps `From` between two other crates'
/// types out of reach).
trait WireForm: Sized {
    type Wire;
    fn to_wire(&self) -> Self::Wire;
    fn from_wire(w: Self::Wire) -> Result<Self, WireError>;
}

impl WireForm for StapleParams {
    type Wire = wire::StapleParams;
    fn to_wire(&self) -> wire::StapleParams {
        wire::StapleParams {
            prior: self.prior,
            sensitivity: self.sensitivity.clone(),
            specificity: self.specificity.clone(),
        }
    }
    fn from_wire(p: wire::StapleParams) -> Result<Self, WireError> {
        check(
            p.sensitivity.len() == p.specificity.len(),
            "STAPLE parameters: one sensitivity per specificity",
        )?;
        Ok(StapleParams {
            prior: p.prior,
            sensitivity: p.sensitivity,
            specificity: p.specificity,
        })
    }
}

impl WireForm for MultiLabelParams {
    type Wire = wire::MultiLabelParams;
    fn to_wire(&self) -> wire::MultiLabelParams {
        wire::MultiLabelParams {
            n_raters: count(self.n_raters),
            n_labels: count(self.n_labels),
            confusion: self.confusion.clone(),
        }
    }
    fn from_wire(p: wire::MultiLabelParams) -> Result<Self, WireError> {
        let (r, l) = (p.n_raters as usize, p.n_labels as usize);
        // Both bounded before the product is formed.
        check(
            r <= MAX_RATERS && l < MAX_CLASSES && p.confusion.len() == r * (l + 1) * l,
            "multi-label STAPLE parameters: R × (L + 1) × L confusion entries",
        )?;
        Ok(MultiLabelParams {
            n_raters: r,
            n_labels: l,
            confusion: p.confusion,
        })
    }
}

impl WireForm for DsParams {
    type Wire = wire::DsParams;
    fn to_wire(&self) -> wire::DsParams {
        wire::DsParams {
            k: count(self.k),
            n_raters: count(self.n_raters),
            class_priors: self.class_priors.clone(),
            confusion: self.confusion.clone(),
        }
    }
    fn from_wire(p: wire::DsParams) -> Result<Self, WireError> {
        let (k, r) = (p.k as usize, p.n_raters as usize);
        // K is bounded by the priors' limit and R by its own before the product is formed.
        check(
            r <= MAX_RATERS && p.class_priors.len() == k && p.confusion.len() == r * k * k,
            "Dawid–Skene parameters: K priors and R × K × K confusion entries",
        )?;
        Ok(DsParams {
            k,
            n_raters: r,
            class_priors: p.class_priors,
            confusion: p.confusion,
        })
    }
}

/// Multi-label parameters with their label priors (one per label).
fn multi_from(
    params: wire::MultiLabelParams,
    priors: Vec<f64>,
) -> Result<(MultiLabelParams, Vec<f64>), WireError> {
    let params = MultiLabelParams::from_wire(params)?;
    check(
        priors.len() == params.n_labels,
        "multi-label STAPLE priors: one per label",
    )?;
    Ok((params, priors))
}

impl From<&SegConsensus> for wire::SegConsensus {
    fn from(c: &SegConsensus) -> Self {
        match c {
            SegConsensus::Staple(p) => wire::SegConsensus::Staple(p.to_wire()),
            SegConsensus::Multi { params, priors } => wire::SegConsensus::Multi {
                params: params.to_wire(),
                priors: priors.clone(),
            },
        }
    }
}

impl TryFrom<wire::SegConsensus> for SegConsensus {
    type Error = WireError;
    fn try_from(c: wire::SegConsensus) -> Result<Self, WireError> {
        Ok(match c {
            wire::SegConsensus::Staple(p) => SegConsensus::Staple(StapleParams::from_wire(p)?),
            wire::SegConsensus::Multi { params, priors } => {
                let (params, priors) = multi_from(params, priors)?;
                SegConsensus::Multi { params, priors }
            }
        })
    }
}

impl From<&Job> for wire::Job {
    fn from(j: &Job) -> Self {
        wire::Job {
            study: j.study.clone(),
            step: j.step,
            kind: (&j.kind).into(),
        }
    }
}

impl TryFrom<wire::Job> for Job {
    type Error = WireError;
    fn try_from(j: wire::Job) -> Result<Self, WireError> {
        Ok(Job {
            study: j.study,
            step: j.step,
            kind: j.kind.try_into()?,
        })
    }
}

impl From<&JobKind> for wire::JobKind {
    fn from(k: &JobKind) -> Self {
        use wire::JobKind as W;
        match k {
            JobKind::StapleInit => W::StapleInit,
            JobKind::StapleStep { params } => W::StapleStep {
                params: params.to_wire(),
            },
            JobKind::StapleHistogram => W::StapleHistogram,
            JobKind::MultiSeed => W::MultiSeed,
            JobKind::MultiStep { params, priors } => W::MultiStep {
                params: params.to_wire(),
                priors: priors.clone(),
            },
            JobKind::MultiCounts { params, priors } => W::MultiCounts {
                params: params.to_wire(),
                priors: priors.clone(),
            },
            JobKind::DsInit => W::DsInit,
            JobKind::DsStep { params } => W::DsStep {
                params: params.to_wire(),
            },
            JobKind::SegQuality { consensus, hd95 } => W::SegQuality {
                consensus: consensus.into(),
                hd95: *hd95,
            },
            JobKind::LabelQuality { params } => W::LabelQuality {
                params: params.to_wire(),
            },
            JobKind::Bench { dim, seed } => W::Bench {
                dim: *dim,
                seed: *seed,
            },
        }
    }
}

impl TryFrom<wire::JobKind> for JobKind {
    type Error = WireError;
    fn try_from(k: wire::JobKind) -> Result<Self, WireError> {
        use wire::JobKind as W;
        Ok(match k {
            W::StapleInit => JobKind::StapleInit,
            W::StapleStep { params } => JobKind::StapleStep {
                params: StapleParams::from_wire(params)?,
            },
            W::StapleHistogram => JobKind::StapleHistogram,
            W::MultiSeed => JobKind::MultiSeed,
            W::MultiStep { params, priors } => {
                let (params, priors) = multi_from(params, priors)?;
                JobKind::MultiStep { params, priors }
            }
            W::MultiCounts { params, priors } => {
                let (params, priors) = multi_from(params, priors)?;
                JobKind::MultiCounts { params, priors }
            }
            W::DsInit => JobKind::DsInit,
            W::DsStep { params } => JobKind::DsStep {
                params: DsParams::from_wire(params)?,
            },
            W::SegQuality { consensus, hd95 } => JobKind::SegQuality {
                consensus: consensus.try_into()?,
                hd95,
            },
            W::LabelQuality { params } => JobKind::LabelQuality {
                params: DsParams::from_wire(params)?,
            },
            W::Bench { dim, seed } => JobKind::Bench { dim, seed },
        })
    }
}

impl From<&ConsensusOutcome> for wire::ConsensusOutcome {
    fn from(o: &ConsensusOutcome) -> Self {
        use wire::ConsensusOutcome as W;
        match o {
            ConsensusOutcome::Staple {
                params,
                iterations,
                converged,
                voxels_ge_half,
                probability_sum,
                units,
                one_round,
            } => W::Staple {
                params: params.to_wire(),
                iterations: *iterations,
                converged: *converged,
                voxels_ge_half: *voxels_ge_half,
                probability_sum: *probability_sum,
                units: *units,
                one_round: *one_round,
            },
            ConsensusOutcome::Multi {
                params,
                priors,
                iterations,
                converged,
                label_counts,
            } => W::Multi {
                params: params.to_wire(),
                priors: priors.clone(),
                iterations: *iterations,
                converged: *converged,
                label_counts: label_counts.clone(),
            },
            ConsensusOutcome::DawidSkene {
                params,
                iterations,
                converged,
                log_likelihood,
                units,
            } => W::DawidSkene {
                params: params.to_wire(),
                iterations: *iterations,
                converged: *converged,
                log_likelihood: *log_likelihood,
                units: *units,
            },
        }
    }
}

impl TryFrom<wire::ConsensusOutcome> for ConsensusOutcome {
    type Error = WireError;
    fn try_from(o: wire::ConsensusOutcome) -> Result<Self, WireError> {
        use wire::ConsensusOutcome as W;
        Ok(match o {
            W::Staple {
                params,
                iterations,
                converged,
                voxels_ge_half,
                probability_sum,
                units,
                one_round,
            } => ConsensusOutcome::Staple {
                params: StapleParams::from_wire(params)?,
                iterations,
                converged,
                voxels_ge_half,
                probability_sum,
                units,
                one_round,
            },
            W::Multi {
                params,
                priors,
                iterations,
                converged,
                label_counts,
            } => {
                let (params, priors) = multi_from(params, priors)?;
                check(
                    label_counts.len() == params.n_labels + 1,
                    "multi-label consensus: L + 1 label counts",
                )?;
                ConsensusOutcome::Multi {
                    params,
                    priors,
                    iterations,
                    converged,
                    label_counts,
                }
            }
            W::DawidSkene {
                params,
                iterations,
                converged,
                log_likelihood,
                units,
            } => ConsensusOutcome::DawidSkene {
                params: DsParams::from_wire(params)?,
                iterations,
                converged,
                log_likelihood,
                units,
            },
        })
    }
}
