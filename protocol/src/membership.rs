//! Membership proofs: how two sites prove to each other, on one libp2p connection, that each
//! holds the signing key its certificate names. Both ends contribute a fresh random nonce, so a
//! proof is bound to this connection (both peer ids, which the Noise handshake authenticated)
//! and to this moment; a stolen libp2p key or a recorded proof is worth nothing without the
//! site's signing key.
//!
//! The dialer D and the listener L exchange, as two request/response pairs of
//! [`crate::wire::Frame`]s:
//! 1. D → L `Hello { certificate, nonce: n_D }`. L checks the certificate (issuer, validity now,
//!    not revoked, bound to D's peer id) and answers `Challenge { nonce: n_L }`: nothing of
//!    itself yet, so an unproven dialer learns nothing about L.
//! 2. D → L `Proof { signature }`: D's signature over [`Transcript`] as the dialer. L checks it
//!    with the certificate's signing key, and D is a member at L. L answers
//!    `Welcome { certificate, signature }`: its own certificate and signature over the same
//!    transcript as the listener. D checks both, and L is a member at D.
//!
//! Signatures are Ed25519 over [`DOMAIN_MEMBERSHIP`] ‖ the canonical bytes of
//! (side, consortium, dialer peer id, listener peer id, n_D, n_L).

use ring::signature::Ed25519KeyPair;
use serde::Serialize;

use crate::codec;
use crate::crypto::{self, DOMAIN_MEMBERSHIP};

/// Which end of the connection signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Side {
    Dialer,
    Listener,
}

/// What both ends of one connection sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript<'a> {
    pub consortium: &'a str,
    /// The dialer's libp2p peer id (bytes).
    pub dialer: &'a [u8],
    /// The listener's libp2p peer id (bytes).
    pub listener: &'a [u8],
    pub dialer_nonce: [u8; 32],
    pub listener_nonce: [u8; 32],
}

#[derive(Serialize)]
struct Signed<'a> {
    side: Side,
    consortium: &'a str,
    dialer: &'a [u8],
    listener: &'a [u8],
    #[serde(with = "codec::byte_array")]
    dialer_nonce: [u8; 32],
    #[serde(with = "codec::byte_array")]
    listener_nonce: [u8; 32],
}

impl Transcript<'_> {
    fn bytes(&self, side: Side) -> Vec<u8> {
        codec::encode(&Signed {
            side,
            consortium: self.consortium,
            dialer: self.dialer,
            listener: self.listener,
            dialer_nonce: self.dialer_nonce,
            listener_nonce: self.listener_nonce,
        })
    }

    /// `key`'s proof, as `side` of this connection.
    pub fn sign(&self, side: Side, key: &Ed25519KeyPair) -> [u8; 64] {
        crypto::sign(key, DOMAIN_MEMBERSHIP, &self.bytes(side))
    }

    /// Whether `signature` is the proof of the holder of `signing_key` as `side`.
    pub fn verify(&self, side: Side, signing_key: &[u8; 32], signature: &[u8; 64]) -> bool {
        crypto::verify(signing_key, DOMAIN_MEMBERSHIP, &self.bytes(side), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ed25519_key as sign_key;

    fn transcript<'a>(d: &'a [u8], l: &'a [u8]) -> Transcript<'a> {
        Transcript {
            consortium: "c",
            dialer: d,
            listener: l,
            dialer_nonce: [1; 32],
            listener_nonce: [2; 32],
        }
    }

    #[test]
    fn a_proof_holds_only_for_its_key_side_connection_and_nonces() {
        let (k, other) = (sign_key(1), sign_key(2));
        let pk = crypto::public_key(&k);
        let t = transcript(b"dialer", b"listener");
        let sig = t.sign(Side::Dialer, &k);
        assert!(t.verify(Side::Dialer, &pk, &sig));
        // Another key, the other side's role, another connection, other nonces: refused.
        assert!(!t.verify(Side::Dialer, &crypto::public_key(&other), &sig));
        assert!(!t.verify(Side::Listener, &pk, &sig));
        assert!(!transcript(b"dialer", b"elsewhere").verify(Side::Dialer, &pk, &sig));
        assert!(!transcript(b"listener", b"dialer").verify(Side::Dialer, &pk, &sig));
        let mut fresh = t.clone();
        fresh.listener_nonce = [3; 32];
        assert!(!fresh.verify(Side::Dialer, &pk, &sig));
        let mut wrong_consortium = t.clone();
        wrong_consortium.consortium = "d";
        assert!(!wrong_consortium.verify(Side::Dialer, &pk, &sig));
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(!t.verify(Side::Dialer, &pk, &flipped));
    }
}
