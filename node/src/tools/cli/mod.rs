//! The `fedanno` command line (clap): the top-level parser, dispatch to one module per command
//! (each holds its arguments and its handler), the exit codes, and the helpers the commands
//! share. Every command prints human text by default and one JSON document with `--json`
//! ([`emit`]). Exit codes: 0 ok, 1 failure, 2 usage. This is the only module that prints to
//! stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::{Serialize, Serializer};

mod annotate;
mod audit;
mod bench;
mod cases;
mod consortium;
mod demo;
mod ingest;
mod init;
mod node;
mod policy;
pub mod qa;
mod reader_study;
mod readers;
mod synth;

use crate::site::Site;
use crate::tools::logging::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "fedanno",
    version,
    about = "Federated annotation node for multi-site medical imaging studies"
)]
pub struct Cli {
    /// Site directory (config.toml, keys/, fedanno.db).
    #[arg(long, global = true, env = "FEDANNO_DIR", default_value = "./site")]
    pub dir: PathBuf,
    /// Log line format on stderr (json: one JSON object per line, for log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FEDANNO_LOG_FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace; `node run` logs at info by default).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new site: config.toml, keys (mode 0600) and the database.
    Init(init::InitArgs),
    /// Index DICOM files (headers only) under the given files or folders.
    Ingest(ingest::IngestArgs),
    /// List indexed series by pseudonym, with modality and geometry.
    Cases(cases::CasesArgs),
    /// Register and list readers.
    Readers {
        #[command(subcommand)]
        what: readers::ReadersCommand,
    },
    /// Import, export, review and adjudicate annotations.
    Annotate {
        #[command(subcommand)]
        what: annotate::AnnotateCommand,
    },
    /// Write synthetic CT studies with ground truth, simulated readers and ratings.
    Synth(synth::SynthArgs),
    /// Verify, list, export and prove the site's tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        what: audit::AuditCommand,
    },
    /// Segmentation metrics and agreement statistics from files (offline; README.md, "Offline QA
    /// commands").
    Metrics {
        #[command(subcommand)]
        what: qa::MetricsCommand,
    },
    /// STAPLE, multi-label STAPLE, Dawid–Skene and majority consensus from files (offline).
    Consensus {
        #[command(subcommand)]
        what: qa::ConsensusCommand,
    },
    /// Consortium governance and a site's membership files.
    Consortium {
        #[command(subcommand)]
        what: consortium::ConsortiumCommand,
    },
    /// Run the node daemon and talk to it.
    Node {
        #[command(subcommand)]
        what: node::NodeCommand,
    },
    /// A whole consortium on this machine: three sites, two studies, reports (start here).
    Demo(demo::DemoArgs),
    /// Federated studies: launch, join, assign, run, report.
    Study {
        #[command(subcommand)]
        what: reader_study::ReaderStudyCommand,
    },
    /// Explain a site policy's decisions.
    Policy {
        #[command(subcommand)]
        what: policy::PolicyCommand,
    },
    /// Measure performance on synthetic data.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    logging::init(cli.log_format, verbosity(&cli));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprint!(
                "{}",
                crate::tools::logging::escape_line(&format!(
                    "error: {}\n",
                    crate::errors::chain(&e)
                ))
            );
            ExitCode::from(1)
        }
    }
}

/// The log level asked for: −1 quiet, else the `-v` count (a daemon logs at info by default:
/// its log is its operators' view of starts, peers, refusals and studies).
fn verbosity(cli: &Cli) -> i8 {
    let daemon = matches!(
        cli.command,
        Command::Node {
            what: node::NodeCommand::Run { .. }
        }
    );
    if cli.quiet {
        -1
    } else if daemon && cli.verbose == 0 {
        1
    } else {
        cli.verbose.min(3) as i8
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let dir = cli.dir.as_path();
    match cli.command {
        Command::Init(args) => init::run(dir, args),
        Command::Ingest(args) => ingest::run(dir, args).await,
        Command::Cases(args) => cases::run(dir, args).await,
        Command::Readers { what } => {
            with_site(dir, async |site| readers::run(site, what).await).await
        }
        Command::Annotate { what } => {
            with_site(dir, async |site| annotate::run(site, what).await).await
        }
        Command::Synth(args) => synth::run(args).await,
        Command::Audit {
            what:
                audit::AuditCommand::CrossCheck {
                    consortium,
                    bundles,
                    quorum,
                    html,
                    json,
                },
        } => audit::cross_check(&consortium, &bundles, quorum, html.as_deref(), json),
        Command::Audit { what } => with_site(dir, async |site| audit::run(site, what).await).await,
        Command::Metrics { what } => qa::run(move || qa::metrics::run(what)).await,
        Command::Consensus { what } => qa::run(move || qa::consensus::run(what)).await,
        Command::Consortium { what } => consortium::run(dir, what).await,
        Command::Node { what } => node::run(dir, what).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Study { what } => reader_study::run(dir, what).await,
        Command::Policy { what } => policy::run(what),
        Command::Bench { what } => bench::run(what).await,
    }
}

/// Opens the site in `dir`, runs `f` on it, and closes the site whatever `f` returned.
async fn with_site<T>(dir: &Path, f: impl AsyncFnOnce(&Site) -> Result<T>) -> Result<T> {
    let site = Site::open(dir)?;
    let r = f(&site).await;
    site.close();
    r
}

/// Prints `v` as one pretty-printed JSON document.
pub(crate) fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The `--json`-or-text choice of every command: `value` as one JSON document (`--json`), or
/// the human text `text` prints for it.
pub(crate) fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T),
) -> Result<()> {
    if json {
        print_json(value)
    } else {
        text(value);
        Ok(())
    }
}

/// Serialises a value with every object's keys sorted, the way `serde_json::Value` holds them:
/// the form in which the node's answers and the policy decisions have always been printed.
pub(crate) struct Sorted<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Sorted<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_value(self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// Prints `empty` when there are no rows; else the `header` line, if any, and each row.
pub(crate) fn print_rows<T>(rows: &[T], empty: &str, header: Option<&str>, row: impl FnMut(&T)) {
    if rows.is_empty() {
        println!("{empty}");
        return;
    }
    if let Some(h) = header {
        println!("{h}");
    }
    rows.iter().for_each(row);
}

/// 0 when `ok`, else 1.
pub(crate) fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
