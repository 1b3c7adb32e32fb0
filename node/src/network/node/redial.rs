//! Reconnection. A node keeps dialing the members it knows of and is not connected to (its
//! bootstrap addresses, and the addresses members share, each ending in the member's peer id)
//! with capped exponential backoff and jitter, so a site needs one bootstrap entry and the
//! consortium heals after any restart order. After admitting a member, a node shares where it
//! and its connected members listen. Addresses are only hints: a wrong one costs a failed
//! dial, and the membership proof decides who is who.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::limits::MAX_ADDRESSES;
use fedanno_protocol::wire::{Gossip, MemberAddresses};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::time::Instant;

use super::context::Context;
use crate::network::kinds::MessageKind;
use crate::network::p2p::{Multiaddr, PeerId, Protocol};

/// How often the book is checked for a dial that is due.
pub const REDIAL_TICK: Duration = Duration::from_secs(1);
/// The first wait before dialing a peer again, doubled after every try up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The most peers the book remembers (a consortium has at most this many members).
const MAX_PEERS: usize = fedanno_protocol::limits::MAX_RECIPIENTS;

struct Entry {
    site: Option<SiteId>,
    addrs: Vec<Multiaddr>,
    tries: usize,
    backoff: Duration,
    next: Instant,
}

/// Where members listen, and when to dial each again.
pub(crate) struct PeerBook {
    entries: Mutex<HashMap<PeerId, Entry>>,
}

/// The peer id an address ends with.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// `d` scaled by a random factor in [0.8, 1.2): peers that lost each other at the same moment
/// do not all dial again at the same moment.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let r = SystemRandom::new().fill(&mut b).map_or(128, |()| b[0]);
    d.mul_f64(0.8 + 0.4 * f64::from(r) / 256.0)
}

impl PeerBook {
    pub(super) fn new(bootstrap: &[Multiaddr]) -> Self {
        let book = PeerBook {
            entries: Mutex::new(HashMap::new()),
        };
        book.learn(None, bootstrap.iter().cloned());
        book
    }

    /// Remembers addresses (those without a peer id are ignored), at most [`MAX_ADDRESSES`]
    /// per peer and [`MAX_PEERS`] peers.
    pub(super) fn learn(&self, site: Option<SiteId>, addrs: impl Iterator<Item = Multiaddr>) {
        let Ok(mut book) = self.entries.lock() else {
            return;
        };
        for addr in addrs {
            let Some(peer) = peer_of(&addr) else { continue };
            if !book.contains_key(&peer) && book.len() >= MAX_PEERS {
                continue;
            }
            let e = book.entry(peer).or_insert_with(|| Entry {
                site: None,
                addrs: Vec::new(),
                tries: 0,
                backoff: FIRST_BACKOFF,
                next: Instant::now(),
            });
            if site.is_some() {
                e.site.clone_from(&site);
            }
            if !e.addrs.contains(&addr) && e.addrs.len() < MAX_ADDRESSES {
                e.addrs.push(addr);
            }
        }
    }

    /// The addresses to dial now: one per peer that is not `connected` and whose wait is over,
    /// each peer's wait then doubled (with jitter, up to [`MAX_BACKOFF`]).
    fn due(&self, connected: impl Fn(&PeerId) -> bool) -> Vec<Multiaddr> {
        let now = Instant::now();
        let Ok(mut book) = self.entries.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (peer, e) in book.iter_mut() {
            if connected(peer) || e.next > now || e.addrs.is_empty() {
                continue;
            }
            out.push(e.addrs[e.tries % e.addrs.len()].clone());
            e.tries += 1;
            e.next = now + jitter(e.backoff);
            e.backoff = (e.backoff * 2).min(MAX_BACKOFF);
        }
        out
    }

    /// A peer proved membership: the next loss starts again from [`FIRST_BACKOFF`].
    pub(super) fn connected(&self, peer: &PeerId, site: &SiteId) {
        if let Ok(mut book) = self.entries.lock()
            && let Some(e) = book.get_mut(peer)
        {
            e.backoff = FIRST_BACKOFF;
            e.tries = 0;
            e.site = Some(site.clone());
        }
    }

