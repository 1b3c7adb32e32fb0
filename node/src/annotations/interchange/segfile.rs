//! DICOM SEG files in and out (3D Slicer, OHIF, highdicom, dcmqi write them): a SEG imports as
//! a segmentation on the series it references, its overlapping segments and what its author
//! said about each segment (codes, colour, algorithm) kept; an export writes them back as they
//! came, for local use with the original identifiers or de-identified with pseudonymous ones.

use std::path::Path;

use super::masks::{GRID_TOLERANCE_MM, mask_reader, read_blocking, save_segmentation, warn_uneven};
use super::{Context, ImportError, ImportOptions, ImportedItem, series_grid_of};
use crate::annotations::model::{
    Algorithm, Code, Description, Method, Overlap, Segment, Segmentation,
};
use crate::site::dicom::seg::{
    self, AlgorithmIdentification, AlgorithmType, CodedConcept, SegLimits, SegSource, SegWrite,
    SegmentInfo, SegmentationType, SliceRef, SourceSlice,
};
use crate::site::store::SeriesGrid;

/// Whether a file starts like a DICOM Part 10 file.
pub fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b[128..132] == b"DICM"
}

/// Imports a DICOM SEG (BINARY or FRACTIONAL, one or more segments) as a label map on the
/// series it references. Frames map to slices by ReferencedSOPInstanceUID, else by position.
/// FRACTIONAL values at or above half the maximum count as inside. Overlapping segments are
/// kept as they are, and so is what the SEG says about each segment.
pub async fn import_seg(
    ctx: &Context<'_>,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedItem>, ImportError> {
    let reader = mask_reader(ctx, opts, path).await?;
    if opts.model_version.is_some() {
        return Err(ImportError::file(
            path,
            "--model-version is for NIfTI masks; a SEG states its own algorithm",
        ));
    }
    let seg_obj = read_blocking(path, |p| seg::read_seg(p, &SegLimits::default())).await?;
    let series_name = match (&opts.series, &seg_obj.referenced_series_uid) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => {
            return Err(ImportError::file(
                path,
                "the SEG references no series; name it with --series",
            ));
        }
    };
    let (case, grid) = series_grid_of(ctx, opts, path, &series_name, "a mask needs").await?;
    let slices = seg_slices(&seg_obj, &grid).map_err(|m| ImportError::file(path, m))?;
    let (labels, overlaps) =
        seg::frames_to_layers(&seg_obj, &slices, grid.orientation, grid.rows, grid.columns)
            .map_err(|e| ImportError::file(path, e.to_string()))?;
    let overlaps = overlaps
        .into_iter()
        .map(|(value, runs)| Overlap { value, runs })
        .collect();
    let automatic = reader.kind == crate::annotations::readers::ReaderKind::Model.as_str();
    // What the SEG says about the segment of a value, unless it is what an export writes when
    // nothing was said (ours, re-imported).
    let said = |value: u8| {
        let s = seg_obj
            .segments
            .iter()
            .find(|s| s.number == u16::from(value))?;
        let named = Segment::named(value, s.label.clone());
        let default = [reader.id.as_str(), reader.pseudonym.as_str()]
            .iter()
            .any(|creator| same_description(s, &default_info(&named, automatic, creator)));
        (!default).then(|| description_of(s))
    };
    // Every segment of the SEG (numbered 1..=255: checked by frames_to_layers), or the declared
    // ones, which every labelled value must then be; each with what its author said.
    let segments = match &opts.segments {
        Some(declared) => declared
            .iter()
            .map(|d| Segment {
                description: said(d.value),
                ..d.clone()
            })
            .collect(),
        None => seg_obj
            .segments
            .iter()
            .map(|s| {
                let value = u8::try_from(s.number).unwrap_or_default();
                Segment {
                    description: said(value),
                    ..Segment::named(value, s.label.clone())
                }
            })
            .collect(),
    };
    let map = (case, grid.dims(), segments, labels, overlaps);
    let items = save_segmentation(ctx, path, opts, &reader, map, "dicom-seg").await?;
    Ok(warn_uneven(items, &grid))
}

