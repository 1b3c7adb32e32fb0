//! Mask annotations: NIfTI (`.nii`, `.nii.gz`: what nnU-Net, TotalSegmentator, ITK-SNAP and
//! 3D Slicer write) and DICOM SEG (3D Slicer, OHIF, highdicom) in and out. An imported mask must
//! lie on its series' voxel grid: same dimensions, spacing and affine within 1e-3 mm, or the
//! import fails with both geometries named.

use std::path::Path;

use serde::Deserialize;

use super::reorient::{self, AxisMap};
use super::{Context, ImportError, ImportOptions, ImportedItem, new_version, save, series_grid_of};
use crate::annotations::model::{Content, Segment, Segmentation};
use crate::annotations::nifti::{self, NiftiGeometry, NiftiImage, NiftiLimits};
use crate::site::dicom::geometry;
use crate::site::dicom::seg::{
    self, AlgorithmType, CodedConcept, SegLimits, SegSource, SegWrite, SegmentInfo,
    SegmentationType, SliceRef, SourceSlice,
};
use crate::site::store::{CaseRef, SeriesGrid};

/// Geometric tolerance, mm.
pub const GRID_TOLERANCE_MM: f64 = 1e-3;

/// Sidecar of a NIfTI mask (`case.nii.gz` → `case.json`): names its series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    series: String,
}

fn sidecar_path(path: &Path) -> Option<std::path::PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))?;
    Some(path.with_file_name(format!("{stem}.json")))
}

fn describe(dims: [u32; 3], spacing: [f64; 3], origin: [f64; 3]) -> String {
    format!(
        "{}x{}x{} voxels, spacing {:.4}x{:.4}x{:.4} mm, origin ({:.3}, {:.3}, {:.3}) mm RAS",
        dims[0],
        dims[1],
        dims[2],
        spacing[0],
        spacing[1],
        spacing[2],
        origin[0],
        origin[1],
        origin[2]
    )
}

/// Checks that a NIfTI header's grid is the series grid, up to a lossless reorder of its axes
/// (`reorient`); returns how its voxels map onto the series. A grid that would need resampling
/// is refused, naming what differs and both geometries.
pub fn check_grid(img: &NiftiGeometry, grid: &SeriesGrid) -> Result<AxisMap, String> {
    let series_affine = geometry::nifti_affine(&grid.geometry());
    let dims = grid.dims().map(|d| d as usize);
    if let Some(map) = reorient::axis_map(img, &series_affine, dims, GRID_TOLERANCE_MM) {
        return Ok(map);
    }
    let mask_dims = [img.dim[0] as u32, img.dim[1] as u32, img.dim[2] as u32];
    let mask_origin = [img.affine[0][3], img.affine[1][3], img.affine[2][3]];
    let series_origin = [
        series_affine[0][3],
        series_affine[1][3],
        series_affine[2][3],
    ];
    let mismatch = |what: &str| {
        format!(
            "mask geometry does not match series {} ({what}): mask {}; series {}",
            grid.pseudo_uid,
            describe(mask_dims, img.pixdim, mask_origin),
            describe(grid.dims(), grid.spacing(), series_origin)
        )
    };
    if mask_dims != grid.dims() || img.dim.iter().any(|&d| d > u32::MAX as usize) {
        return Err(mismatch("dimensions"));
    }
    let spacing = grid.spacing();
    if (0..3).any(|a| (img.pixdim[a] - spacing[a]).abs() > GRID_TOLERANCE_MM) {
        return Err(mismatch("spacing"));
    }
    for (mask_row, series_row) in img.affine.iter().zip(&series_affine).take(3) {
        if (0..3).any(|c| (mask_row[c] - series_row[c]).abs() > GRID_TOLERANCE_MM) {
            return Err(mismatch("orientation"));
        }
        if (mask_row[3] - series_row[3]).abs() > GRID_TOLERANCE_MM {
            return Err(mismatch("origin"));
        }
    }
    Ok(AxisMap::IDENTITY)
}

/// Segments for a label map: the declared ones, or one per value present (`segment-N`).
fn segments_for(labels: &[u8], declared: &Option<Vec<Segment>>) -> Vec<Segment> {
    if let Some(d) = declared {
        return d.clone();
    }
    let mut present = [false; 256];
    for &v in labels {
        present[usize::from(v)] = true;
    }
    (1..=255u8)
        .filter(|v| present[usize::from(*v)])
        .map(|value| Segment {
            value,
            name: format!("segment-{value}"),
        })
        .collect()
}

