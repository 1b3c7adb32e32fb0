//! The local control endpoint of a running node: a Unix socket `<site>/control.sock` (mode
//! 0600, so only the site's operator account can use it) speaking one JSON request and one JSON
//! answer per line. Every request has a typed answer, defined here and used by both ends: the
//! server below and the client functions (`status`, `peers`, …) that `fedanno node …` and
//! `fedanno study …` call. It reaches the node only through the app's handle, so everything it
//! triggers still passes the policy gate and the audit log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fedanno_protocol::ids::SiteId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::network::node::{AppHandle, Fetched, MemberInfo, Status};
use crate::reader_studies::local::Assignment;
use crate::reader_studies::manifest::JoinDecision;
use crate::reader_studies::network::Delivery;
use crate::reader_studies::report::{self, ReaderStudyReport};

pub const SOCKET: &str = "control.sock";
/// Longest request line accepted.
const MAX_LINE: u64 = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ControlRequest {
    Status,
    Peers,
    Notice {
        to: String,
        topic: String,
        body: String,
    },
    Checkpoint,
    Witness {
        to: String,
    },
    Stop,
    /// Apply the revocation list file `consortium update-revocations` installed.
    Revocations,
    ReaderStudyLaunch {
        manifest: String,
    },
    ReaderStudyJoin {
        study: String,
    },
    ReaderStudyAssign {
        study: String,
    },
    ReaderStudyRun {
        study: String,
    },
    /// An auditor's node fetches a site's audit log.
    AuditFetch {
        from: String,
    },
}

/// The answer line: `{"ok": true, "result": …}`, or `{"ok": false, "result": null, "error": …}`.
/// `T` is the request's answer type (below); the server and its clients share these types, so both
/// ends agree on every field at compile time.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlAnswer<T> {
    pub ok: bool,
    pub result: Option<T>,
    #[serde(default)]
    pub error: Option<String>,
}

impl ControlAnswer<serde_json::Value> {
    fn failed(error: String) -> Self {
        ControlAnswer {
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// A member the node has proven on a connection of this run (`node peers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub site: SiteId,
    /// The name its certificate request gave.
    pub display_name: String,
    /// Its roles in the consortium (site, coordinator, auditor).
    pub roles: Vec<String>,
    /// The libp2p peer id it proved on the connection.
    pub peer_id: String,
    /// Its certificate: serial number and expiry (Unix seconds).
    pub serial: u64,
    pub certificate_expires: u64,
}

impl From<&MemberInfo> for Peer {
    fn from(m: &MemberInfo) -> Self {
        Peer {
            site: m.site.clone(),
            display_name: m.display_name.clone(),
            roles: m.roles.iter().map(|r| r.as_str().to_string()).collect(),
            peer_id: m.peer_id.clone(),
            serial: m.serial,
            certificate_expires: m.certificate_expires,
        }
    }
}

/// A notice was delivered and its receipt verified (`node notice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub delivered: bool,
}

/// The checkpoint just signed (`node checkpoint`): its origin, size and C2SP text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSigned {
    pub origin: String,
    pub size: u64,
    pub text: String,
}

/// The running node applied the installed revocation list (`consortium
/// update-revocations`): its number, or None when it already had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationsApplied {
    pub newer: Option<u64>,
}

/// The node is stopping (`node stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

/// A launched study and the announcement's delivery to each participant (`study launch`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launched {
    pub study: String,
    pub participants: Vec<Delivery>,
}

/// The report a study run published (`study run`), in the report's own JSON form (non-finite
/// numbers as strings, `report::to_json`), which reads back into the same report.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Published(pub ReaderStudyReport);

impl Serialize for Published {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        report::to_json(&self.0).serialize(s)
    }
}

