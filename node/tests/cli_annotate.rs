//! `fedanno readers` and `fedanno annotate` end to end through the binary: NIfTI, CSV and JSON
//! import with geometry and scheme checks, exact round trips, versions and history, review,
//! the adjudication queue and adjudication decisions. DICOM SEG has its own test file.

mod common;

use std::path::{Path, PathBuf};

use common::{run_ok, s};
use fedanno_node::annotations::nifti::{self, NiftiImage};
use serde_json::Value;

/// A site with `cases` synthetic 24x20x6 CT series ingested, and their synthetic data
/// (`fedanno synth`) beside it.
struct Site {
    site: common::Site,
    data: PathBuf,
}

impl std::ops::Deref for Site {
    type Target = common::Site;

    fn deref(&self) -> &common::Site {
        &self.site
    }
}

impl Site {
    fn new(cases: usize) -> Site {
        let site = common::Site::init("Annot Site");
        let data = site.path("data");
        run_ok(&[
            "synth",
            "--out",
            s(&data),
            "--cases",
            &cases.to_string(),
            "--size",
            "24x20x6",
            "--seed",
            "5",
        ]);
        site.ok(&["ingest", s(&data.join("dicom"))]);
        Site { site, data }
    }

    fn mask(&self, reader: &str, case: &str) -> PathBuf {
        self.data
            .join("readers")
            .join(reader)
            .join(format!("{case}.nii.gz"))
    }

