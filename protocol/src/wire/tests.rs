//! Wire message and audit artefact tests: golden vectors, round trips, must-fail vectors.

use super::*;
use crate::crypto::{public_key, sha256};
use crate::testkit::{ed25519_key, hex};

fn site(s: &str) -> SiteId {
    SiteId::new(s).unwrap()
}

fn checkpoint() -> SignedCheckpoint {
    SignedCheckpoint::sign(
        "fedanno.test-consortium/site-a",
        13,
        sha256(b"root"),
        1_800_000_000,
        site("site-a"),
        &ed25519_key(2),
    )
}

/// site-b's receipt for a message, signed with key 3.
fn receipt() -> Receipt {
    Receipt::sign(
        site("site-b"),
        sha256(b"msg"),
        42,
        sha256(b"b-root"),
        &ed25519_key(3),
    )
}

#[test]
fn base64_rfc4648_vectors() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(merkle::base64(i.as_bytes()), o);
    }
    assert_eq!(merkle::base64(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn golden_vectors() {
    let cp = checkpoint();
    assert_eq!(
        cp.text(),
        "fedanno.test-consortium/site-a\n13\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=\n"
    );
    assert_eq!(
        hex(&cp.signature),
        "f10ff3171e85816a126f1cee63d14a863dad5ad9a584c076f9f5e3188390617cec1ae874b4016811eee47b7e084fd0b6c2c220377da7064f0e4f9ff23e1cae07"
    );
    // Cross-checked with Python `cryptography` (Ed25519) + hashlib (C2SP signed-note key id).
    assert_eq!(
        cp.to_signed_note(&public_key(&ed25519_key(2))),
        "fedanno.test-consortium/site-a\n13\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=\n\n— fedanno.test-consortium/site-a 8LJ1RvEP8xcehYFqEm8c7mPRSoY9rVrZpYTAdvn14xiDkGF87BrodLQBaBHu5Ht+CE/QtsLCIDd9pwZPDk+f8j4crgc=\n"
    );
    let co = Cosignature::sign(&cp, site("site-b"), 1_800_000_100, &ed25519_key(3));
    assert_eq!(
        hex(&co.signature),
        // Protocol v3: C2SP `cosignature/v1` (see `cosignature_is_c2sp_cosignature_v1`).
        "3031b983fd243fedbf400548c706945ef1f4ae3ca80d7ea8e21d1c7fdfe298af9b71aa4099ba0d3c24f9baa0629fb2c33dc59cc4b8172b858d91351bdf4b9703"
    );
    let r = receipt();
    assert_eq!(
        hex(&r.signature),
        "6332dd32e96c292d77386b46696adedcd18cec134aff47dfeb3133b52e9ec211952a9d1d92ed587103106735c1acd467cb56faf08e27d5470dec60126f614a07"
    );
    let notice = Request::Notice {
        topic: "maintenance".into(),
        body: "down at 02:00".into(),
    };
    // Protocol v2: Request/Response variants renumbered after removing unused Hello/Ack
    // (Notice 3 -> 2, GetCheckpoint 1 -> 0, Refused 4 -> 2).
    assert_eq!(
        hex(&notice.to_bytes()),
        "020b6d61696e74656e616e63650d646f776e2061742030323a3030"
    );
    assert_eq!(hex(&Request::GetCheckpoint.to_bytes()), "00");
    assert_eq!(
        hex(&Response::Refused {
            reason: RefusalReason::Replay
        }
        .to_bytes()),
        "0203"
    );
    assert_eq!(
        hex(&sha256(&Gossip::Checkpoint { checkpoint: cp }.to_bytes())),
        "e040e886ced4c2fd233c446ba275b791ce1c015625ee3d2e34d822142916b3ce"
    );
}

/// tlog-cosignature v1, built by hand from the specification's text and checked with another
/// Ed25519 implementation; the note line's key id uses type byte 0x04.
#[test]
fn cosignature_is_c2sp_cosignature_v1() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let cp = checkpoint();
    let co = Cosignature::sign(&cp, site("site-b"), 1_679_315_147, &ed25519_key(3));
    let msg = format!(
        "cosignature/v1\ntime 1679315147\nfedanno.test-consortium/site-a\n13\n{}\n",
        merkle::base64(&cp.root)
    );
    let pk = public_key(&ed25519_key(3));
    VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify(msg.as_bytes(), &Signature::from_bytes(&co.signature))
        .unwrap();
    let line = co.note_line("fedanno.test-consortium/site-b", &pk);
    let blob = {
        use ::base64::Engine as _;
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        ::base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    assert_eq!(blob.len(), 4 + 8 + 64);
    let mut id_input = b"fedanno.test-consortium/site-b\n\x04".to_vec();
    id_input.extend_from_slice(&pk);
    assert_eq!(&blob[..4], &sha256(&id_input)[..4]);
    assert_eq!(&blob[4..12], &1_679_315_147u64.to_be_bytes());
    assert_eq!(&blob[12..], &co.signature);
    assert!(line.starts_with("\u{2014} fedanno.test-consortium/site-b "));
}

#[test]
fn checkpoint_is_a_plain_ed25519_signature_over_the_text() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let cp = checkpoint();
    let vk = VerifyingKey::from_bytes(&public_key(&ed25519_key(2))).unwrap();
    vk.verify(cp.text().as_bytes(), &Signature::from_bytes(&cp.signature))
        .unwrap();
}

#[test]
fn checkpoints_cosignatures_receipts_verify_and_refuse_tampering() {
    let pk_a = public_key(&ed25519_key(2));
    let pk_b = public_key(&ed25519_key(3));
    let cp = checkpoint();
    cp.verify(&pk_a).unwrap();
    assert_eq!(cp.verify(&pk_b), Err(WireError::BadSignature));
    let mut t = cp.clone();
    t.size += 1;
    assert_eq!(t.verify(&pk_a), Err(WireError::BadSignature));
    let mut t = cp.clone();
    t.root[0] ^= 1;
    assert_eq!(t.verify(&pk_a), Err(WireError::BadSignature));
    let mut t = cp.clone();
    t.origin.push('x');
    assert_eq!(t.verify(&pk_a), Err(WireError::BadSignature));
    let mut t = cp.clone();
    t.origin = "a\n14".into();
    assert_eq!(t.verify(&pk_a), Err(WireError::Malformed));
    // The timestamp is informational (not signed).
    let mut t = cp.clone();
    t.timestamp += 1;
    assert!(t.verify(&pk_a).is_ok());

    let co = Cosignature::sign(&cp, site("site-b"), 1_800_000_100, &ed25519_key(3));
    co.verify(&cp, &pk_b).unwrap();
    assert_eq!(co.verify(&cp, &pk_a), Err(WireError::BadSignature));
    let mut later = co.clone();
    later.timestamp += 1;
    assert_eq!(later.verify(&cp, &pk_b), Err(WireError::BadSignature));
    let mut other = cp.clone();
    other.size = 14;
    assert_eq!(co.verify(&other, &pk_b), Err(WireError::BadSignature));
    // A checkpoint signature is not a co-signature, and vice versa (domains).
    let fake = Cosignature {
        witness: site("site-a"),
        timestamp: 0,
        signature: cp.signature,
    };
    assert_eq!(fake.verify(&cp, &pk_a), Err(WireError::BadSignature));

    let r = receipt();
    r.verify(&pk_b).unwrap();
    assert_eq!(r.verify(&pk_a), Err(WireError::BadSignature));
    for f in [
        (|r: &mut Receipt| r.log_size += 1) as fn(&mut Receipt),
        |r| r.message_hash[31] ^= 1,
        |r| r.log_root[0] ^= 1,
        |r| r.receiver = SiteId::new("site-c").unwrap(),
        |r| r.signature[5] ^= 1,
    ] {
        let mut t = r.clone();
        f(&mut t);
        assert_eq!(t.verify(&pk_b), Err(WireError::BadSignature));
    }
}

#[test]
fn messages_round_trip_and_refuse_bad_bytes() {
    let cp = checkpoint();
    let requests = [
        Request::GetCheckpoint,
        Request::Witness {
            old_size: 7,
            proof: vec![[5; 32]; 3],
            checkpoint: cp.clone(),
        },
        Request::Notice {
            topic: "t".into(),
            body: "b".into(),
        },
    ];
    for m in &requests {
        assert_eq!(&Request::from_bytes(&m.to_bytes()).unwrap(), m);
    }
    let co = Cosignature::sign(&cp, site("site-b"), 5, &ed25519_key(3));
    let receipt = Receipt::sign(site("site-b"), [1; 32], 1, [2; 32], &ed25519_key(3));
    let responses = [
        Response::Checkpoint {
            checkpoint: cp.clone(),
        },
        Response::Cosigned { cosignature: co },
        Response::Refused {
            reason: RefusalReason::NotAMember,
        },
        Response::Receipt { receipt },
        Response::WitnessConflict { size: 9 },
    ];
    for m in &responses {
        assert_eq!(&Response::from_bytes(&m.to_bytes()).unwrap(), m);
    }
    let co = Cosignature::sign(&cp, site("site-b"), 5, &ed25519_key(3));
    let gossip = [
        Gossip::Notice {
            topic: "t".into(),
            body: "b".into(),
        },
        Gossip::Cosigned {
            checkpoint: cp.clone(),
            cosignature: co,
        },
        Gossip::Alarm {
            evidence: crate::witness::Evidence {
                kind: crate::witness::Contradiction::Fork,
                earlier: cp.clone(),
                later: cp.clone(),
            },
        },
    ];
    for g in &gossip {
        assert_eq!(&Gossip::from_bytes(&g.to_bytes()).unwrap(), g);
    }
    // A proof longer than any tree needs is refused.
    let long = Request::Witness {
        old_size: 1,
        proof: vec![[0; 32]; crate::limits::MAX_PROOF_HASHES + 1],
        checkpoint: cp.clone(),
    };
    assert!(Request::from_bytes(&long.to_bytes()).is_err());

    // Unknown variant, trailing byte, truncation.
    assert_eq!(Request::from_bytes(&[9]), Err(CodecError::Malformed));
    // GetCheckpoint (variant 0 since protocol v2) and one byte too many.
    assert_eq!(
        Request::from_bytes(&[0, 0]),
        Err(CodecError::TrailingBytes { count: 1 })
    );
    // Every truncation of a Witness request.
    let b = requests[1].to_bytes();
    for n in 0..b.len() {
        assert!(Request::from_bytes(&b[..n]).is_err());
    }
    // Text over the limit, and gossip over its size limit.
    let long = Request::Notice {
        topic: "t".into(),
        body: "x".repeat(MAX_TEXT + 1),
    };
    assert_eq!(
        Request::from_bytes(&long.to_bytes()),
        Err(CodecError::Malformed)
    );
    let big = vec![0u8; MAX_GOSSIP_BYTES + 1];
    assert!(matches!(
        Gossip::from_bytes(&big),
        Err(CodecError::Oversized { .. })
    ));
    let big = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        Response::from_bytes(&big),
        Err(CodecError::Oversized { .. })
    ));
}

