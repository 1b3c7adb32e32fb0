//! Envelope tests: golden vectors, round trips, every must-fail vector, the replay window.

use std::collections::HashMap;

use super::*;
use crate::crypto::{public_key, sha256, x25519_public};
use crate::limits::{MAX_CLOCK_SKEW_SECS, MAX_GOSSIP_BYTES, MAX_RECIPIENTS, REPLAY_WINDOW};
use crate::testkit::{TestRng, ed25519_key, hex, x25519_secret};

impl Entropy for TestRng {
    fn fill_random(&self, dest: &mut [u8]) -> Result<(), EnvelopeError> {
        self.fill(dest);
        Ok(())
    }
}

pub(crate) const NOW: u64 = 1_800_000_000;
pub(crate) const CONSORTIUM: &str = "test-consortium";

pub(crate) fn site(n: u8) -> SiteId {
    SiteId::new(format!("site-{n}")).unwrap()
}

pub(crate) fn sign_key(n: u8) -> Ed25519KeyPair {
    ed25519_key(10 + n)
}

pub(crate) fn seal_secret(n: u8) -> StaticSecret {
    x25519_secret(100 + n)
}

pub(crate) fn header(from: u8, to: Option<u8>, sequence: u64) -> Header {
    Header {
        version: PROTOCOL_VERSION,
        consortium: CONSORTIUM.into(),
        sender: site(from),
        recipient: to.map(site),
        study: Some("study-1".into()),
        round: 3,
        sequence,
        timestamp: NOW,
        kind: PayloadKind::Request,
    }
}

pub(crate) fn keys() -> HashMap<SiteId, [u8; 32]> {
    (1..=3)
        .map(|n| (site(n), public_key(&sign_key(n))))
        .collect()
}

pub(crate) fn sealed_to(from: u8, to: &[u8], seq: u64, payload: &[u8], seed: u64) -> Envelope {
    let recipients: Vec<_> = to
        .iter()
        .map(|&n| (site(n), x25519_public(&seal_secret(n))))
        .collect();
    Envelope::seal_with(
        header(from, None, seq),
        payload,
        &recipients,
        &sign_key(from),
        &TestRng::new(seed),
    )
    .unwrap()
}

/// Opens `env` as site `me` at `now` with a fresh replay guard.
pub(crate) fn open_as(
    env: &Envelope,
    me: u8,
    secret: Option<&StaticSecret>,
    now: u64,
) -> Result<Opened, EnvelopeError> {
    let keys = keys();
    let lookup = |s: &SiteId| keys.get(s).copied();
    let me = site(me);
    let ctx = OpenContext {
        consortium: CONSORTIUM,
        me: &me,
        my_sealing_secret: secret,
        sender_key: &lookup,
        now,
        max_skew_secs: MAX_CLOCK_SKEW_SECS,
    };
    env.open(&ctx, &mut ReplayGuard::new())
}

#[test]
fn golden_vectors() {
    // Re-pinned for protocol v3 (header version byte 02 -> 03, so the signature, the message
    // hash and the sealed envelope's AEAD tags changed): `Request::Witness` now carries the
    // tlog-witness old size and consistency proof. (v2 renumbered Request/Response after
    // removing the unused Hello/Ack.)
    let plain = Envelope::sign(header(1, Some(2), 7), b"hello", &sign_key(1));
    assert_eq!(
        hex(&plain.to_bytes()),
        "38030f746573742d636f6e736f727469756d06736974652d310106736974652d32010773747564792d31030780a4a7da0600000568656c6c6f997b2c74f9a4a4c86d1f7e51f30498ec6788b642a8fc57f2ff70aae3c6284f766a416615abe2a28d74317fea949a00787c1767e06cd0b1615459f44152f2600f"
    );
    assert_eq!(
        hex(&plain.message_hash()),
        "5cacc4c8010488a1f8a746382e77f4632be6263f55ec16fac4a3cf7de7ec641b"
    );
    let sealed = sealed_to(1, &[2, 3], 8, b"masked vector", 42);
    assert_eq!(
        hex(&sha256(&sealed.to_bytes())),
        "c18b3f08a4a0f50602bcb6eb168c86890096cf64671203d10d67f39215bf9d94"
    );
    assert_eq!(sealed.message_hash(), sha256(&sealed.to_bytes()));
    let opened = open_as(&sealed, 2, Some(&seal_secret(2)), NOW).unwrap();
    assert_eq!(opened.payload, b"masked vector");
}

