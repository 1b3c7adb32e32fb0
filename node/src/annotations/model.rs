//! What an annotation holds. A segmentation is a label map on its series' voxel grid (x fastest,
//! then y, then z = slice index in the series' sorted order) with named segments, plus the
//! voxels where segments overlap (`overlap`), each segment with what its author said about it
//! (codes, colour, algorithm) when it came with that; boxes are 3D
//! voxel-coordinate boxes with a label; a label is a category from a scheme with an optional
//! confidence (1–5) and comment. Every annotation belongs to one reader and one case (a series
//! for segmentations and boxes, a series or a study for labels).

use serde::{Deserialize, Serialize};
use thiserror::Error;

vocabulary! {
    /// Kinds of annotation, as stored and printed.
    pub enum Kind("annotation kind") {
        Segmentation = "segmentation",
        Boxes = "boxes",
        Label = "label",
    }
}

vocabulary! {
    /// Why an annotation exists, as stored and printed: a reader's own read, or an adjudicating
    /// reader's decision.
    pub enum Purpose("annotation purpose") {
        Read = "read",
        Adjudication = "adjudication",
    }
}

/// A named segment: the voxels whose label is `value`, and those listed for it in the
/// segmentation's overlaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub value: u8,
    pub name: String,
    /// What the segment's author said about it, kept as it came (a DICOM SEG's codes, colour
    /// and algorithm); `None` when nothing was said.
    pub description: Option<Description>,
}

impl Segment {
    /// A segment with a name and nothing else said about it.
    pub fn named(value: u8, name: impl Into<String>) -> Self {
        Segment {
            value,
            name: name.into(),
            description: None,
        }
    }
}

/// A coded concept as DICOM writes it: code value, coding scheme designator, code meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Code {
            value: value.into(),
            scheme: scheme.into(),
            meaning: meaning.into(),
        }
    }

    /// The category of a segment nothing was said about: SCT 49755003.
    pub fn default_category() -> Self {
        Code::new("49755003", "SCT", "Morphologically Altered Structure")
    }

    /// The type of a segment nothing was said about: SCT 4147007.
    pub fn default_type() -> Self {
        Code::new("4147007", "SCT", "Mass")
    }

    /// The algorithm family of a model: DCM 123110.
    pub fn artificial_intelligence() -> Self {
        Code::new("123110", "DCM", "Artificial Intelligence")
    }
}

vocabulary! {
    /// How a segment was made (DICOM SegmentAlgorithmType).
    pub enum Method("segment method") {
        Manual = "MANUAL",
        Semiautomatic = "SEMIAUTOMATIC",
        Automatic = "AUTOMATIC",
    }
}

/// The algorithm that made a segment: its name, and when known its version and family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Algorithm {
    pub name: String,
    pub version: Option<String>,
    pub family: Option<Code>,
}

/// What an author said about a segment (the DICOM Segment Description).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Segmented property category (e.g. SCT 49755003 "Morphologically Altered Structure").
    pub category: Code,
    /// Segmented property type (e.g. SCT 4147007 "Mass").
    pub property_type: Code,
    /// Recommended display colour, CIELab scaled to 0..=65535 as DICOM stores it.
    pub colour: Option<[u16; 3]>,
    pub method: Method,
    /// The algorithm of a method other than [`Method::Manual`].
    pub algorithm: Option<Algorithm>,
}

/// The voxels where segment `value` lies under a lower-valued segment: sorted, disjoint,
/// non-adjacent runs of (first voxel index, voxel count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    pub value: u8,
    pub runs: Vec<(u32, u32)>,
}

/// A label map on a series grid, and where its segments overlap.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segmentation {
    /// (x = columns, y = rows, z = slices).
    pub dims: [u32; 3],
    /// Sorted by value; values are 1..=255 and unique.
    pub segments: Vec<Segment>,
    /// `dims[0] * dims[1] * dims[2]` values, x fastest; 0 is background. Where segments
    /// overlap, the lowest-valued one present.
    pub labels: Vec<u8>,
    /// Every other segment present where segments overlap (DICOM SEG allows it), sorted by
    /// value; empty for a plain label map. One form per set of masks: see [`Segmentation::layered`].
    pub overlaps: Vec<Overlap>,
}

