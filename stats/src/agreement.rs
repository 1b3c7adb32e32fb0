//! Agreement statistics on categorical ratings: percent agreement, Cohen's kappa (pairwise;
//! unweighted, linear, quadratic), Fleiss' kappa and Krippendorff's alpha (nominal, ordinal,
//! interval, ratio).
//!
//! Owns the sufficient statistics and their finalisers. Every statistic is a pure function of a
//! fixed-layout integer struct with `merge` (exact, order-free) and `finalize`, so a federated
//! computation (per-site structs summed) equals the pooled one bit for bit. References:
//! scikit-learn `cohen_kappa_score` (weights by category position, pairwise deletion),
//! statsmodels `fleiss_kappa` (complete units only), the `krippendorff` package (`alpha` with
//! `value_domain = categories`). A 0/0 gives f64 NaN.

use super::StatsError;
use super::ratings::Ratings;
use serde::{Deserialize, Serialize};

/// Krippendorff's levels of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// Categories are unordered.
    Nominal,
    /// Categories are ranked (their positions); distances use the pairable-value frequencies.
    Ordinal,
    /// Category values are numbers; squared differences.
    Interval,
    /// Category values are numbers; squared relative differences.
    Ratio,
}

/// Per-unit category counts of one row of ratings (`counts[c]`) and the number of ratings.
fn unit_counts(row: &[Option<u32>], k: usize, counts: &mut [u64]) -> u64 {
    counts.iter_mut().for_each(|c| *c = 0);
    let mut m = 0;
    for c in row.iter().flatten() {
        if let Some(slot) = counts.get_mut(*c as usize) {
            *slot += 1;
            m += 1;
        }
    }
    debug_assert_eq!(counts.len(), k);
    m
}

/// Percent agreement: the mean over units with at least two ratings of the fraction of agreeing
/// ordered rater pairs. Statistics: per number of ratings m, the units and Σ_c n_c(n_c − 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PercentAgreementStats {
    /// `agreeing[m]`: Σ over units with m ratings of the agreeing ordered pairs.
    pub agreeing: Vec<u64>,
    /// `units[m]`: number of units with m ratings.
    pub units: Vec<u64>,
}

impl PercentAgreementStats {
    /// Empty statistics for at most `max_raters` ratings per unit.
    pub fn new(max_raters: usize) -> Self {
        Self {
            agreeing: vec![0; max_raters + 1],
            units: vec![0; max_raters + 1],
        }
    }

    fn add_unit(&mut self, counts: &[u64], m: u64) {
        let m = m as usize;
        if m < 2 || m >= self.units.len() {
            return;
        }
        self.units[m] += 1;
        self.agreeing[m] += counts.iter().map(|&n| n * n.saturating_sub(1)).sum::<u64>();
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.units.len() != other.units.len() {
            return Err(StatsError::Layout("percent agreement: max raters"));
        }
        add_into(&mut self.units, &other.units);
        add_into(&mut self.agreeing, &other.agreeing);
        Ok(())
    }

    /// The percent agreement (NaN without a unit of two ratings).
    pub fn finalize(&self) -> f64 {
        let total: u64 = self.units.iter().sum();
        let mut sum = 0.0;
        for (m, &a) in self.agreeing.iter().enumerate().skip(2) {
            sum += a as f64 / (m * (m - 1)) as f64;
        }
        sum / total as f64
    }
}

/// Cohen's kappa for one ordered pair of raters: the K×K confusion counts over the units both
/// rated (`counts[a * K + b]`, a = first rater's category).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohenStats {
    /// Number of categories K.
    pub k: usize,
    /// Row-major K×K counts.
    pub counts: Vec<u64>,
}

/// The three weightings of Cohen's kappa for one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CohenKappa {
    /// Units both raters rated.
    pub n_items: u64,
    /// Unweighted kappa.
    pub kappa: f64,
    /// Linear weights |i − j| on category positions.
    pub kappa_linear: f64,
    /// Quadratic weights (i − j)² on category positions.
    pub kappa_quadratic: f64,
}

