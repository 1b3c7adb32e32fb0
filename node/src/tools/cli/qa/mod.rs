//! The offline QA commands of DESIGN.md §9: `metrics seg`, `metrics agreement`,
//! `consensus staple`, `consensus multilabel` and `consensus labels`.
//!
//! Owns the file side of the quality engine: reading masks (NIfTI) and ratings (CSV), checking
//! that masks share one grid, walking `--readers-dir` trees, pooling their cases into one EM,
//! writing `--out` maps, and printing the §9 JSON (non-finite numbers as the strings "NaN",
//! "Infinity", "-Infinity"). The numbers themselves come from `fedanno_stats`; nothing here
//! computes a statistic. Exit codes: 0 ok, 1 failure (unreadable or inconsistent input), 2 usage
//! (bad arguments). Masks are NIfTI or DICOM SEG; SEGs given without their source series are
//! placed on the grid their frames span (`dicom::seg::common_grid`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::annotations::interchange::masks::looks_like_dicom;
use crate::annotations::nifti::{self, NiftiImage, NiftiLimits, VoxelData};
use fedanno_stats::agreement::agreement;
use fedanno_stats::dawid_skene::{DsOptions, dawid_skene};
use fedanno_stats::majority::majority_vote;
use fedanno_stats::multilabel::{
    LabelPatternHistogram, MultiLabelOptions, label_map, multilabel_staple,
};
use fedanno_stats::ratings::{LabeledRatings, RatingsError, default_categories};
use fedanno_stats::staple::{
    PatternHistogram, StapleOptions, StapleParams, StapleResult, probability_map_f32,
    probability_map_from_votes, staple,
};
use fedanno_stats::surface::{Definition, Grid, seg_metrics};

mod masks;
mod ratings;
use masks::*;
use ratings::*;

/// `fedanno metrics …`.
#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Overlap and surface metrics of a TEST mask against a REF mask (NIfTI, one grid).
    Seg {
        /// Reference mask (ground truth), `.nii` or `.nii.gz`.
        reference: PathBuf,
        /// Test mask (prediction), on the same grid as the reference.
        test: PathBuf,
        /// Foreground is this label (default: every non-zero voxel).
        #[arg(long)]
        label: Option<u8>,
        /// Surface-distance definition for Hausdorff, HD95 and ASSD.
        #[arg(long, alias = "hd95", value_enum, default_value = "surface-distance")]
        definition: DefinitionArg,
        /// Surface Dice tolerance in mm (surface-distance definition only).
        #[arg(long, default_value_t = 1.0)]
        tolerance_mm: f64,
        #[arg(long)]
        json: bool,
    },
    /// Percent agreement, pairwise Cohen's kappas, Fleiss' kappa and Krippendorff's alpha of
    /// categorical ratings (CSV with the header `unit,rater,value`).
    Agreement {
        ratings: PathBuf,
        /// The ordered categories, comma-separated (default: the sorted distinct values).
        #[arg(long, value_delimiter = ',')]
        categories: Option<Vec<String>>,
        #[arg(long)]
        json: bool,
    },
}

