//! The members proven on this run's connections: who they are, by peer and by site.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use fedanno_protocol::cert::{CertificateBody, Role};
use fedanno_protocol::ids::SiteId;
use serde::{Serialize, Serializer};

use crate::network::p2p::PeerId;

/// A member proven on a connection of this run.
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub site: SiteId,
    pub display_name: String,
    #[serde(serialize_with = "role_names")]
    pub roles: Vec<Role>,
    pub peer_id: String,
    pub serial: u64,
    pub certificate_expires: u64,
    #[serde(skip)]
    pub peer: PeerId,
    #[serde(skip)]
    pub signing_key: [u8; 32],
    #[serde(skip)]
    pub sealing_key: [u8; 32],
}

fn role_names<S: Serializer>(roles: &[Role], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(roles.iter().map(|r| r.as_str()))
}

impl MemberInfo {
    pub fn from_body(peer: PeerId, b: &CertificateBody) -> Self {
        MemberInfo {
            site: b.site_id.clone(),
            display_name: b.display_name.clone(),
            roles: b.roles.clone(),
            peer_id: peer.to_string(),
            serial: b.serial,
            certificate_expires: b.not_after,
            peer,
            signing_key: b.signing_key,
            sealing_key: b.sealing_key,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// An auditor: may fetch audit material, nothing else.
    pub fn fetch_only(&self) -> bool {
        fedanno_protocol::cert::fetch_only(&self.roles)
    }
}

#[derive(Default)]
struct Index {
    by_peer: HashMap<PeerId, MemberInfo>,
    by_site: HashMap<SiteId, PeerId>,
}

/// A dialer's membership proof in progress at this (listening) node: its checked certificate
/// and both nonces, kept from its `Hello` until its `Proof`.
#[derive(Clone)]
pub(crate) struct PendingProof {
    pub info: MemberInfo,
    pub dialer_nonce: [u8; 32],
    pub listener_nonce: [u8; 32],
}

/// The most membership proofs in progress at once; beyond it a `Hello` is refused as busy.
pub(crate) const MAX_PENDING_PROOFS: usize = 256;

/// The proven members, and the proofs in progress. Std locks held for a few statements, never
/// across an await.
#[derive(Default)]
pub(crate) struct Members {
    index: RwLock<Index>,
    pending: Mutex<HashMap<PeerId, PendingProof>>,
    /// Peers this node dialed and sent its proof to, whose welcome has not been checked yet.
    welcoming: Mutex<HashSet<PeerId>>,
}

impl Members {
    pub(crate) fn by_peer(&self, peer: &PeerId) -> Option<MemberInfo> {
        self.index.read().ok()?.by_peer.get(peer).cloned()
    }

    pub(crate) fn by_site(&self, site: &SiteId) -> Option<MemberInfo> {
        let m = self.index.read().ok()?;
        m.by_site.get(site).and_then(|p| m.by_peer.get(p)).cloned()
    }

    /// The signing key of a connected member.
    pub(crate) fn signing_key(&self, site: &SiteId) -> Option<[u8; 32]> {
        let m = self.index.read().ok()?;
        m.by_site
            .get(site)
            .and_then(|p| m.by_peer.get(p))
            .map(|x| x.signing_key)
    }

    /// Every member, sorted by site.
    pub(crate) fn all(&self) -> Vec<MemberInfo> {
        let mut v: Vec<MemberInfo> = self
            .index
            .read()
            .map(|m| m.by_peer.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.site.cmp(&b.site));
        v
    }

    pub(crate) fn len(&self) -> usize {
        self.index.read().map(|m| m.by_peer.len()).unwrap_or(0)
    }

    /// Adds a member; a site that reconnects on another peer replaces its old entry.
    pub(super) fn add(&self, info: MemberInfo) {
        if let Ok(mut m) = self.index.write() {
            if let Some(old) = m.by_site.insert(info.site.clone(), info.peer)
                && old != info.peer
            {
                m.by_peer.remove(&old);
            }
            m.by_peer.insert(info.peer, info);
        }
    }

    /// Records a proof in progress (one per peer: a new `Hello` replaces the old one). False when
    /// [`MAX_PENDING_PROOFS`] other peers are already in progress.
    pub(super) fn start_proof(&self, peer: PeerId, proof: PendingProof) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return false;
        };
        if p.len() >= MAX_PENDING_PROOFS && !p.contains_key(&peer) {
            return false;
        }
        p.insert(peer, proof);
        true
    }

    /// Takes the proof in progress of `peer`, if any.
    pub(super) fn take_proof(&self, peer: &PeerId) -> Option<PendingProof> {
        self.pending.lock().ok()?.remove(peer)
    }

    /// Marks (or, with `false`, unmarks) `peer` as a peer whose welcome this node awaits.
    pub(super) fn awaiting_welcome(&self, peer: PeerId, waiting: bool) {
        if let Ok(mut w) = self.welcoming.lock() {
            if waiting {
                w.insert(peer);
            } else {
                w.remove(&peer);
            }
        }
    }

    pub(super) fn awaits_welcome(&self, peer: &PeerId) -> bool {
        self.welcoming.lock().is_ok_and(|w| w.contains(peer))
    }

    pub(super) fn remove(&self, peer: &PeerId) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(peer);
        }
        self.awaiting_welcome(*peer, false);
        if let Ok(mut m) = self.index.write()
            && let Some(info) = m.by_peer.remove(peer)
            && m.by_site.get(&info.site) == Some(peer)
        {
            m.by_site.remove(&info.site);
        }
    }
}
