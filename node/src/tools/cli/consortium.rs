//! `fedanno consortium …`: consortium governance (root key, admissions, revocations) and a
//! site's membership files (joining, newer revocation lists).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fedanno_protocol::cert::Role;

use super::with_site;
use crate::network::consortium::{self, Root};
use crate::network::control;
use crate::site::calendar::rfc3339;

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

pub async fn run(dir: &Path, cmd: ConsortiumCommand) -> Result<ExitCode> {
    match cmd {
        ConsortiumCommand::New { name, out } => new(&name, &out)?,
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
            admit(&root, &request, &r, valid_days, not_before, &out)?;
        }
        ConsortiumCommand::Revoke {
            root,
            serial,
            site,
            reason,
        } => revoke(&root, serial, site.as_deref(), &reason)?,
        ConsortiumCommand::Join {
            info,
            certificate,
            crl,
        } => join(dir, &info, &certificate, crl.as_deref()).await?,
        ConsortiumCommand::UpdateRevocations { crl } => {
            let m =
                consortium::read_info(&dir.join(consortium::SITE_DIR).join(consortium::INFO_FILE))?;
            let n = consortium::install_crl(dir, &m, &crl)?;
            if control::answers(dir).await {
                control::revocations(dir).await?;
                println!(
                    "Installed revocation list number {n}; the running node applied it (revoked members are disconnected) and passes it on to the members."
                );
            } else {
                println!(
                    "Installed revocation list number {n}; the node applies it when it starts."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_roles(s: &str) -> Result<Vec<Role>> {
    s.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            r.trim()
                .parse::<Role>()
                .map_err(|_| anyhow::anyhow!("unknown role {r:?} (site, coordinator, auditor)"))
        })
        .collect()
}

fn new(name: &str, out: &Path) -> Result<()> {
    let info = consortium::new_root(name, out)?;
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
    Ok(())
}

fn admit(
    root: &Path,
    request: &Path,
    roles: &str,
    valid_days: u64,
    not_before: Option<u64>,
    out: &Path,
) -> Result<()> {
    let mut root = Root::open(root)?;
    let req =
        std::fs::read(request).with_context(|| format!("cannot read {}", request.display()))?;
    let (cert, body) = root.admit_at(&req, &parse_roles(roles)?, valid_days, not_before)?;
    crate::site::files::write_bytes(out, &cert.to_bytes()).context("cannot write")?;
    println!(
        "Admitted site {} (serial {}, roles {}, valid until {}); certificate in {}.",
        body.site_id,
        body.serial,
        body.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
        rfc3339(body.not_after as i64),
        out.display()
    );
    Ok(())
}

fn revoke(root: &Path, serial: Option<u64>, site: Option<&str>, reason: &str) -> Result<()> {
    if serial.is_none() && site.is_none() {
        bail!("name what to revoke with --serial or --site");
    }
    let mut root = Root::open(root)?;
    let serials = root.revoke(serial, site, reason)?;
    println!(
        "Revoked serial(s) {:?}; revocation list number {} in {}. Give it to every site (`fedanno consortium update-revocations`).",
        serials,
        root.ledger.crl_number,
        root.dir.join(consortium::CRL_FILE).display()
    );
    Ok(())
}

async fn join(dir: &Path, info: &Path, certificate: &Path, crl: Option<&Path>) -> Result<()> {
    let body = with_site(dir, async |site| {
        consortium::join(&site.dir, &site.config.site.id, info, certificate, crl)
    })
    .await?;
    println!(
        "Joined consortium {} as {} (serial {}, valid until {}).",
        body.consortium,
        body.site_id,
        body.serial,
        rfc3339(body.not_after as i64)
    );
    if let Ok(peer) = crate::network::p2p::PeerId::from_bytes(&body.peer_id) {
        println!(
            "Other sites bootstrap to this one at /ip4/<this machine's address>/tcp/<port>/p2p/{peer}"
        );
    }
    Ok(())
}
