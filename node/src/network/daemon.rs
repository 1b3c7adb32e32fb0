//! `fedanno node run`: the composition root of a running site. It opens the site, applies the
//! `FEDANNO_*` environment overrides, checks the addresses, loads the keys, the consortium
//! membership and the policy (each failure names its file or value and what to do), builds the
//! audit log, starts the app (which starts the network), serves the control socket, and shuts
//! everything down in order on SIGINT, SIGTERM or `fedanno node stop`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::network::audit::{AuditEvent, AuditLog};
use crate::network::consortium;
use crate::network::control;
use crate::network::node::{Node, NodeParams};
use crate::network::p2p::{Multiaddr, NetConfig, Protocol, Transport};
use crate::network::policy::Policy;
use crate::site::Site;
use crate::site::config::CONFIG_FILE;
use crate::site::identity;

/// The site's policy: the configured file, or the built-in one: the research-site policy, or
/// for an auditor's node (`fetch_only`, its certificate's only role `auditor`) the auditor
/// policy.
pub fn load_policy(site: &Site, fetch_only: bool) -> Result<Policy> {
    let f = &site.config.network.policy;
    if f.is_empty() {
        return Ok(if fetch_only {
            Policy::auditor()
        } else {
            Policy::default_site()
        });
    }
    let path = site.dir.join(f);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the site policy {} (network.policy in config.toml or FEDANNO_POLICY: a file relative to the site directory, or empty for the built-in research-site policy)",
            path.display()
        )
    })?;
    Policy::parse(&text).with_context(|| {
        format!(
            "the site policy {} is invalid; `fedanno policy check {}` explains it",
            path.display(),
            path.display()
        )
    })
}

/// A configured address and where it came from (named in every error about it).
#[derive(Debug, Clone)]
pub struct Sourced {
    pub value: String,
    pub source: String,
}

fn sourced(list: &[String], source: &str) -> Vec<Sourced> {
    list.iter()
        .map(|v| Sourced {
            value: v.clone(),
            source: source.to_string(),
        })
        .collect()
}

/// The IP address and TCP port of a multiaddress, or why it has none.
pub(crate) fn ip_tcp(a: &Multiaddr) -> Result<(std::net::IpAddr, u16), String> {
    let mut ip = None;
    let mut port = None;
    for p in a.iter() {
        match p {
            Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(v)),
            Protocol::Ip6(v) => ip = Some(std::net::IpAddr::V6(v)),
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_) => {
                return Err(
                    "host names are not resolved: give the IP address (/ip4/… or /ip6/…)".into(),
                );
            }
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok((ip, port)),
        (None, _) => Err("it names no IP address (/ip4/… or /ip6/…)".into()),
        (_, None) => Err("it names no TCP port (/tcp/PORT)".into()),
    }
}

/// Parses and checks listen addresses: `/ip4/ADDR/tcp/PORT` or `/ip6/ADDR/tcp/PORT`.
pub fn listen_addrs(list: &[Sourced]) -> Result<Vec<Multiaddr>> {
    parse_addrs(
        list,
        "listen",
        "Write it as /ip4/0.0.0.0/tcp/4100 (every IPv4 interface) or /ip4/ADDRESS/tcp/PORT",
        |a| ip_tcp(a).map(|_| ()),
    )
}

/// Parses and checks bootstrap addresses: `/ip4/ADDR/tcp/PORT/p2p/PEER_ID`.
pub fn bootstrap_addrs(list: &[Sourced]) -> Result<Vec<Multiaddr>> {
    parse_addrs(
        list,
        "bootstrap",
        "A bootstrap address is the `listening on …` line another site's node printed, with an IP address this machine can reach: /ip4/10.1.2.3/tcp/4100/p2p/12D3KooW…",
        |a| {
            let (ip, port) = ip_tcp(a)?;
            if ip.is_unspecified() || port == 0 {
                return Err(format!(
                    "{ip} port {port} is a listen wildcard, not an address a node can be reached at"
                ));
            }
            if !a.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                return Err("it lacks the peer id (/p2p/12D3KooW…)".into());
            }
            Ok(())
        },
    )
}

