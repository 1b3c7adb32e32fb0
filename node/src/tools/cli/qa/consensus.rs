//! `fedanno consensus …`: binary and multi-label STAPLE of masks (`staple`, `multilabel`), and
//! consensus labels of categorical ratings by Dawid–Skene or majority vote (`labels`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use fedanno_stats::dawid_skene::{DsOptions, dawid_skene};
use fedanno_stats::majority::majority_vote;
use fedanno_stats::ratings::LabeledRatings;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::masks::{MaskInput, parse_label_value};
use super::multilabel::multilabel_cmd;
use super::ratings::load_ratings;
use super::staple::staple_cmd;
use super::{matrix, num, nums};
use crate::tools::cli::{Sorted, emit};

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

/// `--method` of `consensus labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabelMethod {
    /// Dawid–Skene EM (soft majority-vote start, 1e-10 convergence).
    DawidSkene,
    /// Majority vote; ties are undecided (null).
    Majority,
}

/// Runs a `consensus` command (on a blocking thread: `qa::run`).
pub fn run(what: ConsensusCommand) -> Result<()> {
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
// consensus labels
// ---------------------------------------------------------------------------------------------

fn labels_cmd(
    path: &Path,
    method: LabelMethod,
    categories: Option<Vec<String>>,
    json: bool,
) -> Result<()> {
    let lr = load_ratings(path, categories)?;
    let out = match method {
        LabelMethod::Majority => majority(&lr),
        LabelMethod::DawidSkene => dawid_skene_labels(&lr)?,
    };
    emit(json, &Sorted(&out), |Sorted(out)| print_labels(&lr, out))
}

/// The offline-command JSON (ARCHITECTURE.md, "Offline commands") of `consensus labels` (printed
/// with sorted keys). The EM's numbers are null for a majority vote.
#[derive(Serialize)]
struct ConsensusLabels {
    method: &'static str,
    categories: Vec<String>,
    iterations: Option<u32>,
    class_priors: Option<Value>,
    confusion: Option<Map<String, Value>>,
    /// Unit -> category (null: undecided).
    labels: Map<String, Value>,
    log_likelihood: Option<Value>,
}

/// A category index as its name (null: undecided).
fn category(lr: &LabeledRatings, c: Option<u32>) -> Value {
    c.and_then(|c| lr.categories.get(c as usize))
        .map_or(Value::Null, |s| json!(s))
}

/// Unit -> category name.
fn labels(
    lr: &LabeledRatings,
    categories: impl Iterator<Item = Option<u32>>,
) -> Map<String, Value> {
    lr.units
        .iter()
        .cloned()
        .zip(categories.map(|c| category(lr, c)))
        .collect()
}

fn majority(lr: &LabeledRatings) -> ConsensusLabels {
    ConsensusLabels {
        method: "majority",
        categories: lr.categories.clone(),
        iterations: None,
        class_priors: None,
        confusion: None,
        labels: labels(lr, majority_vote(&lr.ratings).into_iter()),
        log_likelihood: None,
    }
}

fn dawid_skene_labels(lr: &LabeledRatings) -> Result<ConsensusLabels> {
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
    Ok(ConsensusLabels {
        method: "dawid-skene",
        categories: lr.categories.clone(),
        iterations: Some(r.iterations),
        class_priors: Some(nums(&r.params.class_priors)),
        confusion: Some(confusion),
        labels: labels(lr, r.labels.iter().copied()),
        log_likelihood: Some(num(r.log_likelihood)),
    })
}

fn print_labels(lr: &LabeledRatings, out: &ConsensusLabels) {
    println!(
        "{} consensus of {} units by {} raters, categories {}",
        out.method,
        lr.units.len(),
        lr.raters.len(),
        lr.categories.join(",")
    );
    if let (Some(it), Some(ll), Some(priors)) =
        (out.iterations, &out.log_likelihood, &out.class_priors)
    {
        println!("{it} iterations, log-likelihood {ll}, class priors {priors}");
    }
    for u in &lr.units {
        let l = out.labels.get(u).and_then(Value::as_str);
        println!("{u},{}", l.unwrap_or("undecided"));
    }
}
