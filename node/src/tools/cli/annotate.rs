//! `fedanno annotate …`: annotation import and export, the list of annotations, history,
//! review, the adjudication queue and adjudication decisions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde::Serialize;

use super::{emit, print_rows};
use crate::annotations::curation;
use crate::annotations::interchange::export::{self, ExportFormat, ExportRequest, SegIdentity};
use crate::annotations::interchange::{self, Context, ImportOptions};
use crate::annotations::review::ReviewState;
use crate::site::Site;
use crate::site::store::AnnotationFilter;

#[derive(Debug, Subcommand)]
pub enum AnnotateCommand {
    /// Import annotation files: NIfTI or DICOM SEG masks, CSV or JSON labels and boxes.
    Import(ImportArgs),
    /// Export a stored version.
    Export(ExportArgs),
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
    Review(ReviewArgs),
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

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
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
    /// A model reader's NIfTI mask: the model's version, recorded as its segments' algorithm
    /// (and written into SEG exports).
    #[arg(long)]
    model_version: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
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
}

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
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
}

pub async fn run(site: &Site, cmd: AnnotateCommand) -> Result<ExitCode> {
    match cmd {
        AnnotateCommand::Import(args) => import(site, args).await?,
        AnnotateCommand::Export(args) => export(site, args).await?,
        AnnotateCommand::List { case, reader, json } => list(site, case, reader, json).await?,
        AnnotateCommand::History { case, reader, json } => {
            let h = curation::history(&site.store, &case, reader).await?;
            emit(json, &h, |h| print_history(&case, h))?;
        }
        AnnotateCommand::Review(args) => review(site, args).await?,
        AnnotateCommand::Disagreements { min_dice, json } => {
            let d = curation::disagreements(&site.store, min_dice).await?;
            emit(json, &d, |d| print_disagreements(d))?;
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
            emit(json, &o, |o| {
                println!(
                    "Recorded {reader}'s adjudication of {case}: accepted {accept} (decision version {}).",
                    o.version
                );
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn import(site: &Site, args: ImportArgs) -> Result<()> {
    let segments = args
        .segments
        .as_deref()
        .map(interchange::parse_segments)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    crate::annotations::schemes::categories(&args.scheme)?;
    let case_map = match args.case_map {
        Some(p) => interchange::read_case_map(&p)?,
        None => Default::default(),
    };
    let opts = ImportOptions {
        reader: args.reader,
        series: args.series,
        segments,
        scheme: args.scheme,
        reason: args.reason,
        author: args.author,
        adjudication: args.adjudication,
        case_map,
        model_version: args.model_version,
    };
    let p = site.pseudonymizer()?;
    let ctx = Context {
        store: &site.store,
        pseudonymizer: &p,
    };
    let items = interchange::import(&ctx, &args.files, &opts).await?;
    emit(args.json, &items, |items| {
        for i in items {
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
    })
}

async fn export(site: &Site, args: ExportArgs) -> Result<()> {
    let req = ExportRequest {
        case: args.case,
        reader: args.reader,
        version: args.version,
        adjudication: args.adjudication,
        format: args.format,
        out: args.out,
        deidentified: args.deidentified,
    };
    let who = SegIdentity {
        site_name: site.config.site.name.clone(),
        software_version: env!("CARGO_PKG_VERSION").into(),
    };
    let r = export::export(&site.store, &who, &req).await?;
    emit(args.json, &r, |r| {
        println!(
            "Wrote {} ({} annotation(s)) to {}",
            r.format, r.annotations, r.out
        );
    })
}

async fn list(site: &Site, case: Option<String>, reader: Option<String>, json: bool) -> Result<()> {
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
    emit(json, &rows, |rows| {
        let empty = "No annotations yet. Import some with `fedanno annotate import`.";
        let header = format!(
            "{:<46} {:<13} {:<18} {:<13} {:>4} {:<10} SUMMARY",
            "CASE", "KIND", "READER", "PURPOSE", "VER", "STATE"
        );
        print_rows(rows, empty, Some(&header), |r| {
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
        });
    })
}

fn print_history(case: &str, h: &[curation::HistoryEntry]) {
    print_rows(h, &format!("No annotations of {case}."), None, |h| {
        let e = &h.row;
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
            serde_json::to_string(&h.change).unwrap_or_default()
        );
    });
}

fn print_disagreements(d: &[curation::Disagreement]) {
    print_rows(d, "No disagreements above the threshold.", None, |x| {
        println!(
            "{} {} readers {:?} min Dice {} {}",
            x.kind,
            x.series.as_deref().unwrap_or(&x.study),
            x.readers,
            x.min_dice.map_or("-".into(), |v| format!("{v:.4}")),
            if x.adjudicated { "(adjudicated)" } else { "" }
        );
    });
}

/// What `annotate review --json` prints.
#[derive(Serialize)]
struct Reviewed<'a> {
    by: &'a str,
    from: ReviewState,
    to: ReviewState,
    version: i64,
}

/// `annotate review`: moves one version (the latest, or `--version`) to another review state.
async fn review(site: &Site, args: ReviewArgs) -> Result<()> {
    let ReviewArgs {
        case,
        reader,
        kind,
        version,
        to,
        by,
        comment,
        json,
    } = args;
    let to = ReviewState::parse(&to).with_context(|| format!("unknown review state {to:?}"))?;
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
    let reviewed = Reviewed {
        by: &by,
        from: v.review_state,
        to,
        version: v.version,
    };
    emit(json, &reviewed, |r| {
        println!(
            "Version {} of {}'s {} moved from {} to {}.",
            r.version, reader, kind, r.from, r.to
        );
    })
}
