//! NIfTI-1 / NIfTI-2 segmentation and image files: reading (`.nii`, `.nii.gz`) and writing.
//!
//! This module owns the whole NIfTI format for fedanno and nothing else: it turns untrusted bytes
//! into a [`NiftiImage`] (grid size, spacing, voxel-to-RAS+ affine, intensity scaling and voxel
//! values) and writes a [`NiftiImage`] back as a single-file NIfTI-1. Geometry checks against a
//! DICOM series, label semantics and storage live elsewhere.
//!
//! Reading:
//! - NIfTI-1 (348-byte header) and NIfTI-2 (540-byte header), either byte order (detected from
//!   `sizeof_hdr`), single-file only (`n+1` / `n+2`; `.hdr`/`.img` pairs are refused clearly).
//! - gzip is detected by its magic bytes, not by the file name.
//! - 2D and 3D images (`dim[0]` 2..=7, with `dim[4..]` equal to 1); datatypes uint8, int8,
//!   uint16, int16, uint32, int32, float32 and float64. Everything else is refused with a clear
//!   error. `bitpix` is ignored: the datatype code alone decides the voxel size.
//! - The affine is the sform if `sform_code > 0`, else the qform if `qform_code > 0` (converted as
//!   nifti1_io's `quatern_to_mat44`, with qfac from `pixdim[0]`), else `diag(pixdim)`.
//! - Untrusted input: every declared size is computed with checked arithmetic and compared with
//!   [`NiftiLimits`] and with the bytes actually available *before* anything proportional to it is
//!   allocated; gzip input is decompressed only up to the declared header + data + a small slack
//!   (which lets the gzip checksum be verified), never further. Nothing here panics on input.
//!
//! Writing: single-file NIfTI-1 (`n+1`), little-endian, 352-byte header (`vox_offset` 352),
//! gzip-compressed when the name ends in `.gz`, atomically (temporary file in the same folder,
//! then rename). sform and qform are both set from the affine (`qform_code = sform_code = 1`).
//!
//! Errors: [`NiftiError`]'s `Display` is meant for a hospital user. It never contains file
//! contents or file paths (a path may name a patient); the path is kept in a field so that the
//! caller can decide what to show.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;

/// Size of a NIfTI-1 header.
const NIFTI1_HEADER_BYTES: usize = 348;
/// Size of a NIfTI-2 header.
const NIFTI2_HEADER_BYTES: usize = 540;
/// Where the voxel data starts in the files we write (header + 4 extension-flag bytes).
const NIFTI1_VOX_OFFSET: usize = 352;
/// The two first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Read/convert buffer size; a multiple of every voxel size.
const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes decompressed past the declared end of the data to reach the gzip trailer (checksum).
const GZIP_SLACK_BYTES: u64 = 64 * 1024;
/// Initial capacity (elements) when the real data length is not known in advance (gzip).
const UNKNOWN_LEN_INITIAL_CAPACITY: usize = 1 << 20;
/// `xyzt_units` value for millimetres.
const NIFTI_UNITS_MM: u8 = 2;
/// `qform_code` / `sform_code` we write: NIFTI_XFORM_SCANNER_ANAT, as ITK/SimpleITK do.
const XFORM_SCANNER_ANAT: i16 = 1;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// A voxel type that fedanno reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `DT_UINT8` (2)
    U8,
    /// `DT_INT8` (256)
    I8,
    /// `DT_UINT16` (512)
    U16,
    /// `DT_INT16` (4)
    I16,
    /// `DT_UINT32` (768)
    U32,
    /// `DT_INT32` (8)
    I32,
    /// `DT_FLOAT32` (16)
    F32,
    /// `DT_FLOAT64` (64)
    F64,
}

impl DataType {
    /// All supported types.
    pub const ALL: [DataType; 8] = [
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::F32,
        DataType::F64,
    ];

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
        }
    }

    /// The supported type with this NIfTI `datatype` code, if any.
    pub fn from_code(code: i32) -> Option<DataType> {
        DataType::ALL
            .into_iter()
            .find(|t| i32::from(t.code()) == code)
    }

    /// Bytes per voxel.
    pub fn size_bytes(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::F64 => 8,
        }
    }

    /// Human-readable name ("uint8", "float32", ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::U16 => "uint16",
            DataType::I16 => "int16",
            DataType::U32 => "uint32",
            DataType::I32 => "int32",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }
}

/// Name of any NIfTI datatype code, for error messages.
fn datatype_code_name(code: i32) -> &'static str {
    if let Some(t) = DataType::from_code(code) {
        return t.name();
    }
    match code {
        0 => "unknown",
        1 => "binary (1 bit)",
        32 => "complex64",
        128 => "RGB24",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "RGBA32",
        _ => "not a NIfTI type",
    }
}

/// Voxel values, x varying fastest, then y, then z.
#[derive(Clone, Debug, PartialEq)]
pub enum VoxelData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl VoxelData {
    /// Number of voxels held.
    pub fn len(&self) -> usize {
        match self {
            VoxelData::U8(v) => v.len(),
            VoxelData::I8(v) => v.len(),
            VoxelData::U16(v) => v.len(),
            VoxelData::I16(v) => v.len(),
            VoxelData::U32(v) => v.len(),
            VoxelData::I32(v) => v.len(),
            VoxelData::F32(v) => v.len(),
            VoxelData::F64(v) => v.len(),
        }
    }

    /// True when no voxel is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The voxel type.
    pub fn datatype(&self) -> DataType {
        match self {
            VoxelData::U8(_) => DataType::U8,
            VoxelData::I8(_) => DataType::I8,
            VoxelData::U16(_) => DataType::U16,
            VoxelData::I16(_) => DataType::I16,
            VoxelData::U32(_) => DataType::U32,
            VoxelData::I32(_) => DataType::I32,
            VoxelData::F32(_) => DataType::F32,
            VoxelData::F64(_) => DataType::F64,
        }
    }
}

