//! What changed between two versions of an annotation: voxels added and removed per segment,
//! boxes added and removed, label changes. Shown by `annotate history`.

use serde::Serialize;

use super::model::{Content, Segmentation};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentChange {
    pub value: u8,
    pub name: String,
    pub added: u64,
    pub removed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Diff {
    /// The first version.
    Created,
    Segmentation {
        segments: Vec<SegmentChange>,
        grid_changed: bool,
    },
    Boxes {
        added: usize,
        removed: usize,
    },
    Label {
        from: String,
        to: String,
        confidence_from: Option<u8>,
        confidence_to: Option<u8>,
    },
    /// The kinds differ (cannot happen within one annotation; kept for completeness).
    Replaced,
}

/// The difference from `old` (the parent) to `new`.
pub fn diff(old: Option<&Content>, new: &Content) -> Diff {
    let Some(old) = old else { return Diff::Created };
    match (old, new) {
        (Content::Segmentation(a), Content::Segmentation(b)) => {
            if a.dims != b.dims {
                return Diff::Segmentation {
                    segments: Vec::new(),
                    grid_changed: true,
                };
            }
            let mut values: Vec<(u8, String)> = b
                .segments
                .iter()
                .map(|s| (s.value, s.name.clone()))
                .collect();
            for s in &a.segments {
                if !values.iter().any(|(v, _)| *v == s.value) {
                    values.push((s.value, s.name.clone()));
                }
            }
            values.sort();
            let segments = values
                .into_iter()
                .map(|(value, name)| {
                    let (added, removed) = changed_voxels(a, b, value);
                    SegmentChange {
                        value,
                        name,
                        added,
                        removed,
                    }
                })
                .collect();
            Diff::Segmentation {
                segments,
                grid_changed: false,
            }
        }
        (Content::Boxes { boxes: a, .. }, Content::Boxes { boxes: b, .. }) => Diff::Boxes {
            added: b.iter().filter(|x| !a.contains(x)).count(),
            removed: a.iter().filter(|x| !b.contains(x)).count(),
        },
        (Content::Label(a), Content::Label(b)) => Diff::Label {
            from: a.category.clone(),
            to: b.category.clone(),
            confidence_from: a.confidence,
            confidence_to: b.confidence,
        },
        _ => Diff::Replaced,
    }
}

/// Voxels of segment `value` in `b` and not in `a`, and in `a` and not in `b` (overlapping
/// voxels included).
fn changed_voxels(a: &Segmentation, b: &Segmentation, value: u8) -> (u64, u64) {
    let (x, y, inside) = Segmentation::segment_pair(a, b, value);
    let (mut added, mut removed) = (0u64, 0u64);
    for (&x, &y) in x.iter().zip(y.iter()) {
        added += u64::from(x != inside && y == inside);
        removed += u64::from(x == inside && y != inside);
    }
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::model::{Segment, Segmentation};

    #[test]
    fn counts_voxels_added_and_removed_per_segment() {
        let seg = |labels: Vec<u8>| {
            Content::Segmentation(
                Segmentation::new([4, 1, 1], vec![Segment::named(1, "lesion")], labels).unwrap(),
            )
        };
        let a = seg(vec![0, 1, 1, 0]);
        let b = seg(vec![1, 1, 0, 0]);
        assert_eq!(diff(None, &a), Diff::Created);
        assert_eq!(
            diff(Some(&a), &b),
            Diff::Segmentation {
                segments: vec![SegmentChange {
                    value: 1,
                    name: "lesion".into(),
                    added: 1,
                    removed: 1
                }],
                grid_changed: false
            }
        );
        let l1 = Content::label("birads", "3", None, None).unwrap();
        let l2 = Content::label("birads", "4A", Some(4), None).unwrap();
        assert_eq!(
            diff(Some(&l1), &l2),
            Diff::Label {
                from: "3".into(),
                to: "4A".into(),
                confidence_from: None,
                confidence_to: Some(4)
            }
        );
    }
}
