//! The offline QA commands end to end beyond the oracle cases: `--readers-dir` pooling (equal
//! to one EM on the concatenated volumes, with absent readers as missing decisions), `--out`
//! maps, and the errors and exit codes of bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{run_err, run_json, run_ok, s};
use fedanno_node::annotations::nifti::{self, NiftiLimits, VoxelData};
use fedanno_stats::staple::{PatternHistogram, StapleOptions, staple};
use serde_json::Value;

/// `fedanno synth` into `out` (masks under `out/readers/<reader>/<case>.nii.gz`).
fn synth(out: &Path, cases: &str, size: &str, prefix: &str, seed: &str) {
    run_ok(&[
        "synth",
        "--out",
        s(out),
        "--cases",
        cases,
        "--size",
        size,
        "--case-prefix",
        prefix,
        "--seed",
        seed,
        "--json",
    ]);
}

/// The entries of a directory, sorted, without the sidecar JSON files `synth` writes beside
/// every mask.
fn sorted_dir(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(p)
        .expect("readable")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_none_or(|e| e != "json"))
        .collect();
    v.sort();
    v
}

fn labels(p: &Path) -> (Vec<u8>, [usize; 3]) {
    let img = nifti::read_file(p, &NiftiLimits::default()).expect("a NIfTI mask");
    (img.to_labels_u8().expect("labels"), img.dim)
}

