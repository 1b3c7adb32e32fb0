//! Sealing: encrypting one payload to several recipients' X25519 keys.
//!
//! Construction (all primitives in [`crate::crypto`]):
//! 1. a fresh random 32-byte content key `K` and a fresh random ephemeral X25519 secret `e`
//!    (public `E`) per envelope;
//! 2. `ciphertext = ChaCha20-Poly1305(K, nonce = 0, aad = header bytes, payload)`;
//! 3. per recipient `i` with site id `id_i` and X25519 key `R_i`:
//!    `W_i = HKDF-SHA256(salt = "fedanno-seal-v1\0", ikm = X25519(e, R_i), info = E ‖ R_i ‖ id_i)`,
//!    `wrapped_i = ChaCha20-Poly1305(W_i, nonce = 0, aad = SHA-256(header bytes), K)`.
//!
//! **Nonces are never reused, by construction:** `K` is random and encrypts exactly one message;
//! each `W_i` is derived from an ephemeral secret used for one envelope only, with a distinct
//! recipient (key and id) in the HKDF info, so it also encrypts exactly one message. A fixed zero
//! nonce is therefore safe for both. Both ciphertexts are bound to the exact header (sender,
//! recipient, study, round, sequence, time), so a sealed payload cannot be lifted into another
//! envelope; the sender's signature over header and payload authenticates the whole.
//! A recipient key of low order (all-zero shared secret) is refused.

use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::EnvelopeError;
use crate::codec::{bounded, byte_array};
use crate::crypto::{self, SEAL_SALT, TAG_LEN};
use crate::ids::SiteId;
use crate::limits::{MAX_ENVELOPE_BYTES, MAX_RECIPIENTS};

const ZERO_NONCE: [u8; 12] = [0; 12];

/// A source of secure random bytes. Implemented for every ring `SecureRandom`; ring seals that
/// trait, so tests implement this one for a deterministic generator instead.
pub(crate) trait Entropy {
    fn fill_random(&self, dest: &mut [u8]) -> Result<(), EnvelopeError>;
}

impl<T: ring::rand::SecureRandom + ?Sized> Entropy for T {
    fn fill_random(&self, dest: &mut [u8]) -> Result<(), EnvelopeError> {
        self.fill(dest).map_err(|_| EnvelopeError::RandomnessFailed)
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Sealed {
    pub(super) ephemeral: [u8; 32],
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_RECIPIENTS>")]
    recipients: Vec<Wrapped>,
    #[serde(deserialize_with = "bounded::bytes::<_, MAX_ENVELOPE_BYTES>")]
    pub(super) ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Wrapped {
    recipient: SiteId,
    #[serde(with = "byte_array")]
    key: [u8; 32 + TAG_LEN],
}

impl Sealed {
    /// Structural checks: at least one recipient, no recipient twice, room for a tag.
    pub(super) fn validate(&self) -> Result<(), EnvelopeError> {
        if self.recipients.is_empty()
            || self.ciphertext.len() < TAG_LEN
            || has_duplicates(&self.recipients)
        {
            return Err(EnvelopeError::Malformed);
        }
        Ok(())
    }

    pub(super) fn recipient_ids(&self) -> impl Iterator<Item = &SiteId> {
        self.recipients.iter().map(|w| &w.recipient)
    }
}

fn has_duplicates(w: &[Wrapped]) -> bool {
    let mut ids: Vec<&SiteId> = w.iter().map(|w| &w.recipient).collect();
    ids.sort();
    ids.windows(2).any(|p| p.first() == p.get(1))
}

/// `W = HKDF-SHA256(salt, X25519(secret, their_public), info = E ‖ R ‖ id)`; both sides call it
/// with their own secret and the other side's public key.
fn wrap_key(
    secret: &StaticSecret,
    their_public: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient_key: &[u8; 32],
    recipient: &SiteId,
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let shared = crypto::x25519(secret, their_public).ok_or(EnvelopeError::BadRecipientKey)?;
    let mut w = Zeroizing::new([0u8; 32]);
    crypto::hkdf_sha256(
        SEAL_SALT,
        &*shared,
        &[
            ephemeral_public,
            recipient_key,
            recipient.as_str().as_bytes(),
        ],
        &mut *w,
    )
    .ok_or(EnvelopeError::SealBroken)?;
    Ok(w)
}

pub(super) fn seal_payload(
    header_bytes: &[u8],
    payload: &[u8],
    recipients: &[(SiteId, [u8; 32])],
    rng: &(impl Entropy + ?Sized),
) -> Result<Sealed, EnvelopeError> {
    if recipients.len() > MAX_RECIPIENTS {
        return Err(EnvelopeError::TooManyRecipients);
    }
    if payload.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::Oversized {
            len: payload.len(),
            max: MAX_ENVELOPE_BYTES,
        });
    }
    let mut content_key = Zeroizing::new([0u8; 32]);
    rng.fill_random(&mut *content_key)?;
    let mut eph = Zeroizing::new([0u8; 32]);
    rng.fill_random(&mut *eph)?;
    let eph_secret = StaticSecret::from(*eph);
    let ephemeral = crypto::x25519_public(&eph_secret);

    let header_hash = crypto::sha256(header_bytes);
    let mut wrapped = Vec::with_capacity(recipients.len());
    for (id, key) in recipients {
        let w = wrap_key(&eph_secret, key, &ephemeral, key, id)?;
        let mut buf = content_key.to_vec();
        crypto::aead_seal(&w, ZERO_NONCE, &header_hash, &mut buf)
            .ok_or(EnvelopeError::SealBroken)?;
        let key: [u8; 32 + TAG_LEN] = buf
            .as_slice()
            .try_into()
            .map_err(|_| EnvelopeError::SealBroken)?;
        wrapped.push(Wrapped {
            recipient: id.clone(),
            key,
        });
    }
    if wrapped.is_empty() || has_duplicates(&wrapped) {
        return Err(EnvelopeError::Malformed);
    }
    let mut ciphertext = payload.to_vec();
    crypto::aead_seal(&content_key, ZERO_NONCE, header_bytes, &mut ciphertext)
        .ok_or(EnvelopeError::SealBroken)?;
    Ok(Sealed {
        ephemeral,
        recipients: wrapped,
        ciphertext,
    })
}

pub(super) fn open_sealed(
    sealed: &Sealed,
    header_bytes: &[u8],
    me: &SiteId,
    secret: &StaticSecret,
) -> Result<Vec<u8>, EnvelopeError> {
    let entry = sealed
        .recipients
        .iter()
        .find(|w| &w.recipient == me)
        .ok_or(EnvelopeError::NotForUs)?;
    let my_public = crypto::x25519_public(secret);
    let w = wrap_key(secret, &sealed.ephemeral, &sealed.ephemeral, &my_public, me)
        .map_err(|_| EnvelopeError::SealBroken)?;
    let mut key = Zeroizing::new(entry.key.to_vec());
    let header_hash = crypto::sha256(header_bytes);
    crypto::aead_open(&w, ZERO_NONCE, &header_hash, &mut key).ok_or(EnvelopeError::SealBroken)?;
    let content_key: Zeroizing<[u8; 32]> = Zeroizing::new(
        key.as_slice()
            .try_into()
            .map_err(|_| EnvelopeError::SealBroken)?,
    );
    let mut buf = sealed.ciphertext.clone();
    crypto::aead_open(&content_key, ZERO_NONCE, header_bytes, &mut buf)
        .ok_or(EnvelopeError::SealBroken)?;
    Ok(buf)
}
