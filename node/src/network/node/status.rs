//! What `node status` shows, and when a running node is healthy.

use serde::{Deserialize, Serialize};

use super::AppError;
use super::context::Context;
use crate::site::clock::now;
use crate::site::identity::hex;

/// What `node status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub site: String,
    pub consortium: String,
    pub peer_id: String,
    pub listen: Vec<String>,
    pub roles: Vec<String>,
    pub certificate_expires: u64,
    pub certificate_not_before: u64,
    pub members_connected: usize,
    pub audit_size: u64,
    pub audit_root: String,
    pub requests_sent: u64,
    pub bytes_sent: u64,
    /// The node answers, its certificate is valid now, and its audit log head is readable.
    pub healthy: bool,
    /// Why it is not healthy (empty when healthy).
    pub problems: Vec<String>,
    /// Witness alarms: members' logs that contradict a checkpoint a witness co-signed (see
    /// `audit log --kind alarm` for the entries).
    pub alarms: Vec<String>,
    /// The policy's quorum of co-signatures, the largest size of this site's log a quorum
    /// co-signed, and the entries after it (unwitnessed).
    pub witness_quorum: u32,
    pub witnessed_size: Option<u64>,
    pub unwitnessed_entries: u64,
}

/// What makes a running node unhealthy: a certificate not valid at `now` (Unix seconds), or an
/// audit log whose head cannot be read. Empty when healthy.
pub fn health_problems(
    now: u64,
    not_before: u64,
    not_after: u64,
    audit_head: Result<(), String>,
) -> Vec<String> {
    let t = |s: u64| crate::site::calendar::rfc3339(s as i64);
    let mut problems = Vec::new();
    if now < not_before {
        problems.push(format!(
            "the site's certificate is not valid before {} (this machine's clock says {}): check the clock",
            t(not_before),
            t(now)
        ));
    }
    if now >= not_after {
        problems.push(format!(
            "the site's certificate expired at {}: install a new one (`fedanno node request`, `fedanno consortium join`) and restart the node",
            t(not_after)
        ));
    }
    if let Err(e) = audit_head {
        problems.push(format!("the audit log head cannot be read: {e}"));
    }
    problems
}

pub(super) async fn status(cx: &Context) -> Result<Status, AppError> {
    let head = cx.audit().head().await;
    let stats = cx.net().stats().await?;
    let body = cx.identity().body();
    let problems = health_problems(
        now(),
        body.not_before,
        body.not_after,
        head.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    let (size, root) = head.unwrap_or((0, [0u8; 32]));
    let alarms = cx
        .audit()
        .alarms()
        .await?
        .iter()
        .map(|a| {
            format!(
                "{}'s log: {} (co-signed size {}, then size {}), reported by {} (audit entry {})",
                a.site, a.kind, a.earlier.size, a.later.size, a.reported_by, a.entry_seq
            )
        })
        .collect();
    let quorum = cx.policy().witness.quorum;
    let witnessed_size = cx.audit().witnessed_size(quorum).await?;
    Ok(Status {
        site: cx.site().to_string(),
        consortium: cx.identity().consortium().to_string(),
        peer_id: cx.net().peer_id().to_string(),
        listen: cx.listening().iter().map(|a| a.to_string()).collect(),
        roles: body.roles.iter().map(|r| r.as_str().to_string()).collect(),
        certificate_expires: body.not_after,
        certificate_not_before: body.not_before,
        members_connected: cx.members().len(),
        audit_size: size,
        audit_root: hex(&root),
        requests_sent: stats.requests_sent,
        bytes_sent: stats.bytes_sent,
        healthy: problems.is_empty(),
        problems,
        alarms,
        witness_quorum: quorum,
        witnessed_size,
        unwitnessed_entries: size.saturating_sub(witnessed_size.unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::health_problems;

    #[test]
    fn health_needs_a_valid_certificate_and_a_readable_audit_log() {
        assert!(health_problems(100, 50, 200, Ok(())).is_empty());
        let p = health_problems(40, 50, 200, Ok(()));
        assert!(p.len() == 1 && p[0].contains("not valid before"), "{p:?}");
        let p = health_problems(200, 50, 200, Ok(()));
        assert!(p.len() == 1 && p[0].contains("expired"), "{p:?}");
        let p = health_problems(100, 50, 200, Err("disk I/O error".into()));
        assert!(p.len() == 1 && p[0].contains("disk I/O error"), "{p:?}");
    }
}
