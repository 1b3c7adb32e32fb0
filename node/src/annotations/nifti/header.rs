//! The byte layout of NIfTI headers: parsing the 348-byte NIfTI-1 and 540-byte NIfTI-2 headers
//! (either byte order, every field read through a bounds-checked accessor) into the fields
//! fedanno uses, and encoding the 352-byte NIfTI-1 header that fedanno writes (sform and qform
//! from the affine). What the fields mean for an image (limits, spacing, affine) is decided in
//! `read`; nothing here allocates in proportion to a declared size.

use super::qform::mat44_to_quatern;
use super::{NiftiError, NiftiImage};

/// Size of a NIfTI-1 header.
pub(super) const NIFTI1_HEADER_BYTES: usize = 348;
/// Size of a NIfTI-2 header.
pub(super) const NIFTI2_HEADER_BYTES: usize = 540;
/// Where the voxel data starts in the files we write (header + 4 extension-flag bytes).
pub(super) const NIFTI1_VOX_OFFSET: usize = 352;
/// `xyzt_units` value for millimetres.
const NIFTI_UNITS_MM: u8 = 2;
/// `qform_code` / `sform_code` we write: NIFTI_XFORM_SCANNER_ANAT, as ITK/SimpleITK do.
const XFORM_SCANNER_ANAT: i16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endian {
    Little,
    Big,
}

/// The header fields fedanno uses, widened to NIfTI-2 types.
#[derive(Debug)]
pub(super) struct Header {
    pub(super) endian: Endian,
    pub(super) dim: [i64; 8],
    pub(super) datatype: i32,
    pub(super) pixdim: [f64; 8],
    pub(super) vox_offset: u64,
    pub(super) scl_slope: f64,
    pub(super) scl_inter: f64,
    pub(super) qform_code: i32,
    pub(super) sform_code: i32,
    pub(super) quatern: [f64; 3],
    pub(super) qoffset: [f64; 3],
    pub(super) srow: [[f64; 4]; 3],
}

/// Bounds-checked typed access to a header buffer.
struct Fields<'a> {
    b: &'a [u8],
    endian: Endian,
}

macro_rules! getter {
    ($name:ident, $t:ty, $n:literal) => {
        fn $name(&self, off: usize) -> Result<$t, NiftiError> {
            let raw: [u8; $n] = self.raw(off)?;
            Ok(match self.endian {
                Endian::Little => <$t>::from_le_bytes(raw),
                Endian::Big => <$t>::from_be_bytes(raw),
            })
        }
    };
}

impl Fields<'_> {
    fn raw<const N: usize>(&self, off: usize) -> Result<[u8; N], NiftiError> {
        self.b
            .get(off..off.saturating_add(N))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(NiftiError::TooShort {
                len: u64::try_from(self.b.len()).unwrap_or(u64::MAX),
                need: off.saturating_add(N),
            })
    }

    getter!(i16, i16, 2);
    getter!(i32, i32, 4);
    getter!(i64, i64, 8);
    getter!(f32, f32, 4);
    getter!(f64, f64, 8);

    /// A signed integer of `width` bytes (2, 4 or 8).
    fn int(&self, off: usize, width: usize) -> Result<i64, NiftiError> {
        match width {
            2 => self.i16(off).map(i64::from),
            4 => self.i32(off).map(i64::from),
            _ => self.i64(off),
        }
    }

    /// A float of `width` bytes (4 or 8).
    fn float(&self, off: usize, width: usize) -> Result<f64, NiftiError> {
        match width {
            4 => self.f32(off).map(f64::from),
            _ => self.f64(off),
        }
    }
}

/// Where a header version keeps the fields fedanno reads, and their widths. Fields that follow
/// each other are found from the first: `scl_inter` after `scl_slope`, `sform_code` after
/// `qform_code`, `qoffset` after `quatern`, the rows of `srow` one after another.
struct Layout {
    version: u8,
    magic: usize,
    datatype: usize,
    dim: usize,
    dim_width: usize,
    pixdim: usize,
    float_width: usize,
    vox_offset: usize,
    scl_slope: usize,
    qform_code: usize,
    code_width: usize,
    quatern: usize,
    srow: usize,
}

const NIFTI1: Layout = Layout {
    version: 1,
    magic: 344,
    datatype: 70,
    dim: 40,
    dim_width: 2,
    pixdim: 76,
    float_width: 4,
    vox_offset: 108,
    scl_slope: 112,
    qform_code: 252,
    code_width: 2,
    quatern: 256,
    srow: 280,
};

