//! `fedanno bench …`: performance on synthetic data, one subcommand per measurement, each
//! dispatched to its bench in `tools::bench` (network, secure aggregation, annotation import,
//! ingest) or `network::audit::bench` (the audit log).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::{emit, exit_code};
use crate::tools::bench::{self, SecaggOptions};
use crate::tools::synth;

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
        /// Segments in the mask (1: one tapering cylinder; more: tiles, as a multi-organ
        /// model writes).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
        segments: u8,
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
    /// Three nodes, one flooded by fresh identities and stalled sockets while a member
    /// restarts: connectivity, the member's return, audit entries and memory.
    Flood {
        #[arg(long, default_value_t = 150)]
        identities: usize,
        #[arg(long, default_value_t = 32)]
        stalled: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long)]
        json: bool,
    },
    /// Witnessing: the add-checkpoint round trip between two nodes, the evidence size, and
    /// `audit cross-check` of three sites' bundles of --entries entries each.
    Witness {
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        #[arg(long, default_value_t = 10_000)]
        entries: u64,
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

pub async fn run(what: BenchCommand) -> Result<ExitCode> {
    match what {
        BenchCommand::Network { messages, json } => {
            let r = bench::network(messages.max(8)).await?;
            emit(json, &r, |r| println!("{}", r.human()))?;
        }
        BenchCommand::Audit {
            entries,
            keep,
            progress,
            json,
        } => return audit(entries, keep, progress, json).await,
        BenchCommand::Annotate {
            size,
            segments,
            keep,
            json,
        } => {
            let r = bench::annotate(synth::parse_size(&size)?, segments, keep).await?;
            emit(json, &r, |r| println!("{}", r.human()))?;
        }
        BenchCommand::Secagg {
            nodes,
            rounds,
            dim,
            sites,
            reps,
            no_demo,
            json,
        } => {
            let options = SecaggOptions {
                nodes,
                rounds,
                dim,
                sites,
                reps,
                demo: !no_demo,
            };
            let r = bench::secagg(&options).await?;
            emit(json, &r, |r| print!("{}", r.human()))?;
        }
        BenchCommand::Flood {
            identities,
            stalled,
            seconds,
            json,
        } => {
            let r = bench::flood(identities, stalled, seconds.max(5)).await?;
            emit(json, &r, |r| println!("{}", r.human()))?;
        }
        BenchCommand::Witness {
            rounds,
            entries,
            json,
        } => {
            let r = bench::witness(rounds, entries).await?;
            emit(json, &r, |r| println!("{}", r.human()))?;
        }
        BenchCommand::Ingest {
            files,
            size,
            keep,
            json,
        } => {
            let r = bench::ingest(files, synth::parse_size(&size)?, keep).await?;
            emit(json, &r, |r| println!("{}", r.human()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench audit`: exits 1 when the grown log does not verify.
async fn audit(
    entries: u64,
    keep: Option<PathBuf>,
    progress: bool,
    json: bool,
) -> Result<ExitCode> {
    let mut stdout = std::io::stdout();
    let r = crate::network::audit::bench::run(entries, keep, |seq| {
        if progress {
            let _ = writeln!(stdout, "committed {seq}");
            let _ = stdout.flush();
        }
    })
    .await?;
    emit(json, &r, |r| println!("{}", r.human()))?;
    Ok(exit_code(r.verify_ok))
}