#[test]
fn round_trips() {
    let plain = Envelope::sign(header(1, Some(2), 7), b"hello", &sign_key(1));
    let back = Envelope::from_bytes(&plain.to_bytes()).unwrap();
    assert_eq!(back, plain);
    assert!(!back.is_sealed());
    let o = open_as(&back, 2, None, NOW).unwrap();
    assert_eq!(o.payload, b"hello");
    assert_eq!(o.header, header(1, Some(2), 7));
    assert_eq!(o.message_hash, sha256(&plain.to_bytes()));

    // Broadcast, sealed to two participants: each opens it; the sender cannot (not a recipient).
    let sealed = sealed_to(1, &[2, 3], 8, b"masked vector", 42);
    let back = Envelope::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(back, sealed);
    assert!(back.is_sealed());
    assert_eq!(back.sealed_recipients(), vec![&site(2), &site(3)]);
    for n in [2, 3] {
        let o = open_as(&back, n, Some(&seal_secret(n)), NOW).unwrap();
        assert_eq!(o.payload, b"masked vector");
    }
    assert_eq!(
        open_as(&back, 1, Some(&seal_secret(1)), NOW),
        Err(EnvelopeError::NotForUs)
    );
    // Empty payload, and through ring's system RNG.
    let rng = ring::rand::SystemRandom::new();
    let r = [(site(2), x25519_public(&seal_secret(2)))];
    let e = Envelope::seal(header(1, Some(2), 9), b"", &r, &sign_key(1), &rng).unwrap();
    assert_eq!(
        open_as(&e, 2, Some(&seal_secret(2)), NOW).unwrap().payload,
        b""
    );
}

#[test]
fn fresh_randomness_per_envelope() {
    let a = sealed_to(1, &[2], 8, b"same", 1);
    let b = sealed_to(1, &[2], 8, b"same", 2);
    let (Payload::Sealed(sa), Payload::Sealed(sb)) = (&a.payload, &b.payload) else {
        panic!("sealed");
    };
    assert_ne!(sa.ephemeral, sb.ephemeral);
    assert_ne!(sa.ciphertext, sb.ciphertext);
}