/// Runs one request; its answer, serialised, is the `result` of the answer line.
async fn answer(
    h: &AppHandle,
    req: ControlRequest,
    stop: &watch::Sender<bool>,
) -> Result<serde_json::Value> {
    fn value(v: impl Serialize) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(v)?)
    }
    let site = |s: String| SiteId::new(s).map_err(|e| anyhow::anyhow!("{e}"));
    match req {
        ControlRequest::Status => value(h.status().await?),
        ControlRequest::Peers => {
            let peers: Vec<Peer> = h.peers().await?.iter().map(Peer::from).collect();
            value(peers)
        }
        ControlRequest::Notice { to, topic, body } => {
            h.notice(site(to)?, topic, body).await?;
            value(Delivered { delivered: true })
        }
        ControlRequest::Checkpoint => {
            let cp = h.checkpoint().await?;
            value(CheckpointSigned {
                text: cp.text(),
                origin: cp.origin,
                size: cp.size,
            })
        }
        ControlRequest::Witness { to } => value(h.witness(site(to)?).await?.witness),
        ControlRequest::Revocations => value(RevocationsApplied {
            newer: h.install_revocations(None).await?,
        }),
        ControlRequest::Stop => {
            let _ = stop.send(true);
            value(Stopping { stopping: true })
        }
        ControlRequest::ReaderStudyLaunch { manifest } => {
            let (study, participants) = h.reader_study_launch(&manifest).await?;
            value(Launched {
                study,
                participants,
            })
        }
        ControlRequest::ReaderStudyJoin { study } => value(h.reader_study_join(&study).await?),
        ControlRequest::ReaderStudyAssign { study } => value(h.reader_study_assign(&study).await?),
        ControlRequest::ReaderStudyRun { study } => {
            let (_, report) = h.reader_study_run_and_report(&study).await?;
            value(Published(report))
        }
        ControlRequest::AuditFetch { from } => value(h.audit_fetch(site(from)?).await?),
    }
}

async fn connection(stream: UnixStream, h: AppHandle, stop: watch::Sender<bool>) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(BufReader::new(r), MAX_LINE)
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) => match answer(&h, req, &stop).await {
            Ok(result) => ControlAnswer {
                ok: true,
                result: Some(result),
                error: None,
            },
            Err(e) => ControlAnswer::failed(crate::errors::chain(&e)),
        },
        Err(e) => ControlAnswer::failed(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    Ok(())
}

/// Serves the control socket until `stop` is set.
pub async fn serve(site_dir: &Path, h: AppHandle, stop: watch::Sender<bool>) -> Result<()> {
    let listener = bind(site_dir)?;
    serve_on(listener, site_dir, h, stop).await
}

