//! The `fedanno` command line (clap): argument parsing, dispatch to the library, and printing
//! (human text by default, one JSON object with `--json`). Exit codes: 0 ok, 1 failure,
//! 2 usage. This is the only module that prints to stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

mod annotate;
mod audit;
mod network;
pub mod qa;
mod reader_study;

use crate::site::ingest::{self, IngestOptions};
use crate::site::store::SeriesFilter;
use crate::site::{self, Site};
use crate::tools::bench;
use crate::tools::logging::{self, LogFormat};
use crate::tools::synth::{self, SynthOptions};

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
    Init {
        /// Human display name of the site.
        #[arg(long)]
        site_name: String,
        /// Consortium-unique site id (default: derived from the name).
        #[arg(long)]
        site_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Index DICOM files (headers only) under the given files or folders.
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// List indexed series by pseudonym, with modality and geometry.
    Cases {
        /// Only series of this modality (e.g. CT).
        #[arg(long)]
        modality: Option<String>,
        /// Also print original identifiers (local use only).
        #[arg(long)]
        show_identifiers: bool,
        #[arg(long)]
        json: bool,
    },
    /// Register and list readers.
    Readers {
        #[command(subcommand)]
        what: annotate::ReadersCommand,
    },
    /// Import, export, review and adjudicate annotations.
    Annotate {
        #[command(subcommand)]
        what: annotate::AnnotateCommand,
    },
    /// Write synthetic CT studies with ground truth, simulated readers and ratings.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        cases: usize,
        /// WIDTHxHEIGHTxSLICES.
        #[arg(long, default_value = "96x96x48")]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Prefix of case ids (keeps several sites' cases apart).
        #[arg(long, default_value = "case-")]
        case_prefix: String,
        /// Id of the simulated local reader (default local-resident), e.g. the local reader a
        /// study manifest names for this site.
        #[arg(long, default_value = "local-resident")]
        local_reader: String,
        #[arg(long)]
        json: bool,
    },
    /// Verify, list, export and prove the site's tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        what: audit::AuditCommand,
    },
    /// Segmentation metrics and agreement statistics from files (offline, DESIGN.md §9).
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
        what: network::ConsortiumCommand,
    },
    /// Run the node daemon and talk to it.
    Node {
        #[command(subcommand)]
        what: network::NodeCommand,
    },
    /// A whole consortium on this machine: three sites, two studies, reports (start here).
    Demo {
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
    },
    /// Federated studies: launch, join, assign, run, report.
    Study {
        #[command(subcommand)]
        what: reader_study::ReaderStudyCommand,
    },
    /// Explain a site policy's decisions.
    Policy {
        #[command(subcommand)]
        what: PolicyCommand,
    },
    /// Measure performance on synthetic data.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the decision for every message kind and recipient role.
    Check {
        policy: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Receipted request-response round trips between two nodes on loopback.
    Network {
        #[arg(long, default_value_t = 400)]
        messages: u64,
        #[arg(long)]
        json: bool,
    },
    /// Audit log appends/s with fsync, proof sizes, verify time.
    Audit {
        /// Entries to append.
        #[arg(long, default_value_t = 2000)]
        entries: u64,
        /// Use (and keep) the site in DIR/site, growing its log.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Print `committed SEQ` on stdout after each append.
        #[arg(long)]
        progress: bool,
        #[arg(long)]
        json: bool,
    },
    /// Annotation import and storage of a mask spanning a whole series (NIfTI and DICOM SEG).
    Annotate {
        /// Size of the synthetic series (WIDTHxHEIGHTxSLICES).
        #[arg(long, default_value = "512x512x300")]
        size: String,
        /// Keep the files here.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Secure-aggregation rounds: real nodes on loopback (round time, bytes per site), the
    /// arithmetic alone for growing rosters, and the demo's studies (rounds, bytes per site).
    Secagg {
        /// Node counts for rounds over the network (comma-separated).
        #[arg(long, default_value = "3,10", value_delimiter = ',')]
        nodes: Vec<usize>,
        /// Timed rounds per node count (after two warm-up rounds).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Elements per vector.
        #[arg(long, default_value_t = 1000)]
        dim: usize,
        /// Site counts for the arithmetic alone, no network (comma-separated).
        #[arg(long, default_value = "3,10,20,50", value_delimiter = ',')]
        sites: Vec<usize>,
        /// Repetitions per site count for the arithmetic.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Skip running `fedanno demo` for its studies' traffic.
        #[arg(long)]
        no_demo: bool,
        #[arg(long)]
        json: bool,
    },
    /// Header ingest throughput (files/s) on synthetic CT files, warm cache.
    Ingest {
        /// At least this many files.
        #[arg(long, default_value_t = 5000)]
        files: usize,
        /// Size of each synthetic series (WIDTHxHEIGHTxSLICES).
        #[arg(long, default_value = "64x64x50")]
        size: String,
        /// Keep the files here (to time a reference tool on the same files).
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
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
    let daemon = matches!(
        cli.command,
        Command::Node {
            what: network::NodeCommand::Run { .. }
        }
    );
    let verbosity = if cli.quiet {
        -1
    } else if daemon && cli.verbose == 0 {
        // A daemon's log is its operators' view: starts, peers, refusals, studies.
        1
    } else {
        cli.verbose.min(3) as i8
    };
    logging::init(cli.log_format, verbosity);
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
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init {
            site_name,
            site_id,
            json,
        } => {
            let r = site::init(&cli.dir, &site_name, site_id.as_deref())?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "Created site {:?} (id {}) in {}",
                    r.site_name, r.site_id, r.dir
                );
                println!("  config    {}", r.config);
                println!("  database  {}", r.database);
                println!("  signing key (Ed25519, public)  {}", r.keys.signing);
                println!("  sealing key (X25519, public)   {}", r.keys.sealing);
                println!(
                    "Secret keys are in {}/keys (mode 0600); back them up offline.",
                    r.dir
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            paths,
            json,
            no_progress,
        } => {
            let site = Site::open(&cli.dir)?;
            let p = site.pseudonymizer()?;
            let progress = !no_progress && !json && std::io::stderr().is_terminal();
            let result = ingest::run(
                &site.store,
                &site.config,
                p,
                IngestOptions { paths, progress },
            )
            .await;
            site.close();
            let report = result?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "Ingested {} instances ({} already present) from {} files: {} series in {} studies; {} skipped. {:.2} s, {:.0} files/s.",
                    report.instances_ingested,
                    report.already_present,
                    report.files_seen,
                    report.series,
                    report.studies,
                    report.skipped.len(),
                    report.seconds,
                    report.files_per_second
                );
                for s in &report.skipped {
                    println!("  skipped {}: {}", s.path, s.reason);
                }
            }
            if report.nothing_read() {
                eprintln!(
                    "error: no DICOM instance could be read from {} files",
                    report.files_seen
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cases {
            modality,
            show_identifiers,
            json,
        } => {
            let site = Site::open(&cli.dir)?;
            let rows = site
                .store
                .list_series(SeriesFilter { modality }, show_identifiers)
                .await;
            site.close();
            let rows = rows?;
            if json {
                print_json(&rows)?;
            } else {
                print_cases(&rows, show_identifiers);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Readers { what } => {
            let site = Site::open(&cli.dir)?;
            let r = annotate::run_readers(&site, what).await;
            site.close();
            r
        }
        Command::Annotate { what } => {
            let site = Site::open(&cli.dir)?;
            let r = annotate::run_annotate(&site, what).await;
            site.close();
            r
        }
        Command::Synth {
            out,
            cases,
            size,
            seed,
            case_prefix,
            local_reader,
            json,
        } => {
            if cases == 0 || cases > 100_000 {
                bail!("--cases must be between 1 and 100000");
            }
            let readers = synth::readers_with_local(&local_reader)?;
            let size = synth::parse_size(&size)?;
            let opts = SynthOptions {
                out,
                cases,
                size,
                seed,
                case_prefix,
                readers,
            };
            let summary = tokio::task::spawn_blocking(move || synth::generate(&opts))
                .await
                .context("synthesis task failed")??;
            if json {
                print_json(&summary)?;
            } else {
                println!(
                    "Wrote {} synthetic cases ({} DICOM files, {}x{}x{} voxels, seed {}) and {} readers' masks and ratings to {}",
                    summary.cases.len(),
                    summary.dicom_files,
                    summary.size[0],
                    summary.size[1],
                    summary.size[2],
                    summary.seed,
                    summary.readers.len(),
                    summary.out
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: BenchCommand::Network { messages, json },
        } => {
            let r = bench::network(messages.max(8)).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.human());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchCommand::Secagg {
                    nodes,
                    rounds,
                    dim,
                    sites,
                    reps,
                    no_demo,
                    json,
                },
        } => {
            let r = bench::secagg(&bench::SecaggOptions {
                nodes,
                rounds,
                dim,
                sites,
                reps,
                demo: !no_demo,
            })
            .await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", r.human());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Consortium { what } => network::run_consortium(&cli.dir, what).await,
        Command::Node { what } => network::run_node(&cli.dir, what).await,
        Command::Study { what } => reader_study::run(&cli.dir, what).await,
        Command::Demo {
            out,
            cases,
            size,
            json,
        } => {
            let size = crate::tools::synth::parse_size(&size)?;
            let s = crate::tools::demo::run(crate::tools::demo::DemoOptions { out, cases, size })
                .await?;
            if json {
                print_json(&s)?;
            } else {
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
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            what: PolicyCommand::Check { policy, json },
        } => network::policy_check(&policy, json),
        Command::Audit { what } => {
            let site = Site::open(&cli.dir)?;
            let r = audit::run(&site, what).await;
            site.close();
            r
        }
        Command::Bench {
            what:
                BenchCommand::Audit {
                    entries,
                    keep,
                    progress,
                    json,
                },
        } => {
            let mut stdout = std::io::stdout();
            let r = crate::network::audit::bench::run(entries, keep, |seq| {
                if progress {
                    use std::io::Write;
                    let _ = writeln!(stdout, "committed {seq}");
                    let _ = stdout.flush();
                }
            })
            .await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.human());
            }
            Ok(if r.verify_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            what: BenchCommand::Annotate { size, keep, json },
        } => {
            let size = synth::parse_size(&size)?;
            let r = bench::annotate(size, keep).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.human());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics { what } => qa::run_metrics(what).await,
        Command::Consensus { what } => qa::run_consensus(what).await,
        Command::Bench {
            what:
                BenchCommand::Ingest {
                    files,
                    size,
                    keep,
                    json,
                },
        } => {
            let size = synth::parse_size(&size)?;
            let r = bench::ingest(files, size, keep).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.human());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_cases(rows: &[crate::site::store::SeriesRow], show_identifiers: bool) {
    if rows.is_empty() {
        println!("No series indexed yet. Run `fedanno ingest PATH`.");
        return;
    }
    println!(
        "{:<46} {:<8} {:<13} {:>5} {:<13} {:<22} {:<28} {:<10}",
        "SERIES", "MODALITY", "KIND", "INST", "GRID", "SPACING (mm)", "PATIENT", "DATE"
    );
    for r in rows {
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
    }
}
