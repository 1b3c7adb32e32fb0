//! What a site's operator sees from `fedanno node run` and `fedanno node status`, through the
//! real binary: `FEDANNO_*` environment overrides and their precedence (flag > environment >
//! config.toml), JSON log lines, the health check's exit codes, and one clear message and a
//! non-zero exit for every misconfiguration (bad bootstrap or listen address, port in use, bad
//! environment value, unreadable or damaged key files, missing policy, certificate expired or
//! not yet valid, a second node on the same site). Waits read the processes' own output under
//! timeouts; nothing sleeps.

mod common;

use std::path::{Path, PathBuf};

use common::{
    admit, audit_entries, bin, consortium, joined_site, ok, run_to_end, s, start, wait_line,
};
use serde_json::Value;

/// `node run` on `dir` with `env`, which must fail: returns its stderr.
fn refused(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut c = bin();
    c.args(["--dir", s(dir), "node", "run"]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run_to_end(c, 60);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "the node started: {err}"
    );
    err
}

fn assert_mentions(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{n:?} missing from: {text}");
    }
}

/// A consortium root and one joined site `name` (roles `site`), with its request kept so
/// more certificates can be issued for it.
struct Fixture {
    tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    req: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        consortium("ops-test", &root);
        let (dir, joined) = joined_site(tmp.path(), name, &root);
        assert_mentions(&joined, &["Joined consortium ops-test", "/p2p/12D3KooW"]);
        let req = tmp.path().join(format!("{name}.req"));
        Fixture {
            tmp,
            root,
            dir,
            req,
        }
    }

    /// Issues a certificate for the site with extra `consortium admit` arguments.
    fn issue(&self, label: &str, extra: &[&str]) -> PathBuf {
        let cert = self.tmp.path().join(format!("{label}.cert"));
        admit(&self.root, &self.req, &cert, extra);
        cert
    }

    fn installed_cert(&self) -> PathBuf {
        self.dir.join("consortium").join("certificate.bin")
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(name)
    }
}

const LOOPBACK_ANY: &str = "/ip4/127.0.0.1/tcp/0";

