//! Inline SVG charts: grouped bars, histogram small multiples, heat maps. Every chart carries a
//! `<title>`, every mark a `<title>` with its value; all text goes through [`esc`].

use std::fmt::Write as _;

use super::html::esc;
use super::{Histogram, finite, fmt4};

/// Height of the bar chart's 0–1 axis in SVG units: a value v draws a bar `v * PLOT_H` high.
pub(super) const PLOT_H: f64 = 200.0;

/// Series colours: restrained, distinguishable in greyscale print.
pub(super) const SERIES: [&str; 3] = ["#1f4e79", "#6d9ec9", "#d08c3a"];

const TEXT: &str = r##"fill="#333" font-size="11""##;

/// A grouped bar chart on a 0–1 axis: one group per row, one bar per metric. Missing and
/// non-finite values draw no bar but a "—".
pub(super) fn bar_chart(
    title: &str,
    metrics: &[&str],
    rows: &[(&str, Vec<Option<f64>>)],
) -> String {
    let (top, bottom, bar, gap) = (34.0, 78.0, 14.0, 18.0);
    // Reader labels slant down to the left of their group: leave room for the longest.
    let longest = rows
        .iter()
        .map(|(n, _)| n.chars().count().min(18))
        .max()
        .unwrap_or(0);
    let left = (longest as f64 * 5.6 - 12.0).max(44.0);
    let group = bar * metrics.len() as f64 + gap;
    let width = (left + group * rows.len() as f64 + 16.0).max(400.0);
    let height = top + PLOT_H + bottom;
    let mut s = open(width, height, title);
    for i in 0..=4 {
        let v = f64::from(i) * 0.25;
        let y = top + PLOT_H * (1.0 - v);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="{}"/><text x="{}" y="{}" text-anchor="end" {TEXT}>{v:.2}</text>"##,
            width - 8.0,
            if i == 0 { "#555" } else { "#e3e3e3" },
            left - 6.0,
            y + 4.0,
        );
    }
    for (k, m) in metrics.iter().enumerate() {
        let x = left + 110.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="8" width="10" height="10" fill="{}"/><text x="{}" y="17" {TEXT}>{}</text>"#,
            SERIES[k % SERIES.len()],
            x + 14.0,
            esc(m)
        );
    }
    for (g, (name, values)) in rows.iter().enumerate() {
        let x0 = left + gap / 2.0 + group * g as f64;
        for (k, (m, v)) in metrics.iter().zip(values).enumerate() {
            let x = x0 + bar * k as f64;
            match finite(*v) {
                Some(v) => {
                    let h = PLOT_H * v.clamp(0.0, 1.0);
                    let _ = write!(
                        s,
                        r#"<rect class="bar" x="{x:.2}" y="{:.2}" width="{}" height="{h:.2}" fill="{}"><title>{}: {} {}</title></rect>"#,
                        top + PLOT_H - h,
                        bar - 2.0,
                        SERIES[k % SERIES.len()],
                        esc(name),
                        esc(m),
                        fmt4(Some(v))
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        r#"<text x="{:.2}" y="{:.2}" text-anchor="middle" {TEXT}>—<title>{}: {} not available</title></text>"#,
                        x + bar / 2.0 - 1.0,
                        top + PLOT_H - 3.0,
                        esc(name),
                        esc(m)
                    );
                }
            }
        }
        let (cx, cy) = (x0 + (group - gap) / 2.0, top + PLOT_H + 14.0);
        let _ = write!(
            s,
            r#"<text x="{cx:.2}" y="{cy}" transform="rotate(-30 {cx:.2} {cy})" text-anchor="end" {TEXT}>{}</text>"#,
            esc(&short(name, 18))
        );
    }
    s.push_str("</svg>");
    s
}

