//! Signed statements about this node's log: C2SP tlog-checkpoints ([`SignedCheckpoint`]), the
//! per-entry signed tree head ([`head_message`]), and the [`Receipt`] a peer returns.
//!
//! MERGE NOTE: `SignedCheckpoint` and `Receipt` mirror the types agreed for
//! `fedanno_protocol::wire` (issue 5, piece P), field for field and in the same order, so their
//! postcard bytes are the same. When `wire.rs` lands, delete them here and re-export the
//! protocol's; only `hexser` attributes (JSON as hex) are lost.

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::merkle::{self, Hash};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::hexser;

/// A checkpoint of a log: the C2SP tlog-checkpoint text `"{origin}\n{size}\n{base64 root}\n"`
/// signed with Ed25519 by the log's site (signed-note style: the signature covers the text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    #[serde(with = "hexser::hash")]
    pub root: Hash,
    /// When it was signed (Unix seconds; not part of the signed text).
    pub timestamp: u64,
    #[serde(with = "hexser::sig")]
    pub signature: [u8; 64],
    pub signer: SiteId,
}

/// A peer's signed acknowledgement that it logged a message (design-notes §7.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub receiver: SiteId,
    #[serde(with = "hexser::hash")]
    pub message_hash: Hash,
    pub log_size: u64,
    #[serde(with = "hexser::hash")]
    pub log_root: Hash,
    #[serde(with = "hexser::sig")]
    pub signature: [u8; 64],
}

impl From<&fedanno_protocol::wire::Receipt> for Receipt {
    fn from(r: &fedanno_protocol::wire::Receipt) -> Self {
        Receipt {
            receiver: r.receiver.clone(),
            message_hash: r.message_hash,
            log_size: r.log_size,
            log_root: r.log_root,
            signature: r.signature,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the signature does not verify")]
    BadSignature,
}

impl SignedCheckpoint {
    /// The same checkpoint as the wire type (identical fields and signed text).
    pub fn to_wire(&self) -> fedanno_protocol::wire::SignedCheckpoint {
        fedanno_protocol::wire::SignedCheckpoint {
            origin: self.origin.clone(),
            size: self.size,
            root: self.root,
            timestamp: self.timestamp,
            signature: self.signature,
            signer: self.signer.clone(),
        }
    }

    /// The signed text (C2SP tlog-checkpoint, no extension lines).
    pub fn text(&self) -> String {
        merkle::checkpoint_text(&self.origin, self.size, &self.root)
    }

    pub fn sign(
        origin: &str,
        size: u64,
        root: Hash,
        timestamp: u64,
        signer: SiteId,
        key: &Ed25519KeyPair,
    ) -> Self {
        let text = merkle::checkpoint_text(origin, size, &root);
        SignedCheckpoint {
            origin: origin.to_string(),
            size,
            root,
            timestamp,
            signature: signature_bytes(key, text.as_bytes()),
            signer,
        }
    }

    /// Checks the signature against the signer's Ed25519 public key.
    pub fn verify(&self, key: &[u8; 32]) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(&ED25519, key)
            .verify(self.text().as_bytes(), &self.signature)
            .map_err(|_| SignatureError::BadSignature)
    }

    /// The whole signed note: text, blank line, signature line (key name = origin).
    pub fn note(&self, key: &[u8; 32]) -> String {
        format!(
            "{}\n{}",
            self.text(),
            merkle::note_signature_line(&self.origin, key, &self.signature)
        )
    }
}

/// What each entry's signature covers: the tree head right after the entry was appended.
/// `"fedanno-audit-head-v1\0" ‖ size (u64 BE) ‖ root`. Every row thus carries a signed tree
/// head: a row forged or rewritten without the site's key fails verification, and any head can
/// back a receipt.
pub fn head_message(size: u64, root: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(22 + 8 + 32);
    m.extend_from_slice(b"fedanno-audit-head-v1\0");
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

pub fn sign_head(key: &Ed25519KeyPair, size: u64, root: &Hash) -> [u8; 64] {
    signature_bytes(key, &head_message(size, root))
}

pub fn verify_head(key: &[u8; 32], size: u64, root: &Hash, signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&head_message(size, root), signature)
        .is_ok()
}

/// The 32-byte Ed25519 public key of a key pair.
pub fn public_key(key: &Ed25519KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key().as_ref());
    out
}

fn signature_bytes(key: &Ed25519KeyPair, msg: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out.copy_from_slice(key.sign(msg).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    pub(crate) fn key() -> Ed25519KeyPair {
        let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap()
    }

    #[test]
    fn checkpoint_signs_the_c2sp_text_and_detects_edits() {
        let k = key();
        let pk = public_key(&k);
        let site = SiteId::new("a").unwrap();
        let cp = SignedCheckpoint::sign("fedanno.demo/a", 7, [9; 32], 100, site, &k);
        assert_eq!(
            cp.text(),
            format!("fedanno.demo/a\n7\n{}\n", merkle::base64(&[9; 32]))
        );
        cp.verify(&pk).unwrap();
        let note = cp.note(&pk);
        assert!(note.starts_with(&cp.text()) && note.contains("\n\n\u{2014} fedanno.demo/a "));
        let mut bad = cp.clone();
        bad.size = 8;
        assert_eq!(bad.verify(&pk), Err(SignatureError::BadSignature));
        let mut bad = cp.clone();
        bad.root[0] ^= 1;
        assert!(bad.verify(&pk).is_err());
        // The timestamp is not signed (as in the agreed wire type).
        let mut later = cp;
        later.timestamp += 1;
        later.verify(&pk).unwrap();
    }

    #[test]
    fn head_signatures() {
        let k = key();
        let pk = public_key(&k);
        let sig = sign_head(&k, 3, &[1; 32]);
        assert!(verify_head(&pk, 3, &[1; 32], &sig));
        assert!(!verify_head(&pk, 4, &[1; 32], &sig));
        assert!(!verify_head(&pk, 3, &[2; 32], &sig));
        assert!(!verify_head(&pk, 3, &[1; 32], &sig[..63]));
    }
}
