//! Known-answer tests of the primitives, through the exact functions the protocol calls.

use super::*;
use crate::testkit::{ed25519_key, hex, unhex};

#[test]
fn ed25519_rfc8032_test1() {
    let seed = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    let key = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let pk = public_key(&key);
    assert_eq!(
        hex(&pk),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    // The empty domain reduces `sign` to plain Ed25519 over the message.
    let sig = sign(&key, b"", b"");
    assert_eq!(
        hex(&sig),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    assert!(verify(&pk, b"", b"", &sig));
}

#[test]
fn domain_separated_signatures_cross_checked_with_ed25519_dalek() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let key = ed25519_key(7);
    let sig = sign(&key, DOMAIN_ENVELOPE, b"hello");
    let vk = VerifyingKey::from_bytes(&public_key(&key)).unwrap();
    let mut msg = DOMAIN_ENVELOPE.to_vec();
    msg.extend_from_slice(b"hello");
    vk.verify(&msg, &Signature::from_bytes(&sig)).unwrap();
    // Same message, other domain: refused.
    assert!(verify(&public_key(&key), DOMAIN_ENVELOPE, b"hello", &sig));
    assert!(!verify(&public_key(&key), DOMAIN_RECEIPT, b"hello", &sig));
    // dalek-signed, ring-verified.
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    use ed25519_dalek::Signer;
    let dsig = sk.sign(&msg).to_bytes();
    assert_eq!(
        dsig, sig,
        "Ed25519 is deterministic: both implementations agree"
    );
}

#[test]
fn domains_are_distinct_and_nul_terminated() {
    let all = [
        DOMAIN_CERT,
        DOMAIN_CERT_REQUEST,
        DOMAIN_CRL,
        DOMAIN_ENVELOPE,
        DOMAIN_RECEIPT,
        SEAL_SALT,
    ];
    for (i, a) in all.iter().enumerate() {
        assert_eq!(a.last(), Some(&0));
        assert_eq!(a.iter().filter(|&&b| b == 0).count(), 1);
        for b in &all[i + 1..] {
            assert!(!a.starts_with(b) && !b.starts_with(a));
        }
    }
}

#[test]
fn x25519_rfc7748() {
    // §5.2, first vector.
    let k = unhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    let u = unhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    let out = x25519(
        &StaticSecret::from(<[u8; 32]>::try_from(k).unwrap()),
        &u.try_into().unwrap(),
    )
    .unwrap();
    assert_eq!(
        hex(&*out),
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    );
    // §6.1, Diffie-Hellman.
    let a = StaticSecret::from(
        <[u8; 32]>::try_from(unhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ))
        .unwrap(),
    );
    let b = StaticSecret::from(
        <[u8; 32]>::try_from(unhex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ))
        .unwrap(),
    );
    assert_eq!(
        hex(&x25519_public(&a)),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    assert_eq!(
        hex(&x25519_public(&b)),
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    );
    let k1 = x25519(&a, &x25519_public(&b)).unwrap();
    let k2 = x25519(&b, &x25519_public(&a)).unwrap();
    assert_eq!(
        hex(&*k1),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
    assert_eq!(*k1, *k2);
    // A low-order point gives the all-zero secret, which is refused.
    assert!(x25519(&a, &[0u8; 32]).is_none());
    let mut one = [0u8; 32];
    one[0] = 1;
    assert!(x25519(&a, &one).is_none());
}

#[test]
fn hkdf_rfc5869_case1() {
    let ikm = [0x0bu8; 22];
    let salt = unhex("000102030405060708090a0b0c");
    let info = unhex("f0f1f2f3f4f5f6f7f8f9");
    let mut out = [0u8; 42];
    // Split info into two parts: HKDF concatenates them.
    hkdf_sha256(&salt, &ikm, &[&info[..3], &info[3..]], &mut out).unwrap();
    assert_eq!(
        hex(&out),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
    let mut too_long = vec![0u8; 255 * 32 + 1];
    assert!(hkdf_sha256(&salt, &ikm, &[], &mut too_long).is_none());
}

#[test]
fn chacha20_poly1305_rfc8439_2_8_2() {
    let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
    let nonce: [u8; 12] = unhex("070000004041424344454647").try_into().unwrap();
    let aad = unhex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let mut buf = pt.to_vec();
    aead_seal(&key, nonce, &aad, &mut buf).unwrap();
    assert_eq!(
        hex(&buf),
        concat!(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6",
            "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36",
            "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc",
            "3ff4def08e4b7a9de576d26586cec64b6116",
            "1ae10b594f09e26a7e902ecbd0600691"
        )
    );
    let sealed = buf.clone();
    aead_open(&key, nonce, &aad, &mut buf).unwrap();
    assert_eq!(buf, pt);
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 1;
        assert!(aead_open(&key, nonce, &aad, &mut t).is_none());
    }
    let mut t = sealed.clone();
    assert!(aead_open(&key, nonce, b"other aad", &mut t).is_none());
}

#[test]
fn sha256_known_answer() {
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
