//! Fuzz-style robustness tests: tens of thousands of random mutations of valid envelopes,
//! certificates, requests, revocation lists and wire messages, decoded and verified; none may
//! panic, and no mutated byte string may ever verify or open.

use crate::cert::tests::{NOW as CERT_NOW, cert, consortium, request};
use crate::cert::{
    CRL_VERSION, CertRequest, Certificate, RevocationBody, RevocationList, Revoked, TrustStore,
};
use crate::envelope::Envelope;
use crate::envelope::tests::{NOW, header, open_as, seal_secret, sealed_to, sign_key};
use crate::ids::SiteId;
use crate::testkit::{XorShift, ed25519_key};
use crate::wire::{Frame, Gossip, Request, Response, SignedCheckpoint};

const ROUNDS: usize = 20_000;

fn crl() -> RevocationList {
    let body = RevocationBody {
        version: CRL_VERSION,
        consortium: "test-consortium".into(),
        number: 3,
        issued_at: CERT_NOW - 5,
        revoked: (1..20)
            .map(|s| Revoked {
                serial: s * 7,
                site_id: SiteId::new(format!("site-{s}")).unwrap(),
                reason: "superseded".into(),
                revoked_at: CERT_NOW - 50,
            })
            .collect(),
    };
    RevocationList::issue(&body, &ed25519_key(1))
}

#[test]
fn mutated_envelopes_never_panic_or_open() {
    let seeds = [
        sealed_to(1, &[2, 3], 8, b"masked vector bytes", 42).to_bytes(),
        Envelope::sign(header(1, Some(2), 7), b"plain payload", &sign_key(1)).to_bytes(),
    ];
    let s2 = seal_secret(2);
    let mut rng = XorShift::new(0x5eed);
    let mut decoded = 0;
    for i in 0..ROUNDS {
        let Some(seed) = seeds.get(i % seeds.len()) else {
            continue;
        };
        let m = rng.mutate(seed);
        if &m == seed {
            continue;
        }
        if let Ok(e) = Envelope::from_bytes(&m) {
            decoded += 1;
            assert!(
                open_as(&e, 2, Some(&s2), NOW).is_err(),
                "mutation {i} opened"
            );
        }
    }
    // Random garbage too.
    for i in 0..ROUNDS / 4 {
        let len = rng.below(600);
        let g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Ok(e) = Envelope::from_bytes(&g) {
            assert!(
                open_as(&e, 2, Some(&s2), NOW).is_err(),
                "garbage {i} opened"
            );
        }
    }
    // Some mutations should survive decoding (e.g. in the signature), exercising `open`.
    assert!(decoded > 0);
}

#[test]
fn mutated_certificates_requests_and_revocation_lists_never_panic_or_verify() {
    let c = consortium();
    let ts = TrustStore::new(c.clone());
    let k = cert(2).to_bytes();
    let r = request(2).to_bytes();
    let l = crl().to_bytes();
    let info = c.to_bytes();
    let text = c.to_text();
    let mut rng = XorShift::new(0xce27);
    for i in 0..ROUNDS {
        let m = rng.mutate(&k);
        if m != k
            && let Ok(x) = Certificate::from_bytes(&m)
        {
            assert!(
                x.verify(&c, CERT_NOW).is_err(),
                "cert mutation {i} verified"
            );
            assert!(ts.check_peer(&x, b"peer", CERT_NOW).is_err());
            let _ = x.body_unverified();
        }
        let m = rng.mutate(&r);
        if m != r
            && let Ok(x) = CertRequest::from_bytes(&m)
        {
            assert!(x.verify().is_err(), "request mutation {i} verified");
        }
        let m = rng.mutate(&l);
        if m != l
            && let Ok(x) = RevocationList::from_bytes(&m)
        {
            assert!(x.verify(&c, CERT_NOW).is_err(), "crl mutation {i} verified");
            let _ = x.is_revoked(7);
        }
        let m = rng.mutate(&info);
        let _ = crate::cert::ConsortiumInfo::from_bytes(&m);
        let m = rng.mutate(text.as_bytes());
        if let Ok(s) = std::str::from_utf8(&m) {
            let _ = crate::cert::ConsortiumInfo::from_text(s);
        }
    }
}

