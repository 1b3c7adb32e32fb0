//! Dawid–Skene (1979) EM for categorical ratings with missing cells.
//!
//! Owns the model (class priors π, per-rater confusion θ_a[true][given]), its federated EM
//! decomposition and the pooled driver. Rules (oracle README "Dawid–Skene"):
//! initialisation is a soft majority vote (each unit's vote proportions) followed by an M-step;
//! one iteration is an E-step (log space) plus an M-step; the loop stops when every prior and
//! confusion entry changes by less than the tolerance (1e-10) between consecutive M-steps, and
//! `iterations` counts those M-steps after the initial one; priors are re-estimated without
//! smoothing; a confusion row with no mass is uniform 1/K. Per-unit posteriors and
//! log-likelihood terms are quantised ([`super::fixed`]) before summation, so merging per-site
//! [`DsStats`] gives bit-identical parameters and iteration counts.

use super::StatsError;
use super::fixed::{self, quantize_signed, quantize_unit};
use super::majority::unique_argmax;
use super::ratings::Ratings;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Model parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DsParams {
    /// Categories K.
    pub k: usize,
    /// Raters.
    pub n_raters: usize,
    /// π_k.
    pub class_priors: Vec<f64>,
    /// θ[rater][true][given], flattened (`rater * K * K + true * K + given`); rows sum to 1.
    pub confusion: Vec<f64>,
}

impl DsParams {
    /// θ_a as K rows of K.
    pub fn rater_confusion(&self, rater: usize) -> Vec<Vec<f64>> {
        let kk = self.k * self.k;
        self.confusion
            .get(rater * kk..(rater + 1) * kk)
            .unwrap_or(&[])
            .chunks(self.k.max(1))
            .map(<[f64]>::to_vec)
            .collect()
    }

    /// Largest absolute change of any prior or confusion entry.
    pub fn max_change(&self, other: &Self) -> f64 {
        let a = self.class_priors.iter().zip(&other.class_priors);
        let b = self.confusion.iter().zip(&other.confusion);
        a.chain(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }
}

/// Expected sufficient statistics of one E-step (fixed point, additive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsStats {
    /// Categories K.
    pub k: usize,
    /// Raters.
    pub n_raters: usize,
    /// Rated units.
    pub units: u64,
    /// Σ_u T_uk.
    pub class_mass: Vec<u128>,
    /// Σ_u T_uk·[rater a said l], flattened like [`DsParams::confusion`].
    pub confusion_mass: Vec<u128>,
    /// Σ_u log-likelihood term (fixed point) of the units with a finite term.
    pub log_likelihood: i128,
    /// Units whose likelihood is zero under the parameters.
    pub impossible_units: u64,
}

impl DsStats {
    /// Zero statistics.
    pub fn new(n_raters: usize, k: usize) -> Self {
        Self {
            k,
            n_raters,
            units: 0,
            class_mass: vec![0; k],
            confusion_mass: vec![0; n_raters * k * k],
            log_likelihood: 0,
            impossible_units: 0,
        }
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.k != other.k || self.n_raters != other.n_raters {
            return Err(StatsError::Layout("dawid-skene: raters or categories"));
        }
        self.units += other.units;
        self.class_mass
            .iter_mut()
            .zip(&other.class_mass)
            .for_each(|(a, b)| *a += *b);
        self.confusion_mass
            .iter_mut()
            .zip(&other.confusion_mass)
            .for_each(|(a, b)| *a += *b);
        self.log_likelihood += other.log_likelihood;
        self.impossible_units += other.impossible_units;
        Ok(())
    }

    /// The log-likelihood Σ_u log Σ_k π_k Π p(ratings | k) of the parameters the E-step used.
    pub fn log_likelihood(&self) -> f64 {
        if self.impossible_units > 0 {
            f64::NEG_INFINITY
        } else {
            fixed::signed_to_f64(self.log_likelihood)
        }
    }
}

/// Sums quantised posteriors into a [`DsStats`]: in `u64` over blocks of at most
/// [`Accumulator::BLOCK`] units (each weight ≤ 2^52, so a block cannot overflow), with the
/// confusion mass laid out `[rater][given][true]` so one rating adds K contiguous values, then
/// flushed into the `u128` statistics. A pattern of `count` identical units adds `count` times
/// its (quantised) posterior, exactly the sum of its units' contributions. Integer sums: the
/// result is the same for any order or grouping.
struct Accumulator {
    stats: DsStats,
    in_block: u64,
    class: Vec<u64>,
    by_given: Vec<u64>,
}

