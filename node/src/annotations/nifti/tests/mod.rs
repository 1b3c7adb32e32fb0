//! Unit tests of the NIfTI module and the fixtures they share: a temporary folder, a
//! deterministic generator, sample images of every datatype, a test-only NIfTI-2 writer and
//! byte-patching helpers. The tests are grouped by what they exercise: `image` (constructors and
//! labels), `write` (round trips and atomic writes), `affine` (sform/qform), `read` (valid input
//! in every encoding) and `reject` (malformed and hostile input, fuzzing).

mod affine;
mod image;
mod read;
mod reject;
mod write;

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::header::Endian;
use super::qform::{Mat3, quatern_to_mat44};
use super::read::{GZIP_MAGIC, GZIP_SLACK_BYTES, diag_affine, read_stream};
use super::write::{encode, write_voxels};
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

/// Test voxels of every type: `f(i)`, with the type's extreme value at index 1.
fn sample(dtype: DataType, dim: [usize; 3]) -> VoxelData {
    let n = dim[0] * dim[1] * dim[2];
    fn with_extreme<T: Copy>(n: usize, extreme: T, f: impl Fn(usize) -> T) -> Vec<T> {
        (0..n)
            .map(|i| if i == 1 { extreme } else { f(i) })
            .collect()
    }
    match dtype {
        DataType::U8 => VoxelData::U8((0..n).map(|i| (i * 37 % 256) as u8).collect()),
        DataType::I8 => VoxelData::I8(
            (0..n)
                .map(|i| ((i * 37 % 256) as i64 - 128) as i8)
                .collect(),
        ),
        DataType::U16 => VoxelData::U16(with_extreme(n, u16::MAX, |i| (i * 977) as u16)),
        DataType::I16 => VoxelData::I16(with_extreme(n, i16::MIN, |i| (i * 977) as i16)),
        DataType::U32 => VoxelData::U32(with_extreme(n, u32::MAX, |i| {
            (i as u32).wrapping_mul(2_654_435_761)
        })),
        DataType::I32 => VoxelData::I32(with_extreme(n, i32::MIN, |i| {
            (i as i32).wrapping_mul(-1_640_531_527)
        })),
        DataType::F32 => VoxelData::F32(with_extreme(n, f32::MAX, |i| i as f32 * -0.37 + 1.0e-3)),
        DataType::F64 => VoxelData::F64(with_extreme(n, f64::MIN_POSITIVE, |i| {
            i as f64 * 1.0e10 / 3.0
        })),
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

/// `bytes` read as they are and gzip-compressed, with the default limits.
fn read_both(bytes: &[u8]) -> [Result<NiftiImage, NiftiError>; 2] {
    let limits = NiftiLimits::default();
    [
        read_bytes(bytes, &limits),
        read_bytes(&gzip(bytes), &limits),
    ]
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
