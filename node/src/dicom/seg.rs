//! DICOM Segmentation objects (SEG, Segmentation Storage `1.2.840.10008.5.1.4.1.1.66.4`):
//! reading BINARY and FRACTIONAL SEGs ([`read_seg`]), mapping their frames onto the slices of a
//! series as one label volume per segment ([`frames_to_volumes`]), and writing a conformant
//! Segmentation IOD that references a source series ([`write_seg`]).
//!
//! 1-bit Pixel Data is packed and unpacked here, never by dicom-pixeldata: frames are
//! concatenated bit-wise, LSB first, without per-frame padding (PS3.5 §8.1.1), so frame `k`
//! starts at bit `k·rows·cols`. Every count in a file is untrusted: frames are bounded by
//! NumberOfFrames (default 1), by the Pixel Data length and by [`SegLimits`], and per-frame
//! functional group items beyond NumberOfFrames are ignored. Error texts name what is wrong,
//! never an element value; the `Debug` output of types holding identifiers prints none of them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use thiserror::Error;

use super::prescan::{self, PrescanError, ScanLimits};

/// SOP Class UID of Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = uids::SEGMENTATION_STORAGE;

/// BINARY (one bit per pixel, values 0/1) or FRACTIONAL (8 bits, values 0..=`max_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentationType {
    Binary,
    /// `probability`: PROBABILITY when true, OCCUPANCY when false.
    Fractional {
        max_value: u8,
        probability: bool,
    },
}

/// SegmentAlgorithmType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmType {
    Manual,
    Semiautomatic,
    Automatic,
}

impl AlgorithmType {
    /// The DICOM code string.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmType::Manual => "MANUAL",
            AlgorithmType::Semiautomatic => "SEMIAUTOMATIC",
            AlgorithmType::Automatic => "AUTOMATIC",
        }
    }
}

/// A coded concept (Code Value, Coding Scheme Designator, Code Meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodedConcept {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl CodedConcept {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        CodedConcept {
            value: value.into(),
            scheme: scheme.into(),
            meaning: meaning.into(),
        }
    }

    /// SCT 85756007 "Tissue": the generic category (and type) for an unspecified structure.
    pub fn tissue() -> Self {
        CodedConcept::new("85756007", "SCT", "Tissue")
    }
}

/// One item of SegmentSequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub number: u16,
    pub label: String,
    pub algorithm_type: AlgorithmType,
    /// Required when `algorithm_type` is not [`AlgorithmType::Manual`].
    pub algorithm_name: Option<String>,
    pub category: CodedConcept,
    pub property_type: CodedConcept,
}

/// One frame of a SEG.
#[derive(Clone, PartialEq)]
pub struct SegFrame {
    pub segment_number: u16,
    /// DerivationImageSequence → SourceImageSequence → ReferencedSOPInstanceUID.
    pub referenced_sop_instance_uid: Option<String>,
    /// PlanePositionSequence → ImagePositionPatient.
    pub position: Option<[f64; 3]>,
    /// `rows * columns` values, row-major; 0/1 for BINARY, 0..=max for FRACTIONAL.
    pub data: Vec<u8>,
}

/// A SEG as read by [`read_seg`]. Holds original identifiers: `Debug` prints none of them.
#[derive(Clone, PartialEq)]
pub struct SegObject {
    pub sop_instance_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    /// ReferencedSeriesSequence → SeriesInstanceUID (first item).
    pub referenced_series_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    pub segmentation_type: SegmentationType,
    pub rows: u32,
    pub columns: u32,
    /// (row spacing, column spacing) in mm, as PixelSpacing.
    pub pixel_spacing: Option<[f64; 2]>,
    pub orientation: Option<[f64; 6]>,
    pub segments: Vec<SegmentInfo>,
    pub frames: Vec<SegFrame>,
}

/// Caps applied by [`read_seg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegLimits {
    pub max_file_bytes: u64,
    pub max_frames: u32,
    /// Cap on frames · rows · columns.
    pub max_voxels: u64,
}

impl Default for SegLimits {
    fn default() -> Self {
        SegLimits {
            max_file_bytes: 4 << 30,
            max_frames: 100_000,
            max_voxels: 1 << 31,
        }
    }
}

/// One slice of the series a SEG is mapped onto (see [`frames_to_volumes`]).
#[derive(Clone, PartialEq)]
pub struct SliceRef {
    pub sop_instance_uid: String,
    pub position: [f64; 3],
}

/// One slice of the source series of a SEG being written.
#[derive(Clone, PartialEq)]
pub struct SourceSlice {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub position: [f64; 3],
}

/// The source-series attributes a written SEG copies: original values for local use,
/// pseudonymous ones for export; the caller decides. `Debug` prints only the geometry.
#[derive(Clone, PartialEq)]
pub struct SegSource {
    /// When set, the SEG is marked de-identified: PatientIdentityRemoved (0012,0062) = YES and
    /// DeidentificationMethod (0012,0063) = this text.
    pub deidentification_method: Option<String>,
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician: String,
    pub series_uid: String,
    pub frame_of_reference_uid: String,
    pub rows: u32,
    pub columns: u32,
    /// (row spacing, column spacing) in mm, as PixelSpacing.
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: f64,
    pub orientation: [f64; 6],
    /// Sorted along the slice normal (strictly increasing).
    pub slices: Vec<SourceSlice>,
}

/// Everything [`write_seg`] writes.
pub struct SegWrite<'a> {
    pub source: &'a SegSource,
    /// Numbered 1, 2, … in order.
    pub segments: &'a [SegmentInfo],
    /// Per segment number: a label volume on the source grid (x fastest, then y, then z =
    /// index into `source.slices`). A segment without a volume is written as empty.
    pub volumes: &'a [(u16, &'a [u8])],
    pub segmentation_type: SegmentationType,
    pub sop_instance_uid: String,
    pub series_uid: String,
    pub series_number: u32,
    pub series_description: String,
    /// ContentLabel (CS: at most 16 of `A-Z 0-9 _ space`).
    pub content_label: String,
    pub content_creator: String,
    pub manufacturer: String,
    pub software_version: String,
    /// DA (YYYYMMDD) and TM (HHMMSS[.ffffff]).
    pub content_date: String,
    pub content_time: String,
}

