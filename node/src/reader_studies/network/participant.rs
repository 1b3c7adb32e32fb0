//! The site's side of a reader study: answering announcements, decisions, progress, rosters,
//! inputs, statements and releases, with every check a contribution needs before it leaves.

use std::collections::BTreeSet;
use std::sync::Arc;

use fedanno_protocol::crypto;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::reader_study::{
    ReadCount, ReaderStudyRequest, ReaderStudyResponse, SignedManifest,
};
use fedanno_protocol::secagg::{self, MaskedInput, RoundKey, SignedRoster, SubmissionStatement};
use fedanno_protocol::wire::{RefusalReason, Request, Response};

use super::{ReaderStudyRuntime, Refusal, local_data, new_secret, note, participating};
use crate::network::kinds::MessageKind;
use crate::network::node::context::Context;
use crate::network::node::outbound::Release;
use crate::network::node::{AppError, MemberInfo, issue_receipt, witness_round_checkpoint};
use crate::network::policy::Outbound;
use crate::reader_studies::ReaderStudyError;
use crate::reader_studies::jobs::{self, ConsensusOutcome, Job, LocalData, Statistic};
use crate::reader_studies::local;
use crate::reader_studies::manifest::Manifest;
use crate::reader_studies::states::{ReaderStudyRole, ReaderStudyState, ReleaseKind, SiteStatus};
use crate::site::store::{ReaderStudyRow, SubmissionRow};
use fedanno_protocol::cert::Role;

/// How long a site waits for another site's submission statement.
const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One request being answered: who sent it, on which request id, with which message hash.
struct Asked<'a> {
    cx: &'a Context,
    member: &'a MemberInfo,
    id: u64,
    message_hash: [u8; 32],
}

impl Asked<'_> {
    /// Answers with a receipt (the message was logged).
    async fn receipt(&self, study: &str) -> Result<(), AppError> {
        let r = issue_receipt(self.cx, self.member, self.message_hash).await?;
        self.cx
            .respond(
                self.member,
                self.id,
                MessageKind::Receipt,
                &Release::of(study),
                &r,
            )
            .await
    }

    /// Refuses with `reason`; the detail is audited under the study when it names one.
    async fn refuse(
        &self,
        study: Option<&str>,
        reason: RefusalReason,
        why: String,
    ) -> Result<(), AppError> {
        match study {
            Some(st) => {
                let what = format!("refused a request from {}: {why}", self.member.site);
                note(self.cx, st, what).await?
            }
            None => tracing::warn!(from = %self.member.site, "refused a study request: {why}"),
        }
        let r = Response::Refused { reason };
        self.cx
            .respond(
                self.member,
                self.id,
                MessageKind::Refusal,
                &Release::default(),
                &r,
            )
            .await
    }

    async fn refusal(&self, study: &str, r: Refusal) -> Result<(), AppError> {
        let (reason, why) = match r {
            Refusal::Policy(why) => (RefusalReason::PolicyDenied, why),
            Refusal::Malformed(why) => (RefusalReason::Malformed, why),
            Refusal::Internal(e) => (RefusalReason::Busy, e.to_string()),
        };
        self.refuse(Some(study), reason, why).await
    }

    /// The reader study a request names, if this site knows it and `check` accepts its row;
    /// otherwise the request is refused as malformed (and `None` returned).
    async fn reader_study(
        &self,
        study: &str,
        check: impl FnOnce(&ReaderStudyRow) -> Result<(), String>,
    ) -> Result<Option<ReaderStudyRow>, AppError> {
        let Some(row) = self
            .cx
            .store()
            .reader_study(study)
            .await
            .map_err(ReaderStudyError::from)?
        else {
            let why = "unknown study".to_string();
            self.refuse(None, RefusalReason::Malformed, why).await?;
            return Ok(None);
        };
        if let Err(why) = check(&row) {
            self.refusal(study, Refusal::Malformed(why)).await?;
            return Ok(None);
        }
        Ok(Some(row))
    }
}

