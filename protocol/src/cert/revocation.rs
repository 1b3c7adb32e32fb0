//! Revocation lists: the consortium root's signed, numbered list of revoked certificate serials.
//! A list is canonical: entries strictly increasing by serial, at most [`MAX_REVOKED`] of them.

use std::fmt;

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use super::{CertError, ConsortiumInfo, Signed, peek_version, validate_consortium_name};
use crate::codec::{self, CodecError, bounded};
use crate::crypto::{self, DOMAIN_CRL};
use crate::ids::SiteId;
use crate::limits::{
    MAX_CLOCK_SKEW_SECS, MAX_NAME_LEN, MAX_REASON_LEN, MAX_REVOCATION_LIST_BYTES, MAX_REVOKED,
};

/// Version of [`RevocationBody`].
pub const CRL_VERSION: u16 = 1;

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub serial: u64,
    pub site_id: SiteId,
    #[serde(deserialize_with = "bounded::string::<_, MAX_REASON_LEN>")]
    pub reason: String,
    pub revoked_at: u64,
}

/// What the root signs: the whole current list, numbered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationBody {
    pub version: u16,
    #[serde(deserialize_with = "bounded::string::<_, MAX_NAME_LEN>")]
    pub consortium: String,
    /// Increases with every list the root issues.
    pub number: u64,
    pub issued_at: u64,
    /// Strictly increasing by serial.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_REVOKED>")]
    pub revoked: Vec<Revoked>,
}

impl RevocationBody {
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.revoked
            .binary_search_by_key(&serial, |r| r.serial)
            .is_ok()
    }

    fn validate(&self) -> Result<(), CertError> {
        if self.version != CRL_VERSION {
            return Err(CertError::UnsupportedVersion(self.version));
        }
        validate_consortium_name(&self.consortium)?;
        let sorted = self
            .revoked
            .windows(2)
            .all(|w| matches!((w.first(), w.get(1)), (Some(a), Some(b)) if a.serial < b.serial));
        if !sorted
            || self
                .revoked
                .iter()
                .any(|r| r.reason.chars().any(char::is_control))
        {
            return Err(CertError::Malformed);
        }
        Ok(())
    }
}

/// A signed revocation list, parsed (but not trusted) at decode.
#[derive(Clone, PartialEq, Eq)]
pub struct RevocationList {
    signed: Signed<MAX_REVOCATION_LIST_BYTES>,
    body: RevocationBody,
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList")
            .field("number", &self.body.number)
            .field("revoked", &self.body.revoked.len())
            .finish()
    }
}

impl RevocationList {
    /// Signs a list. Entries are put in canonical order (sorted by serial; of two entries with
    /// the same serial the first is kept) and truncated to [`MAX_REVOKED`].
    pub fn issue(body: &RevocationBody, root: &Ed25519KeyPair) -> RevocationList {
        let mut body = body.clone();
        body.revoked.sort_by_key(|r| r.serial);
        body.revoked.dedup_by_key(|r| r.serial);
        body.revoked.truncate(MAX_REVOKED);
        let bytes = codec::encode(&body);
        let signature = crypto::sign(root, DOMAIN_CRL, &bytes);
        RevocationList {
            signed: Signed {
                body: bytes,
                signature,
            },
            body,
        }
    }

    /// Checks the root's signature, the version, the consortium, and that the list was not
    /// issued in the future (beyond [`MAX_CLOCK_SKEW_SECS`]). Whether it is newer than the list a
    /// node holds is [`super::TrustStore::set_revocations`]'s job.
    pub fn verify(
        &self,
        consortium: &ConsortiumInfo,
        now: u64,
    ) -> Result<RevocationBody, CertError> {
        if !crypto::verify(
            &consortium.root_key,
            DOMAIN_CRL,
            &self.signed.body,
            &self.signed.signature,
        ) {
            return Err(CertError::BadSignature);
        }
        self.body.validate()?;
        if self.body.consortium != consortium.name {
            return Err(CertError::WrongConsortium);
        }
        if self.body.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(CertError::NotYetValid {
                not_before: self.body.issued_at,
            });
        }
        Ok(self.body.clone())
    }

    /// Whether `serial` is on this list (as decoded; call [`Self::verify`] before trusting it).
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.body.is_revoked(serial)
    }

    /// The list's number (unauthenticated until verified).
    pub fn number(&self) -> u64 {
        self.body.number
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&self.signed)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
        let signed: Signed<MAX_REVOCATION_LIST_BYTES> =
            codec::decode(b, MAX_REVOCATION_LIST_BYTES)?;
        if peek_version(&signed.body) != Some(CRL_VERSION) {
            return Err(CodecError::Malformed);
        }
        let body = codec::decode(&signed.body, MAX_REVOCATION_LIST_BYTES)?;
        Ok(Self { signed, body })
    }
}
