//! A de-identified SEG travels between sites: site A exports a reader's mask as a SEG with
//! `--deidentified`; site B holds the same pseudonymous series (a copy of A's images whose
//! identifiers a de-identification gateway replaced by A's pseudonymous values), imports the
//! SEG without `--series` (it finds the series by the UID the SEG references) and exports
//! exactly A's mask. The SEG carries no identifying value of A: not its site name, nor the
//! original patient, study, series or instance identifiers.

mod common;

use std::path::{Path, PathBuf};

use common::{run_ok, s};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use fedanno_node::annotations::nifti::{self, NiftiImage};

const SITE_A: &str = "Saint Alphonse Teaching Hospital";
const READER: &str = "panel-expert";
const CASE: &str = "case-0001";

/// The text of a top-level or item element, without padding; `None` when absent.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let v = e.to_str().ok()?;
    Some(v.trim_end_matches(['\0', ' ']).to_string())
}

/// The items of a sequence element (empty when absent).
fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .unwrap_or(&[])
}

fn first(obj: &InMemDicomObject, tag: Tag) -> &InMemDicomObject {
    items(obj, tag)
        .first()
        .unwrap_or_else(|| panic!("{tag} has an item"))
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    obj.element(tag)
        .expect("a decimal element")
        .to_multi_float64()
        .expect("decimals")
}

/// A's pseudonymous identifiers, as the de-identified SEG carries them.
#[derive(Debug)]
struct Pseudonyms {
    study: String,
    series: String,
    frame_of_reference: String,
    patient_id: String,
    patient_name: String,
    study_date: Option<String>,
    /// ReferencedInstanceSequence: every source slice, sorted along the slice normal.
    instances: Vec<String>,
    /// Per frame: the referenced source instance and the frame's position.
    frames: Vec<(String, [f64; 3])>,
}

fn pseudonyms_of(seg: &Path) -> Pseudonyms {
    let obj = dicom_object::open_file(seg).expect("the exported SEG");
    let req = |tag| text(&obj, tag).unwrap_or_else(|| panic!("the SEG has {tag}"));
    let referenced = first(&obj, tags::REFERENCED_SERIES_SEQUENCE);
    let instances = items(referenced, tags::REFERENCED_INSTANCE_SEQUENCE)
        .iter()
        .map(|i| text(i, tags::REFERENCED_SOP_INSTANCE_UID).expect("a referenced instance"))
        .collect();
    let frames = items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .iter()
        .map(|f| {
            let derivation = first(f, tags::DERIVATION_IMAGE_SEQUENCE);
            let source = first(derivation, tags::SOURCE_IMAGE_SEQUENCE);
            let uid = text(source, tags::REFERENCED_SOP_INSTANCE_UID).expect("a source instance");
            let p = floats(
                first(f, tags::PLANE_POSITION_SEQUENCE),
                tags::IMAGE_POSITION_PATIENT,
            );
            (uid, [p[0], p[1], p[2]])
        })
        .collect();
    Pseudonyms {
        study: req(tags::STUDY_INSTANCE_UID),
        series: text(referenced, tags::SERIES_INSTANCE_UID).expect("a referenced series"),
        frame_of_reference: req(tags::FRAME_OF_REFERENCE_UID),
        patient_id: req(tags::PATIENT_ID),
        patient_name: req(tags::PATIENT_NAME),
        study_date: text(&obj, tags::STUDY_DATE).filter(|d| !d.is_empty()),
        instances,
        frames,
    }
}

/// An original slice: its file, position and identifiers.
struct Slice {
    path: PathBuf,
    position: [f64; 3],
    depth: f64,
}

/// The slices of a series directory, sorted along the slice normal.
fn slices_of(dir: &Path) -> Vec<Slice> {
    let mut out: Vec<Slice> = std::fs::read_dir(dir)
        .expect("the series directory")
        .map(|e| e.expect("a directory entry").path())
        .map(|path| {
            let obj = dicom_object::open_file(&path).expect("a CT slice");
            let p = floats(&obj, tags::IMAGE_POSITION_PATIENT);
            let o = floats(&obj, tags::IMAGE_ORIENTATION_PATIENT);
            let normal = [
                o[1] * o[5] - o[2] * o[4],
                o[2] * o[3] - o[0] * o[5],
                o[0] * o[4] - o[1] * o[3],
            ];
            let depth = p.iter().zip(normal).map(|(a, b)| a * b).sum();
            Slice {
                path,
                position: [p[0], p[1], p[2]],
                depth,
            }
        })
        .collect();
    out.sort_by(|a, b| a.depth.total_cmp(&b.depth));
    out
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

/// What a de-identification gateway sends on: a copy of every slice of `src` into `dst` with
/// the identifiers replaced by A's pseudonymous values (the k-th slice along the normal gets
/// the k-th referenced instance), dates shifted as A shifted them and other identifying
/// attributes emptied.
fn gateway_copy(src: &Path, dst: &Path, p: &Pseudonyms) {
    let slices = slices_of(src);
    assert_eq!(slices.len(), p.instances.len(), "one reference per slice");
    // The frames' own references agree with that order wherever a frame lies.
    for (uid, pos) in &p.frames {
        let k = slices
            .iter()
            .position(|s| (0..3).all(|i| (s.position[i] - pos[i]).abs() < 1e-3))
            .expect("every frame lies on a slice");
        assert_eq!(&p.instances[k], uid, "frame on slice {k}");
    }
    std::fs::create_dir_all(dst).expect("the gateway directory");
    for (k, (slice, uid)) in slices.iter().zip(&p.instances).enumerate() {
        let file = dicom_object::open_file(&slice.path).expect("a CT slice");
        let ts = file.meta().transfer_syntax().to_string();
        let mut obj = file.into_inner();
        put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, uid);
        put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &p.study);
        put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &p.series);
        put(
            &mut obj,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &p.frame_of_reference,
        );
        put(&mut obj, tags::PATIENT_ID, VR::LO, &p.patient_id);
        put(&mut obj, tags::PATIENT_NAME, VR::PN, &p.patient_name);
        if let Some(d) = &p.study_date {
            put(&mut obj, tags::STUDY_DATE, VR::DA, d);
            put(&mut obj, tags::SERIES_DATE, VR::DA, d);
        }
        for (tag, vr) in [
            (tags::PATIENT_BIRTH_DATE, VR::DA),
            (tags::INSTITUTION_NAME, VR::LO),
            (tags::ACCESSION_NUMBER, VR::SH),
        ] {
            put(&mut obj, tag, vr, "");
        }
        // MediaStorageSOPInstanceUID follows the new SOPInstanceUID.
        obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
            .expect("a file meta group")
            .write_to_file(dst.join(format!("{k}.dcm")))
            .expect("the copy is written");
    }
}

