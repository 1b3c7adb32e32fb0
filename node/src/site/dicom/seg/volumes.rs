//! Mapping the frames of a read SEG onto the slices of a series, one label volume per segment
//! ([`frames_to_volumes`]): by referenced SOP Instance UID, else by position along the slice
//! normal within a tolerance. Also the slice geometry (normal, plane size) the writer shares.

use std::collections::HashMap;

use super::layers::{Layers, OverlapRuns};
use super::{SegError, SegFrame, SegObject, SliceRef};

/// Maps the frames of `seg` onto the slices of a series (`slices` in z order, with the series'
/// `orientation`, `rows` and `columns`). A frame goes to the slice whose SOP Instance UID it
/// references when the list has it, else to the slice at its ImagePositionPatient (projected on
/// the slice normal, tolerance max(1e-3·slice spacing, 0.01 mm); the in-plane offset must be
/// within the same tolerance). Returns one label volume per segment of SegmentSequence, in its
/// order (x fastest, then y, then z = slice index); frames mapping to the same slice and
/// segment are merged by maximum.
pub fn frames_to_volumes(
    seg: &SegObject,
    slices: &[SliceRef],
    orientation: [f64; 6],
    rows: u32,
    columns: u32,
) -> Result<Vec<(u16, Vec<u8>)>, SegError> {
    if seg.segmentation_type == super::SegmentationType::Labelmap {
        return Err(SegError::Placement(
            "a LABELMAP SEG maps onto one label map (frames_to_label_map)",
        ));
    }
    let (plane, total, index) = placement(seg, slices, orientation, rows, columns)?;
    let mut volumes: Vec<(u16, Vec<u8>)> = Vec::with_capacity(seg.segments.len());
    for s in &seg.segments {
        volumes.push((s.number, zeroed(total)?));
    }
    for (k, frame) in seg.frames.iter().enumerate() {
        let vol = volumes
            .iter_mut()
            .find(|(num, _)| *num == frame.segment_number)
            .map(|(_, v)| v)
            .ok_or(SegError::UnknownSegment {
                frame: k,
                segment: frame.segment_number,
            })?;
        let dst = frame_slot(vol, &index, frame, k, plane)?;
        for (j, v) in frame.data.nonzero() {
            dst[j] = dst[j].max(v);
        }
    }
    Ok(volumes)
}

/// The frames of `seg` as one label map on the series grid (the slices as for
/// [`frames_to_volumes`]) whose values are the segment numbers: BINARY voxels that are set, or
/// FRACTIONAL voxels at or above half the maximum, count as inside. Overlapping segments are
/// refused (the lowest-numbered segment found under another is named, with its voxels); see
/// [`frames_to_layers`] to keep them.
pub fn frames_to_label_map(
    seg: &SegObject,
    slices: &[SliceRef],
    orientation: [f64; 6],
    rows: u32,
    columns: u32,
) -> Result<Vec<u8>, SegError> {
    let (labels, overlaps) = frames_to_layers(seg, slices, orientation, rows, columns)?;
    match overlaps.first() {
        Some((segment, runs)) => Err(SegError::Overlap {
            segment: u16::from(*segment),
            voxels: runs.iter().map(|&(_, n)| u64::from(n)).sum(),
        }),
        None => Ok(labels),
    }
}

/// The frames of `seg` as a label map on the series grid holding at each voxel the
/// lowest-numbered segment present, and for every other segment present there its voxels as
/// runs ([`Layers`]). Memory is the label map, the frames and one bit per voxel for each
/// segment that overlaps another, whatever the number of segments: every segment number is
/// checked (1..=255, each frame's declared) before the map is allocated.
pub fn frames_to_layers(
    seg: &SegObject,
    slices: &[SliceRef],
    orientation: [f64; 6],
    rows: u32,
    columns: u32,
) -> Result<(Vec<u8>, OverlapRuns), SegError> {
    let too_high = || SegError::Placement("a segment number above 255 does not fit a label map");
    if seg.segments.iter().any(|s| s.number == 0 || s.number > 255) {
        return Err(too_high());
    }
    let labelmap = seg.segmentation_type == super::SegmentationType::Labelmap;
    for (k, frame) in seg.frames.iter().enumerate() {
        if !labelmap
            && !seg
                .segments
                .iter()
                .any(|s| s.number == frame.segment_number)
        {
            return Err(SegError::UnknownSegment {
                frame: k,
                segment: frame.segment_number,
            });
        }
    }
    let (plane, total, index) = placement(seg, slices, orientation, rows, columns)?;
    if u32::try_from(total).is_err() {
        return Err(SegError::Alloc(total as u64));
    }
    let mut layers = Layers::new(total).ok_or(SegError::Alloc(total as u64))?;
    let threshold = threshold(seg.segmentation_type);
    for (k, frame) in seg.frames.iter().enumerate() {
        let start = frame_start(&index, frame, k, plane, total)?;
        let value = u8::try_from(frame.segment_number).map_err(|_| too_high())?;
        for (j, v) in frame.data.nonzero() {
            // A label map's frame holds segment numbers (checked on reading); the others a
            // value of one segment.
            let label = if labelmap {
                v
            } else if v >= threshold {
                value
            } else {
                0
            };
            if label != 0 && !layers.set(start + j, label) {
                return Err(SegError::Alloc(total as u64 / 8));
            }
        }
    }
    Ok(layers.finish())
}

