//! The pre-membership frame gate: request-response, with each connection's codec told which
//! peer it serves, so that [`super::codec::FrameCodec`] can give a peer that has not proven
//! membership the small request limit. [`Proven`] is the set of peers whose requests get the
//! full limit; only the event loop changes it (when the node admits a peer, and when a peer
//! goes away).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};

use super::codec::FrameCodec;

/// Peers allowed full-size requests, shared by every connection's codec.
#[derive(Debug, Clone, Default)]
pub struct Proven {
    peers: Arc<RwLock<HashSet<PeerId>>>,
    /// The peer of the connection whose codec is being cloned (see [`Gated`]).
    next: Arc<Mutex<Option<PeerId>>>,
}

impl Proven {
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(peer)
    }

    pub fn insert(&self, peer: PeerId) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer);
    }

    pub fn remove(&self, peer: &PeerId) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer);
    }

    /// Sets the peer the next codec clone is for.
    pub(super) fn hand_over(&self, peer: Option<PeerId>) {
        *self.next.lock().unwrap_or_else(PoisonError::into_inner) = peer;
    }

    pub(super) fn take_next(&self) -> Option<PeerId> {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

type Inner = request_response::Behaviour<FrameCodec>;

/// Request-response behind the gate: it hands each new connection's peer id to the codec
/// clone that request-response makes for that connection, and otherwise passes every call
/// through.
pub struct Gated {
    inner: Inner,
    proven: Proven,
}

impl Gated {
    pub fn new(inner: Inner, proven: Proven) -> Self {
        Gated { inner, proven }
    }

    pub fn proven(&self) -> &Proven {
        &self.proven
    }

    pub fn send_request(&mut self, peer: &PeerId, request: Vec<u8>) -> OutboundRequestId {
        self.inner.send_request(peer, request)
    }

    pub fn send_response(
        &mut self,
        ch: ResponseChannel<Vec<u8>>,
        response: Vec<u8>,
    ) -> Result<(), Vec<u8>> {
        self.inner.send_response(ch, response)
    }

    /// Runs `f` (which clones the codec for a connection to `peer`) with `peer` handed over.
    fn for_peer<T>(&mut self, peer: PeerId, f: impl FnOnce(&mut Inner) -> T) -> T {
        self.proven.hand_over(Some(peer));
        let out = f(&mut self.inner);
        self.proven.hand_over(None);
        out
    }
}

impl NetworkBehaviour for Gated {
    type ConnectionHandler = <Inner as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = <Inner as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.for_peer(peer, |inner| {
            inner.handle_established_inbound_connection(id, peer, local, remote)
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.for_peer(peer, |inner| {
            inner.handle_established_outbound_connection(id, peer, addr, role, port_use)
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
