//! The node's state, split by concern: who it is ([`Identity`], fixed), the members proven on
//! its connections ([`Members`]), its envelopes' sequence and replay state ([`Envelopes`]), the
//! services it drives (store, audit log, policy, network: handles, each with one owner), the
//! checkpoints it witnesses, the reader-study rounds in flight, and the activity signal. All
//! of it is private to the node; the reader-study layer reaches it through these accessors,
//! outside code through [`super::AppHandle`].

use fedanno_protocol::ids::SiteId;
use tokio::sync::watch;

use super::NodeParams;
use super::envelopes::Envelopes;
use super::identity::Identity;
use super::members::{MemberInfo, Members};
use super::redial::PeerBook;
use super::strangers::StrangerAudit;
use super::trust::Trust;
use super::witness::Witnessed;
use crate::network::audit::AuditLog;
use crate::network::p2p::{Multiaddr, NetHandle};
use crate::network::policy::Policy;
use crate::reader_studies::network::ReaderStudyRuntime;
use crate::site::store::Store;

/// Handles of the systems the node drives; each system has its own owner (the store thread,
/// the audit log's store jobs, the network task).
struct Services {
    store: Store,
    audit: AuditLog,
    policy: Policy,
    net: NetHandle,
    listening: Vec<Multiaddr>,
}

pub(crate) struct Context {
    identity: Identity,
    trust: Trust,
    book: PeerBook,
    strangers: StrangerAudit,
    members: Members,
    envelopes: Envelopes,
    services: Services,
    witnessed: Witnessed,
    reader_studies: ReaderStudyRuntime,
    /// Bumped on every membership change, subscription, accepted gossip and reader-study
    /// step: what tests and operators wait on instead of polling.
    activity: watch::Sender<u64>,
}

impl Context {
    pub(super) fn new(
        p: &NodeParams,
        net: NetHandle,
        listening: Vec<Multiaddr>,
        min_sequence: u64,
    ) -> Self {
        Context {
            identity: Identity::new(p),
            trust: Trust::new(p.trust.clone(), p.revocations_file.clone()),
            book: PeerBook::new(&p.bootstrap),
            strangers: StrangerAudit::default(),
            members: Members::default(),
            envelopes: Envelopes::new(min_sequence),
            services: Services {
                store: p.store.clone(),
                audit: p.audit.clone(),
                policy: p.policy.clone(),
                net,
                listening,
            },
            witnessed: Witnessed::default(),
            reader_studies: ReaderStudyRuntime::default(),
            activity: watch::channel(0).0,
        }
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(super) fn trust(&self) -> &Trust {
        &self.trust
    }

    pub(super) fn book(&self) -> &PeerBook {
        &self.book
    }

    pub(super) fn strangers(&self) -> &StrangerAudit {
        &self.strangers
    }

    /// This site's id.
    pub(crate) fn site(&self) -> &SiteId {
        self.identity.site()
    }

    pub(crate) fn members(&self) -> &Members {
        &self.members
    }

    /// A connected member by site id, or `NotConnected`.
    pub(crate) fn member(&self, site: &SiteId) -> Result<MemberInfo, super::AppError> {
        self.members
            .by_site(site)
            .ok_or_else(|| super::AppError::NotConnected(site.to_string()))
    }

    /// The signing key of `site`: ours, or a connected member's.
    pub(crate) fn signing_key_of(&self, site: &SiteId) -> Option<[u8; 32]> {
        if site == self.site() {
            Some(self.identity.public_key())
        } else {
            self.members.signing_key(site)
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.services.store
    }

    pub(crate) fn audit(&self) -> &AuditLog {
        &self.services.audit
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.services.policy
    }

    pub(crate) fn reader_studies(&self) -> &ReaderStudyRuntime {
        &self.reader_studies
    }

    pub(super) fn envelopes(&self) -> &Envelopes {
        &self.envelopes
    }

    pub(super) fn net(&self) -> &NetHandle {
        &self.services.net
    }

    pub(super) fn listening(&self) -> &[Multiaddr] {
        &self.services.listening
    }

    pub(super) fn witnessed(&self) -> &Witnessed {
        &self.witnessed
    }

    /// Signals that something observable changed.
    pub(crate) fn bump(&self) {
        self.activity.send_modify(|n| *n += 1);
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.activity.subscribe()
    }

    pub(super) fn add_member(&self, info: MemberInfo) {
        self.members.add(info);
        self.bump();
    }

    pub(super) fn remove_member(&self, peer: &crate::network::p2p::PeerId) {
        self.members.remove(peer);
        self.bump();
    }
}