/// `fedanno consensus …`.
#[derive(Debug, Subcommand)]
pub enum ConsensusCommand {
    /// Binary STAPLE (ITK STAPLEImageFilter semantics) of rater masks.
    Staple {
        /// Rater masks (NIfTI), all on one grid.
        raters: Vec<PathBuf>,
        /// Pool every case of DIR/<reader>/<case>.nii.gz into one EM (repeatable); a reader
        /// without a mask for a case is a missing decision.
        #[arg(long = "readers-dir", value_name = "DIR")]
        readers_dir: Vec<PathBuf>,
        /// The foreground value V (a voxel votes foreground when it equals V).
        #[arg(long, default_value = "1", value_parser = parse_label_value)]
        foreground: u8,
        /// Write the probability map (float32 NIfTI on the input grid); with --readers-dir, a
        /// directory that receives one <case>.nii.gz per case.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Multi-label STAPLE (ITK MultiLabelSTAPLEImageFilter semantics) of label maps.
    Multilabel {
        /// Rater label maps (NIfTI, labels 0..L-1), all on one grid.
        raters: Vec<PathBuf>,
        /// Pool every case of DIR/<reader>/<case>.nii.gz into one EM (repeatable); every
        /// reader must have a mask for every case.
        #[arg(long = "readers-dir", value_name = "DIR")]
        readers_dir: Vec<PathBuf>,
        /// Write the consensus label map (uint8 NIfTI; label L marks undecided voxels); with
        /// --readers-dir, a directory that receives one <case>.nii.gz per case.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Consensus labels of categorical ratings (CSV with the header `unit,rater,value`).
    Labels {
        ratings: PathBuf,
        #[arg(long, value_enum, default_value = "dawid-skene")]
        method: LabelMethod,
        /// The ordered categories, comma-separated (default: the sorted distinct values).
        #[arg(long, value_delimiter = ',')]
        categories: Option<Vec<String>>,
        #[arg(long)]
        json: bool,
    },
}

/// `--definition` of `metrics seg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DefinitionArg {
    /// DeepMind surface-distance: surfels, area-weighted percentiles (the default).
    SurfaceDistance,
    /// MedPy: border voxels, pooled linear percentile.
    Medpy,
    /// MONAI: border voxels, max of the directed linear percentiles.
    Monai,
}

impl From<DefinitionArg> for Definition {
    fn from(d: DefinitionArg) -> Self {
        match d {
            DefinitionArg::SurfaceDistance => Definition::SurfaceDistance,
            DefinitionArg::Medpy => Definition::Medpy,
            DefinitionArg::Monai => Definition::Monai,
        }
    }
}

/// `--method` of `consensus labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabelMethod {
    /// Dawid–Skene EM (soft majority-vote start, 1e-10 convergence).
    DawidSkene,
    /// Majority vote; ties are undecided (null).
    Majority,
}

