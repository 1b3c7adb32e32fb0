//! Report tests: realistic segmentation and classification reports render in all three forms;
//! the HTML is self-contained and escapes hostile names; missing and non-finite numbers show as
//! "—" and survive the JSON round trip; bars are drawn to scale; empty reports do not panic.

use serde_json::json;

use super::*;
use crate::annotations::readers::ReaderKind;

const HOSTILE: &str = r#"<script>alert(1)</script>&"'"#;

fn site(name: &str, status: &str, reason: Option<&str>) -> SiteSummary {
    SiteSummary {
        site: name.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        rounds: 14,
        bytes_sent: 3_481_112,
        bytes_received: 912_330,
        messages: 58,
    }
}

fn reader(name: &str, kind: ReaderKind, sens: f64, spec: f64, dice: f64) -> ReaderPerformance {
    ReaderPerformance {
        reader: name.into(),
        kind,
        cases: 120,
        sensitivity: Some(sens),
        specificity: Some(spec),
        dice_pooled: Some(dice),
        dice_mean: Some(dice - 0.02),
        dice_sd: Some(0.061),
        dice_histogram: Some(Histogram {
            edges: (0..=10).map(|i| f64::from(i) / 10.0).collect(),
            counts: vec![0, 0, 0, 1, 2, 4, 9, 21, 48, 35],
        }),
        hd95_histogram: Some(Histogram {
            edges: vec![0.0, 1.0, 2.0, 5.0, 10.0, f64::INFINITY],
            counts: vec![31, 44, 30, 11, 4],
        }),
        accuracy: None,
        confusion: None,
    }
}

fn segmentation() -> ReaderStudyReport {
    ReaderStudyReport {
        study: "LIDC-fed-07".into(),
        title: "Lung nodule segmentation, three-site pilot".into(),
        task: TaskKind::Segmentation,
        generated_at: 1_735_732_800,
        coordinator: "site-charite".into(),
        sites: vec![
            site("site-charite", "contributed", None),
            site("site-karolinska", "contributed", None),
            site("site-amc", "dropped", Some("timed out in round 9")),
        ],
        consensus: ConsensusSummary {
            method: Method::Staple,
            protocol: Protocol::Iterative,
            secure_rounds: 28,
            iterations: 14,
            converged: true,
            restarts: 1,
            dropped: vec!["site-amc".into()],
            cases: 120,
            units: 48_234_112,
            parameters: json!({"prior": 0.0132, "sensitivity": {"R1": 0.91}}),
        },
        readers: vec![
            reader("R1", ReaderKind::Panel, 0.9134, 0.9991, 0.8712),
            reader("R2", ReaderKind::Panel, 0.8821, 0.9993, 0.8459),
            reader("nnU-Net v2", ReaderKind::Model, 0.9012, 0.9987, 0.5),
        ],
        agreement: Some(Agreement {
            categories: vec!["background".into(), "nodule".into()],
            units: 48_234_112,
            percent: Some(0.9978),
            fleiss: Some(0.8123),
            krippendorff: Some(0.8125),
            krippendorff_level: "nominal".into(),
            cohen: vec![
                CohenPair {
                    a: "R1".into(),
                    b: "R2".into(),
                    units: 48_234_112,
                    kappa: Some(0.83),
                    weights: "none".into(),
                },
                CohenPair {
                    a: "R1".into(),
                    b: "nnU-Net v2".into(),
                    units: 48_234_112,
                    kappa: Some(0.79),
                    weights: "none".into(),
                },
            ],
        }),
        privacy: PrivacySummary {
            min_sites: 2,
            min_cases: 20,
            aggregation: "SA-v1 pairwise masking over Z_2^128".into(),
            released: vec![
                "STAPLE sufficient statistics per round".into(),
                "Dice histograms (10 bins)".into(),
            ],
            notes: vec!["site-amc dropped; its masks were reconstructed by the survivors".into()],
        },
        audit: vec![AuditRef {
            site: "site-charite".into(),
            size: 4112,
            root: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            witnesses: vec!["site-b".into(), "site-c".into()],
        }],
    }
}

fn classification() -> ReaderStudyReport {
    let mut r = segmentation();
    r.task = TaskKind::Classification;
    r.consensus.method = Method::DawidSkene;
    r.consensus.units = 120;
    r.agreement.as_mut().unwrap().categories =
        vec!["BI-RADS 1".into(), "BI-RADS 2".into(), "BI-RADS 4".into()];
    for (k, p) in r.readers.iter_mut().enumerate() {
        p.dice_pooled = None;
        p.dice_mean = None;
        p.dice_sd = None;
        p.dice_histogram = None;
        p.hd95_histogram = None;
        p.accuracy = Some(0.8 + 0.05 * k as f64);
        p.confusion = Some(vec![
            vec![0.9, 0.1, 0.0],
            vec![0.15, 0.8, 0.05],
            vec![0.0, 0.25, 0.75],
        ]);
    }
    r
}

