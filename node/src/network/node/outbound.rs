//! Everything that leaves the node: the policy gate, the audit entry committed before the
//! bytes go, then the network. Requests and responses are signed envelopes (sealed to the
//! recipient as well when the release asks for it); gossip is sealed to every member.

use std::time::Duration;

use fedanno_protocol::crypto::sha256;
use fedanno_protocol::envelope::{Envelope, PayloadKind};
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::wire::{Frame, Gossip, Request, Response, SignedCheckpoint};

use super::AppError;
use super::context::Context;
use super::members::MemberInfo;
use crate::network::audit::AuditEvent;
use crate::network::kinds::MessageKind;
use crate::network::policy::Outbound;
use crate::reader_studies::jobs::Statistic;

/// What the policy needs to know about a reader-study release beyond its kind, and the reader
/// study it belongs to (carried in the envelope header and the audit entries).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Release<'a> {
    pub reader_study: Option<&'a str>,
    pub statistic: Option<Statistic>,
    pub contributing_sites: Option<u32>,
    pub cases: Option<u64>,
    /// Seal the payload to the recipient (AEAD under a key only it can derive), on top of the
    /// signature and the Noise channel: for annotation metadata.
    pub seal: bool,
}

impl<'a> Release<'a> {
    /// A message that belongs to a reader study and carries no statistic.
    pub(crate) fn of(reader_study: &'a str) -> Self {
        Release {
            reader_study: Some(reader_study),
            ..Release::default()
        }
    }
}

impl Context {
    /// The policy gate: decides, audits the decision, and refuses what is denied.
    pub(crate) async fn gate(
        &self,
        kind: MessageKind,
        rel: &Release<'_>,
        to: Option<&MemberInfo>,
    ) -> Result<(), AppError> {
        let d = self.policy().decide(&Outbound {
            kind,
            to_roles: to.map(|m| m.roles.as_slice()),
            statistic: rel.statistic,
            contributing_sites: rel.contributing_sites,
            cases: rel.cases,
        });
        self.audit()
            .record(AuditEvent::Decision {
                to: to.map(|m| m.site.clone()),
                kind: kind.as_str().into(),
                study: rel.reader_study.map(str::to_string),
                allowed: d.allowed,
                rule: d.rule.clone(),
                reasons: d.reasons.clone(),
            })
            .await?;
        if d.allowed {
            Ok(())
        } else {
            Err(AppError::PolicyDenied {
                kind,
                to: to.map_or("the consortium".into(), |m| m.site.to_string()),
                reasons: d.reasons.join("; "),
            })
        }
    }

    /// Records that a frame that is not an envelope (a membership proof) is about to leave.
    pub(super) async fn sent_frame(
        &self,
        to: Option<SiteId>,
        kind: MessageKind,
        frame: &[u8],
    ) -> Result<(), AppError> {
        self.audit()
            .record(AuditEvent::Sent {
                to,
                kind: kind.as_str().into(),
                study: None,
                round: 0,
                sequence: 0,
                message_hash: sha256(frame),
                bytes: frame.len() as u64,
            })
            .await?;
        Ok(())
    }

    /// Records that an envelope is about to leave and returns its frame.
    async fn sent_envelope(&self, env: &Envelope, kind: MessageKind) -> Result<Vec<u8>, AppError> {
        let bytes = Frame::Envelope {
            bytes: env.to_bytes(),
        }
        .to_bytes();
        let h = env.header();
        self.audit()
            .record(AuditEvent::Sent {
                to: h.recipient.clone(),
                kind: kind.as_str().into(),
                study: h.study.clone(),
                round: h.round,
                sequence: h.sequence,
                message_hash: env.message_hash(),
                bytes: bytes.len() as u64,
            })
            .await?;
        Ok(bytes)
    }

    /// Sends a request to a member through the gate and returns its verified response; a
    /// receipt is checked against the message and audited. `deadline` bounds the wait.
    pub(crate) async fn request(
        &self,
        to: &SiteId,
        kind: MessageKind,
        rel: &Release<'_>,
        req: &Request,
        deadline: Option<Duration>,
    ) -> Result<Response, AppError> {
        let member = self.member(to)?;
        if !self.still_member(&member).await {
            return Err(AppError::NotConnected(to.to_string()));
        }
        self.gate(kind, rel, Some(&member)).await?;
        self.request_gated(&member, kind, rel, req, deadline).await
    }

