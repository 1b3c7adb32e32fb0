//! Auditors. A member whose certificate has only the `auditor` role may fetch audit material
//! from a site, and nothing else: the site's heads (a fresh checkpoint, its certificate, the
//! co-signatures it holds, the checkpoints it co-signed last), pages of its entries, and
//! inclusion and consistency proofs. The site's policy decides each answer (`audit-proof`,
//! `audit-entries` to role `auditor`) and its `[auditors]` scope which entries go whole; the
//! others are withheld as their leaf hash. Every fetch is audited at the site like any other
//! message: received, decision, sent.
//!
//! An auditor's node ([`fetch`]) rebuilds the log it fetched against the signed checkpoint,
//! holds the checkpoint against the one it fetched last from the same site (a consistency
//! proof, as a witness would, without co-signing; a contradiction is an alarm at the auditor)
//! and returns a bundle that `audit cross-check` reads like an export.

use fedanno_protocol::codec;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::limits::{MAX_AUDIT_HEADS, MAX_AUDIT_PAGE};
use fedanno_protocol::merkle;
use fedanno_protocol::wire::{
    AuditAnswer, AuditEntry, AuditHeads, AuditQuery, CosignedHead, RefusalReason, Request,
    Response, SignedCheckpoint,
};
use fedanno_protocol::witness::{self as tlog, Evidence, Verdict};
use serde::{Deserialize, Serialize};

use super::AppError;
use super::context::Context;
use super::members::MemberInfo;
use super::outbound::Release;
use super::witness;
use crate::network::audit::AuditError;
use crate::network::audit::bundle::{self, Bundle, BundleEntry, CosignedHead as BundleHead};
use crate::network::kinds::MessageKind;
use crate::site::identity::hex;
use crate::site::store::AuditStoreError;

/// Entry body bytes in one page, well inside an envelope.
const PAGE_BYTES: usize = 2 << 20;

/// The message kind of a query and of its answer.
pub(super) fn kind_of(q: &AuditQuery) -> MessageKind {
    match q {
        AuditQuery::Entries { .. } => MessageKind::AuditEntries,
        _ => MessageKind::AuditProof,
    }
}

