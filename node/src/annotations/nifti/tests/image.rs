//! `NiftiImage` itself: conversion to labels (with and without
//! scaling) and the checks made by its constructors.

use super::*;

#[test]
fn labels_conversion() {
    let dim = [3, 2, 2];
    let img = label_image(dim);
    assert_eq!(
        img.to_labels_u8().unwrap(),
        (0..12).map(|i| (i % 4) as u8).collect::<Vec<_>>()
    );
    let mut f = NiftiImage::new(
        dim,
        [1.0; 3],
        ITK_AFFINE,
        VoxelData::F32((0..12).map(|i| (i % 3) as f32).collect()),
    )
    .unwrap();
    assert_eq!(f.to_labels_u8().unwrap()[..4], [0, 1, 2, 0]);
    if let VoxelData::F32(v) = &mut f.data {
        v[7] = 3.5;
    }
    let err = f.to_labels_u8().unwrap_err();
    assert_eq!(
        err.to_string(),
        "voxel (1, 0, 1) holds 3.5, which is not a label: labels must be whole numbers from 0 to 255"
    );
    for bad in [256i32, -1] {
        let mut v = vec![0i32; 12];
        v[11] = bad;
        let img = NiftiImage::new(dim, [1.0; 3], ITK_AFFINE, VoxelData::I32(v)).unwrap();
        let err = img.to_labels_u8().unwrap_err();
        assert!(err.to_string().contains(&format!("holds {bad},")), "{err}");
        assert!(err.to_string().contains("(2, 1, 1)"), "{err}");
    }
    let nan = NiftiImage::new(
        dim,
        [1.0; 3],
        ITK_AFFINE,
        VoxelData::F64(vec![f64::NAN; 12]),
    )
    .unwrap();
    assert!(nan.to_labels_u8().unwrap_err().to_string().contains("NaN"));
    // Scaling applies unless slope is 0 or (1, 0).
    let mut s = NiftiImage::new(dim, [1.0; 3], ITK_AFFINE, VoxelData::I16(vec![2; 12])).unwrap();
    s.scl_slope = 2.0;
    s.scl_inter = 1.0;
    assert_eq!(s.to_labels_u8().unwrap(), vec![5; 12]);
    s.scl_slope = 0.0;
    assert_eq!(s.to_labels_u8().unwrap(), vec![2; 12]);
    s.scl_slope = 100.0;
    s.scl_inter = 0.0;
    assert_eq!(s.to_labels_u8().unwrap(), vec![200; 12]);
    s.scl_slope = 200.0;
    let err = s.to_labels_u8().unwrap_err();
    assert!(
        err.to_string()
            .contains("holds 400 after scl_slope/scl_inter scaling"),
        "{err}"
    );
    let mut u = label_image(dim);
    u.scl_slope = 0.5;
    assert!(u.to_labels_u8().is_err());
}

#[test]
fn constructors_check_lengths() {
    let err = NiftiImage::from_u8([2, 2, 2], [1.0; 3], ITK_AFFINE, vec![0; 7]).unwrap_err();
    assert!(
        matches!(
            err,
            NiftiError::DataLength {
                expected: 8,
                actual: 7,
                ..
            }
        ),
        "{err}"
    );
    let err = NiftiImage::from_u8([0, 2, 2], [1.0; 3], ITK_AFFINE, vec![]).unwrap_err();
    assert!(matches!(err, NiftiError::BadDim { axis: 1, .. }), "{err}");
    let err = NiftiImage::from_u8([usize::MAX, 2, 2], [1.0; 3], ITK_AFFINE, vec![]).unwrap_err();
    assert!(matches!(err, NiftiError::DataLength { .. }), "{err}");
    let mut a = ITK_AFFINE;
    a[1][3] = f64::INFINITY;
    assert!(matches!(
        NiftiImage::from_u8([1, 1, 1], [1.0; 3], a, vec![0]),
        Err(NiftiError::BadAffine { .. })
    ));
    let img = label_image([2, 3, 4]);
    assert_eq!(img.voxel_count(), 24);
    // Too large for NIfTI-1's 16-bit dims.
    let big = NiftiImage::from_u8([40_000, 1, 1], [1.0; 3], ITK_AFFINE, vec![0; 40_000]).unwrap();
    assert!(matches!(
        write_bytes(&big, false),
        Err(NiftiError::Unrepresentable { .. })
    ));
}
