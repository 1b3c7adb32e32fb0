//! `consensus multilabel`: multi-label STAPLE of label maps given as files or as
//! `--readers-dir` corpora (every reader on every case), with the consensus label maps written
//! to `--out`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use fedanno_stats::multilabel::{
    LabelPatternHistogram, MultiLabelOptions, MultiLabelResult, label_map, multilabel_staple,
};
use serde_json::{Value, json};

use super::masks::{Case, MaskInput, ReaderCorpus, label_slices, read_masks, write_image};
use super::{matrix, nums, show, with_cases};
use crate::annotations::nifti::VoxelData;
use crate::tools::cli::emit;

pub(super) fn multilabel_cmd(input: &MaskInput, out: Option<&Path>, json: bool) -> Result<()> {
    let (names, hist, result, cases) = match input {
        MaskInput::Files(paths) => {
            let (hist, result) = multilabel_files(paths, out)?;
            let names = paths.iter().map(|p| p.display().to_string()).collect();
            (names, hist, result, None)
        }
        MaskInput::Readers(corpus) => {
            let (hist, result) = multilabel_corpus(corpus, out)?;
            let cases = Some(corpus.cases.len());
            (corpus.readers.clone(), hist, result, cases)
        }
    };
    let confusion: Vec<Value> = (0..hist.n_raters)
        .map(|r| matrix(&result.params.rater_matrix(r)))
        .collect();
    let v = json!({
        "raters": names,
        "labels": result.n_labels,
        "priors": nums(&result.priors),
        "confusion": confusion,
        "iterations": result.iterations,
        "label_counts": result.label_counts,
    });
    emit(json, &with_cases(v, cases), |_| {
        print_multilabel(&names, &result)
    })
}

fn multilabel_files(
    paths: &[PathBuf],
    out: Option<&Path>,
) -> Result<(LabelPatternHistogram, MultiLabelResult)> {
    let masks = read_masks(paths)?;
    let refs = label_slices(&masks);
    let hist = LabelPatternHistogram::from_raters(&refs, None)?;
    let result = multilabel_staple(&hist, &MultiLabelOptions::default())?;
    if let (Some(out), Some(first)) = (out, masks.first()) {
        let map = label_map(&refs, &hist, &result)?;
        write_image(out, first, label_data(map, result.n_labels))?;
    }
    Ok((hist, result))
}

/// One EM pooled over every case of a readers corpus, on the largest label count of any case.
fn multilabel_corpus(
    corpus: &ReaderCorpus,
    out: Option<&Path>,
) -> Result<(LabelPatternHistogram, MultiLabelResult)> {
    let mut per_case = Vec::with_capacity(corpus.cases.len());
    for case in &corpus.cases {
        require_every_reader(corpus, case)?;
        let masks = corpus.read_case(case)?;
        per_case.push(LabelPatternHistogram::from_raters(
            &label_slices(&masks),
            None,
        )?);
    }
    let labels = per_case.iter().map(|h| h.n_labels).max().unwrap_or(1);
    let mut pooled: Option<LabelPatternHistogram> = None;
    for h in per_case {
        let h = h.with_label_count(labels)?;
        match pooled.as_mut() {
            Some(p) => p.merge(&h)?,
            None => pooled = Some(h),
        }
    }
    let Some(hist) = pooled else {
        bail!("no cases found");
    };
    let result = multilabel_staple(&hist, &MultiLabelOptions::default())?;
    if let Some(out) = out {
        let paths = corpus.out_paths(out)?;
        for (case, path) in corpus.cases.iter().zip(paths) {
            let masks = corpus.read_case(case)?;
            let map = label_map(&label_slices(&masks), &hist, &result)?;
            let Some(first) = masks.first() else { continue };
            write_image(&path, first, label_data(map, result.n_labels))?;
        }
    }
    Ok((hist, result))
}

/// Multi-label STAPLE has no missing decisions: every reader must have a mask for the case.
fn require_every_reader(corpus: &ReaderCorpus, case: &Case) -> Result<()> {
    if case.masks.len() == corpus.readers.len() {
        return Ok(());
    }
    let missing: Vec<&str> = corpus
        .readers
        .iter()
        .enumerate()
        .filter(|(i, _)| !case.masks.iter().any(|m| m.0 == *i))
        .map(|(_, r)| r.as_str())
        .collect();
    bail!(
        "case {}: no mask from reader(s) {}; multi-label STAPLE needs every \
         reader on every case (binary `consensus staple` accepts missing readers)",
        case.name,
        missing.join(", ")
    )
}

fn print_multilabel(names: &[String], result: &MultiLabelResult) {
    println!(
        "multi-label STAPLE: {} labels, {} iterations{}",
        result.n_labels,
        result.iterations,
        if result.converged {
            ""
        } else {
            " (not converged)"
        }
    );
    let priors: Vec<String> = result.priors.iter().map(|&p| show(p)).collect();
    println!("priors: {}", priors.join(" "));
    println!(
        "voxels per output label (last = undecided): {:?}",
        result.label_counts
    );
    for (r, name) in names.iter().enumerate() {
        let m = result.params.rater_matrix(r);
        let diag: Vec<String> = (0..result.n_labels)
            .map(|c| show(m.get(c).and_then(|row| row.get(c)).copied().unwrap_or(0.0)))
            .collect();
        println!("{name}: P(given = true) per label {}", diag.join(" "));
    }
}

/// A label map as uint8 when it fits (labels ≤ 255), else uint16.
fn label_data(map: Vec<u32>, n_labels: usize) -> VoxelData {
    if n_labels <= usize::from(u8::MAX) {
        VoxelData::U8(map.into_iter().map(|v| v.min(255) as u8).collect())
    } else {
        VoxelData::U16(map.into_iter().map(|v| v.min(65_535) as u16).collect())
    }
}
