//! Everything that arrives: connection events start or expect membership proofs; requests and
//! gossip from proven members are opened (signature, consortium, window, replay, seal),
//! audited, and answered; anything malformed, forged, replayed or from a non-member is
//! rejected, audited, and never acted on.

use fedanno_protocol::envelope::Opened;
use fedanno_protocol::limits::{MAX_ENVELOPE_BYTES, MAX_GOSSIP_BYTES};
use fedanno_protocol::wire::{Frame, Gossip, Receipt, RefusalReason, Request, Response};

use super::context::Context;
use super::envelopes::Rejection;
use super::members::MemberInfo;
use super::outbound::Release;
use super::{AppError, auditors, membership, witness};
use crate::network::audit::AuditEvent;
use crate::network::kinds::{Arrival, MessageKind};
use crate::network::p2p::{NetEvent, PeerId};

pub(super) async fn handle(cx: &Context, ev: NetEvent) {
    match ev {
        NetEvent::Connected { peer, outbound, .. } => {
            if cx.members().by_peer(&peer).is_none() {
                if outbound {
                    membership::hello_outbound(cx, peer).await;
                } else {
                    membership::expect_hello(cx, peer).await;
                }
            }
        }
        NetEvent::Disconnected { peer } => cx.remove_member(&peer),
        NetEvent::Request { peer, id, bytes } => frame(cx, peer, id, &bytes).await,
        NetEvent::Gossip {
            source,
            propagation_source,
            message_id,
            bytes,
        } => {
            let accept = gossip(cx, source, &bytes).await;
            let _ = cx
                .net()
                .report_gossip(message_id, propagation_source, accept)
                .await;
            cx.bump();
        }
        NetEvent::Subscribed { .. } => cx.bump(),
        NetEvent::DialFailed { error, .. } => tracing::warn!(error = %error, "a dial failed"),
        NetEvent::InboundFailure { peer, error } => {
            // Oversized or truncated frames never reach the app: the codec refuses them.
            let why = format!("inbound request failed: {error}");
            match cx.members().by_peer(&peer) {
                Some(m) => cx.reject(m.site.as_str(), why, None).await,
                None => cx.audit_stranger(&peer, why).await,
            }
        }
        NetEvent::ListenAddr(a) => tracing::info!(address = %a, "listening"),
    }
}

/// One request frame: a membership proof, an envelope from a member, or something refused.
async fn frame(cx: &Context, peer: PeerId, id: u64, bytes: &[u8]) {
    match Frame::from_bytes(bytes) {
        Ok(Frame::Hello { certificate, nonce }) => {
            membership::hello_inbound(cx, peer, id, certificate, nonce).await
        }
        Ok(Frame::Proof { signature }) => membership::proof_inbound(cx, peer, id, signature).await,
        Ok(Frame::Envelope { bytes }) => match member_after_welcome(cx, &peer).await {
            Some(member) if cx.still_member(&member).await => {
                request(cx, &member, id, &bytes).await
            }
            _ => refuse_non_member(cx, peer, id).await,
        },
        Ok(Frame::Refused { .. } | Frame::Challenge { .. } | Frame::Welcome { .. }) | Err(_) => {
            let why = "a request that is not a fedanno frame".to_string();
            match cx.members().by_peer(&peer) {
                Some(m) => cx.reject(m.site.as_str(), why, None).await,
                None => cx.audit_stranger(&peer, why).await,
            }
            let _ = cx
                .net()
                .respond(id, refusal(RefusalReason::Malformed))
                .await;
            if cx.members().by_peer(&peer).is_none() {
                let _ = cx.net().disconnect(peer, Some(super::BAN_UNPROVEN)).await;
            }
        }
    }
}

