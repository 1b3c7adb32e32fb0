//! Malformed and hostile input: truncated headers and data, oversized or overflowing dimensions,
//! bad magic, datatypes, spacing, dimension counts and offsets, corrupt gzip, and a loop of
//! random header mutations that must never panic.

use super::*;

#[test]
fn nifti2_huge_dims_rejected_without_overflow() {
    let img = label_image([2, 2, 2]);
    let mut bytes = nifti2_bytes(&img, Endian::Little);
    for (i, v) in [i64::MAX, i64::MAX, 3].iter().enumerate() {
        bytes[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
    assert!(matches!(err, NiftiError::TooManyVoxels { .. }), "{err}");
    bytes[168..176].copy_from_slice(&(-5i64).to_le_bytes());
    assert!(matches!(
        read_bytes(&bytes, &NiftiLimits::default()),
        Err(NiftiError::BadVoxOffset { .. })
    ));
}

#[test]
fn truncated_data_rejected_with_clear_message() {
    let mut img = label_image([96, 96, 48]);
    img.affine = diag_affine([1.0, 1.0, 1.0]);
    let bytes = write_bytes(&img, false).unwrap();
    let cut = &bytes[..352 + 1024];
    let err = read_bytes(cut, &NiftiLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "NIfTI data truncated: header declares 96×96×48 uint8 voxels (442368 bytes) but the \
         file holds 1024 bytes of voxel data"
    );
    // Same through gzip (length unknown until decompressed).
    let err = read_bytes(&gzip(cut), &NiftiLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            NiftiError::Truncated {
                needed: 442_368,
                available: 1024,
                ..
            }
        ),
        "{err}"
    );
    // A gzip stream cut in the middle.
    let gz = write_bytes(&img, true).unwrap();
    let err = read_bytes(&gz[..gz.len() / 2], &NiftiLimits::default()).unwrap_err();
    assert!(
        matches!(err, NiftiError::Truncated { .. } | NiftiError::Read { .. }),
        "{err}"
    );
    // Typed data cut mid-value.
    let dim = [4, 4, 4];
    let img = NiftiImage::new(dim, [1.0; 3], ITK_AFFINE, sample(DataType::F64, dim)).unwrap();
    let bytes = write_bytes(&img, false).unwrap();
    let cut = &bytes[..bytes.len() - 3];
    for input in [cut.to_vec(), gzip(cut)] {
        let err = read_bytes(&input, &NiftiLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                NiftiError::Truncated {
                    needed: 512,
                    available: 509,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn truncated_header_rejected() {
    let bytes = valid_bytes();
    for n in [0, 1, 4, 100, 347] {
        let err = read_bytes(&bytes[..n], &NiftiLimits::default()).unwrap_err();
        assert!(matches!(err, NiftiError::TooShort { .. }), "{n}: {err}");
    }
    let n2 = nifti2_bytes(&label_image([2, 2, 2]), Endian::Little);
    let err = read_bytes(&n2[..400], &NiftiLimits::default()).unwrap_err();
    assert!(
        matches!(err, NiftiError::TooShort { need: 540, .. }),
        "{err}"
    );
}

#[test]
fn oversized_dims_rejected_before_allocating() {
    let mut bytes = valid_bytes();
    for axis in 1..=3 {
        put_i16(&mut bytes, 40 + 2 * axis, i16::MAX);
    }
    put_i16(&mut bytes, 70, 64); // float64: 32767³·8 bytes
    let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
    assert!(matches!(err, NiftiError::TooManyVoxels { .. }), "{err}");
    let huge = NiftiLimits {
        max_voxels: usize::MAX,
        max_file_bytes: u64::MAX,
    };
    let err = read_bytes(&bytes, &huge).unwrap_err();
    assert!(matches!(err, NiftiError::Truncated { .. }), "{err}");
    let err = read_bytes(&gzip(&bytes), &huge).unwrap_err();
    assert!(matches!(err, NiftiError::Truncated { .. }), "{err}");
    // Limits are honoured.
    let small = NiftiLimits {
        max_voxels: 120,
        max_file_bytes: 1 << 20,
    };
    let ok = valid_bytes();
    assert!(read_bytes(&ok, &small).is_ok());
    let tiny = NiftiLimits {
        max_voxels: 119,
        max_file_bytes: 1 << 20,
    };
    assert!(matches!(
        read_bytes(&ok, &tiny),
        Err(NiftiError::TooManyVoxels { .. })
    ));
    let few_bytes = NiftiLimits {
        max_voxels: 1000,
        max_file_bytes: 400,
    };
    assert!(matches!(
        read_bytes(&gzip(&ok), &few_bytes),
        Err(NiftiError::TooManyBytes { .. })
    ));
    assert!(matches!(
        read_bytes(&ok, &few_bytes),
        Err(NiftiError::FileTooLarge { .. })
    ));
}

#[test]
fn bad_magic_and_header_size_rejected() {
    let mut bytes = valid_bytes();
    bytes[344..348].copy_from_slice(b"ni1\0");
    assert!(matches!(
        read_bytes(&bytes, &NiftiLimits::default()),
        Err(NiftiError::PairNotSupported)
    ));
    bytes[344..348].copy_from_slice(b"xyz\0");
    let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
    assert!(matches!(err, NiftiError::BadMagic { version: 1 }), "{err}");
    assert!(!err.to_string().contains("xyz"));
    let mut bytes = valid_bytes();
    bytes[0..4].copy_from_slice(&349i32.to_le_bytes());
    let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
    assert!(matches!(err, NiftiError::UnknownHeaderSize), "{err}");
    let text = b"this is a plain text file, not an image at all......".repeat(10);
    assert!(matches!(
        read_bytes(&text, &NiftiLimits::default()),
        Err(NiftiError::UnknownHeaderSize)
    ));
}

#[test]
fn bad_datatypes_rejected_clearly() {
    for (code, name) in [
        (128, "RGB24"),
        (32, "complex64"),
        (1792, "complex128"),
        (2304, "RGBA32"),
        (1024, "int64"),
        (0, "unknown"),
        (3, "not a NIfTI type"),
    ] {
        let mut bytes = valid_bytes();
        put_i16(&mut bytes, 70, code);
        let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
        assert!(
            matches!(err, NiftiError::UnsupportedDatatype { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert!(err.to_string().contains(&format!("code {code}")), "{err}");
    }
}

#[test]
fn bad_pixdim_rejected() {
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0] {
        let mut bytes = valid_bytes();
        put_f32(&mut bytes, 80, v);
        let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
        assert!(
            matches!(err, NiftiError::BadPixdim { axis: 1, .. }),
            "{v}: {err}"
        );
    }
    // Negative spacing is read as its absolute value; 0 on a size-1 axis as 1 mm.
    let mut bytes = valid_bytes();
    put_f32(&mut bytes, 84, -0.8);
    assert_eq!(
        read_bytes(&bytes, &NiftiLimits::default()).unwrap().pixdim[1],
        f64::from(0.8f32)
    );
    let img = label_image([4, 4, 1]);
    let mut bytes = write_bytes(&img, false).unwrap();
    put_f32(&mut bytes, 88, 0.0);
    put_i16(&mut bytes, 254, 0);
    put_i16(&mut bytes, 252, 0);
    assert_eq!(
        read_bytes(&bytes, &NiftiLimits::default()).unwrap().pixdim[2],
        1.0
    );
    // Writing refuses invalid spacing.
    let mut img = label_image([2, 2, 2]);
    img.pixdim[2] = f64::NAN;
    assert!(matches!(
        write_bytes(&img, false),
        Err(NiftiError::BadPixdim { axis: 3, .. })
    ));
}

#[test]
fn dimension_rules() {
    // dim[0] = 2: a 2D image, nz = 1 even if dim[3] holds junk.
    let mut bytes = write_bytes(&label_image([6, 5, 1]), false).unwrap();
    put_i16(&mut bytes, 40, 2);
    put_i16(&mut bytes, 46, 77);
    let img = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
    assert_eq!(img.dim, [6, 5, 1]);
    // dim[0] = 5 with trailing 1s is fine; a 4th dimension of 3 is not.
    let mut bytes = valid_bytes();
    put_i16(&mut bytes, 40, 5);
    assert_eq!(
        read_bytes(&bytes, &NiftiLimits::default()).unwrap().dim,
        [6, 5, 4]
    );
    put_i16(&mut bytes, 48, 3);
    let err = read_bytes(&bytes, &NiftiLimits::default()).unwrap_err();
    assert!(
        matches!(err, NiftiError::NotThreeD { axis: 4, value: 3 }),
        "{err}"
    );
    for ndim in [-1, 0, 1, 8, 348] {
        let mut bytes = valid_bytes();
        put_i16(&mut bytes, 40, ndim);
        assert!(matches!(
            read_bytes(&bytes, &NiftiLimits::default()),
            Err(NiftiError::DimCount { .. })
        ));
    }
    for bad in [0, -4] {
        let mut bytes = valid_bytes();
        put_i16(&mut bytes, 44, bad);
        assert!(matches!(
            read_bytes(&bytes, &NiftiLimits::default()),
            Err(NiftiError::BadDim { axis: 2, .. })
        ));
    }
}

#[test]
fn corrupt_gzip_rejected() {
    let img = label_image([20, 20, 20]);
    let gz = write_bytes(&img, true).unwrap();
    // Flip a byte of the CRC trailer.
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xFF;
    let err = read_bytes(&bad_crc, &NiftiLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            NiftiError::Read {
                compressed: true,
                ..
            }
        ),
        "{err}"
    );
    // Garbage in the deflate stream.
    let mut bad = gz.clone();
    for b in &mut bad[20..60] {
        *b = 0xFF;
    }
    assert!(read_bytes(&bad, &NiftiLimits::default()).is_err());
}

/// Random mutations of valid files must give `Ok` or `Err`, never a panic or a huge
/// allocation.
#[test]
fn fuzz_mutated_headers_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let dim = [5, 4, 3];
    let seeds: Vec<Vec<u8>> = vec![
        valid_bytes(),
        encode(
            &NiftiImage::new(dim, [1.0, 2.0, 3.0], ITK_AFFINE, sample(DataType::F32, dim)).unwrap(),
            false,
            Endian::Big,
        )
        .unwrap(),
        nifti2_bytes(&label_image(dim), Endian::Little),
        nifti2_bytes(
            &NiftiImage::new(dim, [1.0; 3], ITK_AFFINE, sample(DataType::I16, dim)).unwrap(),
            Endian::Big,
        ),
    ];
    // Interesting values for 2/4/8-byte fields.
    let specials: [i64; 12] = [
        0,
        1,
        -1,
        2,
        3,
        7,
        8,
        348,
        540,
        i64::from(i16::MAX),
        i64::from(i32::MAX),
        i64::MAX,
    ];
    let limits = NiftiLimits {
        max_voxels: 1 << 24,
        max_file_bytes: 1 << 26,
    };
    let (mut ok, mut err) = (0u32, 0u32);
    for iter in 0..4000 {
        let mut bytes = seeds[iter % seeds.len()].clone();
        let header_len = if iter % 4 >= 2 { 544 } else { 352 };
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(header_len);
            match rng.below(5) {
                0 => bytes[pos] = rng.next() as u8,
                1 => bytes[pos] ^= 1 << rng.below(8),
                2 => {
                    let aligned = pos & !3;
                    let v = specials[rng.below(specials.len())] as i32;
                    let v = if rng.below(2) == 0 { v } else { v.swap_bytes() };
                    bytes[aligned..aligned + 4].copy_from_slice(&v.to_le_bytes());
                }
                3 => {
                    let aligned = pos & !1;
                    let v = specials[rng.below(specials.len())] as i16;
                    bytes[aligned..aligned + 2].copy_from_slice(&v.to_le_bytes());
                }
                _ => {
                    let aligned = pos & !3;
                    let v = [f32::NAN, f32::INFINITY, -0.0, 1e30, -1e30, 352.0, 0.5][rng.below(7)];
                    bytes[aligned..aligned + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len() + 1));
        }
        let result = if iter % 5 == 0 {
            read_bytes(&gzip(&bytes), &limits)
        } else {
            read_bytes(&bytes, &limits)
        };
        match result {
            Ok(img) => {
                ok += 1;
                assert_eq!(img.data.len(), img.voxel_count());
                assert!(img.pixdim.iter().all(|p| p.is_finite() && *p > 0.0));
                assert!(img.affine.iter().flatten().all(|v| v.is_finite()));
                let _ = img.to_labels_u8();
            }
            Err(e) => {
                err += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // Completely random input too.
    for _ in 0..500 {
        let len = rng.below(1200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = read_bytes(&bytes, &limits);
        let _ = read_bytes(&gzip(&bytes), &limits);
    }
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}
