//! Series with missing slices in NIfTI files. A NIfTI grid has one slice spacing; a series
//! with a missing slice does not. When every slice of such a series lies on one regular grid
//! (its smallest gap as the step), a NIfTI file holds that grid with the missing positions
//! empty, so every slice sits where it is, exactly where a SEG of the same mask places it; a
//! mask on that grid imports back onto the series' own slices. Slices on no regular grid
//! (jitter) keep the mean spacing in NIfTI files, as before (a SEG still places each one).

use crate::site::dicom::geometry::SeriesGeometry;
use crate::site::store::SeriesGrid;

/// Where the slices of an unevenly spaced series lie on a regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Filled {
    /// The grid's slice spacing (the series' smallest gap), mm.
    pub step: f64,
    /// For each slice of the series, in order, its index on the grid.
    pub slots: Vec<usize>,
    /// Slices of the grid.
    pub len: usize,
}

/// The regular grid of an unevenly spaced series (its smallest gap as the step, at most twice
/// as many slices): `None` when its slices are evenly spaced, or lie on no such grid (spacing
/// that jitters rather than a missing slice: a NIfTI file of it then has the mean spacing, as
/// the import's warning says).
pub fn filled(grid: &SeriesGrid) -> Option<Filled> {
    let (lo, _) = grid.uneven_slices()?;
    let n = grid.normal();
    let depth: Vec<f64> = grid
        .slice_list
        .iter()
        .map(|s| (0..3).map(|a| s.position[a] * n[a]).sum())
        .collect();
    let first = *depth.first()?;
    let tolerance = (1e-3 * lo).max(0.01);
    let mut slots = Vec::with_capacity(depth.len());
    for d in &depth {
        let k = ((d - first) / lo).round();
        if !k.is_finite() || ((d - first) - k * lo).abs() > tolerance || k < 0.0 {
            return None;
        }
        let k = k as usize;
        if k > 2 * depth.len() || slots.last().is_some_and(|&last| k <= last) {
            return None;
        }
        slots.push(k);
    }
    let len = slots.last().map_or(0, |&k| k + 1);
    Some(Filled {
        step: lo,
        slots,
        len,
    })
}

impl Filled {
    /// The regular grid's geometry: the series' first slice, its plane, `len` slices `step`
    /// apart.
    pub fn geometry(&self, grid: &SeriesGrid) -> SeriesGeometry {
        SeriesGeometry {
            slices: self.len as u32,
            slice_spacing: Some(self.step),
            uniform_spacing: true,
            ..grid.geometry()
        }
    }

    /// A label volume on the series' slices (planes of `plane` voxels) spread onto the grid,
    /// the missing slices empty.
    pub fn spread(&self, labels: &[u8], plane: usize) -> Vec<u8> {
        let mut out = vec![0u8; self.len * plane];
        for (z, &k) in self.slots.iter().enumerate() {
            out[k * plane..(k + 1) * plane].copy_from_slice(&labels[z * plane..(z + 1) * plane]);
        }
        out
    }

    /// A label volume on the grid gathered onto the series' slices; `Err` with the number of
    /// labelled voxels on slices the series lacks.
    pub fn gather(&self, labels: &[u8], plane: usize) -> Result<Vec<u8>, u64> {
        let mut out = Vec::with_capacity(self.slots.len() * plane);
        let mut next = 0;
        let mut stray = 0u64;
        for (k, slice) in labels.chunks(plane).enumerate() {
            if self.slots.get(next) == Some(&k) {
                out.extend_from_slice(slice);
                next += 1;
            } else {
                stray += slice.iter().filter(|&&v| v != 0).count() as u64;
            }
        }
        if stray > 0 { Err(stray) } else { Ok(out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::store::SliceInfo;

    /// An axial 2 x 2 series with slices at these heights.
    fn series(z: &[f64]) -> SeriesGrid {
        SeriesGrid {
            rows: 2,
            columns: 2,
            slices: z.len() as u32,
            pixel_spacing: [1.0, 1.0],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            slice_list: z
                .iter()
                .map(|&z| SliceInfo {
                    position: [0.0, 0.0, z],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn missing_slices_find_their_regular_grid_and_jitter_does_not() {
        assert_eq!(filled(&series(&[0.0, 2.5, 5.0, 7.5])), None);
        let f = filled(&series(&[0.0, 2.5, 7.5, 10.0, 15.0])).unwrap();
        assert_eq!(
            (f.step, f.slots.clone(), f.len),
            (2.5, vec![0, 1, 3, 4, 6], 7)
        );
        // Spread and gathered back; a label on a missing slice is counted.
        let labels: Vec<u8> = (0..20).map(|i| (i % 3) as u8).collect();
        let spread = f.spread(&labels, 4);
        assert_eq!(spread.len(), 28);
        assert!(spread[8..12].iter().all(|&v| v == 0));
        assert_eq!(f.gather(&spread, 4), Ok(labels));
        let mut stray = spread;
        stray[21] = 1;
        assert_eq!(f.gather(&stray, 4), Err(1));
        // Jitter (2.5 and 2.56 mm) and gaps needing more than twice the slices: no grid.
        assert_eq!(filled(&series(&[0.0, 2.5, 5.06, 7.56])), None);
        assert_eq!(filled(&series(&[0.0, 1.0, 100.0])), None);
    }
}
