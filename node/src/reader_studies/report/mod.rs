//! The study report: what a federated annotation study released, rendered for people.
//!
//! A [`ReaderStudyReport`] holds only aggregates (per-site traffic, consensus parameters,
//! per-reader performance, agreement, privacy thresholds, audit checkpoints), never per-case data.
//! This module is pure: [`to_json`], [`render_text`] (the coordinator's terminal summary) and
//! [`render_html`] (one self-contained page: inline CSS and SVG, no scripts, no external assets)
//! only return values. Every string in a report is data: the text renderer replaces control
//! characters, the HTML renderer escapes everything it writes.

mod html;
pub(crate) use html::esc;
mod svg;
mod text;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::manifest::{Method, Protocol, TaskKind};
use crate::annotations::readers::ReaderKind;

pub use html::render_html;
pub use text::render_text;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderStudyReport {
    pub study: String,
    pub title: String,
    /// "segmentation" | "classification".
    pub task: TaskKind,
    /// Unix seconds.
    pub generated_at: u64,
    pub coordinator: String,
    pub sites: Vec<SiteSummary>,
    pub consensus: ConsensusSummary,
    pub readers: Vec<ReaderPerformance>,
    pub agreement: Option<Agreement>,
    pub privacy: PrivacySummary,
    pub audit: Vec<AuditRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSummary {
    pub site: String,
    /// contributed | declined | dropped | silent.
    pub status: String,
    pub reason: Option<String>,
    pub rounds: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusSummary {
    /// staple | multilabel-staple | dawid-skene.
    pub method: Method,
    /// iterative | one-round.
    pub protocol: Protocol,
    pub secure_rounds: u32,
    pub iterations: u32,
    pub converged: bool,
    pub restarts: u32,
    pub dropped: Vec<String>,
    pub cases: u64,
    /// Voxels (segmentation) or cases (classification).
    pub units: u64,
    /// Method-specific: prior, per-reader sensitivity/specificity, confusion matrices.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderPerformance {
    pub reader: String,
    /// panel | model | local.
    pub kind: ReaderKind,
    pub cases: u64,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub sensitivity: Option<f64>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub specificity: Option<f64>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub dice_pooled: Option<f64>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub dice_mean: Option<f64>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub dice_sd: Option<f64>,
    pub dice_histogram: Option<Histogram>,
    pub hd95_histogram: Option<Histogram>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub accuracy: Option<f64>,
    /// Rows = consensus category, columns = the reader's category, row-normalised.
    #[serde(default, deserialize_with = "json_num::opt_matrix")]
    pub confusion: Option<Vec<Vec<f64>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `counts.len() + 1` edges; the last may be +inf.
    #[serde(deserialize_with = "json_num::vec")]
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub categories: Vec<String>,
    pub units: u64,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub percent: Option<f64>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub fleiss: Option<f64>,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub krippendorff: Option<f64>,
    pub krippendorff_level: String,
    pub cohen: Vec<CohenPair>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohenPair {
    pub a: String,
    pub b: String,
    pub units: u64,
    #[serde(default, deserialize_with = "json_num::opt")]
    pub kappa: Option<f64>,
    pub weights: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacySummary {
    pub min_sites: u32,
    pub min_cases: u64,
    /// E.g. "SA-v1 pairwise masking over Z_2^128".
    pub aggregation: String,
    /// The statistics that were released.
    pub released: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRef {
    pub site: String,
    pub size: u64,
    /// Hex.
    pub root: String,
    /// The witnesses whose co-signatures of this checkpoint the coordinator verified before
    /// releasing the report.
    #[serde(default)]
    pub witnesses: Vec<String>,
}

impl ReaderStudyReport {
    /// Whether readers are scored by accuracy and confusion (classification) rather than by
    /// overlap (segmentation).
    pub fn is_classification(&self) -> bool {
        self.task == TaskKind::Classification
    }
}

impl Histogram {
    /// Edges and counts agree in length (`edges = counts + 1`) and the edges do not decrease.
    pub fn is_well_formed(&self) -> bool {
        self.edges.len() == self.counts.len() + 1
            && !self.counts.is_empty()
            && self.edges.windows(2).all(|w| w[0] <= w[1])
    }
}

/// The report as JSON. serde_json has no NaN or infinities (it writes them as `null`, which
/// would read as "not computed"), so non-finite numbers become the strings "NaN", "Infinity"
/// and "-Infinity"; deserialising reads them back (`json_num`), so every report round-trips
/// (a stored report is read again by `study report` at every site).
///
/// Key order is stable: serde_json's objects are sorted by key in this workspace (its
/// `preserve_order` feature, which would keep the declared order, is off).
pub fn to_json(r: &ReaderStudyReport) -> Value {
    // Serialising plain data structs to a Value cannot fail (string keys, no custom impls).
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    for (i, rd) in r.readers.iter().enumerate() {
        let Some(slot) = v.pointer_mut(&format!("/readers/{i}")) else {
            continue;
        };
        for (key, x) in [
            ("sensitivity", rd.sensitivity),
            ("specificity", rd.specificity),
            ("dice_pooled", rd.dice_pooled),
            ("dice_mean", rd.dice_mean),
            ("dice_sd", rd.dice_sd),
            ("accuracy", rd.accuracy),
        ] {
            patch(slot, key, x);
        }
        for (key, h) in [
            ("dice_histogram", &rd.dice_histogram),
            ("hd95_histogram", &rd.hd95_histogram),
        ] {
            if let Some(h) = h {
                slot[key]["edges"] = Value::Array(h.edges.iter().map(|&x| num(x)).collect());
            }
        }
        if let Some(m) = &rd.confusion {
            slot["confusion"] = Value::Array(
                m.iter()
                    .map(|row| row.iter().map(|&x| num(x)).collect())
                    .collect(),
            );
        }
    }
    if let (Some(a), Some(slot)) = (&r.agreement, v.get_mut("agreement")) {
        patch(slot, "percent", a.percent);
        patch(slot, "fleiss", a.fleiss);
        patch(slot, "krippendorff", a.krippendorff);
        for (i, c) in a.cohen.iter().enumerate() {
            patch(&mut slot["cohen"][i], "kappa", c.kappa);
        }
    }
    v
}

/// Reads the numbers [`to_json`] writes: JSON numbers, or the strings "NaN", "Infinity" and
/// "-Infinity" (anything else is an error).
mod json_num {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Number(f64),
        Text(String),
    }

    fn value<E: Error>(n: Num) -> Result<f64, E> {
        match n {
            Num::Number(x) => Ok(x),
            Num::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(E::custom(format!(
                    "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", found {t:?}"
                ))),
            },
        }
    }

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Num>::deserialize(d)?.map(value).transpose()
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Num>::deserialize(d)?.into_iter().map(value).collect()
    }

    pub fn opt_matrix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Vec<f64>>>, D::Error> {
        Option::<Vec<Vec<Num>>>::deserialize(d)?
            .map(|m| {
                m.into_iter()
                    .map(|row| row.into_iter().map(value).collect())
                    .collect()
            })
            .transpose()
    }
}

fn patch(slot: &mut Value, key: &str, x: Option<f64>) {
    if let Some(x) = x {
        slot[key] = num(x);
    }
}

/// A number as JSON, non-finite values as strings.
fn num(x: f64) -> Value {
    if x.is_nan() {
        Value::from("NaN")
    } else if x.is_infinite() {
        Value::from(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        Value::from(x)
    }
}

/// The value if it is present and finite.
fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|x| x.is_finite())
}

/// A statistic with four decimals, "—" when missing or not finite.
fn fmt4(x: Option<f64>) -> String {
    finite(x).map_or_else(|| "—".to_owned(), |x| format!("{x:.4}"))
}

/// Dice as "mean ± SD" (or just the mean when the SD is missing).
fn fmt_mean_sd(mean: Option<f64>, sd: Option<f64>) -> String {
    match (finite(mean), finite(sd)) {
        (None, _) => "—".to_owned(),
        (Some(m), None) => format!("{m:.4}"),
        (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
    }
}

/// Bytes with a binary unit.
fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

/// `generated_at` as RFC 3339 (clamped to year 9999).
fn fmt_time(unix_seconds: u64) -> String {
    crate::site::calendar::rfc3339(unix_seconds.min(253_402_300_799) as i64)
}

/// How a table column shows: text left, numbers right, hashes monospaced, statuses as badges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Left,
    Right,
    Mono,
    Status,
}

/// A table both renderers show: a caption, headers with their column kind, and rows of plain
/// (not yet escaped) strings, so that the text and the page always show the same columns.
struct Table {
    caption: &'static str,
    cols: Vec<(&'static str, Col)>,
    rows: Vec<Vec<String>>,
}

fn sites_table(r: &ReaderStudyReport) -> Table {
    use Col::{Left, Right, Status};
    let rows = r.sites.iter().map(|s| {
        vec![
            s.site.clone(),
            s.status.clone(),
            s.rounds.to_string(),
            fmt_bytes(s.bytes_sent),
            fmt_bytes(s.bytes_received),
            s.messages.to_string(),
            s.reason.clone().unwrap_or_else(|| "—".to_owned()),
        ]
    });
    Table {
        caption: "Participation and traffic per site",
        cols: vec![
            ("site", Left),
            ("status", Status),
            ("rounds", Right),
            ("sent", Right),
            ("received", Right),
            ("messages", Right),
            ("reason", Left),
        ],
        rows: rows.collect(),
    }
}

fn readers_table(r: &ReaderStudyReport) -> Table {
    use Col::{Left, Right};
    let cls = r.is_classification();
    let mut cols = vec![
        ("reader", Left),
        ("kind", Left),
        ("cases", Right),
        ("sensitivity", Right),
        ("specificity", Right),
    ];
    if cls {
        cols.push(("accuracy", Right));
    } else {
        cols.extend([("Dice pooled", Right), ("Dice mean ± SD", Right)]);
    }
    let rows = r.readers.iter().map(|p| {
        let mut row = vec![
            p.reader.clone(),
            p.kind.as_str().to_owned(),
            p.cases.to_string(),
            fmt4(p.sensitivity),
            fmt4(p.specificity),
        ];
        if cls {
            row.push(fmt4(p.accuracy));
        } else {
            row.extend([fmt4(p.dice_pooled), fmt_mean_sd(p.dice_mean, p.dice_sd)]);
        }
        row
    });
    let caption = "Performance of each reader against the consensus";
    Table {
        caption,
        cols,
        rows: rows.collect(),
    }
}

fn cohen_table(a: &Agreement) -> Table {
    use Col::{Left, Right};
    let rows = a.cohen.iter().map(|p| {
        vec![
            p.a.clone(),
            p.b.clone(),
            p.units.to_string(),
            p.weights.clone(),
            fmt4(p.kappa),
        ]
    });
    Table {
        caption: "Cohen's κ per pair of readers",
        cols: vec![
            ("reader A", Left),
            ("reader B", Left),
            ("units", Right),
            ("weights", Left),
            ("Cohen κ", Right),
        ],
        rows: rows.collect(),
    }
}

fn audit_table(r: &ReaderStudyReport) -> Table {
    let rows = r.audit.iter().map(|a| {
        let witnesses = if a.witnesses.is_empty() {
            "none".to_string()
        } else {
            a.witnesses.join(", ")
        };
        vec![
            a.site.clone(),
            a.size.to_string(),
            a.root.clone(),
            witnesses,
        ]
    });
    Table {
        caption: "Signed audit log checkpoints per site, co-signed before the report",
        cols: vec![
            ("site", Col::Left),
            ("log size", Col::Right),
            ("root", Col::Mono),
            ("co-signed by", Col::Left),
        ],
        rows: rows.collect(),
    }
}

/// "cases" or "voxels", what a consensus unit is.
fn unit_name(r: &ReaderStudyReport) -> &'static str {
    if r.is_classification() {
        "cases"
    } else {
        "voxels"
    }
}

/// The consensus's end state in words.
fn consensus_state(c: &ConsensusSummary) -> String {
    let dropped = if c.dropped.is_empty() {
        "none".to_owned()
    } else {
        c.dropped.join(", ")
    };
    format!(
        "{} iterations, {}, {} secure rounds, restarts: {}, dropped: {dropped}",
        c.iterations,
        if c.converged {
            "converged"
        } else {
            "NOT converged"
        },
        c.secure_rounds,
        c.restarts,
    )
}

#[cfg(test)]
mod tests;
