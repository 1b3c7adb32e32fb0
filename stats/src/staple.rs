//! Binary STAPLE (Warfield et al. 2004) with ITK `STAPLEImageFilter` semantics, on a pattern
//! histogram, federated by fixed-point sufficient statistics.
//!
//! Owns the binary rater model (global prior g, sensitivity p_r, specificity q_r), the pattern
//! histogram, the E-step/M-step decomposition and the pooled driver. ITK rules (ARCHITECTURE.md,
//! "STAPLE (binary)"): W⁰ = vote fraction; g = mean(W⁰) × confidence weight, fixed; each iteration
//! runs the M-step first, then the E-step; the loop stops at the first iteration k > 0 where every
//! rater has (Δp)² ≤ 1e-14 and (Δq)² ≤ 1e-14, and `iterations` is that k (ITK ElapsedIterations).
//! Additions: a zero denominator keeps the previous p or q (both start at 1), and a rater may be
//! absent for a voxel (missing decision): then the voxel counts in neither of that rater's
//! denominators. A voxel nobody labelled takes no part (its probability is g).
//!
//! A voxel's posterior depends only on its pattern of decisions, so the image is reduced once to
//! a histogram of patterns and EM iterates on the histogram. Per-pattern weights are quantised
//! ([`super::fixed`]) and multiplied by integer counts, so statistics of any partition of the
//! voxels sum to the pooled statistics exactly.

use super::StatsError;
use super::fixed::{self, ONE, quantize_unit};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most raters a pattern key holds.
pub const MAX_RATERS: usize = 32;

/// Voxels per block while building a histogram.
const BLOCK: usize = 1 << 15;

/// Largest key width (bits) counted in a dense table.
const DENSE_BITS: u32 = 20;

/// Counts pattern keys: a dense table for small keys, a hash map beyond.
pub(crate) struct KeyCounter {
    dense: Vec<u64>,
    dense_limit: u64,
    sparse: HashMap<u64, u64>,
}

impl KeyCounter {
    /// A counter whose dense table covers keys below 2^`dense_bits` (capped).
    pub(crate) fn new(dense_bits: u32) -> Self {
        let bits = dense_bits.min(DENSE_BITS);
        Self {
            dense: vec![0; 1 << bits],
            dense_limit: 1 << bits,
            sparse: HashMap::new(),
        }
    }

    pub(crate) fn add(&mut self, key: u64) {
        if key < self.dense_limit {
            if let Some(c) = self.dense.get_mut(key as usize) {
                *c += 1;
            }
        } else {
            *self.sparse.entry(key).or_insert(0) += 1;
        }
    }

    /// The non-zero (key, count) pairs sorted by key.
    pub(crate) fn finish(self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self
            .dense
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| (k as u64, *c))
            .chain(self.sparse)
            .collect();
        out.sort_unstable();
        out
    }
}

/// Merges two key-sorted histograms.
pub(crate) fn merge_sorted(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Checks that every rater image has the same length.
pub(crate) fn common_len<T>(raters: &[&[T]]) -> Result<usize, StatsError> {
    let n = raters
        .first()
        .map(|r| r.len())
        .ok_or(StatsError::Empty("raters"))?;
    if raters.iter().any(|r| r.len() != n) {
        return Err(StatsError::Shape("rater images differ in size"));
    }
    Ok(n)
}

/// Histogram of binary decision patterns. A key holds the mask of raters present in its high
/// 32 bits and the mask of raters voting foreground in its low 32 bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternHistogram {
    /// Raters R.
    pub n_raters: usize,
    /// (key, voxel count), sorted by key, counts > 0.
    pub patterns: Vec<(u64, u64)>,
}

/// The pattern key of voxel `i`.
fn voxel_key<T: Copy + PartialEq>(raters: &[&[T]], i: usize, fg: T, missing: Option<T>) -> u64 {
    let (mut present, mut vote) = (0u64, 0u64);
    for (r, img) in raters.iter().enumerate() {
        let Some(&v) = img.get(i) else { continue };
        if Some(v) == missing {
            continue;
        }
        present |= 1 << r;
        vote |= u64::from(v == fg) << r;
    }
    (present << 32) | vote
}

