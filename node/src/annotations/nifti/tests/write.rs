//! Writing: round trips of every datatype (plain and gzip), the header layout written, and
//! atomic replacement of an existing file.

use super::*;

#[test]
fn round_trip_every_datatype_nii_and_gz() {
    let dir = TempDir::new("rt");
    let dim = [7, 5, 3];
    for dtype in DataType::ALL {
        let mut img =
            NiftiImage::new(dim, [0.9, 0.8, 2.0], ITK_AFFINE, sample(dtype, dim)).unwrap();
        img.scl_slope = 0.5;
        img.scl_inter = -3.0;
        for name in ["img.nii", "img.nii.gz"] {
            let path = dir.path(&format!("{}-{name}", dtype.name()));
            write_file(&path, &img).unwrap();
            let back = read_file(&path, &NiftiLimits::default()).unwrap();
            assert_eq!(back.dim, img.dim, "{path:?}");
            assert_eq!(back.data, img.data, "{path:?}");
            assert_eq!(back.data.datatype(), dtype);
            assert_affine_close(&back.affine, &img.affine, 1e-6);
            for (a, b) in back.pixdim.iter().zip(img.pixdim.iter()) {
                assert!((a - b).abs() < 1e-6);
            }
            assert_eq!((back.scl_slope, back.scl_inter), (0.5, -3.0));
            let bytes = fs::read(&path).unwrap();
            assert_eq!(bytes.starts_with(&GZIP_MAGIC), name.ends_with(".gz"));
            assert_eq!(read_bytes(&bytes, &NiftiLimits::default()).unwrap(), back);
        }
    }
    // Nothing but the written files remains (no temporary files).
    assert_eq!(
        fs::read_dir(&dir.0).unwrap().count(),
        2 * DataType::ALL.len()
    );
}

#[test]
fn written_header_layout() {
    let bytes = valid_bytes();
    assert_eq!(bytes.len(), 352 + 6 * 5 * 4);
    assert_eq!(i32::from_le_bytes(bytes[0..4].try_into().unwrap()), 348);
    assert_eq!(&bytes[344..348], b"n+1\0");
    assert_eq!(
        f32::from_le_bytes(bytes[108..112].try_into().unwrap()),
        352.0
    );
    assert_eq!(i16::from_le_bytes(bytes[252..254].try_into().unwrap()), 1);
    assert_eq!(i16::from_le_bytes(bytes[254..256].try_into().unwrap()), 1);
    assert_eq!(i16::from_le_bytes(bytes[70..72].try_into().unwrap()), 2);
    assert_eq!(i16::from_le_bytes(bytes[72..74].try_into().unwrap()), 8);
}

#[test]
fn write_is_atomic_and_replaces() {
    let dir = TempDir::new("atomic");
    let path = dir.path("seg.nii.gz");
    write_file(&path, &label_image([2, 2, 2])).unwrap();
    write_file(&path, &label_image([3, 3, 3])).unwrap();
    assert_eq!(
        read_file(&path, &NiftiLimits::default()).unwrap().dim,
        [3, 3, 3]
    );
    let names: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("seg.nii.gz")]);
    // A failing write leaves the old file alone and no temporary behind.
    let mut bad = label_image([2, 2, 2]);
    bad.scl_slope = f64::NAN;
    assert!(write_file(&path, &bad).is_err());
    assert_eq!(
        read_file(&path, &NiftiLimits::default()).unwrap().dim,
        [3, 3, 3]
    );
    let err = write_file(&dir.path("no/such/dir/x.nii"), &label_image([2, 2, 2])).unwrap_err();
    assert!(
        matches!(
            err,
            NiftiError::Io {
                action: "create",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
}