/// A usage error found after parsing (exit code 2).
#[derive(Debug)]
struct Usage(String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// Runs a `metrics` command.
pub async fn run_metrics(what: MetricsCommand) -> Result<ExitCode> {
    finish(blocking(move || metrics(what)).await)
}

/// Runs a `consensus` command.
pub async fn run_consensus(what: ConsensusCommand) -> Result<ExitCode> {
    finish(blocking(move || consensus(what)).await)
}

/// Runs CPU-bound work off the runtime's workers.
async fn blocking(f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the computation stopped unexpectedly")?
}

/// Maps a usage error to exit code 2; other errors go to the caller (exit code 1).
fn finish(r: Result<()>) -> Result<ExitCode> {
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is::<Usage>() => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}

fn metrics(what: MetricsCommand) -> Result<()> {
    match what {
        MetricsCommand::Seg {
            reference,
            test,
            label,
            definition,
            tolerance_mm,
            json,
        } => seg(
            &reference,
            &test,
            label,
            definition.into(),
            tolerance_mm,
            json,
        ),
        MetricsCommand::Agreement {
            ratings,
            categories,
            json,
        } => agreement_cmd(&ratings, categories, json),
    }
}

fn consensus(what: ConsensusCommand) -> Result<()> {
    match what {
        ConsensusCommand::Staple {
            raters,
            readers_dir,
            foreground,
            out,
            json,
        } => {
            let input = MaskInput::new(raters, readers_dir)?;
            staple_cmd(&input, foreground, out.as_deref(), json)
        }
        ConsensusCommand::Multilabel {
            raters,
            readers_dir,
            out,
            json,
        } => {
            let input = MaskInput::new(raters, readers_dir)?;
            multilabel_cmd(&input, out.as_deref(), json)
        }
        ConsensusCommand::Labels {
            ratings,
            method,
            categories,
            json,
        } => labels_cmd(&ratings, method, categories, json),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// A number for §9 JSON: non-finite values become "NaN", "Infinity" or "-Infinity".
pub fn num(x: f64) -> Value {
    if x.is_nan() {
        Value::String("NaN".into())
    } else if x == f64::INFINITY {
        Value::String("Infinity".into())
    } else if x == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        json!(x)
    }
}

fn nums(xs: &[f64]) -> Value {
    Value::Array(xs.iter().map(|&x| num(x)).collect())
}

fn matrix(rows: &[Vec<f64>]) -> Value {
    Value::Array(rows.iter().map(|r| nums(r)).collect())
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A number for human output.
fn show(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        format!("{x}")
    }
}

// ---------------------------------------------------------------------------------------------
// metrics seg
// ---------------------------------------------------------------------------------------------

fn seg(
    reference: &Path,
    test: &Path,
    label: Option<u8>,
    definition: Definition,
    tolerance_mm: f64,
    json: bool,
) -> Result<()> {
    if !(tolerance_mm.is_finite() && tolerance_mm >= 0.0) {
        return Err(usage("--tolerance-mm must be a finite number >= 0"));
    }
    let mut pair = read_masks(&[reference.to_path_buf(), test.to_path_buf()])?.into_iter();
    let (Some(a), Some(b)) = (pair.next(), pair.next()) else {
        bail!("two masks are needed");
    };
    a.check_same_grid(&b, &|| {
        format!(
            "{} is not on the grid of {}",
            test.display(),
            reference.display()
        )
    })?;
    let grid = a.grid();
    let m = match label {
        Some(l) => seg_metrics(
            &a.labels,
            &b.labels,
            &grid,
            |v| v == l,
            definition,
            tolerance_mm,
        ),
        None => seg_metrics(
            &a.labels,
            &b.labels,
            &grid,
            |v| v != 0,
            definition,
            tolerance_mm,
        ),
    }?;
    let s = &m.surface;
    let out = json!({
        "ref_voxels": m.overlap.ref_voxels,
        "test_voxels": m.overlap.test_voxels,
        "intersection": m.overlap.intersection,
        "dice": num(m.dice),
        "jaccard": num(m.jaccard),
        "volume_similarity": num(m.volume_similarity),
        "definition": definition.as_str(),
        "hausdorff": num(s.hausdorff),
        "hd95": num(s.hd95),
        "assd": num(s.assd),
        "surface_dice": s.surface_dice.map_or(Value::Null, num),
    });
    if json {
        return print_json(&out);
    }
    println!(
        "voxels: reference {}, test {}, intersection {}",
        m.overlap.ref_voxels, m.overlap.test_voxels, m.overlap.intersection
    );
    println!(
        "Dice {}  Jaccard {}  volume similarity {}",
        show(m.dice),
        show(m.jaccard),
        show(m.volume_similarity)
    );
    println!(
        "{} definition: Hausdorff {} mm  HD95 {} mm  ASSD {} mm",
        definition.as_str(),
        show(s.hausdorff),
        show(s.hd95),
        show(s.assd)
    );
    if let Some(sd) = s.surface_dice {
        println!("surface Dice at {tolerance_mm} mm: {}", show(sd));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// consensus staple
// ---------------------------------------------------------------------------------------------

/// Per-voxel vote masks (bit r: rater r voted foreground), one byte per voxel up to 8 raters,
/// two up to 16: how binary STAPLE holds R masks in the memory of one or two.
enum Votes {
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
}

/// Reads rater masks one at a time, folding each into vote masks before the next is read, so
/// that one mask and the votes are in memory. Returns the first mask's grid (without labels).
/// `what(r)` names rater r's mask in a grid error.
fn read_votes(paths: &[&Path], fg: u8, what: &dyn Fn(usize) -> String) -> Result<(Mask, Votes)> {
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
        let v = votes.get_or_insert_with(|| {
            if paths.len() <= 8 {
                Votes::U8(vec![0; n])
            } else {
                Votes::U16(vec![0; n])
            }
        });
        match v {
            Votes::U8(v) => {
                for (o, &x) in v.iter_mut().zip(&m.labels) {
                    *o |= u8::from(x == fg) << r;
                }
            }
            Votes::U16(v) => {
                for (o, &x) in v.iter_mut().zip(&m.labels) {
                    *o |= u16::from(x == fg) << r;
                }
            }
        }
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

fn staple_cmd(input: &MaskInput, fg: u8, out: Option<&Path>, json: bool) -> Result<()> {
    let (names, result, cases) = match input {
        MaskInput::Files(paths) if paths.len() <= MAX_VOTE_RATERS => {
            let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            let what = |r: usize| {
                format!(
                    "{} is not on the grid of {}",
                    refs.get(r)
                        .map_or_else(String::new, |p| p.display().to_string()),
                    refs.first()
                        .map_or_else(String::new, |p| p.display().to_string())
                )
            };
            let (grid, votes) = read_votes(&refs, fg, &what)?;
            let result = staple(&votes.histogram(paths.len())?, &StapleOptions::default())?;
            if let Some(out) = out {
                let map = votes.probabilities(&result.params)?;
                drop(votes);
                let img = grid.image(VoxelData::F32(map))?;
                nifti::write_file(out, &img)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            let names = paths.iter().map(|p| p.display().to_string()).collect();
            (names, result, None)
        }
        MaskInput::Files(paths) => {
            let masks = read_masks(paths)?;
            let refs: Vec<&[u8]> = masks.iter().map(|m| m.labels.as_slice()).collect();
            let hist = PatternHistogram::from_raters(&refs, fg, None)?;
            let result = staple(&hist, &StapleOptions::default())?;
            if let (Some(out), Some(first)) = (out, masks.first()) {
                let map = probability_map_f32(&refs, fg, None, &result.params)?;
                let img = first.image(VoxelData::F32(map))?;
                nifti::write_file(out, &img)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            let names = paths.iter().map(|p| p.display().to_string()).collect();
            (names, result, None)
        }
        MaskInput::Readers(corpus) => {
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
                    let refs: Vec<&[u8]> = masks.iter().map(|m| m.labels.as_slice()).collect();
                    PatternHistogram::from_raters(&refs, fg, None)?
                };
                pooled.merge(&h.embed(&positions, n)?)?;
            }
            let result = staple(&pooled, &StapleOptions::default())?;
            if let Some(out) = out {
                write_case_probabilities(corpus, fg, &result.params, out)?;
            }
            (corpus.readers.clone(), result, Some(corpus.cases.len()))
        }
    };
    print_staple(&names, &result, cases, json)
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
        let img = if case.masks.len() <= MAX_VOTE_RATERS {
            let (grid, votes) = corpus.read_case_votes(case, fg)?;
            let map = votes.probabilities(&local)?;
            drop(votes);
            grid.image(VoxelData::F32(map))?
        } else {
            let masks = corpus.read_case(case)?;
            let refs: Vec<&[u8]> = masks.iter().map(|m| m.labels.as_slice()).collect();
            let map = probability_map_f32(&refs, fg, None, &local)?;
            let Some(first) = masks.first() else { continue };
            first.image(VoxelData::F32(map))?
        };
        nifti::write_file(&path, &img).with_context(|| format!("writing {}", path.display()))?;
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
    if json {
        let mut out = json!({
            "raters": names,
            "prior": num(p.prior),
            "sensitivity": nums(&p.sensitivity),
            "specificity": nums(&p.specificity),
            "iterations": r.iterations,
            "voxels_ge_half": r.voxels_ge_half,
            "probability_sum": num(r.probability_sum),
        });
        if let (Some(n), Some(obj)) = (cases, out.as_object_mut()) {
            obj.insert("cases".into(), json!(n));
        }
        return print_json(&out);
    }
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
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// consensus multilabel
// ---------------------------------------------------------------------------------------------

fn multilabel_cmd(input: &MaskInput, out: Option<&Path>, json: bool) -> Result<()> {
    let opts = MultiLabelOptions::default();
    let (names, hist, result, cases) = match input {
        MaskInput::Files(paths) => {
            let masks = read_masks(paths)?;
            let refs: Vec<&[u8]> = masks.iter().map(|m| m.labels.as_slice()).collect();
            let hist = LabelPatternHistogram::from_raters(&refs, None)?;
            let result = multilabel_staple(&hist, &opts)?;
            if let (Some(out), Some(first)) = (out, masks.first()) {
                let map = label_map(&refs, &hist, &result)?;
                let img = first.image(label_data(map, result.n_labels))?;
                nifti::write_file(out, &img)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            let names = paths.iter().map(|p| p.display().to_string()).collect();
            (names, hist, result, None)
        }
        MaskInput::Readers(corpus) => {
            let n = corpus.readers.len();
            let mut per_case = Vec::with_capacity(corpus.cases.len());
            for case in &corpus.cases {
                if case.masks.len() != n {
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
                    );
                }
                let masks = corpus.read_case(case)?;
                let refs: Vec<&[u8]> = masks.iter().map(|m| m.labels.as_slice()).collect();
                per_case.push(LabelPatternHistogram::from_raters(&refs, None)?);
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
            let result = multilabel_staple(&hist, &opts)?;
            if let Some(out) = out {
                let paths = corpus.out_paths(out)?;
                for (case, path) in corpus.cases.iter().zip(paths) {
                    let masks = corpus.read_case(case)?;
                    let refs: Vec<&[u8]> = masks.iter().map(|m| m.labels.as_slice()).collect();
                    let map = label_map(&refs, &hist, &result)?;
                    let Some(first) = masks.first() else { continue };
                    let img = first.image(label_data(map, result.n_labels))?;
                    nifti::write_file(&path, &img)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            (
                corpus.readers.clone(),
                hist,
                result,
                Some(corpus.cases.len()),
            )
        }
    };
    let confusion: Vec<Value> = (0..hist.n_raters)
        .map(|r| matrix(&result.params.rater_matrix(r)))
        .collect();
    if json {
        let mut v = json!({
            "raters": names,
            "labels": result.n_labels,
            "priors": nums(&result.priors),
            "confusion": confusion,
            "iterations": result.iterations,
            "label_counts": result.label_counts,
        });
        if let (Some(n), Some(obj)) = (cases, v.as_object_mut()) {
            obj.insert("cases".into(), json!(n));
        }
        return print_json(&v);
    }
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
    Ok(())
}

/// A label map as uint8 when it fits (labels ≤ 255), else uint16.
fn label_data(map: Vec<u32>, n_labels: usize) -> VoxelData {
    if n_labels <= usize::from(u8::MAX) {
        VoxelData::U8(map.into_iter().map(|v| v.min(255) as u8).collect())
    } else {
        VoxelData::U16(map.into_iter().map(|v| v.min(65_535) as u16).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_are_strings() {
        assert_eq!(num(f64::NAN), json!("NaN"));
        assert_eq!(num(f64::INFINITY), json!("Infinity"));
        assert_eq!(num(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(num(0.25), json!(0.25));
    }

    #[test]
    fn csv_fields_with_quotes() {
        assert_eq!(
            split_csv_line(r#"u1,"Dr. ""A"", MD",2"#).expect("valid"),
            vec!["u1", r#"Dr. "A", MD"#, "2"]
        );
        assert_eq!(split_csv_line("a,,b").expect("valid"), vec!["a", "", "b"]);
        assert!(split_csv_line(r#"a,"b"#).is_err());
        assert!(split_csv_line(r#"a,b"c"#).is_err());
    }

    #[test]
    fn label_values_must_be_whole_bytes() {
        assert_eq!(parse_label_value("1"), Ok(1));
        assert_eq!(parse_label_value("2.0"), Ok(2));
        assert!(parse_label_value("1.5").is_err());
        assert!(parse_label_value("256").is_err());
        assert!(parse_label_value("x").is_err());
    }
}
