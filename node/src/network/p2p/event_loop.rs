//! The one task that owns the `Swarm`. It turns [`Command`]s into swarm calls and swarm events
//! into [`NetEvent`]s, and does nothing slow: no disk, no crypto beyond libp2p's own. Outbound
//! requests wait on a oneshot keyed by request id; inbound requests wait in a map until the app
//! answers with [`Command::Respond`]. Every swarm event is matched explicitly.

use std::collections::HashMap;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::{Command, NetError, NetEvent, NetStats};

pub(super) struct EventLoop {
    pub swarm: Swarm<Behaviour>,
    pub commands: mpsc::Receiver<Command>,
    pub events: mpsc::Sender<NetEvent>,
    pub pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    pub pending_listens: HashMap<ListenerId, oneshot::Sender<Result<Multiaddr, NetError>>>,
    pub inbound: HashMap<u64, ResponseChannel<Vec<u8>>>,
    pub next_inbound: u64,
    pub topic: gossipsub::IdentTopic,
    pub stats: NetStats,
    /// Banned peers and when their ban ends.
    pub bans: HashMap<PeerId, tokio::time::Instant>,
}

impl EventLoop {
    pub async fn run(mut self) {
        if let Err(e) = self.swarm.behaviour_mut().gossip.subscribe(&self.topic) {
            tracing::error!(error = %e, "cannot subscribe to the consortium topic");
        }
        let mut unban = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev).await,
                _ = unban.tick() => self.lift_expired_bans(),
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    // Every handle dropped: shut down.
                    None => break,
                },
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Listen { addr, reply } => match self.swarm.listen_on(addr) {
                Ok(id) => {
                    self.pending_listens.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Listen(e.to_string())));
                }
            },
            Command::Dial { addr, reply } => {
                let _ = reply.send(
                    self.swarm
                        .dial(addr)
                        .map_err(|e| NetError::Dial(e.to_string())),
                );
            }
            Command::Request { peer, bytes, reply } => {
                self.stats.requests_sent += 1;
                self.stats.bytes_sent += bytes.len() as u64;
                *self.stats.requests_to.entry(peer).or_default() += 1;
                let id = self.swarm.behaviour_mut().rr.send_request(&peer, bytes);
                self.pending_requests.insert(id, reply);
            }
            Command::Respond { id, bytes } => {
                if let Some(ch) = self.inbound.remove(&id) {
                    self.stats.bytes_sent += bytes.len() as u64;
                    self.stats.responses_sent += 1;
                    if self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_response(ch, bytes)
                        .is_err()
                    {
                        tracing::debug!("a response could not be sent (the peer went away)");
                    }
                }
            }
            Command::Publish { bytes, reply } => {
                let n = bytes.len() as u64;
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(self.topic.clone(), bytes)
                    .map(|_| ());
                if r.is_ok() {
                    self.stats.gossip_published += 1;
                    self.stats.bytes_sent += n;
                }
                let _ = reply.send(r.map_err(|e| NetError::Publish(e.to_string())));
            }
            Command::ReportGossip {
                message_id,
                propagation_source,
                accept,
            } => {
                let verdict = if accept {
                    gossipsub::MessageAcceptance::Accept
                } else {
                    gossipsub::MessageAcceptance::Reject
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            Command::Disconnect { peer, ban } => {
                self.swarm.behaviour().rr.proven().remove(&peer);
                if let Some(ban) = ban {
                    self.swarm.behaviour_mut().block.block_peer(peer);
                    self.bans.insert(peer, tokio::time::Instant::now() + ban);
                }
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Reserve { peer } => self.swarm.behaviour_mut().budget.add_member(peer),
            Command::Allow { peer } => self.swarm.behaviour().rr.proven().insert(peer),
            Command::AddGossipPeer { peer } => {
                let b = self.swarm.behaviour_mut();
                b.rr.proven().insert(peer);
                b.budget.add_member(peer);
                b.gossip.remove_blacklisted_peer(&peer);
                b.gossip.add_explicit_peer(&peer);
            }
            Command::Peers { reply } => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                let _ = reply.send(peers);
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats.clone());
            }
        }
    }

    fn lift_expired_bans(&mut self) {
        let now = tokio::time::Instant::now();
        let block = &mut self.swarm.behaviour_mut().block;
        self.bans.retain(|peer, until| {
            let active = *until > now;
            if !active {
                block.unblock_peer(*peer);
            }
            active
        });
    }

    async fn emit(&mut self, e: NetEvent) {
        // Backpressure: the app consumes promptly and hands slow work to tasks.
        let _ = self.events.send(e).await;
    }

    async fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                if let Some(r) = self.pending_listens.remove(&listener_id) {
                    let _ = r.send(Ok(address.clone()));
                }
                self.emit(NetEvent::ListenAddr(address)).await;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } if num_established.get() == 1 => {
                // Until the node admits it, the peer's gossip is dropped inside gossipsub.
                self.swarm.behaviour_mut().gossip.blacklist_peer(&peer_id);
                let outbound = endpoint.is_dialer();
                let addr = endpoint.get_remote_address().clone();
                self.emit(NetEvent::Connected {
                    peer: peer_id,
                    addr,
                    outbound,
                })
                .await;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.swarm.behaviour().rr.proven().remove(&peer_id);
                // A clean slate: gossipsub sends its subscriptions on the next connection only to
                // a peer it does not hold blacklisted (the connection event blacklists it again
                // until the node admits it), so a member that comes back learns our topic.
                let gossip = &mut self.swarm.behaviour_mut().gossip;
                gossip.remove_explicit_peer(&peer_id);
                gossip.remove_blacklisted_peer(&peer_id);
                self.emit(NetEvent::Disconnected { peer: peer_id }).await;
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.emit(NetEvent::DialFailed {
                    peer: peer_id,
                    error: error.to_string(),
                })
                .await;
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(error = %error, "incoming connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(e)) => self.on_request_response(e).await,
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let source = message.source.unwrap_or(propagation_source);
                self.emit(NetEvent::Gossip {
                    source,
                    propagation_source,
                    message_id,
                    bytes: message.data,
                })
                .await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Subscribed {
                peer_id,
                ..
            })) => {
                self.emit(NetEvent::Subscribed { peer: peer_id }).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_))
            | SwarmEvent::Behaviour(BehaviourEvent::Block(_))
            | SwarmEvent::Behaviour(BehaviourEvent::Limits(_))
            | SwarmEvent::Behaviour(BehaviourEvent::Budget(_)) => {}
            SwarmEvent::ConnectionEstablished { .. }
            | SwarmEvent::ConnectionClosed { .. }
            | SwarmEvent::IncomingConnection { .. }
            | SwarmEvent::ExpiredListenAddr { .. }
            | SwarmEvent::ListenerClosed { .. }
            | SwarmEvent::ListenerError { .. }
            | SwarmEvent::Dialing { .. }
            | SwarmEvent::NewExternalAddrCandidate { .. }
            | SwarmEvent::ExternalAddrConfirmed { .. }
            | SwarmEvent::ExternalAddrExpired { .. }
            | SwarmEvent::NewExternalAddrOfPeer { .. } => {}
            _ => {}
        }
    }

    async fn on_request_response(&mut self, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound.insert(id, channel);
                    self.emit(NetEvent::Request {
                        peer,
                        id,
                        bytes: request,
                    })
                    .await;
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(tx) = self.pending_requests.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = self.pending_requests.remove(&request_id) {
                    let _ = tx.send(Err(NetError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.emit(NetEvent::InboundFailure {
                    peer,
                    error: error.to_string(),
                })
                .await;
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