/// The smallest value that counts as inside: any set bit, half the fractional maximum, or
/// any segment number of a label map.
fn threshold(t: super::SegmentationType) -> u8 {
    match t {
        super::SegmentationType::Binary | super::SegmentationType::Labelmap => 1,
        super::SegmentationType::Fractional { max_value, .. } => max_value.div_ceil(2).max(1),
    }
}

/// Checks a SEG's frame size and orientation against the series and returns the plane size,
/// the voxel count and the slice index.
fn placement<'a>(
    seg: &SegObject,
    slices: &'a [SliceRef],
    orientation: [f64; 6],
    rows: u32,
    columns: u32,
) -> Result<(usize, usize, SliceIndex<'a>), SegError> {
    if seg.rows != rows || seg.columns != columns {
        return Err(SegError::SizeMismatch {
            seg_rows: seg.rows,
            seg_columns: seg.columns,
            rows,
            columns,
        });
    }
    if slices.is_empty() {
        return Err(SegError::NoSlices);
    }
    let n = checked_normal(&orientation).ok_or(SegError::BadOrientation)?;
    if let Some(o) = seg.orientation
        && !orientation_close(&o, &orientation)
    {
        return Err(SegError::OrientationMismatch);
    }
    let plane = plane_size(rows, columns)?;
    let total_u64 = (plane as u64)
        .checked_mul(slices.len() as u64)
        .ok_or(SegError::Alloc(u64::MAX))?;
    let total = usize::try_from(total_u64).map_err(|_| SegError::Alloc(total_u64))?;
    Ok((plane, total, SliceIndex::new(slices, n)))
}

/// The part of a volume frame `k` maps to, after checking its size.
fn frame_slot<'v>(
    volume: &'v mut [u8],
    index: &SliceIndex<'_>,
    frame: &SegFrame,
    k: usize,
    plane: usize,
) -> Result<&'v mut [u8], SegError> {
    let start = frame_start(index, frame, k, plane, volume.len())?;
    Ok(&mut volume[start..start + plane])
}

/// The first voxel of the slice frame `k` maps to in a volume of `total` voxels, after
/// checking the frame's size.
fn frame_start(
    index: &SliceIndex<'_>,
    frame: &SegFrame,
    k: usize,
    plane: usize,
    total: usize,
) -> Result<usize, SegError> {
    if frame.data.len() != plane {
        return Err(SegError::FrameSize {
            frame: k,
            got: frame.data.len(),
            expected: plane,
        });
    }
    let z = index.slice_of(frame).ok_or(SegError::FrameUnmapped(k))?;
    z.checked_mul(plane)
        .filter(|start| start.checked_add(plane).is_some_and(|end| end <= total))
        .ok_or(SegError::FrameUnmapped(k))
}

/// Finds the slice a frame belongs to: by SOP Instance UID, else by position.
struct SliceIndex<'a> {
    slices: &'a [SliceRef],
    /// The slice normal.
    n: [f64; 3],
    /// (distance along the normal, slice index), sorted by distance.
    by_depth: Vec<(f64, usize)>,
    /// Matching tolerance, mm.
    tol: f64,
    by_uid: HashMap<&'a str, usize>,
}