/// The member on `peer`, waiting up to `HELLO_TIMEOUT` while this node checks the welcome of a
/// peer it dialed (whose first requests may overtake its welcome).
async fn member_after_welcome(cx: &Context, peer: &PeerId) -> Option<MemberInfo> {
    let mut changes = cx.subscribe();
    let wait = async {
        loop {
            if let Some(m) = cx.members().by_peer(peer) {
                return Some(m);
            }
            if !cx.members().awaits_welcome(peer) {
                return None;
            }
            changes.changed().await.ok()?;
        }
    };
    tokio::time::timeout(super::HELLO_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

fn refusal(reason: RefusalReason) -> Vec<u8> {
    Frame::Refused { reason }.to_bytes()
}

async fn refuse_non_member(cx: &Context, peer: PeerId, id: u64) {
    let reason = "a message before any membership proof".to_string();
    cx.audit_stranger(&peer, reason).await;
    let _ = cx
        .net()
        .respond(id, refusal(RefusalReason::NotAMember))
        .await;
    let _ = cx.net().disconnect(peer, Some(super::BAN_UNPROVEN)).await;
}

/// How the audit log names a request that arrived.
fn arrival_of(r: &Request) -> Arrival {
    match r {
        Request::GetCheckpoint => Arrival::Kind(MessageKind::Checkpoint),
        Request::Witness { .. } => Arrival::Kind(MessageKind::Witness),
        Request::Notice { .. } => Arrival::Kind(MessageKind::Notice),
        Request::ReaderStudy(_) => Arrival::ReaderStudy,
        Request::Audit(q) => Arrival::Kind(auditors::kind_of(q)),
    }
}

/// A request envelope from a proven member: opened, decoded, audited, then answered.
async fn request(cx: &Context, member: &MemberInfo, id: u64, env_bytes: &[u8]) {
    let opened = match cx.open(member, env_bytes, MAX_ENVELOPE_BYTES) {
        Ok((_, opened)) => opened,
        Err(Rejection { reason, hash, code }) => {
            cx.reject(member.site.as_str(), reason, hash).await;
            let _ = cx.net().respond(id, refusal(code)).await;
            return;
        }
    };
    let req = match Request::from_bytes(&opened.payload) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("undecodable request: {e}");
            cx.reject(member.site.as_str(), why, Some(opened.message_hash))
                .await;
            let _ = cx
                .net()
                .respond(id, refusal(RefusalReason::Malformed))
                .await;
            return;
        }
    };
    if let Err(e) = cx
        .received(
            &opened,
            arrival_of(&req),
            Frame::envelope_frame_len(env_bytes.len()),
        )
        .await
    {
        tracing::error!(error = %e, "cannot audit a received message; not answering it");
        return;
    }
    if let Err(e) = answer(cx, member, id, &opened, req).await {
        tracing::warn!(error = %e, "could not answer a request");
        let _ = cx.net().respond(id, refusal(RefusalReason::Busy)).await;
    }
}

async fn answer(
    cx: &Context,
    member: &MemberInfo,
    id: u64,
    opened: &Opened,
    req: Request,
) -> Result<(), AppError> {
    let none = Release::default();
    // An auditor fetches; anything else it asks is refused (and audited as rejected). Audit
    // fetches from anyone else are for the policy to decide (its rules name the roles).
    if member.fetch_only() && !matches!(req, Request::Audit(_) | Request::GetCheckpoint) {
        let why = "an auditor may only fetch audit material".to_string();
        cx.reject(member.site.as_str(), why, Some(opened.message_hash))
            .await;
        let r = Response::Refused {
            reason: RefusalReason::NotPermitted,
        };
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &r)
            .await;
    }
    // An auditor's node takes part in nothing: no studies, no witnessing.
    if cx.identity().fetch_only()
        && matches!(req, Request::ReaderStudy(_) | Request::Witness { .. })
    {
        let r = Response::Refused {
            reason: RefusalReason::NotPermitted,
        };
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &r)
            .await;
    }
    match req {
        Request::Audit(q) => auditors::answer(cx, member, id, q).await,
        Request::GetCheckpoint => {
            let checkpoint = cx.audit().checkpoint().await?;
            let r = Response::Checkpoint { checkpoint };
            cx.respond(member, id, MessageKind::Checkpoint, &none, &r)
                .await
        }
        Request::Witness {
            old_size,
            proof,
            checkpoint,
        } => witness::cosign(cx, member, id, old_size, proof, checkpoint).await,
        Request::ReaderStudy(m) => {
            crate::reader_studies::network::handle(cx, member, id, opened.message_hash, *m).await
        }
        Request::Notice { topic, body } => {
            tracing::info!(from = %member.site, topic = %topic, chars = body.chars().count(), "notice received");
            let receipt = issue_receipt(cx, member, opened.message_hash).await?;
            cx.respond(member, id, MessageKind::Receipt, &none, &receipt)
                .await
        }
    }
}

