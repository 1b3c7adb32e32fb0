//! `fedanno synth`: deterministic synthetic studies for tests, benchmarks and the demo. Each case
//! is a real CT series (one DICOM file per slice, CT Image Storage) of a chest-like phantom with
//! one to three lung lesions of known shape, with its ground-truth mask, the masks of simulated
//! readers with known error profiles (boundary bias, boundary noise, missed lesions, false
//! positives) and ordinal ratings of a classification task. Patient names and IDs are plainly
//! fake (`SYNTHETIC^…`). The same seed gives the same bytes.
//!
//! Layout of `--out DIR`: `dicom/<case>/<slice>.dcm`, `truth/<case>.nii.gz`,
//! `readers/<reader>/<case>.nii.gz`, `ratings.csv` (`unit,rater,value`), `truth/ratings.csv`
//! (`unit,value`), `categories.txt`, `cases.csv` (`case,study_uid,series_uid`), a sidecar
//! `<case>.json` (`{"series": UID}`) beside every mask, and `synth.json` (what was generated,
//! with every profile).

pub mod rng;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

use crate::annotations::nifti::{self, NiftiImage};
use crate::annotations::readers::ReaderKind;
use crate::site::dicom::geometry::{self, SeriesGeometry};
use crate::site::dicom::write::{CtSlice, write_ct_slice};
use rng::{Rng, voxel_noise};

/// Ordered categories of the synthetic classification task (Lung-RADS-like size classes).
pub const CATEGORIES: [&str; 4] = ["1", "2", "3", "4"];

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub out: PathBuf,
    pub cases: usize,
    /// (x = columns, y = rows, z = slices).
    pub size: [usize; 3],
    pub seed: u64,
    /// Prefix of case ids, so several sites' synthetic data never collide.
    pub case_prefix: String,
    /// Readers to simulate; defaults to [`default_readers`].
    pub readers: Vec<ReaderProfile>,
}

/// A simulated reader's error profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReaderProfile {
    pub id: String,
    /// `panel`, `model` or `local` (ARCHITECTURE.md, "Layer 2: annotations").
    pub kind: ReaderKind,
    /// Outward (+) or inward (−) shift of every drawn boundary, mm.
    pub boundary_bias_mm: f64,
    /// Uniform per-voxel jitter of the boundary, ± mm.
    pub boundary_noise_mm: f64,
    /// Probability of missing each lesion.
    pub miss_probability: f64,
    /// Probability of drawing one false-positive blob per case.
    pub false_positive_probability: f64,
    /// Probability that the rating is the true category.
    pub rating_accuracy: f64,
    /// Direction of rating errors: +1 over-calls, −1 under-calls, 0 either way.
    pub rating_bias: i32,
}

pub fn default_readers() -> Vec<ReaderProfile> {
    use ReaderKind::{Local, Model, Panel};
    let r = |id: &str, kind, bias, noise, miss, fp, acc, rb| ReaderProfile {
        id: id.into(),
        kind,
        boundary_bias_mm: bias,
        boundary_noise_mm: noise,
        miss_probability: miss,
        false_positive_probability: fp,
        rating_accuracy: acc,
        rating_bias: rb,
    };
    vec![
        r("panel-expert", Panel, 0.0, 0.3, 0.0, 0.0, 0.95, 0),
        r("panel-generous", Panel, 1.0, 0.5, 0.0, 0.15, 0.8, 1),
        r("model-a", Model, -0.8, 0.2, 0.15, 0.05, 0.85, -1),
        r("local-resident", Local, 0.0, 1.2, 0.1, 0.3, 0.65, 0),
    ]
}

/// [`default_readers`] with the local reader named `local` (a valid reader id, not one of the
/// other readers' ids).
pub fn readers_with_local(local: &str) -> Result<Vec<ReaderProfile>, SynthError> {
    let ok = crate::annotations::readers::valid_reader_id(local);
    let mut readers = default_readers();
    if !ok
        || readers
            .iter()
            .any(|r| r.kind != ReaderKind::Local && r.id == local)
    {
        return Err(SynthError::Reader(local.to_string()));
    }
    for r in &mut readers {
        if r.kind == ReaderKind::Local {
            r.id = local.to_string();
        }
    }
    Ok(readers)
}

#[derive(Debug, Error)]
pub enum SynthError {
    #[error(
        "invalid local reader id {0:?}: use 1 to 64 of a-z, A-Z, 0-9, '-', '_' and '.', and not another reader's id"
    )]
    Reader(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("invalid synthetic size: {0}")]
    Size(String),
}

