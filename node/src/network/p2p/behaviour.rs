//! The libp2p behaviour and swarm construction: a block list (peers refused by membership
//! checks stay out), connection limits, request-response with [`super::codec::FrameCodec`]
//! behind [`super::gate`] (unproven peers' requests capped at a few KiB),
//! gossipsub with signed messages and explicit validation (the app accepts or rejects every
//! message after checking its envelope), and ping. TCP + Noise + Yamux, or the memory transport
//! with the same Noise + Yamux stack for in-process tests.
//!
//! An unproven peer learns nothing and costs little: there is no identify (no listen
//! addresses or protocol lists for strangers), gossip goes only to explicit peers (the proven
//! members: no mesh, no lazy gossip to others), and gossip from a peer that has not proven
//! membership is dropped inside gossipsub (the event loop blacklists every peer until the node
//! admits it), so it never reaches the node or its audit log.

use std::time::Duration;

use libp2p::core::transport::MemoryTransport;
use libp2p::core::{Transport, upgrade};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Swarm, SwarmBuilder, allow_block_list, connection_limits, gossipsub, identity, noise, ping,
    tcp, yamux,
};

use super::codec::{FrameCodec, PROTOCOL};
use super::gate::{Gated, Proven};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    // Order matters: refusals and limits act before the other behaviours allocate handlers.
    pub block: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    // Before every behaviour that keeps per-connection state: a connection denied after one of
    // them recorded it would leave that record behind. The behaviours after it never deny.
    pub budget: super::budget::Budget,
    pub rr: Gated,
    pub gossip: gossipsub::Behaviour,
    pub ping: ping::Behaviour,
}

/// Network tunables.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub max_frame: u32,
    pub max_gossip: usize,
    pub request_timeout: Duration,
    /// Long enough that connections survive between federated rounds.
    pub idle_timeout: Duration,
    pub max_peers: u32,
    /// Sees every application frame this node hands to libp2p, before Noise encrypts it:
    /// the transport boundary, for privacy audits and tests.
    pub tap: Option<Tap>,
}

/// An observer of outbound frames (see [`NetConfig::tap`]).
#[derive(Clone)]
pub struct Tap(pub std::sync::Arc<TapFn>);

/// What a [`Tap`] calls with each outbound frame.
pub type TapFn = dyn Fn(&[u8]) + Send + Sync;

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_frame: 4 << 20,
            max_gossip: 256 << 10,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
            max_peers: 512,
            tap: None,
        }
    }
}

fn behaviour(key: &identity::Keypair, cfg: &NetConfig) -> Result<Behaviour, BoxError> {
    // Explicit peers only: no mesh, no lazy gossip, no flood publishing to other peers.
    let gcfg = gossipsub::ConfigBuilder::default()
        .mesh_n(0)
        .mesh_n_low(0)
        .mesh_n_high(0)
        .mesh_outbound_min(0)
        .gossip_lazy(0)
        .gossip_factor(0.0)
        .flood_publish(false)
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(cfg.max_gossip)
        .build()?;
    let proven = Proven::default();
    let gossip =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)?;
    Ok(Behaviour {
        block: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(2))
                .with_max_pending_incoming(Some(256))
                .with_max_established(Some(cfg.max_peers)),
        ),
        budget: super::budget::Budget::new(16, 8, 64),
        rr: Gated::new(
            request_response::Behaviour::with_codec(
                FrameCodec::new(cfg.max_frame, proven.clone()),
                [(PROTOCOL, ProtocolSupport::Full)],
                // A few requests in flight per connection: each may buffer up to a frame (a
                // member) or `MAX_UNPROVEN_FRAME` (anyone else).
                request_response::Config::default()
                    .with_request_timeout(cfg.request_timeout)
                    .with_max_concurrent_streams(8),
            ),
            proven,
        ),
        gossip,
        ping: ping::Behaviour::default(),
    })
}

/// A TCP swarm (production and loopback tests).
pub fn tcp_swarm(key: identity::Keypair, cfg: &NetConfig) -> Result<Swarm<Behaviour>, BoxError> {
    let idle = cfg.idle_timeout;
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|k| behaviour(k, cfg))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

/// An in-process swarm on the memory transport (`/memory/0`), same Noise + Yamux stack.
pub fn memory_swarm(key: identity::Keypair, cfg: &NetConfig) -> Result<Swarm<Behaviour>, BoxError> {
    let idle = cfg.idle_timeout;
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, BoxError>(
                MemoryTransport::default()
                    .upgrade(upgrade::Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .boxed(),
            )
        })?
        .with_behaviour(|k| behaviour(k, cfg))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}
