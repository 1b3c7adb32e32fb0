//! Several certified nodes in one process on loopback TCP (port 0): membership proofs,
//! request-response with receipts and gossip with matching audit entries on both sides;
//! refusals of uncertified, revoked, expired and impersonating nodes before any application
//! message; rejection of tampered, truncated, oversized, replayed, wrong-version and wrongly
//! sealed messages; a policy denial that never reaches the wire. Every wait is on an event
//! under a timeout.

use fedanno_node::network::audit::AuditEvent;
use fedanno_node::network::node::Node;
use fedanno_node::network::policy::Policy;
use fedanno_node::site::store::AuditFilter;
use fedanno_protocol::PROTOCOL_VERSION;
use fedanno_protocol::cert::{
    Certificate, CertificateBody, RevocationBody, RevocationList, Revoked, Role,
};
use fedanno_protocol::envelope::{Envelope, Header, PayloadKind};
use fedanno_protocol::wire::{Frame, RefusalReason, Request};
use fedanno_tests::network::{CONSORTIUM, TestConsortium, TestSite, address, now, wait_until};

async fn events(site: &TestSite, kind: &str) -> Vec<AuditEvent> {
    site.site
        .store
        .audit_entries(AuditFilter {
            kind: Some(kind.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

fn members(n: &Node) -> usize {
    n.handle.shared.members().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_certified_nodes_exchange_requests_and_gossip_with_matching_audit_entries() {
    let c = TestConsortium::new(CONSORTIUM, 1);
    let (a, b, s3) = (
        TestSite::new("Site A"),
        TestSite::new("Site B"),
        TestSite::new("Site C"),
    );
    let (ca, ba) = c.admit(&a, &[Role::Site, Role::Coordinator]);
    let (cb, bb) = c.admit(&b, &[Role::Site]);
    let (cc, bc) = c.admit(&s3, &[Role::Site]);
    let na = a
        .start(ca, ba, c.trust(), Policy::default_site(), vec![])
        .await;
    let nb = b
        .start(
            cb,
            bb,
            c.trust(),
            Policy::default_site(),
            vec![address(&na)],
        )
        .await;
    let nc = s3
        .start(
            cc,
            bc,
            c.trust(),
            Policy::default_site(),
            vec![address(&na), address(&nb)],
        )
        .await;
    for (n, name) in [(&na, "A"), (&nb, "B"), (&nc, "C")] {
        wait_until(n, 30, &format!("{name} to prove two members"), || {
            members(n) == 2
        })
        .await;
    }

    // Request-response: B's notice to A, receipted.
    nb.handle
        .notice(
            a.id.clone(),
            "maintenance".into(),
            "node restarts at 02:00".into(),
        )
        .await
        .unwrap();
    let sent: Vec<_> = events(&b, "sent")
        .await
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::Sent {
                kind,
                message_hash,
                to,
                ..
            } if kind == "notice" => Some((message_hash, to)),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    let (hash, to) = sent[0].clone();
    assert_eq!(to.as_ref(), Some(&a.id));
    let received = events(&a, "received").await;
    assert!(received.iter().any(|e| matches!(e, AuditEvent::Received { kind, message_hash, from, .. } if kind == "notice" && *message_hash == hash && *from == b.id)));
    assert!(events(&a, "receipt-issued").await.iter().any(
        |e| matches!(e, AuditEvent::ReceiptIssued { message_hash, .. } if *message_hash == hash)
    ));
    let receipts = events(&b, "receipt-received").await;
    assert!(
        matches!(&receipts[..], [AuditEvent::ReceiptReceived { from, receipt }] if *from == a.id && receipt.message_hash == hash)
    );

    // Gossip: A publishes a signed checkpoint, sealed to the members; B and C receive it.
    let published = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut rx = na.handle.shared.activity.subscribe();
        loop {
            match na.handle.checkpoint().await {
                Ok(cp) => return cp,
                // Until the members' subscriptions arrive, gossip has nowhere to go.
                Err(_) => {
                    let _ = rx.changed().await;
                }
            }
        }
    })
    .await
    .expect("a checkpoint was published");
    for (n, site) in [(&nb, &b), (&nc, &s3)] {
        wait_until(n, 30, "the checkpoint gossip", || {
            n.handle
                .shared
                .peer_checkpoints
                .lock()
                .unwrap()
                .get(&a.id)
                .is_some_and(|cp| cp.size >= published.size)
        })
        .await;
        assert!(events(site, "received").await.iter().any(|e| matches!(e, AuditEvent::Received { kind, from, .. } if kind == "checkpoint" && *from == a.id)));
    }

    // Witnessing: C asks B to co-sign its log's checkpoint.
    let cos = nc.handle.witness(b.id.clone()).await.unwrap();
    assert_eq!(cos.witness, b.id);
    assert!(
        events(&s3, "cosigned")
            .await
            .iter()
            .any(|e| matches!(e, AuditEvent::Cosigned { by, .. } if *by == b.id))
    );

    // Every log still verifies.
    for site in [&a, &b, &s3] {
        let report = site.audit().verify().await.unwrap();
        assert!(report.ok, "{report:?}");
    }
    for n in [na, nb, nc] {
        n.stop().await;
    }
}

/// Waits (on A's activity signal) until `check` finds something in A's audit log.
async fn wait_audit<T>(
    site: &TestSite,
    node: &Node,
    what: &str,
    check: impl Fn(Vec<AuditEvent>) -> Option<T>,
) -> T {
    let mut rx = node.handle.shared.activity.subscribe();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let all = site
                .site
                .store
                .audit_entries(AuditFilter::default())
                .await
                .unwrap();
            if let Some(t) = check(all.into_iter().map(|e| e.event).collect()) {
                return t;
            }
            let _ = rx.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Starts an intruder with the given certificate and returns the refusal A audited for it.
async fn refused_reason(
    a: &TestSite,
    na: &Node,
    intruder: &TestSite,
    cert: Certificate,
    body: CertificateBody,
    c: &TestConsortium,
) -> String {
    let ni = intruder
        .start(
            cert,
            body,
            c.trust(),
            Policy::default_site(),
            vec![address(na)],
        )
        .await;
    let peer = ni.handle.net().peer_id().to_string();
    let reason = wait_audit(a, na, "the refusal", |events| {
        events.into_iter().find_map(|e| match e {
            AuditEvent::Refused { peer: p, reason } if p == peer => Some(reason),
            _ => None,
        })
    })
    .await;
    // A sent the intruder no request and never counted it a member.
    let stats = na.handle.net().stats().await.unwrap();
    assert_eq!(
        stats
            .requests_to
            .get(&ni.handle.net().peer_id())
            .copied()
            .unwrap_or(0),
        0
    );
    assert!(na.handle.shared.members().iter().all(|m| m.peer_id != peer));
    ni.stop().await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertified_revoked_expired_and_impersonating_nodes_are_refused_and_audited() {
    let c = TestConsortium::new(CONSORTIUM, 1);
    let a = TestSite::new("Site A");
    let (ca, ba) = c.admit(&a, &[Role::Site]);
    // The site to revoke is admitted first, so its serial is known.
    let revoked = TestSite::new("Site Revoked");
    let (cr, br) = c.admit(&revoked, &[Role::Site]);
    let crl = RevocationList::issue(
        &RevocationBody {
            version: 1,
            consortium: CONSORTIUM.into(),
            number: 1,
            issued_at: now(),
            revoked: vec![Revoked {
                serial: br.serial,
                site_id: revoked.id.clone(),
                reason: "key compromise".into(),
                revoked_at: now(),
            }],
        },
        &c.root,
    );
    let mut trust = c.trust();
    trust.set_revocations(&crl, now()).unwrap();
    let na = a.start(ca, ba, trust, Policy::default_site(), vec![]).await;

    // Uncertified: a certificate from another root with the same consortium name.
    let rogue_root = TestConsortium::new(CONSORTIUM, 9);
    let rogue = TestSite::new("Rogue");
    let (crg, brg) = rogue_root.admit(&rogue, &[Role::Site]);
    let why = refused_reason(&a, &na, &rogue, crg, brg, &rogue_root).await;
    assert!(why.to_lowercase().contains("signature"), "{why}");

    let why = refused_reason(&a, &na, &revoked, cr, br, &c).await;
    assert!(why.to_lowercase().contains("revoked"), "{why}");

    let expired = TestSite::new("Expired");
    let (ce, be) = c.issue(&expired, &[Role::Site], now() - 10 * 86_400, now() - 86_400);
    let why = refused_reason(&a, &na, &expired, ce, be, &c).await;
    assert!(why.to_lowercase().contains("expired"), "{why}");

    // Impersonation: a node presents another site's (valid) certificate.
    let victim = TestSite::new("Victim");
    let (cv, bv) = c.admit(&victim, &[Role::Site]);
    let thief = TestSite::new("Thief");
    let why = refused_reason(&a, &na, &thief, cv, bv, &c).await;
    assert!(why.to_lowercase().contains("peer"), "{why}");
    assert!(a.audit().verify().await.unwrap().ok);
    na.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_from_a_member_are_rejected_and_audited_and_policy_denials_never_leave() {
    let c = TestConsortium::new(CONSORTIUM, 1);
    let (a, b, s3) = (
        TestSite::new("Site A"),
        TestSite::new("Site B"),
        TestSite::new("Site C"),
    );
    let (ca, ba) = c.admit(&a, &[Role::Site]);
    let (cb, bb) = c.admit(&b, &[Role::Site]);
    let (cc, bc) = c.admit(&s3, &[Role::Site]);
    let strict = Policy::parse(include_str!("../../policies/strict-site.toml")).unwrap();
    let na = a.start(ca, ba, c.trust(), strict, vec![]).await;
    let nb = b
        .start(
            cb,
            bb,
            c.trust(),
            Policy::default_site(),
            vec![address(&na)],
        )
        .await;
    let nc = s3
        .start(
            cc,
            bc,
            c.trust(),
            Policy::default_site(),
            vec![address(&na)],
        )
        .await;
    wait_until(&na, 30, "two members", || members(&na) == 2).await;
    wait_until(&nb, 30, "B's membership", || members(&nb) == 1).await;
    let pa = na.handle.net().peer_id();

    let header = |seq: u64, version: u16| Header {
        version,
        consortium: CONSORTIUM.into(),
        sender: b.id.clone(),
        recipient: Some(a.id.clone()),
        study: None,
        round: 0,
        sequence: seq,
        timestamp: now(),
        kind: PayloadKind::Request,
    };
    let notice = Request::Notice {
        topic: "t".into(),
        body: "b".into(),
    }
    .to_bytes();
    let frame = |env: &Envelope| {
        Frame::Envelope {
            bytes: env.to_bytes(),
        }
        .to_bytes()
    };
    let send = |bytes: Vec<u8>| {
        let net = nb.handle.net().clone();
        async move { net.request(pa, bytes).await }
    };
    let refused = |r: Result<Vec<u8>, _>| {
        matches!(
            r.map(|b| Frame::from_bytes(&b)),
            Ok(Ok(Frame::Refused { .. }))
        )
    };

    let good = Envelope::sign(header(u64::MAX / 2, PROTOCOL_VERSION), &notice, &b.signing);
    // A well-formed notice from a member is answered (A's strict policy still lets receipts go).
    let ok = send(frame(&good)).await.unwrap();
    assert!(!matches!(Frame::from_bytes(&ok), Ok(Frame::Refused { .. })));
    let rejected_before = events(&a, "rejected").await.len();
    // Replayed.
    let replay = send(frame(&good)).await;
    assert!(matches!(
        replay.as_ref().map(|b| Frame::from_bytes(b)),
        Ok(Ok(Frame::Refused {
            reason: RefusalReason::Replay
        }))
    ));
    // Tampered: one byte of the signed body flipped.
    let mut bytes = good.to_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    assert!(refused(send(Frame::Envelope { bytes }.to_bytes()).await));
    // Truncated.
    let mut bytes = Envelope::sign(
        header(u64::MAX / 2 + 1, PROTOCOL_VERSION),
        &notice,
        &b.signing,
    )
    .to_bytes();
    bytes.truncate(bytes.len() - 10);
    assert!(refused(send(Frame::Envelope { bytes }.to_bytes()).await));
    // Wrong protocol version (the next one).
    assert!(refused(
        send(frame(&Envelope::sign(
            header(u64::MAX / 2 + 2, PROTOCOL_VERSION + 1),
            &notice,
            &b.signing
        )))
        .await
    ));
    // A clock an hour ahead: refused, and the audited reason names the skew and what to do.
    let mut skewed = header(u64::MAX / 2 + 4, PROTOCOL_VERSION);
    skewed.timestamp = now() + 3600;
    assert!(refused(
        send(frame(&Envelope::sign(skewed, &notice, &b.signing))).await
    ));
    let skew_noted = events(&a, "rejected").await.iter().any(|e| {
        matches!(e, AuditEvent::Rejected { reason, .. }
            if reason.contains("clocks of this site and") && reason.contains("NTP"))
    });
    assert!(skew_noted, "{:?}", events(&a, "rejected").await);
    // Sealed to C, addressed to A.
    let sealed = Envelope::seal(
        header(u64::MAX / 2 + 3, PROTOCOL_VERSION),
        &notice,
        &[(s3.id.clone(), s3.sealing_public())],
        &b.signing,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    assert!(refused(send(frame(&sealed)).await));
    // Oversized: the frame codec refuses it (the sending side here; the receiving side refuses a
    // declared length over the limit before allocating, see net::codec's tests).
    assert!(send(vec![0u8; (4 << 20) + 100]).await.is_err());
    // Six rejections, each audited before its refusal was answered.
    let n = events(&a, "rejected").await.len();
    assert_eq!(n, rejected_before + 6);

    // Policy: A's strict policy denies notices; nothing reaches B.
    let sent_before = na.handle.net().stats().await.unwrap().requests_sent;
    let b_received_before = events(&b, "received").await.len();
    let err = na
        .handle
        .notice(b.id.clone(), "x".into(), "y".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("policy denied"), "{err}");
    assert_eq!(
        na.handle.net().stats().await.unwrap().requests_sent,
        sent_before
    );
    assert_eq!(events(&b, "received").await.len(), b_received_before);
    let decisions = events(&a, "policy").await;
    assert!(decisions.iter().any(|e| matches!(e, AuditEvent::PolicyDecision { kind, allowed: false, rule, .. } if kind == "notice" && rule == "no notices")), "{decisions:?}");
    for n in [na, nb, nc] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_signed_and_published_at_intervals() {
    let c = TestConsortium::new(CONSORTIUM, 1);
    let (a, b) = (TestSite::new("Site A"), TestSite::new("Site B"));
    let (ca, ba) = c.admit(&a, &[Role::Site]);
    let (cb, bb) = c.admit(&b, &[Role::Site]);
    let na = a
        .start_with(
            ca,
            ba,
            c.trust(),
            Policy::default_site(),
            vec![],
            Some(std::time::Duration::from_secs(1)),
        )
        .await;
    let nb = b
        .start(
            cb,
            bb,
            c.trust(),
            Policy::default_site(),
            vec![address(&na)],
        )
        .await;
    // Nobody asks for a checkpoint: A's timer signs and publishes one, and B receives it.
    wait_until(&nb, 60, "a periodic checkpoint from A", || {
        nb.handle
            .shared
            .peer_checkpoints
            .lock()
            .unwrap()
            .contains_key(&a.id)
    })
    .await;
    let cp = nb
        .handle
        .shared
        .peer_checkpoints
        .lock()
        .unwrap()
        .get(&a.id)
        .cloned()
        .unwrap();
    cp.verify(&a.signing_public()).unwrap();
    assert!(!events(&a, "checkpoint").await.is_empty());
    for n in [na, nb] {
        n.stop().await;
    }
}
