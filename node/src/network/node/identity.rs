//! Who this node is: its site id, consortium, certificate and keys. Fixed for the life of the
//! node: no locks. (The trust store, which revocations change, is [`super::trust`]'s.)

use std::sync::Arc;

use fedanno_protocol::cert::{Certificate, CertificateBody, Role};
use fedanno_protocol::crypto;
use fedanno_protocol::ids::SiteId;
use ring::signature::Ed25519KeyPair;

use super::NodeParams;

pub(crate) struct Identity {
    site: SiteId,
    consortium: String,
    certificate: Certificate,
    body: CertificateBody,
    signing: Arc<Ed25519KeyPair>,
    sealing: x25519_dalek::StaticSecret,
}

impl Identity {
    pub(super) fn new(p: &NodeParams) -> Self {
        Identity {
            site: p.site.clone(),
            consortium: p.consortium.clone(),
            certificate: p.certificate.clone(),
            body: p.certificate_body.clone(),
            signing: p.signing.clone(),
            sealing: p.sealing.clone(),
        }
    }

    pub(crate) fn site(&self) -> &SiteId {
        &self.site
    }

    pub(crate) fn consortium(&self) -> &str {
        &self.consortium
    }

    pub(crate) fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The certificate's body: roles and validity.
    pub(crate) fn body(&self) -> &CertificateBody {
        &self.body
    }

    pub(crate) fn roles(&self) -> &[Role] {
        &self.body.roles
    }

    pub(crate) fn has_role(&self, role: Role) -> bool {
        self.body.has_role(role)
    }

    /// An auditor's node: it fetches audit material and does nothing else on the network.
    pub(crate) fn fetch_only(&self) -> bool {
        fedanno_protocol::cert::fetch_only(&self.body.roles)
    }

    /// The site's signing key (envelopes, receipts, checkpoints, rosters, round keys).
    pub(crate) fn signing(&self) -> &Ed25519KeyPair {
        &self.signing
    }

    /// Our public signing key.
    pub(crate) fn public_key(&self) -> [u8; 32] {
        crypto::public_key(&self.signing)
    }

    pub(super) fn sealing(&self) -> &x25519_dalek::StaticSecret {
        &self.sealing
    }
}
