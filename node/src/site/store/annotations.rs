//! Store jobs for readers and versioned annotations. A version is immutable once written (only
//! its review state moves, and every move is a `review_events` row); saving content identical
//! to the head version makes no new version. A multi-item import is saved in one transaction,
//! so a file lands whole or not at all.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::all_rows;
use super::{Store, StoreError};
use crate::annotations::model::{Kind, Purpose};
use crate::annotations::readers::ReaderKind;
use crate::annotations::review::ReviewState;
use crate::site::clock::now_i64 as now;

sql_word!(Kind, Purpose, ReviewState, ReaderKind);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderRow {
    #[serde(skip)]
    pub db_id: i64,
    pub id: String,
    pub kind: String,
    /// Local only.
    pub name: Option<String>,
    pub pseudonym: String,
    pub created_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AnnotationStoreError {
    #[error("reader {0:?} already exists")]
    ReaderExists(String),
    #[error("no reader {0:?}; add it with `fedanno readers add`")]
    UnknownReader(String),
    #[error(
        "version {version} cannot move from {from} to {to} (allowed: draft→submitted, submitted→approved|rejected|draft)"
    )]
    Transition {
        version: i64,
        from: ReviewState,
        to: ReviewState,
    },
    #[error("no such annotation version")]
    NoVersion,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for AnnotationStoreError {
    fn from(e: rusqlite::Error) -> Self {
        AnnotationStoreError::Store(StoreError::Sqlite(e))
    }
}

/// One version to save.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub reader: i64,
    pub kind: Kind,
    pub series: Option<i64>,
    pub study: i64,
    pub scheme: String,
    pub purpose: Purpose,
    pub author: String,
    pub reason: String,
    pub source: String,
    pub content_hash: String,
    pub content: Vec<u8>,
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SaveOutcome {
    pub annotation: i64,
    pub version: i64,
    /// False when the content equalled the head version's (nothing written).
    pub created: bool,
}

/// An annotation with its head version, as `annotate list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotationRow {
    pub annotation: i64,
    pub reader: String,
    pub reader_kind: String,
    pub kind: Kind,
    pub purpose: Purpose,
    pub scheme: String,
    pub study: String,
    pub series: Option<String>,
    pub version: i64,
    pub review_state: ReviewState,
    pub author: String,
    pub created_at: i64,
    pub content_hash: String,
    pub summary: serde_json::Value,
}

/// One stored version with its content (compressed canonical bytes).
/// One stored version of an annotation. Serialised (for `annotate history`) without the
/// store's row ids and the content bytes.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    #[serde(skip)]
    pub version_id: i64,
    #[serde(skip)]
    pub annotation: i64,
    pub version: i64,
    #[serde(rename = "parent")]
    pub parent_version: Option<i64>,
    pub reader: String,
    pub kind: Kind,
    pub purpose: Purpose,
    pub scheme: String,
    pub study: String,
    pub series: Option<String>,
    #[serde(skip)]
    pub series_id: Option<i64>,
    pub author: String,
    pub created_at: i64,
    pub reason: String,
    pub source: String,
    pub content_hash: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    pub review_state: ReviewState,
}

#[derive(Debug, Clone, Default)]
pub struct AnnotationFilter {
    pub reader: Option<String>,
    pub study_id: Option<i64>,
    pub series_id: Option<i64>,
    pub kind: Option<Kind>,
    pub purpose: Option<Purpose>,
}