fn labels(path: &Path) -> (NiftiImage, Vec<u8>) {
    let img = nifti::read_file(path, &Default::default()).expect("a NIfTI file");
    let labels = img.to_labels_u8().expect("labels");
    (img, labels)
}

/// Site A: synthetic data ingested, the reader's mask imported and exported as a
/// de-identified SEG (`a.dcm`). Returns the site, its synthetic data and the SEG.
fn site_a() -> (common::Site, PathBuf, PathBuf) {
    let a = common::Site::init(SITE_A);
    let data = a.path("syn");
    run_ok(&[
        "synth",
        "--out",
        s(&data),
        "--cases",
        "1",
        "--size",
        "40x36x10",
        "--seed",
        "11",
    ]);
    a.ok(&["ingest", s(&data.join("dicom"))]);
    a.ok(&["readers", "add", READER, "--kind", "local"]);
    let mask = data
        .join("readers")
        .join(READER)
        .join(format!("{CASE}.nii.gz"));
    let r = a.json(&["annotate", "import", "--reader", READER, s(&mask)]);
    let series = r[0]["series"].as_str().expect("the series").to_string();
    let seg = a.path("a.dcm");
    a.export(&series, READER, "seg", &seg, &["--deidentified"]);
    (a, data, seg)
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &str) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The SEG names none of A's identifying values: site name, original patient, study, series
/// and instance identifiers, original study date.
fn assert_no_identifier_of_a(a: &common::Site, seg: &Path, originals: &Path) {
    let bytes = std::fs::read(seg).expect("the SEG");
    assert!(!contains(&bytes, SITE_A), "the site name is in the SEG");
    assert!(
        !contains(&bytes, "Alphonse"),
        "part of the site name is in the SEG"
    );
    let cases = a.json(&["cases", "--show-identifiers"]);
    let o = &cases[0]["original"];
    for key in [
        "patient_id",
        "patient_name",
        "study_uid",
        "series_uid",
        "study_date",
    ] {
        let v = o[key].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "A knows its original {key}");
        assert!(!contains(&bytes, v), "original {key} {v} is in the SEG");
    }
    for slice in slices_of(originals) {
        let obj = dicom_object::open_file(&slice.path).expect("a CT slice");
        let uid = text(&obj, tags::SOP_INSTANCE_UID).expect("a SOP Instance UID");
        assert!(
            !contains(&bytes, &uid),
            "original instance {uid} is in the SEG"
        );
    }
}

#[test]
fn a_deidentified_seg_imports_at_a_site_holding_the_same_pseudonymous_series() {
    let (a, data, seg) = site_a();
    let originals = data.join("dicom").join(CASE);
    let p = pseudonyms_of(&seg);
    // The SEG carries A's pseudonyms: those `cases` lists.
    let listed = &a.json(&["cases"])[0];
    assert_eq!(listed["series"].as_str(), Some(p.series.as_str()));
    assert_eq!(listed["study"].as_str(), Some(p.study.as_str()));
    assert_eq!(listed["patient"].as_str(), Some(p.patient_id.as_str()));
    assert!(!p.frames.is_empty(), "the mask is not empty");
    assert_no_identifier_of_a(&a, &seg, &originals);

    // Site B holds the gateway's copy, under its own secret.
    let b = common::Site::init("Beta Regional Clinic");
    let copy = b.path("gateway");
    gateway_copy(&originals, &copy, &p);
    b.ok(&["ingest", s(&copy)]);
    b.ok(&["readers", "add", "visiting-reader", "--kind", "local"]);
    let at_b = &b.json(&["cases", "--show-identifiers"])[0];
    assert_eq!(
        at_b["original"]["series_uid"].as_str(),
        Some(p.series.as_str())
    );
    let b_series = at_b["series"].as_str().expect("B's pseudonym").to_string();
    assert_ne!(b_series, p.series, "B pseudonymises under its own secret");

    // No --series: the series is found by the UID the SEG references.
    let r = b.json(&["annotate", "import", "--reader", "visiting-reader", s(&seg)]);
    assert_eq!(r[0]["series"].as_str(), Some(b_series.as_str()), "{r}");

    let out = b.path("b.nii.gz");
    b.export(&b_series, "visiting-reader", "nifti", &out, &[]);
    let mask = data
        .join("readers")
        .join(READER)
        .join(format!("{CASE}.nii.gz"));
    let (orig_img, orig) = labels(&mask);
    let (back_img, back) = labels(&out);
    assert!(orig.iter().any(|&v| v != 0), "A's mask is not empty");
    assert_eq!(back, orig, "B's voxels are A's");
    assert_eq!(back_img.dim, orig_img.dim);
    assert_eq!(back_img.affine, orig_img.affine);
}
