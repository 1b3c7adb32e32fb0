//! Store jobs that resolve a case as users name it (a series or study, by pseudonymous or
//! original UID) and return what annotation import and export need about its series: the voxel
//! grid and the sorted slices with their original and pseudonymous identifiers.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::imaging::from_json;
use super::{Store, StoreError};

/// A resolved case: always a study, and a series when the name was a series UID.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseRef {
    pub study_id: i64,
    pub study: String,
    pub series_id: Option<i64>,
    pub series: Option<String>,
}

/// One slice of a series, in sorted order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceInfo {
    pub sop_class_uid: String,
    pub original_uid: String,
    pub pseudo_uid: String,
    pub position: [f64; 3],
}

/// The grid and identity of a series, for import checks and export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesGrid {
    pub series_id: i64,
    pub study_id: i64,
    pub pseudo_uid: String,
    pub original_uid: String,
    pub study_pseudo_uid: String,
    pub study_original_uid: String,
    pub for_original_uid: Option<String>,
    pub for_pseudo_uid: Option<String>,
    pub patient_original_id: String,
    pub patient_original_name: String,
    pub patient_pseudonym: String,
    pub study_original_date: Option<String>,
    pub study_pseudo_date: Option<String>,
    pub modality: String,
    pub rows: u32,
    pub columns: u32,
    pub slices: u32,
    pub pixel_spacing: [f64; 2],
    pub slice_spacing: Option<f64>,
    pub orientation: [f64; 6],
    pub origin: [f64; 3],
    /// Sorted along the slice normal; empty for a single multi-frame instance.
    pub slice_list: Vec<SliceInfo>,
}

impl SeriesGrid {
    /// (x = columns, y = rows, z = slices).
    pub fn dims(&self) -> [u32; 3] {
        [self.columns, self.rows, self.slices]
    }

    /// Voxel spacing along (x, y, z), mm.
    pub fn spacing(&self) -> [f64; 3] {
        [
            self.pixel_spacing[1],
            self.pixel_spacing[0],
            self.slice_spacing.unwrap_or(1.0),
        ]
    }

    /// The smallest and largest gap between neighbouring slices along the slice normal, when
    /// they differ by more than 1 % (a missing slice, or a series of mixed spacing): a NIfTI
    /// grid assumes uniform spacing, so such a series deserves a warning.
    pub fn uneven_slices(&self) -> Option<(f64, f64)> {
        let n = self.normal();
        let depth: Vec<f64> = self
            .slice_list
            .iter()
            .map(|s| s.position[0] * n[0] + s.position[1] * n[1] + s.position[2] * n[2])
            .collect();
        let gaps: Vec<f64> = depth.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        let lo = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = gaps.iter().copied().fold(0.0, f64::max);
        (lo.is_finite() && hi - lo > 0.01 * hi).then_some((lo, hi))
    }

    /// The slice normal (row direction × column direction).
    pub fn normal(&self) -> [f64; 3] {
        let o = self.orientation;
        [
            o[1] * o[5] - o[2] * o[4],
            o[2] * o[3] - o[0] * o[5],
            o[0] * o[4] - o[1] * o[3],
        ]
    }

