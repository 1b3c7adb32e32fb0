//! Reading: [`read_file`] and [`read_bytes`] detect gzip by its magic bytes, parse the header,
//! check every declared size against [`NiftiLimits`] and the bytes present *before* allocating
//! (`layout`), choose spacing and affine (sform, else qform, else `diag(pixdim)`), and read the
//! voxels chunk by chunk. Compressed input is decompressed only up to the declared end plus a
//! small slack. Nothing here panics on input.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::header::{Endian, Header, NIFTI2_HEADER_BYTES, parse_header};
use super::qform::quatern_to_mat44;
use super::{CHUNK_BYTES, DataType, NiftiError, NiftiImage, NiftiLimits, VoxelData};

/// The two first bytes of every gzip member.
pub(super) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Bytes decompressed past the declared end of the data to reach the gzip trailer (checksum).
pub(super) const GZIP_SLACK_BYTES: u64 = 64 * 1024;
/// Initial capacity (elements) when the real data length is not known in advance (gzip).
const UNKNOWN_LEN_INITIAL_CAPACITY: usize = 1 << 20;

/// Reads a `.nii` or `.nii.gz` file (gzip detected by its magic bytes, not by the name).
pub fn read_file(path: &Path, limits: &NiftiLimits) -> Result<NiftiImage, NiftiError> {
    read_file_expecting(path, limits, &|_| Ok(()))
}

/// What a NIfTI header says about the grid, before any voxel is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NiftiGeometry {
    pub dim: [usize; 3],
    pub pixdim: [f64; 3],
    pub affine: [[f64; 4]; 4],
}

/// Checks a header's geometry before the voxels are read; its message is the refusal.
pub type Expect<'a> = &'a dyn Fn(&NiftiGeometry) -> Result<(), String>;

/// [`read_file`], refusing the file as soon as its header fails `expect` (the grid a mask must
/// be on): a file that inflates to gigabytes on another grid costs only its header.
pub fn read_file_expecting(
    path: &Path,
    limits: &NiftiLimits,
    expect: Expect<'_>,
) -> Result<NiftiImage, NiftiError> {
    let io_err = |action: &'static str| {
        move |source| NiftiError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = File::open(path).map_err(io_err("open"))?;
    let len = file.metadata().map_err(io_err("read"))?.len();
    if len > limits.max_file_bytes {
        return Err(NiftiError::FileTooLarge {
            len,
            max: limits.max_file_bytes,
        });
    }
    let mut magic = [0u8; 2];
    let got = fill(&mut file, &mut magic).map_err(io_err("read"))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err("read"))?;
    let reader = BufReader::new(file.take(len));
    if got == GZIP_MAGIC.len() && magic == GZIP_MAGIC {
        read_stream(MultiGzDecoder::new(reader), limits, None, true, expect)
    } else {
        read_stream(reader, limits, Some(len), false, expect)
    }
}

/// Reads NIfTI bytes, gzip-compressed or not (detected by the magic bytes).
pub fn read_bytes(bytes: &[u8], limits: &NiftiLimits) -> Result<NiftiImage, NiftiError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > limits.max_file_bytes {
        return Err(NiftiError::FileTooLarge {
            len,
            max: limits.max_file_bytes,
        });
    }
    if bytes.starts_with(&GZIP_MAGIC) {
        read_stream(MultiGzDecoder::new(bytes), limits, None, true, &|_| Ok(()))
    } else {
        read_stream(bytes, limits, Some(len), false, &|_| Ok(()))
    }
}

/// Where the voxels are and how many there are, checked against the limits.
#[derive(Debug)]
struct Layout {
    dim: [usize; 3],
    dtype: DataType,
    count: usize,
    data_bytes: u64,
    offset: u64,
    end: u64,
}

