//! Writing: [`write_file`] writes a single-file NIfTI-1 (gzip when the name ends in `.gz`)
//! atomically, through a temporary file in the same folder that is synced and renamed;
//! [`write_bytes`] gives the same bytes in memory. The header itself is encoded in `header`.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::header::{Endian, NIFTI1_VOX_OFFSET, encode_nifti1_header};
use super::{CHUNK_BYTES, NiftiError, NiftiImage, VoxelData};
use crate::site::files::{AtomicWriteError, write_atomic};

/// Writes a single-file NIfTI-1 (gzip-compressed if the name ends in `.gz`), atomically: the
/// bytes go to a temporary file in the same folder, which is synced and renamed over `path`.
///
/// The sform holds the affine exactly (to float32); `pixdim[1..=3]` holds `img.pixdim`; the
/// qform is the rotation nearest to the affine's 3×3 part (qfac in `pixdim[0]`) with those
/// spacings, so it equals the affine whenever the affine is rigid with column norms equal to
/// `img.pixdim`. A singular 3×3 part gets no qform (`qform_code = 0`).
pub fn write_file(path: &Path, img: &NiftiImage) -> Result<(), NiftiError> {
    let header = encode_nifti1_header(img, Endian::Little)?;
    let gzip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    write_atomic(path, |file| {
        let mut out = BufWriter::new(file);
        if gzip {
            let mut enc = GzEncoder::new(out, Compression::default());
            write_nifti1(&mut enc, &header, &img.data, Endian::Little)?;
            out = enc.finish()?;
        } else {
            write_nifti1(&mut out, &header, &img.data, Endian::Little)?;
        }
        out.flush()
    })
    .map_err(|e| match e {
        AtomicWriteError::NoFileName => NiftiError::NoFileName {
            path: path.to_path_buf(),
        },
        AtomicWriteError::Io { action, source } => NiftiError::Io {
            action,
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The bytes [`write_file`] would write (gzip-compressed if `gzip`).
pub fn write_bytes(img: &NiftiImage, gzip: bool) -> Result<Vec<u8>, NiftiError> {
    encode(img, gzip, Endian::Little)
}

pub(super) fn encode(img: &NiftiImage, gzip: bool, endian: Endian) -> Result<Vec<u8>, NiftiError> {
    let header = encode_nifti1_header(img, endian)?;
    let read_err = |source| NiftiError::Read {
        compressed: gzip,
        source,
    };
    let mut out = Vec::new();
    if gzip {
        let mut enc = GzEncoder::new(&mut out, Compression::default());
        write_nifti1(&mut enc, &header, &img.data, endian).map_err(read_err)?;
        enc.finish().map_err(read_err)?;
    } else {
        write_nifti1(&mut out, &header, &img.data, endian).map_err(read_err)?;
    }
    Ok(out)
}

fn write_nifti1<W: Write>(
    w: &mut W,
    header: &[u8; NIFTI1_VOX_OFFSET],
    data: &VoxelData,
    endian: Endian,
) -> io::Result<()> {
    w.write_all(header)?;
    write_voxels(w, data, endian)?;
    w.flush()
}

fn write_values<T: Copy, const N: usize, W: Write>(
    w: &mut W,
    values: &[T],
    conv: fn(T) -> [u8; N],
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK_BYTES);
    for chunk in values.chunks(CHUNK_BYTES / N) {
        buf.clear();
        for &v in chunk {
            buf.extend_from_slice(&conv(v));
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

pub(super) fn write_voxels<W: Write>(
    w: &mut W,
    data: &VoxelData,
    endian: Endian,
) -> io::Result<()> {
    let big = endian == Endian::Big;
    macro_rules! typed {
        ($v:expr, $t:ty, $n:literal) => {{
            let conv: fn($t) -> [u8; $n] = if big {
                <$t>::to_be_bytes
            } else {
                <$t>::to_le_bytes
            };
            write_values(w, $v, conv)
        }};
    }
    match data {
        VoxelData::U8(v) => w.write_all(v),
        VoxelData::I8(v) => typed!(v, i8, 1),
        VoxelData::U16(v) => typed!(v, u16, 2),
        VoxelData::I16(v) => typed!(v, i16, 2),
        VoxelData::U32(v) => typed!(v, u32, 4),
        VoxelData::I32(v) => typed!(v, i32, 4),
        VoxelData::F32(v) => typed!(v, f32, 4),
        VoxelData::F64(v) => typed!(v, f64, 8),
    }
}
