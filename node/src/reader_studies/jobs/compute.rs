//! The site's side of a job: local data in, a fixed-layout integer vector out (pure).

use super::*;

/// Computes this site's vector for a job. `n_raters` and the task shape come from the study.
pub fn compute(job: &Job, data: &LocalData) -> Result<Vec<u128>, EmError> {
    match &job.kind {
        JobKind::StapleInit => Ok(staple_words(&staple::e_step(
            None,
            data.binary_histogram()?,
        )?)),
        JobKind::StapleStep { params } => Ok(staple_words(&staple::e_step(
            Some(params),
            data.binary_histogram()?,
        )?)),
        JobKind::StapleHistogram => {
            let h = data.binary_histogram()?;
            if h.n_raters > ONE_ROUND_MAX_RATERS {
                return Err(EmError::Mismatch(
                    "too many raters for the one-round histogram",
                ));
            }
            let mut v = vec![0u128; histogram_dim(h.n_raters)];
            for &(key, count) in &h.patterns {
                if let Some(c) = v.get_mut(ternary_index(key, h.n_raters)) {
                    *c += u128::from(count);
                }
            }
            Ok(v)
        }
        JobKind::MultiSeed => Ok(multi_seed_words(&MultiLabelSeed::from_histogram(
            data.label_histogram()?,
        ))),
        JobKind::MultiStep { params, priors } => {
            Ok(multilabel::e_step(params, priors, data.label_histogram()?)?.mass)
        }
        JobKind::MultiCounts { params, priors } => {
            let h = data.label_histogram()?;
            let mut counts = vec![0u128; h.n_labels + 1];
            for &(key, count) in &h.patterns {
                if let Some(c) = counts.get_mut(multilabel::pattern_label(params, priors, h, key)) {
                    *c += u128::from(count);
                }
            }
            Ok(counts)
        }
        JobKind::DsInit => Ok(ds_words(&dawid_skene::initial_e_step(ratings(data)?))),
        JobKind::DsStep { params } => Ok(ds_words(&dawid_skene::e_step(params, ratings(data)?)?)),
        JobKind::SegQuality { consensus, hd95 } => seg_quality(consensus, *hd95, data),
        JobKind::LabelQuality { params } => label_quality(params, ratings(data)?),
        JobKind::Bench { dim, seed } => bench_vector(*dim, *seed),
    }
}

/// The vector of a [`JobKind::Bench`] job: `dim` elements of Z_2^128 from a SplitMix64 stream
/// seeded with `seed` (two outputs per element, high word first). Deterministic, and the same
/// at every site. A `dim` above the protocol's [`fedanno_protocol::secagg::MAX_DIM`] is refused
/// before anything is allocated.
pub fn bench_vector(dim: u32, seed: u64) -> Result<Vec<u128>, EmError> {
    let dim = dim as usize;
    if dim > fedanno_protocol::secagg::MAX_DIM {
        return Err(EmError::Mismatch(
            "a benchmark vector above the protocol's maximum dimension",
        ));
    }
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    Ok((0..dim)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect())
}

pub(super) fn ratings(data: &LocalData) -> Result<&Ratings, EmError> {
    match data {
        LocalData::Classification { ratings } => Ok(ratings),
        LocalData::Segmentation { .. } => Err(EmError::Mismatch("Dawid–Skene needs ratings")),
    }
}

/// A case's consensus label map under the released model: binary STAPLE W ≥ 0.5 → 1;
/// multi-label: the unique argmax (undecided → 0, background, for overlap purposes).
pub fn consensus_map(
    consensus: &SegConsensus,
    case: &SegCase,
    n_labels: usize,
) -> Result<Vec<u8>, EmError> {
    consensus_of(consensus, case.dims, &case.masks(), n_labels)
}

/// [`consensus_map`] of a case's unpacked masks.
fn consensus_of(
    consensus: &SegConsensus,
    dims: [usize; 3],
    masks: &[(usize, Vec<u8>)],
    n_labels: usize,
) -> Result<Vec<u8>, EmError> {
    let n = dims.iter().product::<usize>();
    let refs: Vec<&[u8]> = masks.iter().map(|r| r.1.as_slice()).collect();
    match consensus {
        SegConsensus::Staple(params) => {
            let mut out = vec![0u8; n];
            let mut cache: HashMap<u64, bool> = HashMap::new();
            for (i, o) in out.iter_mut().enumerate() {
                let (mut present, mut vote) = (0u64, 0u64);
                for (r, img) in masks {
                    present |= 1 << r;
                    if img.get(i) == Some(&1) {
                        vote |= 1 << r;
                    }
                }
                let key = (present << 32) | vote;
                let fg = *cache.entry(key).or_insert_with(|| {
                    staple::pattern_weight(Some(params), key).unwrap_or(params.prior) >= 0.5
                });
                *o = u8::from(fg);
            }
            Ok(out)
        }
        SegConsensus::Multi { params, priors } => {
            let h = LabelPatternHistogram::from_raters(&refs, Some(n_labels))?;
            let result = multilabel::MultiLabelResult {
                n_labels,
                priors: priors.clone(),
                params: params.clone(),
                iterations: 0,
                converged: true,
                label_counts: Vec::new(),
            };
            let map = multilabel::label_map(&refs, &h, &result)?;
            Ok(map
                .into_iter()
                .map(|l| if l as usize >= n_labels { 0 } else { l as u8 })
                .collect())
        }
    }
}

