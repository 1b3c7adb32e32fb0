//! Writing LABELMAP SEGs (Label Map Segmentation Storage): the round trip through `read_seg`
//! and `frames_to_label_map`, the attributes written as highdicom 0.28 writes them, and what
//! the writer refuses.

use dicom_core::Tag;

use super::*;

const LABELMAP: SegmentationType = SegmentationType::Labelmap;

/// A label map of `len` voxels holding 0..=`segments`, each value at least once.
fn random_label_map(rng: &mut Rng, len: usize, segments: u8) -> Vec<u8> {
    let mut map = random_volume(rng, len, segments);
    for v in 0..=segments {
        map[usize::from(v) * 7] = v;
    }
    map
}

/// Writes a LABELMAP SEG of `map` and reads it back, with the file's data set.
fn write_label_map(
    dir: &Path,
    src: &SegSource,
    segments: &[SegmentInfo],
    map: &[u8],
) -> (SegObject, DefaultDicomObject) {
    let path = dir.join("labelmap.dcm");
    write_seg(&path, &writer(src, segments, &[(0, map)], LABELMAP)).unwrap();
    let seg = read_seg(&path, &SegLimits::default()).unwrap();
    (seg, open_file(&path).unwrap())
}

/// `frames_to_label_map` of `seg` on the grid of `src`, the same whether frames are placed by
/// UID or by position alone (no UID matching).
fn label_map_on(seg: &SegObject, src: &SegSource) -> Vec<u8> {
    let refs = slice_refs(src);
    let on = |slices: &[SliceRef]| {
        frames_to_label_map(seg, slices, src.orientation, src.rows, src.columns).unwrap()
    };
    let by_uid = on(&refs);
    assert_eq!(by_uid, on(&moved_by(&refs, [0.0; 3])));
    by_uid
}

fn int(obj: &Obj, tag: Tag) -> i64 {
    obj.element(tag).unwrap().to_int::<i64>().unwrap()
}

fn items(obj: &Obj, tag: Tag) -> &[Obj] {
    obj.element(tag).unwrap().items().unwrap()
}

#[test]
fn labelmap_round_trip_21x22x7() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(21, 22, 7, AXIAL);
    let map = random_label_map(&mut Rng(31), 21 * 22 * 7, 3);
    let segs = [segment(1), segment(2), segment(3)];
    let (seg, _) = write_label_map(dir.path(), &src, &segs, &map);
    assert_eq!(seg.segmentation_type, LABELMAP);
    // The Background segment 0 written first is not a segment once read.
    assert_eq!(seg.segments, segs);
    assert_eq!((seg.rows, seg.columns), (21, 22));
    assert_eq!(seg.pixel_spacing, Some([0.75, 0.8]));
    assert_eq!(seg.orientation, Some(AXIAL));
    assert_eq!(
        seg.referenced_series_uid.as_deref(),
        Some(src.series_uid.as_str())
    );
    // One frame per slice, in slice order, each referencing its slice.
    assert_eq!(seg.frames.len(), 7);
    for (frame, slice) in seg.frames.iter().zip(&src.slices) {
        assert_eq!(frame.segment_number, 0);
        assert_eq!(
            frame.referenced_sop_instance_uid.as_deref(),
            Some(slice.sop_instance_uid.as_str())
        );
        assert_eq!(frame.position, Some(slice.position));
    }
    assert_eq!(label_map_on(&seg, &src), map);
}

