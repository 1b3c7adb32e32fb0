//! Canonical encoding of annotation content: label maps as run-length runs, the whole content
//! as postcard bytes (one encoding per value), SHA-256 of a domain-separated prefix plus those
//! bytes as the content hash, and deflate for storage. Decoding treats stored bytes as
//! untrusted: inflation is bounded and run lengths must add up to the grid before any label map
//! is allocated.

use std::io::{Read, Write};

use ring::digest;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::model::{Content, Label, Overlap, Segment, Segmentation, VoxelBox};

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

/// The canonical, serialisable form: label maps as runs of (value, length). Variants are only
/// ever added at the end (postcard numbers them), so stored content of every version decodes.
#[derive(Serialize, Deserialize)]
enum Canonical {
    /// A segmentation whose segments are only named and do not overlap (the first form, kept
    /// for them so that their hashes never change).
    Segmentation {
        dims: [u32; 3],
        segments: Vec<NamedSegment>,
        runs: Vec<(u8, u32)>,
    },
    Boxes {
        dims: [u32; 3],
        boxes: Vec<VoxelBox>,
    },
    Label(Label),
    /// A segmentation with described segments or overlapping segments.
    Layered {
        dims: [u32; 3],
        segments: Vec<Segment>,
        runs: Vec<(u8, u32)>,
        overlaps: Vec<Overlap>,
    },
}

/// A segment of the first form: value and name only.
#[derive(Serialize, Deserialize)]
struct NamedSegment {
    value: u8,
    name: String,
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
        Content::Segmentation(s)
            if s.has_overlaps() || s.segments.iter().any(|x| x.description.is_some()) =>
        {
            Canonical::Layered {
                dims: s.dims,
                segments: s.segments.clone(),
                runs: runs(&s.labels),
                overlaps: s.overlaps.clone(),
            }
        }
        Content::Segmentation(s) => Canonical::Segmentation {
            dims: s.dims,
            segments: s
                .segments
                .iter()
                .map(|x| NamedSegment {
                    value: x.value,
                    name: x.name.clone(),
                })
                .collect(),
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
            let segments = segments
                .into_iter()
                .map(|s| Segment::named(s.value, s.name))
                .collect();
            segmentation(dims, segments, &runs, Vec::new())?
        }
        Canonical::Layered {
            dims,
            segments,
            runs,
            overlaps,
        } => segmentation(dims, segments, &runs, overlaps)?,
        Canonical::Boxes { dims, boxes } => Content::Boxes { dims, boxes },
        Canonical::Label(l) => Content::Label(l),
    })
}

/// A stored segmentation from its runs, checked as a new one is: stored bytes are untrusted.
fn segmentation(
    dims: [u32; 3],
    segments: Vec<Segment>,
    runs: &[(u8, u32)],
    overlaps: Vec<Overlap>,
) -> Result<Content, CodecError> {
    let total: u64 = dims.iter().map(|&d| u64::from(d)).product();
    let sum: u64 = runs.iter().map(|&(_, n)| u64::from(n)).sum();
    if total > MAX_VOXELS || sum != total {
        return Err(CodecError::Corrupt("run lengths"));
    }
    let mut labels = Vec::with_capacity(total as usize);
    for &(v, n) in runs {
        labels.resize(labels.len() + n as usize, v);
    }
    Segmentation::layered(dims, segments, labels, overlaps)
        .map(Content::Segmentation)
        .map_err(|_| CodecError::Corrupt("segmentation"))
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
                vec![Segment::named(1, "a"), Segment::named(2, "b")],
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

    /// A segmentation of named, non-overlapping segments keeps the first form and its hash
    /// (the expected hash computed independently: Python's hashlib over the postcard bytes
    /// written out by hand).
    #[test]
    fn plain_segmentations_keep_their_first_form_and_hash() {
        assert_eq!(
            hash(&encode(&sample())),
            "383ee60d1b17ad0e0c544d21ba462072f88c7efe13e18281ad2e78ccf9797bbf"
        );
    }

    /// Described and overlapping segments take the later form, round-trip exactly, and a form
    /// that breaks the overlap rules is refused as corrupt.
    #[test]
    fn described_and_overlapping_segments_round_trip() {
        let Content::Segmentation(mut s) = sample() else {
            unreachable!()
        };
        s.segments[1].description = Some(crate::annotations::model::Description {
            category: crate::annotations::model::Code {
                value: "49755003".into(),
                scheme: "SCT".into(),
                meaning: "Morphologically Altered Structure".into(),
            },
            property_type: crate::annotations::model::Code {
                value: "108369006".into(),
                scheme: "SCT".into(),
                meaning: "Neoplasm".into(),
            },
            colour: Some([45874, 27756, 48316]),
            method: crate::annotations::model::Method::Automatic,
            algorithm: Some(crate::annotations::model::Algorithm {
                name: "lesion-net".into(),
                version: Some("2.1.0".into()),
                family: None,
            }),
        });
        s.overlaps = vec![Overlap {
            value: 2,
            runs: vec![(12, 3)],
        }];
        let c = Content::Segmentation(s);
        let enc = encode(&c);
        assert_ne!(hash(&enc), hash(&encode(&sample())));
        let back = decode(&enc, &hash(&enc)).unwrap();
        assert_eq!(back, c);
        let Content::Segmentation(mut bad) = c else {
            unreachable!()
        };
        // Segment 2 "under" background is not the one form.
        bad.overlaps[0].runs = vec![(0, 3)];
        let forged = encode(&Content::Segmentation(bad));
        assert_eq!(
            decode(&forged, &hash(&forged)),
            Err(CodecError::Corrupt("segmentation"))
        );
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