async fn series_of(
    ctx: &Context<'_>,
    opts: &ImportOptions,
    path: &Path,
) -> Result<(CaseRef, SeriesGrid), ImportError> {
    let name = match &opts.series {
        Some(s) => s.clone(),
        None => {
            let side = sidecar_path(path).filter(|p| p.exists()).ok_or_else(|| {
                ImportError::file(
                    path,
                    "no --series given and no sidecar JSON ({\"series\": UID}) beside the mask",
                )
            })?;
            let text = std::fs::read_to_string(&side)
                .map_err(|e| ImportError::file(&side, e.to_string()))?;
            let s: Sidecar =
                serde_json::from_str(&text).map_err(|e| ImportError::file(&side, e.to_string()))?;
            s.series
        }
    };
    series_grid_of(ctx, opts, path, &name, "a mask needs").await
}

/// The `--reader` a mask is imported for (masks name no reader themselves).
async fn mask_reader(
    ctx: &Context<'_>,
    opts: &ImportOptions,
    path: &Path,
) -> Result<crate::site::store::ReaderRow, ImportError> {
    let reader_id = opts
        .reader
        .as_deref()
        .ok_or_else(|| ImportError::file(path, "--reader is required for masks"))?;
    Ok(ctx.store.reader(reader_id).await?)
}

/// Runs a file reader on the blocking pool; its errors name the file.
async fn read_blocking<T, E>(
    path: &Path,
    read: impl FnOnce(&Path) -> Result<T, E> + Send + 'static,
) -> Result<T, ImportError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || read(&p))
        .await
        .map_err(|e| ImportError::file(path, e.to_string()))?
        .map_err(|e| ImportError::file(path, e.to_string()))
}

/// Imports one NIfTI mask as a new segmentation version of `--reader`.
pub async fn import_nifti(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let reader = mask_reader(ctx, opts, path).await?;
    let (case, grid) = series_of(ctx, opts, path).await?;
    // The header is held against the series grid before any voxel is read.
    let g = grid.clone();
    let img = read_blocking(path, move |p| {
        nifti::read_file_expecting(p, &NiftiLimits::default(), &|h| {
            check_grid(h, &g).map(|_| ())
        })
    })
    .await?;
    let geometry = NiftiGeometry {
        dim: img.dim,
        pixdim: img.pixdim,
        affine: img.affine,
    };
    let map = check_grid(&geometry, &grid).map_err(|m| ImportError::file(path, m))?;
    let labels = img
        .to_labels_u8()
        .map_err(|e| ImportError::file(path, e.to_string()))?;
    // The same voxels in the series' axis order (a no-op when the mask already is).
    let dims = grid.dims().map(|d| d as usize);
    let labels = reorient::to_series_order(&labels, img.dim, map, dims);
    let segments = segments_for(&labels, &opts.segments);
    let map = (case, grid.dims(), segments, labels);
    let items = save_segmentation(ctx, path, opts, &reader, map, "nifti").await?;
    Ok(warn_uneven(items, &grid))
}

/// Notes on each item (and in the log) that the series' slices are unevenly spaced: a NIfTI
/// file of it places its slices at one spacing, which is not where all of them are.
fn warn_uneven(mut items: Vec<ImportedItem>, grid: &SeriesGrid) -> Vec<ImportedItem> {
    let Some((lo, hi)) = grid.uneven_slices() else {
        return items;
    };
    let warning = format!(
        "series {} has uneven slice spacing ({lo:.3} to {hi:.3} mm: a missing slice?); a NIfTI file of it assumes one spacing",
        grid.pseudo_uid
    );
    tracing::warn!("{warning}");
    for i in &mut items {
        if let Some(obj) = i.summary.as_object_mut() {
            obj.insert("warning".into(), warning.clone().into());
        }
    }
    items
}

/// Writes a segmentation as a NIfTI label map on its series grid.
pub fn export_nifti(seg: &Segmentation, grid: &SeriesGrid, out: &Path) -> Result<(), String> {
    let affine = geometry::nifti_affine(&grid.geometry());
    let dims = [
        seg.dims[0] as usize,
        seg.dims[1] as usize,
        seg.dims[2] as usize,
    ];
    let img = NiftiImage::from_u8(dims, grid.spacing(), affine, seg.labels.clone())
        .map_err(|e| e.to_string())?;
    nifti::write_file(out, &img).map_err(|e| e.to_string())
}

/// Whether a file starts like a DICOM Part 10 file.
pub fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b[128..132] == b"DICM"
}

