//! Schema migrations, embedded in the binary and applied in order by `PRAGMA user_version`.
//! Each migration runs in its own transaction; a database newer than this binary is refused.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // v2: readers and versioned annotations. `display_name` is local only; `pseudonym` is what a
    // reader is known by outside the site. Versions are immutable: an UPDATE touches only the
    // review state, and every review step is an event row.
    r#"
    CREATE TABLE readers (
        id            INTEGER PRIMARY KEY,
        reader_id     TEXT NOT NULL UNIQUE,
        kind          TEXT NOT NULL CHECK (kind IN ('local', 'panel', 'model', 'consensus')),
        display_name  TEXT,
        pseudonym     TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE annotations (
        id        INTEGER PRIMARY KEY,
        reader    INTEGER NOT NULL REFERENCES readers(id),
        kind      TEXT NOT NULL CHECK (kind IN ('segmentation', 'boxes', 'label')),
        series    INTEGER REFERENCES series(id),
        study     INTEGER NOT NULL REFERENCES studies(id),
        scheme    TEXT NOT NULL DEFAULT '',
        purpose   TEXT NOT NULL CHECK (purpose IN ('read', 'adjudication')),
        head      INTEGER
    );
    CREATE UNIQUE INDEX annotations_key
        ON annotations(reader, kind, coalesce(series, 0), study, scheme, purpose);
    CREATE TABLE annotation_versions (
        id            INTEGER PRIMARY KEY,
        annotation    INTEGER NOT NULL REFERENCES annotations(id),
        version       INTEGER NOT NULL,
        parent        INTEGER REFERENCES annotation_versions(id),
        author        TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        reason        TEXT NOT NULL,
        source        TEXT NOT NULL,
        content_hash  TEXT NOT NULL,
        content       BLOB NOT NULL,
        summary       TEXT NOT NULL,
        review_state  TEXT NOT NULL DEFAULT 'draft'
                      CHECK (review_state IN ('draft', 'submitted', 'approved', 'rejected')),
        UNIQUE (annotation, version)
    );
    CREATE TABLE review_events (
        id          INTEGER PRIMARY KEY,
        version     INTEGER NOT NULL REFERENCES annotation_versions(id),
        from_state  TEXT NOT NULL,
        to_state    TEXT NOT NULL,
        actor       TEXT NOT NULL,
        at          INTEGER NOT NULL,
        comment     TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX annotation_versions_annotation ON annotation_versions(annotation);
    "#,
    // v3: the audit log (node/src/audit). `audit_entries` is append-only: `body` is the
    // canonical entry (postcard, versioned, with its own seq), `leaf_hash` = SHA-256(0x00 ‖ body),
    // `root_after` the tree head after the entry and `signature` the site's Ed25519 signature of
    // that head. `kind`, `peer`, `study` and `timestamp` repeat what the body says, for
    // filtering; `audit verify` checks them against it. `audit_nodes` holds the hash of every
    // complete subtree of two or more leaves (level ≥ 1; subtree (l, i) covers leaves
    // i·2^l .. (i+1)·2^l), so any proof needs O(log n) reads.
    r#"
    CREATE TABLE audit_entries (
        seq         INTEGER PRIMARY KEY,
        timestamp   INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        peer        TEXT,
        study       TEXT,
        body        BLOB NOT NULL,
        leaf_hash   BLOB NOT NULL,
        root_after  BLOB NOT NULL,
        signature   BLOB NOT NULL
    );
    CREATE INDEX audit_entries_kind ON audit_entries(kind);
    CREATE INDEX audit_entries_peer ON audit_entries(peer) WHERE peer IS NOT NULL;
    CREATE INDEX audit_entries_study ON audit_entries(study) WHERE study IS NOT NULL;
    CREATE INDEX audit_entries_time ON audit_entries(timestamp);
    CREATE TABLE audit_nodes (
        level  INTEGER NOT NULL,
        idx    INTEGER NOT NULL,
        hash   BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TABLE audit_checkpoints (
        id          INTEGER PRIMARY KEY,
        origin      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        root        BLOB NOT NULL,
        timestamp   INTEGER NOT NULL,
        signer      TEXT NOT NULL,
        signature   BLOB NOT NULL,
        entry_seq   INTEGER
    );
    "#,
    // v4: reader studies (then called studies). `study_manifests` holds every manifest this site launched or
    // was announced, signed by its coordinator, with the site's state and decision;
    // `study_sites` the coordinator's view of each participant; `study_cases` a site's cases
    // assigned to a study; `study_results` released results (JSON); `secagg_submissions` every
    // roster this site submitted a masked vector under (the roster rule that stops a
    // coordinator from differencing two rosters of one input survives a restart).
    r#"
    CREATE TABLE study_manifests (
        study          TEXT PRIMARY KEY,
        manifest       TEXT NOT NULL,
        coordinator    TEXT NOT NULL,
        signature      BLOB NOT NULL,
        manifest_hash  BLOB NOT NULL,
        role           TEXT NOT NULL CHECK (role IN ('coordinator', 'participant')),
        state          TEXT NOT NULL,
        decision       TEXT NOT NULL DEFAULT '[]',
        received_at    INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    );
    CREATE TABLE study_sites (
        study       TEXT NOT NULL REFERENCES study_manifests(study),
        site        TEXT NOT NULL,
        status      TEXT NOT NULL,
        cases       INTEGER,
        reads       TEXT NOT NULL DEFAULT '[]',
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (study, site)
    ) WITHOUT ROWID;
    CREATE TABLE study_cases (
        study      TEXT NOT NULL REFERENCES study_manifests(study),
        case_uid   TEXT NOT NULL,
        study_id   INTEGER NOT NULL REFERENCES studies(id),
        series_id  INTEGER REFERENCES series(id),
        PRIMARY KEY (study, case_uid)
    ) WITHOUT ROWID;
    CREATE TABLE study_results (
        study       TEXT NOT NULL REFERENCES study_manifests(study),
        what        TEXT NOT NULL,
        body        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (study, what)
    ) WITHOUT ROWID;
    CREATE TABLE secagg_submissions (
        roster_hash  BLOB PRIMARY KEY,
        study        TEXT NOT NULL,
        input        BLOB NOT NULL,
        attempt      INTEGER NOT NULL,
        sites        TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX secagg_submissions_input ON secagg_submissions(input);
    "#,
    // v5: the research study is a reader study everywhere, and a DICOM study a DICOM study:
    // the v4 tables and their `study` columns are renamed (SQLite rewrites the foreign keys and
    // indexes that name them), and a reader study's case rows name their DICOM study
    // `dicom_study`.
    r#"
    ALTER TABLE study_manifests RENAME TO reader_studies;
    ALTER TABLE reader_studies RENAME COLUMN study TO reader_study;
    ALTER TABLE study_sites RENAME TO reader_study_sites;
    ALTER TABLE reader_study_sites RENAME COLUMN study TO reader_study;
    ALTER TABLE study_cases RENAME TO reader_study_cases;
    ALTER TABLE reader_study_cases RENAME COLUMN study TO reader_study;
    ALTER TABLE reader_study_cases RENAME COLUMN study_id TO dicom_study;
    ALTER TABLE study_results RENAME TO reader_study_results;
    ALTER TABLE reader_study_results RENAME COLUMN study TO reader_study;
    ALTER TABLE secagg_submissions RENAME COLUMN study TO reader_study;
    DROP INDEX audit_entries_study;
    ALTER TABLE audit_entries RENAME COLUMN study TO reader_study;
    CREATE INDEX audit_entries_reader_study ON audit_entries(reader_study)
        WHERE reader_study IS NOT NULL;
    "#,
    // Witnessing (C2SP tlog-witness): the checkpoint of each member's log this site co-signed
    // last, the alarms it raised or heard (both checkpoints kept as evidence), and the
    // co-signatures other sites gave this site's own checkpoints.
    r#"
    CREATE TABLE witness_latest (
        site        TEXT PRIMARY KEY,
        checkpoint  BLOB NOT NULL
    );
    CREATE TABLE witness_alarms (
        id           INTEGER PRIMARY KEY,
        site         TEXT NOT NULL,
        kind         TEXT NOT NULL,
        reported_by  TEXT NOT NULL,
        earlier      BLOB NOT NULL,
        later        BLOB NOT NULL,
        entry_seq    INTEGER NOT NULL,
        UNIQUE (site, kind, later)
    );
    CREATE TABLE audit_cosignatures (
        id          INTEGER PRIMARY KEY,
        witness     TEXT NOT NULL,
        size        INTEGER NOT NULL,
        root        BLOB NOT NULL,
        cosignature BLOB NOT NULL
    );
    CREATE INDEX audit_cosignatures_witness ON audit_cosignatures(witness, size);
    -- The highest envelope sequence this site sent, kept with each `sent` entry, so that
    -- start-up reads one row instead of every `sent` entry. Filled on first use for older
    -- logs.
    CREATE TABLE sent_sequence (
        id    INTEGER PRIMARY KEY CHECK (id = 0),
        high  INTEGER NOT NULL
    );
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
