//! `fedanno bench …`: performance measurements on synthetic data, run from the binary so they
//! measure what users run. Timings are wall clock on a warm page cache; the reference tools are
//! timed beside them by the scripts in `scripts/` on the same files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::annotations::readers::ReaderKind;
use crate::site::ingest::{self, IngestOptions};
use crate::site::store::SeriesGrid;
use crate::site::{self, Site};
use crate::tools::synth::{self, SynthOptions};

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

#[derive(Debug, Serialize)]
pub struct AnnotateBench {
    pub grid: [u32; 3],
    pub segments: u64,
    pub mask_voxels: u64,
    pub nifti_file_bytes: u64,
    pub nifti_import_seconds: f64,
    pub seg_frames: u64,
    pub seg_file_bytes: u64,
    pub seg_export_seconds: f64,
    pub seg_import_seconds: f64,
    pub stored_bytes_per_version: u64,
    pub versions: u64,
}

impl AnnotateBench {
    pub fn human(&self) -> String {
        format!(
            "annotate: grid {}x{}x{}, {} segments, {} mask voxels; NIfTI import {:.3} s ({} bytes on disk); SEG export {:.3} s, SEG import {:.3} s ({} frames, {} bytes); stored {} bytes per version ({} versions)",
            self.grid[0],
            self.grid[1],
            self.grid[2],
            self.segments,
            self.mask_voxels,
            self.nifti_import_seconds,
            self.nifti_file_bytes,
            self.seg_export_seconds,
            self.seg_import_seconds,
            self.seg_frames,
            self.seg_file_bytes,
            self.stored_bytes_per_version,
            self.versions
        )
    }
}

/// A site with one synthetic series of `size` ingested, and a panel reader `bench-reader`;
/// returns the site, the series' pseudonymous UID and its grid.
async fn bench_site(tmp: &Path, size: [usize; 3]) -> Result<(Site, String, SeriesGrid)> {
    let data = tmp.join("data");
    let opts = SynthOptions {
        out: data.clone(),
        cases: 1,
        size,
        seed: 11,
        case_prefix: "big-".into(),
        readers: Vec::new(),
    };
    tokio::task::spawn_blocking(move || synth::generate(&opts)).await??;
    let site_dir = tmp.join("site");
    if site_dir.exists() {
        std::fs::remove_dir_all(&site_dir)?;
    }
    site::init(&site_dir, "Bench Site", None)?;
    let site = Site::open(&site_dir)?;
    let ingest = IngestOptions {
        paths: vec![data.join("dicom")],
        progress: false,
    };
    ingest::run(&site.store, &site.config, site.pseudonymizer()?, ingest).await?;
    let series = site.store.list_series(Default::default(), false).await?;
    let series = series.first().context("no series ingested")?.series.clone();
    let case = site.store.resolve_case(&series).await?;
    let grid = site
        .store
        .series_grid(case.series_id.context("series")?)
        .await?;
    site.store
        .add_reader("bench-reader", ReaderKind::Panel, None, "R-BENCH".into())
        .await?;
    Ok((site, series, grid))
}

/// A mask through every slice of `grid`: a cylinder whose radius shrinks with z, so each
/// slice differs. Returns the labels and the number of voxels inside.
fn cylinder(grid: &SeriesGrid) -> (Vec<u8>, u64) {
    let [nx, ny, nz] = [
        grid.columns as usize,
        grid.rows as usize,
        grid.slices as usize,
    ];
    let mut labels = vec![0u8; nx * ny * nz];
    for z in 0..nz {
        let r = (nx.min(ny) as f64) * (0.35 - 0.25 * z as f64 / nz as f64);
        for y in 0..ny {
            for x in 0..nx {
                let (dx, dy) = (x as f64 - nx as f64 / 2.0, y as f64 - ny as f64 / 2.0);
                labels[(z * ny + y) * nx + x] = u8::from(dx * dx + dy * dy <= r * r);
            }
        }
    }
    let inside = labels.iter().map(|&v| u64::from(v)).sum();
    (labels, inside)
}