#[test]
fn labelmap_attributes_are_highdicoms() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(5, 3, 3, AXIAL);
    let map = random_label_map(&mut Rng(8), 45, 2);
    let (_, obj) = write_label_map(dir.path(), &src, &[segment(1), segment(2)], &map);
    assert_eq!(
        obj.meta().media_storage_sop_class_uid(),
        LABELMAP_SEGMENTATION_STORAGE
    );
    assert_eq!(
        text(&obj, tags::SOP_CLASS_UID).as_deref(),
        Some(LABELMAP_SEGMENTATION_STORAGE)
    );
    assert_eq!(
        text(&obj, tags::SEGMENTATION_TYPE).as_deref(),
        Some("LABELMAP")
    );
    assert_eq!(
        text(&obj, tags::PHOTOMETRIC_INTERPRETATION).as_deref(),
        Some("MONOCHROME2")
    );
    for (tag, value) in [
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::BITS_ALLOCATED, 8),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
        (tags::PIXEL_PADDING_VALUE, 0),
        (tags::NUMBER_OF_FRAMES, 3),
    ] {
        assert_eq!(int(&obj, tag), value, "{tag}");
    }
    assert!(
        obj.element_opt(tags::MAXIMUM_FRACTIONAL_VALUE)
            .unwrap()
            .is_none()
    );
    // SegmentSequence: Background (0), then the segments.
    let segments = items(&obj, tags::SEGMENT_SEQUENCE);
    let numbers: Vec<i64> = segments
        .iter()
        .map(|s| int(s, tags::SEGMENT_NUMBER))
        .collect();
    assert_eq!(numbers, [0, 1, 2]);
    assert_eq!(
        text(&segments[0], tags::SEGMENT_LABEL).as_deref(),
        Some("Background")
    );
    for code in [
        tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
        tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
    ] {
        let item = first_item(&segments[0], code).unwrap();
        assert_eq!(text(item, tags::CODE_VALUE).as_deref(), Some("125040"));
        assert_eq!(
            text(item, tags::CODING_SCHEME_DESIGNATOR).as_deref(),
            Some("DCM")
        );
    }
    // Frames are indexed by position alone; no Segment Identification anywhere.
    let index = items(&obj, tags::DIMENSION_INDEX_SEQUENCE);
    assert_eq!(index.len(), 1);
    assert!(matches!(
        index[0].element(tags::DIMENSION_INDEX_POINTER).unwrap().value().primitive(),
        Some(PrimitiveValue::Tags(t)) if t.as_slice() == [tags::IMAGE_POSITION_PATIENT]
    ));
    let shared = first_item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).unwrap();
    assert!(first_item(shared, tags::SEGMENT_IDENTIFICATION_SEQUENCE).is_none());
    for (z, frame) in items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .iter()
        .enumerate()
    {
        assert!(first_item(frame, tags::SEGMENT_IDENTIFICATION_SEQUENCE).is_none());
        let content = first_item(frame, tags::FRAME_CONTENT_SEQUENCE).unwrap();
        let values = content
            .element(tags::DIMENSION_INDEX_VALUES)
            .unwrap()
            .to_multi_int::<u32>()
            .unwrap();
        assert_eq!(values, [u32::try_from(z + 1).unwrap()]);
    }
    // 5 x 3 x 3 = 45 bytes of Pixel Data, padded to 46.
    assert_eq!(
        obj.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .len(),
        46
    );
}

#[test]
fn labelmap_writes_every_slice_even_empty_and_oblique() {
    let dir = tempfile::tempdir().unwrap();
    let c = std::f64::consts::FRAC_1_SQRT_2;
    let oblique = [c, c, 0.0, 0.0, 0.0, -1.0];
    let src = source(7, 9, 4, oblique);
    let segs = [segment(1)];
    // All background: still one frame per slice.
    let empty = vec![0u8; 7 * 9 * 4];
    let (seg, _) = write_label_map(dir.path(), &src, &segs, &empty);
    assert_eq!(seg.frames.len(), 4);
    assert_eq!(label_map_on(&seg, &src), empty);
    // One segment on an oblique grid, only on the last slice.
    let mut map = empty.clone();
    map[3 * 63..].fill(1);
    let (seg, _) = write_label_map(dir.path(), &src, &segs, &map);
    assert_eq!(seg.frames.len(), 4);
    assert_eq!(label_map_on(&seg, &src), map);
}

