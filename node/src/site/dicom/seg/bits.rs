//! 1-bit Pixel Data of BINARY SEGs, packed and unpacked here rather than by dicom-pixeldata:
//! frames are concatenated bit-wise, LSB first, without per-frame padding (PS3.5 §8.1.1), so
//! frame `k` starts at bit `k·rows·cols`; the whole value is padded to even length.

use super::SegError;

/// Unpacks frame `k` (`plane` pixels starting at bit `k·plane`, LSB first) into 0/1 bytes.
#[cfg(test)]
pub(super) fn unpack_frame(bytes: &[u8], k: usize, plane: usize) -> Result<Vec<u8>, SegError> {
    let start = k.checked_mul(plane).ok_or(SegError::Invalid("PixelData"))?;
    let mut out = Vec::with_capacity(plane);
    for bit in start..start.saturating_add(plane) {
        let byte = bytes.get(bit / 8).ok_or(SegError::Invalid("PixelData"))?;
        out.push((byte >> (bit % 8)) & 1);
    }
    Ok(out)
}

/// The bits of frame `k` (`plane` pixels from bit `k·plane`) realigned to start at bit 0.
pub(super) fn frame_bits(bytes: &[u8], k: usize, plane: usize) -> Result<Vec<u8>, SegError> {
    let start = k.checked_mul(plane).ok_or(SegError::Invalid("PixelData"))?;
    let end = start
        .checked_add(plane)
        .ok_or(SegError::Invalid("PixelData"))?;
    if end.div_ceil(8) > bytes.len() {
        return Err(SegError::Invalid("PixelData"));
    }
    if start.is_multiple_of(8) {
        return Ok(bytes[start / 8..end.div_ceil(8)].to_vec());
    }
    let shift = start % 8;
    let mut out = vec![0u8; plane.div_ceil(8)];
    for (i, o) in out.iter_mut().enumerate() {
        let at = start / 8 + i;
        let lo = bytes.get(at).copied().unwrap_or(0) >> shift;
        let hi = bytes.get(at + 1).copied().unwrap_or(0) << (8 - shift);
        *o = lo | hi;
    }
    // Bits past the frame's end belong to the next frame.
    if !plane.is_multiple_of(8)
        && let Some(last) = out.last_mut()
    {
        *last &= (1u8 << (plane % 8)) - 1;
    }
    Ok(out)
}

/// Packs frames (each `plane` values, non-zero = 1) bit-wise, LSB first, without per-frame
/// padding; the whole value is padded to even length.
#[cfg(test)]
pub(super) fn pack_frames<'a>(
    frames: impl IntoIterator<Item = &'a [u8]>,
    n_bits: usize,
) -> Vec<u8> {
    let mut packer = BitPacker::new(n_bits);
    for frame in frames {
        packer.push(frame);
    }
    packer.finish()
}

/// [`pack_frames`] one frame at a time, for frames computed one by one.
pub(super) struct BitPacker {
    out: Vec<u8>,
    bit: usize,
}

impl BitPacker {
    /// A value of `n_bits` bits (padded to even length), all clear.
    pub(super) fn new(n_bits: usize) -> Self {
        let mut len = n_bits.div_ceil(8);
        len += len % 2;
        BitPacker {
            out: vec![0u8; len],
            bit: 0,
        }
    }

    /// Appends a frame's pixels (non-zero = 1).
    pub(super) fn push(&mut self, frame: &[u8]) {
        for &v in frame {
            if v != 0
                && let Some(b) = self.out.get_mut(self.bit / 8)
            {
                *b |= 1 << (self.bit % 8);
            }
            self.bit += 1;
        }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }
}
