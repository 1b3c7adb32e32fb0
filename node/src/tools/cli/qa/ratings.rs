//! Ratings for the offline QA commands: `metrics agreement` and `consensus labels` on CSV
//! `unit,rater,value` tables.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fedanno_stats::ratings::{LabeledRatings, RatingsError, default_categories};

use super::usage;
use crate::annotations::interchange::csvtable::Table;

/// Ratings read from a CSV file, with the line number of every triple.
struct RatingsFile {
    triples: Vec<(String, String, String)>,
    lines: Vec<usize>,
}

/// Reads a CSV table with the columns `unit`, `rater` and `value` (as spreadsheets write it:
/// RFC 4180 quoting, CRLF, a byte-order mark; blank lines skipped; other columns, such as an
/// export's `confidence` and `scheme`, ignored; a row with an empty value is a missing rating).
/// A table whose `scheme` column names several schemes is refused: agreement is per scheme.
fn read_ratings_csv(path: &Path) -> Result<RatingsFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.trim().is_empty() {
        bail!(
            "{} is empty (expected the header unit,rater,value)",
            path.display()
        );
    }
    let table = Table::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    table
        .require(&["unit", "rater", "value"])
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let schemes: BTreeSet<&str> = table
        .rows()
        .map(|r| r.get("scheme"))
        .filter(|s| !s.is_empty())
        .collect();
    if schemes.len() > 1 {
        bail!(
            "{} holds ratings of several schemes ({}): agreement is computed per scheme; keep one scheme's rows",
            path.display(),
            schemes.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let mut out = RatingsFile {
        triples: Vec::new(),
        lines: Vec::new(),
    };
    for r in table.rows() {
        let (u, rater, v) = (r.get("unit"), r.get("rater"), r.get("value"));
        if u.is_empty() || rater.is_empty() {
            bail!("{} line {}: empty unit or rater id", path.display(), r.line);
        }
        if v.is_empty() {
            continue;
        }
        out.triples
            .push((u.to_owned(), rater.to_owned(), v.to_owned()));
        out.lines.push(r.line as usize);
    }
    if out.triples.is_empty() {
        bail!("{} holds no ratings", path.display());
    }
    Ok(out)
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
