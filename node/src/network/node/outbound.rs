//! Everything that leaves the node: the policy gate, the audit entry committed before the
//! bytes go, then the network. Requests are signed envelopes; gossip is sealed to the members
//! it is meant for; responses pass the same gate.

use fedanno_protocol::envelope::{Envelope, PayloadKind};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::wire::{Cosignature, Frame, Gossip, Request, Response, SignedCheckpoint};
use ring::rand::SystemRandom;

use super::shared::{MemberInfo, Shared};
use super::{AppCommand, AppError, Status};
use crate::network::audit::AuditEvent;
use crate::network::policy::Outbound;

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What the policy needs to know about a study release beyond its kind, and the study it
/// belongs to (carried in the envelope header and the audit entries).
#[derive(Debug, Clone, Copy, Default)]
pub struct Release<'a> {
    pub study: Option<&'a str>,
    pub statistic: Option<&'a str>,
    pub contributing_sites: Option<u32>,
    pub cases: Option<u64>,
    /// Seal the payload to the recipient (AEAD under a key only it can derive), on top of the
    /// signature and the Noise channel: for annotation metadata.
    pub seal: bool,
}

/// The policy gate: decides, audits the decision, and refuses what is denied.
pub async fn gate(s: &Shared, kind: &str, to: Option<&MemberInfo>) -> Result<(), AppError> {
    gate_with(s, kind, &Release::default(), to).await
}

/// The policy gate for a message with release facts.
pub async fn gate_with(
    s: &Shared,
    kind: &str,
    rel: &Release<'_>,
    to: Option<&MemberInfo>,
) -> Result<(), AppError> {
    let roles = to.map(Shared::roles_of);
    let d = s.policy.decide(&Outbound {
        kind,
        to_roles: roles.as_deref(),
        statistic: rel.statistic,
        contributing_sites: rel.contributing_sites,
        cases: rel.cases,
    });
    s.audit
        .record(AuditEvent::PolicyDecision {
            to: to.map(|m| m.site.clone()),
            kind: kind.to_string(),
            allowed: d.allowed,
            rule: d.rule.clone(),
            reasons: d.reasons.clone(),
        })
        .await?;
    if d.allowed {
        Ok(())
    } else {
        Err(AppError::PolicyDenied {
            kind: kind.into(),
            to: to.map_or("the consortium".into(), |m| m.site.to_string()),
            reasons: d.reasons.join("; "),
        })
    }
}

/// Records that `bytes` are about to leave (call after the gate, before the network).
pub async fn sent(
    s: &Shared,
    to: Option<SiteId>,
    kind: &str,
    bytes: &[u8],
) -> Result<(), AppError> {
    s.audit
        .record(AuditEvent::Sent {
            to,
            kind: kind.into(),
            study: None,
            round: 0,
            sequence: 0,
            message_hash: sha256(bytes),
            bytes: bytes.len() as u64,
        })
        .await?;
    Ok(())
}

async fn sent_envelope(s: &Shared, env: &Envelope, kind: &str) -> Result<Vec<u8>, AppError> {
    let bytes = Frame::Envelope {
        bytes: env.to_bytes(),
    }
    .to_bytes();
    let h = env.header();
    s.audit
        .record(AuditEvent::Sent {
            to: h.recipient.clone(),
            kind: kind.into(),
            study: h.study.clone(),
            round: h.round,
            sequence: h.sequence,
            message_hash: env.message_hash(),
            bytes: bytes.len() as u64,
        })
        .await?;
    Ok(bytes)
}

/// Sends a request to a member and returns its verified response.
pub async fn request(
    s: &Shared,
    to: &SiteId,
    kind: &str,
    req: &Request,
) -> Result<Response, AppError> {
    request_ex(s, to, kind, &Release::default(), req, None).await
}

