//! Hostile DICOM SEG files through `fedanno annotate import`: a SEG that declares 20,000
//! segments (numbers 1..=20000) on a 64×64×40 series, its frames referencing segment numbers
//! above 255, is refused with a clear error and no panic, stores nothing, and its import stays
//! under 200 MB of resident memory; the same SEG with a short Pixel Data is refused too. A
//! control SEG built the same way with three segments imports, so the refusals come from the
//! segment numbering and the Pixel Data length, not from the series resolution.

mod common;

use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use fedanno_node::annotations::nifti;
use fedanno_node::site::dicom::write::{CtSlice, write_ct_slice};

const COLS: u16 = 64;
const ROWS: u16 = 64;
const SLICES: u32 = 40;
const STUDY: &str = "2.25.88001";
const SERIES: &str = "2.25.88002";
const FRAME_OF_REFERENCE: &str = "2.25.88000";
const PIXEL_SPACING: [f64; 2] = [0.5, 0.75];
const ORIENTATION: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

/// Ceiling on the import's peak resident memory.
const MEMORY_CAP: u64 = 200 << 20;

/// The SOP Instance UID of slice `k`.
fn slice_uid(k: u32) -> String {
    format!("2.25.881{k:03}")
}

/// The position of slice `k` (3 mm apart).
fn position(k: u32) -> [f64; 3] {
    [10.0, 20.0, 3.0 * f64::from(k)]
}

/// Writes the 64×64×40 CT series the crafted SEGs reference.
fn write_series(dir: &Path) {
    std::fs::create_dir_all(dir).expect("series directory");
    let pixels = vec![0i16; usize::from(ROWS) * usize::from(COLS)];
    for k in 0..SLICES {
        write_ct_slice(
            &dir.join(format!("{k}.dcm")),
            &CtSlice {
                patient_name: "SYNTHETIC^HOSTILE",
                patient_id: "HOSTILE",
                patient_birth_date: "",
                institution_name: "",
                study_uid: STUDY,
                series_uid: SERIES,
                sop_instance_uid: &slice_uid(k),
                frame_of_reference_uid: FRAME_OF_REFERENCE,
                study_date: "20210303",
                study_description: "",
                accession_number: "",
                series_number: 4,
                instance_number: k + 1,
                rows: ROWS,
                columns: COLS,
                pixel_spacing: PIXEL_SPACING,
                slice_thickness: 3.0,
                orientation: ORIENTATION,
                position: position(k),
                pixels: &pixels,
            },
        )
        .expect("a CT slice");
    }
}

/// What a crafted SEG declares.
struct Crafted {
    /// SegmentSequence holds segments 1..=`segments`.
    segments: u16,
    /// The ReferencedSegmentNumber of frame `k` (one frame per slice).
    frame_segment: fn(u32) -> u16,
    /// Pixel Data bytes actually present (a full 1-bit frame set is 40 · 64 · 64 / 8).
    pixel_bytes: usize,
}

fn text(tag: Tag, vr: VR, v: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn us(tag: Tag, v: u16) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn item(elements: Vec<InMemElement>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

fn ds3(v: [f64; 3]) -> String {
    v.map(|x| x.to_string()).join("\\")
}

fn code(tag: Tag, value: &str, meaning: &str) -> InMemElement {
    seq(
        tag,
        vec![item(vec![
            text(tags::CODE_VALUE, VR::SH, value),
            text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "SCT"),
            text(tags::CODE_MEANING, VR::LO, meaning),
        ])],
    )
}

/// One SegmentSequence item.
fn segment(number: u16) -> InMemDicomObject {
    item(vec![
        code(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            "85756007",
            "Tissue",
        ),
        us(tags::SEGMENT_NUMBER, number),
        text(tags::SEGMENT_LABEL, VR::LO, &format!("segment {number}")),
        text(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "MANUAL"),
        code(
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            "85756007",
            "Tissue",
        ),
    ])
}

/// The per-frame functional groups of frame `k`: its source slice (by UID), its position and
/// its segment.
fn frame(k: u32, segment: u16) -> InMemDicomObject {
    let source = item(vec![
        text(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            uids::CT_IMAGE_STORAGE,
        ),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &slice_uid(k)),
    ]);
    item(vec![
        seq(
            tags::DERIVATION_IMAGE_SEQUENCE,
            vec![item(vec![seq(tags::SOURCE_IMAGE_SEQUENCE, vec![source])])],
        ),
        seq(
            tags::PLANE_POSITION_SEQUENCE,
            vec![item(vec![text(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &ds3(position(k)),
            )])],
        ),
        seq(
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![item(vec![us(tags::REFERENCED_SEGMENT_NUMBER, segment)])],
        ),
    ])
}

/// Pixel Data of `len` bytes: the first row of every frame set (frame k starts at byte
/// k · 64 · 64 / 8).
fn pixel_data(len: usize) -> Vec<u8> {
    let frame_bytes = usize::from(ROWS) * usize::from(COLS) / 8;
    let row_bytes = usize::from(COLS) / 8;
    (0..len)
        .map(|i| if i % frame_bytes < row_bytes { 0xFF } else { 0 })
        .collect()
}

/// The shared functional groups: pixel measures and orientation.
fn shared_groups() -> InMemElement {
    let spacing = format!("{}\\{}", PIXEL_SPACING[0], PIXEL_SPACING[1]);
    let orientation = ORIENTATION.map(|x| x.to_string()).join("\\");
    seq(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![item(vec![
            seq(
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![item(vec![
                    text(tags::SLICE_THICKNESS, VR::DS, "3"),
                    text(tags::PIXEL_SPACING, VR::DS, &spacing),
                ])],
            ),
            seq(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(vec![text(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    &orientation,
                )])],
            ),
        ])],
    )
}