impl Accumulator {
    const BLOCK: u64 = 1 << 11;

    fn new(n_raters: usize, k: usize) -> Self {
        Self {
            stats: DsStats::new(n_raters, k),
            in_block: 0,
            class: vec![0; k],
            by_given: vec![0; n_raters * k * k],
        }
    }

    /// Adds `count` units whose ratings are the table offsets `offsets` (see [`Patterns`]).
    #[inline(always)]
    fn add(&mut self, offsets: &[usize], posterior: &[u64], count: u64) {
        let k = self.stats.k;
        self.stats.units += count;
        if count > Self::BLOCK {
            self.add_wide(offsets, posterior, count);
            return;
        }
        if self.in_block + count > Self::BLOCK {
            self.flush();
        }
        self.class
            .iter_mut()
            .zip(posterior)
            .for_each(|(m, q)| *m += q * count);
        for &start in offsets {
            if let Some(slots) = self.by_given.get_mut(start..start + k) {
                slots
                    .iter_mut()
                    .zip(posterior)
                    .for_each(|(m, q)| *m += q * count);
            }
        }
        self.in_block += count;
    }

    /// [`Self::add`] for a K known at compile time.
    #[inline(always)]
    fn add_fixed<const K: usize>(&mut self, offsets: &[usize], posterior: &[u64; K], count: u64) {
        if count > Self::BLOCK || self.stats.k != K {
            self.add(offsets, posterior, count);
            return;
        }
        self.stats.units += count;
        if self.in_block + count > Self::BLOCK {
            self.flush();
        }
        let w = posterior.map(|q| q * count);
        if let Some(class) = self.class.get_mut(..K) {
            class.iter_mut().zip(&w).for_each(|(m, w)| *m += w);
        }
        for &start in offsets {
            let slots = self.by_given.get_mut(start..start + K);
            if let Some(slots) = slots.and_then(|s| <&mut [u64; K]>::try_from(s).ok()) {
                slots.iter_mut().zip(&w).for_each(|(m, w)| *m += w);
            }
        }
        self.in_block += count;
    }

    /// Counts `count` units whose likelihood is zero.
    fn add_impossible(&mut self, count: u64) {
        self.stats.units += count;
        self.stats.impossible_units += count;
    }

    /// [`Self::add`] straight into the `u128` statistics (a pattern larger than a block).
    fn add_wide(&mut self, offsets: &[usize], posterior: &[u64], count: u64) {
        let k = self.stats.k;
        let w = |q: u64| u128::from(q) * u128::from(count);
        for (m, &q) in self.stats.class_mass.iter_mut().zip(posterior) {
            *m += w(q);
        }
        for &start in offsets {
            let (a, l) = (start / (k * k), (start / k) % k);
            for (c, &q) in posterior.iter().enumerate() {
                if let Some(m) = self.stats.confusion_mass.get_mut((a * k + c) * k + l) {
                    *m += w(q);
                }
            }
        }
    }

    fn flush(&mut self) {
        let k = self.stats.k;
        for (m, c) in self.stats.class_mass.iter_mut().zip(&mut self.class) {
            *m += u128::from(std::mem::take(c));
        }
        for (i, v) in self.by_given.iter_mut().enumerate() {
            let (a, l, c) = (i / (k * k), (i / k) % k, i % k);
            if let Some(m) = self.stats.confusion_mass.get_mut((a * k + c) * k + l) {
                *m += u128::from(std::mem::take(v));
            }
        }
        self.in_block = 0;
    }

    fn finish(mut self) -> DsStats {
        self.flush();
        self.stats
    }
}

/// FxHash-style hasher for the rows' u64 keys (one multiply).
#[derive(Default)]
struct RowHasher(u64);

impl RowHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for RowHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.add(u64::from(b)));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
}

/// "Unit nobody rated" in [`Patterns::unit_pattern`].
const UNRATED: usize = usize::MAX;

/// Patterns at least this many split the E-step over two threads.
const PARALLEL_MIN: usize = 2048;