fn save_one(tx: &Transaction<'_>, v: &NewVersion) -> Result<SaveOutcome, rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO annotations (reader, kind, series, study, scheme, purpose) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![v.reader, v.kind, v.series, v.study, v.scheme, v.purpose])?;
    let (annotation, head): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT id, head FROM annotations WHERE reader = ?1 AND kind = ?2 AND coalesce(series, 0) = coalesce(?3, 0)
             AND study = ?4 AND scheme = ?5 AND purpose = ?6",
        )?
        .query_row(params![v.reader, v.kind, v.series, v.study, v.scheme, v.purpose], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let head_row: Option<(i64, String)> = match head {
        Some(h) => tx
            .prepare_cached("SELECT version, content_hash FROM annotation_versions WHERE id = ?1")?
            .query_row([h], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
        None => None,
    };
    if let Some((version, hash)) = &head_row
        && *hash == v.content_hash
    {
        return Ok(SaveOutcome {
            annotation,
            version: *version,
            created: false,
        });
    }
    let version = head_row.map_or(1, |(n, _)| n + 1);
    tx.prepare_cached(
        "INSERT INTO annotation_versions (annotation, version, parent, author, created_at, reason, source,
             content_hash, content, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        annotation,
        version,
        head,
        v.author,
        now(),
        v.reason,
        v.source,
        v.content_hash,
        v.content,
        v.summary
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("UPDATE annotations SET head = ?2 WHERE id = ?1")?
        .execute(params![annotation, id])?;
    Ok(SaveOutcome {
        annotation,
        version,
        created: true,
    })
}

const VERSION_SELECT: &str = "SELECT v.id, a.id, v.version, pv.version, r.reader_id, a.kind, a.purpose, a.scheme,
        st.pseudo_uid, s.pseudo_uid, a.series, v.author, v.created_at, v.reason, v.source, v.content_hash, v.content,
        v.review_state
     FROM annotation_versions v
     JOIN annotations a ON a.id = v.annotation
     JOIN readers r ON r.id = a.reader
     JOIN studies st ON st.id = a.study
     LEFT JOIN series s ON s.id = a.series
     LEFT JOIN annotation_versions pv ON pv.id = v.parent";

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        version_id: r.get(0)?,
        annotation: r.get(1)?,
        version: r.get(2)?,
        parent_version: r.get(3)?,
        reader: r.get(4)?,
        kind: r.get(5)?,
        purpose: r.get(6)?,
        scheme: r.get(7)?,
        study: r.get(8)?,
        series: r.get(9)?,
        series_id: r.get(10)?,
        author: r.get(11)?,
        created_at: r.get(12)?,
        reason: r.get(13)?,
        source: r.get(14)?,
        content_hash: r.get(15)?,
        content: r.get(16)?,
        review_state: r.get(17)?,
    })
}

fn filter_sql(f: &AnnotationFilter) -> (&'static str, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let opt_s = |s: Option<&str>| s.map_or(V::Null, |s| V::Text(s.to_string()));
    let opt_i = |i: Option<i64>| i.map_or(V::Null, V::Integer);
    (
        "(?1 IS NULL OR r.reader_id = ?1) AND (?2 IS NULL OR a.study = ?2) AND (?3 IS NULL OR a.series = ?3)
         AND (?4 IS NULL OR a.kind = ?4) AND (?5 IS NULL OR a.purpose = ?5)",
        vec![
            opt_s(f.reader.as_deref()),
            opt_i(f.study_id),
            opt_i(f.series_id),
            opt_s(f.kind.map(Kind::as_str)),
            opt_s(f.purpose.map(Purpose::as_str)),
        ],
    )
}

const READER_SELECT: &str =
    "SELECT id, reader_id, kind, display_name, pseudonym, created_at FROM readers";