/// Writes a BINARY SEG of the series as `c` declares, Explicit VR Little Endian.
fn write_crafted(path: &Path, c: &Crafted) {
    let referenced = item(vec![
        seq(
            tags::REFERENCED_INSTANCE_SEQUENCE,
            (0..SLICES)
                .map(|k| {
                    item(vec![
                        text(
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            uids::CT_IMAGE_STORAGE,
                        ),
                        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &slice_uid(k)),
                    ])
                })
                .collect(),
        ),
        text(tags::SERIES_INSTANCE_UID, VR::UI, SERIES),
    ]);
    let obj = item(vec![
        text(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, "2.25.88990"),
        text(tags::MODALITY, VR::CS, "SEG"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        text(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.88991"),
        text(tags::FRAME_OF_REFERENCE_UID, VR::UI, FRAME_OF_REFERENCE),
        seq(tags::REFERENCED_SERIES_SEQUENCE, vec![referenced]),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, ROWS),
        us(tags::COLUMNS, COLS),
        us(tags::BITS_ALLOCATED, 1),
        us(tags::BITS_STORED, 1),
        us(tags::HIGH_BIT, 0),
        us(tags::PIXEL_REPRESENTATION, 0),
        seq(
            tags::SEGMENT_SEQUENCE,
            (1..=c.segments).map(segment).collect(),
        ),
        text(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &SLICES.to_string()),
        shared_groups(),
        seq(
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            (0..SLICES)
                .map(|k| frame(k, (c.frame_segment)(k)))
                .collect(),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pixel_data(c.pixel_bytes)),
        ),
    ]);
    let meta = FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN);
    obj.with_meta(meta)
        .expect("a file meta group")
        .write_to_file(path)
        .expect("the crafted SEG is written");
}

/// Bytes of Pixel Data for all 40 frames.
const FULL_PIXELS: usize = SLICES as usize * ROWS as usize * COLS as usize / 8;

/// A site with the series ingested and the local readers r1 and r2.
fn site() -> common::Site {
    let s = common::Site::init("Hostile Seg Site");
    let src = s.path("series");
    write_series(&src);
    s.ok(&["ingest", common::s(&src)]);
    for r in ["r1", "r2"] {
        s.ok(&["readers", "add", r, "--kind", "local"]);
    }
    s
}

/// `annotate import` of `file` as `reader`, under GNU time: (success, stderr, peak bytes).
fn import_measured(s: &common::Site, reader: &str, file: &Path) -> (bool, String, u64) {
    common::run_measured(&[
        "--dir",
        common::s(&s.dir),
        "annotate",
        "import",
        "--reader",
        reader,
        common::s(file),
    ])
}

fn versions_of(s: &common::Site, reader: &str) -> usize {
    let list = s.json(&["annotate", "list", "--reader", reader]);
    list.as_array().expect("a JSON list").len()
}

#[test]
fn a_seg_of_20000_segments_numbered_past_255_is_refused_in_bounded_memory() {
    let s = site();

    // Control: the same construction with three segments imports onto the series.
    let control = s.path("control.dcm");
    write_crafted(
        &control,
        &Crafted {
            segments: 3,
            frame_segment: |k| (k % 3) as u16 + 1,
            pixel_bytes: FULL_PIXELS,
        },
    );
    let (ok, err, _) = import_measured(&s, "r2", &control);
    assert!(ok, "the control SEG imports: {err}");
    let out = s.path("control.nii.gz");
    s.export(SERIES, "r2", "nifti", &out, &[]);
    let labels = nifti::read_file(&out, &Default::default())
        .expect("the exported NIfTI")
        .to_labels_u8()
        .expect("labels");
    let set = labels.iter().filter(|&&v| v != 0).count();
    assert_eq!(
        set,
        SLICES as usize * usize::from(COLS),
        "one row per slice"
    );

    // 20,000 segments, frames referencing segments 256..=295.
    let hostile = s.path("hostile.dcm");
    write_crafted(
        &hostile,
        &Crafted {
            segments: 20_000,
            frame_segment: |k| 256 + k as u16,
            pixel_bytes: FULL_PIXELS,
        },
    );
    let size = std::fs::metadata(&hostile).expect("the crafted SEG").len();
    let (ok, err, peak) = import_measured(&s, "r1", &hostile);
    eprintln!(
        "20,000-segment SEG ({} KB): peak {} MB",
        size >> 10,
        peak >> 20
    );
    assert!(!ok, "the hostile SEG was imported");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("a segment number above 255 does not fit a label map"),
        "{err}"
    );
    assert!(peak < MEMORY_CAP, "peak {} MB", peak >> 20);
    assert_eq!(versions_of(&s, "r1"), 0, "nothing stored for r1");
    assert_eq!(versions_of(&s, "r2"), 1, "the control's version alone");
}

#[test]
fn a_seg_of_20000_segments_with_short_pixel_data_is_refused() {
    let s = site();
    let short = s.path("short.dcm");
    write_crafted(
        &short,
        &Crafted {
            segments: 20_000,
            frame_segment: |k| (k % 200) as u16 + 1,
            pixel_bytes: 512,
        },
    );
    let (ok, err, peak) = import_measured(&s, "r1", &short);
    eprintln!(
        "20,000-segment SEG, short Pixel Data: peak {} MB",
        peak >> 20
    );
    assert!(!ok, "the short SEG was imported");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&format!(
            "Pixel Data holds 512 bytes, {FULL_PIXELS} needed for 40 frames"
        )),
        "{err}"
    );
    assert!(peak < MEMORY_CAP, "peak {} MB", peak >> 20);
    assert_eq!(versions_of(&s, "r1"), 0, "nothing stored");
}