/// Handles one reader-study request from a proven member.
pub(crate) async fn handle(
    cx: &Context,
    member: &MemberInfo,
    id: u64,
    message_hash: [u8; 32],
    req: ReaderStudyRequest,
) -> Result<(), AppError> {
    let a = Asked {
        cx,
        member,
        id,
        message_hash,
    };
    match req {
        ReaderStudyRequest::Announce { manifest } => announce(&a, manifest).await,
        ReaderStudyRequest::Decision {
            study,
            manifest_hash,
            joined,
        } => decision(&a, &study, manifest_hash, joined).await,
        ReaderStudyRequest::Progress {
            study,
            cases,
            reads,
        } => progress(&a, &study, cases, reads).await,
        ReaderStudyRequest::Keys { roster } => keys(&a, &roster).await,
        ReaderStudyRequest::Input { roster, keys, job } => input(&a, &roster, &keys, &job).await,
        ReaderStudyRequest::Statement { roster_hash } => statement(&a, roster_hash).await,
        ReaderStudyRequest::Release { study, what, body } => {
            release(&a, &study, &what, &body).await
        }
        ReaderStudyRequest::Witness { study } => witness_now(&a, &study).await,
    }
}

/// The coordinator's milestone before its report: this site has its checkpoint co-signed by
/// its witnesses now and answers with it and the co-signatures.
async fn witness_now(a: &Asked<'_>, study: &str) -> Result<(), AppError> {
    let coordinator = a.member.site.as_str();
    let check = |row: &ReaderStudyRow| {
        if row.coordinator != coordinator {
            return Err(
                "a witness milestone from a site that does not coordinate the study".into(),
            );
        }
        Ok(())
    };
    if a.reader_study(study, check).await?.is_none() {
        return Ok(());
    }
    let (checkpoint, cosignatures) = witness_round_checkpoint(a.cx).await?;
    let what = format!(
        "checkpoint of size {} co-signed by {} witnesses for the coordinator's milestone",
        checkpoint.size,
        cosignatures.len()
    );
    note(a.cx, study, what).await?;
    let answer = Response::ReaderStudy(ReaderStudyResponse::Witnessed {
        checkpoint,
        cosignatures,
    });
    a.cx.respond(
        a.member,
        a.id,
        MessageKind::Witness,
        &Release::of(study),
        &answer,
    )
    .await
}

/// The coordinator records a participant's decision.
async fn decision(
    a: &Asked<'_>,
    study: &str,
    manifest_hash: [u8; 32],
    joined: bool,
) -> Result<(), AppError> {
    let site = a.member.site.as_str();
    let check = |row: &ReaderStudyRow| {
        let m = Manifest::parse(&row.manifest).map_err(|e| e.to_string())?;
        let participant = m.participants.sites.iter().any(|x| x == site);
        if row.role != ReaderStudyRole::Coordinator
            || row.manifest_hash != manifest_hash
            || !participant
        {
            return Err("a decision on another manifest or from a non-participant".into());
        }
        Ok(())
    };
    if a.reader_study(study, check).await?.is_none() {
        return Ok(());
    }
    let status = if joined {
        SiteStatus::Joined
    } else {
        SiteStatus::Declined
    };
    a.cx.store()
        .set_reader_study_site(study, site, status, None, None)
        .await
        .map_err(ReaderStudyError::from)?;
    note(a.cx, study, format!("{site} {status}")).await?;
    a.cx.bump();
    a.receipt(study).await
}

/// The coordinator records a participant's assigned cases and reads.
async fn progress(
    a: &Asked<'_>,
    study: &str,
    cases: u64,
    reads: Vec<ReadCount>,
) -> Result<(), AppError> {
    let check = |row: &ReaderStudyRow| {
        if row.role != ReaderStudyRole::Coordinator {
            return Err("progress sent to a non-coordinator".into());
        }
        Ok(())
    };
    if a.reader_study(study, check).await?.is_none() {
        return Ok(());
    }
    let site = a.member.site.as_str();
    a.cx.store()
        .set_reader_study_site(study, site, SiteStatus::Assigned, Some(cases), Some(reads))
        .await
        .map_err(ReaderStudyError::from)?;
    note(a.cx, study, format!("{site} assigned {cases} cases")).await?;
    a.cx.bump();
    a.receipt(study).await
}