/// The ratings as the EM reads them: the rated units grouped by identical rows (a unit's
/// posterior depends only on its row), each pattern's ratings kept as the offsets
/// `(rater · K + given) · K` of its K-value runs in the `[rater][given][true]` tables, in rater
/// order (so every class score is summed in the same order as unit by unit).
struct Patterns {
    k: usize,
    n_raters: usize,
    /// Units with each pattern.
    counts: Vec<u64>,
    /// Pattern p's offsets are `offsets[starts[p]..starts[p + 1]]`.
    starts: Vec<usize>,
    offsets: Vec<usize>,
    /// Each unit's pattern ([`UNRATED`] for a unit nobody rated).
    unit_pattern: Vec<usize>,
}

impl Patterns {
    fn new(ratings: &Ratings) -> Self {
        let k = ratings.n_categories();
        let mut index: HashMap<u64, usize, BuildHasherDefault<RowHasher>> =
            HashMap::with_capacity_and_hasher(ratings.n_units(), BuildHasherDefault::default());
        let mut out = Self {
            k,
            n_raters: ratings.n_raters(),
            counts: Vec::new(),
            starts: vec![0],
            offsets: Vec::new(),
            unit_pattern: Vec::with_capacity(ratings.n_units()),
        };
        // A row's key: its cells as the digits (0 = missing, 1 + category) of a base-(K + 1)
        // number; rows too long for a u64 key are not grouped.
        let base = k as u64 + 1;
        let key = |row: &[Option<u32>]| {
            row.iter().try_fold(0u64, |key, l| {
                key.checked_mul(base)?
                    .checked_add(l.map_or(0, |l| u64::from(l) + 1))
            })
        };
        for row in ratings.rows() {
            if row.iter().all(Option::is_none) {
                out.unit_pattern.push(UNRATED);
                continue;
            }
            let next = out.counts.len();
            let p = match key(row) {
                Some(key) => *index.entry(key).or_insert(next),
                None => next,
            };
            if p == next {
                let rated = row.iter().enumerate();
                let runs = rated.filter_map(|(a, l)| l.map(|l| (a * k + l as usize) * k));
                out.offsets.extend(runs);
                out.starts.push(out.offsets.len());
                out.counts.push(0);
            }
            if let Some(c) = out.counts.get_mut(p) {
                *c += 1;
            }
            out.unit_pattern.push(p);
        }
        out
    }

    fn len(&self) -> usize {
        self.counts.len()
    }

    fn offsets(&self, p: usize) -> &[usize] {
        let (lo, hi) = (self.starts[p], self.starts[p + 1]);
        &self.offsets[lo..hi]
    }

    /// Initial E-step: each pattern's vote proportions (soft majority vote).
    fn initial_stats(&self) -> DsStats {
        let k = self.k;
        let mut acc = Accumulator::new(self.n_raters, k);
        let mut counts = vec![0u32; k];
        let mut q = vec![0u64; k];
        for p in 0..self.len() {
            let offsets = self.offsets(p);
            counts.iter_mut().for_each(|c| *c = 0);
            for &o in offsets {
                if let Some(slot) = counts.get_mut((o / k) % k) {
                    *slot += 1;
                }
            }
            let m = offsets.len() as u32;
            for (qc, &n) in q.iter_mut().zip(&counts) {
                *qc = quantize_unit(f64::from(n) / f64::from(m));
            }
            acc.add(offsets, &q, self.counts[p]);
        }
        acc.finish()
    }

    /// E-step under `params`; with `posteriors` (patterns × K) also each pattern's posterior
    /// (zeros where impossible). Large inputs are split over two threads.
    fn e_step(&self, params: &DsParams, posteriors: Option<&mut [f64]>) -> DsStats {
        let lp = LogParams::new(params, self.n_raters, self.k);
        let n = self.len();
        let mut none: [f64; 0] = [];
        let post = posteriors.unwrap_or(&mut none);
        if n < PARALLEL_MIN {
            return self.e_pass(&lp, 0, n, post);
        }
        let mid = n / 2;
        let (first, second) = if post.is_empty() {
            (&mut [][..], &mut [][..])
        } else {
            post.split_at_mut((mid * self.k).min(post.len()))
        };
        let (mut a, b) = rayon::join(
            || self.e_pass(&lp, 0, mid, first),
            || self.e_pass(&lp, mid, n, second),
        );
        // Same layout by construction.
        let _ = a.merge(&b);
        a
    }

