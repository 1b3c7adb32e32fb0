//! Separate `fedanno node run` processes on loopback: a consortium made with the CLI, two
//! sites that request, are admitted and join; they find each other from a bootstrap address,
//! exchange a receipted notice, and after `kill -9` of one node and a restart it rejoins, its
//! audit log verifies and no committed entry is lost. Waits read the nodes' own output lines
//! under timeouts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedanno"));
    c.env_remove("FEDANNO_DIR").env_remove("FEDANNO_LOG");
    c
}

fn ok(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fedanno {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Running {
    child: Child,
    lines: Receiver<String>,
    address: String,
}

/// Starts `node run` and returns once it printed its address.
fn start(dir: &Path, bootstrap: Option<&str>) -> Running {
    let mut c = bin();
    c.arg("--dir")
        .arg(dir)
        .args(["-v", "node", "run", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    if let Some(b) = bootstrap {
        c.args(["--bootstrap", b]);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = sync_channel(1024);
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut r = Running {
        child,
        lines,
        address: String::new(),
    };
    let line = r.wait_for("listening on", 30);
    r.address = line.trim_start_matches("listening on ").trim().to_string();
    r
}

impl Running {
    fn wait_for(&mut self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => continue,
                Err(_) => panic!("timed out waiting for {needle:?}"),
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<Value> {
    let out = ok(&["--dir", dir.to_str().unwrap(), "audit", "log", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .cloned()
        .unwrap_or_else(|| v["entries"].as_array().cloned().unwrap_or_default())
}

fn site(tmp: &Path, name: &str, root: &Path) -> PathBuf {
    let dir = tmp.join(name);
    let d = dir.to_str().unwrap();
    ok(&["init", "--dir", d, "--site-name", name]);
    let req = tmp.join(format!("{name}.req"));
    let cert = tmp.join(format!("{name}.cert"));
    ok(&[
        "--dir",
        d,
        "node",
        "request",
        "--out",
        req.to_str().unwrap(),
    ]);
    ok(&[
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
    ok(&[
        "--dir",
        d,
        "consortium",
        "join",
        root.join("consortium.info").to_str().unwrap(),
        cert.to_str().unwrap(),
        root.join("crl.bin").to_str().unwrap(),
    ]);
    dir
}

#[test]
fn nodes_as_processes_rejoin_after_kill_9_without_losing_audit_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    ok(&[
        "consortium",
        "new",
        "--name",
        "process-test",
        "--out",
        root.to_str().unwrap(),
    ]);
    let a = site(tmp.path(), "alpha", &root);
    let b = site(tmp.path(), "beta", &root);

    let mut na = start(&a, None);
    let mut nb = start(&b, Some(&na.address));
    nb.wait_for("member proved its certificate", 30);
    ok(&[
        "--dir",
        b.to_str().unwrap(),
        "node",
        "notice",
        "--to",
        "alpha",
        "--topic",
        "t",
        "--body",
        "before the crash",
    ]);
    let status: Value = serde_json::from_str(&ok(&[
        "--dir",
        a.to_str().unwrap(),
        "node",
        "status",
        "--json",
    ]))
    .unwrap();
    assert_eq!(status["members_connected"], 1);
    let before = entries(&a);
    assert!(before.len() >= 5, "{} entries", before.len());

    // kill -9: no shutdown path runs.
    na.child.kill().unwrap();
    na.child.wait().unwrap();
    let mut na = start(&a, Some(&nb.address));
    na.wait_for("member proved its certificate", 30);
    ok(&[
        "--dir",
        b.to_str().unwrap(),
        "node",
        "notice",
        "--to",
        "alpha",
        "--topic",
        "t",
        "--body",
        "after the restart",
    ]);

    for (n, dir) in [(&mut na, &a), (&mut nb, &b)] {
        ok(&["--dir", dir.to_str().unwrap(), "node", "stop"]);
        let status = n.child.wait().unwrap();
        assert!(status.success());
    }
    let after = entries(&a);
    assert!(after.len() > before.len());
    // Every entry committed before the crash is still there, unchanged.
    assert_eq!(&after[..before.len()], &before[..]);
    let received = after
        .iter()
        .filter(|e| e.to_string().contains("\"notice\"") && e.to_string().contains("received"))
        .count();
    assert_eq!(received, 2);
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
