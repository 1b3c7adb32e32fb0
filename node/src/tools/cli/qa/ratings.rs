//! Ratings for the offline QA commands: `metrics agreement` and `consensus labels` on CSV
//! `unit,rater,value` tables.

use super::*;

// ---------------------------------------------------------------------------------------------
// Ratings: metrics agreement, consensus labels
// ---------------------------------------------------------------------------------------------

/// Ratings read from a CSV file, with the line number of every triple.
pub(super) struct RatingsFile {
    triples: Vec<(String, String, String)>,
    lines: Vec<usize>,
}

/// Reads `unit,rater,value` CSV (RFC 4180 quoting on one line; blank lines skipped; a row with
/// an empty value is a missing rating).
pub(super) fn read_ratings_csv(path: &Path) -> Result<RatingsFile> {
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

pub(super) fn agreement_cmd(
    path: &Path,
    categories: Option<Vec<String>>,
    json: bool,
) -> Result<()> {
    let lr = load_ratings(path, categories)?;
    let values = lr.numeric_categories();
    let rep = agreement(&lr.ratings, values.as_deref());
    let id = |i: usize| lr.raters.get(i).map_or("?", String::as_str);
    let pairs: Vec<Value> = rep
        .cohen_pairwise
        .iter()
        .map(|p| {
            json!({
                "raters": [id(p.raters[0]), id(p.raters[1])],
                "n_items": p.kappa.n_items,
                "kappa": num(p.kappa.kappa),
                "kappa_linear": num(p.kappa.kappa_linear),
                "kappa_quadratic": num(p.kappa.kappa_quadratic),
            })
        })
        .collect();
    let a = rep.krippendorff_alpha;
    // Interval and ratio alpha need numeric categories; without them they are null.
    let valued = |x: f64| {
        if values.is_some() {
            num(x)
        } else {
            Value::Null
        }
    };
    let out = json!({
        "units": rep.units,
        "raters": rep.raters,
        "percent_agreement": num(rep.percent_agreement),
        "cohen_pairwise": pairs,
        "fleiss_kappa": num(rep.fleiss_kappa),
        "fleiss_units": rep.fleiss_units,
        "krippendorff_alpha": {
            "nominal": num(a.nominal),
            "ordinal": num(a.ordinal),
            "interval": valued(a.interval),
            "ratio": valued(a.ratio),
        },
    });
    if json {
        return print_json(&out);
    }
    println!(
        "{} units, {} raters, categories {}",
        rep.units,
        rep.raters,
        lr.categories.join(",")
    );
    println!("percent agreement {}", show(rep.percent_agreement));
    println!(
        "Fleiss' kappa {} ({} complete units)",
        show(rep.fleiss_kappa),
        rep.fleiss_units
    );
    println!(
        "Krippendorff's alpha: nominal {}  ordinal {}  interval {}  ratio {}",
        show(a.nominal),
        show(a.ordinal),
        if values.is_some() {
            show(a.interval)
        } else {
            "-".into()
        },
        if values.is_some() {
            show(a.ratio)
        } else {
            "-".into()
        }
    );
    println!(
        "{:<16} {:<16} {:>7} {:>10} {:>10} {:>10}",
        "RATER A", "RATER B", "ITEMS", "KAPPA", "LINEAR", "QUADRATIC"
    );
    for p in &rep.cohen_pairwise {
        println!(
            "{:<16} {:<16} {:>7} {:>10} {:>10} {:>10}",
            id(p.raters[0]),
            id(p.raters[1]),
            p.kappa.n_items,
            show(p.kappa.kappa),
            show(p.kappa.kappa_linear),
            show(p.kappa.kappa_quadratic)
        );
    }
    Ok(())
}

pub(super) fn labels_cmd(
    path: &Path,
    method: LabelMethod,
    categories: Option<Vec<String>>,
    json: bool,
) -> Result<()> {
    let lr = load_ratings(path, categories)?;
    let cat = |c: Option<u32>| {
        c.and_then(|c| lr.categories.get(c as usize))
            .map_or(Value::Null, |s| json!(s))
    };
    let out = match method {
        LabelMethod::Majority => {
            let labels: Map<String, Value> = lr
                .units
                .iter()
                .cloned()
                .zip(majority_vote(&lr.ratings).into_iter().map(cat))
                .collect();
            json!({
                "method": "majority",
                "categories": lr.categories,
                "iterations": Value::Null,
                "class_priors": Value::Null,
                "confusion": Value::Null,
                "labels": labels,
                "log_likelihood": Value::Null,
            })
        }
        LabelMethod::DawidSkene => {
            let r = dawid_skene(&lr.ratings, &DsOptions::default())?;
            if !r.converged {
                tracing::warn!(
                    iterations = r.iterations,
                    "Dawid–Skene stopped at the iteration limit before converging"
                );
            }
            let confusion: Map<String, Value> = lr
                .raters
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), matrix(&r.params.rater_confusion(i))))
                .collect();
            let labels: Map<String, Value> = lr
                .units
                .iter()
                .cloned()
                .zip(r.labels.iter().map(|l| cat(*l)))
                .collect();
            json!({
                "method": "dawid-skene",
                "categories": lr.categories,
                "iterations": r.iterations,
                "class_priors": nums(&r.params.class_priors),
                "confusion": confusion,
                "labels": labels,
                "log_likelihood": num(r.log_likelihood),
            })
        }
    };
    if json {
        return print_json(&out);
    }
    println!(
        "{} consensus of {} units by {} raters, categories {}",
        out["method"].as_str().unwrap_or("?"),
        lr.units.len(),
        lr.raters.len(),
        lr.categories.join(",")
    );
    if let Some(it) = out["iterations"].as_u64() {
        println!(
            "{it} iterations, log-likelihood {}, class priors {}",
            out["log_likelihood"], out["class_priors"]
        );
    }
    for u in &lr.units {
        let l = &out["labels"][u.as_str()];
        println!("{u},{}", l.as_str().unwrap_or("undecided"));
    }
    Ok(())
}
