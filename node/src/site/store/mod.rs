//! The site database, and the only module that names rusqlite. One named thread owns the SQLite
//! connection (WAL, `synchronous=FULL`, foreign keys on); everyone else holds a [`Store`] handle
//! and sends it jobs through a bounded queue, each answered on a oneshot channel (iroh's store
//! actor). Nothing runs SQLite on a runtime worker. Jobs are defined here and in the submodules
//! (`schema` for migrations, `imaging` for patients/studies/series/instances), so SQL never
//! leaks out of this module.

/// Vocabulary columns hold their words (`as_str`); a word outside the vocabulary reads as an
/// error naming the allowed ones.
macro_rules! sql_word {
    ($($t:ty),+) => {$(
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}

mod annotations;
mod audit;
mod cases;
mod imaging;
mod reader_studies;
mod schema;
mod witness;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rusqlite::Connection;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use annotations::{
    AnnotationFilter, AnnotationRow, AnnotationStoreError, NewVersion, ReaderRow, SaveOutcome,
    VersionRow,
};
pub use audit::{AuditEntry, AuditFilter, AuditStoreError, RawAuditRow, RawCheckpointRow, RawNode};
pub use cases::{CaseError, CaseRef, SeriesGrid, SliceInfo};
pub use imaging::{
    InsertReport, InstanceRow, NewInstance, OriginalIds, Pseudonyms, SeriesFilter, SeriesRow,
    StoreCounts,
};
pub use reader_studies::{ReaderStudyCaseRow, ReaderStudyRow, ReaderStudySiteRow, SubmissionRow};
pub use witness::AlarmRow;

/// Depth of the job queue in front of the store thread.
const QUEUE_DEPTH: usize = 64;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this fedanno ({supported}); upgrade fedanno"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the store thread has stopped")]
    Closed,
    #[error("database {0} does not exist; run `fedanno init` first")]
    Missing(PathBuf),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the store thread. Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
}

/// Owns the store thread; [`StoreThread::join`] waits for it after the handles are dropped.
pub struct StoreThread(JoinHandle<()>);

impl StoreThread {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// Whether `open` may create a new database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Create,
    Existing,
}

impl Store {
    /// Opens (or creates) the database at `path`, applies migrations, and starts the thread.
    pub fn open(path: &Path, mode: OpenMode) -> Result<(Store, StoreThread), StoreError> {
        if mode == OpenMode::Existing && !path.exists() {
            return Err(StoreError::Missing(path.into()));
        }
        if mode == OpenMode::Create && !path.exists() {
            create_private(path).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", path.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        configure(&conn)?;
        schema::migrate(&mut conn, path)?;
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("fedanno-store".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
                // Checkpoint the WAL on a clean close; a crash leaves it for the next open.
                let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start store thread: {e}")))?;
        Ok((Store { tx }, StoreThread(thread)))
    }

    /// Runs `f` on the store thread and returns its result.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .await
    }

    /// Runs SQLite's own integrity check and our foreign-key check.
    pub async fn integrity_check(&self) -> Result<(), StoreError> {
        self.call(|c| {
            let ok: String = c.pragma_query_value(None, "integrity_check", |r| r.get(0))?;
            if ok != "ok" {
                return Err(StoreError::Corrupt(ok));
            }
            let mut stmt = c.prepare("PRAGMA foreign_key_check")?;
            if stmt.exists([])? {
                return Err(StoreError::Corrupt("foreign key violations".into()));
            }
            Ok(())
        })
        .await
    }
}

/// Creates an empty database file readable by its owner only (mode 0600) before SQLite opens
/// it: SQLite gives the WAL and shared-memory files the database file's mode, so they are
/// private too.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// Every row `sql` selects with `params`, each mapped by `row` (the statement is cached).
fn all_rows<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    c.prepare_cached(sql)?.query_map(params, row)?.collect()
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_migrate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fedanno.db");
        assert!(matches!(
            Store::open(&path, OpenMode::Existing),
            Err(StoreError::Missing(_))
        ));
        let (store, thread) = Store::open(&path, OpenMode::Create).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), schema::LATEST);
        store.integrity_check().await.unwrap();
        drop(store);
        thread.join();
        let (store, thread) = Store::open(&path, OpenMode::Existing).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), schema::LATEST);
        drop(store);
        thread.join();
    }

    /// A site created before reader studies had their own names keeps its rows: v5 renames
    /// the v4 tables and columns in place.
    #[tokio::test]
    async fn a_v4_database_keeps_its_reader_studies_after_v5() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fedanno.db");
        {
            let mut c = Connection::open(&path).unwrap();
            configure(&c).unwrap();
            let tx = c.transaction().unwrap();
            for sql in &schema::MIGRATIONS[..4] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 4).unwrap();
            tx.execute_batch(
                "INSERT INTO patients (id, original_id, issuer, original_name, pseudonym, date_shift_days)
                     VALUES (1, 'p', '', 'n', 'P-X', 1);
                 INSERT INTO studies (id, patient, original_uid, pseudo_uid)
                     VALUES (1, 1, '1.2', '2.25.1');
                 INSERT INTO study_manifests VALUES ('S-1', 'text', 'site-a', x'00', x'01', 'participant', 'joined', '[]', 5, 6);
                 INSERT INTO study_cases VALUES ('S-1', '2.25.1', 1, NULL);
                 INSERT INTO study_results VALUES ('S-1', 'report', '{}', 7);",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let (store, thread) = Store::open(&path, OpenMode::Existing).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), schema::LATEST);
        let row = store.reader_study("S-1").await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.coordinator.as_str()),
            ("joined", "site-a")
        );
        let cases = store.reader_study_cases("S-1").await.unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].dicom_study_id, 1);
        let report = store
            .reader_study_result("S-1", crate::reader_studies::states::ReleaseKind::Report)
            .await
            .unwrap();
        assert_eq!(report.as_deref(), Some("{}"));
        store.integrity_check().await.unwrap();
        drop(store);
        thread.join();
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fedanno.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 999).unwrap();
        }
        assert!(matches!(
            Store::open(&path, OpenMode::Existing),
            Err(StoreError::NewerSchema { found: 999, .. })
        ));
    }
}
