//! Masks of segments that may overlap, written one after the other into one label map: at each
//! voxel the lowest-valued segment present, and a bit-plane for each segment found under
//! another (allocated when that first happens), given back as runs of voxel indices. Memory is
//! the label map plus one bit per voxel for each overlapping segment only.

/// Segments under other segments: (segment number, runs of (first voxel, count)).
pub type OverlapRuns = Vec<(u8, Vec<(u32, u32)>)>;

/// A label map being filled with one segment's voxels after another, with a bit-plane for each
/// segment found under another (allocated when that first happens).
pub struct Layers {
    labels: Vec<u8>,
    planes: Vec<Option<Vec<u64>>>,
}

impl Layers {
    /// A background label map of `total` voxels, or `None` when it cannot be allocated.
    pub fn new(total: usize) -> Option<Self> {
        let mut labels = Vec::new();
        labels.try_reserve_exact(total).ok()?;
        labels.resize(total, 0);
        Some(Layers {
            labels,
            planes: vec![None; 256],
        })
    }

    /// Puts segment `value` (non-zero) at voxel `i`; returns false when a plane for an
    /// overlapping segment cannot be allocated.
    pub fn set(&mut self, i: usize, value: u8) -> bool {
        let here = self.labels[i];
        if here == value {
            return true;
        }
        if here == 0 {
            self.labels[i] = value;
            return true;
        }
        let (low, high) = if here < value {
            (here, value)
        } else {
            (value, here)
        };
        self.labels[i] = low;
        let words = self.labels.len().div_ceil(64);
        let plane = &mut self.planes[usize::from(high)];
        if plane.is_none() {
            let mut p = Vec::new();
            if p.try_reserve_exact(words).is_err() {
                return false;
            }
            p.resize(words, 0u64);
            *plane = Some(p);
        }
        if let Some(p) = plane {
            p[i / 64] |= 1 << (i % 64);
        }
        true
    }

    /// The label map and the overlaps as runs, in the one form `annotations::model::Segmentation::layered`
    /// accepts (labels only ever decrease, so a bit set for a segment stays under a lower one).
    pub fn finish(self) -> (Vec<u8>, OverlapRuns) {
        let mut overlaps = Vec::new();
        for (value, plane) in self.planes.into_iter().enumerate() {
            let Some(plane) = plane else { continue };
            let runs = runs_of(&plane, self.labels.len());
            if !runs.is_empty() {
                overlaps.push((value as u8, runs));
            }
        }
        (self.labels, overlaps)
    }
}

/// The set bits of a plane (the first `total`) as (start, count) runs.
fn runs_of(plane: &[u64], total: usize) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (w, &word) in plane.iter().enumerate() {
        if word == 0 {
            continue;
        }
        for b in 0..64 {
            let i = w * 64 + b;
            if i >= total || word & (1 << b) == 0 {
                continue;
            }
            let i = i as u32;
            match runs.last_mut() {
                Some((start, n)) if *start + *n == i => *n += 1,
                _ => runs.push((i, 1)),
            }
        }
    }
    runs
}
