//! Vector layouts: every statistic a study releases as a fixed-length sequence of u128 (an
//! element of Z_2^128, what secure aggregation sums), with its exact decoding.

use super::*;

/// Reads a summed vector back, element by element.
pub(super) struct Words<'a> {
    it: std::slice::Iter<'a, u128>,
}

impl<'a> Words<'a> {
    pub(super) fn new(v: &'a [u128]) -> Self {
        Self { it: v.iter() }
    }
    pub(super) fn next(&mut self) -> u128 {
        self.it.next().copied().unwrap_or(0)
    }
    pub(super) fn u64(&mut self) -> u64 {
        self.next() as u64
    }
    pub(super) fn take(&mut self, n: usize) -> Vec<u128> {
        (0..n).map(|_| self.next()).collect()
    }
    pub(super) fn take64(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.u64()).collect()
    }
}

pub fn staple_dim(r: usize) -> usize {
    3 + 4 * r
}

pub fn staple_words(s: &StapleStats) -> Vec<u128> {
    let mut v = vec![u128::from(s.units), s.sum_w, u128::from(s.ge_half)];
    for x in [&s.p_num, &s.p_den, &s.q_num, &s.q_den] {
        v.extend_from_slice(x);
    }
    v
}

pub fn staple_from(v: &[u128], r: usize) -> StapleStats {
    let mut w = Words::new(v);
    StapleStats {
        n_raters: r,
        units: w.u64(),
        sum_w: w.next(),
        ge_half: w.u64(),
        p_num: w.take(r),
        p_den: w.take(r),
        q_num: w.take(r),
        q_den: w.take(r),
    }
}

pub fn multi_seed_dim(r: usize, l: usize) -> usize {
    l + r * (l + 1) * l
}

pub fn multi_seed_words(s: &MultiLabelSeed) -> Vec<u128> {
    s.label_counts
        .iter()
        .chain(&s.votes)
        .map(|&x| u128::from(x))
        .collect()
}

pub fn multi_seed_from(v: &[u128], r: usize, l: usize) -> MultiLabelSeed {
    let mut w = Words::new(v);
    MultiLabelSeed {
        n_raters: r,
        n_labels: l,
        label_counts: w.take64(l),
        votes: w.take64(r * (l + 1) * l),
    }
}

pub fn ds_dim(r: usize, k: usize) -> usize {
    3 + k + r * k * k
}

pub fn ds_words(s: &DsStats) -> Vec<u128> {
    let mut v = vec![
        u128::from(s.units),
        s.log_likelihood as u128,
        u128::from(s.impossible_units),
    ];
    v.extend_from_slice(&s.class_mass);
    v.extend_from_slice(&s.confusion_mass);
    v
}

pub fn ds_from(v: &[u128], r: usize, k: usize) -> DsStats {
    let mut w = Words::new(v);
    DsStats {
        k,
        n_raters: r,
        units: w.u64(),
        log_likelihood: w.next() as i128,
        impossible_units: w.u64(),
        class_mass: w.take(k),
        confusion_mass: w.take(r * k * k),
    }
}

pub fn agreement_dim(r: usize, k: usize) -> usize {
    let pairs = r * r.saturating_sub(1) / 2;
    1 + 2 * (r + 1) + pairs * k * k + 2 + k + r.saturating_sub(1) * k * k + k
}

pub fn agreement_words(s: &AgreementStats) -> Vec<u128> {
    let mut v: Vec<u64> = vec![s.units];
    v.extend_from_slice(&s.percent.agreeing);
    v.extend_from_slice(&s.percent.units);
    for c in &s.cohen {
        v.extend_from_slice(&c.counts);
    }
    v.push(s.fleiss.units);
    v.push(s.fleiss.sum_sq);
    v.extend_from_slice(&s.fleiss.totals);
    v.extend_from_slice(&s.krippendorff.coincidences);
    v.extend_from_slice(&s.krippendorff.pairable);
    v.into_iter().map(u128::from).collect()
}

pub fn agreement_from(v: &[u128], r: usize, k: usize) -> AgreementStats {
    let mut s = AgreementStats::new(r, k);
    let mut w = Words::new(v);
    s.units = w.u64();
    s.percent.agreeing = w.take64(r + 1);
    s.percent.units = w.take64(r + 1);
    for c in &mut s.cohen {
        c.counts = w.take64(k * k);
    }
    s.fleiss.units = w.u64();
    s.fleiss.sum_sq = w.u64();
    s.fleiss.totals = w.take64(k);
    let blocks = s.krippendorff.coincidences.len();
    s.krippendorff.coincidences = w.take64(blocks);
    s.krippendorff.pairable = w.take64(k);
    s
}

/// Dense index of a binary pattern key among 3^R cells (digit r: 0 absent, 1 background,
/// 2 foreground).
pub(super) fn ternary_index(key: u64, r: usize) -> usize {
    let present = key >> 32;
    let mut idx = 0usize;
    for ri in (0..r).rev() {
        let digit = if present >> ri & 1 == 0 {
            0
        } else if key >> ri & 1 == 1 {
            2
        } else {
            1
        };
        idx = idx * 3 + digit;
    }
    idx
}

pub(super) fn ternary_key(mut idx: usize, r: usize) -> u64 {
    let (mut present, mut vote) = (0u64, 0u64);
    for ri in 0..r {
        match idx % 3 {
            1 => present |= 1 << ri,
            2 => {
                present |= 1 << ri;
                vote |= 1 << ri;
            }
            _ => {}
        }
        idx /= 3;
    }
    (present << 32) | vote
}

pub fn histogram_dim(r: usize) -> usize {
    3usize.pow(r as u32)
}

/// Quality vector per reader: cases, TP, FP, FN, TN, Σdice, Σdice², cases with a Dice, the Dice
/// histogram, the HD95 histogram and undefined HD95s.
pub const SEG_QUALITY_PER_READER: usize = 8 + DICE_BINS + HD_EDGES.len() - 1 + 1;

pub fn seg_quality_dim(r: usize) -> usize {
    r * SEG_QUALITY_PER_READER
}

pub fn label_quality_dim(r: usize, k: usize) -> usize {
    r * k * k + k + agreement_dim(r, k)
}