/// Imports a DICOM SEG (BINARY or FRACTIONAL, one or more segments) as a label map on the
/// series it references. Frames map to slices by ReferencedSOPInstanceUID, else by position.
/// FRACTIONAL values at or above half the maximum count as inside. Overlapping segments are
/// refused: a stored segmentation is a label map.
pub async fn import_seg(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let reader = mask_reader(ctx, opts, path).await?;
    let seg_obj = read_blocking(path, |p| seg::read_seg(p, &SegLimits::default())).await?;
    let series_name = match (&opts.series, &seg_obj.referenced_series_uid) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => {
            return Err(ImportError::file(
                path,
                "the SEG references no series; name it with --series",
            ));
        }
    };
    let (case, grid) = series_grid_of(ctx, opts, path, &series_name, "a mask needs").await?;
    let slices = seg_slices(&seg_obj, &grid).map_err(|m| ImportError::file(path, m))?;
    let labels =
        seg::frames_to_label_map(&seg_obj, &slices, grid.orientation, grid.rows, grid.columns)
            .map_err(|e| ImportError::file(path, e.to_string()))?;
    let segments = match &opts.segments {
        Some(declared) => declared.clone(),
        // Every segment of the SEG, numbered 1..=255 (checked by frames_to_label_map).
        None => seg_obj
            .segments
            .iter()
            .map(|s| Segment {
                value: u8::try_from(s.number).unwrap_or_default(),
                name: s.label.clone(),
            })
            .collect(),
    };
    let map = (case, grid.dims(), segments, labels);
    let items = save_segmentation(ctx, path, opts, &reader, map, "dicom-seg").await?;
    Ok(warn_uneven(items, &grid))
}

/// The slices of `grid` for mapping the frames of `seg_obj`, by the instance UIDs the SEG
/// references (pseudonymous for a SEG exported with --deidentified, else original). The series
/// must have per-slice instances and the SEG its pixel spacing.
fn seg_slices(seg_obj: &seg::SegObject, grid: &SeriesGrid) -> Result<Vec<SliceRef>, String> {
    let pseudonymous = seg_obj.referenced_series_uid.as_deref() == Some(grid.pseudo_uid.as_str());
    let slices: Vec<SliceRef> = grid
        .slice_list
        .iter()
        .map(|s| SliceRef {
            sop_instance_uid: if pseudonymous {
                s.pseudo_uid.clone()
            } else {
                s.original_uid.clone()
            },
            position: s.position,
        })
        .collect();
    if slices.len() != grid.slices as usize {
        return Err(format!(
            "series {} has no per-slice instances to map SEG frames onto",
            grid.pseudo_uid
        ));
    }
    if let Some(ps) = seg_obj.pixel_spacing
        && (0..2).any(|i| (ps[i] - grid.pixel_spacing[i]).abs() > GRID_TOLERANCE_MM)
    {
        return Err(format!(
            "SEG pixel spacing {:.4}x{:.4} mm does not match series {} ({:.4}x{:.4} mm)",
            ps[0], ps[1], grid.pseudo_uid, grid.pixel_spacing[0], grid.pixel_spacing[1]
        ));
    }
    Ok(slices)
}

/// A label map of a case: the case, its grid size, the declared segments and the labels.
type LabelMap = (CaseRef, [u32; 3], Vec<Segment>, Vec<u8>);

/// Checks a label map and saves it as the reader's new segmentation version (one transaction).
async fn save_segmentation(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
    reader: &crate::site::store::ReaderRow,
    (case, dims, segments, labels): LabelMap,
    source: &str,
) -> Result<Vec<ImportedItem>, ImportError> {
    let seg = Segmentation::new(dims, segments, labels).map_err(|source| ImportError::Model {
        path: path.into(),
        source,
    })?;
    let v = new_version(&Content::Segmentation(seg), reader, &case, opts, source);
    save(ctx, path, vec![(v, reader.id.clone(), case)]).await
}

/// A deterministic `2.25.` UID for an exported object, from what it is made of: re-exporting
/// the same version gives the same UIDs.
fn derived_uid(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"fedanno-export-uid-v1");
    for p in parts {
        ctx.update(&[0]);
        ctx.update(p.as_bytes());
    }
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Who and what an exported SEG is about.
pub struct SegExport<'a> {
    pub seg: &'a Segmentation,
    pub grid: &'a SeriesGrid,
    pub version: &'a crate::site::store::VersionRow,
    pub creator: &'a str,
    pub who: &'a super::export::SegIdentity,
    pub deidentified: bool,
    /// The reader is a model: its segments are `AUTOMATIC`, with the model named as the
    /// algorithm (a human reader's are `MANUAL`).
    pub automatic: bool,
}

