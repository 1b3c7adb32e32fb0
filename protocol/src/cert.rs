//! Consortium trust: the consortium's public information, site certificates, certificate requests,
//! revocation lists ([`RevocationList`]) and the [`TrustStore`] every node checks peers against.
//!
//! Every signed object here is `{ body: canonical postcard bytes, signature }`: the signature is
//! checked over the exact body bytes received (with a per-object domain, see [`crate::crypto`])
//! *before* the body is parsed beyond its version number, and a body is only ever decoded from
//! those bytes, never re-serialised to check a signature. Verification takes the current time as
//! an argument; this module never reads a clock.

use std::fmt;
use std::str::FromStr;

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{self, CodecError, bounded, byte_array};
use crate::crypto::{self, DOMAIN_CERT, DOMAIN_CERT_REQUEST};
use crate::ids::SiteId;
use crate::limits::{
    MAX_CERT_BYTES, MAX_CONSORTIUM_INFO_BYTES, MAX_NAME_LEN, MAX_PEER_ID_LEN, MAX_ROLES,
};

mod revocation;
mod trust;

pub use revocation::{CRL_VERSION, RevocationBody, RevocationList, Revoked};
pub use trust::TrustStore;

/// Version of [`CertificateBody`].
pub const CERT_VERSION: u16 = 1;
/// Version of [`CertRequestBody`].
pub const CERT_REQUEST_VERSION: u16 = 1;

/// What a certified site may do in the consortium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Site,
    Coordinator,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Site, Role::Coordinator, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Site => "site",
            Role::Coordinator => "coordinator",
            Role::Auditor => "auditor",
        }
    }
}

/// Whether a certificate with `roles` may only fetch audit material: an auditor's, with no
/// site or coordinator role. Such a member sends no study traffic, gossip or witness requests,
/// and a site refuses anything else from it.
pub fn fetch_only(roles: &[Role]) -> bool {
    !roles.is_empty() && roles.iter().all(|r| *r == Role::Auditor)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `site`, `coordinator` or `auditor`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown role (expected site, coordinator or auditor)")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

/// Why a certificate, request, revocation list or peer was refused. Never contains key material
/// or payload bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CertError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("issued for another consortium")]
    WrongConsortium,
    #[error("certificate expired at {not_after}")]
    Expired { not_after: u64 },
    #[error("not valid before {not_before}")]
    NotYetValid { not_before: u64 },
    #[error("certificate serial {serial} is revoked")]
    Revoked { serial: u64 },
    #[error("certificate is bound to another peer id")]
    WrongPeer,
    #[error("unsupported version {0}")]
    UnsupportedVersion(u16),
    #[error("certificate lacks the role {0}")]
    MissingRole(Role),
    #[error("malformed")]
    Malformed,
    #[error("revocation list {got} is not newer than the one held ({have})")]
    StaleRevocationList { have: u64, got: u64 },
}

impl From<CodecError> for CertError {
    fn from(_: CodecError) -> Self {
        CertError::Malformed
    }
}

/// A consortium name: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits, '-', '_' and '.'.
pub fn validate_consortium_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CertError::Malformed)
    }
}

/// A display name: 1 to [`MAX_NAME_LEN`] bytes of UTF-8 without control characters.
pub fn validate_display_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(CertError::Malformed)
    }
}

/// The public file every site imports: the consortium's name and root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsortiumInfo {
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub name: String,
    pub root_key: [u8; 32],
}

const CONSORTIUM_TEXT_HEADER: &str = "fedanno-consortium v1";