/// One histogram of a small-multiples grid. Bins are drawn at equal widths (the edges of HD95
/// bins are uneven and the last is open), labelled with their edges; bar heights are
/// proportional to counts. A malformed histogram renders as a note.
pub(super) fn histogram(title: &str, caption: &str, h: &Histogram) -> String {
    if !h.is_well_formed() {
        return format!(
            r#"<p class="note">{}: histogram not available</p>"#,
            esc(title)
        );
    }
    let (w, ph, left, top) = (180.0, 90.0, 34.0, 24.0);
    let n = h.counts.len();
    let max = h.counts.iter().copied().max().unwrap_or(0).max(1);
    let bw = w / n as f64;
    let mut s = open(left + w + 12.0, top + ph + 30.0, title);
    let _ = write!(
        s,
        r#"<text x="{left}" y="14" font-weight="600" {TEXT}>{}</text><text x="{}" y="{}" text-anchor="end" {TEXT}>{max}</text><text x="{}" y="{}" text-anchor="end" {TEXT}>0</text>"#,
        esc(&short(caption, 28)),
        left - 4.0,
        top + 4.0,
        left - 4.0,
        top + ph,
    );
    for (i, &c) in h.counts.iter().enumerate() {
        let bh = ph * c as f64 / max as f64;
        let _ = write!(
            s,
            r#"<rect class="bin" x="{:.2}" y="{:.2}" width="{:.2}" height="{bh:.2}" fill="{}"><title>[{}, {}): {c}</title></rect>"#,
            left + bw * i as f64 + 0.5,
            top + ph - bh,
            (bw - 1.0).max(0.5),
            SERIES[0],
            edge(h.edges[i]),
            edge(h.edges[i + 1]),
        );
    }
    let step = n.div_ceil(4).max(1);
    for i in (0..=n).filter(|i| i % step == 0 || *i == n) {
        let _ = write!(
            s,
            r#"<text x="{:.2}" y="{}" text-anchor="middle" {TEXT}>{}</text>"#,
            left + bw * i as f64,
            top + ph + 14.0,
            edge(h.edges[i])
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#555"/></svg>"##,
        top + ph,
        left + w
    );
    s
}

/// A heat map with the value written in each cell; colour runs from light (≤ `lo`) to dark
/// (≥ `hi`). Rows may be ragged; missing cells are blank, non-finite ones grey with "—".
pub(super) fn heatmap(
    title: &str,
    rows: &[String],
    cols: &[String],
    values: &[Vec<Option<f64>>],
    (lo, hi): (f64, f64),
) -> String {
    let (cell, left, top) = (46.0, 120.0, 90.0);
    let width = left + cell * cols.len() as f64 + 64.0;
    let height = top + cell * rows.len() as f64 + 12.0;
    let mut s = open(width, height, title);
    for (j, c) in cols.iter().enumerate() {
        let (x, y) = (left + cell * (j as f64 + 0.5), top - 6.0);
        let _ = write!(
            s,
            r#"<text x="{x}" y="{y}" transform="rotate(-40 {x} {y})" {TEXT}>{}</text>"#,
            esc(&short(c, 14))
        );
    }
    for (i, (r, row)) in rows.iter().zip(values).enumerate() {
        let y = top + cell * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" {TEXT}>{}</text>"#,
            left - 6.0,
            y + cell / 2.0 + 4.0,
            esc(&short(r, 18))
        );
        for (j, (c, v)) in cols.iter().zip(row).enumerate() {
            let x = left + cell * j as f64;
            let (fill, ink, label) = match finite(*v) {
                Some(v) => {
                    let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
                    (
                        shade(t),
                        if t > 0.55 { "#fff" } else { "#222" },
                        format!("{v:.2}"),
                    )
                }
                None => ("#ddd".to_owned(), "#222", "—".to_owned()),
            };
            let _ = write!(
                s,
                r##"<g><title>{} / {}: {}</title><rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff"/><text x="{}" y="{}" text-anchor="middle" fill="{ink}" font-size="11">{label}</text></g>"##,
                esc(r),
                esc(c),
                fmt4(*v),
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The opening tag with size, viewBox, an accessible role and the chart's `<title>`.
fn open(width: f64, height: f64, title: &str) -> String {
    format!(
        r#"<svg class="chart" role="img" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="inherit"><title>{}</title>"#,
        esc(title)
    )
}

/// Linear blend from #f2f6fa (t = 0) to #1f4e79 (t = 1).
fn shade(t: f64) -> String {
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(0xf2, 0x1f),
        mix(0xf6, 0x4e),
        mix(0xfa, 0x79)
    )
}

/// A histogram edge: "∞" for infinities, up to two decimals otherwise.
fn edge(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "−∞" }.to_owned();
    }
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// At most `n` characters, with an ellipsis when cut (the full text is in the `<title>`).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}