impl std::fmt::Debug for Segmentation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmentation")
            .field("dims", &self.dims)
            .field("segments", &self.segments)
            .field("voxels", &self.voxel_counts())
            .finish()
    }
}

/// A box in voxel coordinates, both corners inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoxelBox {
    pub label: String,
    pub min: [u32; 3],
    pub max: [u32; 3],
    pub confidence: Option<u8>,
}

/// A categorical label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub scheme: String,
    pub category: String,
    pub confidence: Option<u8>,
    pub comment: Option<String>,
}

/// The content of one annotation version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    Segmentation(Segmentation),
    Boxes {
        dims: [u32; 3],
        boxes: Vec<VoxelBox>,
    },
    Label(Label),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("label map holds {got} voxels, but its grid {dims:?} has {expected}")]
    Size {
        dims: [u32; 3],
        expected: u64,
        got: usize,
    },
    #[error("segment value {0} is declared twice")]
    DuplicateSegment(u8),
    #[error("segment value 0 is background and cannot be a segment")]
    ZeroSegment,
    #[error("segment {0} has an empty name")]
    EmptyName(u8),
    #[error(
        "label map holds value {value} at {count} voxels, which is not a declared segment ({declared})"
    )]
    Undeclared {
        value: u8,
        count: u64,
        declared: String,
    },
    #[error("box {index} ({label:?}) lies outside the grid {dims:?} or has min > max")]
    BoxOutside {
        index: usize,
        label: String,
        dims: [u32; 3],
    },
    #[error("confidence must be 1 to 5, not {0}")]
    Confidence(u8),
    #[error("text is longer than {0} characters")]
    TooLong(usize),
    #[error("overlap of segment {value} is invalid: {reason}")]
    BadOverlap { value: u8, reason: &'static str },
    #[error("segment {0} is made by an algorithm but names none")]
    MissingAlgorithm(u8),
}

/// Longest name, category or label text.
pub const MAX_NAME: usize = 64;
/// Longest comment.
pub const MAX_COMMENT: usize = 4096;

pub fn check_confidence(c: Option<u8>) -> Result<(), ModelError> {
    match c {
        Some(v) if !(1..=5).contains(&v) => Err(ModelError::Confidence(v)),
        _ => Ok(()),
    }
}

fn check_len(s: &str, max: usize) -> Result<(), ModelError> {
    if s.chars().count() > max {
        Err(ModelError::TooLong(max))
    } else {
        Ok(())
    }
}

impl Segmentation {
    /// Builds a segmentation without overlaps and checks it: size, segment declarations, and
    /// that every non-zero value is a declared segment.
    pub fn new(
        dims: [u32; 3],
        segments: Vec<Segment>,
        labels: Vec<u8>,
    ) -> Result<Self, ModelError> {
        Self::layered(dims, segments, labels, Vec::new())
    }

    /// Builds a segmentation whose segments may overlap and checks it as [`Segmentation::new`]
    /// does, and its overlaps: each of a declared segment, runs inside the grid, sorted,
    /// disjoint and not adjacent, on voxels whose label is a lower-valued segment (the one form
    /// of a given set of masks, so that equal masks hash equal).
    pub fn layered(
        dims: [u32; 3],
        mut segments: Vec<Segment>,
        labels: Vec<u8>,
        mut overlaps: Vec<Overlap>,
    ) -> Result<Self, ModelError> {
        let expected = dims.iter().map(|&d| u64::from(d)).product::<u64>();
        if labels.len() as u64 != expected {
            return Err(ModelError::Size {
                dims,
                expected,
                got: labels.len(),
            });
        }
        segments.sort_by_key(|s| s.value);
        for w in segments.windows(2) {
            if w[0].value == w[1].value {
                return Err(ModelError::DuplicateSegment(w[0].value));
            }
        }
        for s in &segments {
            check_segment(s)?;
        }
        overlaps.sort_by_key(|o| o.value);
        let seg = Self {
            dims,
            segments,
            labels,
            overlaps,
        };
        seg.check_declared()?;
        seg.check_overlaps()?;
        Ok(seg)
    }

