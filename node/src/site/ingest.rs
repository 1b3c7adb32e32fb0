//! `fedanno ingest`: walks folders, reads DICOM headers in parallel (both cores), pseudonymises
//! them and indexes them in the store in batched transactions, then recomputes the voxel grid of
//! every touched series. Idempotent: an instance already indexed is counted as
//! `already_present`. A file that cannot be read is reported with its reason and skipped; the
//! run goes on. Log lines carry counts and reasons only, never paths or header values (paths can
//! hold names or record numbers); the per-file report with paths goes to the caller.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::site::config::{Config, DateMode};
use crate::site::dicom::deid::{self, Pseudonymizer};
use crate::site::dicom::header::{self, HeaderLimits, InstanceHeader};
use crate::site::store::{NewInstance, Pseudonyms, Store, StoreError};

/// A skipped file and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The result of one ingest run (the `--json` output).
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    pub files_seen: u64,
    pub instances_ingested: u64,
    pub already_present: u64,
    /// Distinct series among the files read in this run.
    pub series: u64,
    /// Distinct studies among the files read in this run.
    pub studies: u64,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
    pub files_per_second: f64,
}

impl IngestReport {
    /// Nothing could be read at all (the run failed).
    pub fn nothing_read(&self) -> bool {
        self.instances_ingested + self.already_present == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot list {path}: {source}")]
    Walk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start header workers: {0}")]
    Workers(String),
}

/// Options for one run.
pub struct IngestOptions {
    pub paths: Vec<PathBuf>,
    pub progress: bool,
}

/// Lists the regular files under `paths` (recursively, sorted; directory links not followed).
pub fn walk(paths: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| IngestError::Walk {
            path: p.clone(),
            source,
        })?;
        if meta.is_file() {
            out.push(p.clone());
        } else {
            walk_dir(p, &mut out)?;
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    let err = |source| IngestError::Walk {
        path: dir.into(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e.file_type().map_err(err)?;
        let path = e.path();
        if ft.is_dir() {
            walk_dir(&path, out)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs an ingest of `opts.paths` into `store`.
pub async fn run(
    store: &Store,
    config: &Config,
    pseudonymizer: Arc<Pseudonymizer>,
    opts: IngestOptions,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let files = walk(&opts.paths)?;
    let mut report = IngestReport {
        files_seen: files.len() as u64,
        ..Default::default()
    };
    // Parsing and pseudonymising run on the worker pool; the store inserts batch n while the
    // pool parses batch n + 1. The channel holds at most two batches.
    let (tx, rx) = mpsc::channel::<Vec<Parsed>>(2);
    let producer = spawn_parsers(config, pseudonymizer, files, tx)?;
    let bar = progress_bar(opts.progress, report.files_seen);
    let (series, studies) = store_batches(store, rx, &mut report, bar.as_ref()).await?;
    producer
        .await
        .map_err(|e| IngestError::Workers(e.to_string()))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let refreshed = store.refresh_geometry().await?;
    report.series = series;
    report.studies = studies;
    report.seconds = started.elapsed().as_secs_f64();
    report.files_per_second = if report.seconds > 0.0 {
        report.files_seen as f64 / report.seconds
    } else {
        0.0
    };
    if !report.skipped.is_empty() {
        tracing::warn!(
            skipped = report.skipped.len(),
            "some files were skipped (see the report for why)"
        );
    }
    tracing::info!(
        files_seen = report.files_seen,
        ingested = report.instances_ingested,
        already_present = report.already_present,
        skipped = report.skipped.len(),
        series_refreshed = refreshed,
        "ingest finished"
    );
    Ok(report)
}

/// Parses `files` in batches on a worker pool of `config.ingest.threads`, sending each batch to
/// `tx`; stops early when the receiver is gone.
fn spawn_parsers(
    config: &Config,
    pseudonymizer: Arc<Pseudonymizer>,
    files: Vec<PathBuf>,
    tx: mpsc::Sender<Vec<Parsed>>,
) -> Result<tokio::task::JoinHandle<()>, IngestError> {
    let limits = HeaderLimits {
        max_file_bytes: config.ingest.max_file_bytes,
        max_header_bytes: config.ingest.max_header_bytes,
        max_element_bytes: config.ingest.max_element_bytes,
        max_voxels: config.ingest.max_voxels_per_instance,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.ingest.threads)
        .thread_name(|i| format!("fedanno-ingest-{i}"))
        .build()
        .map_err(|e| IngestError::Workers(e.to_string()))?;
    let batch_size = config.ingest.batch_size;
    let dates = config.deid.dates;
    Ok(tokio::task::spawn_blocking(move || {
        pool.install(|| {
            for chunk in files.chunks(batch_size) {
                let parsed: Vec<Parsed> = chunk
                    .par_iter()
                    .map(|path| parse_one(path, &limits, &pseudonymizer, dates))
                    .collect();
                if tx.blocking_send(parsed).is_err() {
                    break;
                }
            }
        })
    }))
}

/// Inserts every parsed batch (one transaction each) and records skipped files in `report`.
/// Returns the number of distinct series and studies read.
async fn store_batches(
    store: &Store,
    mut rx: mpsc::Receiver<Vec<Parsed>>,
    report: &mut IngestReport,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(u64, u64), IngestError> {
    let mut series = HashSet::new();
    let mut studies = HashSet::new();
    while let Some(batch) = rx.recv().await {
        let files_in_batch = batch.len() as u64;
        let mut rows = Vec::with_capacity(batch.len());
        for p in batch {
            match p {
                Parsed::Ok(row) => {
                    series.insert(row.pseudo.series_uid.clone());
                    studies.insert(row.pseudo.study_uid.clone());
                    rows.push(*row);
                }
                Parsed::Skipped(s) => {
                    tracing::debug!(reason = %s.reason, "skipped a file that is not a readable DICOM instance");
                    report.skipped.push(s);
                }
            }
        }
        let r = store.insert_instances(rows).await?;
        report.instances_ingested += r.inserted;
        report.already_present += r.already_present;
        if let Some(bar) = bar {
            bar.inc(files_in_batch);
        }
        tracing::debug!(
            inserted = r.inserted,
            already_present = r.already_present,
            "batch committed"
        );
    }
    Ok((series.len() as u64, studies.len() as u64))
}

enum Parsed {
    Ok(Box<NewInstance>),
    Skipped(Skipped),
}

fn parse_one(path: &Path, limits: &HeaderLimits, p: &Pseudonymizer, dates: DateMode) -> Parsed {
    // A parser panic on a hostile file must cost that file, not the run.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        header::read_file(path, limits)
    }));
    let display = path.display().to_string();
    match result {
        Ok(Ok(h)) => Parsed::Ok(Box::new(pseudonymise(h, path, p, dates))),
        Ok(Err(e)) => Parsed::Skipped(Skipped {
            path: display,
            reason: e.to_string(),
        }),
        Err(_) => Parsed::Skipped(Skipped {
            path: display,
            reason: "the DICOM parser failed on this file".into(),
        }),
    }
}

/// Builds the store row: originals kept for the local columns, pseudonyms computed.
fn pseudonymise(h: InstanceHeader, path: &Path, p: &Pseudonymizer, dates: DateMode) -> NewInstance {
    // Without a PatientID, patients are told apart by study, never merged into one.
    let issuer = if h.patient_id.is_empty() {
        format!("~study:{}", h.study_uid)
    } else {
        h.issuer_of_patient_id.clone()
    };
    let patient = p.patient(&issuer, &h.patient_id);
    let shift = p.date_shift_days(&patient);
    let study_pseudo_date = match dates {
        DateMode::Shift => h
            .study_date
            .as_deref()
            .and_then(|d| deid::shift_date(d, shift)),
        DateMode::Drop => None,
    };
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let pseudo = Pseudonyms {
        patient: patient.to_string(),
        date_shift_days: shift,
        study_uid: p.uid(&h.study_uid).to_string(),
        study_date: study_pseudo_date,
        series_uid: p.uid(&h.series_uid).to_string(),
        frame_of_reference_uid: h
            .frame_of_reference_uid
            .as_deref()
            .map(|u| p.uid(u).to_string()),
        sop_instance_uid: p.uid(&h.sop_instance_uid).to_string(),
    };
    NewInstance {
        header: h,
        patient_issuer: issuer,
        path: abs.to_string_lossy().into_owned(),
        pseudo,
    }
}

fn progress_bar(enabled: bool, len: u64) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if bar.is_hidden() {
        return None;
    }
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} ingest [{bar:40}] {pos}/{len} files  {per_sec}  eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}