#[test]
fn every_misconfiguration_is_named_with_what_to_do() {
    let f = Fixture::new("mercy");
    let any = [("FEDANNO_LISTEN", LOOPBACK_ANY)];

    bad_addresses_are_named(&f);
    bad_environment_values_are_named(&f);
    bad_key_files_are_named(&f);
    bad_certificates_are_named(&f);

    // Nothing above wrote an audit entry: every check runs before the node starts.
    let log = audit_entries(&f.dir);
    assert_eq!(log.len(), 0, "{log:?}");

    // Repaired, the node runs and is healthy; a second node on the same site is refused.
    let node = start(&f.dir, &any, &[]);
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(&e, &["a node is already running for the site", "node stop"]);
    let st: Value =
        serde_json::from_str(&ok(&["--dir", s(&f.dir), "node", "status", "--json"])).unwrap();
    assert_eq!(st["healthy"], true, "{st}");
    assert_eq!(st["running"], true, "{st}");
    assert_eq!(st["problems"], serde_json::json!([]));
    node.stop(&f.dir);

    // Not running: the health check fails, with JSON for scripts.
    let out = bin()
        .args(["--dir", s(&f.dir), "node", "status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["running"], false);
    assert_eq!(st["healthy"], false);
    assert_mentions(st["error"].as_str().unwrap(), &["no node is running"]);
}

fn bad_addresses_are_named(f: &Fixture) {
    let any = [("FEDANNO_LISTEN", LOOPBACK_ANY)];
    // Bootstrap addresses: from the environment, the flag and config.toml, each named.
    let e = refused(
        &f.dir,
        &[
            ("FEDANNO_LISTEN", LOOPBACK_ANY),
            ("FEDANNO_BOOTSTRAP", "10.1.2.3:4100"),
        ],
        &[],
    );
    assert_mentions(
        &e,
        &[
            "bad bootstrap address \"10.1.2.3:4100\"",
            "FEDANNO_BOOTSTRAP",
            "/ip4/10.1.2.3/tcp/4100/p2p/",
        ],
    );
    let e = refused(&f.dir, &any, &["--bootstrap", "/ip4/127.0.0.1/tcp/4100"]);
    assert_mentions(&e, &["--bootstrap", "lacks the peer id"]);
    let config = f.dir.join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        original.replace(
            "bootstrap = []",
            "bootstrap = [\"/dns4/coordinator.example.org/tcp/4100/p2p/12D3KooWRBhwfeP2Y9CDkFRBeZ1zrWMuV3bh3DmMtaYaU6ZuUaxk\"]",
        ),
    )
    .unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(
        &e,
        &[
            "bad bootstrap address",
            "config.toml [network] bootstrap",
            "host names are not resolved",
        ],
    );
    std::fs::write(&config, &original).unwrap();

    // A listen port held by another program.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let busy = format!("/ip4/127.0.0.1/tcp/{port}");
    let e = refused(&f.dir, &[("FEDANNO_LISTEN", &busy)], &[]);
    assert_mentions(
        &e,
        &[
            &format!("cannot listen on {busy}"),
            &format!("TCP port {port} is already in use"),
            "FEDANNO_LISTEN",
        ],
    );
    let e = refused(&f.dir, &[], &["--listen", &busy]);
    assert_mentions(&e, &["already in use", "choose another port in --listen"]);
    let e = refused(&f.dir, &[], &["--listen", "0.0.0.0:4100"]);
    assert_mentions(
        &e,
        &[
            "bad listen address \"0.0.0.0:4100\"",
            "/ip4/0.0.0.0/tcp/4100",
        ],
    );
}

fn bad_environment_values_are_named(f: &Fixture) {
    // Environment values that are not numbers, or out of range.
    let e = refused(
        &f.dir,
        &[
            ("FEDANNO_LISTEN", LOOPBACK_ANY),
            ("FEDANNO_IDLE_TIMEOUT_SECS", "soon"),
        ],
        &[],
    );
    assert_mentions(
        &e,
        &[
            "FEDANNO_IDLE_TIMEOUT_SECS=\"soon\"",
            "whole number of seconds",
        ],
    );
    let e = refused(
        &f.dir,
        &[
            ("FEDANNO_LISTEN", LOOPBACK_ANY),
            ("FEDANNO_CHECKPOINT_INTERVAL_SECS", "1"),
        ],
        &[],
    );
    assert_mentions(
        &e,
        &["FEDANNO_CHECKPOINT_INTERVAL_SECS=\"1\"", "at least 10"],
    );

    // A missing policy file.
    let e = refused(
        &f.dir,
        &[
            ("FEDANNO_LISTEN", LOOPBACK_ANY),
            ("FEDANNO_POLICY", "policies/missing.toml"),
        ],
        &[],
    );
    assert_mentions(
        &e,
        &[
            "cannot read the site policy",
            "missing.toml",
            "FEDANNO_POLICY",
        ],
    );
}

fn bad_key_files_are_named(f: &Fixture) {
    let any = [("FEDANNO_LISTEN", LOOPBACK_ANY)];
    // Key files: readable by others, damaged, missing. (Tests may run as root, who can read
    // any file, so an unreadable file is simulated by a missing one.)
    use std::os::unix::fs::PermissionsExt;
    let signing = f.key("signing.pk8");
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(&e, &["signing.pk8", "readable by other users", "chmod 600"]);
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o600)).unwrap();

    let sealing = f.key("sealing.key");
    let sealing_bytes = std::fs::read(&sealing).unwrap();
    std::fs::write(&sealing, b"short").unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(&e, &["sealing.key", "malformed", "offline backup"]);
    std::fs::write(&sealing, &sealing_bytes).unwrap();

    let libp2p = f.key("libp2p.key");
    let moved = f.tmp.path().join("libp2p.key.bak");
    std::fs::rename(&libp2p, &moved).unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(
        &e,
        &["cannot read the key file", "libp2p.key", "offline backup"],
    );
    assert!(!libp2p.exists(), "node run must not make a new libp2p key");
    std::fs::rename(&moved, &libp2p).unwrap();

    // The site's own libp2p key with another signing key (a stolen libp2p key on a machine
    // that lacks the site's signing key): refused before anything starts.
    let other = f.tmp.path().join("other-site");
    ok(&["init", "--dir", s(&other), "--site-name", "Other"]);
    let own = std::fs::read(&signing).unwrap();
    std::fs::copy(other.join("keys").join("signing.pk8"), &signing).unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(
        &e,
        &[
            "signing key",
            "is not the one this site's certificate was issued for",
        ],
    );
    std::fs::write(&signing, own).unwrap();
}

