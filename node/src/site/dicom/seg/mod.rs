//! DICOM Segmentation objects (SEG, Segmentation Storage `1.2.840.10008.5.1.4.1.1.66.4`, and
//! Label Map Segmentation Storage `1.2.840.10008.5.1.4.1.1.66.7`): reading BINARY, FRACTIONAL
//! and LABELMAP SEGs ([`read_seg`]), mapping their frames onto the slices of a series as one
//! label volume per segment ([`frames_to_volumes`]) or one label map
//! ([`frames_to_label_map`]), and writing a conformant BINARY, FRACTIONAL or LABELMAP
//! Segmentation IOD that references a source series ([`write_seg`]).
//!
//! 1-bit Pixel Data is packed and unpacked here, never by dicom-pixeldata: frames are
//! concatenated bit-wise, LSB first, without per-frame padding (PS3.5 §8.1.1), so frame `k`
//! starts at bit `k·rows·cols`. Every count in a file is untrusted: frames are bounded by
//! NumberOfFrames (default 1), by the Pixel Data length and by [`SegLimits`], and per-frame
//! functional group items beyond NumberOfFrames are ignored. Error texts name what is wrong,
//! never an element value; the `Debug` output of types holding identifiers prints none of them.
//!
//! Layout: this file holds the public types and [`SegError`] and re-exports the public
//! functions; `read` reads a SEG file ([`read_seg`]); `volumes` maps frames onto a series
//! ([`frames_to_volumes`]) and holds the slice geometry the writer shares; `write` builds and
//! writes a SEG ([`write_seg`]) after `validate` has checked everything it will write; `bits`
//! packs and unpacks 1-bit frames; `tests` holds the unit tests.

mod bits;
mod layers;
mod read;
mod validate;
mod volumes;
mod write;

pub use layers::{Layers, OverlapRuns};
pub use read::read_seg;
pub use volumes::{
    common_grid, frames_to_label_map, frames_to_layers, frames_to_volumes, label_map,
};
pub use write::write_seg;

use dicom_dictionary_std::uids;
use dicom_object::InMemDicomObject;
use thiserror::Error;

use super::prescan::PrescanError;

/// SOP Class UID of Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = uids::SEGMENTATION_STORAGE;
/// Label Map Segmentation Storage (PS3.4, 2024): one frame per plane holding segment numbers.
pub const LABELMAP_SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.7";

/// BINARY (one bit per pixel, values 0/1) or FRACTIONAL (8 bits, values 0..=`max_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentationType {
    Binary,
    /// Label Map Segmentation (8-bit): a frame per plane whose values are segment numbers
    /// (0 background); its frames carry no segment number of their own (0 in [`SegFrame`]).
    Labelmap,
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

    /// The type a DICOM code string names.
    pub fn from_code(code: &str) -> Option<Self> {
        [
            AlgorithmType::Manual,
            AlgorithmType::Semiautomatic,
            AlgorithmType::Automatic,
        ]
        .into_iter()
        .find(|t| t.as_str() == code)
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
    /// RecommendedDisplayCIELabValue: CIELab scaled to 0..=65535.
    pub colour: Option<[u16; 3]>,
    /// SegmentationAlgorithmIdentificationSequence (its first item), for an algorithm's
    /// segment whose family and version are known.
    pub algorithm_identification: Option<AlgorithmIdentification>,
}

/// An item of SegmentationAlgorithmIdentificationSequence: the algorithm's family, name and
/// version (all required in the item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmIdentification {
    pub family: CodedConcept,
    pub name: String,
    pub version: String,
}

/// One frame of a SEG.
#[derive(Clone, PartialEq)]
pub struct SegFrame {
    pub segment_number: u16,
    /// DerivationImageSequence → SourceImageSequence → ReferencedSOPInstanceUID.
    pub referenced_sop_instance_uid: Option<String>,
    /// PlanePositionSequence → ImagePositionPatient.
    pub position: Option<[f64; 3]>,
    /// `rows * columns` values, row-major; 0/1 for BINARY (kept as bits), 0..=max for
    /// FRACTIONAL, segment numbers for LABELMAP.
    pub data: FrameData,
}

