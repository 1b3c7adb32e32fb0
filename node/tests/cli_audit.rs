//! `fedanno audit …` end to end through the binary: an untouched log verifies; every kind of
//! tampering with the SQLite file (edited body, edited body and hash, deleted row, swapped
//! rows, forged rows at the end and in the middle, edited checkpoint, truncated tail) makes
//! `audit verify` exit 1 naming the entry; `log` filters; `export` parses back; proofs verify;
//! kill -9 during a burst of appends loses no committed entry; `audit checkpoint` and a running
//! node sign under the log's one origin, and a checkpoint under another is refused.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, json_of, run, run_ok};
use fedanno_node::network::audit::{AuditEvent, EntryBody};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::merkle::{self, Hash};
use fedanno_protocol::wire::SignedCheckpoint;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use rusqlite::{Connection, params};
use serde_json::Value;

/// A site with `n` `sent` entries, a checkpoint after them, and 3 more `sent` entries…
/// Layout: entries 0..n (sent), n (checkpoint, from the bench), then one more checkpoint n+1.
fn site_with_log(tmp: &Path, n: u64) -> PathBuf {
    let site = tmp.join("site");
    run_ok(&[
        "init",
        "--dir",
        site.to_str().unwrap(),
        "--site-name",
        "Audit Site",
    ]);
    run_ok(&[
        "bench",
        "audit",
        "--keep",
        tmp.to_str().unwrap(),
        "--entries",
        &n.to_string(),
        "--json",
    ]);
    run_ok(&["--dir", site.to_str().unwrap(), "audit", "checkpoint"]);
    site
}

fn db(site: &Path) -> Connection {
    Connection::open(site.join("fedanno.db")).unwrap()
}

/// A site with a log of `n` entries (`site_with_log`) and its database, to tamper with; the
/// temporary directory lives as long as the first element.
fn log_to_tamper(n: u64) -> (tempfile::TempDir, PathBuf, Connection) {
    let tmp = tempfile::tempdir().unwrap();
    let site = site_with_log(tmp.path(), n);
    let c = db(&site);
    (tmp, site, c)
}

fn verify(site: &Path) -> (bool, String, Value) {
    let out = run(&["--dir", site.to_str().unwrap(), "audit", "verify", "--json"]);
    let human = run(&["--dir", site.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(out.status.code(), human.status.code());
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "exit {code}");
    (
        code == 0,
        String::from_utf8_lossy(&human.stdout).into_owned(),
        json_of(&out),
    )
}

fn assert_fails_at(site: &Path, seq: u64, words: &str) {
    let (ok, text, j) = verify(site);
    assert!(!ok, "tampered log verified: {text}");
    assert_eq!(j["problem"]["seq"], seq, "{j}");
    assert!(text.contains(&format!("FAILED at entry {seq}")), "{text}");
    assert!(text.contains(words), "expected {words:?} in {text}");
}

fn leaf_hashes(c: &Connection) -> Vec<Hash> {
    let mut s = c
        .prepare("SELECT leaf_hash FROM audit_entries ORDER BY seq")
        .unwrap();
    s.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|h| h.unwrap().try_into().unwrap())
        .collect()
}

fn forged_body(seq: u64) -> Vec<u8> {
    EntryBody::new(
        seq,
        1_700_000_000,
        AuditEvent::Membership {
            what: "forged".into(),
        },
    )
    .encode()
    .unwrap()
}

fn other_key() -> Ed25519KeyPair {
    let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap()
}

