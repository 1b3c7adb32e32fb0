//! `fedanno node run`: the composition root of a running site. It opens the site, loads the
//! keys, the consortium membership and the policy, builds the audit log, starts the app (which
//! starts the network), serves the control socket, and shuts everything down in order on
//! SIGINT, SIGTERM or `fedanno node stop`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use crate::app::{Node, NodeParams};
use crate::audit::{self, AuditEvent, AuditLog};
use crate::consortium;
use crate::control;
use crate::identity;
use crate::net::{Multiaddr, NetConfig, Transport};
use crate::policy::Policy;
use crate::site::Site;

/// The site's policy: the configured file, or the built-in research-site policy.
pub fn load_policy(site: &Site) -> Result<Policy> {
    let f = &site.config.network.policy;
    if f.is_empty() {
        return Ok(Policy::default_site());
    }
    let path = site.dir.join(f);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the policy {}", path.display()))?;
    Policy::parse(&text).with_context(|| format!("policy {}", path.display()))
}

fn addrs(list: &[String], what: &str) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .with_context(|| format!("bad {what} address {a:?}"))
        })
        .collect()
}

/// Runs the node until a signal or a stop request.
pub async fn run(
    dir: &Path,
    extra_listen: Vec<String>,
    extra_bootstrap: Vec<String>,
) -> Result<()> {
    let site = Site::open(dir)?;
    let result = run_site(&site, extra_listen, extra_bootstrap).await;
    site.close();
    result
}

/// Starts the node of an opened site (membership, keys, policy and audit log from its files).
pub async fn start_node(
    site: &Site,
    listen: Vec<String>,
    bootstrap: Vec<String>,
) -> Result<(Node, AuditLog)> {
    let m = consortium::load_membership(&site.dir)?;
    let keys = identity::load(&site.dir.join(crate::config::KEYS_DIR))?;
    let signing = Arc::new(keys.signing);
    let policy = load_policy(site)?;
    let me = site.config.site.id.clone();
    let audit_log = AuditLog::new(
        site.store.clone(),
        signing.clone(),
        audit::origin(&m.info.name, &me),
        me.clone(),
    );
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
        libp2p_key: consortium::libp2p_key(&site.dir)?,
        policy,
        store: site.store.clone(),
        audit: audit_log.clone(),
        listen: addrs(&listen, "listen")?,
        bootstrap: addrs(&bootstrap, "bootstrap")?,
        transport: Transport::Tcp,
        net: NetConfig {
            idle_timeout: Duration::from_secs(site.config.network.idle_timeout_secs),
            ..NetConfig::default()
        },
        checkpoint_interval: Some(Duration::from_secs(
            site.config.network.checkpoint_interval_secs,
        )),
    };
    Ok((Node::start(params).await?, audit_log))
}

async fn run_site(
    site: &Site,
    extra_listen: Vec<String>,
    extra_bootstrap: Vec<String>,
) -> Result<()> {
    let listen = if extra_listen.is_empty() {
        site.config.network.listen.clone()
    } else {
        extra_listen
    };
    let mut bootstrap = site.config.network.bootstrap.clone();
    bootstrap.extend(extra_bootstrap);
    let (node, audit_log) = start_node(site, listen, bootstrap).await?;
    for a in &node.handle.shared.listening {
        tracing::info!(address = %a, peer_id = %node.handle.net().peer_id(), "node listening");
        // The one line operators and scripts read to know where the node is.
        println!("listening on {a}/p2p/{}", node.handle.net().peer_id());
    }
    let stop = node.shutdown.clone();
    let control = tokio::spawn({
        let (dir, h, stop) = (site.dir.clone(), node.handle.clone(), stop.clone());
        async move { control::serve(&dir, h, stop).await }
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
