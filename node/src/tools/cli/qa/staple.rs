//! `consensus staple`: binary STAPLE of rater masks given as files (held as per-voxel vote
//! masks up to 16 raters) or as `--readers-dir` corpora (one EM pooled over every case), with
//! the probability maps written to `--out`.

use std::ops::{BitOrAssign, Shl};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedanno_stats::staple::{
    PatternHistogram, StapleOptions, StapleParams, StapleResult, probability_map_f32,
    probability_map_from_votes, staple,
};
use serde_json::json;

use super::masks::{Mask, MaskInput, ReaderCorpus, label_slices, read_masks, write_image};
use super::{num, nums, show, with_cases};
use crate::annotations::interchange::segfile::looks_like_dicom;
use crate::annotations::nifti::VoxelData;
use crate::tools::cli::emit;

/// Per-voxel vote masks (bit r: rater r voted foreground), one byte per voxel up to 8 raters,
/// two up to 16: how binary STAPLE holds R masks in the memory of one or two.
pub(super) enum Votes {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// Most raters held as vote masks; more fall back to holding every mask.
const MAX_VOTE_RATERS: usize = 16;

impl Votes {
    fn histogram(&self, n_raters: usize) -> Result<PatternHistogram> {
        Ok(match self {
            Votes::U8(v) => PatternHistogram::from_vote_masks(v, n_raters)?,
            Votes::U16(v) => PatternHistogram::from_vote_masks(v, n_raters)?,
        })
    }

    fn probabilities(&self, params: &StapleParams) -> Result<Vec<f32>> {
        Ok(match self {
            Votes::U8(v) => probability_map_from_votes(v, params)?,
            Votes::U16(v) => probability_map_from_votes(v, params)?,
        })
    }

