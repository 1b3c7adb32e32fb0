//! Everything that arrives: connection events start or expect membership proofs; requests and
//! gossip from proven members are opened (signature, consortium, window, replay, seal),
//! audited, and answered; anything malformed, forged, replayed or from a non-member is
//! rejected, audited, and never acted on.

use fedanno_protocol::envelope::{Envelope, EnvelopeError, Opened};
use fedanno_protocol::limits::MAX_GOSSIP_BYTES;
use fedanno_protocol::wire::{
    Cosignature, Frame, Gossip, Receipt, RefusalReason, Request, Response,
};

use super::AppError;
use super::membership;
use super::outbound;
use super::shared::{MemberInfo, Shared, now};
use crate::network::audit::AuditEvent;
use crate::network::p2p::{NetEvent, PeerId};

pub async fn handle(s: &Shared, ev: NetEvent) {
    match ev {
        NetEvent::Connected { peer, outbound, .. } => {
            if s.member_by_peer(&peer).is_none() {
                if outbound {
                    membership::hello_outbound(s, peer).await;
                } else {
                    membership::expect_hello(s, peer).await;
                }
            }
        }
        NetEvent::Disconnected { peer } => s.remove_member(&peer),
        NetEvent::Request { peer, id, bytes } => match Frame::from_bytes(&bytes) {
            Ok(Frame::Hello { certificate }) => {
                membership::hello_inbound(s, peer, id, certificate).await
            }
            Ok(Frame::Envelope { bytes }) => match s.member_by_peer(&peer) {
                Some(member) => request(s, &member, id, &bytes).await,
                None => refuse_non_member(s, peer, id).await,
            },
            Ok(Frame::Refused { .. }) | Err(_) => {
                reject(
                    s,
                    &peer.to_string(),
                    "a request that is not a fedanno frame".into(),
                    None,
                )
                .await;
                let _ = s
                    .net
                    .respond(
                        id,
                        Frame::Refused {
                            reason: RefusalReason::Malformed,
                        }
                        .to_bytes(),
                    )
                    .await;
                if s.member_by_peer(&peer).is_none() {
                    let _ = s.net.disconnect(peer, true).await;
                }
            }
        },
        NetEvent::Gossip {
            source,
            propagation_source,
            message_id,
            bytes,
        } => {
            let accept = gossip(s, source, &bytes).await;
            let _ = s
                .net
                .report_gossip(message_id, propagation_source, accept)
                .await;
            s.bump();
        }
        NetEvent::Subscribed { .. } => s.bump(),
        NetEvent::DialFailed { error, .. } => tracing::warn!(error = %error, "a dial failed"),
        NetEvent::InboundFailure { peer, error } => {
            // Oversized or truncated frames never reach the app: the codec refuses them.
            let from = s
                .member_by_peer(&peer)
                .map_or_else(|| peer.to_string(), |m| m.site.to_string());
            reject(s, &from, format!("inbound request failed: {error}"), None).await;
        }
        NetEvent::ListenAddr(a) => tracing::info!(address = %a, "listening"),
    }
}

async fn reject(s: &Shared, from: &str, reason: String, hash: Option<[u8; 32]>) {
    reject_quietly(s, from, reason, hash).await;
    s.bump();
}

async fn reject_quietly(s: &Shared, from: &str, reason: String, hash: Option<[u8; 32]>) {
    tracing::warn!(from = %from, reason = %reason, "rejected a message");
    if let Err(e) = s
        .audit
        .record(AuditEvent::Rejected {
            from: from.to_string(),
            reason,
            message_hash: hash,
        })
        .await
    {
        tracing::error!(error = %e, "cannot audit a rejection");
    }
}

async fn refuse_non_member(s: &Shared, peer: PeerId, id: u64) {
    let reason = "a message before any membership proof".to_string();
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
    let _ = s.net.disconnect(peer, true).await;
}

/// Why an envelope was rejected, with its hash when it could be parsed, and the code a
/// refusal answers with.
struct Rejection {
    reason: String,
    hash: Option<[u8; 32]>,
    code: RefusalReason,
}

impl Rejection {
    fn malformed(reason: String, hash: Option<[u8; 32]>) -> Self {
        Self {
            reason,
            hash,
            code: RefusalReason::Malformed,
        }
    }
}

