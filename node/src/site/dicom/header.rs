//! Header-only reading of one DICOM file into an [`InstanceHeader`]: the original attributes an
//! ingest needs (identifiers, geometry, encoding). It reads the file prefix, pre-scans it
//! ([`super::prescan`]) so no declared length is trusted, hands only the bytes before Pixel Data
//! to dicom-object, and maps every failure to a [`HeaderError`] whose text names the problem but
//! never an element value. The values it returns are original (PHI-bearing): they stay inside
//! the site and are pseudonymised by [`super::deid`] before anything could leave.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use thiserror::Error;

use super::prescan::{self, PrescanError, ScanLimits};

/// First read; most headers (and many whole files) fit.
const FIRST_READ: usize = 64 * 1024;

/// Caps applied to one file.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_file_bytes: u64,
    pub max_header_bytes: u64,
    pub max_element_bytes: u64,
    pub max_voxels: u64,
}

/// What kind of object an instance is, from its SOP class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    Image,
    Segmentation,
    StructuredReport,
    RadiotherapyObject,
    Other,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Image => "image",
            ObjectKind::Segmentation => "segmentation",
            ObjectKind::StructuredReport => "structured-report",
            ObjectKind::RadiotherapyObject => "radiotherapy",
            ObjectKind::Other => "other",
        }
    }
}

/// The original header attributes of one instance.
#[derive(Clone, PartialEq)]
pub struct InstanceHeader {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference_uid: Option<String>,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub study_date: Option<String>,
    pub modality: String,
    pub kind: ObjectKind,
    pub transfer_syntax: String,
    pub series_number: Option<i64>,
    pub instance_number: Option<i64>,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub frames: u32,
    /// (row spacing, column spacing) in mm: PixelSpacing's order.
    pub pixel_spacing: Option<[f64; 2]>,
    pub orientation: Option<[f64; 6]>,
    /// Position of the first frame.
    pub position: Option<[f64; 3]>,
    /// Positions of every frame of a multi-frame image (empty for single-frame).
    pub frame_positions: Vec<[f64; 3]>,
    pub file_size: u64,
}

