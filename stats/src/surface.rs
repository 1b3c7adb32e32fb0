//! Surface-distance metrics of two 3-D binary masks: Hausdorff, HD95, ASSD and surface Dice,
//! under three definitions in common use, plus the combined `metrics seg` report.
//!
//! Owns the surface extraction and the distance statistics (not the EDT, see [`super::edt`];
//! not the surfel table, see [`super::surfel`]). Grids are `z, y, x` with spacing in mm.
//! Definitions (oracle README "Segmentation metrics"):
//! * [`Definition::SurfaceDistance`] (default; DeepMind surface-distance): surfels on the dual
//!   grid (2×2×2 cells neither all-in nor all-out) weighted by marching-cubes area; HD95 is the
//!   larger of the two area-weighted, non-interpolated directed 95th percentiles; ASSD the mean
//!   of the two area-weighted directed means; surface Dice at T counts distances ≤ T.
//! * [`Definition::Medpy`]: border voxels = mask minus its erosion by the 6-neighbourhood
//!   (outside the image is background); HD95 = linear percentile of both directions pooled.
//! * [`Definition::Monai`]: MedPy's borders; HD95 = max of the two directed linear percentiles.
//!
//! ASSD for MedPy/MONAI is the mean of all distances of both directions pooled.
//! Empty masks: one empty gives HD = HD95 = ∞, ASSD = NaN, surface Dice = 0; both empty give
//! HD = HD95 = ∞ and NaN for ASSD and surface Dice. Work is confined to the bounding box of the
//! union of both masks (plus the one-cell dual-grid margin), which keeps every distance exact.

use super::StatsError;
use super::edt::squared_distances_at;
use super::overlap::OverlapCounts;
use super::surfel::code_areas;
use serde::{Deserialize, Serialize};

/// Which HD95/ASSD definition to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Definition {
    /// DeepMind surface-distance (default).
    #[default]
    SurfaceDistance,
    /// MedPy 0.5.
    Medpy,
    /// MONAI.
    Monai,
}

impl Definition {
    /// The CLI / JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SurfaceDistance => "surface-distance",
            Self::Medpy => "medpy",
            Self::Monai => "monai",
        }
    }

    /// Parses a CLI / JSON name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "surface-distance" => Some(Self::SurfaceDistance),
            "medpy" => Some(Self::Medpy),
            "monai" => Some(Self::Monai),
            _ => None,
        }
    }
}

/// A voxel grid: dimensions and spacing, both in `z, y, x` order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Voxels along z, y, x.
    pub dims: [usize; 3],
    /// Spacing along z, y, x (mm).
    pub spacing: [f64; 3],
}

impl Grid {
    fn len(&self) -> usize {
        self.dims.iter().product()
    }
}

/// Distances from one surface to the other, sorted ascending, with their weights (surfel areas
/// for surface-distance, 1 for border voxels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directed {
    /// Sorted distances (mm); `+∞` when the other surface is empty.
    pub distances: Vec<f64>,
    /// Weights in the same order.
    pub weights: Vec<f64>,
}

impl Directed {
    fn from_pairs(mut pairs: Vec<(f64, f64)>) -> Self {
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let (distances, weights) = pairs.into_iter().unzip();
        Self { distances, weights }
    }

    fn max(&self) -> f64 {
        self.distances.last().copied().unwrap_or(f64::INFINITY)
    }

    /// Area-weighted percentile without interpolation: the first distance whose cumulative
    /// weight fraction is ≥ `fraction`.
    fn weighted_percentile(&self, fraction: f64) -> f64 {
        let total: f64 = self.weights.iter().sum();
        let mut cum = 0.0;
        for (d, w) in self.distances.iter().zip(&self.weights) {
            cum += w;
            if cum / total >= fraction {
                return *d;
            }
        }
        self.max()
    }

    fn weighted_mean(&self) -> f64 {
        let total: f64 = self.weights.iter().sum();
        let s: f64 = self
            .distances
            .iter()
            .zip(&self.weights)
            .map(|(d, w)| d * w)
            .sum();
        s / total
    }

    fn weight_within(&self, tolerance: f64) -> f64 {
        self.distances
            .iter()
            .zip(&self.weights)
            .filter(|(d, _)| **d <= tolerance)
            .map(|(_, w)| w)
            .sum()
    }
}