/// Opens an envelope from `member`, checking that the connection's member signed it.
fn open(
    s: &Shared,
    member: &MemberInfo,
    env_bytes: &[u8],
    max: usize,
) -> Result<(Envelope, Opened), Rejection> {
    let env = Envelope::from_bytes_limited(env_bytes, max)
        .map_err(|e| Rejection::malformed(e.to_string(), None))?;
    let hash = env.message_hash();
    if env.header().sender != member.site {
        return Err(Rejection::malformed(
            format!(
                "envelope claims sender {} on {}'s connection",
                env.header().sender,
                member.site
            ),
            Some(hash),
        ));
    }
    let opened = s.open(&env).map_err(|e| {
        let reason = match &e {
            // Almost always a clock that is off at one of the two sites: say so.
            EnvelopeError::OutsideWindow { timestamp, now } => format!(
                "{e}: the clocks of this site and {} differ by {} s (at most {} s allowed); check the time synchronisation (NTP) of both machines",
                member.site,
                timestamp.abs_diff(*now),
                fedanno_protocol::limits::MAX_CLOCK_SKEW_SECS
            ),
            _ => e.to_string(),
        };
        let code = match e {
            EnvelopeError::Replayed { .. } | EnvelopeError::OutsideWindow { .. } => {
                RefusalReason::Replay
            }
            _ => RefusalReason::Malformed,
        };
        Rejection {
            reason,
            hash: Some(hash),
            code,
        }
    })?;
    Ok((env, opened))
}

async fn received(s: &Shared, o: &Opened, kind: &str, bytes: u64) -> Result<(), AppError> {
    s.audit
        .record(AuditEvent::Received {
            from: o.header.sender.clone(),
            kind: kind.into(),
            study: o.header.study.clone(),
            round: o.header.round,
            sequence: o.header.sequence,
            message_hash: o.message_hash,
            bytes,
        })
        .await?;
    Ok(())
}

fn kind_of(r: &Request) -> &'static str {
    match r {
        Request::GetCheckpoint => "checkpoint",
        Request::Witness { .. } => "witness",
        Request::Notice { .. } => "notice",
        Request::ReaderStudy(_) => "study",
    }
}

async fn request(s: &Shared, member: &MemberInfo, id: u64, env_bytes: &[u8]) {
    let refuse = |reason: RefusalReason| Frame::Refused { reason }.to_bytes();
    let (env, opened) = match open(
        s,
        member,
        env_bytes,
        fedanno_protocol::limits::MAX_ENVELOPE_BYTES,
    ) {
        Ok(x) => x,
        Err(Rejection { reason, hash, code }) => {
            reject(s, member.site.as_str(), reason, hash).await;
            let _ = s.net.respond(id, refuse(code)).await;
            return;
        }
    };
    let req = match Request::from_bytes(&opened.payload) {
        Ok(r) => r,
        Err(e) => {
            reject(
                s,
                member.site.as_str(),
                format!("undecodable request: {e}"),
                Some(opened.message_hash),
            )
            .await;
            let _ = s.net.respond(id, refuse(RefusalReason::Malformed)).await;
            return;
        }
    };
    let kind = kind_of(&req);
    if let Err(e) = received(s, &opened, kind, env_bytes.len() as u64).await {
        tracing::error!(error = %e, "cannot audit a received message; not answering it");
        return;
    }
    let answer = async {
        match req {
            Request::GetCheckpoint => {
                let cp = s.audit.checkpoint().await?;
                outbound::respond(
                    s,
                    member,
                    id,
                    "checkpoint",
                    &Response::Checkpoint { checkpoint: cp },
                )
                .await
            }
            Request::Witness { checkpoint } => {
                if checkpoint.verify(&member.signing_key).is_err()
                    || checkpoint.signer != member.site
                {
                    return outbound::respond(
                        s,
                        member,
                        id,
                        "refusal",
                        &Response::Refused {
                            reason: RefusalReason::Malformed,
                        },
                    )
                    .await;
                }
                // A witness never signs two different roots for one size of one log.
                let equivocates = s
                    .peer_checkpoints
                    .lock()
                    .map(|m| {
                        m.get(&member.site).is_some_and(|old| {
                            old.size == checkpoint.size && old.root != checkpoint.root
                        })
                    })
                    .unwrap_or(true);
                if equivocates {
                    s.audit
                        .record(AuditEvent::Rejected {
                            from: member.site.to_string(),
                            reason: "checkpoint equivocation".into(),
                            message_hash: Some(opened.message_hash),
                        })
                        .await?;
                    return outbound::respond(
                        s,
                        member,
                        id,
                        "refusal",
                        &Response::Refused {
                            reason: RefusalReason::Malformed,
                        },
                    )
                    .await;
                }
                if let Ok(mut m) = s.peer_checkpoints.lock() {
                    m.insert(member.site.clone(), checkpoint.clone());
                }
                let cosignature = Cosignature::sign(&checkpoint, s.site.clone(), now(), &s.signing);
                outbound::respond(
                    s,
                    member,
                    id,
                    "witness",
                    &Response::Cosigned { cosignature },
                )
                .await
            }
            Request::ReaderStudy(m) => {
                crate::reader_studies::network::handle(s, member, id, env.message_hash(), *m).await
            }
            Request::Notice { topic, body } => {
                tracing::info!(from = %member.site, topic = %topic, chars = body.chars().count(), "notice received");
                let (size, root) = s.audit.head().await?;
                let receipt =
                    Receipt::sign(s.site.clone(), env.message_hash(), size, root, &s.signing);
                s.audit
                    .record(AuditEvent::ReceiptIssued {
                        to: member.site.clone(),
                        message_hash: env.message_hash(),
                    })
                    .await?;
                outbound::respond(s, member, id, "receipt", &Response::Receipt { receipt }).await
            }
        }
    };
    if let Err(e) = answer.await {
        tracing::warn!(error = %e, "could not answer a request");
        let _ = s.net.respond(id, refuse(RefusalReason::Busy)).await;
    }
}

