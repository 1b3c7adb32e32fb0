//! Writing DICOM files: single-frame CT images (what `fedanno synth` produces, and the input of
//! ingest tests and benchmarks). Files are Part 10 with Explicit VR Little Endian and carry a
//! complete CT Image IOD header that pydicom and our own ingest read.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
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
    let str_el = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let normal = super::geometry::normal(&s.orientation);
    let slice_location =
        s.position[0] * normal[0] + s.position[1] * normal[1] + s.position[2] * normal[2];
    let obj = InMemDicomObject::from_element_iter([
        str_el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["ORIGINAL", "PRIMARY", "AXIAL"]),
        ),
        str_el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        str_el(tags::SOP_INSTANCE_UID, VR::UI, s.sop_instance_uid),
        str_el(tags::STUDY_DATE, VR::DA, s.study_date),
        str_el(tags::SERIES_DATE, VR::DA, s.study_date),
        str_el(tags::STUDY_TIME, VR::TM, "120000"),
        str_el(tags::ACCESSION_NUMBER, VR::SH, s.accession_number),
        str_el(tags::MODALITY, VR::CS, "CT"),
        str_el(tags::MANUFACTURER, VR::LO, "fedanno synth"),
        str_el(tags::INSTITUTION_NAME, VR::LO, s.institution_name),
        str_el(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        str_el(tags::STUDY_DESCRIPTION, VR::LO, s.study_description),
        str_el(tags::SERIES_DESCRIPTION, VR::LO, "synthetic chest CT"),
        str_el(tags::PATIENT_NAME, VR::PN, s.patient_name),
        str_el(tags::PATIENT_ID, VR::LO, s.patient_id),
        str_el(tags::PATIENT_BIRTH_DATE, VR::DA, s.patient_birth_date),
        str_el(tags::PATIENT_SEX, VR::CS, "O"),
        str_el(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
        str_el(tags::SLICE_THICKNESS, VR::DS, &ds(s.slice_thickness)),
        str_el(tags::KVP, VR::DS, "120"),
        str_el(tags::PATIENT_POSITION, VR::CS, "HFS"),
        str_el(tags::STUDY_INSTANCE_UID, VR::UI, s.study_uid),
        str_el(tags::SERIES_INSTANCE_UID, VR::UI, s.series_uid),
        str_el(tags::STUDY_ID, VR::SH, "1"),
        str_el(tags::SERIES_NUMBER, VR::IS, &s.series_number.to_string()),
        str_el(
            tags::INSTANCE_NUMBER,
            VR::IS,
            &s.instance_number.to_string(),
        ),
        str_el(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds_multi(&s.position)),
        str_el(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            &ds_multi(&s.orientation),
        ),
        str_el(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            s.frame_of_reference_uid,
        ),
        str_el(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        str_el(tags::SLICE_LOCATION, VR::DS, &ds(slice_location)),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        str_el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(s.rows)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(s.columns)),
        str_el(tags::PIXEL_SPACING, VR::DS, &ds_multi(&s.pixel_spacing)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(1u16),
        ),
        str_el(tags::RESCALE_INTERCEPT, VR::DS, "0"),
        str_el(tags::RESCALE_SLOPE, VR::DS, "1"),
        str_el(tags::RESCALE_TYPE, VR::LO, "HU"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(pixel_bytes)),
    ]);
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid("2.25.209453617470125155930476421585536305025")
                .implementation_version_name("FEDANNO_0_1"),
        )
        .map_err(|_| WriteError::Meta)?;
    file.write_to_file(path)
        .map_err(|e| WriteError::Write(e.to_string()))
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
