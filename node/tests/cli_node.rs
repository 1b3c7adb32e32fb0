//! Separate `fedanno node run` processes on loopback: a consortium made with the CLI, two
//! sites that request, are admitted and join; they find each other from a bootstrap address,
//! exchange a receipted notice, and after `kill -9` of one node and a restart it rejoins, its
//! audit log verifies and no committed entry is lost. Waits read the nodes' own output lines
//! under timeouts.

mod common;

use std::path::Path;

use common::{
    Running, audit_entries, bin, consortium, joined_site, joined_with_roles, ok, run, s, start,
};
use serde_json::Value;

const LOOPBACK_ANY: &str = "/ip4/127.0.0.1/tcp/0";

/// `node run -v` on loopback, bootstrapping to `bootstrap` when given.
fn start_node(dir: &Path, bootstrap: Option<&str>) -> Running {
    let mut args = vec!["-v", "--listen", LOOPBACK_ANY];
    args.extend(bootstrap.iter().flat_map(|b| ["--bootstrap", *b]));
    start(dir, &[], &args)
}

/// A receipted notice from the site at `from` to alpha.
fn notice(from: &Path, body: &str) {
    let args = [
        "node", "notice", "--to", "alpha", "--topic", "t", "--body", body,
    ];
    ok(&[&["--dir", s(from)][..], &args[..]].concat());
}