/// The slices of `grid` for mapping the frames of `seg_obj`, by the instance UIDs the SEG
/// references (pseudonymous for a SEG exported with --deidentified, else original). The series
/// must have per-slice instances and the SEG its pixel spacing.
fn seg_slices(seg_obj: &seg::SegObject, grid: &SeriesGrid) -> Result<Vec<SliceRef>, String> {
    let pseudonymous = seg_obj.referenced_series_uid.as_deref() == Some(grid.pseudo_uid.as_str());
    let slices: Vec<SliceRef> = grid
        .slice_list
        .iter()
        .map(|s| SliceRef {
            sop_instance_uid: if pseudonymous {
                s.pseudo_uid.clone()
            } else {
                s.original_uid.clone()
            },
            position: s.position,
        })
        .collect();
    if slices.len() != grid.slices as usize {
        return Err(format!(
            "series {} has no per-slice instances to map SEG frames onto",
            grid.pseudo_uid
        ));
    }
    if let Some(ps) = seg_obj.pixel_spacing
        && (0..2).any(|i| (ps[i] - grid.pixel_spacing[i]).abs() > GRID_TOLERANCE_MM)
    {
        return Err(format!(
            "SEG pixel spacing {:.4}x{:.4} mm does not match series {} ({:.4}x{:.4} mm)",
            ps[0], ps[1], grid.pseudo_uid, grid.pixel_spacing[0], grid.pixel_spacing[1]
        ));
    }
    Ok(slices)
}

/// A deterministic `2.25.` UID for an exported object, from what it is made of: re-exporting
/// the same version gives the same UIDs.
fn derived_uid(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"fedanno-export-uid-v1");
    for p in parts {
        ctx.update(&[0]);
        ctx.update(p.as_bytes());
    }
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Who and what an exported SEG is about.
pub struct SegExport<'a> {
    pub seg: &'a Segmentation,
    pub grid: &'a SeriesGrid,
    pub version: &'a crate::site::store::VersionRow,
    pub creator: &'a str,
    pub who: &'a super::export::SegIdentity,
    pub deidentified: bool,
    /// The reader is a model: its segments are `AUTOMATIC`, with the model named as the
    /// algorithm (a human reader's are `MANUAL`).
    pub automatic: bool,
    /// Write a Label Map Segmentation (LABELMAP) rather than a BINARY one.
    pub labelmap: bool,
}

/// Writes a segmentation as a BINARY (or with `labelmap` a LABELMAP) DICOM SEG referencing its
/// source series: the original identifiers for local use, or only pseudonymous ones with
/// `deidentified`.
pub fn export_seg(e: &SegExport<'_>, out: &Path) -> Result<(), String> {
    let g = e.grid;
    if g.slice_list.len() != g.slices as usize {
        return Err(format!(
            "series {} has no per-slice instances for a SEG to reference",
            g.pseudo_uid
        ));
    }
    let source = seg_source(e);
    let (numbers, labels) = numbered(e.seg);
    let segments: Vec<SegmentInfo> = e
        .seg
        .segments
        .iter()
        .map(|s| SegmentInfo {
            number: u16::from(numbers[usize::from(s.value)]),
            ..segment_info(s, e.automatic, e.creator)
        })
        .collect();
    // One label map (and, for BINARY, the overlap runs): memory stays one label map whatever
    // the number of segments.
    let segmentation_type = if e.labelmap {
        if let Some(o) = e.seg.overlaps.first() {
            return Err(format!(
                "segment {} overlaps another segment, which a LABELMAP SEG cannot hold; export it with --format seg",
                o.value
            ));
        }
        SegmentationType::Labelmap
    } else {
        SegmentationType::Binary
    };
    let volumes = [(0u16, labels.as_ref())];
    let overlaps: Vec<(u8, Vec<(u32, u32)>)> = e
        .seg
        .overlaps
        .iter()
        .map(|o| (numbers[usize::from(o.value)], o.runs.clone()))
        .collect();
    let mode = if e.deidentified {
        "deidentified"
    } else {
        "local"
    };
    let (date, time) = crate::site::calendar::utc_date_time(e.version.created_at);
    let w = SegWrite {
        source: &source,
        segments: &segments,
        volumes: &volumes,
        overlaps: &overlaps,
        segmentation_type,
        sop_instance_uid: derived_uid(&[
            if e.labelmap {
                "seg-labelmap-instance"
            } else {
                "seg-instance"
            },
            &e.version.content_hash,
            &source.series_uid,
            mode,
        ]),
        series_uid: derived_uid(&[
            if e.labelmap {
                "seg-labelmap-series"
            } else {
                "seg-series"
            },
            &e.version.content_hash,
            &source.series_uid,
            mode,
        ]),
        series_number: 9000 + (e.version.version.clamp(0, 999) as u32),
        series_description: format!("fedanno {} v{}", e.version.kind, e.version.version),
        content_label: "ANNOTATION".into(),
        content_creator: e.creator.to_string(),
        // A de-identified SEG names no site: the hospital's name is identifying.
        manufacturer: if e.deidentified {
            "fedanno".to_string()
        } else {
            format!("fedanno ({})", e.who.site_name)
        },
        software_version: e.who.software_version.clone(),
        content_date: date,
        content_time: time,
    };
    seg::write_seg(out, &w).map_err(|err| err.to_string())
}