    /// E-step over patterns `lo..hi`, specialised for the common category counts (the class
    /// scores and weights then live in registers).
    fn e_pass(&self, lp: &LogParams, lo: usize, hi: usize, post: &mut [f64]) -> DsStats {
        match self.k {
            2 => self.e_pass_fixed::<2>(lp, lo, hi, post),
            3 => self.e_pass_fixed::<3>(lp, lo, hi, post),
            4 => self.e_pass_fixed::<4>(lp, lo, hi, post),
            5 => self.e_pass_fixed::<5>(lp, lo, hi, post),
            6 => self.e_pass_fixed::<6>(lp, lo, hi, post),
            7 => self.e_pass_fixed::<7>(lp, lo, hi, post),
            8 => self.e_pass_fixed::<8>(lp, lo, hi, post),
            _ => self.e_pass_general(lp, lo, hi, post),
        }
    }

    fn e_pass_general(&self, lp: &LogParams, lo: usize, hi: usize, post: &mut [f64]) -> DsStats {
        let k = self.k;
        let mut acc = Accumulator::new(self.n_raters, k);
        let mut scores = vec![0.0; k];
        let mut q = vec![0u64; k];
        for p in lo..hi {
            let offsets = self.offsets(p);
            let count = self.counts[p];
            let ll = lp.posterior(k, offsets, &mut scores);
            if let Some(out) = post.get_mut((p - lo) * k..(p - lo + 1) * k) {
                out.copy_from_slice(&scores);
            }
            match ll.and_then(quantize_signed) {
                Some(ll) => {
                    acc.stats.log_likelihood += ll * i128::from(count);
                    for (qc, &t) in q.iter_mut().zip(&scores) {
                        *qc = quantize_unit(t);
                    }
                    acc.add(offsets, &q, count);
                }
                None => acc.add_impossible(count),
            }
        }
        acc.finish()
    }

    /// [`Self::e_pass_general`] for a K known at compile time.
    fn e_pass_fixed<const K: usize>(
        &self,
        lp: &LogParams,
        lo: usize,
        hi: usize,
        post: &mut [f64],
    ) -> DsStats {
        let mut acc = Accumulator::new(self.n_raters, K);
        for p in lo..hi {
            let offsets = self.offsets(p);
            let count = self.counts[p];
            let mut scores = [0.0; K];
            let ll = lp.posterior_fixed::<K>(offsets, &mut scores);
            if let Some(out) = post.get_mut((p - lo) * K..(p - lo + 1) * K) {
                out.copy_from_slice(&scores);
            }
            match ll.and_then(quantize_signed) {
                Some(ll) => {
                    acc.stats.log_likelihood += ll * i128::from(count);
                    acc.add_fixed(offsets, &scores.map(quantize_unit), count);
                }
                None => acc.add_impossible(count),
            }
        }
        acc.finish()
    }
}

/// Options of the pooled driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DsOptions {
    /// Stop when every parameter changes by less than this.
    pub tolerance: f64,
    /// Upper bound on iterations.
    pub max_iterations: u32,
}

impl Default for DsOptions {
    fn default() -> Self {
        Self {
            tolerance: 1e-10,
            max_iterations: 100_000,
        }
    }
}

/// Result of the pooled driver.
#[derive(Debug, Clone, PartialEq)]
pub struct DsResult {
    /// Final parameters.
    pub params: DsParams,
    /// M-steps after the initial one.
    pub iterations: u32,
    /// Whether the tolerance was reached (rather than `max_iterations`).
    pub converged: bool,
    /// Log-likelihood under the final parameters.
    pub log_likelihood: f64,
    /// Per-unit most probable class (ties undecided; units nobody rated undecided).
    pub labels: Vec<Option<u32>>,
    /// Per-unit posteriors (units × K; zeros for units nobody rated).
    pub posteriors: Vec<f64>,
}

fn check_shape(params: &DsParams, ratings: &Ratings) -> Result<(), StatsError> {
    if params.k != ratings.n_categories() || params.n_raters != ratings.n_raters() {
        return Err(StatsError::Shape("parameters vs ratings"));
    }
    Ok(())
}

/// Initial E-step: each unit's vote proportions (soft majority vote).
pub fn initial_e_step(ratings: &Ratings) -> DsStats {
    Patterns::new(ratings).initial_stats()
}