impl ConsortiumInfo {
    pub fn new(name: &str, root: &Ed25519KeyPair) -> Result<Self, CertError> {
        validate_consortium_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            root_key: crypto::public_key(root),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CertError> {
        let info: Self = codec::decode(b, MAX_CONSORTIUM_INFO_BYTES)?;
        validate_consortium_name(&info.name)?;
        Ok(info)
    }

    /// The text form: three lines, `fedanno-consortium v1`, `name <name>`, `root-key <hex>`.
    pub fn to_text(&self) -> String {
        format!(
            "{CONSORTIUM_TEXT_HEADER}\nname {}\nroot-key {}\n",
            self.name,
            hex(&self.root_key)
        )
    }

    /// Parses the text form strictly (a final newline is optional; nothing else may vary).
    pub fn from_text(s: &str) -> Result<Self, CertError> {
        if s.len() > MAX_CONSORTIUM_INFO_BYTES {
            return Err(CertError::Malformed);
        }
        let s = s.strip_suffix('\n').unwrap_or(s);
        let mut lines = s.split('\n');
        let (Some(head), Some(name), Some(key), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(CertError::Malformed);
        };
        if head != CONSORTIUM_TEXT_HEADER {
            return Err(CertError::Malformed);
        }
        let name = name.strip_prefix("name ").ok_or(CertError::Malformed)?;
        validate_consortium_name(name)?;
        let key = key.strip_prefix("root-key ").ok_or(CertError::Malformed)?;
        let root_key = unhex32(key).ok_or(CertError::Malformed)?;
        Ok(Self {
            name: name.to_owned(),
            root_key,
        })
    }

    /// A short fingerprint of the root key for humans to compare out of band (first 16 bytes of
    /// SHA-256 of the key, hex).
    pub fn fingerprint(&self) -> String {
        let h = crypto::sha256(&self.root_key);
        hex(h.get(..16).unwrap_or(&h))
    }
}

/// What the consortium root vouches for about one site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBody {
    pub version: u16,
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub consortium: String,
    pub serial: u64,
    pub site_id: SiteId,
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub display_name: String,
    /// libp2p `PeerId::to_bytes()`; opaque here.
    #[serde(deserialize_with = "bounded::bytes::<_, MAX_PEER_ID_LEN>")]
    pub peer_id: Vec<u8>,
    /// Ed25519 public key for application signatures.
    pub signing_key: [u8; 32],
    /// X25519 public key for sealing.
    pub sealing_key: [u8; 32],
    /// Strictly increasing (sorted, no duplicates), not empty.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ROLES>")]
    pub roles: Vec<Role>,
    pub not_before: u64,
    pub not_after: u64,
}

impl CertificateBody {
    /// The body the root signs for a verified request: roles are sorted and de-duplicated.
    pub fn from_request(
        req: &CertRequestBody,
        consortium: &str,
        serial: u64,
        roles: &[Role],
        not_before: u64,
        not_after: u64,
    ) -> Self {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        Self {
            version: CERT_VERSION,
            consortium: consortium.to_owned(),
            serial,
            site_id: req.site_id.clone(),
            display_name: req.display_name.clone(),
            peer_id: req.peer_id.clone(),
            signing_key: req.signing_key,
            sealing_key: req.sealing_key,
            roles,
            not_before,
            not_after,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn require_role(&self, role: Role) -> Result<(), CertError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(CertError::MissingRole(role))
        }
    }

    /// Structural checks that need no key and no clock.
    fn validate(&self) -> Result<(), CertError> {
        if self.version != CERT_VERSION {
            return Err(CertError::UnsupportedVersion(self.version));
        }
        validate_consortium_name(&self.consortium)?;
        validate_display_name(&self.display_name)?;
        let roles_ok =
            !self.roles.is_empty() && self.roles.windows(2).all(|w| w.first() < w.get(1));
        if self.peer_id.is_empty() || !roles_ok || self.not_before > self.not_after {
            return Err(CertError::Malformed);
        }
        Ok(())
    }
}

/// A body and a signature over `domain ‖ body`, as carried on the wire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Signed<const MAX: usize> {
    #[serde(deserialize_with = "bounded::bytes::<_, MAX>")]
    pub body: Vec<u8>,
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
}

/// The leading version number of a versioned body, read without decoding the rest.
pub(crate) fn peek_version(body: &[u8]) -> Option<u16> {
    postcard::take_from_bytes::<u16>(body).ok().map(|(v, _)| v)
}

/// A site certificate: a [`CertificateBody`] signed by the consortium root.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Certificate(Signed<MAX_CERT_BYTES>);

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({})", hex(&self.hash()))
    }
}

impl Certificate {
    pub fn issue(body: &CertificateBody, root: &Ed25519KeyPair) -> Certificate {
        let body = codec::encode(body);
        let signature = crypto::sign(root, DOMAIN_CERT, &body);
        Certificate(Signed { body, signature })
    }

