//! Multi-label STAPLE (Rohlfing et al. 2004) with ITK `MultiLabelSTAPLEImageFilter` semantics,
//! on a label-pattern histogram, federated by fixed-point sufficient statistics.
//!
//! Owns the multi-label rater model: fixed priors (pooled label frequencies over all raters and
//! voxels), per-rater confusion matrices C_r[given 0..=L][true 0..L] (row L is ITK's reject row;
//! columns sum to 1), the seeding, the E/M decomposition and the pooled driver. ITK-master rules
//! (ARCHITECTURE.md, "Multi-label STAPLE"; tests/data/oracle/README.md): L = max label + 1; seed =
//! majority vote with ties undecided, undecided voxels skipped, counts **row**-normalised; each
//! iteration W(v,c) ∝ prior_c·Π_r C_r[D_r(v), c], then C_r[j,c] = Σ_{D_r(v)=j} W(v,c) normalised
//! per column (an all-zero column stays zero); stop when max |ΔC| < threshold (1e-5), `iterations`
//! being the 0-based index of that iteration; output label = unique argmax of prior·ΠC, else L.

use super::StatsError;
use super::fixed::{self, quantize_unit};
use super::majority::unique_argmax;
use super::staple::{KeyCounter, common_len, merge_sorted};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Voxels per block while building a histogram.
const BLOCK: usize = 1 << 15;

/// Histogram of label patterns: rater r's label sits in bits `r*bits .. (r+1)*bits` of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelPatternHistogram {
    /// Raters R.
    pub n_raters: usize,
    /// Labels L (values 0..L).
    pub n_labels: usize,
    /// Bits per rater in a key.
    pub bits: u32,
    /// (key, voxel count), sorted by key.
    pub patterns: Vec<(u64, u64)>,
}

fn bits_for(n_labels: usize) -> u32 {
    (usize::BITS - n_labels.saturating_sub(1).leading_zeros()).max(1)
}

impl LabelPatternHistogram {
    /// Builds the histogram of R label images. `n_labels` fixes L (federated runs must); when
    /// `None`, L = max label + 1.
    pub fn from_raters<T: Copy + Into<u64>>(
        raters: &[&[T]],
        n_labels: Option<usize>,
    ) -> Result<Self, StatsError> {
        let n = common_len(raters)?;
        let max = raters
            .iter()
            .flat_map(|r| r.iter())
            .map(|&v| v.into())
            .max()
            .unwrap_or(0);
        let l = match n_labels {
            Some(l) if (max as usize) < l || n == 0 => l,
            Some(_) => return Err(StatsError::OutOfRange("label >= declared label count")),
            None => max as usize + 1,
        };
        let bits = bits_for(l);
        let r = raters.len();
        if r * bits as usize > 64 {
            return Err(StatsError::TooManyRaters {
                got: r,
                max: 64 / bits as usize,
            });
        }
        let mut counter = KeyCounter::new(r as u32 * bits);
        let mut keys = vec![0u64; BLOCK];
        let mut start = 0;
        while start < n {
            let len = BLOCK.min(n - start);
            let kb = &mut keys[..len];
            kb.iter_mut().for_each(|k| *k = 0);
            for (ri, img) in raters.iter().enumerate() {
                let shift = ri as u32 * bits;
                for (k, &v) in kb.iter_mut().zip(&img[start..start + len]) {
                    *k |= v.into() << shift;
                }
            }
            kb.iter().for_each(|&k| counter.add(k));
            start += len;
        }
        Ok(Self {
            n_raters: r,
            n_labels: l,
            bits,
            patterns: counter.finish(),
        })
    }