/// A generated lesion, in mm from the volume's first voxel centre along (x, y, z).
#[derive(Debug, Clone, Serialize)]
pub struct Lesion {
    pub center_mm: [f64; 3],
    pub radii_mm: [f64; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub id: String,
    pub study_uid: String,
    pub series_uid: String,
    pub slices: usize,
    pub lesions: Vec<Lesion>,
    pub truth_voxels: u64,
    pub category: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    pub out: String,
    pub seed: u64,
    pub size: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub categories: Vec<String>,
    pub dicom_files: u64,
    pub readers: Vec<ReaderProfile>,
    pub cases: Vec<CaseSummary>,
}

/// In-plane spacing (x, y) and slice spacing (z), mm.
pub const SPACING: [f64; 3] = [0.8, 0.8, 2.0];

/// Parses `WxHxD`.
pub fn parse_size(s: &str) -> Result<[usize; 3], SynthError> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    let bad = || {
        SynthError::Size(format!(
            "{s:?}: expected WIDTHxHEIGHTxSLICES, e.g. 96x96x48"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut out = [0usize; 3];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = p.trim().parse().map_err(|_| bad())?;
    }
    if out[0] < 16 || out[1] < 16 || out[2] < 2 || out[0] > 1024 || out[1] > 1024 || out[2] > 2048 {
        return Err(SynthError::Size(format!(
            "{s:?}: width and height must be 16 to 1024, slices 2 to 2048"
        )));
    }
    Ok(out)
}

/// Generates everything; cases are built in parallel.
pub fn generate(opts: &SynthOptions) -> Result<SynthSummary, SynthError> {
    let mk = |p: &Path| std::fs::create_dir_all(p).map_err(|e| write_err(p.into(), e));
    mk(&opts.out.join("truth"))?;
    for r in &opts.readers {
        mk(&opts.out.join("readers").join(&r.id))?;
    }
    let results: Vec<Result<(CaseSummary, Vec<String>), SynthError>> = (0..opts.cases)
        .into_par_iter()
        .map(|i| generate_case(opts, i))
        .collect();
    let mut cases = Vec::with_capacity(opts.cases);
    let mut ratings = String::from("unit,rater,value\n");
    let mut truth_ratings = String::from("unit,value\n");
    let mut case_map = String::from("case,study_uid,series_uid\n");
    for r in results {
        let (case, lines) = r?;
        truth_ratings.push_str(&format!("{},{}\n", case.id, case.category));
        case_map.push_str(&format!(
            "{},{},{}\n",
            case.id, case.study_uid, case.series_uid
        ));
        for l in lines {
            ratings.push_str(&l);
        }
        cases.push(case);
    }
    let write = |name: &str, text: &str| {
        let p = opts.out.join(name);
        std::fs::write(&p, text).map_err(|e| write_err(p, e))
    };
    write("ratings.csv", &ratings)?;
    write("truth/ratings.csv", &truth_ratings)?;
    write("cases.csv", &case_map)?;
    write("categories.txt", &format!("{}\n", CATEGORIES.join(",")))?;
    let summary = SynthSummary {
        out: opts.out.display().to_string(),
        seed: opts.seed,
        size: opts.size,
        spacing_mm: SPACING,
        categories: CATEGORIES.iter().map(|s| s.to_string()).collect(),
        dicom_files: (opts.cases * opts.size[2]) as u64,
        readers: opts.readers.clone(),
        cases,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write("synth.json", &json)?;
    Ok(summary)
}

/// A deterministic `2.25.` UID for synthetic objects.
fn synth_uid(seed: u64, parts: &[u64]) -> String {
    let mut r = Rng::derive(seed, parts);
    let v = (u128::from(r.next_u64()) << 64) | u128::from(r.next_u64());
    format!("2.25.{}", v >> 1)
}

/// A case's voxel grid: (x = columns, y = rows, z = slices), spaced by [`SPACING`].
#[derive(Debug, Clone, Copy)]
struct Grid([usize; 3]);

impl Grid {
    fn len(self) -> usize {
        self.0.iter().product()
    }

    /// Extent along (x, y, z), mm.
    fn extent(self) -> [f64; 3] {
        [
            self.0[0] as f64 * SPACING[0],
            self.0[1] as f64 * SPACING[1],
            self.0[2] as f64 * SPACING[2],
        ]
    }

    /// A volume whose voxel at index v (x fastest) is `f(v, position in mm from the first
    /// voxel centre)`.
    fn volume<T>(self, mut f: impl FnMut(usize, [f64; 3]) -> T) -> Vec<T> {
        let [nx, ny, nz] = self.0;
        let mut out = Vec::with_capacity(self.len());
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let p = [
                        i as f64 * SPACING[0],
                        j as f64 * SPACING[1],
                        k as f64 * SPACING[2],
                    ];
                    out.push(f((k * ny + j) * nx + i, p));
                }
            }
        }
        out
    }
}

