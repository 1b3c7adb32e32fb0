//! Reference cases for the offline QA commands (README.md, "Offline QA commands";
//! tests/data/oracle/README.md): every check of every `tests/data/oracle/<case>/expected.json` is
//! run through the real `fedanno` binary, from the case directory, and its JSON output is compared
//! with the reference values under the path and tolerance rules of `tests/data/oracle/README.md`.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/oracle")
}

/// Splits a PATH on dots that are not inside brackets.
fn segments(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in path.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// A JSON scalar as the string the README compares ids with.
fn as_id(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Resolves one PATH segment: `key`, `0`, `name[3]` or `name[field=a,b]`.
fn step<'a>(cur: &'a Value, seg: &str) -> Option<&'a Value> {
    if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
        return cur.as_array()?.get(seg.parse::<usize>().ok()?);
    }
    let Some(open) = seg.find('[') else {
        return cur.get(seg);
    };
    let name = &seg[..open];
    let inner = seg[open + 1..].strip_suffix(']')?;
    let list = cur.get(name)?.as_array()?;
    match inner.split_once('=') {
        None => list.get(inner.parse::<usize>().ok()?),
        Some((field, wanted)) => {
            let mut want: Vec<&str> = wanted.split(',').collect();
            want.sort_unstable();
            list.iter().find(|e| {
                let Some(got) = e.get(field).and_then(Value::as_array) else {
                    return false;
                };
                let mut got: Vec<String> = got.iter().map(as_id).collect();
                got.sort_unstable();
                got == want
            })
        }
    }
}

fn resolve<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path).into_iter().try_fold(v, step)
}

/// The tolerance of a leaf: the longest `tol` path that is the leaf's path or a prefix of it
/// at a segment boundary; 0 (exact) without one.
fn tolerance(tols: &Map<String, Value>, leaf: &str) -> f64 {
    tols.iter()
        .filter(|(t, _)| {
            leaf == t.as_str()
                || leaf
                    .strip_prefix(t.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .max_by_key(|(t, _)| t.len())
        .and_then(|(_, v)| v.as_f64())
        .unwrap_or(0.0)
}

fn compare(
    exp: &Value,
    got: &Value,
    path: &str,
    tols: &Map<String, Value>,
    errs: &mut Vec<String>,
) {
    match (exp, got) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let tol = tolerance(tols, path);
            let diff = (a - b).abs();
            if diff.is_nan() || diff > tol {
                errs.push(format!("{path}: expected {a}, got {b} (tol {tol})"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                errs.push(format!(
                    "{path}: length {} expected, got {}",
                    a.len(),
                    b.len()
                ));
                return;
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(x, y, &format!("{path}.{i}"), tols, errs);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a {
                match b.get(k) {
                    Some(y) => compare(x, y, &format!("{path}.{k}"), tols, errs),
                    None => errs.push(format!("{path}.{k}: missing")),
                }
            }
        }
        _ if exp == got => {}
        _ => errs.push(format!("{path}: expected {exp}, got {got}")),
    }
}

/// Runs one check; returns its failures.
fn run_check(dir: &Path, check: &Value) -> Vec<String> {
    let Some(cmd) = check["cmd"].as_array() else {
        return vec!["check without cmd".into()];
    };
    let args: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
    let out = common::bin().args(&args).current_dir(dir).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return vec![format!("cannot run fedanno: {e}")],
    };
    if !out.status.success() {
        return vec![format!(
            "exit status {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )];
    }
    let got: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => return vec![format!("stdout is not one JSON object: {e}")],
    };
    let tols = check["tol"].as_object().cloned().unwrap_or_default();
    let mut errs = Vec::new();
    let Some(expect) = check["expect"].as_object() else {
        return vec!["check without expect".into()];
    };
    for (path, exp) in expect {
        match resolve(&got, path) {
            Some(g) => compare(exp, g, path, &tols, &mut errs),
            None => errs.push(format!("{path}: not in the output")),
        }
    }
    errs
}

#[test]
fn every_oracle_check_passes_through_the_binary() {
    let root = oracle_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/data/oracle exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 12, "the twelve oracle cases are present");
    let (mut passed, mut failures) = (0usize, Vec::new());
    for dir in &cases {
        let text = std::fs::read_to_string(dir.join("expected.json")).expect("readable");
        let expected: Value = serde_json::from_str(&text).expect("valid JSON");
        let checks = expected["checks"].as_array().expect("a checks list");
        assert!(!checks.is_empty());
        for check in checks {
            let errs = run_check(dir, check);
            if errs.is_empty() {
                passed += 1;
            } else {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                failures.push(format!(
                    "{name}: {}\n    {}",
                    check["cmd"],
                    errs.join("\n    ")
                ));
            }
        }
    }
    println!("oracle: {passed} checks passed, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
    assert_eq!(passed, 75);
}

#[test]
fn tolerance_picks_the_most_specific_path() {
    let tols: Map<String, Value> = serde_json::from_str(
        r#"{"confusion": 1e-6, "confusion.0.1": 0.5, "cohen_pairwise[raters=0,1]": 1e-9}"#,
    )
    .expect("valid");
    assert_eq!(tolerance(&tols, "confusion.0.1.2"), 0.5);
    assert_eq!(tolerance(&tols, "confusion.0.2"), 1e-6);
    assert_eq!(tolerance(&tols, "confusionx"), 0.0);
    assert_eq!(tolerance(&tols, "cohen_pairwise[raters=0,1].kappa"), 1e-9);
    let v: Value = serde_json::from_str(
        r#"{"cohen_pairwise": [{"raters": ["1", "0"], "kappa": 0.4}], "a": [[1, 2]]}"#,
    )
    .expect("valid");
    assert_eq!(
        resolve(&v, "cohen_pairwise[raters=0,1].kappa"),
        Some(&Value::from(0.4))
    );
    assert_eq!(resolve(&v, "a.0.1"), Some(&Value::from(2)));
    assert_eq!(resolve(&v, "a[0].1"), Some(&Value::from(2)));
}