/// A roster: answer with this site's signed round key.
async fn keys(a: &Asked<'_>, roster: &SignedRoster) -> Result<(), AppError> {
    let study = roster.roster.study.as_str();
    match round_key(a.cx, Some(a.member), roster).await {
        Ok(key) => {
            let answer = Response::ReaderStudy(ReaderStudyResponse::Key { key });
            let kind = MessageKind::SecaggKeys;
            a.cx.respond(a.member, a.id, kind, &Release::of(study), &answer)
                .await
        }
        Err(r) => a.refusal(study, r).await,
    }
}

/// An input request: answer with this site's masked vector.
async fn input(
    a: &Asked<'_>,
    roster: &SignedRoster,
    keys: &[RoundKey],
    job: &[u8],
) -> Result<(), AppError> {
    let study = roster.roster.study.as_str();
    #[cfg(feature = "test-hooks")]
    if a.cx.reader_studies().faults.silent_now() {
        tracing::warn!(study = %study, "fault injection: not answering an input request");
        return Ok(());
    }
    match contribute(a.cx, Some(a.member), roster, keys, job).await {
        Ok((input, _)) => {
            // `contribute` has put the masked vector through the gate and recorded it.
            let answer = Response::ReaderStudy(ReaderStudyResponse::Masked { input });
            a.cx.respond_gated(
                a.member,
                a.id,
                MessageKind::MaskedVector,
                Some(study),
                &answer,
            )
            .await
        }
        Err(r) => a.refusal(study, r).await,
    }
}

/// Another site asks whether this site submitted under a roster.
async fn statement(a: &Asked<'_>, roster_hash: [u8; 32]) -> Result<(), AppError> {
    let submitted =
        a.cx.store()
            .submitted_under(roster_hash)
            .await
            .map_err(ReaderStudyError::from)?;
    let signing = a.cx.identity().signing();
    let statement =
        SubmissionStatement::sign_for(roster_hash, a.cx.site().clone(), submitted, signing);
    let answer = Response::ReaderStudy(ReaderStudyResponse::Statement { statement });
    let kind = MessageKind::SecaggStatement;
    a.cx.respond(a.member, a.id, kind, &Release::default(), &answer)
        .await
}

/// The coordinator releases a result (consensus or report) to this site.
async fn release(a: &Asked<'_>, study: &str, what: &str, body: &[u8]) -> Result<(), AppError> {
    let coordinator = a.member.site.as_str();
    let check = |row: &ReaderStudyRow| {
        if row.coordinator != coordinator {
            return Err("a release from a site that does not coordinate the study".into());
        }
        Ok(())
    };
    let Some(row) = a.reader_study(study, check).await? else {
        return Ok(());
    };
    match accept_release(a.cx, &row, what, body).await {
        Ok(()) => a.receipt(study).await,
        Err(e) => {
            let r = Refusal::Malformed(e.to_string());
            a.refusal(study, r).await
        }
    }
}

/// A manifest announced by a certified coordinator: checked and stored.
async fn announce(a: &Asked<'_>, manifest: SignedManifest) -> Result<(), AppError> {
    let study = manifest.study.clone();
    let coordinator = &a.member.site;
    if manifest.coordinator != *coordinator || !a.member.has_role(Role::Coordinator) {
        let why = format!(
            "an announcement of study {study} from a site that is not a certified coordinator"
        );
        return a.refuse(None, RefusalReason::PolicyDenied, why).await;
    }
    if manifest.verify(&a.member.signing_key).is_err() {
        let why = "a manifest with a bad signature".to_string();
        return a.refuse(None, RefusalReason::Malformed, why).await;
    }
    let m = match Manifest::parse(&manifest.text) {
        Ok(m) if m.study.id == study && m.study.coordinator == coordinator.as_str() => m,
        Ok(_) => {
            let why = "the manifest's id or coordinator differs from its envelope".to_string();
            return a.refuse(None, RefusalReason::Malformed, why).await;
        }
        Err(e) => {
            let why = format!("an invalid manifest: {e}");
            return a.refuse(None, RefusalReason::Malformed, why).await;
        }
    };
    let row = ReaderStudyRow {
        study: study.clone(),
        manifest: manifest.text.clone(),
        coordinator: coordinator.to_string(),
        signature: manifest.signature.to_vec(),
        manifest_hash: manifest.hash().to_vec(),
        role: ReaderStudyRole::Participant,
        state: ReaderStudyState::Announced,
        decision: Vec::new(),
        received_at: 0,
        updated_at: 0,
    };
    match a.cx.store().put_reader_study(row).await {
        Ok(new) => {
            if new {
                let what = format!("announced by {coordinator}: {:?}", m.study.title);
                note(a.cx, &study, what).await?;
            }
            a.cx.bump();
            a.receipt(&study).await
        }
        Err(e) => {
            a.refuse(Some(&study), RefusalReason::Malformed, e.to_string())
                .await
        }
    }
}