    /// Records rater `r`'s foreground votes.
    fn add(&mut self, r: usize, labels: &[u8], fg: u8) {
        match self {
            Votes::U8(v) => add_votes(v, r, labels, fg),
            Votes::U16(v) => add_votes(v, r, labels, fg),
        }
    }
}

fn add_votes<T>(votes: &mut [T], r: usize, labels: &[u8], fg: u8)
where
    T: From<bool> + Shl<usize, Output = T> + BitOrAssign,
{
    for (o, &x) in votes.iter_mut().zip(labels) {
        *o |= T::from(x == fg) << r;
    }
}

/// Reads rater masks one at a time, folding each into vote masks before the next is read, so
/// that one mask and the votes are in memory. Returns the first mask's grid (without labels).
/// `what(r)` names rater r's mask in a grid error.
pub(super) fn read_votes(
    paths: &[&Path],
    fg: u8,
    what: &dyn Fn(usize) -> String,
) -> Result<(Mask, Votes)> {
    let mut grid: Option<Mask> = None;
    let mut votes: Option<Votes> = None;
    // DICOM SEGs are placed on one grid together; NIfTI masks are read one at a time.
    let mut segs = if paths.iter().any(|p| looks_like_dicom(p)) {
        Some(read_masks(&paths.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>())?.into_iter())
    } else {
        None
    };
    for (r, path) in paths.iter().enumerate() {
        let m = match segs.as_mut() {
            Some(it) => it.next().context("a mask is missing")?,
            None => Mask::read(path)?,
        };
        if let Some(g) = &grid {
            g.check_same_grid(&m, &|| what(r))?;
        }
        let n = m.labels.len();
        votes
            .get_or_insert_with(|| {
                if paths.len() <= 8 {
                    Votes::U8(vec![0; n])
                } else {
                    Votes::U16(vec![0; n])
                }
            })
            .add(r, &m.labels, fg);
        if grid.is_none() {
            grid = Some(Mask {
                labels: Vec::new(),
                ..m
            });
        }
    }
    match (grid, votes) {
        (Some(g), Some(v)) => Ok((g, v)),
        _ => bail!("no rater masks"),
    }
}

pub(super) fn staple_cmd(input: &MaskInput, fg: u8, out: Option<&Path>, json: bool) -> Result<()> {
    let (names, result, cases) = match input {
        MaskInput::Files(paths) => {
            let result = if paths.len() <= MAX_VOTE_RATERS {
                staple_votes(paths, fg, out)?
            } else {
                staple_masks(paths, fg, out)?
            };
            let names = paths.iter().map(|p| p.display().to_string()).collect();
            (names, result, None)
        }
        MaskInput::Readers(corpus) => {
            let result = staple_corpus(corpus, fg, out)?;
            (corpus.readers.clone(), result, Some(corpus.cases.len()))
        }
    };
    print_staple(&names, &result, cases, json)
}

/// STAPLE of up to [`MAX_VOTE_RATERS`] mask files, held as vote masks.
fn staple_votes(paths: &[PathBuf], fg: u8, out: Option<&Path>) -> Result<StapleResult> {
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let shown = |r: usize| {
        refs.get(r)
            .map_or_else(String::new, |p| p.display().to_string())
    };
    let what = |r: usize| format!("{} is not on the grid of {}", shown(r), shown(0));
    let (grid, votes) = read_votes(&refs, fg, &what)?;
    let result = staple(&votes.histogram(paths.len())?, &StapleOptions::default())?;
    if let Some(out) = out {
        let map = votes.probabilities(&result.params)?;
        drop(votes);
        write_image(out, &grid, VoxelData::F32(map))?;
    }
    Ok(result)
}

/// STAPLE of more mask files than vote masks hold: every mask in memory.
fn staple_masks(paths: &[PathBuf], fg: u8, out: Option<&Path>) -> Result<StapleResult> {
    let masks = read_masks(paths)?;
    let refs = label_slices(&masks);
    let hist = PatternHistogram::from_raters(&refs, fg, None)?;
    let result = staple(&hist, &StapleOptions::default())?;
    if let (Some(out), Some(first)) = (out, masks.first()) {
        let map = probability_map_f32(&refs, fg, None, &result.params)?;
        write_image(out, first, VoxelData::F32(map))?;
    }
    Ok(result)
}

/// One EM pooled over every case of a readers corpus; a reader without a mask for a case is a
/// missing decision.
fn staple_corpus(corpus: &ReaderCorpus, fg: u8, out: Option<&Path>) -> Result<StapleResult> {
    let n = corpus.readers.len();
    let mut pooled = PatternHistogram {
        n_raters: n,
        patterns: Vec::new(),
    };
    for case in &corpus.cases {
        let positions: Vec<usize> = case.masks.iter().map(|m| m.0).collect();
        let h = if case.masks.len() <= MAX_VOTE_RATERS {
            let (_, votes) = corpus.read_case_votes(case, fg)?;
            votes.histogram(case.masks.len())?
        } else {
            let masks = corpus.read_case(case)?;
            PatternHistogram::from_raters(&label_slices(&masks), fg, None)?
        };
        pooled.merge(&h.embed(&positions, n)?)?;
    }
    let result = staple(&pooled, &StapleOptions::default())?;
    if let Some(out) = out {
        write_case_probabilities(corpus, fg, &result.params, out)?;
    }
    Ok(result)
}

/// Writes `<out>/<case>.nii.gz` probability maps, one case in memory at a time.
fn write_case_probabilities(
    corpus: &ReaderCorpus,
    fg: u8,
    params: &StapleParams,
    out: &Path,
) -> Result<()> {
    let paths = corpus.out_paths(out)?;
    for (case, path) in corpus.cases.iter().zip(paths) {
        let pick = |v: &[f64]| -> Vec<f64> {
            case.masks
                .iter()
                .map(|&(r, _)| v.get(r).copied().unwrap_or(f64::NAN))
                .collect()
        };
        let local = StapleParams {
            prior: params.prior,
            sensitivity: pick(&params.sensitivity),
            specificity: pick(&params.specificity),
        };
        if case.masks.len() <= MAX_VOTE_RATERS {
            let (grid, votes) = corpus.read_case_votes(case, fg)?;
            let map = votes.probabilities(&local)?;
            drop(votes);
            write_image(&path, &grid, VoxelData::F32(map))?;
        } else {
            let masks = corpus.read_case(case)?;
            let map = probability_map_f32(&label_slices(&masks), fg, None, &local)?;
            let Some(first) = masks.first() else { continue };
            write_image(&path, first, VoxelData::F32(map))?;
        }
    }
    Ok(())
}

fn print_staple(
    names: &[String],
    r: &StapleResult,
    cases: Option<usize>,
    json: bool,
) -> Result<()> {
    let p = &r.params;
    let out = json!({
        "raters": names,
        "prior": num(p.prior),
        "sensitivity": nums(&p.sensitivity),
        "specificity": nums(&p.specificity),
        "iterations": r.iterations,
        "voxels_ge_half": r.voxels_ge_half,
        "probability_sum": num(r.probability_sum),
    });
    emit(json, &with_cases(out, cases), |_| {
        println!(
            "STAPLE: prior {}, {} iterations{}, {} voxels with W >= 0.5, sum of W {}",
            show(p.prior),
            r.iterations,
            if r.converged { "" } else { " (not converged)" },
            r.voxels_ge_half,
            show(r.probability_sum)
        );
        println!(
            "{:<40} {:>12} {:>12}",
            "RATER", "SENSITIVITY", "SPECIFICITY"
        );
        for (i, name) in names.iter().enumerate() {
            let s = p.sensitivity.get(i).copied().unwrap_or(f64::NAN);
            let q = p.specificity.get(i).copied().unwrap_or(f64::NAN);
            println!("{name:<40} {:>12} {:>12}", show(s), show(q));
        }
    })
}