#[test]
fn labelmap_writer_refuses_bad_label_maps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.dcm");
    let src = source(5, 5, 2, AXIAL);
    let segs = [segment(1), segment(2), segment(3)];
    let map = random_label_map(&mut Rng(3), 50, 3);
    let try_write = |segments: &[SegmentInfo], volumes: &[(u16, &[u8])]| {
        write_seg(&path, &writer(&src, segments, volumes, LABELMAP)).unwrap_err()
    };

    // A value that numbers no segment.
    let mut four = map.clone();
    four[17] = 4;
    let e = try_write(&segs, &[(0, &four)]);
    assert!(matches!(e, SegError::LabelNotASegment(4)), "{e}");
    let e = try_write(&segs[..2], &[(0, &map)]);
    assert!(matches!(e, SegError::LabelNotASegment(3)), "{e}");
    // Not exactly one volume, or not numbered 0.
    let e = try_write(&segs, &[(0, &map), (0, &map)]);
    assert!(matches!(e, SegError::LabelMapVolumes(2)), "{e}");
    let e = try_write(&segs, &[(1, &map), (2, &map)]);
    assert!(matches!(e, SegError::LabelMapVolumes(2)), "{e}");
    let e = try_write(&segs, &[]);
    assert!(matches!(e, SegError::LabelMapVolumes(0)), "{e}");
    let e = try_write(&segs, &[(1, &map)]);
    assert!(matches!(e, SegError::LabelMapNumber(1)), "{e}");
    // Segments not numbered 1..=N.
    let e = try_write(&[segment(1), segment(3)], &[(0, &map)]);
    assert!(matches!(e, SegError::SegmentNumbering), "{e}");
    let e = try_write(&[segment(2), segment(1)], &[(0, &map)]);
    assert!(matches!(e, SegError::SegmentNumbering), "{e}");
    let e = try_write(&[], &[(0, &map)]);
    assert!(matches!(e, SegError::NoSegments), "{e}");
    // More segments than 8-bit frames can number.
    let many: Vec<SegmentInfo> = (1..=256).map(segment).collect();
    let e = try_write(&many, &[(0, &map)]);
    assert!(matches!(e, SegError::TooManyLabels(256)), "{e}");
    // A label map of the wrong size.
    let e = try_write(&segs, &[(0, &map[..49])]);
    assert!(
        matches!(
            e,
            SegError::VolumeSize {
                segment: 0,
                got: 49,
                expected: 50
            }
        ),
        "{e}"
    );
    // Nothing was left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A BINARY SEG given as one label map with overlap runs writes exactly the SEG of the
/// per-segment masks those describe.
#[test]
fn binary_from_one_label_map_and_overlaps_equals_binary_from_masks() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(21, 22, 7, AXIAL);
    let len = 21 * 22 * 7;
    let map = random_label_map(&mut Rng(47), len, 3);
    // Segment 3 also lies under segments 1 and 2 at two runs (one across a slice boundary).
    let runs: Vec<(u32, u32)> = vec![(400, 80), (21 * 22 * 3 - 5, 12)];
    let overlaps = vec![(3u8, runs.clone())];
    let segs = [segment(1), segment(2), segment(3)];
    let layered = dir.path().join("layered.dcm");
    let one = [(0u16, map.as_slice())];
    let mut w = writer(&src, &segs, &one, SegmentationType::Binary);
    w.overlaps = &overlaps;
    write_seg(&layered, &w).unwrap();
    let masks: Vec<(u16, Vec<u8>)> = (1..=3u8)
        .map(|v| {
            let mut m: Vec<u8> = map.iter().map(|&x| u8::from(x == v)).collect();
            if v == 3 {
                for &(a, n) in &runs {
                    m[a as usize..(a + n) as usize].fill(1);
                }
            }
            (u16::from(v), m)
        })
        .collect();
    let refs: Vec<(u16, &[u8])> = masks.iter().map(|(n, m)| (*n, m.as_slice())).collect();
    let plain = dir.path().join("plain.dcm");
    write_seg(
        &plain,
        &writer(&src, &segs, &refs, SegmentationType::Binary),
    )
    .unwrap();
    let (a, b) = (
        read_seg(&layered, &SegLimits::default()).unwrap(),
        read_seg(&plain, &SegLimits::default()).unwrap(),
    );
    assert_eq!(a.frames, b.frames);
    let yes = |p: &Path| text(&open_file(p).unwrap(), tags::SEGMENTS_OVERLAP);
    assert_eq!(yes(&layered).as_deref(), Some("YES"));
    assert_eq!(yes(&plain).as_deref(), Some("YES"));
    // Runs outside the grid, or of no segment, are refused.
    let outside = vec![(3u8, vec![(len as u32 - 1, 2)])];
    w.overlaps = &outside;
    assert!(write_seg(&layered, &w).is_err());
    let stranger = vec![(9u8, vec![(0, 1)])];
    w.overlaps = &stranger;
    assert!(write_seg(&layered, &w).is_err());
}