    /// Adds another site's histogram (same raters and labels).
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if (self.n_raters, self.n_labels, self.bits) != (other.n_raters, other.n_labels, other.bits)
        {
            return Err(StatsError::Layout("label histogram: raters or labels"));
        }
        self.patterns = merge_sorted(&self.patterns, &other.patterns);
        Ok(())
    }

    /// The same histogram declared with `n_labels` ≥ L labels (re-keyed to the wider field):
    /// how cases whose largest label differs join one pool.
    pub fn with_label_count(&self, n_labels: usize) -> Result<Self, StatsError> {
        if n_labels < self.n_labels {
            return Err(StatsError::OutOfRange(
                "fewer labels than the histogram holds",
            ));
        }
        let bits = bits_for(n_labels);
        if self.n_raters * bits as usize > 64 {
            return Err(StatsError::TooManyRaters {
                got: self.n_raters,
                max: 64 / bits as usize,
            });
        }
        let mut patterns: Vec<(u64, u64)> = self
            .patterns
            .iter()
            .map(|&(k, c)| {
                let key = (0..self.n_raters).fold(0u64, |acc, r| {
                    acc | (self.label(k, r) as u64) << (r as u32 * bits)
                });
                (key, c)
            })
            .collect();
        patterns.sort_unstable();
        Ok(Self {
            n_raters: self.n_raters,
            n_labels,
            bits,
            patterns,
        })
    }

    /// Rater `r`'s label in a key.
    pub fn label(&self, key: u64, r: usize) -> usize {
        ((key >> (r as u32 * self.bits)) & ((1u64 << self.bits) - 1)) as usize
    }

    fn labels_of(&self, key: u64, out: &mut Vec<usize>) {
        out.clear();
        out.extend((0..self.n_raters).map(|r| self.label(key, r)));
    }
}

/// Index of C_r[j][c] in a flattened `R × (L+1) × L` array.
fn at(l: usize, r: usize, j: usize, c: usize) -> usize {
    (r * (l + 1) + j) * l + c
}

/// Seed statistics (one aggregation round before EM): pooled label counts for the priors and
/// the majority-vote count matrices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiLabelSeed {
    /// Raters R.
    pub n_raters: usize,
    /// Labels L.
    pub n_labels: usize,
    /// Σ over raters and voxels of [label = k].
    pub label_counts: Vec<u64>,
    /// votes[r][given j][voted c] over voxels with a decided vote.
    pub votes: Vec<u64>,
}

impl MultiLabelSeed {
    /// The seed statistics of a (local) histogram.
    pub fn from_histogram(h: &LabelPatternHistogram) -> Self {
        let (r, l) = (h.n_raters, h.n_labels);
        let mut s = Self {
            n_raters: r,
            n_labels: l,
            label_counts: vec![0; l],
            votes: vec![0; r * (l + 1) * l],
        };
        let mut labels = Vec::with_capacity(r);
        let mut tally = vec![0.0; l];
        for &(key, count) in &h.patterns {
            h.labels_of(key, &mut labels);
            tally.iter_mut().for_each(|t| *t = 0.0);
            for &j in &labels {
                if let Some(t) = tally.get_mut(j) {
                    *t += 1.0;
                }
                if let Some(c) = s.label_counts.get_mut(j) {
                    *c += count;
                }
            }
            let Some(vote) = unique_argmax(&tally) else {
                continue;
            };
            for (ri, &j) in labels.iter().enumerate() {
                if let Some(v) = s.votes.get_mut(at(l, ri, j, vote)) {
                    *v += count;
                }
            }
        }
        s
    }

    /// Adds another site's seed statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if (self.n_raters, self.n_labels) != (other.n_raters, other.n_labels) {
            return Err(StatsError::Layout("multilabel seed: raters or labels"));
        }
        self.label_counts
            .iter_mut()
            .zip(&other.label_counts)
            .for_each(|(a, b)| *a += *b);
        self.votes
            .iter_mut()
            .zip(&other.votes)
            .for_each(|(a, b)| *a += *b);
        Ok(())
    }

    /// The fixed priors: label frequencies over all raters and voxels.
    pub fn priors(&self) -> Vec<f64> {
        let total: u64 = self.label_counts.iter().sum();
        self.label_counts
            .iter()
            .map(|&c| c as f64 / total as f64)
            .collect()
    }

    /// The seed confusion matrices: vote counts normalised per **row** (ITK's quirk).
    pub fn confusion(&self) -> MultiLabelParams {
        let l = self.n_labels;
        let mut confusion = vec![0.0; self.votes.len()];
        for (out, row) in confusion
            .chunks_mut(l.max(1))
            .zip(self.votes.chunks(l.max(1)))
        {
            let s: u64 = row.iter().sum();
            if s > 0 {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v as f64 / s as f64;
                }
            }
        }
        MultiLabelParams {
            n_raters: self.n_raters,
            n_labels: l,
            confusion,
        }
    }
}

