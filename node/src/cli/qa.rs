//! The offline QA commands of DESIGN.md §9: `metrics seg`, `metrics agreement`,
//! `consensus staple`, `consensus multilabel` and `consensus labels`.
//!
//! Owns the file side of the quality engine: reading masks (NIfTI) and ratings (CSV), checking
//! that masks share one grid, walking `--readers-dir` trees, pooling their cases into one EM,
//! writing `--out` maps, and printing the §9 JSON (non-finite numbers as the strings "NaN",
//! "Infinity", "-Infinity"). The numbers themselves come from [`crate::stats`]; nothing here
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

use crate::formats::nifti::{self, NiftiImage, NiftiLimits, VoxelData};
use crate::stats::agreement::agreement;
use crate::stats::dawid_skene::{DsOptions, dawid_skene};
use crate::stats::majority::majority_vote;
use crate::stats::multilabel::{
    LabelPatternHistogram, MultiLabelOptions, label_map, multilabel_staple,
};
use crate::stats::ratings::{LabeledRatings, RatingsError, default_categories};
use crate::stats::staple::{
    PatternHistogram, StapleOptions, StapleParams, StapleResult, probability_map_f32,
    probability_map_from_votes, staple,
};
use crate::stats::surface::{Definition, Grid, seg_metrics};

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
// Masks
// ---------------------------------------------------------------------------------------------

/// A mask read from a NIfTI file, as labels 0..=255.
struct Mask {
    /// nx, ny, nz.
    dim: [usize; 3],
    /// dx, dy, dz (mm).
    pixdim: [f64; 3],
    affine: [[f64; 4]; 4],
    labels: Vec<u8>,
}

impl Mask {
    fn read(path: &Path) -> Result<Self> {
        let img = nifti::read_file(path, &NiftiLimits::default())
            .with_context(|| format!("reading {}", path.display()))?;
        let (dim, pixdim, affine) = (img.dim, img.pixdim, img.affine);
        let labels =
            into_labels(img).with_context(|| format!("{} is not a label mask", path.display()))?;
        Ok(Self {
            dim,
            pixdim,
            affine,
            labels,
        })
    }

    /// The grid in the engine's (z, y, x) order.
    fn grid(&self) -> Grid {
        Grid {
            dims: [self.dim[2], self.dim[1], self.dim[0]],
            spacing: [self.pixdim[2], self.pixdim[1], self.pixdim[0]],
        }
    }

    /// Fails unless `other` lies on the same voxel grid (size, spacing, position).
    fn check_same_grid(&self, other: &Mask, what: &dyn Fn() -> String) -> Result<()> {
        if self.dim != other.dim {
            let [a, b, c] = self.dim;
            let [x, y, z] = other.dim;
            bail!(
                "{}: {x}x{y}x{z} voxels where {a}x{b}x{c} were expected",
                what()
            );
        }
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0);
        if !self
            .pixdim
            .iter()
            .zip(&other.pixdim)
            .all(|(a, b)| close(*a, *b, 1e-5))
        {
            let [a, b, c] = self.pixdim;
            let [x, y, z] = other.pixdim;
            bail!(
                "{}: voxel spacing {x}x{y}x{z} mm where {a}x{b}x{c} mm was expected",
                what()
            );
        }
        if !self
            .affine
            .iter()
            .flatten()
            .zip(other.affine.iter().flatten())
            .all(|(a, b)| close(*a, *b, 1e-4))
        {
            bail!(
                "{}: the voxel grid has another position or orientation (affine)",
                what()
            );
        }
        Ok(())
    }

    /// An image on this mask's grid.
    fn image(&self, data: VoxelData) -> Result<NiftiImage> {
        Ok(NiftiImage::new(self.dim, self.pixdim, self.affine, data)?)
    }
}

/// The voxel values as labels, without copying a uint8 image.
fn into_labels(img: NiftiImage) -> Result<Vec<u8>, nifti::NiftiError> {
    if img.scaling().is_none()
        && img.data.len() == img.voxel_count()
        && let VoxelData::U8(v) = img.data
    {
        return Ok(v);
    }
    img.to_labels_u8()
}

/// Whether a file starts like a DICOM Part 10 file.
fn is_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b[128..132] == b"DICM"
}

