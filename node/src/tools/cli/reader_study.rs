//! `fedanno study …`: launch (coordinator), join, assign, run (coordinator) through the running
//! node; list, show and report from the site's own store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::print_json;
use crate::network::control::{self, ControlRequest};
use crate::reader_studies::Manifest;
use crate::reader_studies::report::{self, ReaderStudyReport};
use crate::site::Site;

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
        ReaderStudyCommand::Launch { manifest, json } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read the manifest {}", manifest.display()))?;
            let m = Manifest::parse(&text).with_context(|| format!("{}", manifest.display()))?;
            let v =
                control::call(dir, &ControlRequest::ReaderStudyLaunch { manifest: text }).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("Study {} launched: {}", m.study.id, m.study.title);
                for p in v["participants"].as_array().into_iter().flatten() {
                    let site = p["site"].as_str().unwrap_or("?");
                    if p["delivered"].as_bool() == Some(true) {
                        println!("  {site:<24} announced");
                    } else {
                        println!(
                            "  {site:<24} NOT reached: {}",
                            p["error"].as_str().unwrap_or("unknown error")
                        );
                    }
                }
            }
        }
        ReaderStudyCommand::List { json } => {
            let site = Site::open(dir)?;
            let rows = site.store.reader_studies().await;
            site.close();
            let rows = rows?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("No studies.");
            } else {
                println!(
                    "{:<24} {:<12} {:<12} {:<16} TITLE",
                    "STUDY", "ROLE", "STATE", "COORDINATOR"
                );
                for r in rows {
                    let title = Manifest::parse(&r.manifest)
                        .map(|m| m.study.title)
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<12} {:<12} {:<16} {title}",
                        r.study, r.role, r.state, r.coordinator
                    );
                }
            }
        }
        ReaderStudyCommand::Show { id, json } => {
            let site = Site::open(dir)?;
            let r = async {
                let row = site.store.reader_study(&id).await?;
                let sites = site.store.reader_study_sites(&id).await?;
                let cases = site.store.reader_study_cases(&id).await?;
                anyhow::Ok((row, sites, cases))
            }
            .await;
            site.close();
            let (row, sites, cases) = r?;
            let Some(row) = row else {
                bail!("no study {id} at this site (see `fedanno study list`)");
            };
            let m = Manifest::parse(&row.manifest)?;
            if json {
                print_json(&serde_json::json!({
                    "study": row.study, "role": row.role, "state": row.state,
                    "coordinator": row.coordinator, "decision": row.decision,
                    "manifest": m, "participants": sites, "assigned_cases": cases.len(),
                }))?;
            } else {
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
                println!("cases assigned here: {}", cases.len());
                for s in sites {
                    println!(
                        "  {:<24} {:<12} cases {}",
                        s.site,
                        s.status,
                        s.cases.map_or("-".into(), |c| c.to_string())
                    );
                }
            }
        }
        ReaderStudyCommand::Join { id, json } => {
            let v =
                control::call(dir, &ControlRequest::ReaderStudyJoin { study: id.clone() }).await?;
            if json {
                print_json(&v)?;
            } else {
                let joined = v["joined"].as_bool() == Some(true);
                println!("{} study {id}", if joined { "Joined" } else { "Declined" });
                for r in v["reasons"].as_array().into_iter().flatten() {
                    println!("  - {}", r.as_str().unwrap_or(""));
                }
            }
        }
        ReaderStudyCommand::Assign { id, json } => {
            let v = control::call(
                dir,
                &ControlRequest::ReaderStudyAssign { study: id.clone() },
            )
            .await?;
            if json {
                print_json(&v)?;
            } else {
                println!("{} cases assigned to study {id}", v["cases"]);
                for r in v["reads"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<8} {} readers, {} reads",
                        r["kind"].as_str().unwrap_or("?"),
                        r["readers"],
                        r["reads"]
                    );
                }
            }
        }
        ReaderStudyCommand::Run { id, json } => {
            let v =
                control::call(dir, &ControlRequest::ReaderStudyRun { study: id.clone() }).await?;
            if json {
                print_json(&v)?;
            } else {
                let r: ReaderStudyReport =
                    serde_json::from_value(v).context("the node's report does not parse")?;
                print!("{}", report::render_text(&r));
            }
        }
        ReaderStudyCommand::Report { id, json, html } => {
            let site = Site::open(dir)?;
            let body = site
                .store
                .reader_study_result(&id, crate::reader_studies::states::ReleaseKind::Report)
                .await;
            site.close();
            let Some(body) = body? else {
                bail!(
                    "no report for study {id} at this site yet (the coordinator publishes it after `study run`)"
                );
            };
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let r: ReaderStudyReport = serde_json::from_value(v.clone())?;
            if let Some(path) = &html {
                std::fs::write(path, report::render_html(&r))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if json {
                print_json(&v)?;
            } else {
                print!("{}", report::render_text(&r));
                if let Some(path) = html {
                    println!("HTML report: {}", path.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