#[test]
fn must_fail_vectors() {
    let sealed = sealed_to(1, &[2], 8, b"masked vector", 42);
    // Sealed to another site; wrong sealing key; no sealing key.
    assert_eq!(
        open_as(&sealed, 3, Some(&seal_secret(3)), NOW),
        Err(EnvelopeError::NotForUs)
    );
    assert_eq!(
        open_as(&sealed, 2, Some(&seal_secret(3)), NOW),
        Err(EnvelopeError::SealBroken)
    );
    assert_eq!(open_as(&sealed, 2, None, NOW), Err(EnvelopeError::NotForUs));
    // Addressed to another site (plain).
    let plain = Envelope::sign(header(1, Some(2), 7), b"hello", &sign_key(1));
    assert_eq!(open_as(&plain, 3, None, NOW), Err(EnvelopeError::NotForUs));
    // Out of the time window, both ways; the boundary is accepted.
    assert!(open_as(&plain, 2, None, NOW + MAX_CLOCK_SKEW_SECS).is_ok());
    assert!(open_as(&plain, 2, None, NOW - MAX_CLOCK_SKEW_SECS).is_ok());
    for now in [NOW + MAX_CLOCK_SKEW_SECS + 1, NOW - MAX_CLOCK_SKEW_SECS - 1] {
        assert_eq!(
            open_as(&plain, 2, None, now),
            Err(EnvelopeError::OutsideWindow {
                timestamp: NOW,
                now
            })
        );
    }
    // Unknown sender.
    let mut h = header(1, Some(2), 7);
    h.sender = SiteId::new("stranger").unwrap();
    let e = Envelope::sign(h, b"x", &sign_key(1));
    assert_eq!(open_as(&e, 2, None, NOW), Err(EnvelopeError::UnknownSender));
    // A member signing as another member.
    let e = Envelope::sign(header(1, Some(2), 7), b"x", &sign_key(3));
    assert_eq!(open_as(&e, 2, None, NOW), Err(EnvelopeError::BadSignature));
    // Wrong consortium.
    let mut h = header(1, Some(2), 7);
    h.consortium = "other".into();
    let e = Envelope::sign(h, b"x", &sign_key(1));
    assert_eq!(
        open_as(&e, 2, None, NOW),
        Err(EnvelopeError::WrongConsortium)
    );
    // Wrong protocol version (the next one): refused at decode and at open.
    let mut h = header(1, Some(2), 7);
    h.version = PROTOCOL_VERSION + 1;
    let e = Envelope::sign(h, b"x", &sign_key(1));
    assert_eq!(
        open_as(&e, 2, None, NOW),
        Err(EnvelopeError::UnsupportedVersion(PROTOCOL_VERSION + 1))
    );
    assert_eq!(
        Envelope::from_bytes(&e.to_bytes()),
        Err(EnvelopeError::UnsupportedVersion(PROTOCOL_VERSION + 1))
    );
}

#[test]
fn replays_and_lifted_payloads_are_refused() {
    let sealed = sealed_to(1, &[2], 8, b"masked vector", 42);
    let s2 = seal_secret(2);
    // Replayed sequence number.
    let keys = keys();
    let lookup = |s: &SiteId| keys.get(s).copied();
    let me = site(2);
    let ctx = OpenContext {
        consortium: CONSORTIUM,
        me: &me,
        my_sealing_secret: Some(&s2),
        sender_key: &lookup,
        now: NOW,
        max_skew_secs: MAX_CLOCK_SKEW_SECS,
    };
    let mut guard = ReplayGuard::new();
    // A tampered copy fails first and must not burn the sequence number.
    let mut t = sealed.to_bytes();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert_eq!(
        Envelope::from_bytes(&t).unwrap().open(&ctx, &mut guard),
        Err(EnvelopeError::BadSignature)
    );
    sealed.open(&ctx, &mut guard).unwrap();
    assert_eq!(
        sealed.open(&ctx, &mut guard),
        Err(EnvelopeError::Replayed { sequence: 8 })
    );
    // A sealed payload lifted into another header (re-signed by its sender) does not open.
    let lifted = Envelope::assemble(header(1, None, 9), sealed.payload.clone(), &sign_key(1));
    assert_eq!(
        lifted.open(&ctx, &mut guard),
        Err(EnvelopeError::SealBroken)
    );
    assert_eq!(guard.highest(&site(1)), Some(8));
}

