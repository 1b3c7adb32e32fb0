//! The node's state, shared by the actor's tasks: identity and keys, the trust store, the
//! members proven on this run's connections, the replay guard and the sequence counter.
//! Locks are std locks held for a few statements and never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fedanno_protocol::cert::{Certificate, CertificateBody, Role, TrustStore};
use fedanno_protocol::envelope::{
    Envelope, EnvelopeError, Header, OpenContext, Opened, PayloadKind, ReplayGuard,
};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::limits::MAX_CLOCK_SKEW_SECS;
use fedanno_protocol::wire::SignedCheckpoint;
use ring::signature::Ed25519KeyPair;
use serde::Serialize;

use super::NodeParams;
use crate::network::audit::AuditLog;
use crate::network::p2p::{Multiaddr, NetHandle, PeerId};
use crate::network::policy::Policy;
use crate::site::store::Store;

/// A member proven on a connection of this run.
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub site: SiteId,
    pub display_name: String,
    pub roles: Vec<String>,
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

impl MemberInfo {
    pub fn from_body(peer: PeerId, b: &CertificateBody) -> Self {
        MemberInfo {
            site: b.site_id.clone(),
            display_name: b.display_name.clone(),
            roles: b.roles.iter().map(|r| r.as_str().to_string()).collect(),
            peer_id: peer.to_string(),
            serial: b.serial,
            certificate_expires: b.not_after,
            peer,
            signing_key: b.signing_key,
            sealing_key: b.sealing_key,
        }
    }
}

#[derive(Default)]
struct Members {
    by_peer: HashMap<PeerId, MemberInfo>,
    by_site: HashMap<SiteId, PeerId>,
}

pub struct Shared {
    pub site: SiteId,
    pub consortium: String,
    pub certificate: Certificate,
    pub body: CertificateBody,
    pub signing: Arc<Ed25519KeyPair>,
    pub sealing: x25519_dalek::StaticSecret,
    pub trust: RwLock<TrustStore>,
    members: RwLock<Members>,
    replay: Mutex<ReplayGuard>,
    sequence: AtomicU64,
    pub policy: Policy,
    pub audit: AuditLog,
    pub store: Store,
    pub net: NetHandle,
    pub listening: Vec<Multiaddr>,
    /// The latest checkpoint each member published (what we witness).
    pub peer_checkpoints: Mutex<HashMap<SiteId, SignedCheckpoint>>,
    /// Bumped on every membership change, subscription and accepted gossip: what tests and
    /// operators wait on instead of polling.
    pub activity: tokio::sync::watch::Sender<u64>,
    /// Study rounds in flight: round secrets, loaded study data, run progress.
    pub study: crate::reader_studies::network::ReaderStudyState,
}

pub use crate::site::clock::now;

impl Shared {
    pub(super) fn new(
        p: &NodeParams,
        net: NetHandle,
        listening: Vec<Multiaddr>,
        min_sequence: u64,
    ) -> Self {
        Shared {
            site: p.site.clone(),
            consortium: p.consortium.clone(),
            certificate: p.certificate.clone(),
            body: p.certificate_body.clone(),
            signing: p.signing.clone(),
            sealing: p.sealing.clone(),
            trust: RwLock::new(p.trust.clone()),
            members: RwLock::new(Members::default()),
            replay: Mutex::new(ReplayGuard::default()),
            // Above everything already sent, and above the clock-based floor so that a site
            // whose log was lost still starts above what peers remember of it.
            sequence: AtomicU64::new((now() << 20).max(min_sequence)),
            policy: p.policy.clone(),
            audit: p.audit.clone(),
            store: p.store.clone(),
            net,
            listening,
            peer_checkpoints: Mutex::new(HashMap::new()),
            activity: tokio::sync::watch::channel(0).0,
            study: crate::reader_studies::network::ReaderStudyState::default(),
        }
    }

    /// Signals that something observable changed.
    pub fn bump(&self) {
        self.activity.send_modify(|n| *n += 1);
    }

    pub fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::SeqCst)
    }

    pub fn member_by_peer(&self, peer: &PeerId) -> Option<MemberInfo> {
        self.members.read().ok()?.by_peer.get(peer).cloned()
    }

    pub fn member_by_site(&self, site: &SiteId) -> Option<MemberInfo> {
        let m = self.members.read().ok()?;
        m.by_site.get(site).and_then(|p| m.by_peer.get(p)).cloned()
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        let mut v: Vec<MemberInfo> = self
            .members
            .read()
            .map(|m| m.by_peer.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.site.cmp(&b.site));
        v
    }

    pub fn add_member(&self, info: MemberInfo) {
        if let Ok(mut m) = self.members.write() {
            if let Some(old) = m.by_site.insert(info.site.clone(), info.peer)
                && old != info.peer
            {
                m.by_peer.remove(&old);
            }
            m.by_peer.insert(info.peer, info);
        }
        self.bump();
    }

    pub fn remove_member(&self, peer: &PeerId) {
        if let Ok(mut m) = self.members.write()
            && let Some(info) = m.by_peer.remove(peer)
            && m.by_site.get(&info.site) == Some(peer)
        {
            m.by_site.remove(&info.site);
        }
        self.bump();
    }

    /// Roles of a recipient, for the policy.
    pub fn roles_of(info: &MemberInfo) -> Vec<String> {
        info.roles.clone()
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.body.has_role(role)
    }

    /// A header for a message from us.
    pub fn header(&self, recipient: Option<SiteId>, kind: PayloadKind) -> Header {
        Header {
            version: fedanno_protocol::PROTOCOL_VERSION,
            consortium: self.consortium.clone(),
            sender: self.site.clone(),
            recipient,
            study: None,
            round: 0,
            sequence: self.next_sequence(),
            timestamp: now(),
            kind,
        }
    }

    /// Verifies and opens an envelope from a proven member.
    pub fn open(&self, env: &Envelope) -> Result<Opened, EnvelopeError> {
        let members = self.members.read().map_err(|_| EnvelopeError::Malformed)?;
        let sender_key = |s: &SiteId| {
            members
                .by_site
                .get(s)
                .and_then(|p| members.by_peer.get(p))
                .map(|m| m.signing_key)
        };
        let ctx = OpenContext {
            consortium: &self.consortium,
            me: &self.site,
            my_sealing_secret: Some(&self.sealing),
            sender_key: &sender_key,
            now: now(),
            max_skew_secs: MAX_CLOCK_SKEW_SECS,
        };
        let mut replay = self.replay.lock().map_err(|_| EnvelopeError::Malformed)?;
        env.open(&ctx, &mut replay)
    }
}