/// Log of each parameter (ln 0 = −∞; a missing entry counts as −∞), the confusion re-laid as
/// `[rater][given][true]` so that one rating adds a contiguous run of K values. Computed once
/// per E-step.
struct LogParams {
    priors: Vec<f64>,
    by_given: Vec<f64>,
}

impl LogParams {
    fn new(p: &DsParams, n_raters: usize, k: usize) -> Self {
        let mut by_given = vec![f64::NEG_INFINITY; n_raters * k * k];
        for a in 0..n_raters {
            for c in 0..k {
                for l in 0..k {
                    let i = (a * k + c) * k + l;
                    if let (Some(slot), Some(x)) =
                        (by_given.get_mut((a * k + l) * k + c), p.confusion.get(i))
                    {
                        *slot = x.ln();
                    }
                }
            }
        }
        let prior = |c: usize| p.class_priors.get(c).map_or(f64::NEG_INFINITY, |x| x.ln());
        Self {
            priors: (0..k).map(prior).collect(),
            by_given,
        }
    }

    /// Posterior of one rated unit (its ratings as table offsets, see [`Patterns`]) into `out`
    /// (K values) and its log-likelihood term (`None` and zeros if impossible). Each class's
    /// log score is its log prior plus the raters' terms in rater order.
    fn posterior(&self, k: usize, offsets: &[usize], out: &mut [f64]) -> Option<f64> {
        let out = out.get_mut(..k)?;
        for (slot, &prior) in out.iter_mut().zip(&self.priors) {
            *slot = prior;
        }
        for &start in offsets {
            match self.by_given.get(start..start + k) {
                Some(terms) => out.iter_mut().zip(terms).for_each(|(s, t)| *s += t),
                None => out.iter_mut().for_each(|s| *s = f64::NEG_INFINITY),
            }
        }
        normalize(out, offsets.is_empty())
    }

    /// [`Self::posterior`] for a K known at compile time: the same operations in the same
    /// order, on scores held in registers.
    #[inline(always)]
    fn posterior_fixed<const K: usize>(
        &self,
        offsets: &[usize],
        out: &mut [f64; K],
    ) -> Option<f64> {
        let mut s = [f64::NEG_INFINITY; K];
        for (slot, &prior) in s.iter_mut().zip(&self.priors) {
            *slot = prior;
        }
        for &start in offsets {
            let terms = self.by_given.get(start..start + K);
            let Some(terms) = terms.and_then(|t| <&[f64; K]>::try_from(t).ok()) else {
                // As a run of −∞ terms: no class is possible.
                *out = [0.0; K];
                return None;
            };
            for (x, t) in s.iter_mut().zip(terms) {
                *x += t;
            }
        }
        *out = s;
        normalize(out, offsets.is_empty())
    }
}

/// Turns log scores into a posterior in place (zeros and `None` when no class is possible or
/// the unit is unrated) and returns the log-likelihood term max + ln Σ exp(score − max).
#[inline(always)]
fn normalize(out: &mut [f64], unrated: bool) -> Option<f64> {
    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if unrated || max == f64::NEG_INFINITY || max.is_nan() {
        out.iter_mut().for_each(|x| *x = 0.0);
        return None;
    }
    // exp(0) = 1 exactly: the best class needs no call (unless max is +∞, where x − max is NaN).
    let finite = max.is_finite();
    let mut sum = 0.0;
    for x in out.iter_mut() {
        *x = if finite && *x == max {
            1.0
        } else {
            (*x - max).exp()
        };
        sum += *x;
    }
    out.iter_mut().for_each(|x| *x /= sum);
    Some(max + sum.ln())
}

/// E-step of one site: posteriors under `params`, quantised and summed.
pub fn e_step(params: &DsParams, ratings: &Ratings) -> Result<DsStats, StatsError> {
    check_shape(params, ratings)?;
    Ok(Patterns::new(ratings).e_step(params, None))
}

/// M-step: normalised class mass and confusion rows (uniform rows where there is no mass).
pub fn m_step(stats: &DsStats) -> DsParams {
    let k = stats.k;
    let total: u128 = stats.class_mass.iter().sum();
    let class_priors = stats
        .class_mass
        .iter()
        .map(|&m| fixed::ratio(m, total).unwrap_or(1.0 / k as f64))
        .collect();
    let mut confusion = vec![0.0; stats.confusion_mass.len()];
    for (row_out, row_in) in confusion
        .chunks_mut(k.max(1))
        .zip(stats.confusion_mass.chunks(k.max(1)))
    {
        let s: u128 = row_in.iter().sum();
        for (o, &m) in row_out.iter_mut().zip(row_in) {
            *o = fixed::ratio(m, s).unwrap_or(1.0 / k as f64);
        }
    }
    DsParams {
        k,
        n_raters: stats.n_raters,
        class_priors,
        confusion,
    }
}

