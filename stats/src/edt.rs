//! Exact Euclidean distance transform with anisotropic spacing, in linear time.
//!
//! Owns the separable transform of Felzenszwalb & Huttenlocher ("Distance Transforms of Sampled
//! Functions", Theory of Computing 8, 2012) on a `z, y, x` grid with spacing in mm, evaluated
//! only where it is asked: distances along y by two sweeps, then the lower envelope of
//! parabolas along x, then along z. Callers crop to the region that holds every feature and
//! query (the result is exact there, since the nearest feature lies in it).
//!
//! Only distances at query voxels are wanted, so no full-size distance volume is kept: each
//! slice gets its 2-D transform in a slice-sized buffer that stays in cache, read out only at
//! the (y, x) columns that hold a query, which are kept in compact column-major slabs; the z
//! pass then runs on those columns and is read out at the queries. Slices, then columns, are
//! shared among the available cores (`std::thread::scope`); every value is computed by the same
//! arithmetic whatever the split, so the result does not depend on the thread count.

/// Squared distance (mm²) from each query voxel (flat `z, y, x` index) to the nearest feature
/// voxel; `+∞` when there is no feature. Indices outside the grid give `+∞`.
pub fn squared_distances_at(
    features: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    queries: &[usize],
) -> Vec<f64> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    squared_distances_threads(features, dims, spacing, queries, threads)
}

/// [`squared_distances_at`] on at most `threads` threads.
pub fn squared_distances_threads(
    features: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    queries: &[usize],
    threads: usize,
) -> Vec<f64> {
    let [nz, ny, nx] = dims;
    let plane = ny * nx;
    let n = nz * plane;
    let mut out = vec![f64::INFINITY; queries.len()];
    if features.len() != n || n == 0 {
        return out;
    }
    let [sz, sy, sx] = spacing;
    // Needed (y, x) columns, in plane order, and the queries sorted by (column, z).
    let mut slot = vec![u32::MAX; plane];
    let mut order: Vec<(u32, u32, u32)> = Vec::with_capacity(queries.len());
    for (qi, &q) in queries.iter().enumerate() {
        if q < n {
            slot[q % plane] = 0;
            order.push(((q % plane) as u32, (q / plane) as u32, qi as u32));
        }
    }
    let mut columns: Vec<usize> = Vec::new();
    for (c, s) in slot.iter_mut().enumerate() {
        if *s == 0 {
            *s = columns.len() as u32;
            columns.push(c);
        }
    }
    if columns.is_empty() {
        return out;
    }
    order.sort_unstable();
    let m = columns.len();
    let threads = threads.clamp(1, nz);
    let per = nz.div_ceil(threads);
    let parts = slice_passes(features, dims, [sy, sx], &columns, per);

    // Stage 2: z pass on the needed columns, read out at the queries (in (column, z) order).
    let mut sorted = vec![f64::INFINITY; order.len()];
    // Queries of column j: order[starts[j]..starts[j + 1]].
    let mut starts = vec![0usize; m + 1];
    for &(c, _, _) in &order {
        starts[slot[c as usize] as usize + 1] += 1;
    }
    for j in 0..m {
        starts[j + 1] += starts[j];
    }
    let per_cols = m.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut rest: &mut [f64] = &mut sorted;
        let mut j0 = 0;
        while j0 < m {
            let j1 = (j0 + per_cols).min(m);
            let (mine, tail) = rest.split_at_mut(starts[j1] - starts[j0]);
            rest = tail;
            let (parts, starts, order) = (&parts, &starts, &order);
            scope.spawn(move || {
                let mut env = Envelope::new(nz);
                let mut column = vec![0.0; nz];
                let mut at = Vec::new();
                let base = starts[j0];
                for j in j0..j1 {
                    // The column's values, slab by slab.
                    let mut z = 0;
                    for part in parts {
                        let len = part.len() / m;
                        column[z..z + len].copy_from_slice(&part[j * len..(j + 1) * len]);
                        z += len;
                    }
                    let targets = &order[starts[j]..starts[j + 1]];
                    let outs = &mut mine[starts[j] - base..starts[j + 1] - base];
                    at.clear();
                    at.extend(targets.iter().map(|t| t.1 as usize));
                    env.transform_at(&column, sz, &at, outs);
                }
            });
            j0 = j1;
        }
    });
    for (&(_, _, qi), v) in order.iter().zip(sorted) {
        out[qi as usize] = v;
    }
    out
}

/// Slices in a group before its needed columns are transposed into a slab.
const GROUP: usize = 8;

