//! Exact Euclidean distance transform with anisotropic spacing, in linear time.
//!
//! Owns the separable lower-envelope-of-parabolas algorithm of Felzenszwalb & Huttenlocher
//! ("Distance Transforms of Sampled Functions", Theory of Computing 8, 2012), applied along x,
//! then y, then z of a `z, y, x` grid with spacing in mm. Callers crop to the region that holds
//! every feature and query (the result is exact there, since the nearest feature lies in it).
//! The last pass runs only on the z-columns that hold a query point.

/// Squared distance (mm²) from each query voxel (flat `z, y, x` index) to the nearest feature
/// voxel; `+∞` when there is no feature. Indices outside the grid give `+∞`.
pub fn squared_distances_at(
    features: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    queries: &[usize],
) -> Vec<f64> {
    let [nz, ny, nx] = dims;
    let n = nz * ny * nx;
    if features.len() != n || n == 0 {
        return vec![f64::INFINITY; queries.len()];
    }
    let [sz, sy, sx] = spacing;
    let mut g = vec![f64::INFINITY; n];
    // Pass 1 (x, contiguous): nearest feature in the row by two sweeps.
    for (row_f, row_g) in features.chunks(nx).zip(g.chunks_mut(nx)) {
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
    let mut env = Envelope::new(ny.max(nz));
    // Pass 2 (y): every column of every slice, in blocks of adjacent columns so that each
    // gathered cache line is used whole.
    if ny > 1 {
        for slice in g.chunks_mut(ny * nx) {
            transform_strided(slice, ny, nx, nx, sy, &mut env, |_| true);
        }
    }
    // Pass 3 (z): only the columns holding a query.
    if nz > 1 {
        let plane = ny * nx;
        let mut needed = vec![false; plane];
        for &q in queries {
            if q < n {
                needed[q % plane] = true;
            }
        }
        transform_strided(&mut g, nz, plane, plane, sz, &mut env, |col| needed[col]);
    }
    queries
        .iter()
        .map(|&q| g.get(q).copied().unwrap_or(f64::INFINITY))
        .collect()
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
