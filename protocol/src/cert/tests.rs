//! Certificate, request, revocation-list and trust-store tests: golden vectors, round trips and
//! must-fail vectors.

use super::*;
use crate::crypto::{public_key, sha256, x25519_public};
use crate::testkit::{ed25519_key, hex, x25519_secret};

pub(crate) const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

pub(crate) fn consortium() -> ConsortiumInfo {
    ConsortiumInfo::new("test-consortium", &ed25519_key(1)).unwrap()
}

fn site(n: u8) -> SiteId {
    SiteId::new(format!("site-{n}")).unwrap()
}

pub(crate) fn request(n: u8) -> CertRequest {
    CertRequest::new(
        site(n),
        &format!("Hospital {n}"),
        &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20, n],
        x25519_public(&x25519_secret(100 + n)),
        &ed25519_key(10 + n),
        NOW - DAY,
    )
}

pub(crate) fn cert_for(n: u8, serial: u64, roles: &[Role], nb: u64, na: u64) -> Certificate {
    let req = request(n).verify().unwrap();
    let body = CertificateBody::from_request(&req, "test-consortium", serial, roles, nb, na);
    Certificate::issue(&body, &ed25519_key(1))
}

pub(crate) fn cert(n: u8) -> Certificate {
    cert_for(n, u64::from(n), &[Role::Site], NOW - DAY, NOW + 365 * DAY)
}

fn crl(number: u64, serials: &[u64]) -> RevocationList {
    let body = RevocationBody {
        version: CRL_VERSION,
        consortium: "test-consortium".into(),
        number,
        issued_at: NOW - 10,
        revoked: serials
            .iter()
            .map(|&s| Revoked {
                serial: s,
                site_id: site(s as u8),
                reason: "key compromise".into(),
                revoked_at: NOW - 20,
            })
            .collect(),
    };
    RevocationList::issue(&body, &ed25519_key(1))
}