#[test]
fn mutated_wire_messages_never_panic() {
    let cp = SignedCheckpoint::sign(
        "fedanno.t/a",
        9,
        [3; 32],
        1,
        SiteId::new("a").unwrap(),
        &ed25519_key(2),
    );
    let pk = crate::crypto::public_key(&ed25519_key(2));
    let seeds: Vec<Vec<u8>> = vec![
        Frame::Hello {
            certificate: cert(2),
            nonce: [7; 32],
        }
        .to_bytes(),
        Frame::Welcome {
            certificate: cert(3),
            signature: [5; 64],
            members: vec![crate::wire::MemberAddresses {
                site: SiteId::new("b").unwrap(),
                addrs: vec!["/ip4/10.0.0.2/tcp/4100".into()],
            }],
            revocations: Some(vec![1, 2, 3]),
        }
        .to_bytes(),
        Frame::Proof { signature: [6; 64] }.to_bytes(),
        Request::Witness {
            old_size: 4,
            proof: vec![[8; 32]; 2],
            checkpoint: cp.clone(),
        }
        .to_bytes(),
        Request::Notice {
            topic: "t".into(),
            body: "b".repeat(40),
        }
        .to_bytes(),
        Response::Checkpoint {
            checkpoint: cp.clone(),
        }
        .to_bytes(),
        Gossip::Checkpoint { checkpoint: cp }.to_bytes(),
    ];
    let mut rng = XorShift::new(0x3172e);
    for i in 0..ROUNDS {
        let Some(seed) = seeds.get(i % seeds.len()) else {
            continue;
        };
        let m = rng.mutate(seed);
        // Only the unsigned fields (timestamp, signer) may change and still verify.
        if let Ok(Request::Witness { checkpoint: c, .. }) = Request::from_bytes(&m)
            && c.verify(&pk).is_ok()
        {
            assert_eq!(
                (c.origin.as_str(), c.size, c.root),
                ("fedanno.t/a", 9, [3; 32])
            );
        }
        if let Ok(Response::Checkpoint { checkpoint }) = Response::from_bytes(&m) {
            let _ = checkpoint.verify(&pk);
        }
        if let Ok(Gossip::Checkpoint { checkpoint }) = Gossip::from_bytes(&m) {
            let _ = checkpoint.verify(&pk);
        }
        if let Ok(Frame::Hello { certificate, .. } | Frame::Welcome { certificate, .. }) =
            Frame::from_bytes(&m)
        {
            let _ = certificate.verify(&consortium(), CERT_NOW);
        }
    }
}

#[test]
fn mutated_jobs_and_releases_never_panic_and_decode_canonically() {
    use crate::jobs::{ConsensusOutcome, Job};
    let jobs = crate::jobs::tests::jobs();
    let outcomes = crate::jobs::tests::outcomes();
    let seeds: Vec<Vec<u8>> = jobs
        .iter()
        .map(Job::to_bytes)
        .chain(outcomes.iter().map(ConsensusOutcome::to_bytes))
        .collect();
    let mut rng = XorShift::new(0x10b5);
    let mut decoded = 0;
    for i in 0..ROUNDS {
        let Some(seed) = seeds.get(i % seeds.len()) else {
            continue;
        };
        let m = rng.mutate(seed);
        // Whatever decodes is the one canonical encoding of its value.
        if let Ok(j) = Job::from_bytes(&m) {
            decoded += 1;
            assert_eq!(j.to_bytes(), m, "job mutation {i}");
            if &m != seed {
                assert_ne!(j.input_id(), crate::crypto::sha256(seed));
            }
        }
        if let Ok(o) = ConsensusOutcome::from_bytes(&m) {
            decoded += 1;
            assert_eq!(o.to_bytes(), m, "release mutation {i}");
        }
    }
    for _ in 0..ROUNDS / 4 {
        let len = rng.below(200);
        let g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = Job::from_bytes(&g);
        let _ = ConsensusOutcome::from_bytes(&g);
    }
    assert!(decoded > 0);
}