fn head_message(size: u64, root: &Hash) -> Vec<u8> {
    let mut m = b"fedanno-audit-head-v1\0".to_vec();
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

#[test]
fn untouched_log_verifies_and_proofs_check_out() {
    let tmp = tempfile::tempdir().unwrap();
    let site = site_with_log(tmp.path(), 40);
    let (ok, text, j) = verify(&site);
    assert!(ok, "{text}");
    assert!(text.starts_with("Audit log OK: 42 entries"), "{text}");
    assert_eq!(j["size"], 42);
    assert_eq!(j["checkpoints_checked"], 2);
    assert_eq!(j["latest_checkpoint"], 41);
    assert_eq!(j["nodes_checked"], 42 - 42u64.count_ones() as u64);
    let root: Hash = hex32(j["root"].as_str().unwrap());

    let s = site.to_str().unwrap();
    for seq in [0u64, 17, 41] {
        let p = json_of(&run_ok(&[
            "--dir",
            s,
            "audit",
            "prove",
            "--seq",
            &seq.to_string(),
        ]));
        let proof: Vec<Hash> = p["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex32(h.as_str().unwrap()))
            .collect();
        assert_eq!(p["size"], 42);
        assert_eq!(hex32(p["root"].as_str().unwrap()), root);
        assert_eq!(p["proof_bytes"], 32 * proof.len());
        assert!(merkle::verify_inclusion(
            &hex32(p["leaf_hash"].as_str().unwrap()),
            seq,
            42,
            &proof,
            &root
        ));
    }
    let p = json_of(&run_ok(&[
        "--dir",
        s,
        "audit",
        "prove",
        "--from-size",
        "13",
        "--size",
        "40",
    ]));
    let proof: Vec<Hash> = p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex32(h.as_str().unwrap()))
        .collect();
    assert!(merkle::verify_consistency(
        13,
        40,
        &hex32(p["old_root"].as_str().unwrap()),
        &hex32(p["new_root"].as_str().unwrap()),
        &proof
    ));
    // Out of range is a clear failure, not a panic.
    let out = run(&["--dir", s, "audit", "prove", "--seq", "42"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));

    // Another site's public key does not verify this log.
    let other = tmp.path().join("other");
    run_ok(&[
        "init",
        "--dir",
        other.to_str().unwrap(),
        "--site-name",
        "Other",
    ]);
    let out = run(&[
        "--dir",
        s,
        "audit",
        "verify",
        "--public-key",
        other.join("keys/signing.pub").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED at entry 0"));
}

fn hex32(s: &str) -> Hash {
    let v: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn edited_body_byte_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    let mut body: Vec<u8> = c
        .query_row("SELECT body FROM audit_entries WHERE seq = 7", [], |r| {
            r.get(0)
        })
        .unwrap();
    let last = body.len() - 1;
    body[last] ^= 0x01;
    c.execute("UPDATE audit_entries SET body = ?1 WHERE seq = 7", [&body])
        .unwrap();
    assert_fails_at(&site, 7, "does not match its stored leaf hash");
}

#[test]
fn edited_body_with_recomputed_leaf_hash_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    // A careful forger re-encodes a different event for seq 7 and fixes the leaf hash.
    let body = forged_body(7);
    c.execute(
        "UPDATE audit_entries SET body = ?1, leaf_hash = ?2, kind = 'membership', peer = NULL, reader_study = NULL, timestamp = 1700000000 WHERE seq = 7",
        params![body, &merkle::leaf_hash(&body)[..]],
    )
    .unwrap();
    assert_fails_at(&site, 7, "tree head after it differs");
}

#[test]
fn deleted_row_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    c.execute("DELETE FROM audit_entries WHERE seq = 5", [])
        .unwrap();
    assert_fails_at(&site, 5, "is missing");
}

#[test]
fn swapped_rows_are_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    c.execute_batch(
        "UPDATE audit_entries SET seq = -1 WHERE seq = 3;
         UPDATE audit_entries SET seq = 3 WHERE seq = 9;
         UPDATE audit_entries SET seq = 9 WHERE seq = -1;",
    )
    .unwrap();
    assert_fails_at(&site, 3, "holds the body of entry 9");
}

#[test]
fn forged_row_at_the_end_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    let mut leaves = leaf_hashes(&c);
    let seq = leaves.len() as u64; // 22
    let body = forged_body(seq);
    let leaf = merkle::leaf_hash(&body);
    leaves.push(leaf);
    let root = merkle::root(&leaves);
    // Signed with a key that is not the site's.
    let sig = other_key().sign(&head_message(seq + 1, &root));
    c.execute(
        "INSERT INTO audit_entries (seq, timestamp, kind, peer, reader_study, body, leaf_hash, root_after, signature)
         VALUES (?1, 1700000000, 'membership', NULL, NULL, ?2, ?3, ?4, ?5)",
        params![seq as i64, body, &leaf[..], &root[..], sig.as_ref()],
    )
    .unwrap();
    assert_fails_at(&site, seq, "signature does not verify");
}

