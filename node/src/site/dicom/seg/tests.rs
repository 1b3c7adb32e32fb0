//! Tests of [`super`]: 1-bit packing at odd sizes, the real SEGs of the test data, must-fail
//! vectors, writer round trips and a loop of random mutations that must never panic.

use std::fs;
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, open_file};

use super::bits::{frame_bits, pack_frames, unpack_frame};
use super::read::{first_item, floats, text};
use super::volumes::checked_normal;
use super::write::{cs, seq};
use super::*;
use crate::site::dicom::prescan::PrescanError;
use crate::site::dicom::write::us;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/dicom");
const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
/// Planted in every identifying field of the test source: must never show up in an error.
const CANARY: &str = "CANARY7";

fn data(rel: &str) -> PathBuf {
    Path::new(DATA).join(rel)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn source(rows: u32, columns: u32, slices: usize, orientation: [f64; 6]) -> SegSource {
    let n = checked_normal(&orientation).unwrap();
    SegSource {
        patient_name: format!("{CANARY}^Jane"),
        patient_id: CANARY.into(),
        patient_birth_date: "19700101".into(),
        patient_sex: "F".into(),
        deidentification_method: None,
        study_uid: "1.2.826.0.1.3680043.10.999.1".into(),
        study_date: "20240102".into(),
        study_time: "101112".into(),
        study_id: CANARY.into(),
        accession_number: CANARY.into(),
        referring_physician: CANARY.into(),
        series_uid: "1.2.826.0.1.3680043.10.999.2".into(),
        frame_of_reference_uid: "1.2.826.0.1.3680043.10.999.4".into(),
        rows,
        columns,
        pixel_spacing: [0.75, 0.8],
        slice_thickness: 2.5,
        orientation,
        slices: (0..slices)
            .map(|z| {
                let d = 2.5 * z as f64;
                SourceSlice {
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    sop_instance_uid: format!("1.2.826.0.1.3680043.10.999.3.{}", z + 1),
                    position: [-10.5 + d * n[0], 20.25 + d * n[1], -30.0 + d * n[2]],
                }
            })
            .collect(),
    }
}

fn segment(number: u16) -> SegmentInfo {
    SegmentInfo {
        number,
        label: format!("segment {number}"),
        algorithm_type: if number == 1 {
            AlgorithmType::Manual
        } else {
            AlgorithmType::Automatic
        },
        algorithm_name: (number != 1).then(|| "fedanno test".to_owned()),
        category: CodedConcept::tissue(),
        property_type: CodedConcept::new("10200004", "SCT", "Liver"),
        colour: (number == 2).then_some([45874, 27756, 48316]),
        algorithm_identification: (number != 1).then(|| AlgorithmIdentification {
            family: CodedConcept::new("123110", "DCM", "Artificial Intelligence"),
            name: "fedanno test".into(),
            version: "2.1.0".into(),
        }),
    }
}

fn writer<'a>(
    source: &'a SegSource,
    segments: &'a [SegmentInfo],
    volumes: &'a [(u16, &'a [u8])],
    segmentation_type: SegmentationType,
) -> SegWrite<'a> {
    SegWrite {
        source,
        segments,
        volumes,
        overlaps: &[],
        segmentation_type,
        sop_instance_uid: "1.2.826.0.1.3680043.10.999.5".into(),
        series_uid: "1.2.826.0.1.3680043.10.999.6".into(),
        series_number: 300,
        series_description: "test SEG".into(),
        content_label: "FEDANNO".into(),
        content_creator: "Reader^One".into(),
        manufacturer: "fedanno".into(),
        software_version: "0.1.0".into(),
        content_date: "20250203".into(),
        content_time: "040506".into(),
    }
}

fn random_volume(rng: &mut Rng, len: usize, max: u8) -> Vec<u8> {
    (0..len)
        .map(|_| {
            if rng.below(3) == 0 {
                0
            } else {
                (rng.next() % (u64::from(max) + 1)) as u8
            }
        })
        .collect()
}

fn slice_refs(src: &SegSource) -> Vec<SliceRef> {
    src.slices
        .iter()
        .map(|s| SliceRef {
            sop_instance_uid: s.sop_instance_uid.clone(),
            position: s.position,
        })
        .collect()
}