    /// Every non-zero label is a declared segment.
    fn check_declared(&self) -> Result<(), ModelError> {
        let counts = self.histogram();
        for (value, &count) in counts.iter().enumerate().skip(1) {
            if count > 0 && !self.segments.iter().any(|s| usize::from(s.value) == value) {
                let declared = self
                    .segments
                    .iter()
                    .map(|s| format!("{}={}", s.value, s.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ModelError::Undeclared {
                    value: value as u8,
                    count,
                    declared,
                });
            }
        }
        Ok(())
    }

    /// Voxel count of every value 0..=255.
    pub fn histogram(&self) -> [u64; 256] {
        let mut h = [0u64; 256];
        for &v in &self.labels {
            h[usize::from(v)] += 1;
        }
        h
    }

    /// (segment value, voxels) for every declared segment, overlapping voxels included.
    pub fn voxel_counts(&self) -> Vec<(u8, u64)> {
        let h = self.histogram();
        self.segments
            .iter()
            .map(|s| {
                let under: u64 = self
                    .overlap_of(s.value)
                    .map_or(0, |runs| runs.iter().map(|&(_, n)| u64::from(n)).sum());
                (s.value, h[usize::from(s.value)] + under)
            })
            .collect()
    }

    /// The binary mask of one segment (0/1), overlapping voxels included.
    pub fn mask(&self, value: u8) -> Vec<u8> {
        let mut m: Vec<u8> = self.labels.iter().map(|&v| u8::from(v == value)).collect();
        for &(start, n) in self.overlap_of(value).unwrap_or(&[]) {
            m[start as usize..(start + n) as usize].fill(1);
        }
        m
    }

    /// The overlap runs of a segment, if it lies under another anywhere.
    pub fn overlap_of(&self, value: u8) -> Option<&[(u32, u32)]> {
        self.overlaps
            .iter()
            .find(|o| o.value == value)
            .map(|o| o.runs.as_slice())
    }
}

/// A segment's name and description are within DICOM's lengths, and an algorithm's segment
/// names its algorithm.
fn check_segment(s: &Segment) -> Result<(), ModelError> {
    if s.value == 0 {
        return Err(ModelError::ZeroSegment);
    }
    if s.name.trim().is_empty() {
        return Err(ModelError::EmptyName(s.value));
    }
    check_len(&s.name, MAX_NAME)?;
    let Some(d) = &s.description else {
        return Ok(());
    };
    let codes = [Some(&d.category), Some(&d.property_type)]
        .into_iter()
        .chain([d.algorithm.as_ref().and_then(|a| a.family.as_ref())]);
    for c in codes.flatten() {
        check_len(&c.value, MAX_NAME)?;
        check_len(&c.scheme, 16)?;
        check_len(&c.meaning, MAX_NAME)?;
    }
    match (&d.algorithm, d.method) {
        (None, Method::Semiautomatic | Method::Automatic) => {
            Err(ModelError::MissingAlgorithm(s.value))
        }
        (Some(a), _) => {
            check_len(&a.name, MAX_NAME)?;
            check_len(a.version.as_deref().unwrap_or_default(), MAX_NAME)
        }
        (None, Method::Manual) => Ok(()),
    }
}

impl Content {
    pub fn kind(&self) -> Kind {
        match self {
            Content::Segmentation(_) => Kind::Segmentation,
            Content::Boxes { .. } => Kind::Boxes,
            Content::Label(_) => Kind::Label,
        }
    }

    /// Builds box content and checks every box against the grid.
    pub fn boxes(dims: [u32; 3], boxes: Vec<VoxelBox>) -> Result<Content, ModelError> {
        for (index, b) in boxes.iter().enumerate() {
            check_len(&b.label, MAX_NAME)?;
            check_confidence(b.confidence)?;
            let ok = (0..3).all(|a| b.min[a] <= b.max[a] && b.max[a] < dims[a]);
            if !ok {
                return Err(ModelError::BoxOutside {
                    index,
                    label: b.label.clone(),
                    dims,
                });
            }
        }
        Ok(Content::Boxes { dims, boxes })
    }