/// Confusion matrices C_r[given 0..=L][true 0..L], flattened `R × (L+1) × L`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelParams {
    /// Raters R.
    pub n_raters: usize,
    /// Labels L.
    pub n_labels: usize,
    /// The flattened matrices.
    pub confusion: Vec<f64>,
}

impl MultiLabelParams {
    /// Rater r's matrix as L+1 rows of L.
    pub fn rater_matrix(&self, r: usize) -> Vec<Vec<f64>> {
        let l = self.n_labels;
        let block = (l + 1) * l;
        self.confusion
            .get(r * block..(r + 1) * block)
            .unwrap_or(&[])
            .chunks(l.max(1))
            .map(<[f64]>::to_vec)
            .collect()
    }

    /// Largest absolute change of any element.
    pub fn max_change(&self, other: &Self) -> f64 {
        self.confusion
            .iter()
            .zip(&other.confusion)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// prior_c·Π_r C_r[D_r, c] for every class c into `out`.
    fn scores(&self, priors: &[f64], labels: &[usize], out: &mut [f64]) {
        let l = self.n_labels;
        out.copy_from_slice(priors);
        for (r, &j) in labels.iter().enumerate() {
            for (c, w) in out.iter_mut().enumerate() {
                *w *= self.confusion.get(at(l, r, j, c)).copied().unwrap_or(0.0);
            }
        }
    }
}

/// Expected sufficient statistics of one E-step: Σ W(v,c) at row D_r(v), fixed point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiLabelStats {
    /// Raters R.
    pub n_raters: usize,
    /// Labels L.
    pub n_labels: usize,
    /// Flattened like [`MultiLabelParams::confusion`].
    pub mass: Vec<u128>,
}

impl MultiLabelStats {
    /// Zero statistics.
    pub fn new(n_raters: usize, n_labels: usize) -> Self {
        Self {
            n_raters,
            n_labels,
            mass: vec![0; n_raters * (n_labels + 1) * n_labels],
        }
    }

    /// Adds another site's statistics.
    pub fn merge(&mut self, other: &Self) -> Result<(), StatsError> {
        if (self.n_raters, self.n_labels) != (other.n_raters, other.n_labels) {
            return Err(StatsError::Layout("multilabel: raters or labels"));
        }
        self.mass
            .iter_mut()
            .zip(&other.mass)
            .for_each(|(a, b)| *a += *b);
        Ok(())
    }
}

/// E-step over a (local) histogram.
pub fn e_step(
    params: &MultiLabelParams,
    priors: &[f64],
    h: &LabelPatternHistogram,
) -> Result<MultiLabelStats, StatsError> {
    let (r, l) = (h.n_raters, h.n_labels);
    if params.n_raters != r || params.n_labels != l || priors.len() != l {
        return Err(StatsError::Shape("parameters vs histogram"));
    }
    let mut s = MultiLabelStats::new(r, l);
    let mut labels = Vec::with_capacity(r);
    let mut w = vec![0.0; l];
    let mut q = vec![0u128; l];
    for &(key, count) in &h.patterns {
        h.labels_of(key, &mut labels);
        params.scores(priors, &labels, &mut w);
        let sum: f64 = w.iter().sum();
        if sum > 0.0 {
            w.iter_mut().for_each(|x| *x /= sum);
        }
        for (qc, &x) in q.iter_mut().zip(&w) {
            *qc = u128::from(count) * u128::from(quantize_unit(x));
        }
        for (ri, &j) in labels.iter().enumerate() {
            for (c, &qc) in q.iter().enumerate() {
                if let Some(m) = s.mass.get_mut(at(l, ri, j, c)) {
                    *m += qc;
                }
            }
        }
    }
    Ok(s)
}