/// "No feature seen yet" in the y sweeps.
const NONE: usize = usize::MAX;

/// Stage 1: per slice, the squared distance to the nearest feature within the slice at every
/// needed (y, x) column: sweeps along y (distance to the nearest feature in the same column),
/// then the parabola envelope along each row that holds a needed column, read out only there.
/// Returns one slab per thread (`per` slices each, the last may be shorter), laid out
/// column-major (`slab[j * len + dz]`) so that the z pass reads each column contiguously.
fn slice_passes(
    features: &[bool],
    dims: [usize; 3],
    spacing_yx: [f64; 2],
    columns: &[usize],
    per: usize,
) -> Vec<Vec<f64>> {
    let [nz, ny, nx] = dims;
    let [sy, sx] = spacing_yx;
    let plane = ny * nx;
    let m = columns.len();
    // Rows holding needed columns: (y, first j, end j); columns are in plane order.
    let mut rows: Vec<(usize, usize, usize)> = Vec::new();
    for (j, &c) in columns.iter().enumerate() {
        match rows.last_mut() {
            Some(r) if r.0 == c / nx => r.2 = j + 1,
            _ => rows.push((c / nx, j, j + 1)),
        }
    }
    let xs: Vec<usize> = columns.iter().map(|c| c % nx).collect();
    let (rows, xs) = (&rows, &xs);
    let work = |t: usize| -> Vec<f64> {
        let z0 = t * per;
        let len = per.min(nz - z0);
        let mut slab = vec![0.0f64; len * m];
        let mut slice = vec![0.0f64; plane];
        let mut seen = vec![NONE; nx];
        let mut group = vec![0.0f64; GROUP * m];
        let mut env = Envelope::new(nx);
        let mut g0 = 0;
        while g0 < len {
            let width = GROUP.min(len - g0);
            for dz in 0..width {
                let z = z0 + g0 + dz;
                let dst = &mut group[dz * m..(dz + 1) * m];
                let f = &features[z * plane..(z + 1) * plane];
                if !f.contains(&true) {
                    dst.fill(f64::INFINITY);
                    continue;
                }
                y_sweeps(f, &mut slice, &mut seen, nx, sy);
                for &(y, j0, j1) in rows {
                    let row = &slice[y * nx..(y + 1) * nx];
                    env.transform_at(row, sx, &xs[j0..j1], &mut dst[j0..j1]);
                }
            }
            for j in 0..m {
                let col = &mut slab[j * len + g0..j * len + g0 + width];
                for (dz, v) in col.iter_mut().enumerate() {
                    *v = group[dz * m + j];
                }
            }
            g0 += width;
        }
        slab
    };
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..nz.div_ceil(per))
            .map(|t| (t, scope.spawn(move || work(t))))
            .collect();
        handles
            .into_iter()
            // A worker only indexes within its own buffers; should one ever panic, its slab
            // is recomputed on this thread.
            .map(|(t, h)| h.join().unwrap_or_else(|_| work(t)))
            .collect()
    })
}

/// First pass of one slice: squared distance (mm²) along y to the nearest feature in the same
/// column, by a downward and an upward sweep over whole rows; `+∞` without one.
fn y_sweeps(features: &[bool], g: &mut [f64], seen: &mut [usize], nx: usize, sy: f64) {
    seen.fill(NONE);
    for (y, (row_f, row_g)) in features.chunks(nx).zip(g.chunks_mut(nx)).enumerate() {
        for ((&f, out), last) in row_f.iter().zip(row_g.iter_mut()).zip(seen.iter_mut()) {
            if f {
                *last = y;
            }
            *out = if *last == NONE {
                f64::INFINITY
            } else {
                let d = (y - *last) as f64 * sy;
                d * d
            };
        }
    }
    seen.fill(NONE);
    for (y, (row_f, row_g)) in features.chunks(nx).zip(g.chunks_mut(nx)).enumerate().rev() {
        for ((&f, out), next) in row_f.iter().zip(row_g.iter_mut()).zip(seen.iter_mut()) {
            if f {
                *next = y;
            }
            if *next != NONE {
                let d = (*next - y) as f64 * sy;
                if d * d < *out {
                    *out = d * d;
                }
            }
        }
    }
}

/// Work buffers of the 1-D transform.
struct Envelope {
    /// Parabola vertices of the lower envelope.
    v: Vec<usize>,
    /// Boundary between parabolas i − 1 and i as the fraction `zn[i] / zd[i]` (zd > 0), kept
    /// unevaluated so the transform needs no division.
    zn: Vec<f64>,
    zd: Vec<f64>,
    /// f(q) + x_q².
    h: Vec<f64>,
}

