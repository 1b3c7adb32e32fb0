//! Writing DICOM files: single-frame CT images (what `fedanno synth` produces, and the input of
//! ingest tests and benchmarks). Files are Part 10 with Explicit VR Little Endian and carry a
//! complete CT Image IOD header that pydicom and our own ingest read.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject, WithMetaError};
use thiserror::Error;

/// Every attribute of one synthetic CT slice. Identifying fields are free text so tests can
/// plant canaries in them.
#[derive(Clone)]
pub struct CtSlice<'a> {
    pub patient_name: &'a str,
    pub patient_id: &'a str,
    pub patient_birth_date: &'a str,
    pub institution_name: &'a str,
    pub study_uid: &'a str,
    pub series_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub frame_of_reference_uid: &'a str,
    pub study_date: &'a str,
    pub study_description: &'a str,
    pub accession_number: &'a str,
    pub series_number: u32,
    pub instance_number: u32,
    pub rows: u16,
    pub columns: u16,
    /// (row spacing, column spacing) in mm.
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: f64,
    pub orientation: [f64; 6],
    pub position: [f64; 3],
    /// Hounsfield units, row-major, `rows * columns` values.
    pub pixels: &'a [i16],
}

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("pixel buffer holds {got} values, expected {expected}")]
    PixelCount { got: usize, expected: usize },
    #[error("cannot build the file meta group")]
    Meta,
    #[error("cannot write DICOM file: {0}")]
    Write(String),
}

/// Formats a DS value (at most 16 characters).
pub fn ds(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 16 {
        return s;
    }
    for prec in (0..=10).rev() {
        let s = format!("{v:.prec$e}");
        if s.len() <= 16 {
            return s;
        }
    }
    "0".into()
}

pub(crate) fn ds_multi(vs: &[f64]) -> String {
    vs.iter().map(|v| ds(*v)).collect::<Vec<_>>().join("\\")
}

/// A text element (any string VR).
pub(crate) fn elem(tag: Tag, vr: VR, v: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

/// An unsigned short (US) element.
pub(crate) fn us(tag: Tag, v: u16) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

/// A multi-valued code string (CS) element.
pub(crate) fn multi_cs(tag: Tag, vs: &[&str]) -> InMemElement {
    let strs: Vec<String> = vs.iter().map(|s| (*s).to_owned()).collect();
    DataElement::new(tag, VR::CS, PrimitiveValue::Strs(strs.into()))
}

/// Implementation Class UID and Version Name of the files written.
const IMPLEMENTATION_CLASS_UID: &str = "2.25.209453617470125155930476421585536305025";
const IMPLEMENTATION_VERSION: &str = "FEDANNO_0_1";

/// `obj` with a file meta group: Explicit VR Little Endian, this implementation.
pub(crate) fn with_file_meta(
    obj: InMemDicomObject,
) -> Result<FileDicomObject<InMemDicomObject>, WithMetaError> {
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION),
    )
}

/// Writes one CT slice to `path`.
pub fn write_ct_slice(path: &Path, s: &CtSlice<'_>) -> Result<(), WriteError> {
    let expected = usize::from(s.rows) * usize::from(s.columns);
    if s.pixels.len() != expected {
        return Err(WriteError::PixelCount {
            got: s.pixels.len(),
            expected,
        });
    }
    let mut pixel_bytes = Vec::with_capacity(expected * 2);
    for v in s.pixels {
        pixel_bytes.extend_from_slice(&v.to_le_bytes());
    }
    let obj = InMemDicomObject::from_element_iter(
        ct_patient_study_series(s)
            .into_iter()
            .chain(ct_image(s, pixel_bytes)),
    );
    let file = with_file_meta(obj).map_err(|_| WriteError::Meta)?;
    file.write_to_file(path)
        .map_err(|e| WriteError::Write(e.to_string()))
}

/// SOP Common, Patient, General Study, General Series and General Equipment of a CT slice.
fn ct_patient_study_series(s: &CtSlice<'_>) -> Vec<InMemElement> {
    vec![
        elem(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        elem(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        elem(tags::SOP_INSTANCE_UID, VR::UI, s.sop_instance_uid),
        elem(tags::STUDY_DATE, VR::DA, s.study_date),
        elem(tags::SERIES_DATE, VR::DA, s.study_date),
        elem(tags::STUDY_TIME, VR::TM, "120000"),
        elem(tags::ACCESSION_NUMBER, VR::SH, s.accession_number),
        elem(tags::MODALITY, VR::CS, "CT"),
        elem(tags::MANUFACTURER, VR::LO, "fedanno synth"),
        elem(tags::INSTITUTION_NAME, VR::LO, s.institution_name),
        elem(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        elem(tags::STUDY_DESCRIPTION, VR::LO, s.study_description),
        elem(tags::SERIES_DESCRIPTION, VR::LO, "synthetic chest CT"),
        elem(tags::PATIENT_NAME, VR::PN, s.patient_name),
        elem(tags::PATIENT_ID, VR::LO, s.patient_id),
        elem(tags::PATIENT_BIRTH_DATE, VR::DA, s.patient_birth_date),
        elem(tags::PATIENT_SEX, VR::CS, "O"),
        elem(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
        elem(tags::PATIENT_POSITION, VR::CS, "HFS"),
        elem(tags::STUDY_INSTANCE_UID, VR::UI, s.study_uid),
        elem(tags::SERIES_INSTANCE_UID, VR::UI, s.series_uid),
        elem(tags::STUDY_ID, VR::SH, "1"),
        elem(tags::SERIES_NUMBER, VR::IS, &s.series_number.to_string()),
    ]
}

/// Frame of Reference, Image Plane, Image Pixel and CT Image of a CT slice.
fn ct_image(s: &CtSlice<'_>, pixel_bytes: Vec<u8>) -> Vec<InMemElement> {
    let normal = super::geometry::normal(&s.orientation);
    let slice_location =
        s.position[0] * normal[0] + s.position[1] * normal[1] + s.position[2] * normal[2];
    vec![
        multi_cs(tags::IMAGE_TYPE, &["ORIGINAL", "PRIMARY", "AXIAL"]),
        elem(tags::SLICE_THICKNESS, VR::DS, &ds(s.slice_thickness)),
        elem(tags::KVP, VR::DS, "120"),
        elem(
            tags::INSTANCE_NUMBER,
            VR::IS,
            &s.instance_number.to_string(),
        ),
        elem(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds_multi(&s.position)),
        elem(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            &ds_multi(&s.orientation),
        ),
        elem(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            s.frame_of_reference_uid,
        ),
        elem(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        elem(tags::SLICE_LOCATION, VR::DS, &ds(slice_location)),
        us(tags::SAMPLES_PER_PIXEL, 1),
        elem(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, s.rows),
        us(tags::COLUMNS, s.columns),
        elem(tags::PIXEL_SPACING, VR::DS, &ds_multi(&s.pixel_spacing)),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 16),
        us(tags::HIGH_BIT, 15),
        us(tags::PIXEL_REPRESENTATION, 1),
        elem(tags::RESCALE_INTERCEPT, VR::DS, "0"),
        elem(tags::RESCALE_SLOPE, VR::DS, "1"),
        elem(tags::RESCALE_TYPE, VR::LO, "HU"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(pixel_bytes)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_values_fit_sixteen_characters() {
        assert_eq!(ds(0.5), "0.5");
        assert_eq!(ds(-158.135803), "-158.135803");
        for v in [1.0 / 3.0, -123456.789012345, 1e-20, 6.02214076e23] {
            let s = ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-6, "{v} -> {s}");
        }
    }
}
