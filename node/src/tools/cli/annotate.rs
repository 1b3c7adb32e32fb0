//! `fedanno readers …` and `fedanno annotate …`: readers, annotation import/export, history,
//! review, the adjudication queue and adjudication decisions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

use super::print_json;
use crate::annotations::curation;
use crate::annotations::interchange::export::{self, ExportFormat, ExportRequest, SegIdentity};
use crate::annotations::interchange::{self, Context, ImportOptions};
use crate::annotations::readers::{self, ReaderKind};
use crate::annotations::review::ReviewState;
use crate::site::Site;
use crate::site::store::AnnotationFilter;

#[derive(Debug, Subcommand)]
pub enum ReadersCommand {
    /// Register a reader (a person or a model) at this site.
    Add {
        /// Reader id: for panel readers and models, the code the consortium assigned.
        id: String,
        #[arg(long, value_enum)]
        kind: ReaderKind,
        /// Display name (kept locally, never shared).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List readers.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AnnotateCommand {
    /// Import annotation files: NIfTI or DICOM SEG masks, CSV or JSON labels and boxes.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The reader (required for masks; for tables, rows must match it).
        #[arg(long)]
        reader: Option<String>,
        /// Series of a NIfTI mask (UID, pseudonymous or original); else the sidecar JSON.
        #[arg(long)]
        series: Option<String>,
        /// Declared segments, e.g. 1=nodule,2=vessel; other mask values are refused.
        #[arg(long)]
        segments: Option<String>,
        /// Label scheme: birads, lungrads, recist, likert5 or free.
        #[arg(long, default_value = "free")]
        scheme: String,
        /// Why this version exists (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who made the change (default: the reader).
        #[arg(long)]
        author: Option<String>,
        /// Case aliases: a CSV `case,series` (as `fedanno synth` writes in cases.csv).
        #[arg(long)]
        case_map: Option<PathBuf>,
        /// Record as the reader's adjudication decision.
        #[arg(long)]
        adjudication: bool,
        #[arg(long)]
        json: bool,
    },
    /// Export a stored version.
    Export {
        /// Series or study (for masks: the series).
        #[arg(long)]
        case: Option<String>,
        #[arg(long)]
        reader: Option<String>,
        /// A specific version (default: the latest).
        #[arg(long)]
        version: Option<i64>,
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
        /// Reference pseudonymous identifiers instead of the original series (SEG).
        #[arg(long)]
        deidentified: bool,
        /// Export adjudication decisions instead of reads.
        #[arg(long)]
        adjudication: bool,
        #[arg(long)]
        json: bool,
    },
    /// List annotations with their latest versions.
    List {
        #[arg(long)]
        case: Option<String>,
        #[arg(long)]
        reader: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every version of a case's annotations, with what changed.
    History {
        case: String,
        #[arg(long)]
        reader: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Move a version through review: draft → submitted → approved | rejected.
    Review {
        #[arg(long)]
        case: String,
        #[arg(long)]
        reader: String,
        /// segmentation, boxes or label.
        #[arg(long, default_value = "segmentation")]
        kind: String,
        /// A specific version (default: the latest).
        #[arg(long)]
        version: Option<i64>,
        /// submitted, approved, rejected or draft.
        #[arg(long)]
        to: String,
        /// Who reviews.
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        json: bool,
    },
    /// The adjudication queue: cases whose readers disagree.
    Disagreements {
        /// Segmentation pairs with a Dice below this are listed.
        #[arg(long, default_value_t = 0.8)]
        min_dice: f64,
        #[arg(long)]
        json: bool,
    },
    /// Record an adjudication decision that accepts one reader's latest version.
    Adjudicate {
        #[arg(long)]
        case: String,
        /// The adjudicating reader.
        #[arg(long)]
        reader: String,
        /// The reader whose version is accepted.
        #[arg(long)]
        accept: String,
        #[arg(long, default_value = "segmentation")]
        kind: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run_readers(site: &Site, cmd: ReadersCommand) -> Result<ExitCode> {
    match cmd {
        ReadersCommand::Add {
            id,
            kind,
            name,
            json,
        } => {
            if !readers::valid_reader_id(&id) {
                bail!(
                    "invalid reader id {id:?}: use 1 to 64 characters of letters, digits, '-', '_' and '.' ('consensus' is reserved)"
                );
            }
            let pseudonym = match kind {
                ReaderKind::Local => site.pseudonymizer()?.local_reader(&id),
                ReaderKind::Panel | ReaderKind::Model => readers::consortium_pseudonym(kind, &id),
            };
            let r = site.store.add_reader(&id, kind, name, pseudonym).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "Added {} reader {} (pseudonym {})",
                    r.kind, r.id, r.pseudonym
                );
            }
        }
        ReadersCommand::List { json } => {
            let rows = site.store.readers().await?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!(
                    "No readers yet. Add one with `fedanno readers add ID --kind local|panel|model`."
                );
            } else {
                println!("{:<24} {:<8} {:<28} NAME", "READER", "KIND", "PSEUDONYM");
                for r in rows {
                    println!(
                        "{:<24} {:<8} {:<28} {}",
                        r.id,
                        r.kind,
                        r.pseudonym,
                        r.name.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_annotate(site: &Site, cmd: AnnotateCommand) -> Result<ExitCode> {
    match cmd {
        AnnotateCommand::Import {
            files,
            reader,
            series,
            segments,
            scheme,
            reason,
            author,
            case_map,
            adjudication,
            json,
        } => {
            let segments = segments
                .as_deref()
                .map(interchange::parse_segments)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            crate::annotations::schemes::categories(&scheme)?;
            let case_map = match case_map {
                Some(p) => interchange::read_case_map(&p)?,
                None => Default::default(),
            };
            let opts = ImportOptions {
                reader,
                series,
                segments,
                scheme,
                reason,
                author,
                adjudication,
                case_map,
            };
            let p = site.pseudonymizer()?;
            let ctx = Context {
                store: &site.store,
                pseudonymizer: &p,
            };
            let items = interchange::import(&ctx, &files, &opts).await?;
            if json {
                print_json(&items)?;
            } else {
                for i in &items {
                    let what = if i.created {
                        format!("new version {}", i.version)
                    } else {
                        format!("unchanged (version {})", i.version)
                    };
                    println!(
                        "{}: {} of {} by {}: {}",
                        i.file,
                        i.kind,
                        i.series.as_deref().unwrap_or(&i.study),
                        i.reader,
                        what
                    );
                }
            }
        }
        AnnotateCommand::Export {
            case,
            reader,
            version,
            format,
            out,
            deidentified,
            adjudication,
            json,
        } => {
            let req = ExportRequest {
                case,
                reader,
                version,
                adjudication,
                format,
                out,
                deidentified,
            };
            let who = SegIdentity {
                site_name: site.config.site.name.clone(),
                software_version: env!("CARGO_PKG_VERSION").into(),
            };
            let r = export::export(&site.store, &who, &req).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "Wrote {} ({} annotation(s)) to {}",
                    r.format, r.annotations, r.out
                );
            }
        }
        AnnotateCommand::List { case, reader, json } => {
            let mut f = AnnotationFilter {
                reader,
                ..Default::default()
            };
            if let Some(c) = case {
                let c = site.store.resolve_case(&c).await?;
                f.study_id = Some(c.study_id);
                f.series_id = c.series_id;
            }
            let rows = site.store.list_annotations(f).await?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("No annotations yet. Import some with `fedanno annotate import`.");
            } else {
                println!(
                    "{:<46} {:<13} {:<18} {:<13} {:>4} {:<10} SUMMARY",
                    "CASE", "KIND", "READER", "PURPOSE", "VER", "STATE"
                );
                for r in rows {
                    println!(
                        "{:<46} {:<13} {:<18} {:<13} {:>4} {:<10} {}",
                        r.series.as_deref().unwrap_or(&r.study),
                        r.kind,
                        r.reader,
                        r.purpose,
                        r.version,
                        r.review_state,
                        r.summary
                    );
                }
            }
        }
        AnnotateCommand::History { case, reader, json } => {
            let h = curation::history(&site.store, &case, reader).await?;
            if json {
                print_json(&h)?;
            } else if h.is_empty() {
                println!("No annotations of {case}.");
            } else {
                for e in h {
                    println!(
                        "{} {} by {} v{} ({}) at {} by {}: {} [{}] {}",
                        e.kind,
                        e.purpose,
                        e.reader,
                        e.version,
                        e.review_state,
                        e.created_at,
                        e.author,
                        e.reason,
                        &e.content_hash[..12.min(e.content_hash.len())],
                        serde_json::to_string(&e.change).unwrap_or_default()
                    );
                }
            }
        }
        AnnotateCommand::Review {
            case,
            reader,
            kind,
            version,
            to,
            by,
            comment,
            json,
        } => {
            let to =
                ReviewState::parse(&to).with_context(|| format!("unknown review state {to:?}"))?;
            let c = site.store.resolve_case(&case).await?;
            let f = AnnotationFilter {
                reader: Some(reader.clone()),
                study_id: Some(c.study_id),
                series_id: c.series_id,
                kind: Some(kind.parse()?),
                purpose: None,
            };
            let rows = site.store.versions(f, version.is_none()).await?;
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|v| version.is_none_or(|n| v.version == n))
                .collect();
            let [v] = rows.as_slice() else {
                bail!(
                    "{} versions match (case {case}, reader {reader}, kind {kind}); name one with --version",
                    rows.len()
                );
            };
            site.store
                .review(v.version_id, to, by.clone(), comment)
                .await?;
            if json {
                print_json(
                    &serde_json::json!({"version": v.version, "from": v.review_state, "to": to.as_str(), "by": by}),
                )?;
            } else {
                println!(
                    "Version {} of {}'s {} moved from {} to {}.",
                    v.version,
                    reader,
                    kind,
                    v.review_state,
                    to.as_str()
                );
            }
        }
        AnnotateCommand::Disagreements { min_dice, json } => {
            let d = curation::disagreements(&site.store, min_dice).await?;
            if json {
                print_json(&d)?;
            } else if d.is_empty() {
                println!("No disagreements above the threshold.");
            } else {
                for x in d {
                    println!(
                        "{} {} readers {:?} min Dice {} {}",
                        x.kind,
                        x.series.as_deref().unwrap_or(&x.study),
                        x.readers,
                        x.min_dice.map_or("-".into(), |v| format!("{v:.4}")),
                        if x.adjudicated { "(adjudicated)" } else { "" }
                    );
                }
            }
        }
        AnnotateCommand::Adjudicate {
            case,
            reader,
            accept,
            kind,
            reason,
            json,
        } => {
            let o = curation::accept(&site.store, &case, kind.parse()?, &reader, &accept, reason)
                .await?;
            if json {
                print_json(&o)?;
            } else {
                println!(
                    "Recorded {reader}'s adjudication of {case}: accepted {accept} (decision version {}).",
                    o.version
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