impl Envelope {
    fn new(n: usize) -> Self {
        Self {
            v: vec![0; n],
            zn: vec![0.0; n],
            zd: vec![0.0; n],
            h: vec![0.0; n],
        }
    }

    /// d(q) = min_p (q − p)²·s² + f(p) at the ascending indices `at`, into `out` (same length
    /// as `at`); infinite samples of f are skipped (no finite sample: `+∞`).
    fn transform_at(&mut self, f: &[f64], s: f64, at: &[usize], out: &mut [f64]) {
        let count = self.build(f, s);
        if count == 0 {
            out.fill(f64::INFINITY);
            return;
        }
        let mut j = 0;
        for (o, &q) in out.iter_mut().zip(at) {
            let xq = q as f64 * s;
            while j + 1 < count && self.zn[j + 1] < xq * self.zd[j + 1] {
                j += 1;
            }
            let p = self.v[j];
            // The index difference times the spacing: one rounding, exact for the spacings
            // whose multiples are exact (1.0, 0.5, 2.0 …), so ties at a tolerance stay ties.
            let d = q.abs_diff(p) as f64 * s;
            *o = d * d + f.get(p).copied().unwrap_or(f64::INFINITY);
        }
    }

    /// Builds the lower envelope of the finite samples of `f`; returns its parabola count.
    fn build(&mut self, f: &[f64], s: f64) -> usize {
        let n = f.len();
        if self.v.len() < n {
            self.v.resize(n, 0);
            self.zn.resize(n, 0.0);
            self.zd.resize(n, 0.0);
            self.h.resize(n, 0.0);
        }
        let mut count = 0usize;
        for (q, &fq) in f.iter().enumerate() {
            if fq.is_infinite() {
                continue;
            }
            let xq = q as f64 * s;
            let hq = fq + xq * xq;
            self.h[q] = hq;
            loop {
                if count == 0 {
                    self.v[0] = q;
                    count = 1;
                    break;
                }
                let p = self.v[count - 1];
                let num = hq - self.h[p];
                let den = 2.0 * (xq - p as f64 * s);
                // Pop the last parabola while the new one undercuts it before its start.
                if count >= 2 && num * self.zd[count - 1] <= self.zn[count - 1] * den {
                    count -= 1;
                    continue;
                }
                self.v[count] = q;
                self.zn[count] = num;
                self.zd[count] = den;
                count += 1;
                break;
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixed::tests_rng::XorShift;
    use super::*;

    #[test]
    fn thread_count_does_not_change_a_bit() {
        let mut rng = XorShift::new(0x7ead);
        let dims = [9, 23, 37];
        let n = dims[0] * dims[1] * dims[2];
        let features: Vec<bool> = (0..n).map(|_| rng.below(40) == 0).collect();
        let queries: Vec<usize> = (0..n).filter(|_| rng.below(3) == 0).collect();
        let one = squared_distances_threads(&features, dims, [2.5, 0.7, 0.9], &queries, 1);
        for t in [2, 3, 8] {
            let many = squared_distances_threads(&features, dims, [2.5, 0.7, 0.9], &queries, t);
            assert!(
                one.iter()
                    .zip(&many)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    #[test]
    fn matches_brute_force_with_anisotropic_spacing() {
        let mut rng = XorShift::new(0xed7);
        for _ in 0..20 {
            let dims = [1 + rng.below(7), 1 + rng.below(8), 1 + rng.below(9)];
            let spacing = [0.5 + rng.unit() * 2.0, 0.3 + rng.unit(), 0.9];
            let n = dims[0] * dims[1] * dims[2];
            let features: Vec<bool> = (0..n).map(|_| rng.below(9) == 0).collect();
            let queries: Vec<usize> = (0..n).collect();
            let got = squared_distances_at(&features, dims, spacing, &queries);
            let coord = |i: usize| {
                [
                    i / (dims[1] * dims[2]),
                    (i / dims[2]) % dims[1],
                    i % dims[2],
                ]
            };
            for (q, &d) in queries.iter().zip(&got) {
                let a = coord(*q);
                let mut best = f64::INFINITY;
                for (p, _) in features.iter().enumerate().filter(|(_, f)| **f) {
                    let b = coord(p);
                    let s: f64 = (0..3)
                        .map(|i| ((a[i] as f64 - b[i] as f64) * spacing[i]).powi(2))
                        .sum();
                    best = best.min(s);
                }
                assert!((best - d).abs() < 1e-9 || (best.is_infinite() && d.is_infinite()));
            }
        }
    }
}