impl PatternHistogram {
    /// Builds the histogram of R rater images (same voxel order). A value equal to
    /// `foreground` is a foreground vote, `missing` (if given) marks an absent decision, any
    /// other value is a background vote.
    pub fn from_raters<T: Copy + PartialEq>(
        raters: &[&[T]],
        foreground: T,
        missing: Option<T>,
    ) -> Result<Self, StatsError> {
        let n = common_len(raters)?;
        let r = raters.len();
        if r > MAX_RATERS {
            return Err(StatsError::TooManyRaters {
                got: r,
                max: MAX_RATERS,
            });
        }
        let full = ((1u64 << r) - 1) << 32;
        // Fully present patterns are counted densely by their vote mask.
        let mut counter = KeyCounter::new(r as u32);
        let mut present = vec![0u64; BLOCK];
        let mut votes = vec![0u64; BLOCK];
        let mut start = 0;
        while start < n {
            let len = BLOCK.min(n - start);
            let (pb, vb) = (&mut present[..len], &mut votes[..len]);
            pb.iter_mut().for_each(|x| *x = full);
            vb.iter_mut().for_each(|x| *x = 0);
            for (ri, img) in raters.iter().enumerate() {
                let bit = 1u64 << ri;
                let chunk = &img[start..start + len];
                for (v, &x) in vb.iter_mut().zip(chunk) {
                    *v |= if x == foreground { bit } else { 0 };
                }
                if let Some(m) = missing {
                    for (p, &x) in pb.iter_mut().zip(chunk) {
                        if x == m {
                            *p &= !(bit << 32);
                            // A missing value never votes (matters if missing == foreground).
                        }
                    }
                }
            }
            for (&p, &v) in pb.iter().zip(vb.iter()) {
                let v = v & (p >> 32);
                // Fully present: the vote mask alone (< 2^32); nobody present: u64::MAX;
                // otherwise the full key (≥ 2^32, never all ones).
                counter.add(if p == full {
                    v
                } else if p == 0 {
                    u64::MAX
                } else {
                    p | v
                });
            }
            start += len;
        }
        let mut patterns: Vec<(u64, u64)> = counter
            .finish()
            .into_iter()
            .map(|(k, c)| match k {
                u64::MAX => (0, c),
                k if k < 1 << 32 => (k | full, c),
                k => (k, c),
            })
            .collect();
        patterns.sort_unstable();
        Ok(Self {
            n_raters: r,
            patterns,
        })
    }

    /// Adds another site's histogram (same raters).
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.n_raters != other.n_raters {
            return Err(StatsError::Layout("pattern histogram: raters"));
        }
        self.patterns = merge_sorted(&self.patterns, &other.patterns);
        Ok(())
    }

    /// Builds the histogram of per-voxel vote masks (bit r set: rater r voted foreground; every
    /// rater present): the histogram [`PatternHistogram::from_raters`] gives for the raters'
    /// images, from one small integer per voxel instead of R images.
    pub fn from_vote_masks<T: Copy + Into<u64>>(
        votes: &[T],
        n_raters: usize,
    ) -> Result<Self, StatsError> {
        if n_raters == 0 {
            return Err(StatsError::Empty("raters"));
        }
        if n_raters > MAX_RATERS {
            return Err(StatsError::TooManyRaters {
                got: n_raters,
                max: MAX_RATERS,
            });
        }
        let mask = (1u64 << n_raters) - 1;
        let mut counter = KeyCounter::new(n_raters as u32);
        for &v in votes {
            counter.add(v.into() & mask);
        }
        let patterns = counter
            .finish()
            .into_iter()
            .map(|(k, c)| ((mask << 32) | k, c))
            .collect();
        Ok(Self { n_raters, patterns })
    }

    /// The same histogram with its raters placed at `positions` among `n_raters` raters, the
    /// others absent (missing decisions): how a case that not every rater read joins a pool.
    pub fn embed(&self, positions: &[usize], n_raters: usize) -> Result<Self, StatsError> {
        if positions.len() != self.n_raters {
            return Err(StatsError::Shape("positions vs raters"));
        }
        if n_raters > MAX_RATERS {
            return Err(StatsError::TooManyRaters {
                got: n_raters,
                max: MAX_RATERS,
            });
        }
        let mut used = 0u64;
        for &p in positions {
            if p >= n_raters || used >> p & 1 == 1 {
                return Err(StatsError::OutOfRange("rater position"));
            }
            used |= 1 << p;
        }
        let spread = |mask: u64| {
            positions
                .iter()
                .enumerate()
                .fold(0u64, |acc, (i, &p)| acc | ((mask >> i) & 1) << p)
        };
        let mut patterns: Vec<(u64, u64)> = self
            .patterns
            .iter()
            .map(|&(k, c)| ((spread(k >> 32) << 32) | spread(k & 0xffff_ffff), c))
            .collect();
        patterns.sort_unstable();
        Ok(Self { n_raters, patterns })
    }

    /// Voxels counted (including voxels nobody labelled).
    pub fn n_voxels(&self) -> u64 {
        self.patterns.iter().map(|p| p.1).sum()
    }
}