#[test]
fn golden_vectors() {
    let c = consortium();
    assert_eq!(
        c.to_text(),
        "fedanno-consortium v1\nname test-consortium\nroot-key 8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\n"
    );
    assert_eq!(
        hex(&c.to_bytes()),
        "0f746573742d636f6e736f727469756d8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    );
    assert_eq!(c.fingerprint(), "34750f98bd59fcfc946da45aaabe933b");
    assert_eq!(
        hex(&request(2).to_bytes()),
        "600106736974652d320a486f73706974616c203207002408011220020b513ad9b4924015ca0902ed079044d3ac5dbec2306f06948c10da8eb6e39f2d219e4d800da968d2a5fcb009c784f4746c7138edb9ee4844b739e830b05cf4248081a2da06a386f6a1b09835eacbed246f5b4824fd6fba5edcfee68ca97fce3157751efe87d7ccb5fad23efce3262f7dd8a7475440afda864ee4752607fa0ec78f3d8f0505"
    );
    assert_eq!(
        hex(&cert(2).to_bytes()),
        "78010f746573742d636f6e736f727469756d0206736974652d320a486f73706974616c203207002408011220020b513ad9b4924015ca0902ed079044d3ac5dbec2306f06948c10da8eb6e39f2d219e4d800da968d2a5fcb009c784f4746c7138edb9ee4844b739e830b05cf42401008081a2da06808bace9068e5180bd02c0bee4dbca9aaed7943178cd27a45478b81b552d5d2f0db8d3ea29a7bb0c91e4a7164f8e04dbfe3f12ab8f8623f90d103c300239427e2c22e26b08"
    );
    assert_eq!(
        hex(&sha256(&crl(7, &[5, 3]).to_bytes())),
        "d91ca3dd623c37fa72a195136ba2a4039e7ee632a0658b64b0fe923f65e33ff9"
    );
}

#[test]
fn round_trips() {
    let c = consortium();
    assert_eq!(ConsortiumInfo::from_text(&c.to_text()).unwrap(), c);
    assert_eq!(
        ConsortiumInfo::from_text(c.to_text().trim_end()).unwrap(),
        c
    );
    assert_eq!(ConsortiumInfo::from_bytes(&c.to_bytes()).unwrap(), c);
    let r = request(2);
    let r2 = CertRequest::from_bytes(&r.to_bytes()).unwrap();
    assert_eq!(r2, r);
    let body = r2.verify().unwrap();
    assert_eq!(body.signing_key, public_key(&ed25519_key(12)));
    assert_eq!(body.site_id, site(2));
    let k = cert(2);
    let k2 = Certificate::from_bytes(&k.to_bytes()).unwrap();
    assert_eq!(k2, k);
    let b = k2.verify(&c, NOW).unwrap();
    assert_eq!(b.serial, 2);
    assert_eq!(b.roles, vec![Role::Site]);
    assert_eq!(k2.body_unverified().unwrap(), b);
    let l = crl(7, &[5, 3]);
    let l2 = RevocationList::from_bytes(&l.to_bytes()).unwrap();
    assert_eq!(l2, l);
    let lb = l2.verify(&c, NOW).unwrap();
    assert_eq!(
        lb.revoked.iter().map(|r| r.serial).collect::<Vec<_>>(),
        [3, 5]
    );
    assert!(l2.is_revoked(3) && l2.is_revoked(5) && !l2.is_revoked(4));
    for r in Role::ALL {
        assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
    }
    assert!("admin".parse::<Role>().is_err());
}

#[test]
fn certificate_must_fail() {
    let c = consortium();
    let k = cert(2);
    let b = k.verify(&c, NOW).unwrap();
    assert_eq!(
        k.verify(&c, b.not_after + 1),
        Err(CertError::Expired {
            not_after: b.not_after
        })
    );
    assert!(k.verify(&c, b.not_after).is_ok());
    assert_eq!(
        k.verify(&c, b.not_before - 1),
        Err(CertError::NotYetValid {
            not_before: b.not_before
        })
    );
    // Another root.
    let other = ConsortiumInfo::new("test-consortium", &ed25519_key(9)).unwrap();
    assert_eq!(k.verify(&other, NOW), Err(CertError::BadSignature));
    // Same root key, another consortium name.
    let renamed = ConsortiumInfo {
        name: "other".into(),
        root_key: c.root_key,
    };
    assert_eq!(k.verify(&renamed, NOW), Err(CertError::WrongConsortium));
    // Wrong version, signed by the right root.
    let mut body = b.clone();
    body.version = 2;
    let v2 = Certificate::issue(&body, &ed25519_key(1));
    assert_eq!(v2.verify(&c, NOW), Err(CertError::UnsupportedVersion(2)));
    // No roles; unsorted roles; inverted window; bad display name.
    for f in [
        (|b: &mut CertificateBody| b.roles.clear()) as fn(&mut CertificateBody),
        |b| b.roles = vec![Role::Coordinator, Role::Site],
        |b| b.roles = vec![Role::Site, Role::Site],
        |b| b.not_before = b.not_after + 1,
        |b| b.display_name = "bad\nname".into(),
        |b| b.peer_id.clear(),
    ] {
        let mut body = b.clone();
        f(&mut body);
        let bad = Certificate::issue(&body, &ed25519_key(1));
        assert_eq!(bad.verify(&c, NOW), Err(CertError::Malformed));
    }
    assert_eq!(
        b.require_role(Role::Coordinator),
        Err(CertError::MissingRole(Role::Coordinator))
    );
    assert!(b.require_role(Role::Site).is_ok());
    // Every single-byte change is refused at decode or at verification.
    let bytes = k.to_bytes();
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= bit;
            if let Ok(t) = Certificate::from_bytes(&t) {
                assert!(t.verify(&c, NOW).is_err(), "flip at {i} accepted");
            }
        }
    }
    // Truncated and oversized.
    for n in 0..bytes.len() {
        assert!(Certificate::from_bytes(&bytes[..n]).is_err());
    }
    let huge = vec![0u8; MAX_CERT_BYTES + 1];
    assert!(matches!(
        Certificate::from_bytes(&huge),
        Err(CodecError::Oversized { .. })
    ));
}

