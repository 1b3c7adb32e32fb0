//! Studies on the network: announcing a manifest, sites' decisions and progress, and the
//! secure-aggregation rounds (SA-v1, design-notes §3.3) that carry every released statistic.
//!
//! The coordinator drives ([`SecureAggregator`], [`run`]); a site answers ([`handle`]). A
//! site contributes to a round only after checking the signed roster (its coordinator, its
//! own place in it, the study's and its policy's minimum number of sites), the signed key
//! bundle, that the job is the roster's input, and the roster rule: for the same input it
//! never contributes to a roster that leaves out a site which submitted under an earlier one
//! (asked of that site directly, or taken from the coordinator's signed abort certificate when
//! it cannot be reached). Each masked vector passes the policy gate and is recorded in the
//! store and the audit log before it leaves.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedanno_protocol::crypto;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::secagg::{
    self, AbortCertificate, MaskedInput, Roster, RoundKey, SignedRoster, SubmissionStatement,
};
use fedanno_protocol::study::{
    self as wire_study, ReadCount, SignedManifest, StudyRequest, StudyResponse,
};
use fedanno_protocol::wire::{Receipt, RefusalReason, Request, Response};
use ring::rand::SecureRandom;
use serde::Serialize;
use x25519_dalek::StaticSecret;

use super::AppError;
use super::outbound::{self, Release};
use super::shared::{MemberInfo, Shared, now};
use crate::audit::AuditEvent;
use crate::store::{StudyRow, SubmissionRow};
use crate::study::em::{
    self, Aggregator, ConsensusOutcome, EmError, Job, LocalData, QualityOutcome,
};
use crate::study::local;
use crate::study::manifest::{JoinDecision, Manifest};

/// Round secrets kept at once (one per roster in flight).
const MAX_SECRETS: usize = 256;
/// How long a site waits for another site's submission statement.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Study state of a running node.
pub struct StudyState {
    secrets: Mutex<HashMap<[u8; 32], StaticSecret>>,
    data: Mutex<HashMap<String, Arc<LocalData>>>,
    progress: Mutex<HashMap<String, RunProgress>>,
    /// Fault injection for tests: after this many masked vectors the site stops answering
    /// input requests (it hangs, like a site that went silent mid-round).
    silent_after: AtomicU32,
    inputs_answered: AtomicU32,
}

impl Default for StudyState {
    fn default() -> Self {
        Self {
            secrets: Mutex::default(),
            data: Mutex::default(),
            progress: Mutex::default(),
            silent_after: AtomicU32::new(u32::MAX),
            inputs_answered: AtomicU32::new(0),
        }
    }
}

/// A coordinator's view of a study run in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunProgress {
    pub phase: String,
    pub secure_rounds: u32,
    pub restarts: u32,
    pub dropped: Vec<String>,
}

impl StudyState {
    pub fn progress(&self, study: &str) -> Option<RunProgress> {
        self.progress.lock().ok()?.get(study).cloned()
    }

    /// Test fault injection: answer `n` more input requests, then fall silent (no answer, no
    /// refusal) on every later one.
    pub fn go_silent_after(&self, n: u32) {
        let done = self.inputs_answered.load(Ordering::SeqCst);
        self.silent_after
            .store(done.saturating_add(n), Ordering::SeqCst);
    }
}

fn update(s: &Shared, study: &str, f: impl FnOnce(&mut RunProgress)) {
    if let Ok(mut p) = s.study.progress.lock() {
        f(p.entry(study.to_string()).or_default());
    }
    s.bump();
}

fn hex8(h: &[u8; 32]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

async fn note(s: &Shared, study: &str, what: String) -> Result<(), AppError> {
    tracing::info!(study = %study, "{what}");
    s.audit
        .record(AuditEvent::Study {
            study: study.to_string(),
            what,
        })
        .await?;
    Ok(())
}

fn store_err(e: impl std::fmt::Display) -> AppError {
    AppError::Study(e.to_string())
}

fn my_key(s: &Shared) -> [u8; 32] {
    crypto::public_key(&s.signing)
}

fn site_key(s: &Shared, site: &SiteId) -> Option<[u8; 32]> {
    if *site == s.site {
        Some(my_key(s))
    } else {
        s.member_by_site(site).map(|m| m.signing_key)
    }
}

fn new_secret() -> Result<StaticSecret, AppError> {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut b[..])
        .map_err(|_| AppError::Study("no randomness for a round key".into()))?;
    Ok(StaticSecret::from(*b))
}

fn keep_secret(s: &Shared, hash: [u8; 32], secret: StaticSecret) {
    if let Ok(mut m) = s.study.secrets.lock() {
        if m.len() >= MAX_SECRETS {
            // Rounds are short; a full table means stale rosters. Forget them all.
            m.clear();
        }
        m.insert(hash, secret);
    }
}

async fn study_row(s: &Shared, study: &str) -> Result<StudyRow, AppError> {
    s.store
        .study(study)
        .await
        .map_err(store_err)?
        .ok_or_else(|| AppError::Study(format!("no study {study} at this site")))
}

fn manifest_of(row: &StudyRow) -> Result<Manifest, AppError> {
    Manifest::parse(&row.manifest).map_err(|e| AppError::Study(e.to_string()))
}

/// This site's data for a study (loaded once per assignment).
async fn local_data(s: &Shared, m: &Manifest) -> Result<Arc<LocalData>, AppError> {
    if let Some(d) = s
        .study
        .data
        .lock()
        .ok()
        .and_then(|d| d.get(&m.study.id).cloned())
    {
        return Ok(d);
    }
    let d = Arc::new(
        local::load(&s.store, m, s.site.as_str())
            .await
            .map_err(store_err)?,
    );
    if let Ok(mut map) = s.study.data.lock() {
        map.insert(m.study.id.clone(), d.clone());
    }
    Ok(d)
}

/// Whether this site takes part in a study (joined, at the coordinator too).
async fn participating(s: &Shared, row: &StudyRow) -> Result<bool, AppError> {
    if row.role == "participant" {
        return Ok(matches!(
            row.state.as_str(),
            "joined" | "assigned" | "completed"
        ));
    }
    let sites = s.store.study_sites(&row.study).await.map_err(store_err)?;
    Ok(sites.iter().any(|x| {
        x.site == s.site.as_str()
            && matches!(x.status.as_str(), "joined" | "assigned" | "contributed")
    }))
}

