//! The connection budget. Strangers share a small budget; members never compete with them:
//! - an inbound connection from a known member's peer id (proven on a connection of this run,
//!   in the bootstrap list, or in the addresses members share) is always accepted (the
//!   per-peer limit aside), so a member that restarts gets back in;
//! - every other inbound connection counts against [`Budget::unproven`] established
//!   connections in all and [`Budget::per_ip`] from one IP address, and pending (not yet
//!   authenticated) inbound connections against [`Budget::pending_per_ip`] per address.
//!
//! So a host that opens stalled sockets or cycles through fresh identities fills its own
//! share, not the slots a restarted member needs to come back. Connections this node dials are
//! not limited here (it chose to dial them).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};

/// Why a connection was refused (for the swarm's error).
#[derive(Debug, thiserror::Error)]
#[error("connection budget exhausted: {0}")]
pub struct OverBudget(&'static str);

pub struct Budget {
    /// Most inbound connections from peers not known as members.
    pub unproven: usize,
    /// Most such connections from one IP address.
    pub per_ip: usize,
    /// Most pending inbound connections from one IP address.
    pub pending_per_ip: usize,
    members: HashSet<PeerId>,
    /// Inbound connections from peers not known as members: the peer and its IP address.
    strangers: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    pending: HashMap<ConnectionId, Option<IpAddr>>,
}

/// The IP address of a multiaddress, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Budget {
    pub fn new(unproven: usize, per_ip: usize, pending_per_ip: usize) -> Self {
        Budget {
            unproven,
            per_ip,
            pending_per_ip,
            members: HashSet::new(),
            strangers: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// A peer id that proved membership: its connections no longer count as a stranger's.
    /// Bounded by a multiple of the largest consortium.
    pub fn add_member(&mut self, peer: PeerId) {
        if self.members.len() < 4 * fedanno_protocol::limits::MAX_RECIPIENTS {
            self.members.insert(peer);
        }
        self.strangers.retain(|_, (p, _)| *p != peer);
    }

    fn deny(what: &'static str) -> ConnectionDenied {
        ConnectionDenied::new(OverBudget(what))
    }
}

impl NetworkBehaviour for Budget {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let ip = ip_of(remote);
        if self.pending.values().filter(|p| **p == ip).count() >= self.pending_per_ip {
            return Err(Self::deny("too many pending connections from one address"));
        }
        self.pending.insert(id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending.remove(&id);
        if self.members.contains(&peer) {
            return Ok(dummy::ConnectionHandler);
        }
        let ip = ip_of(remote);
        let strangers = self
            .strangers
            .iter()
            .filter(|(c, _)| **c != id)
            .map(|(_, (_, ip))| ip);
        let (all, same_ip) = strangers.fold((0, 0), |(a, s), i| (a + 1, s + usize::from(*i == ip)));
        if all >= self.unproven {
            return Err(Self::deny("too many connections from peers not yet proven"));
        }
        if same_ip >= self.per_ip {
            return Err(Self::deny("too many unproven connections from one address"));
        }
        self.strangers.insert(id, (peer, ip));
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.strangers.remove(&connection_id);
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.pending.remove(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4100").parse().unwrap()
    }

    fn inbound(b: &mut Budget, id: usize, peer: PeerId, ip: &str) -> bool {
        let id = ConnectionId::new_unchecked(id);
        let local = addr("10.0.0.1");
        b.handle_pending_inbound_connection(id, &local, &addr(ip))
            .is_ok()
            && b.handle_established_inbound_connection(id, peer, &local, &addr(ip))
                .is_ok()
    }

    #[test]
    fn strangers_share_a_small_budget_and_members_never_wait_for_it() {
        let mut b = Budget::new(4, 2, 3);
        // Two strangers from one address, then that address is full.
        assert!(inbound(&mut b, 1, PeerId::random(), "10.0.0.9"));
        assert!(inbound(&mut b, 2, PeerId::random(), "10.0.0.9"));
        assert!(!inbound(&mut b, 3, PeerId::random(), "10.0.0.9"));
        // Other addresses fill the rest of the budget.
        assert!(inbound(&mut b, 4, PeerId::random(), "10.0.0.7"));
        let proven = PeerId::random();
        assert!(inbound(&mut b, 5, proven, "10.0.0.8"));
        assert!(!inbound(&mut b, 6, PeerId::random(), "10.0.0.6"));
        // A known member is always let in, whatever the strangers hold.
        let member = PeerId::random();
        b.add_member(member);
        assert!(inbound(&mut b, 7, member, "10.0.0.9"));
        // A stranger that proves membership stops counting against the budget.
        b.add_member(proven);
        assert!(inbound(&mut b, 8, PeerId::random(), "10.0.0.6"));
        // Pending (unauthenticated) connections are bounded per address.
        let local = addr("10.0.0.1");
        for i in 0..3 {
            let id = ConnectionId::new_unchecked(100 + i);
            assert!(
                b.handle_pending_inbound_connection(id, &local, &addr("10.0.0.5"))
                    .is_ok()
            );
        }
        let id = ConnectionId::new_unchecked(200);
        assert!(
            b.handle_pending_inbound_connection(id, &local, &addr("10.0.0.5"))
                .is_err()
        );
        assert!(
            b.handle_pending_inbound_connection(id, &local, &addr("10.0.0.4"))
                .is_ok()
        );
    }
}
