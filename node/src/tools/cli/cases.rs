//! `fedanno cases`: the indexed series by pseudonym, with modality and geometry.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::{emit, print_rows, with_site};
use crate::site::store::{SeriesFilter, SeriesRow};

#[derive(Debug, clap::Args)]
pub struct CasesArgs {
    /// Only series of this modality (e.g. CT).
    #[arg(long)]
    modality: Option<String>,
    /// Also print original identifiers (local use only).
    #[arg(long)]
    show_identifiers: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(dir: &Path, args: CasesArgs) -> Result<ExitCode> {
    let CasesArgs {
        modality,
        show_identifiers,
        json,
    } = args;
    let rows = with_site(dir, async |site| {
        Ok(site
            .store
            .list_series(SeriesFilter { modality }, show_identifiers)
            .await?)
    })
    .await?;
    emit(json, &rows, |rows| print_cases(rows, show_identifiers))?;
    Ok(ExitCode::SUCCESS)
}

fn print_cases(rows: &[SeriesRow], show_identifiers: bool) {
    let header = format!(
        "{:<46} {:<8} {:<13} {:>5} {:<13} {:<22} {:<28} {:<10}",
        "SERIES", "MODALITY", "KIND", "INST", "GRID", "SPACING (mm)", "PATIENT", "DATE"
    );
    let empty = "No series indexed yet. Run `fedanno ingest PATH`.";
    print_rows(rows, empty, Some(&header), |r| {
        let grid = match (r.columns, r.rows, r.slices) {
            (Some(c), Some(rw), Some(s)) => format!("{c}x{rw}x{s}"),
            _ => "-".into(),
        };
        let spacing = match (r.pixel_spacing, r.slice_spacing) {
            (Some(p), Some(s)) => format!("{}x{}x{:.3}", p[1], p[0], s),
            (Some(p), None) => format!("{}x{}", p[1], p[0]),
            _ => r.geometry_error.clone().unwrap_or_else(|| "-".into()),
        };
        println!(
            "{:<46} {:<8} {:<13} {:>5} {:<13} {:<22} {:<28} {:<10}",
            r.series,
            r.modality,
            r.kind,
            r.instances,
            grid,
            spacing,
            r.patient,
            r.study_date.as_deref().unwrap_or("-")
        );
        if show_identifiers && let Some(o) = &r.original {
            println!(
                "    original: patient {} ({}), study {}, series {}, date {}",
                o.patient_id,
                o.patient_name,
                o.study_uid,
                o.series_uid,
                o.study_date.as_deref().unwrap_or("-")
            );
        }
    });
}