/// SEG segment numbers are 1, 2, … in order: the number of each segment value, and the label
/// map in those numbers (the stored one when its values already are).
fn numbered(seg: &Segmentation) -> ([u8; 256], std::borrow::Cow<'_, [u8]>) {
    let mut numbers = [0u8; 256];
    for (i, s) in seg.segments.iter().enumerate() {
        numbers[usize::from(s.value)] = (i + 1) as u8;
    }
    if seg
        .segments
        .iter()
        .all(|s| numbers[usize::from(s.value)] == s.value)
    {
        return (numbers, std::borrow::Cow::Borrowed(&seg.labels));
    }
    let renumbered = seg
        .labels
        .iter()
        .map(|&v| numbers[usize::from(v)])
        .collect();
    (numbers, std::borrow::Cow::Owned(renumbered))
}

/// The source series a SEG references: original identifiers, or pseudonymous ones when
/// `e.deidentified` (with the de-identification method and an `ANON^` patient name).
fn seg_source(e: &SegExport<'_>) -> SegSource {
    let g = e.grid;
    let pick = |orig: &str, pseudo: &str| {
        if e.deidentified {
            pseudo.to_string()
        } else {
            orig.to_string()
        }
    };
    let for_uid = match (&g.for_original_uid, &g.for_pseudo_uid) {
        (Some(o), Some(p)) => pick(o, p),
        _ => derived_uid(&["frame-of-reference", &g.pseudo_uid]),
    };
    SegSource {
        deidentification_method: e
            .deidentified
            .then(|| crate::site::dicom::deid::SCHEME.to_string()),
        patient_name: if e.deidentified {
            format!("ANON^{}", g.patient_pseudonym)
        } else {
            g.patient_original_name.clone()
        },
        patient_id: pick(&g.patient_original_id, &g.patient_pseudonym),
        patient_birth_date: String::new(),
        patient_sex: String::new(),
        study_uid: pick(&g.study_original_uid, &g.study_pseudo_uid),
        study_date: if e.deidentified {
            g.study_pseudo_date.clone()
        } else {
            g.study_original_date.clone()
        }
        .unwrap_or_default(),
        study_time: String::new(),
        study_id: String::new(),
        accession_number: String::new(),
        referring_physician: String::new(),
        series_uid: pick(&g.original_uid, &g.pseudo_uid),
        frame_of_reference_uid: for_uid,
        rows: g.rows,
        columns: g.columns,
        pixel_spacing: g.pixel_spacing,
        slice_thickness: g.slice_spacing.unwrap_or(1.0),
        orientation: g.orientation,
        slices: g
            .slice_list
            .iter()
            .map(|s| SourceSlice {
                sop_class_uid: s.sop_class_uid.clone(),
                sop_instance_uid: pick(&s.original_uid, &s.pseudo_uid),
                position: s.position,
            })
            .collect(),
    }
}

