//! `fedanno demo`: a whole consortium on one machine. It makes a consortium root, three sites
//! (with `init`'s, `node request`'s, `consortium admit`'s and `consortium join`'s own code),
//! synthesises each site's CT studies and readers (panel readers and a model shared by all
//! sites, one local reader per site), ingests and imports them, starts the three nodes on
//! loopback (the daemon's own start-up path), runs a segmentation study and a classification
//! study end to end, verifies every site's audit log and writes the reports.

use crate::site::files::write_bytes;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::annotations::interchange::{self, Context as ImportContext, ImportOptions};
use crate::annotations::readers::{ReaderKind, consortium_pseudonym};
use crate::network::daemon::StartOptions;
use crate::network::node::Node;
use crate::reader_studies::manifest::Manifest;
use crate::site::Site;
use crate::tools::local_consortium::{LocalConsortium, Member, launch_everywhere};
use crate::tools::synth::{self, SynthOptions};

/// The segmentation study the demo runs (the shipped template).
pub const SEGMENTATION_MANIFEST: &str =
    include_str!("../../../policies/studies/lung-nodule-segmentation.toml");

/// The demo's classification study: the synthetic size classes rated by the same readers.
pub fn classification_manifest(sites: &[&str]) -> String {
    let local: Vec<String> = sites
        .iter()
        .map(|s| format!("{s} = [\"{}\"]", local_reader(s)))
        .collect();
    let list: Vec<String> = sites.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[study]\nid = \"nodule-size-class\"\ntitle = \"Nodule size class: reader agreement and Dawid-Skene consensus\"\n\
         coordinator = \"{}\"\n\n[task]\nkind = \"classification\"\nscheme = \"free\"\ncategories = [\"1\", \"2\", \"3\", \"4\"]\n\n\
         [cases]\nmodality = \"CT\"\n\n[readers]\npanel = [\"panel-expert\", \"panel-generous\"]\nmodels = [\"model-a\"]\n\n\
         [readers.local]\n{}\n\n[consensus]\nmethod = \"dawid-skene\"\n\n[metrics]\nrelease = [\"performance\", \"agreement\"]\n\n\
         [privacy]\nmin_sites = 3\nmin_cases = 10\n\n[participants]\nsites = [{}]\n",
        sites.first().copied().unwrap_or("site-a"),
        local.join("\n"),
        list.join(", ")
    )
}

/// The local reader the demo gives a site.
pub fn local_reader(site: &str) -> String {
    format!("local-{}", site.trim_start_matches("site-"))
}

/// Synthesises `cases` CT studies with the default reader profiles (the local reader renamed to
/// `local`), ingests them into `site`, registers the readers and imports every mask and rating.
pub async fn prepare_site(
    site: &Site,
    out: &Path,
    cases: usize,
    size: [usize; 3],
    seed: u64,
    prefix: &str,
    local: &str,
) -> Result<synth::SynthSummary> {
    let readers = site_readers(local);
    let opts = SynthOptions {
        out: out.to_path_buf(),
        cases,
        size,
        seed,
        case_prefix: prefix.to_string(),
        readers: readers.clone(),
    };
    let summary = tokio::task::spawn_blocking(move || synth::generate(&opts)).await??;
    import_synth(site, out, &readers).await?;
    Ok(summary)
}

/// The reader profiles `prepare_site` uses, with the local reader named `local`.
pub fn site_readers(local: &str) -> Vec<synth::ReaderProfile> {
    let mut readers = synth::default_readers();
    for r in &mut readers {
        if r.kind == ReaderKind::Local {
            r.id = local.to_string();
        }
    }
    readers
}

