//! Mask annotations: NIfTI (`.nii`, `.nii.gz`: what nnU-Net, TotalSegmentator, ITK-SNAP and
//! 3D Slicer write) in and out, and what every mask import shares (DICOM SEG files are in
//! `segfile`). An imported mask must lie on its series' voxel grid: same dimensions, spacing
//! and affine within 1e-3 mm up to a lossless reorder of axes, or the import fails with both
//! geometries named.

use std::path::Path;

use serde::Deserialize;

use super::gaps::{self, Filled};
use super::reorient::{self, AxisMap};
use super::{Context, ImportError, ImportOptions, ImportedItem, new_version, save, series_grid_of};
use crate::annotations::model::{
    Algorithm, Code, Content, Description, Method, Overlap, Segment, Segmentation,
};
use crate::annotations::nifti::{self, NiftiGeometry, NiftiImage, NiftiLimits};
use crate::site::dicom::geometry;
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
    check_against(img, grid, &grid.geometry())
}

/// [`check_grid`] against a geometry of the series (its own, or its filled regular grid).
fn check_against(
    img: &NiftiGeometry,
    grid: &SeriesGrid,
    g: &geometry::SeriesGeometry,
) -> Result<AxisMap, String> {
    let series_affine = geometry::nifti_affine(g);
    let series_dims = [g.columns, g.rows, g.slices];
    let spacing = [
        g.pixel_spacing[1],
        g.pixel_spacing[0],
        g.slice_spacing.unwrap_or(1.0),
    ];
    let dims = series_dims.map(|d| d as usize);
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
            describe(series_dims, spacing, series_origin)
        )
    };
    if mask_dims != series_dims || img.dim.iter().any(|&d| d > u32::MAX as usize) {
        return Err(mismatch("dimensions"));
    }
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

/// The grid a NIfTI mask is on: the series' own, or (for a series with missing slices) the
/// regular grid holding them as empty slices ([`gaps`]).
enum NiftiGrid {
    Series(AxisMap),
    Filled(AxisMap, Filled),
}

fn nifti_grid(img: &NiftiGeometry, grid: &SeriesGrid) -> Result<NiftiGrid, String> {
    if let Some(f) = gaps::filled(grid)
        && let Ok(map) = check_against(img, grid, &f.geometry(grid))
    {
        return Ok(NiftiGrid::Filled(map, f));
    }
    check_grid(img, grid).map(NiftiGrid::Series)
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
        .map(|value| Segment::named(value, format!("segment-{value}")))
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
pub(super) async fn mask_reader(
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
pub(super) async fn read_blocking<T, E>(
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
            nifti_grid(h, &g).map(|_| ())
        })
    })
    .await?;
    let geometry = NiftiGeometry {
        dim: img.dim,
        pixdim: img.pixdim,
        affine: img.affine,
    };
    let on = nifti_grid(&geometry, &grid).map_err(|m| ImportError::file(path, m))?;
    let labels = img
        .to_labels_u8()
        .map_err(|e| ImportError::file(path, e.to_string()))?;
    // The same voxels in the series' axis order (a no-op when the mask already is), on the
    // series' own slices.
    let dims = grid.dims().map(|d| d as usize);
    let labels = match on {
        NiftiGrid::Series(map) => reorient::to_series_order(&labels, img.dim, map, dims),
        NiftiGrid::Filled(map, f) => {
            let regular =
                reorient::to_series_order(&labels, img.dim, map, [dims[0], dims[1], f.len]);
            f.gather(&regular, dims[0] * dims[1]).map_err(|stray| {
                ImportError::file(
                    path,
                    format!(
                        "the mask labels {stray} voxels on slice positions series {} lacks (missing slices)",
                        grid.pseudo_uid
                    ),
                )
            })?
        }
    };
    let mut segments = segments_for(&labels, &opts.segments);
    if let Some(version) = &opts.model_version {
        let described =
            model_description(&reader, version).map_err(|m| ImportError::file(path, m))?;
        for s in &mut segments {
            s.description = Some(described.clone());
        }
    }
    let map = (case, grid.dims(), segments, labels, Vec::new());
    let items = save_segmentation(ctx, path, opts, &reader, map, "nifti").await?;
    Ok(warn_uneven(items, &grid))
}