    fn series(&self, case: &str) -> String {
        let text = std::fs::read_to_string(self.data.join("cases.csv")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{case},")))
            .unwrap();
        line.split(',').nth(2).unwrap().to_string()
    }

    fn p(&self, path: &Path) -> String {
        path.to_str().unwrap().to_string()
    }

    fn annotation_count(&self) -> usize {
        self.json(&["annotate", "list"]).as_array().unwrap().len()
    }
}

/// A gzip-compressed NIfTI-1 file of `dim` zero voxels (u8), written as a stream: a few
/// hundred kilobytes that inflate to the whole grid.
fn write_bomb(path: &Path, dim: [i16; 3]) {
    use std::io::Write;
    let one = NiftiImage::from_u8([1, 1, 1], [1.0; 3], diag(), vec![0]).unwrap();
    let mut header = nifti::write_bytes(&one, false).unwrap();
    header.truncate(header.len() - 1);
    for (i, d) in dim.iter().enumerate() {
        header[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let total = dim.iter().map(|&d| d as usize).product::<usize>();
    for _ in 0..total / zeros.len() {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
}

fn diag() -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

fn read_labels(path: &Path) -> (NiftiImage, Vec<u8>) {
    let img = nifti::read_file(path, &Default::default()).unwrap();
    let labels = img.to_labels_u8().unwrap();
    (img, labels)
}

#[test]
fn readers_and_their_pseudonyms() {
    let a = Site::new(1);
    let b = Site::new(1);
    for s in [&a, &b] {
        s.ok(&[
            "readers",
            "add",
            "panel-07",
            "--kind",
            "panel",
            "--name",
            "Dr. Jane Example",
        ]);
        s.ok(&["readers", "add", "dr-local", "--kind", "local"]);
        s.ok(&["readers", "add", "nnunet-v2", "--kind", "model"]);
    }
    let ra = a.json(&["readers", "list"]);
    let rb = b.json(&["readers", "list"]);
    let find = |v: &Value, id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    // Panel readers and models: the same pseudonym at every site; local readers: not linkable.
    assert_eq!(
        find(&ra, "panel-07")["pseudonym"],
        find(&rb, "panel-07")["pseudonym"]
    );
    assert_eq!(
        find(&ra, "nnunet-v2")["pseudonym"],
        find(&rb, "nnunet-v2")["pseudonym"]
    );
    assert_ne!(
        find(&ra, "dr-local")["pseudonym"],
        find(&rb, "dr-local")["pseudonym"]
    );
    assert_eq!(find(&ra, "panel-07")["name"], "Dr. Jane Example");
    assert!(
        a.fails(&["readers", "add", "panel-07", "--kind", "panel"])
            .contains("already exists")
    );
    assert!(
        a.fails(&["readers", "add", "bad id", "--kind", "local"])
            .contains("invalid reader id")
    );
    assert!(
        a.fails(&["readers", "add", "consensus", "--kind", "local"])
            .contains("reserved")
    );
}

#[test]
fn nifti_round_trip_versions_history_and_idempotence() {
    let s = Site::new(2);
    s.ok(&["readers", "add", "panel-expert", "--kind", "panel"]);
    let m1 = s.mask("panel-expert", "case-0001");
    let imported = s.json(&["annotate", "import", "--reader", "panel-expert", &s.p(&m1)]);
    assert_eq!(imported[0]["version"], 1);
    assert_eq!(imported[0]["created"], true);
    // Identical content again: no new version.
    let again = s.json(&["annotate", "import", "--reader", "panel-expert", &s.p(&m1)]);
    assert_eq!(
        (again[0]["version"].as_i64(), again[0]["created"].as_bool()),
        (Some(1), Some(false))
    );

    // Export is voxel-for-voxel identical, on the same grid.
    let series = s.series("case-0001");
    let out = s.path("export.nii.gz");
    s.export(&series, "panel-expert", "nifti", &out, &[]);
    let (orig_img, orig) = read_labels(&m1);
    let (back_img, back) = read_labels(&out);
    assert_eq!(orig, back);
    assert_eq!(orig_img.dim, back_img.dim);
    assert_eq!(orig_img.affine, back_img.affine);

    // A corrected mask becomes version 2; history shows exactly what changed.
    let mut edited = orig.clone();
    let first_fg = edited.iter().position(|&v| v == 1).unwrap();
    edited[first_fg] = 0; // one voxel removed
    let bg: Vec<usize> = edited
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == 0)
        .map(|(i, _)| i)
        .take(3)
        .collect();
    for i in &bg {
        edited[*i] = 1; // three voxels added
    }
    let v2 = s.path("v2.nii.gz");
    nifti::write_file(
        &v2,
        &NiftiImage::from_u8(
            orig_img.dim,
            orig_img.pixdim,
            orig_img.affine,
            edited.clone(),
        )
        .unwrap(),
    )
    .unwrap();
    let r = s.json(&[
        "annotate",
        "import",
        "--reader",
        "panel-expert",
        "--series",
        &series,
        "--reason",
        "fixed the margin",
        &s.p(&v2),
    ]);
    assert_eq!(r[0]["version"], 2);
    let h = s.json(&["annotate", "history", &series]);
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["change"]["kind"], "created");
    assert_eq!(h[1]["reason"], "fixed the margin");
    assert_eq!(h[1]["parent"], 1);
    assert_eq!(h[1]["change"]["segments"][0]["added"], 3);
    assert_eq!(h[1]["change"]["segments"][0]["removed"], 1);
    // Any version can be exported.
    let old = s.path("v1.nii");
    s.export(&series, "panel-expert", "nifti", &old, &["--version", "1"]);
    assert_eq!(read_labels(&old).1, orig);
    let new = s.path("v2-back.nii");
    s.export(&series, "panel-expert", "nifti", &new, &[]);
    assert_eq!(read_labels(&new).1, edited);
}

#[test]
fn bad_masks_are_clear_errors_and_store_nothing() {
    let s = Site::new(2);
    s.ok(&["readers", "add", "r1", "--kind", "local"]);
    let series = s.series("case-0001");
    let good = s.mask("panel-expert", "case-0001");
    let (img, labels) = read_labels(&good);
    let write = |name: &str, img: NiftiImage| {
        let p = s.path(name);
        nifti::write_file(&p, &img).unwrap();
        p
    };
    // Imports a file as r1's mask of the series, which must fail: the error.
    let refused = |extra: &[&str], file: &Path| {
        let file = s.p(file);
        let mut args = vec!["annotate", "import", "--reader", "r1", "--series", &series];
        args.extend_from_slice(extra);
        args.push(&file);
        s.fails(&args)
    };
    // Wrong dimensions: a mask of the other case's grid would match; use a cropped grid.
    let small = NiftiImage::from_u8(
        [24, 20, 5],
        img.pixdim,
        img.affine,
        labels[..24 * 20 * 5].to_vec(),
    )
    .unwrap();
    let e = refused(&[], &write("small.nii.gz", small));
    assert!(
        e.contains("dimensions") && e.contains("24x20x5") && e.contains("24x20x6"),
        "{e}"
    );
    // Wrong spacing.
    let mut affine = img.affine;
    affine[2][2] = 2.5;
    let spaced = NiftiImage::from_u8(img.dim, [0.8, 0.8, 2.5], affine, labels.clone()).unwrap();
    let e = refused(&[], &write("spacing.nii.gz", spaced));
    assert!(
        e.contains("spacing") && e.contains("2.5000") && e.contains("2.0000"),
        "{e}"
    );
    // Wrong origin (shifted by 1 mm).
    let mut affine = img.affine;
    affine[0][3] += 1.0;
    let shifted = NiftiImage::from_u8(img.dim, img.pixdim, affine, labels.clone()).unwrap();
    let e = refused(&[], &write("shift.nii.gz", shifted));
    assert!(e.contains("origin"), "{e}");
    // Flipped orientation.
    let mut affine = img.affine;
    affine[2][2] = -affine[2][2];
    let flipped = NiftiImage::from_u8(img.dim, img.pixdim, affine, labels.clone()).unwrap();
    let e = refused(&[], &write("flip.nii.gz", flipped));
    assert!(e.contains("orientation"), "{e}");
    // A label value outside the declared segments.
    let mut odd = labels.clone();
    odd[0] = 7;
    let odd = NiftiImage::from_u8(img.dim, img.pixdim, img.affine, odd).unwrap();
    let e = refused(&["--segments", "1=nodule"], &write("odd.nii.gz", odd));
    assert!(e.contains("value 7") && e.contains("1=nodule"), "{e}");
    // A truncated file.
    let bytes = std::fs::read(&good).unwrap();
    let trunc = s.path("trunc.nii.gz");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let e = refused(&[], &trunc);
    assert!(e.contains("trunc.nii.gz"), "{e}");
    // A 1 MB .nii.gz that inflates to 512 MiB on another grid: refused from its header,
    // before any voxel is read.
    let bomb = s.path("bomb.nii.gz");
    write_bomb(&bomb, [1024, 1024, 512]);
    let (b, series_arg, dir) = (s.p(&bomb), series.clone(), s.p(&s.dir));
    let args = [
        "--dir",
        &dir,
        "annotate",
        "import",
        "--reader",
        "r1",
        "--series",
        &series_arg,
        &b,
    ];
    let (ok, e, peak) = common::run_measured(&args);
    assert!(
        !ok && e.contains("dimensions") && e.contains("1024x1024x512"),
        "{e}"
    );
    assert!(peak < 100 << 20, "peak {} MB", peak >> 20);
    // An unknown series; an unknown reader.
    let e = s.fails(&[
        "annotate",
        "import",
        "--reader",
        "r1",
        "--series",
        "2.25.123",
        &s.p(&good),
    ]);
    assert!(
        e.contains("no series or study is indexed under \"2.25.123\""),
        "{e}"
    );
    // Said once, not once per layer of the error.
    assert_eq!(e.matches("no series").count(), 1, "{e}");
    let e = s.fails(&["annotate", "import", "--reader", "nobody", &s.p(&good)]);
    assert!(e.contains("no reader \"nobody\""), "{e}");
    assert_eq!(s.annotation_count(), 0);
}

#[test]
fn labels_from_csv_and_json_with_schemes_review_and_adjudication() {
    let s = Site::new(3);
    for (r, k) in [
        ("panel-expert", "panel"),
        ("panel-generous", "panel"),
        ("model-a", "model"),
        ("local-resident", "local"),
        ("chief", "local"),
    ] {
        s.ok(&["readers", "add", r, "--kind", k]);
    }
    let ratings = s.data.join("ratings.csv");
    let map = s.data.join("cases.csv");
    let r = s.json(&[
        "annotate",
        "import",
        "--scheme",
        "likert5",
        "--case-map",
        &s.p(&map),
        &s.p(&ratings),
    ]);
    assert_eq!(r.as_array().unwrap().len(), 12);
    // Atomic: a file with one category outside the scheme stores nothing.
    let bad = s.path("bad.csv");
    let series1 = s.series("case-0001");
    std::fs::write(
        &bad,
        format!("unit,rater,value\n{series1},chief,3\n{series1},model-a,9\n"),
    )
    .unwrap();
    let e = s.fails(&["annotate", "import", "--scheme", "likert5", &s.p(&bad)]);
    assert!(e.contains("category \"9\" is not in scheme likert5"), "{e}");
    assert_eq!(s.annotation_count(), 12);
    // BI-RADS with confidence, case-insensitive category.
    let birads = s.path("birads.csv");
    std::fs::write(
        &birads,
        format!("unit,rater,value,confidence\n{series1},chief,4a,4\n"),
    )
    .unwrap();
    let r = s.json(&["annotate", "import", "--scheme", "birads", &s.p(&birads)]);
    assert_eq!(r[0]["summary"]["category"], "4A");
    assert_eq!(r[0]["summary"]["confidence"], 4);

    exports_round_trip(&s);
    boxes_are_checked_against_the_grid(&s, &series1);
    review_follows_its_states(&s, &series1);
    disagreements_can_be_adjudicated(&s);
    schemes_round_trip(&s);
}

/// Labels of several schemes on one unit and rater: a spreadsheet's CSV in, the CSV export
/// (with its scheme column) back in unchanged, one scheme's rows into `metrics agreement`.
fn schemes_round_trip(s: &Site) {
    // A Lung-RADS 4B beside the BI-RADS 4A of the same unit and rater, from a spreadsheet's
    // file (byte-order mark, CRLF, quoted fields).
    let series1 = s.series("case-0001");
    let lung = s.path("lung.csv");
    let sheet = format!("\u{feff}unit,rater,value\r\n\"{series1}\",\"chief\",\"4B\"\r\n");
    std::fs::write(&lung, sheet).unwrap();
    let r = s.json(&["annotate", "import", "--scheme", "lungrads", &s.p(&lung)]);
    assert_eq!(r[0]["summary"]["category"], "4B");
    // CSV export round-trips, each label in its own scheme: re-import under another default
    // scheme changes nothing.
    let out = s.path("schemes.csv");
    s.ok(&["annotate", "export", "--format", "csv", "--out", &s.p(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("unit,rater,value,confidence,scheme\n"),
        "{text}"
    );
    assert!(
        text.contains(",chief,4A,4,birads") && text.contains(",chief,4B,,lungrads"),
        "{text}"
    );
    let again = s.json(&["annotate", "import", "--scheme", "likert5", &s.p(&out)]);
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["created"] == false),
        "{again}"
    );
    // One scheme's rows of the export feed `metrics agreement` as they are (extra columns and
    // all); several schemes in one file are refused with their names.
    let likert = s.path("likert.csv");
    let rows: Vec<&str> = text.lines().filter(|l| l.ends_with(",likert5")).collect();
    std::fs::write(
        &likert,
        format!("unit,rater,value,confidence,scheme\n{}\n", rows.join("\n")),
    )
    .unwrap();
    let m = s.json(&["metrics", "agreement", &s.p(&likert)]);
    let raters: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|r| r.split(',').nth(1)).collect();
    assert!(raters.len() >= 2);
    assert_eq!(m["raters"].as_u64(), Some(raters.len() as u64), "{m}");
    let e = s.fails(&["metrics", "agreement", &s.p(&out)]);
    assert!(
        e.contains("several schemes") && e.contains("birads") && e.contains("lungrads"),
        "{e}"
    );
}

fn exports_round_trip(s: &Site) {
    // CSV export round-trips: re-import changes nothing.
    let out = s.path("labels.csv");
    s.ok(&["annotate", "export", "--format", "csv", "--out", &s.p(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 1 + 13);
    let json_out = s.path("labels.json");
    s.ok(&[
        "annotate",
        "export",
        "--format",
        "json",
        "--out",
        &s.p(&json_out),
    ]);
    let again = s.json(&["annotate", "import", &s.p(&json_out)]);
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["created"] == false)
    );
}

fn boxes_are_checked_against_the_grid(s: &Site, series1: &str) {
    // Boxes from JSON, checked against the grid.
    let boxes = s.path("boxes.json");
    std::fs::write(
        &boxes,
        format!(r#"{{"boxes": [{{"series": "{series1}", "rater": "chief", "boxes": [{{"label": "nodule", "min": [1, 2, 0], "max": [5, 6, 3], "confidence": 5}}]}}]}}"#),
    )
    .unwrap();
    let r = s.json(&["annotate", "import", &s.p(&boxes)]);
    assert_eq!(r[0]["kind"], "boxes");
    let outside = s.path("outside.json");
    std::fs::write(
        &outside,
        format!(r#"{{"boxes": [{{"series": "{series1}", "rater": "chief", "boxes": [{{"label": "nodule", "min": [0, 0, 0], "max": [24, 1, 1], "confidence": null}}]}}]}}"#),
    )
    .unwrap();
    assert!(
        s.fails(&["annotate", "import", &s.p(&outside)])
            .contains("outside the grid")
    );
}

fn review_follows_its_states(s: &Site, series1: &str) {
    // Review: draft → submitted → approved; approved is final.
    let review = |reader: &str, kind: &str, to: &str| {
        s.run(&[
            "annotate", "review", "--case", series1, "--reader", reader, "--kind", kind, "--to",
            to, "--by", "qa-lead",
        ])
    };
    assert_eq!(
        review("chief", "boxes", "approved").status.code(),
        Some(1),
        "a draft cannot be approved directly"
    );
    assert!(review("chief", "boxes", "submitted").status.success());
    assert!(review("chief", "boxes", "approved").status.success());
    assert_eq!(
        review("chief", "boxes", "rejected").status.code(),
        Some(1),
        "approved is final"
    );
    assert!(review("chief", "label", "submitted").status.success());
    let listed = s.json(&["annotate", "list", "--case", series1, "--reader", "chief"]);
    let state = |kind: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind)
            .unwrap()["review_state"]
            .clone()
    };
    assert_eq!(
        (state("boxes"), state("label")),
        (Value::from("approved"), Value::from("submitted"))
    );
    // Two label annotations of one reader on one case (two schemes): the review must name one.
    let extra = s.path("extra.csv");
    std::fs::write(&extra, format!("unit,rater,value\n{series1},model-a,2\n")).unwrap();
    s.ok(&["annotate", "import", "--scheme", "birads", &s.p(&extra)]);
    let e = review("model-a", "label", "submitted");
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("2 versions match"));
}