#[test]
fn malformed_oversized_and_tampered_bytes_are_refused() {
    let sealed = sealed_to(1, &[2], 8, b"masked vector", 42);
    let s2 = seal_secret(2);
    // Truncated, at every length.
    let bytes = sealed.to_bytes();
    for n in 0..bytes.len() {
        assert!(Envelope::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
    }
    assert_eq!(
        Envelope::from_bytes(&bytes[..bytes.len() - 1]),
        Err(EnvelopeError::Truncated)
    );
    // Trailing bytes.
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Envelope::from_bytes(&trailing),
        Err(EnvelopeError::Malformed)
    );
    // Oversized.
    let huge = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        Envelope::from_bytes(&huge),
        Err(EnvelopeError::Oversized {
            len: MAX_ENVELOPE_BYTES + 1,
            max: MAX_ENVELOPE_BYTES
        })
    );
    let big = Envelope::sign(
        header(1, None, 1),
        &vec![0u8; MAX_GOSSIP_BYTES],
        &sign_key(1),
    );
    assert!(matches!(
        Envelope::from_bytes_limited(&big.to_bytes(), MAX_GOSSIP_BYTES),
        Err(EnvelopeError::Oversized { .. })
    ));
    assert!(Envelope::from_bytes(&big.to_bytes()).is_ok());
    let r = [(site(2), x25519_public(&s2))];
    let e = Envelope::seal_with(
        header(1, None, 1),
        &vec![0u8; MAX_ENVELOPE_BYTES],
        &r,
        &sign_key(1),
        &TestRng::new(1),
    );
    assert!(matches!(e, Err(EnvelopeError::Oversized { .. })));
    // Tampered byte anywhere: refused at decode or at open.
    for i in 0..bytes.len() {
        for bit in [0x01, 0x40] {
            let mut t = bytes.clone();
            t[i] ^= bit;
            if let Ok(e) = Envelope::from_bytes(&t) {
                assert!(
                    open_as(&e, 2, Some(&s2), NOW).is_err(),
                    "flip at {i} accepted"
                );
            }
        }
    }
}

#[test]
fn sealing_refuses_bad_recipient_lists() {
    let rng = TestRng::new(5);
    let good = (site(2), x25519_public(&seal_secret(2)));
    let seal = |r: &[(SiteId, [u8; 32])]| {
        Envelope::seal_with(header(1, None, 1), b"x", r, &sign_key(1), &rng)
    };
    assert_eq!(
        seal(&[(site(3), [0u8; 32])]).unwrap_err(),
        EnvelopeError::BadRecipientKey
    );
    assert_eq!(seal(&[]).unwrap_err(), EnvelopeError::Malformed);
    assert_eq!(
        seal(&[good.clone(), good.clone()]).unwrap_err(),
        EnvelopeError::Malformed
    );
    let many: Vec<_> = (0..=MAX_RECIPIENTS)
        .map(|i| (SiteId::new(format!("s{i}")).unwrap(), good.1))
        .collect();
    assert_eq!(seal(&many).unwrap_err(), EnvelopeError::TooManyRecipients);
    assert!(seal(&many[..MAX_RECIPIENTS]).is_ok());
}

