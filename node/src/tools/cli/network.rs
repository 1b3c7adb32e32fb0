//! `fedanno consortium …`, `fedanno node …` and `fedanno policy check`: consortium governance
//! (root key, admissions, revocations), a site's membership files, the node daemon and its
//! control clients, and explaining a policy's decisions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fedanno_protocol::cert::Role;

use super::print_json;
use crate::network::consortium::{self, Root};
use crate::network::control::{self, ControlRequest};
use crate::network::kinds::MessageKind;
use crate::network::policy::{Outbound, Policy};
use crate::site::Site;

#[derive(Debug, Subcommand)]
pub enum ConsortiumCommand {
    /// Create a consortium: a root key (keep it offline) and the public consortium.info.
    New {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Admit a site: verify its request and issue its certificate.
    Admit {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        request: PathBuf,
        /// site, coordinator, auditor (comma-separated).
        #[arg(long, default_value = "site")]
        roles: String,
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
        /// Start of validity (RFC 3339, YYYY-MM-DD or Unix seconds; default: five minutes
        /// ago), e.g. for a certificate issued ahead of a renewal.
        #[arg(long)]
        valid_from: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a site's certificates (or one serial) and issue a new revocation list.
    Revoke {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        serial: Option<u64>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// At a site: install the consortium info, this site's certificate and the revocation list.
    Join {
        info: PathBuf,
        certificate: PathBuf,
        crl: Option<PathBuf>,
    },
    /// At a site: install a newer revocation list.
    UpdateRevocations { crl: PathBuf },
}

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

fn roles(s: &str) -> Result<Vec<Role>> {
    s.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            r.trim()
                .parse::<Role>()
                .map_err(|_| anyhow::anyhow!("unknown role {r:?} (site, coordinator, auditor)"))
        })
        .collect()
}

pub async fn run_consortium(dir: &std::path::Path, cmd: ConsortiumCommand) -> Result<ExitCode> {
    match cmd {
        ConsortiumCommand::New { name, out } => {
            let info = consortium::new_root(&name, &out)?;
            println!(
                "Created consortium {:?} in {} (root fingerprint {}).",
                info.name,
                out.display(),
                info.fingerprint()
            );
            println!(
                "Keep {} offline; give every site {}.",
                out.join(consortium::ROOT_KEY_FILE).display(),
                out.join(consortium::INFO_FILE).display()
            );
        }
        ConsortiumCommand::Admit {
            root,
            request,
            roles: r,
            valid_days,
            valid_from,
            out,
        } => {
            let not_before = valid_from
                .as_deref()
                .map(super::audit::parse_time)
                .transpose()
                .context("--valid-from")?;
            let mut root = Root::open(&root)?;
            let req = std::fs::read(&request)
                .with_context(|| format!("cannot read {}", request.display()))?;
            let (cert, body) = root.admit_at(&req, &roles(&r)?, valid_days, not_before)?;
            std::fs::write(&out, cert.to_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "Admitted site {} (serial {}, roles {}, valid until {}); certificate in {}.",
                body.site_id,
                body.serial,
                body.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                crate::site::calendar::rfc3339(body.not_after as i64),
                out.display()
            );
        }
        ConsortiumCommand::Revoke {
            root,
            serial,
            site,
            reason,
        } => {
            if serial.is_none() && site.is_none() {
                bail!("name what to revoke with --serial or --site");
            }
            let mut root = Root::open(&root)?;
            let serials = root.revoke(serial, site.as_deref(), &reason)?;
            println!(
                "Revoked serial(s) {:?}; revocation list number {} in {}. Give it to every site (`fedanno consortium update-revocations`).",
                serials,
                root.ledger.crl_number,
                root.dir.join(consortium::CRL_FILE).display()
            );
        }
        ConsortiumCommand::Join {
            info,
            certificate,
            crl,
        } => {
            let site = Site::open(dir)?;
            let r = consortium::join(
                &site.dir,
                &site.config.site.id,
                &info,
                &certificate,
                crl.as_deref(),
            );
            site.close();
            let body = r?;
            println!(
                "Joined consortium {} as {} (serial {}, valid until {}).",
                body.consortium,
                body.site_id,
                body.serial,
                crate::site::calendar::rfc3339(body.not_after as i64)
            );
            if let Ok(peer) = crate::network::p2p::PeerId::from_bytes(&body.peer_id) {
                println!(
                    "Other sites bootstrap to this one at /ip4/<this machine's address>/tcp/<port>/p2p/{peer}"
                );
            }
        }
        ConsortiumCommand::UpdateRevocations { crl } => {
            let m =
                consortium::read_info(&dir.join(consortium::SITE_DIR).join(consortium::INFO_FILE))?;
            let n = consortium::install_crl(dir, &m, &crl)?;
            println!("Installed revocation list number {n}; restart the node to apply it.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_node(dir: &std::path::Path, cmd: NodeCommand) -> Result<ExitCode> {
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
async fn node_status(dir: &std::path::Path, json: bool) -> Result<ExitCode> {
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

/// `policy check POLICY`: every message kind to every role, with the deciding rule.
pub fn policy_check(path: &std::path::Path, json: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let p = Policy::parse(&text)?;
    let mut rows = Vec::new();
    for &kind in MessageKind::ALL {
        for role in Role::ALL.iter().map(|r| Some(vec![*r])).chain([None]) {
            let d = p.decide(&Outbound::simple(kind, role.as_deref()));
            rows.push(serde_json::json!({
                "kind": kind,
                "to": role.map_or("broadcast".to_string(), |r| r[0].to_string()),
                "allowed": d.allowed, "rule": d.rule, "reasons": d.reasons,
            }));
        }
    }
    if json {
        print_json(&serde_json::json!({"policy": p.name, "decisions": rows}))?;
    } else {
        println!("Policy {:?}: {}", p.name, p.description);
        for r in &rows {
            println!(
                "  {:<20} to {:<12} {:<6} by {:<32} {}",
                r["kind"].as_str().unwrap_or_default(),
                r["to"].as_str().unwrap_or_default(),
                if r["allowed"] == true {
                    "ALLOW"
                } else {
                    "deny"
                },
                r["rule"].as_str().unwrap_or_default(),
                r["reasons"]
                    .as_array()
                    .and_then(|a| a.last())
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