/// Model parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StapleParams {
    /// Global prior g (fixed after initialisation).
    pub prior: f64,
    /// p_r.
    pub sensitivity: Vec<f64>,
    /// q_r.
    pub specificity: Vec<f64>,
}

/// Expected sufficient statistics of one E-step (fixed point, additive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StapleStats {
    /// Raters R.
    pub n_raters: usize,
    /// Voxels with at least one decision.
    pub units: u64,
    /// Σ W.
    pub sum_w: u128,
    /// Voxels with W ≥ 0.5.
    pub ge_half: u64,
    /// Σ_{D_r = 1} W.
    pub p_num: Vec<u128>,
    /// Σ_{r present} W.
    pub p_den: Vec<u128>,
    /// Σ_{D_r = 0} (1 − W).
    pub q_num: Vec<u128>,
    /// Σ_{r present} (1 − W).
    pub q_den: Vec<u128>,
}

impl StapleStats {
    /// Zero statistics.
    pub fn new(n_raters: usize) -> Self {
        let z = vec![0; n_raters];
        Self {
            n_raters,
            units: 0,
            sum_w: 0,
            ge_half: 0,
            p_num: z.clone(),
            p_den: z.clone(),
            q_num: z.clone(),
            q_den: z,
        }
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.n_raters != other.n_raters {
            return Err(StatsError::Layout("staple: raters"));
        }
        self.units += other.units;
        self.sum_w += other.sum_w;
        self.ge_half += other.ge_half;
        for (a, b) in [
            (&mut self.p_num, &other.p_num),
            (&mut self.p_den, &other.p_den),
            (&mut self.q_num, &other.q_num),
            (&mut self.q_den, &other.q_den),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += *y);
        }
        Ok(())
    }

    /// The vote prior mean(W⁰) of an initial E-step (NaN without voxels).
    pub fn mean_weight(&self) -> f64 {
        fixed::to_f64(self.sum_w) / self.units as f64
    }

    /// Σ W as f64.
    pub fn probability_sum(&self) -> f64 {
        fixed::to_f64(self.sum_w)
    }
}

/// The posterior W of a pattern (`None` params: the vote fraction W⁰). `None` when nobody
/// labelled the voxel.
pub fn pattern_weight(params: Option<&StapleParams>, key: u64) -> Option<f64> {
    let present = key >> 32;
    let votes = key & 0xffff_ffff & present;
    if present == 0 {
        return None;
    }
    let fraction = f64::from(votes.count_ones()) / f64::from(present.count_ones());
    let Some(p) = params else {
        return Some(fraction);
    };
    let mut a = p.prior;
    let mut b = 1.0 - p.prior;
    for (r, (&pr, &qr)) in p.sensitivity.iter().zip(&p.specificity).enumerate() {
        if present >> r & 1 == 0 {
            continue;
        }
        if votes >> r & 1 == 1 {
            a *= pr;
            b *= 1.0 - qr;
        } else {
            a *= 1.0 - pr;
            b *= qr;
        }
    }
    let w = a / (a + b);
    // 0/0 (contradictory certain raters): fall back to the vote fraction.
    Some(if w.is_finite() { w } else { fraction })
}