/// [`request`] with release facts for the gate and an overall deadline.
pub async fn request_ex(
    s: &Shared,
    to: &SiteId,
    kind: &str,
    rel: &Release<'_>,
    req: &Request,
    deadline: Option<std::time::Duration>,
) -> Result<Response, AppError> {
    let member = s
        .member_by_site(to)
        .ok_or_else(|| AppError::NotConnected(to.to_string()))?;
    gate_with(s, kind, rel, Some(&member)).await?;
    let mut header = s.header(Some(to.clone()), PayloadKind::Request);
    header.study = rel.study.map(str::to_owned);
    let payload = req.to_bytes();
    let env = if rel.seal {
        // The transport tap sees what is sealed, too.
        s.net.observe(&payload);
        Envelope::seal(
            header,
            &payload,
            &[(to.clone(), member.sealing_key)],
            &s.signing,
            &SystemRandom::new(),
        )
        .map_err(|e| AppError::BadReply(e.to_string()))?
    } else {
        Envelope::sign(header, &payload, &s.signing)
    };
    let bytes = sent_envelope(s, &env, kind).await?;
    let reply = match deadline {
        Some(d) => tokio::time::timeout(d, s.net.request(member.peer, bytes))
            .await
            .map_err(|_| {
                AppError::Refused(format!("{to} did not answer within {} s", d.as_secs()))
            })??,
        None => s.net.request(member.peer, bytes).await?,
    };
    let (opened, response) = super::inbound::open_response(s, &member, &reply).await?;
    if let Response::Receipt { receipt } = &response {
        if receipt.message_hash != env.message_hash() || receipt.receiver != member.site {
            return Err(AppError::BadReply(
                "the receipt is for another message".into(),
            ));
        }
        receipt
            .verify(&member.signing_key)
            .map_err(|e| AppError::BadReply(e.to_string()))?;
        s.audit
            .record(AuditEvent::ReceiptReceived {
                from: member.site.clone(),
                receipt: receipt.clone(),
            })
            .await?;
    }
    let _ = opened;
    Ok(response)
}

/// Answers request `id` from `member` with a signed response envelope.
pub async fn respond(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    kind: &str,
    response: &Response,
) -> Result<(), AppError> {
    gate(s, kind, Some(member)).await?;
    respond_gated(s, member, id, kind, None, response).await
}

/// Sends a response whose release the caller has already put through [`gate_with`] (and
/// recorded whatever must precede the send).
pub async fn respond_gated(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    kind: &str,
    study: Option<&str>,
    response: &Response,
) -> Result<(), AppError> {
    let mut header = s.header(Some(member.site.clone()), PayloadKind::Response);
    header.study = study.map(str::to_owned);
    let env = Envelope::sign(header, &response.to_bytes(), &s.signing);
    let bytes = sent_envelope(s, &env, kind).await?;
    s.net.respond(id, bytes).await?;
    Ok(())
}

/// Publishes gossip sealed to every connected member.
pub async fn publish(s: &Shared, kind: &str, g: &Gossip) -> Result<(), AppError> {
    gate(s, kind, None).await?;
    let recipients: Vec<(SiteId, [u8; 32])> = s
        .members()
        .into_iter()
        .map(|m| (m.site, m.sealing_key))
        .collect();
    if recipients.is_empty() {
        return Err(AppError::NotConnected("any member".into()));
    }
    let env = Envelope::seal(
        s.header(None, PayloadKind::Gossip),
        &g.to_bytes(),
        &recipients,
        &s.signing,
        &SystemRandom::new(),
    )
    .map_err(|e| AppError::BadReply(e.to_string()))?;
    let bytes = sent_envelope(s, &env, kind).await?;
    s.net.publish(bytes).await?;
    Ok(())
}

/// Signs a checkpoint of our audit log and publishes it to the members.
pub async fn checkpoint(s: &Shared) -> Result<SignedCheckpoint, AppError> {
    let cp = s.audit.checkpoint().await?;
    if !s.members().is_empty() {
        publish(
            s,
            "checkpoint",
            &Gossip::Checkpoint {
                checkpoint: cp.clone(),
            },
        )
        .await?;
    }
    Ok(cp)
}

