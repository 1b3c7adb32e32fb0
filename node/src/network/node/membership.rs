//! Membership proofs. The dialing side sends `Frame::Hello` with its certificate first; the
//! listening side checks it (valid now, not revoked, issued by our consortium root, bound to
//! the connection's Noise-authenticated peer id) before it answers with its own. Only then is
//! the peer a member; until then it can send nothing else, and a peer that fails the check is
//! refused, audited, disconnected and blocked. A listener never shows its certificate to an
//! unproven dialer.

use fedanno_protocol::cert::Certificate;
use fedanno_protocol::wire::{Frame, RefusalReason};

use super::outbound::{gate, sent};
use super::shared::{MemberInfo, Shared, now};
use super::{AppError, HELLO_TIMEOUT};
use crate::network::audit::AuditEvent;
use crate::network::p2p::PeerId;

/// Checks a certificate presented on `peer`'s connection.
fn check(s: &Shared, peer: &PeerId, cert: &Certificate) -> Result<MemberInfo, String> {
    let trust = s
        .trust
        .read()
        .map_err(|_| "trust store unavailable".to_string())?;
    let body = trust
        .check_peer(cert, &peer.to_bytes(), now())
        .map_err(|e| match e {
            fedanno_protocol::cert::CertError::NotYetValid { not_before } => format!(
                "{e} (in {} s): if it was issued just now, this machine's clock or the issuer's is wrong; check the time synchronisation (NTP)",
                not_before.saturating_sub(now())
            ),
            _ => e.to_string(),
        })?;
    if body.site_id == s.site {
        return Err("the certificate is our own site's".into());
    }
    Ok(MemberInfo::from_body(*peer, &body))
}

async fn refuse(s: &Shared, peer: &PeerId, reason: String) {
    refuse_and(s, peer, reason, true).await;
}

async fn refuse_and(s: &Shared, peer: &PeerId, reason: String, block: bool) {
    tracing::warn!(peer = %peer, reason = %reason, "refused a peer");
    if let Err(e) = s
        .audit
        .record(AuditEvent::Refused {
            peer: peer.to_string(),
            reason,
        })
        .await
    {
        tracing::error!(error = %e, "cannot audit a refusal");
    }
    let _ = s.net.disconnect(*peer, block).await;
    s.bump();
}

async fn admit(s: &Shared, info: MemberInfo) -> Result<(), AppError> {
    s.audit
        .record(AuditEvent::Membership {
            what: format!(
                "member {} proved its certificate (serial {}) on peer {}",
                info.site, info.serial, info.peer_id
            ),
        })
        .await?;
    let peer = info.peer;
    tracing::info!(site = %info.site, peer = %info.peer_id, "member proved its certificate");
    s.add_member(info);
    s.net.add_gossip_peer(peer).await?;
    Ok(())
}

/// We dialed `peer`: prove ourselves, then check its answer.
pub async fn hello_outbound(s: &Shared, peer: PeerId) {
    if let Err(e) = try_hello_outbound(s, peer).await {
        refuse(s, &peer, e).await;
    }
}

async fn try_hello_outbound(s: &Shared, peer: PeerId) -> Result<(), String> {
    gate(s, "hello", None).await.map_err(|e| e.to_string())?;
    let frame = Frame::Hello {
        certificate: s.certificate.clone(),
    }
    .to_bytes();
    sent(s, None, "hello", &frame)
        .await
        .map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(HELLO_TIMEOUT, s.net.request(peer, frame))
        .await
        .map_err(|_| "no answer to our membership proof".to_string())?
        .map_err(|e| e.to_string())?;
    match Frame::from_bytes(&reply).map_err(|e| format!("malformed answer: {e}"))? {
        Frame::Hello { certificate } => {
            let info = check(s, &peer, &certificate)?;
            admit(s, info).await.map_err(|e| e.to_string())
        }
        Frame::Refused { reason } => Err(format!(
            "the peer refused our membership proof ({reason:?})"
        )),
        Frame::Envelope { .. } => Err("answered a membership proof with a message".into()),
    }
}

/// A peer sent us its membership proof on request `id`.
pub async fn hello_inbound(s: &Shared, peer: PeerId, id: u64, certificate: Certificate) {
    match check(s, &peer, &certificate) {
        Ok(info) => {
            let answer = async {
                gate(s, "hello", Some(&info)).await?;
                let frame = Frame::Hello {
                    certificate: s.certificate.clone(),
                }
                .to_bytes();
                sent(s, Some(info.site.clone()), "hello", &frame).await?;
                admit(s, info).await?;
                s.net.respond(id, frame).await?;
                Ok::<(), AppError>(())
            };
            if let Err(e) = answer.await {
                refuse(s, &peer, e.to_string()).await;
            }
        }
        Err(reason) => {
            let _ = s
                .net
                .respond(
                    id,
                    Frame::Refused {
                        reason: RefusalReason::NotAMember,
                    }
                    .to_bytes(),
                )
                .await;
            refuse(s, &peer, reason).await;
        }
    }
}

/// A peer connected to us: it has `HELLO_TIMEOUT` to prove membership.
pub async fn expect_hello(s: &Shared, peer: PeerId) {
    tokio::time::sleep(HELLO_TIMEOUT).await;
    if s.member_by_peer(&peer).is_none() {
        // Not blocked: a slow member may try again.
        refuse_and(
            s,
            &peer,
            format!("no membership proof within {} s", HELLO_TIMEOUT.as_secs()),
            false,
        )
        .await;
    }
}