/// M-step: normalise each column (true class) of each rater's matrix; an all-zero column
/// stays zero.
pub fn m_step(stats: &MultiLabelStats) -> MultiLabelParams {
    let (r, l) = (stats.n_raters, stats.n_labels);
    let mut confusion = vec![0.0; stats.mass.len()];
    for ri in 0..r {
        for c in 0..l {
            let s: u128 = (0..=l).map(|j| stats.mass[at(l, ri, j, c)]).sum();
            if s == 0 {
                continue;
            }
            for j in 0..=l {
                confusion[at(l, ri, j, c)] =
                    fixed::ratio(stats.mass[at(l, ri, j, c)], s).unwrap_or(0.0);
            }
        }
    }
    MultiLabelParams {
        n_raters: r,
        n_labels: l,
        confusion,
    }
}

/// Options of the pooled driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiLabelOptions {
    /// Stop when max |ΔC| is below this (SimpleITK default 1e-5).
    pub termination_threshold: f64,
    /// Upper bound on iterations (ITK's default is unbounded).
    pub max_iterations: u32,
}

impl Default for MultiLabelOptions {
    fn default() -> Self {
        Self {
            termination_threshold: 1e-5,
            max_iterations: 10_000_000,
        }
    }
}

/// Result of the pooled driver.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelResult {
    /// Labels L (undecided voxels get label L).
    pub n_labels: usize,
    /// Fixed priors.
    pub priors: Vec<f64>,
    /// Final confusion matrices.
    pub params: MultiLabelParams,
    /// 0-based index of the converged iteration.
    pub iterations: u32,
    /// Whether the threshold was reached (rather than `max_iterations`).
    pub converged: bool,
    /// Voxels per output label 0..=L.
    pub label_counts: Vec<u64>,
}

/// The output label of a pattern: unique argmax of prior·ΠC, else L.
pub fn pattern_label(
    params: &MultiLabelParams,
    priors: &[f64],
    h: &LabelPatternHistogram,
    key: u64,
) -> usize {
    let mut labels = Vec::with_capacity(h.n_raters);
    h.labels_of(key, &mut labels);
    let mut w = vec![0.0; h.n_labels];
    params.scores(priors, &labels, &mut w);
    unique_argmax(&w).unwrap_or(h.n_labels)
}

/// Pooled driver. A federated coordinator runs the same loop with merged [`MultiLabelSeed`]
/// and [`MultiLabelStats`].
pub fn multilabel_staple(
    h: &LabelPatternHistogram,
    options: &MultiLabelOptions,
) -> Result<MultiLabelResult, StatsError> {
    let seed = MultiLabelSeed::from_histogram(h);
    let priors = seed.priors();
    let mut params = seed.confusion();
    let mut iteration = 0u32;
    let mut converged = false;
    loop {
        let next = m_step(&e_step(&params, &priors, h)?);
        let change = next.max_change(&params);
        params = next;
        if change < options.termination_threshold {
            converged = true;
            break;
        }
        iteration += 1;
        if iteration >= options.max_iterations {
            break;
        }
    }
    let mut label_counts = vec![0u64; h.n_labels + 1];
    for &(key, count) in &h.patterns {
        if let Some(c) = label_counts.get_mut(pattern_label(&params, &priors, h, key)) {
            *c += count;
        }
    }
    Ok(MultiLabelResult {
        n_labels: h.n_labels,
        priors,
        params,
        iterations: iteration,
        converged,
        label_counts,
    })
}

