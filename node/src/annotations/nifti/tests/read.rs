//! Reading valid input in every encoding: big-endian NIfTI-1, NIfTI-2 in both byte orders,
//! extensions before the data, gzip detected by magic, bounded decompression and the
//! normalisation of non-finite scaling fields.

use super::*;

#[test]
fn big_endian_nifti1_reads() {
    for dtype in DataType::ALL {
        let dim = [4, 3, 2];
        let img = NiftiImage::new(dim, [1.5, 1.0, 3.0], ITK_AFFINE, sample(dtype, dim)).unwrap();
        let be = encode(&img, false, Endian::Big).unwrap();
        assert_eq!(&be[0..4], &348i32.to_be_bytes());
        let back = read_bytes(&be, &NiftiLimits::default()).unwrap();
        assert_eq!(back.data, img.data);
        assert_affine_close(&back.affine, &img.affine, 1e-6);
        let back_gz = read_bytes(
            &encode(&img, true, Endian::Big).unwrap(),
            &NiftiLimits::default(),
        );
        assert_eq!(back_gz.unwrap(), back);
    }
}

#[test]
fn nifti2_reads_both_endians() {
    for endian in [Endian::Little, Endian::Big] {
        for dtype in [DataType::U8, DataType::I16, DataType::F64] {
            let dim = [3, 4, 5];
            let mut img =
                NiftiImage::new(dim, [0.7, 0.7, 1.25], ITK_AFFINE, sample(dtype, dim)).unwrap();
            img.affine[0][3] = 12.5;
            for back in read_both(&nifti2_bytes(&img, endian)) {
                assert_eq!(back.unwrap(), img, "{endian:?} {dtype:?}");
            }
        }
    }
}

#[test]
fn vox_offset_honoured() {
    let img = label_image([6, 5, 4]);
    let plain = write_bytes(&img, false).unwrap();
    // Insert an extension block (16 bytes of junk) before the data.
    let mut bytes = plain[..352].to_vec();
    bytes[348] = 1;
    bytes.extend_from_slice(&[0xAB; 16]);
    bytes.extend_from_slice(&plain[352..]);
    put_f32(&mut bytes, 108, 368.0);
    for back in read_both(&bytes) {
        assert_eq!(back.unwrap(), img);
    }
    // Data right after a 348-byte header, and an offset past 540 (beyond the header buffer).
    let mut at348 = plain[..348].to_vec();
    at348.extend_from_slice(&plain[352..]);
    put_f32(&mut at348, 108, 348.0);
    assert_eq!(read_bytes(&at348, &NiftiLimits::default()).unwrap(), img);
    let mut far = plain[..352].to_vec();
    far.resize(1000, 7);
    far.extend_from_slice(&plain[352..]);
    put_f32(&mut far, 108, 1000.0);
    for back in read_both(&far) {
        assert_eq!(back.unwrap(), img);
    }
    // An offset past the end of the file.
    let mut bad = plain.clone();
    put_f32(&mut bad, 108, 4000.0);
    for back in read_both(&bad) {
        assert!(matches!(back, Err(NiftiError::Truncated { .. })));
    }
    for v in [f32::NAN, -352.0, 100.0, 352.5, f32::INFINITY] {
        let mut bad = plain.clone();
        put_f32(&mut bad, 108, v);
        let err = read_bytes(&bad, &NiftiLimits::default()).unwrap_err();
        assert!(matches!(err, NiftiError::BadVoxOffset { .. }), "{v}: {err}");
    }
}

#[test]
fn gzip_detected_by_magic_not_name() {
    let dir = TempDir::new("magic");
    let img = label_image([3, 3, 3]);
    let gz_named_nii = dir.path("a.nii");
    fs::write(&gz_named_nii, write_bytes(&img, true).unwrap()).unwrap();
    assert_eq!(
        read_file(&gz_named_nii, &NiftiLimits::default()).unwrap(),
        img
    );
    let plain_named_gz = dir.path("b.nii.gz");
    fs::write(&plain_named_gz, write_bytes(&img, false).unwrap()).unwrap();
    assert_eq!(
        read_file(&plain_named_gz, &NiftiLimits::default()).unwrap(),
        img
    );
    let missing = read_file(&dir.path("missing.nii"), &NiftiLimits::default()).unwrap_err();
    assert!(
        matches!(missing, NiftiError::Io { action: "open", .. }),
        "{missing}"
    );
    assert!(!missing.to_string().contains("missing.nii"));
}

/// Counts the bytes a decoder hands out.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[test]
fn gzip_decompression_is_bounded() {
    let img = label_image([6, 5, 4]);
    let mut bytes = write_bytes(&img, false).unwrap();
    let declared = bytes.len() as u64;
    bytes.resize(bytes.len() + (64 << 20), 0); // 64 MiB of trailing zeros
    let gz = gzip(&bytes);
    assert!(gz.len() < 1 << 20);
    let mut counting = Counting {
        inner: MultiGzDecoder::new(gz.as_slice()),
        count: 0,
    };
    let back = read_stream(&mut counting, &NiftiLimits::default(), None, true, &|_| {
        Ok(())
    })
    .unwrap();
    assert_eq!(back, img);
    assert!(
        counting.count <= declared + GZIP_SLACK_BYTES,
        "read {}",
        counting.count
    );
}

#[test]
fn scaling_fields_normalised_on_read() {
    let mut bytes = valid_bytes();
    put_f32(&mut bytes, 112, f32::NAN);
    let img = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
    assert_eq!((img.scl_slope, img.scl_inter), (0.0, 0.0));
    put_f32(&mut bytes, 112, 2.0);
    put_f32(&mut bytes, 116, f32::INFINITY);
    let img = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
    assert_eq!((img.scl_slope, img.scl_inter), (2.0, 0.0));
}