/// DICOM SEG masks, read without their source series: placed on the common grid of their frame
/// positions (`dicom::seg::common_grid`), each as a label map whose values are the segment
/// numbers.
fn read_seg_masks(paths: &[PathBuf]) -> Result<Vec<Mask>> {
    use crate::dicom::seg;
    let segs = paths
        .iter()
        .map(|p| {
            seg::read_seg(p, &seg::SegLimits::default())
                .with_context(|| format!("reading {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let (grid, slices) = seg::common_grid(&segs).context("placing the SEG frames on one grid")?;
    let affine = crate::dicom::geometry::nifti_affine(&grid);
    let dim = [
        grid.columns as usize,
        grid.rows as usize,
        grid.slices as usize,
    ];
    let pixdim = [
        grid.pixel_spacing[1],
        grid.pixel_spacing[0],
        grid.slice_spacing.unwrap_or(1.0),
    ];
    let mut out = Vec::with_capacity(segs.len());
    for (obj, path) in segs.iter().zip(paths) {
        let volumes =
            seg::frames_to_volumes(obj, &slices, grid.orientation, grid.rows, grid.columns)
                .with_context(|| format!("mapping the frames of {}", path.display()))?;
        let threshold = match obj.segmentation_type {
            seg::SegmentationType::Binary => 1u8,
            seg::SegmentationType::Fractional { max_value, .. } => max_value.div_ceil(2).max(1),
        };
        let mut labels = vec![0u8; dim.iter().product()];
        for (number, volume) in &volumes {
            let value = u8::try_from(*number)
                .ok()
                .filter(|v| *v > 0)
                .with_context(|| {
                    format!(
                        "{}: segment number {number} does not fit a label mask",
                        path.display()
                    )
                })?;
            for (l, &v) in labels.iter_mut().zip(volume) {
                if v >= threshold {
                    if *l != 0 && *l != value {
                        bail!(
                            "{}: segments {} and {value} overlap; give one segment with --label",
                            path.display(),
                            *l
                        );
                    }
                    *l = value;
                }
            }
        }
        out.push(Mask {
            dim,
            pixdim,
            affine,
            labels,
        });
    }
    Ok(out)
}

/// Reads masks that must share one grid (the first one's): all NIfTI, or all DICOM SEG.
fn read_masks(paths: &[PathBuf]) -> Result<Vec<Mask>> {
    let segs = paths.iter().filter(|p| is_dicom(p)).count();
    if segs > 0 {
        if segs != paths.len() {
            bail!(
                "give all masks as NIfTI or all as DICOM SEG (a SEG is placed on its frames' grid, which a NIfTI mask need not share)"
            );
        }
        return read_seg_masks(paths);
    }
    let mut masks: Vec<Mask> = Vec::with_capacity(paths.len());
    for p in paths {
        let m = Mask::read(p)?;
        if let (Some(first), Some(p0)) = (masks.first(), paths.first()) {
            first.check_same_grid(&m, &|| {
                format!("{} is not on the grid of {}", p.display(), p0.display())
            })?;
        }
        masks.push(m);
    }
    Ok(masks)
}

/// Masks given as files, or a `--readers-dir` corpus.
enum MaskInput {
    Files(Vec<PathBuf>),
    Readers(ReaderCorpus),
}

impl MaskInput {
    fn new(files: Vec<PathBuf>, dirs: Vec<PathBuf>) -> Result<Self> {
        match (files.is_empty(), dirs.is_empty()) {
            (false, true) => Ok(Self::Files(files)),
            (true, false) => Ok(Self::Readers(ReaderCorpus::scan(&dirs)?)),
            (true, true) => Err(usage(
                "give rater masks (R1 R2 ...) or at least one --readers-dir DIR",
            )),
            (false, false) => Err(usage("give either rater masks or --readers-dir, not both")),
        }
    }
}

/// One case of a readers corpus: which readers have a mask for it, and where.
struct Case {
    name: String,
    /// (reader index, mask path), by reader index.
    masks: Vec<(usize, PathBuf)>,
}

/// `DIR/<reader>/<case>.nii[.gz]` trees: readers by directory name (the union over all DIRs,
/// sorted), cases in DIR order then by name.
struct ReaderCorpus {
    readers: Vec<String>,
    cases: Vec<Case>,
}

impl ReaderCorpus {
    fn scan(dirs: &[PathBuf]) -> Result<Self> {
        // Per DIR: case -> reader -> path.
        let mut per_dir: Vec<BTreeMap<String, BTreeMap<String, PathBuf>>> = Vec::new();
        let mut readers = BTreeSet::new();
        for dir in dirs {
            let mut cases: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("reading the readers directory {}", dir.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let reader = utf8_name(&path)?;
                let files = std::fs::read_dir(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                for file in files {
                    let file = file.with_context(|| format!("reading {}", path.display()))?;
                    let fp = file.path();
                    if !fp.is_file() {
                        continue;
                    }
                    let name = utf8_name(&fp)?;
                    let Some(case) = name
                        .strip_suffix(".nii.gz")
                        .or_else(|| name.strip_suffix(".nii"))
                    else {
                        continue;
                    };
                    let slot = cases.entry(case.to_owned()).or_default();
                    if slot.insert(reader.clone(), fp.clone()).is_some() {
                        bail!(
                            "reader {reader} has two masks for case {case} in {}",
                            dir.display()
                        );
                    }
                    readers.insert(reader.clone());
                }
            }
            if cases.is_empty() {
                bail!(
                    "{} holds no masks (expected DIR/<reader>/<case>.nii.gz)",
                    dir.display()
                );
            }
            per_dir.push(cases);
        }
        let readers: Vec<String> = readers.into_iter().collect();
        let index: BTreeMap<&str, usize> = readers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let mut cases = Vec::new();
        for dir_cases in per_dir {
            for (name, by_reader) in dir_cases {
                let masks = by_reader
                    .into_iter()
                    .filter_map(|(r, p)| index.get(r.as_str()).map(|&i| (i, p)))
                    .collect();
                cases.push(Case { name, masks });
            }
        }
        Ok(Self { readers, cases })
    }

    /// Reads one case's masks, checking that they share a grid.
    fn read_case(&self, case: &Case) -> Result<Vec<Mask>> {
        let mut masks: Vec<Mask> = Vec::with_capacity(case.masks.len());
        for (r, path) in &case.masks {
            let m = Mask::read(path)?;
            if let Some(first) = masks.first() {
                let reader = self.readers.get(*r).map_or("?", String::as_str);
                first.check_same_grid(&m, &|| {
                    format!(
                        "case {}: reader {reader}'s mask is not on the grid of the others",
                        case.name
                    )
                })?;
            }
            masks.push(m);
        }
        Ok(masks)
    }

    /// Reads one case's masks as vote masks (bit i: the case's i-th present reader).
    fn read_case_votes(&self, case: &Case, fg: u8) -> Result<(Mask, Votes)> {
        let paths: Vec<&Path> = case.masks.iter().map(|m| m.1.as_path()).collect();
        let what = |i: usize| {
            let reader = case
                .masks
                .get(i)
                .and_then(|m| self.readers.get(m.0))
                .map_or("?", String::as_str);
            format!(
                "case {}: reader {reader}'s mask is not on the grid of the others",
                case.name
            )
        };
        read_votes(&paths, fg, &what)
    }

    /// The output file of a case's map under `--out DIR`, refusing duplicate case names.
    fn out_paths(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let mut seen = BTreeSet::new();
        let mut paths = Vec::with_capacity(self.cases.len());
        for c in &self.cases {
            if !seen.insert(c.name.as_str()) {
                bail!(
                    "case {} appears in two --readers-dir trees; --out would write it twice",
                    c.name
                );
            }
            paths.push(out.join(format!("{}.nii.gz", c.name)));
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating the output directory {}", out.display()))?;
        Ok(paths)
    }
}

fn utf8_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} is not a UTF-8 name", path.display()))
}

fn parse_label_value(s: &str) -> Result<u8, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if x.fract() == 0.0 && (0.0..=255.0).contains(&x) {
        Ok(x as u8)
    } else {
        Err(format!("{s:?} is not a whole number in 0..=255"))
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
    let mut segs = if paths.iter().any(|p| is_dicom(p)) {
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

// ---------------------------------------------------------------------------------------------
// Ratings: metrics agreement, consensus labels
// ---------------------------------------------------------------------------------------------

/// Ratings read from a CSV file, with the line number of every triple.
struct RatingsFile {
    triples: Vec<(String, String, String)>,
    lines: Vec<usize>,
}

/// Reads `unit,rater,value` CSV (RFC 4180 quoting on one line; blank lines skipped; a row with
/// an empty value is a missing rating).
fn read_ratings_csv(path: &Path) -> Result<RatingsFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty())
        .map(|(_, l)| l.trim_start_matches('\u{feff}'))
        .with_context(|| {
            format!(
                "{} is empty (expected the header unit,rater,value)",
                path.display()
            )
        })?;
    let cols =
        split_csv_line(header).map_err(|e| anyhow::anyhow!("{} line 1: {e}", path.display()))?;
    let cols: Vec<&str> = cols.iter().map(|c| c.trim()).collect();
    if cols != ["unit", "rater", "value"] {
        bail!(
            "{}: the header must be unit,rater,value (found {})",
            path.display(),
            header.trim()
        );
    }
    let mut out = RatingsFile {
        triples: Vec::new(),
        lines: Vec::new(),
    };
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let fields = split_csv_line(line)
            .map_err(|e| anyhow::anyhow!("{} line {n}: {e}", path.display()))?;
        let [u, r, v] = fields.as_slice() else {
            bail!(
                "{} line {n}: expected 3 fields (unit,rater,value), found {}",
                path.display(),
                fields.len()
            );
        };
        let (u, r, v) = (u.trim(), r.trim(), v.trim());
        if u.is_empty() || r.is_empty() {
            bail!("{} line {n}: empty unit or rater id", path.display());
        }
        if v.is_empty() {
            continue;
        }
        out.triples.push((u.to_owned(), r.to_owned(), v.to_owned()));
        out.lines.push(n);
    }
    if out.triples.is_empty() {
        bail!("{} holds no ratings", path.display());
    }
    Ok(out)
}

/// Splits one CSV line into fields; double quotes enclose a field, `""` is a quote inside one.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Reads and tabulates a ratings file against the given or default categories.
fn load_ratings(path: &Path, categories: Option<Vec<String>>) -> Result<LabeledRatings> {
    let file = read_ratings_csv(path)?;
    let categories = match categories {
        Some(c) => {
            let c: Vec<String> = c.iter().map(|s| s.trim().to_owned()).collect();
            let distinct: BTreeSet<&String> = c.iter().collect();
            if c.is_empty() || c.iter().any(String::is_empty) || distinct.len() != c.len() {
                return Err(usage(
                    "--categories must list distinct, non-empty categories",
                ));
            }
            c
        }
        None => {
            let values: Vec<&str> = file.triples.iter().map(|t| t.2.as_str()).collect();
            default_categories(&values)
        }
    };
    LabeledRatings::from_triples(&file.triples, &categories).map_err(|e| {
        let line = |row: usize| file.lines.get(row).copied().unwrap_or(0);
        match e {
            RatingsError::UnknownCategory { row } => anyhow::anyhow!(
                "{} line {}: value {:?} is not one of the categories ({})",
                path.display(),
                line(row),
                file.triples.get(row).map_or("", |t| t.2.as_str()),
                categories.join(",")
            ),
            RatingsError::Duplicate { row } => anyhow::anyhow!(
                "{} line {}: rater {:?} already rated unit {:?}",
                path.display(),
                line(row),
                file.triples.get(row).map_or("", |t| t.1.as_str()),
                file.triples.get(row).map_or("", |t| t.0.as_str())
            ),
            RatingsError::BadCategories => {
                anyhow::anyhow!("the categories must be non-empty and distinct")
            }
        }
    })
}

fn agreement_cmd(path: &Path, categories: Option<Vec<String>>, json: bool) -> Result<()> {
    let lr = load_ratings(path, categories)?;
    let values = lr.numeric_categories();
    let rep = agreement(&lr.ratings, values.as_deref());
    let id = |i: usize| lr.raters.get(i).map_or("?", String::as_str);
    let pairs: Vec<Value> = rep
        .cohen_pairwise
        .iter()
        .map(|p| {
            json!({
                "raters": [id(p.raters[0]), id(p.raters[1])],
                "n_items": p.kappa.n_items,
                "kappa": num(p.kappa.kappa),
                "kappa_linear": num(p.kappa.kappa_linear),
                "kappa_quadratic": num(p.kappa.kappa_quadratic),
            })
        })
        .collect();
    let a = rep.krippendorff_alpha;
    // Interval and ratio alpha need numeric categories; without them they are null.
    let valued = |x: f64| {
        if values.is_some() {
            num(x)
        } else {
            Value::Null
        }
    };
    let out = json!({
        "units": rep.units,
        "raters": rep.raters,
        "percent_agreement": num(rep.percent_agreement),
        "cohen_pairwise": pairs,
        "fleiss_kappa": num(rep.fleiss_kappa),
        "fleiss_units": rep.fleiss_units,
        "krippendorff_alpha": {
            "nominal": num(a.nominal),
            "ordinal": num(a.ordinal),
            "interval": valued(a.interval),
            "ratio": valued(a.ratio),
        },
    });
    if json {
        return print_json(&out);
    }
    println!(
        "{} units, {} raters, categories {}",
        rep.units,
        rep.raters,
        lr.categories.join(",")
    );
    println!("percent agreement {}", show(rep.percent_agreement));
    println!(
        "Fleiss' kappa {} ({} complete units)",
        show(rep.fleiss_kappa),
        rep.fleiss_units
    );
    println!(
        "Krippendorff's alpha: nominal {}  ordinal {}  interval {}  ratio {}",
        show(a.nominal),
        show(a.ordinal),
        if values.is_some() {
            show(a.interval)
        } else {
            "-".into()
        },
        if values.is_some() {
            show(a.ratio)
        } else {
            "-".into()
        }
    );
    println!(
        "{:<16} {:<16} {:>7} {:>10} {:>10} {:>10}",
        "RATER A", "RATER B", "ITEMS", "KAPPA", "LINEAR", "QUADRATIC"
    );
    for p in &rep.cohen_pairwise {
        println!(
            "{:<16} {:<16} {:>7} {:>10} {:>10} {:>10}",
            id(p.raters[0]),
            id(p.raters[1]),
            p.kappa.n_items,
            show(p.kappa.kappa),
            show(p.kappa.kappa_linear),
            show(p.kappa.kappa_quadratic)
        );
    }
    Ok(())
}

fn labels_cmd(
    path: &Path,
    method: LabelMethod,
    categories: Option<Vec<String>>,
    json: bool,
) -> Result<()> {
    let lr = load_ratings(path, categories)?;
    let cat = |c: Option<u32>| {
        c.and_then(|c| lr.categories.get(c as usize))
            .map_or(Value::Null, |s| json!(s))
    };
    let out = match method {
        LabelMethod::Majority => {
            let labels: Map<String, Value> = lr
                .units
                .iter()
                .cloned()
                .zip(majority_vote(&lr.ratings).into_iter().map(cat))
                .collect();
            json!({
                "method": "majority",
                "categories": lr.categories,
                "iterations": Value::Null,
                "class_priors": Value::Null,
                "confusion": Value::Null,
                "labels": labels,
                "log_likelihood": Value::Null,
            })
        }
        LabelMethod::DawidSkene => {
            let r = dawid_skene(&lr.ratings, &DsOptions::default())?;
            if !r.converged {
                tracing::warn!(
                    iterations = r.iterations,
                    "Dawid–Skene stopped at the iteration limit before converging"
                );
            }
            let confusion: Map<String, Value> = lr
                .raters
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), matrix(&r.params.rater_confusion(i))))
                .collect();
            let labels: Map<String, Value> = lr
                .units
                .iter()
                .cloned()
                .zip(r.labels.iter().map(|l| cat(*l)))
                .collect();
            json!({
                "method": "dawid-skene",
                "categories": lr.categories,
                "iterations": r.iterations,
                "class_priors": nums(&r.params.class_priors),
                "confusion": confusion,
                "labels": labels,
                "log_likelihood": num(r.log_likelihood),
            })
        }
    };
    if json {
        return print_json(&out);
    }
    println!(
        "{} consensus of {} units by {} raters, categories {}",
        out["method"].as_str().unwrap_or("?"),
        lr.units.len(),
        lr.raters.len(),
        lr.categories.join(",")
    );
    if let Some(it) = out["iterations"].as_u64() {
        println!(
            "{it} iterations, log-likelihood {}, class priors {}",
            out["log_likelihood"], out["class_priors"]
        );
    }
    for u in &lr.units {
        let l = &out["labels"][u.as_str()];
        println!("{u},{}", l.as_str().unwrap_or("undecided"));
    }
    Ok(())
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
