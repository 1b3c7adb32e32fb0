//! `fedanno bench flood`: three certified nodes on loopback, each a separate `fedanno node run`
//! process; one of them (A) is flooded from this process by fresh identities that connect and
//! send junk before any membership proof, and by raw TCP sockets that never finish a
//! handshake; a member (C) is killed with SIGKILL during the flood and started again with A as
//! its only bootstrap address. Measures whether the members stay connected, how long C takes to
//! be back with both peers, how many audit entries the flood cost A per minute, and how far A's
//! resident memory rose above its level before the flood (sampled every 250 ms).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::network::control;
use crate::network::daemon;
use crate::network::p2p::{self, Keypair, NetConfig, Protocol, Transport};
use crate::tools::local_consortium::{LocalConsortium, Member};

#[derive(Debug, Serialize)]
pub struct FloodBench {
    pub identities: usize,
    pub stalled_sockets: usize,
    pub seconds: u64,
    /// Junk requests the identities sent (refused, cut off and undelivered ones included).
    pub junk_sent: u64,
    /// Seconds until the member restarted during the flood was back with both peers.
    pub restarted_member_back_secs: f64,
    pub members_connected_at_end: Vec<usize>,
    pub audit_entries_added: u64,
    pub audit_entries_per_minute: f64,
    /// A's resident memory before the flood, and its highest rise above that during it.
    pub rss_before_mb: f64,
    pub rss_growth_mb: f64,
}

impl FloodBench {
    pub fn human(&self) -> String {
        format!(
            "flood of {} identities and {} stalled sockets for {} s ({} junk requests): member killed and restarted, back with both peers in {:.2} s; members connected at the end {:?}; A's audit log +{} entries ({:.1}/min); A's RSS {:.1} MB, at most +{:.1} MB",
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

/// A process's resident memory, in MB (Linux).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One fresh identity: dials `target` and sends junk until `until`; returns how many requests
/// it tried.
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
        // Alternately junk the size of a hello and a frame over the unproven limit.
        let size = if sent % 2 == 0 { 1024 } else { 16 * 1024 };
        let _ = h.request(peer, vec![0x5a; size]).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sent
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

/// A `fedanno node run` child process.
struct NodeProcess {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl NodeProcess {
    /// Starts `node run` on `dir` on loopback, bootstrapping to `bootstrap`; returns once it
    /// printed its address.
    async fn start(dir: &Path, bootstrap: &[&str]) -> Result<Self> {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("--dir")
            .arg(dir)
            .args(["node", "run", "--listen", "/ip4/127.0.0.1/tcp/0"]);
        for b in bootstrap {
            c.args(["--bootstrap", b]);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("the node's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(l) = lines.next_line().await? {
                if let Some(a) = l.strip_prefix("listening on ") {
                    return Ok(a.trim().to_string());
                }
            }
            bail!("the node exited before it listened")
        })
        .await
        .context("the node did not listen within 60 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(NodeProcess {
            child,
            dir: dir.to_path_buf(),
            address,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn status(&self) -> Result<crate::network::node::Status> {
        control::status(&self.dir).await
    }

    async fn members(&self) -> usize {
        self.status().await.map_or(0, |s| s.members_connected)
    }

    /// Waits until the node sees `n` members, asking it every 100 ms; false after `within`.
    async fn wait_members(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.members().await >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn stop(mut self) {
        let _ = control::stop(&self.dir).await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The highest resident memory of process `pid` until `until`, sampled every 250 ms.
async fn peak_rss(pid: u32, until: Instant) -> f64 {
    let mut peak = rss_mb(pid);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_mb(pid));
    }
    peak
}

/// Three node processes, connected.
async fn start_three(tmp: &Path) -> Result<[NodeProcess; 3]> {
    let ids = ["site-a", "site-b", "site-c"];
    // The sites are created here and closed again: each node process opens its own.
    let dirs: Vec<PathBuf> =
        LocalConsortium::create(tmp, "flood", &Member::list(&ids, "Flood"), 1)?
            .sites
            .iter()
            .map(|s| s.dir.clone())
            .collect();
    let [a, b, c] = &dirs[..] else {
        bail!("three sites");
    };
    let na = NodeProcess::start(a, &[]).await?;
    let nb = NodeProcess::start(b, &[&na.address]).await?;
    let nc = NodeProcess::start(c, &[&na.address, &nb.address]).await?;
    for n in [&na, &nb, &nc] {
        if !n.wait_members(2, Duration::from_secs(60)).await {
            bail!("the three nodes did not connect within 60 s");
        }
    }
    Ok([na, nb, nc])
}

async fn run(tmp: &Path, identities: usize, stalled: usize, seconds: u64) -> Result<FloodBench> {
    let [na, nb, nc] = start_three(tmp).await?;
    let target: p2p::Multiaddr = na.address.parse()?;
    let socket = daemon::ip_tcp(&target)
        .map(std::net::SocketAddr::from)
        .map_err(|e| anyhow::anyhow!("A's address: {e}"))?;
    let (rss_before, audit_before) = (rss_mb(na.pid()), na.status().await?.audit_size);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let peak = tokio::spawn(peak_rss(na.pid(), until));

    let mut sockets = Vec::new();
    for _ in 0..stalled {
        sockets.push(tokio::net::TcpStream::connect(socket).await?);
    }
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..identities {
        attackers.spawn(stranger(target.clone(), until));
    }
    // A member dies during the flood (no shutdown path runs) and comes back with one
    // bootstrap address: the flooded node's.
    tokio::time::sleep(Duration::from_secs(seconds.min(10) / 2)).await;
    let c_dir = nc.dir.clone();
    drop(nc);
    let restart = Instant::now();
    let nc = NodeProcess::start(&c_dir, &[&na.address]).await?;
    let back = nc.wait_members(2, Duration::from_secs(60)).await;
    let back_secs = if back {
        restart.elapsed().as_secs_f64()
    } else {
        f64::INFINITY
    };

    let mut junk_sent = 0;
    while let Some(r) = attackers.join_next().await {
        junk_sent += r.unwrap_or(0);
    }
    let peak = peak.await.unwrap_or(f64::INFINITY);
    let elapsed = started.elapsed().as_secs_f64();
    let added = na.status().await?.audit_size.saturating_sub(audit_before);
    let mut connected = Vec::new();
    for n in [&na, &nb, &nc] {
        connected.push(n.members().await);
    }
    drop(sockets);
    for n in [na, nb, nc] {
        n.stop().await;
    }
    Ok(FloodBench {
        identities,
        stalled_sockets: stalled,
        seconds,
        junk_sent,
        restarted_member_back_secs: back_secs,
        members_connected_at_end: connected,
        audit_entries_added: added,
        audit_entries_per_minute: added as f64 * 60.0 / elapsed,
        rss_before_mb: rss_before,
        rss_growth_mb: (peak - rss_before).max(0.0),
    })
}
