//! DICOM SEG in and out through the binary: SEGs written by highdicom and dcmqi (pydicom's
//! test files) import onto their source series with exactly the masks pydicom reads; our own
//! SEG export round-trips exactly (locally and de-identified), including 5×5 frames whose 1-bit
//! packing is not byte-aligned; a SEG of an unknown series stores nothing.

mod common;

use std::path::{Path, PathBuf};

use common::{run, run_json, run_ok};
use fedanno_node::annotations::nifti::{self, NiftiImage};
use fedanno_node::site::dicom::seg::{self, SegLimits};
use fedanno_node::site::dicom::write::{CtSlice, write_ct_slice};
use fedanno_node::site::store::SeriesGrid;
use serde_json::Value;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dicom")
}

/// A site with the local readers r1 and r2.
struct Site(common::Site);

impl std::ops::Deref for Site {
    type Target = common::Site;

    fn deref(&self) -> &common::Site {
        &self.0
    }
}

impl Site {
    fn new() -> Site {
        let s = common::Site::init("Seg Site");
        s.ok(&["readers", "add", "r1", "--kind", "local"]);
        s.ok(&["readers", "add", "r2", "--kind", "local"]);
        Site(s)
    }

    /// Ingests a tiny 5 x 5 CT series of `n` slices (less those in `drop`) and returns its
    /// pseudonymous UID and grid.
    fn tiny_case(&self, n: u32, drop: &[u32]) -> (String, SeriesGrid) {
        let src = self.path("tiny");
        tiny_series(&src, 5, 5, n);
        for k in drop {
            std::fs::remove_file(src.join(format!("{k}.dcm"))).unwrap();
        }
        self.ok(&["ingest", s_(&src)]);
        let series = self.json(&["cases"])[0]["series"]
            .as_str()
            .unwrap()
            .to_string();
        let grid = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let site = fedanno_node::site::Site::open(&self.dir).unwrap();
            site.store.series_grid_by_uid(&series).await.unwrap()
        });
        (series, grid)
    }

    /// Writes a NIfTI mask (`name`) of `labels` with the given grid and spacing.
    fn mask(
        &self,
        name: &str,
        dims: [usize; 3],
        spacing: [f64; 3],
        affine: [[f64; 4]; 4],
        labels: Vec<u8>,
    ) -> PathBuf {
        let path = self.path(name);
        let img = NiftiImage::from_u8(dims, spacing, affine, labels).unwrap();
        nifti::write_file(&path, &img).unwrap();
        path
    }

    /// `annotate import --reader R --series S [extra…] FILE`, as arguments.
    fn import_args<'a>(
        reader: &'a str,
        series: &'a str,
        file: &'a Path,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec!["annotate", "import", "--reader", reader, "--series", series];
        args.extend_from_slice(extra);
        args.push(s_(file));
        args
    }

    /// The error of an export that must fail, having written nothing.
    fn export_refused(&self, series: &str, reader: &str, format: &str) -> String {
        let out = self.path(&format!("refused-{reader}.{format}"));
        let args = [
            "annotate",
            "export",
            "--case",
            series,
            "--reader",
            reader,
            "--format",
            format,
            "--out",
            s_(&out),
        ];
        let err = self.fails(&args);
        assert!(!out.exists(), "{format} written");
        err
    }

    fn export_nifti(&self, series: &str, reader: &str) -> Vec<u8> {
        let out = self.path(&format!("{reader}-export.nii.gz"));
        self.export(series, reader, "nifti", &out, &[]);
        nifti::read_file(&out, &Default::default())
            .unwrap()
            .to_labels_u8()
            .unwrap()
    }
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The data of a version-1 .npy file of uint8.
fn npy_u8(path: &Path) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + header_len]);
    assert!(
        header.contains("'|u1'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    b[10 + header_len..].to_vec()
}

/// Imports a highdicom SEG of `pydicom/CT_small.dcm` (`generated/<name>`) as r1 of a new site;
/// returns the import's answer and the label map exported back, with the `.npy` label map
/// highdicom encoded (`generated/<mask>`).
fn import_onto_ct_small(name: &str, mask: &str) -> (Value, Vec<u8>, Vec<u8>) {
    let s = ct_small_site();
    let seg_file = data().join("generated").join(name);
    let r = s.json(&[
        "annotate",
        "import",
        "--reader",
        "r1",
        seg_file.to_str().unwrap(),
    ]);
    let series = r[0]["series"].as_str().unwrap().to_string();
    let expected = npy_u8(&data().join("generated").join(mask));
    assert_eq!(expected.len(), 128 * 128);
    (r, s.export_nifti(&series, "r1"), expected)
}

#[test]
fn highdicom_seg_imports_onto_its_source_with_the_expected_mask() {
    let (r, got, expected) = import_onto_ct_small(
        "CT_small_seg_disc_highdicom.dcm",
        "CT_small_seg_disc_mask.npy",
    );
    assert_eq!(r[0]["summary"]["segments"][0]["voxels"], 1257);
    assert_eq!(got, expected);
}

#[test]
fn a_highdicom_labelmap_segmentation_imports_with_its_segments() {
    // Label Map Segmentation Storage (1.2.840.10008.5.1.4.1.1.66.7), as highdicom 0.28 writes it.
    let file = data().join("generated/CT_small_seg_labelmap_highdicom.dcm");
    let obj = seg::read_seg(&file, &SegLimits::default()).unwrap();
    assert_eq!(obj.segmentation_type, seg::SegmentationType::Labelmap);
    let (r, got, expected) = import_onto_ct_small(
        "CT_small_seg_labelmap_highdicom.dcm",
        "CT_small_seg_labelmap.npy",
    );
    let names: Vec<&str> = r[0]["summary"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, ["disc", "rectangle"], "{r}");
    assert!(expected.contains(&1) && expected.contains(&2));
    assert_eq!(got, expected);
}

/// Writes the source series a SEG references (its UIDs and positions), as 512x512 CT slices.
fn source_series_for(seg_path: &Path, dir: &Path) {
    let obj = seg::read_seg(seg_path, &SegLimits::default()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let series = obj.referenced_series_uid.clone().unwrap();
    let spacing = obj.pixel_spacing.unwrap();
    let pixels = vec![0i16; (obj.rows * obj.columns) as usize];
    // liver_1frame.dcm keeps three per-frame items for one frame: the three source slices are
    // all in its functional groups, so read them with pydicom's values (tests/data/dicom).
    let refs: [(&str, f64); 3] = [
        (
            "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23433.1",
            -128.69,
        ),
        (
            "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23432.1",
            -127.69,
        ),
        (
            "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23431.1",
            -126.69,
        ),
    ];
    for (k, (sop, z)) in refs.iter().enumerate() {
        write_ct_slice(
            &dir.join(format!("{k}.dcm")),
            &CtSlice {
                patient_name: "SYNTHETIC^LIVER",
                patient_id: "LIVER1",
                patient_birth_date: "",
                institution_name: "",
                study_uid: &obj.study_uid,
                series_uid: &series,
                sop_instance_uid: sop,
                frame_of_reference_uid: obj.frame_of_reference_uid.as_deref().unwrap(),
                study_date: "20080913",
                study_description: "",
                accession_number: "",
                series_number: 1,
                instance_number: k as u32 + 1,
                rows: obj.rows as u16,
                columns: obj.columns as u16,
                pixel_spacing: spacing,
                slice_thickness: 1.0,
                orientation: obj.orientation.unwrap(),
                position: [-235.2, -226.8, *z],
                pixels: &pixels,
            },
        )
        .unwrap();
    }
}

#[test]
fn dcmqi_liver_segs_import_with_pydicoms_masks() {
    let s = Site::new();
    let liver = data().join("pydicom-data/liver.dcm");
    let liver1 = data().join("pydicom/liver_1frame.dcm");
    let src = s.path("liver-src");
    source_series_for(&liver, &src);
    s.ok(&["ingest", src.to_str().unwrap()]);
    let r = s.json(&[
        "annotate",
        "import",
        "--reader",
        "r1",
        liver.to_str().unwrap(),
    ]);
    assert_eq!(r[0]["summary"]["segments"][0]["voxels"], 107_098);
    assert_eq!(r[0]["summary"]["segments"][0]["name"], "Liver");
    let series = r[0]["series"].as_str().unwrap().to_string();
    // pydicom's pixel_array of the 3 frames, hashed in C order (expected_dicom.json).
    let vol = s.export_nifti(&series, "r1");
    assert_eq!(
        sha256_hex(&vol),
        "86ceb97b138085d01b005c48e893bb4348fcdcf6a9c5c73c54d4efaa0288a1f2"
    );
    // The one-frame SEG (three per-frame items, one frame of pixels) maps onto slice 0 only.
    let r = s.json(&[
        "annotate",
        "import",
        "--reader",
        "r2",
        liver1.to_str().unwrap(),
    ]);
    assert_eq!(r[0]["summary"]["segments"][0]["voxels"], 36_233);
    let vol = s.export_nifti(&series, "r2");
    assert_eq!(
        sha256_hex(&vol[..512 * 512]),
        "e036a07b502fdfd1f0ed932406e2474409be9fe49397c4906f2b8738f84f2230"
    );
    assert!(vol[512 * 512..].iter().all(|&v| v == 0));
}

/// A tiny CT series of `n` slices of `cols`×`rows` pixels.
fn tiny_series(dir: &Path, cols: u16, rows: u16, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let pixels = vec![0i16; usize::from(rows) * usize::from(cols)];
    for k in 0..n {
        write_ct_slice(
            &dir.join(format!("{k}.dcm")),
            &CtSlice {
                patient_name: "SYNTHETIC^TINY",
                patient_id: "TINY",
                patient_birth_date: "",
                institution_name: "",
                study_uid: "2.25.77001",
                series_uid: "2.25.77002",
                sop_instance_uid: &format!("2.25.7700{}", k + 3),
                frame_of_reference_uid: "2.25.77000",
                study_date: "20200202",
                study_description: "",
                accession_number: "",
                series_number: 3,
                instance_number: k + 1,
                rows,
                columns: cols,
                pixel_spacing: [0.5, 0.75],
                slice_thickness: 3.0,
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                // Listed out of order on purpose.
                position: [10.0, 20.0, 30.0 - 3.0 * f64::from((k + 1) % n)],
                pixels: &pixels,
            },
        )
        .unwrap();
    }
}

/// A SEG export names the site only when it is not de-identified, and a de-identified one
/// carries the PS3.15 options applied.
fn equipment_and_deidentification(out: &Path, deid: bool) {
    use dicom_dictionary_std::tags;
    let file = dicom_object::open_file(out).unwrap();
    let text = |tag| {
        file.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let manufacturer = text(tags::MANUFACTURER).unwrap_or_default();
    if !deid {
        assert_eq!(manufacturer, "fedanno (Seg Site)");
        return;
    }
    assert_eq!(manufacturer, "fedanno");
    assert_eq!(
        text(tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("MODIFIED")
    );
    let methods = file
        .element(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .unwrap();
    let codes: Vec<String> = methods
        .items()
        .unwrap()
        .iter()
        .map(|i| {
            i.element(tags::CODE_VALUE)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(codes, ["113100", "113107"]);
}

#[test]
fn our_seg_round_trips_exactly_at_odd_sizes_local_and_deidentified() {
    for (cols, rows) in [(5u16, 5u16), (21, 22)] {
        let s = Site::new();
        let src = s.path("tiny");
        tiny_series(&src, cols, rows, 3);
        s.ok(&["ingest", src.to_str().unwrap()]);
        let cases = s.json(&["cases"]);
        let series = cases[0]["series"].as_str().unwrap().to_string();
        // A two-segment label map with a pattern that touches every bit position.
        let n = usize::from(cols) * usize::from(rows) * 3;
        let labels: Vec<u8> = (0..n).map(|i| ((i * 7 + i / 5) % 3) as u8).collect();
        let affine = {
            // The series grid's affine, from a NIfTI export of an all-background import.
            let zero = s.path("zero.nii");
            let spacing = [0.75, 0.5, 3.0];
            let a = [
                [-0.75, 0.0, 0.0, -10.0],
                [0.0, -0.5, 0.0, -20.0],
                [0.0, 0.0, 3.0, 24.0],
                [0.0, 0.0, 0.0, 1.0],
            ];
            nifti::write_file(
                &zero,
                &NiftiImage::from_u8([cols.into(), rows.into(), 3], spacing, a, vec![0; n])
                    .unwrap(),
            )
            .unwrap();
            s.ok(&[
                "annotate",
                "import",
                "--reader",
                "r2",
                "--series",
                &series,
                zero.to_str().unwrap(),
            ]);
            a
        };
        let mask = s.path("mask.nii.gz");
        nifti::write_file(
            &mask,
            &NiftiImage::from_u8(
                [cols.into(), rows.into(), 3],
                [0.75, 0.5, 3.0],
                affine,
                labels.clone(),
            )
            .unwrap(),
        )
        .unwrap();
        let first = s.json(&[
            "annotate",
            "import",
            "--reader",
            "r1",
            "--series",
            &series,
            "--segments",
            "1=nodule,2=vessel",
            mask.to_str().unwrap(),
        ]);
        let hash = s.json(&["annotate", "list", "--reader", "r1"])[0]["content_hash"].clone();
        assert_eq!(first[0]["version"], 1);
        for deid in [false, true] {
            let out = s.path(if deid { "deid.dcm" } else { "local.dcm" });
            let extra: &[&str] = if deid { &["--deidentified"] } else { &[] };
            s.export(&series, "r1", "seg", &out, extra);
            // Bits read back by our reader (odd sizes: frames are not byte-aligned).
            let obj = seg::read_seg(&out, &SegLimits::default()).unwrap();
            assert_eq!((obj.rows, obj.columns), (u32::from(rows), u32::from(cols)));
            assert_eq!(
                obj.segments
                    .iter()
                    .map(|x| x.label.as_str())
                    .collect::<Vec<_>>(),
                ["nodule", "vessel"]
            );
            equipment_and_deidentification(&out, deid);
            if deid {
                assert!(
                    obj.referenced_series_uid.as_deref() == Some(series.as_str()),
                    "de-identified SEG references the pseudonymous series"
                );
            } else {
                assert_eq!(obj.referenced_series_uid.as_deref(), Some("2.25.77002"));
            }
            // Re-import: the identical content, so no new version.
            let again = s.json(&[
                "annotate",
                "import",
                "--reader",
                "r1",
                out.to_str().unwrap(),
            ]);
            assert_eq!(
                (again[0]["created"].as_bool(), again[0]["version"].as_i64()),
                (Some(false), Some(1))
            );
            assert_eq!(
                s.json(&["annotate", "list", "--reader", "r1"])[0]["content_hash"],
                hash
            );
        }
        assert_eq!(s.export_nifti(&series, "r1"), labels);
    }
}

#[test]
fn seg_of_an_unknown_series_stores_nothing() {
    let s = Site::new();
    let seg_file = data().join("generated/CT_small_seg_disc_highdicom.dcm");
    let out = s.run(&[
        "annotate",
        "import",
        "--reader",
        "r1",
        seg_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no series or study is indexed"));
    assert_eq!(s.json(&["annotate", "list"]).as_array().unwrap().len(), 0);
    // Not a SEG at all.
    let ct = data().join("pydicom/CT_small.dcm");
    let out = s.run(&["annotate", "import", "--reader", "r1", ct.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn offline_metrics_read_dicom_seg_like_nifti() {
    let s = Site::new();
    let data = s.path("syn");
    run_ok(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--cases",
        "1",
        "--size",
        "40x36x10",
        "--seed",
        "4",
    ]);
    s.ok(&["ingest", data.join("dicom").to_str().unwrap()]);
    let mut segs = Vec::new();
    let mut niftis = Vec::new();
    for r in ["panel-generous", "local-resident"] {
        s.ok(&["readers", "add", r, "--kind", "local"]);
        let nii = data.join("readers").join(r).join("case-0001.nii.gz");
        let imported = s.json(&["annotate", "import", "--reader", r, nii.to_str().unwrap()]);
        let series = imported[0]["series"].as_str().unwrap().to_string();
        let seg = s.path(&format!("{r}.dcm"));
        s.export(&series, r, "seg", &seg, &[]);
        segs.push(seg);
        niftis.push(nii);
    }
    let metrics = |a: &Path, b: &Path| -> Value {
        run_json(&[
            "metrics",
            "seg",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--json",
        ])
    };
    let from_nifti = metrics(&niftis[0], &niftis[1]);
    let from_seg = metrics(&segs[0], &segs[1]);
    for key in [
        "ref_voxels",
        "test_voxels",
        "intersection",
        "dice",
        "jaccard",
        "volume_similarity",
    ] {
        assert_eq!(from_seg[key], from_nifti[key], "{key}");
    }
    for key in ["hausdorff", "hd95", "assd", "surface_dice"] {
        let (a, b) = (
            from_seg[key].as_f64().unwrap(),
            from_nifti[key].as_f64().unwrap(),
        );
        // NIfTI stores spacing as float32 (0.800000011920929 mm); the SEG has it exactly.
        assert!((a - b).abs() < 1e-6, "{key}: {a} vs {b}");
    }
    // A SEG and a NIfTI mask together are refused: they need not share a grid.
    let out = run(&[
        "metrics",
        "seg",
        segs[0].to_str().unwrap(),
        niftis[1].to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// A label map of 117 non-overlapping segments on a 512×512×`n` grid: segment k a 40×40
/// square on 10 slices.
fn many_segments(n: usize) -> Vec<u8> {
    let (w, h) = (512usize, 512usize);
    let mut labels = vec![0u8; w * h * n];
    for k in 1..=117usize {
        let (gx, gy) = ((k - 1) % 11, (k - 1) / 11);
        let z0 = (k * 7) % (n - 10);
        for z in z0..z0 + 10 {
            for y in gy * 44..gy * 44 + 40 {
                let row = z * w * h + y * w;
                labels[row + gx * 44..row + gx * 44 + 40].fill(k as u8);
            }
        }
    }
    labels
}

#[test]
fn a_seg_of_117_segments_on_a_512x512x100_series_imports_in_bounded_memory() {
    let s = Site::new();
    let n = 100u32;
    let src = s.path("big");
    tiny_series(&src, 512, 512, n);
    s.ok(&["ingest", src.to_str().unwrap()]);
    let series = s.json(&["cases"])[0]["series"]
        .as_str()
        .unwrap()
        .to_string();
    let labels = many_segments(n as usize);
    let z0 = 30.0 - 3.0 * f64::from(n - 1);
    let affine = [
        [-0.75, 0.0, 0.0, -10.0],
        [0.0, -0.5, 0.0, -20.0],
        [0.0, 0.0, 3.0, z0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let mask = s.path("many.nii.gz");
    let img = NiftiImage::from_u8([512, 512, n as usize], [0.75, 0.5, 3.0], affine, labels);
    nifti::write_file(&mask, &img.unwrap()).unwrap();
    let m = mask.to_str().unwrap();
    s.ok(&[
        "annotate", "import", "--reader", "r1", "--series", &series, m,
    ]);
    let out = s.path("many.dcm");
    let dir = s.dir.to_str().unwrap().to_string();
    let export = [
        "--dir",
        &dir,
        "annotate",
        "export",
        "--case",
        &series,
        "--reader",
        "r1",
        "--format",
        "seg",
        "--out",
        s_(&out),
    ];
    // Memory follows the label map and the frames written, not 117 masks of the series.
    let (ok, e, peak) = common::run_measured(&export);
    assert!(ok, "{e}");
    assert!(peak < 300 << 20, "export peak {} MB", peak >> 20);
    let obj = seg::read_seg(&out, &SegLimits::default()).unwrap();
    assert_eq!(obj.segments.len(), 117);
    assert_eq!(obj.frames.len(), 1170);
    drop(obj);
    // The SEG back in as r2: memory follows the frames and one label map, not 117 volumes.
    let args = [
        "--dir",
        &dir,
        "annotate",
        "import",
        "--reader",
        "r2",
        out.to_str().unwrap(),
    ];
    let (ok, e, peak) = common::run_measured(&args);
    assert!(ok, "{e}");
    assert!(peak < 300 << 20, "peak {} MB", peak >> 20);
    assert_eq!(s.export_nifti(&series, "r2"), s.export_nifti(&series, "r1"));
}

#[test]
fn a_model_readers_seg_is_automatic_and_names_the_model_a_humans_is_manual() {
    let s = Site::new();
    s.ok(&["readers", "add", "nodule-net", "--kind", "model"]);
    let (series, grid) = s.tiny_case(3, &[]);
    let affine = fedanno_node::site::dicom::geometry::nifti_affine(&grid.geometry());
    let labels: Vec<u8> = (0..75).map(|i| u8::from(i % 4 == 0)).collect();
    let mask = s.mask("m.nii.gz", [5, 5, 3], grid.spacing(), affine, labels);
    let versions = ["--model-version", "2.0.4"];
    for (reader, automatic) in [("nodule-net", true), ("r1", false)] {
        s.ok(&Site::import_args(reader, &series, &mask, &[]));
        let out = s.path(&format!("{reader}.dcm"));
        s.export(&series, reader, "seg", &out, &[]);
        let obj = seg::read_seg(&out, &SegLimits::default()).unwrap();
        for x in &obj.segments {
            if automatic {
                assert_eq!(x.algorithm_type, seg::AlgorithmType::Automatic);
                assert_eq!(x.algorithm_name.as_deref(), Some("nodule-net"));
                // No version known: no algorithm identification.
                assert_eq!(x.algorithm_identification, None);
            } else {
                assert_eq!(x.algorithm_type, seg::AlgorithmType::Manual);
                assert_eq!(x.algorithm_name, None);
            }
        }
        if !automatic {
            let err = s.fails(&Site::import_args(reader, &series, &mask, &versions));
            assert!(err.contains("for model readers"), "{err}");
        }
    }
    // The model's version given at import: its code, version and family in the SEG.
    let r = s.json(&Site::import_args("nodule-net", &series, &mask, &versions));
    assert_eq!(
        (r[0]["created"].as_bool(), r[0]["version"].as_i64()),
        (Some(true), Some(2))
    );
    let out = s.path("nodule-net-2.0.4.dcm");
    s.export(&series, "nodule-net", "seg", &out, &[]);
    let obj = seg::read_seg(&out, &SegLimits::default()).unwrap();
    let id = obj.segments[0].algorithm_identification.clone().unwrap();
    assert_eq!(
        (id.name.as_str(), id.version.as_str()),
        ("nodule-net", "2.0.4")
    );
    assert_eq!(id.family.meaning, "Artificial Intelligence");
}

#[test]
fn a_series_with_a_missing_slice_is_imported_with_a_warning() {
    let s = Site::new();
    // Slice 1 (z = 24) is missing: the gaps are 6 and 3 mm.
    let (series, grid) = s.tiny_case(4, &[1]);
    assert!(grid.uneven_slices().is_some());
    let affine = fedanno_node::site::dicom::geometry::nifti_affine(&grid.geometry());
    let dims = grid.dims().map(|d| d as usize);
    let n = dims.iter().product();
    let mask = s.mask("gappy.nii.gz", dims, grid.spacing(), affine, vec![1; n]);
    let r = s.json(&Site::import_args("r1", &series, &mask, &[]));
    let warning = r[0]["summary"]["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("uneven slice spacing") && warning.contains("3.000 to 6.000"),
        "{r}"
    );
    nifti_and_seg_exports_agree_on_slice_positions(&s, &series);
}

/// The NIfTI export of a series missing a slice holds its slices on a regular 3 mm grid with
/// the missing one empty, each slice where the SEG export places it; it imports back as the
/// same content, and a mask labelling the missing slice is refused.
fn nifti_and_seg_exports_agree_on_slice_positions(s: &Site, series: &str) {
    let nii = s.path("gappy-export.nii.gz");
    s.export(series, "r1", "nifti", &nii, &[]);
    let img = nifti::read_file(&nii, &Default::default()).unwrap();
    assert_eq!(img.dim, [5, 5, 4]);
    assert!((img.pixdim[2] - 3.0).abs() < 1e-9, "{:?}", img.pixdim);
    let labels = img.to_labels_u8().unwrap();
    let plane = 25;
    assert!(
        labels[plane..2 * plane].iter().all(|&v| v == 0),
        "the missing slice is empty"
    );
    assert!(
        labels[..plane]
            .iter()
            .chain(&labels[2 * plane..])
            .all(|&v| v == 1)
    );
    let dcm = s.path("gappy-export.dcm");
    s.export(series, "r1", "seg", &dcm, &[]);
    let obj = seg::read_seg(&dcm, &SegLimits::default()).unwrap();
    let mut seg_positions: Vec<[f64; 3]> = obj.frames.iter().filter_map(|f| f.position).collect();
    seg_positions.sort_by(|a, b| a[2].total_cmp(&b[2]));
    // NIfTI is RAS, DICOM LPS: the world position of voxel (0, 0, k), x and y negated.
    let a = img.affine;
    let nifti_positions: Vec<[f64; 3]> = [0usize, 2, 3]
        .iter()
        .map(|&k| {
            let k = k as f64;
            [
                -(a[0][2] * k + a[0][3]),
                -(a[1][2] * k + a[1][3]),
                a[2][2] * k + a[2][3],
            ]
        })
        .collect();
    assert_eq!(seg_positions.len(), 3);
    for (p, q) in seg_positions.iter().zip(&nifti_positions) {
        assert!((0..3).all(|i| (p[i] - q[i]).abs() < 1e-6), "{p:?} {q:?}");
    }
    let again = s.json(&Site::import_args("r1", series, &nii, &[]));
    assert_eq!(again[0]["created"], false, "{again}");
    let mut stray = labels.clone();
    stray[plane + 7] = 1;
    let bad = s.mask(
        "gappy-stray.nii.gz",
        [5, 5, 4],
        img.pixdim,
        img.affine,
        stray,
    );
    let args = Site::import_args("r1", series, &bad, &[]);
    let err = s.fails(&args);
    assert!(err.contains("1 voxels on slice positions"), "{err}");
}

/// A site with the readers r1 and r2 and `pydicom/CT_small.dcm` ingested.
fn ct_small_site() -> Site {
    let s = Site::new();
    s.ok(&["ingest", s_(&data().join("pydicom/CT_small.dcm"))]);
    s
}

/// CT_small's one slice, at the position of the first frame of a SEG of it.
fn ct_small_slice(obj: &seg::SegObject) -> [seg::SliceRef; 1] {
    [seg::SliceRef {
        sop_instance_uid: "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322".into(),
        position: obj.frames[0].position.unwrap(),
    }]
}

/// The three overlapping masks of `generated/CT_small_seg_overlap_highdicom.dcm` (liver, a
/// lesion inside it, a vessel crossing both), each 128 x 128.
fn overlap_masks() -> Vec<Vec<u8>> {
    let all = npy_u8(&data().join("generated/CT_small_seg_overlap_masks.npy"));
    all.chunks(128 * 128).map(<[u8]>::to_vec).collect()
}

/// The per-segment masks of a SEG file mapped onto CT_small's one slice.
fn seg_masks(path: &Path) -> (seg::SegObject, Vec<(u16, Vec<u8>)>) {
    let obj = seg::read_seg(path, &SegLimits::default()).unwrap();
    let slices = ct_small_slice(&obj);
    let orientation = obj.orientation.unwrap();
    let volumes = seg::frames_to_volumes(&obj, &slices, orientation, 128, 128).unwrap();
    (obj, volumes)
}

#[test]
fn overlapping_segments_are_kept_and_export_as_they_came_with_their_descriptions() {
    let s = ct_small_site();
    let file = data().join("generated/CT_small_seg_overlap_highdicom.dcm");
    let r = s.json(&[
        "annotate",
        "import",
        "--reader",
        "r1",
        file.to_str().unwrap(),
    ]);
    let series = r[0]["series"].as_str().unwrap().to_string();
    let masks = overlap_masks();
    // Every segment counts all of its voxels, those under another segment included.
    for (k, m) in masks.iter().enumerate() {
        let n = m.iter().filter(|&&v| v == 1).count();
        assert_eq!(r[0]["summary"]["segments"][k]["voxels"], n, "{r}");
    }
    assert_eq!(
        r[0]["summary"]["overlapping"],
        serde_json::json!([2, 3]),
        "{r}"
    );
    // A label map cannot hold them: the NIfTI export says so and writes nothing.
    let err = s.export_refused(&series, "r1", "nifti");
    assert!(err.contains("--format seg"), "{err}");
    // The SEG export gives every mask back as it came, with what its author said.
    let out = s.path("overlap-export.dcm");
    s.export(&series, "r1", "seg", &out, &[]);
    let (obj, volumes) = seg_masks(&out);
    let (orig, _) = seg_masks(&file);
    for (k, (number, v)) in volumes.iter().enumerate() {
        assert_eq!(usize::from(*number), k + 1);
        assert_eq!(v, &masks[k], "segment {number}");
    }
    assert_eq!(obj.segments, orig.segments);
    assert_eq!(
        obj.segments[1].algorithm_type,
        seg::AlgorithmType::Automatic
    );
    assert_eq!(
        obj.segments[1].algorithm_name.as_deref(),
        Some("lesion-net")
    );
    assert_eq!(obj.segments[0].property_type.meaning, "Liver");
    assert_eq!(obj.segments[1].colour, Some([45874, 27756, 48316]));
    let model = obj.segments[1].algorithm_identification.as_ref().unwrap();
    assert_eq!(
        (model.version.as_str(), model.family.value.as_str()),
        ("2.1.0", "123110")
    );
    // Declared segments must cover every labelled value: the vessel (3) is not declared.
    let args = [
        "annotate",
        "import",
        "--reader",
        "r2",
        "--segments",
        "1=liver,2=lesion",
        s_(&file),
    ];
    let err = s.fails(&args);
    assert!(err.contains("value 3"), "{err}");
    // Imported again it is the same content (masks, overlaps and descriptions): no new version.
    let again = s.json(&["annotate", "import", "--reader", "r1", s_(&out)]);
    assert_eq!(again[0]["created"], false, "{again}");
    assert_eq!(again[0]["version"], r[0]["version"], "{again}");
}

fn s_(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_labelmap_export_writes_the_label_map_and_refuses_overlaps() {
    let s = ct_small_site();
    let file = data().join("generated/CT_small_seg_labelmap_highdicom.dcm");
    let r = s.json(&["annotate", "import", "--reader", "r1", s_(&file)]);
    let series = r[0]["series"].as_str().unwrap().to_string();
    let out = s.path("labelmap-export.dcm");
    s.export(&series, "r1", "seg-labelmap", &out, &[]);
    let obj = seg::read_seg(&out, &SegLimits::default()).unwrap();
    assert_eq!(obj.segmentation_type, seg::SegmentationType::Labelmap);
    let slices = ct_small_slice(&obj);
    let orientation = obj.orientation.unwrap();
    let labels = seg::frames_to_label_map(&obj, &slices, orientation, 128, 128).unwrap();
    assert_eq!(
        labels,
        npy_u8(&data().join("generated/CT_small_seg_labelmap.npy"))
    );
    // Imported again: the same content.
    let again = s.json(&["annotate", "import", "--reader", "r1", s_(&out)]);
    assert_eq!(again[0]["created"], false, "{again}");
    // Overlapping segments do not fit one label per voxel.
    let overlap = data().join("generated/CT_small_seg_overlap_highdicom.dcm");
    s.ok(&["annotate", "import", "--reader", "r2", s_(&overlap)]);
    let err = s.export_refused(&series, "r2", "seg-labelmap");
    assert!(err.contains("LABELMAP SEG cannot hold"), "{err}");
}

#[test]
fn segments_whose_values_are_not_1_to_n_export_renumbered_in_value_order() {
    let s = Site::new();
    let (series, grid) = s.tiny_case(4, &[]);
    let affine = fedanno_node::site::dicom::geometry::nifti_affine(&grid.geometry());
    let mut labels = vec![0u8; 100];
    labels[3..9].fill(2);
    labels[60..70].fill(5);
    let mask = s.mask(
        "two-five.nii.gz",
        [5, 5, 4],
        grid.spacing(),
        affine,
        labels.clone(),
    );
    let args = Site::import_args("r1", &series, &mask, &["--segments", "2=lesion,5=vessel"]);
    s.ok(&args);
    let out = s.path("two-five.dcm");
    s.export(&series, "r1", "seg", &out, &[]);
    let obj = seg::read_seg(&out, &SegLimits::default()).unwrap();
    let numbered: Vec<(u16, &str)> = obj
        .segments
        .iter()
        .map(|x| (x.number, x.label.as_str()))
        .collect();
    assert_eq!(numbered, [(1, "lesion"), (2, "vessel")]);
    s.ok(&["annotate", "import", "--reader", "r2", s_(&out)]);
    let expected: Vec<u8> = labels
        .iter()
        .map(|&v| [0, 0, 1, 0, 0, 2][usize::from(v)])
        .collect();
    assert_eq!(s.export_nifti(&series, "r2"), expected);
}