#[test]
fn request_must_fail() {
    let r = request(2);
    // A request whose body names a key other than the one that signed it.
    let mut body = r.verify().unwrap();
    body.signing_key = public_key(&ed25519_key(99));
    let forged = CertRequest(Signed {
        body: codec::encode(&body),
        signature: r.0.signature,
    });
    assert_eq!(forged.verify(), Err(CertError::BadSignature));
    let resigned = CertRequest(Signed {
        signature: crypto::sign(&ed25519_key(12), DOMAIN_CERT_REQUEST, &codec::encode(&body)),
        body: codec::encode(&body),
    });
    assert_eq!(resigned.verify(), Err(CertError::BadSignature));
    // A request signature is not a certificate signature (domains).
    let as_cert = Certificate(r.0.clone());
    let self_root = ConsortiumInfo {
        name: "test-consortium".into(),
        root_key: public_key(&ed25519_key(12)),
    };
    assert_eq!(
        as_cert.verify(&self_root, NOW),
        Err(CertError::BadSignature)
    );
    let bytes = r.to_bytes();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x04;
        if let Ok(t) = CertRequest::from_bytes(&t) {
            assert!(t.verify().is_err(), "flip at {i} accepted");
        }
    }
    let mut body = r.verify().unwrap();
    body.version = 9;
    let v9 = CertRequest(Signed {
        signature: crypto::sign(&ed25519_key(12), DOMAIN_CERT_REQUEST, &codec::encode(&body)),
        body: codec::encode(&body),
    });
    assert_eq!(v9.verify(), Err(CertError::UnsupportedVersion(9)));
}

#[test]
fn consortium_info_must_fail() {
    let good = consortium().to_text();
    for bad in [
        good.replace("v1", "v2"),
        good.replace("name ", "name  "),
        good.replace("test-consortium", "test consortium"),
        good.replace("8a88", "8A88"),
        good.replace("5c\n", "\n"),
        format!("{good}extra\n"),
        String::new(),
    ] {
        assert_eq!(
            ConsortiumInfo::from_text(&bad),
            Err(CertError::Malformed),
            "{bad:?}"
        );
    }
    assert!(ConsortiumInfo::new("", &ed25519_key(1)).is_err());
    assert!(ConsortiumInfo::new(&"x".repeat(MAX_NAME_LEN + 1), &ed25519_key(1)).is_err());
}

#[test]
fn revocation_list_must_fail() {
    let c = consortium();
    let l = crl(7, &[5, 3]);
    let other = ConsortiumInfo::new("test-consortium", &ed25519_key(9)).unwrap();
    assert_eq!(l.verify(&other, NOW), Err(CertError::BadSignature));
    let renamed = ConsortiumInfo {
        name: "other".into(),
        root_key: c.root_key,
    };
    assert_eq!(l.verify(&renamed, NOW), Err(CertError::WrongConsortium));
    // Issued (far) in the future.
    assert_eq!(
        l.verify(&c, NOW - 10 - MAX_CLOCK_SKEW_SECS - 1),
        Err(CertError::NotYetValid {
            not_before: NOW - 10
        })
    );
    let bytes = l.to_bytes();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x10;
        if let Ok(t) = RevocationList::from_bytes(&t) {
            assert!(t.verify(&c, NOW).is_err(), "flip at {i} accepted");
        }
    }
    for n in 0..bytes.len() {
        assert!(RevocationList::from_bytes(&bytes[..n]).is_err());
    }
    let huge = vec![0u8; crate::limits::MAX_REVOCATION_LIST_BYTES + 1];
    assert!(matches!(
        RevocationList::from_bytes(&huge),
        Err(CodecError::Oversized { .. })
    ));
    let mut body = l.verify(&c, NOW).unwrap();
    body.version = 3;
    assert_eq!(
        RevocationList::issue(&body, &ed25519_key(1)).verify(&c, NOW),
        Err(CertError::UnsupportedVersion(3))
    );
}

