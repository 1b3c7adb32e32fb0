//! The node actor: it joins the network ([`crate::network::p2p`]), the policy gate, the audit
//! log and the store. Every message that leaves goes through `outbound` (policy decides, the
//! decision and the message are committed to the audit log, then the bytes are handed to the
//! network); every message that arrives goes through `inbound` (a peer first proves
//! membership in `membership`; envelopes are opened and audited in `envelopes` before they
//! are acted on; anything else is refused, audited, and the peer disconnected).
//!
//! Layout: `context` (the node's private state, split by concern: `identity`, `members`,
//! `envelopes`, services, `witness`, reader-study rounds), `inbound`, `outbound`,
//! `membership`, `witness`, `commands` (what [`AppHandle`] asks), `status`.
//!
//! Outside code talks to a running node only through [`AppHandle`]: commands on a bounded
//! channel for everything that acts, and read-only observations (listen addresses, peer id,
//! connected members, the activity signal). Slow work runs in tasks bounded by a semaphore;
//! locks are std locks held for a few statements, never across an await.

mod auditors;
mod commands;
pub(crate) mod context;
mod envelopes;
mod identity;
mod inbound;
mod members;
mod membership;
pub(crate) mod outbound;
mod redial;
mod status;
mod strangers;
mod trust;
mod witness;

use std::sync::Arc;
use std::time::Duration;

use fedanno_protocol::cert::{Certificate, CertificateBody, TrustStore};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::wire::{Cosignature, SignedCheckpoint};
use ring::signature::Ed25519KeyPair;
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::network::audit::{AuditError, AuditLog, VerifyReport};
use crate::network::kinds::MessageKind;
use crate::network::p2p::{self, Multiaddr, NetConfig, NetError, NetEvent, NetStats, PeerId};
use crate::network::policy::Policy;
use crate::reader_studies::ReaderStudyError;
use crate::site::store::Store;
pub use auditors::Fetched;
use commands::AppCommand;
use context::Context;
pub(crate) use inbound::issue_receipt;
pub use members::MemberInfo;
pub use status::{Status, health_problems};
pub(crate) use witness::{is_own_checkpoint, witness_round_checkpoint};
/// The X25519 sealing key types, re-exported so callers need not name the crate.
pub use x25519_dalek::{PublicKey as SealingPublic, StaticSecret as SealingSecret};

