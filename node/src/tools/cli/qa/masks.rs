//! Masks for the offline QA commands: NIfTI files, DICOM SEGs placed on the grid their frames
//! span, and `--readers-dir` corpora (one EM pooled over every case of every directory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedanno_stats::surface::Grid;

use super::staple::{Votes, read_votes};
use super::usage;
use crate::annotations::interchange::segfile::looks_like_dicom;
use crate::annotations::nifti::{self, NiftiImage, NiftiLimits, VoxelData};

/// A mask read from a NIfTI file, as labels 0..=255.
pub(super) struct Mask {
    /// nx, ny, nz.
    pub(super) dim: [usize; 3],
    /// dx, dy, dz (mm).
    pub(super) pixdim: [f64; 3],
    pub(super) affine: [[f64; 4]; 4],
    pub(super) labels: Vec<u8>,
}

impl Mask {
    pub(super) fn read(path: &Path) -> Result<Self> {
        let img = nifti::read_file(path, &NiftiLimits::default())
            .with_context(|| format!("reading {}", path.display()))?;
        let (dim, pixdim, affine) = (img.dim, img.pixdim, img.affine);
        let labels =
            into_labels(img).with_context(|| format!("{} is not a label mask", path.display()))?;
        Ok(Self {
            dim,
            pixdim,
            affine,
            labels,
        })
    }

    /// The grid in the engine's (z, y, x) order.
    pub(super) fn grid(&self) -> Grid {
        Grid {
            dims: [self.dim[2], self.dim[1], self.dim[0]],
            spacing: [self.pixdim[2], self.pixdim[1], self.pixdim[0]],
        }
    }

    /// Fails unless `other` lies on the same voxel grid (size, spacing, position).
    pub(super) fn check_same_grid(&self, other: &Mask, what: &dyn Fn() -> String) -> Result<()> {
        if self.dim != other.dim {
            let [a, b, c] = self.dim;
            let [x, y, z] = other.dim;
            bail!(
                "{}: {x}x{y}x{z} voxels where {a}x{b}x{c} were expected",
                what()
            );
        }
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0);
        if !self
            .pixdim
            .iter()
            .zip(&other.pixdim)
            .all(|(a, b)| close(*a, *b, 1e-5))
        {
            let [a, b, c] = self.pixdim;
            let [x, y, z] = other.pixdim;
            bail!(
                "{}: voxel spacing {x}x{y}x{z} mm where {a}x{b}x{c} mm was expected",
                what()
            );
        }
        if !self
            .affine
            .iter()
            .flatten()
            .zip(other.affine.iter().flatten())
            .all(|(a, b)| close(*a, *b, 1e-4))
        {
            bail!(
                "{}: the voxel grid has another position or orientation (affine)",
                what()
            );
        }
        Ok(())
    }

    /// An image on this mask's grid.
    pub(super) fn image(&self, data: VoxelData) -> Result<NiftiImage> {
        Ok(NiftiImage::new(self.dim, self.pixdim, self.affine, data)?)
    }
}

/// Writes an image on `grid`'s grid to a NIfTI file.
pub(super) fn write_image(path: &Path, grid: &Mask, data: VoxelData) -> Result<()> {
    let img = grid.image(data)?;
    nifti::write_file(path, &img).with_context(|| format!("writing {}", path.display()))
}

/// The masks' labels, one slice per rater.
pub(super) fn label_slices(masks: &[Mask]) -> Vec<&[u8]> {
    masks.iter().map(|m| m.labels.as_slice()).collect()
}

/// The voxel values as labels, without copying a uint8 image.
pub(super) fn into_labels(img: NiftiImage) -> Result<Vec<u8>, nifti::NiftiError> {
    if img.scaling().is_none()
        && img.data.len() == img.voxel_count()
        && let VoxelData::U8(v) = img.data
    {
        return Ok(v);
    }
    img.to_labels_u8()
}

