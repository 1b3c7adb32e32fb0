//! Helpers shared by the tests that run the `fedanno` binary: commands with the caller's
//! `FEDANNO_*` overrides cleared, their outcome checked and their JSON parsed, temporary sites,
//! consortium membership, and nodes run as processes whose output lines are awaited under
//! timeouts (nothing sleeps).

#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Environment variables that would redirect a run (its site, log, network or policy).
const OVERRIDES: [&str; 8] = [
    "FEDANNO_DIR",
    "FEDANNO_LOG",
    "FEDANNO_LOG_FORMAT",
    "FEDANNO_LISTEN",
    "FEDANNO_BOOTSTRAP",
    "FEDANNO_POLICY",
    "FEDANNO_CHECKPOINT_INTERVAL_SECS",
    "FEDANNO_IDLE_TIMEOUT_SECS",
];

/// The binary, without the caller's `FEDANNO_*` overrides.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedanno"));
    for var in OVERRIDES {
        c.env_remove(var);
    }
    c
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// Fails the test unless `out` is a success, showing what the command printed.
pub fn assert_success(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "fedanno {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command that must succeed.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert_success(args, &out);
    out
}

/// The stdout of a command that must succeed.
pub fn ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&run_ok(args).stdout).into_owned()
}

/// The one JSON document a command printed.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The JSON output of a command that must succeed.
pub fn run_json(args: &[&str]) -> Value {
    json_of(&run_ok(args))
}

/// The stderr of a command that must fail with exit code `code` (and not by a panic).
pub fn run_err(args: &[&str], code: i32) -> String {
    expect_exit(args, &run(args), code)
}

/// The stderr of `out`, which must have exited with `code` (and not by a panic).
pub fn expect_exit(args: &[&str], out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "fedanno {args:?}: {}\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A site in a temporary directory (`<tmp>/site`), which the commands of its methods use.
pub struct Site {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Site {
    /// A new site named `name`.
    pub fn init(name: &str) -> Site {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().join("site");
        run_ok(&["init", "--dir", s(&dir), "--site-name", name]);
        Site { tmp, dir }
    }

    /// A file or directory beside the site.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("the binary runs")
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_success(args, &out);
        out
    }

    /// The JSON output of the command with `--json`.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        json_of(&self.ok(&a))
    }

    /// `annotate export` of `reader`'s annotation of `case` as `format` into `out`, with extra
    /// arguments (`--version N`, `--adjudication`, `--deidentified`).
    pub fn export(&self, case: &str, reader: &str, format: &str, out: &Path, extra: &[&str]) {
        let mut args = vec![
            "annotate",
            "export",
            "--case",
            case,
            "--reader",
            reader,
            "--format",
            format,
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// The stderr of a command that must fail (exit code 1).
    pub fn fails(&self, args: &[&str]) -> String {
        expect_exit(args, &self.run(args), 1)
    }
}

/// `consortium new` at `root`.
pub fn consortium(name: &str, root: &Path) {
    run_ok(&["consortium", "new", "--name", name, "--out", s(root)]);
}

/// Issues a certificate for the request `req` into `cert`, with extra `consortium admit`
/// arguments.
pub fn admit(root: &Path, req: &Path, cert: &Path, extra: &[&str]) {
    let mut args = vec![
        "consortium",
        "admit",
        "--root",
        s(root),
        "--request",
        s(req),
        "--out",
        s(cert),
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
}

/// A site `name` at `<tmp>/<name>` that requested (`<tmp>/<name>.req`), was admitted with the
/// role `site` (`<tmp>/<name>.cert`) and joined the consortium at `root`. Returns the site
/// directory and what `consortium join` printed.
pub fn joined_site(tmp: &Path, name: &str, root: &Path) -> (PathBuf, String) {
    joined_with_roles(tmp, name, root, "site")
}

/// [`joined_site`] with the certificate roles `roles` (comma-separated).
pub fn joined_with_roles(tmp: &Path, name: &str, root: &Path, roles: &str) -> (PathBuf, String) {
    let dir = tmp.join(name);
    let d = s(&dir);
    run_ok(&["init", "--dir", d, "--site-name", name]);
    let req = tmp.join(format!("{name}.req"));
    let cert = tmp.join(format!("{name}.cert"));
    run_ok(&["--dir", d, "node", "request", "--out", s(&req)]);
    admit(root, &req, &cert, &["--roles", roles]);
    let joined = ok(&[
        "--dir",
        d,
        "consortium",
        "join",
        s(&root.join("consortium.info")),
        s(&cert),
        s(&root.join("crl.bin")),
    ]);
    (dir, joined)
}

/// The entries of a site's audit log (`audit log --json`).
pub fn audit_entries(dir: &Path) -> Vec<Value> {
    let v = run_json(&["--dir", s(dir), "audit", "log", "--json"]);
    v.as_array()
        .cloned()
        .unwrap_or_else(|| v["entries"].as_array().cloned().unwrap_or_default())
}

/// The lines of a child's output stream, read on a thread.
pub fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = sync_channel(4096);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits at most `secs` for a line containing `needle`; the lines before it go to `seen`.
pub fn wait_line(rx: &Receiver<String>, needle: &str, secs: u64, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("timed out waiting for {needle:?}; saw {seen:#?}"),
        }
    }
}

/// Waits at most `secs` for a child to end; kills it (SIGKILL) and fails the test if it does
/// not.
pub fn wait_within(child: Child, secs: u64, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = sync_channel(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("the child's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} did not end within {secs} s");
        }
    }
}

/// Runs a command that must end by itself (a refused `node run`) and returns its output.
pub fn run_to_end(mut c: Command, secs: u64) -> Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    wait_within(child, secs, &format!("the command {c:?}"))
}

/// A `node run` process and its output lines.
pub struct Running {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    /// The address it printed (`listening on ADDRESS`).
    pub address: String,
}

/// Starts `node run` on `dir` with `env` and extra `args`, and returns once it printed its
/// address.
pub fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Running {
    let mut c = bin();
    c.args(["--dir", s(dir), "node", "run"]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the node starts");
    let stdout = lines(child.stdout.take().expect("piped stdout"));
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    let line = wait_line(&stdout, "listening on", 60, &mut Vec::new());
    let address = line.trim_start_matches("listening on ").trim().to_string();
    Running {
        child,
        stdout,
        stderr,
        address,
    }
}

impl Running {
    /// Waits at most `secs` for a log line (stderr) containing `needle`.
    pub fn wait_log(&self, needle: &str, secs: u64) -> String {
        wait_line(&self.stderr, needle, secs, &mut Vec::new())
    }

    /// `node stop`, then waits for a clean exit.
    pub fn stop(self, dir: &Path) {
        run_ok(&["--dir", s(dir), "node", "stop"]);
        let out = wait_within(self.child, 60, "the stopped node");
        assert!(out.status.success(), "the node exited with {}", out.status);
    }
}

/// Runs the binary with `args` to its end under GNU time and returns whether it succeeded,
/// its stderr and its peak resident memory in bytes (`%M`): how the hostile-file tests hold a
/// command to a memory figure.
pub fn run_measured(args: &[&str]) -> (bool, String, u64) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let report = dir.path().join("time");
    let mut c = Command::new("/usr/bin/time");
    for var in OVERRIDES {
        c.env_remove(var);
    }
    let out = c
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_fedanno"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("GNU time (/usr/bin/time) runs the binary");
    let kb: u64 = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .expect("GNU time reports the peak resident memory");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        kb * 1024,
    )
}