/// Parses each sourced value as a multiaddress and applies `check`; an error names the value,
/// where it came from, what was wrong and (`hint`) how to write it.
fn parse_addrs(
    list: &[Sourced],
    what: &str,
    hint: &str,
    check: impl Fn(&Multiaddr) -> std::result::Result<(), String>,
) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|s| {
            let bad = |why: String| {
                anyhow::anyhow!(
                    "bad {what} address {:?} (from {}): {why}. {hint}",
                    s.value,
                    s.source
                )
            };
            let a = s
                .value
                .parse::<Multiaddr>()
                .map_err(|e| bad(format!("not a multiaddress ({e})")))?;
            check(&a).map_err(bad)?;
            Ok(a)
        })
        .collect()
}

/// Checks that every listen port with a fixed number can be bound, so a port held by another
/// program (or another node) is named before anything starts or is audited.
fn check_ports_free(addrs: &[Multiaddr], list: &[Sourced]) -> Result<()> {
    for (a, s) in addrs.iter().zip(list) {
        let Ok((ip, port)) = ip_tcp(a) else { continue };
        if port == 0 {
            continue;
        }
        if let Err(e) = std::net::TcpListener::bind((ip, port)) {
            let what = match e.kind() {
                std::io::ErrorKind::AddrInUse => format!(
                    "TCP port {port} is already in use by another program (another fedanno node?). Stop that program, or choose another port in {}",
                    s.source
                ),
                std::io::ErrorKind::AddrNotAvailable => format!(
                    "{ip} is not an address of this machine. Use one of its addresses, or 0.0.0.0 for all of them, in {}",
                    s.source
                ),
                std::io::ErrorKind::PermissionDenied => format!(
                    "not allowed to listen on port {port} (ports below 1024 need privileges). Use a port such as 4100 in {}",
                    s.source
                ),
                _ => format!("{e}. Check {}", s.source),
            };
            bail!("cannot listen on {}: {what}", s.value);
        }
    }
    Ok(())
}

/// Runs the node until a signal or a stop request. `cli_listen` replaces the configured listen
/// addresses, `cli_bootstrap` adds to the configured bootstrap peers; the `FEDANNO_*`
/// environment overrides (`config::ENV_OVERRIDES`) rank between the flags and config.toml.
pub async fn run(dir: &Path, cli_listen: Vec<String>, cli_bootstrap: Vec<String>) -> Result<()> {
    if control::answers(dir).await {
        bail!(
            "a node is already running for the site {} (its control socket answers): stop it with `fedanno node stop`, or give this node its own site directory",
            dir.display()
        );
    }
    let mut site = Site::open(dir)?;
    let result = async {
        let applied = site.config.apply_env(|k| std::env::var(k).ok())?;
        let config_key =
            |key: &str| format!("{} [network] {key}", site.dir.join(CONFIG_FILE).display());
        let source = |var: &str, key: &str| {
            if applied.contains(&var) {
                var.to_string()
            } else {
                config_key(key)
            }
        };
        let listen = if cli_listen.is_empty() {
            sourced(
                &site.config.network.listen,
                &source("FEDANNO_LISTEN", "listen"),
            )
        } else {
            sourced(&cli_listen, "--listen")
        };
        let mut bootstrap = sourced(
            &site.config.network.bootstrap,
            &source("FEDANNO_BOOTSTRAP", "bootstrap"),
        );
        bootstrap.extend(sourced(&cli_bootstrap, "--bootstrap"));
        tracing::info!(
            site = %site.config.site.id,
            environment_overrides = ?applied,
            listen = ?listen.iter().map(|s| &s.value).collect::<Vec<_>>(),
            bootstrap_peers = bootstrap.len(),
            "starting the node"
        );
        if listen.is_empty() {
            bail!(
                "no listen address: set [network] listen in {}, FEDANNO_LISTEN or --listen",
                site.dir.join(CONFIG_FILE).display()
            );
        }
        let listen_checked = listen_addrs(&listen)?;
        let bootstrap = bootstrap_addrs(&bootstrap)?;
        check_ports_free(&listen_checked, &listen)?;
        run_site(&site, listen_checked, bootstrap).await
    }
    .await;
    site.close();
    result
}

/// What a node started by code (the demo, benchmarks, tests) may set instead of the site's
/// files. The default is what `node run` does.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Instead of the site's policy file.
    pub policy: Option<Policy>,
    /// Instead of `[network] checkpoint_interval_secs`: `Some(None)` signs checkpoints only on
    /// demand.
    pub checkpoint_interval: Option<Option<Duration>>,
    /// Shown every outbound frame before Noise (see `NetConfig::tap`).
    pub tap: Option<crate::network::p2p::Tap>,
}