/// E-step over a (local) histogram: `None` params gives the initial vote-fraction statistics.
pub fn e_step(
    params: Option<&StapleParams>,
    hist: &PatternHistogram,
) -> Result<StapleStats, StatsError> {
    let r = hist.n_raters;
    if params.is_some_and(|p| p.sensitivity.len() != r || p.specificity.len() != r) {
        return Err(StatsError::Shape("parameters vs raters"));
    }
    let mut s = StapleStats::new(r);
    for &(key, count) in &hist.patterns {
        let Some(w) = pattern_weight(params, key) else {
            continue;
        };
        let wq = u128::from(quantize_unit(w));
        let c = u128::from(count);
        let cw = c * wq;
        let cv = c * (u128::from(ONE) - wq);
        s.units += count;
        s.sum_w += cw;
        if w >= 0.5 {
            s.ge_half += count;
        }
        let present = key >> 32;
        for ri in 0..r {
            if present >> ri & 1 == 0 {
                continue;
            }
            s.p_den[ri] += cw;
            s.q_den[ri] += cv;
            if key >> ri & 1 == 1 {
                s.p_num[ri] += cw;
            } else {
                s.q_num[ri] += cv;
            }
        }
    }
    Ok(s)
}

/// M-step: p_r = Σ_{D=1}W / ΣW, q_r = Σ_{D=0}(1−W) / Σ(1−W); a zero denominator keeps the
/// previous value. The prior is carried over.
pub fn m_step(stats: &StapleStats, previous: &StapleParams) -> StapleParams {
    let pick = |num: &[u128], den: &[u128], prev: &[f64]| -> Vec<f64> {
        num.iter()
            .zip(den)
            .zip(prev)
            .map(|((&n, &d), &p)| fixed::ratio(n, d).unwrap_or(p))
            .collect()
    };
    StapleParams {
        prior: previous.prior,
        sensitivity: pick(&stats.p_num, &stats.p_den, &previous.sensitivity),
        specificity: pick(&stats.q_num, &stats.q_den, &previous.specificity),
    }
}

/// ITK's convergence test between consecutive parameter sets.
pub fn converged(a: &StapleParams, b: &StapleParams) -> bool {
    const MIN_RMS_ERROR: f64 = 1e-14;
    let sq = |x: f64, y: f64| (x - y) * (x - y);
    a.sensitivity
        .iter()
        .zip(&b.sensitivity)
        .all(|(x, y)| sq(*x, *y) <= MIN_RMS_ERROR)
        && a.specificity
            .iter()
            .zip(&b.specificity)
            .all(|(x, y)| sq(*x, *y) <= MIN_RMS_ERROR)
}

/// The starting parameters from the merged initial statistics: g = mean(W⁰) × weight, p = q = 1.
pub fn initial_params(initial: &StapleStats, confidence_weight: f64) -> StapleParams {
    let prior = if initial.units == 0 {
        0.0
    } else {
        initial.mean_weight() * confidence_weight
    };
    StapleParams {
        prior,
        sensitivity: vec![1.0; initial.n_raters],
        specificity: vec![1.0; initial.n_raters],
    }
}

/// Options of the pooled driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StapleOptions {
    /// ITK ConfidenceWeight (default 1).
    pub confidence_weight: f64,
    /// Upper bound on iterations (ITK's default is unbounded).
    pub max_iterations: u32,
}

impl Default for StapleOptions {
    fn default() -> Self {
        Self {
            confidence_weight: 1.0,
            max_iterations: 10_000_000,
        }
    }
}

/// Result of the pooled driver.
#[derive(Debug, Clone, PartialEq)]
pub struct StapleResult {
    /// Final parameters (prior, sensitivity, specificity).
    pub params: StapleParams,
    /// ITK ElapsedIterations.
    pub iterations: u32,
    /// Whether the convergence test passed (rather than `max_iterations`).
    pub converged: bool,
    /// Voxels with W ≥ 0.5 after the last E-step.
    pub voxels_ge_half: u64,
    /// Σ W after the last E-step.
    pub probability_sum: f64,
}

/// Pooled driver on one histogram. A federated coordinator runs the same loop with merged
/// [`StapleStats`] from [`e_step`] at every site.
pub fn staple(
    hist: &PatternHistogram,
    options: &StapleOptions,
) -> Result<StapleResult, StatsError> {
    let mut stats = e_step(None, hist)?;
    let mut params = initial_params(&stats, options.confidence_weight);
    let mut iteration = 0u32;
    let mut done = false;
    loop {
        let next = m_step(&stats, &params);
        stats = e_step(Some(&next), hist)?;
        let stop = iteration > 0 && converged(&next, &params);
        params = next;
        if stop {
            done = true;
            break;
        }
        if iteration.saturating_add(1) >= options.max_iterations {
            iteration += 1;
            break;
        }
        iteration += 1;
    }
    Ok(StapleResult {
        params,
        iterations: iteration,
        converged: done,
        voxels_ge_half: stats.ge_half,
        probability_sum: stats.probability_sum(),
    })
}