/// Writes a segmentation as a BINARY DICOM SEG referencing its source series: the original
/// identifiers for local use, or only pseudonymous ones with `deidentified`.
pub fn export_seg(e: &SegExport<'_>, out: &Path) -> Result<(), String> {
    let g = e.grid;
    if g.slice_list.len() != g.slices as usize {
        return Err(format!(
            "series {} has no per-slice instances for a SEG to reference",
            g.pseudo_uid
        ));
    }
    let source = seg_source(e);
    let segments: Vec<SegmentInfo> = e
        .seg
        .segments
        .iter()
        .map(|s| SegmentInfo {
            number: u16::from(s.value),
            label: s.name.clone(),
            algorithm_type: if e.automatic {
                AlgorithmType::Automatic
            } else {
                AlgorithmType::Manual
            },
            algorithm_name: e.automatic.then(|| e.creator.to_string()),
            category: CodedConcept::new("49755003", "SCT", "Morphologically Altered Structure"),
            property_type: CodedConcept::new("4147007", "SCT", "Mass"),
        })
        .collect();
    let masks: Vec<(u16, Vec<u8>)> = e
        .seg
        .segments
        .iter()
        .map(|s| (u16::from(s.value), e.seg.mask(s.value)))
        .collect();
    let volumes: Vec<(u16, &[u8])> = masks.iter().map(|(n, m)| (*n, m.as_slice())).collect();
    let mode = if e.deidentified {
        "deidentified"
    } else {
        "local"
    };
    let (date, time) = crate::site::calendar::utc_date_time(e.version.created_at);
    let w = SegWrite {
        source: &source,
        segments: &segments,
        volumes: &volumes,
        segmentation_type: SegmentationType::Binary,
        sop_instance_uid: derived_uid(&[
            "seg-instance",
            &e.version.content_hash,
            &source.series_uid,
            mode,
        ]),
        series_uid: derived_uid(&[
            "seg-series",
            &e.version.content_hash,
            &source.series_uid,
            mode,
        ]),
        series_number: 9000 + (e.version.version.clamp(0, 999) as u32),
        series_description: format!("fedanno {} v{}", e.version.kind, e.version.version),
        content_label: "ANNOTATION".into(),
        content_creator: e.creator.to_string(),
        // A de-identified SEG names no site: the hospital's name is identifying.
        manufacturer: if e.deidentified {
            "fedanno".to_string()
        } else {
            format!("fedanno ({})", e.who.site_name)
        },
        software_version: e.who.software_version.clone(),
        content_date: date,
        content_time: time,
    };
    seg::write_seg(out, &w).map_err(|err| err.to_string())
}

/// The source series a SEG references: original identifiers, or pseudonymous ones when
/// `e.deidentified` (with the de-identification method and an `ANON^` patient name).
fn seg_source(e: &SegExport<'_>) -> SegSource {
    let g = e.grid;
    let pick = |orig: &str, pseudo: &str| {
        if e.deidentified {
            pseudo.to_string()
        } else {
            orig.to_string()
        }
    };
    let for_uid = match (&g.for_original_uid, &g.for_pseudo_uid) {
        (Some(o), Some(p)) => pick(o, p),
        _ => derived_uid(&["frame-of-reference", &g.pseudo_uid]),
    };
    SegSource {
        deidentification_method: e
            .deidentified
            .then(|| crate::site::dicom::deid::SCHEME.to_string()),
        patient_name: if e.deidentified {
            format!("ANON^{}", g.patient_pseudonym)
        } else {
            g.patient_original_name.clone()
        },
        patient_id: pick(&g.patient_original_id, &g.patient_pseudonym),
        patient_birth_date: String::new(),
        patient_sex: String::new(),
        study_uid: pick(&g.study_original_uid, &g.study_pseudo_uid),
        study_date: if e.deidentified {
            g.study_pseudo_date.clone()
        } else {
            g.study_original_date.clone()
        }
        .unwrap_or_default(),
        study_time: String::new(),
        study_id: String::new(),
        accession_number: String::new(),
        referring_physician: String::new(),
        series_uid: pick(&g.original_uid, &g.pseudo_uid),
        frame_of_reference_uid: for_uid,
        rows: g.rows,
        columns: g.columns,
        pixel_spacing: g.pixel_spacing,
        slice_thickness: g.slice_spacing.unwrap_or(1.0),
        orientation: g.orientation,
        slices: g
            .slice_list
            .iter()
            .map(|s| SourceSlice {
                sop_class_uid: s.sop_class_uid.clone(),
                sop_instance_uid: pick(&s.original_uid, &s.pseudo_uid),
                position: s.position,
            })
            .collect(),
    }
}
