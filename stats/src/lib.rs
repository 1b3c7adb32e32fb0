//! `fedanno-stats`: the pure quality engine: agreement statistics, consensus EMs (binary and
//! multi-label STAPLE, Dawid–Skene, majority vote) and segmentation metrics (overlap and surface
//! distances).
//!
//! Owns the numbers fedanno reports and nothing else: no I/O, no logging, no async. Inputs are
//! slices and small structs; every statistic that can be federated is computed from a
//! fixed-layout integer sufficient-statistics struct with `merge` and a finaliser, so that a
//! federated run (per-site statistics, summed) is bit-identical to the pooled run. EM
//! contributions are quantised per unit to fixed point ([`fixed`]) before they are summed.
//!
//! Map: [`ratings`] (categorical input), [`agreement`] (percent agreement, Cohen, Fleiss,
//! Krippendorff), [`majority`], [`dawid_skene`], [`staple`] (binary, ITK semantics, pattern
//! histogram), [`multilabel`] (ITK multi-label STAPLE), [`overlap`] (Dice, Jaccard, volume
//! similarity), [`edt`] (exact anisotropic Euclidean distance transform), [`surfel`]
//! (marching-cubes surfel areas), [`surface`] (Hausdorff, HD95, ASSD, surface Dice under three
//! definitions).

pub mod agreement;
pub mod dawid_skene;
pub mod edt;
pub mod fixed;
pub mod majority;
pub mod multilabel;
pub mod overlap;
pub mod ratings;
pub mod staple;
pub mod surface;
pub mod surfel;

/// Errors of the quality engine. Each variant names a shape or layout problem of the input; none
/// carries input values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// Two inputs that must have the same shape do not.
    #[error("shape mismatch: {0}")]
    Shape(&'static str),
    /// Two sufficient-statistics structs with different layouts were merged.
    #[error("cannot merge statistics with different layouts ({0})")]
    Layout(&'static str),
    /// A category or label index is outside the declared range.
    #[error("value out of range: {0}")]
    OutOfRange(&'static str),
    /// More raters than a pattern key can hold.
    #[error("too many raters: {got} (at most {max})")]
    TooManyRaters {
        /// Raters given.
        got: usize,
        /// Largest supported count.
        max: usize,
    },
    /// A required input is empty.
    #[error("empty input: {0}")]
    Empty(&'static str),
}