/// A 2D or 3D NIfTI image (a 2D image has `nz = 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiImage {
    /// Grid size (nx, ny, nz); x varies fastest in `data`.
    pub dim: [usize; 3],
    /// Voxel spacing in mm (dx, dy, dz), positive (`pixdim[1..=3]`, absolute values).
    pub pixdim: [f64; 3],
    /// Voxel (i, j, k, 1) to RAS+ mm: the sform if `sform_code > 0`, else the qform if
    /// `qform_code > 0`, else `diag(pixdim)`.
    pub affine: [[f64; 4]; 4],
    /// `scl_slope` (0 means "no scaling"; a non-finite value in a file is read as 0).
    pub scl_slope: f64,
    /// `scl_inter` (a non-finite value in a file is read as 0).
    pub scl_inter: f64,
    /// Stored (unscaled) voxel values.
    pub data: VoxelData,
}

/// Upper bounds applied to untrusted input before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NiftiLimits {
    /// Largest accepted nx·ny·nz.
    pub max_voxels: usize,
    /// Largest accepted file on disk, and largest declared `vox_offset + data` size.
    pub max_file_bytes: u64,
}

impl Default for NiftiLimits {
    /// 2^31 voxels, 4 GiB.
    fn default() -> Self {
        NiftiLimits {
            max_voxels: 1 << 31,
            max_file_bytes: 4 << 30,
        }
    }
}

/// Everything that can go wrong reading, writing or converting a NIfTI image.
///
/// `Display` never shows file contents or paths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NiftiError {
    /// Opening, creating, writing or renaming a file failed.
    #[error("could not {action} the NIfTI file: {source}")]
    Io {
        /// "open", "read", "create", "write", "replace".
        action: &'static str,
        /// The file concerned (not shown by `Display`).
        path: PathBuf,
        source: io::Error,
    },
    /// Reading the stream failed (I/O error or corrupt gzip data).
    #[error("{}: {source}", if *.compressed { "the gzip-compressed NIfTI file is corrupt or unreadable" } else { "could not read the NIfTI data" })]
    Read { compressed: bool, source: io::Error },
    /// Fewer bytes than a header.
    #[error("not a NIfTI file: it holds {len} bytes, fewer than the {need}-byte header")]
    TooShort { len: u64, need: usize },
    /// `sizeof_hdr` is neither 348 nor 540 in either byte order.
    #[error(
        "not a NIfTI file: the header size field is neither 348 (NIfTI-1) nor 540 (NIfTI-2) in \
         either byte order"
    )]
    UnknownHeaderSize,
    /// The magic string is wrong.
    #[error("not a NIfTI-{version} file: the header's magic string is not \"n+{version}\"")]
    BadMagic { version: u8 },
    /// A `.hdr`/`.img` pair header (magic `ni1` / `ni2`).
    #[error(
        "this is the header of a two-file NIfTI pair (.hdr/.img), which is not supported: \
         convert it to a single .nii or .nii.gz file"
    )]
    PairNotSupported,
    /// `dim[0]` outside 2..=7.
    #[error(
        "unsupported NIfTI dimension count dim[0] = {ndim}: a 2D or 3D image is expected \
         (dim[0] from 2 to 7, with dimensions 4 to 7 of size 1)"
    )]
    DimCount { ndim: i64 },
    /// A grid size below 1.
    #[error("invalid NIfTI image size: dim[{axis}] = {value}, but every size must be at least 1")]
    BadDim { axis: usize, value: i64 },
    /// A 4th..7th dimension larger than 1.
    #[error(
        "only 2D and 3D NIfTI images are supported, but dim[{axis}] = {value} (a time series or \
         a multi-component image?)"
    )]
    NotThreeD { axis: usize, value: i64 },
    /// A datatype code that fedanno does not handle.
    #[error(
        "unsupported NIfTI voxel type {} (datatype code {code}): supported are uint8, int8, \
         uint16, int16, uint32, int32, float32 and float64",
        datatype_code_name(*.code)
    )]
    UnsupportedDatatype { code: i32 },
    /// nx·ny·nz above [`NiftiLimits::max_voxels`] (or overflowing).
    #[error(
        "NIfTI image too large: the header declares {}×{}×{} voxels, more than the limit of {max}",
        .dim[0], .dim[1], .dim[2]
    )]
    TooManyVoxels { dim: [u64; 3], max: usize },
    /// `vox_offset + data` above [`NiftiLimits::max_file_bytes`].
    #[error(
        "NIfTI image too large: the header declares {needed} bytes (offset plus voxel data), \
         more than the limit of {max}"
    )]
    TooManyBytes { needed: u128, max: u64 },
    /// The file itself is above [`NiftiLimits::max_file_bytes`].
    #[error("NIfTI file too large: {len} bytes, more than the limit of {max}")]
    FileTooLarge { len: u64, max: u64 },
    /// `vox_offset` not a whole number at or after the header.
    #[error(
        "invalid NIfTI voxel data offset vox_offset = {value}: it must be a whole number of bytes \
         at or after the {header_bytes}-byte header"
    )]
    BadVoxOffset { value: f64, header_bytes: usize },
    /// Fewer data bytes than declared.
    #[error(
        "NIfTI data truncated: header declares {}×{}×{} {dtype} voxels ({needed} bytes) but the \
         file holds {available} bytes of voxel data",
        .dim[0], .dim[1], .dim[2]
    )]
    Truncated {
        dim: [usize; 3],
        dtype: &'static str,
        needed: u64,
        available: u64,
    },
    /// A spacing that is not finite and positive.
    #[error(
        "invalid NIfTI voxel spacing pixdim[{axis}] = {value}: it must be a positive number of mm"
    )]
    BadPixdim { axis: usize, value: f64 },
    /// An sform/qform/affine with non-finite entries.
    #[error("invalid NIfTI {which}: it contains values that are not finite numbers")]
    BadAffine { which: &'static str },
    /// A value that a NIfTI-1 header cannot hold.
    #[error("cannot write NIfTI-1: {field} = {value} does not fit the header")]
    Unrepresentable { field: &'static str, value: f64 },
    /// The data length does not match the grid.
    #[error("voxel data holds {actual} values but the image size {}×{}×{} needs {expected}", .dim[0], .dim[1], .dim[2])]
    DataLength {
        dim: [usize; 3],
        expected: usize,
        actual: usize,
    },
    /// A voxel that is not a label 0..=255.
    #[error(
        "voxel ({}, {}, {}) holds {value}{}, which is not a label: labels must be whole numbers \
         from 0 to 255",
        .voxel[0], .voxel[1], .voxel[2],
        if *.scaled { " after scl_slope/scl_inter scaling" } else { "" }
    )]
    NotALabel {
        voxel: [usize; 3],
        value: f64,
        scaled: bool,
    },
    /// The output path has no file name.
    #[error("cannot write a NIfTI file to a path without a file name")]
    NoFileName { path: PathBuf },
}