    /// The addresses of the members among `sites`.
    fn of_sites(&self, sites: &[SiteId]) -> Vec<MemberAddresses> {
        let Ok(book) = self.entries.lock() else {
            return Vec::new();
        };
        let mut by_site: HashMap<&SiteId, Vec<String>> = HashMap::new();
        for e in book.values() {
            if let Some(site) = e.site.as_ref().filter(|s| sites.contains(s)) {
                let v = by_site.entry(site).or_default();
                v.extend(e.addrs.iter().map(|a| a.to_string()));
                v.truncate(MAX_ADDRESSES);
            }
        }
        by_site
            .into_iter()
            .map(|(site, addrs)| MemberAddresses {
                site: site.clone(),
                addrs,
            })
            .collect()
    }
}

impl Context {
    /// Dials every known member that is due (the redial tick).
    pub(super) async fn redial(&self) {
        let due = self
            .book()
            .due(|peer| self.members().by_peer(peer).is_some());
        for addr in due {
            if let Err(e) = self.net().dial(addr).await {
                tracing::debug!(error = %e, "a redial could not start");
            }
        }
    }

    /// Shares where this node and its connected members listen (after admitting a member).
    pub(super) async fn share_addresses(&self) {
        let g = Gossip::Addresses {
            members: self.known_addresses(),
        };
        if let Err(e) = self.publish(MessageKind::Addresses, &g).await {
            tracing::debug!(error = %e, "cannot share addresses");
        }
    }

    /// Where this node and its connected members listen, as far as it knows.
    pub(super) fn known_addresses(&self) -> Vec<MemberAddresses> {
        let me = self.net().peer_id();
        let own: Vec<String> = self
            .listening()
            .iter()
            .filter(|a| {
                !a.iter().any(|p| match p {
                    Protocol::Ip4(ip) => ip.is_unspecified(),
                    Protocol::Ip6(ip) => ip.is_unspecified(),
                    _ => false,
                })
            })
            .map(|a| a.clone().with(Protocol::P2p(me)).to_string())
            .take(MAX_ADDRESSES)
            .collect();
        let sites: Vec<SiteId> = self.members().all().into_iter().map(|m| m.site).collect();
        let mut members = self.book().of_sites(&sites);
        members.push(MemberAddresses {
            site: self.site().clone(),
            addrs: own,
        });
        members
    }

    /// Learns the addresses a member shared (ours are skipped); their peer ids pass the
    /// strangers' connection budget.
    pub(super) async fn learn_addresses(&self, members: Vec<MemberAddresses>) {
        for m in members.into_iter().filter(|m| &m.site != self.site()) {
            let addrs: Vec<Multiaddr> = m.addrs.iter().filter_map(|a| a.parse().ok()).collect();
            self.reserve(&addrs).await;
            self.book().learn(Some(m.site.clone()), addrs.into_iter());
        }
    }

    /// Lets the peers these addresses name past the strangers' budget.
    pub(super) async fn reserve(&self, addrs: &[Multiaddr]) {
        for peer in addrs.iter().filter_map(peer_of) {
            let _ = self.net().reserve(peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets_on_connection() {
        let peer = PeerId::random();
        let addr: Multiaddr = format!("/ip4/10.0.0.1/tcp/4100/p2p/{peer}")
            .parse()
            .unwrap();
        let without_peer: Multiaddr = "/ip4/10.0.0.2/tcp/4100".parse().unwrap();
        let book = PeerBook::new(&[addr.clone(), without_peer]);
        assert_eq!(book.due(|_| false), vec![addr.clone()]);
        // Not due again until its wait is over; never while connected.
        assert!(book.due(|_| false).is_empty());
        let backoff = |b: &PeerBook| b.entries.lock().unwrap()[&peer].backoff;
        assert_eq!(backoff(&book), FIRST_BACKOFF * 2);
        for _ in 0..10 {
            book.entries.lock().unwrap().get_mut(&peer).unwrap().next = Instant::now();
            assert_eq!(book.due(|_| false).len(), 1);
        }
        assert_eq!(backoff(&book), MAX_BACKOFF);
        book.entries.lock().unwrap().get_mut(&peer).unwrap().next = Instant::now();
        assert!(book.due(|p| p == &peer).is_empty());
        book.connected(&peer, &SiteId::new("site-b").unwrap());
        assert_eq!(backoff(&book), FIRST_BACKOFF);
        let shared = book.of_sites(&[SiteId::new("site-b").unwrap()]);
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].addrs, vec![addr.to_string()]);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j < Duration::from_secs(12),
                "{j:?}"
            );
        }
    }
}
