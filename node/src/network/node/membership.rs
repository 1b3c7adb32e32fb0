//! Membership proofs. The dialing side sends `Frame::Hello` with its certificate first; the
//! listening side checks it (valid now, not revoked, issued by our consortium root, bound to
//! the connection's Noise-authenticated peer id) before it answers with its own. Only then is
//! the peer a member; until then it can send nothing else, and a peer that fails the check is
//! refused, audited, disconnected and blocked. A listener never shows its certificate to an
//! unproven dialer.

use fedanno_protocol::cert::{CertError, Certificate};
use fedanno_protocol::wire::{Frame, RefusalReason};

use super::context::Context;
use super::members::MemberInfo;
use super::outbound::Release;
use super::{AppError, HELLO_TIMEOUT};
use crate::network::audit::AuditEvent;
use crate::network::kinds::MessageKind;
use crate::network::p2p::PeerId;
use crate::site::clock::now;

/// Checks a certificate presented on `peer`'s connection.
fn check(cx: &Context, peer: &PeerId, cert: &Certificate) -> Result<MemberInfo, String> {
    let body = cx
        .identity()
        .trust()
        .check_peer(cert, &peer.to_bytes(), now())
        .map_err(|e| match e {
            CertError::NotYetValid { not_before } => format!(
                "{e} (in {} s): if it was issued just now, this machine's clock or the issuer's is wrong; check the time synchronisation (NTP)",
                not_before.saturating_sub(now())
            ),
            _ => e.to_string(),
        })?;
    if &body.site_id == cx.site() {
        return Err("the certificate is our own site's".into());
    }
    Ok(MemberInfo::from_body(*peer, &body))
}

/// Writes a peer's refusal to the audit log (a failure to write is logged, not fatal: the peer
/// is refused either way).
pub(super) async fn audit_refusal(cx: &Context, peer: &PeerId, reason: String) {
    let event = AuditEvent::Refused {
        peer: peer.to_string(),
        reason,
    };
    if let Err(e) = cx.audit().record(event).await {
        tracing::error!(error = %e, "cannot audit a refusal");
    }
}

/// Refuses `peer`: audited, disconnected, and blocked if `block`.
async fn refuse(cx: &Context, peer: &PeerId, reason: String, block: bool) {
    tracing::warn!(peer = %peer, reason = %reason, "refused a peer");
    audit_refusal(cx, peer, reason).await;
    let _ = cx.net().disconnect(*peer, block).await;
    cx.bump();
}

async fn admit(cx: &Context, info: MemberInfo) -> Result<(), AppError> {
    cx.audit()
        .record(AuditEvent::Membership {
            what: format!(
                "member {} proved its certificate (serial {}) on peer {}",
                info.site, info.serial, info.peer_id
            ),
        })
        .await?;
    let peer = info.peer;
    tracing::info!(site = %info.site, peer = %info.peer_id, "member proved its certificate");
    cx.add_member(info);
    cx.net().add_gossip_peer(peer).await?;
    Ok(())
}

/// Our certificate as a Hello frame, through the gate and into the audit log.
async fn our_hello(cx: &Context, to: Option<&MemberInfo>) -> Result<Vec<u8>, AppError> {
    cx.gate(MessageKind::Hello, &Release::default(), to).await?;
    let frame = Frame::Hello {
        certificate: cx.identity().certificate().clone(),
    }
    .to_bytes();
    cx.sent_frame(to.map(|m| m.site.clone()), MessageKind::Hello, &frame)
        .await?;
    Ok(frame)
}

/// We dialed `peer`: prove ourselves, then check its answer.
pub(super) async fn hello_outbound(cx: &Context, peer: PeerId) {
    if let Err(e) = try_hello_outbound(cx, peer).await {
        refuse(cx, &peer, e, true).await;
    }
}

async fn try_hello_outbound(cx: &Context, peer: PeerId) -> Result<(), String> {
    let frame = our_hello(cx, None).await.map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(HELLO_TIMEOUT, cx.net().request(peer, frame))
        .await
        .map_err(|_| "no answer to our membership proof".to_string())?
        .map_err(|e| e.to_string())?;
    match Frame::from_bytes(&reply).map_err(|e| format!("malformed answer: {e}"))? {
        Frame::Hello { certificate } => {
            let info = check(cx, &peer, &certificate)?;
            admit(cx, info).await.map_err(|e| e.to_string())
        }
        Frame::Refused { reason } => Err(format!(
            "the peer refused our membership proof ({reason:?})"
        )),
        Frame::Envelope { .. } => Err("answered a membership proof with a message".into()),
    }
}

/// A peer sent us its membership proof on request `id`.
pub(super) async fn hello_inbound(cx: &Context, peer: PeerId, id: u64, certificate: Certificate) {
    match check(cx, &peer, &certificate) {
        Ok(info) => {
            let answer = async {
                let frame = our_hello(cx, Some(&info)).await?;
                admit(cx, info).await?;
                cx.net().respond(id, frame).await?;
                Ok::<(), AppError>(())
            };
            if let Err(e) = answer.await {
                refuse(cx, &peer, e.to_string(), true).await;
            }
        }
        Err(reason) => {
            let refused = Frame::Refused {
                reason: RefusalReason::NotAMember,
            };
            let _ = cx.net().respond(id, refused.to_bytes()).await;
            refuse(cx, &peer, reason, true).await;
        }
    }
}

/// A peer connected to us: it has `HELLO_TIMEOUT` to prove membership.
pub(super) async fn expect_hello(cx: &Context, peer: PeerId) {
    tokio::time::sleep(HELLO_TIMEOUT).await;
    if cx.members().by_peer(&peer).is_none() {
        // Not blocked: a slow member may try again.
        let why = format!("no membership proof within {} s", HELLO_TIMEOUT.as_secs());
        refuse(cx, &peer, why, false).await;
    }
}
