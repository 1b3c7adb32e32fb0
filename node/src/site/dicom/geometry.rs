//! Series geometry from instance headers: slices sorted along the slice normal, pixel and slice
//! spacing (slice spacing from the positions, never from SliceThickness), orientation and
//! origin. Pure arithmetic; the voxel grid it describes is the one every mask of the series must
//! match (x = columns, y = rows, z = slices in sorted order).

use serde::Serialize;

/// Tolerance, in mm, for positions and spacings to count as equal.
pub const POSITION_TOLERANCE_MM: f64 = 1e-3;
/// Tolerance for direction cosines to count as equal.
const ORIENTATION_TOLERANCE: f64 = 1e-4;

/// One slice's geometry as read from a header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlicePlane {
    pub rows: u32,
    pub columns: u32,
    pub pixel_spacing: [f64; 2],
    pub orientation: [f64; 6],
    pub position: [f64; 3],
}

/// The voxel grid of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesGeometry {
    pub rows: u32,
    pub columns: u32,
    pub slices: u32,
    /// (row spacing, column spacing) in mm, as PixelSpacing.
    pub pixel_spacing: [f64; 2],
    /// Distance between consecutive sorted slice positions in mm (mean); `None` for one slice.
    pub slice_spacing: Option<f64>,
    /// Whether every gap equals the mean within the position tolerance.
    pub uniform_spacing: bool,
    pub orientation: [f64; 6],
    /// Position of the first slice along the normal.
    pub origin: [f64; 3],
}

/// Why a series has no single voxel grid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("no slices with position, orientation and pixel spacing")]
    NoGeometry,
    #[error("slices differ in size")]
    MixedSize,
    #[error("slices differ in pixel spacing")]
    MixedSpacing,
    #[error("slices differ in orientation")]
    MixedOrientation,
    #[error("orientation is not two orthonormal direction vectors")]
    BadOrientation,
    #[error("two or more slices share a position")]
    DuplicatePositions,
}