/// Ingests a `synth` output directory into `site`, registers its readers and imports every
/// mask and rating.
pub async fn import_synth(site: &Site, out: &Path, readers: &[synth::ReaderProfile]) -> Result<()> {
    let p = site.pseudonymizer()?;
    crate::site::ingest::run(
        &site.store,
        &site.config,
        p.clone(),
        crate::site::ingest::IngestOptions {
            paths: vec![out.join("dicom")],
            progress: false,
        },
    )
    .await?;
    for r in readers {
        let (kind, pseudonym) = match r.kind {
            ReaderKind::Panel => (
                ReaderKind::Panel,
                consortium_pseudonym(ReaderKind::Panel, &r.id),
            ),
            ReaderKind::Model => (
                ReaderKind::Model,
                consortium_pseudonym(ReaderKind::Model, &r.id),
            ),
            _ => (ReaderKind::Local, p.local_reader(&r.id)),
        };
        if site.store.reader(&r.id).await.is_err() {
            site.store.add_reader(&r.id, kind, None, pseudonym).await?;
        }
    }
    let ctx = ImportContext {
        store: &site.store,
        pseudonymizer: &p,
    };
    for r in readers {
        let dir = out.join("readers").join(&r.id);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".nii.gz"))
            .collect();
        files.sort();
        let opts = ImportOptions {
            reader: Some(r.id.clone()),
            series: None,
            segments: Some(interchange::parse_segments("1=nodule").map_err(anyhow::Error::msg)?),
            scheme: "free".into(),
            reason: "synthetic reading".into(),
            author: None,
            adjudication: false,
            case_map: Default::default(),
            model_version: None,
        };
        interchange::import(&ctx, &files, &opts).await?;
    }
    let opts = ImportOptions {
        reader: None,
        series: None,
        segments: None,
        scheme: "free".into(),
        reason: "synthetic rating".into(),
        author: None,
        adjudication: false,
        case_map: interchange::read_case_map(&out.join("cases.csv"))?,
        model_version: None,
    };
    interchange::import(&ctx, &[out.join("ratings.csv")], &opts).await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out: Option<PathBuf>,
    pub cases: usize,
    pub size: [usize; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReaderStudy {
    pub study: String,
    pub method: String,
    pub protocol: String,
    pub iterations: u32,
    pub secure_rounds: u32,
    pub report_json: PathBuf,
    pub report_html: PathBuf,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub out: PathBuf,
    pub kept: bool,
    pub sites: Vec<String>,
    pub site_dirs: Vec<PathBuf>,
    pub studies: Vec<DemoReaderStudy>,
    pub audit_verified: Vec<(String, u64)>,
    pub seconds: f64,
}

const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

/// Where the demo works and where its reports go: `--out` (kept), or temporary directories
/// (the reports outlive the work directory).
fn workspace(out: Option<&Path>) -> Result<(PathBuf, bool, PathBuf)> {
    let (out, kept) = match out {
        Some(o) => {
            if o.join("sites").exists() {
                bail!("{} already holds a demo; choose another --out", o.display());
            }
            (o.to_path_buf(), true)
        }
        None => (
            std::env::temp_dir().join(format!(
                "fedanno-demo-work-{}-{}",
                std::process::id(),
                crate::site::clock::now()
            )),
            false,
        ),
    };
    std::fs::create_dir_all(&out)?;
    let reports = if kept {
        out.clone()
    } else {
        std::env::temp_dir().join(format!("fedanno-demo-{}", std::process::id()))
    };
    Ok((out, kept, reports))
}

/// The demo's three sites, certified, each with its synthetic data ingested and imported.
async fn demo_sites(out: &Path, opts: &DemoOptions) -> Result<LocalConsortium> {
    let mut members = Member::list(&SITES, "Demo Hospital");
    for (i, m) in members.iter_mut().enumerate() {
        m.name = format!("Demo Hospital {}", (b'A' + i as u8) as char);
    }
    let local = LocalConsortium::create(out, "demo-consortium", &members, 30)?;
    for (i, (site, id)) in local.sites.iter().zip(SITES).enumerate() {
        prepare_site(
            site,
            &out.join("synth").join(id),
            opts.cases,
            opts.size,
            i as u64 + 1,
            &format!("{id}-case-"),
            &local_reader(id),
        )
        .await
        .with_context(|| format!("preparing {id}"))?;
    }
    Ok(local)
}

/// Runs one reader study on the demo's nodes and writes its report under `reports`.
async fn demo_study(nodes: &[Node], manifest: &str, reports: &Path) -> Result<DemoReaderStudy> {
    use crate::reader_studies::report::{render_html, render_text, to_json};
    let id = launch_everywhere(nodes, manifest).await?;
    let Some(coordinator) = nodes.first() else {
        bail!("no demo node started");
    };
    let (run, report) = coordinator.handle.reader_study_run_and_report(&id).await?;
    // A study milestone: every site's log, study entries included, is co-signed by the
    // others.
    for n in nodes {
        let got = n.handle.witness_round().await?;
        if got.len() + 1 < nodes.len() {
            bail!(
                "a site's log was co-signed by {} of the other sites",
                got.len()
            );
        }
    }
    let dir = reports.join("studies").join(&id);
    std::fs::create_dir_all(&dir)?;
    let json_path = dir.join("report.json");
    let html_path = dir.join("report.html");
    write_bytes(
        &json_path,
        serde_json::to_string_pretty(&to_json(&report))?.as_bytes(),
    )?;
    write_bytes(&html_path, render_html(&report).as_bytes())?;
    Ok(DemoReaderStudy {
        study: id,
        method: report.consensus.method.as_str().to_owned(),
        protocol: report.consensus.protocol.as_str().to_owned(),
        iterations: run.consensus.iterations(),
        secure_rounds: run.progress.secure_rounds,
        report_json: json_path,
        report_html: html_path,
        summary: render_text(&report),
    })
}

/// Every node's audit log verified: (site, entries).
async fn verify_logs(nodes: &[Node]) -> Result<Vec<(String, u64)>> {
    let mut verified = Vec::new();
    for node in nodes {
        let v = node.handle.verify_audit().await?;
        let site = node.handle.site().to_string();
        if !v.ok {
            bail!("the audit log of {site} does not verify");
        }
        verified.push((site, v.size));
    }
    Ok(verified)
}

/// The manifests of the demo's two studies.
fn manifests() -> [String; 2] {
    [
        SEGMENTATION_MANIFEST.to_string(),
        classification_manifest(&SITES),
    ]
}

/// Refuses a demo of fewer cases per site than its studies release from (their
/// `privacy.min_cases`), before anything is set up.
pub fn check_cases(cases: usize) -> Result<()> {
    let mut min = 0;
    for text in manifests() {
        min = min.max(Manifest::parse(&text)?.privacy.min_cases);
    }
    if (cases as u64) < min {
        bail!(
            "--cases {cases} is below the {min} cases per site the demo's studies release from (privacy.min_cases)"
        );
    }
    Ok(())
}

pub async fn run(opts: DemoOptions) -> Result<DemoSummary> {
    let started = Instant::now();
    check_cases(opts.cases)?;
    let (out, kept, reports) = workspace(opts.out.as_deref())?;
    let local = demo_sites(&out, &opts).await?;
    let nodes = local
        .start(|_| StartOptions::default(), Duration::from_secs(60))
        .await?;
    let manifests = manifests();
    let mut studies = Vec::new();
    for text in &manifests {
        studies.push(demo_study(&nodes, text, &reports).await?);
    }
    let audit_verified = verify_logs(&nodes).await?;
    for n in nodes {
        n.stop().await;
    }
    let site_dirs = local.sites.iter().map(|s| s.dir.clone()).collect();
    for s in local.sites {
        s.close();
    }
    let mut summary = DemoSummary {
        out: out.clone(),
        kept,
        sites: SITES.iter().map(|s| s.to_string()).collect(),
        site_dirs,
        studies,
        audit_verified,
        seconds: started.elapsed().as_secs_f64(),
    };
    if !kept {
        // The reports stay (printed paths); the sites, keys and synthetic data go.
        let _ = std::fs::remove_dir_all(&out);
        summary.out = reports;
    }
    Ok(summary)
}