async fn accept_release(
    cx: &Context,
    row: &ReaderStudyRow,
    what: &str,
    body: &[u8],
) -> Result<(), AppError> {
    let m = Manifest::parse(&row.manifest).map_err(ReaderStudyError::from)?;
    let bad = |w: String| AppError::from(ReaderStudyError::Release(w));
    match what
        .parse::<ReleaseKind>()
        .map_err(|e| bad(e.to_string()))?
    {
        ReleaseKind::Consensus => {
            let outcome = ConsensusOutcome::from_bytes(body).map_err(|e| bad(e.to_string()))?;
            store_consensus(cx, &m, &outcome).await?;
            cx.store()
                .set_reader_study_state(&m.study.id, ReaderStudyState::Completed, None)
                .await
                .map_err(ReaderStudyError::from)?;
        }
        ReleaseKind::Report => {
            let text =
                std::str::from_utf8(body).map_err(|_| bad("a report that is not UTF-8".into()))?;
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| bad(e.to_string()))?;
            cx.store()
                .put_reader_study_result(&m.study.id, ReleaseKind::Report, text.to_string())
                .await
                .map_err(ReaderStudyError::from)?;
            note(cx, &m.study.id, "received the study report".into()).await?;
        }
    }
    cx.bump();
    Ok(())
}

/// Stores a consensus as annotations of the consensus reader, from the data the rounds used
/// (loaded once per assignment), not a second read of the store.
pub(super) async fn store_consensus(
    cx: &Context,
    m: &Manifest,
    outcome: &ConsensusOutcome,
) -> Result<(), AppError> {
    let data = local_data(cx, m).await?;
    let n = local::store_consensus(cx.store(), m, &data, outcome)
        .await
        .map_err(ReaderStudyError::from)?;
    let json = serde_json::to_string(outcome).unwrap_or_default();
    cx.store()
        .put_reader_study_result(&m.study.id, ReleaseKind::Consensus, json)
        .await
        .map_err(ReaderStudyError::from)?;
    let what = format!(
        "stored the consensus of {n} cases as annotations of reader {}",
        local::CONSENSUS_READER
    );
    note(cx, &m.study.id, what).await
}

/// Checks a roster sent by `from` (None: ourselves as coordinator) for a round we take part
/// in, and returns this site's data for it.
async fn check_roster(
    cx: &Context,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
) -> Result<Arc<LocalData>, Refusal> {
    let r = &signed.roster;
    let Some(row) = cx
        .store()
        .reader_study(&r.study)
        .await
        .map_err(ReaderStudyError::from)?
    else {
        return Err(Refusal::Malformed("a round of an unknown study".into()));
    };
    let coordinator_key = match from {
        Some(member) => {
            if row.coordinator != member.site.as_str() || r.coordinator != member.site {
                return Err(Refusal::Malformed(
                    "a roster from a site that does not coordinate the study".into(),
                ));
            }
            member.signing_key
        }
        None => cx.identity().public_key(),
    };
    signed
        .verify(&coordinator_key)
        .map_err(|e| Refusal::Malformed(format!("roster: {e}")))?;
    if r.index_of(cx.site()).is_none() {
        return Err(Refusal::Malformed("a roster without this site".into()));
    }
    if !participating(cx, &row).await? {
        return Err(Refusal::Policy("this site has not joined the study".into()));
    }
    let m = Manifest::parse(&row.manifest).map_err(ReaderStudyError::from)?;
    if r.min_sites < m.privacy.min_sites || (r.sites.len() as u32) < m.privacy.min_sites {
        return Err(Refusal::Policy(format!(
            "a roster of {} sites below the study's minimum of {}",
            r.sites.len(),
            m.privacy.min_sites
        )));
    }
    Ok(local_data(cx, &m).await?)
}