    pub fn geometry(&self) -> crate::site::dicom::geometry::SeriesGeometry {
        crate::site::dicom::geometry::SeriesGeometry {
            rows: self.rows,
            columns: self.columns,
            slices: self.slices,
            pixel_spacing: self.pixel_spacing,
            slice_spacing: self.slice_spacing,
            uniform_spacing: true,
            orientation: self.orientation,
            origin: self.origin,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("no series or study is indexed under {0:?}; `fedanno cases` lists them")]
    Unknown(String),
    #[error("series {0} has no voxel grid ({1})")]
    NoGrid(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn resolve(conn: &Connection, name: &str) -> Result<Option<CaseRef>, StoreError> {
    let series = conn
        .prepare_cached(
            "SELECT st.id, st.pseudo_uid, s.id, s.pseudo_uid FROM series s JOIN studies st ON st.id = s.study
             WHERE s.pseudo_uid = ?1 OR s.original_uid = ?1",
        )?
        .query_row([name], |r| Ok(CaseRef { study_id: r.get(0)?, study: r.get(1)?, series_id: Some(r.get(2)?), series: Some(r.get(3)?) }))
        .optional()?;
    if series.is_some() {
        return Ok(series);
    }
    Ok(conn
        .prepare_cached(
            "SELECT id, pseudo_uid FROM studies WHERE pseudo_uid = ?1 OR original_uid = ?1",
        )?
        .query_row([name], |r| {
            Ok(CaseRef {
                study_id: r.get(0)?,
                study: r.get(1)?,
                series_id: None,
                series: None,
            })
        })
        .optional()?)
}

pub(super) fn grid(
    conn: &Connection,
    series_id: i64,
) -> Result<Result<SeriesGrid, CaseError>, StoreError> {
    let grid = conn.query_row(
        "SELECT st.id, s.pseudo_uid, s.original_uid, st.pseudo_uid, st.original_uid, s.original_for_uid, s.pseudo_for_uid,
                p.original_id, p.original_name, p.pseudonym, st.original_date, st.pseudo_date, s.modality,
                s.rows, s.columns, s.slices, s.pixel_spacing_row, s.pixel_spacing_col, s.slice_spacing,
                s.orientation, s.origin, s.geometry_error
         FROM series s JOIN studies st ON st.id = s.study JOIN patients p ON p.id = st.patient WHERE s.id = ?1",
        [series_id],
        |r| grid_row(r, series_id),
    )?;
    Ok(match grid {
        Ok(mut g) => {
            g.slice_list = slice_list(conn, series_id)?;
            Ok(g)
        }
        Err(e) => Err(e),
    })
}

/// A series' grid (without its slice list) from the row `grid` selects, or why it has none.
fn grid_row(
    r: &rusqlite::Row<'_>,
    series_id: i64,
) -> rusqlite::Result<Result<SeriesGrid, CaseError>> {
    let pseudo_uid: String = r.get(1)?;
    let orientation: Option<[f64; 6]> = from_json(r.get(19)?);
    let origin: Option<[f64; 3]> = from_json(r.get(20)?);
    let (
        Some(rows),
        Some(columns),
        Some(slices),
        Some(psr),
        Some(psc),
        Some(orientation),
        Some(origin),
    ) = (
        r.get(13)?,
        r.get(14)?,
        r.get(15)?,
        r.get(16)?,
        r.get(17)?,
        orientation,
        origin,
    )
    else {
        let error: Option<String> = r.get(21)?;
        let why = error.unwrap_or_else(|| "not an image series".into());
        return Ok(Err(CaseError::NoGrid(pseudo_uid, why)));
    };
    Ok(Ok(SeriesGrid {
        series_id,
        study_id: r.get(0)?,
        pseudo_uid,
        original_uid: r.get(2)?,
        study_pseudo_uid: r.get(3)?,
        study_original_uid: r.get(4)?,
        for_original_uid: r.get(5)?,
        for_pseudo_uid: r.get(6)?,
        patient_original_id: r.get(7)?,
        patient_original_name: r.get(8)?,
        patient_pseudonym: r.get(9)?,
        study_original_date: r.get(10)?,
        study_pseudo_date: r.get(11)?,
        modality: r.get(12)?,
        rows,
        columns,
        slices,
        pixel_spacing: [psr, psc],
        slice_spacing: r.get(18)?,
        orientation,
        origin,
        slice_list: Vec::new(),
    }))
}

/// The slices of a series in sorted order (instances without a stored position are left out).
fn slice_list(conn: &Connection, series_id: i64) -> Result<Vec<SliceInfo>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT sop_class_uid, original_uid, pseudo_uid, position FROM instances
         WHERE series = ?1 AND slice_index IS NOT NULL ORDER BY slice_index",
    )?;
    let slices = st
        .query_map(params![series_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?
        .filter_map(|r| match r {
            Ok((sop_class_uid, original_uid, pseudo_uid, pos)) => {
                from_json::<[f64; 3]>(pos).map(|position| {
                    Ok(SliceInfo {
                        sop_class_uid,
                        original_uid,
                        pseudo_uid,
                        position,
                    })
                })
            }
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(slices)
}

impl Store {
    /// Resolves a series or study named by pseudonymous or original UID.
    pub async fn resolve_case(&self, name: &str) -> Result<CaseRef, CaseError> {
        let n = name.trim().to_string();
        match self.call(move |c| resolve(c, &n)).await? {
            Some(r) => Ok(r),
            None => Err(CaseError::Unknown(name.to_string())),
        }
    }

    /// The grid of a series (by database id).
    pub async fn series_grid(&self, series_id: i64) -> Result<SeriesGrid, CaseError> {
        self.call(move |c| grid(c, series_id)).await?
    }

    /// The grid of the series a SEG references, by original or pseudonymous series UID.
    pub async fn series_grid_by_uid(&self, uid: &str) -> Result<SeriesGrid, CaseError> {
        let case = self.resolve_case(uid).await?;
        match case.series_id {
            Some(id) => self.series_grid(id).await,
            None => Err(CaseError::Unknown(uid.to_string())),
        }
    }
}