// ---------------------------------------------------------------------------------------------
// Site side: answering the coordinator.
// ---------------------------------------------------------------------------------------------

/// Why a contribution is refused (answered with a reason code; the detail is audited here).
enum Refusal {
    Policy(String),
    Malformed(String),
    Internal(AppError),
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        Refusal::Internal(e)
    }
}

async fn receipt(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    message_hash: [u8; 32],
    study: &str,
) -> Result<(), AppError> {
    let (size, root) = s.audit.head().await?;
    let receipt = Receipt::sign(s.site.clone(), message_hash, size, root, &s.signing);
    s.audit
        .record(AuditEvent::ReceiptIssued {
            to: member.site.clone(),
            message_hash,
        })
        .await?;
    let rel = Release {
        study: Some(study),
        ..Release::default()
    };
    outbound::gate_with(s, "receipt", &rel, Some(member)).await?;
    outbound::respond_gated(
        s,
        member,
        id,
        "receipt",
        Some(study),
        &Response::Receipt { receipt },
    )
    .await
}

async fn refuse(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    study: Option<&str>,
    reason: RefusalReason,
    why: String,
) -> Result<(), AppError> {
    if let Some(st) = study {
        note(
            s,
            st,
            format!("refused a request from {}: {why}", member.site),
        )
        .await?;
    } else {
        tracing::warn!(from = %member.site, "refused a study request: {why}");
    }
    outbound::respond(s, member, id, "refusal", &Response::Refused { reason }).await
}

/// Handles one study request from a proven member.
pub(super) async fn handle(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    message_hash: [u8; 32],
    req: StudyRequest,
) -> Result<(), AppError> {
    match req {
        StudyRequest::Announce { manifest } => {
            announce(s, member, id, message_hash, manifest).await
        }
        StudyRequest::Decision {
            study,
            manifest_hash,
            joined,
        } => {
            let Some(row) = s.store.study(&study).await.map_err(store_err)? else {
                return refuse(
                    s,
                    member,
                    id,
                    None,
                    RefusalReason::Malformed,
                    "unknown study".into(),
                )
                .await;
            };
            let m = manifest_of(&row)?;
            if row.role != "coordinator"
                || row.manifest_hash != manifest_hash
                || !m
                    .participants
                    .sites
                    .iter()
                    .any(|x| x == member.site.as_str())
            {
                return refuse(
                    s,
                    member,
                    id,
                    Some(&study),
                    RefusalReason::Malformed,
                    "a decision on another manifest or from a non-participant".into(),
                )
                .await;
            }
            let status = if joined { "joined" } else { "declined" };
            s.store
                .set_study_site(
                    &study,
                    member.site.as_str(),
                    status,
                    None,
                    serde_json::Value::Null,
                )
                .await
                .map_err(store_err)?;
            note(s, &study, format!("{} {status}", member.site)).await?;
            s.bump();
            receipt(s, member, id, message_hash, &study).await
        }
        StudyRequest::Progress {
            study,
            cases,
            reads,
        } => {
            let Some(row) = s.store.study(&study).await.map_err(store_err)? else {
                return refuse(
                    s,
                    member,
                    id,
                    None,
                    RefusalReason::Malformed,
                    "unknown study".into(),
                )
                .await;
            };
            if row.role != "coordinator" {
                return refuse(
                    s,
                    member,
                    id,
                    Some(&study),
                    RefusalReason::Malformed,
                    "progress sent to a non-coordinator".into(),
                )
                .await;
            }
            let reads = serde_json::to_value(&reads).unwrap_or(serde_json::Value::Null);
            s.store
                .set_study_site(&study, member.site.as_str(), "assigned", Some(cases), reads)
                .await
                .map_err(store_err)?;
            note(s, &study, format!("{} assigned {cases} cases", member.site)).await?;
            s.bump();
            receipt(s, member, id, message_hash, &study).await
        }
        StudyRequest::Keys { roster } => {
            let study = roster.roster.study.clone();
            match round_key(s, Some(member), &roster).await {
                Ok(key) => {
                    let rel = Release {
                        study: Some(&study),
                        ..Release::default()
                    };
                    outbound::gate_with(s, "secagg-keys", &rel, Some(member)).await?;
                    outbound::respond_gated(
                        s,
                        member,
                        id,
                        "secagg-keys",
                        Some(&study),
                        &Response::Study(StudyResponse::Key { key }),
                    )
                    .await
                }
                Err(r) => refusal(s, member, id, &study, r).await,
            }
        }
        StudyRequest::Input { roster, keys, job } => {
            let study = roster.roster.study.clone();
            let n = s.study.inputs_answered.fetch_add(1, Ordering::SeqCst);
            if n >= s.study.silent_after.load(Ordering::SeqCst) {
                tracing::warn!(study = %study, "fault injection: not answering an input request");
                return Ok(());
            }
            match contribute(s, Some(member), &roster, &keys, &job).await {
                Ok((input, _)) => {
                    outbound::respond_gated(
                        s,
                        member,
                        id,
                        "masked-vector",
                        Some(&study),
                        &Response::Study(StudyResponse::Masked { input }),
                    )
                    .await
                }
                Err(r) => refusal(s, member, id, &study, r).await,
            }
        }
        StudyRequest::Statement { roster_hash } => {
            let submitted = s
                .store
                .submitted_under(roster_hash)
                .await
                .map_err(store_err)?;
            let statement =
                SubmissionStatement::sign_for(roster_hash, s.site.clone(), submitted, &s.signing);
            outbound::respond(
                s,
                member,
                id,
                "secagg-statement",
                &Response::Study(StudyResponse::Statement { statement }),
            )
            .await
        }
        StudyRequest::Release { study, what, body } => {
            let Some(row) = s.store.study(&study).await.map_err(store_err)? else {
                return refuse(
                    s,
                    member,
                    id,
                    None,
                    RefusalReason::Malformed,
                    "unknown study".into(),
                )
                .await;
            };
            if row.coordinator != member.site.as_str() {
                return refuse(
                    s,
                    member,
                    id,
                    Some(&study),
                    RefusalReason::Malformed,
                    "a release from a site that does not coordinate the study".into(),
                )
                .await;
            }
            match accept_release(s, &row, &what, &body).await {
                Ok(()) => receipt(s, member, id, message_hash, &study).await,
                Err(e) => {
                    refuse(
                        s,
                        member,
                        id,
                        Some(&study),
                        RefusalReason::Malformed,
                        e.to_string(),
                    )
                    .await
                }
            }
        }
    }
}

