//! `fedanno ingest`: index DICOM files (headers only); exit 1 when no instance could be read.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use super::{emit, with_site};
use crate::site::ingest::{self, IngestOptions};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

pub async fn run(dir: &Path, args: IngestArgs) -> Result<ExitCode> {
    let progress = !args.no_progress && !args.json && std::io::stderr().is_terminal();
    let options = IngestOptions {
        paths: args.paths,
        progress,
    };
    let report = with_site(dir, async |site| {
        let p = site.pseudonymizer()?;
        Ok(ingest::run(&site.store, &site.config, p, options).await?)
    })
    .await?;
    emit(args.json, &report, |report| {
        println!(
            "Ingested {} instances ({} already present) from {} files: {} series in {} studies; {} skipped. {:.2} s, {:.0} files/s.",
            report.instances_ingested,
            report.already_present,
            report.files_seen,
            report.series,
            report.studies,
            report.skipped.len(),
            report.seconds,
            report.files_per_second
        );
        for s in &report.skipped {
            println!("  skipped {}: {}", s.path, s.reason);
        }
    })?;
    if report.nothing_read() {
        eprintln!(
            "error: no DICOM instance could be read from {} files",
            report.files_seen
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
