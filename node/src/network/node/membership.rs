//! Membership proofs (`fedanno_protocol::membership`). The dialing side sends `Hello` with its
//! certificate and a fresh nonce; the listening side checks the certificate (valid now, not
//! revoked, issued by our consortium root, bound to the connection's Noise-authenticated peer
//! id) and answers a `Challenge` with its own nonce; the dialer signs both peer ids and both
//! nonces with its certified signing key (`Proof`); the listener checks that signature, and only
//! then shows its own certificate and signature (`Welcome`), which the dialer checks in turn.
//! Until a peer has proven itself it can send nothing else; a peer that fails is refused,
//! audited, disconnected and blocked. A stolen libp2p key without the site's signing key proves
//! nothing.

use fedanno_protocol::cert::{CertError, Certificate};
use fedanno_protocol::membership::{Side, Transcript};
use fedanno_protocol::wire::{Frame, RefusalReason};
use ring::rand::{SecureRandom, SystemRandom};

use super::context::Context;
use super::members::{MemberInfo, PendingProof};
use super::outbound::Release;
use super::{AppError, BAN_UNPROVEN, HELLO_TIMEOUT};
use crate::network::audit::AuditEvent;
use crate::network::kinds::MessageKind;
use crate::network::p2p::PeerId;
use crate::site::clock::now;
use std::time::Duration;

/// Checks a certificate presented on `peer`'s connection.
fn check(cx: &Context, peer: &PeerId, cert: &Certificate) -> Result<MemberInfo, String> {
    let body = cx
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

/// Refuses `peer`: audited, disconnected, and banned for `ban` if given.
pub(super) async fn refuse(cx: &Context, peer: &PeerId, reason: String, ban: Option<Duration>) {
    tracing::warn!(peer = %peer, reason = %reason, "refused a peer");
    if cx.members().by_peer(peer).is_some() {
        audit_refusal(cx, peer, reason).await;
    } else {
        cx.audit_stranger(peer, reason).await;
    }
    let _ = cx.net().disconnect(*peer, ban).await;
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
    cx.book().connected(&peer, &info.site);
    cx.add_member(info);
    cx.net().add_gossip_peer(peer).await?;
    // A member that missed a revocation list learns it from us, and every member where we
    // and the members we know listen.
    cx.pass_on_revocations().await;
    cx.share_addresses().await;
    Ok(())
}

/// A handshake frame, through the gate and into the audit log.
async fn send_frame(
    cx: &Context,
    to: Option<&MemberInfo>,
    frame: Frame,
) -> Result<Vec<u8>, AppError> {
    cx.gate(MessageKind::Hello, &Release::default(), to).await?;
    let bytes = frame.to_bytes();
    cx.sent_frame(to.map(|m| m.site.clone()), MessageKind::Hello, &bytes)
        .await?;
    Ok(bytes)
}

fn nonce() -> Result<[u8; 32], String> {
    let mut n = [0u8; 32];
    SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| "no randomness for a membership nonce".to_string())?;
    Ok(n)
}

/// What both ends sign on the connection from `dialer` to `listener`.
fn transcript<'a>(
    cx: &'a Context,
    dialer: &'a [u8],
    listener: &'a [u8],
    nonces: ([u8; 32], [u8; 32]),
) -> Transcript<'a> {
    Transcript {
        consortium: cx.identity().consortium(),
        dialer,
        listener,
        dialer_nonce: nonces.0,
        listener_nonce: nonces.1,
    }
}

/// We dialed `peer`: prove ourselves, then check its answer.
pub(super) async fn hello_outbound(cx: &Context, peer: PeerId) {
    if let Err(e) = try_hello_outbound(cx, peer).await {
        // We chose to dial it: disconnect, but never ban a peer because our dial failed.
        refuse(cx, &peer, e, None).await;
    }
}

/// One request of the handshake, answered within `HELLO_TIMEOUT`.
async fn ask(cx: &Context, peer: PeerId, frame: Vec<u8>) -> Result<Frame, String> {
    let reply = tokio::time::timeout(HELLO_TIMEOUT, cx.net().request(peer, frame))
        .await
        .map_err(|_| "no answer to our membership proof".to_string())?
        .map_err(|e| e.to_string())?;
    match Frame::from_bytes(&reply).map_err(|e| format!("malformed answer: {e}"))? {
        Frame::Refused { reason } => Err(format!(
            "the peer refused our membership proof ({reason:?})"
        )),
        f => Ok(f),
    }
}

async fn try_hello_outbound(cx: &Context, peer: PeerId) -> Result<(), String> {
    let outcome = prove_and_check(cx, peer).await;
    cx.members().awaiting_welcome(peer, false);
    cx.bump();
    outcome
}

