//! Multi-node fixtures. Honest sites form a [`Consortium`]: the node library's own local
//! consortium (`tools::local_consortium`: the governance commands' code, sites made by
//! `init`, nodes started the way `node run` starts them) in a temporary directory. An
//! [`Intruder`] is a node that presents whatever certificate it is handed (forged, expired,
//! revoked, stolen): what an attacker runs. Every wait is on a node's activity signal under a
//! timeout: no sleeps.

use std::sync::Arc;
use std::time::Duration;

use fedanno_node::network::audit::{AuditEvent, AuditLog, origin};
use fedanno_node::network::consortium::{self, Root};
use fedanno_node::network::daemon::StartOptions;
use fedanno_node::network::node::{Node, NodeParams, SealingPublic, SealingSecret};
use fedanno_node::network::p2p::{Keypair, Multiaddr, NetConfig, Transport};
use fedanno_node::network::policy::Policy;
use fedanno_node::site::config::KEYS_DIR;
use fedanno_node::site::identity;
use fedanno_node::site::store::AuditFilter;
use fedanno_node::site::{self, Site};
use fedanno_node::tools::local_consortium::{LocalConsortium, Member};
use fedanno_protocol::cert::{Certificate, CertificateBody, Role, TrustStore};
use fedanno_protocol::ids::SiteId;
use ring::signature::{Ed25519KeyPair, KeyPair};

pub const CONSORTIUM: &str = "test-consortium";

pub use fedanno_node::site::clock::now;

/// How long a cluster of nodes has to connect.
const CONNECT: Duration = Duration::from_secs(30);

/// A consortium root and its sites (the first coordinates), in a temporary directory.
pub struct Consortium {
    pub tmp: tempfile::TempDir,
    pub local: LocalConsortium,
}

impl Consortium {
    /// Sites `ids` (`site-a`, …) with certificates valid for a day.
    pub fn new(ids: &[&str]) -> Consortium {
        Self::named(CONSORTIUM, ids)
    }

    /// Members with the roles given (a site, an auditor, …).
    pub fn with_members(members: &[Member]) -> Consortium {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let local = LocalConsortium::create(tmp.path(), CONSORTIUM, members, 1)
            .unwrap_or_else(|e| panic!("consortium: {e:#}"));
        Consortium { tmp, local }
    }

    /// [`Consortium::new`] under another consortium name (or the same name with its own root).
    pub fn named(name: &str, ids: &[&str]) -> Consortium {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let local = LocalConsortium::create(tmp.path(), name, &Member::list(ids, "Test"), 1)
            .unwrap_or_else(|e| panic!("consortium: {e:#}"));
        Consortium { tmp, local }
    }

    pub fn site(&self, i: usize) -> &Site {
        &self.local.sites[i]
    }

    pub fn id(&self, i: usize) -> &SiteId {
        &self.local.sites[i].config.site.id
    }

    /// A site's keys, to craft what a member could send.
    pub fn keys(&self, i: usize) -> identity::SiteKeys {
        identity::load(&self.site(i).dir.join(KEYS_DIR)).unwrap_or_else(|e| panic!("keys: {e}"))
    }

    /// The consortium root, to issue and revoke certificates.
    pub fn root(&self) -> Root {
        Root::open(&self.local.dir.join("consortium")).unwrap_or_else(|e| panic!("root: {e:#}"))
    }

    /// The trust store every member holds.
    pub fn trust(&self) -> TrustStore {
        consortium::load_membership(&self.site(0).dir)
            .unwrap_or_else(|e| panic!("membership: {e:#}"))
            .trust
    }

    /// Starts every site's node (each dialing those before it) with the default policy, and
    /// waits until all are connected.
    pub async fn start(&self) -> Vec<Node> {
        self.start_with(|_| StartOptions::default()).await
    }

    /// [`Consortium::start`] with `options(i)` for site `i`.
    pub async fn start_with(&self, options: impl Fn(usize) -> StartOptions) -> Vec<Node> {
        self.local
            .start(options, CONNECT)
            .await
            .unwrap_or_else(|e| panic!("start: {e:#}"))
    }

