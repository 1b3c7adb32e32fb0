//! Masks that describe the series' voxels in another axis order or with flipped axes (a RAS
//! reorder from nibabel's `as_closest_canonical`, dcm2niix's row flip): the same grid, so a
//! lossless permutation and flip of the voxels maps them exactly. [`axis_map`] finds it from
//! the two affines (every mask axis is ± one series axis, the extents agree, and the mask's
//! first voxel sits on the series corner the flips say); [`to_series_order`] moves the voxels.
//! A mask on any other grid needs resampling, which an import never does.

use crate::annotations::nifti::NiftiGeometry;

/// How a mask's voxels lie on the series grid: series axis `b` is mask axis `perm[b]`, run
/// backwards where `flip[b]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisMap {
    pub perm: [usize; 3],
    pub flip: [bool; 3],
}

impl AxisMap {
    pub const IDENTITY: AxisMap = AxisMap {
        perm: [0, 1, 2],
        flip: [false; 3],
    };
}

fn column(m: &[[f64; 4]; 4], c: usize) -> [f64; 3] {
    [m[0][c], m[1][c], m[2][c]]
}

fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
    (0..3).all(|i| (a[i] - b[i]).abs() <= tol)
}

/// The map of a mask with geometry `mask` onto the series grid of `dims` with voxel-to-RAS
/// affine `series`, if the two grids are the same up to axis order and direction (within
/// `tol` mm).
pub fn axis_map(
    mask: &NiftiGeometry,
    series: &[[f64; 4]; 4],
    dims: [usize; 3],
    tol: f64,
) -> Option<AxisMap> {
    let mut map = AxisMap::IDENTITY;
    let mut used = [false; 3];
    for (b, &extent) in dims.iter().enumerate() {
        let s = column(series, b);
        let neg = [-s[0], -s[1], -s[2]];
        let (a, flip) = (0..3).filter(|a| !used[*a]).find_map(|a| {
            let m = column(&mask.affine, a);
            if close(m, s, tol) {
                Some((a, false))
            } else if close(m, neg, tol) {
                Some((a, true))
            } else {
                None
            }
        })?;
        if mask.dim[a] != extent {
            return None;
        }
        used[a] = true;
        map.perm[b] = a;
        map.flip[b] = flip;
    }
    // The mask's first voxel is the series voxel at the far end of every flipped axis.
    let corner: Vec<f64> = (0..3)
        .map(|b| {
            if map.flip[b] {
                dims[b].saturating_sub(1) as f64
            } else {
                0.0
            }
        })
        .collect();
    let at = |r: usize| series[r][3] + (0..3).map(|b| series[r][b] * corner[b]).sum::<f64>();
    let origin = [mask.affine[0][3], mask.affine[1][3], mask.affine[2][3]];
    close([at(0), at(1), at(2)], origin, tol).then_some(map)
}

/// The mask's voxels (x fastest, dims `mask_dims`) in the series' order (dims `series_dims`).
pub fn to_series_order(
    labels: &[u8],
    mask_dims: [usize; 3],
    map: AxisMap,
    series_dims: [usize; 3],
) -> Vec<u8> {
    if map == AxisMap::IDENTITY {
        return labels.to_vec();
    }
    let [sx, sy, sz] = series_dims;
    let mut out = Vec::with_capacity(sx * sy * sz);
    let mut m = [0usize; 3];
    for z in 0..sz {
        for y in 0..sy {
            for x in 0..sx {
                for (b, c) in [x, y, z].into_iter().enumerate() {
                    m[map.perm[b]] = if map.flip[b] {
                        series_dims[b] - 1 - c
                    } else {
                        c
                    };
                }
                let i = m[0] + mask_dims[0] * (m[1] + mask_dims[1] * m[2]);
                out.push(labels.get(i).copied().unwrap_or(0));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIES: [[f64; 4]; 4] = [
        [-0.75, 0.0, 0.0, -10.0],
        [0.0, -0.5, 0.0, -20.0],
        [0.0, 0.0, 3.0, 24.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    const DIMS: [usize; 3] = [4, 3, 2];

    fn series_labels() -> Vec<u8> {
        (0..24).map(|i| i as u8 + 1).collect()
    }

    /// The series grid written with axes `perm` (series axis b as mask axis perm[b]) and
    /// flips, as a writer would.
    fn rewritten(perm: [usize; 3], flip: [bool; 3]) -> (NiftiGeometry, Vec<u8>) {
        let mut dim = [0; 3];
        let mut affine = [[0.0; 4]; 4];
        affine[3][3] = 1.0;
        for b in 0..3 {
            dim[perm[b]] = DIMS[b];
            for r in 0..3 {
                affine[r][perm[b]] = if flip[b] { -SERIES[r][b] } else { SERIES[r][b] };
            }
        }
        for r in 0..3 {
            affine[r][3] = SERIES[r][3]
                + (0..3)
                    .filter(|b| flip[*b])
                    .map(|b| SERIES[r][b] * (DIMS[b] - 1) as f64)
                    .sum::<f64>();
        }
        let src = series_labels();
        let mut labels = vec![0u8; 24];
        for z in 0..DIMS[2] {
            for y in 0..DIMS[1] {
                for x in 0..DIMS[0] {
                    let c = [x, y, z];
                    let mut m = [0; 3];
                    for b in 0..3 {
                        m[perm[b]] = if flip[b] { DIMS[b] - 1 - c[b] } else { c[b] };
                    }
                    labels[m[0] + dim[0] * (m[1] + dim[1] * m[2])] = src[x + 4 * (y + 3 * z)];
                }
            }
        }
        let g = NiftiGeometry {
            dim,
            pixdim: [0.75, 0.5, 3.0],
            affine,
        };
        (g, labels)
    }

    #[test]
    fn every_axis_order_and_flip_maps_back_exactly() {
        let perms = [
            [0, 1, 2],
            [1, 0, 2],
            [2, 1, 0],
            [0, 2, 1],
            [1, 2, 0],
            [2, 0, 1],
        ];
        for perm in perms {
            for bits in 0..8u8 {
                let flip = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
                let (g, labels) = rewritten(perm, flip);
                let map = axis_map(&g, &SERIES, DIMS, 1e-3).expect("a lossless map");
                assert_eq!(map, AxisMap { perm, flip });
                assert_eq!(to_series_order(&labels, g.dim, map, DIMS), series_labels());
            }
        }
    }

    #[test]
    fn another_grid_has_no_map() {
        let (mut g, _) = rewritten([0, 1, 2], [true, false, false]);
        g.affine[0][3] += 0.75; // shifted by one voxel: not the same grid
        assert_eq!(axis_map(&g, &SERIES, DIMS, 1e-3), None);
        let (mut g, _) = rewritten([1, 0, 2], [false; 3]);
        g.affine[0][1] *= 2.0; // another spacing
        assert_eq!(axis_map(&g, &SERIES, DIMS, 1e-3), None);
        // A flipped direction without the origin moved to the far end.
        let mut g = rewritten([0, 1, 2], [false; 3]).0;
        g.affine[2][2] = -g.affine[2][2];
        assert_eq!(axis_map(&g, &SERIES, DIMS, 1e-3), None);
    }
}