fn reader_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReaderRow> {
    Ok(ReaderRow {
        db_id: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        pseudonym: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn reader_by_id(c: &Connection, id: &str) -> Result<Option<ReaderRow>, rusqlite::Error> {
    c.prepare_cached(&format!("{READER_SELECT} WHERE reader_id = ?1"))?
        .query_row([id], reader_row)
        .optional()
}

impl Store {
    pub async fn add_reader(
        &self,
        id: &str,
        kind: ReaderKind,
        name: Option<String>,
        pseudonym: String,
    ) -> Result<ReaderRow, AnnotationStoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            if reader_by_id(&tx, &id)?.is_some() {
                return Ok(Err(AnnotationStoreError::ReaderExists(id)));
            }
            tx.execute(
                "INSERT INTO readers (reader_id, kind, display_name, pseudonym, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, kind, name, pseudonym, now()],
            )?;
            let row = reader_by_id(&tx, &id)?;
            tx.commit()?;
            Ok(row.ok_or(AnnotationStoreError::UnknownReader(id)))
        })
        .await?
    }

    pub async fn readers(&self) -> Result<Vec<ReaderRow>, StoreError> {
        self.call(|c| {
            let sql = format!("{READER_SELECT} ORDER BY kind, reader_id");
            Ok(all_rows(c, &sql, [], reader_row)?)
        })
        .await
    }

    pub async fn reader(&self, id: &str) -> Result<ReaderRow, AnnotationStoreError> {
        let id = id.to_string();
        self.call(move |c| Ok(reader_by_id(c, &id)?.ok_or(AnnotationStoreError::UnknownReader(id))))
            .await?
    }

    /// Saves versions in one transaction (all or none).
    pub async fn save_versions(
        &self,
        versions: Vec<NewVersion>,
    ) -> Result<Vec<SaveOutcome>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let mut out = Vec::with_capacity(versions.len());
            for v in &versions {
                out.push(save_one(&tx, v)?);
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Annotations with their head versions.
    pub async fn list_annotations(
        &self,
        f: AnnotationFilter,
    ) -> Result<Vec<AnnotationRow>, StoreError> {
        self.call(move |c| {
            let (cond, args) = filter_sql(&f);
            let sql = format!(
                "SELECT a.id, r.reader_id, r.kind, a.kind, a.purpose, a.scheme, st.pseudo_uid, s.pseudo_uid,
                        v.version, v.review_state, v.author, v.created_at, v.content_hash, v.summary
                 FROM annotations a JOIN readers r ON r.id = a.reader JOIN studies st ON st.id = a.study
                 LEFT JOIN series s ON s.id = a.series JOIN annotation_versions v ON v.id = a.head
                 WHERE {cond} ORDER BY st.pseudo_uid, s.pseudo_uid, a.kind, r.reader_id, a.purpose"
            );
            let rows = all_rows(c, &sql, rusqlite::params_from_iter(args), |r| {
                let summary: String = r.get(13)?;
                Ok(AnnotationRow {
                    annotation: r.get(0)?,
                    reader: r.get(1)?,
                    reader_kind: r.get(2)?,
                    kind: r.get(3)?,
                    purpose: r.get(4)?,
                    scheme: r.get(5)?,
                    study: r.get(6)?,
                    series: r.get(7)?,
                    version: r.get(8)?,
                    review_state: r.get(9)?,
                    author: r.get(10)?,
                    created_at: r.get(11)?,
                    content_hash: r.get(12)?,
                    summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
                })
            })?;
            Ok(rows)
        })
        .await
    }

    /// Every version matching the filter (with content), oldest first within an annotation.
    pub async fn versions(
        &self,
        f: AnnotationFilter,
        heads_only: bool,
    ) -> Result<Vec<VersionRow>, StoreError> {
        self.call(move |c| {
            let (cond, args) = filter_sql(&f);
            let head = if heads_only { "AND v.id = a.head" } else { "" };
            let sql = format!("{VERSION_SELECT} WHERE {cond} {head} ORDER BY a.id, v.version");
            Ok(all_rows(
                c,
                &sql,
                rusqlite::params_from_iter(args),
                version_row,
            )?)
        })
        .await
    }

    /// Moves one version's review state, recording the event.
    pub async fn review(
        &self,
        version_id: i64,
        to: ReviewState,
        actor: String,
        comment: String,
    ) -> Result<(), AnnotationStoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let from: Option<ReviewState> = tx
                .query_row("SELECT review_state FROM annotation_versions WHERE id = ?1", [version_id], |r| r.get(0))
                .optional()?;
            let Some(from) = from else { return Ok(Err(AnnotationStoreError::NoVersion)) };
            if !from.can_move_to(to) {
                return Ok(Err(AnnotationStoreError::Transition { version: version_id, from, to }));
            }
            tx.execute("UPDATE annotation_versions SET review_state = ?2 WHERE id = ?1", params![version_id, to])?;
            tx.execute(
                "INSERT INTO review_events (version, from_state, to_state, actor, at, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![version_id, from, to, actor, now(), comment],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await?
    }
}
