//! The offline QA commands (README.md, "Offline QA commands"): `metrics seg`, `metrics agreement`,
//! `consensus staple`, `consensus multilabel` and `consensus labels`.
//!
//! Owns the file side of the quality engine: reading masks (NIfTI) and ratings (CSV), checking that
//! masks share one grid, walking `--readers-dir` trees, pooling their cases into one EM, writing
//! `--out` maps, and printing the offline-command JSON (non-finite numbers as the strings "NaN",
//! "Infinity", "-Infinity"). The numbers themselves come from `fedanno_stats`; nothing here
//! computes a statistic. Exit codes: 0 ok, 1 failure (unreadable or inconsistent input), 2 usage
//! (bad arguments). Masks are NIfTI or DICOM SEG; SEGs given without their source series are placed
//! on the grid their frames span (`dicom::seg::common_grid`).

use std::fmt;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Value, json};

pub mod consensus;
mod masks;
pub mod metrics;
mod multilabel;
mod ratings;
mod staple;

pub use consensus::{ConsensusCommand, LabelMethod};
pub use metrics::{DefinitionArg, MetricsCommand};

/// A usage error found after parsing (exit code 2).
#[derive(Debug)]
struct Usage(String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// Runs an offline QA command (CPU-bound) off the runtime's workers. A usage error exits 2;
/// other errors go to the caller (exit code 1).
pub async fn run(command: impl FnOnce() -> Result<()> + Send + 'static) -> Result<ExitCode> {
    let r = tokio::task::spawn_blocking(command)
        .await
        .context("the computation stopped unexpectedly")?;
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is::<Usage>() => {
            eprintln!("error: {}", crate::errors::chain(&e));
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// A number for offline-command JSON: non-finite values become "NaN", "Infinity" or "-Infinity".
pub fn num(x: f64) -> Value {
    if x.is_nan() {
        Value::String("NaN".into())
    } else if x == f64::INFINITY {
        Value::String("Infinity".into())
    } else if x == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        json!(x)
    }
}

fn nums(xs: &[f64]) -> Value {
    Value::Array(xs.iter().map(|&x| num(x)).collect())
}

fn matrix(rows: &[Vec<f64>]) -> Value {
    Value::Array(rows.iter().map(|r| nums(r)).collect())
}

/// Adds `"cases": n` to an offline-command JSON object of a `--readers-dir` run.
fn with_cases(mut v: Value, cases: Option<usize>) -> Value {
    if let (Some(n), Some(obj)) = (cases, v.as_object_mut()) {
        obj.insert("cases".into(), json!(n));
    }
    v
}

/// A number for human output.
fn show(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::masks::parse_label_value;
    use super::*;

    #[test]
    fn non_finite_numbers_are_strings() {
        assert_eq!(num(f64::NAN), json!("NaN"));
        assert_eq!(num(f64::INFINITY), json!("Infinity"));
        assert_eq!(num(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(num(0.25), json!(0.25));
    }

    #[test]
    fn label_values_must_be_whole_bytes() {
        assert_eq!(parse_label_value("1"), Ok(1));
        assert_eq!(parse_label_value("2.0"), Ok(2));
        assert!(parse_label_value("1.5").is_err());
        assert!(parse_label_value("256").is_err());
        assert!(parse_label_value("x").is_err());
    }
}
