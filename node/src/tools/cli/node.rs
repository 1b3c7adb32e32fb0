//! `fedanno node …`: the site's certificate request, the node daemon, and the clients of a
//! running node's control socket (status, peers, notice, checkpoint, witness, stop).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use super::{Sorted, emit, exit_code, print_json, with_site};
use crate::network::consortium;
use crate::network::control;
use crate::network::node::Status;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Write this site's signed certificate request (for the consortium to admit).
    Request {
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the node until SIGINT/SIGTERM or `node stop`.
    Run {
        /// Listen addresses (replace FEDANNO_LISTEN and config.toml's).
        #[arg(long)]
        listen: Vec<String>,
        /// Extra bootstrap peers (added to FEDANNO_BOOTSTRAP's or config.toml's).
        #[arg(long)]
        bootstrap: Vec<String>,
    },
    /// The running node's status and health. Exits 1 when no node answers or the node is
    /// unhealthy (certificate not valid now, audit log head unreadable): a health check.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The members the running node has proven on its connections.
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// Send a notice to one member (policy-gated, audited, receipted).
    Notice {
        #[arg(long)]
        to: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        body: String,
    },
    /// Sign a checkpoint of the audit log now and publish it to the members.
    Checkpoint,
    /// Ask a member to co-sign this site's latest checkpoint.
    Witness {
        #[arg(long)]
        to: String,
    },
    /// Stop the running node.
    Stop,
}

pub async fn run(dir: &Path, cmd: NodeCommand) -> Result<ExitCode> {
    match cmd {
        NodeCommand::Request { out } => request(dir, &out).await?,
        NodeCommand::Run { listen, bootstrap } => {
            crate::network::daemon::run(dir, listen, bootstrap).await?
        }
        NodeCommand::Status { json } => return status(dir, json).await,
        // The members are printed as JSON, with or without --json.
        NodeCommand::Peers { json: _ } => print_json(&Sorted(&control::peers(dir).await?))?,
        NodeCommand::Notice { to, topic, body } => {
            control::notice(dir, to.clone(), topic, body).await?;
            println!("Notice delivered to {to}, receipt verified.");
        }
        NodeCommand::Checkpoint => print_json(&Sorted(&control::checkpoint(dir).await?))?,
        NodeCommand::Witness { to } => {
            control::witness(dir, to.clone()).await?;
            println!("{to} co-signed this site's checkpoint.");
        }
        NodeCommand::Stop => {
            control::stop(dir).await?;
            println!("The node is stopping.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn request(dir: &Path, out: &Path) -> Result<()> {
    let (bytes, id) = with_site(dir, async |site| {
        let c = &site.config.site;
        Ok((consortium::request(&site.dir, &c.id, &c.name), c.id.clone()))
    })
    .await?;
    crate::site::files::write_bytes(out, &bytes?).context("cannot write")?;
    println!(
        "Wrote the certificate request of site {id} to {}; send it to the consortium.",
        out.display()
    );
    Ok(())
}

/// What `node status` prints: the node's status, with `"running": true` under `--json`.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<bool>,
}

/// What `node status --json` prints when no node answers.
#[derive(Serialize)]
struct NotRunning {
    running: bool,
    healthy: bool,
    error: String,
}

/// `node status`: prints the status (`--json`: one object; when no node answers,
/// `{"running": false, "healthy": false, "error": …}`) and exits 1 unless the node answers and
/// is healthy.
async fn status(dir: &Path, json: bool) -> Result<ExitCode> {
    let status = match control::status(dir).await {
        Ok(s) => s,
        Err(e) => {
            let error = crate::errors::chain(&e);
            let down = NotRunning {
                running: false,
                healthy: false,
                error: error.clone(),
            };
            // With --json, the JSON; no text (the error goes to stderr).
            emit(json, &Sorted(&down), |_| ())?;
            eprint!(
                "{}",
                crate::tools::logging::escape_line(&format!("error: {error}\n"))
            );
            return Ok(ExitCode::from(1));
        }
    };
    print_json(&Sorted(&Shown {
        status: &status,
        running: json.then_some(true),
    }))?;
    if !status.healthy {
        for p in &status.problems {
            eprintln!("unhealthy: {p}");
        }
    }
    for a in &status.alarms {
        eprintln!(
            "{}",
            crate::tools::logging::escape_line(&format!("ALARM: {a}"))
        );
    }
    Ok(exit_code(status.healthy))
}
