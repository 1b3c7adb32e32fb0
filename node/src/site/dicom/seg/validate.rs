//! Checks a [`SegWrite`] before anything is built: grid, slices, UIDs, text lengths and
//! characters, dates and times, segment numbering and algorithm names, and every volume's size
//! and values against the segmentation type (a LABELMAP's one label map: values that number
//! segments). Errors name the attribute, never its value.

use super::volumes::plane_size;
use super::{AlgorithmType, SegError, SegSource, SegWrite, SegmentationType};

pub(super) fn validate_write(w: &SegWrite<'_>) -> Result<(), SegError> {
    check_grid(w.source)?;
    check_uids(w)?;
    check_texts(w)?;
    if let SegmentationType::Fractional { max_value: 0, .. } = w.segmentation_type {
        return Err(SegError::Invalid("MaximumFractionalValue"));
    }
    check_segments(w)?;
    let one_map = matches!(w.volumes, [(0, _)]);
    match w.segmentation_type {
        SegmentationType::Labelmap => check_label_map(w),
        SegmentationType::Binary if one_map => {
            check_label_map(w)?;
            check_overlaps(w)
        }
        _ if !w.overlaps.is_empty() => Err(SegError::Invalid("overlaps without a label map")),
        _ => check_volumes(w),
    }
}

/// The overlap runs given with a BINARY SEG's one label map: each of a segment, inside the
/// grid.
fn check_overlaps(w: &SegWrite<'_>) -> Result<(), SegError> {
    let total = w.volumes.first().map_or(0, |(_, m)| m.len()) as u64;
    for (value, runs) in w.overlaps {
        if !w.segments.iter().any(|s| s.number == u16::from(*value)) {
            return Err(SegError::LabelNotASegment(*value));
        }
        if runs
            .iter()
            .any(|&(a, n)| n == 0 || u64::from(a) + u64::from(n) > total)
        {
            return Err(SegError::Invalid("overlap runs"));
        }
    }
    Ok(())
}

/// Frame size, slices, spacing and positions of the source.
fn check_grid(src: &SegSource) -> Result<(), SegError> {
    if src.rows == 0 || src.columns == 0 || src.rows > 0xFFFF || src.columns > 0xFFFF {
        return Err(SegError::Invalid("Rows/Columns"));
    }
    if src.slices.is_empty() {
        return Err(SegError::NoSlices);
    }
    if !(src.pixel_spacing.iter().all(|v| v.is_finite() && *v > 0.0)) {
        return Err(SegError::Invalid("PixelSpacing"));
    }
    if !(src.slice_thickness.is_finite() && src.slice_thickness > 0.0) {
        return Err(SegError::Invalid("SliceThickness"));
    }
    if src
        .slices
        .iter()
        .any(|s| !s.position.iter().all(|v| v.is_finite()))
    {
        return Err(SegError::Invalid("ImagePositionPatient"));
    }
    Ok(())
}

/// Every UID written, the new object's and the source's.
fn check_uids(w: &SegWrite<'_>) -> Result<(), SegError> {
    let src = w.source;
    for (v, name) in [
        (w.sop_instance_uid.as_str(), "SOPInstanceUID"),
        (&w.series_uid, "SeriesInstanceUID"),
        (&src.study_uid, "StudyInstanceUID"),
        (&src.series_uid, "source SeriesInstanceUID"),
        (&src.frame_of_reference_uid, "FrameOfReferenceUID"),
    ] {
        check_uid(v, name)?;
    }
    for s in &src.slices {
        check_uid(&s.sop_class_uid, "ReferencedSOPClassUID")?;
        check_uid(&s.sop_instance_uid, "ReferencedSOPInstanceUID")?;
    }
    Ok(())
}

/// Text lengths and characters, code strings, dates and times, and the required ones.
fn check_texts(w: &SegWrite<'_>) -> Result<(), SegError> {
    let src = w.source;
    for (v, max, name) in [
        (src.patient_name.as_str(), 64 * 5, "PatientName"),
        (&src.patient_id, 64, "PatientID"),
        (&src.study_id, 16, "StudyID"),
        (&src.accession_number, 16, "AccessionNumber"),
        (&src.referring_physician, 64 * 5, "ReferringPhysicianName"),
        (&w.series_description, 64, "SeriesDescription"),
        (&w.content_creator, 64 * 5, "ContentCreatorName"),
        (&w.manufacturer, 64, "Manufacturer"),
        (&w.software_version, 64, "SoftwareVersions"),
    ] {
        check_text(v, max, name)?;
    }
    check_cs(&w.content_label, "ContentLabel")?;
    if w.content_label.trim().is_empty() {
        return Err(SegError::InvalidText("ContentLabel"));
    }
    check_cs(&src.patient_sex, "PatientSex")?;
    for (v, name) in [
        (src.patient_birth_date.as_str(), "PatientBirthDate"),
        (&src.study_date, "StudyDate"),
        (&w.content_date, "ContentDate"),
    ] {
        check_date(v, name)?;
    }
    for (v, name) in [
        (src.study_time.as_str(), "StudyTime"),
        (&w.content_time, "ContentTime"),
    ] {
        check_time(v, name)?;
    }
    if w.content_date.is_empty() || w.content_time.is_empty() {
        return Err(SegError::InvalidText("ContentDate/ContentTime"));
    }
    if w.software_version.is_empty() || w.manufacturer.is_empty() {
        return Err(SegError::InvalidText("Manufacturer/SoftwareVersions"));
    }
    Ok(())
}

