//! Label and box annotations as tables: CSV `unit,rater,value[,confidence][,scheme]` (the
//! layout of `fedanno metrics agreement`, which ignores the optional columns) and JSON. A unit is a series or study (pseudonymous or original
//! UID, or an alias from `--case-map`); a rater is a reader id. All rows of a file are saved in
//! one transaction.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    Context, ImportError, ImportOptions, ImportedItem, csvtable, new_version, resolve, save,
    series_grid_of,
};
use crate::annotations::model::{Content, VoxelBox};
use crate::annotations::schemes;
use crate::site::store::ReaderRow;

/// Largest table file read.
const MAX_TABLE_BYTES: u64 = 256 << 20;

fn read_text(path: &Path) -> Result<String, ImportError> {
    let meta = std::fs::metadata(path).map_err(|e| ImportError::file(path, e.to_string()))?;
    if meta.len() > MAX_TABLE_BYTES {
        return Err(ImportError::file(
            path,
            format!("larger than {MAX_TABLE_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| ImportError::file(path, e.to_string()))
}

async fn reader_for(
    ctx: &Context<'_>,
    cache: &mut HashMap<String, ReaderRow>,
    id: &str,
) -> Result<ReaderRow, ImportError> {
    if let Some(r) = cache.get(id) {
        return Ok(r.clone());
    }
    let r = ctx.store.reader(id).await?;
    cache.insert(id.to_string(), r.clone());
    Ok(r)
}

/// Imports a CSV table with the columns `unit`, `rater` and `value`, and optionally
/// `confidence` and `scheme` (a row without a scheme is of `--scheme`); other columns are
/// ignored. A unit may be rated by one rater once per scheme.
pub async fn import_csv(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let text = read_text(path)?;
    let table = csvtable::Table::parse(&text).map_err(|m| ImportError::file(path, m))?;
    table
        .require(&["unit", "rater", "value"])
        .map_err(|m| ImportError::file(path, m))?;
    let mut readers = HashMap::new();
    let mut batch = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in table.rows() {
        let at = |m: String| ImportError::file(path, format!("line {}: {m}", r.line));
        let row = CsvRow::parse(&r, opts).map_err(at)?;
        let reader = reader_for(ctx, &mut readers, row.rater).await?;
        let case = resolve(ctx, opts, path, row.unit).await?;
        let key = (
            row.rater.to_string(),
            row.scheme.to_string(),
            case.study_id,
            case.series_id,
        );
        if !seen.insert(key) {
            return Err(at(format!(
                "unit {:?} is rated twice by {:?} in scheme {:?}",
                row.unit, row.rater, row.scheme
            )));
        }
        let content = label_content(path, row.scheme, row.value, row.confidence, None)?;
        batch.push((
            new_version(&content, &reader, &case, opts, "csv"),
            reader.id.clone(),
            case,
        ));
    }
    save(ctx, path, batch).await
}

/// One CSV row; an empty rater is `--reader`, which every rater must match when given; an
/// empty scheme is `--scheme`.
struct CsvRow<'a> {
    unit: &'a str,
    rater: &'a str,
    scheme: &'a str,
    value: &'a str,
    confidence: Option<u8>,
}

impl<'a> CsvRow<'a> {
    fn parse(r: &csvtable::Row<'a>, opts: &'a ImportOptions) -> Result<CsvRow<'a>, String> {
        let (unit, rater, value, conf) = (
            r.get("unit"),
            r.get("rater"),
            r.get("value"),
            r.get("confidence"),
        );
        let rater = if rater.is_empty() {
            opts.reader.as_deref().unwrap_or("")
        } else {
            rater
        };
        if let Some(only) = &opts.reader
            && rater != only
        {
            return Err(format!("rater {rater:?} is not the --reader {only:?}"));
        }
        let scheme = match r.get("scheme") {
            "" => opts.scheme.as_str(),
            s => s,
        };
        let confidence = if conf.is_empty() {
            None
        } else {
            Some(
                conf.parse::<u8>()
                    .map_err(|_| format!("confidence {conf:?} is not 1 to 5"))?,
            )
        };
        Ok(CsvRow {
            unit,
            rater,
            scheme,
            value,
            confidence,
        })
    }
}

/// A label of `scheme`, its category checked against the scheme.
fn label_content(
    path: &Path,
    scheme: &str,
    value: &str,
    confidence: Option<u8>,
    comment: Option<String>,
) -> Result<Content, ImportError> {
    let category = schemes::check(scheme, value).map_err(|source| ImportError::Scheme {
        path: path.into(),
        source,
    })?;
    Content::label(scheme, &category, confidence, comment).map_err(|source| ImportError::Model {
        path: path.into(),
        source,
    })
}

/// JSON import format.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    #[serde(default)]
    pub labels: Vec<JsonLabel>,
    #[serde(default)]
    pub boxes: Vec<JsonBoxes>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLabel {
    pub unit: String,
    #[serde(default)]
    pub rater: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    pub category: String,
    #[serde(default)]
    pub confidence: Option<u8>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonBoxes {
    pub series: String,
    #[serde(default)]
    pub rater: Option<String>,
    pub boxes: Vec<VoxelBox>,
}

/// Imports a JSON file of labels and boxes.
pub async fn import_json(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let text = read_text(path)?;
    let file: TableFile =
        serde_json::from_str(&text).map_err(|e| ImportError::file(path, e.to_string()))?;
    let mut readers = HashMap::new();
    let mut batch = Vec::new();
    let rater_of = |r: &Option<String>| -> Result<String, ImportError> {
        r.clone().or_else(|| opts.reader.clone()).ok_or_else(|| {
            ImportError::file(path, "an entry has no rater and no --reader was given")
        })
    };
    for l in &file.labels {
        let rater = rater_of(&l.rater)?;
        let reader = reader_for(ctx, &mut readers, &rater).await?;
        let case = resolve(ctx, opts, path, &l.unit).await?;
        let scheme = l.scheme.clone().unwrap_or_else(|| opts.scheme.clone());
        let content = label_content(path, &scheme, &l.category, l.confidence, l.comment.clone())?;
        batch.push((
            new_version(&content, &reader, &case, opts, "json"),
            reader.id.clone(),
            case,
        ));
    }
    for b in &file.boxes {
        let rater = rater_of(&b.rater)?;
        let reader = reader_for(ctx, &mut readers, &rater).await?;
        let (case, grid) = series_grid_of(ctx, opts, path, &b.series, "boxes need").await?;
        let content =
            Content::boxes(grid.dims(), b.boxes.clone()).map_err(|source| ImportError::Model {
                path: path.into(),
                source,
            })?;
        batch.push((
            new_version(&content, &reader, &case, opts, "json"),
            reader.id.clone(),
            case,
        ));
    }
    if batch.is_empty() {
        return Err(ImportError::file(path, "no labels or boxes in the file"));
    }
    save(ctx, path, batch).await
}
