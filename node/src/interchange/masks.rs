//! Mask annotations: NIfTI (`.nii`, `.nii.gz`: what nnU-Net, TotalSegmentator, ITK-SNAP and
//! 3D Slicer write) and DICOM SEG (3D Slicer, OHIF, highdicom) in and out. An imported mask must
//! lie on its series' voxel grid: same dimensions, spacing and affine within 1e-3 mm, or the
//! import fails with both geometries named.

use std::path::Path;

use serde::Deserialize;

use super::{Context, ImportError, ImportOptions, ImportedItem, new_version, resolve, save};
use crate::annotation::model::{Content, Segment, Segmentation};
use crate::dicom::geometry;
use crate::formats::nifti::{self, NiftiImage, NiftiLimits};
use crate::store::{CaseRef, SeriesGrid};

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

/// Checks that a NIfTI image lies on the series grid.
pub fn check_grid(img: &NiftiImage, grid: &SeriesGrid) -> Result<(), String> {
    let series_affine = geometry::nifti_affine(&grid.geometry());
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
    Ok(())
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
    let case = resolve(ctx, opts, path, &name).await?;
    let Some(series_id) = case.series_id else {
        return Err(ImportError::file(
            path,
            format!("{name} names a study; a mask needs a series"),
        ));
    };
    let grid = ctx
        .store
        .series_grid(series_id)
        .await
        .map_err(|source| ImportError::Case {
            path: path.into(),
            source,
        })?;
    Ok((case, grid))
}

/// Imports one NIfTI mask as a new segmentation version of `--reader`.
pub async fn import_nifti(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let reader_id = opts
        .reader
        .as_deref()
        .ok_or_else(|| ImportError::file(path, "--reader is required for masks"))?;
    let reader = ctx.store.reader(reader_id).await?;
    let (case, grid) = series_of(ctx, opts, path).await?;
    let p = path.to_path_buf();
    let img = tokio::task::spawn_blocking(move || nifti::read_file(&p, &NiftiLimits::default()))
        .await
        .map_err(|e| ImportError::file(path, e.to_string()))?
        .map_err(|e| ImportError::file(path, e.to_string()))?;
    check_grid(&img, &grid).map_err(|m| ImportError::file(path, m))?;
    let labels = img
        .to_labels_u8()
        .map_err(|e| ImportError::file(path, e.to_string()))?;
    let segments = segments_for(&labels, &opts.segments);
    let seg =
        Segmentation::new(grid.dims(), segments, labels).map_err(|source| ImportError::Model {
            path: path.into(),
            source,
        })?;
    let content = Content::Segmentation(seg);
    let v = new_version(&content, &reader, &case, opts, "nifti");
    save(
        ctx,
        path,
        vec![(v, "segmentation", reader.id.clone(), case)],
    )
    .await
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

/// Imports a DICOM SEG (not yet available).
pub async fn import_seg(
    _ctx: &Context<'_>,
    path: &Path,
    _opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    Err(ImportError::file(
        path,
        "DICOM SEG import is not available in this build",
    ))
}

/// Writes a segmentation as DICOM SEG (not yet available).
pub fn export_seg(
    _seg: &Segmentation,
    _grid: &SeriesGrid,
    _v: &crate::store::VersionRow,
    _who: &super::export::SegIdentity,
    _deidentified: bool,
    _out: &Path,
) -> Result<(), String> {
    Err("DICOM SEG export is not available in this build".into())
}