/// Segment numbering (1, 2, …), algorithm names and codes.
fn check_segments(w: &SegWrite<'_>) -> Result<(), SegError> {
    if w.segments.is_empty() {
        return Err(SegError::NoSegments);
    }
    for (i, s) in w.segments.iter().enumerate() {
        if usize::from(s.number) != i + 1 {
            return Err(SegError::SegmentNumbering);
        }
        if s.algorithm_type != AlgorithmType::Manual
            && s.algorithm_name
                .as_deref()
                .is_none_or(|n| n.trim().is_empty())
        {
            return Err(SegError::MissingAlgorithmName(s.number));
        }
        check_text(&s.label, 64, "SegmentLabel")?;
        if s.label.trim().is_empty() {
            return Err(SegError::InvalidText("SegmentLabel"));
        }
        if let Some(name) = &s.algorithm_name {
            check_text(name, 64, "SegmentAlgorithmName")?;
        }
        let family = s.algorithm_identification.as_ref().map(|a| &a.family);
        if let Some(a) = &s.algorithm_identification {
            check_text(&a.name, 64, "AlgorithmName")?;
            check_text(&a.version, 64, "AlgorithmVersion")?;
            if a.name.trim().is_empty() || a.version.trim().is_empty() {
                return Err(SegError::InvalidText(
                    "SegmentationAlgorithmIdentificationSequence",
                ));
            }
        }
        for c in [Some(&s.category), Some(&s.property_type), family]
            .into_iter()
            .flatten()
        {
            check_text(&c.value, 16, "CodeValue")?;
            check_text(&c.scheme, 16, "CodingSchemeDesignator")?;
            check_text(&c.meaning, 64, "CodeMeaning")?;
            if c.value.is_empty() || c.scheme.is_empty() || c.meaning.is_empty() {
                return Err(SegError::InvalidText("code sequence"));
            }
        }
    }
    Ok(())
}

/// One volume per declared segment, each of the grid's size with values the type allows.
fn check_volumes(w: &SegWrite<'_>) -> Result<(), SegError> {
    let max = match w.segmentation_type {
        SegmentationType::Binary | SegmentationType::Labelmap => 1,
        SegmentationType::Fractional { max_value, .. } => max_value,
    };
    for (i, (num, vol)) in w.volumes.iter().enumerate() {
        if !w.segments.iter().any(|s| s.number == *num) {
            return Err(SegError::UnknownSegment {
                frame: i,
                segment: *num,
            });
        }
        if w.volumes.iter().take(i).any(|(n, _)| n == num) {
            return Err(SegError::DuplicateVolume(*num));
        }
        check_volume_size(w.source, *num, vol)?;
        if vol.iter().any(|&v| v > max) {
            return Err(SegError::VolumeValue(*num));
        }
    }
    Ok(())
}

/// A LABELMAP's one label map (volume 0) of the grid's size, whose non-zero values number
/// segments (numbered 1..=N by `check_segments`; N ≤ 255 for 8-bit frames).
fn check_label_map(w: &SegWrite<'_>) -> Result<(), SegError> {
    let n = w.segments.len();
    if n > usize::from(u8::MAX) {
        return Err(SegError::TooManyLabels(n));
    }
    let [(number, map)] = w.volumes else {
        return Err(SegError::LabelMapVolumes(w.volumes.len()));
    };
    if *number != 0 {
        return Err(SegError::LabelMapNumber(*number));
    }
    check_volume_size(w.source, 0, map)?;
    match map.iter().find(|&&v| usize::from(v) > n) {
        Some(&v) => Err(SegError::LabelNotASegment(v)),
        None => Ok(()),
    }
}

/// A volume holds one value per voxel of the source grid.
fn check_volume_size(src: &SegSource, segment: u16, vol: &[u8]) -> Result<(), SegError> {
    let expected = plane_size(src.rows, src.columns)?
        .checked_mul(src.slices.len())
        .ok_or(SegError::Alloc(u64::MAX))?;
    if vol.len() == expected {
        Ok(())
    } else {
        Err(SegError::VolumeSize {
            segment,
            got: vol.len(),
            expected,
        })
    }
}

fn check_uid(v: &str, name: &'static str) -> Result<(), SegError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        });
    if ok {
        Ok(())
    } else {
        Err(SegError::InvalidUid(name))
    }
}

/// Single-valued text: no backslash, no control characters, at most `max` characters.
fn check_text(v: &str, max: usize, name: &'static str) -> Result<(), SegError> {
    if v.chars().count() > max || v.chars().any(|c| c == '\\' || c.is_control()) {
        Err(SegError::InvalidText(name))
    } else {
        Ok(())
    }
}

fn check_cs(v: &str, name: &'static str) -> Result<(), SegError> {
    let ok = v.len() <= 16
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SegError::InvalidText(name))
    }
}

/// DA: empty or YYYYMMDD.
fn check_date(v: &str, name: &'static str) -> Result<(), SegError> {
    if v.is_empty() || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(SegError::InvalidText(name))
    }
}

/// TM: empty, or HH[MM[SS[.F{1,6}]]].
fn check_time(v: &str, name: &'static str) -> Result<(), SegError> {
    let (main, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = v.is_empty()
        || (matches!(main.len(), 2 | 4 | 6)
            && main.bytes().all(|b| b.is_ascii_digit())
            && (!v.contains('.') || (main.len() == 6 && (1..=6).contains(&frac.len())))
            && frac.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(SegError::InvalidText(name))
    }
}