/// What the gate needs to know about this site's masked vector under a roster.
fn vector_release(r: &secagg::Roster, statistic: Statistic, cases: u64) -> Release<'_> {
    Release {
        reader_study: Some(&r.study),
        statistic: Some(statistic),
        contributing_sites: Some(r.sites.len() as u32),
        cases: Some(cases),
        seal: false,
    }
}

/// The round key for a roster (site side, and the coordinator's own).
pub(super) async fn round_key(
    cx: &Context,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
) -> Result<RoundKey, Refusal> {
    let data = check_roster(cx, from, signed).await?;
    let r = &signed.roster;
    if let Some(member) = from {
        // Refuse early when the policy would refuse the masked vector anyway.
        let statistic = r
            .schema
            .parse()
            .map_err(|e: crate::vocabulary::UnknownWord| {
                Refusal::Malformed(format!("roster: {e}"))
            })?;
        let rel = vector_release(r, statistic, data.cases());
        let d = cx.policy().decide(&Outbound {
            kind: MessageKind::MaskedVector,
            to_roles: Some(&member.roles),
            statistic: rel.statistic,
            contributing_sites: rel.contributing_sites,
            cases: rel.cases,
        });
        if !d.allowed {
            // Audits the decision.
            let _ = cx.gate(MessageKind::MaskedVector, &rel, Some(member)).await;
            return Err(Refusal::Policy(d.reasons.join("; ")));
        }
    }
    let secret = new_secret()?;
    let key = RoundKey::sign(r, cx.site().clone(), &secret, cx.identity().signing());
    cx.reader_studies().keep_secret(r.hash(), secret);
    Ok(key)
}

/// Asks `site` whether it submitted under `roster_hash`; Err when it cannot be asked.
async fn ask_statement(
    cx: &Context,
    study: &str,
    site: &SiteId,
    roster_hash: [u8; 32],
) -> Result<bool, AppError> {
    let req = Request::ReaderStudy(Box::new(ReaderStudyRequest::Statement { roster_hash }));
    let kind = MessageKind::SecaggStatement;
    let resp = cx
        .request(
            site,
            kind,
            &Release::of(study),
            &req,
            Some(STATEMENT_TIMEOUT),
        )
        .await?;
    let Response::ReaderStudy(ReaderStudyResponse::Statement { statement }) = resp else {
        return Err(AppError::BadReply(
            "unexpected answer to a statement request".into(),
        ));
    };
    let key = cx
        .signing_key_of(site)
        .ok_or_else(|| AppError::NotConnected(site.to_string()))?;
    statement
        .verify(&key)
        .map_err(|e| AppError::BadReply(e.to_string()))?;
    if statement.site != *site || statement.roster_hash != roster_hash {
        return Err(AppError::BadReply(
            "a statement about another roster".into(),
        ));
    }
    Ok(statement.submitted)
}

/// The roster rule (differencing guard): for one input, never contribute to a roster that
/// leaves out a site which submitted under an earlier roster.
async fn guard(cx: &Context, signed: &SignedRoster) -> Result<(), Refusal> {
    let r = &signed.roster;
    let h = r.hash();
    let earlier = cx
        .store()
        .submissions_for(r.input)
        .await
        .map_err(ReaderStudyError::from)?;
    let now_sites: BTreeSet<&str> = r.sites.iter().map(SiteId::as_str).collect();
    for e in earlier {
        if e.roster_hash == h {
            return Err(Refusal::Policy(
                "already submitted under this roster".into(),
            ));
        }
        for site in e.sites.iter().filter(|x| !now_sites.contains(x.as_str())) {
            if site == cx.site().as_str() {
                continue;
            }
            let Ok(id) = SiteId::new(site.clone()) else {
                continue;
            };
            left_out(cx, signed, &e, &id).await?;
        }
    }
    Ok(())
}

