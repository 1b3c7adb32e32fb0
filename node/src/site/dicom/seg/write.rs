//! Writing a SEG ([`write_seg`]): the Segmentation IOD built as a data set (frames only for
//! non-empty (segment, slice) pairs, shared and per-frame functional groups, dimension index,
//! references to every source slice), encoded as Explicit VR Little Endian and written
//! atomically. Every input is checked first by `validate`.
//!
//! A LABELMAP is written as highdicom 0.28 writes one: Label Map Segmentation Storage, one
//! 8-bit frame of segment numbers per source slice (all of them, in slice order), PixelPadding
//! Value 0, a Background segment 0 first in SegmentSequence, and frames indexed by position
//! alone (no Segment Identification functional group).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::bits::BitPacker;
use super::validate::validate_write;
use super::volumes::{checked_normal, dot, plane_size};
use super::{
    CodedConcept, LABELMAP_SEGMENTATION_STORAGE, Obj, SEGMENTATION_STORAGE, SegError, SegSource,
    SegWrite, SegmentInfo, SegmentationType, SourceSlice,
};
use crate::site::dicom::write::{ds, ds_multi, elem, multi_cs, us, with_file_meta};
use crate::site::files::write_atomic;

/// Writes a SEG referencing `w.source` to `path` atomically (a temporary file in the same
/// directory, synced, then renamed). BINARY and FRACTIONAL: frames are written only for
/// (segment, slice) pairs with a non-zero voxel, ordered by segment then slice; one empty frame
/// when every volume is empty. LABELMAP (Label Map Segmentation Storage): `w.volumes` is one
/// label map `(0, map)` of segment numbers, written as one 8-bit frame per source slice.
pub fn write_seg(path: &Path, w: &SegWrite<'_>) -> Result<(), SegError> {
    let obj = build_seg(w)?;
    let file = with_file_meta(obj).map_err(|_| SegError::Encode("file meta group"))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|_| SegError::Encode("data set"))?;
    write_atomic(path, |f| f.write_all(&bytes)).map_err(|e| SegError::Io(e.kind()))
}

/// ManufacturerModelName of written SEGs (Enhanced General Equipment).
const MODEL_NAME: &str = "fedanno";

/// One frame to write: segment number (none for a label map's frame, which holds them all),
/// slice index and the frame's pixels (`None`: the segment's mask on the slice, computed from
/// the one label map and the overlaps when the frame is packed).
struct OutFrame<'a> {
    segment: Option<u16>,
    z: usize,
    data: Option<&'a [u8]>,
}

/// Whether `w` is a BINARY SEG given as one label map (and overlap runs).
fn layered(w: &SegWrite<'_>) -> bool {
    w.segmentation_type == SegmentationType::Binary && matches!(w.volumes, [(0, _)])
}

/// Builds the Segmentation IOD, module by module (the data set orders elements by tag).
fn build_seg(w: &SegWrite<'_>) -> Result<Obj, SegError> {
    let src = w.source;
    validate_write(w)?;
    let rows = u16::try_from(src.rows).map_err(|_| SegError::Invalid("Rows"))?;
    let columns = u16::try_from(src.columns).map_err(|_| SegError::Invalid("Columns"))?;
    let plane = plane_size(src.rows, src.columns)?;
    let depths = slice_depths(src)?;
    let empty = vec![0u8; plane];
    let frames = if layered(w) {
        layered_frames(w, plane, &empty)
    } else {
        out_frames(w, plane, &empty)
    };
    let n_frames = u32::try_from(frames.len()).map_err(|_| SegError::Invalid("NumberOfFrames"))?;
    let (bits, pixel_data) = pixel_data(w, &frames, plane)?;

    let mut el = sop_common(w);
    el.extend(patient_module(src));
    el.extend(general_study(src));
    el.extend(series_modules(w));
    el.extend(equipment_modules(w));
    el.extend(common_instance_reference(src));
    el.extend(image_pixel(rows, columns, bits, pixel_data));
    el.extend(segmentation_image(w));
    el.extend(multi_frame_dimension(w));
    el.extend(multi_frame_functional_groups(
        w, &frames, n_frames, &depths,
    )?);
    Ok(InMemDicomObject::from_element_iter(el))
}