use crate::limits::MAX_CLOCK_SKEW_SECS;

#[test]
fn trust_store_checks_peers() {
    let mut ts = TrustStore::new(consortium());
    let k2 = cert(2);
    let peer2 = k2.body_unverified().unwrap().peer_id;
    assert_eq!(ts.check_peer(&k2, &peer2, NOW).unwrap().site_id, site(2));
    // Someone presenting site 2's certificate from another peer id.
    assert_eq!(
        ts.check_peer(&k2, b"another-peer", NOW),
        Err(CertError::WrongPeer)
    );
    // Expired and not-yet-valid.
    let old = cert_for(3, 30, &[Role::Site], NOW - 10 * DAY, NOW - DAY);
    let peer3 = old.body_unverified().unwrap().peer_id;
    assert_eq!(
        ts.check_peer(&old, &peer3, NOW),
        Err(CertError::Expired {
            not_after: NOW - DAY
        })
    );
    let future = cert_for(3, 31, &[Role::Site], NOW + DAY, NOW + 10 * DAY);
    assert_eq!(
        ts.check_peer(&future, &peer3, NOW),
        Err(CertError::NotYetValid {
            not_before: NOW + DAY
        })
    );
    // Revocation.
    ts.set_revocations(&crl(1, &[2]), NOW).unwrap();
    assert_eq!(
        ts.check_peer(&k2, &peer2, NOW),
        Err(CertError::Revoked { serial: 2 })
    );
    assert_eq!(
        ts.check_certificate(&k2, NOW),
        Err(CertError::Revoked { serial: 2 })
    );
    // A re-issued certificate with a new serial is accepted.
    let k2b = cert_for(
        2,
        200,
        &[Role::Site, Role::Coordinator],
        NOW - DAY,
        NOW + DAY,
    );
    assert!(
        ts.check_peer(&k2b, &peer2, NOW)
            .unwrap()
            .has_role(Role::Coordinator)
    );
    // Stale lists are refused and leave the newer one in force.
    ts.set_revocations(&crl(2, &[2, 200]), NOW).unwrap();
    assert_eq!(
        ts.set_revocations(&crl(1, &[]), NOW),
        Err(CertError::StaleRevocationList { have: 2, got: 1 })
    );
    assert_eq!(
        ts.set_revocations(&crl(2, &[2]), NOW),
        Err(CertError::StaleRevocationList { have: 2, got: 2 })
    );
    ts.set_revocations(&crl(2, &[2, 200]), NOW).unwrap();
    assert_eq!(ts.revocations().unwrap().number, 2);
    assert_eq!(
        ts.check_peer(&k2b, &peer2, NOW),
        Err(CertError::Revoked { serial: 200 })
    );
    // A list signed by another root is refused.
    let foreign = RevocationList::issue(
        &crl(9, &[]).verify(&consortium(), NOW).unwrap(),
        &ed25519_key(9),
    );
    assert_eq!(
        ts.set_revocations(&foreign, NOW),
        Err(CertError::BadSignature)
    );
    // Wrong consortium certificate: same root key, other name.
    let mut ts2 = TrustStore::new(ConsortiumInfo {
        name: "other".into(),
        root_key: consortium().root_key,
    });
    assert_eq!(
        ts2.check_peer(&cert(4), b"x", NOW),
        Err(CertError::WrongConsortium)
    );
    assert!(ts2.set_revocations(&crl(1, &[]), NOW).is_err());
    assert!(ts.is_root(&ed25519_key(1)) && !ts.is_root(&ed25519_key(2)));
}

#[test]
fn errors_do_not_print_key_material() {
    let e = CertError::StaleRevocationList { have: 2, got: 1 };
    assert_eq!(
        e.to_string(),
        "revocation list 1 is not newer than the one held (2)"
    );
    let dbg = format!("{:?}", cert(2));
    assert!(dbg.starts_with("Certificate(") && dbg.len() < 80);
}