impl CohenStats {
    /// Empty statistics for K categories.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            counts: vec![0; k * k],
        }
    }

    /// Records one unit rated `a` by the first rater and `b` by the second.
    pub fn add(&mut self, a: u32, b: u32) {
        if let Some(c) = self.counts.get_mut(a as usize * self.k + b as usize) {
            *c += 1;
        }
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.k != other.k || self.counts.len() != other.counts.len() {
            return Err(StatsError::Layout("cohen: categories"));
        }
        add_into(&mut self.counts, &other.counts);
        Ok(())
    }

    /// Kappa with weight `w(i, j)`: 1 − N·Σw·C / Σ w·rowsum·colsum, all sums exact integers.
    fn weighted(&self, w: impl Fn(usize, usize) -> u128) -> f64 {
        let k = self.k;
        let mut rows = vec![0u128; k];
        let mut cols = vec![0u128; k];
        let mut n = 0u128;
        let mut observed = 0u128;
        for (i, row) in self.counts.chunks(k.max(1)).enumerate() {
            for (j, &c) in row.iter().enumerate() {
                let c = u128::from(c);
                rows[i] += c;
                cols[j] += c;
                n += c;
                observed += w(i, j) * c;
            }
        }
        let mut expected = 0u128;
        for (i, &r) in rows.iter().enumerate() {
            for (j, &c) in cols.iter().enumerate() {
                expected += w(i, j) * r * c;
            }
        }
        1.0 - (n * observed) as f64 / expected as f64
    }

    /// The three kappas.
    pub fn finalize(&self) -> CohenKappa {
        let dist = |i: usize, j: usize| i.abs_diff(j) as u128;
        CohenKappa {
            n_items: self.counts.iter().sum(),
            kappa: self.weighted(|i, j| u128::from(i != j)),
            kappa_linear: self.weighted(dist),
            kappa_quadratic: self.weighted(|i, j| dist(i, j) * dist(i, j)),
        }
    }
}

/// Fleiss' kappa over the units rated by exactly `n_raters` raters (complete units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleissStats {
    /// Ratings per complete unit.
    pub n_raters: u64,
    /// Complete units.
    pub units: u64,
    /// Σ_units Σ_c n_c².
    pub sum_sq: u64,
    /// Σ_units n_c per category.
    pub totals: Vec<u64>,
}

impl FleissStats {
    /// Empty statistics for `n_raters` raters and K categories.
    pub fn new(n_raters: usize, k: usize) -> Self {
        Self {
            n_raters: n_raters as u64,
            units: 0,
            sum_sq: 0,
            totals: vec![0; k],
        }
    }

    fn add_unit(&mut self, counts: &[u64], m: u64) {
        if m != self.n_raters || m == 0 {
            return;
        }
        self.units += 1;
        self.sum_sq += counts.iter().map(|&n| n * n).sum::<u64>();
        add_into(&mut self.totals, counts);
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.n_raters != other.n_raters || self.totals.len() != other.totals.len() {
            return Err(StatsError::Layout("fleiss: raters or categories"));
        }
        self.units += other.units;
        self.sum_sq += other.sum_sq;
        add_into(&mut self.totals, &other.totals);
        Ok(())
    }

    /// κ = (P̄ − P̄e)/(1 − P̄e), evaluated as one ratio of exact integers.
    pub fn finalize(&self) -> f64 {
        let n = i128::from(self.n_raters);
        let big_n = i128::from(self.units);
        let nn = big_n * n;
        let a = i128::from(self.sum_sq) - nn;
        let b: i128 = self
            .totals
            .iter()
            .map(|&t| i128::from(t) * i128::from(t))
            .sum();
        let num = a * nn - b * (n - 1);
        let den = (nn * nn - b) * (n - 1);
        num as f64 / den as f64
    }
}

/// Krippendorff's alpha: per number of pairable ratings m = 2..=max, the integer coincidence
/// counts Σ_u (n_uc·n_uk − δ_ck·n_uc), divided by m − 1 only in [`Self::finalize`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KrippendorffStats {
    /// Number of categories K.
    pub k: usize,
    /// Largest m (number of raters).
    pub max_m: usize,
    /// Blocks of K×K counts for m = 2..=max_m.
    pub coincidences: Vec<u64>,
    /// Pairable values per category (n_c).
    pub pairable: Vec<u64>,
}

impl KrippendorffStats {
    /// Empty statistics for K categories and at most `max_m` ratings per unit.
    pub fn new(k: usize, max_m: usize) -> Self {
        let blocks = max_m.saturating_sub(1);
        Self {
            k,
            max_m,
            coincidences: vec![0; blocks * k * k],
            pairable: vec![0; k],
        }
    }

