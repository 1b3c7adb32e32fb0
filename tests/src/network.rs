//! Multi-node fixtures: a test consortium (a root key that issues certificates), sites made
//! with `fedanno init`'s own code, and nodes started on loopback TCP with port 0. Every wait is
//! on an event (the node's `activity` watch) under a timeout: no sleeps.

use std::sync::Arc;
use std::time::Duration;

use fedanno_node::network::audit::{AuditLog, origin};
use fedanno_node::network::node::{Node, NodeParams};
use fedanno_node::network::p2p::{self, Keypair, Multiaddr, NetConfig, Transport};
use fedanno_node::network::policy::Policy;
use fedanno_node::site::Site;
use fedanno_node::site::identity;
use fedanno_protocol::cert::{
    CertRequest, Certificate, CertificateBody, ConsortiumInfo, Role, TrustStore,
};
use fedanno_protocol::ids::SiteId;
use ring::signature::{Ed25519KeyPair, KeyPair};

pub const CONSORTIUM: &str = "test-consortium";

pub use fedanno_node::site::clock::now;

/// A consortium root that issues certificates.
pub struct TestConsortium {
    pub root: Ed25519KeyPair,
    pub info: ConsortiumInfo,
    next_serial: std::sync::atomic::AtomicU64,
}

impl TestConsortium {
    pub fn new(name: &str, seed: u8) -> Self {
        let root = Ed25519KeyPair::from_seed_unchecked(&[seed; 32])
            .unwrap_or_else(|e| panic!("root key: {e}"));
        let info =
            ConsortiumInfo::new(name, &root).unwrap_or_else(|e| panic!("consortium info: {e:?}"));
        TestConsortium {
            root,
            info,
            next_serial: 1.into(),
        }
    }

    pub fn trust(&self) -> TrustStore {
        TrustStore::new(self.info.clone())
    }

    /// Issues a certificate for `site` valid in [not_before, not_after].
    pub fn issue(
        &self,
        site: &TestSite,
        roles: &[Role],
        not_before: u64,
        not_after: u64,
    ) -> (Certificate, CertificateBody) {
        let req = CertRequest::new(
            site.id.clone(),
            &site.id.to_string(),
            &site.peer_id_bytes(),
            site.sealing_public(),
            &site.signing,
            now(),
        );
        let body = req.verify().unwrap_or_else(|e| panic!("request: {e:?}"));
        let serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = CertificateBody::from_request(
            &body,
            &self.info.name,
            serial,
            roles,
            not_before,
            not_after,
        );
        (Certificate::issue(&body, &self.root), body)
    }

    /// A certificate valid for a day, as `site`.
    pub fn admit(&self, site: &TestSite, roles: &[Role]) -> (Certificate, CertificateBody) {
        self.issue(site, roles, now() - 60, now() + 86_400)
    }
}

/// A site directory made by `fedanno init`, opened, with its keys loaded.
pub struct TestSite {
    pub tmp: tempfile::TempDir,
    pub id: SiteId,
    pub site: Site,
    pub signing: Arc<Ed25519KeyPair>,
    pub sealing: fedanno_node::network::node::SealingSecret,
    pub libp2p: Keypair,
}

impl TestSite {
    pub fn new(name: &str) -> TestSite {
        let (tmp, site) = crate::temp_site(name);
        let keys = identity::load(&site.dir.join("keys")).unwrap_or_else(|e| panic!("keys: {e}"));
        TestSite {
            tmp,
            id: site.config.site.id.clone(),
            signing: Arc::new(keys.signing),
            sealing: keys.sealing,
            libp2p: Keypair::generate_ed25519(),
            site,
        }
    }

    pub fn peer_id_bytes(&self) -> Vec<u8> {
        self.libp2p.public().to_peer_id().to_bytes()
    }

    pub fn sealing_public(&self) -> [u8; 32] {
        *x25519_public(&self.sealing).as_bytes()
    }

    pub fn signing_public(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.signing.public_key().as_ref());
        k
    }

    pub fn audit(&self) -> AuditLog {
        AuditLog::new(
            self.site.store.clone(),
            self.signing.clone(),
            origin(CONSORTIUM, &self.id),
            self.id.clone(),
        )
    }

    /// Starts a node on loopback TCP, port 0.
    pub async fn start(
        &self,
        cert: Certificate,
        body: CertificateBody,
        trust: TrustStore,
        policy: Policy,
        bootstrap: Vec<Multiaddr>,
    ) -> Node {
        self.start_with(cert, body, trust, policy, bootstrap, None)
            .await
    }

    /// Starts a node that also signs and publishes a checkpoint every `checkpoints`.
    pub async fn start_with(
        &self,
        cert: Certificate,
        body: CertificateBody,
        trust: TrustStore,
        policy: Policy,
        bootstrap: Vec<Multiaddr>,
        checkpoints: Option<Duration>,
    ) -> Node {
        self.start_tapped(cert, body, trust, policy, bootstrap, checkpoints, None)
            .await
    }

    /// Starts a node whose every outbound frame is also shown to `tap` (before Noise).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_tapped(
        &self,
        cert: Certificate,
        body: CertificateBody,
        trust: TrustStore,
        policy: Policy,
        bootstrap: Vec<Multiaddr>,
        checkpoints: Option<Duration>,
        tap: Option<p2p::Tap>,
    ) -> Node {
        let p = NodeParams {
            site: self.id.clone(),
            consortium: CONSORTIUM.to_string(),
            certificate: cert,
            certificate_body: body,
            trust,
            signing: self.signing.clone(),
            sealing: self.sealing.clone(),
            libp2p_key: self.libp2p.clone(),
            policy,
            store: self.site.store.clone(),
            audit: self.audit(),
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            ],
            bootstrap,
            transport: Transport::Tcp,
            net: NetConfig {
                request_timeout: Duration::from_secs(10),
                tap,
                ..NetConfig::default()
            },
            checkpoint_interval: checkpoints,
        };
        Node::start(p)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"))
    }
}

fn x25519_public(
    s: &fedanno_node::network::node::SealingSecret,
) -> fedanno_node::network::node::SealingPublic {
    fedanno_node::network::node::SealingPublic::from(s)
}

/// The full dialable address of a node.
pub fn address(node: &Node) -> Multiaddr {
    let a = node.handle.shared.listening[0].clone();
    a.with(p2p::Protocol::P2p(node.handle.net().peer_id()))
}

/// Waits (on the node's activity signal) until `cond` holds, or panics after `secs`.
pub async fn wait_until<F: Fn() -> bool>(node: &Node, secs: u64, what: &str, cond: F) {
    let mut rx = node.handle.shared.activity.subscribe();
    let done = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if cond() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        done.is_ok() && cond(),
        "timed out after {secs} s waiting for {what}"
    );
}
