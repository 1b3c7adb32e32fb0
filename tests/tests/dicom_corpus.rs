//! Real public DICOM files (tests/data/dicom, see its LICENSES.md) read and ingested as the
//! pydicom-derived `expected_dicom.json` predicts: every file pydicom reads is indexed with the
//! right rows, columns, modality and transfer syntax; non-image objects are indexed without a
//! grid; files without a Part 10 header are skipped with a reason; nothing panics.

use std::collections::HashMap;

use fedanno_node::site::dicom::header::{self, HeaderLimits};
use fedanno_node::site::ingest::{self, IngestOptions};
use fedanno_tests::{data_dir, temp_site};
use serde_json::Value;

fn limits() -> HeaderLimits {
    HeaderLimits {
        max_file_bytes: 1 << 30,
        max_header_bytes: 64 << 20,
        max_element_bytes: 16 << 20,
        max_voxels: 1 << 31,
    }
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(data_dir().join("dicom/expected_dicom.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["files"].as_object().unwrap().clone()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn every_header_matches_pydicom() {
    let files = expected();
    assert!(files.len() >= 20);
    for (rel, exp) in &files {
        let path = data_dir().join("dicom").join(rel);
        let got = header::read_file(&path, &limits());
        if exp["has_preamble_DICM"] == Value::Bool(false) {
            // No Part 10 header (pydicom needs force=True): skipped with a clear reason.
            let e = got.expect_err(rel).to_string();
            assert!(e.contains("not a DICOM file"), "{rel}: {e}");
            continue;
        }
        let h = got.unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(
            Some(h.modality.as_str()),
            exp["modality"].as_str(),
            "{rel} modality"
        );
        assert_eq!(
            Some(h.transfer_syntax.as_str()),
            exp["transfer_syntax"].as_str(),
            "{rel} ts"
        );
        assert_eq!(
            Some(h.sop_class_uid.as_str()),
            exp["sop_class"].as_str(),
            "{rel} sop class"
        );
        assert_eq!(h.rows.map(u64::from), exp["rows"].as_u64(), "{rel} rows");
        assert_eq!(
            h.columns.map(u64::from),
            exp["columns"].as_u64(),
            "{rel} columns"
        );
        let frames = exp["number_of_frames"].as_f64().map_or(1, |f| f as u32);
        assert_eq!(h.frames, frames, "{rel} frames");
        if let Some(ps) = exp["pixel_spacing"].as_array() {
            let got = h
                .pixel_spacing
                .unwrap_or_else(|| panic!("{rel}: no pixel spacing"));
            for (g, e) in got.iter().zip(ps) {
                assert!(
                    close(*g, e.as_f64().unwrap()),
                    "{rel} spacing {got:?} vs {ps:?}"
                );
            }
        }
        if let Some(pos) = exp["image_position_patient"].as_array() {
            let got = h.position.unwrap_or_else(|| panic!("{rel}: no position"));
            for (g, e) in got.iter().zip(pos) {
                assert!(
                    close(*g, e.as_f64().unwrap()),
                    "{rel} position {got:?} vs {pos:?}"
                );
            }
        }
        if let Some(o) = exp["image_orientation_patient"].as_array() {
            let got = h
                .orientation
                .unwrap_or_else(|| panic!("{rel}: no orientation"));
            for (g, e) in got.iter().zip(o) {
                assert!(close(*g, e.as_f64().unwrap()), "{rel} orientation");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_corpus_ingests_and_groups_into_series() {
    let files = expected();
    let (_tmp, site) = temp_site("Corpus Site");
    let p = site.pseudonymizer().unwrap();
    let opts = IngestOptions {
        paths: vec![data_dir().join("dicom")],
        progress: false,
    };
    let report = ingest::run(&site.store, &site.config, p.clone(), opts)
        .await
        .unwrap();

    let readable: Vec<&String> = files
        .iter()
        .filter(|(_, v)| v["has_preamble_DICM"] != Value::Bool(false))
        .map(|(k, _)| k)
        .collect();
    // Every readable file is indexed or is a re-encoding of an instance already indexed
    // (the MR_small variants share one SOP Instance UID).
    let mut by_uid: HashMap<String, Vec<&String>> = HashMap::new();
    for rel in &readable {
        let h = header::read_file(&data_dir().join("dicom").join(rel), &limits()).unwrap();
        by_uid.entry(h.sop_instance_uid).or_default().push(rel);
    }
    assert_eq!(report.instances_ingested as usize, by_uid.len());
    assert_eq!(
        report.already_present as usize,
        readable.len() - by_uid.len()
    );
    // The skipped files are exactly the non-DICOM ones: licence texts, the JSON, the .npy mask
    // and the preamble-less RT structure set.
    for s in &report.skipped {
        assert!(
            !s.path.ends_with(".dcm") || s.path.ends_with("rtstruct.dcm"),
            "unexpected skip {} ({})",
            s.path,
            s.reason
        );
    }
    assert_eq!(
        report.files_seen as usize,
        report.skipped.len() + readable.len()
    );

    let instances = site.store.instances().await.unwrap();
    assert_eq!(instances.len(), by_uid.len());
    for i in &instances {
        let rel = by_uid[&i.original_uid][0];
        let exp = &files[rel.as_str()];
        assert_eq!(Some(i.modality.as_str()), exp["modality"].as_str(), "{rel}");
        assert_eq!(i.rows.map(u64::from), exp["rows"].as_u64(), "{rel}");
    }

    // The five CT5N slices form one series with slice spacing from positions.
    let series = site
        .store
        .list_series(Default::default(), false)
        .await
        .unwrap();
    let ct5 = series
        .iter()
        .find(|s| s.instances == 5)
        .expect("ct5n series");
    assert_eq!(
        (ct5.rows, ct5.columns, ct5.slices),
        (Some(16), Some(16), Some(5))
    );
    let positions: Vec<f64> = files
        .iter()
        .filter(|(k, _)| k.contains("ct5n_series"))
        .map(|(_, v)| v["image_position_patient"][2].as_f64().unwrap())
        .collect();
    let (lo, hi) = positions
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), z| (a.min(*z), b.max(*z)));
    let spacing = ct5.slice_spacing.unwrap();
    assert!(
        close(spacing, (hi - lo) / 4.0),
        "{spacing} vs {}",
        (hi - lo) / 4.0
    );
    assert!(close(ct5.origin.unwrap()[2], lo));
    // Non-image objects are indexed without a grid and without an error.
    let seg = series.iter().find(|s| s.modality == "SEG").unwrap();
    assert_eq!(
        (seg.kind.as_str(), seg.slices, seg.geometry_error.as_deref()),
        ("segmentation", None, None)
    );

    // Re-ingest adds nothing.
    let opts = IngestOptions {
        paths: vec![data_dir().join("dicom")],
        progress: false,
    };
    let again = ingest::run(&site.store, &site.config, p, opts)
        .await
        .unwrap();
    assert_eq!(again.instances_ingested, 0);
    assert_eq!(again.already_present as usize, readable.len());
    site.store.integrity_check().await.unwrap();
    site.close();
}
