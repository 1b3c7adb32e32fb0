//! Signed statements about this node's log. Checkpoints and receipts are the protocol's
//! ([`SignedCheckpoint`], [`Receipt`]: C2SP tlog-checkpoints and peers' receipts, the same type
//! on the wire, in the store and in the log); this module adds the per-entry signed tree head
//! ([`head_message`]).

use fedanno_protocol::crypto;
use fedanno_protocol::merkle::Hash;
pub use fedanno_protocol::wire::{Receipt, SignedCheckpoint};
use ring::signature::Ed25519KeyPair;

/// The domain of a per-entry head signature; [`head_message`] starts with it.
const DOMAIN_HEAD: &[u8] = b"fedanno-audit-head-v1\0";

/// What each entry's signature covers: the tree head right after the entry was appended.
/// `"fedanno-audit-head-v1\0" ‖ size (u64 BE) ‖ root`. Every row thus carries a signed tree
/// head: a row forged or rewritten without the site's key fails verification, and any head can
/// back a receipt.
pub fn head_message(size: u64, root: &Hash) -> Vec<u8> {
    let mut m = DOMAIN_HEAD.to_vec();
    m.extend_from_slice(&head_body(size, root));
    m
}

/// [`head_message`] without its domain.
fn head_body(size: u64, root: &Hash) -> [u8; 40] {
    let mut b = [0u8; 40];
    let (s, r) = b.split_at_mut(8);
    s.copy_from_slice(&size.to_be_bytes());
    r.copy_from_slice(root);
    b
}

pub fn sign_head(key: &Ed25519KeyPair, size: u64, root: &Hash) -> [u8; 64] {
    crypto::sign(key, DOMAIN_HEAD, &head_body(size, root))
}

/// Checks a stored head signature (of any length: a wrong length does not verify).
pub fn verify_head(key: &[u8; 32], size: u64, root: &Hash, signature: &[u8]) -> bool {
    <&[u8; 64]>::try_from(signature)
        .is_ok_and(|sig| crypto::verify(key, DOMAIN_HEAD, &head_body(size, root), sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedanno_protocol::crypto::public_key;
    use fedanno_protocol::ids::SiteId;
    use fedanno_protocol::merkle;
    use fedanno_protocol::wire::WireError;
    use ring::rand::SystemRandom;
    use ring::signature::{ED25519, UnparsedPublicKey};

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
        let note = cp.to_signed_note(&pk);
        assert!(note.starts_with(&cp.text()) && note.contains("\n\n\u{2014} fedanno.demo/a "));
        let mut bad = cp.clone();
        bad.size = 8;
        assert_eq!(bad.verify(&pk), Err(WireError::BadSignature));
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
        // A plain Ed25519 signature over the whole head message.
        UnparsedPublicKey::new(&ED25519, pk)
            .verify(&head_message(3, &[1; 32]), &sig)
            .unwrap();
    }
}