async fn refusal(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    study: &str,
    r: Refusal,
) -> Result<(), AppError> {
    match r {
        Refusal::Policy(why) => {
            refuse(s, member, id, Some(study), RefusalReason::PolicyDenied, why).await
        }
        Refusal::Malformed(why) => {
            refuse(s, member, id, Some(study), RefusalReason::Malformed, why).await
        }
        Refusal::Internal(e) => {
            refuse(
                s,
                member,
                id,
                Some(study),
                RefusalReason::Busy,
                e.to_string(),
            )
            .await
        }
    }
}

async fn announce(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    message_hash: [u8; 32],
    manifest: SignedManifest,
) -> Result<(), AppError> {
    let study = manifest.study.clone();
    if manifest.coordinator != member.site || !member.roles.iter().any(|r| r == "coordinator") {
        return refuse(
            s,
            member,
            id,
            None,
            RefusalReason::PolicyDenied,
            format!(
                "an announcement of study {study} from a site that is not a certified coordinator"
            ),
        )
        .await;
    }
    if manifest.verify(&member.signing_key).is_err() {
        return refuse(
            s,
            member,
            id,
            None,
            RefusalReason::Malformed,
            "a manifest with a bad signature".into(),
        )
        .await;
    }
    let m = match Manifest::parse(&manifest.text) {
        Ok(m) if m.study.id == study && m.study.coordinator == member.site.as_str() => m,
        Ok(_) => {
            return refuse(
                s,
                member,
                id,
                None,
                RefusalReason::Malformed,
                "the manifest's id or coordinator differs from its envelope".into(),
            )
            .await;
        }
        Err(e) => {
            return refuse(
                s,
                member,
                id,
                None,
                RefusalReason::Malformed,
                format!("an invalid manifest: {e}"),
            )
            .await;
        }
    };
    let row = StudyRow {
        study: study.clone(),
        manifest: manifest.text.clone(),
        coordinator: member.site.to_string(),
        signature: manifest.signature.to_vec(),
        manifest_hash: manifest.hash().to_vec(),
        role: "participant".into(),
        state: "announced".into(),
        decision: Vec::new(),
        received_at: 0,
        updated_at: 0,
    };
    match s.store.put_study(row).await {
        Ok(new) => {
            if new {
                note(
                    s,
                    &study,
                    format!("announced by {}: {:?}", member.site, m.study.title),
                )
                .await?;
            }
            s.bump();
            receipt(s, member, id, message_hash, &study).await
        }
        Err(e) => {
            refuse(
                s,
                member,
                id,
                Some(&study),
                RefusalReason::Malformed,
                e.to_string(),
            )
            .await
        }
    }
}

async fn accept_release(
    s: &Shared,
    row: &StudyRow,
    what: &str,
    body: &[u8],
) -> Result<(), AppError> {
    let m = manifest_of(row)?;
    match what {
        "consensus" => {
            let outcome: ConsensusOutcome =
                wire_study::decode_job(body).map_err(|e| AppError::Study(e.to_string()))?;
            store_consensus(s, &m, &outcome).await?;
            s.store
                .set_study_state(&m.study.id, "completed", None)
                .await
                .map_err(store_err)?;
        }
        "report" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| AppError::Study("a report that is not UTF-8".into()))?;
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| AppError::Study(e.to_string()))?;
            s.store
                .put_study_result(&m.study.id, "report", text.to_string())
                .await
                .map_err(store_err)?;
            note(s, &m.study.id, "received the study report".into()).await?;
        }
        other => return Err(AppError::Study(format!("unknown release {other:?}"))),
    }
    s.bump();
    Ok(())
}

async fn store_consensus(
    s: &Shared,
    m: &Manifest,
    outcome: &ConsensusOutcome,
) -> Result<(), AppError> {
    let n = local::store_consensus(&s.store, m, s.site.as_str(), outcome)
        .await
        .map_err(store_err)?;
    s.store
        .put_study_result(
            &m.study.id,
            "consensus",
            serde_json::to_string(outcome).unwrap_or_default(),
        )
        .await
        .map_err(store_err)?;
    note(
        s,
        &m.study.id,
        format!(
            "stored the consensus of {n} cases as annotations of reader {}",
            local::CONSENSUS_READER
        ),
    )
    .await
}

/// Checks a roster sent by `from` (None: ourselves as coordinator) for a round we take part in.
async fn check_roster(
    s: &Shared,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
) -> Result<(Manifest, Arc<LocalData>), Refusal> {
    let r = &signed.roster;
    let row = s
        .store
        .study(&r.study)
        .await
        .map_err(|e| Refusal::Internal(store_err(e)))?
        .ok_or_else(|| Refusal::Malformed("a round of an unknown study".into()))?;
    let coordinator_key = match from {
        Some(member) => {
            if row.coordinator != member.site.as_str() || r.coordinator != member.site {
                return Err(Refusal::Malformed(
                    "a roster from a site that does not coordinate the study".into(),
                ));
            }
            member.signing_key
        }
        None => my_key(s),
    };
    signed
        .verify(&coordinator_key)
        .map_err(|e| Refusal::Malformed(format!("roster: {e}")))?;
    if r.index_of(&s.site).is_none() {
        return Err(Refusal::Malformed("a roster without this site".into()));
    }
    if !participating(s, &row).await? {
        return Err(Refusal::Policy("this site has not joined the study".into()));
    }
    let m = manifest_of(&row)?;
    if r.min_sites < m.privacy.min_sites || (r.sites.len() as u32) < m.privacy.min_sites {
        return Err(Refusal::Policy(format!(
            "a roster of {} sites below the study's minimum of {}",
            r.sites.len(),
            m.privacy.min_sites
        )));
    }
    let data = local_data(s, &m).await?;
    Ok((m, data))
}

