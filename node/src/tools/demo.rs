//! `fedanno demo`: a whole consortium on one machine. It makes a consortium root, three sites
//! (with `init`'s, `node request`'s, `consortium admit`'s and `consortium join`'s own code),
//! synthesises each site's CT studies and readers (panel readers and a model shared by all
//! sites, one local reader per site), ingests and imports them, starts the three nodes on
//! loopback (the daemon's own start-up path), runs a segmentation study and a classification
//! study end to end, verifies every site's audit log and writes the reports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fedanno_protocol::cert::Role;
use fedanno_protocol::ids::SiteId;
use serde::Serialize;

use crate::annotations::interchange::{self, Context as ImportContext, ImportOptions};
use crate::annotations::readers::{ReaderKind, consortium_pseudonym};
use crate::network::consortium::{self, Root};
use crate::network::node::Node;
use crate::site::{self, Site};
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

/// Waits (on the nodes' activity signals, under one deadline) until every node sees every
/// other as a proven member.
pub(crate) async fn wait_connected(nodes: &[Node], secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    for n in nodes {
        let mut rx = n.handle.shared.activity.subscribe();
        loop {
            if n.handle.shared.members().len() + 1 >= nodes.len() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the nodes did not all connect within {secs} s");
            }
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }
    Ok(())
}

pub async fn run(opts: DemoOptions) -> Result<DemoSummary> {
    let started = Instant::now();
    let (out, kept) = match &opts.out {
        Some(o) => {
            if o.join("sites").exists() {
                bail!("{} already holds a demo; choose another --out", o.display());
            }
            (o.clone(), true)
        }
        None => (
            std::env::temp_dir().join(format!(
                "fedanno-demo-work-{}-{}",
                std::process::id(),
                crate::network::consortium::now()
            )),
            false,
        ),
    };
    std::fs::create_dir_all(&out)?;
    // Reports outlive a temporary demo directory.
    let reports = if kept {
        out.clone()
    } else {
        std::env::temp_dir().join(format!("fedanno-demo-{}", std::process::id()))
    };
    let root_dir = out.join("consortium");
    consortium::new_root("demo-consortium", &root_dir)?;
    let mut root = Root::open(&root_dir)?;
    let mut sites = Vec::new();
    for (i, id) in SITES.iter().enumerate() {
        let dir = out.join("sites").join(id);
        let name = format!("Demo Hospital {}", (b'A' + i as u8) as char);
        site::init(&dir, &name, Some(id))?;
        let sid = SiteId::new(*id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let req = consortium::request(&dir, &sid, &name)?;
        let roles: Vec<Role> = if i == 0 {
            vec![Role::Site, Role::Coordinator]
        } else {
            vec![Role::Site]
        };
        let (cert, _) = root.admit(&req, &roles, 30)?;
        let cert_path = out.join("consortium").join(format!("{id}.cert"));
        std::fs::write(&cert_path, cert.to_bytes())?;
        consortium::join(
            &dir,
            &sid,
            &root_dir.join(consortium::INFO_FILE),
            &cert_path,
            Some(&root_dir.join(consortium::CRL_FILE)),
        )?;
        let site = Site::open(&dir)?;
        prepare_site(
            &site,
            &out.join("synth").join(id),
            opts.cases,
            opts.size,
            i as u64 + 1,
            &format!("{id}-case-"),
            &local_reader(id),
        )
        .await
        .with_context(|| format!("preparing {id}"))?;
        sites.push(site);
    }
    let mut nodes: Vec<Node> = Vec::new();
    for site in &sites {
        let bootstrap: Vec<String> = nodes
            .iter()
            .filter_map(|n| {
                let a = n.handle.shared.listening.first()?;
                Some(format!("{a}/p2p/{}", n.handle.net().peer_id()))
            })
            .collect();
        let (node, _) = crate::network::daemon::start_node(
            site,
            vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap,
        )
        .await?;
        nodes.push(node);
    }
    wait_connected(&nodes, 60).await?;
    let manifests = [
        SEGMENTATION_MANIFEST.to_string(),
        classification_manifest(&SITES),
    ];
    let mut studies = Vec::new();
    for text in &manifests {
        let Some(coordinator) = nodes.first() else {
            bail!("no demo node started");
        };
        let (id, deliveries) = coordinator.handle.reader_study_launch(text).await?;
        if let Some(d) = deliveries.iter().find(|d| !d.delivered) {
            bail!("study {id}: {} was not reached: {:?}", d.site, d.error);
        }
        for n in &nodes {
            let d = n.handle.reader_study_join(&id).await?;
            if !d.joined {
                bail!("a demo site declined {id}: {}", d.reasons.join("; "));
            }
        }
        for n in &nodes {
            n.handle.reader_study_assign(&id).await?;
        }
        let (run, report) = coordinator.handle.reader_study_run_and_report(&id).await?;
        let dir = reports.join("studies").join(&id);
        std::fs::create_dir_all(&dir)?;
        let json_path = dir.join("report.json");
        let html_path = dir.join("report.html");
        std::fs::write(
            &json_path,
            serde_json::to_string_pretty(&crate::reader_studies::report::to_json(&report))?,
        )?;
        std::fs::write(
            &html_path,
            crate::reader_studies::report::render_html(&report),
        )?;
        studies.push(DemoReaderStudy {
            study: id,
            method: report.consensus.method.clone(),
            protocol: report.consensus.protocol.clone(),
            iterations: run.consensus.iterations(),
            secure_rounds: run.progress.secure_rounds,
            report_json: json_path,
            report_html: html_path,
            summary: crate::reader_studies::report::render_text(&report),
        });
    }
    let mut audit_verified = Vec::new();
    for (site, node) in sites.iter().zip(&nodes) {
        let v = node.handle.shared.audit.verify().await?;
        if !v.ok {
            bail!("the audit log of {} does not verify", site.config.site.id);
        }
        audit_verified.push((site.config.site.id.to_string(), v.size));
    }
    for n in nodes {
        n.stop().await;
    }
    let site_dirs = sites.iter().map(|s| s.dir.clone()).collect();
    for s in sites {
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