    /// Builds label content (the category is checked against its scheme by the caller).
    pub fn label(
        scheme: &str,
        category: &str,
        confidence: Option<u8>,
        comment: Option<String>,
    ) -> Result<Content, ModelError> {
        check_len(scheme, MAX_NAME)?;
        check_len(category, MAX_NAME)?;
        check_confidence(confidence)?;
        if let Some(c) = &comment {
            check_len(c, MAX_COMMENT)?;
        }
        Ok(Content::Label(Label {
            scheme: scheme.to_string(),
            category: category.to_string(),
            confidence,
            comment: comment.filter(|c| !c.trim().is_empty()),
        }))
    }

    /// A short JSON-able summary (what `annotate list` shows).
    pub fn summary(&self) -> serde_json::Value {
        match self {
            Content::Segmentation(s) => {
                let mut summary = serde_json::json!({
                    "dims": s.dims,
                    "segments": s.segments.iter().zip(s.voxel_counts()).map(|(seg, (_, n))| serde_json::json!({
                        "value": seg.value, "name": seg.name, "voxels": n
                    })).collect::<Vec<_>>(),
                });
                if s.has_overlaps() {
                    // The segments lying under another somewhere.
                    summary["overlapping"] = s.overlaps.iter().map(|o| o.value).collect();
                }
                summary
            }
            Content::Boxes { boxes, .. } => serde_json::json!({
                "boxes": boxes.len(),
                "labels": boxes.iter().map(|b| b.label.clone()).collect::<std::collections::BTreeSet<_>>(),
            }),
            Content::Label(l) => serde_json::json!({
                "scheme": l.scheme, "category": l.category, "confidence": l.confidence,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(names: &[(u8, &str)]) -> Vec<Segment> {
        names.iter().map(|(v, n)| Segment::named(*v, *n)).collect()
    }

    #[test]
    fn segmentation_checks_size_and_declarations() {
        let s = Segmentation::new(
            [2, 2, 1],
            seg(&[(2, "edema"), (1, "tumour")]),
            vec![0, 1, 2, 2],
        )
        .unwrap();
        assert_eq!(s.segments[0].value, 1);
        assert_eq!(s.voxel_counts(), vec![(1, 1), (2, 2)]);
        assert_eq!(s.mask(2), vec![0, 0, 1, 1]);
        assert!(matches!(
            Segmentation::new([2, 2, 1], vec![], vec![0; 3]),
            Err(ModelError::Size { .. })
        ));
        let e = Segmentation::new([2, 2, 1], seg(&[(1, "a")]), vec![0, 1, 3, 3]).unwrap_err();
        assert_eq!(
            e,
            ModelError::Undeclared {
                value: 3,
                count: 2,
                declared: "1=a".into()
            }
        );
        assert!(e.to_string().contains("value 3 at 2 voxels"));
        assert_eq!(
            Segmentation::new([1, 1, 1], seg(&[(1, "a"), (1, "b")]), vec![0]).unwrap_err(),
            ModelError::DuplicateSegment(1)
        );
        assert_eq!(
            Segmentation::new([1, 1, 1], seg(&[(0, "bg")]), vec![0]).unwrap_err(),
            ModelError::ZeroSegment
        );
    }

    #[test]
    fn boxes_and_labels_are_checked() {
        let b = |min, max| VoxelBox {
            label: "nodule".into(),
            min,
            max,
            confidence: Some(3),
        };
        assert!(Content::boxes([10, 10, 5], vec![b([0, 0, 0], [9, 9, 4])]).is_ok());
        assert!(Content::boxes([10, 10, 5], vec![b([0, 0, 0], [10, 9, 4])]).is_err());
        assert!(Content::boxes([10, 10, 5], vec![b([5, 0, 0], [4, 9, 4])]).is_err());
        assert!(Content::label("birads", "4A", Some(6), None).is_err());
        let l = Content::label("birads", "4A", Some(5), Some("  ".into())).unwrap();
        assert_eq!(
            l,
            Content::Label(Label {
                scheme: "birads".into(),
                category: "4A".into(),
                confidence: Some(5),
                comment: None
            })
        );
    }
}