/// Calls `f(i, W_i)` for every voxel, W under `params` (voxels nobody labelled get the prior).
pub fn for_each_probability<T: Copy + PartialEq>(
    raters: &[&[T]],
    foreground: T,
    missing: Option<T>,
    params: &StapleParams,
    mut f: impl FnMut(usize, f64),
) -> Result<(), StatsError> {
    let n = common_len(raters)?;
    if raters.len() != params.sensitivity.len() {
        return Err(StatsError::Shape("parameters vs raters"));
    }
    let mut cache: HashMap<u64, f64> = HashMap::new();
    for i in 0..n {
        let key = voxel_key(raters, i, foreground, missing);
        let w = *cache
            .entry(key)
            .or_insert_with(|| pattern_weight(Some(params), key).unwrap_or(params.prior));
        f(i, w);
    }
    Ok(())
}

/// The probability map of per-voxel vote masks (see [`PatternHistogram::from_vote_masks`]);
/// the same values as [`probability_map_f32`] on the raters' images. At most 16 raters.
pub fn probability_map_from_votes<T: Copy + Into<u64>>(
    votes: &[T],
    params: &StapleParams,
) -> Result<Vec<f32>, StatsError> {
    let r = params.sensitivity.len();
    if r > 16 {
        return Err(StatsError::TooManyRaters { got: r, max: 16 });
    }
    let mask = (1u64 << r) - 1;
    let table: Vec<f32> = (0..=mask)
        .map(|v| pattern_weight(Some(params), (mask << 32) | v).unwrap_or(params.prior) as f32)
        .collect();
    Ok(votes
        .iter()
        .map(|&v| {
            table
                .get((v.into() & mask) as usize)
                .copied()
                .unwrap_or(f32::NAN)
        })
        .collect())
}

