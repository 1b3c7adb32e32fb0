//! Known answers: the pinned PRG (RFC 8439, RustCrypto cross-check), X25519 and the seed derivation
//! (RFC 7748), and an independently computed golden vector.

use super::*;

#[test]
fn chacha20_block_rfc8439_2_3_2() {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    let nonce = unhex("000000090000004a00000000");
    let block = chacha20_block(&le_words::<8>(&key), 1, &le_words::<3>(&nonce));
    let bytes: Vec<u8> = block.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(
        hex(&bytes),
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e\
         d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    );
}

#[test]
fn mask_stream_rfc8439_a1_vectors() {
    // A.1 test vector #1: all-zero key and nonce, block counter 0.
    let s = mask_stream(&[0; 32], 8);
    assert_eq!(
        hex(&bytes_of(&s[..4])),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
         da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    );
    // A.1 test vector #2: the same key and nonce, block counter 1 (elements 4..8).
    assert_eq!(
        hex(&bytes_of(&s[4..])),
        "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed\
         29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"
    );
    // Element 0 is the first 16 bytes read little-endian.
    assert_eq!(
        s[0],
        u128::from_le_bytes(
            unhex("76b8e0ada0f13d90405d6ae55386bd28")
                .try_into()
                .unwrap()
        )
    );
    // A prefix of a longer stream is the shorter stream.
    assert_eq!(mask_stream(&[0; 32], 5), s[..5]);
    assert!(mask_stream(&[0; 32], 0).is_empty());
}

#[test]
fn mask_stream_matches_rustcrypto_chacha20() {
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    let mut rng = XorShift::new(0xc4a2);
    for dim in [1usize, 3, 4, 5, 17, 64, 1000, 4099] {
        let mut seed = [0u8; 32];
        for b in &mut seed {
            *b = rng.next() as u8;
        }
        let mut want = vec![0u8; dim * 16];
        let mut c = chacha20::ChaCha20::new(&seed.into(), &[0u8; 12].into());
        c.apply_keystream(&mut want);
        assert_eq!(bytes_of(&mask_stream(&seed, dim)), want, "dim {dim}");
    }
}

#[test]
fn x25519_rfc7748_6_1_shared_secret_and_pair_seed() {
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
    let pa = crypto::x25519_public(&a);
    let pb = crypto::x25519_public(&b);
    assert_eq!(
        hex(&pb),
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    );
    let k = crypto::x25519(&a, &pb).unwrap();
    assert_eq!(
        hex(&*k),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
    // pair_seed is symmetric and is HKDF over exactly the documented info.
    let r = roster(3, 4);
    let (u, v) = (site(0), site(2));
    let s1 = pair_seed(&a, &pb, &r, &u, &v).unwrap();
    let s2 = pair_seed(&b, &pa, &r, &v, &u).unwrap();
    assert_eq!(*s1, *s2);
    let mut want = [0u8; 32];
    let mut info = b"mask".to_vec();
    info.extend_from_slice(&r.hash());
    info.push(8);
    info.extend_from_slice(b"site-000");
    info.push(8);
    info.extend_from_slice(b"site-002");
    crypto::hkdf_sha256(MASK_SALT, &*k, &[&info], &mut want).unwrap();
    assert_eq!(*s1, want);
    // Another roster (here: the next attempt) gives another seed from the same keys.
    let mut r2 = r.clone();
    r2.attempt = 1;
    assert_ne!(*pair_seed(&a, &pb, &r2, &u, &v).unwrap(), *s1);
    // Refusals.
    assert_eq!(pair_seed(&a, &pb, &r, &u, &u), Err(SecAggError::SameSite));
    assert_eq!(
        pair_seed(&a, &pb, &r, &u, &site(9)),
        Err(SecAggError::NotInRoster)
    );
    assert_eq!(
        pair_seed(&a, &[0; 32], &r, &u, &v),
        Err(SecAggError::LowOrderKey)
    );
}

/// Pinned forever: the roster encoding and hash, a pair seed, its stream and a masked input.
/// The expected values were computed independently (Python `cryptography`: X25519, HKDF-SHA256,
/// ChaCha20 with a zero nonce, and a hand-written postcard encoder for the roster).
#[test]
fn golden_vector() {
    let r = roster(3, 5);
    assert_eq!(hex(&r.to_bytes()), GOLDEN_ROSTER_BYTES);
    assert_eq!(hex(&r.hash()), GOLDEN_ROSTER_HASH);
    let keys = bundle(&r);
    let seed01 = pair_seed(&round_secret(0, 0), &keys[1].public, &r, &site(0), &site(1)).unwrap();
    assert_eq!(hex(&*seed01), GOLDEN_SEED_01);
    let st = mask_stream(&seed01, 2);
    assert_eq!(format!("{:032x} {:032x}", st[0], st[1]), GOLDEN_STREAM_01);
    let x: Vec<u128> = vec![1, 2, 3, encode_signed(-4), u128::MAX];
    let y = mask_input(&x, &r, &site(1), &round_secret(1, 0), &keys).unwrap();
    let got: Vec<String> = y.values.iter().map(|v| format!("{v:032x}")).collect();
    assert_eq!(got, GOLDEN_MASKED_1);
}

const GOLDEN_ROSTER_BYTES: &str = "096c697665722d736567\
    0909090909090909090909090909090909090909090909090909090909090909\
    000f737461706c652d74686574612d763105\
    0308736974652d30303008736974652d30303108736974652d303032\
    0308736974652d32303080a4a7da06";
const GOLDEN_ROSTER_HASH: &str = "78c6bfa9c0704836fe50c75b0bafd6dc5102deb9bdb0ac9be16e619609286773";
const GOLDEN_SEED_01: &str = "c50c02f3caeb1125fdb381b6a18b6c8157b7da68cb6611dd028b186023a0fb2b";
const GOLDEN_STREAM_01: &str = "900b6f6386fa33fa34fb793a13f70ef3 850331378448b4d33e297a712bd38195";
const GOLDEN_MASKED_1: [&str; 5] = [
    "69ca5527cf54914611d9a09b98f173fa",
    "d331f8bacae653ee37230d7ea5dabec4",
    "4e8c06aac3cfea2dd2a4977f12c2cf76",
    "bbc91265667b32c4d2567bcc2f4c819b",
    "a793c3617edcd9524341bbbf50d43eb7",
];
