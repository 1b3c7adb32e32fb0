//! Series with missing slices in NIfTI files. A NIfTI grid has one slice spacing; a series
//! with a missing slice does not. When every slice of such a series lies on one regular grid
//! (its smallest gap as the step), a NIfTI file holds that grid with the missing positions
//! empty, so every slice sits where it is, exactly where a SEG of the same mask places it; a
//! mask on that grid imports back onto the series' own slices. Slices that are on no regular
//! grid cannot be written as NIfTI at all (a SEG still places each one).

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

/// The regular grid of an unevenly spaced series: `Ok(None)` when its slices are evenly
/// spaced, an error naming the gaps when they lie on no regular grid of at most twice as many
/// slices.
pub fn filled(grid: &SeriesGrid) -> Result<Option<Filled>, String> {
    let Some((lo, hi)) = grid.uneven_slices() else {
        return Ok(None);
    };
    let n = grid.normal();
    let depth: Vec<f64> = grid
        .slice_list
        .iter()
        .map(|s| (0..3).map(|a| s.position[a] * n[a]).sum())
        .collect();
    let not_regular = || {
        format!(
            "the slices of series {} are not on one regular grid (gaps {lo:.3} to {hi:.3} mm), which a NIfTI file needs; export it with --format seg",
            grid.pseudo_uid
        )
    };
    let first = *depth.first().ok_or_else(not_regular)?;
    let tolerance = (1e-3 * lo).max(0.01);
    let mut slots = Vec::with_capacity(depth.len());
    for d in &depth {
        let k = ((d - first) / lo).round();
        if !k.is_finite() || ((d - first) - k * lo).abs() > tolerance || k < 0.0 {
            return Err(not_regular());
        }
        let k = k as usize;
        if k > 2 * depth.len() || slots.last().is_some_and(|&last| k <= last) {
            return Err(not_regular());
        }
        slots.push(k);
    }
    let len = slots.last().map_or(0, |&k| k + 1);
    Ok(Some(Filled {
        step: lo,
        slots,
        len,
    }))
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