/// Deliberately terse: an `InstanceHeader` holds PHI and is never printed whole.
impl std::fmt::Debug for InstanceHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceHeader")
            .field("kind", &self.kind)
            .field("modality", &self.modality)
            .field("rows", &self.rows)
            .field("columns", &self.columns)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum HeaderError {
    #[error("cannot read file: {0}")]
    Io(std::io::ErrorKind),
    #[error("file is {size} bytes, larger than the {cap}-byte limit")]
    FileTooLarge { size: u64, cap: u64 },
    #[error("empty file")]
    Empty,
    #[error("header is larger than the {0}-byte limit")]
    HeaderTooLarge(u64),
    #[error("{0}")]
    Structure(#[from] PrescanError),
    #[error("unreadable DICOM header ({0})")]
    Parse(&'static str),
    #[error("missing required attribute {0}")]
    Missing(&'static str),
    #[error("invalid value in {0}")]
    Invalid(&'static str),
    #[error(
        "absurd dimensions: {rows} x {columns} x {frames} frames exceeds the {cap}-voxel limit"
    )]
    AbsurdDimensions {
        rows: u32,
        columns: u32,
        frames: u64,
        cap: u64,
    },
}

/// Reads the header of the file at `path`.
pub fn read_file(path: &Path, limits: &HeaderLimits) -> Result<InstanceHeader, HeaderError> {
    let mut file = File::open(path).map_err(|e| HeaderError::Io(e.kind()))?;
    let size = file
        .metadata()
        .map_err(|e| HeaderError::Io(e.kind()))?
        .len();
    if size > limits.max_file_bytes {
        return Err(HeaderError::FileTooLarge {
            size,
            cap: limits.max_file_bytes,
        });
    }
    if size == 0 {
        return Err(HeaderError::Empty);
    }
    let scan_limits = ScanLimits {
        max_element_bytes: limits.max_element_bytes,
        max_depth: 32,
    };
    let first = usize::try_from(size).unwrap_or(usize::MAX).min(FIRST_READ);
    let mut buf = Vec::with_capacity(first);
    (&mut file)
        .take(first as u64)
        .read_to_end(&mut buf)
        .map_err(|e| HeaderError::Io(e.kind()))?;
    let complete = buf.len() as u64 >= size;
    let scan = match prescan::scan(&buf, complete, scan_limits) {
        Err(PrescanError::NeedMore) => {
            // Read on, up to the header cap (plus the next element header, so a header of
            // exactly the cap size can still find its Pixel Data tag).
            let want = size.min(limits.max_header_bytes.saturating_add(16));
            let more = want.saturating_sub(buf.len() as u64);
            buf.try_reserve_exact(more as usize)
                .map_err(|_| HeaderError::HeaderTooLarge(limits.max_header_bytes))?;
            (&mut file)
                .take(more)
                .read_to_end(&mut buf)
                .map_err(|e| HeaderError::Io(e.kind()))?;
            let complete = buf.len() as u64 >= size;
            match prescan::scan(&buf, complete, scan_limits) {
                Err(PrescanError::NeedMore) => {
                    return Err(HeaderError::HeaderTooLarge(limits.max_header_bytes));
                }
                other => other?,
            }
        }
        other => other?,
    };
    let range = scan.header_range(buf.len());
    let bytes = buf.get(range).ok_or(HeaderError::Parse("internal range"))?;
    parse(bytes, scan.transfer_syntax, size, limits)
}

/// Parses a pre-scanned header (from the `DICM` magic up to Pixel Data).
fn parse(
    bytes: &[u8],
    transfer_syntax: String,
    file_size: u64,
    limits: &HeaderLimits,
) -> Result<InstanceHeader, HeaderError> {
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(bytes)
        .map_err(|e| HeaderError::Parse(classify(&e)))?;
    let obj: &InMemDicomObject = &obj;

    let required = |tag: Tag, name: &'static str| -> Result<String, HeaderError> {
        text(obj, tag)
            .filter(|s| !s.is_empty())
            .ok_or(HeaderError::Missing(name))
    };
    let sop_class_uid = required(tags::SOP_CLASS_UID, "SOPClassUID")?;
    let sop_instance_uid = required(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let study_uid = required(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series_uid = required(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let modality = required(tags::MODALITY, "Modality")?;
    let kind = classify_sop_class(&sop_class_uid, &modality);
    let (rows, columns, frames) = image_size(obj, kind, limits)?;
    let g = Geometry::read(obj, frames)?;
    Ok(InstanceHeader {
        sop_class_uid,
        sop_instance_uid,
        study_uid,
        series_uid,
        frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID).filter(|s| !s.is_empty()),
        patient_id: text(obj, tags::PATIENT_ID).unwrap_or_default(),
        issuer_of_patient_id: text(obj, tags::ISSUER_OF_PATIENT_ID).unwrap_or_default(),
        patient_name: text(obj, tags::PATIENT_NAME).unwrap_or_default(),
        study_date: text(obj, tags::STUDY_DATE).filter(|s| !s.is_empty()),
        modality,
        kind,
        transfer_syntax,
        series_number: int(obj, tags::SERIES_NUMBER),
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        rows,
        columns,
        frames,
        pixel_spacing: g.pixel_spacing,
        orientation: g.orientation,
        position: g.position,
        frame_positions: g.frame_positions,
        file_size,
    })
}

/// Rows, Columns and NumberOfFrames; images and segmentations must have a frame size and stay
/// within the voxel cap.
fn image_size(
    obj: &InMemDicomObject,
    kind: ObjectKind,
    limits: &HeaderLimits,
) -> Result<(Option<u32>, Option<u32>, u32), HeaderError> {
    let rows = uint(obj, tags::ROWS, "Rows")?;
    let columns = uint(obj, tags::COLUMNS, "Columns")?;
    let frames = match text(obj, tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(s) if s.is_empty() => 1,
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| HeaderError::Invalid("NumberOfFrames"))?,
    };
    let samples = uint(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    if kind == ObjectKind::Image || kind == ObjectKind::Segmentation {
        let (r, c) = match (rows, columns) {
            (Some(r), Some(c)) if r > 0 && c > 0 => (r, c),
            _ => return Err(HeaderError::Missing("Rows/Columns")),
        };
        let voxels = u64::from(r)
            .checked_mul(u64::from(c))
            .and_then(|v| v.checked_mul(frames))
            .and_then(|v| v.checked_mul(u64::from(samples.max(1))));
        if frames == 0 || voxels.is_none_or(|v| v > limits.max_voxels) {
            return Err(HeaderError::AbsurdDimensions {
                rows: r,
                columns: c,
                frames,
                cap: limits.max_voxels,
            });
        }
    }
    let frames = u32::try_from(frames).map_err(|_| HeaderError::Invalid("NumberOfFrames"))?;
    Ok((rows, columns, frames))
}

/// Plane geometry: top level first, then the shared / per-frame functional groups of enhanced
/// multi-frame objects.
struct Geometry {
    pixel_spacing: Option<[f64; 2]>,
    orientation: Option<[f64; 6]>,
    position: Option<[f64; 3]>,
    frame_positions: Vec<[f64; 3]>,
}

impl Geometry {
    fn read(obj: &InMemDicomObject, frames: u32) -> Result<Geometry, HeaderError> {
        let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        let pixel_spacing =
            floats::<2>(obj, tags::PIXEL_SPACING, "PixelSpacing")?.or(match shared {
                Some(s) => {
                    nested_floats::<2>(s, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)?
                }
                None => None,
            });
        let orientation = floats::<6>(
            obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
        )?
        .or(match shared {
            Some(s) => nested_floats::<6>(
                s,
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
            )?,
            None => None,
        });
        let frame_positions = frame_positions(obj, frames)?;
        let position = floats::<3>(obj, tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient")?
            .or_else(|| frame_positions.first().copied());
        Ok(Geometry {
            pixel_spacing,
            orientation,
            position,
            frame_positions,
        })
    }
}

/// The position of every frame of a multi-frame object, or none unless every frame has one.
fn frame_positions(obj: &InMemDicomObject, frames: u32) -> Result<Vec<[f64; 3]>, HeaderError> {
    let mut out = Vec::new();
    if frames > 1
        && let Some(per_frame) = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
    {
        // Bounded by the declared frame count, never by the item count alone.
        for item in per_frame.iter().take(frames as usize) {
            match nested_floats::<3>(
                item,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            )? {
                Some(p) => out.push(p),
                None => {
                    out.clear();
                    break;
                }
            }
        }
        if out.len() != frames as usize {
            out.clear();
        }
    }
    Ok(out)
}

fn classify_sop_class(uid: &str, modality: &str) -> ObjectKind {
    const SEG: &str = "1.2.840.10008.5.1.4.1.1.66.4";
    const LABELMAP_SEG: &str = "1.2.840.10008.5.1.4.1.1.66.7";
    if uid == SEG || uid == LABELMAP_SEG {
        return ObjectKind::Segmentation;
    }
    if uid.starts_with("1.2.840.10008.5.1.4.1.1.88.") {
        return ObjectKind::StructuredReport;
    }
    if uid.starts_with("1.2.840.10008.5.1.4.1.1.481.") {
        // RT Image (…481.1) and RT Dose (…481.2) carry pixel data on a grid; the rest do not.
        return if uid.ends_with(".481.1") || uid.ends_with(".481.2") {
            ObjectKind::Image
        } else {
            ObjectKind::RadiotherapyObject
        };
    }
    if modality == "SR" || modality == "KO" || modality == "PR" {
        return ObjectKind::Other;
    }
    // Image storage classes live under 1.2.840.10008.5.1.4.1.1.
    if uid.starts_with("1.2.840.10008.5.1.4.1.1.") {
        ObjectKind::Image
    } else {
        ObjectKind::Other
    }
}

fn classify(e: &dicom_object::ReadError) -> &'static str {
    use dicom_object::ReadError as E;
    match e {
        E::ParseMetaDataSet { .. } => "invalid file meta group",
        E::ReadUnrecognizedTransferSyntax { .. } => "unrecognised transfer syntax",
        E::ReadUnsupportedTransferSyntax { .. }
        | E::ReadUnsupportedTransferSyntaxWithSuggestion { .. } => "unsupported transfer syntax",
        E::ReadToken { .. } | E::UnexpectedToken { .. } | E::PrematureEnd { .. } => {
            "malformed data set"
        }
        _ => "parser error",
    }
}

/// Text value of an element, padding trimmed. Elements with VR UN (implicit private or
/// unrecognised) are decoded from their bytes rather than rendered as numbers.
pub(super) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e: &InMemElement = obj.element_opt(tag).ok().flatten()?;
    let s = if e.vr() == dicom_core::VR::UN {
        let b = e.to_bytes().ok()?;
        String::from_utf8_lossy(&b).into_owned()
    } else {
        e.to_str().ok()?.into_owned()
    };
    Some(s.trim_matches(|c: char| c == '\0' || c == ' ').to_string())
}

fn uint(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Option<u32>, HeaderError> {
    match obj.element_opt(tag).ok().flatten() {
        None => Ok(None),
        Some(e) => e
            .to_int::<u32>()
            .map(Some)
            .map_err(|_| HeaderError::Invalid(name)),
    }
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    text(obj, tag)
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map(|v| v as i64)
}

fn floats<const N: usize>(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<Option<[f64; N]>, HeaderError> {
    let Some(s) = text(obj, tag) else {
        return Ok(None);
    };
    if s.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split('\\').collect();
    if parts.len() != N {
        return Err(HeaderError::Invalid(name));
    }
    let mut out = [0.0; N];
    for (o, p) in out.iter_mut().zip(parts) {
        let v: f64 = p.trim().parse().map_err(|_| HeaderError::Invalid(name))?;
        if !v.is_finite() {
            return Err(HeaderError::Invalid(name));
        }
        *o = v;
    }
    Ok(Some(out))
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.items())
}

pub(super) fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    items(obj, tag).and_then(|i| i.first())
}

fn nested_floats<const N: usize>(
    obj: &InMemDicomObject,
    seq: Tag,
    tag: Tag,
) -> Result<Option<[f64; N]>, HeaderError> {
    match first_item(obj, seq) {
        Some(item) => floats::<N>(item, tag, "functional group geometry"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sop_classes() {
        assert_eq!(
            classify_sop_class("1.2.840.10008.5.1.4.1.1.2", "CT"),
            ObjectKind::Image
        );
        assert_eq!(
            classify_sop_class("1.2.840.10008.5.1.4.1.1.66.4", "SEG"),
            ObjectKind::Segmentation
        );
        assert_eq!(
            classify_sop_class("1.2.840.10008.5.1.4.1.1.88.33", "SR"),
            ObjectKind::StructuredReport
        );
        assert_eq!(
            classify_sop_class("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT"),
            ObjectKind::RadiotherapyObject
        );
        assert_eq!(
            classify_sop_class("1.2.840.10008.5.1.4.1.1.481.2", "RTDOSE"),
            ObjectKind::Image
        );
    }
}
