//! Identifiers that may leave a site: site ids and pseudonymous DICOM UIDs and patient
//! pseudonyms. Each is a validated newtype, so a raw original identifier cannot be passed where
//! a pseudonym is expected by accident, and a peer's malformed identifier is refused at decode.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{MAX_PATIENT_PSEUDONYM_LEN, MAX_SITE_ID_LEN, MAX_UID_LEN};

/// Why an identifier was refused. The refused value itself is never part of the message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error(
        "site id must be 1 to {MAX_SITE_ID_LEN} characters of a-z, 0-9 and '-', not starting with '-'"
    )]
    SiteId,
    #[error(
        "pseudonymous UID must be '2.25.' followed by a decimal number without leading zeros, at most {MAX_UID_LEN} characters"
    )]
    PseudoUid,
    #[error("patient pseudonym must be 'P-' followed by 1 to {} characters of A-Z and 2-7", MAX_PATIENT_PSEUDONYM_LEN - 2)]
    PatientPseudonym,
}

/// A site's identifier within a consortium, e.g. `st-marys`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);

impl SiteId {
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX_SITE_ID_LEN
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::SiteId)
        }
    }

    /// Derives a site id from a human display name: lower-cased, runs of other characters
    /// folded into one '-', trimmed to the maximum length.
    pub fn from_display_name(name: &str) -> Result<Self, IdError> {
        let mut out = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        let trimmed: String = out
            .trim_end_matches('-')
            .chars()
            .take(MAX_SITE_ID_LEN)
            .collect();
        Self::new(trimmed.trim_end_matches('-'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A pseudonymous DICOM UID in the `2.25.` (UUID-derived) arc, PS3.5 Annex B.2.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PseudoUid(String);

impl PseudoUid {
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let digits = s.strip_prefix("2.25.").ok_or(IdError::PseudoUid)?;
        let ok = s.len() <= MAX_UID_LEN
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::PseudoUid)
        }
    }

    /// Renders a 128-bit value as a `2.25.` UID.
    pub fn from_u128(v: u128) -> Self {
        Self(format!("2.25.{v}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A patient pseudonym: `P-` followed by RFC 4648 base32 (no padding).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatientPseudonym(String);

impl PatientPseudonym {
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let body = s.strip_prefix("P-").ok_or(IdError::PatientPseudonym)?;
        let ok = !body.is_empty()
            && s.len() <= MAX_PATIENT_PSEUDONYM_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::PatientPseudonym)
        }
    }

    /// `P-` + RFC 4648 base32 of a 15-byte keyed digest (24 characters).
    pub fn from_digest(digest: &[u8; 15]) -> Self {
        Self(format!("P-{}", base32(digest)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 4648 base32, upper case, no padding.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut push = |v: u32| {
        if let Some(&c) = ALPHABET.get((v & 31) as usize) {
            out.push(char::from(c));
        }
    };
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            push(acc >> bits);
        }
    }
    if bits > 0 {
        push(acc << (5 - bits));
    }
    out
}

macro_rules! string_newtype_impls {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.0)
            }
        }
    )*};
}
string_newtype_impls!(SiteId, PseudoUid, PatientPseudonym);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids() {
        assert!(SiteId::new("st-marys").is_ok());
        assert!(SiteId::new("").is_err());
        assert!(SiteId::new("-x").is_err());
        assert!(SiteId::new("A").is_err());
        assert!(SiteId::new("a".repeat(33)).is_err());
        assert_eq!(
            SiteId::from_display_name("St. Mary's Hospital (North)")
                .unwrap()
                .as_str(),
            "st-mary-s-hospital-north"
        );
        assert!(SiteId::from_display_name("!!!").is_err());
    }

    #[test]
    fn pseudo_uids() {
        assert!(PseudoUid::new("2.25.5907709249280095296463372076433834488").is_ok());
        assert!(PseudoUid::new("2.25.0").is_ok());
        assert!(PseudoUid::new("2.25.01").is_err());
        assert!(PseudoUid::new("1.2.840.10008").is_err());
        assert!(PseudoUid::new("2.25.").is_err());
        assert!(PseudoUid::new("2.25.12a").is_err());
        assert_eq!(PseudoUid::from_u128(u128::MAX).as_str().len(), 5 + 39);
    }

    #[test]
    fn patient_pseudonyms() {
        assert!(PatientPseudonym::new("P-ABC234").is_ok());
        assert!(PatientPseudonym::new("P-abc").is_err());
        assert!(PatientPseudonym::new("X-ABC").is_err());
        assert!(PatientPseudonym::new("P-").is_err());
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let p = PatientPseudonym::from_digest(&[0xA5; 15]);
        assert_eq!(p.as_str().len(), 26);
        assert_eq!(PatientPseudonym::new(p.as_str()).unwrap(), p);
    }

    #[test]
    fn decoding_refuses_malformed_identifiers() {
        let bytes = postcard::to_stdvec(&"1.2.3".to_string()).unwrap();
        assert!(postcard::from_bytes::<PseudoUid>(&bytes).is_err());
        let good = PseudoUid::from_u128(42);
        let bytes = postcard::to_stdvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<PseudoUid>(&bytes).unwrap(), good);
    }
}
