//! Ratings for the offline QA commands: `metrics agreement` and `consensus labels` on CSV
//! `unit,rater,value` tables.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fedanno_stats::ratings::{LabeledRatings, RatingsError, default_categories};

use super::usage;

/// Ratings read from a CSV file, with the line number of every triple.
struct RatingsFile {
    triples: Vec<(String, String, String)>,
    lines: Vec<usize>,
}

/// Reads `unit,rater,value` CSV (RFC 4180 quoting on one line; blank lines skipped; a row with
/// an empty value is a missing rating).
fn read_ratings_csv(path: &Path) -> Result<RatingsFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty())
        .map(|(_, l)| l.trim_start_matches('\u{feff}'))
        .with_context(|| {
            format!(
                "{} is empty (expected the header unit,rater,value)",
                path.display()
            )
        })?;
    let cols =
        split_csv_line(header).map_err(|e| anyhow::anyhow!("{} line 1: {e}", path.display()))?;
    let cols: Vec<&str> = cols.iter().map(|c| c.trim()).collect();
    if cols != ["unit", "rater", "value"] {
        bail!(
            "{}: the header must be unit,rater,value (found {})",
            path.display(),
            header.trim()
        );
    }
    let mut out = RatingsFile {
        triples: Vec::new(),
        lines: Vec::new(),
    };
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let fields = split_csv_line(line)
            .map_err(|e| anyhow::anyhow!("{} line {n}: {e}", path.display()))?;
        let [u, r, v] = fields.as_slice() else {
            bail!(
                "{} line {n}: expected 3 fields (unit,rater,value), found {}",
                path.display(),
                fields.len()
            );
        };
        let (u, r, v) = (u.trim(), r.trim(), v.trim());
        if u.is_empty() || r.is_empty() {
            bail!("{} line {n}: empty unit or rater id", path.display());
        }
        if v.is_empty() {
            continue;
        }
        out.triples.push((u.to_owned(), r.to_owned(), v.to_owned()));
        out.lines.push(n);
    }
    if out.triples.is_empty() {
        bail!("{} holds no ratings", path.display());
    }
    Ok(out)
}

/// Splits one CSV line into fields; double quotes enclose a field, `""` is a quote inside one.
pub(super) fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Reads and tabulates a ratings file against the given or default categories.
pub(super) fn load_ratings(path: &Path, categories: Option<Vec<String>>) -> Result<LabeledRatings> {
    let file = read_ratings_csv(path)?;
    let categories = match categories {
        Some(c) => {
            let c: Vec<String> = c.iter().map(|s| s.trim().to_owned()).collect();
            let distinct: BTreeSet<&String> = c.iter().collect();
            if c.is_empty() || c.iter().any(String::is_empty) || distinct.len() != c.len() {
                return Err(usage(
                    "--categories must list distinct, non-empty categories",
                ));
            }
            c
        }
        None => {
            let values: Vec<&str> = file.triples.iter().map(|t| t.2.as_str()).collect();
            default_categories(&values)
        }
    };
    LabeledRatings::from_triples(&file.triples, &categories).map_err(|e| {
        let line = |row: usize| file.lines.get(row).copied().unwrap_or(0);
        match e {
            RatingsError::UnknownCategory { row } => anyhow::anyhow!(
                "{} line {}: value {:?} is not one of the categories ({})",
                path.display(),
                line(row),
                file.triples.get(row).map_or("", |t| t.2.as_str()),
                categories.join(",")
            ),
            RatingsError::Duplicate { row } => anyhow::anyhow!(
                "{} line {}: rater {:?} already rated unit {:?}",
                path.display(),
                line(row),
                file.triples.get(row).map_or("", |t| t.1.as_str()),
                file.triples.get(row).map_or("", |t| t.0.as_str())
            ),
            RatingsError::BadCategories => {
                anyhow::anyhow!("the categories must be non-empty and distinct")
            }
        }
    })
}
