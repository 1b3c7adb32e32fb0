//! Pseudonymisation after PS3.15 Annex E (ARCHITECTURE.md, "Pseudonymisation"): every
//! identifier that could ever leave the site is replaced by a keyed, deterministic pseudonym
//! derived from the site's 32-byte secret. Deterministic means re-ingest and references stay
//! consistent; keyed means nobody without the secret can reverse or confirm a guess (UIDs are
//! guessable, so a plain hash would not do). Different sites have different secrets, so
//! pseudonyms do not link across sites.
//!
//! Purpose keys: `HKDF-SHA256(secret, salt = "fedanno-deid", info = "uid-v1" | "pid-v1" |
//! "dateshift-v1")`, each an HMAC-SHA256 key. The version suffix is recorded so a key rotation
//! is never silent.

use fedanno_protocol::ids::{PatientPseudonym, PseudoUid};
use ring::{hkdf, hmac};

use crate::site::identity::PseudonymSecret;

/// Names the pseudonymisation scheme in records that carry pseudonyms.
/// Fits DICOM VR LO (64 characters): it is written as DeidentificationMethod.
pub const SCHEME: &str = "fedanno-deid-v1: keyed HMAC-SHA256 pseudonyms, shifted dates";

pub struct Pseudonymizer {
    uid: hmac::Key,
    reader: hmac::Key,
    pid: hmac::Key,
    date: hmac::Key,
    max_shift_days: u32,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<keys redacted>)")
    }
}

struct HmacLen;
impl hkdf::KeyType for HmacLen {
    fn len(&self) -> usize {
        32
    }
}

fn purpose_key(secret: &PseudonymSecret, info: &'static [u8]) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"fedanno-deid").extract(secret.expose());
    let mut okm = zeroize::Zeroizing::new([0u8; 32]);
    // Expanding 32 bytes from SHA-256 HKDF cannot fail (the limit is 255 × 32 bytes).
    let filled = prk
        .expand(&[info], HmacLen)
        .and_then(|o| o.fill(okm.as_mut()));
    debug_assert!(filled.is_ok());
    hmac::Key::new(hmac::HMAC_SHA256, okm.as_ref())
}

impl Pseudonymizer {
    pub fn new(secret: &PseudonymSecret, max_shift_days: u32) -> Self {
        Self {
            uid: purpose_key(secret, b"uid-v1"),
            reader: purpose_key(secret, b"reader-v1"),
            pid: purpose_key(secret, b"pid-v1"),
            date: purpose_key(secret, b"dateshift-v1"),
            max_shift_days: max_shift_days.max(1),
        }
    }

    /// `2.25.` + the first 16 bytes of HMAC(k_uid, "uid:" ‖ uid) as an RFC 9562 version-8 UUID.
    pub fn uid(&self, original: &str) -> PseudoUid {
        let mut ctx = hmac::Context::with_key(&self.uid);
        ctx.update(b"uid:");
        ctx.update(original.as_bytes());
        let tag = ctx.sign();
        let mut b = [0u8; 16];
        b.copy_from_slice(&tag.as_ref()[..16]);
        b[6] = (b[6] & 0x0F) | 0x80; // version 8 (custom)
        b[8] = (b[8] & 0x3F) | 0x80; // RFC 9562 variant
        PseudoUid::from_u128(u128::from_be_bytes(b))
    }

    /// `P-` + base32 of the first 15 bytes of HMAC(k_pid, issuer ‖ 0 ‖ id).
    pub fn patient(&self, issuer: &str, patient_id: &str) -> PatientPseudonym {
        let mut ctx = hmac::Context::with_key(&self.pid);
        ctx.update(issuer.as_bytes());
        ctx.update(&[0]);
        ctx.update(patient_id.as_bytes());
        let tag = ctx.sign();
        let mut digest = [0u8; 15];
        digest.copy_from_slice(&tag.as_ref()[..15]);
        PatientPseudonym::from_digest(&digest)
    }

    /// A local reader's site-local pseudonym: `L-` + base32 of HMAC(k_reader, id).
    pub fn local_reader(&self, reader_id: &str) -> String {
        let tag = hmac::sign(&self.reader, reader_id.as_bytes());
        format!("L-{}", fedanno_protocol::ids::base32(&tag.as_ref()[..15]))
    }

    /// The per-patient date shift in days: in ±max, never 0.
    pub fn date_shift_days(&self, patient: &PatientPseudonym) -> i64 {
        let tag = hmac::sign(&self.date, patient.as_str().as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&tag.as_ref()[..8]);
        let m = u64::from(self.max_shift_days);
        let r = (u64::from_be_bytes(b) % (2 * m)) as i64; // 0 .. 2m-1
        let m = m as i64;
        if r < m { r - m } else { r - m + 1 } // -m..-1, 1..m
    }
}

/// Shifts a DICOM DA value (YYYYMMDD) by `days`; `None` for anything that is not a valid date.
pub fn shift_date(da: &str, days: i64) -> Option<String> {
    crate::site::calendar::shift_da(da, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Pseudonymizer {
        Pseudonymizer::new(&PseudonymSecret::from_bytes([7u8; 32]), 365)
    }

    #[test]
    fn uid_pseudonyms_are_deterministic_keyed_and_valid() {
        let a = p().uid("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322");
        let b = p().uid("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322");
        assert_eq!(a, b);
        assert!(a.as_str().starts_with("2.25.") && a.as_str().len() <= 44);
        assert!(PseudoUid::new(a.as_str()).is_ok());
        let other = Pseudonymizer::new(&PseudonymSecret::from_bytes([8u8; 32]), 365);
        assert_ne!(
            a,
            other.uid("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
        );
        assert_ne!(
            a,
            p().uid("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12323")
        );
        // Version-8 UUID layout.
        let v: u128 = a.as_str()[5..].parse().unwrap();
        let bytes = v.to_be_bytes();
        assert_eq!(bytes[6] >> 4, 8);
        assert_eq!(bytes[8] >> 6, 0b10);
    }

    #[test]
    fn patient_pseudonyms_depend_on_issuer() {
        let a = p().patient("", "12345");
        assert_eq!(a.as_str().len(), 26);
        assert_ne!(a, p().patient("HOSP-A", "12345"));
        assert!(!a.as_str().contains("12345"));
    }

    #[test]
    fn local_reader_pseudonyms_are_keyed() {
        let a = p().local_reader("dr-smith");
        assert!(a.starts_with("L-") && a.len() == 26);
        assert_eq!(a, p().local_reader("dr-smith"));
        let other = Pseudonymizer::new(&PseudonymSecret::from_bytes([9u8; 32]), 365);
        assert_ne!(a, other.local_reader("dr-smith"));
    }

    #[test]
    fn date_shift_is_bounded_nonzero_and_per_patient() {
        let px = p();
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let pat = px.patient("", &format!("id{i}"));
            let s = px.date_shift_days(&pat);
            assert!(s != 0 && (-365..=365).contains(&s));
            seen.insert(s);
        }
        assert!(seen.len() > 100);
    }
}