/// Why a SEG cannot be read, mapped or written. No variant carries an element value.
#[derive(Debug, Error)]
pub enum SegError {
    #[error("cannot access file: {0}")]
    Io(std::io::ErrorKind),
    #[error("file is {size} bytes, larger than the {cap}-byte limit")]
    FileTooLarge { size: u64, cap: u64 },
    #[error("unreadable DICOM file ({0})")]
    Parse(&'static str),
    #[error("{0}")]
    Structure(#[from] PrescanError),
    #[error("unsupported transfer syntax: only uncompressed little-endian SEGs are read")]
    TransferSyntax,
    #[error("not a Segmentation Storage object")]
    NotSegmentation,
    #[error("missing required attribute {0}")]
    Missing(&'static str),
    #[error("invalid value in {0}")]
    Invalid(&'static str),
    #[error("unsupported segmentation type (only BINARY and FRACTIONAL)")]
    UnsupportedType,
    #[error("{frames} frames exceed the limit of {cap}")]
    TooManyFrames { frames: u64, cap: u32 },
    #[error("{rows} x {columns} x {frames} frames exceeds the {cap}-voxel limit")]
    TooManyVoxels {
        rows: u32,
        columns: u32,
        frames: u64,
        cap: u64,
    },
    #[error("Pixel Data holds {have} bytes, {need} needed for {frames} frames")]
    PixelDataTooShort { have: u64, need: u64, frames: u64 },
    #[error("{items} per-frame functional group items for {frames} frames")]
    PerFrameItemsMissing { items: usize, frames: u64 },
    #[error("segment number {0} is described more than once")]
    DuplicateSegment(u16),
    #[error("no segment is described")]
    NoSegments,
    #[error("frame {frame} refers to segment number {segment}, which SegmentSequence lacks")]
    UnknownSegment { frame: usize, segment: u16 },
    #[error("frame {0} holds a value above MaximumFractionalValue")]
    ValueAboveMaximum(usize),
    #[error("segmentation is {seg_rows} x {seg_columns}, the series is {rows} x {columns}")]
    SizeMismatch {
        seg_rows: u32,
        seg_columns: u32,
        rows: u32,
        columns: u32,
    },
    #[error("frame {frame} holds {got} values, expected {expected}")]
    FrameSize {
        frame: usize,
        got: usize,
        expected: usize,
    },
    #[error("segmentation orientation differs from the series orientation")]
    OrientationMismatch,
    #[error("orientation is not two orthonormal direction vectors")]
    BadOrientation,
    #[error("frame {0} maps to no slice of the series")]
    FrameUnmapped(usize),
    #[error("no slices")]
    NoSlices,
    #[error("a volume of {0} voxels cannot be allocated")]
    Alloc(u64),
    #[error("segments must be numbered 1, 2, … in order")]
    SegmentNumbering,
    #[error("segment {0} is not MANUAL and has no algorithm name")]
    MissingAlgorithmName(u16),
    #[error("volume for segment {segment} holds {got} values, expected {expected}")]
    VolumeSize {
        segment: u16,
        got: usize,
        expected: usize,
    },
    #[error("volume for segment {0} holds a value not allowed by the segmentation type")]
    VolumeValue(u16),
    #[error("segment {0} has more than one volume")]
    DuplicateVolume(u16),
    #[error("invalid UID in {0}")]
    InvalidUid(&'static str),
    #[error("invalid text in {0}")]
    InvalidText(&'static str),
    #[error("source slices are not strictly increasing along the slice normal")]
    SlicesNotSorted,
    #[error("cannot encode the DICOM file ({0})")]
    Encode(&'static str),
}

/// Reads a whole SEG file (attributes and frames). The SOP class must be Segmentation Storage
/// and the transfer syntax uncompressed little endian; LABELMAP SEGs are refused. The file is
/// pre-scanned ([`super::prescan`]) so no declared length is trusted: dicom-object parses only
/// the header before Pixel Data, and the Pixel Data value is sliced from the file here.
pub fn read_seg(path: &Path, limits: &SegLimits) -> Result<SegObject, SegError> {
    let mut file = File::open(path).map_err(|e| SegError::Io(e.kind()))?;
    let size = file.metadata().map_err(|e| SegError::Io(e.kind()))?.len();
    if size > limits.max_file_bytes {
        return Err(SegError::FileTooLarge {
            size,
            cap: limits.max_file_bytes,
        });
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(usize::try_from(size).map_err(|_| SegError::Alloc(size))?)
        .map_err(|_| SegError::Alloc(size))?;
    file.read_to_end(&mut buf)
        .map_err(|e| SegError::Io(e.kind()))?;
    // No declared length reaches the parser unchecked: the pre-scan walks the whole structure
    // against the bytes present, and the parser gets only the part before Pixel Data.
    let scan = prescan::scan(
        &buf,
        true,
        ScanLimits {
            max_element_bytes: buf.len() as u64,
            max_depth: 32,
        },
    )?;
    let ts = scan.transfer_syntax.trim_end_matches(['\0', ' ']);
    let explicit = match ts {
        uids::EXPLICIT_VR_LITTLE_ENDIAN => true,
        uids::IMPLICIT_VR_LITTLE_ENDIAN => false,
        _ => return Err(SegError::TransferSyntax),
    };
    let header = buf
        .get(scan.header_range(buf.len()))
        .ok_or(SegError::Parse("internal range"))?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(header)
        .map_err(|_| SegError::Parse("damaged header"))?;
    let pixels = match scan.pixel_data_offset {
        Some(at) => pixel_value(&buf, at, explicit)?,
        None => return Err(SegError::Missing("PixelData")),
    };
    parse_seg(&obj, pixels, limits)
}

/// Maps the frames of `seg` onto the slices of a series (`slices` in z order, with the series'
/// `orientation`, `rows` and `columns`). A frame goes to the slice whose SOP Instance UID it
/// references when the list has it, else to the slice at its ImagePositionPatient (projected on
/// the slice normal, tolerance max(1e-3·slice spacing, 0.01 mm); the in-plane offset must be
/// within the same tolerance). Returns one label volume per segment of SegmentSequence, in its
/// order (x fastest, then y, then z = slice index); frames mapping to the same slice and
/// segment are merged by maximum.
pub fn frames_to_volumes(
    seg: &SegObject,
    slices: &[SliceRef],
    orientation: [f64; 6],
    rows: u32,
    columns: u32,
) -> Result<Vec<(u16, Vec<u8>)>, SegError> {
    if seg.rows != rows || seg.columns != columns {
        return Err(SegError::SizeMismatch {
            seg_rows: seg.rows,
            seg_columns: seg.columns,
            rows,
            columns,
        });
    }
    if slices.is_empty() {
        return Err(SegError::NoSlices);
    }
    let n = checked_normal(&orientation).ok_or(SegError::BadOrientation)?;
    if let Some(o) = seg.orientation
        && !orientation_close(&o, &orientation)
    {
        return Err(SegError::OrientationMismatch);
    }
    let plane = plane_size(rows, columns)?;
    let total_u64 = (plane as u64)
        .checked_mul(slices.len() as u64)
        .ok_or(SegError::Alloc(u64::MAX))?;
    let total = usize::try_from(total_u64).map_err(|_| SegError::Alloc(total_u64))?;

    // Slices sorted by distance along the normal, and the matching tolerance.
    let mut by_depth: Vec<(f64, usize)> = slices
        .iter()
        .enumerate()
        .map(|(i, s)| (dot(&s.position, &n), i))
        .collect();
    by_depth.sort_by(|a, b| a.0.total_cmp(&b.0));
    let min_gap = by_depth
        .windows(2)
        .filter_map(|w| match w {
            [a, b] if b.0 - a.0 > 0.0 => Some(b.0 - a.0),
            _ => None,
        })
        .fold(f64::INFINITY, f64::min);
    let tol = if min_gap.is_finite() {
        (1e-3 * min_gap).max(0.01)
    } else {
        0.01
    };
    let mut by_uid: HashMap<&str, usize> = HashMap::with_capacity(slices.len());
    for (i, s) in slices.iter().enumerate() {
        by_uid.entry(s.sop_instance_uid.as_str()).or_insert(i);
    }

    let mut volumes: Vec<(u16, Vec<u8>)> = Vec::with_capacity(seg.segments.len());
    for s in &seg.segments {
        volumes.push((s.number, zeroed(total)?));
    }
    for (k, frame) in seg.frames.iter().enumerate() {
        let vol = volumes
            .iter_mut()
            .find(|(num, _)| *num == frame.segment_number)
            .map(|(_, v)| v)
            .ok_or(SegError::UnknownSegment {
                frame: k,
                segment: frame.segment_number,
            })?;
        if frame.data.len() != plane {
            return Err(SegError::FrameSize {
                frame: k,
                got: frame.data.len(),
                expected: plane,
            });
        }
        let by_ref = frame
            .referenced_sop_instance_uid
            .as_deref()
            .and_then(|u| by_uid.get(u).copied());
        let z = match by_ref {
            Some(z) => z,
            None => frame
                .position
                .and_then(|p| slice_at(&p, &n, &by_depth, slices, tol))
                .ok_or(SegError::FrameUnmapped(k))?,
        };
        let start = z.checked_mul(plane).ok_or(SegError::FrameUnmapped(k))?;
        let dst = vol
            .get_mut(start..start.saturating_add(plane))
            .ok_or(SegError::FrameUnmapped(k))?;
        for (d, s) in dst.iter_mut().zip(&frame.data) {
            *d = (*d).max(*s);
        }
    }
    Ok(volumes)
}

/// Writes a SEG referencing `w.source` to `path` atomically (a temporary file in the same
/// directory, synced, then renamed). Frames are written only for (segment, slice) pairs with a
/// non-zero voxel, ordered by segment then slice; one empty frame when every volume is empty.
pub fn write_seg(path: &Path, w: &SegWrite<'_>) -> Result<(), SegError> {
    let obj = build_seg(w)?;
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION),
        )
        .map_err(|_| SegError::Encode("file meta group"))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|_| SegError::Encode("data set"))?;
    write_atomic(path, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const IMPLEMENTATION_CLASS_UID: &str = "2.25.209453617470125155930476421585536305025";
const IMPLEMENTATION_VERSION: &str = "FEDANNO_0_1";
/// ManufacturerModelName of written SEGs (Enhanced General Equipment).
const MODEL_NAME: &str = "fedanno";
/// Tolerance for direction cosines to count as equal.
const ORIENTATION_TOLERANCE: f64 = 1e-4;

type Obj = InMemDicomObject;

// ----- reading -----

fn parse_seg(obj: &Obj, pixels: &[u8], limits: &SegLimits) -> Result<SegObject, SegError> {
    let sop_class = text(obj, tags::SOP_CLASS_UID).ok_or(SegError::Missing("SOPClassUID"))?;
    if sop_class != SEGMENTATION_STORAGE {
        return Err(SegError::NotSegmentation);
    }
    let sop_instance_uid =
        text(obj, tags::SOP_INSTANCE_UID).ok_or(SegError::Missing("SOPInstanceUID"))?;
    let series_uid =
        text(obj, tags::SERIES_INSTANCE_UID).ok_or(SegError::Missing("SeriesInstanceUID"))?;
    let study_uid =
        text(obj, tags::STUDY_INSTANCE_UID).ok_or(SegError::Missing("StudyInstanceUID"))?;
    let frame_of_reference_uid = text(obj, tags::FRAME_OF_REFERENCE_UID);
    let referenced_series_uid = first_item(obj, tags::REFERENCED_SERIES_SEQUENCE)
        .and_then(|it| text(it, tags::SERIES_INSTANCE_UID));

    let segmentation_type = read_segmentation_type(obj)?;
    let (bits, name) = match segmentation_type {
        SegmentationType::Binary => (1u16, "BitsAllocated"),
        SegmentationType::Fractional { .. } => (8u16, "BitsAllocated"),
    };
    if int::<u16>(obj, tags::BITS_ALLOCATED, "BitsAllocated")? != Some(bits) {
        return Err(SegError::Invalid(name));
    }
    if let Some(spp) = int::<u16>(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?
        && spp != 1
    {
        return Err(SegError::Invalid("SamplesPerPixel"));
    }
    let rows = int::<u16>(obj, tags::ROWS, "Rows")?.ok_or(SegError::Missing("Rows"))?;
    let columns = int::<u16>(obj, tags::COLUMNS, "Columns")?.ok_or(SegError::Missing("Columns"))?;
    if rows == 0 || columns == 0 {
        return Err(SegError::Invalid("Rows/Columns"));
    }
    let (rows, columns) = (u32::from(rows), u32::from(columns));
    let frames = int::<u64>(obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1);
    if frames == 0 {
        return Err(SegError::Invalid("NumberOfFrames"));
    }
    if frames > u64::from(limits.max_frames) {
        return Err(SegError::TooManyFrames {
            frames,
            cap: limits.max_frames,
        });
    }
    let plane = u64::from(rows) * u64::from(columns);
    let voxels = plane.saturating_mul(frames);
    if voxels > limits.max_voxels {
        return Err(SegError::TooManyVoxels {
            rows,
            columns,
            frames,
            cap: limits.max_voxels,
        });
    }
    let plane = usize::try_from(plane).map_err(|_| SegError::Alloc(plane))?;
    let n_frames = usize::try_from(frames).map_err(|_| SegError::Alloc(voxels))?;

    let segments = read_segments(obj)?;

    let have = pixels.len() as u64;
    let need = match segmentation_type {
        SegmentationType::Binary => voxels.div_ceil(8),
        SegmentationType::Fractional { .. } => voxels,
    };
    if have < need {
        return Err(SegError::PixelDataTooShort { have, need, frames });
    }

    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .map_err(|_| SegError::Invalid("PerFrameFunctionalGroupsSequence"))?
        .and_then(|e| e.items())
        .ok_or(SegError::Missing("PerFrameFunctionalGroupsSequence"))?;
    if per_frame.len() < n_frames {
        return Err(SegError::PerFrameItemsMissing {
            items: per_frame.len(),
            frames,
        });
    }
    let first = per_frame.first();
    let pixel_spacing = group_item(first, shared, tags::PIXEL_MEASURES_SEQUENCE)
        .map(|it| floats::<2>(it, tags::PIXEL_SPACING, "PixelSpacing"))
        .transpose()?
        .flatten();
    let orientation = group_item(first, shared, tags::PLANE_ORIENTATION_SEQUENCE)
        .map(|it| {
            floats::<6>(
                it,
                tags::IMAGE_ORIENTATION_PATIENT,
                "ImageOrientationPatient",
            )
        })
        .transpose()?
        .flatten();

    let mut out_frames = Vec::with_capacity(n_frames);
    for (k, item) in per_frame.iter().take(n_frames).enumerate() {
        let item = Some(item);
        let segment_number = group_item(item, shared, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .map(|it| {
                int::<u16>(
                    it,
                    tags::REFERENCED_SEGMENT_NUMBER,
                    "ReferencedSegmentNumber",
                )
            })
            .transpose()?
            .flatten()
            .ok_or(SegError::Missing("ReferencedSegmentNumber"))?;
        if !segments.iter().any(|s| s.number == segment_number) {
            return Err(SegError::UnknownSegment {
                frame: k,
                segment: segment_number,
            });
        }
        let referenced_sop_instance_uid = group_item(item, None, tags::DERIVATION_IMAGE_SEQUENCE)
            .and_then(|d| first_item(d, tags::SOURCE_IMAGE_SEQUENCE))
            .and_then(|s| text(s, tags::REFERENCED_SOP_INSTANCE_UID));
        let position = group_item(item, shared, tags::PLANE_POSITION_SEQUENCE)
            .map(|it| floats::<3>(it, tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient"))
            .transpose()?
            .flatten();
        let data = match segmentation_type {
            SegmentationType::Binary => unpack_frame(pixels, k, plane)?,
            SegmentationType::Fractional { max_value, .. } => {
                let start = k.checked_mul(plane).ok_or(SegError::Invalid("PixelData"))?;
                let bytes = pixels
                    .get(start..start.saturating_add(plane))
                    .ok_or(SegError::Invalid("PixelData"))?;
                if bytes.iter().any(|&v| v > max_value) {
                    return Err(SegError::ValueAboveMaximum(k));
                }
                bytes.to_vec()
            }
        };
        out_frames.push(SegFrame {
            segment_number,
            referenced_sop_instance_uid,
            position,
            data,
        });
    }

    Ok(SegObject {
        sop_instance_uid,
        series_uid,
        study_uid,
        referenced_series_uid,
        frame_of_reference_uid,
        segmentation_type,
        rows,
        columns,
        pixel_spacing,
        orientation,
        segments,
        frames: out_frames,
    })
}

fn read_segmentation_type(obj: &Obj) -> Result<SegmentationType, SegError> {
    let t = text(obj, tags::SEGMENTATION_TYPE).ok_or(SegError::Missing("SegmentationType"))?;
    match t.as_str() {
        "BINARY" => Ok(SegmentationType::Binary),
        "FRACTIONAL" => {
            let probability = match text(obj, tags::SEGMENTATION_FRACTIONAL_TYPE).as_deref() {
                Some("PROBABILITY") => true,
                Some("OCCUPANCY") => false,
                Some(_) => return Err(SegError::Invalid("SegmentationFractionalType")),
                None => return Err(SegError::Missing("SegmentationFractionalType")),
            };
            let max_value = int::<u8>(
                obj,
                tags::MAXIMUM_FRACTIONAL_VALUE,
                "MaximumFractionalValue",
            )?
            .ok_or(SegError::Missing("MaximumFractionalValue"))?;
            if max_value == 0 {
                return Err(SegError::Invalid("MaximumFractionalValue"));
            }
            Ok(SegmentationType::Fractional {
                max_value,
                probability,
            })
        }
        _ => Err(SegError::UnsupportedType),
    }
}

fn read_segments(obj: &Obj) -> Result<Vec<SegmentInfo>, SegError> {
    let items = obj
        .element_opt(tags::SEGMENT_SEQUENCE)
        .map_err(|_| SegError::Invalid("SegmentSequence"))?
        .and_then(|e| e.items())
        .ok_or(SegError::Missing("SegmentSequence"))?;
    if items.is_empty() {
        return Err(SegError::NoSegments);
    }
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(items.len().min(1024));
    for it in items {
        let number = int::<u16>(it, tags::SEGMENT_NUMBER, "SegmentNumber")?
            .ok_or(SegError::Missing("SegmentNumber"))?;
        if segments.iter().any(|s| s.number == number) {
            return Err(SegError::DuplicateSegment(number));
        }
        let label = text(it, tags::SEGMENT_LABEL).ok_or(SegError::Missing("SegmentLabel"))?;
        let algorithm_type = match text(it, tags::SEGMENT_ALGORITHM_TYPE).as_deref() {
            Some("MANUAL") => AlgorithmType::Manual,
            Some("SEMIAUTOMATIC") => AlgorithmType::Semiautomatic,
            Some("AUTOMATIC") => AlgorithmType::Automatic,
            Some(_) => return Err(SegError::Invalid("SegmentAlgorithmType")),
            None => return Err(SegError::Missing("SegmentAlgorithmType")),
        };
        let algorithm_name = text(it, tags::SEGMENT_ALGORITHM_NAME);
        let category = coded(it, tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE)
            .ok_or(SegError::Missing("SegmentedPropertyCategoryCodeSequence"))?;
        let property_type = coded(it, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
            .ok_or(SegError::Missing("SegmentedPropertyTypeCodeSequence"))?;
        segments.push(SegmentInfo {
            number,
            label,
            algorithm_type,
            algorithm_name,
            category,
            property_type,
        });
    }
    Ok(segments)
}

/// The first item of a code sequence as a concept (LongCodeValue / URNCodeValue accepted).
fn coded(obj: &Obj, seq: Tag) -> Option<CodedConcept> {
    let it = first_item(obj, seq)?;
    let value = text(it, tags::CODE_VALUE)
        .or_else(|| text(it, tags::LONG_CODE_VALUE))
        .or_else(|| text(it, tags::URN_CODE_VALUE))?;
    Some(CodedConcept {
        value,
        scheme: text(it, tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default(),
        meaning: text(it, tags::CODE_MEANING).unwrap_or_default(),
    })
}

/// The value of the top-level Pixel Data element at `at` (native, little endian); encapsulated
/// (compressed) Pixel Data is refused.
fn pixel_value(buf: &[u8], at: usize, explicit: bool) -> Result<&[u8], SegError> {
    let bad = || SegError::Invalid("PixelData");
    let bytes_at = |i: usize, n: usize| buf.get(at.checked_add(i)?..at.checked_add(i + n)?);
    let u32_at = |i: usize| {
        let b: [u8; 4] = bytes_at(i, 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    };
    if bytes_at(0, 4) != Some(&[0xE0, 0x7F, 0x10, 0x00][..]) {
        return Err(SegError::Missing("PixelData"));
    }
    let (len, value_at) = if explicit {
        if !matches!(bytes_at(4, 2), Some(b"OB" | b"OW")) {
            return Err(bad());
        }
        (u32_at(8).ok_or_else(bad)?, 12)
    } else {
        (u32_at(4).ok_or_else(bad)?, 8)
    };
    if len == u32::MAX {
        // Undefined length: encapsulated (compressed) Pixel Data.
        return Err(SegError::TransferSyntax);
    }
    bytes_at(value_at, len as usize).ok_or_else(bad)
}

/// Unpacks frame `k` (`plane` pixels starting at bit `k·plane`, LSB first) into 0/1 bytes.
fn unpack_frame(bytes: &[u8], k: usize, plane: usize) -> Result<Vec<u8>, SegError> {
    let start = k.checked_mul(plane).ok_or(SegError::Invalid("PixelData"))?;
    let mut out = Vec::with_capacity(plane);
    for bit in start..start.saturating_add(plane) {
        let byte = bytes.get(bit / 8).ok_or(SegError::Invalid("PixelData"))?;
        out.push((byte >> (bit % 8)) & 1);
    }
    Ok(out)
}

/// Packs frames (each `plane` values, non-zero = 1) bit-wise, LSB first, without per-frame
/// padding; the whole value is padded to even length.
fn pack_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>, n_bits: usize) -> Vec<u8> {
    let mut len = n_bits.div_ceil(8);
    len += len % 2;
    let mut out = vec![0u8; len];
    let mut bit = 0usize;
    for frame in frames {
        for &v in frame {
            if v != 0
                && let Some(b) = out.get_mut(bit / 8)
            {
                *b |= 1 << (bit % 8);
            }
            bit += 1;
        }
    }
    out
}

/// The trimmed text of an element (UN decoded as UTF-8); `None` when absent or empty.
fn text(obj: &Obj, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok()??;
    let s = if elem.vr() == VR::UN {
        String::from_utf8_lossy(&elem.to_bytes().ok()?).into_owned()
    } else {
        elem.to_str().ok()?.into_owned()
    };
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    (!s.is_empty()).then(|| s.to_owned())
}

/// An integer element; `Ok(None)` when absent or empty, an error when not an integer in range.
fn int<T: TryFrom<i64>>(obj: &Obj, tag: Tag, name: &'static str) -> Result<Option<T>, SegError> {
    let Some(elem) = obj.element_opt(tag).map_err(|_| SegError::Invalid(name))? else {
        return Ok(None);
    };
    if is_blank(elem) {
        return Ok(None);
    }
    let v = elem.to_int::<i64>().map_err(|_| SegError::Invalid(name))?;
    T::try_from(v)
        .map(Some)
        .map_err(|_| SegError::Invalid(name))
}

/// Whether an element has no value (or only padding).
fn is_blank(elem: &InMemElement) -> bool {
    match elem.value().primitive() {
        Some(PrimitiveValue::Empty) => true,
        Some(PrimitiveValue::Str(s)) => s.trim_matches([' ', '\0']).is_empty(),
        Some(PrimitiveValue::Strs(v)) => v.iter().all(|s| s.trim_matches([' ', '\0']).is_empty()),
        _ => false,
    }
}

/// A multi-valued decimal element with exactly `N` finite values; `Ok(None)` when absent.
fn floats<const N: usize>(
    obj: &Obj,
    tag: Tag,
    name: &'static str,
) -> Result<Option<[f64; N]>, SegError> {
    let Some(elem) = obj.element_opt(tag).map_err(|_| SegError::Invalid(name))? else {
        return Ok(None);
    };
    if is_blank(elem) {
        return Ok(None);
    }
    let v = elem
        .to_multi_float64()
        .map_err(|_| SegError::Invalid(name))?;
    let arr: [f64; N] = v.try_into().map_err(|_| SegError::Invalid(name))?;
    if arr.iter().all(|x| x.is_finite()) {
        Ok(Some(arr))
    } else {
        Err(SegError::Invalid(name))
    }
}

fn first_item(obj: &Obj, tag: Tag) -> Option<&Obj> {
    obj.element_opt(tag).ok()??.items()?.first()
}

/// The first item of functional group `seq`, from the per-frame item, else the shared one.
fn group_item<'a>(frame: Option<&'a Obj>, shared: Option<&'a Obj>, seq: Tag) -> Option<&'a Obj> {
    frame
        .and_then(|f| first_item(f, seq))
        .or_else(|| shared.and_then(|s| first_item(s, seq)))
}

// ----- geometry -----

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The unit slice normal (row direction × column direction), if the orientation is two
/// orthonormal vectors.
fn checked_normal(o: &[f64; 6]) -> Option<[f64; 3]> {
    if !o.iter().all(|v| v.is_finite()) {
        return None;
    }
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let unit = |v: &[f64; 3]| (dot(v, v).sqrt() - 1.0).abs() < 1e-3;
    if !unit(&r) || !unit(&c) || dot(&r, &c).abs() > 1e-3 {
        return None;
    }
    let n = [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ];
    let len = dot(&n, &n).sqrt();
    Some([n[0] / len, n[1] / len, n[2] / len])
}

fn orientation_close(a: &[f64; 6], b: &[f64; 6]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= ORIENTATION_TOLERANCE)
}

/// The slice at position `p`: nearest along the normal within `tol`, in-plane offset within
/// `tol`.
fn slice_at(
    p: &[f64; 3],
    n: &[f64; 3],
    by_depth: &[(f64, usize)],
    slices: &[SliceRef],
    tol: f64,
) -> Option<usize> {
    let d = dot(p, n);
    if !d.is_finite() {
        return None;
    }
    let i = by_depth.partition_point(|(depth, _)| *depth < d);
    let lo = i.saturating_sub(1);
    let (_, idx) = by_depth
        .get(lo..by_depth.len().min(i + 1))?
        .iter()
        .filter(|(depth, _)| (depth - d).abs() <= tol)
        .min_by(|a, b| (a.0 - d).abs().total_cmp(&(b.0 - d).abs()))?;
    let s = slices.get(*idx)?;
    let diff = [
        p[0] - s.position[0],
        p[1] - s.position[1],
        p[2] - s.position[2],
    ];
    let along = dot(&diff, n);
    let perp = [
        diff[0] - along * n[0],
        diff[1] - along * n[1],
        diff[2] - along * n[2],
    ];
    (dot(&perp, &perp).sqrt() <= tol).then_some(*idx)
}

fn plane_size(rows: u32, columns: u32) -> Result<usize, SegError> {
    let p = u64::from(rows) * u64::from(columns);
    if p == 0 {
        return Err(SegError::Invalid("Rows/Columns"));
    }
    usize::try_from(p).map_err(|_| SegError::Alloc(p))
}

fn zeroed(len: usize) -> Result<Vec<u8>, SegError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| SegError::Alloc(len as u64))?;
    v.resize(len, 0);
    Ok(v)
}

// ----- writing -----

/// One frame to write: segment number, slice index and the frame's pixels.
struct OutFrame<'a> {
    segment: u16,
    z: usize,
    data: &'a [u8],
}

fn build_seg(w: &SegWrite<'_>) -> Result<Obj, SegError> {
    let src = w.source;
    validate_write(w)?;
    let rows = u16::try_from(src.rows).map_err(|_| SegError::Invalid("Rows"))?;
    let columns = u16::try_from(src.columns).map_err(|_| SegError::Invalid("Columns"))?;
    let plane = plane_size(src.rows, src.columns)?;
    let n = checked_normal(&src.orientation).ok_or(SegError::BadOrientation)?;
    let depths: Vec<f64> = src.slices.iter().map(|s| dot(&s.position, &n)).collect();
    if depths.windows(2).any(|w| match w {
        [a, b] => b - a <= 1e-6,
        _ => false,
    }) {
        return Err(SegError::SlicesNotSorted);
    }

    // Frames: per segment (in number order), per slice with any non-zero voxel.
    let mut frames: Vec<OutFrame<'_>> = Vec::new();
    for seg in w.segments {
        let Some((_, vol)) = w.volumes.iter().find(|(num, _)| *num == seg.number) else {
            continue;
        };
        for (z, data) in vol.chunks_exact(plane).enumerate() {
            if data.iter().any(|&v| v != 0) {
                frames.push(OutFrame {
                    segment: seg.number,
                    z,
                    data,
                });
            }
        }
    }
    let empty = vec![0u8; plane];
    if frames.is_empty() {
        frames.push(OutFrame {
            segment: w.segments.first().map_or(1, |s| s.number),
            z: 0,
            data: &empty,
        });
    }
    let n_frames = u32::try_from(frames.len()).map_err(|_| SegError::Invalid("NumberOfFrames"))?;

    let (bits, pixel_data) = match w.segmentation_type {
        SegmentationType::Binary => {
            let n_bits = plane
                .checked_mul(frames.len())
                .ok_or(SegError::Alloc(u64::MAX))?;
            (1u16, pack_frames(frames.iter().map(|f| f.data), n_bits))
        }
        SegmentationType::Fractional { .. } => {
            let mut v: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            (8u16, v)
        }
    };

    // SpacingBetweenSlices: the slice thickness for one slice (as highdicom writes), the gap
    // for uniformly spaced slices, absent otherwise.
    let spacing_between = if depths.len() == 1 {
        Some(src.slice_thickness)
    } else {
        slice_spacing(&depths)
    };
    let mut pixel_measures = vec![
        st(tags::SLICE_THICKNESS, VR::DS, &ds(src.slice_thickness)),
        st(tags::PIXEL_SPACING, VR::DS, &ds_multi(&src.pixel_spacing)),
    ];
    if let Some(gap) = spacing_between {
        pixel_measures.push(st(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(gap)));
    }
    let mut el = vec![
        cs(tags::SPECIFIC_CHARACTER_SET, "ISO_IR 192"),
        multi_cs(tags::IMAGE_TYPE, &["DERIVED", "PRIMARY"]),
        st(tags::INSTANCE_CREATION_DATE, VR::DA, &w.content_date),
        st(tags::INSTANCE_CREATION_TIME, VR::TM, &w.content_time),
        st(tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE),
        st(tags::SOP_INSTANCE_UID, VR::UI, &w.sop_instance_uid),
        st(tags::STUDY_DATE, VR::DA, &src.study_date),
        st(tags::SERIES_DATE, VR::DA, &w.content_date),
        st(tags::CONTENT_DATE, VR::DA, &w.content_date),
        st(tags::STUDY_TIME, VR::TM, &src.study_time),
        st(tags::SERIES_TIME, VR::TM, &w.content_time),
        st(tags::CONTENT_TIME, VR::TM, &w.content_time),
        st(tags::ACCESSION_NUMBER, VR::SH, &src.accession_number),
        cs(tags::MODALITY, "SEG"),
        st(tags::MANUFACTURER, VR::LO, &w.manufacturer),
        st(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &src.referring_physician,
        ),
        st(tags::SERIES_DESCRIPTION, VR::LO, &w.series_description),
        st(tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL_NAME),
        seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![item(vec![
                seq(
                    tags::REFERENCED_INSTANCE_SEQUENCE,
                    src.slices
                        .iter()
                        .map(|s| {
                            item(vec![
                                st(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &s.sop_class_uid),
                                st(
                                    tags::REFERENCED_SOP_INSTANCE_UID,
                                    VR::UI,
                                    &s.sop_instance_uid,
                                ),
                            ])
                        })
                        .collect(),
                ),
                st(tags::SERIES_INSTANCE_UID, VR::UI, &src.series_uid),
            ])],
        ),
        st(tags::PATIENT_NAME, VR::PN, &src.patient_name),
        st(tags::PATIENT_ID, VR::LO, &src.patient_id),
        st(tags::PATIENT_BIRTH_DATE, VR::DA, &src.patient_birth_date),
        cs(tags::PATIENT_SEX, &src.patient_sex),
        st(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0"),
        st(tags::SOFTWARE_VERSIONS, VR::LO, &w.software_version),
        st(tags::STUDY_INSTANCE_UID, VR::UI, &src.study_uid),
        st(tags::SERIES_INSTANCE_UID, VR::UI, &w.series_uid),
        st(tags::STUDY_ID, VR::SH, &src.study_id),
        st(tags::SERIES_NUMBER, VR::IS, &w.series_number.to_string()),
        st(tags::INSTANCE_NUMBER, VR::IS, "1"),
        st(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &src.frame_of_reference_uid,
        ),
        st(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        cs(tags::PHOTOMETRIC_INTERPRETATION, "MONOCHROME2"),
        st(tags::NUMBER_OF_FRAMES, VR::IS, &n_frames.to_string()),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(columns)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(bits)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(bits - 1)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        cs(tags::LOSSY_IMAGE_COMPRESSION, "00"),
        seq(
            tags::SEGMENT_SEQUENCE,
            w.segments.iter().map(segment_item).collect(),
        ),
        cs(
            tags::SEGMENTS_OVERLAP,
            if segments_overlap(w.volumes) {
                "YES"
            } else {
                "NO"
            },
        ),
        cs(tags::CONTENT_LABEL, &w.content_label),
        st(tags::CONTENT_DESCRIPTION, VR::LO, ""),
        st(tags::CONTENT_CREATOR_NAME, VR::PN, &w.content_creator),
        cs(tags::PRESENTATION_LUT_SHAPE, "IDENTITY"),
    ];
    match w.segmentation_type {
        SegmentationType::Binary => el.push(cs(tags::SEGMENTATION_TYPE, "BINARY")),
        SegmentationType::Fractional {
            max_value,
            probability,
        } => {
            el.push(cs(tags::SEGMENTATION_TYPE, "FRACTIONAL"));
            el.push(cs(
                tags::SEGMENTATION_FRACTIONAL_TYPE,
                if probability {
                    "PROBABILITY"
                } else {
                    "OCCUPANCY"
                },
            ));
            el.push(DataElement::new(
                tags::MAXIMUM_FRACTIONAL_VALUE,
                VR::US,
                PrimitiveValue::from(u16::from(max_value)),
            ));
        }
    }

    // Multi-frame Dimension module.
    let dim_uid = derived_uid(&w.sop_instance_uid, "dimension-organization");
    el.push(seq(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![item(vec![st(
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            &dim_uid,
        )])],
    ));
    el.push(cs(tags::DIMENSION_ORGANIZATION_TYPE, "3D"));
    el.push(seq(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dimension_index(
                &dim_uid,
                tags::REFERENCED_SEGMENT_NUMBER,
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                "Referenced Segment Number",
            ),
            dimension_index(
                &dim_uid,
                tags::IMAGE_POSITION_PATIENT,
                tags::PLANE_POSITION_SEQUENCE,
                "Image Position Patient",
            ),
        ],
    ));

    // Functional groups.
    el.push(seq(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![item(vec![
            seq(tags::PIXEL_MEASURES_SEQUENCE, vec![item(pixel_measures)]),
            seq(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(vec![st(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    &ds_multi(&src.orientation),
                )])],
            ),
        ])],
    ));
    let mut per_frame = Vec::with_capacity(frames.len());
    for f in &frames {
        let slice = src.slices.get(f.z).ok_or(SegError::Invalid("slices"))?;
        per_frame.push(frame_item(f, slice)?);
    }
    el.push(seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame));
    if let Some(method) = &src.deidentification_method {
        el.push(st(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
        el.push(st(tags::DEIDENTIFICATION_METHOD, VR::LO, method));
    }
    el.push(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixel_data),
    ));
    Ok(InMemDicomObject::from_element_iter(el))
}

fn validate_write(w: &SegWrite<'_>) -> Result<(), SegError> {
    let src = w.source;
    if src.rows == 0 || src.columns == 0 || src.rows > 0xFFFF || src.columns > 0xFFFF {
        return Err(SegError::Invalid("Rows/Columns"));
    }
    if src.slices.is_empty() {
        return Err(SegError::NoSlices);
    }
    if !(src.pixel_spacing.iter().all(|v| v.is_finite() && *v > 0.0)) {
        return Err(SegError::Invalid("PixelSpacing"));
    }
    if !(src.slice_thickness.is_finite() && src.slice_thickness > 0.0) {
        return Err(SegError::Invalid("SliceThickness"));
    }
    if src
        .slices
        .iter()
        .any(|s| !s.position.iter().all(|v| v.is_finite()))
    {
        return Err(SegError::Invalid("ImagePositionPatient"));
    }
    for (v, name) in [
        (w.sop_instance_uid.as_str(), "SOPInstanceUID"),
        (&w.series_uid, "SeriesInstanceUID"),
        (&src.study_uid, "StudyInstanceUID"),
        (&src.series_uid, "source SeriesInstanceUID"),
        (&src.frame_of_reference_uid, "FrameOfReferenceUID"),
    ] {
        check_uid(v, name)?;
    }
    for s in &src.slices {
        check_uid(&s.sop_class_uid, "ReferencedSOPClassUID")?;
        check_uid(&s.sop_instance_uid, "ReferencedSOPInstanceUID")?;
    }
    for (v, max, name) in [
        (src.patient_name.as_str(), 64 * 5, "PatientName"),
        (&src.patient_id, 64, "PatientID"),
        (&src.study_id, 16, "StudyID"),
        (&src.accession_number, 16, "AccessionNumber"),
        (&src.referring_physician, 64 * 5, "ReferringPhysicianName"),
        (&w.series_description, 64, "SeriesDescription"),
        (&w.content_creator, 64 * 5, "ContentCreatorName"),
        (&w.manufacturer, 64, "Manufacturer"),
        (&w.software_version, 64, "SoftwareVersions"),
    ] {
        check_text(v, max, name)?;
    }
    check_cs(&w.content_label, "ContentLabel")?;
    if w.content_label.trim().is_empty() {
        return Err(SegError::InvalidText("ContentLabel"));
    }
    check_cs(&src.patient_sex, "PatientSex")?;
    for (v, name) in [
        (src.patient_birth_date.as_str(), "PatientBirthDate"),
        (&src.study_date, "StudyDate"),
        (&w.content_date, "ContentDate"),
    ] {
        check_date(v, name)?;
    }
    for (v, name) in [
        (src.study_time.as_str(), "StudyTime"),
        (&w.content_time, "ContentTime"),
    ] {
        check_time(v, name)?;
    }
    if w.content_date.is_empty() || w.content_time.is_empty() {
        return Err(SegError::InvalidText("ContentDate/ContentTime"));
    }
    if w.software_version.is_empty() || w.manufacturer.is_empty() {
        return Err(SegError::InvalidText("Manufacturer/SoftwareVersions"));
    }
    if let SegmentationType::Fractional { max_value: 0, .. } = w.segmentation_type {
        return Err(SegError::Invalid("MaximumFractionalValue"));
    }

    // Segments and volumes.
    if w.segments.is_empty() {
        return Err(SegError::NoSegments);
    }
    for (i, s) in w.segments.iter().enumerate() {
        if usize::from(s.number) != i + 1 {
            return Err(SegError::SegmentNumbering);
        }
        if s.algorithm_type != AlgorithmType::Manual
            && s.algorithm_name
                .as_deref()
                .is_none_or(|n| n.trim().is_empty())
        {
            return Err(SegError::MissingAlgorithmName(s.number));
        }
        check_text(&s.label, 64, "SegmentLabel")?;
        if s.label.trim().is_empty() {
            return Err(SegError::InvalidText("SegmentLabel"));
        }
        if let Some(name) = &s.algorithm_name {
            check_text(name, 64, "SegmentAlgorithmName")?;
        }
        for c in [&s.category, &s.property_type] {
            check_text(&c.value, 16, "CodeValue")?;
            check_text(&c.scheme, 16, "CodingSchemeDesignator")?;
            check_text(&c.meaning, 64, "CodeMeaning")?;
            if c.value.is_empty() || c.scheme.is_empty() || c.meaning.is_empty() {
                return Err(SegError::InvalidText("code sequence"));
            }
        }
    }
    let plane = plane_size(src.rows, src.columns)?;
    let expected = plane
        .checked_mul(src.slices.len())
        .ok_or(SegError::Alloc(u64::MAX))?;
    let max = match w.segmentation_type {
        SegmentationType::Binary => 1,
        SegmentationType::Fractional { max_value, .. } => max_value,
    };
    for (i, (num, vol)) in w.volumes.iter().enumerate() {
        if !w.segments.iter().any(|s| s.number == *num) {
            return Err(SegError::UnknownSegment {
                frame: i,
                segment: *num,
            });
        }
        if w.volumes.iter().take(i).any(|(n, _)| n == num) {
            return Err(SegError::DuplicateVolume(*num));
        }
        if vol.len() != expected {
            return Err(SegError::VolumeSize {
                segment: *num,
                got: vol.len(),
                expected,
            });
        }
        if vol.iter().any(|&v| v > max) {
            return Err(SegError::VolumeValue(*num));
        }
    }
    Ok(())
}

/// Whether any voxel is non-zero in two or more volumes.
fn segments_overlap(volumes: &[(u16, &[u8])]) -> bool {
    let Some(((_, first), rest)) = volumes.split_first() else {
        return false;
    };
    let mut seen: Vec<bool> = first.iter().map(|&v| v != 0).collect();
    for (_, vol) in rest {
        for (s, &v) in seen.iter_mut().zip(vol.iter()) {
            if v != 0 {
                if *s {
                    return true;
                }
                *s = true;
            }
        }
    }
    false
}

/// Mean gap between consecutive depths, if there are at least two and every gap equals the
/// mean within max(1e-3·mean, 0.01 mm).
fn slice_spacing(depths: &[f64]) -> Option<f64> {
    let gaps: Vec<f64> = depths
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some(b - a),
            _ => None,
        })
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let tol = (1e-3 * mean).max(0.01);
    gaps.iter().all(|g| (g - mean).abs() <= tol).then_some(mean)
}

fn segment_item(s: &SegmentInfo) -> Obj {
    let mut el = vec![
        seq(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code_item(&s.category)],
        ),
        DataElement::new(tags::SEGMENT_NUMBER, VR::US, PrimitiveValue::from(s.number)),
        st(tags::SEGMENT_LABEL, VR::LO, &s.label),
        cs(tags::SEGMENT_ALGORITHM_TYPE, s.algorithm_type.as_str()),
        seq(
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            vec![code_item(&s.property_type)],
        ),
    ];
    if let Some(name) = &s.algorithm_name {
        el.push(st(tags::SEGMENT_ALGORITHM_NAME, VR::LO, name));
    }
    item(el)
}

fn frame_item(f: &OutFrame<'_>, slice: &SourceSlice) -> Result<Obj, SegError> {
    let z = u32::try_from(f.z + 1).map_err(|_| SegError::Invalid("slices"))?;
    Ok(item(vec![
        seq(
            tags::DERIVATION_IMAGE_SEQUENCE,
            vec![item(vec![
                seq(
                    tags::SOURCE_IMAGE_SEQUENCE,
                    vec![item(vec![
                        st(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &slice.sop_class_uid),
                        st(
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            &slice.sop_instance_uid,
                        ),
                        cs(tags::SPATIAL_LOCATIONS_PRESERVED, "YES"),
                        seq(
                            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                            vec![code_item(&CodedConcept::new(
                                "121322",
                                "DCM",
                                "Source image for image processing operation",
                            ))],
                        ),
                    ])],
                ),
                seq(
                    tags::DERIVATION_CODE_SEQUENCE,
                    vec![code_item(&CodedConcept::new(
                        "113076",
                        "DCM",
                        "Segmentation",
                    ))],
                ),
            ])],
        ),
        seq(
            tags::FRAME_CONTENT_SEQUENCE,
            vec![item(vec![DataElement::new(
                tags::DIMENSION_INDEX_VALUES,
                VR::UL,
                PrimitiveValue::U32(vec![u32::from(f.segment), z].into()),
            )])],
        ),
        seq(
            tags::PLANE_POSITION_SEQUENCE,
            vec![item(vec![st(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &ds_multi(&slice.position),
            )])],
        ),
        seq(
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![item(vec![DataElement::new(
                tags::REFERENCED_SEGMENT_NUMBER,
                VR::US,
                PrimitiveValue::from(f.segment),
            )])],
        ),
    ]))
}

fn dimension_index(org_uid: &str, pointer: Tag, group: Tag, label: &str) -> Obj {
    item(vec![
        st(tags::DIMENSION_ORGANIZATION_UID, VR::UI, org_uid),
        DataElement::new(
            tags::DIMENSION_INDEX_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![pointer].into()),
        ),
        DataElement::new(
            tags::FUNCTIONAL_GROUP_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![group].into()),
        ),
        st(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
    ])
}

fn code_item(c: &CodedConcept) -> Obj {
    item(vec![
        st(tags::CODE_VALUE, VR::SH, &c.value),
        st(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &c.scheme),
        st(tags::CODE_MEANING, VR::LO, &c.meaning),
    ])
}

fn st(tag: Tag, vr: VR, v: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn cs(tag: Tag, v: &str) -> InMemElement {
    st(tag, VR::CS, v)
}

fn multi_cs(tag: Tag, vs: &[&str]) -> InMemElement {
    let strs: Vec<String> = vs.iter().map(|s| (*s).to_owned()).collect();
    DataElement::new(tag, VR::CS, PrimitiveValue::Strs(strs.into()))
}

fn seq(tag: Tag, items: Vec<Obj>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn item(elements: Vec<InMemElement>) -> Obj {
    InMemDicomObject::from_element_iter(elements)
}

/// A DS value (at most 16 characters).
fn ds(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 16 {
        return s;
    }
    for prec in (0..=10).rev() {
        let s = format!("{v:.prec$e}");
        if s.len() <= 16 {
            return s;
        }
    }
    "0".into()
}

fn ds_multi(vs: &[f64]) -> String {
    vs.iter().map(|v| ds(*v)).collect::<Vec<_>>().join("\\")
}

/// A `2.25.` UID derived from `base` and `purpose` (deterministic, 128 bits).
fn derived_uid(base: &str, purpose: &str) -> String {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, base, purpose).hash(&mut h);
        h.finish()
    };
    let v = (u128::from(half(1)) << 64) | u128::from(half(2));
    format!("2.25.{}", v.max(1))
}

fn check_uid(v: &str, name: &'static str) -> Result<(), SegError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        });
    if ok {
        Ok(())
    } else {
        Err(SegError::InvalidUid(name))
    }
}

/// Single-valued text: no backslash, no control characters, at most `max` characters.
fn check_text(v: &str, max: usize, name: &'static str) -> Result<(), SegError> {
    if v.chars().count() > max || v.chars().any(|c| c == '\\' || c.is_control()) {
        Err(SegError::InvalidText(name))
    } else {
        Ok(())
    }
}

fn check_cs(v: &str, name: &'static str) -> Result<(), SegError> {
    let ok = v.len() <= 16
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SegError::InvalidText(name))
    }
}

/// DA: empty or YYYYMMDD.
fn check_date(v: &str, name: &'static str) -> Result<(), SegError> {
    if v.is_empty() || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(SegError::InvalidText(name))
    }
}

