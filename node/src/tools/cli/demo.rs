//! `fedanno demo`: a whole consortium on this machine (three sites, two studies, reports).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::emit;
use crate::tools::demo::{self, DemoOptions};
use crate::tools::synth;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep everything (sites, audit logs, reports) in DIR.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cases per site.
    #[arg(long, default_value_t = 10)]
    cases: usize,
    /// WIDTHxHEIGHTxSLICES of each synthetic CT.
    #[arg(long, default_value = "64x64x32")]
    size: String,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let size = synth::parse_size(&args.size)?;
    // Refused before minutes of setup: the studies would not release from fewer cases.
    if let Err(e) = demo::check_cases(args.cases) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let s = demo::run(DemoOptions {
        out: args.out,
        cases: args.cases,
        size,
    })
    .await?;
    emit(args.json, &s, |s| {
        for st in &s.studies {
            println!("{}", st.summary);
            println!("HTML report: {}\n", st.report_html.display());
        }
        for (site, size) in &s.audit_verified {
            println!("audit log of {site}: {size} entries, verified");
        }
        if s.kept {
            println!(
                "Everything is in {} (sites/<site>/, studies/<study>/).",
                s.out.display()
            );
        }
        println!("Demo finished in {:.1} s.", s.seconds);
    })?;
    Ok(ExitCode::SUCCESS)
}