/// Writes a SEG and reads it back as volumes on the source grid.
fn round_trip(
    dir: &Path,
    src: &SegSource,
    segments: &[SegmentInfo],
    volumes: &[(u16, Vec<u8>)],
    t: SegmentationType,
) -> (SegObject, Vec<(u16, Vec<u8>)>) {
    let refs: Vec<(u16, &[u8])> = volumes.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let path = dir.join("rt.dcm");
    write_seg(&path, &writer(src, segments, &refs, t)).unwrap();
    let seg = read_seg(&path, &SegLimits::default()).unwrap();
    let vols = frames_to_volumes(
        &seg,
        &slice_refs(src),
        src.orientation,
        src.rows,
        src.columns,
    )
    .unwrap();
    (seg, vols)
}

/// A small valid BINARY SEG (5×5, 3 slices, 2 segments) on disk.
fn small_seg(dir: &Path) -> (PathBuf, SegSource, Vec<(u16, Vec<u8>)>) {
    let src = source(5, 5, 3, AXIAL);
    let mut rng = Rng(7);
    let vols: Vec<(u16, Vec<u8>)> = (1..=2)
        .map(|n| (n, random_volume(&mut rng, 75, 1)))
        .collect();
    let segs = [segment(1), segment(2)];
    let refs: Vec<(u16, &[u8])> = vols.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let path = dir.join("small.dcm");
    write_seg(&path, &writer(&src, &segs, &refs, SegmentationType::Binary)).unwrap();
    (path, src, vols)
}

fn edit(path: &Path, f: impl FnOnce(&mut DefaultDicomObject)) {
    let mut obj = open_file(path).unwrap();
    f(&mut obj);
    obj.write_to_file(path).unwrap();
}

fn frames_of(path: &Path) -> usize {
    read_seg(path, &SegLimits::default()).unwrap().frames.len()
}

/// Reads [`small_seg`] after `f` has edited it.
fn read_edited(f: impl FnOnce(&mut DefaultDicomObject)) -> Result<SegObject, SegError> {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = small_seg(dir.path());
    edit(&path, f);
    read_seg(&path, &SegLimits::default())
}