#[test]
fn envelope_frame_len_is_the_encoded_length() {
    for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000, 2_100_000] {
        let f = Frame::Envelope { bytes: vec![0; n] };
        assert_eq!(
            Frame::envelope_frame_len(n),
            f.to_bytes().len() as u64,
            "{n}"
        );
    }
}

#[test]
fn frames_round_trip_and_refuse_oversized_envelopes() {
    let f = Frame::Envelope {
        bytes: vec![7u8; 100],
    };
    assert_eq!(Frame::from_bytes(&f.to_bytes()).unwrap(), f);
    for f in [
        Frame::Challenge { nonce: [3; 32] },
        Frame::Proof { signature: [4; 64] },
    ] {
        let bytes = f.to_bytes();
        assert!(bytes.len() <= crate::limits::MAX_UNPROVEN_FRAME);
        assert_eq!(Frame::from_bytes(&bytes).unwrap(), f);
    }
    let r = Frame::Refused {
        reason: RefusalReason::NotAMember,
    };
    assert_eq!(Frame::from_bytes(&r.to_bytes()).unwrap(), r);
    // A declared envelope length over the limit is refused before allocating.
    let mut hostile = vec![1u8]; // variant Envelope
    hostile.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]); // varint length 2^32 - 1
    assert!(Frame::from_bytes(&hostile).is_err());
    assert!(Frame::from_bytes(&[]).is_err());
    assert!(Frame::from_bytes(&[9]).is_err());
}