fn layout(h: &Header, limits: &NiftiLimits) -> Result<Layout, NiftiError> {
    let ndim = h.dim[0];
    if !(2..=7).contains(&ndim) {
        return Err(NiftiError::DimCount { ndim });
    }
    let mut raw = [1i64; 3];
    for (axis, &value) in h.dim.iter().enumerate().skip(1) {
        if i64::try_from(axis).unwrap_or(i64::MAX) > ndim {
            break;
        }
        if value < 1 {
            return Err(NiftiError::BadDim { axis, value });
        }
        if axis >= 4 && value != 1 {
            return Err(NiftiError::NotThreeD { axis, value });
        }
        if let Some(slot) = raw.get_mut(axis - 1) {
            *slot = value;
        }
    }
    let dtype = DataType::from_code(h.datatype)
        .ok_or(NiftiError::UnsupportedDatatype { code: h.datatype })?;
    // All three are >= 1 here.
    let as_u64 = raw.map(|v| u64::try_from(v).unwrap_or(u64::MAX));
    let too_many = NiftiError::TooManyVoxels {
        dim: as_u64,
        max: limits.max_voxels,
    };
    let dim = match raw.map(usize::try_from) {
        [Ok(x), Ok(y), Ok(z)] => [x, y, z],
        _ => return Err(too_many),
    };
    let count = match dim[0]
        .checked_mul(dim[1])
        .and_then(|v| v.checked_mul(dim[2]))
    {
        Some(c) if c <= limits.max_voxels => c,
        _ => return Err(too_many),
    };
    let elem = dtype.size_bytes() as u64;
    let count64 = u64::try_from(count).unwrap_or(u64::MAX);
    let too_big = NiftiError::TooManyBytes {
        needed: u128::from(h.vox_offset) + u128::from(count64) * u128::from(elem),
        max: limits.max_file_bytes,
    };
    let Some(data_bytes) = count64.checked_mul(elem) else {
        return Err(too_big);
    };
    match h.vox_offset.checked_add(data_bytes) {
        Some(end) if end <= limits.max_file_bytes => Ok(Layout {
            dim,
            dtype,
            count,
            data_bytes,
            offset: h.vox_offset,
            end,
        }),
        _ => Err(too_big),
    }
}

/// Spacing from `pixdim[1..=3]`: absolute values; 0 is accepted (as 1 mm) only on an axis of
/// size 1, where many 2D writers leave it.
fn spacing(h: &Header, dim: [usize; 3]) -> Result<[f64; 3], NiftiError> {
    let mut out = [1.0f64; 3];
    for (i, (slot, &n)) in out.iter_mut().zip(dim.iter()).enumerate() {
        let axis = i + 1;
        let value = h.pixdim.get(axis).copied().unwrap_or(f64::NAN);
        let a = value.abs();
        *slot = if a.is_finite() && a > 0.0 {
            a
        } else if value == 0.0 && n == 1 {
            1.0
        } else {
            return Err(NiftiError::BadPixdim { axis, value });
        };
    }
    Ok(out)
}

fn header_affine(h: &Header, pixdim: [f64; 3]) -> Result<[[f64; 4]; 4], NiftiError> {
    let (m, which) = if h.sform_code > 0 {
        let [r0, r1, r2] = h.srow;
        ([r0, r1, r2, [0.0, 0.0, 0.0, 1.0]], "sform")
    } else if h.qform_code > 0 {
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        (
            quatern_to_mat44(h.quatern, h.qoffset, pixdim, qfac),
            "qform",
        )
    } else {
        (diag_affine(pixdim), "affine")
    };
    if m.iter().flatten().all(|v| v.is_finite()) {
        Ok(m)
    } else {
        Err(NiftiError::BadAffine { which })
    }
}

pub(super) fn diag_affine(p: [f64; 3]) -> [[f64; 4]; 4] {
    [
        [p[0], 0.0, 0.0, 0.0],
        [0.0, p[1], 0.0, 0.0],
        [0.0, 0.0, p[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Moves `r` to the voxel data at `offset`, `consumed` bytes (`head`) having been read: returns
/// the part of `head` that is already data. `Err(None)` when the input ends before `offset`.
fn skip_to_data<'h, R: Read>(
    r: &mut R,
    head: &'h [u8],
    consumed: u64,
    offset: u64,
) -> Result<&'h [u8], Option<io::Error>> {
    if offset < consumed {
        return Ok(usize::try_from(offset)
            .ok()
            .and_then(|o| head.get(o..))
            .unwrap_or_default());
    }
    let skip = offset - consumed;
    let skipped = io::copy(&mut r.take(skip), &mut io::sink()).or_else(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(0)
        } else {
            Err(Some(e))
        }
    })?;
    if skipped < skip {
        return Err(None);
    }
    Ok(&[])
}

/// `scl_slope` and `scl_inter` as applied: (0, 0) when the slope is not finite, an intercept
/// that is not finite as 0.
fn scaling(h: &Header) -> (f64, f64) {
    if h.scl_slope.is_finite() {
        (
            h.scl_slope,
            if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        )
    } else {
        (0.0, 0.0)
    }
}