/// Whether two SEG segment descriptions say the same (number and label aside).
fn same_description(a: &SegmentInfo, b: &SegmentInfo) -> bool {
    a.algorithm_type == b.algorithm_type
        && a.algorithm_name == b.algorithm_name
        && a.category == b.category
        && a.property_type == b.property_type
        && a.colour == b.colour
        && a.algorithm_identification == b.algorithm_identification
}

/// What a SEG says about a segment, as a description to keep.
fn description_of(s: &SegmentInfo) -> Description {
    let code = |c: &CodedConcept| Code {
        value: c.value.clone(),
        scheme: c.scheme.clone(),
        meaning: c.meaning.clone(),
    };
    let method = match s.algorithm_type {
        AlgorithmType::Manual => Method::Manual,
        AlgorithmType::Semiautomatic => Method::Semiautomatic,
        AlgorithmType::Automatic => Method::Automatic,
    };
    // SegmentAlgorithmName is required for an algorithm's segment; a file without it still
    // says an algorithm made the segment.
    let identification = s.algorithm_identification.as_ref();
    let algorithm = (method != Method::Manual).then(|| Algorithm {
        name: s
            .algorithm_name
            .clone()
            .or_else(|| identification.map(|a| a.name.clone()))
            .unwrap_or_else(|| "unnamed algorithm".into()),
        version: identification.map(|a| a.version.clone()),
        family: identification.map(|a| code(&a.family)),
    });
    Description {
        category: code(&s.category),
        property_type: code(&s.property_type),
        colour: s.colour,
        method,
        algorithm,
    }
}

/// The SEG description of a segment: what its author said, else the default codes, with a
/// model reader's segments `AUTOMATIC` and named after the model (`creator`).
fn segment_info(s: &Segment, automatic: bool, creator: &str) -> SegmentInfo {
    match &s.description {
        Some(d) => SegmentInfo {
            number: u16::from(s.value),
            label: s.name.clone(),
            algorithm_type: match d.method {
                Method::Manual => AlgorithmType::Manual,
                Method::Semiautomatic => AlgorithmType::Semiautomatic,
                Method::Automatic => AlgorithmType::Automatic,
            },
            algorithm_name: d.algorithm.as_ref().map(|a| a.name.clone()),
            category: concept(&d.category),
            property_type: concept(&d.property_type),
            colour: d.colour,
            algorithm_identification: d.algorithm.as_ref().and_then(identification),
        },
        None => default_info(s, automatic, creator),
    }
}

/// The SEG description of a segment nothing was said about: the default codes, `AUTOMATIC` and
/// named after the model (`creator`) for a model reader's, else `MANUAL`.
fn default_info(s: &Segment, automatic: bool, creator: &str) -> SegmentInfo {
    SegmentInfo {
        number: u16::from(s.value),
        label: s.name.clone(),
        algorithm_type: if automatic {
            AlgorithmType::Automatic
        } else {
            AlgorithmType::Manual
        },
        algorithm_name: automatic.then(|| creator.to_string()),
        category: CodedConcept::new("49755003", "SCT", "Morphologically Altered Structure"),
        property_type: CodedConcept::new("4147007", "SCT", "Mass"),
        colour: None,
        algorithm_identification: None,
    }
}

/// A code as the SEG writer takes it.
fn concept(c: &Code) -> CodedConcept {
    CodedConcept::new(&c.value, &c.scheme, &c.meaning)
}

/// The SEG identification of an algorithm whose version is known (its family, when not
/// known, DCM 123110 "Artificial Intelligence": the algorithms readers are here are models).
fn identification(a: &Algorithm) -> Option<AlgorithmIdentification> {
    let family = concept(
        a.family
            .as_ref()
            .unwrap_or(&Code::artificial_intelligence()),
    );
    Some(AlgorithmIdentification {
        family,
        name: a.name.clone(),
        version: a.version.clone()?,
    })
}