#[test]
fn forged_row_inserted_in_the_middle_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    let leaves = leaf_hashes(&c);
    // Make room at 10 by moving every later row one up, then insert a well-formed entry 10.
    c.execute_batch(
        "UPDATE audit_entries SET seq = seq + 1000000 WHERE seq >= 10;
         UPDATE audit_entries SET seq = seq - 1000000 + 1 WHERE seq >= 1000000;",
    )
    .unwrap();
    let body = forged_body(10);
    let leaf = merkle::leaf_hash(&body);
    let root = merkle::root(&[&leaves[..10], &[leaf][..]].concat());
    let sig = other_key().sign(&head_message(11, &root));
    c.execute(
        "INSERT INTO audit_entries (seq, timestamp, kind, peer, reader_study, body, leaf_hash, root_after, signature)
         VALUES (10, 1700000000, 'membership', NULL, NULL, ?1, ?2, ?3, ?4)",
        params![body, &leaf[..], &root[..], sig.as_ref()],
    )
    .unwrap();
    assert_fails_at(&site, 10, "signature does not verify");
}

#[test]
fn edited_checkpoint_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    // The second checkpoint was recorded by entry 21 and signs size 21.
    let (id, entry): (i64, i64) = c
        .query_row(
            "SELECT id, entry_seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(entry, 21);
    let mut root: Vec<u8> = c
        .query_row(
            "SELECT root FROM audit_checkpoints WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    root[0] ^= 0x80;
    c.execute(
        "UPDATE audit_checkpoints SET root = ?1 WHERE id = ?2",
        params![root, id],
    )
    .unwrap();
    assert_fails_at(
        &site,
        21,
        &format!("checkpoint {id} (recorded by entry 21)"),
    );
    // Restoring it and editing the size instead is caught the same way.
    root[0] ^= 0x80;
    c.execute(
        "UPDATE audit_checkpoints SET root = ?1, size = size - 1 WHERE id = ?2",
        params![root, id],
    )
    .unwrap();
    assert_fails_at(&site, 21, "signature does not verify");
    // Relabelling it as another site's checkpoint does not hide it.
    c.execute(
        "UPDATE audit_checkpoints SET signer = 'someone-else' WHERE id = ?1",
        [id],
    )
    .unwrap();
    assert_fails_at(&site, 21, "signature does not verify");
    // Deleting it is caught through the entry that recorded it.
    c.execute("DELETE FROM audit_checkpoints WHERE id = ?1", [id])
        .unwrap();
    assert_fails_at(&site, 21, "signed checkpoint is not stored");
}

#[test]
fn truncated_tail_before_a_checkpoint_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let site = site_with_log(tmp.path(), 20);
    let s = site.to_str().unwrap();
    // More entries after the checkpoints, another checkpoint, then cut the log back.
    run_ok(&["--dir", s, "audit", "checkpoint"]); // entry 22 signs size 22
    let c = db(&site);
    c.execute_batch(
        "DELETE FROM audit_entries WHERE seq >= 15;
         DELETE FROM audit_nodes WHERE ((idx + 1) << level) > 15;",
    )
    .unwrap();
    let (ok, text, j) = verify(&site);
    assert!(!ok, "{text}");
    assert_eq!(j["problem"]["seq"], 15, "{j}");
    assert!(
        text.contains("entries 15..") && text.contains("were deleted"),
        "{text}"
    );
}