/// numpy's default (linear) percentile of sorted values; `+∞` when empty.
fn linear_percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::INFINITY;
    }
    let h = (n - 1) as f64 * (q / 100.0);
    let lo = h.floor();
    let t = h - lo;
    let i = lo as usize;
    let a = sorted[i.min(n - 1)];
    let b = sorted[(i + 1).min(n - 1)];
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Hausdorff, HD95, ASSD and (surface-distance only) surface Dice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SurfaceMetrics {
    /// The definition used.
    pub definition: Definition,
    /// Hausdorff distance (mm).
    pub hausdorff: f64,
    /// 95th-percentile Hausdorff distance (mm).
    pub hd95: f64,
    /// Average symmetric surface distance (mm).
    pub assd: f64,
    /// Surface Dice at the tolerance (surface-distance definition only).
    pub surface_dice: Option<f64>,
}

/// The full `metrics seg` report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SegMetrics {
    /// Voxel counts.
    pub overlap: OverlapCounts,
    /// Dice.
    pub dice: f64,
    /// Jaccard.
    pub jaccard: f64,
    /// Volume similarity.
    pub volume_similarity: f64,
    /// Surface metrics.
    pub surface: SurfaceMetrics,
}

/// Inclusive bounding box (z, y, x) of the union of two masks; `None` when both are empty.
fn union_bbox<T: Copy + Sync>(
    a: &[T],
    b: &[T],
    grid: &Grid,
    is_fg: impl Fn(T) -> bool + Copy + Sync,
) -> Option<([usize; 3], [usize; 3])> {
    let [_, ny, nx] = grid.dims;
    // The box of the rows `first_row..` of `ra`/`rb`.
    let scan = |ra: &[T], rb: &[T], first_row: usize| {
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        for (r, (ra, rb)) in ra.chunks(nx).zip(rb.chunks(nx)).enumerate() {
            let first = ra.iter().zip(rb).position(|(&x, &y)| is_fg(x) || is_fg(y));
            let Some(first) = first else { continue };
            let last = ra
                .iter()
                .zip(rb)
                .rposition(|(&x, &y)| is_fg(x) || is_fg(y))
                .unwrap_or(first);
            let (z, y) = ((first_row + r) / ny, (first_row + r) % ny);
            lo = [lo[0].min(z), lo[1].min(y), lo[2].min(first)];
            hi = [hi[0].max(z), hi[1].max(y), hi[2].max(last)];
        }
        (lo, hi)
    };
    // Two halves on two threads (a memory-bound scan of both masks).
    let rows = a.len() / nx.max(1);
    let split = (rows / 2) * nx;
    let ((lo1, hi1), (lo2, hi2)) = std::thread::scope(|scope| {
        let second = scope.spawn(|| scan(&a[split..], &b[split..], rows / 2));
        let first = scan(&a[..split], &b[..split], 0);
        (
            first,
            second
                .join()
                .unwrap_or_else(|_| scan(&a[split..], &b[split..], rows / 2)),
        )
    });
    let lo = [lo1[0].min(lo2[0]), lo1[1].min(lo2[1]), lo1[2].min(lo2[2])];
    let hi = [hi1[0].max(hi2[0]), hi1[1].max(hi2[1]), hi1[2].max(hi2[2])];
    (lo[0] != usize::MAX).then_some((lo, hi))
}

/// Copies the box `lo..=hi` of a mask into a 0/1 array with `pad` zero cells on every side.
fn crop<T: Copy>(
    mask: &[T],
    grid: &Grid,
    lo: [usize; 3],
    hi: [usize; 3],
    pad: usize,
    is_fg: impl Fn(T) -> bool,
) -> (Vec<u8>, [usize; 3]) {
    let [_, ny, nx] = grid.dims;
    let c = [
        hi[0] - lo[0] + 1 + 2 * pad,
        hi[1] - lo[1] + 1 + 2 * pad,
        hi[2] - lo[2] + 1 + 2 * pad,
    ];
    let mut out = vec![0u8; c[0] * c[1] * c[2]];
    for z in lo[0]..=hi[0] {
        for y in lo[1]..=hi[1] {
            let src = (z * ny + y) * nx;
            let dst = ((z - lo[0] + pad) * c[1] + (y - lo[1] + pad)) * c[2] + pad;
            let row = &mask[src + lo[2]..=src + hi[2]];
            for (o, &v) in out[dst..dst + row.len()].iter_mut().zip(row) {
                *o = u8::from(is_fg(v));
            }
        }
    }
    (out, c)
}

