//! `fedanno metrics …`: overlap and surface metrics of two masks (`seg`), and agreement
//! statistics of categorical ratings (`agreement`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use fedanno_stats::agreement::{AgreementReport, agreement};
use fedanno_stats::ratings::LabeledRatings;
use fedanno_stats::surface::{Definition, SegMetrics, seg_metrics};
use serde_json::{Value, json};

use super::masks::read_masks;
use super::ratings::load_ratings;
use super::{num, show, usage};
use crate::tools::cli::emit;

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

/// Runs a `metrics` command (on a blocking thread: `qa::run`).
pub fn run(what: MetricsCommand) -> Result<()> {
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
    let fg = move |v: u8| match label {
        Some(l) => v == l,
        None => v != 0,
    };
    let m = seg_metrics(
        &a.labels,
        &b.labels,
        &a.grid(),
        fg,
        definition,
        tolerance_mm,
    )?;
    emit(json, &seg_json(&m, definition), |_| {
        print_seg(&m, definition, tolerance_mm)
    })
}

/// The offline-command JSON (ARCHITECTURE.md, "Offline commands") of `metrics seg`.
fn seg_json(m: &SegMetrics, definition: Definition) -> Value {
    let s = &m.surface;
    json!({
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
    })
}

fn print_seg(m: &SegMetrics, definition: Definition, tolerance_mm: f64) {
    let s = &m.surface;
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
}

// ---------------------------------------------------------------------------------------------
// metrics agreement
// ---------------------------------------------------------------------------------------------

fn agreement_cmd(path: &Path, categories: Option<Vec<String>>, json: bool) -> Result<()> {
    let lr = load_ratings(path, categories)?;
    let values = lr.numeric_categories();
    let rep = agreement(&lr.ratings, values.as_deref());
    let numeric = values.is_some();
    emit(json, &agreement_json(&lr, &rep, numeric), |_| {
        print_agreement(&lr, &rep, numeric)
    })
}

/// The offline-command JSON (ARCHITECTURE.md, "Offline commands") of `metrics agreement`. Interval
/// and ratio alpha need numeric categories; without them they are null.
fn agreement_json(lr: &LabeledRatings, rep: &AgreementReport, numeric: bool) -> Value {
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
    let a = &rep.krippendorff_alpha;
    let valued = |x: f64| if numeric { num(x) } else { Value::Null };
    json!({
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
    })
}

fn print_agreement(lr: &LabeledRatings, rep: &AgreementReport, numeric: bool) {
    let id = |i: usize| lr.raters.get(i).map_or("?", String::as_str);
    let a = &rep.krippendorff_alpha;
    let valued = |x: f64| if numeric { show(x) } else { "-".into() };
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
        valued(a.interval),
        valued(a.ratio)
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
}
