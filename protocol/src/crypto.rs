//! The cryptographic primitives the crate calls, each behind one small function so that the
//! known-answer tests (RFC 8032, RFC 7748, RFC 5869, RFC 8439) exercise exactly the code paths the
//! protocol uses.
//!
//! It owns the signature domains: every Ed25519 signature in fedanno is over
//! `domain ‖ message`, where each domain is a distinct NUL-terminated ASCII label listed here,
//! so a signature made for one purpose can never be replayed as another. (The one exception is
//! the C2SP checkpoint text, which must be signed bare to stay verifiable by standard tools; its
//! origin line may not contain NUL, so it can never begin with one of these labels.) The
//! secure-aggregation domains live with their protocol in [`crate::secagg`]; its tests check that
//! they are distinct from these.
//!
//! Secrets handled here (X25519 shared secrets, derived keys) live in `Zeroizing` buffers.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use ring::{aead, digest, hkdf};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Domain of a site certificate signature (root key over the body).
pub const DOMAIN_CERT: &[u8] = b"fedanno-cert-v1\0";
/// Domain of a certificate request (site key over its own body: proof of possession).
pub const DOMAIN_CERT_REQUEST: &[u8] = b"fedanno-certreq-v1\0";
/// Domain of a revocation list signature (root key over the body).
pub const DOMAIN_CRL: &[u8] = b"fedanno-crl-v1\0";
/// Domain of an envelope signature (sender key over header ‖ payload bytes).
pub const DOMAIN_ENVELOPE: &[u8] = b"fedanno-envelope-v1\0";
/// Domain of a receipt signature (receiver key over the receipt body).
pub const DOMAIN_RECEIPT: &[u8] = b"fedanno-receipt-v1\0";
/// Signature domain of membership proofs ([`crate::membership`]).
pub const DOMAIN_MEMBERSHIP: &[u8] = b"fedanno-membership-v1\0";
/// HKDF salt of the sealing construction (see `envelope`).
pub const SEAL_SALT: &[u8] = b"fedanno-seal-v1\0";

/// An Ed25519 signature over `domain ‖ msg`.
pub fn sign(key: &Ed25519KeyPair, domain: &[u8], msg: &[u8]) -> [u8; 64] {
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    let sig = key.sign(&buf);
    let mut out = [0u8; 64];
    // An Ed25519 signature is always 64 bytes.
    let bytes = sig.as_ref();
    if bytes.len() == out.len() {
        out.copy_from_slice(bytes);
    }
    out
}

/// Checks an Ed25519 signature over `domain ‖ msg` by the public key `pk`.
pub fn verify(pk: &[u8; 32], domain: &[u8], msg: &[u8], sig: &[u8; 64]) -> bool {
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(&buf, sig)
        .is_ok()
}

/// The Ed25519 public key of a key pair as an array.
pub fn public_key(key: &Ed25519KeyPair) -> [u8; 32] {
    use ring::signature::KeyPair;
    let mut out = [0u8; 32];
    let pk = key.public_key().as_ref();
    if pk.len() == out.len() {
        out.copy_from_slice(pk);
    }
    out
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    if d.as_ref().len() == out.len() {
        out.copy_from_slice(d.as_ref());
    }
    out
}

/// The X25519 public key of a sealing secret.
pub fn x25519_public(secret: &StaticSecret) -> [u8; 32] {
    PublicKey::from(secret).to_bytes()
}

/// X25519(secret, their_public), or `None` if the result is all zeros (a low-order public key,
/// RFC 7748 §6.1: "check for the all-zero value and abort").
pub fn x25519(secret: &StaticSecret, their_public: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    let shared = secret.diffie_hellman(&PublicKey::from(*their_public));
    if !shared.was_contributory() {
        return None;
    }
    Some(Zeroizing::new(shared.to_bytes()))
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869) extract-and-expand into `out` (at most 8160 bytes).
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Option<()> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk.expand(info, Len(out.len())).ok()?;
    okm.fill(out).ok()
}

/// ChaCha20-Poly1305 (RFC 8439) encryption in place; appends the 16-byte tag.
pub fn aead_seal(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Option<()> {
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key).ok()?);
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(aad),
        buf,
    )
    .ok()
}

/// ChaCha20-Poly1305 decryption in place; on success `buf` holds the plaintext only.
pub fn aead_open(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Option<()> {
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key).ok()?);
    let len = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            buf,
        )
        .ok()?
        .len();
    buf.truncate(len);
    Some(())
}

/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;

#[cfg(test)]
mod tests;
