//! Mapping read SEG frames onto a series: one volume per segment (`frames_to_volumes`) and
//! one label map (`label_map`, `frames_to_label_map`), their errors and what they refuse.

use super::*;

#[test]
fn frames_to_volumes_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src, _) = small_seg(dir.path());
    let seg = read_seg(&path, &SegLimits::default()).unwrap();
    let refs = slice_refs(&src);
    assert!(matches!(
        frames_to_volumes(&seg, &refs, AXIAL, 5, 6),
        Err(SegError::SizeMismatch { .. })
    ));
    assert!(matches!(
        frames_to_volumes(&seg, &[], AXIAL, 5, 5),
        Err(SegError::NoSlices)
    ));
    let sagittal = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0];
    assert!(matches!(
        frames_to_volumes(&seg, &refs, sagittal, 5, 5),
        Err(SegError::OrientationMismatch)
    ));
    assert!(matches!(
        frames_to_volumes(&seg, &refs, [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 5, 5),
        Err(SegError::BadOrientation)
    ));
    // Unknown UIDs, positions shifted by half a slice: no slice.
    assert!(matches!(
        frames_to_volumes(&seg, &moved_by(&refs, [0.0, 0.0, 1.25]), AXIAL, 5, 5),
        Err(SegError::FrameUnmapped(_))
    ));
    // In-plane offset: same depth, shifted 1 mm along x.
    assert!(matches!(
        frames_to_volumes(&seg, &moved_by(&refs, [1.0, 0.0, 0.0]), AXIAL, 5, 5),
        Err(SegError::FrameUnmapped(_))
    ));
    // Within tolerance (0.004 mm): maps.
    let jitter = moved_by(&refs, [0.0, 0.004, -0.004]);
    assert_eq!(
        frames_to_volumes(&seg, &jitter, AXIAL, 5, 5).unwrap(),
        frames_to_volumes(&seg, &refs, AXIAL, 5, 5).unwrap()
    );
    // A segment number SegmentSequence lacks, and a frame of the wrong size.
    let mut bad = seg.clone();
    bad.frames[0].segment_number = 5;
    assert!(matches!(
        frames_to_volumes(&bad, &refs, AXIAL, 5, 5),
        Err(SegError::UnknownSegment {
            frame: 0,
            segment: 5
        })
    ));
    let mut bad = seg.clone();
    let mut short = bad.frames[0].data.to_bytes();
    short.pop();
    bad.frames[0].data = short.into();
    assert!(matches!(
        frames_to_volumes(&bad, &refs, AXIAL, 5, 5),
        Err(SegError::FrameSize { .. })
    ));
}

// ----- writer -----

fn bare_seg(segmentation_type: SegmentationType) -> SegObject {
    SegObject {
        sop_instance_uid: "2.25.1".into(),
        series_uid: "2.25.2".into(),
        study_uid: "2.25.3".into(),
        referenced_series_uid: None,
        frame_of_reference_uid: None,
        segmentation_type,
        rows: 1,
        columns: 4,
        pixel_spacing: None,
        orientation: None,
        segments: Vec::new(),
        frames: Vec::new(),
    }
}

#[test]
fn label_map_thresholds_fractional_values_and_refuses_overlap() {
    let binary = bare_seg(SegmentationType::Binary);
    let labels = label_map(&binary, &[(1, vec![1, 0, 0, 0]), (2, vec![0, 0, 1, 1])]).unwrap();
    assert_eq!(labels, vec![1, 0, 2, 2]);
    let e = label_map(&binary, &[(1, vec![1, 1, 0, 0]), (2, vec![0, 1, 1, 0])]).unwrap_err();
    assert!(
        matches!(
            e,
            SegError::Overlap {
                segment: 2,
                voxels: 1
            }
        ),
        "{e}"
    );
    assert!(label_map(&binary, &[(256, vec![1, 0, 0, 0])]).is_err());
    // FRACTIONAL (max 255): 128 and above count as inside.
    let fractional = bare_seg(SegmentationType::Fractional {
        max_value: 255,
        probability: true,
    });
    assert_eq!(
        label_map(&fractional, &[(3, vec![127, 128, 255, 0])]).unwrap(),
        vec![0, 3, 3, 0]
    );
}

#[test]
fn the_label_map_of_the_frames_is_that_of_the_volumes_and_checks_segments_first() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src, _) = small_seg(dir.path());
    let mut seg = read_seg(&path, &SegLimits::default()).unwrap();
    // One segment (the random volumes of the two may overlap).
    seg.frames.retain(|f| f.segment_number == 1);
    seg.segments.retain(|s| s.number == 1);
    let refs = slice_refs(&src);
    let volumes = frames_to_volumes(&seg, &refs, AXIAL, 5, 5).unwrap();
    let direct = frames_to_label_map(&seg, &refs, AXIAL, 5, 5).unwrap();
    assert_eq!(direct, label_map(&seg, &volumes).unwrap());
    assert!(direct.iter().any(|&v| v != 0));
    // 20,000 segments on a grid of 4096 x 4096 x 10,000 (160 GiB as a label map): refused
    // before anything the size of the grid is allocated.
    let mut many = seg.clone();
    many.rows = 4096;
    many.columns = 4096;
    many.segments = (1..=20_000u16)
        .map(|n| SegmentInfo {
            number: n,
            ..seg.segments[0].clone()
        })
        .collect();
    let huge: Vec<SliceRef> = (0..10_000)
        .map(|z| SliceRef {
            sop_instance_uid: String::new(),
            position: [0.0, 0.0, f64::from(z)],
        })
        .collect();
    let e = frames_to_label_map(&many, &huge, AXIAL, 4096, 4096).unwrap_err();
    assert!(e.to_string().contains("above 255"), "{e}");
    // Overlap: the same frame given to a second segment.
    let mut twice = seg.clone();
    let mut other = twice.frames[0].clone();
    other.segment_number = 2;
    twice.frames.push(other);
    twice.segments.push(SegmentInfo {
        number: 2,
        ..seg.segments[0].clone()
    });
    let e = frames_to_label_map(&twice, &refs, AXIAL, 5, 5).unwrap_err();
    assert!(
        matches!(e, SegError::Overlap { segment: 2, voxels } if voxels > 0),
        "{e}"
    );
}
