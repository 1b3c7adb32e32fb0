//! Witnessing, after C2SP tlog-witness: every node co-signs its members' checkpoints and asks
//! them to co-sign its own. A witness keeps the checkpoint of each log it co-signed last in the
//! site's database (with the `witnessed` entry that records it, in one transaction) and
//! co-signs a new one only with a consistency proof from it; a log that contradicts it (a
//! fork, a rollback, a proof that fails) is refused, and the two signed checkpoints are kept
//! as evidence with an `alarm` entry and passed on to the members. Witnesses also publish what
//! they co-signed, so that a log shown with two roots at one size to two witnesses is caught
//! where their views meet.

use std::collections::HashMap;
use std::sync::Mutex;

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::wire::{
    Cosignature, Gossip, RefusalReason, Request, Response, SignedCheckpoint,
};
use fedanno_protocol::witness::{self as tlog, Evidence, Verdict};

use super::AppError;
use super::context::Context;
use super::members::MemberInfo;
use super::outbound::Release;
use crate::network::audit;
use crate::network::kinds::MessageKind;
use crate::site::clock::now;

/// The latest checkpoint each member published (in memory), and the lock that makes one
/// add-checkpoint decision at a time (read the co-signed state, decide, commit).
#[derive(Default)]
pub(crate) struct Witnessed {
    latest: Mutex<HashMap<SiteId, SignedCheckpoint>>,
    deciding: tokio::sync::Mutex<()>,
}

impl Witnessed {
    pub(super) fn latest(&self, site: &SiteId) -> Option<SignedCheckpoint> {
        self.latest.lock().ok()?.get(site).cloned()
    }

    pub(super) fn remember(&self, site: SiteId, cp: SignedCheckpoint) {
        if let Ok(mut m) = self.latest.lock() {
            m.insert(site, cp);
        }
    }
}

/// A member asks us to co-sign its checkpoint, with a consistency proof from `old_size`.
pub(super) async fn cosign(
    cx: &Context,
    member: &MemberInfo,
    id: u64,
    old_size: u64,
    proof: Vec<[u8; 32]>,
    checkpoint: SignedCheckpoint,
) -> Result<(), AppError> {
    let none = Release::default();
    let refuse = |reason| Response::Refused { reason };
    if !is_own_checkpoint(cx, member, &checkpoint) {
        let r = refuse(RefusalReason::Malformed);
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &r)
            .await;
    }
    let guard = cx.witnessed().deciding.lock().await;
    let latest = cx.audit().witness_latest(&member.site).await?;
    let verdict = tlog::add_checkpoint(latest.as_ref(), old_size, &proof, &checkpoint);
    let answer = match (verdict, latest) {
        (Verdict::Cosign, _) => {
            cx.audit().witnessed(checkpoint.clone()).await?;
            drop(guard);
            let cosignature = Cosignature::sign(
                &checkpoint,
                cx.site().clone(),
                now(),
                cx.identity().signing(),
            );
            let r = Response::Cosigned {
                cosignature: cosignature.clone(),
            };
            cx.respond(member, id, MessageKind::Witness, &none, &r)
                .await?;
            // What we co-signed, for the other members to hold against what they co-signed.
            let g = Gossip::Cosigned {
                checkpoint,
                cosignature,
            };
            if let Err(e) = cx.publish(MessageKind::Witness, &g).await {
                tracing::debug!(error = %e, "cannot publish a co-signed checkpoint");
            }
            return Ok(());
        }
        (Verdict::Conflict { size }, _) => Response::WitnessConflict { size },
        (Verdict::Contradicts(kind), Some(earlier)) => {
            drop(guard);
            let evidence = Evidence {
                kind,
                earlier,
                later: checkpoint,
            };
            raise(cx, evidence, cx.site().clone()).await;
            refuse(RefusalReason::Inconsistent)
        }
        (Verdict::Contradicts(_), None) => refuse(RefusalReason::Malformed),
    };
    cx.respond(member, id, MessageKind::Refusal, &none, &answer)
        .await
}

/// Whether `cp` is a checkpoint of `member`'s own log: signed by it with its key, under its
/// log's origin in this consortium.
pub(crate) fn is_own_checkpoint(cx: &Context, member: &MemberInfo, cp: &SignedCheckpoint) -> bool {
    cp.signer == member.site
        && cp.origin == audit::origin(cx.identity().consortium(), &member.site)
        && cp.verify(&member.signing_key).is_ok()
}

/// Records an alarm (once per contradicting checkpoint) and, when we found it, passes the
/// evidence on to the members.
pub(super) async fn raise(cx: &Context, evidence: Evidence, reported_by: SiteId) {
    tracing::error!(
        site = %evidence.later.signer,
        contradiction = evidence.kind.as_str(),
        earlier_size = evidence.earlier.size,
        later_size = evidence.later.size,
        reported_by = %reported_by,
        "witness alarm: a member's log contradicts a checkpoint a witness co-signed"
    );
    let ours = &reported_by == cx.site();
    match cx.audit().alarm(evidence.clone(), reported_by).await {
        Ok(Some(_)) if ours => {
            if let Err(e) = cx
                .publish(MessageKind::Witness, &Gossip::Alarm { evidence })
                .await
            {
                tracing::warn!(error = %e, "cannot pass on a witness alarm");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot record a witness alarm"),
    }
    cx.bump();
}

/// A checkpoint of `site`'s log seen without a proof (published by its owner, `newer` than
/// what we co-signed, or by a witness): an alarm if it contradicts what we co-signed.
pub(super) async fn check_seen(cx: &Context, cp: SignedCheckpoint, newer_than_cosigned: bool) {
    let latest = match cx.audit().witness_latest(&cp.signer).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the witness state");
            return;
        }
    };
    let newer = newer_than_cosigned && cp.timestamp > latest.timestamp;
    if let Some(kind) = tlog::contradiction(&latest, &cp, newer) {
        let evidence = Evidence {
            kind,
            earlier: latest,
            later: cp,
        };
        raise(cx, evidence, cx.site().clone()).await;
    }
}

