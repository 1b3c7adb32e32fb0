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
//!
//! Layout: this file holds the public types ([`NiftiImage`], [`VoxelData`], [`DataType`],
//! [`NiftiLimits`], [`NiftiError`]) and re-exports the public functions; `image` holds the
//! methods of [`NiftiImage`] (constructors, validation, labels); `header` the byte layout of the
//! NIfTI-1/2 headers (parsing and encoding); `qform` the quaternion ⇄ affine conversions;
//! `read` ([`read_file`], [`read_bytes`]) and `write` ([`write_file`], [`write_bytes`]) the
//! streams; `tests` the unit tests.

mod header;
mod image;
mod qform;
mod read;
mod write;

pub use read::{Expect, NiftiGeometry, read_bytes, read_file, read_file_expecting};
pub use write::{write_bytes, write_file};

use std::io;
use std::path::PathBuf;

/// Read/convert buffer size; a multiple of every voxel size.
const CHUNK_BYTES: usize = 64 * 1024;

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
    /// The header describes another grid than the one expected (nothing else was read).
    #[error("{0}")]
    Unexpected(String),
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
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests;