/// Reads up to `buf.len()` bytes; returns how many were read (fewer only at end of input).
/// A decoder's "unexpected end of file" counts as the end of input.
fn fill<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0usize;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n.min(rest.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

enum DataReadError {
    /// Input ended after this many data bytes.
    Short(u64),
    Io(io::Error),
}

/// Reads `count` values of `N` bytes each, converting them chunk by chunk.
fn read_vec<T, const N: usize, R: Read>(
    r: &mut R,
    count: usize,
    capacity: usize,
    conv: fn([u8; N]) -> T,
) -> Result<Vec<T>, DataReadError> {
    let mut out = Vec::with_capacity(capacity.min(count));
    let mut buf = vec![0u8; CHUNK_BYTES];
    let per_chunk = CHUNK_BYTES / N;
    let mut remaining = count;
    while remaining > 0 {
        let elems = remaining.min(per_chunk);
        let want = elems.saturating_mul(N);
        let Some(slot) = buf.get_mut(..want) else {
            return Err(DataReadError::Short(0));
        };
        let got = fill(r, slot).map_err(DataReadError::Io)?;
        let filled = slot.get(..got).unwrap_or_default();
        let (chunks, _) = filled.as_chunks::<N>();
        out.extend(chunks.iter().map(|c| conv(*c)));
        if got < want {
            let bytes = out.len().saturating_mul(N).saturating_add(got % N);
            return Err(DataReadError::Short(
                u64::try_from(bytes).unwrap_or(u64::MAX),
            ));
        }
        remaining -= elems;
    }
    Ok(out)
}

fn read_voxels<R: Read>(
    r: &mut R,
    dtype: DataType,
    count: usize,
    capacity: usize,
    endian: Endian,
) -> Result<VoxelData, DataReadError> {
    let big = endian == Endian::Big;
    macro_rules! typed {
        ($var:ident, $t:ty, $n:literal) => {{
            let conv: fn([u8; $n]) -> $t = if big {
                <$t>::from_be_bytes
            } else {
                <$t>::from_le_bytes
            };
            VoxelData::$var(read_vec::<$t, $n, R>(r, count, capacity, conv)?)
        }};
    }
    Ok(match dtype {
        DataType::U8 => typed!(U8, u8, 1),
        DataType::I8 => typed!(I8, i8, 1),
        DataType::U16 => typed!(U16, u16, 2),
        DataType::I16 => typed!(I16, i16, 2),
        DataType::U32 => typed!(U32, u32, 4),
        DataType::I32 => typed!(I32, i32, 4),
        DataType::F32 => typed!(F32, f32, 4),
        DataType::F64 => typed!(F64, f64, 8),
    })
}

/// Reads a whole image from a stream. `known_len` is the exact input length when known
/// (uncompressed input); compressed input is bounded by reading only what the header declares.
pub(super) fn read_stream<R: Read>(
    mut r: R,
    limits: &NiftiLimits,
    known_len: Option<u64>,
    compressed: bool,
    expect: Expect<'_>,
) -> Result<NiftiImage, NiftiError> {
    let read_err = |source| NiftiError::Read { compressed, source };
    let mut head_buf = [0u8; NIFTI2_HEADER_BYTES];
    let got = fill(&mut r, &mut head_buf).map_err(read_err)?;
    let head = head_buf.get(..got).unwrap_or_default();
    let header = parse_header(head)?;
    let lay = layout(&header, limits)?;
    let pixdim = spacing(&header, lay.dim)?;
    let affine = header_affine(&header, pixdim)?;
    expect(&NiftiGeometry {
        dim: lay.dim,
        pixdim,
        affine,
    })
    .map_err(NiftiError::Unexpected)?;
    let truncated = |available: u64| NiftiError::Truncated {
        dim: lay.dim,
        dtype: lay.dtype.name(),
        needed: lay.data_bytes,
        available,
    };
    if let Some(len) = known_len
        && lay.end > len
    {
        return Err(truncated(len.saturating_sub(lay.offset)));
    }

    // Position at the voxel data: part of it may already be in `head_buf`.
    let consumed = u64::try_from(got).unwrap_or(u64::MAX);
    let leftover = skip_to_data(&mut r, head, consumed, lay.offset)
        .map_err(|e| e.map_or_else(|| truncated(0), read_err))?;
    let mut src = leftover.chain(&mut r);
    let capacity = if known_len.is_some() {
        lay.count
    } else {
        UNKNOWN_LEN_INITIAL_CAPACITY
    };
    let data = read_voxels(&mut src, lay.dtype, lay.count, capacity, header.endian).map_err(
        |e| match e {
            DataReadError::Short(n) => truncated(n),
            DataReadError::Io(source) => read_err(source),
        },
    )?;
    if compressed {
        // Let the decoder reach the gzip trailer so that its checksum is verified, reading at
        // most a small slack past the declared end (trailing bytes are otherwise ignored).
        io::copy(&mut src.take(GZIP_SLACK_BYTES), &mut io::sink()).map_err(read_err)?;
    }

    let (scl_slope, scl_inter) = scaling(&header);
    Ok(NiftiImage {
        dim: lay.dim,
        pixdim,
        affine,
        scl_slope,
        scl_inter,
        data,
    })
}
