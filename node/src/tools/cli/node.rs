//! `fedanno node …`: the site's certificate request, the node daemon, and the clients of a
//! running node's control socket (status, peers, notice, checkpoint, witness, stop).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::print_json;
use crate::network::consortium;
use crate::network::control::{self, ControlRequest};
use crate::site::Site;

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
    let print = |v: serde_json::Value, json: bool| -> Result<()> {
        if json {
            print_json(&v)
        } else {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
    };
    match cmd {
        NodeCommand::Request { out } => {
            let site = Site::open(dir)?;
            let bytes =
                consortium::request(&site.dir, &site.config.site.id, &site.config.site.name);
            let id = site.config.site.id.clone();
            site.close();
            std::fs::write(&out, bytes?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "Wrote the certificate request of site {id} to {}; send it to the consortium.",
                out.display()
            );
        }
        NodeCommand::Run { listen, bootstrap } => {
            crate::network::daemon::run(dir, listen, bootstrap).await?
        }
        NodeCommand::Status { json } => return node_status(dir, json).await,
        NodeCommand::Peers { json } => {
            print(control::call(dir, &ControlRequest::Peers).await?, json)?
        }
        NodeCommand::Notice { to, topic, body } => {
            control::call(
                dir,
                &ControlRequest::Notice {
                    to: to.clone(),
                    topic,
                    body,
                },
            )
            .await?;
            println!("Notice delivered to {to}, receipt verified.");
        }
        NodeCommand::Checkpoint => print(
            control::call(dir, &ControlRequest::Checkpoint).await?,
            false,
        )?,
        NodeCommand::Witness { to } => {
            control::call(dir, &ControlRequest::Witness { to: to.clone() }).await?;
            println!("{to} co-signed this site's checkpoint.");
        }
        NodeCommand::Stop => {
            control::call(dir, &ControlRequest::Stop).await?;
            println!("The node is stopping.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `node status`: prints the status (`--json`: one object; when no node answers,
/// `{"running": false, "healthy": false, "error": …}`) and exits 1 unless the node answers and
/// is healthy.
async fn node_status(dir: &Path, json: bool) -> Result<ExitCode> {
    let mut v = match control::call(dir, &ControlRequest::Status).await {
        Ok(v) => v,
        Err(e) => {
            if json {
                print_json(&serde_json::json!({
                    "running": false, "healthy": false, "error": format!("{e:#}"),
                }))?;
            }
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let healthy = v["healthy"].as_bool() == Some(true);
    if json {
        v["running"] = serde_json::Value::Bool(true);
        print_json(&v)?;
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if !healthy {
        for p in v["problems"].as_array().into_iter().flatten() {
            eprintln!("unhealthy: {}", p.as_str().unwrap_or_default());
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