#[test]
fn audit_fetches_round_trip_within_their_limits() {
    use crate::limits::{MAX_AUDIT_ENTRY_BYTES, MAX_AUDIT_PAGE};
    for q in [
        AuditQuery::Heads,
        AuditQuery::Entries { from: 3, count: 9 },
        AuditQuery::Consistency {
            old_size: 2,
            new_size: 5,
        },
        AuditQuery::Inclusion { index: 1, size: 4 },
    ] {
        let r = Request::Audit(q);
        assert_eq!(Request::from_bytes(&r.to_bytes()).unwrap(), r);
    }
    let entry = |body: Option<Vec<u8>>| AuditEntry {
        seq: 0,
        body,
        leaf: [1; 32],
        signature: [2; 64],
    };
    let page = Response::Audit(AuditAnswer::Entries {
        entries: vec![entry(Some(vec![7; 10])), entry(None)],
    });
    assert_eq!(Response::from_bytes(&page.to_bytes()).unwrap(), page);
    let proof = Response::Audit(AuditAnswer::Proof {
        hashes: vec![[3; 32]; 4],
    });
    assert_eq!(Response::from_bytes(&proof.to_bytes()).unwrap(), proof);
    // A page longer than the limit, or a body over the entry limit, does not decode.
    let long = Response::Audit(AuditAnswer::Entries {
        entries: vec![entry(None); MAX_AUDIT_PAGE + 1],
    });
    assert!(Response::from_bytes(&long.to_bytes()).is_err());
    let fat = Response::Audit(AuditAnswer::Entries {
        entries: vec![entry(Some(vec![0; MAX_AUDIT_ENTRY_BYTES + 1]))],
    });
    assert!(Response::from_bytes(&fat.to_bytes()).is_err());
}
