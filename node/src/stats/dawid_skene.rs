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

/// Sums quantised unit posteriors into a [`DsStats`]: in `u64` over blocks of at most
/// [`Accumulator::BLOCK`] units (each weight ≤ 2^52, so a block cannot overflow), with the
/// confusion mass laid out `[rater][given][true]` so one rating adds K contiguous values, then
/// flushed into the `u128` statistics. Integer sums: the result is the same for any order.
struct Accumulator {
    stats: DsStats,
    in_block: usize,
    class: Vec<u64>,
    by_given: Vec<u64>,
}

impl Accumulator {
    const BLOCK: usize = 1 << 11;

    fn new(n_raters: usize, k: usize) -> Self {
        Self {
            stats: DsStats::new(n_raters, k),
            in_block: 0,
            class: vec![0; k],
            by_given: vec![0; n_raters * k * k],
        }
    }

    fn add_unit(&mut self, row: &[Option<u32>], posterior: &[u64]) {
        let k = self.stats.k;
        self.stats.units += 1;
        self.class
            .iter_mut()
            .zip(posterior)
            .for_each(|(m, q)| *m += q);
        for (a, l) in row.iter().enumerate() {
            let Some(l) = l else { continue };
            let start = (a * k + *l as usize) * k;
            if let Some(slots) = self.by_given.get_mut(start..start + k) {
                slots.iter_mut().zip(posterior).for_each(|(m, q)| *m += q);
            }
        }
        self.in_block += 1;
        if self.in_block == Self::BLOCK {
            self.flush();
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
    let k = ratings.n_categories();
    let mut acc = Accumulator::new(ratings.n_raters(), k);
    let mut counts = vec![0u32; k];
    let mut q = vec![0u64; k];
    for row in ratings.rows() {
        counts.iter_mut().for_each(|c| *c = 0);
        let mut m = 0u32;
        for c in row.iter().flatten() {
            if let Some(slot) = counts.get_mut(*c as usize) {
                *slot += 1;
                m += 1;
            }
        }
        if m == 0 {
            continue;
        }
        for (qc, &n) in q.iter_mut().zip(&counts) {
            *qc = quantize_unit(f64::from(n) / f64::from(m));
        }
        acc.add_unit(row, &q);
    }
    acc.finish()
}

/// Log of each parameter (ln 0 = −∞), the confusion re-laid as `[rater][given][true]` so that
/// one rating adds a contiguous run of K values.
struct LogParams {
    priors: Vec<f64>,
    by_given: Vec<f64>,
}

impl LogParams {
    fn new(p: &DsParams) -> Self {
        let k = p.k;
        let mut by_given = vec![f64::NEG_INFINITY; p.confusion.len()];
        for a in 0..p.n_raters {
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
        Self {
            priors: p.class_priors.iter().map(|x| x.ln()).collect(),
            by_given,
        }
    }

    /// Posterior of one unit into `out` and its log-likelihood term (None if impossible or
    /// unrated). Each class's log score is its log prior plus the raters' terms in rater order.
    fn unit_posterior(&self, k: usize, row: &[Option<u32>], out: &mut [f64]) -> Option<f64> {
        let mut rated = false;
        for (c, slot) in out.iter_mut().enumerate() {
            *slot = self.priors.get(c).copied().unwrap_or(f64::NEG_INFINITY);
        }
        for (a, l) in row.iter().enumerate() {
            let Some(l) = l else { continue };
            rated = true;
            let start = (a * k + *l as usize) * k;
            match self.by_given.get(start..start + k) {
                Some(terms) => out.iter_mut().zip(terms).for_each(|(s, t)| *s += t),
                None => out.iter_mut().for_each(|s| *s = f64::NEG_INFINITY),
            }
        }
        let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !rated || max == f64::NEG_INFINITY || max.is_nan() {
            out.iter_mut().for_each(|x| *x = 0.0);
            return None;
        }
        let mut sum = 0.0;
        for x in out.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        out.iter_mut().for_each(|x| *x /= sum);
        Some(max + sum.ln())
    }
}

/// E-step of one site: posteriors under `params`, quantised and summed.
pub fn e_step(params: &DsParams, ratings: &Ratings) -> Result<DsStats, StatsError> {
    check_shape(params, ratings)?;
    let k = params.k;
    let lp = LogParams::new(params);
    let mut acc = Accumulator::new(params.n_raters, k);
    let mut post = vec![0.0; k];
    let mut q = vec![0u64; k];
    for row in ratings.rows() {
        if row.iter().all(Option::is_none) {
            continue;
        }
        match lp
            .unit_posterior(k, row, &mut post)
            .and_then(quantize_signed)
        {
            Some(ll) => {
                acc.stats.log_likelihood += ll;
                for (qc, &t) in q.iter_mut().zip(&post) {
                    *qc = quantize_unit(t);
                }
                acc.add_unit(row, &q);
            }
            None => {
                acc.stats.units += 1;
                acc.stats.impossible_units += 1;
            }
        }
    }
    Ok(acc.finish())
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
    let k = params.k;
    let lp = LogParams::new(params);
    let mut out = vec![0.0; ratings.n_units() * k];
    for (row, chunk) in ratings.rows().zip(out.chunks_mut(k.max(1))) {
        let _ = lp.unit_posterior(k, row, chunk);
    }
    Ok(out)
}

/// Pooled driver: initial E/M, then E/M until every parameter changes by less than the
/// tolerance. A federated coordinator runs the same loop with merged [`DsStats`].
pub fn dawid_skene(ratings: &Ratings, options: &DsOptions) -> Result<DsResult, StatsError> {
    if ratings.n_categories() == 0 {
        return Err(StatsError::Empty("categories"));
    }
    let mut params = m_step(&initial_e_step(ratings));
    let mut iterations = 0;
    let mut converged = false;
    while iterations < options.max_iterations {
        let next = m_step(&e_step(&params, ratings)?);
        iterations += 1;
        let change = next.max_change(&params);
        params = next;
        if change < options.tolerance {
            converged = true;
            break;
        }
    }
    let final_stats = e_step(&params, ratings)?;
    let posteriors = posteriors(&params, ratings)?;
    let k = params.k;
    let labels = posteriors
        .chunks(k.max(1))
        .zip(ratings.rows())
        .map(|(p, row)| {
            if row.iter().all(Option::is_none) {
                None
            } else {
                unique_argmax(p).map(|i| i as u32)
            }
        })
        .collect();
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