/// An in-plane ellipse (centre, radii), mm.
type Ellipse = ([f64; 2], [f64; 2]);

impl Lesion {
    /// Signed distance-like value from `p` to the lesion's surface (negative inside), mm.
    fn signed_distance(&self, p: [f64; 3]) -> f64 {
        let f: f64 = (0..3)
            .map(|a| ((p[a] - self.center_mm[a]) / self.radii_mm[a]).powi(2))
            .sum();
        let r_mean = self.radii_mm.iter().sum::<f64>() / 3.0;
        (f.sqrt() - 1.0) * r_mean
    }
}

/// A random lesion centre in a random lung, drawn in this order: the lung, a radius in
/// `radius`, then the centre (its depth a fraction in `depth` of the z extent).
fn place(
    r: &mut Rng,
    lungs: &[Ellipse; 2],
    ext: [f64; 3],
    radius: [f64; 2],
    depth: [f64; 2],
) -> ([f64; 3], f64) {
    let (c, rad) = lungs[r.int(0, 1) as usize];
    let radius = r.range(radius[0], radius[1]);
    let center = [
        c[0] + r.range(-0.5, 0.5) * rad[0],
        c[1] + r.range(-0.5, 0.5) * rad[1],
        r.range(depth[0], depth[1]) * ext[2],
    ];
    (center, radius)
}

/// The anatomy of one case: body, lungs and lesions, and the category the lesions give.
struct Phantom {
    grid: Grid,
    ext: [f64; 3],
    /// Two ellipses (in-plane), the full z extent.
    lungs: [Ellipse; 2],
    lesions: Vec<Lesion>,
    /// Index into [`CATEGORIES`] by the largest lesion's mean diameter.
    category_index: usize,
}

impl Phantom {
    fn new(opts: &SynthOptions, index: usize) -> Phantom {
        let grid = Grid(opts.size);
        let ext = grid.extent();
        let mut rng = Rng::derive(opts.seed, &[1, index as u64]);
        let lungs = [
            (
                [0.30 * ext[0], 0.5 * ext[1]],
                [0.15 * ext[0], 0.25 * ext[1]],
            ),
            (
                [0.70 * ext[0], 0.5 * ext[1]],
                [0.15 * ext[0], 0.25 * ext[1]],
            ),
        ];
        let n_lesions = rng.int(1, 3) as usize;
        let lesions: Vec<Lesion> = (0..n_lesions)
            .map(|_| {
                let (center_mm, radius) = place(&mut rng, &lungs, ext, [2.5, 8.0], [0.25, 0.75]);
                Lesion {
                    center_mm,
                    radii_mm: [
                        radius * rng.range(0.8, 1.2),
                        radius * rng.range(0.8, 1.2),
                        radius * rng.range(0.8, 1.2),
                    ],
                }
            })
            .collect();
        let largest = lesions
            .iter()
            .map(|l| 2.0 * (l.radii_mm.iter().sum::<f64>() / 3.0))
            .fold(0.0, f64::max);
        let category_index = if largest < 6.0 {
            1
        } else if largest < 10.0 {
            2
        } else {
            3
        };
        Phantom {
            grid,
            ext,
            lungs,
            lesions,
            category_index,
        }
    }

    /// The ground-truth mask and the CT intensities (HU with per-voxel noise).
    fn truth_and_ct(&self, noise_seed: u64) -> (Vec<u8>, Vec<i16>) {
        let ext = self.ext;
        let mut hu = Vec::with_capacity(self.grid.len());
        let truth = self.grid.volume(|v, p| {
            let body = ((p[0] - 0.5 * ext[0]) / (0.45 * ext[0])).powi(2)
                + ((p[1] - 0.5 * ext[1]) / (0.38 * ext[1])).powi(2)
                <= 1.0;
            let in_lung = self.lungs.iter().any(|(c, r)| {
                ((p[0] - c[0]) / r[0]).powi(2) + ((p[1] - c[1]) / r[1]).powi(2) <= 1.0
            });
            let lesion = self.lesions.iter().any(|l| l.signed_distance(p) <= 0.0);
            let base = if lesion {
                25.0
            } else if in_lung {
                -850.0
            } else if body {
                40.0
            } else {
                -1000.0
            };
            hu.push((base + 15.0 * voxel_noise(noise_seed, v as u64)).round() as i16);
            u8::from(lesion)
        });
        (truth, hu)
    }