    /// The audit events of one kind that site `i` logged.
    pub async fn events(&self, i: usize, kind: &str) -> Vec<AuditEvent> {
        events(self.site(i), kind, None).await
    }
}

/// Start options with a given policy.
pub fn with_policy(policy: Policy) -> StartOptions {
    StartOptions {
        policy: Some(policy),
        ..StartOptions::default()
    }
}

/// The audit events of one kind (of one reader study) a site logged.
pub async fn events(site: &Site, kind: &str, study: Option<&str>) -> Vec<AuditEvent> {
    site.store
        .audit_entries(AuditFilter {
            kind: Some(kind.into()),
            study: study.map(str::to_string),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("audit entries: {e}"))
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// A node that presents whatever certificate it is handed: a site directory with keys, and a
/// libp2p identity of its own.
pub struct Intruder {
    pub tmp: tempfile::TempDir,
    pub site: Site,
    pub signing: Arc<Ed25519KeyPair>,
    pub sealing: SealingSecret,
    pub libp2p: Keypair,
}

impl Intruder {
    pub fn new(id: &str) -> Intruder {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let dir = tmp.path().join("site");
        site::init(&dir, id, Some(id)).unwrap_or_else(|e| panic!("init: {e}"));
        let site = Site::open(&dir).unwrap_or_else(|e| panic!("open: {e}"));
        let keys = identity::load(&dir.join(KEYS_DIR)).unwrap_or_else(|e| panic!("keys: {e}"));
        Intruder {
            tmp,
            site,
            signing: Arc::new(keys.signing),
            sealing: keys.sealing,
            libp2p: Keypair::generate_ed25519(),
        }
    }

    pub fn id(&self) -> &SiteId {
        &self.site.config.site.id
    }

    /// A certificate request for this intruder's keys and peer id.
    pub fn request(&self) -> Vec<u8> {
        fedanno_protocol::cert::CertRequest::new(
            self.id().clone(),
            self.id().as_str(),
            &self.libp2p.public().to_peer_id().to_bytes(),
            *SealingPublic::from(&self.sealing).as_bytes(),
            &self.signing,
            now(),
        )
        .to_bytes()
    }

    /// A certificate for this intruder from `root`, valid for `days` days from `not_before`.
    pub fn admitted(
        &self,
        root: &mut Root,
        days: u64,
        not_before: Option<u64>,
    ) -> (Certificate, CertificateBody) {
        root.admit_at(&self.request(), &[Role::Site], days, not_before)
            .unwrap_or_else(|e| panic!("admit: {e:#}"))
    }

    pub fn signing_public(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.signing.public_key().as_ref());
        k
    }

    /// Starts a node on loopback that presents `cert` and dials `bootstrap`.
    pub async fn start(
        &self,
        cert: Certificate,
        body: CertificateBody,
        trust: TrustStore,
        bootstrap: Vec<Multiaddr>,
    ) -> Node {
        let id = self.id().clone();
        let audit = AuditLog::new(
            self.site.store.clone(),
            self.signing.clone(),
            origin(CONSORTIUM, &id),
            id.clone(),
        );
        let p = NodeParams {
            site: id,
            consortium: CONSORTIUM.to_string(),
            certificate: cert,
            certificate_body: body,
            trust,
            signing: self.signing.clone(),
            sealing: self.sealing.clone(),
            libp2p_key: self.libp2p.clone(),
            policy: Policy::default_site(),
            store: self.site.store.clone(),
            audit,
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            ],
            bootstrap,
            transport: Transport::Tcp,
            net: NetConfig::default(),
            checkpoint_interval: None,
            revocations_file: None,
        };
        Node::start(p)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"))
    }
}

/// The full dialable address of a node.
pub fn address(node: &Node) -> Multiaddr {
    node.handle.dial_addrs()[0].clone()
}

/// Waits (on the node's activity signal) until `cond` holds, or panics after `secs`.
pub async fn wait_until<F: Fn() -> bool>(node: &Node, secs: u64, what: &str, cond: F) {
    let done = node
        .handle
        .wait_until(Duration::from_secs(secs), |_| cond())
        .await;
    assert!(done, "timed out after {secs} s waiting for {what}");
}