/// The depth of every source slice along the normal; they must strictly increase.
fn slice_depths(src: &SegSource) -> Result<Vec<f64>, SegError> {
    let n = checked_normal(&src.orientation).ok_or(SegError::BadOrientation)?;
    let depths: Vec<f64> = src.slices.iter().map(|s| dot(&s.position, &n)).collect();
    if depths.windows(2).any(|w| match w {
        [a, b] => b - a <= 1e-6,
        _ => false,
    }) {
        return Err(SegError::SlicesNotSorted);
    }
    Ok(depths)
}

/// The frames to write: per segment (in number order), per slice with any non-zero voxel; one
/// `empty` frame of the first segment when every volume is empty. A label map: every slice.
fn out_frames<'a>(w: &SegWrite<'a>, plane: usize, empty: &'a [u8]) -> Vec<OutFrame<'a>> {
    if w.segmentation_type == SegmentationType::Labelmap {
        // validate_write checked: one volume, the label map.
        let planes = w
            .volumes
            .iter()
            .flat_map(|(_, map)| map.chunks_exact(plane));
        return planes
            .enumerate()
            .map(|(z, data)| OutFrame {
                segment: None,
                z,
                data: Some(data),
            })
            .collect();
    }
    let mut frames: Vec<OutFrame<'a>> = Vec::new();
    for seg in w.segments {
        let Some((_, vol)) = w.volumes.iter().find(|(num, _)| *num == seg.number) else {
            continue;
        };
        for (z, data) in vol.chunks_exact(plane).enumerate() {
            if data.iter().any(|&v| v != 0) {
                frames.push(OutFrame {
                    segment: Some(seg.number),
                    z,
                    data: Some(data),
                });
            }
        }
    }
    with_one_frame(w, frames, empty)
}

/// One `empty` frame of the first segment when there is no frame at all.
fn with_one_frame<'a>(
    w: &SegWrite<'_>,
    mut frames: Vec<OutFrame<'a>>,
    empty: &'a [u8],
) -> Vec<OutFrame<'a>> {
    if frames.is_empty() {
        frames.push(OutFrame {
            segment: Some(w.segments.first().map_or(1, |s| s.number)),
            z: 0,
            data: Some(empty),
        });
    }
    frames
}

/// The frames of a BINARY SEG given as one label map: per segment (in number order), per
/// slice where the map or the segment's overlap runs have a voxel of it.
fn layered_frames<'a>(w: &SegWrite<'a>, plane: usize, empty: &'a [u8]) -> Vec<OutFrame<'a>> {
    let map = w.volumes.first().map_or(&[][..], |(_, m)| *m);
    let slices = map.len() / plane;
    // present[z * 256 + value]: the slice holds a voxel of that segment.
    let mut present = vec![false; slices * 256];
    for (z, slice) in map.chunks_exact(plane).enumerate() {
        for &v in slice {
            present[z * 256 + usize::from(v)] = true;
        }
    }
    for (value, runs) in w.overlaps {
        for &(start, n) in runs {
            let (first, last) = (start as usize, start as usize + n as usize - 1);
            for z in first / plane..=(last / plane).min(slices.saturating_sub(1)) {
                present[z * 256 + usize::from(*value)] = true;
            }
        }
    }
    let mut frames = Vec::new();
    for seg in w.segments {
        for z in 0..slices {
            if present[z * 256 + usize::from(seg.number).min(255)] && seg.number != 0 {
                frames.push(OutFrame {
                    segment: Some(seg.number),
                    z,
                    data: None,
                });
            }
        }
    }
    with_one_frame(w, frames, empty)
}

