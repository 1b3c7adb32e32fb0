//! Reader-study jobs and releases as they cross between sites.
//!
//! A [`Job`] is what a study's coordinator asks every roster site to compute for one secure sum
//! (its SHA-256, [`Job::input_id`], is the signed roster's `input`); a [`ConsensusOutcome`] is the
//! consensus model the coordinator releases at the end of the EM, from which every site derives
//! its consensus annotations. Both are plain data (integers, floats, bounded strings and vectors),
//! so their bytes are fixed by this file alone: the node converts them to and from its statistics
//! types, and reordering a field there cannot change what travels. Within a protocol version,
//! fields are never reordered and variants are only ever appended.
//!
//! Decoding is bounded: every vector has a limit below, checked before anything is allocated, and
//! a whole job or release is at most [`MAX_JOB_BYTES`]. Decoding checks sizes only; whether the
//! shapes agree (e.g. one sensitivity per specificity) is the node's check when it converts.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, bounded};
use crate::crypto;
use crate::limits::MAX_NAME_LEN;
pub use crate::limits::{MAX_CLASSES, MAX_JOB_BYTES, MAX_PARAMS, MAX_RATERS};

/// Binary STAPLE parameters: the prior, and one sensitivity and one specificity per rater.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StapleParams {
    pub prior: f64,
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_RATERS>")]
    pub sensitivity: Vec<f64>,
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_RATERS>")]
    pub specificity: Vec<f64>,
}

/// Multi-label STAPLE parameters: per rater, a confusion matrix of L + 1 given labels (the last
/// is "absent") by L true labels, flattened rater-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelParams {
    pub n_raters: u32,
    pub n_labels: u32,
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_PARAMS>")]
    pub confusion: Vec<f64>,
}

/// Dawid–Skene parameters: K class priors and, per rater, a K × K confusion matrix (true class
/// by given class), flattened rater-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DsParams {
    pub k: u32,
    pub n_raters: u32,
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CLASSES>")]
    pub class_priors: Vec<f64>,
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_PARAMS>")]
    pub confusion: Vec<f64>,
}

/// The released consensus model a site turns into its local consensus masks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SegConsensus {
    Staple(StapleParams),
    Multi {
        params: MultiLabelParams,
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CLASSES>")]
        priors: Vec<f64>,
    },
}

/// One computation every roster site performs for one secure sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub study: String,
    /// Position in the study's sequence of sums (makes every job's bytes distinct).
    pub step: u32,
    pub kind: JobKind,
}

/// What a job computes. The variant index is part of the bytes: append only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobKind {
    /// Binary STAPLE: the initial (vote-fraction) E-step.
    StapleInit,
    /// Binary STAPLE: an E-step under the parameters.
    StapleStep { params: StapleParams },
    /// Binary STAPLE, one round: the dense pattern histogram (3^R cells).
    StapleHistogram,
    /// Multi-label STAPLE seed (label counts and majority-vote matrices).
    MultiSeed,
    /// Multi-label STAPLE: an E-step under the parameters and label priors.
    MultiStep {
        params: MultiLabelParams,
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CLASSES>")]
        priors: Vec<f64>,
    },
    /// Voxels per output label under the final parameters.
    MultiCounts {
        params: MultiLabelParams,
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CLASSES>")]
        priors: Vec<f64>,
    },
    /// Dawid–Skene: the initial (vote-fraction) E-step.
    DsInit,
    /// Dawid–Skene: an E-step under the parameters.
    DsStep { params: DsParams },
    /// Per-reader overlap with the consensus segmentation.
    SegQuality { consensus: SegConsensus, hd95: bool },
    /// Per-reader confusion against the Dawid–Skene consensus and agreement statistics.
    LabelQuality { params: DsParams },
    /// `dim` pseudo-random elements derived from `seed` alone (benchmarks only).
    Bench { dim: u32, seed: u64 },
}

/// The study's consensus, as released to every site. The variant index is part of the bytes:
/// append only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CLASSES>")]
        priors: Vec<f64>,
        iterations: u32,
        converged: bool,
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CLASSES>")]
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

macro_rules! job_bytes {
    ($t:ty) => {
        impl $t {
            /// The canonical bytes (postcard).
            pub fn to_bytes(&self) -> Vec<u8> {
                codec::encode(self)
            }
            /// Decodes one canonical value of at most [`MAX_JOB_BYTES`] bytes.
            pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
                codec::decode(b, MAX_JOB_BYTES)
            }
        }
    };
}
job_bytes!(Job);
job_bytes!(ConsensusOutcome);

impl Job {
    /// The roster's input id: SHA-256 of the job's canonical bytes.
    pub fn input_id(&self) -> [u8; 32] {
        crypto::sha256(&self.to_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests;