    /// Checks the root's signature, the version, the consortium name and the validity window
    /// (`not_before <= now <= not_after`), and returns the body.
    pub fn verify(
        &self,
        consortium: &ConsortiumInfo,
        now: u64,
    ) -> Result<CertificateBody, CertError> {
        if !crypto::verify(
            &consortium.root_key,
            DOMAIN_CERT,
            &self.0.body,
            &self.0.signature,
        ) {
            return Err(CertError::BadSignature);
        }
        let body = self.body_unverified()?;
        if body.consortium != consortium.name {
            return Err(CertError::WrongConsortium);
        }
        if now < body.not_before {
            return Err(CertError::NotYetValid {
                not_before: body.not_before,
            });
        }
        if now > body.not_after {
            return Err(CertError::Expired {
                not_after: body.not_after,
            });
        }
        Ok(body)
    }

    /// The body, parsed and structurally checked but **not** authenticated: for display and for
    /// naming a refused peer in the audit log, never for a trust decision.
    pub fn body_unverified(&self) -> Result<CertificateBody, CertError> {
        match peek_version(&self.0.body) {
            Some(CERT_VERSION) => {}
            Some(v) => return Err(CertError::UnsupportedVersion(v)),
            None => return Err(CertError::Malformed),
        }
        let body: CertificateBody = codec::decode(&self.0.body, MAX_CERT_BYTES)?;
        body.validate()?;
        Ok(body)
    }

    /// SHA-256 of the encoded certificate.
    pub fn hash(&self) -> [u8; 32] {
        crypto::sha256(&self.to_bytes())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
        codec::decode(b, MAX_CERT_BYTES)
    }
}

/// What a site asks the consortium root to certify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRequestBody {
    pub version: u16,
    pub site_id: SiteId,
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub display_name: String,
    #[serde(deserialize_with = "bounded::bytes::<_, MAX_PEER_ID_LEN>")]
    pub peer_id: Vec<u8>,
    pub signing_key: [u8; 32],
    pub sealing_key: [u8; 32],
    pub created_at: u64,
}

/// A certificate request, signed by the site's own signing key (proof of possession).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CertRequest(Signed<MAX_CERT_BYTES>);

impl fmt::Debug for CertRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertRequest({})", hex(&crypto::sha256(&self.to_bytes())))
    }
}

impl CertRequest {
    /// Builds and signs a request; the signing key in the body is `site_key`'s public key.
    pub fn new(
        site_id: SiteId,
        display_name: &str,
        peer_id: &[u8],
        sealing_key: [u8; 32],
        site_key: &Ed25519KeyPair,
        now: u64,
    ) -> Self {
        let body = CertRequestBody {
            version: CERT_REQUEST_VERSION,
            site_id,
            display_name: display_name.to_owned(),
            peer_id: peer_id.to_vec(),
            signing_key: crypto::public_key(site_key),
            sealing_key,
            created_at: now,
        };
        let body = codec::encode(&body);
        let signature = crypto::sign(site_key, DOMAIN_CERT_REQUEST, &body);
        CertRequest(Signed { body, signature })
    }

    /// Checks the version, the fields, and that the request is signed by the key it names.
    pub fn verify(&self) -> Result<CertRequestBody, CertError> {
        match peek_version(&self.0.body) {
            Some(CERT_REQUEST_VERSION) => {}
            Some(v) => return Err(CertError::UnsupportedVersion(v)),
            None => return Err(CertError::Malformed),
        }
        let body: CertRequestBody = codec::decode(&self.0.body, MAX_CERT_BYTES)?;
        validate_display_name(&body.display_name)?;
        if body.peer_id.is_empty() {
            return Err(CertError::Malformed);
        }
        if !crypto::verify(
            &body.signing_key,
            DOMAIN_CERT_REQUEST,
            &self.0.body,
            &self.0.signature,
        ) {
            return Err(CertError::BadSignature);
        }
        Ok(body)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
        codec::decode(b, MAX_CERT_BYTES)
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        for d in [x >> 4, x & 15] {
            if let Some(&c) = DIGITS.get(usize::from(d)) {
                s.push(char::from(c));
            }
        }
    }
    s
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *o = (digit(*pair.first()?)? << 4) | digit(*pair.get(1)?)?;
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests;