    /// What one simulated reader draws and rates: its mask and its category index.
    fn read(&self, reader: &ReaderProfile, r: &mut Rng) -> (Vec<u8>, usize) {
        let kept: Vec<&Lesion> = self
            .lesions
            .iter()
            .filter(|_| !r.chance(reader.miss_probability))
            .collect();
        let fp = r.chance(reader.false_positive_probability).then(|| {
            let (center_mm, radius) = place(r, &self.lungs, self.ext, [1.5, 3.5], [0.2, 0.8]);
            Lesion {
                center_mm,
                radii_mm: [radius; 3],
            }
        });
        let reader_seed = r.next_u64();
        let mask = self.grid.volume(|v, p| {
            let jitter = reader.boundary_noise_mm * voxel_noise(reader_seed, v as u64);
            let drawn = kept
                .iter()
                .any(|l| l.signed_distance(p) <= reader.boundary_bias_mm + jitter)
                || fp.as_ref().is_some_and(|l| l.signed_distance(p) <= 0.0);
            u8::from(drawn)
        });
        (mask, rating(r, reader, self.category_index))
    }
}

/// A reader's rating of a case of category `truth`: right with its accuracy, else one step off
/// in the direction of its bias (either way when unbiased).
fn rating(r: &mut Rng, reader: &ReaderProfile, truth: usize) -> usize {
    let mut given = truth as i64;
    if !r.chance(reader.rating_accuracy) {
        let step = match reader.rating_bias {
            b if b > 0 => 1,
            b if b < 0 => -1,
            _ => {
                if r.chance(0.5) {
                    1
                } else {
                    -1
                }
            }
        };
        given = (given + step).clamp(0, CATEGORIES.len() as i64 - 1);
    }
    given as usize
}

fn write_err(path: PathBuf, e: impl std::fmt::Display) -> SynthError {
    SynthError::Write {
        path,
        message: e.to_string(),
    }
}

/// The identifiers of a case's DICOM series.
struct SeriesUids {
    study: String,
    series: String,
}

/// Writes a case's CT series, one file per slice, under `dicom/<id>/`.
fn write_series(
    opts: &SynthOptions,
    index: usize,
    id: &str,
    origin: [f64; 3],
    hu: &[i16],
) -> Result<SeriesUids, SynthError> {
    let [nx, ny, nz] = opts.size;
    let study_uid = synth_uid(opts.seed, &[2, index as u64]);
    let series_uid = synth_uid(opts.seed, &[3, index as u64]);
    let for_uid = synth_uid(opts.seed, &[4, index as u64]);
    let patient_name = format!(
        "SYNTHETIC^PATIENT{}",
        id.to_ascii_uppercase().replace('-', "")
    );
    let patient_id = format!("SYN-{}-{}", opts.seed, id);
    let dir = opts.out.join("dicom").join(id);
    std::fs::create_dir_all(&dir).map_err(|e| write_err(dir.clone(), e))?;
    for k in 0..nz {
        let sop = synth_uid(opts.seed, &[5, index as u64, k as u64]);
        let slice = &hu[k * nx * ny..(k + 1) * nx * ny];
        let path = dir.join(format!("{:04}.dcm", k + 1));
        // Files are listed in an order unrelated to position, as PACS exports often are.
        let spec = CtSlice {
            patient_name: &patient_name,
            patient_id: &patient_id,
            patient_birth_date: "19700101",
            institution_name: "SYNTHETIC HOSPITAL",
            study_uid: &study_uid,
            series_uid: &series_uid,
            sop_instance_uid: &sop,
            frame_of_reference_uid: &for_uid,
            study_date: "20240115",
            study_description: "SYNTHETIC CHEST CT",
            accession_number: "SYN0001",
            series_number: 1,
            instance_number: (k + 1) as u32,
            rows: ny as u16,
            columns: nx as u16,
            pixel_spacing: [SPACING[1], SPACING[0]],
            slice_thickness: SPACING[2],
            orientation: ORIENTATION,
            position: [origin[0], origin[1], origin[2] + k as f64 * SPACING[2]],
            pixels: slice,
        };
        write_ct_slice(&path, &spec).map_err(|e| write_err(path, e))?;
    }
    Ok(SeriesUids {
        study: study_uid,
        series: series_uid,
    })
}