/// Sets the SegmentNumber of item `index` of SegmentSequence.
fn set_segment_number(o: &mut DefaultDicomObject, index: usize, number: u16) {
    let mut items = o
        .element(tags::SEGMENT_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    items[index].put(us(tags::SEGMENT_NUMBER, number));
    o.put(seq(tags::SEGMENT_SEQUENCE, items));
}

/// `refs` under an unknown UID ("9", so only positions map), each moved by `by` mm.
fn moved_by(refs: &[SliceRef], by: [f64; 3]) -> Vec<SliceRef> {
    refs.iter()
        .map(|s| SliceRef {
            sop_instance_uid: "9".into(),
            position: [
                s.position[0] + by[0],
                s.position[1] + by[1],
                s.position[2] + by[2],
            ],
        })
        .collect()
}

// ----- packing -----

#[test]
fn pack_unpack_round_trip_at_odd_sizes() {
    let mut rng = Rng(0x1234_5678);
    for (rows, cols, n_frames) in [
        (5, 5, 1),
        (5, 5, 3),
        (21, 22, 1),
        (21, 22, 4),
        (1, 1, 1),
        (1, 1, 7),
        (3, 7, 5),
    ] {
        let plane = rows * cols;
        let frames: Vec<Vec<u8>> = (0..n_frames)
            .map(|_| random_volume(&mut rng, plane, 1))
            .collect();
        let packed = pack_frames(frames.iter().map(Vec::as_slice), plane * n_frames);
        let bytes = (plane * n_frames).div_ceil(8);
        assert_eq!(packed.len(), bytes + bytes % 2, "{rows}x{cols}x{n_frames}");
        for (k, f) in frames.iter().enumerate() {
            assert_eq!(
                &unpack_frame(&packed, k, plane).unwrap(),
                f,
                "{rows}x{cols} frame {k}"
            );
            // The frame's bits realigned to bit 0 hold the same pixels, and nothing after.
            let data = FrameData::Bits {
                bits: frame_bits(&packed, k, plane).unwrap(),
                len: plane,
            };
            assert_eq!(&data.to_bytes(), f, "{rows}x{cols} frame {k} bits");
            let nonzero: Vec<usize> = data.nonzero().map(|(j, _)| j).collect();
            let expected: Vec<usize> = (0..plane).filter(|&j| f[j] == 1).collect();
            assert_eq!(nonzero, expected);
        }
        // Padding bits are zero.
        let ones: u32 = packed.iter().map(|b| b.count_ones()).sum();
        let set: usize = frames.iter().flatten().map(|&v| usize::from(v)).sum();
        assert_eq!(ones as usize, set);
    }
}

#[test]
fn frames_are_not_padded_to_bytes() {
    // 5×5: frame 1 starts at bit 25 = byte 3, bit 1 (LSB first).
    let f0 = vec![0u8; 25];
    let mut f1 = vec![0u8; 25];
    f1[0] = 1;
    f1[24] = 1; // bit 49 = byte 6, bit 1
    let packed = pack_frames([f0.as_slice(), f1.as_slice()], 50);
    assert_eq!(packed, vec![0, 0, 0, 0b10, 0, 0, 0b10, 0]);
    assert_eq!(unpack_frame(&packed, 1, 25).unwrap(), f1);
    assert!(unpack_frame(&packed[..6], 1, 25).is_err());
    assert!(frame_bits(&packed[..6], 1, 25).is_err());
    // Realigned: pixel 0 at bit 0, pixel 24 at bit 0 of byte 3.
    assert_eq!(frame_bits(&packed, 1, 25).unwrap(), vec![1, 0, 0, 1]);
}

// ----- real SEGs -----

#[test]
fn reads_highdicom_disc_onto_ct_small() {
    let ct = open_file(data("pydicom/CT_small.dcm")).unwrap();
    let uid = text(&ct, tags::SOP_INSTANCE_UID).unwrap();
    let pos = floats::<3>(&ct, tags::IMAGE_POSITION_PATIENT, "")
        .unwrap()
        .unwrap();
    let ori = floats::<6>(&ct, tags::IMAGE_ORIENTATION_PATIENT, "")
        .unwrap()
        .unwrap();
    let seg = read_seg(
        &data("generated/CT_small_seg_disc_highdicom.dcm"),
        &SegLimits::default(),
    )
    .unwrap();
    assert_eq!(seg.segmentation_type, SegmentationType::Binary);
    assert_eq!((seg.rows, seg.columns, seg.frames.len()), (128, 128, 1));
    assert_eq!(seg.segments.len(), 1);
    assert_eq!(seg.segments[0].label, "disc");
    assert_eq!(
        seg.frames[0].referenced_sop_instance_uid.as_deref(),
        Some(uid.as_str())
    );
    let npy = fs::read(data("generated/CT_small_seg_disc_mask.npy")).unwrap();
    assert!(npy.starts_with(b"\x93NUMPY"));
    let mask = &npy[npy.len() - 128 * 128..];
    for slice in [
        SliceRef {
            sop_instance_uid: uid.clone(),
            position: pos,
        },
        SliceRef {
            sop_instance_uid: "1.2.3".into(),
            position: pos,
        },
    ] {
        let vols = frames_to_volumes(&seg, &[slice], ori, 128, 128).unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0].0, 1);
        assert_eq!(vols[0].1.iter().filter(|&&v| v == 1).count(), 1257);
        assert_eq!(vols[0].1.as_slice(), mask);
    }
}

#[test]
fn reads_liver_segs() {
    // No NumberOfFrames and 3 per-frame items for 1 frame.
    let seg = read_seg(&data("pydicom/liver_1frame.dcm"), &SegLimits::default()).unwrap();
    assert_eq!(seg.frames.len(), 1);
    assert_eq!(seg.segments[0].label, "Liver");
    assert_eq!(seg.segments[0].algorithm_type, AlgorithmType::Semiautomatic);
    assert_eq!(seg.frames[0].data.iter().filter(|&v| v == 1).count(), 36233);
    let seg = read_seg(&data("pydicom-data/liver.dcm"), &SegLimits::default()).unwrap();
    let counts: Vec<usize> = seg
        .frames
        .iter()
        .map(|f| f.data.iter().filter(|&v| v == 1).count())
        .collect();
    assert_eq!(counts, [36233, 35645, 35220]);
    // Three slices 1 mm apart, mapped by position.
    let slices: Vec<SliceRef> = seg
        .frames
        .iter()
        .rev()
        .map(|f| SliceRef {
            sop_instance_uid: "9".into(),
            position: f.position.unwrap(),
        })
        .collect();
    let vols = frames_to_volumes(&seg, &slices, AXIAL, 512, 512).unwrap();
    let plane = 512 * 512;
    assert_eq!(vols[0].1[..plane], seg.frames[2].data.to_bytes()[..]);
    assert_eq!(vols[0].1[2 * plane..], seg.frames[0].data.to_bytes()[..]);
}