// ---------------------------------------------------------------------------------------------
// NiftiImage
// ---------------------------------------------------------------------------------------------

impl NiftiImage {
    /// An image from its parts, with no intensity scaling (`scl_slope = 1`, `scl_inter = 0`).
    /// Checks that `data` holds `nx·ny·nz` values and that spacing and affine are valid.
    pub fn new(
        dim: [usize; 3],
        pixdim: [f64; 3],
        affine: [[f64; 4]; 4],
        data: VoxelData,
    ) -> Result<Self, NiftiError> {
        let img = NiftiImage {
            dim,
            pixdim,
            affine,
            scl_slope: 1.0,
            scl_inter: 0.0,
            data,
        };
        img.validate()?;
        Ok(img)
    }

    /// A uint8 label image (see [`NiftiImage::new`]).
    pub fn from_u8(
        dim: [usize; 3],
        pixdim: [f64; 3],
        affine: [[f64; 4]; 4],
        data: Vec<u8>,
    ) -> Result<Self, NiftiError> {
        NiftiImage::new(dim, pixdim, affine, VoxelData::U8(data))
    }

    /// nx·ny·nz (saturating).
    pub fn voxel_count(&self) -> usize {
        self.dim
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// `Some((slope, inter))` when the stored values must be scaled: `slope != 0` and not the
    /// identity `(1, 0)`.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let identity = self.scl_slope == 1.0 && self.scl_inter == 0.0;
        (self.scl_slope != 0.0 && !identity).then_some((self.scl_slope, self.scl_inter))
    }

