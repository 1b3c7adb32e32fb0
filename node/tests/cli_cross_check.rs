//! The auditor's path through the binary: `fedanno demo` runs two reader studies between three
//! sites (every site's log co-signed by the others after each study); each site's
//! `audit export --format bundle`; `audit cross-check` finds every message matched and exits 0,
//! and exits 1 naming the site whose bundle was altered.

mod common;

use common::{bin, json_of, run_to_end, s};

fn cross_check(
    info: &std::path::Path,
    bundles: &[std::path::PathBuf],
    html: &std::path::Path,
) -> std::process::Output {
    let mut c = bin();
    c.args(["audit", "cross-check", "--json", "--consortium", s(info)]);
    c.args(["--html", s(html)]);
    c.args(bundles.iter().map(|b| s(b)));
    run_to_end(c, 120)
}

#[test]
fn the_demo_logs_cross_check_clean_and_an_altered_bundle_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let mut c = bin();
    c.args(["demo", "-q", "--out", s(&out)]);
    let done = run_to_end(c, 300);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mut bundles = Vec::new();
    for site in ["site-a", "site-b", "site-c"] {
        let b = tmp.path().join(format!("{site}.json"));
        let mut c = bin();
        c.args(["--dir", s(&out.join("sites").join(site))]);
        c.args(["audit", "export", "--format", "bundle", "--out", s(&b)]);
        assert!(run_to_end(c, 60).status.success());
        bundles.push(b);
    }
    let info = out.join("consortium").join("consortium.info");
    let page = tmp.path().join("verdict.html");
    let ok = cross_check(&info, &bundles, &page);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let r = json_of(&ok);
    assert_eq!(r["consistent"], true);
    assert!(r["matched_messages"].as_u64().unwrap() > 100, "{r}");
    for site in r["sites"].as_array().unwrap() {
        assert_eq!(site["verified"], true, "{site}");
        assert_eq!(site["witnesses"].as_array().unwrap().len(), 2, "{site}");
    }
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Verdict: <b>CONSISTENT</b>") && html.contains("<td>site-c</td>"));

    // One byte of one entry of site-b's bundle changed: its log no longer verifies.
    let text = std::fs::read_to_string(&bundles[1]).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = v["entries"][3]["body"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &body[..body.len() - 1],
        if body.ends_with('0') { '1' } else { '0' }
    );
    v["entries"][3]["body"] = serde_json::Value::String(flipped);
    std::fs::write(&bundles[1], v.to_string()).unwrap();
    let bad = cross_check(&info, &bundles, &page);
    assert_eq!(bad.status.code(), Some(1));
    let r = json_of(&bad);
    assert_eq!(r["consistent"], false);
    let b = &r["sites"][1];
    assert_eq!(
        (b["site"].as_str(), b["verified"].as_bool()),
        (Some("site-b"), Some(false)),
        "{r}"
    );
}

/// A demo of fewer cases per site than its studies release from is a usage error at once,
/// naming the minimum, with nothing set up.
#[test]
fn a_demo_below_the_studies_minimum_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let args = ["demo", "--cases", "5", "--out", s(&out)];
    let err = common::run_err(&args, 2);
    assert!(err.contains("--cases 5 is below the 10 cases"), "{err}");
    assert!(!out.exists());
}
