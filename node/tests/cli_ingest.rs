//! The `fedanno` binary end to end: init, synth, ingest and cases, including corrupt inputs,
//! a privacy canary across headers, database and logs, and kill -9 in the middle of an ingest.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{bin, json_of, run_ok, s};
use fedanno_node::site::dicom::write::{CtSlice, write_ct_slice};
use serde_json::Value;

/// `ingest PATH --json` at the site, which must succeed.
fn ingest_json(site: &Path, path: &Path) -> Value {
    json_of(&run_ok(&["--dir", s(site), "ingest", s(path), "--json"]))
}

fn init(dir: &Path) {
    run_ok(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--site-name",
        "Test Site",
    ]);
}

#[test]
fn synthetic_series_comes_back_with_exact_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let data = tmp.path().join("data");
    init(&site);
    let s = run_ok(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--cases",
        "2",
        "--size",
        "40x24x7",
        "--seed",
        "3",
        "--json",
    ]);
    let synth = json_of(&s);
    assert_eq!(synth["dicom_files"], 14);
    let ing = ingest_json(&site, &data.join("dicom"));
    assert_eq!(
        (
            ing["files_seen"].as_u64(),
            ing["instances_ingested"].as_u64()
        ),
        (Some(14), Some(14))
    );
    assert_eq!(
        (ing["series"].as_u64(), ing["studies"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(ing["skipped"].as_array().unwrap().len(), 0);

    let cases = json_of(&run_ok(&[
        "--dir",
        site.to_str().unwrap(),
        "cases",
        "--json",
    ]));
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        assert_eq!(
            (
                c["columns"].as_u64(),
                c["rows"].as_u64(),
                c["slices"].as_u64()
            ),
            (Some(40), Some(24), Some(7))
        );
        assert_eq!(c["pixel_spacing"], serde_json::json!([0.8, 0.8]));
        assert_eq!(c["slice_spacing"].as_f64(), Some(2.0));
        assert_eq!(c["uniform_spacing"], Value::Bool(true));
        assert_eq!(
            c["orientation"],
            serde_json::json!([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        );
        // Origin: the centre of the phantom is at 0.
        let o: Vec<f64> = c["origin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(o, vec![-16.0, -9.6, -7.0]);
        assert_eq!(c["modality"], "CT");
        assert!(c.get("original").is_none());
        assert!(c["series"].as_str().unwrap().starts_with("2.25."));
        assert!(c["patient"].as_str().unwrap().starts_with("P-"));
    }
    // The masks written beside the DICOM carry the same grid.
    let truth = fedanno_node::annotations::nifti::read_file(
        &data.join("truth/case-0001.nii.gz"),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(truth.dim, [40, 24, 7]);
    // NIfTI stores spacing as float32.
    for (got, want) in truth.pixdim.iter().zip([0.8, 0.8, 2.0]) {
        assert!((got - want).abs() < 1e-6, "{:?}", truth.pixdim);
    }
    // Idempotent re-ingest.
    let again = ingest_json(&site, &data);
    assert_eq!(
        (
            again["instances_ingested"].as_u64(),
            again["already_present"].as_u64()
        ),
        (Some(0), Some(14))
    );
}

const CANARIES: [&str; 8] = [
    "CANARYNAME^ZEBULON",
    "CANARYID-77341",
    "19230517",
    "CANARY MEMORIAL INSTITUTE",
    "1.2.826.0.1.3680043.77341.1",
    "1.2.826.0.1.3680043.77341.2",
    "1.2.826.0.1.3680043.77341.3",
    "CANARYACC77341",
];

fn write_canary_series(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let pixels = vec![7i16; 16 * 16];
    for k in 0..3u32 {
        let sop = format!("1.2.826.0.1.3680043.77341.3.{k}");
        let spec = CtSlice {
            patient_name: CANARIES[0],
            patient_id: CANARIES[1],
            patient_birth_date: CANARIES[2],
            institution_name: CANARIES[3],
            study_uid: CANARIES[4],
            series_uid: CANARIES[5],
            sop_instance_uid: &sop,
            frame_of_reference_uid: "1.2.826.0.1.3680043.77341.4",
            study_date: "20210304",
            study_description: "CANARY STUDY DESCRIPTION",
            accession_number: CANARIES[7],
            series_number: 1,
            instance_number: k + 1,
            rows: 16,
            columns: 16,
            pixel_spacing: [1.0, 1.0],
            slice_thickness: 1.0,
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [0.0, 0.0, f64::from(k)],
            pixels: &pixels,
        };
        write_ct_slice(&dir.join(format!("s{k}.dcm")), &spec).unwrap();
    }
}

#[test]
fn canary_phi_stays_out_of_pseudonyms_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let data = tmp.path().join("canary");
    init(&site);
    write_canary_series(&data);
    let out = bin()
        .args([
            "--dir",
            site.to_str().unwrap(),
            "--log-format",
            "json",
            "-vvv",
            "ingest",
            data.to_str().unwrap(),
            "--json",
        ])
        .env("FEDANNO_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = json_of(&out);
    assert_eq!(report["instances_ingested"], 3);
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        logs.contains("ingest finished"),
        "trace logging was not on: {logs}"
    );

    let cases_out = run_ok(&["--dir", site.to_str().unwrap(), "-vvv", "cases", "--json"]);
    let cases = String::from_utf8_lossy(&cases_out.stdout).into_owned();
    let cases_logs = String::from_utf8_lossy(&cases_out.stderr).into_owned();
    for canary in CANARIES.iter().chain(["CANARY", "77341"].iter()) {
        assert!(!logs.contains(canary), "{canary} in ingest logs");
        assert!(!cases.contains(canary), "{canary} in pseudonymous listing");
        assert!(!cases_logs.contains(canary), "{canary} in cases logs");
    }
    // The shifted date is not the original.
    let v: Value = serde_json::from_str(&cases).unwrap();
    assert_ne!(v[0]["study_date"], "20210304");
    assert!(v[0]["study_date"].as_str().is_some());

    // Pseudonymous columns of the database hold no canary; birth date and institution are not
    // stored at all.
    let db = rusqlite::Connection::open(site.join("fedanno.db")).unwrap();
    let pseudo: Vec<String> = db
        .prepare(
            "SELECT pseudonym FROM patients UNION ALL SELECT pseudo_uid FROM studies
             UNION ALL SELECT coalesce(pseudo_date, '') FROM studies UNION ALL SELECT pseudo_uid FROM series
             UNION ALL SELECT coalesce(pseudo_for_uid, '') FROM series UNION ALL SELECT pseudo_uid FROM instances",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // patients 1, study uid + date 2, series uid + frame of reference 2, instances 3.
    assert_eq!(pseudo.len(), 8);
    for value in &pseudo {
        assert!(
            !value.contains("77341") && !value.contains("CANARY"),
            "canary in {value}"
        );
    }
    drop(db);
    let mut raw = std::fs::read(site.join("fedanno.db")).unwrap();
    if let Ok(wal) = std::fs::read(site.join("fedanno.db-wal")) {
        raw.extend(wal);
    }
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains(CANARIES[2]), "birth date stored");
    assert!(!raw.contains(CANARIES[3]), "institution stored");
    assert!(!raw.contains(CANARIES[7]), "accession number stored");

    // The original identifiers are kept locally and shown on request only.
    let shown = run_ok(&[
        "--dir",
        site.to_str().unwrap(),
        "cases",
        "--show-identifiers",
        "--json",
    ]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(CANARIES[0]) && shown.contains(CANARIES[1]) && shown.contains(CANARIES[5])
    );
}

/// Valid DICOM bytes to corrupt.
fn valid_file(dir: &Path) -> Vec<u8> {
    let pixels = vec![0i16; 16 * 16];
    let p = dir.join("template.dcm");
    write_ct_slice(
        &p,
        &CtSlice {
            patient_name: "SYNTHETIC^CORRUPT",
            patient_id: "C1",
            patient_birth_date: "",
            institution_name: "",
            study_uid: "2.25.1001",
            series_uid: "2.25.1002",
            sop_instance_uid: "2.25.1003",
            frame_of_reference_uid: "2.25.1004",
            study_date: "20200101",
            study_description: "",
            accession_number: "",
            series_number: 1,
            instance_number: 1,
            rows: 16,
            columns: 16,
            pixel_spacing: [1.0, 1.0],
            slice_thickness: 1.0,
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [0.0, 0.0, 0.0],
            pixels: &pixels,
        },
    )
    .unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::remove_file(p).unwrap();
    bytes
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn corrupt_inputs_are_each_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let data = tmp.path().join("in");
    std::fs::create_dir_all(&data).unwrap();
    init(&site);
    let good = valid_file(tmp.path());
    std::fs::write(data.join("good.dcm"), &good).unwrap();
    // Truncated in the middle of the header (inside the Patient Name value).
    let cut = find(&good, b"SYNTHETIC^CORRUPT") + 4;
    std::fs::write(data.join("truncated.dcm"), &good[..cut]).unwrap();
    // Random bytes.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(data.join("random.dcm"), &noise).unwrap();
    // A huge declared length: an OB element claiming 4 GiB right after the file meta group.
    let meta_end = find(&good, b"\x08\x00\x05\x00"); // (0008,0005) starts the data set
    let mut huge = good[..meta_end].to_vec();
    huge.extend_from_slice(&[
        0x09, 0x00, 0x01, 0x10, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF,
    ]);
    huge.extend_from_slice(&good[meta_end..]);
    std::fs::write(data.join("huge-length.dcm"), &huge).unwrap();
    // Absurd dimensions: Rows and Columns 65535 (the largest a header can declare).
    let mut absurd = good.clone();
    for tag in [[0x28u8, 0x00, 0x10, 0x00], [0x28, 0x00, 0x11, 0x00]] {
        let at = find(&absurd, &[&tag[..], b"US\x02\x00"].concat());
        absurd[at + 8] = 0xFF;
        absurd[at + 9] = 0xFF;
    }
    std::fs::write(data.join("absurd-dims.dcm"), &absurd).unwrap();
    // An empty file.
    std::fs::write(data.join("empty.dcm"), b"").unwrap();

    let r = ingest_json(&site, &data);
    assert_eq!(
        (r["files_seen"].as_u64(), r["instances_ingested"].as_u64()),
        (Some(6), Some(1))
    );
    let reasons: std::collections::HashMap<String, String> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let p = PathBuf::from(s["path"].as_str().unwrap());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons["truncated.dcm"].contains("truncated"),
        "{reasons:?}"
    );
    assert!(
        reasons["random.dcm"].contains("not a DICOM file"),
        "{reasons:?}"
    );
    assert!(
        reasons["huge-length.dcm"].contains("declares 4294967280 bytes"),
        "{reasons:?}"
    );
    assert!(
        reasons["absurd-dims.dcm"].contains("absurd dimensions: 65535 x 65535"),
        "{reasons:?}"
    );
    assert!(reasons["empty.dcm"].contains("empty"), "{reasons:?}");

    // Only corrupt files: reported, and the run fails.
    let bad_only = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_only).unwrap();
    std::fs::write(bad_only.join("random.bin"), &noise).unwrap();
    let out = bin()
        .args([
            "--dir",
            site.to_str().unwrap(),
            "ingest",
            bad_only.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a DICOM file"));
}

#[test]
fn kill_9_during_ingest_loses_nothing_committed_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let data = tmp.path().join("data");
    init(&site);
    // Small batches so that several commits happen before the kill.
    let cfg = site.join("config.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch_size = 256", "batch_size = 5");
    std::fs::write(&cfg, text).unwrap();
    run_ok(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--cases",
        "12",
        "--size",
        "32x32x100",
        "--seed",
        "9",
    ]);
    let files = 1200u64;

    let mut child = bin()
        .args([
            "--dir",
            site.to_str().unwrap(),
            "-vv",
            "ingest",
            data.join("dicom").to_str().unwrap(),
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::sync_channel(1);
    let reader = std::thread::spawn(move || {
        let mut commits = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("batch committed") {
                commits += 1;
                if commits == 3 {
                    let _ = tx.try_send(());
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("ingest committed three batches");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    reader.join().unwrap();

    // The database is consistent and holds only whole batches.
    {
        let db = rusqlite::Connection::open(site.join("fedanno.db")).unwrap();
        let ok: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let n: i64 = db
            .query_row("SELECT count(*) FROM instances", [], |r| r.get(0))
            .unwrap();
        assert!(
            n >= 15 && n < files as i64 && n % 5 == 0,
            "{n} instances after the kill"
        );
    }
    // Resume: every file ends up present exactly once, and every series has its grid.
    let r = ingest_json(&site, &data.join("dicom"));
    assert_eq!(
        r["instances_ingested"].as_u64().unwrap() + r["already_present"].as_u64().unwrap(),
        files
    );
    assert!(r["already_present"].as_u64().unwrap() >= 15);
    let db = rusqlite::Connection::open(site.join("fedanno.db")).unwrap();
    let (n, paths): (i64, i64) = db
        .query_row(
            "SELECT count(*), count(DISTINCT path) FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, paths), (files as i64, files as i64));
    let complete: i64 = db
        .query_row(
            "SELECT count(*) FROM series WHERE slices = 100 AND geometry_dirty = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(complete, 12);
}

#[test]
fn usage_errors_exit_2_and_missing_site_explains() {
    let out = bin().args(["ingest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["--dir", tmp.path().to_str().unwrap(), "cases"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fedanno init"));
    // init refuses to overwrite.
    let site = tmp.path().join("s");
    init(&site);
    let out = bin()
        .args([
            "init",
            "--dir",
            site.to_str().unwrap(),
            "--site-name",
            "Again",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
}

#[test]
fn the_site_is_private_and_a_readable_one_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("private");
    init(&site);
    bin()
        .args(["--dir", s(&site), "cases"])
        .output()
        .map(|o| assert!(o.status.success(), "{o:?}"))
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&site), 0o700);
    assert_eq!(mode(&site.join("keys")), 0o700);
    for f in [
        "fedanno.db",
        "keys/signing.pk8",
        "keys/sealing.key",
        "keys/pseudonym.key",
    ] {
        assert_eq!(mode(&site.join(f)), 0o600, "{f}");
    }
    for extra in ["fedanno.db-wal", "fedanno.db-shm"] {
        let p = site.join(extra);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{extra}");
        }
    }
    let refused = |path: &std::path::Path, bad: u32, fix: &str| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bad)).unwrap();
        let out = bin().args(["--dir", s(&site), "cases"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("readable by other users"), "{err}");
        assert!(
            err.contains(&format!("chmod {fix} {}", path.display())),
            "{err}"
        );
    };
    refused(&site.join("fedanno.db"), 0o644, "600");
    std::fs::set_permissions(
        site.join("fedanno.db"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    refused(&site, 0o755, "700");
    std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = bin().args(["--dir", s(&site), "cases"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A 1.2 kB Part 10 file whose group-2 element after the declared end of the file meta group
/// reads, in the data set's implicit VR, as a 3.9 GB value.
fn meta_length_bomb() -> Vec<u8> {
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    let ts = b"1.2.840.10008.1.2\0";
    let mut meta = Vec::new();
    meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00]);
    meta.extend_from_slice(b"UI");
    meta.extend_from_slice(&(ts.len() as u16).to_le_bytes());
    meta.extend_from_slice(ts);
    f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00]);
    f.extend_from_slice(b"UL");
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(&meta);
    // (0002,0100) "OB", reserved FF E8, length 1000, value: implicit VR makes the length
    // 0xE8FF424F.
    f.extend_from_slice(&[0x02, 0x00, 0x00, 0x01]);
    f.extend_from_slice(b"OB\xFF\xE8");
    f.extend_from_slice(&1000u32.to_le_bytes());
    f.extend_from_slice(&[0u8; 1000]);
    f
}

#[test]
fn a_small_hostile_file_costs_ingest_little_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    init(&site);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bomb = meta_length_bomb();
    assert!(bomb.len() < 1300);
    std::fs::write(data.join("bomb.dcm"), &bomb).unwrap();
    let (_, stderr, peak) =
        common::run_measured(&["--dir", s(&site), "ingest", s(&data), "--json"]);
    assert!(peak < 100 << 20, "peak {} MB; {stderr}", peak >> 20);
    assert!(stderr.contains("skipped=1"), "{stderr}");
    // Nothing was indexed from it.
    let cases = json_of(&run_ok(&["--dir", s(&site), "cases", "--json"]));
    assert_eq!(cases.as_array().map_or(0, Vec::len), 0, "{cases}");
}
