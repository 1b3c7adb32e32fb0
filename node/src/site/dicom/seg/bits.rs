//! 1-bit Pixel Data of BINARY SEGs, packed and unpacked here rather than by dicom-pixeldata:
//! frames are concatenated bit-wise, LSB first, without per-frame padding (PS3.5 §8.1.1), so
//! frame `k` starts at bit `k·rows·cols`; the whole value is padded to even length.

use super::SegError;

/// Unpacks frame `k` (`plane` pixels starting at bit `k·plane`, LSB first) into 0/1 bytes.
pub(super) fn unpack_frame(bytes: &[u8], k: usize, plane: usize) -> Result<Vec<u8>, SegError> {
    let start = k.checked_mul(plane).ok_or(SegError::Invalid("PixelData"))?;
    let mut out = Vec::with_capacity(plane);
    for bit in start..start.saturating_add(plane) {
        let byte = bytes.get(bit / 8).ok_or(SegError::Invalid("PixelData"))?;
        out.push((byte >> (bit % 8)) & 1);
    }
    Ok(out)
}

/// Packs frames (each `plane` values, non-zero = 1) bit-wise, LSB first, without per-frame
/// padding; the whole value is padded to even length.
pub(super) fn pack_frames<'a>(
    frames: impl IntoIterator<Item = &'a [u8]>,
    n_bits: usize,
) -> Vec<u8> {
    let mut len = n_bits.div_ceil(8);
    len += len % 2;
    let mut out = vec![0u8; len];
    let mut bit = 0usize;
    for frame in frames {
        for &v in frame {
            if v != 0
                && let Some(b) = out.get_mut(bit / 8)
            {
                *b |= 1 << (bit % 8);
            }
            bit += 1;
        }
    }
    out
}