#[test]
fn replay_window() {
    let a = site(1);
    let b = site(2);
    let mut g = ReplayGuard::new();
    // In order.
    for s in 100..110 {
        g.accept(&a, s).unwrap();
    }
    // Duplicates.
    assert_eq!(
        g.accept(&a, 109),
        Err(EnvelopeError::Replayed { sequence: 109 })
    );
    assert_eq!(
        g.accept(&a, 100),
        Err(EnvelopeError::Replayed { sequence: 100 })
    );
    // Out of order within the window, once each.
    g.accept(&a, 200).unwrap();
    g.accept(&a, 150).unwrap();
    assert!(g.accept(&a, 150).is_err());
    g.accept(&a, 111).unwrap();
    // Too old: at or beyond the window below the highest.
    let hi = 200 + REPLAY_WINDOW + 10;
    g.accept(&a, hi).unwrap();
    assert!(g.check(&a, hi - REPLAY_WINDOW).is_err());
    assert!(g.check(&a, hi - REPLAY_WINDOW + 1).is_ok());
    assert!(g.accept(&a, 150).is_err());
    // Senders are independent.
    g.accept(&b, 150).unwrap();
    // A jump beyond the window forgets the old bitmap, and sequences in the new window that
    // share a slot with old ones are not mistaken for replays.
    let far = hi + 10 * REPLAY_WINDOW;
    g.accept(&a, far).unwrap();
    g.accept(&a, far - 1).unwrap();
    g.accept(&a, far - REPLAY_WINDOW + 1).unwrap();
    assert!(g.accept(&a, far - REPLAY_WINDOW + 1).is_err());
    // Slots cleared on small advances: after 0..64 then advancing by 1024+64,
    // sequences k + 1024 must not inherit k's bit.
    let mut g2 = ReplayGuard::new();
    for s in 0..64 {
        g2.accept(&a, s).unwrap();
    }
    for s in 64..(64 + REPLAY_WINDOW) {
        g2.accept(&a, s).unwrap();
    }
    assert_eq!(g2.highest(&a), Some(63 + REPLAY_WINDOW));
    for s in 0..64 {
        assert!(g2.check(&a, s).is_err());
    }
    // Sparse advance: only some slots rewritten.
    let mut g3 = ReplayGuard::new();
    g3.accept(&a, 5).unwrap();
    g3.accept(&a, 5 + REPLAY_WINDOW - 1).unwrap();
    g3.accept(&a, 5 + REPLAY_WINDOW + 3).unwrap(); // slot of 5 + 1024 is cleared on the way
    assert!(g3.check(&a, 5 + REPLAY_WINDOW).is_ok());
    assert!(g3.check(&a, 5 + REPLAY_WINDOW + 3).is_err());
    // Bounded number of senders.
    let mut g4 = ReplayGuard::with_max_senders(2);
    g4.accept(&a, 1).unwrap();
    g4.accept(&b, 1).unwrap();
    assert_eq!(g4.accept(&site(3), 1), Err(EnvelopeError::TooManySenders));
    g4.forget(&b);
    g4.accept(&site(3), 1).unwrap();
    // u64 extremes.
    let mut g5 = ReplayGuard::new();
    g5.accept(&a, u64::MAX).unwrap();
    assert!(g5.accept(&a, u64::MAX).is_err());
    g5.accept(&a, u64::MAX - 1).unwrap();
    assert!(g5.accept(&a, 0).is_err());
}

#[test]
fn debug_output_hides_payloads() {
    let e = sealed_to(1, &[2], 8, b"SECRET-PAYLOAD", 42);
    let o = open_as(&e, 2, Some(&seal_secret(2)), NOW).unwrap();
    for s in [format!("{e:?}"), format!("{o:?}")] {
        assert!(!s.contains("SECRET") && !s.contains("83, 69, 67"), "{s}");
    }
    assert!(!EnvelopeError::SealBroken.to_string().is_empty());
}

/// The exact bytes of a sealed envelope (site-1 → sites 2 and 3, `TestRng::new(42)`), checked
/// independently by `protocol/tools/check_seal_vector.py` (Python `cryptography`: X25519, HKDF,
/// ChaCha20-Poly1305, Ed25519), which re-derives the keys and opens it.
#[test]
fn golden_sealed_envelope_bytes() {
    // Re-pinned for protocol v2 (version byte 01 -> 02 in the header, which the signature and
    // both AEADs cover): Request/Response variants renumbered after removing unused Hello/Ack.
    let sealed = sealed_to(1, &[2, 3], 8, b"masked vector", 42);
    assert_eq!(
        hex(&sealed.to_bytes()),
        "d801030f746573742d636f6e736f727469756d06736974652d3100010773747564792d31030880a4a7da06000145db4b879a3fc67e48ac7f0e409f38181cb279cf08a6446b4a67ef55d64e611c0206736974652d3241f11ea84314ad831f5c94a226c07e32d38df794a1f2c2d6773b3fa859fa0b534de204bf98289b6494e9239c358948a006736974652d33d40921dcf3c8d2e880d7762d54d87b22de7f5966bb5d8855ad6ec451162e14e751f289a478c97832a85c0070130c5f931dcd6e1442347bd0fe5b14ab5e474ae733233a7eab184274caafe4867f819cf04eae2c70f91f0afe1d78af5723766ace94624cde748c3d3a8edd1cccbb28203fa4ead02c0678ee807383fd112993e243acf21ce6f5ed5720219c8fefea0c"
    );
}