    fn add_unit(&mut self, counts: &[u64], m: u64) {
        let m = m as usize;
        if m < 2 || m > self.max_m {
            return;
        }
        let k = self.k;
        let base = (m - 2) * k * k;
        for (c, &nc) in counts.iter().enumerate() {
            if nc == 0 {
                continue;
            }
            self.pairable[c] += nc;
            for (d, &nd) in counts.iter().enumerate() {
                let v = if c == d { nc * (nc - 1) } else { nc * nd };
                if let Some(slot) = self.coincidences.get_mut(base + c * k + d) {
                    *slot += v;
                }
            }
        }
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.k != other.k || self.max_m != other.max_m {
            return Err(StatsError::Layout("krippendorff: categories or max m"));
        }
        add_into(&mut self.coincidences, &other.coincidences);
        add_into(&mut self.pairable, &other.pairable);
        Ok(())
    }

    /// The squared distance δ²(c, d) of the level; `None` when interval/ratio values are
    /// missing or of the wrong length.
    fn distances(&self, level: Level, values: Option<&[f64]>) -> Option<Vec<f64>> {
        let k = self.k;
        let n = &self.pairable;
        let mut d = vec![0.0; k * k];
        if matches!(level, Level::Interval | Level::Ratio) && values.is_none_or(|v| v.len() != k) {
            return None;
        }
        for c in 0..k {
            for e in 0..k {
                d[c * k + e] = match level {
                    Level::Nominal => f64::from(u8::from(c != e)),
                    Level::Ordinal => {
                        let (lo, hi) = if c <= e { (c, e) } else { (e, c) };
                        let span: u64 = n[lo..=hi].iter().sum();
                        let x = span as f64 - (n[lo] + n[hi]) as f64 / 2.0;
                        x * x
                    }
                    Level::Interval => {
                        let v = values?;
                        (v[c] - v[e]) * (v[c] - v[e])
                    }
                    Level::Ratio => {
                        let v = values?;
                        let s = v[c] + v[e];
                        if s == 0.0 {
                            0.0
                        } else {
                            ((v[c] - v[e]) / s).powi(2)
                        }
                    }
                };
            }
        }
        Some(d)
    }

    /// α = 1 − (n − 1)·Σ o·δ² / Σ n_c·n_k·δ². `values` are the category values (needed for
    /// interval and ratio; NaN is returned without them).
    pub fn finalize(&self, level: Level, values: Option<&[f64]>) -> f64 {
        let Some(d) = self.distances(level, values) else {
            return f64::NAN;
        };
        let k = self.k;
        let kk = k * k;
        let mut observed = 0.0;
        for (block, chunk) in self.coincidences.chunks(kk.max(1)).enumerate() {
            let m = block + 2;
            let s: f64 = chunk.iter().zip(&d).map(|(&o, &w)| o as f64 * w).sum();
            observed += s / (m - 1) as f64;
        }
        let n: u64 = self.pairable.iter().sum();
        let mut expected = 0.0;
        for c in 0..k {
            for e in 0..k {
                expected += (self.pairable[c] * self.pairable[e]) as f64 * d[c * k + e];
            }
        }
        1.0 - (n as f64 - 1.0) * observed / expected
    }
}

/// All agreement statistics of one rating table (one site's share, or the pool).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementStats {
    /// Raters (columns).
    pub n_raters: usize,
    /// Categories.
    pub k: usize,
    /// Units with at least one rating.
    pub units: u64,
    /// Percent agreement.
    pub percent: PercentAgreementStats,
    /// Cohen pairs (a, b), a < b, in lexicographic order.
    pub cohen: Vec<CohenStats>,
    /// Fleiss (complete units).
    pub fleiss: FleissStats,
    /// Krippendorff.
    pub krippendorff: KrippendorffStats,
}

/// Cohen's kappas of one rater pair (rater indices).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CohenPair {
    /// Rater indices (a < b).
    pub raters: [usize; 2],
    /// The kappas.
    pub kappa: CohenKappa,
}

/// Krippendorff's alpha at the four levels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KrippendorffAlphas {
    /// Nominal.
    pub nominal: f64,
    /// Ordinal (category positions).
    pub ordinal: f64,
    /// Interval (category values; NaN when the categories are not numbers).
    pub interval: f64,
    /// Ratio (category values; NaN when the categories are not numbers).
    pub ratio: f64,
}

