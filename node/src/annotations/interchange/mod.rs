//! Annotation files in and out: NIfTI and DICOM SEG masks ([`masks`]), CSV and JSON labels and
//! boxes ([`tables`]). Import resolves the case and the reader, checks the content against the
//! series grid and the scheme, and saves every version a file holds in one store transaction (a
//! file lands whole or not at all; identical content makes no new version). Export writes any
//! stored version back out, referencing either the original series (local use) or its
//! pseudonymous identifiers (`--deidentified`).

pub mod csvtable;
pub mod export;
pub mod gaps;
pub mod masks;
pub mod reorient;
pub mod segfile;
pub mod tables;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::annotations::codec;
use crate::annotations::model::{Content, Kind, ModelError, Purpose, Segment};
use crate::annotations::schemes::SchemeError;
use crate::site::store::{
    AnnotationStoreError, CaseError, CaseRef, NewVersion, ReaderRow, SeriesGrid, Store, StoreError,
};

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Case { path: PathBuf, source: CaseError },
    #[error("{path}: {source}")]
    Model { path: PathBuf, source: ModelError },
    #[error("{path}: {source}")]
    Scheme { path: PathBuf, source: SchemeError },
    #[error(transparent)]
    Reader(#[from] AnnotationStoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        ImportError::File {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Options of one `annotate import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The reader of masks; for tables, the default for rows without a rater.
    pub reader: Option<String>,
    /// The series a NIfTI mask belongs to (else its sidecar JSON names it).
    pub series: Option<String>,
    /// Declared segments (value → name); every non-zero mask value must be one of them.
    pub segments: Option<Vec<Segment>>,
    /// Label scheme of categorical labels.
    pub scheme: String,
    pub reason: String,
    /// Who made the change (default: the reader).
    pub author: Option<String>,
    /// Store as the reader's adjudication decision rather than a read.
    pub adjudication: bool,
    /// Case aliases (e.g. synthetic case ids) → series or study UIDs.
    pub case_map: HashMap<String, String>,
    /// The version of the model (a model reader) whose NIfTI mask this is: its segments are
    /// then described as made by that model and version.
    pub model_version: Option<String>,
}

/// What one import did for one annotation.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedItem {
    pub file: String,
    pub kind: Kind,
    pub reader: String,
    pub study: String,
    pub series: Option<String>,
    pub version: i64,
    pub created: bool,
    pub summary: serde_json::Value,
}

/// Parses `1=lesion,2=edema`.
pub fn parse_segments(s: &str) -> Result<Vec<Segment>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (v, n) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?}: expected VALUE=NAME"))?;
            let value: u8 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?}: segment values are 1 to 255"))?;
            Ok(Segment::named(value, n.trim()))
        })
        .collect()
}

/// Reads a `case,series` (or `case,study_uid,series_uid`) CSV of case aliases.
pub fn read_case_map(path: &Path) -> Result<HashMap<String, String>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::file(path, e.to_string()))?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        match cols.as_slice() {
            [case, series] | [case, _, series] if !case.is_empty() && !series.is_empty() => {
                map.insert(case.to_string(), series.to_string());
            }
            [""] => {}
            _ => {
                return Err(ImportError::file(
                    path,
                    format!("line {}: expected case,series", i + 1),
                ));
            }
        }
    }
    Ok(map)
}

/// Everything an import step needs from the site.
pub struct Context<'a> {
    pub store: &'a Store,
    pub pseudonymizer: &'a crate::site::dicom::deid::Pseudonymizer,
}

/// Resolves a case name, through the alias map first.
pub(crate) async fn resolve(
    ctx: &Context<'_>,
    opts: &ImportOptions,
    path: &Path,
    name: &str,
) -> Result<CaseRef, ImportError> {
    let name = opts.case_map.get(name).map(String::as_str).unwrap_or(name);
    ctx.store
        .resolve_case(name)
        .await
        .map_err(|source| ImportError::Case {
            path: path.into(),
            source,
        })
}

/// Resolves a series name (through the alias map) and returns the case and its grid; a study
/// is refused with "`name` names a study; `needs` a series".
pub(crate) async fn series_grid_of(
    ctx: &Context<'_>,
    opts: &ImportOptions,
    path: &Path,
    name: &str,
    needs: &str,
) -> Result<(CaseRef, SeriesGrid), ImportError> {
    let case = resolve(ctx, opts, path, name).await?;
    let Some(series_id) = case.series_id else {
        return Err(ImportError::file(
            path,
            format!("{name} names a study; {needs} a series"),
        ));
    };
    let grid = ctx
        .store
        .series_grid(series_id)
        .await
        .map_err(|source| ImportError::Case {
            path: path.into(),
            source,
        })?;
    Ok((case, grid))
}

/// Turns content into a version to save.
pub(crate) fn new_version(
    content: &Content,
    reader: &ReaderRow,
    case: &CaseRef,
    opts: &ImportOptions,
    source: &str,
) -> NewVersion {
    let encoded = codec::encode(content);
    let scheme = match content {
        Content::Label(l) => l.scheme.clone(),
        _ => String::new(),
    };
    NewVersion {
        reader: reader.db_id,
        kind: content.kind(),
        series: case.series_id,
        study: case.study_id,
        scheme,
        purpose: if opts.adjudication {
            Purpose::Adjudication
        } else {
            Purpose::Read
        },
        author: opts.author.clone().unwrap_or_else(|| reader.id.clone()),
        reason: if opts.reason.is_empty() {
            format!("imported from {source}")
        } else {
            opts.reason.clone()
        },
        source: source.to_string(),
        content_hash: codec::hash(&encoded),
        content: codec::compress(&encoded),
        summary: content.summary().to_string(),
    }
}

/// Imports files; each file is one transaction. Returns what landed, or the first error (the
/// files before it have landed; the failing file has not).
pub async fn import(
    ctx: &Context<'_>,
    files: &[PathBuf],
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let mut out = Vec::new();
    for f in files {
        let name = f.to_string_lossy().to_ascii_lowercase();
        let items = if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            masks::import_nifti(ctx, f, opts).await?
        } else if name.ends_with(".csv") {
            tables::import_csv(ctx, f, opts).await?
        } else if name.ends_with(".json") {
            tables::import_json(ctx, f, opts).await?
        } else if segfile::looks_like_dicom(f) {
            segfile::import_seg(ctx, f, opts).await?
        } else {
            return Err(ImportError::file(
                f,
                "unknown annotation format (expected .nii, .nii.gz, DICOM SEG, .csv or .json)",
            ));
        };
        out.extend(items);
    }
    Ok(out)
}

/// Saves versions (one transaction) and describes them.
pub(crate) async fn save(
    ctx: &Context<'_>,
    path: &Path,
    batch: Vec<(NewVersion, String, CaseRef)>,
) -> Result<Vec<ImportedItem>, ImportError> {
    let described: Vec<_> = batch
        .iter()
        .map(|(v, reader, case)| (v.kind, reader.clone(), case.clone(), v.summary.clone()))
        .collect();
    let outcomes = ctx
        .store
        .save_versions(batch.into_iter().map(|(v, ..)| v).collect())
        .await?;
    Ok(outcomes
        .into_iter()
        .zip(described)
        .map(|(o, (kind, reader, case, summary))| ImportedItem {
            file: path.display().to_string(),
            kind,
            reader,
            study: case.study,
            series: case.series,
            version: o.version,
            created: o.created,
            summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}