/// The slice normal (row direction × column direction).
pub fn normal(o: &[f64; 6]) -> [f64; 3] {
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ]
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Computes the grid of a set of slices; returns it with the slice order (indices into
/// `planes`, first slice first).
pub fn compute(planes: &[SlicePlane]) -> Result<(SeriesGeometry, Vec<usize>), GeometryError> {
    let first = planes.first().ok_or(GeometryError::NoGeometry)?;
    for p in planes {
        if p.rows != first.rows || p.columns != first.columns {
            return Err(GeometryError::MixedSize);
        }
        if (0..2)
            .any(|i| (p.pixel_spacing[i] - first.pixel_spacing[i]).abs() > POSITION_TOLERANCE_MM)
        {
            return Err(GeometryError::MixedSpacing);
        }
        if (0..6).any(|i| (p.orientation[i] - first.orientation[i]).abs() > ORIENTATION_TOLERANCE) {
            return Err(GeometryError::MixedOrientation);
        }
    }
    let o = &first.orientation;
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let n = normal(o);
    if (dot(&r, &r) - 1.0).abs() > 1e-3
        || (dot(&c, &c) - 1.0).abs() > 1e-3
        || dot(&r, &c).abs() > 1e-3
        || first.pixel_spacing.iter().any(|s| s.is_nan() || *s <= 0.0)
    {
        return Err(GeometryError::BadOrientation);
    }
    let mut order: Vec<usize> = (0..planes.len()).collect();
    let key: Vec<f64> = planes.iter().map(|p| dot(&p.position, &n)).collect();
    order.sort_by(|&a, &b| key[a].total_cmp(&key[b]).then(a.cmp(&b)));
    let gaps: Vec<f64> = order.windows(2).map(|w| key[w[1]] - key[w[0]]).collect();
    if gaps.iter().any(|g| *g < POSITION_TOLERANCE_MM) {
        return Err(GeometryError::DuplicatePositions);
    }
    let slice_spacing = (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);
    let uniform_spacing = slice_spacing.is_none_or(|m| {
        gaps.iter()
            .all(|g| (g - m).abs() <= POSITION_TOLERANCE_MM.max(m * 1e-4))
    });
    let origin = planes[order[0]].position;
    Ok((
        SeriesGeometry {
            rows: first.rows,
            columns: first.columns,
            slices: planes.len() as u32,
            pixel_spacing: first.pixel_spacing,
            slice_spacing,
            uniform_spacing,
            orientation: first.orientation,
            origin,
        },
        order,
    ))
}

/// The NIfTI affine (voxel index (i = column, j = row, k = slice) → RAS+ mm) of a grid.
/// DICOM patient coordinates are LPS, so the first two rows are negated.
pub fn nifti_affine(g: &SeriesGeometry) -> [[f64; 4]; 4] {
    let o = &g.orientation;
    let row_dir = [o[0], o[1], o[2]]; // direction of increasing column index
    let col_dir = [o[3], o[4], o[5]]; // direction of increasing row index
    let n = normal(o);
    let dz = g.slice_spacing.unwrap_or(1.0);
    let (dy, dx) = (g.pixel_spacing[0], g.pixel_spacing[1]);
    let mut a = [[0.0; 4]; 4];
    for axis in 0..3 {
        let sign = if axis < 2 { -1.0 } else { 1.0 };
        a[axis] = [
            sign * row_dir[axis] * dx,
            sign * col_dir[axis] * dy,
            sign * n[axis] * dz,
            sign * g.origin[axis],
        ];
    }
    a[3] = [0.0, 0.0, 0.0, 1.0];
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(z: f64) -> SlicePlane {
        SlicePlane {
            rows: 4,
            columns: 5,
            pixel_spacing: [0.7, 0.8],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [-10.0, -20.0, z],
        }
    }

    #[test]
    fn sorts_along_the_normal_and_measures_spacing_from_positions() {
        let planes = [plane(5.0), plane(-2.5), plane(0.0), plane(2.5)];
        let (g, order) = compute(&planes).unwrap();
        assert_eq!(order, vec![1, 2, 3, 0]);
        assert_eq!(g.slices, 4);
        assert_eq!(g.slice_spacing, Some(2.5));
        assert!(g.uniform_spacing);
        assert_eq!(g.origin, [-10.0, -20.0, -2.5]);
    }

    #[test]
    fn oblique_orientation_uses_the_cross_product() {
        // Sagittal: rows along y, columns along -z; the normal is -x.
        let o = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0];
        assert_eq!(normal(&o), [-1.0, 0.0, 0.0]);
        let mk = |x| SlicePlane {
            orientation: o,
            position: [x, 0.0, 0.0],
            ..plane(0.0)
        };
        let (g, order) = compute(&[mk(1.0), mk(3.0), mk(2.0)]).unwrap();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(g.origin, [3.0, 0.0, 0.0]);
    }

    #[test]
    fn affine_maps_voxels_to_ras() {
        let (g, _) = compute(&[plane(0.0), plane(2.5)]).unwrap();
        let a = nifti_affine(&g);
        // Voxel (1, 2, 1): LPS = (-10 + 0.8, -20 + 2 * 0.7, 2.5) -> RAS negates x and y.
        let v = [1.0, 2.0, 1.0, 1.0];
        let ras: Vec<f64> = (0..3)
            .map(|r| (0..4).map(|c| a[r][c] * v[c]).sum())
            .collect();
        let want = [10.0 - 0.8, 20.0 - 1.4, 2.5];
        for (x, w) in ras.iter().zip(want) {
            assert!((x - w).abs() < 1e-12, "{ras:?}");
        }
    }

    #[test]
    fn irregular_gaps_are_flagged_and_mixtures_refused() {
        let (g, _) = compute(&[plane(0.0), plane(1.0), plane(3.0)]).unwrap();
        assert!(!g.uniform_spacing);
        assert_eq!(g.slice_spacing, Some(1.5));
        assert_eq!(
            compute(&[plane(0.0), plane(0.0)]),
            Err(GeometryError::DuplicatePositions)
        );
        let mut odd = plane(1.0);
        odd.rows = 9;
        assert_eq!(compute(&[plane(0.0), odd]), Err(GeometryError::MixedSize));
        let mut skew = plane(1.0);
        skew.orientation = [1.0, 0.0, 0.0, 0.0, 0.9, 0.1];
        assert_eq!(
            compute(&[plane(0.0), skew]),
            Err(GeometryError::MixedOrientation)
        );
        assert_eq!(compute(&[]), Err(GeometryError::NoGeometry));
    }
}
