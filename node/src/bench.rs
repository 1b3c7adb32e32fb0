//! `fedanno bench …`: performance measurements on synthetic data, run from the binary so they
//! measure what users run. Timings are wall clock on a warm page cache; the reference tools are
//! timed beside them by the scripts in `scripts/` on the same files.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ingest::{self, IngestOptions};
use crate::site::{self, Site};
use crate::synth::{self, SynthOptions};

#[derive(Debug, Serialize)]
pub struct IngestBench {
    pub files: u64,
    pub dir: String,
    pub first_ingest_seconds: f64,
    pub first_ingest_files_per_second: f64,
    pub reingest_seconds: f64,
    pub reingest_files_per_second: f64,
    pub threads: usize,
}

impl IngestBench {
    pub fn human(&self) -> String {
        format!(
            "ingest: {} files, first run {:.3} s = {:.0} files/s; re-ingest (all already present) {:.3} s = {:.0} files/s; {} threads; files in {}",
            self.files,
            self.first_ingest_seconds,
            self.first_ingest_files_per_second,
            self.reingest_seconds,
            self.reingest_files_per_second,
            self.threads,
            self.dir
        )
    }
}

/// Synthesises at least `files` CT slices, then times a fresh ingest and a re-ingest.
pub async fn ingest(files: usize, size: [usize; 3], keep: Option<PathBuf>) -> Result<IngestBench> {
    let tmp = tempdir_or(keep)?;
    let data = tmp.join("data");
    let cases = files.div_ceil(size[2]).max(1);
    let opts = SynthOptions {
        out: data.clone(),
        cases,
        size,
        seed: 7,
        case_prefix: "bench-".into(),
        readers: Vec::new(),
    };
    tokio::task::spawn_blocking(move || synth::generate(&opts)).await??;
    // Warm the page cache: the benchmark measures header parsing, not the disk.
    let listed = ingest::walk(std::slice::from_ref(&data.join("dicom")))?;
    for f in &listed {
        std::fs::read(f).with_context(|| format!("warming {}", f.display()))?;
    }
    let site_dir = tmp.join("site");
    if !site_dir.exists() {
        site::init(&site_dir, "Bench Site", None)?;
    }
    let site = Site::open(&site_dir)?;
    let p = site.pseudonymizer()?;
    let threads = rayon::current_num_threads();
    let opts = || IngestOptions {
        paths: vec![data.join("dicom")],
        progress: false,
    };
    let t = Instant::now();
    let first = ingest::run(&site.store, &site.config, p.clone(), opts()).await?;
    let first_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = ingest::run(&site.store, &site.config, p, opts()).await?;
    let again_s = t.elapsed().as_secs_f64();
    site.close();
    anyhow::ensure!(
        first.instances_ingested == listed.len() as u64
            && again.already_present == listed.len() as u64,
        "benchmark ingest did not index every file"
    );
    let n = listed.len() as u64;
    Ok(IngestBench {
        files: n,
        dir: data.join("dicom").display().to_string(),
        first_ingest_seconds: first_s,
        first_ingest_files_per_second: n as f64 / first_s,
        reingest_seconds: again_s,
        reingest_files_per_second: n as f64 / again_s,
        threads,
    })
}

fn tempdir_or(keep: Option<PathBuf>) -> Result<PathBuf> {
    match keep {
        Some(p) => {
            std::fs::create_dir_all(&p)?;
            Ok(p)
        }
        None => {
            let p = std::env::temp_dir().join(format!("fedanno-bench-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            Ok(p)
        }
    }
}