#[test]
fn nodes_as_processes_rejoin_after_kill_9_without_losing_audit_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    consortium("process-test", &root);
    let (a, _) = joined_site(tmp.path(), "alpha", &root);
    let (b, _) = joined_site(tmp.path(), "beta", &root);

    let na = start_node(&a, None);
    let nb = start_node(&b, Some(&na.address));
    nb.wait_log("member proved its certificate", 30);
    notice(&b, "before the crash");
    // A peer's string cannot forge a log line or drive the operator's terminal.
    let forged = "t\n2026-01-01T00:00:00Z ERROR forged line \u{1b}[31m\u{202e}";
    let args = [
        "node", "notice", "--to", "alpha", "--topic", forged, "--body", "x",
    ];
    ok(&[&["--dir", s(&b)][..], &args[..]].concat());
    let line = na.wait_log("ERROR forged line", 30);
    assert!(line.contains("notice received"), "{line}");
    assert!(
        line.contains("t\\n2026-01-01T00:00:00Z ERROR forged line \\u001b[31m\\u202e"),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}') && !line.contains('\u{202e}'),
        "{line}"
    );
    let status: Value = serde_json::from_str(&ok(&[
        "--dir",
        a.to_str().unwrap(),
        "node",
        "status",
        "--json",
    ]))
    .unwrap();
    assert_eq!(status["members_connected"], 1);
    let before = audit_entries(&a);
    assert!(before.len() >= 5, "{} entries", before.len());

    // kill -9: no shutdown path runs.
    let mut na = na;
    na.child.kill().unwrap();
    na.child.wait().unwrap();
    let na = start_node(&a, Some(&nb.address));
    na.wait_log("member proved its certificate", 30);
    notice(&b, "after the restart");

    // The root revokes beta; alpha's operator installs the list while its node runs: the node
    // applies it without a restart and refuses beta.
    ok(&[
        "consortium",
        "revoke",
        "--root",
        s(&root),
        "--site",
        "beta",
        "--reason",
        "test",
    ]);
    let crl = root.join("crl.bin");
    let said = ok(&["--dir", s(&a), "consortium", "update-revocations", s(&crl)]);
    assert!(said.contains("the running node applied it"), "{said}");
    // Refused before the node answered: the member is gone the moment the command returns.
    let status: Value =
        serde_json::from_str(&ok(&["--dir", s(&a), "node", "status", "--json"])).unwrap();
    assert_eq!(status["members_connected"], 0, "{status}");
    let line = na.wait_log("refused a peer", 30);
    assert!(line.contains("was revoked"), "{line}");

    na.stop(&a);
    nb.stop(&b);
    let after = audit_entries(&a);
    assert!(after.len() > before.len());
    // Every entry committed before the crash is still there, unchanged.
    assert_eq!(&after[..before.len()], &before[..]);
    let received = after
        .iter()
        .filter(|e| e.to_string().contains("\"notice\"") && e.to_string().contains("received"))
        .count();
    assert_eq!(received, 3);
    for dir in [&a, &b] {
        ok(&["--dir", dir.to_str().unwrap(), "audit", "verify"]);
    }
    // The node reports itself unhealthy once stopped.
    let out = bin()
        .args(["--dir", a.to_str().unwrap(), "node", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// The flood scenario on real processes: `bench flood` starts three `node run` processes, floods
/// one with 150 fresh identities (junk the size of a hello and junk over the unproven frame
/// limit) and 32 raw TCP sockets that never finish a handshake, and kills a member with SIGKILL
/// mid-flood; the member comes back with only the flooded node as its bootstrap address.
#[test]
fn a_flood_of_strangers_neither_cuts_members_off_nor_costs_the_node_memory_or_audit_entries() {
    let mut c = bin();
    c.args([
        "bench",
        "flood",
        "--identities",
        "150",
        "--stalled",
        "32",
        "--seconds",
        "12",
        "--json",
    ]);
    let out = common::run_to_end(c, 240);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["junk_sent"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(
        r["members_connected_at_end"],
        serde_json::json!([2, 2, 2]),
        "{r}"
    );
    let back = r["restarted_member_back_secs"].as_f64().unwrap();
    assert!(back < 30.0, "{r}");
    assert!(r["rss_growth_mb"].as_f64().unwrap() < 64.0, "{r}");
    // A flood shorter than a minute: fewer than 100 entries in all (the strangers' refusals
    // are summarised after 20 a minute; the member's return adds its own few).
    assert!(r["audit_entries_added"].as_u64().unwrap() < 100, "{r}");
}

/// Removes the entries from `keep` on from a stopped site's log, with the interior nodes and
/// checkpoints that cover them: what a site that wants a period forgotten would do. Every
/// remaining entry keeps its own signature, so the site's own `audit verify` still passes.
fn truncate_log(dir: &Path, keep: u64) {
    let db = rusqlite::Connection::open(dir.join("fedanno.db")).unwrap();
    let k = keep as i64;
    db.execute("DELETE FROM audit_entries WHERE seq >= ?1", [k])
        .unwrap();
    db.execute(
        "DELETE FROM audit_nodes WHERE ((idx + 1) << level) > ?1",
        [k],
    )
    .unwrap();
    db.execute("DELETE FROM audit_checkpoints WHERE size > ?1", [k])
        .unwrap();
}

/// `audit fetch --json` on the auditor's site.
fn fetch(auditor: &Path, from: &str, out: &Path) -> std::process::Output {
    let d = s(auditor);
    run(&[
        "--dir",
        d,
        "audit",
        "fetch",
        "--from",
        from,
        "--out",
        s(out),
        "--json",
    ])
}

#[test]
fn an_auditor_node_fetches_a_log_and_catches_its_truncation_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    consortium("audit-test", &root);
    let (a, _) = joined_site(tmp.path(), "alpha", &root);
    let (d, _) = joined_with_roles(tmp.path(), "auditor", &root, "auditor");
    let na = start_node(&a, None);
    let nd = start_node(&d, Some(&na.address));
    nd.wait_log("member proved its certificate", 30);

    // Two fetches: the second is proven consistent with the first; the bundle cross-checks.
    let first = tmp.path().join("alpha-1.json");
    let out = fetch(&d, "alpha", &first);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f1: Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = f1["size"].as_u64().unwrap();
    assert!(
        size > 3 && f1["withheld"] == 0 && f1["consistent_with"].is_null(),
        "{f1}"
    );
    let second = tmp.path().join("alpha-2.json");
    let out = fetch(&d, "alpha", &second);
    let f2: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f2["consistent_with"].as_u64(), Some(size), "{f2}");
    let info = root.join("consortium.info");
    ok(&["audit", "cross-check", "--consortium", s(&info), s(&second)]);
    // Alpha audited the fetches as messages from the auditor.
    let fetches = audit_entries(&a)
        .into_iter()
        .filter(|e| e["kind"] == "received" && e["peer"] == "auditor")
        .count();
    assert!(fetches >= 4, "{fetches}");
    // The auditor's node sends nothing but fetches: its own policy refuses a notice.
    let args = [
        "node", "notice", "--to", "alpha", "--topic", "t", "--body", "x",
    ];
    let refused = run(&[&["--dir", s(&d)][..], &args[..]].concat());
    assert!(!refused.status.success());

    // Alpha drops the end of its log while stopped and restarts: its own check passes.
    na.stop(&a);
    let f2_size = f2["size"].as_u64().unwrap();
    truncate_log(&a, f2_size - 3);
    ok(&["--dir", s(&a), "audit", "verify"]);
    let na = start_node(&a, Some(&nd.address));
    na.wait_log("member proved its certificate", 30);
    let out = fetch(&d, "alpha", &tmp.path().join("alpha-3.json"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("contradicts") && err.contains("alarm"),
        "{err}"
    );
    let status: Value =
        serde_json::from_str(&ok(&["--dir", s(&d), "node", "status", "--json"])).unwrap();
    let alarms = status["alarms"].as_array().unwrap();
    assert!(
        alarms.iter().any(|a| a.as_str().unwrap().contains("alpha")),
        "{status}"
    );
    na.stop(&a);
    nd.stop(&d);
}
