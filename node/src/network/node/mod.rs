//! The node's application actor: it connects the network (`net`), the policy gate (`policy`),
//! the audit log (`audit`) and the store. Every message that leaves the node goes through
//! [`outbound`]: policy decides, the decision and the message hash are committed to the audit
//! log, and only then are the bytes handed to the network. Every message that arrives goes
//! through [`inbound`]: a peer must first prove membership with a certificate bound to its
//! peer id ([`membership`]); envelopes are verified (signature, consortium, time window,
//! replay) and audited before they are acted on; anything else is refused, audited, and the
//! peer is disconnected.
//!
//! The actor owns its state in [`Shared`] (short critical sections, never held across an
//! await); slow work runs in tasks bounded by a semaphore. Outside code talks to it through an
//! [`AppHandle`] with a bounded command channel.

mod inbound;
mod membership;
pub(crate) mod outbound;
pub(crate) mod shared;

use std::sync::Arc;
use std::time::Duration;

use fedanno_protocol::cert::{Certificate, CertificateBody, TrustStore};
use fedanno_protocol::ids::SiteId;
use ring::signature::Ed25519KeyPair;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::network::audit::{AuditError, AuditLog};
use crate::network::p2p::{self, Multiaddr, NetConfig, NetError, NetEvent, NetHandle};
use crate::network::policy::Policy;
use crate::site::store::Store;
pub use shared::{MemberInfo, Shared};
/// The X25519 sealing key types, re-exported so callers need not name the crate.
pub use x25519_dalek::{PublicKey as SealingPublic, StaticSecret as SealingSecret};

/// Depth of the app's command channel.
const COMMANDS: usize = 64;
/// Inbound messages handled at once.
const CONCURRENCY: usize = 64;
/// How long a connecting peer has to prove membership.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum AppError {
    #[error("the policy denied sending {kind} to {to}: {reasons}")]
    PolicyDenied {
        kind: String,
        to: String,
        reasons: String,
    },
    #[error("no certified member {0} is connected")]
    NotConnected(String),
    #[error("the peer refused the message: {0}")]
    Refused(String),
    /// A site's policy refuses to contribute (answered `PolicyDenied`, or our own decision).
    #[error("the site's policy refuses it: {0}")]
    PolicyRefused(String),
    #[error("the peer's reply could not be verified: {0}")]
    BadReply(String),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error("the node has stopped")]
    Stopped,
    #[error("study: {0}")]
    Study(String),
}

/// Everything a node needs to run.
pub struct NodeParams {
    pub site: SiteId,
    pub consortium: String,
    pub certificate: Certificate,
    pub certificate_body: CertificateBody,
    pub trust: TrustStore,
    pub signing: Arc<Ed25519KeyPair>,
    pub sealing: x25519_dalek::StaticSecret,
    pub libp2p_key: p2p::Keypair,
    pub policy: Policy,
    pub store: Store,
    pub audit: AuditLog,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub transport: p2p::Transport,
    pub net: NetConfig,
    /// Sign and publish an audit checkpoint this often (None: only on demand).
    pub checkpoint_interval: Option<Duration>,
}

/// What `node status` shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Status {
    pub site: String,
    pub consortium: String,
    pub peer_id: String,
    pub listen: Vec<String>,
    pub roles: Vec<String>,
    pub certificate_expires: u64,
    pub certificate_not_before: u64,
    pub members_connected: usize,
    pub audit_size: u64,
    pub audit_root: String,
    pub requests_sent: u64,
    pub bytes_sent: u64,
    /// The node answers, its certificate is valid now, and its audit log head is readable.
    pub healthy: bool,
    /// Why it is not healthy (empty when healthy).
    pub problems: Vec<String>,
}

/// What makes a running node unhealthy: a certificate not valid at `now` (Unix seconds), or an
/// audit log whose head cannot be read. Empty when healthy.
pub fn health_problems(
    now: u64,
    not_before: u64,
    not_after: u64,
    audit_head: Result<(), String>,
) -> Vec<String> {
    let t = |s: u64| crate::site::calendar::rfc3339(s as i64);
    let mut problems = Vec::new();
    if now < not_before {
        problems.push(format!(
            "the site's certificate is not valid before {} (this machine's clock says {}): check the clock",
            t(not_before),
            t(now)
        ));
    }
    if now >= not_after {
        problems.push(format!(
            "the site's certificate expired at {}: install a new one (`fedanno node request`, `fedanno consortium join`) and restart the node",
            t(not_after)
        ));
    }
    if let Err(e) = audit_head {
        problems.push(format!("the audit log head cannot be read: {e}"));
    }
    problems
}