/// A site that was in an earlier roster of this input (`earlier`) and is left out of this
/// one: refuse unless it provably did not submit.
async fn left_out(
    cx: &Context,
    signed: &SignedRoster,
    earlier: &SubmissionRow,
    site: &SiteId,
) -> Result<(), Refusal> {
    let r = &signed.roster;
    match ask_statement(cx, &r.study, site, earlier.roster_hash).await {
        Ok(true) => Err(Refusal::Policy(format!(
            "differencing guard: {site} submitted under an earlier roster of this input (attempt {}) and is left out of this one",
            earlier.attempt
        ))),
        Ok(false) => Ok(()),
        Err(err) => {
            let certified_silent = signed.previous.as_ref().is_some_and(|c| {
                c.roster_hash == earlier.roster_hash && !c.submitters().any(|x| x == site)
            });
            if !certified_silent {
                return Err(Refusal::Policy(format!(
                    "differencing guard: cannot confirm that {site} did not submit under an earlier roster ({err})"
                )));
            }
            let what = format!(
                "{site} cannot be asked ({err}); the coordinator's signed abort certificate says it did not submit"
            );
            note(cx, &r.study, what).await?;
            Ok(())
        }
    }
}

/// Checks the round's key bundle and job, and decodes the job.
fn check_round(
    cx: &Context,
    signed: &SignedRoster,
    keys: &[RoundKey],
    job_bytes: &[u8],
) -> Result<Job, Refusal> {
    let r = &signed.roster;
    secagg::verify_key_bundle(r, keys, |site| cx.signing_key_of(site))
        .map_err(|e| Refusal::Malformed(format!("key bundle: {e}")))?;
    if crypto::sha256(job_bytes) != r.input {
        return Err(Refusal::Malformed(
            "the job is not the roster's input".into(),
        ));
    }
    let job = Job::from_bytes(job_bytes).map_err(|e| Refusal::Malformed(format!("job: {e}")))?;
    if job.study != r.study || job.statistic().as_str() != r.schema {
        return Err(Refusal::Malformed(
            "the job belongs to another study or schema".into(),
        ));
    }
    Ok(job)
}

/// Computes this site's vector for `job` on a blocking thread.
async fn compute(job: &Job, data: &Arc<LocalData>, dim: u32) -> Result<Vec<u128>, Refusal> {
    let (job, data) = (job.clone(), data.clone());
    let x = tokio::task::spawn_blocking(move || jobs::compute(&job, &data))
        .await
        .map_err(|e| ReaderStudyError::Task(e.to_string()))?
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if x.len() != dim as usize {
        return Err(Refusal::Malformed(format!(
            "this site's vector has {} elements, the roster says {dim}",
            x.len()
        )));
    }
    Ok(x)
}

/// Computes, masks, gates and records this site's vector for a round. `from` is the
/// coordinator's member info (None when the coordinator contributes its own data).
pub(super) async fn contribute(
    cx: &Context,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
    keys: &[RoundKey],
    job_bytes: &[u8],
) -> Result<(MaskedInput, u64), Refusal> {
    let data = check_roster(cx, from, signed).await?;
    let r = &signed.roster;
    let hash = r.hash();
    let runtime: &ReaderStudyRuntime = cx.reader_studies();
    let secret = runtime
        .take_secret(&hash)
        .ok_or_else(|| Refusal::Malformed("no round key of this site for the roster".into()))?;
    let job = check_round(cx, signed, keys, job_bytes)?;
    guard(cx, signed).await?;
    let x = compute(&job, &data, r.dim).await?;
    let masked = secagg::mask_input(&x, r, cx.site(), &secret, keys)
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    drop(x);
    let cases = data.cases();
    if let Some(member) = from {
        let rel = vector_release(r, job.statistic(), cases);
        if let Err(e) = cx.gate(MessageKind::MaskedVector, &rel, Some(member)).await {
            return Err(Refusal::Policy(e.to_string()));
        }
    }
    let row = SubmissionRow {
        roster_hash: hash,
        attempt: r.attempt,
        sites: r.sites.iter().map(|x| x.to_string()).collect(),
    };
    cx.store()
        .record_submission(&r.study, r.input, row)
        .await
        .map_err(ReaderStudyError::from)?;
    let what = format!(
        "submitted a masked {} vector ({} elements, {cases} cases) under roster {} (attempt {}, {} sites)",
        r.schema,
        r.dim,
        super::hex8(&hash),
        r.attempt,
        r.sites.len()
    );
    note(cx, &r.study, what).await?;
    Ok((masked, cases))
}
