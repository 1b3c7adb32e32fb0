//! Export of stored versions: a segmentation as NIfTI or DICOM SEG on its series grid, labels
//! and boxes as CSV or JSON. Units in tables are pseudonymous UIDs, which `annotate import`
//! resolves again.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use super::tables::{JsonBoxes, JsonLabel, TableFile};
use super::{masks, segfile};
use crate::annotations::codec::{self, CodecError};
use crate::annotations::model::{Content, Kind, Purpose};
use crate::site::files::{AtomicWriteError, write_atomic};
use crate::site::store::{AnnotationFilter, CaseError, Store, StoreError, VersionRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Nifti,
    /// DICOM SEG, BINARY: one bit-plane per segment (overlapping segments kept).
    Seg,
    /// DICOM Label Map Segmentation (LABELMAP): one 8-bit frame per slice.
    SegLabelmap,
    Csv,
    Json,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Case(#[from] CaseError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("no {what} annotation matches ({filter})")]
    NotFound { what: &'static str, filter: String },
    #[error("{0} annotations match; name one with --reader (and --adjudication for decisions)")]
    Ambiguous(usize),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub case: Option<String>,
    pub reader: Option<String>,
    pub version: Option<i64>,
    pub adjudication: bool,
    pub format: ExportFormat,
    pub out: PathBuf,
    pub deidentified: bool,
}

#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub out: String,
    pub format: String,
    pub annotations: usize,
    pub versions: Vec<ExportedVersion>,
}

#[derive(Debug, Serialize)]
pub struct ExportedVersion {
    pub reader: String,
    pub kind: Kind,
    pub study: String,
    pub series: Option<String>,
    pub version: i64,
    pub content_hash: String,
}

/// Decodes a stored version's content (checking its hash).
pub fn content_of(v: &VersionRow) -> Result<Content, CodecError> {
    codec::decode(&codec::decompress(&v.content)?, &v.content_hash)
}

async fn filter_for(
    store: &Store,
    req: &ExportRequest,
    kind: Option<Kind>,
) -> Result<AnnotationFilter, ExportError> {
    let mut f = AnnotationFilter {
        reader: req.reader.clone(),
        kind,
        purpose: Some(if req.adjudication {
            Purpose::Adjudication
        } else {
            Purpose::Read
        }),
        ..Default::default()
    };
    if let Some(c) = &req.case {
        let case = store.resolve_case(c).await?;
        f.study_id = Some(case.study_id);
        f.series_id = case.series_id;
    }
    Ok(f)
}

fn describe(v: &VersionRow) -> ExportedVersion {
    ExportedVersion {
        reader: v.reader.clone(),
        kind: v.kind,
        study: v.study.clone(),
        series: v.series.clone(),
        version: v.version,
        content_hash: v.content_hash.clone(),
    }
}

/// Picks the requested version of each matching annotation.
async fn pick(
    store: &Store,
    f: AnnotationFilter,
    version: Option<i64>,
) -> Result<Vec<VersionRow>, ExportError> {
    let rows = store.versions(f, version.is_none()).await?;
    Ok(match version {
        None => rows,
        Some(n) => rows.into_iter().filter(|v| v.version == n).collect(),
    })
}

/// Exports the requested versions: one segmentation as a mask, or labels and boxes as a table.
pub async fn export(
    store: &Store,
    who: &SegIdentity,
    req: &ExportRequest,
) -> Result<ExportReport, ExportError> {
    match req.format {
        ExportFormat::Nifti | ExportFormat::Seg | ExportFormat::SegLabelmap => {
            export_mask(store, who, req).await
        }
        ExportFormat::Csv | ExportFormat::Json => export_table(store, req).await,
    }
}

/// Exports one segmentation version of `--case` as NIfTI or DICOM SEG on its series grid.
async fn export_mask(
    store: &Store,
    who: &SegIdentity,
    req: &ExportRequest,
) -> Result<ExportReport, ExportError> {
    if req.case.is_none() {
        return Err(ExportError::Usage(
            "--case is required for mask export".into(),
        ));
    }
    let f = filter_for(store, req, Some(Kind::Segmentation)).await?;
    let filter = format!("case {:?}, reader {:?}", req.case, req.reader);
    let mut rows = pick(store, f, req.version).await?;
    if rows.len() > 1 {
        return Err(ExportError::Ambiguous(rows.len()));
    }
    let v = rows.pop().ok_or(ExportError::NotFound {
        what: Kind::Segmentation.as_str(),
        filter,
    })?;
    let Content::Segmentation(seg) = content_of(&v)? else {
        return Err(ExportError::Usage(
            "the version is not a segmentation".into(),
        ));
    };
    let series_id = v
        .series_id
        .ok_or_else(|| ExportError::Usage("segmentation without a series".into()))?;
    let grid = store.series_grid(series_id).await?;
    let out = req.out.clone();
    let result = if req.format == ExportFormat::Nifti {
        masks::export_nifti(&seg, &grid, &out)
    } else {
        let reader = store
            .reader(&v.reader)
            .await
            .map_err(|e| ExportError::Usage(e.to_string()))?;
        let automatic = reader.kind == crate::annotations::readers::ReaderKind::Model.as_str();
        let creator = if req.deidentified {
            reader.pseudonym
        } else {
            reader.id
        };
        let e = segfile::SegExport {
            seg: &seg,
            grid: &grid,
            version: &v,
            creator: &creator,
            who,
            deidentified: req.deidentified,
            automatic,
            labelmap: req.format == ExportFormat::SegLabelmap,
        };
        segfile::export_seg(&e, &out)
    };
    result.map_err(|message| ExportError::Write {
        path: out.clone(),
        message,
    })?;
    Ok(report(req, &[v]))
}

/// Exports the matching labels (CSV) or labels and boxes (JSON).
async fn export_table(store: &Store, req: &ExportRequest) -> Result<ExportReport, ExportError> {
    let kind = if req.format == ExportFormat::Csv {
        Some(Kind::Label)
    } else {
        None
    };
    let f = filter_for(store, req, kind).await?;
    let rows: Vec<VersionRow> = pick(store, f, req.version)
        .await?
        .into_iter()
        .filter(|v| v.kind != Kind::Segmentation)
        .collect();
    let mut table = TableFile::default();
    let mut csv_rows: Vec<Vec<String>> = Vec::new();
    for v in &rows {
        let unit = v.series.clone().unwrap_or_else(|| v.study.clone());
        match content_of(v)? {
            Content::Label(l) => {
                let conf = l.confidence.map(|c| c.to_string()).unwrap_or_default();
                csv_rows.push(vec![
                    unit.clone(),
                    v.reader.clone(),
                    l.category.clone(),
                    conf,
                    l.scheme.clone(),
                ]);
                table.labels.push(JsonLabel {
                    unit,
                    rater: Some(v.reader.clone()),
                    scheme: Some(l.scheme),
                    category: l.category,
                    confidence: l.confidence,
                    comment: l.comment,
                });
            }
            Content::Boxes { boxes, .. } => {
                table.boxes.push(JsonBoxes {
                    series: unit,
                    rater: Some(v.reader.clone()),
                    boxes,
                });
            }
            Content::Segmentation(_) => {}
        }
    }
    let text = if req.format == ExportFormat::Csv {
        let header = ["unit", "rater", "value", "confidence", "scheme"];
        super::csvtable::write(&header, &csv_rows).map_err(ExportError::Usage)?
    } else {
        serde_json::to_string_pretty(&table).map_err(|e| ExportError::Usage(e.to_string()))?
    };
    write_atomic(&req.out, |f| f.write_all(text.as_bytes())).map_err(|e| ExportError::Write {
        path: req.out.clone(),
        message: match e {
            AtomicWriteError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    })?;
    Ok(report(req, &rows))
}

fn report(req: &ExportRequest, rows: &[VersionRow]) -> ExportReport {
    ExportReport {
        out: req.out.display().to_string(),
        format: clap::ValueEnum::to_possible_value(&req.format)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
        annotations: rows.len(),
        versions: rows.iter().map(describe).collect(),
    }
}

/// Who writes exported SEG objects (equipment and content creator attributes).
#[derive(Debug, Clone)]
pub struct SegIdentity {
    pub site_name: String,
    pub software_version: String,
}
