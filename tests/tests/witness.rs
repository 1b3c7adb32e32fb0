//! Witnessing between certified nodes in one process on loopback TCP (C2SP tlog-witness
//! semantics): a witness co-signs a member's growing log only with a consistency proof from
//! what it co-signed last, keeps that state across its own restart, and catches a member that
//! rewrites or truncates its log (re-signed with its own key, so that its own `audit verify`
//! passes) or shows two logs of one size to two witnesses; the alarm is audited at the witness
//! and reaches the other members as evidence.

use std::sync::Arc;
use std::time::Duration;

use fedanno_node::network::audit::bundle::{self, CrossCheck};
use fedanno_node::network::audit::{self, AuditEvent};
use fedanno_node::network::consortium;
use fedanno_node::network::daemon::{self, StartOptions};
use fedanno_node::network::kinds::MessageKind;
use fedanno_node::network::node::Node;
use fedanno_node::network::policy::{self, Policy};
use fedanno_node::site::store::AlarmRow;
use fedanno_node::tools::local_consortium::Member;
use fedanno_protocol::cert::Role;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::reader_study::ReaderStudyRequest;
use fedanno_protocol::wire::{AuditQuery, RefusalReason, Request, Response};
use fedanno_tests::network::{CONSORTIUM, Consortium, address, wait_until, with_policy};

async fn restart(c: &Consortium, i: usize, peers: &[&Node]) -> Node {
    let bootstrap = peers.iter().map(|n| address(n).to_string()).collect();
    let listen = vec!["/ip4/127.0.0.1/tcp/0".to_string()];
    let (n, _) = daemon::start_node(c.site(i), listen, bootstrap, &StartOptions::default())
        .await
        .unwrap_or_else(|e| panic!("restart: {e:#}"));
    wait_until(&n, 30, "the restarted node to prove two members", || {
        n.handle.members().len() == 2
    })
    .await;
    n
}

async fn start_three(c: &Consortium) -> [Node; 3] {
    let nodes: [Node; 3] = c.start().await.try_into().ok().unwrap();
    for n in &nodes {
        wait_until(n, 30, "two members", || n.handle.members().len() == 2).await;
    }
    nodes
}

/// Waits (on the node's activity signal) until site `i` holds an alarm.
async fn wait_alarm(c: &Consortium, i: usize, node: &Node) -> Vec<AlarmRow> {
    let mut rx = node.handle.activity();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let alarms = c.site(i).store.witness_alarms().await.unwrap();
            if !alarms.is_empty() {
                return alarms;
            }
            let _ = rx.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no alarm at site {i}"))
}

/// The sizes of site `of`'s log that site `i` witnessed, in order.
async fn witnessed_sizes(c: &Consortium, i: usize, of: usize) -> Vec<u64> {
    c.events(i, "witnessed")
        .await
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::Witnessed { site, size, .. } if &site == c.id(of) => Some(size),
            _ => None,
        })
        .collect()
}

/// Grows the node's log past `size` (each receipted notice to `to` adds entries).
async fn grow_past(n: &Node, to: &SiteId, size: u64) {
    while n.handle.audit_head().await.unwrap().0 <= size {
        n.handle
            .notice(to.clone(), "t".into(), "grow".into())
            .await
            .unwrap();
    }
}

/// Stops C, rewrites its log with its own key keeping what `keep` accepts, and starts it again
/// grown past `cosigned` entries (so that it can offer its witness a consistency proof).
async fn rewrite_and_restart(
    c: &Consortium,
    nc: Node,
    peers: [&Node; 2],
    cosigned: u64,
    keep: impl Fn(&audit::AuditEntry) -> bool + Send + 'static,
) -> Node {
    nc.stop().await;
    let id = c.id(2).clone();
    let signing = Arc::new(c.keys(2).signing);
    let origin = audit::origin(CONSORTIUM, &id);
    c.site(2)
        .store
        .rewrite_audit_log(keep, signing, origin, id)
        .await
        .unwrap();
    let nc = restart(c, 2, &peers).await;
    grow_past(&nc, c.id(1), cosigned).await;
    // Its own check passes: the log is well formed and signed with its key.
    let report = nc.handle.verify_audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    nc
}

