//! The report as one self-contained HTML5 page: inline CSS and SVG, no scripts, no external
//! assets (a Content-Security-Policy forbids loading anything), escaped throughout.

use std::fmt::Write as _;

use super::svg::{bar_chart, heatmap, histogram};
use super::{
    Col, ReaderStudyReport, Table, audit_table, cohen_table, consensus_state, fmt_time, fmt4,
    readers_table, sites_table, unit_name,
};

const CSS: &str = "
:root{--ink:#222;--muted:#5f6b76;--rule:#d9dee3;--accent:#1f4e79;--band:#f4f6f8}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px;color:var(--accent)}
h2{font-size:17px;margin:32px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--accent)}
h3{font-size:14px;margin:18px 0 6px}
.sub,.note,figcaption{color:var(--muted)}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 18px;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid var(--rule);text-align:left;vertical-align:top}
thead th{background:var(--band);font-weight:600}
td.num,th.num{text-align:right}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.badge{display:inline-block;padding:0 8px;border-radius:9px;font-size:12px;background:var(--band)}
.badge.contributed{background:#dcebdc}.badge.declined,.badge.dropped{background:#f4dcd6}.badge.silent{background:#eee5cf}
.grid{display:flex;flex-wrap:wrap;gap:8px 18px}
figure{margin:8px 0 16px}svg.chart{max-width:100%;height:auto;font-family:inherit}
pre{background:var(--band);padding:10px;overflow:auto;font-size:12px}
.warn{color:#9a3b1b;font-weight:600}
@media print{main{max-width:none;padding:0}h2{break-after:avoid}figure,table,svg{break-inside:avoid}
details>*{display:block}}
";

/// The report as a self-contained HTML page.
pub fn render_html(r: &ReaderStudyReport) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} — study {}</title><style>{CSS}</style></head>
<body><main>
<header><h1>{}</h1><p class="sub">Study <b>{}</b> · {} · generated {} by {}</p></header>
"#,
        esc(&r.title),
        esc(&r.study),
        esc(&r.title),
        esc(&r.study),
        esc(r.task.as_str()),
        fmt_time(r.generated_at),
        esc(&r.coordinator)
    );
    summary(&mut h, r);
    h.push_str(r#"<section id="sites"><h2>Sites</h2>"#);
    table(&mut h, &sites_table(r));
    h.push_str("</section>\n");
    readers(&mut h, r);
    agreement(&mut h, r);
    privacy(&mut h, r);
    h.push_str("\n<section id=\"audit\"><h2>Audit checkpoints</h2>");
    table(&mut h, &audit_table(r));
    h.push_str("</section>\n</main></body></html>\n");
    h
}

