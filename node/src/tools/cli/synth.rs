//! `fedanno synth`: synthetic CT studies with ground truth, simulated readers and ratings.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::emit;
use crate::tools::synth::{self, SynthOptions};

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 10)]
    cases: usize,
    /// WIDTHxHEIGHTxSLICES.
    #[arg(long, default_value = "96x96x48")]
    size: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of case ids (keeps several sites' cases apart).
    #[arg(long, default_value = "case-")]
    case_prefix: String,
    /// Id of the simulated local reader (default local-resident), e.g. the local reader a
    /// study manifest names for this site.
    #[arg(long, default_value = "local-resident")]
    local_reader: String,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: SynthArgs) -> Result<ExitCode> {
    if args.cases == 0 || args.cases > 100_000 {
        bail!("--cases must be between 1 and 100000");
    }
    let opts = SynthOptions {
        readers: synth::readers_with_local(&args.local_reader)?,
        size: synth::parse_size(&args.size)?,
        out: args.out,
        cases: args.cases,
        seed: args.seed,
        case_prefix: args.case_prefix,
    };
    let summary = tokio::task::spawn_blocking(move || synth::generate(&opts))
        .await
        .context("synthesis task failed")??;
    emit(args.json, &summary, |summary| {
        println!(
            "Wrote {} synthetic cases ({} DICOM files, {}x{}x{} voxels, seed {}) and {} readers' masks and ratings to {}",
            summary.cases.len(),
            summary.dicom_files,
            summary.size[0],
            summary.size[1],
            summary.size[2],
            summary.seed,
            summary.readers.len(),
            summary.out
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