/// `n` segments (2..=255) on `grid`, as a model's multi-organ output: each a square tile of a
/// grid of tiles over the plane, through a tenth of the slices (staggered). Returns the labels
/// and the number of labelled voxels.
fn tiles(grid: &SeriesGrid, n: u8) -> (Vec<u8>, u64) {
    let [nx, ny, nz] = [
        grid.columns as usize,
        grid.rows as usize,
        grid.slices as usize,
    ];
    let per_row = (f64::from(n)).sqrt().ceil() as usize;
    let (tw, th) = (nx / per_row, ny / per_row);
    let depth = (nz / 10).max(1);
    let mut labels = vec![0u8; nx * ny * nz];
    for k in 1..=usize::from(n) {
        let (gx, gy) = ((k - 1) % per_row, (k - 1) / per_row);
        let z0 = (k * 7) % nz.saturating_sub(depth).max(1);
        for z in z0..(z0 + depth).min(nz) {
            for y in gy * th..gy * th + th * 9 / 10 {
                let row = (z * ny + y) * nx;
                labels[row + gx * tw..row + gx * tw + tw * 9 / 10].fill(k as u8);
            }
        }
    }
    let inside = labels.iter().filter(|&&v| v != 0).count() as u64;
    (labels, inside)
}

/// Seconds `f` takes.
async fn timed<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<f64> {
    let t = Instant::now();
    f.await?;
    Ok(t.elapsed().as_secs_f64())
}

/// Imports a mask spanning every slice of a synthetic series (a tapering cylinder, so each
/// slice differs; or with `segments` > 1 that many tiles, as a multi-organ model writes) from
/// NIfTI and from DICOM SEG, timing each step and measuring what is stored.
pub async fn annotate(
    size: [usize; 3],
    segments: u8,
    keep: Option<PathBuf>,
) -> Result<AnnotateBench> {
    use crate::annotations::interchange::export::{self, ExportFormat, ExportRequest, SegIdentity};
    use crate::annotations::interchange::{self, Context, ImportOptions};
    use crate::annotations::nifti::{self, NiftiImage};
    use crate::site::store::AnnotationFilter;

    let tmp = tempdir_or(keep)?;
    let (site, series, grid) = bench_site(&tmp, size).await?;
    let (labels, mask_voxels) = if segments > 1 {
        tiles(&grid, segments)
    } else {
        cylinder(&grid)
    };
    let affine = crate::site::dicom::geometry::nifti_affine(&grid.geometry());
    let mask_path = tmp.join("mask.nii.gz");
    let image = NiftiImage::from_u8(
        grid.dims().map(|d| d as usize),
        grid.spacing(),
        affine,
        labels,
    )?;
    nifti::write_file(&mask_path, &image)?;
    let p = site.pseudonymizer()?;
    let ctx = Context {
        store: &site.store,
        pseudonymizer: &p,
    };
    let import_opts = ImportOptions {
        reader: Some("bench-reader".into()),
        series: Some(series.clone()),
        scheme: "free".into(),
        ..Default::default()
    };
    let masks = std::slice::from_ref(&mask_path);
    let nifti_s =
        timed(async { Ok(interchange::import(&ctx, masks, &import_opts).await?) }).await?;
    let seg_path = tmp.join("mask-seg.dcm");
    let who = SegIdentity {
        site_name: "Bench Site".into(),
        software_version: env!("CARGO_PKG_VERSION").into(),
    };
    let req = ExportRequest {
        case: Some(series.clone()),
        reader: Some("bench-reader".into()),
        version: None,
        adjudication: false,
        format: ExportFormat::Seg,
        out: seg_path.clone(),
        deidentified: false,
    };
    let seg_export_s = timed(async { Ok(export::export(&site.store, &who, &req).await?) }).await?;
    // Import the SEG as a second reader's read, so a new version is stored.
    site.store
        .add_reader("bench-seg", ReaderKind::Panel, None, "R-BENCHSEG".into())
        .await?;
    let seg_opts = ImportOptions {
        reader: Some("bench-seg".into()),
        ..import_opts
    };
    let segs = std::slice::from_ref(&seg_path);
    let seg_import_s =
        timed(async { Ok(interchange::import(&ctx, segs, &seg_opts).await?) }).await?;
    let versions = site
        .store
        .versions(AnnotationFilter::default(), false)
        .await?;
    let stored: u64 = versions.iter().map(|v| v.content.len() as u64).sum();
    let n = versions.len() as u64;
    let seg_frames = crate::site::dicom::seg::read_seg(&seg_path, &Default::default())
        .map(|s| s.frames.len() as u64)
        .unwrap_or(0);
    site.close();
    Ok(AnnotateBench {
        grid: grid.dims(),
        segments: u64::from(segments.max(1)),
        mask_voxels,
        nifti_file_bytes: std::fs::metadata(&mask_path)?.len(),
        nifti_import_seconds: nifti_s,
        seg_frames,
        seg_file_bytes: std::fs::metadata(&seg_path)?.len(),
        seg_export_seconds: seg_export_s,
        seg_import_seconds: seg_import_s,
        stored_bytes_per_version: stored / n.max(1),
        versions: n,
    })
}

