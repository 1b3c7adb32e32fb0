//! Store jobs for the imaging index: patients, studies, series and instances, each with its
//! original identifiers (local only) beside its pseudonyms, and the per-series voxel grid.
//! Inserts are idempotent by SOP Instance UID; a batch is one transaction, so a crash leaves
//! every instance either fully present or absent, and a series whose grid is stale is marked
//! `geometry_dirty` in the same transaction and recomputed later.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::all_rows;
use super::{Store, StoreError};
use crate::site::dicom::geometry::{self, SeriesGeometry, SlicePlane};
use crate::site::dicom::header::{InstanceHeader, ObjectKind};

/// One instance to index, as the ingest prepared it: the original header (local only), the
/// file, and the pseudonyms that stand for its identifiers in anything that may leave the site.
#[derive(Clone)]
pub struct NewInstance {
    pub header: InstanceHeader,
    /// The patient's issuer as stored: the header's, or `~study:<study uid>` for a patient
    /// without a PatientID (told apart by study, never merged into one).
    pub patient_issuer: String,
    /// The file's absolute path.
    pub path: String,
    pub pseudo: Pseudonyms,
}

/// The pseudonyms of one instance's identifiers (see `dicom::deid`).
#[derive(Clone)]
pub struct Pseudonyms {
    pub patient: String,
    pub date_shift_days: i64,
    pub study_uid: String,
    pub study_date: Option<String>,
    pub series_uid: String,
    pub frame_of_reference_uid: Option<String>,
    pub sop_instance_uid: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InsertReport {
    pub inserted: u64,
    pub already_present: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    pub modality: Option<String>,
}

/// A series as `fedanno cases` shows it. The `original_*` fields are filled only on request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesRow {
    pub series: String,
    pub study: String,
    pub patient: String,
    pub study_date: Option<String>,
    pub modality: String,
    pub kind: String,
    pub instances: u64,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub slices: Option<u32>,
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_spacing: Option<f64>,
    pub uniform_spacing: Option<bool>,
    pub orientation: Option<[f64; 6]>,
    pub origin: Option<[f64; 3]>,
    pub geometry_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalIds>,
}

/// One indexed instance (local view: includes the original UID and the path).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceRow {
    pub path: String,
    pub original_uid: String,
    pub pseudo_uid: String,
    pub series: String,
    pub modality: String,
    pub kind: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub frames: u32,
    pub slice_index: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OriginalIds {
    pub patient_id: String,
    pub patient_name: String,
    pub study_uid: String,
    pub series_uid: String,
    pub study_date: Option<String>,
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON column value, `None` when NULL or not of the expected shape.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: Option<String>) -> Option<T> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