/// The finalised agreement report (`metrics agreement`, README.md "Offline QA commands").
/// Non-finite values are f64 NaN/inf; the JSON writer maps them to strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementReport {
    /// Units with at least one rating.
    pub units: u64,
    /// Raters.
    pub raters: usize,
    /// Percent agreement.
    pub percent_agreement: f64,
    /// Cohen's kappas for every rater pair.
    pub cohen_pairwise: Vec<CohenPair>,
    /// Fleiss' kappa.
    pub fleiss_kappa: f64,
    /// Complete units used by Fleiss.
    pub fleiss_units: u64,
    /// Krippendorff's alpha.
    pub krippendorff_alpha: KrippendorffAlphas,
}

impl AgreementStats {
    /// Empty statistics for a table of `n_raters` raters and `k` categories.
    pub fn new(n_raters: usize, k: usize) -> Self {
        let pairs = n_raters * n_raters.saturating_sub(1) / 2;
        Self {
            n_raters,
            k,
            units: 0,
            percent: PercentAgreementStats::new(n_raters),
            cohen: vec![CohenStats::new(k); pairs],
            fleiss: FleissStats::new(n_raters, k),
            krippendorff: KrippendorffStats::new(k, n_raters),
        }
    }

    /// Statistics of a rating table.
    pub fn from_ratings(ratings: &Ratings) -> Self {
        let mut s = Self::new(ratings.n_raters(), ratings.n_categories());
        s.add_ratings(ratings);
        s
    }

    /// Adds every unit of a table with the same raters and categories (extra raters or
    /// categories are ignored).
    pub fn add_ratings(&mut self, ratings: &Ratings) {
        let k = self.k;
        let mut counts = vec![0u64; k];
        for row in ratings.rows() {
            let row = &row[..row.len().min(self.n_raters)];
            let m = unit_counts(row, k, &mut counts);
            if m == 0 {
                continue;
            }
            self.units += 1;
            self.percent.add_unit(&counts, m);
            self.fleiss.add_unit(&counts, m);
            self.krippendorff.add_unit(&counts, m);
            let mut pair = 0;
            for a in 0..self.n_raters {
                for b in a + 1..self.n_raters {
                    if let (Some(Some(x)), Some(Some(y)), Some(c)) =
                        (row.get(a), row.get(b), self.cohen.get_mut(pair))
                    {
                        c.add(*x, *y);
                    }
                    pair += 1;
                }
            }
        }
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if self.n_raters != other.n_raters
            || self.k != other.k
            || self.cohen.len() != other.cohen.len()
        {
            return Err(StatsError::Layout("agreement: raters or categories"));
        }
        self.units += other.units;
        self.percent.merge(&other.percent)?;
        for (a, b) in self.cohen.iter_mut().zip(&other.cohen) {
            a.merge(b)?;
        }
        self.fleiss.merge(&other.fleiss)?;
        self.krippendorff.merge(&other.krippendorff)
    }

    /// The report; `values` are the numeric category values for interval/ratio alpha.
    pub fn finalize(&self, values: Option<&[f64]>) -> AgreementReport {
        let mut cohen_pairwise = Vec::with_capacity(self.cohen.len());
        let mut pair = 0;
        for a in 0..self.n_raters {
            for b in a + 1..self.n_raters {
                if let Some(c) = self.cohen.get(pair) {
                    cohen_pairwise.push(CohenPair {
                        raters: [a, b],
                        kappa: c.finalize(),
                    });
                }
                pair += 1;
            }
        }
        let kr = &self.krippendorff;
        AgreementReport {
            units: self.units,
            raters: self.n_raters,
            percent_agreement: self.percent.finalize(),
            cohen_pairwise,
            fleiss_kappa: self.fleiss.finalize(),
            fleiss_units: self.fleiss.units,
            krippendorff_alpha: KrippendorffAlphas {
                nominal: kr.finalize(Level::Nominal, values),
                ordinal: kr.finalize(Level::Ordinal, values),
                interval: kr.finalize(Level::Interval, values),
                ratio: kr.finalize(Level::Ratio, values),
            },
        }
    }
}

/// Element-wise `a += b` over the common length.
fn add_into(a: &mut [u64], b: &[u64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += *y);
}

/// Convenience: the pooled report of one table.
pub fn agreement(ratings: &Ratings, values: Option<&[f64]>) -> AgreementReport {
    AgreementStats::from_ratings(ratings).finalize(values)
}