/// The consensus at a glance, and its parameters on demand.
fn summary(h: &mut String, r: &ReaderStudyReport) {
    let c = &r.consensus;
    h.push_str(r#"<section id="summary"><h2>Summary</h2><dl class="facts">"#);
    let contributed = r.sites.iter().filter(|s| s.status == "contributed").count();
    let unit = unit_name(r);
    for (k, v) in [
        (
            "Consensus",
            format!("{} ({})", c.method.as_str(), c.protocol.as_str()),
        ),
        (
            "Sites",
            format!("{contributed} of {} contributed", r.sites.len()),
        ),
        ("Iterations", c.iterations.to_string()),
        ("Readers", r.readers.len().to_string()),
        ("Secure rounds", c.secure_rounds.to_string()),
        ("Cases", c.cases.to_string()),
        ("Restarts", c.restarts.to_string()),
        ("Units", format!("{} {unit}", c.units)),
        (
            "State",
            esc(&consensus_state(c)).replace(
                "NOT converged",
                r#"<span class="warn">not converged</span>"#,
            ),
        ),
    ] {
        let _ = write!(h, "<dt>{k}</dt><dd>{v}</dd>");
    }
    h.push_str("</dl>");
    if !c.parameters.is_null() {
        let params = serde_json::to_string_pretty(&c.parameters).unwrap_or_default();
        let _ = write!(
            h,
            "<details><summary>Consensus parameters</summary><pre>{}</pre></details>",
            esc(&params)
        );
    }
    h.push_str("</section>\n");
}

/// Thresholds, protocol, what was released, and the notes.
fn privacy(h: &mut String, r: &ReaderStudyReport) {
    let p = &r.privacy;
    let _ = write!(
        h,
        r#"<section id="privacy"><h2>Privacy and protocol</h2><dl class="facts"><dt>Aggregation</dt><dd>{}</dd><dt>Protocol</dt><dd>{} · {} secure rounds</dd><dt>Minimum sites</dt><dd>{}</dd><dt>Minimum cases</dt><dd>{}</dd></dl><h3>Released statistics</h3>{}"#,
        esc(&p.aggregation),
        r.consensus.protocol.as_str(),
        r.consensus.secure_rounds,
        p.min_sites,
        p.min_cases,
        list(&p.released),
    );
    if !p.notes.is_empty() {
        let _ = write!(h, "<h3>Notes</h3>{}", list(&p.notes));
    }
    h.push_str(r#"<p class="note">Only aggregates are released; no per-case data appears in this report.</p></section>"#);
}

/// Reader performance: table, grouped bars, Dice/HD95 small multiples, confusion heat maps.
fn readers(h: &mut String, r: &ReaderStudyReport) {
    h.push_str(r#"<section id="readers"><h2>Reader performance</h2>"#);
    table(h, &readers_table(r));
    if !r.readers.is_empty() {
        reader_bars(h, r);
    }
    for (name, what) in [
        ("Dice distribution per reader", "Dice"),
        ("HD95 distribution per reader (mm)", "HD95"),
    ] {
        let charts: Vec<String> = r
            .readers
            .iter()
            .filter_map(|p| {
                let hist = if what == "Dice" {
                    &p.dice_histogram
                } else {
                    &p.hd95_histogram
                };
                let title = format!("{what} histogram of {} (cases per bin)", p.reader);
                hist.as_ref().map(|hist| histogram(&title, &p.reader, hist))
            })
            .collect();
        if !charts.is_empty() {
            let _ = write!(
                h,
                r#"<h3>{name}</h3><div class="grid">{}</div>"#,
                charts.concat()
            );
        }
    }
    confusion_maps(h, r);
    h.push_str("</section>\n");
}

/// Sensitivity, specificity and accuracy (classification) or Dice, grouped per reader.
fn reader_bars(h: &mut String, r: &ReaderStudyReport) {
    let cls = r.is_classification();
    let third = if cls { "accuracy" } else { "Dice (pooled)" };
    let bars: Vec<(&str, Vec<Option<f64>>)> = r
        .readers
        .iter()
        .map(|p| {
            let v = if cls { p.accuracy } else { p.dice_pooled };
            (p.reader.as_str(), vec![p.sensitivity, p.specificity, v])
        })
        .collect();
    let title = format!("Sensitivity, specificity and {third} per reader (0–1)");
    let _ = write!(
        h,
        "<figure>{}<figcaption>{}.</figcaption></figure>",
        bar_chart(&title, &["sensitivity", "specificity", third], &bars),
        esc(&title)
    );
}

/// One heat map per reader with a confusion matrix, labelled with the agreement's categories.
fn confusion_maps(h: &mut String, r: &ReaderStudyReport) {
    let cats = r
        .agreement
        .as_ref()
        .map(|a| a.categories.as_slice())
        .unwrap_or_default();
    let mut first = true;
    for p in &r.readers {
        let Some(m) = &p.confusion else { continue };
        if first {
            h.push_str("<h3>Confusion matrices (rows: consensus, columns: reader; row-normalised)</h3><div class=\"grid\">");
            first = false;
        }
        let n = m.iter().map(Vec::len).max().unwrap_or(0).max(m.len());
        let labels: Vec<String> = if cats.len() >= n {
            cats[..n].to_vec()
        } else {
            (0..n).map(|i| i.to_string()).collect()
        };
        let values: Vec<Vec<Option<f64>>> = m
            .iter()
            .map(|row| row.iter().map(|&x| Some(x)).collect())
            .collect();
        let title = format!("Confusion matrix of {}", p.reader);
        let _ = write!(
            h,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            heatmap(&title, &labels[..m.len()], &labels, &values, (0.0, 1.0)),
            esc(&p.reader)
        );
    }
    if !first {
        h.push_str("</div>");
    }
}

/// Agreement: the summary statistics, Cohen's pairs as a table and a pairwise heat map.
fn agreement(h: &mut String, r: &ReaderStudyReport) {
    h.push_str(r#"<section id="agreement"><h2>Inter-reader agreement</h2>"#);
    let Some(a) = &r.agreement else {
        h.push_str(r#"<p class="note">Agreement was not computed for this study.</p></section>"#);
        return;
    };
    let _ = write!(
        h,
        r#"<dl class="facts"><dt>Units</dt><dd>{}</dd><dt>Categories</dt><dd>{}</dd><dt>Percent agreement</dt><dd>{}</dd><dt>Fleiss κ</dt><dd>{}</dd><dt>Krippendorff α ({})</dt><dd>{}</dd></dl>"#,
        a.units,
        esc(&a.categories.join(", ")),
        fmt4(a.percent),
        fmt4(a.fleiss),
        esc(&a.krippendorff_level),
        fmt4(a.krippendorff),
    );
    if a.cohen.is_empty() {
        h.push_str("</section>\n");
        return;
    }
    table(h, &cohen_table(a));
    let mut names: Vec<String> = Vec::new();
    for p in &a.cohen {
        for n in [&p.a, &p.b] {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut m = vec![vec![None; names.len()]; names.len()];
    let at = |n: &String| names.iter().position(|x| x == n).unwrap_or(0);
    for p in &a.cohen {
        let (i, j) = (at(&p.a), at(&p.b));
        m[i][j] = p.kappa.or(Some(f64::NAN));
        m[j][i] = m[i][j];
    }
    let _ = writeln!(
        h,
        "<figure>{}<figcaption>Pairwise Cohen's κ (0 or below: lightest).</figcaption></figure></section>",
        heatmap(
            "Pairwise Cohen's kappa between readers",
            &names,
            &names,
            &m,
            (0.0, 1.0)
        )
    );
}

/// Appends a table with its caption; the first column heads its row. A table without rows
/// says "none".
fn table(h: &mut String, t: &Table) {
    let _ = write!(
        h,
        r#"<table><caption class="note">{}</caption><thead><tr>"#,
        esc(t.caption)
    );
    for (name, col) in &t.cols {
        let class = if *col == Col::Right {
            r#" class="num""#
        } else {
            ""
        };
        let _ = write!(h, r#"<th scope="col"{class}>{}</th>"#, esc(name));
    }
    h.push_str("</tr></thead><tbody>");
    if t.rows.is_empty() {
        let _ = write!(
            h,
            r#"<tr><td colspan="{}" class="note">none</td></tr>"#,
            t.cols.len()
        );
    }
    for row in &t.rows {
        h.push_str("<tr>");
        for (k, (cell, (_, col))) in row.iter().zip(&t.cols).enumerate() {
            let v = esc(cell);
            let _ = match col {
                _ if k == 0 => write!(h, r#"<th scope="row">{v}</th>"#),
                Col::Left => write!(h, "<td>{v}</td>"),
                Col::Right => write!(h, r#"<td class="num">{v}</td>"#),
                Col::Mono => write!(h, "<td><code>{v}</code></td>"),
                Col::Status => {
                    let badge = match cell.as_str() {
                        st @ ("contributed" | "declined" | "dropped" | "silent") => st,
                        _ => "other",
                    };
                    write!(h, r#"<td><span class="badge {badge}">{v}</span></td>"#)
                }
            };
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
}

/// An unordered list of escaped strings ("none" when empty).
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return r#"<p class="note">none</p>"#.to_owned();
    }
    let li: String = items
        .iter()
        .map(|s| format!("<li>{}</li>", esc(s)))
        .collect();
    format!("<ul>{li}</ul>")
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