/// Axial slices.
const ORIENTATION: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

/// Writes a case's masks as NIfTI on its series grid, each with the sidecar naming the series
/// (so `fedanno annotate import` needs no --series).
struct MaskWriter {
    size: [usize; 3],
    affine: [[f64; 4]; 4],
    sidecar: String,
}

impl MaskWriter {
    fn new(size: [usize; 3], origin: [f64; 3], series_uid: &str) -> MaskWriter {
        let grid = SeriesGeometry {
            rows: size[1] as u32,
            columns: size[0] as u32,
            slices: size[2] as u32,
            pixel_spacing: [SPACING[1], SPACING[0]],
            slice_spacing: Some(SPACING[2]),
            uniform_spacing: true,
            orientation: ORIENTATION,
            origin,
        };
        MaskWriter {
            size,
            affine: geometry::nifti_affine(&grid),
            sidecar: format!("{{\"series\": \"{series_uid}\"}}\n"),
        }
    }

    /// Writes `<dir>/<id>.nii.gz` and `<dir>/<id>.json`.
    fn write(&self, dir: &Path, id: &str, data: Vec<u8>) -> Result<(), SynthError> {
        let path = dir.join(format!("{id}.nii.gz"));
        let img = NiftiImage::from_u8(self.size, SPACING, self.affine, data)
            .map_err(|e| write_err(path.clone(), e))?;
        nifti::write_file(&path, &img).map_err(|e| write_err(path, e))?;
        let path = dir.join(format!("{id}.json"));
        std::fs::write(&path, &self.sidecar).map_err(|e| write_err(path, e))
    }
}

/// Generates one case: its phantom, CT series and truth, then every reader's mask and rating
/// (the `ratings.csv` lines).
fn generate_case(
    opts: &SynthOptions,
    index: usize,
) -> Result<(CaseSummary, Vec<String>), SynthError> {
    let id = format!("{}{:04}", opts.case_prefix, index + 1);
    let phantom = Phantom::new(opts, index);
    let noise_seed = opts.seed ^ (index as u64).wrapping_mul(0x1234_5678_9ABC_DEF1);
    let (truth, hu) = phantom.truth_and_ct(noise_seed);
    let truth_voxels = truth.iter().map(|&v| u64::from(v)).sum();
    let ext = phantom.ext;
    let origin = [-0.5 * ext[0], -0.5 * ext[1], -0.5 * ext[2]];
    let uids = write_series(opts, index, &id, origin, &hu)?;
    let masks = MaskWriter::new(opts.size, origin, &uids.series);
    masks.write(&opts.out.join("truth"), &id, truth)?;

    let mut lines = Vec::with_capacity(opts.readers.len());
    for (ri, reader) in opts.readers.iter().enumerate() {
        let mut r = Rng::derive(opts.seed, &[6, index as u64, ri as u64]);
        let (mask, given) = phantom.read(reader, &mut r);
        masks.write(&opts.out.join("readers").join(&reader.id), &id, mask)?;
        lines.push(format!("{id},{},{}\n", reader.id, CATEGORIES[given]));
    }
    Ok((
        CaseSummary {
            id,
            study_uid: uids.study,
            series_uid: uids.series,
            slices: opts.size[2],
            lesions: phantom.lesions,
            truth_voxels,
            category: CATEGORIES[phantom.category_index].to_string(),
        },
        lines,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_reader_can_be_renamed() {
        let r = readers_with_local("local-b").unwrap();
        assert_eq!(r.iter().filter(|r| r.id == "local-b").count(), 1);
        assert!(r.iter().all(|r| r.id != "local-resident"));
        assert!(readers_with_local("panel-expert").is_err());
        assert!(readers_with_local("a b").is_err());
    }

    #[test]
    fn sizes_parse_and_are_bounded() {
        assert_eq!(parse_size("96x80x48").unwrap(), [96, 80, 48]);
        assert!(parse_size("96x80").is_err());
        assert!(parse_size("8x8x8").is_err());
        assert!(parse_size("a x b x c").is_err());
        assert!(parse_size("4096x4096x10").is_err());
    }

    #[test]
    fn uids_are_deterministic_and_valid() {
        let a = synth_uid(1, &[2, 3]);
        assert_eq!(a, synth_uid(1, &[2, 3]));
        assert_ne!(a, synth_uid(1, &[2, 4]));
        assert!(
            fedanno_protocol::ids::PseudoUid::new(a.clone()).is_ok(),
            "{a}"
        );
    }
}