#[test]
fn refuses_non_seg_files() {
    let lim = SegLimits::default();
    assert!(matches!(
        read_seg(&data("pydicom/CT_small.dcm"), &lim),
        Err(SegError::NotSegmentation)
    ));
    assert!(matches!(
        read_seg(&data("pydicom/rtstruct.dcm"), &lim),
        Err(SegError::Structure(PrescanError::NotDicom))
    ));
    assert!(matches!(
        read_seg(&data("nonexistent.dcm"), &lim),
        Err(SegError::Io(_))
    ));
    let tiny = SegLimits {
        max_file_bytes: 100,
        ..lim
    };
    assert!(matches!(
        read_seg(&data("pydicom/liver_1frame.dcm"), &tiny),
        Err(SegError::FileTooLarge { .. })
    ));
}

// ----- must-fail vectors -----

#[test]
fn pixel_data_shorter_than_frames_fails() {
    let err = read_edited(|o| {
        let n: usize = o.element(tags::NUMBER_OF_FRAMES).unwrap().to_int().unwrap();
        // Keep (n·25 − 1) bits worth of bytes: one bit short is still one byte short only
        // when n·25 is a multiple of 8, so cut to floor((n·25 − 1)/8) bytes.
        let keep = (n * 25 - 1) / 8;
        let px = o
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec();
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(px[..keep].to_vec()),
        ));
    })
    .unwrap_err();
    assert!(matches!(err, SegError::PixelDataTooShort { .. }), "{err}");
}

#[test]
fn declared_lengths_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = small_seg(dir.path());
    let good = fs::read(&path).unwrap();
    let pd = good
        .windows(6)
        .rposition(|w| w == b"\xE0\x7F\x10\x00OB")
        .unwrap();
    // Pixel Data declaring ~2 GiB in a 3 KiB file.
    let mut bytes = good.clone();
    bytes[pd + 8..pd + 12].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        read_seg(&path, &SegLimits::default()),
        Err(SegError::Invalid("PixelData"))
    ));
    // Encapsulated (undefined length) Pixel Data.
    bytes[pd + 8..pd + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert!(read_seg(&path, &SegLimits::default()).is_err());
    // A header element (SegmentSequence) declaring ~4 GiB: refused by the pre-scan, before
    // the parser could allocate it.
    let mut bytes = good;
    let sq = bytes
        .windows(6)
        .position(|w| w == b"\x62\x00\x02\x00SQ")
        .unwrap();
    bytes[sq + 8..sq + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        read_seg(&path, &SegLimits::default()),
        Err(SegError::Structure(_))
    ));
}

#[test]
fn frame_and_voxel_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = small_seg(dir.path());
    let n = frames_of(&path) as u32;
    let lim = SegLimits {
        max_frames: n - 1,
        ..SegLimits::default()
    };
    assert!(matches!(
        read_seg(&path, &lim),
        Err(SegError::TooManyFrames { .. })
    ));
    let lim = SegLimits {
        max_voxels: u64::from(n) * 25 - 1,
        ..SegLimits::default()
    };
    assert!(matches!(
        read_seg(&path, &lim),
        Err(SegError::TooManyVoxels { .. })
    ));
    assert_eq!(frames_of(&path), n as usize);
}

#[test]
fn fewer_per_frame_items_than_frames_fails() {
    let err = read_edited(|o| {
        let n: usize = o.element(tags::NUMBER_OF_FRAMES).unwrap().to_int().unwrap();
        o.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from((n + 1).to_string()),
        ));
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(vec![0u8; 64]),
        ));
    })
    .unwrap_err();
    assert!(
        matches!(err, SegError::PerFrameItemsMissing { .. }),
        "{err}"
    );
}