/// Surfels on the dual grid of the box `lo..=hi` of a mask padded by one background cell on
/// every side (padded dims `p`): (flat dual index, area) and the border map. The padded planes
/// are never materialised: each is read from the mask as pair codes 2·v(x) + v(x + 1) of its
/// rows, two planes at a time.
fn surfels<T: Copy>(
    mask: &[T],
    grid: &Grid,
    lo: [usize; 3],
    p: [usize; 3],
    areas: &[f64; 256],
    is_fg: impl Fn(T) -> bool,
) -> (Vec<(usize, f64)>, Vec<bool>) {
    let [_, ny, nx] = grid.dims;
    let d = [p[0] - 1, p[1] - 1, p[2] - 1];
    let mut padded_row = vec![0u8; p[2]];
    let mut pairs = |z: usize, out: &mut [u8]| {
        for (y, row_out) in out.chunks_mut(d[2]).enumerate() {
            if z == 0 || z == d[0] || y == 0 || y == d[1] {
                row_out.fill(0);
                continue;
            }
            let src = ((z - 1 + lo[0]) * ny + (y - 1 + lo[1])) * nx + lo[2];
            let row_in = &mask[src..src + p[2] - 2];
            for (o, &v) in padded_row[1..p[2] - 1].iter_mut().zip(row_in) {
                *o = u8::from(is_fg(v));
            }
            for (o, w) in row_out.iter_mut().zip(padded_row.windows(2)) {
                *o = (w[0] << 1) | w[1];
            }
        }
    };
    let mut lower = vec![0u8; p[1] * d[2]];
    let mut upper = vec![0u8; p[1] * d[2]];
    pairs(0, &mut lower);
    let mut border = vec![false; d[0] * d[1] * d[2]];
    let mut list = Vec::new();
    for z in 0..d[0] {
        pairs(z + 1, &mut upper);
        for y in 0..d[1] {
            let (r00, r01) = (
                &lower[y * d[2]..(y + 1) * d[2]],
                &lower[(y + 1) * d[2]..(y + 2) * d[2]],
            );
            let (r10, r11) = (
                &upper[y * d[2]..(y + 1) * d[2]],
                &upper[(y + 1) * d[2]..(y + 2) * d[2]],
            );
            let base = (z * d[1] + y) * d[2];
            for (x, (((&a, &b), &c), &e)) in r00.iter().zip(r01).zip(r10).zip(r11).enumerate() {
                let code = (a << 6) | (b << 4) | (c << 2) | e;
                if code != 0 && code != 255 {
                    border[base + x] = true;
                    list.push((base + x, areas[code as usize]));
                }
            }
        }
        std::mem::swap(&mut lower, &mut upper);
    }
    (list, border)
}

/// MedPy border voxels (6-neighbourhood erosion, outside = background) of a cropped mask.
fn border_voxels(mask: &[u8], c: [usize; 3]) -> (Vec<usize>, Vec<bool>) {
    let [nz, ny, nx] = c;
    let mut border = vec![false; mask.len()];
    let mut list = Vec::new();
    let get = |z: usize, y: usize, x: usize| mask[(z * ny + y) * nx + x] != 0;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                if mask[i] == 0 {
                    continue;
                }
                let interior = z > 0
                    && z + 1 < nz
                    && y > 0
                    && y + 1 < ny
                    && x > 0
                    && x + 1 < nx
                    && get(z - 1, y, x)
                    && get(z + 1, y, x)
                    && get(z, y - 1, x)
                    && get(z, y + 1, x)
                    && get(z, y, x - 1)
                    && get(z, y, x + 1);
                if !interior {
                    border[i] = true;
                    list.push(i);
                }
            }
        }
    }
    (list, border)
}

