//! `fedanno study …`: launch (coordinator), join, assign, run (coordinator) through the running
//! node; list, show and report from the site's own store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::{Sorted, emit, print_rows, with_site};
use crate::network::control::{self, Published};
use crate::reader_studies::Manifest;
use crate::reader_studies::report::{self, ReaderStudyReport};
use crate::site::store::{ReaderStudyRow, ReaderStudySiteRow};

#[derive(Debug, Subcommand)]
pub enum ReaderStudyCommand {
    /// Coordinator: sign a manifest and announce it to its participants.
    Launch {
        manifest: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The studies this site knows.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One study: manifest summary, state, decision, participants and cases.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Apply this site's policy to the study and tell the coordinator (a refusal sends only
    /// a signed "declined").
    Join {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Select this site's matching cases and report the counts to the coordinator.
    Assign {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Coordinator: run consensus and the quality release, then publish the report.
    Run {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The study report: a table, `--json`, or a self-contained HTML page.
    Report {
        id: String,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

pub async fn run(dir: &Path, what: ReaderStudyCommand) -> Result<ExitCode> {
    match what {
        ReaderStudyCommand::Launch { manifest, json } => launch(dir, &manifest, json).await?,
        ReaderStudyCommand::List { json } => list(dir, json).await?,
        ReaderStudyCommand::Show { id, json } => show(dir, &id, json).await?,
        ReaderStudyCommand::Join { id, json } => {
            let d = control::reader_study_join(dir, id.clone()).await?;
            emit(json, &Sorted(&d), |Sorted(d)| {
                println!(
                    "{} study {id}",
                    if d.joined { "Joined" } else { "Declined" }
                );
                for r in &d.reasons {
                    println!("  - {r}");
                }
            })?;
        }
        ReaderStudyCommand::Assign { id, json } => {
            let a = control::reader_study_assign(dir, id.clone()).await?;
            emit(json, &Sorted(&a), |Sorted(a)| {
                println!("{} cases assigned to study {id}", a.cases);
                for r in &a.reads {
                    println!("  {:<8} {} readers, {} reads", r.kind, r.readers, r.reads);
                }
            })?;
        }
        ReaderStudyCommand::Run { id, json } => {
            let Published(r) = control::reader_study_run(dir, id).await?;
            emit(json, &report::to_json(&r), |_| {
                print!("{}", report::render_text(&r))
            })?;
        }
        ReaderStudyCommand::Report { id, json, html } => {
            show_report(dir, &id, json, html.as_deref()).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn launch(dir: &Path, manifest: &Path, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read the manifest {}", manifest.display()))?;
    let m = Manifest::parse(&text).with_context(|| format!("{}", manifest.display()))?;
    let launched = control::reader_study_launch(dir, text).await?;
    emit(json, &Sorted(&launched), |Sorted(l)| {
        println!("Study {} launched: {}", m.study.id, m.study.title);
        for p in &l.participants {
            if p.delivered {
                println!("  {:<24} announced", p.site);
            } else {
                println!(
                    "  {:<24} NOT reached: {}",
                    p.site,
                    p.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    })
}

async fn list(dir: &Path, json: bool) -> Result<()> {
    let rows = with_site(dir, async |site| Ok(site.store.reader_studies().await?)).await?;
    emit(json, &rows, |rows| {
        let header = format!(
            "{:<24} {:<12} {:<12} {:<16} TITLE",
            "STUDY", "ROLE", "STATE", "COORDINATOR"
        );
        print_rows(rows, "No studies.", Some(&header), |r| {
            let title = Manifest::parse(&r.manifest)
                .map(|m| m.study.title)
                .unwrap_or_default();
            println!(
                "{:<24} {:<12} {:<12} {:<16} {title}",
                r.study, r.role, r.state, r.coordinator
            );
        });
    })
}

async fn show(dir: &Path, id: &str, json: bool) -> Result<()> {
    let (row, sites, cases) = with_site(dir, async |site| {
        let row = site.store.reader_study(id).await?;
        let sites = site.store.reader_study_sites(id).await?;
        let cases = site.store.reader_study_cases(id).await?;
        Ok((row, sites, cases))
    })
    .await?;
    let Some(row) = row else {
        bail!("no study {id} at this site (see `fedanno study list`)");
    };
    let m = Manifest::parse(&row.manifest)?;
    let shown = serde_json::json!({
        "study": row.study, "role": row.role, "state": row.state,
        "coordinator": row.coordinator, "decision": row.decision,
        "manifest": m, "participants": sites, "assigned_cases": cases.len(),
    });
    emit(json, &shown, |_| print_show(&row, &m, &sites, cases.len()))
}

fn print_show(row: &ReaderStudyRow, m: &Manifest, sites: &[ReaderStudySiteRow], cases: usize) {
    println!("{} — {}", m.study.id, m.study.title);
    println!(
        "coordinator {}; this site: {} ({})",
        row.coordinator, row.role, row.state
    );
    println!(
        "task {:?}, consensus {}, readers {}",
        m.task.kind,
        m.consensus.method.as_str(),
        m.all_readers().join(", ")
    );
    println!(
        "privacy: at least {} sites and {} cases per release",
        m.privacy.min_sites, m.privacy.min_cases
    );
    for d in &row.decision {
        println!("  decision: {d}");
    }
    println!("cases assigned here: {cases}");
    for s in sites {
        println!(
            "  {:<24} {:<12} cases {}",
            s.site,
            s.status,
            s.cases.map_or("-".into(), |c| c.to_string())
        );
    }
}

/// `study report`: the report the coordinator published, as stored at this site.
async fn show_report(dir: &Path, id: &str, json: bool, html: Option<&Path>) -> Result<()> {
    let body = with_site(dir, async |site| {
        Ok(site
            .store
            .reader_study_result(id, crate::reader_studies::states::ReleaseKind::Report)
            .await?)
    })
    .await?;
    let Some(body) = body else {
        bail!(
            "no report for study {id} at this site yet (the coordinator publishes it after `study run`)"
        );
    };
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let r: ReaderStudyReport = serde_json::from_value(v.clone())?;
    if let Some(path) = html {
        crate::site::files::write_bytes(path, report::render_html(&r).as_bytes())
            .context("cannot write")?;
    }
    emit(json, &v, |_| {
        print!("{}", report::render_text(&r));
        if let Some(path) = html {
            println!("HTML report: {}", path.display());
        }
    })
}
