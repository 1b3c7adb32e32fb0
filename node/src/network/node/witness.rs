//! Witnessing: the latest checkpoint each member published or asked us to co-sign, our
//! co-signature (never for two different roots at one size of one log), and asking a member
//! to co-sign ours.

use std::collections::HashMap;
use std::sync::Mutex;

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::wire::{Cosignature, RefusalReason, Request, Response, SignedCheckpoint};

use super::AppError;
use super::context::Context;
use super::members::MemberInfo;
use super::outbound::Release;
use crate::network::audit::AuditEvent;
use crate::network::kinds::MessageKind;
use crate::site::clock::now;

/// The latest checkpoint of each member (what we witness). In memory only.
#[derive(Default)]
pub(crate) struct Witnessed {
    latest: Mutex<HashMap<SiteId, SignedCheckpoint>>,
}

impl Witnessed {
    /// Whether `cp` contradicts the checkpoint we hold of the same size from `site`. An
    /// unreadable table counts as a contradiction (refuse rather than co-sign blindly).
    fn equivocates(&self, site: &SiteId, cp: &SignedCheckpoint) -> bool {
        self.latest
            .lock()
            .map(|m| {
                m.get(site)
                    .is_some_and(|old| old.size == cp.size && old.root != cp.root)
            })
            .unwrap_or(true)
    }

    pub(super) fn latest(&self, site: &SiteId) -> Option<SignedCheckpoint> {
        self.latest.lock().ok()?.get(site).cloned()
    }

    pub(super) fn remember(&self, site: SiteId, cp: SignedCheckpoint) {
        if let Ok(mut m) = self.latest.lock() {
            m.insert(site, cp);
        }
    }
}

/// A member asks us to co-sign its checkpoint.
pub(super) async fn cosign(
    cx: &Context,
    member: &MemberInfo,
    id: u64,
    message_hash: [u8; 32],
    checkpoint: SignedCheckpoint,
) -> Result<(), AppError> {
    let refuse = Response::Refused {
        reason: RefusalReason::Malformed,
    };
    let none = Release::default();
    if checkpoint.verify(&member.signing_key).is_err() || checkpoint.signer != member.site {
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &refuse)
            .await;
    }
    if cx.witnessed().equivocates(&member.site, &checkpoint) {
        cx.audit()
            .record(AuditEvent::Rejected {
                from: member.site.to_string(),
                reason: "checkpoint equivocation".into(),
                message_hash: Some(message_hash),
            })
            .await?;
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &refuse)
            .await;
    }
    cx.witnessed()
        .remember(member.site.clone(), checkpoint.clone());
    let cosignature = Cosignature::sign(
        &checkpoint,
        cx.site().clone(),
        now(),
        cx.identity().signing(),
    );
    let answer = Response::Cosigned { cosignature };
    cx.respond(member, id, MessageKind::Witness, &none, &answer)
        .await
}

/// Asks `to` to co-sign our latest checkpoint; audits and returns its verified co-signature.
pub(super) async fn ask_cosignature(cx: &Context, to: &SiteId) -> Result<Cosignature, AppError> {
    let cp = cx.audit().checkpoint().await?;
    let req = Request::Witness {
        checkpoint: cp.clone(),
    };
    let resp = cx
        .request(to, MessageKind::Witness, &Release::default(), &req, None)
        .await?;
    let cosignature = match resp {
        Response::Cosigned { cosignature } => cosignature,
        Response::Refused { reason } => return Err(AppError::Refused(format!("{reason:?}"))),
        _ => {
            return Err(AppError::BadReply(
                "unexpected response to a witness request".into(),
            ));
        }
    };
    let key = cx.member(to)?.signing_key;
    cosignature
        .verify(&cp, &key)
        .map_err(|e| AppError::BadReply(e.to_string()))?;
    cx.audit()
        .record(AuditEvent::Cosigned {
            by: to.clone(),
            size: cp.size,
            root: cp.root,
        })
        .await?;
    Ok(cosignature)
}

/// Fetches a member's latest signed checkpoint and checks its signature.
pub(crate) async fn fetch_checkpoint(
    cx: &Context,
    from: &SiteId,
) -> Result<SignedCheckpoint, AppError> {
    let resp = cx
        .request(
            from,
            MessageKind::Checkpoint,
            &Release::default(),
            &Request::GetCheckpoint,
            None,
        )
        .await?;
    match resp {
        Response::Checkpoint { checkpoint } => {
            let key = cx.member(from)?.signing_key;
            checkpoint
                .verify(&key)
                .map_err(|e| AppError::BadReply(e.to_string()))?;
            Ok(checkpoint)
        }
        Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
        _ => Err(AppError::BadReply("unexpected response".into())),
    }
}
