//! The trust anchor a node checks every peer against: the consortium's root key and the newest
//! verified revocation list.

use ring::signature::Ed25519KeyPair;

use super::{
    CertError, Certificate, CertificateBody, ConsortiumInfo, RevocationBody, RevocationList,
};

/// The consortium and its newest verified revocation list.
#[derive(Clone, Debug)]
pub struct TrustStore {
    consortium: ConsortiumInfo,
    crl: Option<RevocationBody>,
}

impl TrustStore {
    pub fn new(consortium: ConsortiumInfo) -> Self {
        Self {
            consortium,
            crl: None,
        }
    }

    pub fn consortium(&self) -> &ConsortiumInfo {
        &self.consortium
    }

    /// The revocation list in force, if any.
    pub fn revocations(&self) -> Option<&RevocationBody> {
        self.crl.as_ref()
    }

    /// Installs a verified revocation list. Refuses a list with a lower number than the one held,
    /// and a different list with the same number; re-installing the same list is a no-op.
    pub fn set_revocations(&mut self, crl: &RevocationList, now: u64) -> Result<(), CertError> {
        let body = crl.verify(&self.consortium, now)?;
        if let Some(have) = &self.crl
            && (body.number < have.number || (body.number == have.number && body != *have))
        {
            return Err(CertError::StaleRevocationList {
                have: have.number,
                got: body.number,
            });
        }
        self.crl = Some(body);
        Ok(())
    }

    /// A certificate valid now and not revoked (no peer binding: for certificates that arrive
    /// inside messages rather than from the connection's peer).
    pub fn check_certificate(
        &self,
        cert: &Certificate,
        now: u64,
    ) -> Result<CertificateBody, CertError> {
        let body = cert.verify(&self.consortium, now)?;
        if self.crl.as_ref().is_some_and(|c| c.is_revoked(body.serial)) {
            return Err(CertError::Revoked {
                serial: body.serial,
            });
        }
        Ok(body)
    }

    /// The full check for a peer: certificate valid now, not revoked, bound to `peer_id`.
    pub fn check_peer(
        &self,
        cert: &Certificate,
        peer_id: &[u8],
        now: u64,
    ) -> Result<CertificateBody, CertError> {
        let body = self.check_certificate(cert, now)?;
        if body.peer_id != peer_id {
            return Err(CertError::WrongPeer);
        }
        Ok(body)
    }

    /// Whether `root` is this consortium's root key (for `consortium admit` sanity checks).
    pub fn is_root(&self, root: &Ed25519KeyPair) -> bool {
        crate::crypto::public_key(root) == self.consortium.root_key
    }
}