fn empty() -> ReaderStudyReport {
    let mut r = segmentation();
    r.sites.clear();
    r.readers.clear();
    r.agreement = None;
    r.audit.clear();
    r.consensus.parameters = serde_json::Value::Null;
    r.privacy.released.clear();
    r.privacy.notes.clear();
    r
}

/// The lines of the text table under `heading`, header included, up to the blank line.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

fn assert_self_contained(html: &str) {
    for bad in ["http://", "https://", "src=", "<script", "url("] {
        assert!(!html.contains(bad), "HTML contains {bad:?}");
    }
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
}

#[test]
fn segmentation_report_renders() {
    let r = segmentation();
    let text = render_text(&r);
    assert!(text.contains("consensus: staple (iterative), 14 iterations, converged, 28 secure rounds, restarts: 1, dropped: site-amc"));
    assert!(
        text.contains("0.8712") && text.contains("0.8512 ± 0.0610"),
        "{text}"
    );
    assert!(text.contains("timed out in round 9") && text.contains("2025-01-01T12:00:00Z"));
    let html = render_html(&r);
    assert_self_contained(&html);
    assert_eq!(
        html.matches(r#"<rect class="bar""#).count(),
        9,
        "three bars per reader"
    );
    assert_eq!(html.matches("Dice histogram of").count(), 3);
    assert_eq!(html.matches("HD95 histogram of").count(), 3);
    assert!(html.contains("[10, ∞): 4"), "open last HD95 bin");
    assert!(html.contains("Pairwise Cohen&#39;s kappa") && html.contains(">0.83<"));
    assert!(html.contains("SA-v1 pairwise masking over Z_2^128") && html.contains("<title>"));
}

#[test]
fn classification_report_renders() {
    let r = classification();
    let text = render_text(&r);
    let readers = section(&text, "Readers");
    assert!(
        readers[0].contains("accuracy") && !readers[0].contains("Dice"),
        "{text}"
    );
    assert!(
        readers[3].contains("0.9000"),
        "accuracy of the third reader: {text}"
    );
    let html = render_html(&r);
    assert_self_contained(&html);
    assert_eq!(html.matches("<title>Confusion matrix of").count(), 3);
    assert!(html.contains("BI-RADS 4 / BI-RADS 4: 0.7500"));
    assert!(
        html.contains(">0.75</text>"),
        "values are written in the cells"
    );
    assert!(!html.contains("Dice histogram of"));
}

#[test]
fn hostile_reader_name_is_escaped_everywhere() {
    let mut r = classification();
    r.readers[0].reader = HOSTILE.into();
    r.agreement.as_mut().unwrap().cohen[0].a = HOSTILE.into();
    r.sites[0].reason = Some(HOSTILE.into());
    r.study = HOSTILE.into();
    let mut seg = segmentation();
    seg.readers[0].reader = HOSTILE.into();
    for r in [r, seg] {
        let html = render_html(&r);
        assert_self_contained(&html);
        assert!(!html.contains("alert(1)</"), "raw name leaked");
        assert!(!html.contains(r#"&"'"#));
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;";
        // Labels may be shortened, but every occurrence starts escaped.
        let prefixed = html.matches("&lt;script&gt;alert(1)").count();
        assert_eq!(html.matches("alert(1)").count(), prefixed);
        assert!(html.contains(escaped));
    }
    let mut r = segmentation();
    r.readers[0].reader = "R1\x1b[2J\nfake row".into();
    let text = render_text(&r);
    assert!(!text.contains('\x1b') && !text.contains("\nfake row"));
}

#[test]
fn missing_and_non_finite_values() {
    let mut r = segmentation();
    let p = &mut r.readers[1];
    (p.sensitivity, p.specificity, p.dice_pooled, p.dice_mean) = (
        Some(f64::NAN),
        Some(f64::INFINITY),
        None,
        Some(f64::NEG_INFINITY),
    );
    r.agreement.as_mut().unwrap().fleiss = Some(f64::NAN);
    let text = render_text(&r);
    let row = section(&text, "Readers")[2];
    assert!(row.starts_with("  R2 "), "{row}");
    assert_eq!(row.matches('—').count(), 4, "{row}");
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    assert!(text.contains("Fleiss κ —"));

    let html = render_html(&r);
    assert!(!html.contains("NaN") && !html.contains("inf<"));
    assert!(html.contains(r#"<td class="num">—</td><td class="num">—</td><td class="num">—</td><td class="num">—</td>"#));
    assert!(html.contains("R2: sensitivity not available"));
    assert!(html.contains("<dt>Fleiss κ</dt><dd>—</dd>"));

    let j = to_json(&r);
    assert_eq!(j["readers"][1]["sensitivity"], "NaN");
    assert_eq!(j["readers"][1]["specificity"], "Infinity");
    assert_eq!(j["readers"][1]["dice_mean"], "-Infinity");
    assert_eq!(j["readers"][1]["dice_pooled"], serde_json::Value::Null);
    assert_eq!(j["readers"][0]["hd95_histogram"]["edges"][5], "Infinity");
    assert_eq!(j["readers"][0]["hd95_histogram"]["edges"][4], 10.0);
    assert_eq!(j["agreement"]["fleiss"], "NaN");
    assert_eq!(j["agreement"]["percent"], 0.9978);
}

#[test]
fn json_round_trips_when_finite() {
    let mut seg = segmentation();
    for p in &mut seg.readers {
        *p.hd95_histogram.as_mut().unwrap().edges.last_mut().unwrap() = 1e3;
    }
    seg.readers[2].specificity = None;
    for r in [seg, classification(), empty()] {
        let back: ReaderStudyReport = serde_json::from_value(to_json(&r)).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn json_round_trips_with_non_finite_values() {
    let mut r = segmentation();
    let p = &mut r.readers[1];
    (p.sensitivity, p.specificity, p.dice_mean) =
        (Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY));
    r.agreement.as_mut().unwrap().fleiss = Some(f64::NAN);
    let mut c = classification();
    c.readers[0].confusion.as_mut().unwrap()[0][0] = f64::NAN;
    for r in [r, c] {
        let text = serde_json::to_string(&to_json(&r)).unwrap();
        let back: ReaderStudyReport = serde_json::from_str(&text).unwrap();
        // NaN != NaN: compare the JSON (and the renderings) instead.
        assert_eq!(to_json(&back), to_json(&r));
        assert_eq!(render_text(&back), render_text(&r));
        assert_eq!(render_html(&back), render_html(&r));
    }
    let mut j = to_json(&segmentation());
    j["readers"][0]["sensitivity"] = "big".into();
    let e = serde_json::from_value::<ReaderStudyReport>(j)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"big\""), "{e}");
}

#[test]
fn bars_are_proportional() {
    let html = render_html(&segmentation());
    let bar = html
        .split("<rect ")
        .find(|s| s.contains("<title>nnU-Net v2: Dice (pooled) 0.5000</title>"))
        .expect("the model's Dice bar");
    let attr = |name: &str| -> f64 {
        let rest = &bar[bar.find(&format!(" {name}=\"")).unwrap() + name.len() + 3..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    assert!((attr("height") - svg::PLOT_H / 2.0).abs() < 1e-9, "{bar}");
    let baseline = attr("y") + attr("height");
    let r1 = html
        .split("<rect ")
        .find(|s| s.contains("<title>R1: sensitivity 0.9134"))
        .unwrap();
    let h1: f64 = r1
        .split("height=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((h1 - 0.9134 * svg::PLOT_H).abs() < 0.01);
    assert!(bar.contains(&format!("y=\"{:.2}\"", baseline - svg::PLOT_H / 2.0)));
}

#[test]
fn text_has_one_row_per_reader_and_aligned_columns() {
    for r in [segmentation(), classification()] {
        let text = render_text(&r);
        let rows = section(&text, "Readers");
        assert_eq!(rows.len(), 1 + r.readers.len(), "{text}");
        // Right-aligned numeric columns end at the same character position.
        let end = |l: &str| l.chars().count();
        assert!(rows.iter().all(|l| end(l) == end(rows[0])), "{text}");
        assert_eq!(section(&text, "Sites").len(), 1 + r.sites.len());
    }
}

#[test]
fn empty_and_malformed_reports_render() {
    let r = empty();
    let text = render_text(&r);
    assert_eq!(section(&text, "Readers"), ["  (none)"]);
    assert!(text.contains("not computed"));
    let html = render_html(&r);
    assert_self_contained(&html);
    assert!(!html.contains("<svg") && html.contains("Agreement was not computed"));
    assert_eq!(to_json(&r)["agreement"], serde_json::Value::Null);

    let mut r = segmentation();
    r.readers[0].dice_histogram = Some(Histogram {
        edges: vec![0.0],
        counts: vec![3, 4],
    });
    r.readers[1].hd95_histogram = Some(Histogram {
        edges: vec![],
        counts: vec![],
    });
    r.readers[2].confusion = Some(vec![vec![1.0], vec![0.5, 0.5, f64::NAN], vec![]]);
    r.generated_at = u64::MAX;
    let html = render_html(&r);
    assert!(html.contains("histogram not available"));
    assert!(render_text(&r).contains("9999-12-31"));
}