/// Answers an auditor's query, if this site's policy lets it have the answer.
pub(super) async fn answer(
    cx: &Context,
    member: &MemberInfo,
    id: u64,
    q: AuditQuery,
) -> Result<(), AppError> {
    let none = Release::default();
    let kind = kind_of(&q);
    let refuse = |reason| Response::Refused { reason };
    if cx.identity().fetch_only() {
        // An auditor's node fetches; its own log is not for others to page through.
        let r = refuse(RefusalReason::NotPermitted);
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &r)
            .await;
    }
    if let Err(e) = cx.gate(kind, &none, Some(member)).await {
        tracing::info!(auditor = %member.site, error = %e, "an auditor's fetch is refused by policy");
        let r = refuse(RefusalReason::PolicyDenied);
        return cx
            .respond(member, id, MessageKind::Refusal, &none, &r)
            .await;
    }
    let a = match q {
        AuditQuery::Heads => heads(cx).await,
        AuditQuery::Entries { from, count } => entries(cx, from, count).await,
        AuditQuery::Consistency { old_size, new_size } => cx
            .audit()
            .prove_consistency(old_size, Some(new_size))
            .await
            .map(|p| AuditAnswer::Proof { hashes: p.proof }),
        AuditQuery::Inclusion { index, size } => cx
            .audit()
            .prove_inclusion(index, Some(size))
            .await
            .map(|p| AuditAnswer::Proof { hashes: p.proof }),
    };
    match a {
        Ok(a) => {
            cx.respond_gated(member, id, kind, None, &Response::Audit(a))
                .await
        }
        // Sizes or an index the log does not have: a refusal, not a failure of ours.
        Err(AuditError::Store(AuditStoreError::OutOfRange { .. })) => {
            let r = refuse(RefusalReason::Malformed);
            cx.respond(member, id, MessageKind::Refusal, &none, &r)
                .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn heads(cx: &Context) -> Result<AuditAnswer, AuditError> {
    let checkpoint = cx.audit().checkpoint().await?;
    let all = cx.audit().cosignatures().await?;
    let skip = all.len().saturating_sub(MAX_AUDIT_HEADS);
    let cosignatures = all
        .into_iter()
        .skip(skip)
        .map(|(size, root, cosignature)| CosignedHead {
            size,
            root,
            cosignature,
        })
        .collect();
    let mut witnessed = cx.audit().all_witnessed().await?;
    witnessed.truncate(MAX_AUDIT_HEADS);
    Ok(AuditAnswer::Heads(Box::new(AuditHeads {
        checkpoint,
        certificate: cx.identity().certificate().clone(),
        cosignatures,
        witnessed,
    })))
}

/// A page of entries from `from`: whole when in the auditors' scope, else withheld.
async fn entries(cx: &Context, from: u64, count: u32) -> Result<AuditAnswer, AuditError> {
    let count = count.min(MAX_AUDIT_PAGE as u32);
    let rows = cx.audit().raw_entries(from, count).await?;
    let scope = &cx.policy().auditors;
    let mut out = Vec::with_capacity(rows.len());
    let mut bytes = 0;
    for r in rows {
        let (Ok(leaf), Ok(signature)) = (r.leaf_hash.try_into(), r.signature.try_into()) else {
            return Err(AuditError::ProofMismatch);
        };
        let whole = scope.covers(r.study.as_deref());
        bytes += if whole { r.body.len() } else { 32 };
        if bytes > PAGE_BYTES && !out.is_empty() {
            break;
        }
        out.push(AuditEntry {
            seq: r.seq.max(0) as u64,
            body: whole.then_some(r.body),
            leaf,
            signature,
        });
    }
    Ok(AuditAnswer::Entries { entries: out })
}

/// What an auditor's fetch from one site found.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fetched {
    pub site: SiteId,
    /// The size of the signed checkpoint the entries were fetched up to.
    pub size: u64,
    /// Entries the site withheld (outside this auditor's scope).
    pub withheld: u64,
    /// The size of the checkpoint this auditor fetched last from the site, which the new one
    /// was proven consistent with.
    pub consistent_with: Option<u64>,
    pub bundle: Bundle,
}

/// Sends one query to `from` and returns its answer.
async fn ask(cx: &Context, from: &SiteId, q: AuditQuery) -> Result<AuditAnswer, AppError> {
    let kind = kind_of(&q);
    match cx
        .request(from, kind, &Release::default(), &Request::Audit(q), None)
        .await?
    {
        Response::Audit(a) => Ok(a),
        Response::Refused { reason } => Err(AppError::Refused(format!(
            "{from} refused the auditor's fetch: {reason:?}"
        ))),
        _ => Err(AppError::BadReply("unexpected answer to a fetch".into())),
    }
}

/// An auditor's node fetches `from`'s log up to a fresh signed checkpoint and checks it.
pub(super) async fn fetch(cx: &Context, from: &SiteId) -> Result<Fetched, AppError> {
    let member = cx.member(from)?;
    let bad = |what: &str| AppError::BadReply(format!("{from}: {what}"));
    let AuditAnswer::Heads(heads) = ask(cx, from, AuditQuery::Heads).await? else {
        return Err(bad("heads expected"));
    };
    let AuditHeads {
        checkpoint,
        certificate,
        cosignatures,
        witnessed,
    } = *heads;
    let origin = checkpoint.origin.clone();
    let cert_key = certificate.body_unverified().map(|b| b.signing_key);
    if !witness::is_own_checkpoint(cx, &member, &checkpoint)
        || cert_key.ok() != Some(member.signing_key)
    {
        return Err(bad("a checkpoint or certificate that is not its own"));
    }
    let consistent_with = hold_against_last(cx, from, &checkpoint).await?;
    let entries = fetch_entries(cx, from, checkpoint.size).await?;
    let b = Bundle {
        format: bundle::FORMAT.into(),
        site: from.clone(),
        certificate: hex(&certificate.to_bytes()),
        entries,
        checkpoints: vec![hex(&codec::encode(&checkpoint))],
        cosignatures: cosignatures
            .iter()
            .map(|c| BundleHead {
                size: c.size,
                root: hex(&c.root),
                cosignature: hex(&codec::encode(&c.cosignature)),
            })
            .collect(),
        witnessed: witnessed.iter().map(|c| hex(&codec::encode(c))).collect(),
    };
    let (bundle, withheld) = bundle::check_fetched(
        b,
        member.signing_key,
        origin,
        checkpoint.size,
        checkpoint.root,
    )
    .map_err(|e| bad(&crate::errors::chain(&e)))?;
    Ok(Fetched {
        site: from.clone(),
        size: checkpoint.size,
        withheld,
        consistent_with,
        bundle,
    })
}

/// Holds `cp` against the checkpoint of `from` this auditor kept last: consistent (proven by
/// the site), it is kept instead; contradicting, the evidence is an alarm here and the fetch
/// fails. Returns the size it was proven consistent with.
async fn hold_against_last(
    cx: &Context,
    from: &SiteId,
    cp: &SignedCheckpoint,
) -> Result<Option<u64>, AppError> {
    let last = cx.audit().witness_latest(from).await?;
    let (old, proof) = match &last {
        Some(l) if l.size > 0 && l.size < cp.size => {
            let q = AuditQuery::Consistency {
                old_size: l.size,
                new_size: cp.size,
            };
            match ask(cx, from, q).await? {
                AuditAnswer::Proof { hashes } => (l.size, hashes),
                _ => return Err(AppError::BadReply("a proof expected".into())),
            }
        }
        Some(l) => (l.size, Vec::new()),
        None => (0, Vec::new()),
    };
    match (tlog::add_checkpoint(last.as_ref(), old, &proof, cp), last) {
        (Verdict::Cosign, last) => {
            cx.audit().witnessed(cp.clone()).await?;
            Ok(last.map(|l| l.size))
        }
        (Verdict::Contradicts(kind), Some(earlier)) => {
            let evidence = Evidence {
                kind,
                earlier,
                later: cp.clone(),
            };
            witness::raise(cx, evidence, cx.site().clone()).await;
            Err(AppError::Refused(format!(
                "{from}'s log contradicts the checkpoint this auditor fetched before ({}): alarm recorded",
                kind.as_str()
            )))
        }
        _ => Err(AppError::BadReply(format!(
            "{from} did not prove its log consistent with the last one fetched"
        ))),
    }
}

/// Entries `0..size`, page by page, each checked to be the next one and to hash to its leaf.
async fn fetch_entries(
    cx: &Context,
    from: &SiteId,
    size: u64,
) -> Result<Vec<BundleEntry>, AppError> {
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let at = out.len() as u64;
        let q = AuditQuery::Entries {
            from: at,
            count: (size - at).min(MAX_AUDIT_PAGE as u64) as u32,
        };
        let AuditAnswer::Entries { entries } = ask(cx, from, q).await? else {
            return Err(AppError::BadReply("entries expected".into()));
        };
        if entries.is_empty() {
            return Err(AppError::BadReply(format!(
                "{from} has no entry {at} although its checkpoint has {size}"
            )));
        }
        for e in entries.into_iter().take((size - at) as usize) {
            let seq = out.len() as u64;
            let leaf_ok = e
                .body
                .as_ref()
                .is_none_or(|b| merkle::leaf_hash(b) == e.leaf);
            if e.seq != seq || !leaf_ok {
                return Err(AppError::BadReply(format!(
                    "{from} sent entry {} where {seq} belongs, or a body that is not its leaf",
                    e.seq
                )));
            }
            out.push(BundleEntry {
                seq,
                body: e.body.as_deref().map(hex).unwrap_or_default(),
                leaf: e.body.is_none().then(|| hex(&e.leaf)),
                signature: hex(&e.signature),
            });
        }
    }
    Ok(out)
}