fn disagreements_can_be_adjudicated(s: &Site) {
    // The adjudication queue lists cases whose categories differ; a decision marks them.
    let q = s.json(&["annotate", "disagreements"]);
    let labels_q: Vec<&Value> = q
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "label")
        .collect();
    let truth = std::fs::read_to_string(s.data.join("ratings.csv")).unwrap();
    let mut per_case: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for l in truth.lines().skip(1) {
        let c: Vec<&str> = l.split(',').collect();
        per_case
            .entry(c[0].to_string())
            .or_default()
            .insert(c[2].to_string());
    }
    // Likert disagreements from the synthetic ratings, plus the BI-RADS pair on series1
    // (chief 4A, model-a 2).
    let likert = per_case.values().filter(|v| v.len() > 1).count();
    assert!(likert > 0, "the synthetic readers disagree somewhere");
    let expected = likert + 1;
    assert_eq!(labels_q.len(), expected);
    assert!(
        labels_q
            .iter()
            .all(|d| d["details"][0]["categories"].is_array())
    );
    if let Some(d) = labels_q.first() {
        let case = d["series"].as_str().unwrap().to_string();
        let reader = d["readers"][0].as_str().unwrap().to_string();
        s.ok(&[
            "annotate",
            "adjudicate",
            "--case",
            &case,
            "--kind",
            "label",
            "--reader",
            "chief",
            "--accept",
            &reader,
        ]);
        let q = s.json(&["annotate", "disagreements"]);
        let d = q
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["series"] == case.as_str() && x["kind"] == "label")
            .unwrap();
        assert_eq!(d["adjudicated"], true);
    }
}