/// The round key for a roster (site side, and the coordinator's own).
async fn round_key(
    s: &Shared,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
) -> Result<RoundKey, Refusal> {
    let (_, data) = check_roster(s, from, signed).await?;
    let r = &signed.roster;
    if let Some(member) = from {
        // Refuse early when the policy would refuse the masked vector anyway.
        let roles = Shared::roles_of(member);
        let d = s.policy.decide(&crate::policy::Outbound {
            kind: "masked-vector",
            to_roles: Some(&roles),
            statistic: Some(&r.schema),
            contributing_sites: Some(r.sites.len() as u32),
            cases: Some(data.cases()),
        });
        if !d.allowed {
            let rel = Release {
                study: Some(&r.study),
                statistic: Some(&r.schema),
                contributing_sites: Some(r.sites.len() as u32),
                cases: Some(data.cases()),
                seal: false,
            };
            // Audits the decision.
            let _ = outbound::gate_with(s, "masked-vector", &rel, Some(member)).await;
            return Err(Refusal::Policy(d.reasons.join("; ")));
        }
    }
    let secret = new_secret()?;
    let key = RoundKey::sign(r, s.site.clone(), &secret, &s.signing);
    keep_secret(s, r.hash(), secret);
    Ok(key)
}

/// Asks `site` whether it submitted under `roster_hash`; Err when it cannot be asked.
async fn ask_statement(
    s: &Shared,
    study: &str,
    site: &SiteId,
    roster_hash: [u8; 32],
) -> Result<bool, AppError> {
    let rel = Release {
        study: Some(study),
        ..Release::default()
    };
    let resp = outbound::request_ex(
        s,
        site,
        "secagg-statement",
        &rel,
        &Request::Study(Box::new(StudyRequest::Statement { roster_hash })),
        Some(STATEMENT_TIMEOUT),
    )
    .await?;
    match resp {
        Response::Study(StudyResponse::Statement { statement }) => {
            let key = site_key(s, site).ok_or_else(|| AppError::NotConnected(site.to_string()))?;
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
        _ => Err(AppError::BadReply(
            "unexpected answer to a statement request".into(),
        )),
    }
}

/// The roster rule (differencing guard): for one input, never contribute to a roster that
/// leaves out a site which submitted under an earlier roster.
async fn guard(s: &Shared, signed: &SignedRoster) -> Result<(), Refusal> {
    let r = &signed.roster;
    let h = r.hash();
    let earlier = s
        .store
        .submissions_for(r.input)
        .await
        .map_err(|e| Refusal::Internal(store_err(e)))?;
    let now_sites: BTreeSet<&str> = r.sites.iter().map(SiteId::as_str).collect();
    for e in earlier {
        if e.roster_hash == h {
            return Err(Refusal::Policy(
                "already submitted under this roster".into(),
            ));
        }
        for site in e.sites.iter().filter(|x| !now_sites.contains(x.as_str())) {
            if site == s.site.as_str() {
                continue;
            }
            let Ok(id) = SiteId::new(site.clone()) else {
                continue;
            };
            match ask_statement(s, &r.study, &id, e.roster_hash).await {
                Ok(true) => {
                    return Err(Refusal::Policy(format!(
                        "differencing guard: {site} submitted under an earlier roster of this input (attempt {}) and is left out of this one",
                        e.attempt
                    )));
                }
                Ok(false) => {}
                Err(err) => {
                    let certified_silent = signed.previous.as_ref().is_some_and(|c| {
                        c.roster_hash == e.roster_hash
                            && !c.submitters().any(|x| x.as_str() == site)
                    });
                    if !certified_silent {
                        return Err(Refusal::Policy(format!(
                            "differencing guard: cannot confirm that {site} did not submit under an earlier roster ({err})"
                        )));
                    }
                    note(s, &r.study, format!("{site} cannot be asked ({err}); the coordinator's signed abort certificate says it did not submit")).await?;
                }
            }
        }
    }
    Ok(())
}

/// Computes, masks, gates and records this site's vector for a round. `from` is the
/// coordinator's member info (None when the coordinator contributes its own data).
async fn contribute(
    s: &Shared,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
    keys: &[RoundKey],
    job_bytes: &[u8],
) -> Result<(MaskedInput, u64), Refusal> {
    let (_, data) = check_roster(s, from, signed).await?;
    let r = &signed.roster;
    let hash = r.hash();
    let secret = s
        .study
        .secrets
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&hash))
        .ok_or_else(|| Refusal::Malformed("no round key of this site for the roster".into()))?;
    secagg::verify_key_bundle(r, keys, |site| site_key(s, site))
        .map_err(|e| Refusal::Malformed(format!("key bundle: {e}")))?;
    if crypto::sha256(job_bytes) != r.input {
        return Err(Refusal::Malformed(
            "the job is not the roster's input".into(),
        ));
    }
    let job: Job =
        wire_study::decode_job(job_bytes).map_err(|e| Refusal::Malformed(format!("job: {e}")))?;
    if job.study != r.study || job.statistic() != r.schema {
        return Err(Refusal::Malformed(
            "the job belongs to another study or schema".into(),
        ));
    }
    guard(s, signed).await?;
    let x = {
        let (job, data) = (job.clone(), data.clone());
        tokio::task::spawn_blocking(move || em::compute(&job, &data))
            .await
            .map_err(|e| Refusal::Internal(AppError::Study(e.to_string())))?
            .map_err(|e| Refusal::Malformed(e.to_string()))?
    };
    if x.len() != r.dim as usize {
        return Err(Refusal::Malformed(format!(
            "this site's vector has {} elements, the roster says {}",
            x.len(),
            r.dim
        )));
    }
    let masked = secagg::mask_input(&x, r, &s.site, &secret, keys)
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    drop(x);
    let cases = data.cases();
    if let Some(member) = from {
        let rel = Release {
            study: Some(&r.study),
            statistic: Some(job.statistic()),
            contributing_sites: Some(r.sites.len() as u32),
            cases: Some(cases),
            seal: false,
        };
        if let Err(e) = outbound::gate_with(s, "masked-vector", &rel, Some(member)).await {
            return Err(Refusal::Policy(e.to_string()));
        }
    }
    s.store
        .record_submission(
            &r.study,
            r.input,
            SubmissionRow {
                roster_hash: hash,
                attempt: r.attempt,
                sites: r.sites.iter().map(|x| x.to_string()).collect(),
            },
        )
        .await
        .map_err(|e| Refusal::Internal(store_err(e)))?;
    note(
        s,
        &r.study,
        format!(
            "submitted a masked {} vector ({} elements, {cases} cases) under roster {} (attempt {}, {} sites)",
            r.schema,
            r.dim,
            hex8(&hash),
            r.attempt,
            r.sites.len()
        ),
    )
    .await?;
    Ok((masked, cases))
}