/// Opens and audits a response from `member`.
pub async fn open_response(
    s: &Shared,
    member: &MemberInfo,
    reply: &[u8],
) -> Result<(Opened, Response), AppError> {
    match Frame::from_bytes(reply).map_err(|e| AppError::BadReply(e.to_string()))? {
        Frame::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
        Frame::Hello { .. } => Err(AppError::BadReply(
            "a membership proof instead of a response".into(),
        )),
        Frame::Envelope { bytes } => match open(
            s,
            member,
            &bytes,
            fedanno_protocol::limits::MAX_ENVELOPE_BYTES,
        ) {
            Ok((_, opened)) => {
                let resp = Response::from_bytes(&opened.payload)
                    .map_err(|e| AppError::BadReply(e.to_string()))?;
                received(s, &opened, "response", bytes.len() as u64).await?;
                Ok((opened, resp))
            }
            Err(Rejection { reason, hash, .. }) => {
                reject(s, member.site.as_str(), reason.clone(), hash).await;
                Err(AppError::BadReply(reason))
            }
        },
    }
}

/// Handles one gossip message; returns whether to accept it for propagation.
async fn gossip(s: &Shared, source: PeerId, bytes: &[u8]) -> bool {
    let Some(member) = s.member_by_peer(&source) else {
        reject(
            s,
            &source.to_string(),
            "gossip from a peer that is not a proven member".into(),
            None,
        )
        .await;
        return false;
    };
    let env_bytes = match Frame::from_bytes(bytes) {
        Ok(Frame::Envelope { bytes }) => bytes,
        _ => {
            reject(
                s,
                member.site.as_str(),
                "gossip that is not an envelope".into(),
                None,
            )
            .await;
            return false;
        }
    };
    let (_, opened) = match open(s, &member, &env_bytes, MAX_GOSSIP_BYTES) {
        Ok(x) => x,
        Err(Rejection { reason, hash, .. }) => {
            reject(s, member.site.as_str(), reason, hash).await;
            return false;
        }
    };
    let Ok(g) = Gossip::from_bytes(&opened.payload) else {
        reject(
            s,
            member.site.as_str(),
            "undecodable gossip".into(),
            Some(opened.message_hash),
        )
        .await;
        return false;
    };
    let kind = match &g {
        Gossip::Checkpoint { .. } => "checkpoint",
        Gossip::Notice { .. } => "notice",
    };
    if received(s, &opened, kind, env_bytes.len() as u64)
        .await
        .is_err()
    {
        return false;
    }
    match g {
        Gossip::Checkpoint { checkpoint } => {
            if checkpoint.verify(&member.signing_key).is_err() {
                reject(
                    s,
                    member.site.as_str(),
                    "checkpoint with a bad signature".into(),
                    Some(opened.message_hash),
                )
                .await;
                return false;
            }
            if let Ok(mut m) = s.peer_checkpoints.lock() {
                m.insert(member.site.clone(), checkpoint);
            }
        }
        Gossip::Notice { topic, .. } => {
            tracing::info!(from = %member.site, topic = %topic, "consortium notice")
        }
    }
    true
}
