//! Store jobs for reader studies: manifests and states, the coordinator's view of participants, a
//! site's assigned cases, released results, and the secure-aggregation submissions behind the
//! roster rule.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::all_rows;
use super::{Store, StoreError};
use crate::reader_studies::states::{ReaderStudyRole, ReaderStudyState, ReleaseKind, SiteStatus};
use crate::site::clock::now_i64 as now;
use fedanno_protocol::reader_study::ReadCount;

sql_word!(ReaderStudyRole, ReaderStudyState, ReleaseKind, SiteStatus);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderStudyRow {
    pub study: String,
    pub manifest: String,
    pub coordinator: String,
    #[serde(skip)]
    pub signature: Vec<u8>,
    #[serde(skip)]
    pub manifest_hash: Vec<u8>,
    pub role: ReaderStudyRole,
    pub state: ReaderStudyState,
    /// The reasons of the last decision or failure.
    pub decision: Vec<String>,
    pub received_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderStudySiteRow {
    pub site: String,
    pub status: SiteStatus,
    pub cases: Option<u64>,
    /// Reads per reader kind, once the site reported them.
    pub reads: Option<Vec<ReadCount>>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReaderStudyCaseRow {
    pub case_uid: String,
    pub dicom_study_id: i64,
    pub series_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRow {
    pub roster_hash: [u8; 32],
    pub attempt: u32,
    pub sites: Vec<String>,
}

fn reader_study_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReaderStudyRow> {
    let decision: String = r.get(7)?;
    Ok(ReaderStudyRow {
        study: r.get(0)?,
        manifest: r.get(1)?,
        coordinator: r.get(2)?,
        signature: r.get(3)?,
        manifest_hash: r.get(4)?,
        role: r.get(5)?,
        state: r.get(6)?,
        decision: serde_json::from_str(&decision).unwrap_or_default(),
        received_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

const READER_STUDY_SELECT: &str = "SELECT reader_study, manifest, coordinator, signature, manifest_hash, role, state, decision, received_at, updated_at FROM reader_studies";

impl Store {
    /// Stores a manifest. A re-announcement of the same signed manifest changes nothing; a
    /// different manifest under a known study id is refused (studies are immutable).
    pub async fn put_reader_study(&self, row: ReaderStudyRow) -> Result<bool, StoreError> {
        self.call(move |c| {
            let old: Option<Vec<u8>> = c
                .query_row(
                    "SELECT manifest_hash FROM reader_studies WHERE reader_study = ?1",
                    [&row.study],
                    |r| r.get(0),
                )
                .optional()?;
            match old {
                Some(h) if h == row.manifest_hash => Ok(false),
                Some(_) => Err(StoreError::Corrupt(format!(
                    "study {} already exists with another manifest",
                    row.study
                ))),
                None => {
                    let t = now();
                    c.execute(
                        "INSERT INTO reader_studies (reader_study, manifest, coordinator, signature, manifest_hash, role, state, decision, received_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                        params![
                            row.study,
                            row.manifest,
                            row.coordinator,
                            row.signature,
                            row.manifest_hash,
                            row.role,
                            row.state,
                            serde_json::to_string(&row.decision).unwrap_or_default(),
                            t
                        ],
                    )?;
                    Ok(true)
                }
            }
        })
        .await
    }

    pub async fn reader_study(&self, study: &str) -> Result<Option<ReaderStudyRow>, StoreError> {
        let s = study.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("{READER_STUDY_SELECT} WHERE reader_study = ?1"),
                [&s],
                reader_study_row,
            )
            .optional()?)
        })
        .await
    }

    pub async fn reader_studies(&self) -> Result<Vec<ReaderStudyRow>, StoreError> {
        self.call(|c| {
            let sql = format!("{READER_STUDY_SELECT} ORDER BY received_at, reader_study");
            Ok(all_rows(c, &sql, [], reader_study_row)?)
        })
        .await
    }

    pub async fn set_reader_study_state(
        &self,
        study: &str,
        state: ReaderStudyState,
        decision: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        let (s, st) = (study.to_string(), state.as_str());
        self.call(move |c| {
            let n = match decision {
                Some(d) => c.execute(
                    "UPDATE reader_studies SET state = ?2, decision = ?3, updated_at = ?4 WHERE reader_study = ?1",
                    params![s, st, serde_json::to_string(&d).unwrap_or_default(), now()],
                )?,
                None => c.execute(
                    "UPDATE reader_studies SET state = ?2, updated_at = ?3 WHERE reader_study = ?1",
                    params![s, st, now()],
                )?,
            };
            if n == 0 {
                return Err(StoreError::Corrupt(format!("no study {s}")));
            }
            Ok(())
        })
        .await
    }

    /// Records a participant's status; `cases` and `reads` replace the stored ones only when
    /// given.
    pub async fn set_reader_study_site(
        &self,
        study: &str,
        site: &str,
        status: SiteStatus,
        cases: Option<u64>,
        reads: Option<Vec<ReadCount>>,
    ) -> Result<(), StoreError> {
        let (s, si, st) = (study.to_string(), site.to_string(), status.as_str());
        let reads = reads.map_or_else(
            || "null".to_string(),
            |r| serde_json::to_string(&r).unwrap_or_default(),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO reader_study_sites (reader_study, site, status, cases, reads, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (reader_study, site) DO UPDATE SET status = excluded.status,
                   cases = coalesce(excluded.cases, reader_study_sites.cases),
                   reads = CASE WHEN excluded.reads = 'null' THEN reader_study_sites.reads ELSE excluded.reads END,
                   updated_at = excluded.updated_at",
                params![s, si, st, cases.map(|x| x as i64), reads, now()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn reader_study_sites(
        &self,
        study: &str,
    ) -> Result<Vec<ReaderStudySiteRow>, StoreError> {
        let s = study.to_string();
        self.call(move |c| {
            let sql = "SELECT site, status, cases, reads, updated_at FROM reader_study_sites WHERE reader_study = ?1 ORDER BY site";
            let rows = all_rows(c, sql, [&s], |r| {
                let reads: String = r.get(3)?;
                Ok(ReaderStudySiteRow {
                    site: r.get(0)?,
                    status: r.get(1)?,
                    cases: r.get::<_, Option<i64>>(2)?.map(|x| x as u64),
                    reads: serde_json::from_str(&reads).unwrap_or(None),
                    updated_at: r.get(4)?,
                })
            })?;
            Ok(rows)
        })
        .await
    }

    /// Replaces a study's assigned cases.
    pub async fn assign_reader_study_cases(
        &self,
        study: &str,
        cases: Vec<ReaderStudyCaseRow>,
    ) -> Result<(), StoreError> {
        let s = study.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM reader_study_cases WHERE reader_study = ?1", [&s])?;
            for k in &cases {
                tx.execute(
                    "INSERT INTO reader_study_cases (reader_study, case_uid, dicom_study, series_id) VALUES (?1, ?2, ?3, ?4)",
                    params![s, k.case_uid, k.dicom_study_id, k.series_id],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn reader_study_cases(
        &self,
        study: &str,
    ) -> Result<Vec<ReaderStudyCaseRow>, StoreError> {
        let s = study.to_string();
        self.call(move |c| {
            let sql = "SELECT case_uid, dicom_study, series_id FROM reader_study_cases WHERE reader_study = ?1 ORDER BY case_uid";
            let rows = all_rows(c, sql, [&s], |r| {
                Ok(ReaderStudyCaseRow {
                    case_uid: r.get(0)?,
                    dicom_study_id: r.get(1)?,
                    series_id: r.get(2)?,
                })
            })?;
            Ok(rows)
        })
        .await
    }

    pub async fn put_reader_study_result(
        &self,
        study: &str,
        what: ReleaseKind,
        body: String,
    ) -> Result<(), StoreError> {
        let (s, w) = (study.to_string(), what.as_str());
        self.call(move |c| {
            c.execute(
                "INSERT INTO reader_study_results (reader_study, what, body, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (reader_study, what) DO UPDATE SET body = excluded.body, created_at = excluded.created_at",
                params![s, w, body, now()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn reader_study_result(
        &self,
        study: &str,
        what: ReleaseKind,
    ) -> Result<Option<String>, StoreError> {
        let (s, w) = (study.to_string(), what.as_str());
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT body FROM reader_study_results WHERE reader_study = ?1 AND what = ?2",
                rusqlite::params![s, w],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Records that this site submitted a masked vector under a roster (before it is sent).
    pub async fn record_submission(
        &self,
        study: &str,
        input: [u8; 32],
        row: SubmissionRow,
    ) -> Result<(), StoreError> {
        let s = study.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO secagg_submissions (roster_hash, reader_study, input, attempt, sites, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.roster_hash.to_vec(),
                    s,
                    input.to_vec(),
                    row.attempt,
                    serde_json::to_string(&row.sites).unwrap_or_default(),
                    now()
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Every roster this site submitted under for an input.
    pub async fn submissions_for(&self, input: [u8; 32]) -> Result<Vec<SubmissionRow>, StoreError> {
        self.call(move |c| {
            let sql = "SELECT roster_hash, attempt, sites FROM secagg_submissions WHERE input = ?1 ORDER BY attempt";
            let rows = all_rows(c, sql, [input.to_vec()], |r| {
                let h: Vec<u8> = r.get(0)?;
                let sites: String = r.get(2)?;
                let mut roster_hash = [0u8; 32];
                if h.len() == 32 {
                    roster_hash.copy_from_slice(&h);
                }
                Ok(SubmissionRow {
                    roster_hash,
                    attempt: r.get(1)?,
                    sites: serde_json::from_str(&sites).unwrap_or_default(),
                })
            })?;
            Ok(rows)
        })
        .await
    }

    /// Whether this site submitted under a roster.
    pub async fn submitted_under(&self, roster_hash: [u8; 32]) -> Result<bool, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM secagg_submissions WHERE roster_hash = ?1",
                [roster_hash.to_vec()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }
}
