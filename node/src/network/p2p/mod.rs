//! The network, and the only module that names libp2p. One task ([`event_loop`]) owns the
//! `Swarm`; the rest of the node holds a cloneable [`NetHandle`] and talks to it through a
//! bounded command channel with oneshot replies, and reads [`NetEvent`]s from a bounded
//! channel. The network moves opaque bytes: signing, sealing, membership and policy are the
//! app's (`crate::network::node`), so nothing here can send application data on its own.

mod behaviour;
mod budget;
mod codec;
mod event_loop;
mod gate;

use std::collections::HashMap;

pub use behaviour::{NetConfig, Tap};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Depth of the command and event channels.
const CHANNEL_DEPTH: usize = 256;
/// The consortium's gossip topic. Topic names carry no PHI.
pub const TOPIC: &str = "fedanno/consortium/v1";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NetError {
    #[error("cannot listen: {0}")]
    Listen(String),
    #[error("cannot dial: {0}")]
    Dial(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("cannot publish: {0}")]
    Publish(String),
    #[error("cannot build the network: {0}")]
    Build(String),
    #[error("the network task has stopped")]
    Stopped,
}

pub(crate) enum Command {
    Listen {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<Multiaddr, NetError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Respond {
        id: u64,
        bytes: Vec<u8>,
    },
    Publish {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    ReportGossip {
        message_id: MessageId,
        propagation_source: PeerId,
        accept: bool,
    },
    /// Close every connection to `peer`, and refuse it for `ban` if given.
    Disconnect {
        peer: PeerId,
        ban: Option<std::time::Duration>,
    },
    /// The node admitted `peer`: its gossip and full-size requests are accepted.
    AddGossipPeer {
        peer: PeerId,
    },
    /// Full-size requests from `peer` before it is admitted: a peer this node dialed and sent
    /// its proof to, whose requests may arrive before its welcome does.
    Allow {
        peer: PeerId,
    },
    /// A member's peer id, known before it proved itself on a connection of this run.
    Reserve {
        peer: PeerId,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Stats {
        reply: oneshot::Sender<NetStats>,
    },
}

/// What the network tells the app.
#[derive(Debug)]
pub enum NetEvent {
    ListenAddr(Multiaddr),
    Connected {
        peer: PeerId,
        addr: Multiaddr,
        outbound: bool,
    },
    Disconnected {
        peer: PeerId,
    },
    DialFailed {
        peer: Option<PeerId>,
        error: String,
    },
    /// An inbound request; answer with [`NetHandle::respond`] and this id.
    Request {
        peer: PeerId,
        id: u64,
        bytes: Vec<u8>,
    },
    InboundFailure {
        peer: PeerId,
        error: String,
    },
    /// A peer subscribed to the consortium topic (gossip can now reach it).
    Subscribed {
        peer: PeerId,
    },
    /// A gossip message; report its validity with [`NetHandle::report_gossip`].
    Gossip {
        source: PeerId,
        propagation_source: PeerId,
        message_id: MessageId,
        bytes: Vec<u8>,
    },
}

/// Counters of what left this node: what a test observes "on the wire".
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetStats {
    pub requests_sent: u64,
    pub responses_sent: u64,
    pub gossip_published: u64,
    pub bytes_sent: u64,
    #[serde(skip)]
    pub requests_to: HashMap<PeerId, u64>,
}

/// A handle to the network task.
#[derive(Clone)]
pub struct NetHandle {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    tap: Option<Tap>,
}

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Memory,
}

/// Starts the network task; returns the handle and the event stream.
pub fn spawn(
    key: Keypair,
    cfg: &NetConfig,
    transport: Transport,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    let peer_id = key.public().to_peer_id();
    let swarm = match transport {
        Transport::Tcp => behaviour::tcp_swarm(key, cfg),
        Transport::Memory => behaviour::memory_swarm(key, cfg),
    }
    .map_err(|e| NetError::Build(e.to_string()))?;
    let (ctx, crx) = mpsc::channel(CHANNEL_DEPTH);
    let (etx, erx) = mpsc::channel(CHANNEL_DEPTH);
    let ev = event_loop::EventLoop {
        swarm,
        commands: crx,
        events: etx,
        pending_requests: HashMap::new(),
        pending_listens: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 0,
        topic: libp2p::gossipsub::IdentTopic::new(TOPIC),
        stats: NetStats::default(),
        bans: HashMap::new(),
    };
    tokio::spawn(ev.run());
    Ok((
        NetHandle {
            peer_id,
            commands: ctx,
            tap: cfg.tap.clone(),
        },
        erx,
    ))
}

impl NetHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Shows the tap application bytes that leave sealed inside an envelope (their plaintext).
    pub fn observe(&self, bytes: &[u8]) {
        self.tapped(bytes);
    }

    fn tapped(&self, bytes: &[u8]) {
        if let Some(t) = &self.tap {
            (t.0)(bytes);
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// A command that needs no answer.
    async fn tell(&self, c: Command) -> Result<(), NetError> {
        self.commands.send(c).await.map_err(|_| NetError::Stopped)
    }

    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, NetError> {
        self.ask(|reply| Command::Listen { addr, reply }).await?
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Sends raw bytes as a request and waits for the raw response. The app is the only
    /// caller: it passes policy and audit first.
    pub async fn request(&self, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.tapped(&bytes);
        self.ask(|reply| Command::Request { peer, bytes, reply })
            .await?
    }

    pub async fn respond(&self, id: u64, bytes: Vec<u8>) -> Result<(), NetError> {
        self.tapped(&bytes);
        self.tell(Command::Respond { id, bytes }).await
    }

    pub async fn publish(&self, bytes: Vec<u8>) -> Result<(), NetError> {
        self.tapped(&bytes);
        self.ask(|reply| Command::Publish { bytes, reply }).await?
    }

    pub async fn report_gossip(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        accept: bool,
    ) -> Result<(), NetError> {
        self.tell(Command::ReportGossip {
            message_id,
            propagation_source,
            accept,
        })
        .await
    }

    /// Closes every connection to `peer`; with `ban`, refuses its connections for that long
    /// (bans expire: no peer is blocked for good, so a member is never locked out by a
    /// refusal it did not deserve).
    pub async fn disconnect(
        &self,
        peer: PeerId,
        ban: Option<std::time::Duration>,
    ) -> Result<(), NetError> {
        self.tell(Command::Disconnect { peer, ban }).await
    }

    /// Lets `peer`'s inbound connections past the strangers' budget (a known member's peer id).
    pub async fn reserve(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell(Command::Reserve { peer }).await
    }

    pub async fn allow(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell(Command::Allow { peer }).await
    }

    pub async fn add_gossip_peer(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell(Command::AddGossipPeer { peer }).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    pub async fn stats(&self) -> Result<NetStats, NetError> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(
        rx: &mut mpsc::Receiver<NetEvent>,
        what: &str,
        f: impl Fn(&NetEvent) -> bool,
    ) -> NetEvent {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match rx.recv().await {
                    Some(e) if f(&e) => return e,
                    Some(_) => continue,
                    None => panic!("event stream ended while waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    #[tokio::test]
    async fn two_nodes_exchange_a_request_over_noise_on_the_memory_transport() {
        let cfg = NetConfig::default();
        let (a, mut ea) = spawn(Keypair::generate_ed25519(), &cfg, Transport::Memory).unwrap();
        let (b, mut eb) = spawn(Keypair::generate_ed25519(), &cfg, Transport::Memory).unwrap();
        let addr = b.listen("/memory/0".parse().unwrap()).await.unwrap();
        a.dial(addr).await.unwrap();
        next(&mut ea, "connection", |e| {
            matches!(e, NetEvent::Connected { .. })
        })
        .await;
        let bp = b.peer_id();
        let req = tokio::spawn(async move { a.request(bp, b"ping".to_vec()).await });
        let NetEvent::Request { id, bytes, .. } = next(&mut eb, "request", |e| {
            matches!(e, NetEvent::Request { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(bytes, b"ping");
        b.respond(id, b"pong".to_vec()).await.unwrap();
        assert_eq!(req.await.unwrap().unwrap(), b"pong");
        assert_eq!(b.stats().await.unwrap().responses_sent, 1);
    }

    #[tokio::test]
    async fn an_unproven_peer_may_send_only_small_requests_until_admitted() {
        use fedanno_protocol::limits::MAX_UNPROVEN_FRAME;
        let cfg = NetConfig::default();
        let (a, mut ea) = spawn(Keypair::generate_ed25519(), &cfg, Transport::Memory).unwrap();
        let (b, mut eb) = spawn(Keypair::generate_ed25519(), &cfg, Transport::Memory).unwrap();
        tokio::spawn(async move { while ea.recv().await.is_some() {} });
        let addr = b.listen("/memory/0".parse().unwrap()).await.unwrap();
        a.dial(addr).await.unwrap();
        next(&mut eb, "connection", |e| {
            matches!(e, NetEvent::Connected { .. })
        })
        .await;
        let (ap, bp) = (a.peer_id(), b.peer_id());
        // A hello-sized request arrives; one byte over the unproven limit does not.
        let small = vec![1u8; MAX_UNPROVEN_FRAME];
        let big = vec![2u8; MAX_UNPROVEN_FRAME + 1];
        let a2 = a.clone();
        tokio::spawn(async move { a2.request(bp, small).await });
        let NetEvent::Request { id, bytes, .. } = next(&mut eb, "small request", |e| {
            matches!(e, NetEvent::Request { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(bytes.len(), MAX_UNPROVEN_FRAME);
        b.respond(id, b"ok".to_vec()).await.unwrap();
        // The codec refuses it from its length: the stream fails, nothing reaches B's app.
        assert!(a.request(bp, big.clone()).await.is_err());
        while let Ok(e) = eb.try_recv() {
            assert!(!matches!(e, NetEvent::Request { .. }), "{e:?}");
        }
        // Admitted: the same request arrives whole.
        b.add_gossip_peer(ap).await.unwrap();
        let a3 = a.clone();
        tokio::spawn(async move { a3.request(bp, big).await });
        let NetEvent::Request { bytes, .. } = next(&mut eb, "big request", |e| {
            matches!(e, NetEvent::Request { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(bytes.len(), MAX_UNPROVEN_FRAME + 1);
    }

    #[tokio::test]
    async fn a_ban_refuses_connections_until_it_expires() {
        let cfg = NetConfig::default();
        let (a, mut ea) = spawn(Keypair::generate_ed25519(), &cfg, Transport::Memory).unwrap();
        let (b, mut eb) = spawn(Keypair::generate_ed25519(), &cfg, Transport::Memory).unwrap();
        // B's events are read (a full event queue would stall B).
        tokio::spawn(async move { while eb.recv().await.is_some() {} });
        let addr = b.listen("/memory/0".parse().unwrap()).await.unwrap();
        a.dial(addr.clone()).await.unwrap();
        next(&mut ea, "connection", |e| {
            matches!(e, NetEvent::Connected { .. })
        })
        .await;
        // A bans B for a second: the connection closes and B cannot come back meanwhile.
        a.disconnect(b.peer_id(), Some(std::time::Duration::from_secs(1)))
            .await
            .unwrap();
        next(&mut ea, "disconnection", |e| {
            matches!(e, NetEvent::Disconnected { .. })
        })
        .await;
        let banned = std::time::Instant::now();
        a.dial(addr.clone()).await.unwrap();
        next(&mut ea, "a refused dial", |e| {
            matches!(e, NetEvent::DialFailed { .. })
        })
        .await;
        // Once the ban has expired (lifted within a second of its end), B is welcome again.
        loop {
            a.dial(addr.clone()).await.unwrap();
            let e = next(&mut ea, "a dial outcome", |e| {
                matches!(e, NetEvent::Connected { .. } | NetEvent::DialFailed { .. })
            })
            .await;
            if matches!(e, NetEvent::Connected { .. }) {
                break;
            }
            assert!(
                banned.elapsed() < std::time::Duration::from_secs(10),
                "the ban never ended"
            );
        }
        assert!(banned.elapsed() >= std::time::Duration::from_secs(1));
    }
}
