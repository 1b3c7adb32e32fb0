//! Exact Euclidean distance transform with anisotropic spacing, in linear time.
//!
//! Owns the separable lower-envelope-of-parabolas algorithm of Felzenszwalb & Huttenlocher
//! ("Distance Transforms of Sampled Functions", Theory of Computing 8, 2012), applied along x,
//! then y, then z of a `z, y, x` grid with spacing in mm, evaluated only where it is asked.
//! Callers crop to the region that holds every feature and query (the result is exact there,
//! since the nearest feature lies in it).
//!
//! Only distances at query voxels are wanted, so no full-size distance volume is kept: each
//! slice gets its 2-D transform (x then y) in a slice-sized buffer that stays in cache, and
//! only the (y, x) columns that hold a query are copied into a compact `z × columns` array; the
//! z pass then runs on those columns and is read out at the queries. Slices, then columns, are
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
    // x columns whose y pass is needed.
    let mut x_needed = vec![false; nx];
    for &c in &columns {
        x_needed[c % nx] = true;
    }
    let threads = threads.clamp(1, nz.max(1));

    // Stage 1: per slice, x and y passes in a slice buffer; keep the needed columns.
    let mut compact = vec![0.0f64; nz * m];
    let per = nz.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, part) in compact.chunks_mut(per * m).enumerate() {
            let (columns, x_needed) = (&columns, &x_needed);
            scope.spawn(move || {
                let mut slice = vec![0.0f64; plane];
                let mut env = Envelope::new(ny.max(nz));
                for (k, dst) in part.chunks_mut(m).enumerate() {
                    let z = t * per + k;
                    let f = &features[z * plane..(z + 1) * plane];
                    if !f.contains(&true) {
                        dst.fill(f64::INFINITY);
                        continue;
                    }
                    x_pass(f, &mut slice, nx, sx);
                    if ny > 1 {
                        transform_strided(&mut slice, ny, nx, nx, sy, &mut env, |x| x_needed[x]);
                    }
                    for (d, &c) in dst.iter_mut().zip(columns) {
                        *d = slice[c];
                    }
                }
            });
        }
    });

    // Stage 2: z pass on the needed columns, read out at the queries (in (column, z) order).
    let mut sorted = vec![f64::INFINITY; order.len()];
    // Queries of each column: order[starts[j]..starts[j + 1]].
    let mut starts = vec![0usize; m + 1];
    for &(c, _, _) in &order {
        starts[slot[c as usize] as usize + 1] += 1;
    }
    for j in 0..m {
        starts[j + 1] += starts[j];
    }
    let per_cols = m.div_ceil(threads).div_ceil(BLOCK) * BLOCK;
    std::thread::scope(|scope| {
        let mut rest: &mut [f64] = &mut sorted;
        let mut j0 = 0;
        while j0 < m {
            let j1 = (j0 + per_cols).min(m);
            let (mine, tail) = rest.split_at_mut(starts[j1] - starts[j0]);
            rest = tail;
            let (compact, starts, order) = (&compact, &starts, &order);
            scope.spawn(move || {
                let mut env = Envelope::new(nz);
                let mut buf = vec![0.0; BLOCK * nz];
                let base = starts[j0];
                let mut b0 = j0;
                while b0 < j1 {
                    let width = BLOCK.min(j1 - b0);
                    for z in 0..nz {
                        let row = &compact[z * m + b0..z * m + b0 + width];
                        for (b, &v) in row.iter().enumerate() {
                            buf[b * nz + z] = v;
                        }
                    }
                    for b in 0..width {
                        let column = &buf[b * nz..(b + 1) * nz];
                        let j = b0 + b;
                        let targets = &order[starts[j]..starts[j + 1]];
                        let outs = &mut mine[starts[j] - base..starts[j + 1] - base];
                        if nz == 1 || column.iter().all(|v| v.is_infinite()) {
                            for (o, t) in outs.iter_mut().zip(targets) {
                                *o = column[t.1 as usize];
                            }
                            continue;
                        }
                        env.transform(column, sz);
                        for (o, t) in outs.iter_mut().zip(targets) {
                            *o = env.out[t.1 as usize];
                        }
                    }
                    b0 += width;
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

/// x pass of one slice: squared distance to the nearest feature in the same row, by two
/// sweeps per row.
fn x_pass(features: &[bool], g: &mut [f64], nx: usize, sx: f64) {
    for (row_f, row_g) in features.chunks(nx).zip(g.chunks_mut(nx)) {
        row_g.fill(f64::INFINITY);
        let mut last: Option<usize> = None;
        for (i, (&f, out)) in row_f.iter().zip(row_g.iter_mut()).enumerate() {
            if f {
                last = Some(i);
            }
            if let Some(p) = last {
                let d = (i - p) as f64 * sx;
                *out = d * d;
            }
        }
        let mut next: Option<usize> = None;
        for (i, (&f, out)) in row_f.iter().zip(row_g.iter_mut()).enumerate().rev() {
            if f {
                next = Some(i);
            }
            if let Some(p) = next {
                let d = (p - i) as f64 * sx;
                if d * d < *out {
                    *out = d * d;
                }
            }
        }
    }
}

/// Columns handled together by [`transform_strided`].
const BLOCK: usize = 16;

/// Transforms the `count` columns `data[i * stride + col]` (i < len) for which `wanted(col)`,
/// gathering blocks of adjacent columns.
fn transform_strided(
    data: &mut [f64],
    len: usize,
    count: usize,
    stride: usize,
    spacing: f64,
    env: &mut Envelope,
    wanted: impl Fn(usize) -> bool,
) {
    let mut buf = vec![0.0; BLOCK * len];
    let mut col0 = 0;
    while col0 < count {
        let width = BLOCK.min(count - col0);
        if (col0..col0 + width).any(&wanted) {
            for i in 0..len {
                let row = &data[i * stride + col0..i * stride + col0 + width];
                for (b, &v) in row.iter().enumerate() {
                    buf[b * len + i] = v;
                }
            }
            for b in 0..width {
                let column = &mut buf[b * len..(b + 1) * len];
                if !wanted(col0 + b) || column.iter().all(|v| v.is_infinite()) {
                    continue;
                }
                env.transform(column, spacing);
                column.copy_from_slice(&env.out);
            }
            for i in 0..len {
                let row = &mut data[i * stride + col0..i * stride + col0 + width];
                for (b, v) in row.iter_mut().enumerate() {
                    *v = buf[b * len + i];
                }
            }
        }
        col0 += width;
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
    out: Vec<f64>,
}

impl Envelope {
    fn new(n: usize) -> Self {
        Self {
            v: vec![0; n],
            zn: vec![0.0; n],
            zd: vec![0.0; n],
            h: vec![0.0; n],
            out: Vec::with_capacity(n),
        }
    }

    /// d(q) = min_p (x_q − x_p)² + f(p), x = index × spacing; infinite f are skipped.
    fn transform(&mut self, f: &[f64], s: f64) {
        let n = f.len();
        self.out.clear();
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
        if count == 0 {
            self.out.resize(n, f64::INFINITY);
            return;
        }
        let mut j = 0;
        for q in 0..n {
            let xq = q as f64 * s;
            while j + 1 < count && self.zn[j + 1] < xq * self.zd[j + 1] {
                j += 1;
            }
            let p = self.v[j];
            let d = xq - p as f64 * s;
            self.out.push(d * d + f[p]);
        }
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
            assert!(one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()));
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