/// TM: empty, or HH[MM[SS[.F{1,6}]]].
fn check_time(v: &str, name: &'static str) -> Result<(), SegError> {
    let (main, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = v.is_empty()
        || (matches!(main.len(), 2 | 4 | 6)
            && main.bytes().all(|b| b.is_ascii_digit())
            && (!v.contains('.') || (main.len() == 6 && (1..=6).contains(&frac.len())))
            && frac.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(SegError::InvalidText(name))
    }
}

/// Writes `bytes` to a new temporary file next to `path`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SegError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or(SegError::Io(std::io::ErrorKind::InvalidInput))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f: File = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(SegError::Io(e.kind()));
    }
    Ok(())
}

// ----- terse Debug for types holding identifiers -----

impl std::fmt::Debug for SegFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegFrame")
            .field("segment_number", &self.segment_number)
            .field("has_reference", &self.referenced_sop_instance_uid.is_some())
            .field("position", &self.position)
            .field("pixels", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SegObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegObject")
            .field("segmentation_type", &self.segmentation_type)
            .field("rows", &self.rows)
            .field("columns", &self.columns)
            .field("segments", &self.segments.len())
            .field("frames", &self.frames.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SliceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceRef")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SourceSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSlice")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegSource")
            .field("rows", &self.rows)
            .field("columns", &self.columns)
            .field("pixel_spacing", &self.pixel_spacing)
            .field("orientation", &self.orientation)
            .field("slices", &self.slices.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "seg_tests.rs"]
mod tests;