/// Distances from each listed point to the nearest feature, paired with the point's weight.
fn directed(
    points: &[(usize, f64)],
    features: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> Directed {
    let idx: Vec<usize> = points.iter().map(|p| p.0).collect();
    let sq = squared_distances_at(features, dims, spacing, &idx);
    Directed::from_pairs(
        sq.iter()
            .zip(points)
            .map(|(d, p)| (d.sqrt(), p.1))
            .collect(),
    )
}

/// Both directions (each EDT spreads its own work over the cores).
fn both_directions(
    la: &[(usize, f64)],
    fb: &[bool],
    lb: &[(usize, f64)],
    fa: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> (Directed, Directed) {
    (
        directed(la, fb, dims, spacing),
        directed(lb, fa, dims, spacing),
    )
}

/// The two directed distance sets (reference → test, test → reference) under a definition.
pub fn surface_distances<T: Copy + Sync>(
    reference: &[T],
    test: &[T],
    grid: &Grid,
    is_fg: impl Fn(T) -> bool + Copy + Sync,
    definition: Definition,
) -> Result<(Directed, Directed), StatsError> {
    if reference.len() != grid.len() || test.len() != grid.len() {
        return Err(StatsError::Shape("mask size != grid"));
    }
    if grid.dims.contains(&0) {
        return Ok((Directed::default(), Directed::default()));
    }
    let Some((lo, hi)) = union_bbox(reference, test, grid, is_fg) else {
        return Ok((Directed::default(), Directed::default()));
    };
    match definition {
        Definition::SurfaceDistance => {
            let areas = code_areas(grid.spacing);
            // The box plus one background cell on every side.
            let p = [hi[0] - lo[0] + 3, hi[1] - lo[1] + 3, hi[2] - lo[2] + 3];
            let extract = |mask: &[T]| (surfels(mask, grid, lo, p, &areas, is_fg), p);
            // The two surfaces are independent: extract them on two threads.
            let (((la, ba), p), ((lb, bb), _)) = std::thread::scope(|scope| {
                let other = scope.spawn(|| extract(test));
                let mine = extract(reference);
                // `extract` does not panic on a valid box; if it ever did, redo it here.
                (mine, other.join().unwrap_or_else(|_| extract(test)))
            });
            let d = [p[0] - 1, p[1] - 1, p[2] - 1];
            Ok(both_directions(&la, &bb, &lb, &ba, d, grid.spacing))
        }
        Definition::Medpy | Definition::Monai => {
            let (ca, c) = crop(reference, grid, lo, hi, 0, is_fg);
            let (cb, _) = crop(test, grid, lo, hi, 0, is_fg);
            let (la, ba) = border_voxels(&ca, c);
            let (lb, bb) = border_voxels(&cb, c);
            let unit = |l: Vec<usize>| l.into_iter().map(|i| (i, 1.0)).collect::<Vec<_>>();
            let (la, lb) = (unit(la), unit(lb));
            Ok(both_directions(&la, &bb, &lb, &ba, c, grid.spacing))
        }
    }
}

/// Summarises two directed distance sets under a definition.
pub fn summarize(
    a: &Directed,
    b: &Directed,
    definition: Definition,
    tolerance_mm: f64,
) -> SurfaceMetrics {
    let hausdorff = a.max().max(b.max());
    match definition {
        Definition::SurfaceDistance => {
            let wa: f64 = a.weights.iter().sum();
            let wb: f64 = b.weights.iter().sum();
            let within = a.weight_within(tolerance_mm) + b.weight_within(tolerance_mm);
            SurfaceMetrics {
                definition,
                hausdorff,
                hd95: a.weighted_percentile(0.95).max(b.weighted_percentile(0.95)),
                assd: (a.weighted_mean() + b.weighted_mean()) / 2.0,
                surface_dice: Some(within / (wa + wb)),
            }
        }
        Definition::Medpy | Definition::Monai => {
            let n = a.distances.len() + b.distances.len();
            let sum: f64 = a.distances.iter().chain(&b.distances).sum();
            let assd = if a.distances.is_empty() || b.distances.is_empty() {
                f64::NAN
            } else {
                sum / n as f64
            };
            let hd95 = if definition == Definition::Monai {
                linear_percentile(&a.distances, 95.0).max(linear_percentile(&b.distances, 95.0))
            } else if a.distances.is_empty() || b.distances.is_empty() {
                f64::INFINITY
            } else {
                let mut pooled: Vec<f64> =
                    a.distances.iter().chain(&b.distances).copied().collect();
                pooled.sort_unstable_by(f64::total_cmp);
                linear_percentile(&pooled, 95.0)
            };
            SurfaceMetrics {
                definition,
                hausdorff,
                hd95,
                assd,
                surface_dice: None,
            }
        }
    }
}

/// Surface metrics of two masks.
pub fn surface_metrics<T: Copy + Sync>(
    reference: &[T],
    test: &[T],
    grid: &Grid,
    is_fg: impl Fn(T) -> bool + Copy + Sync,
    definition: Definition,
    tolerance_mm: f64,
) -> Result<SurfaceMetrics, StatsError> {
    let (a, b) = surface_distances(reference, test, grid, is_fg, definition)?;
    Ok(summarize(&a, &b, definition, tolerance_mm))
}

/// The `metrics seg` report: overlap and surface metrics of REF (`reference`) and TEST.
pub fn seg_metrics<T: Copy + Sync>(
    reference: &[T],
    test: &[T],
    grid: &Grid,
    is_fg: impl Fn(T) -> bool + Copy + Sync,
    definition: Definition,
    tolerance_mm: f64,
) -> Result<SegMetrics, StatsError> {
    let overlap = OverlapCounts::from_masks(reference, test, is_fg)?;
    let surface = surface_metrics(reference, test, grid, is_fg, definition, tolerance_mm)?;
    Ok(SegMetrics {
        overlap,
        dice: overlap.dice(),
        jaccard: overlap.jaccard(),
        volume_similarity: overlap.volume_similarity(),
        surface,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube(dims: [usize; 3], lo: [usize; 3], size: usize) -> Vec<u8> {
        let mut v = vec![0u8; dims.iter().product()];
        for z in lo[0]..lo[0] + size {
            for y in lo[1]..lo[1] + size {
                for x in lo[2]..lo[2] + size {
                    v[(z * dims[1] + y) * dims[2] + x] = 1;
                }
            }
        }
        v
    }

    #[test]
    fn shifted_cubes_have_analytic_hausdorff() {
        let grid = Grid {
            dims: [14, 14, 16],
            spacing: [2.0, 1.0, 0.5],
        };
        let a = cube(grid.dims, [2, 2, 2], 10);
        let b = cube(grid.dims, [3, 2, 4], 10);
        for def in [
            Definition::SurfaceDistance,
            Definition::Medpy,
            Definition::Monai,
        ] {
            let m = surface_metrics(&a, &b, &grid, |v| v != 0, def, 1.0).expect("same size");
            assert!((m.hausdorff - 5f64.sqrt()).abs() < 1e-12, "{def:?}");
            let same = surface_metrics(&a, &a, &grid, |v| v != 0, def, 1.0).expect("same size");
            assert_eq!((same.hausdorff, same.hd95, same.assd), (0.0, 0.0, 0.0));
        }
    }

    #[test]
    fn empty_masks_follow_the_references() {
        let grid = Grid {
            dims: [4, 4, 4],
            spacing: [1.0, 1.0, 1.0],
        };
        let e = vec![0u8; 64];
        let c = cube(grid.dims, [1, 1, 1], 2);
        let both = surface_metrics(&e, &e, &grid, |v| v != 0, Definition::SurfaceDistance, 1.0)
            .expect("ok");
        assert!(both.hausdorff.is_infinite() && both.hd95.is_infinite());
        assert!(both.assd.is_nan() && both.surface_dice.is_some_and(f64::is_nan));
        let one = surface_metrics(&c, &e, &grid, |v| v != 0, Definition::SurfaceDistance, 1.0)
            .expect("ok");
        assert!(one.hausdorff.is_infinite() && one.hd95.is_infinite() && one.assd.is_nan());
        assert_eq!(one.surface_dice, Some(0.0));
    }

    #[test]
    fn numpy_linear_percentile() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert!((linear_percentile(&v, 95.0) - 8.8).abs() < 1e-12);
        assert_eq!(linear_percentile(&[2.5], 95.0), 2.5);
    }
}