#[cfg(test)]
mod tests {
    use super::super::fixed::tests_rng::XorShift;
    use super::*;

    fn table(rows: &[&[Option<u32>]], k: usize) -> Ratings {
        let r = rows.first().map_or(0, |x| x.len());
        let cells = rows.iter().flat_map(|x| x.iter().copied()).collect();
        Ratings::from_cells(rows.len(), r, k, cells).expect("valid table")
    }

    #[test]
    fn cohen_wikipedia_example() {
        // 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: kappa = 0.4.
        let mut c = CohenStats::new(2);
        for (a, b, n) in [(0, 0, 20), (0, 1, 5), (1, 0, 10), (1, 1, 15)] {
            for _ in 0..n {
                c.add(a, b);
            }
        }
        let k = c.finalize();
        assert!((k.kappa - 0.4).abs() < 1e-12);
        assert_eq!(k.n_items, 50);
    }

    #[test]
    fn constant_ratings_give_nan() {
        let rows: Vec<Vec<Option<u32>>> = (0..5).map(|_| vec![Some(1); 3]).collect();
        let refs: Vec<&[Option<u32>]> = rows.iter().map(|r| r.as_slice()).collect();
        let rep = agreement(&table(&refs, 3), Some(&[0.0, 1.0, 2.0]));
        assert!(rep.fleiss_kappa.is_nan());
        assert!(rep.krippendorff_alpha.nominal.is_nan());
        assert!(rep.cohen_pairwise[0].kappa.kappa.is_nan());
        assert_eq!(rep.percent_agreement, 1.0);
    }

    #[test]
    fn krippendorff_textbook() {
        // Krippendorff (2011) section C: alpha = 0.743 / 0.815 / 0.849 / 0.797.
        let n = None;
        let s = |v: u32| Some(v - 1);
        let rows: Vec<[Option<u32>; 4]> = vec![
            [s(1), s(1), n, s(1)],
            [s(2), s(2), s(3), s(2)],
            [s(3), s(3), s(3), s(3)],
            [s(3), s(3), s(3), s(3)],
            [s(2), s(2), s(2), s(2)],
            [s(1), s(2), s(3), s(4)],
            [s(4), s(4), s(4), s(4)],
            [s(1), s(1), s(2), s(1)],
            [s(2), s(2), s(2), s(2)],
            [n, s(5), s(5), s(5)],
            [n, n, s(1), s(1)],
            [n, s(3), n, n],
        ];
        let refs: Vec<&[Option<u32>]> = rows.iter().map(|r| r.as_slice()).collect();
        let rep = agreement(&table(&refs, 5), Some(&[1.0, 2.0, 3.0, 4.0, 5.0]));
        let a = rep.krippendorff_alpha;
        assert!((a.nominal - 0.743_421_052_631_579).abs() < 1e-12);
        assert!((a.ordinal - 0.815_387_503_754_881_4).abs() < 1e-12);
        assert!((a.interval - 0.849_107_142_857_142_8).abs() < 1e-12);
        assert!((a.ratio - 0.797_402_774_711_612_1).abs() < 1e-12);
    }

    #[test]
    fn federated_equals_pooled_bit_for_bit() {
        let mut rng = XorShift::new(0x5eed_a9ee);
        for trial in 0..40 {
            let units = 1 + rng.below(120);
            let raters = 2 + rng.below(6);
            let k = 1 + rng.below(5);
            let cells: Vec<Option<u32>> = (0..units * raters)
                .map(|_| {
                    if rng.below(5) == 0 {
                        None
                    } else {
                        Some(rng.below(k) as u32)
                    }
                })
                .collect();
            let t = Ratings::from_cells(units, raters, k, cells).expect("valid");
            let values: Vec<f64> = (0..k).map(|i| (i * i) as f64 + 0.5).collect();
            let pooled = AgreementStats::from_ratings(&t);
            let n_parts = 1 + rng.below(7);
            let parts = rng.partition(units, n_parts);
            let mut fed = AgreementStats::new(raters, k);
            for part in parts.iter().rev() {
                let site = AgreementStats::from_ratings(&t.select_units(part).expect("units"));
                fed.merge(&site).expect("same layout");
            }
            assert_eq!(fed, pooled, "trial {trial}");
            let a = format!("{:?}", fed.finalize(Some(&values)));
            let b = format!("{:?}", pooled.finalize(Some(&values)));
            assert_eq!(a, b);
        }
    }
}