/// The output label map (undecided = L) of the rater images under a result.
pub fn label_map<T: Copy + Into<u64>>(
    raters: &[&[T]],
    h: &LabelPatternHistogram,
    result: &MultiLabelResult,
) -> Result<Vec<u32>, StatsError> {
    let n = common_len(raters)?;
    if raters.len() != h.n_raters {
        return Err(StatsError::Shape("raters vs histogram"));
    }
    let table: HashMap<u64, u32> = h
        .patterns
        .iter()
        .map(|&(k, _)| {
            (
                k,
                pattern_label(&result.params, &result.priors, h, k) as u32,
            )
        })
        .collect();
    let mut out = vec![h.n_labels as u32; n];
    for (i, o) in out.iter_mut().enumerate() {
        let mut key = 0u64;
        for (ri, img) in raters.iter().enumerate() {
            key |= img.get(i).map_or(0, |&v| v.into()) << (ri as u32 * h.bits);
        }
        *o = match table.get(&key) {
            Some(&lab) => lab,
            None => pattern_label(&result.params, &result.priors, h, key) as u32,
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixed::tests_rng::XorShift;
    use super::*;

    #[test]
    fn all_background_is_one_label() {
        let raters = [vec![0u8; 20], vec![0u8; 20], vec![0u8; 20]];
        let refs: Vec<&[u8]> = raters.iter().map(|v| v.as_slice()).collect();
        let h = LabelPatternHistogram::from_raters(&refs, None).expect("ok");
        let r = multilabel_staple(&h, &MultiLabelOptions::default()).expect("runs");
        assert_eq!(r.n_labels, 1);
        assert_eq!(r.iterations, 0);
        assert_eq!(r.params.rater_matrix(0), vec![vec![1.0], vec![0.0]]);
        assert_eq!(r.label_counts, vec![20, 0]);
        assert_eq!(label_map(&refs, &h, &r).expect("map"), vec![0; 20]);
    }

    #[test]
    fn widening_the_label_count_rekeys() {
        let a = [0u8, 1, 1, 0];
        let b = [1u8, 1, 0, 0];
        let refs: [&[u8]; 2] = [&a, &b];
        let narrow = LabelPatternHistogram::from_raters(&refs, None).expect("ok");
        let wide = LabelPatternHistogram::from_raters(&refs, Some(5)).expect("ok");
        assert_eq!(narrow.with_label_count(5).expect("wider"), wide);
        assert!(wide.with_label_count(2).is_err());
    }

    #[test]
    fn federated_equals_pooled_bit_for_bit() {
        let mut rng = XorShift::new(0x3117);
        for trial in 0..10 {
            let n = 300 + rng.below(2000);
            let r = 2 + rng.below(4);
            let l = 2 + rng.below(3);
            let truth: Vec<u8> = (0..n).map(|i| ((i / 11) % l) as u8).collect();
            let raters: Vec<Vec<u8>> = (0..r)
                .map(|_| {
                    truth
                        .iter()
                        .map(|&t| {
                            if rng.below(8) == 0 {
                                rng.below(l) as u8
                            } else {
                                t
                            }
                        })
                        .collect()
                })
                .collect();
            let refs: Vec<&[u8]> = raters.iter().map(|v| v.as_slice()).collect();
            let hp = LabelPatternHistogram::from_raters(&refs, Some(l)).expect("ok");
            let pooled = multilabel_staple(&hp, &MultiLabelOptions::default()).expect("runs");
            let n_parts = 1 + rng.below(7);
            let parts = rng.partition(n, n_parts);
            let sites: Vec<LabelPatternHistogram> = parts
                .iter()
                .map(|p| {
                    let imgs: Vec<Vec<u8>> = raters
                        .iter()
                        .map(|v| p.iter().map(|&i| v[i]).collect())
                        .collect();
                    let rs: Vec<&[u8]> = imgs.iter().map(|v| v.as_slice()).collect();
                    LabelPatternHistogram::from_raters(&rs, Some(l)).expect("ok")
                })
                .collect();
            let mut seed = MultiLabelSeed::from_histogram(&sites[0]);
            for s in &sites[1..] {
                seed.merge(&MultiLabelSeed::from_histogram(s))
                    .expect("layout");
            }
            let priors = seed.priors();
            let mut params = seed.confusion();
            let mut it = 0;
            loop {
                let mut acc = MultiLabelStats::new(r, l);
                for s in sites.iter().rev() {
                    acc.merge(&e_step(&params, &priors, s).expect("shape"))
                        .expect("layout");
                }
                let next = m_step(&acc);
                let change = next.max_change(&params);
                params = next;
                if change < 1e-5 {
                    break;
                }
                it += 1;
            }
            assert_eq!(it, pooled.iterations, "trial {trial}");
            assert_eq!(priors, pooled.priors);
            assert_eq!(params, pooled.params);
        }
    }
}