fn bad_certificates_are_named(f: &Fixture) {
    let any = [("FEDANNO_LISTEN", LOOPBACK_ANY)];
    // Certificates: expired, and not yet valid (which hints at this machine's clock).
    let valid = std::fs::read(f.installed_cert()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = f.issue(
        "expired",
        &[
            "--valid-from",
            &(now - 3 * 86_400).to_string(),
            "--valid-days",
            "1",
        ],
    );
    let out = bin()
        .args(["--dir", s(&f.dir), "consortium", "join"])
        .args([s(&f.root.join("consortium.info")), s(&expired)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_mentions(&String::from_utf8_lossy(&out.stderr), &["expired at"]);
    std::fs::copy(&expired, f.installed_cert()).unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(
        &e,
        &[
            "certificate.bin expired at",
            "fedanno node request",
            "consortium join",
            "clock",
        ],
    );
    let future = f.issue("future", &["--valid-from", &(now + 2 * 86_400).to_string()]);
    std::fs::copy(&future, f.installed_cert()).unwrap();
    let e = refused(&f.dir, &any, &[]);
    assert_mentions(
        &e,
        &[
            "certificate.bin is not valid before",
            "this machine's clock",
            "time synchronisation",
        ],
    );
    std::fs::write(f.installed_cert(), &valid).unwrap();
}

#[test]
fn environment_overrides_config_and_flags_override_the_environment() {
    let f = Fixture::new("hope");
    // config.toml names a port that is taken; the environment's port wins over it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!("/ip4/127.0.0.1/tcp/{}", holder.local_addr().unwrap().port());
    let config = f.dir.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("/ip4/0.0.0.0/tcp/4100", &busy).replace(
            "checkpoint_interval_secs = 300",
            "checkpoint_interval_secs = 600",
        ),
    )
    .unwrap();
    let e = refused(&f.dir, &[], &[]);
    assert_mentions(&e, &["already in use", "config.toml [network] listen"]);

    let node = start(
        &f.dir,
        &[
            ("FEDANNO_LISTEN", LOOPBACK_ANY),
            ("FEDANNO_LOG_FORMAT", "json"),
            ("FEDANNO_CHECKPOINT_INTERVAL_SECS", "30"),
        ],
        &[],
    );
    assert!(
        node.address.starts_with("/ip4/127.0.0.1/tcp/"),
        "{}",
        node.address
    );
    assert!(!node.address.contains(&busy));
    // `node run` logs at info by default; with FEDANNO_LOG_FORMAT=json every line is JSON.
    let mut seen = Vec::new();
    let line = wait_line(&node.stderr, "starting the node", 30, &mut seen);
    for l in seen.iter().chain([&line]) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_mentions(
        v["fields"]["environment_overrides"].as_str().unwrap(),
        &["FEDANNO_LISTEN", "FEDANNO_CHECKPOINT_INTERVAL_SECS"],
    );
    let listening = wait_line(&node.stderr, "node listening", 30, &mut Vec::new());
    let v: Value = serde_json::from_str(&listening).unwrap();
    assert_eq!(v["fields"]["message"], "node listening");
    node.stop(&f.dir);

    // A flag beats the environment: the environment names the taken port, --listen a free one.
    let node = start(
        &f.dir,
        &[("FEDANNO_LISTEN", &busy), ("FEDANNO_LOG_FORMAT", "json")],
        &["--listen", LOOPBACK_ANY, "--log-format", "human"],
    );
    let line = wait_line(&node.stderr, "starting the node", 30, &mut Vec::new());
    assert!(
        serde_json::from_str::<Value>(&line).is_err(),
        "--log-format human: {line}"
    );
    node.stop(&f.dir);
    drop(holder);
}