/// Signs a receipt for a message `member` sent us, over our log head, and audits it.
pub(crate) async fn issue_receipt(
    cx: &Context,
    member: &MemberInfo,
    message_hash: [u8; 32],
) -> Result<Response, AppError> {
    let (size, root) = cx.audit().head().await?;
    let receipt = Receipt::sign(
        cx.site().clone(),
        message_hash,
        size,
        root,
        cx.identity().signing(),
    );
    cx.audit()
        .record(AuditEvent::ReceiptIssued {
            to: member.site.clone(),
            message_hash,
        })
        .await?;
    Ok(Response::Receipt { receipt })
}

/// Handles one gossip message; returns whether to accept it for propagation.
async fn gossip(cx: &Context, source: PeerId, bytes: &[u8]) -> bool {
    let Some(member) = cx.members().by_peer(&source) else {
        let why = "gossip from a peer that is not a proven member".to_string();
        cx.reject(&source.to_string(), why, None).await;
        return false;
    };
    if !cx.still_member(&member).await {
        return false;
    }
    let from = member.site.as_str();
    if member.fetch_only() {
        cx.reject(
            from,
            "gossip from an auditor, which may only fetch".into(),
            None,
        )
        .await;
        return false;
    }
    let Ok(Frame::Envelope { bytes: env_bytes }) = Frame::from_bytes(bytes) else {
        cx.reject(from, "gossip that is not an envelope".into(), None)
            .await;
        return false;
    };
    let opened = match cx.open(&member, &env_bytes, MAX_GOSSIP_BYTES) {
        Ok((_, opened)) => opened,
        Err(Rejection { reason, hash, .. }) => {
            cx.reject(from, reason, hash).await;
            return false;
        }
    };
    let hash = Some(opened.message_hash);
    let Ok(g) = Gossip::from_bytes(&opened.payload) else {
        cx.reject(from, "undecodable gossip".into(), hash).await;
        return false;
    };
    let kind = match &g {
        Gossip::Checkpoint { .. } => MessageKind::Checkpoint,
        Gossip::Notice { .. } => MessageKind::Notice,
        Gossip::Revocations { .. } => MessageKind::Revocations,
        Gossip::Addresses { .. } => MessageKind::Addresses,
        Gossip::Cosigned { .. } | Gossip::Alarm { .. } => MessageKind::Witness,
    };
    let len = Frame::envelope_frame_len(env_bytes.len());
    if cx
        .received(&opened, Arrival::Kind(kind), len)
        .await
        .is_err()
    {
        return false;
    }
    match g {
        Gossip::Checkpoint { checkpoint } => {
            if checkpoint.verify(&member.signing_key).is_err() {
                let why = "checkpoint with a bad signature".to_string();
                cx.reject(from, why, hash).await;
                return false;
            }
            cx.witnessed()
                .remember(member.site.clone(), checkpoint.clone());
            witness::check_seen(cx, checkpoint, true).await;
        }
        Gossip::Cosigned {
            checkpoint,
            cosignature,
        } => {
            if let Err(why) =
                witness::cosigned_elsewhere(cx, &member, checkpoint, cosignature).await
            {
                cx.reject(from, why, hash).await;
                return false;
            }
        }
        Gossip::Alarm { evidence } => {
            if let Err(why) = witness::alarm_heard(cx, &member, evidence).await {
                cx.reject(from, why, hash).await;
                return false;
            }
        }
        Gossip::Notice { topic, .. } => {
            tracing::info!(from = %member.site, topic = %topic, "consortium notice")
        }
        Gossip::Addresses { members } => cx.learn_addresses(members).await,
        Gossip::Revocations { list } => {
            // Passed on by us when newer; an old copy is not propagated further.
            return match cx.revocations(&list).await {
                Ok(newer) => newer.is_some(),
                Err(e) => {
                    cx.reject(from, e.to_string(), hash).await;
                    false
                }
            };
        }
    }
    true
}