#[test]
fn log_filters_and_exports_parse_back() {
    let tmp = tempfile::tempdir().unwrap();
    let site = site_with_log(tmp.path(), 12);
    let s = site.to_str().unwrap();
    let log = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["--dir", s, "audit", "log", "--json"];
        args.extend_from_slice(extra);
        json_of(&run_ok(&args)).as_array().unwrap().clone()
    };
    let all = log(&[]);
    assert_eq!(all.len(), 14);
    assert_eq!(log(&["--kind", "checkpoint"]).len(), 2);
    assert_eq!(log(&["--kind", "sent", "--peer", "bench-peer"]).len(), 12);
    assert_eq!(log(&["--peer", "nobody"]).len(), 0);
    assert_eq!(log(&["--study", "S-BENCH"]).len(), 12);
    assert_eq!(log(&["--limit", "5"]).len(), 5);
    assert_eq!(log(&["--since", "2999-01-01"]).len(), 0);
    assert_eq!(log(&["--since", "2000-01-01T00:00:00Z"]).len(), 14);
    assert_eq!(log(&["--until", "0"]).len(), 0);
    let bad = run(&["--dir", s, "audit", "log", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(all[3]["event"]["sent"]["sequence"], 3);
    assert_eq!(all[12]["kind"], "checkpoint");
    let human = String::from_utf8(run_ok(&["--dir", s, "audit", "log"]).stdout).unwrap();
    assert_eq!(human.lines().count(), 15, "{human}");

    // JSONL.
    let out = tmp.path().join("audit.jsonl");
    run_ok(&[
        "--dir",
        s,
        "audit",
        "export",
        "--format",
        "jsonl",
        "--out",
        out.to_str().unwrap(),
    ]);
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all);

    // CSV, with the event column as JSON.
    let out = tmp.path().join("audit.csv");
    run_ok(&[
        "--dir",
        s,
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
        "--kind",
        "sent",
    ]);
    let rows = parse_csv(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(
        rows[0],
        [
            "seq",
            "timestamp",
            "time",
            "kind",
            "peer",
            "study",
            "leaf_hash",
            "root_after",
            "event"
        ]
    );
    assert_eq!(rows.len(), 13);
    for (row, j) in rows[1..].iter().zip(&all) {
        assert_eq!(row[0], j["seq"].to_string());
        assert_eq!(row[2], j["time"].as_str().unwrap());
        assert_eq!(row[4], "bench-peer");
        assert_eq!(row[6], j["leaf_hash"].as_str().unwrap());
        let ev: Value = serde_json::from_str(&row[8]).unwrap();
        assert_eq!(ev, j["event"]);
    }
}

/// RFC 4180 CSV (quoted fields may hold commas, quotes and newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[test]
fn kill_9_during_appends_loses_no_committed_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    run_ok(&[
        "init",
        "--dir",
        site.to_str().unwrap(),
        "--site-name",
        "Crash Site",
    ]);
    let mut child = bin()
        .args([
            "bench",
            "audit",
            "--keep",
            tmp.path().to_str().unwrap(),
            "--entries",
            "1000000",
            "--progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(60) {
        let Some(Ok(line)) = lines.next() else { break };
        last = Some(
            line.strip_prefix("committed ")
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        if last >= Some(150) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-burst
    child.wait().unwrap();
    let last = last.expect("no append was reported");
    assert!(last >= 150, "only {last} appends in 60 s");

    let (ok, text, j) = verify(&site);
    assert!(ok, "{text}");
    let size = j["size"].as_u64().unwrap();
    assert!(
        size > last,
        "entry {last} was reported committed but the log has {size}"
    );
    // The node resumes: it appends and verifies again.
    run_ok(&["--dir", site.to_str().unwrap(), "audit", "checkpoint"]);
    let (ok, text, j) = verify(&site);
    assert!(ok, "{text}");
    assert_eq!(j["size"].as_u64().unwrap(), size + 1);
}

#[test]
fn edited_filter_column_is_named() {
    let (_tmp, site, c) = log_to_tamper(10);
    // Hiding an entry from `audit log --peer` by editing its peer column is caught.
    c.execute(
        "UPDATE audit_entries SET peer = 'elsewhere' WHERE seq = 4",
        [],
    )
    .unwrap();
    assert_fails_at(&site, 4, "columns differ from what its body says");
}

#[test]
fn edited_or_deleted_tree_node_is_named() {
    let (_tmp, site, c) = log_to_tamper(20);
    // Node (level 2, index 1) covers entries 4..=7: proofs through it would be wrong.
    c.execute(
        "UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 1",
        [],
    )
    .unwrap();
    assert_fails_at(&site, 4, "over entries 4..=7 differs");
    c.execute("DELETE FROM audit_nodes WHERE level = 2 AND idx = 1", [])
        .unwrap();
    assert_fails_at(&site, 4, "over entries 4..=7 is missing");
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    run_ok(&["init", "--dir", site.to_str().unwrap(), "--site-name", "U"]);
    let s = site.to_str().unwrap();
    for args in [
        vec!["--dir", s, "audit", "prove"],
        vec![
            "--dir",
            s,
            "audit",
            "prove",
            "--seq",
            "1",
            "--from-size",
            "1",
        ],
        vec![
            "--dir", s, "audit", "export", "--format", "xml", "--out", "x",
        ],
        vec!["--dir", s, "audit", "frobnicate"],
    ] {
        assert_eq!(run(&args).status.code(), Some(2), "{args:?}");
    }
    // An empty log verifies.
    let (ok, text, j) = verify(&site);
    assert!(ok, "{text}");
    assert_eq!(j["size"], 0);
}

/// `init`, `node request`, `consortium admit` and `consortium join`: a site of `root`.
fn joined_site(tmp: &Path, root: &Path) -> PathBuf {
    let site = tmp.join("site");
    let s = site.to_str().unwrap();
    run_ok(&["init", "--dir", s, "--site-name", "Origin Site"]);
    let req = tmp.join("site.req");
    let cert = tmp.join("site.cert");
    run_ok(&[
        "--dir",
        s,
        "node",
        "request",
        "--out",
        req.to_str().unwrap(),
    ]);
    run_ok(&[
        "consortium",
        "admit",
        "--root",
        root.to_str().unwrap(),
        "--request",
        req.to_str().unwrap(),
        "--roles",
        "site",
        "--out",
        cert.to_str().unwrap(),
    ]);
    run_ok(&[
        "--dir",
        s,
        "consortium",
        "join",
        root.join("consortium.info").to_str().unwrap(),
        cert.to_str().unwrap(),
        root.join("crl.bin").to_str().unwrap(),
    ]);
    site
}

/// Asks a `node run` on `site` for a checkpoint (`node checkpoint`), then stops it.
fn node_checkpoint(site: &Path) -> Value {
    let s = site.to_str().unwrap();
    let mut node = bin()
        .args([
            "--dir",
            s,
            "node",
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    // Blocks until the node prints its address, or fails when it exits first.
    let listening = lines.find(|l| l.as_ref().is_ok_and(|l| l.contains("listening on")));
    assert!(listening.is_some(), "the node exited before listening");
    let cp = json_of(&run_ok(&["--dir", s, "node", "checkpoint"]));
    run_ok(&["--dir", s, "node", "stop"]);
    assert!(node.wait().unwrap().success());
    cp
}

#[test]
fn cli_and_node_checkpoints_share_the_one_origin_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    run_ok(&[
        "consortium",
        "new",
        "--name",
        "origin-test",
        "--out",
        root.to_str().unwrap(),
    ]);
    let site = joined_site(tmp.path(), &root);
    let s = site.to_str().unwrap();
    let from_cli = json_of(&run_ok(&["--dir", s, "audit", "checkpoint", "--json"]));
    let id = from_cli["signer"].as_str().unwrap().to_string();
    let origin = format!("fedanno.origin-test/{id}");
    assert_eq!(from_cli["origin"], origin.as_str());
    let from_node = node_checkpoint(&site);
    assert_eq!(from_node["origin"], origin.as_str());
    // And once more from the CLI, after the node ran.
    let again = json_of(&run_ok(&["--dir", s, "audit", "checkpoint", "--json"]));
    assert_eq!(again["origin"], origin.as_str());

    let (ok, text, j) = verify(&site);
    assert!(ok, "{text}");
    assert_eq!(j["origin"], origin.as_str());
    assert!(j["checkpoints_checked"].as_u64().unwrap() >= 3, "{j}");

    // A checkpoint correctly signed with the site's own key, of a true head of the log, but
    // under another origin: the log now has two origins, and verify names the checkpoint.
    let keys = fedanno_node::site::identity::load(&site.join("keys")).unwrap();
    let size = from_cli["size"].as_u64().unwrap();
    let forged = SignedCheckpoint::sign(
        &format!("fedanno.local/{id}"),
        size,
        hex32(from_cli["root"].as_str().unwrap()),
        1_700_000_000,
        SiteId::new(id.clone()).unwrap(),
        &keys.signing,
    );
    let c = db(&site);
    c.execute(
        "INSERT INTO audit_checkpoints (origin, size, root, timestamp, signer, signature, entry_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
        params![
            forged.origin,
            size as i64,
            &forged.root[..],
            1_700_000_000i64,
            id,
            &forged.signature[..]
        ],
    )
    .unwrap();
    let cp_id = c.last_insert_rowid();
    let (ok, text, j) = verify(&site);
    assert!(!ok, "a checkpoint under a second origin verified: {text}");
    assert_eq!(j["problem"]["checkpoint"], cp_id, "{j}");
    assert!(
        text.contains(&format!("checkpoint {cp_id}"))
            && text.contains(&format!("fedanno.local/{id}"))
            && text.contains("one log has one origin"),
        "{text}"
    );
}
