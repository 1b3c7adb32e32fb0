//! Reading a SEG file ([`read_seg`]): the pre-scan, the header parsed with dicom-object up to
//! Pixel Data, the Pixel Data value sliced from the file, then the SEG attributes, segments and
//! per-frame functional groups, every count bounded by [`SegLimits`] and the bytes present.
//! Also the small typed accessors (text, integers, decimals, sequence items) used to read them;
//! none of their errors carries an element value.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::{tags, uids};
use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;

use super::bits::frame_bits;
use super::{
    AlgorithmIdentification, AlgorithmType, CodedConcept, FrameData, LABELMAP_SEGMENTATION_STORAGE,
    Obj, SEGMENTATION_STORAGE, SegError, SegFrame, SegLimits, SegObject, SegmentInfo,
    SegmentationType,
};
use crate::site::dicom::header;
use crate::site::dicom::prescan::{self, ScanLimits};

/// Reads a whole SEG file (attributes and frames). The SOP class must be Segmentation Storage
/// (BINARY or FRACTIONAL) or Label Map Segmentation Storage (LABELMAP, 8-bit) and the transfer
/// syntax uncompressed little endian. The file is pre-scanned ([`crate::site::dicom::prescan`])
/// so no declared length is trusted: dicom-object parses only the header before Pixel Data, and
/// the Pixel Data value is sliced from the file here.
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