impl<'a> SliceIndex<'a> {
    fn new(slices: &'a [SliceRef], n: [f64; 3]) -> Self {
        let mut by_depth: Vec<(f64, usize)> = slices
            .iter()
            .enumerate()
            .map(|(i, s)| (dot(&s.position, &n), i))
            .collect();
        by_depth.sort_by(|a, b| a.0.total_cmp(&b.0));
        let min_gap = by_depth
            .windows(2)
            .filter_map(|w| match w {
                [a, b] if b.0 - a.0 > 0.0 => Some(b.0 - a.0),
                _ => None,
            })
            .fold(f64::INFINITY, f64::min);
        let tol = if min_gap.is_finite() {
            (1e-3 * min_gap).max(0.01)
        } else {
            0.01
        };
        let mut by_uid: HashMap<&str, usize> = HashMap::with_capacity(slices.len());
        for (i, s) in slices.iter().enumerate() {
            by_uid.entry(s.sop_instance_uid.as_str()).or_insert(i);
        }
        SliceIndex {
            slices,
            n,
            by_depth,
            tol,
            by_uid,
        }
    }

    fn slice_of(&self, frame: &SegFrame) -> Option<usize> {
        let by_ref = frame
            .referenced_sop_instance_uid
            .as_deref()
            .and_then(|u| self.by_uid.get(u).copied());
        match by_ref {
            Some(z) => Some(z),
            None => frame.position.and_then(|p| self.slice_at(&p)),
        }
    }

    /// The slice at position `p`: nearest along the normal within `tol`, in-plane offset
    /// within `tol`.
    fn slice_at(&self, p: &[f64; 3]) -> Option<usize> {
        let (n, by_depth, tol) = (&self.n, &self.by_depth, self.tol);
        let d = dot(p, n);
        if !d.is_finite() {
            return None;
        }
        let i = by_depth.partition_point(|(depth, _)| *depth < d);
        let lo = i.saturating_sub(1);
        let (_, idx) = by_depth
            .get(lo..by_depth.len().min(i + 1))?
            .iter()
            .filter(|(depth, _)| (depth - d).abs() <= tol)
            .min_by(|a, b| (a.0 - d).abs().total_cmp(&(b.0 - d).abs()))?;
        let s = self.slices.get(*idx)?;
        let diff = [
            p[0] - s.position[0],
            p[1] - s.position[1],
            p[2] - s.position[2],
        ];
        let along = dot(&diff, n);
        let perp = [
            diff[0] - along * n[0],
            diff[1] - along * n[1],
            diff[2] - along * n[2],
        ];
        (dot(&perp, &perp).sqrt() <= tol).then_some(*idx)
    }
}

/// Tolerance for direction cosines to count as equal.
const ORIENTATION_TOLERANCE: f64 = 1e-4;

pub(super) fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The unit slice normal (row direction × column direction), if the orientation is two
/// orthonormal vectors.
pub(super) fn checked_normal(o: &[f64; 6]) -> Option<[f64; 3]> {
    if !o.iter().all(|v| v.is_finite()) {
        return None;
    }
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let unit = |v: &[f64; 3]| (dot(v, v).sqrt() - 1.0).abs() < 1e-3;
    if !unit(&r) || !unit(&c) || dot(&r, &c).abs() > 1e-3 {
        return None;
    }
    let n = [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ];
    let len = dot(&n, &n).sqrt();
    Some([n[0] / len, n[1] / len, n[2] / len])
}

fn orientation_close(a: &[f64; 6], b: &[f64; 6]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= ORIENTATION_TOLERANCE)
}

pub(super) fn plane_size(rows: u32, columns: u32) -> Result<usize, SegError> {
    let p = u64::from(rows) * u64::from(columns);
    if p == 0 {
        return Err(SegError::Invalid("Rows/Columns"));
    }
    usize::try_from(p).map_err(|_| SegError::Alloc(p))
}

fn zeroed(len: usize) -> Result<Vec<u8>, SegError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| SegError::Alloc(len as u64))?;
    v.resize(len, 0);
    Ok(v)
}

/// Longest series a SEG-only grid may span.
const MAX_GRID_SLICES: usize = 10_000;