#[derive(Debug, Serialize)]
pub struct NetworkBench {
    pub round_trips: u64,
    pub round_trip_ms_median: f64,
    pub round_trip_ms_p95: f64,
    pub notices_per_second: f64,
    pub concurrent_notices_per_second: f64,
}

impl NetworkBench {
    pub fn human(&self) -> String {
        format!(
            "network (two nodes, loopback TCP, each notice: policy + audit fsync + signed envelope + receipt): {} round trips, median {:.2} ms, p95 {:.2} ms; {:.0} notices/s one at a time, {:.0} notices/s with 8 in flight",
            self.round_trips,
            self.round_trip_ms_median,
            self.round_trip_ms_p95,
            self.notices_per_second,
            self.concurrent_notices_per_second
        )
    }
}

/// Two certified nodes on loopback: times receipted request-response round trips.
pub async fn network(n: u64) -> Result<NetworkBench> {
    use crate::network::daemon::StartOptions;
    use crate::tools::local_consortium::{LocalConsortium, Member};
    let tmp = std::env::temp_dir().join(format!("fedanno-bench-net-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let members: Vec<Member> = ["bench-a", "bench-b"]
        .iter()
        .map(|id| Member {
            id: id.to_string(),
            name: id.to_string(),
            roles: vec![fedanno_protocol::cert::Role::Site],
        })
        .collect();
    let local = LocalConsortium::create(&tmp, "bench-consortium", &members, 1)?;
    let nodes = local
        .start(
            |_| StartOptions::default(),
            std::time::Duration::from_secs(30),
        )
        .await
        .context("the nodes did not connect")?;
    let [a, b]: [_; 2] = nodes
        .try_into()
        .map_err(|_| anyhow::anyhow!("two nodes were started"))?;
    let a_id = local.sites[0].config.site.id.clone();
    let mut times = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        b.handle
            .notice(a_id.clone(), "bench".into(), format!("notice {i}"))
            .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let sequential = n as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let (h, to) = (b.handle.clone(), a_id.clone());
        set.spawn(async move {
            for i in 0..n / 8 {
                h.notice(to.clone(), "bench".into(), format!("worker {w} notice {i}"))
                    .await?;
            }
            Ok::<(), crate::network::node::AppError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let concurrent = (n / 8 * 8) as f64 / t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    b.stop().await;
    a.stop().await;
    for s in local.sites {
        s.close();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(NetworkBench {
        round_trips: n,
        round_trip_ms_median: pick(0.5),
        round_trip_ms_p95: pick(0.95),
        notices_per_second: sequential,
        concurrent_notices_per_second: concurrent,
    })
}

mod flood;
mod secagg;
mod witness;
pub use flood::*;
pub use secagg::*;
pub use witness::*;