/// Per-unit posteriors (units × K) under `params`.
pub fn posteriors(params: &DsParams, ratings: &Ratings) -> Result<Vec<f64>, StatsError> {
    check_shape(params, ratings)?;
    let patterns = Patterns::new(ratings);
    let mut by_pattern = vec![0.0; patterns.len() * params.k];
    let _ = patterns.e_step(params, Some(&mut by_pattern));
    Ok(patterns.per_unit(&by_pattern, params.k))
}

impl Patterns {
    /// Per-unit rows (units × K) of per-pattern rows (zeros for units nobody rated).
    fn per_unit<T: Copy + Default>(&self, by_pattern: &[T], width: usize) -> Vec<T> {
        let mut out = vec![T::default(); self.unit_pattern.len() * width];
        for (row, &p) in out.chunks_mut(width.max(1)).zip(&self.unit_pattern) {
            if p == UNRATED {
                continue;
            }
            if let Some(src) = by_pattern.get(p * width..(p + 1) * width) {
                row.copy_from_slice(src);
            }
        }
        out
    }
}

/// Pooled driver: initial E/M, then E/M until every parameter changes by less than the
/// tolerance. A federated coordinator runs the same loop with merged [`DsStats`]. The ratings
/// are grouped into [`Patterns`] once; the statistics equal the unit-by-unit ones exactly.
pub fn dawid_skene(ratings: &Ratings, options: &DsOptions) -> Result<DsResult, StatsError> {
    if ratings.n_categories() == 0 {
        return Err(StatsError::Empty("categories"));
    }
    let patterns = Patterns::new(ratings);
    let mut params = m_step(&patterns.initial_stats());
    let mut iterations = 0;
    let mut converged = false;
    while iterations < options.max_iterations {
        let next = m_step(&patterns.e_step(&params, None));
        iterations += 1;
        let change = next.max_change(&params);
        params = next;
        if change < options.tolerance {
            converged = true;
            break;
        }
    }
    let k = params.k;
    let mut by_pattern = vec![0.0; patterns.len() * k];
    let final_stats = patterns.e_step(&params, Some(&mut by_pattern));
    let pattern_labels: Vec<Option<u32>> = by_pattern
        .chunks(k.max(1))
        .map(|p| unique_argmax(p).map(|i| i as u32))
        .collect();
    let labels = patterns.per_unit(&pattern_labels, 1);
    let posteriors = patterns.per_unit(&by_pattern, k);
    Ok(DsResult {
        log_likelihood: final_stats.log_likelihood(),
        params,
        iterations,
        converged,
        labels,
        posteriors,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixed::tests_rng::XorShift;
    use super::*;

    fn random_table(rng: &mut XorShift) -> Ratings {
        let units = 5 + rng.below(150);
        let raters = 2 + rng.below(5);
        let k = 2 + rng.below(3);
        let truth: Vec<usize> = (0..units).map(|_| rng.below(k)).collect();
        let cells = (0..units * raters)
            .map(|i| {
                if rng.below(6) == 0 {
                    None
                } else if rng.below(4) == 0 {
                    Some(rng.below(k) as u32)
                } else {
                    Some(truth[i / raters] as u32)
                }
            })
            .collect();
        Ratings::from_cells(units, raters, k, cells).expect("valid")
    }

    /// Unit-by-unit statistics: one single-unit site per unit, merged.
    fn unit_by_unit(t: &Ratings, f: &dyn Fn(&Ratings) -> DsStats) -> DsStats {
        let mut acc = DsStats::new(t.n_raters(), t.n_categories());
        for u in 0..t.n_units() {
            acc.merge(&f(&t.select_units(&[u]).expect("unit")))
                .expect("layout");
        }
        acc
    }

    #[test]
    fn grouping_and_threads_do_not_change_a_bit() {
        let mut rng = XorShift::new(0x9e57);
        // Many distinct rows (two threads), then few raters and categories (patterns with more
        // units than an accumulator block).
        for (units, raters, k) in [(6000, 9, 5), (30_000, 2, 2)] {
            let cells = (0..units * raters)
                .map(|_| {
                    let missing = rng.below(8) == 0;
                    let c = rng.below(k) as u32;
                    (!missing).then_some(c)
                })
                .collect();
            let t = Ratings::from_cells(units, raters, k, cells).expect("valid");
            let patterns = Patterns::new(&t);
            assert!(patterns.len() >= PARALLEL_MIN || patterns.counts.iter().any(|&c| c > 2048));
            let init = initial_e_step(&t);
            assert_eq!(init, unit_by_unit(&t, &initial_e_step));
            let params = m_step(&init);
            let grouped = e_step(&params, &t).expect("shape");
            assert_eq!(
                grouped,
                unit_by_unit(&t, &|s| e_step(&params, s).expect("shape"))
            );
        }
    }

    fn kernels_agree<const K: usize>(rng: &mut XorShift) {
        let raters = 1 + rng.below(9);
        let mut params = m_step(&DsStats::new(raters, K));
        params.class_priors.iter_mut().for_each(|p| *p = rng.unit());
        // Some zero (log −∞) entries.
        for p in &mut params.confusion {
            *p = if rng.below(7) == 0 { 0.0 } else { rng.unit() };
        }
        let lp = LogParams::new(&params, raters, K);
        let mut general = vec![0.0; K];
        let mut fixed = [0.0; K];
        for _ in 0..200 {
            let mut offsets = Vec::new();
            for r in 0..raters {
                let given = rng.below(K);
                if rng.below(5) != 0 {
                    offsets.push((r * K + given) * K);
                }
            }
            let a = lp.posterior(K, &offsets, &mut general);
            let b = lp.posterior_fixed::<K>(&offsets, &mut fixed);
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
            assert!(
                general
                    .iter()
                    .zip(&fixed)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
        }
    }

    #[test]
    fn fixed_kernel_equals_the_general_one() {
        let mut rng = XorShift::new(0x6e1);
        kernels_agree::<2>(&mut rng);
        kernels_agree::<3>(&mut rng);
        kernels_agree::<4>(&mut rng);
        kernels_agree::<5>(&mut rng);
        kernels_agree::<6>(&mut rng);
        kernels_agree::<7>(&mut rng);
        kernels_agree::<8>(&mut rng);
    }

    #[test]
    fn perfect_agreement_converges_in_one_iteration() {
        let cells = (0..30).flat_map(|u| vec![Some(u % 3); 4]).collect();
        let t = Ratings::from_cells(30, 4, 4, cells).expect("valid");
        let r = dawid_skene(&t, &DsOptions::default()).expect("runs");
        assert_eq!(r.iterations, 1);
        assert!((r.params.class_priors[0] - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(r.params.class_priors[3], 0.0);
        assert_eq!(r.params.rater_confusion(0)[3], vec![0.25; 4]);
    }

    #[test]
    fn federated_equals_pooled_bit_for_bit() {
        let mut rng = XorShift::new(0xd5d5);
        for _ in 0..15 {
            let t = random_table(&mut rng);
            let opts = DsOptions::default();
            let pooled = dawid_skene(&t, &opts).expect("runs");
            let n_parts = 1 + rng.below(7);
            let sites: Vec<Ratings> = rng
                .partition(t.n_units(), n_parts)
                .iter()
                .map(|p| t.select_units(p).expect("units"))
                .collect();
            let merged = |f: &dyn Fn(&Ratings) -> DsStats| {
                let mut acc = DsStats::new(t.n_raters(), t.n_categories());
                for s in sites.iter().rev() {
                    acc.merge(&f(s)).expect("layout");
                }
                acc
            };
            let mut params = m_step(&merged(&|s| initial_e_step(s)));
            let mut iterations = 0;
            loop {
                let next = m_step(&merged(&|s| e_step(&params, s).expect("shape")));
                iterations += 1;
                let change = next.max_change(&params);
                params = next;
                if change < opts.tolerance || iterations >= opts.max_iterations {
                    break;
                }
            }
            let ll = merged(&|s| e_step(&params, s).expect("shape")).log_likelihood();
            assert_eq!(iterations, pooled.iterations);
            assert_eq!(params, pooled.params);
            assert_eq!(ll.to_bits(), pooled.log_likelihood.to_bits());
        }
    }
}