// ---------------------------------------------------------------------------------------------
// Coordinator side.
// ---------------------------------------------------------------------------------------------

/// Runs secure sums over the study's sites, dropping silent ones and restarting the round.
pub struct SecureAggregator<'a> {
    s: &'a Shared,
    m: &'a Manifest,
    pub sites: Vec<SiteId>,
    timeout: Duration,
}

impl<'a> SecureAggregator<'a> {
    pub fn new(s: &'a Shared, m: &'a Manifest, sites: Vec<SiteId>) -> Self {
        Self {
            s,
            m,
            sites,
            timeout: Duration::from_secs(m.deadlines.round_timeout_secs),
        }
    }

    async fn key_of(&self, site: &SiteId, signed: &SignedRoster) -> Result<RoundKey, AppError> {
        let s = self.s;
        if *site == s.site {
            return round_key(s, None, signed).await.map_err(refusal_error);
        }
        let rel = Release {
            study: Some(&signed.roster.study),
            ..Release::default()
        };
        let resp = outbound::request_ex(
            s,
            site,
            "secagg-keys",
            &rel,
            &Request::Study(Box::new(StudyRequest::Keys {
                roster: signed.clone(),
            })),
            Some(self.timeout),
        )
        .await?;
        match resp {
            Response::Study(StudyResponse::Key { key }) => {
                let pk =
                    site_key(s, site).ok_or_else(|| AppError::NotConnected(site.to_string()))?;
                key.verify(&pk)
                    .map_err(|e| AppError::BadReply(e.to_string()))?;
                if key.site != *site || key.roster_hash != signed.roster.hash() {
                    return Err(AppError::BadReply("a round key for another roster".into()));
                }
                Ok(key)
            }
            Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
            _ => Err(AppError::BadReply("unexpected answer to a roster".into())),
        }
    }

    async fn input_of(
        &self,
        site: &SiteId,
        signed: &SignedRoster,
        keys: &[RoundKey],
        job: &[u8],
    ) -> Result<MaskedInput, AppError> {
        let s = self.s;
        if *site == s.site {
            return contribute(s, None, signed, keys, job)
                .await
                .map(|x| x.0)
                .map_err(refusal_error);
        }
        let rel = Release {
            study: Some(&signed.roster.study),
            ..Release::default()
        };
        let resp = outbound::request_ex(
            s,
            site,
            "secagg-keys",
            &rel,
            &Request::Study(Box::new(StudyRequest::Input {
                roster: signed.clone(),
                keys: keys.to_vec(),
                job: job.to_vec(),
            })),
            Some(self.timeout),
        )
        .await?;
        match resp {
            Response::Study(StudyResponse::Masked { input }) => {
                if input.site != *site
                    || input.roster_hash != signed.roster.hash()
                    || input.values.len() != signed.roster.dim as usize
                {
                    return Err(AppError::BadReply(
                        "a masked vector for another roster".into(),
                    ));
                }
                Ok(input)
            }
            Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
            _ => Err(AppError::BadReply(
                "unexpected answer to an input request".into(),
            )),
        }
    }