#[test]
fn extra_per_frame_items_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = small_seg(dir.path());
    let n = frames_of(&path);
    assert!(n > 1);
    edit(&path, |o| {
        o.remove_element(tags::NUMBER_OF_FRAMES);
    });
    assert_eq!(frames_of(&path), 1);
}

#[test]
fn unknown_segment_number_fails() {
    let err = read_edited(|o| set_segment_number(o, 1, 9)).unwrap_err();
    assert!(
        matches!(err, SegError::UnknownSegment { segment: 2, .. }),
        "{err}"
    );
}

#[test]
fn duplicate_segment_numbers_fail() {
    assert!(matches!(
        read_edited(|o| set_segment_number(o, 1, 1)),
        Err(SegError::DuplicateSegment(1))
    ));
}

#[test]
fn a_labelmap_type_in_the_segmentation_class_and_wrong_bits_fail() {
    // LABELMAP belongs to Label Map Segmentation Storage, not to Segmentation Storage.
    assert!(matches!(
        read_edited(|o| {
            o.put(cs(tags::SEGMENTATION_TYPE, "LABELMAP"));
        }),
        Err(SegError::Invalid("SegmentationType for the SOP class"))
    ));
    assert!(matches!(
        read_edited(|o| {
            o.put(cs(tags::SEGMENTATION_TYPE, "MYSTERY"));
        }),
        Err(SegError::UnsupportedType)
    ));
    assert!(matches!(
        read_edited(|o| {
            o.put(us(tags::BITS_ALLOCATED, 8));
        }),
        Err(SegError::Invalid(_))
    ));
}

#[test]
fn fractional_value_above_maximum_fails() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(5, 5, 1, AXIAL);
    let vol = vec![3u8; 25];
    let segs = [segment(1)];
    let refs = [(1u16, vol.as_slice())];
    let t = SegmentationType::Fractional {
        max_value: 10,
        probability: false,
    };
    let path = dir.path().join("f.dcm");
    write_seg(&path, &writer(&src, &segs, &refs, t)).unwrap();
    edit(&path, |o| {
        o.put(us(tags::MAXIMUM_FRACTIONAL_VALUE, 2));
    });
    assert!(matches!(
        read_seg(&path, &SegLimits::default()),
        Err(SegError::ValueAboveMaximum(0))
    ));
}

#[test]
fn binary_multi_segment_round_trip_21x22x3() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(21, 22, 3, AXIAL);
    let mut rng = Rng(99);
    let mut vols: Vec<(u16, Vec<u8>)> = (1..=3)
        .map(|n| (n, random_volume(&mut rng, 21 * 22 * 3, 1)))
        .collect();
    vols[1].1[21 * 22..2 * 21 * 22].fill(0); // segment 2, slice 1 empty: no frame
    let segs = [segment(1), segment(2), segment(3)];
    let (seg, got) = round_trip(dir.path(), &src, &segs, &vols, SegmentationType::Binary);
    assert_eq!(seg.frames.len(), 8);
    assert_eq!(seg.segments, segs);
    assert_eq!(got, vols);
    assert_eq!(seg.pixel_spacing, Some([0.75, 0.8]));
    assert_eq!(seg.orientation, Some(AXIAL));
    assert_eq!(
        seg.referenced_series_uid.as_deref(),
        Some(src.series_uid.as_str())
    );
    assert_eq!(
        seg.frame_of_reference_uid.as_deref(),
        Some(src.frame_of_reference_uid.as_str())
    );
    // Frames ordered by segment then slice.
    let order: Vec<u16> = seg.frames.iter().map(|f| f.segment_number).collect();
    assert_eq!(order, [1, 1, 1, 2, 2, 3, 3, 3]);
    // Mapping by position alone gives the same volumes.
    let by_pos = moved_by(&slice_refs(&src), [0.0; 3]);
    assert_eq!(
        frames_to_volumes(&seg, &by_pos, AXIAL, 21, 22).unwrap(),
        vols
    );
}