const NIFTI2: Layout = Layout {
    version: 2,
    magic: 4,
    datatype: 12,
    dim: 16,
    dim_width: 8,
    pixdim: 104,
    float_width: 8,
    vox_offset: 168,
    scl_slope: 176,
    qform_code: 344,
    code_width: 4,
    quatern: 352,
    srow: 400,
};

pub(super) fn parse_header(b: &[u8]) -> Result<Header, NiftiError> {
    let len = u64::try_from(b.len()).unwrap_or(u64::MAX);
    let too_short = |need| NiftiError::TooShort { len, need };
    let first: [u8; 4] = b
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .ok_or(too_short(NIFTI1_HEADER_BYTES))?;
    let (layout, endian) = match (i32::from_le_bytes(first), i32::from_be_bytes(first)) {
        (348, _) => (&NIFTI1, Endian::Little),
        (540, _) => (&NIFTI2, Endian::Little),
        (_, 348) => (&NIFTI1, Endian::Big),
        (_, 540) => (&NIFTI2, Endian::Big),
        _ if b.len() < NIFTI1_HEADER_BYTES => return Err(too_short(NIFTI1_HEADER_BYTES)),
        _ => return Err(NiftiError::UnknownHeaderSize),
    };
    let header_bytes = if layout.version == 1 {
        NIFTI1_HEADER_BYTES
    } else {
        NIFTI2_HEADER_BYTES
    };
    if b.len() < header_bytes {
        return Err(too_short(header_bytes));
    }
    parse_fields(&Fields { b, endian }, layout)
}

fn parse_fields(f: &Fields<'_>, l: &Layout) -> Result<Header, NiftiError> {
    // NIfTI-2's 8-byte magic is "n+2\0\r\n\x1a\n"; only the first 4 bytes are checked, as the
    // rest is a line-ending canary that some converters mangle.
    let digit = b'0' + l.version;
    match f.raw::<4>(l.magic)? {
        [b'n', b'+', d, 0] if d == digit => {}
        [b'n', b'i', d, 0] if d == digit => return Err(NiftiError::PairNotSupported),
        _ => return Err(NiftiError::BadMagic { version: l.version }),
    }
    let (fw, cw) = (l.float_width, l.code_width);
    let mut dim = [0i64; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        *d = f.int(l.dim + l.dim_width * i, l.dim_width)?;
    }
    let mut pixdim = [0f64; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = f.float(l.pixdim + fw * i, fw)?;
    }
    let vox_offset = if l.version == 1 {
        vox_offset_from_float(f.f32(l.vox_offset).map(f64::from)?, NIFTI1_HEADER_BYTES)?
    } else {
        vox_offset_from_int(f.i64(l.vox_offset)?)?
    };
    let mut srow = [[0f64; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = f.float(l.srow + 4 * fw * r + fw * c, fw)?;
        }
    }
    let three = |at: usize| -> Result<[f64; 3], NiftiError> {
        Ok([
            f.float(at, fw)?,
            f.float(at + fw, fw)?,
            f.float(at + 2 * fw, fw)?,
        ])
    };
    let code = |at: usize| -> Result<i32, NiftiError> {
        if cw == 2 {
            f.i16(at).map(i32::from)
        } else {
            f.i32(at)
        }
    };
    Ok(Header {
        endian: f.endian,
        dim,
        datatype: i32::from(f.i16(l.datatype)?),
        pixdim,
        vox_offset,
        scl_slope: f.float(l.scl_slope, fw)?,
        scl_inter: f.float(l.scl_slope + fw, fw)?,
        qform_code: code(l.qform_code)?,
        sform_code: code(l.qform_code + cw)?,
        quatern: three(l.quatern)?,
        qoffset: three(l.quatern + 3 * fw)?,
        srow,
    })
}

/// NIfTI-2 stores `vox_offset` as an integer: 0 means right after the header and its 4
/// extension-flag bytes; anything else must lie at or after the header.
fn vox_offset_from_int(value: i64) -> Result<u64, NiftiError> {
    match u64::try_from(value) {
        Ok(0) => Ok(NIFTI2_HEADER_BYTES as u64 + 4),
        Ok(v) if v >= NIFTI2_HEADER_BYTES as u64 => Ok(v),
        _ => Err(NiftiError::BadVoxOffset {
            value: value as f64,
            header_bytes: NIFTI2_HEADER_BYTES,
        }),
    }
}