/// Stops the nodes and cross-checks the three sites' bundles, as an auditor would.
async fn stop_and_cross_check(c: &Consortium, nodes: [Node; 3], quorum: u32) -> CrossCheck {
    for n in nodes {
        n.stop().await;
    }
    cross_check(c, quorum).await
}

/// Cross-checks the three sites' bundles as they are now.
async fn cross_check(c: &Consortium, quorum: u32) -> CrossCheck {
    let mut bundles = Vec::new();
    for i in 0..3 {
        bundles.push(bundle::export(c.site(i)).await.unwrap());
    }
    bundle::cross_check(bundles, &info(c), quorum).unwrap()
}

/// The consortium's public information, as every member holds it.
fn info(c: &Consortium) -> fedanno_protocol::cert::ConsortiumInfo {
    consortium::read_info(
        &c.site(0)
            .dir
            .join(consortium::SITE_DIR)
            .join(consortium::INFO_FILE),
    )
    .unwrap()
}

/// A caught at `kind`, and B heard A's evidence.
async fn caught(c: &Consortium, na: &Node, nb: &Node, kinds: &[&str]) {
    let at_a = wait_alarm(c, 0, na).await;
    assert_eq!(at_a[0].site, "site-c");
    assert_eq!(at_a[0].reported_by, "site-a");
    assert!(kinds.contains(&at_a[0].kind.as_str()), "{at_a:?}");
    assert!(!c.events(0, "alarm").await.is_empty());
    let status = na.handle.status().await.unwrap();
    assert!(
        status.alarms.iter().any(|a| a.contains("site-c")),
        "{status:?}"
    );
    let report = na.handle.verify_audit().await.unwrap();
    assert!(report.ok && !report.witness_alarms.is_empty(), "{report:?}");
    let at_b = wait_alarm(c, 1, nb).await;
    assert_eq!(
        (at_b[0].site.as_str(), at_b[0].reported_by.as_str()),
        ("site-c", "site-a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rewritten_after_it_was_cosigned_is_caught_even_after_the_witness_restarts() {
    let c = Consortium::new(&["site-a", "site-b", "site-c"]);
    let (a, b) = (c.id(0).clone(), c.id(1).clone());
    let [na, nb, nc] = start_three(&c).await;

    // C's growing log, co-signed by A three times: the first from the empty tree, then with
    // consistency proofs from the size A co-signed last.
    for body in ["one", "two"] {
        nc.handle
            .notice(a.clone(), "t".into(), body.into())
            .await
            .unwrap();
    }
    nc.handle.witness(a.clone()).await.unwrap();
    nc.handle.witness(b.clone()).await.unwrap();
    nc.handle.witness(a.clone()).await.unwrap();
    let sizes = witnessed_sizes(&c, 0, 2).await;
    assert!(sizes.len() == 2 && sizes[0] < sizes[1], "{sizes:?}");
    assert_eq!(c.events(2, "cosigned").await.len(), 3);

    // A restarts: what it co-signed is in its database, not in memory.
    na.stop().await;
    let na = restart(&c, 0, &[&nb, &nc]).await;
    let latest = c.site(0).store.witness_latest(c.id(2)).await.unwrap();
    assert_eq!(latest.map(|l| l.size), Some(sizes[1]));
    nc.handle.witness(a.clone()).await.unwrap();
    let cosigned = *witnessed_sizes(&c, 0, 2).await.last().unwrap();

    // C drops the notices it sent and every policy decision it logged, rebuilds and re-signs
    // its log, and restarts.
    let dropped = |e: &audit::AuditEntry| {
        e.kind == "policy" || matches!(&e.event, AuditEvent::Sent { kind, .. } if kind == "notice")
    };
    let nc = rewrite_and_restart(&c, nc, [&na, &nb], cosigned, move |e| !dropped(e)).await;
    let refused = nc.handle.witness(a.clone()).await;
    assert!(refused.is_err(), "{refused:?}");
    caught(&c, &na, &nb, &["inconsistent"]).await;

    // The auditor's cross-check of the three bundles names C: the notices A received that C
    // no longer shows as sent, and the checkpoint A co-signed that C's log no longer matches,
    // although C's log verifies on its own.
    let r = stop_and_cross_check(&c, [na, nb, nc], 0).await;
    assert!(!r.consistent);
    assert!(r.sites.iter().all(|s| s.verified), "{r:?}");
    let about_c: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.site.as_str() == "site-c")
        .map(|f| f.what.as_str())
        .collect();
    let unsent = about_c
        .iter()
        .filter(|w| w.contains("notice") && w.contains("no sent entry"))
        .count();
    assert_eq!(unsent, 2, "{about_c:#?}");
    assert!(
        about_c.iter().any(|w| w.contains("site-a co-signed size")),
        "{about_c:#?}"
    );
    assert!(
        r.findings.iter().all(|f| f.site.as_str() == "site-c"),
        "{r:#?}"
    );
    assert!(!r.alarms.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_logs_cross_check_clean_with_every_message_matched() {
    let c = Consortium::new(&["site-a", "site-b", "site-c"]);
    let (a, b, cc) = (c.id(0).clone(), c.id(1).clone(), c.id(2).clone());
    let [na, nb, nc] = start_three(&c).await;
    for (n, to) in [(&nb, &a), (&nc, &a), (&na, &cc), (&na, &b)] {
        n.handle
            .notice(to.clone(), "t".into(), "hello".into())
            .await
            .unwrap();
    }
    for (n, to) in [(&nc, &a), (&na, &b), (&nb, &cc), (&nc, &a)] {
        n.handle.witness(to.clone()).await.unwrap();
    }
    // C's log is co-signed by both others in one round: with a quorum of 2 it is witnessed.
    let round = nc.handle.witness_round().await.unwrap();
    assert_eq!(round.len(), 2);
    let status = nc.handle.status().await.unwrap();
    assert!(
        status.witnessed_size.is_some() && status.witness_quorum == 1,
        "{status:?}"
    );
    let r = stop_and_cross_check(&c, [na, nb, nc], 1).await;
    assert!(r.consistent, "{r:#?}");
    assert!(r.matched_messages >= 16, "{r:?}");
    for s in &r.sites {
        assert!(s.verified && s.newest_cosigned.is_some(), "{s:?}");
    }
    // With a quorum of 2 only C's log is witnessed.
    let r = cross_check(&c, 2).await;
    assert!(!r.consistent, "{r:#?}");
    let unwitnessed: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.what.contains("unwitnessed"))
        .map(|f| f.site.as_str())
        .collect();
    assert_eq!(unwitnessed, ["site-a", "site-b"], "{r:#?}");
    assert_eq!(r.findings.len(), 2, "{r:#?}");
    let c_site = &r.sites[2];
    assert!(
        c_site.witnessed_size.is_some() && c_site.witnesses.len() == 2,
        "{c_site:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_truncated_after_its_cosigned_checkpoint_is_caught() {
    let c = Consortium::new(&["site-a", "site-b", "site-c"]);
    let a = c.id(0).clone();
    let [na, nb, nc] = start_three(&c).await;
    nc.handle.witness(a.clone()).await.unwrap();
    let cosigned = witnessed_sizes(&c, 0, 2).await[0];
    // The last five entries the witness saw are cut off; the log grows again from there.
    let cut = cosigned - 5;
    let nc = rewrite_and_restart(&c, nc, [&na, &nb], cosigned, move |e| e.seq < cut).await;
    let refused = nc.handle.witness(a.clone()).await;
    assert!(refused.is_err(), "{refused:?}");
    caught(&c, &na, &nb, &["inconsistent"]).await;
    for n in [na, nb, nc] {
        n.stop().await;
    }
}

/// A member that asks for a co-signature of another member's checkpoint (signed by that
/// member, under its origin) is refused as malformed: a witness co-signs only a member's own
/// log, and keeps nothing of the relayed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_refuses_to_cosign_a_checkpoint_relayed_from_another_member() {
    let c = Consortium::new(&["site-a", "site-b", "site-c"]);
    let (a, b) = (c.id(0).clone(), c.id(1).clone());
    let [na, nb, nc] = start_three(&c).await;
    nc.handle.witness(a.clone()).await.unwrap();
    let of_c = c
        .site(0)
        .store
        .witness_latest(c.id(2))
        .await
        .unwrap()
        .unwrap();
    let req = Request::Witness {
        old_size: 0,
        proof: Vec::new(),
        checkpoint: of_c,
    };
    let r = na
        .handle
        .send_request(&b, MessageKind::Witness, None, &req)
        .await;
    assert!(
        matches!(
            r,
            Ok(Response::Refused {
                reason: RefusalReason::Malformed
            })
        ),
        "{r:?}"
    );
    assert_eq!(c.site(1).store.witness_latest(c.id(0)).await.unwrap(), None);
    assert_eq!(c.site(1).store.witness_latest(c.id(2)).await.unwrap(), None);
    assert!(c.site(1).store.witness_alarms().await.unwrap().is_empty());
    for n in [na, nb, nc] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logs_of_one_size_shown_to_two_witnesses_are_caught_where_their_views_meet() {
    let c = Consortium::new(&["site-a", "site-b", "site-c"]);
    let (a, b) = (c.id(0).clone(), c.id(1).clone());
    let [na, nb, nc] = start_three(&c).await;
    nc.handle.witness(a.clone()).await.unwrap();
    let shown_to_a = c
        .site(0)
        .store
        .witness_latest(c.id(2))
        .await
        .unwrap()
        .unwrap();
    // C shows B another log of the same size. B has never seen C's log: it co-signs, and
    // publishes what it co-signed.
    let other_root = [7u8; 32];
    assert_ne!(shown_to_a.root, other_root);
    let answer = nc
        .handle
        .ask_cosignature_of(&b, shown_to_a.size, other_root)
        .await
        .unwrap();
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    // A holds B's view against its own: one size, two roots, both signed by C.
    caught(&c, &na, &nb, &["fork"]).await;
    let at_a = c.site(0).store.witness_alarms().await.unwrap();
    assert_eq!(at_a[0].earlier.root, shown_to_a.root);
    assert_eq!(at_a[0].later.root, other_root);
    // C hears the evidence against itself too.
    wait_alarm(&c, 2, &nc).await;
    for n in [na, nb, nc] {
        n.stop().await;
    }
}

/// Sends `req` from `from` to `to` past `from`'s own policy: it must be refused as not
/// permitted.
async fn not_permitted(from: &Node, to: &SiteId, kind: MessageKind, req: &Request) {
    let r = from.handle.send_request(to, kind, None, req).await;
    assert!(
        matches!(
            r,
            Ok(Response::Refused {
                reason: RefusalReason::NotPermitted
            })
        ),
        "{r:?}"
    );
}

/// Site-b's policy: the research site's, with the auditors' scope narrowed to one study.
fn scoped_policy() -> Policy {
    let text = policy::DEFAULT_POLICY.replace("studies = [\"*\"]", "studies = [\"visible-study\"]");
    Policy::parse(&text).unwrap()
}

/// Sends a receipted notice from `n` to `to` as part of reader study `study`.
async fn notice_in_study(n: &Node, to: &SiteId, study: &str) {
    let req = Request::Notice {
        topic: "t".into(),
        body: "in a study".into(),
    };
    let r = n
        .handle
        .send_request(to, MessageKind::Notice, Some(study), &req)
        .await
        .unwrap();
    assert!(matches!(r, Response::Receipt { .. }), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_fetches_what_each_site_allows_is_audited_and_may_do_nothing_else() {
    let mut members = Member::list(&["site-a", "site-b", "site-c"], "Test");
    members.push(Member {
        id: "audit-1".into(),
        name: "Test auditor".into(),
        roles: vec![Role::Auditor],
    });
    let c = Consortium::with_members(&members);
    let strict = Policy::parse(include_str!("../../policies/strict-site.toml")).unwrap();
    let auditor = Policy::parse(include_str!("../../policies/auditor.toml")).unwrap();
    let nodes = c
        .start_with(|i| match i {
            1 => with_policy(scoped_policy()),
            2 => with_policy(strict.clone()),
            3 => with_policy(auditor.clone()),
            _ => StartOptions::default(),
        })
        .await;
    let [na, nb, _nc, nd]: [Node; 4] = nodes.try_into().ok().unwrap();
    let (a, b, cc, d) = (c.id(0), c.id(1), c.id(2), c.id(3));
    notice_in_study(&nb, a, "hidden-study").await;
    notice_in_study(&nb, a, "visible-study").await;

    // A gives everything: the fetched entries are A's own, byte for byte.
    let fa = nd.handle.audit_fetch(a.clone()).await.unwrap();
    assert_eq!((fa.withheld, fa.consistent_with), (0, None));
    let export = bundle::export(c.site(0)).await.unwrap();
    assert_eq!(fa.bundle.entries.len() as u64, fa.size);
    for (got, want) in fa.bundle.entries.iter().zip(&export.entries) {
        assert_eq!((&got.body, &got.signature), (&want.body, &want.signature));
    }

    // B withholds the entries of the study outside the auditor's scope, and only those.
    let fb = nd.handle.audit_fetch(b.clone()).await.unwrap();
    let rows = c.site(1).store.audit_raw_entries(0, 100_000).await.unwrap();
    let hidden = rows
        .iter()
        .filter(|r| (r.seq as u64) < fb.size && r.study.as_deref() == Some("hidden-study"))
        .count() as u64;
    assert!(
        hidden >= 1 && fb.withheld == hidden,
        "{} {hidden}",
        fb.withheld
    );
    let visible = rows
        .iter()
        .filter(|r| r.study.as_deref() == Some("visible-study"))
        .count();
    assert!(visible >= 1);
    // A second fetch is proven consistent with the first.
    let fb2 = nd.handle.audit_fetch(b.clone()).await.unwrap();
    assert_eq!(fb2.consistent_with, Some(fb.size));
    assert!(fb2.size > fb.size);

    // C's strict policy gives proofs but no entries: refused, and the decision is in C's log.
    let refused = nd.handle.audit_fetch(cc.clone()).await;
    assert!(refused.is_err(), "{refused:?}");
    let denied = c.events(2, "policy").await.into_iter().any(|e| {
        matches!(e, AuditEvent::Decision { kind, allowed: false, to: Some(to), .. }
            if kind == "audit-entries" && &to == d)
    });
    assert!(denied);

    // Every fetch is in the site's log as a message received from the auditor.
    let fetches = c.events(0, "received").await.into_iter().filter(|e| {
        matches!(e, AuditEvent::Received { from, kind, .. } if from == d && kind.starts_with("audit-"))
    });
    assert!(fetches.count() >= 2);

    // A study request from the auditor is refused and audited as rejected.
    let study_request = Request::ReaderStudy(Box::new(ReaderStudyRequest::Decision {
        study: "s1".into(),
        manifest_hash: [0; 32],
        joined: true,
    }));
    not_permitted(&nd, a, MessageKind::StudyDecision, &study_request).await;
    // Nor does the auditor's node answer a site's fetch of its own log.
    let heads = Request::Audit(AuditQuery::Heads);
    not_permitted(&na, d, MessageKind::AuditProof, &heads).await;
    let rejected = c.events(0, "rejected").await.into_iter().any(|e| {
        matches!(e, AuditEvent::Rejected { from, reason, .. } if from == d.as_str() && reason.contains("auditor"))
    });
    assert!(rejected);

    // The fetched bundles cross-check: both logs verify; B's withheld study leaves A's
    // received notice unchecked, not a finding.
    let r = bundle::cross_check(vec![fa.bundle, fb2.bundle], &info(&c), 0).unwrap();
    assert!(r.sites.iter().all(|s| s.verified), "{r:?}");
    assert_eq!(r.sites[1].withheld, fb2.withheld);
    assert!(r.unchecked_messages >= 1 && r.matched_messages > 0, "{r:?}");
    na.stop().await;
}