    /// [`Context::request`] for a request the caller has put through the gate.
    pub(crate) async fn request_gated(
        &self,
        member: &MemberInfo,
        kind: MessageKind,
        rel: &Release<'_>,
        req: &Request,
        deadline: Option<Duration>,
    ) -> Result<Response, AppError> {
        let to = &member.site;
        let header = self.header(Some(to.clone()), PayloadKind::Request, rel.reader_study);
        let recipient = [(to.clone(), member.sealing_key)];
        let seal_to = rel.seal.then_some(&recipient[..]);
        let env = self.envelope(header, &req.to_bytes(), seal_to)?;
        let bytes = self.sent_envelope(&env, kind).await?;
        let reply = match deadline {
            Some(d) => tokio::time::timeout(d, self.net().request(member.peer, bytes))
                .await
                .map_err(|_| {
                    AppError::Refused(format!("{to} did not answer within {} s", d.as_secs()))
                })??,
            None => self.net().request(member.peer, bytes).await?,
        };
        let (_, response) = self.open_response(member, &reply).await?;
        if let Response::Receipt { receipt } = &response {
            if receipt.message_hash != env.message_hash() || receipt.receiver != member.site {
                return Err(AppError::BadReply(
                    "the receipt is for another message".into(),
                ));
            }
            receipt
                .verify(&member.signing_key)
                .map_err(|e| AppError::BadReply(e.to_string()))?;
            self.audit()
                .record(AuditEvent::ReceiptReceived {
                    from: member.site.clone(),
                    receipt: receipt.clone(),
                })
                .await?;
        }
        Ok(response)
    }

    /// Answers request `id` from `member` with a signed response, through the gate.
    pub(crate) async fn respond(
        &self,
        member: &MemberInfo,
        id: u64,
        kind: MessageKind,
        rel: &Release<'_>,
        response: &Response,
    ) -> Result<(), AppError> {
        self.gate(kind, rel, Some(member)).await?;
        self.respond_gated(member, id, kind, rel.reader_study, response)
            .await
    }

    /// Sends a response whose release the caller has already put through [`Context::gate`]
    /// (and recorded whatever must precede the send).
    pub(crate) async fn respond_gated(
        &self,
        member: &MemberInfo,
        id: u64,
        kind: MessageKind,
        reader_study: Option<&str>,
        response: &Response,
    ) -> Result<(), AppError> {
        let header = self.header(
            Some(member.site.clone()),
            PayloadKind::Response,
            reader_study,
        );
        let env = self.envelope(header, &response.to_bytes(), None)?;
        let bytes = self.sent_envelope(&env, kind).await?;
        self.net().respond(id, bytes).await?;
        Ok(())
    }

    /// Publishes gossip sealed to every connected member.
    pub(super) async fn publish(&self, kind: MessageKind, g: &Gossip) -> Result<(), AppError> {
        if self.identity().fetch_only() {
            return Err(AppError::Refused(
                "an auditor's node only fetches: it publishes nothing".into(),
            ));
        }
        self.drop_lapsed().await;
        self.gate(kind, &Release::default(), None).await?;
        let recipients: Vec<(SiteId, [u8; 32])> = self
            .members()
            .all()
            .into_iter()
            .map(|m| (m.site, m.sealing_key))
            .collect();
        if recipients.is_empty() {
            return Err(AppError::NotConnected("any member".into()));
        }
        let header = self.header(None, PayloadKind::Gossip, None);
        let env = self.envelope(header, &g.to_bytes(), Some(&recipients))?;
        let bytes = self.sent_envelope(&env, kind).await?;
        self.net().publish(bytes).await?;
        Ok(())
    }

    /// Signs a checkpoint of our audit log and publishes it to the members.
    pub(crate) async fn checkpoint(&self) -> Result<SignedCheckpoint, AppError> {
        let cp = self.audit().checkpoint().await?;
        if self.members().len() > 0 && !self.identity().fetch_only() {
            let g = Gossip::Checkpoint {
                checkpoint: cp.clone(),
            };
            self.publish(MessageKind::Checkpoint, &g).await?;
        }
        Ok(cp)
    }
}