impl Store {
    /// Inserts a batch in one transaction; instances already indexed are counted, not touched.
    pub async fn insert_instances(
        &self,
        batch: Vec<NewInstance>,
    ) -> Result<InsertReport, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut report = InsertReport::default();
            for inst in &batch {
                if insert_one(&tx, inst)? {
                    report.inserted += 1;
                } else {
                    report.already_present += 1;
                }
            }
            tx.commit()?;
            Ok(report)
        })
        .await
    }

    /// Recomputes the voxel grid of every series marked dirty. Returns how many were updated.
    pub async fn refresh_geometry(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            let tx = conn.transaction()?;
            let dirty = "SELECT id FROM series WHERE geometry_dirty = 1";
            let ids: Vec<i64> = all_rows(&tx, dirty, [], |r| r.get(0))?;
            for id in &ids {
                refresh_one(&tx, *id)?;
            }
            tx.commit()?;
            Ok(ids.len() as u64)
        })
        .await
    }

    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.call(|conn| {
            let n = |t: &str| -> Result<u64, StoreError> {
                Ok(
                    conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                        r.get::<_, i64>(0)
                    })? as u64,
                )
            };
            Ok(StoreCounts {
                patients: n("patients")?,
                studies: n("studies")?,
                series: n("series")?,
                instances: n("instances")?,
            })
        })
        .await
    }

    /// Lists series, newest study first; original identifiers only with `show_identifiers`.
    pub async fn list_series(
        &self,
        filter: SeriesFilter,
        show_identifiers: bool,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        self.call(move |conn| {
            let sql = "SELECT s.pseudo_uid, st.pseudo_uid, p.pseudonym, st.pseudo_date, s.modality, s.kind,
                        (SELECT count(*) FROM instances i WHERE i.series = s.id),
                        s.rows, s.columns, s.slices, s.pixel_spacing_row, s.pixel_spacing_col,
                        s.slice_spacing, s.uniform_spacing, s.orientation, s.origin, s.geometry_error,
                        p.original_id, p.original_name, st.original_uid, s.original_uid, st.original_date
                 FROM series s JOIN studies st ON st.id = s.study JOIN patients p ON p.id = st.patient
                 WHERE (?1 IS NULL OR s.modality = ?1)
                 ORDER BY p.pseudonym, st.pseudo_uid, s.series_number, s.pseudo_uid";
            let rows = all_rows(conn, sql, params![filter.modality], |r| {
                let ps_row: Option<f64> = r.get(10)?;
                let ps_col: Option<f64> = r.get(11)?;
                Ok(SeriesRow {
                    series: r.get(0)?,
                    study: r.get(1)?,
                    patient: r.get(2)?,
                    study_date: r.get(3)?,
                    modality: r.get(4)?,
                    kind: r.get(5)?,
                    instances: r.get::<_, i64>(6)? as u64,
                    rows: r.get(7)?,
                    columns: r.get(8)?,
                    slices: r.get(9)?,
                    pixel_spacing: ps_row.zip(ps_col).map(|(a, b)| [a, b]),
                    slice_spacing: r.get(12)?,
                    uniform_spacing: r.get::<_, Option<i64>>(13)?.map(|v| v != 0),
                    orientation: from_json(r.get(14)?),
                    origin: from_json(r.get(15)?),
                    geometry_error: r.get(16)?,
                    original: show_identifiers
                        .then(|| -> rusqlite::Result<OriginalIds> {
                            Ok(OriginalIds {
                                patient_id: r.get(17)?,
                                patient_name: r.get(18)?,
                                study_uid: r.get(19)?,
                                series_uid: r.get(20)?,
                                study_date: r.get(21)?,
                            })
                        })
                        .transpose()?,
                })
            })?;
            Ok(rows)
        })
        .await
    }

    /// Every indexed instance, in series then slice order.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.call(|conn| {
            let sql = "SELECT i.path, i.original_uid, i.pseudo_uid, s.pseudo_uid, s.modality, s.kind,
                        i.sop_class_uid, i.transfer_syntax, i.rows, i.columns, i.frames, i.slice_index
                 FROM instances i JOIN series s ON s.id = i.series
                 ORDER BY s.pseudo_uid, i.slice_index, i.id";
            let rows = all_rows(conn, sql, [], |r| {
                Ok(InstanceRow {
                    path: r.get(0)?,
                    original_uid: r.get(1)?,
                    pseudo_uid: r.get(2)?,
                    series: r.get(3)?,
                    modality: r.get(4)?,
                    kind: r.get(5)?,
                    sop_class_uid: r.get(6)?,
                    transfer_syntax: r.get(7)?,
                    rows: r.get(8)?,
                    columns: r.get(9)?,
                    frames: r.get(10)?,
                    slice_index: r.get(11)?,
                })
            })?;
            Ok(rows)
        })
        .await
    }
}

/// Inserts one instance (and its patient/study/series when new). Returns false if present.
fn insert_one(tx: &Transaction<'_>, i: &NewInstance) -> Result<bool, StoreError> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM instances WHERE original_uid = ?1")?
        .query_row([&i.header.sop_instance_uid], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Ok(false);
    }
    let patient = upsert_patient(tx, i)?;
    let study = upsert_study(tx, i, patient)?;
    let series = upsert_series(tx, i, study)?;
    tx.prepare_cached("UPDATE series SET geometry_dirty = 1 WHERE id = ?1 AND geometry_dirty = 0")?
        .execute([series])?;
    let (h, now) = (&i.header, crate::site::clock::now_i64());
    tx.prepare_cached(
        "INSERT INTO instances (series, original_uid, pseudo_uid, sop_class_uid, path, file_size,
             instance_number, rows, columns, frames, transfer_syntax, pixel_spacing, orientation,
             position, frame_positions, ingested_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        series,
        h.sop_instance_uid,
        i.pseudo.sop_instance_uid,
        h.sop_class_uid,
        i.path,
        h.file_size as i64,
        h.instance_number,
        h.rows,
        h.columns,
        h.frames,
        h.transfer_syntax,
        h.pixel_spacing.as_ref().map(json),
        h.orientation.as_ref().map(json),
        h.position.as_ref().map(json),
        (!h.frame_positions.is_empty()).then(|| json(&h.frame_positions)),
        now
    ])?;
    Ok(true)
}

/// The id of the instance's patient, inserted when new.
fn upsert_patient(tx: &Transaction<'_>, i: &NewInstance) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO patients (original_id, issuer, original_name, pseudonym, date_shift_days)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        i.header.patient_id,
        i.patient_issuer,
        i.header.patient_name,
        i.pseudo.patient,
        i.pseudo.date_shift_days
    ])?;
    Ok(tx
        .prepare_cached("SELECT id FROM patients WHERE issuer = ?1 AND original_id = ?2")?
        .query_row(params![i.patient_issuer, i.header.patient_id], |r| r.get(0))?)
}

/// The id of the instance's study, inserted (for `patient`) when new.
fn upsert_study(tx: &Transaction<'_>, i: &NewInstance, patient: i64) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO studies (patient, original_uid, pseudo_uid, original_date, pseudo_date)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        patient,
        i.header.study_uid,
        i.pseudo.study_uid,
        i.header.study_date,
        i.pseudo.study_date
    ])?;
    Ok(tx
        .prepare_cached("SELECT id FROM studies WHERE original_uid = ?1")?
        .query_row([&i.header.study_uid], |r| r.get(0))?)
}

