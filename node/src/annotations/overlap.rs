//! Overlapping segments (DICOM SEG allows them: a lesion inside its organ, a model's and a
//! reader's structure on the same voxels). A segmentation keeps one label map holding, at each
//! voxel, the lowest-valued segment present, and for every other segment present there a list
//! of runs ([`Overlap`]). That form is unique for a set of masks, so the content hash of equal
//! masks is equal, and a segmentation without overlaps is exactly the plain label map it always
//! was. `site::dicom::seg::Layers` builds that form from masks written one after the other.

use std::borrow::Cow;

use super::model::{ModelError, Segmentation};

impl Segmentation {
    /// Whether any segment lies under another.
    pub fn has_overlaps(&self) -> bool {
        !self.overlaps.is_empty()
    }

    /// The voxels of segment `value` in two segmentations, for counting: both label maps and
    /// `value` itself when neither has the segment under another, else both masks and 1.
    pub fn segment_pair<'a>(
        a: &'a Segmentation,
        b: &'a Segmentation,
        value: u8,
    ) -> (Cow<'a, [u8]>, Cow<'a, [u8]>, u8) {
        if a.overlap_of(value).is_none() && b.overlap_of(value).is_none() {
            (Cow::Borrowed(&a.labels), Cow::Borrowed(&b.labels), value)
        } else {
            (Cow::Owned(a.mask(value)), Cow::Owned(b.mask(value)), 1)
        }
    }

    /// Checks the overlaps against the label map (see [`Segmentation::layered`]).
    pub(super) fn check_overlaps(&self) -> Result<(), ModelError> {
        let total = self.labels.len() as u64;
        let mut previous: Option<u8> = None;
        for o in &self.overlaps {
            let bad = |reason| ModelError::BadOverlap {
                value: o.value,
                reason,
            };
            if previous == Some(o.value) {
                return Err(bad("listed twice"));
            }
            previous = Some(o.value);
            if !self.segments.iter().any(|s| s.value == o.value) {
                return Err(bad("not a declared segment"));
            }
            if o.runs.is_empty() {
                return Err(bad("no voxels"));
            }
            let mut end = 0u64;
            for (k, &(start, n)) in o.runs.iter().enumerate() {
                let (start, stop) = (u64::from(start), u64::from(start) + u64::from(n));
                if n == 0 || stop > total || (k > 0 && start <= end) {
                    return Err(bad(
                        "runs are empty, outside the grid, unsorted or adjacent",
                    ));
                }
                end = stop;
                let under = &self.labels[start as usize..stop as usize];
                if under.iter().any(|&l| l == 0 || l >= o.value) {
                    return Err(bad("a voxel is not under a lower-valued segment"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::model::{Overlap, Segment};
    use crate::site::dicom::seg::Layers;

    fn segments() -> Vec<Segment> {
        vec![
            Segment::named(1, "liver"),
            Segment::named(2, "lesion"),
            Segment::named(3, "vessel"),
        ]
    }

    /// Masks written in any order give one form, and each mask comes back as written.
    #[test]
    fn overlapping_masks_have_one_form_and_come_back_whole() {
        let liver = [0u8, 1, 1, 1, 1, 1, 0, 0];
        let lesion = [0u8, 0, 1, 1, 0, 0, 0, 1];
        let vessel = [1u8, 0, 0, 1, 1, 0, 0, 0];
        let masks = [(1u8, &liver), (2, &lesion), (3, &vessel)];
        let build = |order: &[usize]| {
            let mut l = Layers::new(8).unwrap();
            for &k in order {
                let (value, mask) = masks[k];
                for (i, &m) in mask.iter().enumerate() {
                    if m == 1 {
                        assert!(l.set(i, value));
                    }
                }
            }
            let (labels, overlaps) = l.finish();
            let overlaps = overlaps
                .into_iter()
                .map(|(value, runs)| Overlap { value, runs })
                .collect();
            Segmentation::layered([8, 1, 1], segments(), labels, overlaps).unwrap()
        };
        let a = build(&[0, 1, 2]);
        assert_eq!(a, build(&[2, 1, 0]));
        assert_eq!(a, build(&[1, 2, 0]));
        assert_eq!(a.labels, vec![3, 1, 1, 1, 1, 1, 0, 2]);
        assert!(a.has_overlaps());
        assert_eq!(a.mask(1), liver.to_vec());
        assert_eq!(a.mask(2), lesion.to_vec());
        assert_eq!(a.mask(3), vessel.to_vec());
        assert_eq!(a.voxel_counts(), vec![(1, 5), (2, 3), (3, 3)]);
        assert_eq!(a.overlap_of(2), Some(&[(2u32, 2u32)][..]));
        assert_eq!(a.overlap_of(3), Some(&[(3u32, 2u32)][..]));
    }

    /// Overlaps that are not in the one form are refused.
    #[test]
    fn overlaps_out_of_form_are_refused() {
        let labels = vec![1u8, 1, 2, 0];
        let with = |value, runs: Vec<(u32, u32)>| {
            Segmentation::layered(
                [4, 1, 1],
                segments(),
                labels.clone(),
                vec![Overlap { value, runs }],
            )
        };
        assert!(with(2, vec![(0, 2)]).is_ok());
        // Under itself, under background, or under a higher segment.
        assert!(with(2, vec![(2, 1)]).is_err());
        assert!(with(2, vec![(3, 1)]).is_err());
        assert!(with(1, vec![(2, 1)]).is_err());
        // Adjacent, unsorted, empty, outside, undeclared.
        assert!(with(2, vec![(0, 1), (1, 1)]).is_err());
        assert!(with(3, vec![(2, 1), (0, 1)]).is_err());
        assert!(with(2, vec![]).is_err());
        assert!(with(2, vec![(0, 0)]).is_err());
        assert!(with(2, vec![(3, u32::MAX)]).is_err());
        assert!(with(9, vec![(0, 1)]).is_err());
    }

    /// Per-segment agreement counts a segment's voxels under another segment too.
    #[test]
    fn agreement_is_per_segment_overlaps_included() {
        let plain = Segmentation::new([4, 1, 1], segments(), vec![1, 1, 0, 0]).unwrap();
        let under = |runs| {
            Segmentation::layered(
                [4, 1, 1],
                segments(),
                vec![1, 1, 0, 0],
                vec![Overlap { value: 2, runs }],
            )
            .unwrap()
        };
        let a = under(vec![(0, 2)]);
        let b = under(vec![(1, 1)]);
        let dice = crate::annotations::curation::segment_dice;
        assert_eq!(dice(&a, &b, 1), 1.0);
        assert!((dice(&a, &b, 2) - 2.0 / 3.0).abs() < 1e-12);
        assert!(dice(&plain, &a, 2) == 0.0);
        assert!(dice(&plain, &plain, 2).is_nan());
        use crate::annotations::diff::{Diff, SegmentChange, diff};
        use crate::annotations::model::Content;
        let d = diff(Some(&Content::Segmentation(a)), &Content::Segmentation(b));
        let Diff::Segmentation { segments, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            segments[1],
            SegmentChange {
                value: 2,
                name: "lesion".into(),
                added: 0,
                removed: 1
            }
        );
    }
}