fn parse_seg(obj: &Obj, pixels: &[u8], limits: &SegLimits) -> Result<SegObject, SegError> {
    let sop_class = text(obj, tags::SOP_CLASS_UID).ok_or(SegError::Missing("SOPClassUID"))?;
    if sop_class != SEGMENTATION_STORAGE && sop_class != LABELMAP_SEGMENTATION_STORAGE {
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
    let labelmap_class = sop_class == LABELMAP_SEGMENTATION_STORAGE;
    if labelmap_class != (segmentation_type == SegmentationType::Labelmap) {
        return Err(SegError::Invalid("SegmentationType for the SOP class"));
    }
    let size = FrameSize::read(obj, segmentation_type, limits)?;
    let mut segments = read_segments(obj)?;
    if labelmap_class {
        // A label map describes its background as segment 0: it is the 0 voxels, not a segment.
        segments.retain(|s| s.number != 0);
    }
    let have = pixels.len() as u64;
    let need = match segmentation_type {
        SegmentationType::Binary => size.voxels.div_ceil(8),
        SegmentationType::Fractional { .. } | SegmentationType::Labelmap => size.voxels,
    };
    if have < need {
        return Err(SegError::PixelDataTooShort {
            have,
            need,
            frames: size.frames,
        });
    }

    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .map_err(|_| SegError::Invalid("PerFrameFunctionalGroupsSequence"))?
        .and_then(|e| e.items())
        .ok_or(SegError::Missing("PerFrameFunctionalGroupsSequence"))?;
    if per_frame.len() < size.n_frames {
        return Err(SegError::PerFrameItemsMissing {
            items: per_frame.len(),
            frames: size.frames,
        });
    }
    let (pixel_spacing, orientation) = plane_geometry(per_frame.first(), shared)?;
    let frames = FrameReader {
        shared,
        segments: &segments,
        segmentation_type,
        pixels,
        plane: size.plane,
    };
    let out_frames = per_frame
        .iter()
        .take(size.n_frames)
        .enumerate()
        .map(|(k, item)| frames.read(k, item))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(SegObject {
        sop_instance_uid,
        series_uid,
        study_uid,
        referenced_series_uid,
        frame_of_reference_uid,
        segmentation_type,
        rows: size.rows,
        columns: size.columns,
        pixel_spacing,
        orientation,
        segments,
        frames: out_frames,
    })
}

/// PixelSpacing and ImageOrientationPatient of the first frame (its functional groups, else
/// the shared ones).
type PlaneGeometry = (Option<[f64; 2]>, Option<[f64; 6]>);

fn plane_geometry(first: Option<&Obj>, shared: Option<&Obj>) -> Result<PlaneGeometry, SegError> {
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
    Ok((pixel_spacing, orientation))
}

/// Frame size and count of a SEG, checked against [`SegLimits`].
struct FrameSize {
    rows: u32,
    columns: u32,
    /// NumberOfFrames (1 when absent).
    frames: u64,
    /// Frames · rows · columns.
    voxels: u64,
    plane: usize,
    n_frames: usize,
}

impl FrameSize {
    fn read(
        obj: &Obj,
        segmentation_type: SegmentationType,
        limits: &SegLimits,
    ) -> Result<FrameSize, SegError> {
        let bits = match segmentation_type {
            SegmentationType::Binary => 1u16,
            // 16-bit label maps hold more segments than a stored label map can.
            SegmentationType::Fractional { .. } | SegmentationType::Labelmap => 8u16,
        };
        if int::<u16>(obj, tags::BITS_ALLOCATED, "BitsAllocated")? != Some(bits) {
            return Err(SegError::Invalid("BitsAllocated"));
        }
        if let Some(spp) = int::<u16>(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?
            && spp != 1
        {
            return Err(SegError::Invalid("SamplesPerPixel"));
        }
        let rows = int::<u16>(obj, tags::ROWS, "Rows")?.ok_or(SegError::Missing("Rows"))?;
        let columns =
            int::<u16>(obj, tags::COLUMNS, "Columns")?.ok_or(SegError::Missing("Columns"))?;
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
        Ok(FrameSize {
            rows,
            columns,
            frames,
            voxels,
            plane: usize::try_from(plane).map_err(|_| SegError::Alloc(plane))?,
            n_frames: usize::try_from(frames).map_err(|_| SegError::Alloc(voxels))?,
        })
    }
}

/// Reads one frame: its per-frame functional groups (else the shared ones) and its pixels.
struct FrameReader<'a> {
    shared: Option<&'a Obj>,
    segments: &'a [SegmentInfo],
    segmentation_type: SegmentationType,
    pixels: &'a [u8],
    plane: usize,
}

impl FrameReader<'_> {
    fn read(&self, k: usize, item: &Obj) -> Result<SegFrame, SegError> {
        let item = Some(item);
        let segment_number = self.segment_of(k, item)?;
        let referenced_sop_instance_uid = group_item(item, None, tags::DERIVATION_IMAGE_SEQUENCE)
            .and_then(|d| first_item(d, tags::SOURCE_IMAGE_SEQUENCE))
            .and_then(|s| text(s, tags::REFERENCED_SOP_INSTANCE_UID));
        let position = group_item(item, self.shared, tags::PLANE_POSITION_SEQUENCE)
            .map(|it| floats::<3>(it, tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient"))
            .transpose()?
            .flatten();
        Ok(SegFrame {
            segment_number,
            referenced_sop_instance_uid,
            position,
            data: self.pixels_of(k)?,
        })
    }

    /// The segment frame `k` belongs to (0 for a label map's frame, which holds them all).
    fn segment_of(&self, k: usize, item: Option<&Obj>) -> Result<u16, SegError> {
        if self.segmentation_type == SegmentationType::Labelmap {
            return Ok(0);
        }
        let segment_number = group_item(item, self.shared, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
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
        if !self.segments.iter().any(|s| s.number == segment_number) {
            return Err(SegError::UnknownSegment {
                frame: k,
                segment: segment_number,
            });
        }
        Ok(segment_number)
    }

    /// Frame `k`'s pixels: its bits, or bytes no greater than the maximum fractional value.
    fn pixels_of(&self, k: usize) -> Result<FrameData, SegError> {
        match self.segmentation_type {
            SegmentationType::Binary => Ok(FrameData::Bits {
                bits: frame_bits(self.pixels, k, self.plane)?,
                len: self.plane,
            }),
            SegmentationType::Labelmap => {
                let bytes = self.frame_bytes(k)?;
                if let Some(&v) = bytes
                    .iter()
                    .find(|&&v| v != 0 && !self.segments.iter().any(|s| s.number == u16::from(v)))
                {
                    return Err(SegError::UnknownSegment {
                        frame: k,
                        segment: u16::from(v),
                    });
                }
                Ok(FrameData::Bytes(bytes.to_vec()))
            }
            SegmentationType::Fractional { max_value, .. } => {
                let bytes = self.frame_bytes(k)?;
                if bytes.iter().any(|&v| v > max_value) {
                    return Err(SegError::ValueAboveMaximum(k));
                }
                Ok(FrameData::Bytes(bytes.to_vec()))
            }
        }
    }
}

impl FrameReader<'_> {
    /// The bytes of 8-bit frame `k`.
    fn frame_bytes(&self, k: usize) -> Result<&[u8], SegError> {
        let start = k
            .checked_mul(self.plane)
            .ok_or(SegError::Invalid("PixelData"))?;
        self.pixels
            .get(start..start.saturating_add(self.plane))
            .ok_or(SegError::Invalid("PixelData"))
    }
}

fn read_segmentation_type(obj: &Obj) -> Result<SegmentationType, SegError> {
    let t = text(obj, tags::SEGMENTATION_TYPE).ok_or(SegError::Missing("SegmentationType"))?;
    match t.as_str() {
        "BINARY" => Ok(SegmentationType::Binary),
        "LABELMAP" => Ok(SegmentationType::Labelmap),
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
    // Segment numbers are u16: one bit each finds a duplicate in constant time.
    let mut seen = vec![false; usize::from(u16::MAX) + 1];
    for it in items {
        let number = int::<u16>(it, tags::SEGMENT_NUMBER, "SegmentNumber")?
            .ok_or(SegError::Missing("SegmentNumber"))?;
        if std::mem::replace(&mut seen[usize::from(number)], true) {
            return Err(SegError::DuplicateSegment(number));
        }
        let label = text(it, tags::SEGMENT_LABEL).ok_or(SegError::Missing("SegmentLabel"))?;
        let algorithm_type = text(it, tags::SEGMENT_ALGORITHM_TYPE)
            .ok_or(SegError::Missing("SegmentAlgorithmType"))
            .and_then(|t| {
                AlgorithmType::from_code(&t).ok_or(SegError::Invalid("SegmentAlgorithmType"))
            })?;
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
            colour: colour(it),
            algorithm_identification: algorithm_identification(it),
        });
    }
    Ok(segments)
}

/// RecommendedDisplayCIELabValue, when it holds three values.
fn colour(obj: &Obj) -> Option<[u16; 3]> {
    let v = obj
        .element_opt(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE)
        .ok()??
        .to_multi_int::<u16>()
        .ok()?;
    <[u16; 3]>::try_from(v.as_slice()).ok()
}

/// The first item of SegmentationAlgorithmIdentificationSequence, when it is complete.
fn algorithm_identification(obj: &Obj) -> Option<AlgorithmIdentification> {
    let it = first_item(obj, tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE)?;
    Some(AlgorithmIdentification {
        family: coded(it, tags::ALGORITHM_FAMILY_CODE_SEQUENCE)?,
        name: text(it, tags::ALGORITHM_NAME)?,
        version: text(it, tags::ALGORITHM_VERSION)?,
    })
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

/// The trimmed text of an element (UN decoded as UTF-8); `None` when absent or empty.
pub(super) fn text(obj: &Obj, tag: Tag) -> Option<String> {
    header::text(obj, tag).filter(|s| !s.is_empty())
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
pub(super) fn floats<const N: usize>(
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

pub(super) use header::first_item;

/// The first item of functional group `seq`, from the per-frame item, else the shared one.
fn group_item<'a>(frame: Option<&'a Obj>, shared: Option<&'a Obj>, seq: Tag) -> Option<&'a Obj> {
    frame
        .and_then(|f| first_item(f, seq))
        .or_else(|| shared.and_then(|s| first_item(s, seq)))
}
