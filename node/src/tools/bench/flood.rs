//! `fedanno bench flood`: three certified nodes on loopback, one of them (A) flooded by fresh
//! identities that connect and send junk before any membership proof, and by raw TCP sockets
//! that never finish a handshake; a member is restarted during the flood. Measures whether the
//! members stay connected, how long the restarted member takes to be back with both peers, how
//! many audit entries the flood cost A per minute, and how much the process's resident memory
//! grew (all three nodes and every attacker run in this process, so that is an upper bound of
//! what A itself took).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::network::daemon::{self, StartOptions};
use crate::network::node::Node;
use crate::network::p2p::{self, Keypair, NetConfig, Protocol, Transport};
use crate::site::store::AuditFilter;
use crate::tools::local_consortium::{LocalConsortium, Member};

#[derive(Debug, Serialize)]
pub struct FloodBench {
    pub identities: usize,
    pub stalled_sockets: usize,
    pub seconds: u64,
    /// Junk requests the identities managed to send (refused ones included).
    pub junk_sent: u64,
    /// Seconds until the member restarted during the flood was back with both peers.
    pub restarted_member_back_secs: f64,
    pub members_connected_at_end: Vec<usize>,
    pub audit_entries_added: u64,
    pub audit_entries_per_minute: f64,
    pub rss_before_mb: f64,
    pub rss_growth_mb: f64,
}

impl FloodBench {
    pub fn human(&self) -> String {
        format!(
            "flood of {} identities and {} stalled sockets for {} s ({} junk requests): restarted member back with both peers in {:.2} s; members connected at the end {:?}; A's audit log +{} entries ({:.1}/min); process RSS {:.1} MB, +{:.1} MB",
            self.identities,
            self.stalled_sockets,
            self.seconds,
            self.junk_sent,
            self.restarted_member_back_secs,
            self.members_connected_at_end,
            self.audit_entries_added,
            self.audit_entries_per_minute,
            self.rss_before_mb,
            self.rss_growth_mb
        )
    }
}

/// This process's resident memory, in MB (Linux).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One fresh identity: dials `target` and sends junk until `until`; returns how many it sent.
async fn stranger(target: p2p::Multiaddr, until: Instant) -> u64 {
    let Ok((h, mut events)) = p2p::spawn(
        Keypair::generate_ed25519(),
        &NetConfig::default(),
        Transport::Tcp,
    ) else {
        return 0;
    };
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let Some(Protocol::P2p(peer)) = target.iter().last() else {
        return 0;
    };
    let mut sent = 0;
    while Instant::now() < until {
        let _ = h.dial(target.clone()).await;
        if h.request(peer, vec![0x5a; 16 * 1024]).await.is_ok() {
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sent
}

async fn audit_len(n: &crate::site::Site) -> Result<u64> {
    Ok(n.store.audit_entries(AuditFilter::default()).await?.len() as u64)
}

pub async fn flood(identities: usize, stalled: usize, seconds: u64) -> Result<FloodBench> {
    let tmp = std::env::temp_dir().join(format!(
        "fedanno-bench-flood-{}-{}",
        std::process::id(),
        crate::site::clock::now()
    ));
    std::fs::create_dir_all(&tmp)?;
    let r = run(&tmp, identities, stalled, seconds).await;
    let _ = std::fs::remove_dir_all(&tmp);
    r
}

async fn run(
    tmp: &std::path::Path,
    identities: usize,
    stalled: usize,
    seconds: u64,
) -> Result<FloodBench> {
    let ids = ["site-a", "site-b", "site-c"];
    let local = LocalConsortium::create(tmp, "flood", &Member::list(&ids, "Flood"), 1)?;
    let nodes = local
        .start(|_| StartOptions::default(), Duration::from_secs(60))
        .await?;
    let [na, nb, nc]: [Node; 3] = nodes
        .try_into()
        .map_err(|_| anyhow::anyhow!("three nodes"))?;
    let target = na.handle.dial_addrs()[0].clone();
    let socket = daemon::ip_tcp(&target)
        .map(std::net::SocketAddr::from)
        .map_err(|e| anyhow::anyhow!("A's address: {e}"))?;
    let (rss_before, audit_before) = (rss_mb(), audit_len(&local.sites[0]).await?);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);

    let mut sockets = Vec::new();
    for _ in 0..stalled {
        sockets.push(tokio::net::TcpStream::connect(socket).await?);
    }
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..identities {
        attackers.spawn(stranger(target.clone(), until));
    }
    // A member restarts during the flood.
    tokio::time::sleep(Duration::from_secs(seconds.min(10) / 2)).await;
    nc.stop().await;
    let restart = Instant::now();
    let bootstrap = vec![target.to_string(), nb.handle.dial_addrs()[0].to_string()];
    let listen = vec!["/ip4/127.0.0.1/tcp/0".to_string()];
    let (nc, _) =
        daemon::start_node(&local.sites[2], listen, bootstrap, &StartOptions::default()).await?;
    let back = nc
        .handle
        .wait_until(Duration::from_secs(60), |h| h.members().len() == 2)
        .await;
    let back_secs = if back {
        restart.elapsed().as_secs_f64()
    } else {
        f64::INFINITY
    };

    let mut junk_sent = 0;
    while let Some(r) = attackers.join_next().await {
        junk_sent += r.unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let added = audit_len(&local.sites[0])
        .await?
        .saturating_sub(audit_before);
    let r = FloodBench {
        identities,
        stalled_sockets: stalled,
        seconds,
        junk_sent,
        restarted_member_back_secs: back_secs,
        members_connected_at_end: [&na, &nb, &nc]
            .iter()
            .map(|n| n.handle.members().len())
            .collect(),
        audit_entries_added: added,
        audit_entries_per_minute: added as f64 * 60.0 / elapsed,
        rss_before_mb: rss_before,
        rss_growth_mb: rss_mb() - rss_before,
    };
    drop(sockets);
    for n in [na, nb, nc] {
        n.stop().await;
    }
    Ok(r)
}