#[test]
fn fractional_and_oblique_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    let c = std::f64::consts::FRAC_1_SQRT_2;
    for (orientation, t) in [
        (
            AXIAL,
            SegmentationType::Fractional {
                max_value: 255,
                probability: true,
            },
        ),
        (
            [c, c, 0.0, 0.0, 0.0, -1.0],
            SegmentationType::Fractional {
                max_value: 100,
                probability: false,
            },
        ),
        ([c, c, 0.0, 0.0, 0.0, -1.0], SegmentationType::Binary),
    ] {
        let src = source(7, 9, 4, orientation);
        let max = match t {
            SegmentationType::Binary | SegmentationType::Labelmap => 1,
            SegmentationType::Fractional { max_value, .. } => max_value,
        };
        let vols: Vec<(u16, Vec<u8>)> = (1..=2)
            .map(|n| (n, random_volume(&mut rng, 7 * 9 * 4, max)))
            .collect();
        let (seg, got) = round_trip(dir.path(), &src, &[segment(1), segment(2)], &vols, t);
        assert_eq!(seg.segmentation_type, t);
        assert_eq!(got, vols);
    }
}

#[test]
fn five_by_five_and_all_empty() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(5, 5, 1, AXIAL);
    let mut vol = vec![0u8; 25];
    for i in [0, 6, 12, 18, 24, 4] {
        vol[i] = 1;
    }
    let (seg, got) = round_trip(
        dir.path(),
        &src,
        &[segment(1)],
        &[(1, vol.clone())],
        SegmentationType::Binary,
    );
    assert_eq!(seg.frames.len(), 1);
    assert_eq!(got, [(1, vol)]);
    // All empty (and a segment without a volume): exactly one empty frame.
    let src = source(5, 5, 2, AXIAL);
    let (seg, got) = round_trip(
        dir.path(),
        &src,
        &[segment(1), segment(2)],
        &[(1, vec![0; 50])],
        SegmentationType::Binary,
    );
    assert_eq!(seg.frames.len(), 1);
    assert_eq!(got, [(1, vec![0; 50]), (2, vec![0; 50])]);
}

#[test]
fn spacing_between_slices_only_when_uniform() {
    let dir = tempfile::tempdir().unwrap();
    let spacing = |src: &SegSource| {
        let vol = vec![1u8; 25 * src.slices.len()];
        let path = dir.path().join("s.dcm");
        write_seg(
            &path,
            &writer(src, &[segment(1)], &[(1, &vol)], SegmentationType::Binary),
        )
        .unwrap();
        let obj = open_file(&path).unwrap();
        let shared = first_item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).unwrap();
        let pm = first_item(shared, tags::PIXEL_MEASURES_SEQUENCE).unwrap();
        text(pm, tags::SPACING_BETWEEN_SLICES)
    };
    assert_eq!(spacing(&source(5, 5, 1, AXIAL)).as_deref(), Some("2.5"));
    assert_eq!(spacing(&source(5, 5, 3, AXIAL)).as_deref(), Some("2.5"));
    let mut uneven = source(5, 5, 3, AXIAL);
    uneven.slices[2].position[2] += 1.0;
    assert_eq!(spacing(&uneven), None);
}