/// Binds the control socket (mode 0600), replacing a stale one. Bind before announcing the
/// node, so that whoever reads the announcement can reach it.
pub fn bind(site_dir: &Path) -> Result<UnixListener> {
    let path = site_dir.join(SOCKET);
    if path.exists() {
        // A stale socket from a killed daemon; a live one would have answered `node status`.
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves a bound control socket until `stop` is set, then removes it.
pub async fn serve_on(
    listener: UnixListener,
    site_dir: &Path,
    h: AppHandle,
    stop: watch::Sender<bool>,
) -> Result<()> {
    let path = site_dir.join(SOCKET);
    let mut stopped = stop.subscribe();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (h, stop) = (h.clone(), stop.clone());
                tasks.spawn(async move {
                    if let Err(e) = connection(stream, h, stop).await {
                        tracing::debug!(error = %e, "control connection failed");
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Whether a node answers on the site's control socket (whatever its status).
pub async fn answers(site_dir: &Path) -> bool {
    call::<serde::de::IgnoredAny>(site_dir, &ControlRequest::Status)
        .await
        .is_ok()
}

/// `node status`.
pub async fn status(site_dir: &Path) -> Result<Status> {
    call(site_dir, &ControlRequest::Status).await
}

/// `node peers`.
pub async fn peers(site_dir: &Path) -> Result<Vec<Peer>> {
    call(site_dir, &ControlRequest::Peers).await
}

/// `node notice`.
pub async fn notice(site_dir: &Path, to: String, topic: String, body: String) -> Result<Delivered> {
    call(site_dir, &ControlRequest::Notice { to, topic, body }).await
}

/// `node checkpoint`.
pub async fn checkpoint(site_dir: &Path) -> Result<CheckpointSigned> {
    call(site_dir, &ControlRequest::Checkpoint).await
}

/// `node witness`: the member that co-signed.
pub async fn witness(site_dir: &Path, to: String) -> Result<SiteId> {
    call(site_dir, &ControlRequest::Witness { to }).await
}

/// `consortium update-revocations`, when a node is running.
pub async fn revocations(site_dir: &Path) -> Result<RevocationsApplied> {
    call(site_dir, &ControlRequest::Revocations).await
}

/// `node stop`.
pub async fn stop(site_dir: &Path) -> Result<Stopping> {
    call(site_dir, &ControlRequest::Stop).await
}

/// `study launch`.
pub async fn reader_study_launch(site_dir: &Path, manifest: String) -> Result<Launched> {
    call(site_dir, &ControlRequest::ReaderStudyLaunch { manifest }).await
}

/// `study join`.
pub async fn reader_study_join(site_dir: &Path, study: String) -> Result<JoinDecision> {
    call(site_dir, &ControlRequest::ReaderStudyJoin { study }).await
}

/// `study assign`.
pub async fn reader_study_assign(site_dir: &Path, study: String) -> Result<Assignment> {
    call(site_dir, &ControlRequest::ReaderStudyAssign { study }).await
}

/// `study run`: answers when the study is done.
pub async fn reader_study_run(site_dir: &Path, study: String) -> Result<Published> {
    call(site_dir, &ControlRequest::ReaderStudyRun { study }).await
}

/// `audit fetch` on an auditor's node.
pub async fn audit_fetch(site_dir: &Path, from: String) -> Result<Fetched> {
    call(site_dir, &ControlRequest::AuditFetch { from }).await
}

/// Sends one request to a running node and reads its answer as `T` (the request's answer type
/// above; the typed functions pair each request with it).
async fn call<T: DeserializeOwned>(site_dir: &Path, req: &ControlRequest) -> Result<T> {
    let path = site_dir.join(SOCKET);
    let stream = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(&path))
        .await
        .context("the node did not answer within 5 s")?
        .with_context(|| {
            format!(
                "no node is running for {} (cannot connect to {})",
                site_dir.display(),
                path.display()
            )
        })?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut reply = String::new();
    // A study run answers when the study is done.
    let limit = match req {
        ControlRequest::ReaderStudyRun { .. } => Duration::from_secs(6 * 3600),
        _ => Duration::from_secs(120),
    };
    // A fetched audit log is as large as the bundle an export writes.
    let max = match req {
        ControlRequest::AuditFetch { .. } => 1 << 30,
        _ => 16 << 20,
    };
    tokio::time::timeout(
        limit,
        tokio::io::AsyncReadExt::take(BufReader::new(r), max).read_line(&mut reply),
    )
    .await
    .with_context(|| format!("the node did not answer within {} s", limit.as_secs()))??;
    decode(&reply)
}

/// Reads an answer line as `T`, or as the node's refusal.
fn decode<T: DeserializeOwned>(line: &str) -> Result<T> {
    let a: ControlAnswer<T> =
        serde_json::from_str(line).context("malformed answer from the node")?;
    match a {
        ControlAnswer {
            ok: true,
            result: Some(result),
            ..
        } => Ok(result),
        ControlAnswer { ok: true, .. } => bail!("the node's answer holds no result"),
        ControlAnswer { error, .. } => bail!(
            "{}",
            error.unwrap_or_else(|| "the node refused the request".into())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer line as the server writes it.
    fn line<T: Serialize>(result: T) -> String {
        let a = ControlAnswer {
            ok: true,
            result: Some(serde_json::to_value(result).unwrap()),
            error: None,
        };
        serde_json::to_string(&a).unwrap()
    }

    #[test]
    fn answers_read_back_as_their_types() {
        let launched = Launched {
            study: "s1".into(),
            participants: vec![Delivery {
                site: "b".into(),
                delivered: false,
                error: Some("unreachable".into()),
            }],
        };
        let got: Launched = decode(&line(&launched)).unwrap();
        assert_eq!(got.study, "s1");
        assert_eq!(got.participants[0].error.as_deref(), Some("unreachable"));
        let d: JoinDecision = decode(&line(JoinDecision {
            joined: true,
            reasons: vec!["ok".into()],
        }))
        .unwrap();
        assert!(d.joined);
        let w: SiteId = decode(&line(SiteId::new("site-b").unwrap())).unwrap();
        assert_eq!(w.as_str(), "site-b");
        // Whatever the status holds, the node answers.
        let any: serde::de::IgnoredAny = decode(&line(Stopping { stopping: true })).unwrap();
        let _ = any;
    }

    #[test]
    fn a_refusal_or_a_misshapen_answer_is_an_error() {
        let refused =
            serde_json::to_string(&ControlAnswer::failed("no such study".into())).unwrap();
        assert_eq!(
            decode::<JoinDecision>(&refused).unwrap_err().to_string(),
            "no such study"
        );
        // An answer of another shape does not read as null fields.
        assert!(decode::<JoinDecision>(&line(Stopping { stopping: true })).is_err());
        assert!(decode::<Stopping>("{\"ok\": true, \"result\": null}").is_err());
    }
}