    /// The voxel values as labels 0..=255 (after `scl_slope`/`scl_inter` when they apply).
    /// Any value that is not a whole number in 0..=255 is an error naming it and its voxel.
    pub fn to_labels_u8(&self) -> Result<Vec<u8>, NiftiError> {
        self.check_length()?;
        let scale = self.scaling();
        let dim = self.dim;
        match &self.data {
            VoxelData::U8(v) if scale.is_none() => Ok(v.clone()),
            VoxelData::U8(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::I8(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::U16(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::I16(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::U32(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::I32(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::F32(v) => labels(v.iter().map(|&x| f64::from(x)), v.len(), scale, dim),
            VoxelData::F64(v) => labels(v.iter().copied(), v.len(), scale, dim),
        }
    }

    fn check_length(&self) -> Result<(), NiftiError> {
        let expected = self
            .dim
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let actual = self.data.len();
        match expected {
            Some(expected) if expected == actual => Ok(()),
            _ => Err(NiftiError::DataLength {
                dim: self.dim,
                expected: expected.unwrap_or(usize::MAX),
                actual,
            }),
        }
    }

    /// Checks grid, data length, spacing, affine and scaling.
    fn validate(&self) -> Result<(), NiftiError> {
        for (i, &d) in self.dim.iter().enumerate() {
            if d == 0 {
                return Err(NiftiError::BadDim {
                    axis: i + 1,
                    value: 0,
                });
            }
        }
        self.check_length()?;
        for (i, &p) in self.pixdim.iter().enumerate() {
            if !(p.is_finite() && p > 0.0) {
                return Err(NiftiError::BadPixdim {
                    axis: i + 1,
                    value: p,
                });
            }
        }
        if !self.affine.iter().flatten().all(|v| v.is_finite()) {
            return Err(NiftiError::BadAffine { which: "affine" });
        }
        if !self.scl_slope.is_finite() {
            return Err(NiftiError::Unrepresentable {
                field: "scl_slope",
                value: self.scl_slope,
            });
        }
        if !self.scl_inter.is_finite() {
            return Err(NiftiError::Unrepresentable {
                field: "scl_inter",
                value: self.scl_inter,
            });
        }
        Ok(())
    }
}

fn labels(
    values: impl Iterator<Item = f64>,
    len: usize,
    scale: Option<(f64, f64)>,
    dim: [usize; 3],
) -> Result<Vec<u8>, NiftiError> {
    let mut out = Vec::with_capacity(len);
    for (i, raw) in values.enumerate() {
        let v = match scale {
            Some((slope, inter)) => raw * slope + inter,
            None => raw,
        };
        if v.is_finite() && v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
            // Exact: a whole number in 0..=255.
            out.push(v as u8);
        } else {
            return Err(NiftiError::NotALabel {
                voxel: voxel_coords(i, dim),
                value: v,
                scaled: scale.is_some(),
            });
        }
    }
    Ok(out)
}

fn voxel_coords(index: usize, dim: [usize; 3]) -> [usize; 3] {
    let [nx, ny, _] = dim;
    let x = index.checked_rem(nx).unwrap_or(0);
    let rest = index.checked_div(nx).unwrap_or(0);
    let y = rest.checked_rem(ny).unwrap_or(0);
    let z = rest.checked_div(ny).unwrap_or(0);
    [x, y, z]
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Reads a `.nii` or `.nii.gz` file (gzip detected by its magic bytes, not by the name).
pub fn read_file(path: &Path, limits: &NiftiLimits) -> Result<NiftiImage, NiftiError> {
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
        read_stream(MultiGzDecoder::new(reader), limits, None, true)
    } else {
        read_stream(reader, limits, Some(len), false)
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
        read_stream(MultiGzDecoder::new(bytes), limits, None, true)
    } else {
        read_stream(bytes, limits, Some(len), false)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

/// The header fields fedanno uses, widened to NIfTI-2 types.
#[derive(Debug)]
struct Header {
    endian: Endian,
    dim: [i64; 8],
    datatype: i32,
    pixdim: [f64; 8],
    vox_offset: u64,
    scl_slope: f64,
    scl_inter: f64,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
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

    fn f32_as_f64(&self, off: usize) -> Result<f64, NiftiError> {
        self.f32(off).map(f64::from)
    }
}

fn parse_header(b: &[u8]) -> Result<Header, NiftiError> {
    let len = u64::try_from(b.len()).unwrap_or(u64::MAX);
    let too_short = |need| NiftiError::TooShort { len, need };
    let first: [u8; 4] = b
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .ok_or(too_short(NIFTI1_HEADER_BYTES))?;
    let (version, endian) = match (i32::from_le_bytes(first), i32::from_be_bytes(first)) {
        (348, _) => (1, Endian::Little),
        (540, _) => (2, Endian::Little),
        (_, 348) => (1, Endian::Big),
        (_, 540) => (2, Endian::Big),
        _ if b.len() < NIFTI1_HEADER_BYTES => return Err(too_short(NIFTI1_HEADER_BYTES)),
        _ => return Err(NiftiError::UnknownHeaderSize),
    };
    let f = Fields { b, endian };
    if version == 1 {
        if b.len() < NIFTI1_HEADER_BYTES {
            return Err(too_short(NIFTI1_HEADER_BYTES));
        }
        parse_nifti1(&f)
    } else {
        if b.len() < NIFTI2_HEADER_BYTES {
            return Err(too_short(NIFTI2_HEADER_BYTES));
        }
        parse_nifti2(&f)
    }
}

fn parse_nifti1(f: &Fields<'_>) -> Result<Header, NiftiError> {
    match &f.raw::<4>(344)? {
        b"n+1\0" => {}
        b"ni1\0" => return Err(NiftiError::PairNotSupported),
        _ => return Err(NiftiError::BadMagic { version: 1 }),
    }
    let mut dim = [0i64; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        *d = i64::from(f.i16(40 + 2 * i)?);
    }
    let mut pixdim = [0f64; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = f.f32_as_f64(76 + 4 * i)?;
    }
    let raw_offset = f.f32_as_f64(108)?;
    let vox_offset = vox_offset_from_float(raw_offset, NIFTI1_HEADER_BYTES)?;
    let mut srow = [[0f64; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = f.f32_as_f64(280 + 16 * r + 4 * c)?;
        }
    }
    Ok(Header {
        endian: f.endian,
        dim,
        datatype: i32::from(f.i16(70)?),
        pixdim,
        vox_offset,
        scl_slope: f.f32_as_f64(112)?,
        scl_inter: f.f32_as_f64(116)?,
        qform_code: i32::from(f.i16(252)?),
        sform_code: i32::from(f.i16(254)?),
        quatern: [f.f32_as_f64(256)?, f.f32_as_f64(260)?, f.f32_as_f64(264)?],
        qoffset: [f.f32_as_f64(268)?, f.f32_as_f64(272)?, f.f32_as_f64(276)?],
        srow,
    })
}

fn parse_nifti2(f: &Fields<'_>) -> Result<Header, NiftiError> {
    // The 8-byte magic is "n+2\0\r\n\x1a\n"; only the first 4 bytes are checked, as the
    // rest is a line-ending canary that some converters mangle.
    match &f.raw::<4>(4)? {
        b"n+2\0" => {}
        b"ni2\0" => return Err(NiftiError::PairNotSupported),
        _ => return Err(NiftiError::BadMagic { version: 2 }),
    }
    let mut dim = [0i64; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        *d = f.i64(16 + 8 * i)?;
    }
    let mut pixdim = [0f64; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = f.f64(104 + 8 * i)?;
    }
    let raw_offset = f.i64(168)?;
    let vox_offset = match u64::try_from(raw_offset) {
        Ok(0) => NIFTI2_HEADER_BYTES as u64 + 4,
        Ok(v) if v >= NIFTI2_HEADER_BYTES as u64 => v,
        _ => {
            return Err(NiftiError::BadVoxOffset {
                value: raw_offset as f64,
                header_bytes: NIFTI2_HEADER_BYTES,
            });
        }
    };
    let mut srow = [[0f64; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = f.f64(400 + 32 * r + 8 * c)?;
        }
    }
    Ok(Header {
        endian: f.endian,
        dim,
        datatype: i32::from(f.i16(12)?),
        pixdim,
        vox_offset,
        scl_slope: f.f64(176)?,
        scl_inter: f.f64(184)?,
        qform_code: f.i32(344)?,
        sform_code: f.i32(348)?,
        quatern: [f.f64(352)?, f.f64(360)?, f.f64(368)?],
        qoffset: [f.f64(376)?, f.f64(384)?, f.f64(392)?],
        srow,
    })
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

fn diag_affine(p: [f64; 3]) -> [[f64; 4]; 4] {
    [
        [p[0], 0.0, 0.0, 0.0],
        [0.0, p[1], 0.0, 0.0],
        [0.0, 0.0, p[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// nifti1_io `quatern_to_mat44`: quaternion (b, c, d), offsets, voxel sizes and qfac to a 4×4.
fn quatern_to_mat44(
    [b, c, d]: [f64; 3],
    [qx, qy, qz]: [f64; 3],
    [dx, dy, dz]: [f64; 3],
    qfac: f64,
) -> [[f64; 4]; 4] {
    let (mut a, mut b, mut c, mut d) = (1.0 - (b * b + c * c + d * d), b, c, d);
    if a < 1.0e-7 {
        // Special case: a 180° rotation; renormalise (b, c, d).
        a = 1.0 / (b * b + c * c + d * d).sqrt();
        b *= a;
        c *= a;
        d *= a;
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let xd = if dx > 0.0 { dx } else { 1.0 };
    let yd = if dy > 0.0 { dy } else { 1.0 };
    let mut zd = if dz > 0.0 { dz } else { 1.0 };
    if qfac < 0.0 {
        zd = -zd;
    }
    [
        [
            (a * a + b * b - c * c - d * d) * xd,
            2.0 * (b * c - a * d) * yd,
            2.0 * (b * d + a * c) * zd,
            qx,
        ],
        [
            2.0 * (b * c + a * d) * xd,
            (a * a + c * c - b * b - d * d) * yd,
            2.0 * (c * d - a * b) * zd,
            qy,
        ],
        [
            2.0 * (b * d - a * c) * xd,
            2.0 * (c * d + a * b) * yd,
            (a * a + d * d - c * c - b * b) * zd,
            qz,
        ],
        [0.0, 0.0, 0.0, 1.0],
    ]
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
fn read_stream<R: Read>(
    mut r: R,
    limits: &NiftiLimits,
    known_len: Option<u64>,
    compressed: bool,
) -> Result<NiftiImage, NiftiError> {
    let read_err = |source| NiftiError::Read { compressed, source };
    let mut head_buf = [0u8; NIFTI2_HEADER_BYTES];
    let got = fill(&mut r, &mut head_buf).map_err(read_err)?;
    let head = head_buf.get(..got).unwrap_or_default();
    let header = parse_header(head)?;
    let lay = layout(&header, limits)?;
    let pixdim = spacing(&header, lay.dim)?;
    let affine = header_affine(&header, pixdim)?;
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
    let leftover: &[u8] = if lay.offset < consumed {
        usize::try_from(lay.offset)
            .ok()
            .and_then(|o| head.get(o..))
            .unwrap_or_default()
    } else {
        let skip = lay.offset - consumed;
        let skipped = io::copy(&mut (&mut r).take(skip), &mut io::sink()).or_else(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Ok(0)
            } else {
                Err(read_err(e))
            }
        })?;
        if skipped < skip {
            return Err(truncated(0));
        }
        &[]
    };
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

    let (scl_slope, scl_inter) = if header.scl_slope.is_finite() {
        (
            header.scl_slope,
            if header.scl_inter.is_finite() {
                header.scl_inter
            } else {
                0.0
            },
        )
    } else {
        (0.0, 0.0)
    };
    Ok(NiftiImage {
        dim: lay.dim,
        pixdim,
        affine,
        scl_slope,
        scl_inter,
        data,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

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
    let io_err = |action: &'static str| {
        move |source| NiftiError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };

    let Some(name) = path.file_name() else {
        return Err(NiftiError::NoFileName {
            path: path.to_path_buf(),
        });
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err("create"))?;

    let written = (|| -> io::Result<()> {
        let mut out = BufWriter::new(file);
        let file = if gzip {
            let mut enc = GzEncoder::new(out, Compression::default());
            write_nifti1(&mut enc, &header, &img.data, Endian::Little)?;
            out = enc.finish()?;
            out.into_inner().map_err(io::IntoInnerError::into_error)?
        } else {
            write_nifti1(&mut out, &header, &img.data, Endian::Little)?;
            out.into_inner().map_err(io::IntoInnerError::into_error)?
        };
        file.sync_all()
    })();
    let renamed = written
        .map_err(io_err("write"))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("replace")));
    if let Err(e) = renamed {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Best effort: persist the rename itself.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The bytes [`write_file`] would write (gzip-compressed if `gzip`).
pub fn write_bytes(img: &NiftiImage, gzip: bool) -> Result<Vec<u8>, NiftiError> {
    encode(img, gzip, Endian::Little)
}

fn encode(img: &NiftiImage, gzip: bool, endian: Endian) -> Result<Vec<u8>, NiftiError> {
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

fn write_voxels<W: Write>(w: &mut W, data: &VoxelData, endian: Endian) -> io::Result<()> {
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
    fn i16(&mut self, off: usize, v: i16) {
        let b = if self.endian == Endian::Big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(off, &b);
    }
    fn i32(&mut self, off: usize, v: i32) {
        let b = if self.endian == Endian::Big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(off, &b);
    }
    fn f32(&mut self, off: usize, v: f32) {
        let b = if self.endian == Endian::Big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(off, &b);
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

fn encode_nifti1_header(
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

/// The rotation part of a qform.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Quatern {
    b: f64,
    c: f64,
    d: f64,
    qfac: f32,
}

type Mat3 = [[f64; 3]; 3];

/// nifti1_io `mat44_to_quatern`: the rotation closest to the affine's 3×3 part (columns
/// normalised, then polar decomposition, so shears and unequal scalings fall back to the nearest
/// rigid rotation), with qfac = -1 for a left-handed frame. `None` when the 3×3 part is singular,
/// in which case no qform is written (the sform still holds the exact affine).
fn mat44_to_quatern(affine: &[[f64; 4]; 4]) -> Option<Quatern> {
    let [r0, r1, r2, _] = *affine;
    let mut cols: Mat3 = [
        [r0[0], r1[0], r2[0]],
        [r0[1], r1[1], r2[1]],
        [r0[2], r1[2], r2[2]],
    ];
    // Normalise columns; a zero column becomes the matching unit vector (as nifti1_io does).
    for (i, col) in cols.iter_mut().enumerate() {
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            col.iter_mut().for_each(|v| *v /= norm);
        } else {
            for (r, v) in col.iter_mut().enumerate() {
                *v = if r == i { 1.0 } else { 0.0 };
            }
        }
    }
    let m = transpose(&cols);
    let mut p = polar(m)?;
    let det = det3(&p);
    let qfac = if det > 0.0 {
        1.0
    } else {
        for row in p.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    };
    let [[r11, r12, r13], [r21, r22, r23], [r31, r32, r33]] = p;
    let trace = r11 + r22 + r33 + 1.0;
    let (b, c, d) = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        (
            0.25 * (r32 - r23) / a,
            0.25 * (r13 - r31) / a,
            0.25 * (r21 - r12) / a,
        )
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        let (a, b, c, d) = if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            (
                0.25 * (r32 - r23) / b,
                b,
                0.25 * (r12 + r21) / b,
                0.25 * (r13 + r31) / b,
            )
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            (
                0.25 * (r13 - r31) / c,
                0.25 * (r12 + r21) / c,
                c,
                0.25 * (r23 + r32) / c,
            )
        } else {
            let d = 0.5 * zd.sqrt();
            (
                0.25 * (r21 - r12) / d,
                0.25 * (r13 + r31) / d,
                0.25 * (r23 + r32) / d,
                d,
            )
        };
        // Keep a >= 0: the file stores only (b, c, d) and recomputes a as a positive root.
        if a < 0.0 { (-b, -c, -d) } else { (b, c, d) }
    };
    [b, c, d]
        .iter()
        .all(|v| v.is_finite())
        .then_some(Quatern { b, c, d, qfac })
}

fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn transpose(m: &Mat3) -> Mat3 {
    [
        [m[0][0], m[1][0], m[2][0]],
        [m[0][1], m[1][1], m[2][1]],
        [m[0][2], m[1][2], m[2][2]],
    ]
}

/// Transposed inverse of a 3×3 (the cofactor matrix over the determinant).
fn inverse_transpose(m: &Mat3) -> Option<Mat3> {
    let det = det3(m);
    if !(det.is_finite() && det.abs() > 1.0e-12) {
        return None;
    }
    let [[a, b, c], [d, e, f], [g, h, i]] = *m;
    Some([
        [
            (e * i - f * h) / det,
            (f * g - d * i) / det,
            (d * h - e * g) / det,
        ],
        [
            (c * h - b * i) / det,
            (a * i - c * g) / det,
            (b * g - a * h) / det,
        ],
        [
            (b * f - c * e) / det,
            (c * d - a * f) / det,
            (a * e - b * d) / det,
        ],
    ])
}

fn frobenius(m: &Mat3) -> f64 {
    m.iter().flatten().map(|v| v * v).sum::<f64>().sqrt()
}

/// Orthogonal polar factor of a non-singular 3×3 (scaled Newton iteration, as nifti1_io's
/// `mat33_polar`).
fn polar(m: Mat3) -> Option<Mat3> {
    let mut x = m;
    for _ in 0..100 {
        let y = inverse_transpose(&x)?;
        let gamma = (frobenius(&y) / frobenius(&x)).sqrt();
        let mut next = x;
        let mut change = 0.0f64;
        for ((next_row, x_row), y_row) in next.iter_mut().zip(x.iter()).zip(y.iter()) {
            for ((n, &xv), &yv) in next_row.iter_mut().zip(x_row.iter()).zip(y_row.iter()) {
                *n = 0.5 * (gamma * xv + yv / gamma);
                change += (*n - xv).abs();
            }
        }
        x = next;
        if !change.is_finite() {
            return None;
        }
        if change < 1.0e-14 {
            break;
        }
    }
    Some(x)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    /// A temporary folder removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "fedanno-nifti-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Deterministic xorshift64* generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    const ITK_AFFINE: [[f64; 4]; 4] = [
        [-0.75, 0.0, 0.0, 0.0],
        [0.0, -0.5, 0.0, 0.0],
        [0.0, 0.0, 2.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];

    fn sample(dtype: DataType, dim: [usize; 3]) -> VoxelData {
        let n = dim[0] * dim[1] * dim[2];
        let idx = 0..n;
        match dtype {
            DataType::U8 => VoxelData::U8(idx.map(|i| (i * 37 % 256) as u8).collect()),
            DataType::I8 => {
                VoxelData::I8(idx.map(|i| ((i * 37 % 256) as i64 - 128) as i8).collect())
            }
            DataType::U16 => VoxelData::U16(
                idx.map(|i| if i == 1 { u16::MAX } else { (i * 977) as u16 })
                    .collect(),
            ),
            DataType::I16 => VoxelData::I16(
                idx.map(|i| if i == 1 { i16::MIN } else { (i * 977) as i16 })
                    .collect(),
            ),
            DataType::U32 => VoxelData::U32(
                idx.map(|i| {
                    if i == 1 {
                        u32::MAX
                    } else {
                        (i as u32).wrapping_mul(2_654_435_761)
                    }
                })
                .collect(),
            ),
            DataType::I32 => VoxelData::I32(
                idx.map(|i| {
                    if i == 1 {
                        i32::MIN
                    } else {
                        (i as i32).wrapping_mul(-1_640_531_527)
                    }
                })
                .collect(),
            ),
            DataType::F32 => VoxelData::F32(
                idx.map(|i| {
                    if i == 1 {
                        f32::MAX
                    } else {
                        i as f32 * -0.37 + 1.0e-3
                    }
                })
                .collect(),
            ),
            DataType::F64 => VoxelData::F64(
                idx.map(|i| {
                    if i == 1 {
                        f64::MIN_POSITIVE
                    } else {
                        i as f64 * 1.0e10 / 3.0
                    }
                })
                .collect(),
            ),
        }
    }

    fn label_image(dim: [usize; 3]) -> NiftiImage {
        let n = dim[0] * dim[1] * dim[2];
        NiftiImage::from_u8(
            dim,
            [0.75, 0.5, 2.0],
            ITK_AFFINE,
            (0..n).map(|i| (i % 4) as u8).collect(),
        )
        .unwrap()
    }

    fn valid_bytes() -> Vec<u8> {
        write_bytes(&label_image([6, 5, 4]), false).unwrap()
    }

    fn assert_affine_close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) {
        for r in 0..4 {
            for c in 0..4 {
                assert!(
                    (a[r][c] - b[r][c]).abs() <= tol,
                    "affine[{r}][{c}]: {a:?} vs {b:?}"
                );
            }
        }
    }

    fn put_i16(b: &mut [u8], off: usize, v: i16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put_f32(b: &mut [u8], off: usize, v: f32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A NIfTI-2 file for `img` (test-only writer).
    fn nifti2_bytes(img: &NiftiImage, endian: Endian) -> Vec<u8> {
        let mut h = vec![0u8; 544];
        let big = endian == Endian::Big;
        macro_rules! put {
            ($off:expr, $v:expr) => {{
                let v = $v;
                let b = if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                h[$off..$off + b.len()].copy_from_slice(&b);
            }};
        }
        put!(0, 540i32);
        h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        put!(12, img.data.datatype().code());
        put!(14, (img.data.datatype().size_bytes() * 8) as i16);
        let dims = [
            3i64,
            img.dim[0] as i64,
            img.dim[1] as i64,
            img.dim[2] as i64,
            1,
            1,
            1,
            1,
        ];
        for (i, d) in dims.iter().enumerate() {
            put!(16 + 8 * i, *d);
        }
        let pix = [
            1.0f64,
            img.pixdim[0],
            img.pixdim[1],
            img.pixdim[2],
            1.0,
            1.0,
            1.0,
            1.0,
        ];
        for (i, p) in pix.iter().enumerate() {
            put!(104 + 8 * i, *p);
        }
        put!(168, 544i64);
        put!(176, img.scl_slope);
        put!(184, img.scl_inter);
        put!(348, 2i32);
        for r in 0..3 {
            for c in 0..4 {
                put!(400 + 32 * r + 8 * c, img.affine[r][c]);
            }
        }
        let mut out = h;
        write_voxels(&mut out, &img.data, endian).unwrap();
        out
    }

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
    fn big_endian_nifti1_reads() {
        for dtype in DataType::ALL {
            let dim = [4, 3, 2];
            let img =
                NiftiImage::new(dim, [1.5, 1.0, 3.0], ITK_AFFINE, sample(dtype, dim)).unwrap();
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
                let bytes = nifti2_bytes(&img, endian);
                let back = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
                assert_eq!(back, img, "{endian:?} {dtype:?}");
                assert_eq!(
                    read_bytes(&gzip(&bytes), &NiftiLimits::default()).unwrap(),
                    img
                );
            }
        }
    }

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
    fn qform_conversion_matches_nifti1_io() {
        // (b, c, d) = (0, 0, 1): 180° about z, i.e. ITK's LPS identity written as RAS.
        let m = quatern_to_mat44([0.0, 0.0, 1.0], [1.0, 2.0, 3.0], [0.5, 0.6, 0.7], 1.0);
        assert_affine_close(
            &m,
            &[
                [-0.5, 0.0, 0.0, 1.0],
                [0.0, -0.6, 0.0, 2.0],
                [0.0, 0.0, 0.7, 3.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            1e-12,
        );
        // qfac = -1 flips the third column.
        let m = quatern_to_mat44([0.0, 0.0, 0.0], [0.0; 3], [1.0, 2.0, 3.0], -1.0);
        assert_affine_close(&m, &diag_affine([1.0, 2.0, -3.0]), 1e-12);
        // 90° about x: b = sin(45°).
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let m = quatern_to_mat44([s, 0.0, 0.0], [0.0; 3], [1.0, 1.0, 1.0], 1.0);
        assert_affine_close(
            &m,
            &[
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, -1.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            1e-12,
        );
    }

    fn rotation(rng: &mut Rng) -> Mat3 {
        // Random unit quaternion -> rotation matrix.
        let q: Vec<f64> = (0..4).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let (a, b, c, d) = (q[0] / n, q[1] / n, q[2] / n, q[3] / n);
        [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ]
    }

    #[test]
    fn qform_written_from_affine_reproduces_it() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut cases: Vec<Mat3> = (0..200).map(|_| rotation(&mut rng)).collect();
        // Axis permutations and flips, including 180° rotations (trace -1).
        cases.push([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]);
        cases.push([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]);
        cases.push([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]);
        cases.push([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        for (i, r) in cases.into_iter().enumerate() {
            let flip = if i % 2 == 0 { 1.0 } else { -1.0 };
            let pix = [0.5 + rng.unit(), 0.5 + rng.unit(), 1.0 + 3.0 * rng.unit()];
            let mut affine = [[0.0; 4]; 4];
            for row in 0..3 {
                for col in 0..3 {
                    let s = if col == 2 { flip } else { 1.0 };
                    affine[row][col] = r[row][col] * pix[col] * s;
                }
                affine[row][3] = rng.unit() * 200.0 - 100.0;
            }
            affine[3][3] = 1.0;
            let img = NiftiImage::from_u8([2, 2, 2], pix, affine, vec![0; 8]).unwrap();
            let mut bytes = write_bytes(&img, false).unwrap();
            put_i16(&mut bytes, 254, 0); // hide the sform: the qform alone must give the affine
            let back = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
            assert_affine_close(&back.affine, &affine, 2e-5 * 4.0);
        }
    }

    #[test]
    fn non_rigid_affine_keeps_exact_sform_and_a_sensible_qform() {
        let sheared = [
            [1.0, 0.3, 0.0, 5.0],
            [0.0, 1.0, 0.0, 6.0],
            [0.0, 0.0, 2.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let img = NiftiImage::from_u8([2, 2, 2], [1.0, 1.0, 2.0], sheared, vec![1; 8]).unwrap();
        let bytes = write_bytes(&img, false).unwrap();
        let back = read_bytes(&bytes, &NiftiLimits::default()).unwrap();
        assert_affine_close(&back.affine, &sheared, 1e-6);
        let mut q_only = bytes.clone();
        put_i16(&mut q_only, 254, 0);
        let qback = read_bytes(&q_only, &NiftiLimits::default()).unwrap();
        // Rotation part orthogonal (up to spacing), translation kept.
        assert_eq!(
            [qback.affine[0][3], qback.affine[1][3], qback.affine[2][3]],
            [5.0, 6.0, 7.0]
        );
        assert!(qback.affine.iter().flatten().all(|v| v.is_finite()));
        // Singular 3×3: no qform, sform still exact.
        let singular = [
            [1.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let img = NiftiImage::from_u8([2, 2, 2], [1.0, 1.0, 1.0], singular, vec![1; 8]).unwrap();
        let bytes = write_bytes(&img, false).unwrap();
        assert_eq!(i16::from_le_bytes(bytes[252..254].try_into().unwrap()), 0);
        assert_affine_close(
            &read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine,
            &singular,
            1e-6,
        );
    }

    #[test]
    fn affine_source_priority() {
        let mut bytes = valid_bytes();
        // Make sform differ from qform.
        put_f32(&mut bytes, 280 + 12, 42.0);
        let a = read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine;
        assert_eq!(a[0][3], 42.0);
        put_i16(&mut bytes, 254, 0);
        let a = read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine;
        assert_affine_close(&a, &ITK_AFFINE, 1e-6);
        put_i16(&mut bytes, 252, 0);
        let a = read_bytes(&bytes, &NiftiLimits::default()).unwrap().affine;
        assert_affine_close(&a, &diag_affine([0.75, 0.5, 2.0]), 1e-6);
        // Non-finite sform is refused.
        put_i16(&mut bytes, 254, 1);
        put_f32(&mut bytes, 284, f32::NAN);
        assert!(matches!(
            read_bytes(&bytes, &NiftiLimits::default()),
            Err(NiftiError::BadAffine { which: "sform" })
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
        let err = read_bytes(&bytes[..bytes.len() - 3], &NiftiLimits::default()).unwrap_err();
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
        let err =
            read_bytes(&gzip(&bytes[..bytes.len() - 3]), &NiftiLimits::default()).unwrap_err();
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
    fn vox_offset_honoured() {
        let img = label_image([6, 5, 4]);
        let plain = write_bytes(&img, false).unwrap();
        // Insert an extension block (16 bytes of junk) before the data.
        let mut bytes = plain[..352].to_vec();
        bytes[348] = 1;
        bytes.extend_from_slice(&[0xAB; 16]);
        bytes.extend_from_slice(&plain[352..]);
        put_f32(&mut bytes, 108, 368.0);
        assert_eq!(read_bytes(&bytes, &NiftiLimits::default()).unwrap(), img);
        assert_eq!(
            read_bytes(&gzip(&bytes), &NiftiLimits::default()).unwrap(),
            img
        );
        // Data right after a 348-byte header, and an offset past 540 (beyond the header buffer).
        let mut at348 = plain[..348].to_vec();
        at348.extend_from_slice(&plain[352..]);
        put_f32(&mut at348, 108, 348.0);
        assert_eq!(read_bytes(&at348, &NiftiLimits::default()).unwrap(), img);
        let mut far = plain[..352].to_vec();
        far.resize(1000, 7);
        far.extend_from_slice(&plain[352..]);
        put_f32(&mut far, 108, 1000.0);
        assert_eq!(read_bytes(&far, &NiftiLimits::default()).unwrap(), img);
        assert_eq!(
            read_bytes(&gzip(&far), &NiftiLimits::default()).unwrap(),
            img
        );
        // An offset past the end of the file.
        let mut bad = plain.clone();
        put_f32(&mut bad, 108, 4000.0);
        assert!(matches!(
            read_bytes(&bad, &NiftiLimits::default()),
            Err(NiftiError::Truncated { .. })
        ));
        assert!(matches!(
            read_bytes(&gzip(&bad), &NiftiLimits::default()),
            Err(NiftiError::Truncated { .. })
        ));
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
        let back = read_stream(&mut counting, &NiftiLimits::default(), None, true).unwrap();
        assert_eq!(back, img);
        assert!(
            counting.count <= declared + GZIP_SLACK_BYTES,
            "read {}",
            counting.count
        );
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
        let mut s =
            NiftiImage::new(dim, [1.0; 3], ITK_AFFINE, VoxelData::I16(vec![2; 12])).unwrap();
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
        let err =
            NiftiImage::from_u8([usize::MAX, 2, 2], [1.0; 3], ITK_AFFINE, vec![]).unwrap_err();
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
        let big =
            NiftiImage::from_u8([40_000, 1, 1], [1.0; 3], ITK_AFFINE, vec![0; 40_000]).unwrap();
        assert!(matches!(
            write_bytes(&big, false),
            Err(NiftiError::Unrepresentable { .. })
        ));
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

    /// Random mutations of valid files must give `Ok` or `Err`, never a panic or a huge
    /// allocation.
    #[test]
    fn fuzz_mutated_headers_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let dim = [5, 4, 3];
        let seeds: Vec<Vec<u8>> = vec![
            valid_bytes(),
            encode(
                &NiftiImage::new(dim, [1.0, 2.0, 3.0], ITK_AFFINE, sample(DataType::F32, dim))
                    .unwrap(),
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
                        let v =
                            [f32::NAN, f32::INFINITY, -0.0, 1e30, -1e30, 352.0, 0.5][rng.below(7)];
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
}