/// The distinct file names of `paths`, sorted.
fn distinct_names(paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in paths {
        let n = p
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.sort();
    names
}

/// One reader's masks, case by case (`None`: no mask for that case).
type ReaderMasks = Vec<Option<Vec<u8>>>;

/// Per reader (sorted by name): every case's mask of the given readers dirs stacked along z
/// (cases in dir order, then by name), `None` where the reader has no mask for the case.
fn stacked(dirs: &[&Path]) -> (Vec<String>, Vec<ReaderMasks>, [usize; 3]) {
    let readers = distinct_names(dirs.iter().flat_map(|d| sorted_dir(d)));
    let mut cases: Vec<(PathBuf, String)> = Vec::new();
    for d in dirs {
        let names = distinct_names(sorted_dir(d).iter().flat_map(|r| sorted_dir(r)));
        cases.extend(names.into_iter().map(|n| (d.to_path_buf(), n)));
    }
    let mut dim = [0; 3];
    let per_reader = readers
        .iter()
        .map(|r| {
            cases
                .iter()
                .map(|(d, c)| {
                    let p = d.join(r).join(c);
                    p.is_file().then(|| {
                        let (l, d) = labels(&p);
                        dim = d;
                        l
                    })
                })
                .collect()
        })
        .collect();
    (readers, per_reader, dim)
}

fn close(got: &Value, want: f64) -> bool {
    got.as_f64().is_some_and(|g| (g - want).abs() <= 1e-12)
}

/// Each reader's cases stacked along z into one NIfTI file per reader, in `dir`.
fn write_stacked(
    dir: &Path,
    readers: &[String],
    masks: &[ReaderMasks],
    dim: [usize; 3],
) -> Vec<PathBuf> {
    std::fs::create_dir(dir).expect("mkdir");
    let mut cat_files = Vec::new();
    for (r, cases) in readers.iter().zip(masks) {
        let data: Vec<u8> = cases.iter().flatten().flatten().copied().collect();
        let img = nifti::NiftiImage::from_u8(
            [dim[0], dim[1], dim[2] * 3],
            [0.7, 0.7, 2.0],
            [
                [0.7, 0.0, 0.0, 0.0],
                [0.0, 0.7, 0.0, 0.0],
                [0.0, 0.0, 2.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            data,
        )
        .expect("valid image");
        let p = dir.join(format!("{r}.nii.gz"));
        nifti::write_file(&p, &img).expect("written");
        cat_files.push(p);
    }
    cat_files
}

#[test]
fn readers_dirs_pool_into_one_em_with_absent_readers_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    synth(&a, "2", "24x20x6", "a-", "5");
    synth(&b, "1", "24x20x6", "b-", "6");
    let (ra, rb) = (a.join("readers"), b.join("readers"));
    // `consensus METHOD` pooled over both readers dirs, with extra arguments.
    let pool = |method: &str, extra: &[&str]| {
        let mut args = vec!["consensus", method, "--readers-dir", s(&ra)];
        args.extend_from_slice(&["--readers-dir", s(&rb)]);
        args.extend_from_slice(extra);
        args.push("--json");
        run_json(&args)
    };

    // All readers present: the pool equals one STAPLE on the cases stacked along z.
    let pooled = pool("staple", &[]);
    let (readers, masks, dim) = stacked(&[&ra, &rb]);
    assert!(readers.len() >= 2);
    assert_eq!(pooled["cases"], 3);
    let names: Vec<&str> = pooled["raters"]
        .as_array()
        .expect("raters")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, readers);
    let cat_files = write_stacked(&tmp.path().join("cat"), &readers, &masks, dim);
    let mut args = vec!["consensus", "staple"];
    args.extend(cat_files.iter().map(|p| s(p)));
    args.push("--json");
    let whole = run_json(&args);
    for key in [
        "prior",
        "sensitivity",
        "specificity",
        "iterations",
        "voxels_ge_half",
        "probability_sum",
    ] {
        assert_eq!(pooled[key], whole[key], "{key}");
    }
    args[1] = "multilabel";
    let whole_ml = run_json(&args);
    let pooled_ml = pool("multilabel", &[]);
    for key in [
        "labels",
        "priors",
        "confusion",
        "iterations",
        "label_counts",
    ] {
        assert_eq!(pooled_ml[key], whole_ml[key], "{key}");
    }

    // --out writes one probability map per case on the case's grid.
    let out_dir = tmp.path().join("maps");
    pool("staple", &["--out", s(&out_dir)]);
    let maps = sorted_dir(&out_dir);
    assert_eq!(maps.len(), 3);
    let img = nifti::read_file(&maps[0], &NiftiLimits::default()).expect("map");
    assert_eq!(img.dim, dim);
    let VoxelData::F32(p) = img.data else {
        panic!("float32 map expected")
    };
    assert!(p.iter().all(|w| (0.0..=1.0).contains(w)));
    assert!(p.iter().any(|&w| w > 0.5));

    // A reader without a mask for a case is a missing decision for binary STAPLE...
    let gone = ra.join(&readers[0]).join("a-0001.nii.gz");
    assert!(gone.is_file(), "synth names its cases <prefix>0001…");
    std::fs::remove_file(&gone).expect("removed");
    let partial = pool("staple", &[]);
    let (_, masks, _) = stacked(&[&ra, &rb]);
    let filled: Vec<Vec<u8>> = masks
        .iter()
        .map(|cases| {
            cases
                .iter()
                .flat_map(|c| c.clone().unwrap_or_else(|| vec![255; dim.iter().product()]))
                .collect()
        })
        .collect();
    let refs: Vec<&[u8]> = filled.iter().map(Vec::as_slice).collect();
    let hist = PatternHistogram::from_raters(&refs, 1, Some(255)).expect("histogram");
    let want = staple(&hist, &StapleOptions::default()).expect("staple");
    assert_eq!(partial["iterations"], want.iterations);
    assert_eq!(partial["voxels_ge_half"], want.voxels_ge_half);
    assert!(close(&partial["prior"], want.params.prior));
    for (i, (p, q)) in want
        .params
        .sensitivity
        .iter()
        .zip(&want.params.specificity)
        .enumerate()
    {
        assert!(close(&partial["sensitivity"][i], *p), "sensitivity {i}");
        assert!(close(&partial["specificity"][i], *q), "specificity {i}");
    }
    assert_ne!(partial["sensitivity"], pooled["sensitivity"]);

    // ...while multi-label STAPLE refuses, naming the reader and the case.
    let err = run_err(
        &["consensus", "multilabel", "--readers-dir", s(&ra), "--json"],
        1,
    );
    assert!(err.contains(&readers[0]) && err.contains("a-0001"), "{err}");
}

#[test]
fn bad_inputs_give_clear_errors_and_exit_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    synth(&a, "1", "24x20x6", "c-", "1");
    synth(&b, "1", "20x20x6", "c-", "1");
    let mask = |d: &Path| {
        let r = sorted_dir(&d.join("readers"));
        sorted_dir(&r[0]).remove(0)
    };
    let (ma, mb) = (mask(&a), mask(&b));

    let err = run_err(&["metrics", "seg", s(&ma), s(&mb), "--json"], 1);
    assert!(err.contains("is not on the grid of"), "{err}");
    let err = run_err(&["consensus", "staple", s(&ma), s(&mb)], 1);
    assert!(err.contains("20x20x6 voxels where 24x20x6"), "{err}");

    let not_nifti = tmp.path().join("x.nii.gz");
    std::fs::write(&not_nifti, b"definitely not a NIfTI file").expect("written");
    run_err(&["metrics", "seg", s(&ma), s(&not_nifti)], 1);

    // Usage errors: exit code 2.
    run_err(&["consensus", "staple", s(&ma), "--readers-dir", s(&a)], 2);
    run_err(&["consensus", "staple", "--json"], 2);
    run_err(
        &["metrics", "seg", s(&ma), s(&ma), "--tolerance-mm", "-1"],
        2,
    );
    run_err(&["consensus", "staple", s(&ma), "--foreground", "1.5"], 2);
    run_err(&["metrics", "seg", s(&ma), s(&ma), "--definition", "hd"], 2);

    let csv = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).expect("written");
        p
    };
    let header = csv("h.csv", "unit;rater;value\nu1;a;1\n");
    let err = run_err(&["metrics", "agreement", s(&header)], 1);
    assert!(
        err.contains("header must name the columns unit,rater,value"),
        "{err}"
    );
    let short = csv("s.csv", "unit,rater,value\nu1,a,1\nu1,b\n");
    let err = run_err(&["metrics", "agreement", s(&short)], 1);
    assert!(
        err.contains("line 3: 2 fields where the header has 3"),
        "{err}"
    );
    let ok = csv(
        "ok.csv",
        "unit,rater,value\nu1,a,1\nu1,b,2\nu2,a,2\nu2,b,2\n",
    );
    let err = run_err(&["consensus", "labels", s(&ok), "--categories", "1,3"], 1);
    assert!(
        err.contains("line 3: value \"2\" is not one of the categories (1,3)"),
        "{err}"
    );
    let dup = csv("d.csv", "unit,rater,value\nu1,a,1\nu1,a,2\n");
    let err = run_err(&["metrics", "agreement", s(&dup)], 1);
    assert!(err.contains("already rated"), "{err}");
    run_err(&["metrics", "agreement", s(&ok), "--categories", "1,1"], 2);

    // Majority vote: a tie is undecided (null), and the EM-only keys are null.
    let m = run_json(&[
        "consensus",
        "labels",
        s(&ok),
        "--method",
        "majority",
        "--json",
    ]);
    assert_eq!(m["labels"]["u1"], Value::Null);
    assert_eq!(m["labels"]["u2"], "2");
    assert_eq!(m["iterations"], Value::Null);
    // Non-numeric categories: interval and ratio alpha are null.
    let words = csv(
        "w.csv",
        "unit,rater,value\nu1,a,yes\nu1,b,no\nu2,a,no\nu2,b,no\n",
    );
    let ag = run_json(&["metrics", "agreement", s(&words), "--json"]);
    assert_eq!(ag["krippendorff_alpha"]["interval"], Value::Null);
    assert!(ag["krippendorff_alpha"]["nominal"].is_number());
}