async fn prove_and_check(cx: &Context, peer: PeerId) -> Result<(), String> {
    let dialer_nonce = nonce()?;
    let hello = Frame::Hello {
        certificate: cx.identity().certificate().clone(),
        nonce: dialer_nonce,
    };
    let hello = send_frame(cx, None, hello)
        .await
        .map_err(|e| e.to_string())?;
    let Frame::Challenge {
        nonce: listener_nonce,
    } = ask(cx, peer, hello).await?
    else {
        return Err("answered our certificate with something other than a challenge".into());
    };
    let (me, them) = (cx.net().peer_id().to_bytes(), peer.to_bytes());
    let t = transcript(cx, &me, &them, (dialer_nonce, listener_nonce));
    let proof = Frame::Proof {
        signature: t.sign(Side::Dialer, cx.identity().signing()),
    };
    let proof = send_frame(cx, None, proof)
        .await
        .map_err(|e| e.to_string())?;
    // The listener admits us before it answers: its first requests may overtake its welcome.
    // They may be full-sized, and they wait for the welcome rather than being refused.
    cx.members().awaiting_welcome(peer, true);
    cx.net().allow(peer).await.map_err(|e| e.to_string())?;
    let Frame::Welcome {
        certificate,
        signature,
        members,
        revocations,
    } = ask(cx, peer, proof).await?
    else {
        return Err("answered our proof with something other than its own".into());
    };
    let info = check(cx, &peer, &certificate)?;
    if !t.verify(Side::Listener, &info.signing_key, &signature) {
        return Err(format!(
            "{}'s membership proof does not verify with its certificate's signing key",
            info.site
        ));
    }
    admit(cx, info).await.map_err(|e| e.to_string())?;
    // What the listener told us, now that it proved itself: where the others listen, and its
    // revocation list (the root's signature decides whether it counts).
    cx.learn_addresses(members).await;
    if let Some(list) = revocations
        && let Err(e) = cx.revocations(&list).await
    {
        tracing::warn!(error = %e, "a member's revocation list was refused");
    }
    Ok(())
}

/// A peer sent its certificate on request `id`: check it, then challenge it to prove it holds
/// the certificate's signing key.
pub(super) async fn hello_inbound(
    cx: &Context,
    peer: PeerId,
    id: u64,
    certificate: Certificate,
    dialer_nonce: [u8; 32],
) {
    let challenge = async {
        let info = check(cx, &peer, &certificate)?;
        let listener_nonce = nonce()?;
        let pending = PendingProof {
            info,
            dialer_nonce,
            listener_nonce,
        };
        if !cx.members().start_proof(peer, pending) {
            return Err("too many membership proofs in progress".to_string());
        }
        let frame = Frame::Challenge {
            nonce: listener_nonce,
        };
        send_frame(cx, None, frame).await.map_err(|e| e.to_string())
    };
    match challenge.await {
        Ok(frame) => {
            let _ = cx.net().respond(id, frame).await;
        }
        Err(reason) => refuse_request(cx, peer, id, reason).await,
    }
}

/// A peer answered our challenge on request `id`: check its signature, then prove ourselves.
pub(super) async fn proof_inbound(cx: &Context, peer: PeerId, id: u64, signature: [u8; 64]) {
    let welcome = async {
        let p = cx
            .members()
            .take_proof(&peer)
            .ok_or_else(|| "a membership proof without a certificate before it".to_string())?;
        let (me, them) = (cx.net().peer_id().to_bytes(), peer.to_bytes());
        let t = transcript(cx, &them, &me, (p.dialer_nonce, p.listener_nonce));
        if !t.verify(Side::Dialer, &p.info.signing_key, &signature) {
            return Err(format!(
                "the membership proof of a certificate for {} does not verify with its signing key",
                p.info.site
            ));
        }
        let frame = Frame::Welcome {
            certificate: cx.identity().certificate().clone(),
            signature: t.sign(Side::Listener, cx.identity().signing()),
            members: cx.known_addresses(),
            revocations: cx.trust().list_bytes(),
        };
        let frame = send_frame(cx, Some(&p.info), frame)
            .await
            .map_err(|e| e.to_string())?;
        admit(cx, p.info).await.map_err(|e| e.to_string())?;
        Ok(frame)
    };
    match welcome.await {
        Ok(frame) => {
            let _ = cx.net().respond(id, frame).await;
        }
        Err(reason) => refuse_request(cx, peer, id, reason).await,
    }
}

/// Answers request `id` with a refusal, then refuses the peer.
async fn refuse_request(cx: &Context, peer: PeerId, id: u64, reason: String) {
    let refused = Frame::Refused {
        reason: RefusalReason::NotAMember,
    };
    let _ = cx.net().respond(id, refused.to_bytes()).await;
    refuse(cx, &peer, reason, Some(BAN_UNPROVEN)).await;
}

/// A peer connected to us: it has `HELLO_TIMEOUT` to prove membership.
pub(super) async fn expect_hello(cx: &Context, peer: PeerId) {
    tokio::time::sleep(HELLO_TIMEOUT).await;
    if cx.members().by_peer(&peer).is_none() {
        // Not blocked: a slow member may try again.
        let why = format!("no membership proof within {} s", HELLO_TIMEOUT.as_secs());
        refuse(cx, &peer, why, None).await;
    }
}