pub(super) async fn command(s: &Shared, c: AppCommand) {
    match c {
        AppCommand::Status(reply) => {
            let r = async {
                let head = s.audit.head().await;
                let stats = s.net.stats().await?;
                let problems = super::health_problems(
                    crate::network::consortium::now(),
                    s.body.not_before,
                    s.body.not_after,
                    head.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                );
                let (size, root) = head.unwrap_or((0, [0u8; 32]));
                Ok(Status {
                    site: s.site.to_string(),
                    consortium: s.consortium.clone(),
                    peer_id: s.net.peer_id().to_string(),
                    listen: s.listening.iter().map(|a| a.to_string()).collect(),
                    roles: s
                        .body
                        .roles
                        .iter()
                        .map(|r| r.as_str().to_string())
                        .collect(),
                    certificate_expires: s.body.not_after,
                    certificate_not_before: s.body.not_before,
                    members_connected: s.members().len(),
                    audit_size: size,
                    audit_root: root.iter().map(|b| format!("{b:02x}")).collect(),
                    requests_sent: stats.requests_sent,
                    bytes_sent: stats.bytes_sent,
                    healthy: problems.is_empty(),
                    problems,
                })
            }
            .await;
            let _ = reply.send(r);
        }
        AppCommand::Peers(reply) => {
            let _ = reply.send(s.members());
        }
        AppCommand::Notice {
            to,
            topic,
            body,
            reply,
        } => {
            let r = async {
                match request(s, &to, "notice", &Request::Notice { topic, body }).await? {
                    Response::Receipt { .. } => Ok(()),
                    Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
                    _ => Err(AppError::BadReply("unexpected response to a notice".into())),
                }
            }
            .await;
            let _ = reply.send(r);
        }
        AppCommand::Broadcast { topic, body, reply } => {
            let _ = reply.send(publish(s, "notice", &Gossip::Notice { topic, body }).await);
        }
        AppCommand::Checkpoint { reply } => {
            let _ = reply.send(checkpoint(s).await);
        }
        AppCommand::Witness { to, reply } => {
            let r = async {
                let cp = s.audit.checkpoint().await?;
                match request(
                    s,
                    &to,
                    "witness",
                    &Request::Witness {
                        checkpoint: cp.clone(),
                    },
                )
                .await?
                {
                    Response::Cosigned { cosignature } => {
                        let member = s
                            .member_by_site(&to)
                            .ok_or_else(|| AppError::NotConnected(to.to_string()))?;
                        cosignature
                            .verify(&cp, &member.signing_key)
                            .map_err(|e| AppError::BadReply(e.to_string()))?;
                        s.audit
                            .record(AuditEvent::Cosigned {
                                by: to.clone(),
                                size: cp.size,
                                root: cp.root,
                            })
                            .await?;
                        Ok::<Cosignature, AppError>(cosignature)
                    }
                    Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
                    _ => Err(AppError::BadReply(
                        "unexpected response to a witness request".into(),
                    )),
                }
            }
            .await;
            let _ = reply.send(r);
        }
        AppCommand::GetCheckpoint { from, reply } => {
            let r = async {
                match request(s, &from, "checkpoint", &Request::GetCheckpoint).await? {
                    Response::Checkpoint { checkpoint } => {
                        let member = s
                            .member_by_site(&from)
                            .ok_or_else(|| AppError::NotConnected(from.to_string()))?;
                        checkpoint
                            .verify(&member.signing_key)
                            .map_err(|e| AppError::BadReply(e.to_string()))?;
                        Ok(checkpoint)
                    }
                    Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
                    _ => Err(AppError::BadReply("unexpected response".into())),
                }
            }
            .await;
            let _ = reply.send(r);
        }
    }
}
