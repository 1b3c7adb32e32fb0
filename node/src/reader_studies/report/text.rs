//! The terminal summary a coordinator reads.

use std::fmt::Write as _;

use super::{
    Col, ReaderStudyReport, Table, audit_table, cohen_table, consensus_state, fmt_time, fmt4,
    readers_table, sites_table, unit_name,
};

/// The report as aligned plain text. Control characters in report strings are replaced so that
/// a reader name cannot move the cursor, recolour the terminal or forge a table row.
pub fn render_text(r: &ReaderStudyReport) -> String {
    let c = &r.consensus;
    let mut out = String::new();
    let _ = writeln!(out, "Study {} — {}", clean(&r.study), clean(&r.title));
    let _ = writeln!(
        out,
        "task: {}   coordinator: {}",
        clean(r.task.as_str()),
        clean(&r.coordinator)
    );
    let _ = writeln!(out, "generated: {}", fmt_time(r.generated_at));
    let (method, protocol, state) = (c.method.as_str(), c.protocol.as_str(), consensus_state(c));
    let _ = writeln!(out, "consensus: {method} ({protocol}), {}", clean(&state));
    let _ = writeln!(
        out,
        "cases: {}   units: {} {}",
        c.cases,
        c.units,
        unit_name(r)
    );
    table(&mut out, "Sites", &sites_table(r));
    table(&mut out, "Readers", &readers_table(r));
    out.push_str("\nAgreement\n");
    match &r.agreement {
        None => out.push_str("  not computed\n"),
        Some(a) => {
            let categories = clean(&a.categories.join(", "));
            let _ = writeln!(out, "  {} units; categories: {categories}", a.units);
            let _ = writeln!(
                out,
                "  percent {}   Fleiss κ {}   Krippendorff α ({}) {}",
                fmt4(a.percent),
                fmt4(a.fleiss),
                clean(&a.krippendorff_level),
                fmt4(a.krippendorff)
            );
            if !a.cohen.is_empty() {
                table(&mut out, "", &cohen_table(a));
            }
        }
    }
    table(&mut out, "Audit checkpoints", &audit_table(r));
    out
}

/// Appends a table under a heading, indented two spaces: numbers right-aligned, everything else
/// left-aligned, widths in characters. A table without rows prints "(none)".
fn table(out: &mut String, heading: &str, t: &Table) {
    if !heading.is_empty() {
        let _ = write!(out, "\n{heading}\n");
    }
    if t.rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    // Replace control characters in cells now, so that widths count what is printed.
    let rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let header: Vec<String> = t.cols.iter().map(|(h, _)| (*h).to_owned()).collect();
    let widths: Vec<usize> = (0..t.cols.len())
        .map(|i| {
            rows.iter()
                .chain([&header])
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&header].into_iter().chain(&rows) {
        let mut line = String::new();
        for ((cell, (_, col)), &w) in row.iter().zip(&t.cols).zip(&widths) {
            let _ = match col {
                Col::Right => write!(line, "  {cell:>w$}"),
                _ => write!(line, "  {cell:<w$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// A report string with control characters (ANSI escapes, newlines) replaced by U+FFFD.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}