pub(crate) enum AppCommand {
    Status(oneshot::Sender<Result<Status, AppError>>),
    Peers(oneshot::Sender<Vec<MemberInfo>>),
    Notice {
        to: SiteId,
        topic: String,
        body: String,
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    Broadcast {
        topic: String,
        body: String,
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<fedanno_protocol::wire::SignedCheckpoint, AppError>>,
    },
    Witness {
        to: SiteId,
        reply: oneshot::Sender<Result<fedanno_protocol::wire::Cosignature, AppError>>,
    },
    GetCheckpoint {
        from: SiteId,
        reply: oneshot::Sender<Result<fedanno_protocol::wire::SignedCheckpoint, AppError>>,
    },
}

/// A handle to a running node.
#[derive(Clone)]
pub struct AppHandle {
    tx: mpsc::Sender<AppCommand>,
    pub shared: Arc<Shared>,
}

/// A running node: its handle, and the task to await after shutdown.
pub struct Node {
    pub handle: AppHandle,
    pub task: tokio::task::JoinHandle<()>,
    pub shutdown: watch::Sender<bool>,
}

impl Node {
    /// Starts the network and the actor, listens and dials the bootstrap peers.
    pub async fn start(p: NodeParams) -> Result<Node, AppError> {
        let (netw, events) = p2p::spawn(p.libp2p_key.clone(), &p.net, p.transport)?;
        let mut listening = Vec::new();
        for addr in &p.listen {
            listening.push(netw.listen(addr.clone()).await?);
        }
        // Sequence numbers continue above every one this site has ever sent: each was committed
        // to the audit log before it left, so a restart (even a kill -9 within the same second)
        // cannot reuse one that peers' replay guards have seen.
        let sent = p
            .store
            .audit_entries(crate::site::store::AuditFilter {
                kind: Some("sent".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| AppError::Audit(e.into()))?;
        let highest = sent
            .iter()
            .filter_map(|e| match &e.event {
                crate::network::audit::AuditEvent::Sent { sequence, .. } => Some(*sequence),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let shared = Arc::new(Shared::new(
            &p,
            netw.clone(),
            listening,
            highest.saturating_add(1),
        ));
        for addr in &p.bootstrap {
            // A bootstrap peer that is down is retried by the operator; not fatal.
            if let Err(e) = netw.dial(addr.clone()).await {
                tracing::warn!(error = %e, "cannot dial a bootstrap peer");
            }
        }
        let (tx, rx) = mpsc::channel(COMMANDS);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            shared.clone(),
            rx,
            events,
            stop_rx,
            p.checkpoint_interval,
        ));
        Ok(Node {
            handle: AppHandle { tx, shared },
            task,
            shutdown: stop_tx,
        })
    }

    /// Stops the actor and waits for it.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<AppCommand>,
    mut events: mpsc::Receiver<NetEvent>,
    mut stop: watch::Receiver<bool>,
    checkpoint_every: Option<Duration>,
) {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut checkpoints =
        tokio::time::interval(checkpoint_every.unwrap_or(Duration::from_secs(86_400)));
    checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checkpoints.reset();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = checkpoints.tick(), if checkpoint_every.is_some() => {
                let s = shared.clone();
                tasks.spawn(async move {
                    if let Err(e) = outbound::checkpoint(&s).await {
                        tracing::warn!(error = %e, "periodic checkpoint failed");
                    }
                });
            }
            ev = events.recv() => match ev {
                Some(ev) => {
                    // Messages take a handler permit; connection events do not (they are
                    // bounded by the connection limits), so peers that connect and wait out
                    // their membership deadline cannot starve message handling.
                    let permit = match ev {
                        NetEvent::Request { .. } | NetEvent::Gossip { .. } => {
                            let Ok(p) = limit.clone().acquire_owned().await else { break };
                            Some(p)
                        }
                        _ => None,
                    };
                    let s = shared.clone();
                    tasks.spawn(async move {
                        inbound::handle(&s, ev).await;
                        drop(permit);
                    });
                }
                None => break,
            },
            cmd = commands.recv() => match cmd {
                Some(c) => {
                    let s = shared.clone();
                    tasks.spawn(async move { outbound::command(&s, c).await });
                }
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.shutdown().await;
    tracing::info!("node stopped");
}

impl AppHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> AppCommand,
    ) -> Result<T, AppError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| AppError::Stopped)?;
        rx.await.map_err(|_| AppError::Stopped)
    }

