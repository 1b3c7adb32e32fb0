//! The local control endpoint of a running node: a Unix socket `<site>/control.sock` (mode
//! 0600, so only the site's operator account can use it) speaking one JSON request and one JSON
//! answer per line. `fedanno node status|peers|notice|checkpoint|stop` are its clients. It
//! reaches the node only through the app's handle, so everything it triggers still passes the
//! policy gate and the audit log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fedanno_protocol::ids::SiteId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::network::node::AppHandle;

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
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ControlAnswer {
    pub ok: bool,
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default)]
    pub error: Option<String>,
}

async fn answer(
    h: &AppHandle,
    req: ControlRequest,
    stop: &watch::Sender<bool>,
) -> Result<serde_json::Value> {
    let site = |s: String| SiteId::new(s).map_err(|e| anyhow::anyhow!("{e}"));
    Ok(match req {
        ControlRequest::Status => serde_json::to_value(h.status().await?)?,
        ControlRequest::Peers => serde_json::to_value(h.peers().await?)?,
        ControlRequest::Notice { to, topic, body } => {
            h.notice(site(to)?, topic, body).await?;
            serde_json::json!({"delivered": true})
        }
        ControlRequest::Checkpoint => {
            let cp = h.checkpoint().await?;
            serde_json::json!({"origin": cp.origin, "size": cp.size, "text": cp.text()})
        }
        ControlRequest::Witness { to } => {
            serde_json::to_value(h.witness(site(to)?).await?.witness)?
        }
        ControlRequest::Stop => {
            let _ = stop.send(true);
            serde_json::json!({"stopping": true})
        }
        ControlRequest::ReaderStudyLaunch { manifest } => {
            let (study, deliveries) = h.reader_study_launch(&manifest).await?;
            serde_json::json!({"study": study, "participants": deliveries})
        }
        ControlRequest::ReaderStudyJoin { study } => {
            serde_json::to_value(h.reader_study_join(&study).await?)?
        }
        ControlRequest::ReaderStudyAssign { study } => {
            serde_json::to_value(h.reader_study_assign(&study).await?)?
        }
        ControlRequest::ReaderStudyRun { study } => {
            let (_, report) = h.reader_study_run_and_report(&study).await?;
            crate::reader_studies::report::to_json(&report)
        }
    })
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
                result,
                error: None,
            },
            Err(e) => ControlAnswer {
                ok: false,
                result: serde_json::Value::Null,
                error: Some(format!("{e:#}")),
            },
        },
        Err(e) => ControlAnswer {
            ok: false,
            result: serde_json::Value::Null,
            error: Some(format!("bad request: {e}")),
        },
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

/// Sends one request to a running node.
pub async fn call(site_dir: &Path, req: &ControlRequest) -> Result<serde_json::Value> {
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
    tokio::time::timeout(
        limit,
        tokio::io::AsyncReadExt::take(BufReader::new(r), 16 << 20).read_line(&mut reply),
    )
    .await
    .with_context(|| format!("the node did not answer within {} s", limit.as_secs()))??;
    let a: ControlAnswer =
        serde_json::from_str(&reply).context("malformed answer from the node")?;
    if !a.ok {
        bail!(
            "{}",
            a.error
                .unwrap_or_else(|| "the node refused the request".into())
        );
    }
    Ok(a.result)
}