/// DICOM SEG masks, read without their source series: placed on the common grid of their frame
/// positions (`dicom::seg::common_grid`), each as a label map whose values are the segment
/// numbers.
pub(super) fn read_seg_masks(paths: &[PathBuf]) -> Result<Vec<Mask>> {
    use crate::site::dicom::seg;
    let segs = paths
        .iter()
        .map(|p| {
            seg::read_seg(p, &seg::SegLimits::default())
                .with_context(|| format!("reading {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let (grid, slices) = seg::common_grid(&segs).context("placing the SEG frames on one grid")?;
    let affine = crate::site::dicom::geometry::nifti_affine(&grid);
    let dim = [
        grid.columns as usize,
        grid.rows as usize,
        grid.slices as usize,
    ];
    let pixdim = [
        grid.pixel_spacing[1],
        grid.pixel_spacing[0],
        grid.slice_spacing.unwrap_or(1.0),
    ];
    let mut out = Vec::with_capacity(segs.len());
    for (obj, path) in segs.iter().zip(paths) {
        let labels =
            seg::frames_to_label_map(obj, &slices, grid.orientation, grid.rows, grid.columns)
                .with_context(|| {
                    format!(
                        "mapping the frames of {} (overlapping segments: give one with --label)",
                        path.display()
                    )
                })?;
        out.push(Mask {
            dim,
            pixdim,
            affine,
            labels,
        });
    }
    Ok(out)
}

/// Reads masks that must share one grid (the first one's): all NIfTI, or all DICOM SEG.
pub(super) fn read_masks(paths: &[PathBuf]) -> Result<Vec<Mask>> {
    let segs = paths.iter().filter(|p| looks_like_dicom(p)).count();
    if segs > 0 {
        if segs != paths.len() {
            bail!(
                "give all masks as NIfTI or all as DICOM SEG (a SEG is placed on its frames' grid, which a NIfTI mask need not share)"
            );
        }
        return read_seg_masks(paths);
    }
    let mut masks: Vec<Mask> = Vec::with_capacity(paths.len());
    for p in paths {
        let m = Mask::read(p)?;
        if let (Some(first), Some(p0)) = (masks.first(), paths.first()) {
            first.check_same_grid(&m, &|| {
                format!("{} is not on the grid of {}", p.display(), p0.display())
            })?;
        }
        masks.push(m);
    }
    Ok(masks)
}

/// Masks given as files, or a `--readers-dir` corpus.
pub(super) enum MaskInput {
    Files(Vec<PathBuf>),
    Readers(ReaderCorpus),
}

impl MaskInput {
    pub(super) fn new(files: Vec<PathBuf>, dirs: Vec<PathBuf>) -> Result<Self> {
        match (files.is_empty(), dirs.is_empty()) {
            (false, true) => Ok(Self::Files(files)),
            (true, false) => Ok(Self::Readers(ReaderCorpus::scan(&dirs)?)),
            (true, true) => Err(usage(
                "give rater masks (R1 R2 ...) or at least one --readers-dir DIR",
            )),
            (false, false) => Err(usage("give either rater masks or --readers-dir, not both")),
        }
    }
}

/// One case of a readers corpus: which readers have a mask for it, and where.
pub(super) struct Case {
    pub(super) name: String,
    /// (reader index, mask path), by reader index.
    pub(super) masks: Vec<(usize, PathBuf)>,
}

/// `DIR/<reader>/<case>.nii[.gz]` trees: readers by directory name (the union over all DIRs,
/// sorted), cases in DIR order then by name.
pub(super) struct ReaderCorpus {
    pub(super) readers: Vec<String>,
    pub(super) cases: Vec<Case>,
}

/// The masks of one `--readers-dir` DIR: case -> reader -> mask path.
type DirCases = BTreeMap<String, BTreeMap<String, PathBuf>>;

impl ReaderCorpus {
    pub(super) fn scan(dirs: &[PathBuf]) -> Result<Self> {
        let per_dir = dirs
            .iter()
            .map(|d| scan_dir(d))
            .collect::<Result<Vec<_>>>()?;
        let readers: BTreeSet<&String> = per_dir
            .iter()
            .flat_map(|cases| cases.values().flat_map(BTreeMap::keys))
            .collect();
        let readers: Vec<String> = readers.into_iter().cloned().collect();
        let index: BTreeMap<&str, usize> = readers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let mut cases = Vec::new();
        for dir_cases in per_dir {
            for (name, by_reader) in dir_cases {
                let masks = by_reader
                    .into_iter()
                    .filter_map(|(r, p)| index.get(r.as_str()).map(|&i| (i, p)))
                    .collect();
                cases.push(Case { name, masks });
            }
        }
        Ok(Self { readers, cases })
    }

    /// Reads one case's masks, checking that they share a grid.
    pub(super) fn read_case(&self, case: &Case) -> Result<Vec<Mask>> {
        let mut masks: Vec<Mask> = Vec::with_capacity(case.masks.len());
        for (r, path) in &case.masks {
            let m = Mask::read(path)?;
            if let Some(first) = masks.first() {
                let reader = self.readers.get(*r).map_or("?", String::as_str);
                first.check_same_grid(&m, &|| {
                    format!(
                        "case {}: reader {reader}'s mask is not on the grid of the others",
                        case.name
                    )
                })?;
            }
            masks.push(m);
        }
        Ok(masks)
    }

    /// Reads one case's masks as vote masks (bit i: the case's i-th present reader).
    pub(super) fn read_case_votes(&self, case: &Case, fg: u8) -> Result<(Mask, Votes)> {
        let paths: Vec<&Path> = case.masks.iter().map(|m| m.1.as_path()).collect();
        let what = |i: usize| {
            let reader = case
                .masks
                .get(i)
                .and_then(|m| self.readers.get(m.0))
                .map_or("?", String::as_str);
            format!(
                "case {}: reader {reader}'s mask is not on the grid of the others",
                case.name
            )
        };
        read_votes(&paths, fg, &what)
    }

    /// The output file of a case's map under `--out DIR`, refusing duplicate case names.
    pub(super) fn out_paths(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let mut seen = BTreeSet::new();
        let mut paths = Vec::with_capacity(self.cases.len());
        for c in &self.cases {
            if !seen.insert(c.name.as_str()) {
                bail!(
                    "case {} appears in two --readers-dir trees; --out would write it twice",
                    c.name
                );
            }
            paths.push(out.join(format!("{}.nii.gz", c.name)));
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating the output directory {}", out.display()))?;
        Ok(paths)
    }
}

/// Reads one `DIR/<reader>/<case>.nii[.gz]` tree.
fn scan_dir(dir: &Path) -> Result<DirCases> {
    let mut cases = DirCases::new();
    let what = || format!("reading the readers directory {}", dir.display());
    for path in list(dir, what, Path::is_dir)? {
        let reader = utf8_name(&path)?;
        for fp in list(
            &path,
            || format!("reading {}", path.display()),
            Path::is_file,
        )? {
            let name = utf8_name(&fp)?;
            let Some(case) = name
                .strip_suffix(".nii.gz")
                .or_else(|| name.strip_suffix(".nii"))
            else {
                continue;
            };
            let slot = cases.entry(case.to_owned()).or_default();
            if slot.insert(reader.clone(), fp.clone()).is_some() {
                bail!(
                    "reader {reader} has two masks for case {case} in {}",
                    dir.display()
                );
            }
        }
    }
    if cases.is_empty() {
        bail!(
            "{} holds no masks (expected DIR/<reader>/<case>.nii.gz)",
            dir.display()
        );
    }
    Ok(cases)
}

/// The entries of `dir` that `keep` accepts; `what` describes a failure to list it.
fn list(dir: &Path, what: impl Fn() -> String, keep: fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(what)? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if keep(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

pub(super) fn utf8_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} is not a UTF-8 name", path.display()))
}

pub(super) fn parse_label_value(s: &str) -> Result<u8, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if x.fract() == 0.0 && (0.0..=255.0).contains(&x) {
        Ok(x as u8)
    } else {
        Err(format!("{s:?} is not a whole number in 0..=255"))
    }
}