/// The id of the instance's series, inserted (in `study`) when new.
fn upsert_series(tx: &Transaction<'_>, i: &NewInstance, study: i64) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO series (study, original_uid, pseudo_uid, modality, kind, series_number,
                             original_for_uid, pseudo_for_uid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        study,
        i.header.series_uid,
        i.pseudo.series_uid,
        i.header.modality,
        i.header.kind.as_str(),
        i.header.series_number,
        i.header.frame_of_reference_uid,
        i.pseudo.frame_of_reference_uid
    ])?;
    Ok(tx
        .prepare_cached("SELECT id FROM series WHERE original_uid = ?1")?
        .query_row([&i.header.series_uid], |r| r.get(0))?)
}

/// The stored geometry of one instance of a series.
struct Inst {
    id: i64,
    rows: Option<u32>,
    columns: Option<u32>,
    spacing: Option<[f64; 2]>,
    orientation: Option<[f64; 6]>,
    position: Option<[f64; 3]>,
    frame_positions: Option<Vec<[f64; 3]>>,
}

impl Inst {
    fn plane(&self, position: [f64; 3]) -> Option<SlicePlane> {
        Some(SlicePlane {
            rows: self.rows?,
            columns: self.columns?,
            pixel_spacing: self.spacing?,
            orientation: self.orientation?,
            position,
        })
    }
}

/// Recomputes one series' grid from its instances and clears its dirty mark.
fn refresh_one(tx: &Transaction<'_>, series: i64) -> Result<(), StoreError> {
    let kind: String = tx
        .prepare_cached("SELECT kind FROM series WHERE id = ?1")?
        .query_row([series], |r| r.get(0))?;
    if kind != ObjectKind::Image.as_str() {
        // Segmentations, reports and RT objects are indexed without a grid of their own.
        tx.prepare_cached("UPDATE series SET geometry_dirty = 0 WHERE id = ?1")?
            .execute([series])?;
        return Ok(());
    }
    let insts: Vec<Inst> = {
        let mut st = tx.prepare_cached(
            "SELECT id, rows, columns, pixel_spacing, orientation, position, frame_positions
             FROM instances WHERE series = ?1 ORDER BY id",
        )?;
        st.query_map([series], |r| {
            Ok(Inst {
                id: r.get(0)?,
                rows: r.get(1)?,
                columns: r.get(2)?,
                spacing: from_json(r.get(3)?),
                orientation: from_json(r.get(4)?),
                position: from_json(r.get(5)?),
                frame_positions: from_json(r.get(6)?),
            })
        })?
        .collect::<Result<_, _>>()?
    };
    // One multi-frame instance with per-frame positions is a volume on its own; otherwise each
    // instance is one slice.
    let planes: Option<Vec<SlicePlane>> = match insts.as_slice() {
        [only] if only.frame_positions.is_some() => only
            .frame_positions
            .as_ref()
            .and_then(|fp| fp.iter().map(|p| only.plane(*p)).collect()),
        _ => insts
            .iter()
            .map(|i| i.position.and_then(|p| i.plane(p)))
            .collect(),
    };
    let result = match planes {
        Some(p) if !p.is_empty() => geometry::compute(&p),
        _ => Err(geometry::GeometryError::NoGeometry),
    };
    match result {
        Ok((g, order)) => store_grid(tx, series, &g, &order, &insts),
        Err(e) => {
            tx.prepare_cached(
                "UPDATE series SET geometry_dirty = 0, rows = NULL, columns = NULL, slices = NULL,
                    pixel_spacing_row = NULL, pixel_spacing_col = NULL, slice_spacing = NULL,
                    uniform_spacing = NULL, orientation = NULL, origin = NULL, geometry_error = ?2
                 WHERE id = ?1",
            )?
            .execute(params![series, e.to_string()])?;
            Ok(())
        }
    }
}

/// Stores a computed grid and, when every instance is a slice, each one's slice index.
fn store_grid(
    tx: &Transaction<'_>,
    series: i64,
    g: &SeriesGeometry,
    order: &[usize],
    insts: &[Inst],
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE series SET geometry_dirty = 0, rows = ?2, columns = ?3, slices = ?4,
            pixel_spacing_row = ?5, pixel_spacing_col = ?6, slice_spacing = ?7,
            uniform_spacing = ?8, orientation = ?9, origin = ?10, geometry_error = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        series,
        g.rows,
        g.columns,
        g.slices,
        g.pixel_spacing[0],
        g.pixel_spacing[1],
        g.slice_spacing,
        g.uniform_spacing,
        json(&g.orientation),
        json(&g.origin),
    ])?;
    if insts.len() == order.len() {
        let mut st = tx.prepare_cached("UPDATE instances SET slice_index = ?2 WHERE id = ?1")?;
        for (slice, idx) in order.iter().enumerate() {
            if let Some(inst) = insts.get(*idx) {
                st.execute(params![inst.id, slice as i64])?;
            }
        }
    }
    Ok(())
}