/// Starts the node of an opened site (membership, keys, policy and audit log from its files).
pub async fn start_node(
    site: &Site,
    listen: Vec<String>,
    bootstrap: Vec<String>,
    options: &StartOptions,
) -> Result<(Node, AuditLog)> {
    let listen = listen_addrs(&sourced(&listen, "the listen addresses"))?;
    let bootstrap = bootstrap_addrs(&sourced(&bootstrap, "the bootstrap addresses"))?;
    start_checked(site, listen, bootstrap, options).await
}

/// Starts the node on checked addresses. Membership, keys and policy are loaded (each failure
/// names its file and what to do) before the first audit entry is written.
async fn start_checked(
    site: &Site,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    options: &StartOptions,
) -> Result<(Node, AuditLog)> {
    let m = consortium::load_membership(&site.dir)?;
    let keys_dir = site.dir.join(crate::site::config::KEYS_DIR);
    let keys = identity::load(&keys_dir).map_err(|e| {
        let hint = match &e {
            identity::IdentityError::Permissions { .. } => "",
            _ => {
                " The node must run as the account that owns the site directory (key files are mode 0600); restore a missing or damaged key file from the site's offline backup of keys/"
            }
        };
        anyhow::anyhow!("the site's keys cannot be loaded: {e}.{hint}")
    })?;
    let libp2p_key = consortium::existing_libp2p_key(&site.dir)?;
    let peer = libp2p_key.public().to_peer_id();
    if let Some(which) = consortium::key_mismatch(&m.body, &keys, &peer) {
        bail!(
            "the site's {which} in {} is not the one this site's certificate was issued for: restore keys/ from the site's offline backup, or request and join a new certificate",
            keys_dir.display()
        );
    }
    let signing = Arc::new(keys.signing);
    let policy = match &options.policy {
        Some(p) => p.clone(),
        None => load_policy(site, fedanno_protocol::cert::fetch_only(&m.body.roles))?,
    };
    let me = site.config.site.id.clone();
    let audit_log = AuditLog::open(
        site.store.clone(),
        signing.clone(),
        me.clone(),
        Some(&m.info.name),
    )
    .await?;
    audit_log
        .record(AuditEvent::Membership {
            what: format!(
                "node started as {} (certificate serial {})",
                me, m.body.serial
            ),
        })
        .await?;
    let params = NodeParams {
        site: me,
        consortium: m.info.name.clone(),
        certificate: m.certificate,
        certificate_body: m.body,
        trust: m.trust,
        signing,
        sealing: keys.sealing,
        libp2p_key,
        policy,
        store: site.store.clone(),
        audit: audit_log.clone(),
        listen,
        bootstrap,
        transport: Transport::Tcp,
        net: NetConfig {
            idle_timeout: Duration::from_secs(site.config.network.idle_timeout_secs),
            tap: options.tap.clone(),
            ..NetConfig::default()
        },
        checkpoint_interval: options
            .checkpoint_interval
            .unwrap_or(Some(Duration::from_secs(
                site.config.network.checkpoint_interval_secs,
            ))),
        revocations_file: Some(
            site.dir
                .join(consortium::SITE_DIR)
                .join(consortium::CRL_FILE),
        ),
    };
    Ok((Node::start(params).await?, audit_log))
}

async fn run_site(site: &Site, listen: Vec<Multiaddr>, bootstrap: Vec<Multiaddr>) -> Result<()> {
    let (node, audit_log) =
        start_checked(site, listen, bootstrap, &StartOptions::default()).await?;
    // The control socket exists before the node announces itself: a script that reads the
    // `listening on` line can talk to the node at once.
    let control_listener = control::bind(&site.dir)?;
    for a in node.handle.listen_addrs() {
        tracing::info!(address = %a, peer_id = %node.handle.peer_id(), "node listening");
        // The one line operators and scripts read to know where the node is.
        println!("listening on {a}/p2p/{}", node.handle.peer_id());
    }
    let stop = node.shutdown.clone();
    let control = tokio::spawn({
        let (dir, h, stop) = (site.dir.clone(), node.handle.clone(), stop.clone());
        async move { control::serve_on(control_listener, &dir, h, stop).await }
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut stopped = stop.subscribe();
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = stopped.changed() => tracing::info!("stop requested: shutting down"),
    }
    let _ = stop.send(true);
    let _ = control.await;
    audit_log
        .record(AuditEvent::Membership {
            what: "node stopped".into(),
        })
        .await?;
    node.stop().await;
    Ok(())
}