    /// One secure sum, with restarts: a site that does not answer a step is dropped and the
    /// round starts again with a new roster, fresh keys and the signed abort certificate.
    pub async fn secure_sum(&mut self, job: &Job, dim: usize) -> Result<Vec<u128>, EmError> {
        let s = self.s;
        let study = self.m.study.id.clone();
        let bytes = job.to_bytes();
        let input = crypto::sha256(&bytes);
        let min = self.m.privacy.min_sites.max(secagg::MIN_ROSTER as u32) as usize;
        let mut previous: Option<AbortCertificate> = None;
        let max_attempts = self.sites.len() as u32 + 1;
        for attempt in 0..max_attempts {
            self.sites.sort();
            self.sites.dedup();
            if self.sites.len() < min {
                return Err(EmError::Aggregate(format!(
                    "only {} sites remain; the study needs at least {min}",
                    self.sites.len()
                )));
            }
            let roster = Roster {
                study: study.clone(),
                input,
                attempt,
                schema: job.statistic().to_string(),
                dim: dim as u32,
                sites: self.sites.clone(),
                min_sites: self.m.privacy.min_sites,
                coordinator: s.site.clone(),
                deadline: now() + self.timeout.as_secs(),
            };
            let hash = roster.hash();
            let signed = SignedRoster::sign(roster.clone(), previous.take(), &s.signing);
            // Step 1: round keys.
            let answers =
                futures::future::join_all(self.sites.iter().map(|site| self.key_of(site, &signed)))
                    .await;
            let mut keys = Vec::new();
            let mut silent = Vec::new();
            for (site, a) in self.sites.iter().zip(answers) {
                match a {
                    Ok(k) => keys.push(k),
                    Err(AppError::Refused(r)) if r.contains("PolicyDenied") => {
                        return Err(EmError::Refused(format!(
                            "{site}'s policy refuses {} vectors",
                            job.statistic()
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(site = %site, error = %e, "a site did not answer a roster");
                        silent.push(site.clone());
                    }
                }
            }
            if !silent.is_empty() {
                previous = Some(AbortCertificate::sign(&roster, Vec::new(), &s.signing));
                self.restart(&study, &silent, &hash, attempt, "round keys")
                    .await?;
                continue;
            }
            // Step 2: masked inputs.
            let answers = futures::future::join_all(
                self.sites
                    .iter()
                    .map(|site| self.input_of(site, &signed, &keys, &bytes)),
            )
            .await;
            let mut inputs = Vec::new();
            for (site, a) in self.sites.iter().zip(answers) {
                match a {
                    Ok(i) => inputs.push(i),
                    Err(AppError::Refused(r)) if r.contains("PolicyDenied") => {
                        return Err(EmError::Refused(format!(
                            "{site} refused to contribute: {r}"
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(site = %site, error = %e, "a site did not submit its masked vector");
                        silent.push(site.clone());
                    }
                }
            }
            if !silent.is_empty() {
                let received: Vec<(SiteId, [u8; 32])> = inputs
                    .iter()
                    .filter(|i| !silent.contains(&i.site))
                    .map(|i| (i.site.clone(), i.hash()))
                    .collect();
                previous = Some(AbortCertificate::sign(&roster, received, &s.signing));
                self.restart(&study, &silent, &hash, attempt, "masked vectors")
                    .await?;
                continue;
            }
            let sum = secagg::aggregate(&roster, &inputs)
                .map_err(|e| EmError::Aggregate(e.to_string()))?;
            update(s, &study, |p| p.secure_rounds += 1);
            note(
                s,
                &study,
                format!(
                    "secure sum of {} ({} elements) over {} sites, roster {} attempt {attempt}",
                    job.statistic(),
                    dim,
                    self.sites.len(),
                    hex8(&hash)
                ),
            )
            .await
            .map_err(|e| EmError::Aggregate(e.to_string()))?;
            return Ok(sum);
        }
        Err(EmError::Aggregate("too many restarts".into()))
    }

    async fn restart(
        &mut self,
        study: &str,
        silent: &[SiteId],
        hash: &[u8; 32],
        attempt: u32,
        step: &str,
    ) -> Result<(), EmError> {
        self.sites.retain(|x| !silent.contains(x));
        let names: Vec<String> = silent.iter().map(|x| x.to_string()).collect();
        update(self.s, study, |p| {
            p.restarts += 1;
            for n in &names {
                if !p.dropped.contains(n) {
                    p.dropped.push(n.clone());
                }
            }
        });
        for n in &names {
            let _ = self
                .s
                .store
                .set_study_site(study, n, "dropped", None, serde_json::Value::Null)
                .await;
        }
        note(
            self.s,
            study,
            format!(
                "round aborted at the {step} step (roster {} attempt {attempt}): no answer from {}; restarting without",
                hex8(hash),
                names.join(", ")
            ),
        )
        .await
        .map_err(|e| EmError::Aggregate(e.to_string()))
    }
}

fn refusal_error(r: Refusal) -> AppError {
    match r {
        Refusal::Policy(w) => AppError::Refused(format!("PolicyDenied: {w}")),
        Refusal::Malformed(w) => AppError::Study(w),
        Refusal::Internal(e) => e,
    }
}

impl Aggregator for SecureAggregator<'_> {
    fn sum(
        &mut self,
        job: &Job,
        dim: usize,
    ) -> impl std::future::Future<Output = Result<Vec<u128>, EmError>> + Send {
        let job = job.clone();
        async move { self.secure_sum(&job, dim).await }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands (called through the AppHandle).
// ---------------------------------------------------------------------------------------------

/// What `study launch` reports per participant.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub site: String,
    pub delivered: bool,
    pub error: Option<String>,
}

pub async fn launch(s: &Shared, text: &str) -> Result<(String, Vec<Delivery>), AppError> {
    let m = Manifest::parse(text).map_err(|e| AppError::Study(e.to_string()))?;
    if m.study.coordinator != s.site.as_str() {
        return Err(AppError::Study(format!(
            "the manifest names {} as coordinator; this site is {}",
            m.study.coordinator, s.site
        )));
    }
    if !s.has_role(fedanno_protocol::cert::Role::Coordinator) {
        return Err(AppError::Study(
            "this site's certificate has no coordinator role".into(),
        ));
    }
    let signed = SignedManifest::sign(&m.study.id, text, s.site.clone(), &s.signing);
    let new = s
        .store
        .put_study(StudyRow {
            study: m.study.id.clone(),
            manifest: text.to_string(),
            coordinator: s.site.to_string(),
            signature: signed.signature.to_vec(),
            manifest_hash: signed.hash().to_vec(),
            role: "coordinator".into(),
            state: "launched".into(),
            decision: Vec::new(),
            received_at: 0,
            updated_at: 0,
        })
        .await
        .map_err(store_err)?;
    if new {
        note(s, &m.study.id, format!("launched: {:?}", m.study.title)).await?;
    }
    let mut out = Vec::new();
    for site in &m.participants.sites {
        if site == s.site.as_str() {
            out.push(Delivery {
                site: site.clone(),
                delivered: true,
                error: None,
            });
            continue;
        }
        let to = SiteId::new(site.clone()).map_err(|e| AppError::Study(e.to_string()))?;
        let rel = Release {
            study: Some(&m.study.id),
            ..Release::default()
        };
        let r = outbound::request_ex(
            s,
            &to,
            "study-announcement",
            &rel,
            &Request::Study(Box::new(StudyRequest::Announce {
                manifest: signed.clone(),
            })),
            Some(Duration::from_secs(30)),
        )
        .await;
        let (delivered, error) = match r {
            Ok(Response::Receipt { .. }) => (true, None),
            Ok(Response::Refused { reason }) => (false, Some(format!("refused: {reason:?}"))),
            Ok(_) => (false, Some("unexpected answer".into())),
            Err(e) => (false, Some(e.to_string())),
        };
        let known = s
            .store
            .study_sites(&m.study.id)
            .await
            .map_err(store_err)?
            .into_iter()
            .any(|x| x.site == *site && x.status != "announced" && x.status != "unreachable");
        if !known {
            s.store
                .set_study_site(
                    &m.study.id,
                    site,
                    if delivered {
                        "announced"
                    } else {
                        "unreachable"
                    },
                    None,
                    serde_json::Value::Null,
                )
                .await
                .map_err(store_err)?;
        }
        out.push(Delivery {
            site: site.clone(),
            delivered,
            error,
        });
    }
    Ok((m.study.id.clone(), out))
}

pub async fn join(s: &Shared, study: &str) -> Result<JoinDecision, AppError> {
    let row = study_row(s, study).await?;
    let m = manifest_of(&row)?;
    let coordinator_roles = if row.coordinator == s.site.as_str() {
        s.body
            .roles
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    } else {
        let id =
            SiteId::new(row.coordinator.clone()).map_err(|e| AppError::Study(e.to_string()))?;
        s.member_by_site(&id)
            .map(|mi| mi.roles)
            .ok_or_else(|| AppError::NotConnected(row.coordinator.clone()))?
    };
    let d = m.evaluate(&s.policy, s.site.as_str(), &coordinator_roles);
    let status = if d.joined { "joined" } else { "declined" };
    note(s, study, format!("{status}: {}", d.reasons.join("; "))).await?;
    if row.role == "coordinator" {
        s.store
            .set_study_site(
                study,
                s.site.as_str(),
                status,
                None,
                serde_json::Value::Null,
            )
            .await
            .map_err(store_err)?;
    } else {
        s.store
            .set_study_state(study, status, Some(d.reasons.clone()))
            .await
            .map_err(store_err)?;
        let to =
            SiteId::new(row.coordinator.clone()).map_err(|e| AppError::Study(e.to_string()))?;
        let mut hash = [0u8; 32];
        if row.manifest_hash.len() == 32 {
            hash.copy_from_slice(&row.manifest_hash);
        }
        let rel = Release {
            study: Some(study),
            ..Release::default()
        };
        outbound::request_ex(
            s,
            &to,
            "study-decision",
            &rel,
            &Request::Study(Box::new(StudyRequest::Decision {
                study: study.to_string(),
                manifest_hash: hash,
                joined: d.joined,
            })),
            Some(Duration::from_secs(30)),
        )
        .await?;
    }
    s.bump();
    Ok(d)
}

pub async fn assign(s: &Shared, study: &str) -> Result<local::Assignment, AppError> {
    let row = study_row(s, study).await?;
    if !participating(s, &row).await? {
        return Err(AppError::Study(format!(
            "this site has not joined study {study}; run `fedanno study join {study}` first"
        )));
    }
    let m = manifest_of(&row)?;
    let a = local::assign(&s.store, &m, s.site.as_str())
        .await
        .map_err(store_err)?;
    if let Ok(mut d) = s.study.data.lock() {
        d.remove(study);
    }
    note(
        s,
        study,
        format!(
            "assigned {} cases read by {} readers",
            a.cases,
            a.readers.len()
        ),
    )
    .await?;
    let reads: Vec<ReadCount> = a.reads.clone();
    if row.role == "coordinator" {
        s.store
            .set_study_site(
                study,
                s.site.as_str(),
                "assigned",
                Some(a.cases),
                serde_json::to_value(&reads).unwrap_or_default(),
            )
            .await
            .map_err(store_err)?;
    } else {
        s.store
            .set_study_state(study, "assigned", None)
            .await
            .map_err(store_err)?;
        let to =
            SiteId::new(row.coordinator.clone()).map_err(|e| AppError::Study(e.to_string()))?;
        let rel = Release {
            study: Some(study),
            seal: true,
            ..Release::default()
        };
        outbound::request_ex(
            s,
            &to,
            "annotation-metadata",
            &rel,
            &Request::Study(Box::new(StudyRequest::Progress {
                study: study.to_string(),
                cases: a.cases,
                reads,
            })),
            Some(Duration::from_secs(30)),
        )
        .await?;
    }
    s.bump();
    Ok(a)
}

/// What a finished study run released.
#[derive(Debug, Clone)]
pub struct StudyRun {
    pub manifest: Manifest,
    pub consensus: ConsensusOutcome,
    pub quality: Option<QualityOutcome>,
    pub sites: Vec<String>,
    pub progress: RunProgress,
    pub one_round_refused: Option<String>,
}

async fn release(
    s: &Shared,
    m: &Manifest,
    sites: &[SiteId],
    what: &str,
    body: Vec<u8>,
) -> Result<(), AppError> {
    for site in sites {
        if *site == s.site {
            continue;
        }
        let rel = Release {
            study: Some(&m.study.id),
            statistic: Some(m.consensus.method.as_str()),
            contributing_sites: Some(sites.len() as u32),
            cases: None,
            seal: false,
        };
        let r = outbound::request_ex(
            s,
            site,
            "result",
            &rel,
            &Request::Study(Box::new(StudyRequest::Release {
                study: m.study.id.clone(),
                what: what.to_string(),
                body: body.clone(),
            })),
            Some(Duration::from_secs(60)),
        )
        .await;
        if let Err(e) = r {
            note(
                s,
                &m.study.id,
                format!("could not deliver the {what} to {site}: {e}"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Runs a study end to end at its coordinator: consensus, release, quality.
pub async fn run(s: &Shared, study: &str) -> Result<StudyRun, AppError> {
    let row = study_row(s, study).await?;
    if row.role != "coordinator" {
        return Err(AppError::Study(format!(
            "this site does not coordinate study {study}"
        )));
    }
    let m = manifest_of(&row)?;
    let sites: Vec<SiteId> = s
        .store
        .study_sites(study)
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|x| {
            matches!(
                x.status.as_str(),
                "joined" | "assigned" | "dropped" | "contributed"
            )
        })
        .filter_map(|x| SiteId::new(x.site).ok())
        .collect();
    if (sites.len() as u32) < m.privacy.min_sites {
        return Err(AppError::Study(format!(
            "{} sites have joined; the study needs at least {}",
            sites.len(),
            m.privacy.min_sites
        )));
    }
    if let Ok(mut p) = s.study.progress.lock() {
        p.insert(
            study.to_string(),
            RunProgress {
                phase: "consensus".into(),
                ..RunProgress::default()
            },
        );
    }
    s.store
        .set_study_state(study, "running", None)
        .await
        .map_err(store_err)?;
    note(s, study, format!("run started with {} sites", sites.len())).await?;
    let result = run_inner(s, &m, sites).await;
    match &result {
        Ok(_) => s
            .store
            .set_study_state(study, "completed", Some(Vec::new()))
            .await
            .map_err(store_err)?,
        Err(e) => {
            s.store
                .set_study_state(study, "failed", Some(vec![e.to_string()]))
                .await
                .map_err(store_err)?;
            note(s, study, format!("run failed: {e}")).await?;
        }
    }
    s.bump();
    result
}

async fn run_inner(s: &Shared, m: &Manifest, sites: Vec<SiteId>) -> Result<StudyRun, AppError> {
    let study = m.study.id.clone();
    let mut agg = SecureAggregator::new(s, m, sites);
    let mut one_round_refused = None;
    let (consensus, next) = if em::wants_one_round(m) {
        match em::run_consensus(m, &mut agg, true, 0).await {
            Ok(x) => x,
            Err(EmError::Refused(why))
                if m.consensus.protocol != crate::study::manifest::Protocol::OneRound =>
            {
                note(
                    s,
                    &study,
                    format!("one-round STAPLE refused ({why}); running iterative EM"),
                )
                .await?;
                one_round_refused = Some(why);
                em::run_consensus(m, &mut agg, false, 1)
                    .await
                    .map_err(|e| AppError::Study(e.to_string()))?
            }
            Err(e) => return Err(AppError::Study(e.to_string())),
        }
    } else {
        em::run_consensus(m, &mut agg, false, 0)
            .await
            .map_err(|e| AppError::Study(e.to_string()))?
    };
    let sites = agg.sites.clone();
    note(
        s,
        &study,
        format!(
            "consensus reached after {} iterations over {} sites",
            consensus.iterations(),
            sites.len()
        ),
    )
    .await?;
    update(s, &study, |p| p.phase = "release".into());
    let body = fedanno_protocol::codec::encode(&consensus);
    release(s, m, &sites, "consensus", body).await?;
    if sites.contains(&s.site) {
        store_consensus(s, m, &consensus).await?;
    }
    for site in &sites {
        s.store
            .set_study_site(
                &study,
                site.as_str(),
                "contributed",
                None,
                serde_json::Value::Null,
            )
            .await
            .map_err(store_err)?;
    }
    let quality = if m.metrics.release.is_empty() {
        None
    } else {
        update(s, &study, |p| p.phase = "quality".into());
        let mut agg = SecureAggregator::new(s, m, sites.clone());
        let (q, _) = em::run_quality(m, &consensus, &mut agg, next)
            .await
            .map_err(|e| AppError::Study(e.to_string()))?;
        Some(q)
    };
    update(s, &study, |p| p.phase = "done".into());
    let progress = s.study.progress(&study).unwrap_or_default();
    Ok(StudyRun {
        manifest: m.clone(),
        consensus,
        quality,
        sites: sites.iter().map(|x| x.to_string()).collect(),
        progress,
        one_round_refused,
    })
}

/// Publishes a report to the study's sites.
pub async fn publish_report(
    s: &Shared,
    m: &Manifest,
    sites: &[String],
    json: &str,
) -> Result<(), AppError> {
    let ids: Vec<SiteId> = sites
        .iter()
        .filter_map(|x| SiteId::new(x.clone()).ok())
        .collect();
    release(s, m, &ids, "report", json.as_bytes().to_vec()).await
}

/// Test hook: what a dishonest coordinator would try. One secure sum of `job` over `sites`,
/// then the same input again over `sites` without `exclude`, as if they had gone silent: the
/// difference of the two sums would be their input. Returns both outcomes.
pub async fn dishonest_round(
    s: &Shared,
    study: &str,
    job: &Job,
    dim: usize,
    sites: Vec<SiteId>,
    exclude: Vec<SiteId>,
) -> (Result<Vec<u128>, EmError>, Result<Vec<u128>, EmError>) {
    let m = match study_row(s, study).await.and_then(|r| manifest_of(&r)) {
        Ok(m) => m,
        Err(e) => {
            return (
                Err(EmError::Aggregate(e.to_string())),
                Err(EmError::Aggregate(e.to_string())),
            );
        }
    };
    let mut agg = SecureAggregator::new(s, &m, sites.clone());
    let first = agg.secure_sum(job, dim).await;
    let rest = sites.into_iter().filter(|x| !exclude.contains(x)).collect();
    let mut agg = SecureAggregator::new(s, &m, rest);
    let second = agg.secure_sum(job, dim).await;
    (first, second)
}

/// Builds the study report at the coordinator, stores it and sends it to the sites.
pub async fn finish(s: &Shared, run: &StudyRun) -> Result<crate::report::StudyReport, AppError> {
    use crate::study::summary::{RunFacts, SiteFacts};
    let m = &run.manifest;
    let id = m.study.id.clone();
    let entries = s
        .store
        .audit_entries(crate::store::AuditFilter {
            study: Some(id.clone()),
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    let mut traffic: HashMap<String, (u64, u64, u64)> = HashMap::new();
    for e in entries {
        match e.event {
            AuditEvent::Sent {
                to: Some(to),
                bytes,
                ..
            } => {
                let t = traffic.entry(to.to_string()).or_default();
                t.0 += bytes;
                t.2 += 1;
            }
            AuditEvent::Received { from, bytes, .. } => {
                let t = traffic.entry(from.to_string()).or_default();
                t.1 += bytes;
                t.2 += 1;
            }
            _ => {}
        }
    }
    let rows = s.store.study_sites(&id).await.map_err(store_err)?;
    let sites = rows
        .iter()
        .map(|r| {
            let t = traffic.get(&r.site).copied().unwrap_or_default();
            SiteFacts {
                site: r.site.clone(),
                status: r.status.clone(),
                reason: None,
                // Seen from the coordinator: what it sent to the site and received from it.
                bytes_sent: t.1,
                bytes_received: t.0,
                messages: t.2,
            }
        })
        .collect();
    let mut audit = Vec::new();
    let hex = |b: &[u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let cp = s.audit.checkpoint().await?;
    let cp = cp.to_wire();
    audit.push(crate::report::AuditRef {
        site: s.site.to_string(),
        size: cp.size,
        root: hex(&cp.root),
    });
    for site in &run.sites {
        if site == s.site.as_str() {
            continue;
        }
        let Ok(to) = SiteId::new(site.clone()) else {
            continue;
        };
        if let Ok(Response::Checkpoint { checkpoint }) =
            outbound::request(s, &to, "checkpoint", &Request::GetCheckpoint).await
            && let Some(key) = site_key(s, &to)
            && checkpoint.verify(&key).is_ok()
        {
            audit.push(crate::report::AuditRef {
                site: site.clone(),
                size: checkpoint.size,
                root: hex(&checkpoint.root),
            });
        }
    }
    let facts = RunFacts {
        generated_at: now(),
        coordinator: s.site.to_string(),
        sites,
        secure_rounds: run.progress.secure_rounds,
        restarts: run.progress.restarts,
        dropped: run.progress.dropped.clone(),
        one_round_refused: run.one_round_refused.clone(),
        audit,
    };
    let report = crate::study::summary::build(m, &run.consensus, run.quality.as_ref(), &facts);
    let json = crate::report::to_json(&report).to_string();
    s.store
        .put_study_result(&id, "report", json.clone())
        .await
        .map_err(store_err)?;
    note(s, &id, "report stored".into()).await?;
    publish_report(s, m, &run.sites, &json).await?;
    Ok(report)
}