/// The probability map as f32 (ITK writes a real image; f32 halves the memory).
pub fn probability_map_f32<T: Copy + PartialEq>(
    raters: &[&[T]],
    foreground: T,
    missing: Option<T>,
    params: &StapleParams,
) -> Result<Vec<f32>, StatsError> {
    let mut out = vec![0f32; common_len(raters)?];
    for_each_probability(raters, foreground, missing, params, |i, w| {
        if let Some(slot) = out.get_mut(i) {
            *slot = w as f32;
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixed::tests_rng::XorShift;
    use super::*;

    const MISSING: u8 = 255;

    fn random_raters(rng: &mut XorShift, n: usize, r: usize, missing: bool) -> Vec<Vec<u8>> {
        let truth: Vec<bool> = (0..n).map(|i| (i / 7) % 3 == 0).collect();
        (0..r)
            .map(|_| {
                let flip = 0.05 + 0.2 * rng.unit();
                truth
                    .iter()
                    .map(|&t| {
                        if missing && rng.below(10) == 0 {
                            MISSING
                        } else {
                            u8::from(t ^ (rng.unit() < flip))
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn all_empty_keeps_guarded_parameters() {
        let raters = [vec![0u8; 50], vec![0u8; 50]];
        let refs: Vec<&[u8]> = raters.iter().map(|v| v.as_slice()).collect();
        let h = PatternHistogram::from_raters(&refs, 1, None).expect("histogram");
        let r = staple(&h, &StapleOptions::default()).expect("runs");
        assert_eq!(r.iterations, 1);
        assert_eq!(r.params.sensitivity, vec![1.0, 1.0]);
        assert_eq!(r.params.specificity, vec![1.0, 1.0]);
        assert_eq!(r.params.prior, 0.0);
        assert_eq!(r.voxels_ge_half, 0);
    }

    #[test]
    fn histogram_counts_patterns_with_missing() {
        let a = [1u8, 0, MISSING, 1];
        let b = [1u8, 1, 0, 1];
        let h = PatternHistogram::from_raters(&[&a[..], &b[..]], 1, Some(MISSING)).expect("ok");
        assert_eq!(h.n_voxels(), 4);
        let full = 3u64 << 32;
        assert!(h.patterns.contains(&(full | 3, 2)));
        assert!(h.patterns.contains(&(full | 2, 1)));
        assert!(h.patterns.contains(&((2u64 << 32), 1)));
    }

    #[test]
    fn vote_masks_give_the_same_histogram_and_map() {
        let mut rng = XorShift::new(0x70e5);
        let raters = random_raters(&mut rng, 3000, 5, false);
        let refs: Vec<&[u8]> = raters.iter().map(|v| v.as_slice()).collect();
        let votes: Vec<u8> = (0..3000)
            .map(|i| (0..5).fold(0u8, |acc, r| acc | u8::from(raters[r][i] == 1) << r))
            .collect();
        let h = PatternHistogram::from_raters(&refs, 1, None).expect("ok");
        assert_eq!(PatternHistogram::from_vote_masks(&votes, 5).expect("ok"), h);
        let r = staple(&h, &StapleOptions::default()).expect("runs");
        assert_eq!(
            probability_map_from_votes(&votes, &r.params).expect("map"),
            probability_map_f32(&refs, 1, None, &r.params).expect("map")
        );
    }

    #[test]
    fn embedding_equals_missing_raters() {
        let a = [1u8, 0, 1, 1, 0];
        let b = [0u8, 0, 1, 1, 1];
        let gone = [MISSING; 5];
        let small = PatternHistogram::from_raters(&[&a[..], &b[..]], 1, None).expect("ok");
        let full = PatternHistogram::from_raters(&[&b[..], &gone[..], &a[..]], 1, Some(MISSING))
            .expect("ok");
        assert_eq!(small.embed(&[2, 0], 3).expect("valid"), full);
        assert!(small.embed(&[1, 1], 3).is_err());
        assert!(small.embed(&[0, 3], 3).is_err());
    }

    #[test]
    fn federated_equals_pooled_bit_for_bit() {
        let mut rng = XorShift::new(0x57a9);
        for trial in 0..12 {
            let n = 200 + rng.below(3000);
            let r = 2 + rng.below(5);
            let raters = random_raters(&mut rng, n, r, trial % 2 == 1);
            let refs: Vec<&[u8]> = raters.iter().map(|v| v.as_slice()).collect();
            let pooled_hist = PatternHistogram::from_raters(&refs, 1, Some(MISSING)).expect("ok");
            let pooled = staple(&pooled_hist, &StapleOptions::default()).expect("runs");
            // Split the voxels into contiguous sites of random sizes.
            let n_parts = 1 + rng.below(7);
            let mut cuts: Vec<usize> = (0..n_parts - 1).map(|_| rng.below(n + 1)).collect();
            cuts.push(0);
            cuts.push(n);
            cuts.sort_unstable();
            let sites: Vec<PatternHistogram> = cuts
                .windows(2)
                .map(|w| {
                    let part: Vec<&[u8]> = raters.iter().map(|v| &v[w[0]..w[1]]).collect();
                    PatternHistogram::from_raters(&part, 1, Some(MISSING)).expect("ok")
                })
                .collect();
            let merged = |p: Option<&StapleParams>| {
                let mut acc = StapleStats::new(r);
                for s in sites.iter().rev() {
                    acc.merge(&e_step(p, s).expect("shape")).expect("layout");
                }
                acc
            };
            let mut stats = merged(None);
            let mut params = initial_params(&stats, 1.0);
            let mut it = 0;
            loop {
                let next = m_step(&stats, &params);
                stats = merged(Some(&next));
                let stop = it > 0 && converged(&next, &params);
                params = next;
                if stop {
                    break;
                }
                it += 1;
            }
            assert_eq!(it, pooled.iterations, "trial {trial}");
            assert_eq!(params, pooled.params);
            assert_eq!(stats.ge_half, pooled.voxels_ge_half);
            assert_eq!(
                stats.probability_sum().to_bits(),
                pooled.probability_sum.to_bits()
            );
            // Merging the site histograms also reproduces the pooled histogram.
            let mut h = PatternHistogram {
                n_raters: r,
                patterns: Vec::new(),
            };
            for s in &sites {
                h.merge(s).expect("layout");
            }
            assert_eq!(h, pooled_hist);
        }
    }
}