pub(super) fn dice_bin(d: f64) -> usize {
    ((d * DICE_BINS as f64) as usize).min(DICE_BINS - 1)
}

pub(super) fn hd_bin(h: f64) -> usize {
    HD_EDGES
        .windows(2)
        .position(|w| h >= w[0] && h < w[1])
        .unwrap_or(HD_EDGES.len() - 2)
}

pub(super) fn seg_quality(
    consensus: &SegConsensus,
    hd95: bool,
    data: &LocalData,
) -> Result<Vec<u128>, EmError> {
    use rayon::prelude::*;
    let (n_raters, n_labels, cases, _) =
        data.segmentation("segmentation metrics need segmentations")?;
    let dim = seg_quality_dim(n_raters);
    // Cases on every core, one case's masks per worker at a time; integer cells add up to the
    // same sums in any order.
    cases
        .par_iter()
        .map(|case| case_quality(consensus, hd95, n_labels, case, dim))
        .try_reduce(
            || vec![0u128; dim],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                Ok(a)
            },
        )
}

/// One case's quality cells of every reader, at their places in a vector of `dim` cells.
fn case_quality(
    consensus: &SegConsensus,
    hd95: bool,
    n_labels: usize,
    case: &SegCase,
    dim: usize,
) -> Result<Vec<u128>, EmError> {
    let mut v = vec![0u128; dim];
    let masks = case.masks();
    let truth = consensus_of(consensus, case.dims, &masks, n_labels)?;
    let grid = case.grid();
    for (r, labels) in &masks {
        let cells = reader_quality(&truth, labels, hd95.then_some(&grid))?;
        let base = r * SEG_QUALITY_PER_READER;
        for (i, x) in cells.into_iter().enumerate() {
            if let Some(c) = v.get_mut(base + i) {
                *c += x;
            }
        }
    }
    Ok(v)
}

/// One reader's quality cells for one case ([`SEG_QUALITY_PER_READER`] of them, in layout
/// order); the HD95 cells only with a grid.
fn reader_quality(
    truth: &[u8],
    labels: &[u8],
    grid: Option<&Grid>,
) -> Result<[u128; SEG_QUALITY_PER_READER], EmError> {
    let mut cells = [0u128; SEG_QUALITY_PER_READER];
    let (mut tp, mut fp, mut fneg, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for (&t, &x) in truth.iter().zip(labels) {
        match (t != 0, x != 0) {
            (true, true) if t == x => tp += 1,
            (true, true) => {
                fp += 1;
                fneg += 1;
            }
            (false, true) => fp += 1,
            (true, false) => fneg += 1,
            (false, false) => tn += 1,
        }
    }
    let mut add = |i: usize, x: u128| {
        if let Some(c) = cells.get_mut(i) {
            *c += x;
        }
    };
    add(0, 1);
    add(1, u128::from(tp));
    add(2, u128::from(fp));
    add(3, u128::from(fneg));
    add(4, u128::from(tn));
    let den = 2 * tp + fp + fneg;
    if den > 0 {
        let d = (2 * tp) as f64 / den as f64;
        add(5, u128::from(quantize_unit(d)));
        add(6, u128::from(quantize_unit(d * d)));
        add(7, 1);
        add(8 + dice_bin(d), 1);
    }
    if let Some(grid) = grid {
        let slot = 8 + DICE_BINS;
        let truth_fg = |x: u8| x != 0;
        let (a, b) =
            surface::surface_distances(truth, labels, grid, truth_fg, Definition::SurfaceDistance)?;
        let m = surface::summarize(&a, &b, Definition::SurfaceDistance, 1.0);
        if m.hd95.is_finite() {
            add(slot + hd_bin(m.hd95), 1);
        } else {
            add(slot + HD_EDGES.len() - 1, 1);
        }
    }
    Ok(cells)
}

/// Per-unit Dawid–Skene consensus labels under `params` (ties and unrated units: `None`).
pub fn ds_labels(params: &DsParams, ratings: &Ratings) -> Result<Vec<Option<u32>>, EmError> {
    let k = params.k;
    let post = dawid_skene::posteriors(params, ratings)?;
    Ok(post
        .chunks(k.max(1))
        .zip(ratings.rows())
        .map(|(p, row)| {
            if row.iter().all(Option::is_none) {
                None
            } else {
                unique_argmax(p).map(|i| i as u32)
            }
        })
        .collect())
}

pub(super) fn label_quality(params: &DsParams, ratings: &Ratings) -> Result<Vec<u128>, EmError> {
    let (r, k) = (ratings.n_raters(), ratings.n_categories());
    let labels = ds_labels(params, ratings)?;
    let mut confusion = vec![0u128; r * k * k];
    let mut consensus_counts = vec![0u128; k];
    for (row, label) in ratings.rows().zip(&labels) {
        let Some(t) = label else { continue };
        if let Some(c) = consensus_counts.get_mut(*t as usize) {
            *c += 1;
        }
        for (ri, cell) in row.iter().enumerate() {
            if let Some(g) = cell
                && let Some(c) = confusion.get_mut(ri * k * k + *t as usize * k + *g as usize)
            {
                *c += 1;
            }
        }
    }
    let mut v = confusion;
    v.extend(consensus_counts);
    v.extend(agreement_words(&AgreementStats::from_ratings(ratings)));
    Ok(v)
}