/// The mask of segment `number` on slice `z` of a BINARY SEG's one label map, with its
/// overlap runs, written into `buf`.
fn layered_mask<'b>(
    w: &SegWrite<'_>,
    number: u16,
    z: usize,
    plane: usize,
    buf: &'b mut Vec<u8>,
) -> &'b [u8] {
    let map = w.volumes.first().map_or(&[][..], |(_, m)| *m);
    let start = z * plane;
    buf.clear();
    buf.extend(
        map[start..start + plane]
            .iter()
            .map(|&v| u8::from(u16::from(v) == number)),
    );
    let runs = w
        .overlaps
        .iter()
        .filter(|(value, _)| u16::from(*value) == number)
        .flat_map(|(_, runs)| runs);
    for &(first, n) in runs {
        let (a, b) = (first as usize, first as usize + n as usize);
        let (lo, hi) = (a.max(start), b.min(start + plane));
        if lo < hi {
            buf[lo - start..hi - start].fill(1);
        }
    }
    buf
}

/// BitsAllocated and the Pixel Data value: 1-bit packed frames (BINARY) or bytes padded to an
/// even length (FRACTIONAL, LABELMAP).
fn pixel_data(
    w: &SegWrite<'_>,
    frames: &[OutFrame<'_>],
    plane: usize,
) -> Result<(u16, Vec<u8>), SegError> {
    Ok(match w.segmentation_type {
        SegmentationType::Binary => {
            let n_bits = plane
                .checked_mul(frames.len())
                .ok_or(SegError::Alloc(u64::MAX))?;
            let mut packer = BitPacker::new(n_bits);
            let mut buf = Vec::with_capacity(plane);
            for f in frames {
                match (f.data, f.segment) {
                    (Some(data), _) => packer.push(data),
                    (None, Some(number)) => {
                        packer.push(layered_mask(w, number, f.z, plane, &mut buf));
                    }
                    (None, None) => packer.push(&vec![0u8; plane]),
                }
            }
            (1u16, packer.finish())
        }
        SegmentationType::Fractional { .. } | SegmentationType::Labelmap => {
            let mut v: Vec<u8> = frames
                .iter()
                .flat_map(|f| f.data.unwrap_or_default().iter().copied())
                .collect();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            (8u16, v)
        }
    })
}

/// SOP Common.
fn sop_common(w: &SegWrite<'_>) -> Vec<InMemElement> {
    vec![
        cs(tags::SPECIFIC_CHARACTER_SET, "ISO_IR 192"),
        elem(tags::INSTANCE_CREATION_DATE, VR::DA, &w.content_date),
        elem(tags::INSTANCE_CREATION_TIME, VR::TM, &w.content_time),
        elem(
            tags::SOP_CLASS_UID,
            VR::UI,
            if w.segmentation_type == SegmentationType::Labelmap {
                LABELMAP_SEGMENTATION_STORAGE
            } else {
                SEGMENTATION_STORAGE
            },
        ),
        elem(tags::SOP_INSTANCE_UID, VR::UI, &w.sop_instance_uid),
    ]
}

/// Patient (with the de-identification attributes when the source was de-identified).
fn patient_module(src: &SegSource) -> Vec<InMemElement> {
    let mut el = vec![
        elem(tags::PATIENT_NAME, VR::PN, &src.patient_name),
        elem(tags::PATIENT_ID, VR::LO, &src.patient_id),
        elem(tags::PATIENT_BIRTH_DATE, VR::DA, &src.patient_birth_date),
        cs(tags::PATIENT_SEX, &src.patient_sex),
    ];
    if let Some(method) = &src.deidentification_method {
        el.push(elem(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
        el.push(elem(tags::DEIDENTIFICATION_METHOD, VR::LO, method));
        // The PS3.15 options applied: the Basic Profile (identifiers replaced by keyed
        // pseudonyms, identifying attributes emptied) with dates shifted, not removed.
        let codes = [
            ("113100", "Basic Application Confidentiality Profile"),
            (
                "113107",
                "Retain Longitudinal Temporal Information Modified Dates Option",
            ),
        ];
        let items = codes
            .iter()
            .map(|(value, meaning)| code_item(&CodedConcept::new(value, "DCM", meaning)))
            .collect();
        el.push(seq(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE, items));
        el.push(cs(
            tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
            "MODIFIED",
        ));
    }
    el
}

/// General Study: the source's study.
fn general_study(src: &SegSource) -> Vec<InMemElement> {
    vec![
        elem(tags::STUDY_DATE, VR::DA, &src.study_date),
        elem(tags::STUDY_TIME, VR::TM, &src.study_time),
        elem(tags::ACCESSION_NUMBER, VR::SH, &src.accession_number),
        elem(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &src.referring_physician,
        ),
        elem(tags::STUDY_INSTANCE_UID, VR::UI, &src.study_uid),
        elem(tags::STUDY_ID, VR::SH, &src.study_id),
    ]
}

/// General Series, Segmentation Series and Frame of Reference (the source's).
fn series_modules(w: &SegWrite<'_>) -> Vec<InMemElement> {
    vec![
        elem(tags::SERIES_DATE, VR::DA, &w.content_date),
        elem(tags::SERIES_TIME, VR::TM, &w.content_time),
        cs(tags::MODALITY, "SEG"),
        elem(tags::SERIES_DESCRIPTION, VR::LO, &w.series_description),
        elem(tags::SERIES_INSTANCE_UID, VR::UI, &w.series_uid),
        elem(tags::SERIES_NUMBER, VR::IS, &w.series_number.to_string()),
        elem(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &w.source.frame_of_reference_uid,
        ),
        elem(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
    ]
}

/// General Equipment and Enhanced General Equipment.
fn equipment_modules(w: &SegWrite<'_>) -> Vec<InMemElement> {
    vec![
        elem(tags::MANUFACTURER, VR::LO, &w.manufacturer),
        elem(tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL_NAME),
        elem(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0"),
        elem(tags::SOFTWARE_VERSIONS, VR::LO, &w.software_version),
    ]
}

/// Common Instance Reference: every source slice of the source series.
fn common_instance_reference(src: &SegSource) -> Vec<InMemElement> {
    let instances = src.slices.iter().map(|s| item(sop_reference(s))).collect();
    vec![seq(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![item(vec![
            seq(tags::REFERENCED_INSTANCE_SEQUENCE, instances),
            elem(tags::SERIES_INSTANCE_UID, VR::UI, &src.series_uid),
        ])],
    )]
}

/// ReferencedSOPClassUID and ReferencedSOPInstanceUID of a source slice.
fn sop_reference(s: &SourceSlice) -> Vec<InMemElement> {
    vec![
        elem(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &s.sop_class_uid),
        elem(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &s.sop_instance_uid,
        ),
    ]
}

/// Image Pixel (and General Image's LossyImageCompression).
fn image_pixel(rows: u16, columns: u16, bits: u16, pixel_data: Vec<u8>) -> Vec<InMemElement> {
    vec![
        us(tags::SAMPLES_PER_PIXEL, 1),
        cs(tags::PHOTOMETRIC_INTERPRETATION, "MONOCHROME2"),
        us(tags::ROWS, rows),
        us(tags::COLUMNS, columns),
        us(tags::BITS_ALLOCATED, bits),
        us(tags::BITS_STORED, bits),
        us(tags::HIGH_BIT, bits - 1),
        us(tags::PIXEL_REPRESENTATION, 0),
        cs(tags::LOSSY_IMAGE_COMPRESSION, "00"),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixel_data)),
    ]
}

/// Segmentation Image: image type, content identification, the segments and the type.
fn segmentation_image(w: &SegWrite<'_>) -> Vec<InMemElement> {
    let mut el = vec![
        multi_cs(tags::IMAGE_TYPE, &["DERIVED", "PRIMARY"]),
        seq(tags::SEGMENT_SEQUENCE, segment_items(w)),
        cs(
            tags::SEGMENTS_OVERLAP,
            if !w.overlaps.is_empty() || segments_overlap(w.volumes) {
                "YES"
            } else {
                "NO"
            },
        ),
        cs(tags::CONTENT_LABEL, &w.content_label),
        elem(tags::CONTENT_DESCRIPTION, VR::LO, ""),
        elem(tags::CONTENT_CREATOR_NAME, VR::PN, &w.content_creator),
        cs(tags::PRESENTATION_LUT_SHAPE, "IDENTITY"),
    ];
    match w.segmentation_type {
        SegmentationType::Binary => el.push(cs(tags::SEGMENTATION_TYPE, "BINARY")),
        SegmentationType::Labelmap => {
            el.push(cs(tags::SEGMENTATION_TYPE, "LABELMAP"));
            // The background value, as highdicom writes it.
            el.push(us(tags::PIXEL_PADDING_VALUE, 0));
        }
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
            el.push(us(tags::MAXIMUM_FRACTIONAL_VALUE, u16::from(max_value)));
        }
    }
    el
}

/// Multi-frame Dimension: frames are indexed by segment number (except a label map's), then
/// position.
fn multi_frame_dimension(w: &SegWrite<'_>) -> Vec<InMemElement> {
    let dim_uid = derived_uid(&w.sop_instance_uid, "dimension-organization");
    let mut indices = Vec::with_capacity(2);
    if w.segmentation_type != SegmentationType::Labelmap {
        indices.push(dimension_index(
            &dim_uid,
            tags::REFERENCED_SEGMENT_NUMBER,
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            "Referenced Segment Number",
        ));
    }
    indices.push(dimension_index(
        &dim_uid,
        tags::IMAGE_POSITION_PATIENT,
        tags::PLANE_POSITION_SEQUENCE,
        "Image Position Patient",
    ));
    vec![
        single(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            elem(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_uid),
        ),
        cs(tags::DIMENSION_ORGANIZATION_TYPE, "3D"),
        seq(tags::DIMENSION_INDEX_SEQUENCE, indices),
    ]
}

/// Multi-frame Functional Groups (with General Image's content date, time and instance
/// number): pixel measures and orientation shared, one per-frame item per frame.
fn multi_frame_functional_groups(
    w: &SegWrite<'_>,
    frames: &[OutFrame<'_>],
    n_frames: u32,
    depths: &[f64],
) -> Result<Vec<InMemElement>, SegError> {
    let src = w.source;
    // SpacingBetweenSlices: the slice thickness for one slice (as highdicom writes), the gap
    // for uniformly spaced slices, absent otherwise.
    let spacing_between = if depths.len() == 1 {
        Some(src.slice_thickness)
    } else {
        slice_spacing(depths)
    };
    let mut pixel_measures = vec![
        elem(tags::SLICE_THICKNESS, VR::DS, &ds(src.slice_thickness)),
        elem(tags::PIXEL_SPACING, VR::DS, &ds_multi(&src.pixel_spacing)),
    ];
    if let Some(gap) = spacing_between {
        pixel_measures.push(elem(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(gap)));
    }
    let shared = item(vec![
        seq(tags::PIXEL_MEASURES_SEQUENCE, vec![item(pixel_measures)]),
        single(
            tags::PLANE_ORIENTATION_SEQUENCE,
            elem(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                &ds_multi(&src.orientation),
            ),
        ),
    ]);
    let mut per_frame = Vec::with_capacity(frames.len());
    for f in frames {
        let slice = src.slices.get(f.z).ok_or(SegError::Invalid("slices"))?;
        per_frame.push(frame_item(f, slice)?);
    }
    Ok(vec![
        elem(tags::CONTENT_DATE, VR::DA, &w.content_date),
        elem(tags::CONTENT_TIME, VR::TM, &w.content_time),
        elem(tags::INSTANCE_NUMBER, VR::IS, "1"),
        elem(tags::NUMBER_OF_FRAMES, VR::IS, &n_frames.to_string()),
        seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
    ])
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

/// The SegmentSequence items. A label map's first describes its background, segment 0, as
/// highdicom writes it: DCM 125040 "Background" as category and type, with the first
/// segment's algorithm type and name.
fn segment_items(w: &SegWrite<'_>) -> Vec<Obj> {
    let background = w
        .segments
        .first()
        .filter(|_| w.segmentation_type == SegmentationType::Labelmap)
        .map(|first| {
            let code = CodedConcept::new("125040", "DCM", "Background");
            SegmentInfo {
                number: 0,
                label: "Background".into(),
                algorithm_type: first.algorithm_type,
                algorithm_name: first.algorithm_name.clone(),
                category: code.clone(),
                property_type: code,
                colour: None,
                algorithm_identification: first.algorithm_identification.clone(),
            }
        });
    background
        .iter()
        .chain(w.segments)
        .map(segment_item)
        .collect()
}

fn segment_item(s: &SegmentInfo) -> Obj {
    let mut el = vec![
        seq(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code_item(&s.category)],
        ),
        us(tags::SEGMENT_NUMBER, s.number),
        elem(tags::SEGMENT_LABEL, VR::LO, &s.label),
        cs(tags::SEGMENT_ALGORITHM_TYPE, s.algorithm_type.as_str()),
        seq(
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            vec![code_item(&s.property_type)],
        ),
    ];
    if let Some(name) = &s.algorithm_name {
        el.push(elem(tags::SEGMENT_ALGORITHM_NAME, VR::LO, name));
    }
    if let Some(lab) = s.colour {
        el.push(InMemElement::new(
            tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
            VR::US,
            PrimitiveValue::U16(lab.iter().copied().collect()),
        ));
    }
    if let Some(a) = &s.algorithm_identification {
        let identification = item(vec![
            seq(
                tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
                vec![code_item(&a.family)],
            ),
            elem(tags::ALGORITHM_VERSION, VR::LO, &a.version),
            elem(tags::ALGORITHM_NAME, VR::LO, &a.name),
        ]);
        el.push(seq(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            vec![identification],
        ));
    }
    item(el)
}

fn frame_item(f: &OutFrame<'_>, slice: &SourceSlice) -> Result<Obj, SegError> {
    let z = u32::try_from(f.z + 1).map_err(|_| SegError::Invalid("slices"))?;
    let mut source = sop_reference(slice);
    source.push(cs(tags::SPATIAL_LOCATIONS_PRESERVED, "YES"));
    source.push(seq(
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![code_item(&CodedConcept::new(
            "121322",
            "DCM",
            "Source image for image processing operation",
        ))],
    ));
    let derivation = item(vec![
        seq(tags::SOURCE_IMAGE_SEQUENCE, vec![item(source)]),
        seq(
            tags::DERIVATION_CODE_SEQUENCE,
            vec![code_item(&CodedConcept::new(
                "113076",
                "DCM",
                "Segmentation",
            ))],
        ),
    ]);
    // The dimension index values: segment number (none for a label map), then position.
    let index: Vec<u32> = f.segment.map(u32::from).into_iter().chain([z]).collect();
    let mut el = vec![
        seq(tags::DERIVATION_IMAGE_SEQUENCE, vec![derivation]),
        single(
            tags::FRAME_CONTENT_SEQUENCE,
            DataElement::new(
                tags::DIMENSION_INDEX_VALUES,
                VR::UL,
                PrimitiveValue::U32(index.into()),
            ),
        ),
        single(
            tags::PLANE_POSITION_SEQUENCE,
            elem(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &ds_multi(&slice.position),
            ),
        ),
    ];
    if let Some(segment) = f.segment {
        el.push(single(
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            us(tags::REFERENCED_SEGMENT_NUMBER, segment),
        ));
    }
    Ok(item(el))
}

fn dimension_index(org_uid: &str, pointer: Tag, group: Tag, label: &str) -> Obj {
    item(vec![
        elem(tags::DIMENSION_ORGANIZATION_UID, VR::UI, org_uid),
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
        elem(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
    ])
}

fn code_item(c: &CodedConcept) -> Obj {
    item(vec![
        elem(tags::CODE_VALUE, VR::SH, &c.value),
        elem(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &c.scheme),
        elem(tags::CODE_MEANING, VR::LO, &c.meaning),
    ])
}

pub(super) fn cs(tag: Tag, v: &str) -> InMemElement {
    elem(tag, VR::CS, v)
}

pub(super) fn seq(tag: Tag, items: Vec<Obj>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A sequence of one item holding one element.
fn single(tag: Tag, element: InMemElement) -> InMemElement {
    seq(tag, vec![item(vec![element])])
}

fn item(elements: Vec<InMemElement>) -> Obj {
    InMemDicomObject::from_element_iter(elements)
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