/// The description of a model reader's segments made by `version` of it: the default codes,
/// `AUTOMATIC`, the model's consortium code as the algorithm's name.
fn model_description(
    reader: &crate::site::store::ReaderRow,
    version: &str,
) -> Result<Description, String> {
    if reader.kind != crate::annotations::readers::ReaderKind::Model.as_str() {
        return Err(format!(
            "--model-version is for model readers; {} is a {} reader",
            reader.id, reader.kind
        ));
    }
    if version.trim().is_empty() || version.chars().count() > 64 || version.contains('\\') {
        return Err("--model-version is 1 to 64 characters without a backslash".into());
    }
    Ok(Description {
        category: Code::default_category(),
        property_type: Code::default_type(),
        colour: None,
        method: Method::Automatic,
        algorithm: Some(Algorithm {
            name: reader.id.clone(),
            version: Some(version.to_string()),
            family: Some(Code::artificial_intelligence()),
        }),
    })
}

/// Notes on each item (and in the log) that the series' slices are unevenly spaced: a NIfTI
/// file of it has one spacing, so its exports hold the missing slices as empty ones.
pub(super) fn warn_uneven(mut items: Vec<ImportedItem>, grid: &SeriesGrid) -> Vec<ImportedItem> {
    let Some((lo, hi)) = grid.uneven_slices() else {
        return items;
    };
    let warning = format!(
        "series {} has uneven slice spacing ({lo:.3} to {hi:.3} mm: a missing slice?); NIfTI files of it hold its slices on a {lo:.3} mm grid with the missing positions empty",
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

/// Writes a segmentation as a NIfTI label map on its series grid. A label map holds one
/// segment per voxel: a segmentation whose segments overlap is refused (a SEG keeps them).
pub fn export_nifti(seg: &Segmentation, grid: &SeriesGrid, out: &Path) -> Result<(), String> {
    if let Some(o) = seg.overlaps.first() {
        return Err(format!(
            "segment {} overlaps another segment, which a NIfTI label map cannot hold; export it with --format seg",
            o.value
        ));
    }
    // A series with missing slices is written on its regular grid, the missing slices empty,
    // so that every slice sits where the series (and a SEG of it) places it.
    let (g, labels) = match gaps::filled(grid) {
        None => (grid.geometry(), seg.labels.clone()),
        Some(f) => (
            f.geometry(grid),
            f.spread(&seg.labels, grid.columns as usize * grid.rows as usize),
        ),
    };
    let dims = [g.columns as usize, g.rows as usize, g.slices as usize];
    let spacing = [
        g.pixel_spacing[1],
        g.pixel_spacing[0],
        g.slice_spacing.unwrap_or(1.0),
    ];
    let img = NiftiImage::from_u8(dims, spacing, geometry::nifti_affine(&g), labels)
        .map_err(|e| e.to_string())?;
    nifti::write_file(out, &img).map_err(|e| e.to_string())
}

/// A label map of a case: the case, its grid size, the declared segments and the labels.
pub(super) type LabelMap = (CaseRef, [u32; 3], Vec<Segment>, Vec<u8>, Vec<Overlap>);

/// Checks a label map and saves it as the reader's new segmentation version (one transaction).
pub(super) async fn save_segmentation(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
    reader: &crate::site::store::ReaderRow,
    (case, dims, segments, labels, overlaps): LabelMap,
    source: &str,
) -> Result<Vec<ImportedItem>, ImportError> {
    let seg = Segmentation::layered(dims, segments, labels, overlaps).map_err(|source| {
        ImportError::Model {
            path: path.into(),
            source,
        }
    })?;
    let v = new_version(&Content::Segmentation(seg), reader, &case, opts, source);
    save(ctx, path, vec![(v, reader.id.clone(), case)]).await
}