/// The pixels of one frame: a byte each, or for a BINARY frame its bits as read (LSB first,
/// the frame's first pixel at bit 0), so that a frame costs an eighth of its pixels.
#[derive(Clone, PartialEq, Eq)]
pub enum FrameData {
    Bytes(Vec<u8>),
    Bits { bits: Vec<u8>, len: usize },
}

impl FrameData {
    /// The number of pixels.
    pub fn len(&self) -> usize {
        match self {
            FrameData::Bytes(b) => b.len(),
            FrameData::Bits { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixel `j` (0 beyond the end).
    pub fn get(&self, j: usize) -> u8 {
        match self {
            FrameData::Bytes(b) => b.get(j).copied().unwrap_or(0),
            FrameData::Bits { bits, len } if j < *len => {
                bits.get(j / 8).map_or(0, |b| (b >> (j % 8)) & 1)
            }
            FrameData::Bits { .. } => 0,
        }
    }

    /// Every pixel in order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..self.len()).map(|j| self.get(j))
    }

    /// The indices of the non-zero pixels with their values, skipping empty bytes of bits.
    pub fn nonzero(&self) -> impl Iterator<Item = (usize, u8)> + '_ {
        let bytes: &[u8] = match self {
            FrameData::Bytes(b) | FrameData::Bits { bits: b, .. } => b,
        };
        let bits = matches!(self, FrameData::Bits { .. });
        let len = self.len();
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(move |(i, &b)| {
                let (from, to) = if bits { (i * 8, i * 8 + 8) } else { (i, i + 1) };
                (from..to.min(len)).filter_map(move |j| {
                    let v = if bits { (b >> (j - from)) & 1 } else { b };
                    (v != 0).then_some((j, v))
                })
            })
    }

    /// A byte per pixel.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.iter().collect()
    }
}

impl From<Vec<u8>> for FrameData {
    fn from(b: Vec<u8>) -> Self {
        FrameData::Bytes(b)
    }
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
    /// For [`SegmentationType::Labelmap`]: exactly one entry `(0, label map)` on that grid whose
    /// values are segment numbers (0 background), with at most 255 segments. BINARY may be
    /// given the same one label map, with `overlaps`: each segment is then the voxels labelled
    /// with its number and its overlap runs, and memory stays one label map whatever the
    /// number of segments.
    pub volumes: &'a [(u16, &'a [u8])],
    /// With a BINARY SEG's one label map: per segment number, the runs (first voxel, count) of
    /// its voxels under another segment. Empty otherwise.
    pub overlaps: &'a [(u8, Vec<(u32, u32)>)],
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
    #[error(
        "segment {segment} overlaps another segment at {voxels} voxels; a label map holds one segment per voxel"
    )]
    Overlap { segment: u16, voxels: u64 },
    /// A SEG read without its source series cannot be placed on a grid.
    #[error("{0}")]
    Placement(&'static str),
    #[error("unsupported segmentation type (only BINARY, FRACTIONAL and LABELMAP)")]
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
    #[error("a LABELMAP SEG is written from exactly one label map, not {0} volumes")]
    LabelMapVolumes(usize),
    #[error("the label map of a LABELMAP SEG is volume 0, not volume {0}")]
    LabelMapNumber(u16),
    #[error("the label map holds the value {0}, which numbers no segment")]
    LabelNotASegment(u8),
    #[error("{0} segments: a LABELMAP SEG of 8-bit frames holds at most 255")]
    TooManyLabels(usize),
    #[error("invalid UID in {0}")]
    InvalidUid(&'static str),
    #[error("invalid text in {0}")]
    InvalidText(&'static str),
    #[error("source slices are not strictly increasing along the slice normal")]
    SlicesNotSorted,
    #[error("cannot encode the DICOM file ({0})")]
    Encode(&'static str),
}

/// The in-memory data set `read` parses into and `write` builds.
type Obj = InMemDicomObject;

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
mod tests;