    pub async fn status(&self) -> Result<Status, AppError> {
        self.ask(AppCommand::Status).await?
    }

    pub async fn peers(&self) -> Result<Vec<MemberInfo>, AppError> {
        self.ask(AppCommand::Peers).await
    }

    /// Sends a notice to one member (request-response, receipted).
    pub async fn notice(&self, to: SiteId, topic: String, body: String) -> Result<(), AppError> {
        self.ask(|reply| AppCommand::Notice {
            to,
            topic,
            body,
            reply,
        })
        .await?
    }

    /// Publishes a notice to the consortium (gossip, sealed to the members).
    pub async fn broadcast(&self, topic: String, body: String) -> Result<(), AppError> {
        self.ask(|reply| AppCommand::Broadcast { topic, body, reply })
            .await?
    }

    /// Signs a checkpoint of the audit log now and publishes it.
    pub async fn checkpoint(&self) -> Result<fedanno_protocol::wire::SignedCheckpoint, AppError> {
        self.ask(|reply| AppCommand::Checkpoint { reply }).await?
    }

    /// Asks a member to co-sign our latest checkpoint.
    pub async fn witness(
        &self,
        to: SiteId,
    ) -> Result<fedanno_protocol::wire::Cosignature, AppError> {
        self.ask(|reply| AppCommand::Witness { to, reply }).await?
    }

    /// Fetches a member's latest signed checkpoint.
    pub async fn get_checkpoint(
        &self,
        from: SiteId,
    ) -> Result<fedanno_protocol::wire::SignedCheckpoint, AppError> {
        self.ask(|reply| AppCommand::GetCheckpoint { from, reply })
            .await?
    }

    pub fn net(&self) -> &NetHandle {
        &self.shared.net
    }

    /// Signs a study manifest and announces it to its participants (coordinator).
    pub async fn reader_study_launch(
        &self,
        manifest: &str,
    ) -> Result<(String, Vec<crate::reader_studies::network::Delivery>), AppError> {
        crate::reader_studies::network::launch(&self.shared, manifest).await
    }

    /// Applies this site's policy to a study's manifest and tells the coordinator.
    pub async fn reader_study_join(
        &self,
        id: &str,
    ) -> Result<crate::reader_studies::manifest::JoinDecision, AppError> {
        crate::reader_studies::network::join(&self.shared, id).await
    }

    /// Selects this site's cases for a study and reports the counts to the coordinator.
    pub async fn reader_study_assign(
        &self,
        id: &str,
    ) -> Result<crate::reader_studies::local::Assignment, AppError> {
        crate::reader_studies::network::assign(&self.shared, id).await
    }

    /// Runs a study's consensus and quality releases (coordinator).
    pub async fn reader_study_run(
        &self,
        id: &str,
    ) -> Result<crate::reader_studies::network::ReaderStudyRun, AppError> {
        crate::reader_studies::network::run(&self.shared, id).await
    }

    /// Runs a study and publishes its report (coordinator): what `study run` does.
    pub async fn reader_study_run_and_report(
        &self,
        id: &str,
    ) -> Result<
        (
            crate::reader_studies::network::ReaderStudyRun,
            crate::reader_studies::report::ReaderStudyReport,
        ),
        AppError,
    > {
        let run = crate::reader_studies::network::run(&self.shared, id).await?;
        let report = crate::reader_studies::network::finish(&self.shared, &run).await?;
        Ok((run, report))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_needs_a_valid_certificate_and_a_readable_audit_log() {
        use super::health_problems;
        assert!(health_problems(100, 50, 200, Ok(())).is_empty());
        let p = health_problems(40, 50, 200, Ok(()));
        assert!(p.len() == 1 && p[0].contains("not valid before"), "{p:?}");
        let p = health_problems(200, 50, 200, Ok(()));
        assert!(p.len() == 1 && p[0].contains("expired"), "{p:?}");
        let p = health_problems(100, 50, 200, Err("disk I/O error".into()));
        assert!(p.len() == 1 && p[0].contains("disk I/O error"), "{p:?}");
    }
}