#[test]
fn segmentation_disagreements_use_dice() {
    let s = Site::new(2);
    s.ok(&["readers", "add", "panel-expert", "--kind", "panel"]);
    s.ok(&["readers", "add", "local-resident", "--kind", "local"]);
    s.ok(&["readers", "add", "chief", "--kind", "local"]);
    for r in ["panel-expert", "local-resident"] {
        for c in ["case-0001", "case-0002"] {
            s.ok(&["annotate", "import", "--reader", r, &s.p(&s.mask(r, c))]);
        }
    }
    // Dice computed independently from the NIfTI files.
    let dice = |c: &str| {
        let a = read_labels(&s.mask("panel-expert", c)).1;
        let b = read_labels(&s.mask("local-resident", c)).1;
        let inter = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| **x == 1 && **y == 1)
            .count() as f64;
        let n =
            (a.iter().filter(|x| **x == 1).count() + b.iter().filter(|x| **x == 1).count()) as f64;
        2.0 * inter / n
    };
    let all = s.json(&["annotate", "disagreements", "--min-dice", "1.01"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    for d in all.as_array().unwrap() {
        let series = d["series"].as_str().unwrap();
        let case = if series
            == s.json(&["annotate", "list", "--case", &s.series("case-0001")])[0]["series"]
        {
            "case-0001"
        } else {
            "case-0002"
        };
        assert!((d["min_dice"].as_f64().unwrap() - dice(case)).abs() < 1e-12);
    }
    let threshold = (dice("case-0001") + dice("case-0002")) / 2.0;
    let some = s.json(&[
        "annotate",
        "disagreements",
        "--min-dice",
        &threshold.to_string(),
    ]);
    assert_eq!(some.as_array().unwrap().len(), 1);
    // Adjudication copies the accepted content and is exportable on its own.
    let series = s.series("case-0001");
    s.ok(&[
        "annotate",
        "adjudicate",
        "--case",
        &series,
        "--reader",
        "chief",
        "--accept",
        "local-resident",
    ]);
    let out = s.path("decision.nii.gz");
    s.export(&series, "chief", "nifti", &out, &["--adjudication"]);
    assert_eq!(
        read_labels(&out).1,
        read_labels(&s.mask("local-resident", "case-0001")).1
    );
}

/// `img` rewritten with its x axis reversed, or with x and y swapped: the same voxels.
fn reordered(img: &NiftiImage, labels: &[u8], swap: bool) -> NiftiImage {
    let [nx, ny, nz] = img.dim;
    let mut affine = img.affine;
    let mut data = vec![0u8; labels.len()];
    let dim = if swap { [ny, nx, nz] } else { img.dim };
    for (row, src) in affine.iter_mut().zip(&img.affine).take(3) {
        if swap {
            row[0] = src[1];
            row[1] = src[0];
        } else {
            row[0] = -src[0];
            row[3] = src[3] + src[0] * (nx - 1) as f64;
        }
    }
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let v = labels[x + nx * (y + ny * z)];
                let i = if swap {
                    y + ny * (x + nx * z)
                } else {
                    (nx - 1 - x) + nx * (y + ny * z)
                };
                data[i] = v;
            }
        }
    }
    let pixdim = if swap {
        [img.pixdim[1], img.pixdim[0], img.pixdim[2]]
    } else {
        img.pixdim
    };
    NiftiImage::from_u8(dim, pixdim, affine, data).unwrap()
}

#[test]
fn masks_in_another_axis_order_or_flipped_import_as_the_same_voxels() {
    let s = Site::new(1);
    let series = s.series("case-0001");
    let (img, labels) = read_labels(&s.mask("panel-expert", "case-0001"));
    for (reader, swap) in [("flipped", false), ("swapped", true)] {
        s.ok(&["readers", "add", reader, "--kind", "local"]);
        let path = s.path(&format!("{reader}.nii.gz"));
        nifti::write_file(&path, &reordered(&img, &labels, swap)).unwrap();
        let p = s.p(&path);
        s.ok(&[
            "annotate", "import", "--reader", reader, "--series", &series, &p,
        ]);
        let out = s.path(&format!("{reader}-out.nii.gz"));
        let o = s.p(&out);
        let args = ["--case", &series, "--format", "nifti", "--out", &o];
        s.ok(&[&["annotate", "export", "--reader", reader][..], &args[..]].concat());
        let (back, got) = read_labels(&out);
        assert_eq!(got, labels, "{reader}");
        assert_eq!(back.affine, img.affine, "{reader}");
    }
}
