//! Canonical encoding of annotation content: label maps as run-length runs, the whole content
//! as postcard bytes (one encoding per value), SHA-256 of a domain-separated prefix plus those
//! bytes as the content hash, and deflate for storage. Decoding treats stored bytes as
//! untrusted: inflation is bounded and run lengths must add up to the grid before any label map
//! is allocated.

use std::io::{Read, Write};

use ring::digest;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::model::{Content, Label, Segment, Segmentation, VoxelBox};

/// Domain separation for content hashes.
const HASH_DOMAIN: &[u8] = b"fedanno-annotation-content-v1\0";
/// Largest label map a stored annotation may expand to.
pub const MAX_VOXELS: u64 = 1 << 31;
/// Largest canonical encoding accepted when inflating.
const MAX_ENCODED: u64 = 1 << 30;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("stored annotation content is corrupt ({0})")]
    Corrupt(&'static str),
    #[error("stored annotation content does not match its hash")]
    HashMismatch,
}

/// The canonical, serialisable form: label maps as runs of (value, length).
#[derive(Serialize, Deserialize)]
enum Canonical {
    Segmentation {
        dims: [u32; 3],
        segments: Vec<Segment>,
        runs: Vec<(u8, u32)>,
    },
    Boxes {
        dims: [u32; 3],
        boxes: Vec<VoxelBox>,
    },
    Label(Label),
}

/// Run-length encodes a label map.
pub fn runs(labels: &[u8]) -> Vec<(u8, u32)> {
    let mut out: Vec<(u8, u32)> = Vec::new();
    for &v in labels {
        match out.last_mut() {
            Some((last, n)) if *last == v && *n < u32::MAX => *n += 1,
            _ => out.push((v, 1)),
        }
    }
    out
}

fn canonical(content: &Content) -> Canonical {
    match content {
        Content::Segmentation(s) => Canonical::Segmentation {
            dims: s.dims,
            segments: s.segments.clone(),
            runs: runs(&s.labels),
        },
        Content::Boxes { dims, boxes } => Canonical::Boxes {
            dims: *dims,
            boxes: boxes.clone(),
        },
        Content::Label(l) => Canonical::Label(l.clone()),
    }
}

/// The canonical bytes of a content value.
pub fn encode(content: &Content) -> Vec<u8> {
    // Serialising plain data with postcard into a Vec cannot fail.
    postcard::to_stdvec(&canonical(content)).unwrap_or_default()
}

/// Hex SHA-256 content hash of canonical bytes.
pub fn hash(encoded: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(HASH_DOMAIN);
    ctx.update(encoded);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Canonical bytes, deflated for storage.
pub fn compress(encoded: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(encoded);
    enc.finish().unwrap_or_default()
}

/// Inflates stored bytes (bounded) back into canonical bytes.
pub fn decompress(stored: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(stored)
        .take(MAX_ENCODED + 1)
        .read_to_end(&mut out)
        .map_err(|_| CodecError::Corrupt("deflate"))?;
    if out.len() as u64 > MAX_ENCODED {
        return Err(CodecError::Corrupt("too large"));
    }
    Ok(out)
}

/// Decodes canonical bytes, checking the hash first.
pub fn decode(encoded: &[u8], expected_hash: &str) -> Result<Content, CodecError> {
    if hash(encoded) != expected_hash {
        return Err(CodecError::HashMismatch);
    }
    let c: Canonical =
        postcard::from_bytes(encoded).map_err(|_| CodecError::Corrupt("encoding"))?;
    Ok(match c {
        Canonical::Segmentation {
            dims,
            segments,
            runs,
        } => {
            let total: u64 = dims.iter().map(|&d| u64::from(d)).product();
            let sum: u64 = runs.iter().map(|&(_, n)| u64::from(n)).sum();
            if total > MAX_VOXELS || sum != total {
                return Err(CodecError::Corrupt("run lengths"));
            }
            let mut labels = Vec::with_capacity(total as usize);
            for (v, n) in runs {
                labels.resize(labels.len() + n as usize, v);
            }
            Content::Segmentation(Segmentation {
                dims,
                segments,
                labels,
            })
        }
        Canonical::Boxes { dims, boxes } => Content::Boxes { dims, boxes },
        Canonical::Label(l) => Content::Label(l),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Content {
        let mut labels = vec![0u8; 7 * 5 * 3];
        labels[10..20].fill(1);
        labels[50] = 2;
        Content::Segmentation(
            Segmentation::new(
                [7, 5, 3],
                vec![
                    Segment {
                        value: 1,
                        name: "a".into(),
                    },
                    Segment {
                        value: 2,
                        name: "b".into(),
                    },
                ],
                labels,
            )
            .unwrap(),
        )
    }

    #[test]
    fn round_trip_is_exact_and_hash_is_stable() {
        let c = sample();
        let enc = encode(&c);
        let h = hash(&enc);
        assert_eq!(h, hash(&encode(&sample())));
        let stored = compress(&enc);
        let back = decode(&decompress(&stored).unwrap(), &h).unwrap();
        assert_eq!(back, c);
        // A one-voxel change changes the hash.
        if let Content::Segmentation(mut s) = c {
            s.labels[0] = 1;
            assert_ne!(hash(&encode(&Content::Segmentation(s))), h);
        }
    }

    #[test]
    fn runs_compress_large_masks() {
        let mut labels = vec![0u8; 512 * 512 * 30];
        labels[1000..5000].fill(1);
        assert_eq!(runs(&labels).len(), 3);
    }

    #[test]
    fn corrupt_content_is_refused() {
        let enc = encode(&sample());
        let h = hash(&enc);
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode(&bad, &h), Err(CodecError::HashMismatch));
        assert!(decode(&bad, &hash(&bad)).is_err());
        assert!(decompress(b"not deflate at all \xff\xff").is_err());
        // A forged run table claiming more voxels than the grid.
        let forged = postcard::to_stdvec(&Canonical::Segmentation {
            dims: [2, 2, 2],
            segments: vec![],
            runs: vec![(0, u32::MAX)],
        })
        .unwrap();
        assert_eq!(
            decode(&forged, &hash(&forged)),
            Err(CodecError::Corrupt("run lengths"))
        );
    }
}
