//! Schema migrations, embedded in the binary and applied in order by `PRAGMA user_version`.
//! Each migration runs in its own transaction; a database newer than this binary is refused.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: imaging index. `original_*` columns and paths are local-only; `pseudo_*` columns are
    // the only identifiers that may ever be used in anything leaving the site.
    r#"
    CREATE TABLE patients (
        id              INTEGER PRIMARY KEY,
        original_id     TEXT NOT NULL,
        issuer          TEXT NOT NULL,
        original_name   TEXT NOT NULL,
        pseudonym       TEXT NOT NULL UNIQUE,
        date_shift_days INTEGER NOT NULL,
        UNIQUE (issuer, original_id)
    );
    CREATE TABLE studies (
        id              INTEGER PRIMARY KEY,
        patient         INTEGER NOT NULL REFERENCES patients(id),
        original_uid    TEXT NOT NULL UNIQUE,
        pseudo_uid      TEXT NOT NULL UNIQUE,
        original_date   TEXT,
        pseudo_date     TEXT
    );
    CREATE TABLE series (
        id                   INTEGER PRIMARY KEY,
        study                INTEGER NOT NULL REFERENCES studies(id),
        original_uid         TEXT NOT NULL UNIQUE,
        pseudo_uid           TEXT NOT NULL UNIQUE,
        modality             TEXT NOT NULL,
        kind                 TEXT NOT NULL,
        series_number        INTEGER,
        original_for_uid     TEXT,
        pseudo_for_uid       TEXT,
        geometry_dirty       INTEGER NOT NULL DEFAULT 1,
        rows                 INTEGER,
        columns              INTEGER,
        slices               INTEGER,
        pixel_spacing_row    REAL,
        pixel_spacing_col    REAL,
        slice_spacing        REAL,
        uniform_spacing      INTEGER,
        orientation          TEXT,
        origin               TEXT,
        geometry_error       TEXT
    );
    CREATE TABLE instances (
        id                INTEGER PRIMARY KEY,
        series            INTEGER NOT NULL REFERENCES series(id),
        original_uid      TEXT NOT NULL UNIQUE,
        pseudo_uid        TEXT NOT NULL UNIQUE,
        sop_class_uid     TEXT NOT NULL,
        path              TEXT NOT NULL,
        file_size         INTEGER NOT NULL,
        instance_number   INTEGER,
        rows              INTEGER,
        columns           INTEGER,
        frames            INTEGER NOT NULL,
        transfer_syntax   TEXT NOT NULL,
        pixel_spacing     TEXT,
        orientation       TEXT,
        position          TEXT,
        frame_positions   TEXT,
        slice_index       INTEGER,
        ingested_at       INTEGER NOT NULL
    );
    CREATE INDEX instances_series ON instances(series);
    CREATE INDEX series_study ON series(study);
    CREATE INDEX series_dirty ON series(geometry_dirty) WHERE geometry_dirty = 1;
    "#,
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::NewerSchema {
            path: path.into(),
            found: current,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