/// NIfTI-1 stores `vox_offset` as a float. 0 (seen in old single-file writers) means "right after
/// the header and its 4 extension-flag bytes"; anything else must be a whole number at or after
/// the header.
fn vox_offset_from_float(value: f64, header_bytes: usize) -> Result<u64, NiftiError> {
    if value == 0.0 {
        return Ok(header_bytes as u64 + 4);
    }
    // 2^53: far above any limit, and every whole f64 below it converts exactly.
    let ok = value.is_finite()
        && value.fract() == 0.0
        && value >= header_bytes as f64
        && value < 9_007_199_254_740_992.0;
    if ok {
        Ok(value as u64)
    } else {
        Err(NiftiError::BadVoxOffset {
            value,
            header_bytes,
        })
    }
}

/// Bounds-checked typed writes into a header buffer.
struct Out<'a> {
    b: &'a mut [u8],
    endian: Endian,
}

impl Out<'_> {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        if let Some(dst) = self.b.get_mut(off..off.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }
    /// A number's bytes in the header's byte order.
    fn num<const N: usize>(&mut self, off: usize, le: [u8; N], be: [u8; N]) {
        let b = if self.endian == Endian::Big { be } else { le };
        self.put(off, &b);
    }
    fn i16(&mut self, off: usize, v: i16) {
        self.num(off, v.to_le_bytes(), v.to_be_bytes());
    }
    fn i32(&mut self, off: usize, v: i32) {
        self.num(off, v.to_le_bytes(), v.to_be_bytes());
    }
    fn f32(&mut self, off: usize, v: f32) {
        self.num(off, v.to_le_bytes(), v.to_be_bytes());
    }
}

/// A finite f64 that a float32 header field can hold.
fn to_f32(field: &'static str, value: f64) -> Result<f32, NiftiError> {
    if value.is_finite() && value.abs() <= f64::from(f32::MAX) {
        Ok(value as f32)
    } else {
        Err(NiftiError::Unrepresentable { field, value })
    }
}

pub(super) fn encode_nifti1_header(
    img: &NiftiImage,
    endian: Endian,
) -> Result<[u8; NIFTI1_VOX_OFFSET], NiftiError> {
    img.validate()?;
    let mut buf = [0u8; NIFTI1_VOX_OFFSET];
    let mut h = Out {
        b: &mut buf,
        endian,
    };
    h.i32(0, NIFTI1_HEADER_BYTES as i32);
    h.put(38, b"r"); // `regular`, as most writers set it
    let mut dims = [3i16, 1, 1, 1, 1, 1, 1, 1];
    for (i, (&n, slot)) in img.dim.iter().zip(dims.iter_mut().skip(1)).enumerate() {
        *slot = i16::try_from(n).map_err(|_| NiftiError::Unrepresentable {
            field: ["dim[1]", "dim[2]", "dim[3]"]
                .get(i)
                .copied()
                .unwrap_or("dim"),
            value: n as f64,
        })?;
    }
    for (i, &d) in dims.iter().enumerate() {
        h.i16(40 + 2 * i, d);
    }
    let dtype = img.data.datatype();
    h.i16(70, dtype.code());
    h.i16(72, (dtype.size_bytes() * 8) as i16);

    let q = mat44_to_quatern(&img.affine);
    let qfac = q.as_ref().map_or(1.0, |q| q.qfac);
    let pixdim = [
        qfac,
        to_f32("pixdim[1]", img.pixdim[0])?,
        to_f32("pixdim[2]", img.pixdim[1])?,
        to_f32("pixdim[3]", img.pixdim[2])?,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (i, &p) in pixdim.iter().enumerate() {
        h.f32(76 + 4 * i, p);
    }
    h.f32(108, NIFTI1_VOX_OFFSET as f32);
    h.f32(112, to_f32("scl_slope", img.scl_slope)?);
    h.f32(116, to_f32("scl_inter", img.scl_inter)?);
    h.put(123, &[NIFTI_UNITS_MM]);
    h.put(148, b"fedanno");

    for (r, row) in img.affine.iter().take(3).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            h.f32(280 + 16 * r + 4 * c, to_f32("affine", v)?);
        }
    }
    h.i16(254, XFORM_SCANNER_ANAT);
    if let Some(q) = q {
        h.i16(252, XFORM_SCANNER_ANAT);
        for (i, &v) in [q.b, q.c, q.d].iter().enumerate() {
            h.f32(256 + 4 * i, to_f32("quatern", v)?);
        }
    }
    for (i, row) in img.affine.iter().take(3).enumerate() {
        h.f32(268 + 4 * i, to_f32("affine", row[3])?);
    }
    h.put(344, b"n+1\0");
    Ok(buf)
}