/// A member published a checkpoint it co-signed: checked with both keys, then held against
/// what we co-signed of the same log.
pub(super) async fn cosigned_elsewhere(
    cx: &Context,
    witness: &MemberInfo,
    checkpoint: SignedCheckpoint,
    cosignature: Cosignature,
) -> Result<(), String> {
    if cosignature.witness != witness.site
        || cosignature
            .verify(&checkpoint, &witness.signing_key)
            .is_err()
    {
        return Err("a co-signature that does not verify".into());
    }
    if &checkpoint.signer == cx.site() {
        return Ok(());
    }
    let Some(key) = cx.members().signing_key(&checkpoint.signer) else {
        return Ok(()); // A log whose owner we cannot check is not ours to judge.
    };
    if checkpoint.verify(&key).is_err() {
        return Err("a co-signed checkpoint its owner did not sign".into());
    }
    check_seen(cx, checkpoint, false).await;
    Ok(())
}

/// A member passed on an alarm: checked (coherent, both checkpoints signed by the accused,
/// whose key this node must hold), then recorded as that member's report.
pub(super) async fn alarm_heard(
    cx: &Context,
    witness: &MemberInfo,
    evidence: Evidence,
) -> Result<(), String> {
    if !evidence.coherent() {
        return Err("alarm evidence that does not hold together".into());
    }
    let accused = evidence.later.signer.clone();
    let key = if &accused == cx.site() {
        Some(cx.audit().public_key())
    } else {
        cx.members().signing_key(&accused)
    };
    // Evidence is recorded only once its signatures are checked: a member cannot fill the
    // alarm table with checkpoints nobody signed (each stored alarm is a checkpoint the
    // accused really signed).
    let Some(key) = key else {
        tracing::debug!(site = %accused, "an alarm about a site whose key this node does not hold now: not recorded");
        return Ok(());
    };
    if evidence.earlier.verify(&key).is_err() || evidence.later.verify(&key).is_err() {
        return Err("alarm evidence not signed by the accused site".into());
    }
    raise(cx, evidence, witness.site.clone()).await;
    Ok(())
}

/// Asks `to` to co-sign our checkpoint `cp` (tlog-witness add-checkpoint, from the size it
/// co-signed last, once more from the size it names if that differs); keeps and audits its
/// verified co-signature.
pub(super) async fn ask_cosignature(
    cx: &Context,
    to: &SiteId,
    cp: &SignedCheckpoint,
) -> Result<Cosignature, AppError> {
    let mut old = cx.audit().cosigned_size(to).await?;
    for _ in 0..2 {
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else if old > cp.size {
            return Err(AppError::Refused(format!(
                "{to} co-signed {old} entries of this site's log, which now has {}: entries were removed",
                cp.size
            )));
        } else {
            cx.audit()
                .prove_consistency(old, Some(cp.size))
                .await?
                .proof
        };
        let req = Request::Witness {
            old_size: old,
            proof,
            checkpoint: cp.clone(),
        };
        match cx
            .request(to, MessageKind::Witness, &Release::default(), &req, None)
            .await?
        {
            Response::Cosigned { cosignature } => {
                let key = cx.member(to)?.signing_key;
                if &cosignature.witness != to {
                    return Err(AppError::BadReply("a co-signature by another site".into()));
                }
                cosignature
                    .verify(cp, &key)
                    .map_err(|e| AppError::BadReply(e.to_string()))?;
                cx.audit()
                    .keep_cosignature(cp.clone(), cosignature.clone())
                    .await?;
                return Ok(cosignature);
            }
            Response::WitnessConflict { size } => old = size,
            Response::Refused { reason } => return Err(AppError::Refused(format!("{reason:?}"))),
            _ => {
                return Err(AppError::BadReply(
                    "unexpected response to a witness request".into(),
                ));
            }
        }
    }
    Err(AppError::Refused(format!(
        "{to} answered with a different co-signed size twice"
    )))
}

/// Signs a checkpoint, publishes it, and asks every connected member to co-sign it; returns
/// the co-signatures received (failures are logged).
pub(super) async fn witness_round(cx: &Context) -> Result<Vec<Cosignature>, AppError> {
    Ok(witness_round_checkpoint(cx).await?.1)
}

/// [`witness_round`], returning the checkpoint too (a study milestone shows both).
pub(crate) async fn witness_round_checkpoint(
    cx: &Context,
) -> Result<(SignedCheckpoint, Vec<Cosignature>), AppError> {
    if cx.identity().fetch_only() {
        // An auditor's log is its own business: nobody witnesses it.
        return Ok((cx.audit().checkpoint().await?, Vec::new()));
    }
    let cp = cx.checkpoint().await?;
    let mut got = Vec::new();
    let policy = &cx.policy().witness;
    for m in cx
        .members()
        .all()
        .into_iter()
        .filter(|m| !m.fetch_only() && policy.asks(&m.site))
    {
        match ask_cosignature(cx, &m.site, &cp).await {
            Ok(c) => got.push(c),
            Err(e) => tracing::warn!(witness = %m.site, error = %e, "no co-signature"),
        }
    }
    Ok((cp, got))
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