/// A voxel grid for SEG objects read without their source series (the offline QA commands):
/// the slices from the lowest to the highest frame position of all `segs` along the slice
/// normal, spaced by the smallest gap between distinct frame positions. All SEGs must share
/// frame size, pixel spacing and orientation, and every frame must carry a position that lies on
/// that regular grid. Returns the geometry and a slice list for [`frames_to_volumes`].
pub fn common_grid(
    segs: &[SegObject],
) -> Result<(crate::site::dicom::geometry::SeriesGeometry, Vec<SliceRef>), SegError> {
    let first = segs.first().ok_or(SegError::NoSlices)?;
    let orientation = first.orientation.ok_or(SegError::Placement(
        "a SEG without ImageOrientationPatient cannot be placed without its series",
    ))?;
    let spacing = first.pixel_spacing.ok_or(SegError::Placement(
        "a SEG without PixelSpacing cannot be placed without its series",
    ))?;
    let n = checked_normal(&orientation).ok_or(SegError::BadOrientation)?;
    let mut points: Vec<(f64, [f64; 3])> = Vec::new();
    for s in segs {
        check_same_grid(s, first, &orientation, &spacing)?;
        for f in &s.frames {
            let p = f.position.ok_or(SegError::Placement(
                "a SEG frame without a position cannot be placed without its series",
            ))?;
            points.push((dot(&p, &n), p));
        }
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (origin, step, count) = regular_steps(&points)?;
    let slices: Vec<SliceRef> = (0..count)
        .map(|k| {
            let t = k as f64 * step;
            SliceRef {
                sop_instance_uid: String::new(),
                position: [
                    origin[0] + t * n[0],
                    origin[1] + t * n[1],
                    origin[2] + t * n[2],
                ],
            }
        })
        .collect();
    let geometry = crate::site::dicom::geometry::SeriesGeometry {
        rows: first.rows,
        columns: first.columns,
        slices: count as u32,
        pixel_spacing: spacing,
        slice_spacing: Some(step),
        uniform_spacing: true,
        orientation,
        origin,
    };
    Ok((geometry, slices))
}

/// Whether `s` has the frame size of `first`, and its orientation and pixel spacing if given.
fn check_same_grid(
    s: &SegObject,
    first: &SegObject,
    orientation: &[f64; 6],
    spacing: &[f64; 2],
) -> Result<(), SegError> {
    if s.rows != first.rows || s.columns != first.columns {
        return Err(SegError::SizeMismatch {
            seg_rows: s.rows,
            seg_columns: s.columns,
            rows: first.rows,
            columns: first.columns,
        });
    }
    if s.orientation
        .is_some_and(|o| !orientation_close(&o, orientation))
    {
        return Err(SegError::OrientationMismatch);
    }
    if s.pixel_spacing
        .is_some_and(|p| (p[0] - spacing[0]).abs() > 1e-4 || (p[1] - spacing[1]).abs() > 1e-4)
    {
        return Err(SegError::Placement(
            "the SEGs have different pixel spacings",
        ));
    }
    Ok(())
}

/// The regular slice grid through frame positions sorted by depth: the first position, the
/// smallest gap between distinct depths (1 mm for a single depth) and the slice count; every
/// depth must lie on it.
fn regular_steps(points: &[(f64, [f64; 3])]) -> Result<([f64; 3], f64, usize), SegError> {
    let (lo, origin) = *points.first().ok_or(SegError::NoSlices)?;
    let hi = points.last().map_or(lo, |p| p.0);
    let tol = 0.01;
    let step = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|g| *g > tol)
        .fold(f64::INFINITY, f64::min);
    let step = if step.is_finite() { step } else { 1.0 };
    let count = ((hi - lo) / step).round() as usize + 1;
    if count > MAX_GRID_SLICES {
        return Err(SegError::Placement(
            "the SEG frames span more slices than a grid may hold",
        ));
    }
    for (d, _) in points {
        let k = ((d - lo) / step).round();
        if (lo + k * step - d).abs() > tol.max(step * 1e-3) {
            return Err(SegError::Placement(
                "the SEG frames do not lie on a regular grid of slices",
            ));
        }
    }
    Ok((origin, step, count))
}

/// The per-segment volumes of a SEG as one label map whose values are the segment numbers:
/// BINARY voxels that are set, or FRACTIONAL voxels at or above half the maximum, count as
/// inside. Segment numbers above 255 and overlapping segments are refused: a label map holds
/// one segment per voxel.
pub fn label_map(seg: &SegObject, volumes: &[(u16, Vec<u8>)]) -> Result<Vec<u8>, SegError> {
    let threshold = threshold(seg.segmentation_type);
    let n = volumes.first().map_or(0, |(_, v)| v.len());
    let mut labels = zeroed(n)?;
    for (number, volume) in volumes {
        let value = u8::try_from(*number)
            .ok()
            .filter(|v| *v > 0)
            .ok_or(SegError::Placement(
                "a segment number above 255 does not fit a label map",
            ))?;
        let mut overlap = 0u64;
        for (l, &v) in labels.iter_mut().zip(volume) {
            if v >= threshold {
                overlap += u64::from(*l != 0);
                *l = value;
            }
        }
        if overlap > 0 {
            return Err(SegError::Overlap {
                segment: *number,
                voxels: overlap,
            });
        }
    }
    Ok(labels)
}
