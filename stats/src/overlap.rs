//! Voxel-overlap metrics of two binary masks: counts, Dice, Jaccard, volume similarity.
//!
//! Owns [`OverlapCounts`], an additive integer struct (so a "global" Dice over many cases or
//! sites is exact) and its ratios. With both masks empty every ratio is 0/0 = NaN.

use super::StatsError;
use serde::{Deserialize, Serialize};

/// |A|, |B| and |A ∩ B| (A = reference, B = test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlapCounts {
    /// |A|.
    pub ref_voxels: u64,
    /// |B|.
    pub test_voxels: u64,
    /// |A ∩ B|.
    pub intersection: u64,
}

impl OverlapCounts {
    /// Counts two masks of equal length; `is_fg` says which values are foreground.
    pub fn from_masks<T: Copy>(
        reference: &[T],
        test: &[T],
        is_fg: impl Fn(T) -> bool,
    ) -> Result<Self, StatsError> {
        if reference.len() != test.len() {
            return Err(StatsError::Shape("masks differ in size"));
        }
        let (mut a, mut b, mut ab) = (0u64, 0u64, 0u64);
        // Chunked so the inner loop stays branch-free and vectorisable.
        for (ra, tb) in reference.chunks(4096).zip(test.chunks(4096)) {
            let (mut ca, mut cb, mut cab) = (0u32, 0u32, 0u32);
            for (&x, &y) in ra.iter().zip(tb) {
                let (fx, fy) = (u32::from(is_fg(x)), u32::from(is_fg(y)));
                ca += fx;
                cb += fy;
                cab += fx & fy;
            }
            a += u64::from(ca);
            b += u64::from(cb);
            ab += u64::from(cab);
        }
        Ok(Self {
            ref_voxels: a,
            test_voxels: b,
            intersection: ab,
        })
    }

    /// Adds another case's or site's counts.
    pub fn merge(&mut self, other: &Self) {
        self.ref_voxels += other.ref_voxels;
        self.test_voxels += other.test_voxels;
        self.intersection += other.intersection;
    }

    /// 2|A∩B| / (|A|+|B|).
    pub fn dice(&self) -> f64 {
        2.0 * self.intersection as f64 / (self.ref_voxels + self.test_voxels) as f64
    }

    /// |A∩B| / |A∪B|.
    pub fn jaccard(&self) -> f64 {
        let union = self.ref_voxels + self.test_voxels
            - self.intersection.min(self.ref_voxels + self.test_voxels);
        self.intersection as f64 / union as f64
    }

    /// 1 − ||A|−|B|| / (|A|+|B|).
    pub fn volume_similarity(&self) -> f64 {
        let diff = self.ref_voxels.abs_diff(self.test_voxels);
        1.0 - diff as f64 / (self.ref_voxels + self.test_voxels) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_empty_masks() {
        let a = [1u8, 1, 0, 0, 1];
        let b = [1u8, 0, 1, 0, 1];
        let c = OverlapCounts::from_masks(&a, &b, |v| v != 0).expect("same size");
        assert_eq!((c.ref_voxels, c.test_voxels, c.intersection), (3, 3, 2));
        assert!((c.dice() - 2.0 / 3.0).abs() < 1e-15);
        assert!((c.jaccard() - 0.5).abs() < 1e-15);
        assert_eq!(c.volume_similarity(), 1.0);
        let e = OverlapCounts::default();
        assert!(e.dice().is_nan() && e.jaccard().is_nan() && e.volume_similarity().is_nan());
    }
}