#[test]
fn writer_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.dcm");
    let src = source(5, 5, 2, AXIAL);
    let vol = vec![1u8; 50];
    let ok_vols = [(1u16, vol.as_slice())];
    let segs = [segment(1)];
    let bin = SegmentationType::Binary;
    let try_write = |w: &SegWrite<'_>| write_seg(&path, w).unwrap_err();

    assert!(matches!(
        try_write(&writer(&src, &[segment(2)], &[], bin)),
        SegError::SegmentNumbering
    ));
    let mut s = segment(2);
    s.number = 1;
    s.algorithm_name = None;
    assert!(matches!(
        try_write(&writer(&src, &[s], &ok_vols, bin)),
        SegError::MissingAlgorithmName(1)
    ));
    assert!(matches!(
        try_write(&writer(&src, &segs, &[(1, &vol[..49])], bin)),
        SegError::VolumeSize { .. }
    ));
    let two = vec![2u8; 50];
    assert!(matches!(
        try_write(&writer(&src, &segs, &[(1, two.as_slice())], bin)),
        SegError::VolumeValue(1)
    ));
    assert!(matches!(
        try_write(&writer(&src, &segs, &[(2, vol.as_slice())], bin)),
        SegError::UnknownSegment { .. }
    ));
    assert!(matches!(
        try_write(&writer(
            &src,
            &segs,
            &[(1, vol.as_slice()), (1, vol.as_slice())],
            bin
        )),
        SegError::DuplicateVolume(1)
    ));
    assert!(matches!(
        try_write(&writer(&src, &[], &[], bin)),
        SegError::NoSegments
    ));
    let frac0 = SegmentationType::Fractional {
        max_value: 0,
        probability: true,
    };
    assert!(matches!(
        try_write(&writer(&src, &segs, &ok_vols, frac0)),
        SegError::Invalid(_)
    ));

    type Change<T> = fn(&mut T);
    let bad_writes: [(Change<SegWrite<'_>>, SegError); 3] = [
        (
            |w| w.sop_instance_uid = "1.2.03".into(),
            SegError::InvalidUid("SOPInstanceUID"),
        ),
        (
            |w| w.content_label = "lower case".into(),
            SegError::InvalidText("ContentLabel"),
        ),
        (
            |w| w.content_date = "2025-02-03".into(),
            SegError::InvalidText("ContentDate"),
        ),
    ];
    for (change, expected) in bad_writes {
        let mut w = writer(&src, &segs, &ok_vols, bin);
        change(&mut w);
        assert_eq!(try_write(&w).to_string(), expected.to_string());
    }
    let bad_sources: [(Change<SegSource>, SegError); 3] = [
        (|s| s.slices.reverse(), SegError::SlicesNotSorted),
        (
            |s| s.orientation = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            SegError::BadOrientation,
        ),
        (
            |s| s.patient_name = "a\\b".into(),
            SegError::InvalidText("PatientName"),
        ),
    ];
    for (change, expected) in bad_sources {
        let mut bad = src.clone();
        change(&mut bad);
        assert_eq!(
            try_write(&writer(&bad, &segs, &ok_vols, bin)).to_string(),
            expected.to_string()
        );
    }
    // Nothing was left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // Errors name the problem, never a value.
    let mut bad = src.clone();
    bad.patient_name = "a\\b".into();
    let e = try_write(&writer(&bad, &segs, &ok_vols, bin)).to_string();
    assert!(!e.contains(CANARY) && !e.contains("a\\b"), "{e}");
}

#[test]
fn write_is_atomic_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src, vols) = small_seg(dir.path());
    let segs = [segment(1), segment(2)];
    let refs: Vec<(u16, &[u8])> = vols.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    write_seg(&path, &writer(&src, &segs, &refs, SegmentationType::Binary)).unwrap();
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("small.dcm")]);
    let missing_dir = dir.path().join("no/such/dir/x.dcm");
    assert!(matches!(
        write_seg(
            &missing_dir,
            &writer(&src, &segs, &refs, SegmentationType::Binary)
        ),
        Err(SegError::Io(_))
    ));
}

#[test]
fn debug_output_holds_no_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src, _) = small_seg(dir.path());
    let seg = read_seg(&path, &SegLimits::default()).unwrap();
    for s in [
        format!("{seg:?}"),
        format!("{src:?}"),
        format!("{:?}", slice_refs(&src)),
    ] {
        assert!(
            !s.contains(CANARY) && !s.contains("1.2.826.0.1.3680043"),
            "{s}"
        );
    }
}

// ----- mutations -----

#[test]
fn random_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src, _) = small_seg(dir.path());
    let good = fs::read(&path).unwrap();
    let refs = slice_refs(&src);
    let target = dir.path().join("mutant.dcm");
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let (mut ok, mut failed) = (0usize, 0usize);
    for _ in 0..3000 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len());
            match rng.below(6) {
                0 => bytes[i] ^= 1 << rng.below(8),
                1 => bytes[i] = 0xFF,
                2 => bytes[i] = 0,
                3 => bytes[i] = rng.next() as u8,
                4 => bytes.truncate(i.max(132)),
                _ => {
                    let b = rng.next() as u8;
                    bytes.insert(i, b);
                }
            }
        }
        fs::write(&target, &bytes).unwrap();
        match read_seg(&target, &SegLimits::default()) {
            Ok(seg) => {
                ok += 1;
                if let Err(e) = frames_to_volumes(&seg, &refs, AXIAL, 5, 5) {
                    assert!(!e.to_string().contains(CANARY));
                }
            }
            Err(e) => {
                failed += 1;
                assert!(!e.to_string().contains(CANARY), "{e}");
            }
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok} failed {failed}");
}

mod labelmap;
mod mapping;