/// Depth of the app's command channel.
const COMMANDS: usize = 64;
/// Inbound messages handled at once.
const CONCURRENCY: usize = 64;
/// How long a connecting peer has to prove membership.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a peer that failed a membership check or sent anything before proving membership
/// is refused. Bans expire: a peer is never blocked for good.
pub const BAN_UNPROVEN: Duration = Duration::from_secs(600);
/// How long a member whose certificate was revoked is refused (then its next proof fails).
pub const BAN_REVOKED: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum AppError {
    #[error("the policy denied sending {kind} to {to}: {reasons}")]
    PolicyDenied {
        kind: MessageKind,
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
    ReaderStudy(#[from] ReaderStudyError),
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
    /// Where to keep a newer revocation list learnt while running (the site's
    /// `consortium/crl.bin`); None keeps it in memory only.
    pub revocations_file: Option<std::path::PathBuf>,
}

/// A handle to a running node.
#[derive(Clone)]
pub struct AppHandle {
    tx: mpsc::Sender<AppCommand>,
    cx: Arc<Context>,
}

/// A running node: its handle, and the task to await after shutdown.
pub struct Node {
    pub handle: AppHandle,
    pub task: tokio::task::JoinHandle<()>,
    pub shutdown: watch::Sender<bool>,
}

/// One above the highest sequence number this site's audit log shows it sent (kept with the
/// `sent` entries, one row to read). Every envelope was committed to the log before it left, so
/// a restart (even a kill -9 within the same second) cannot reuse one that peers' replay
/// guards have seen.
async fn next_sequence(store: &Store) -> Result<u64, AppError> {
    let high = store
        .audit_sent_high()
        .await
        .map_err(|e| AppError::Audit(e.into()))?;
    Ok(high.saturating_add(1))
}

impl Node {
    /// Starts the network and the actor, listens and dials the bootstrap peers.
    pub async fn start(p: NodeParams) -> Result<Node, AppError> {
        let (netw, events) = p2p::spawn(p.libp2p_key.clone(), &p.net, p.transport)?;
        let mut listening = Vec::new();
        for addr in &p.listen {
            listening.push(netw.listen(addr.clone()).await?);
        }
        let min_sequence = next_sequence(&p.store).await?;
        let cx = Arc::new(Context::new(&p, netw.clone(), listening, min_sequence));
        cx.reserve(&p.bootstrap).await;
        for addr in &p.bootstrap {
            // A bootstrap peer that is down is retried by the operator; not fatal.
            if let Err(e) = netw.dial(addr.clone()).await {
                tracing::warn!(error = %e, "cannot dial a bootstrap peer");
            }
        }
        let (tx, rx) = mpsc::channel(COMMANDS);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(cx.clone(), rx, events, stop_rx, p.checkpoint_interval));
        Ok(Node {
            handle: AppHandle { tx, cx },
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
    cx: Arc<Context>,
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
    let mut sweep = tokio::time::interval(trust::LAPSE_SWEEP);
    let mut redial = tokio::time::interval(redial::REDIAL_TICK);
    redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = sweep.tick() => {
                let cx = cx.clone();
                tasks.spawn(async move {
                    cx.drop_lapsed().await;
                    cx.flush_strangers().await;
                });
            }
            _ = redial.tick() => {
                let cx = cx.clone();
                tasks.spawn(async move { cx.redial().await });
            }
            _ = checkpoints.tick(), if checkpoint_every.is_some() => {
                let cx = cx.clone();
                tasks.spawn(async move {
                    if let Err(e) = witness::witness_round(&cx).await {
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
                    let cx = cx.clone();
                    tasks.spawn(async move {
                        inbound::handle(&cx, ev).await;
                        drop(permit);
                    });
                }
                None => break,
            },
            cmd = commands.recv() => match cmd {
                Some(c) => {
                    let cx = cx.clone();
                    tasks.spawn(async move { commands::execute(&cx, c).await });
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
    /// Sends a command to the actor and waits for its answer.
    pub(crate) async fn ask<T>(
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
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, AppError> {
        self.ask(AppCommand::Checkpoint).await?
    }

    /// Asks a member to co-sign our latest checkpoint.
    pub async fn witness(&self, to: SiteId) -> Result<Cosignature, AppError> {
        self.ask(|reply| AppCommand::Witness { to, reply }).await?
    }

    /// Signs and publishes a checkpoint and asks every connected member to co-sign it (what
    /// the node does at every checkpoint interval); returns the co-signatures received.
    pub async fn witness_round(&self) -> Result<Vec<Cosignature>, AppError> {
        self.ask(AppCommand::WitnessRound).await?
    }

    /// Fetches a member's latest signed checkpoint.
    pub async fn get_checkpoint(&self, from: SiteId) -> Result<SignedCheckpoint, AppError> {
        self.ask(|reply| AppCommand::GetCheckpoint { from, reply })
            .await?
    }

    /// Fetches a site's audit log up to a fresh checkpoint and checks it (an auditor's node;
    /// the site's policy decides what it gets).
    pub async fn audit_fetch(&self, from: SiteId) -> Result<Fetched, AppError> {
        self.ask(|reply| AppCommand::AuditFetch { from, reply })
            .await?
    }

    /// Sends a reader-study command to the actor.
    pub(crate) async fn reader_study<T>(
        &self,
        make: impl FnOnce(
            oneshot::Sender<Result<T, AppError>>,
        ) -> crate::reader_studies::network::Command,
    ) -> Result<T, AppError> {
        self.ask(|reply| AppCommand::ReaderStudy(make(reply)))
            .await?
    }

    // Observations: read-only, no command needed.

    /// This site's id.
    pub fn site(&self) -> &SiteId {
        self.cx.site()
    }

    /// The addresses the node listens on.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        self.cx.listening()
    }

    /// The addresses other nodes dial: each listen address with `/p2p/<peer id>`.
    pub fn dial_addrs(&self) -> Vec<Multiaddr> {
        let peer = self.peer_id();
        self.listen_addrs()
            .iter()
            .map(|a| a.clone().with(p2p::Protocol::P2p(peer)))
            .collect()
    }

    /// Waits, on the activity signal and never polling, until `done` holds; false when
    /// `timeout` passes first.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&AppHandle) -> bool,
    ) -> bool {
        let mut rx = self.activity();
        tokio::time::timeout(timeout, async {
            while !done(self) {
                if rx.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await
        .unwrap_or(false)
    }

    /// Installs a revocation list (None: the site's list file, as `consortium
    /// update-revocations` left it) in the running node: revoked members are refused and
    /// disconnected at once, and the list is passed on to the others. Returns its number when
    /// it was newer than the one in force.
    pub async fn install_revocations(
        &self,
        list: Option<Vec<u8>>,
    ) -> Result<Option<u64>, AppError> {
        self.ask(|reply| AppCommand::Revocations { list, reply })
            .await?
    }

    /// The node's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.cx.net().peer_id()
    }

    /// Connected, proven members (the same as [`AppHandle::peers`], without the actor).
    pub fn members(&self) -> Vec<MemberInfo> {
        self.cx.members().all()
    }

    /// A connected member by site id.
    pub fn member(&self, site: &SiteId) -> Option<MemberInfo> {
        self.cx.members().by_site(site)
    }

    /// The activity signal: bumped on every membership change, accepted gossip, rejection and
    /// reader-study step. Tests and tools wait on it instead of polling.
    pub fn activity(&self) -> watch::Receiver<u64> {
        self.cx.subscribe()
    }

    /// What the node handed to the network so far.
    pub async fn net_stats(&self) -> Result<NetStats, AppError> {
        Ok(self.cx.net().stats().await?)
    }

    /// The size and root of the node's audit log now.
    pub async fn audit_head(&self) -> Result<(u64, [u8; 32]), AppError> {
        Ok(self.cx.audit().head().await?)
    }

    /// Checks the node's whole audit log (`fedanno audit verify` on a running node).
    pub async fn verify_audit(&self) -> Result<VerifyReport, AppError> {
        Ok(self.cx.audit().verify().await?)
    }

    /// The latest checkpoint `site` published or asked us to co-sign, if any.
    pub fn witnessed(&self, site: &SiteId) -> Option<SignedCheckpoint> {
        self.cx.witnessed().latest(site)
    }

    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.cx
    }

    /// Test hook: what a site showing two versions of its log does: signs a checkpoint of
    /// its log at `size` with `root` (whatever its log holds) and asks `to` to co-sign it as
    /// if it were the first `to` sees.
    #[cfg(feature = "test-hooks")]
    pub async fn ask_cosignature_of(
        &self,
        to: &SiteId,
        size: u64,
        root: [u8; 32],
    ) -> Result<fedanno_protocol::wire::Response, AppError> {
        let cx = &self.cx;
        let checkpoint = SignedCheckpoint::sign(
            cx.audit().origin(),
            size,
            root,
            crate::site::clock::now(),
            cx.site().clone(),
            cx.identity().signing(),
        );
        let req = fedanno_protocol::wire::Request::Witness {
            old_size: 0,
            proof: Vec::new(),
            checkpoint,
        };
        let rel = outbound::Release::default();
        cx.request(to, MessageKind::Witness, &rel, &req, None).await
    }

    /// Test hook: sends `req` to `to` as a message of `kind` belonging to reader study
    /// `study`, audited but past this node's policy (what a member that ignores its own
    /// policy would send).
    #[cfg(feature = "test-hooks")]
    pub async fn send_request(
        &self,
        to: &SiteId,
        kind: MessageKind,
        study: Option<&str>,
        req: &fedanno_protocol::wire::Request,
    ) -> Result<fedanno_protocol::wire::Response, AppError> {
        let rel = outbound::Release {
            reader_study: study,
            ..outbound::Release::default()
        };
        let member = self.cx.member(to)?;
        self.cx.request_gated(&member, kind, &rel, req, None).await
    }

    /// Test hook: the raw network handle, to send frames past the node's own checks as an
    /// attacker would.
    #[cfg(feature = "test-hooks")]
    pub fn raw_network(&self) -> &p2p::NetHandle {
        self.cx.net()
    }
}
