//! Reader-study commands a running node carries out for its operator (through
//! [`crate::network::node::AppHandle`]): launch, join, assign, run, report.

use std::collections::HashMap;
use std::time::Duration;

use fedanno_protocol::cert::Role;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::reader_study::{
    ReadCount, ReaderStudyRequest, ReaderStudyResponse, SignedManifest,
};
use fedanno_protocol::wire::{Cosignature, Request, Response, SignedCheckpoint};
use serde::Serialize;
use tokio::sync::oneshot;

use super::participant::store_consensus;
use super::rounds::SecureAggregator;
use super::{RunProgress, known, note, participating, site_id, update};
use crate::network::audit::AuditEvent;
use crate::network::kinds::MessageKind;
use crate::network::node::context::Context;
use crate::network::node::outbound::Release;
use crate::network::node::{AppError, AppHandle, is_own_checkpoint, witness_round_checkpoint};
use crate::reader_studies::ReaderStudyError;
use crate::reader_studies::jobs::{self, ConsensusOutcome, EmError, Job, QualityOutcome};
use crate::reader_studies::local;
use crate::reader_studies::manifest::{JoinDecision, Manifest, Protocol};
use crate::reader_studies::report::{AuditRef, ReaderStudyReport};
use crate::reader_studies::states::{
    ReaderStudyRole, ReaderStudyState, ReleaseKind, RunPhase, SiteStatus,
};
use crate::reader_studies::summary::{self, RunFacts, SiteFacts};
use crate::site::clock::now;
use crate::site::identity::hex;
use crate::site::store::{AuditFilter, ReaderStudyRow};

type Reply<T> = oneshot::Sender<Result<T, AppError>>;

/// What an operator asks of the node's reader studies.
pub(crate) enum Command {
    Launch {
        manifest: String,
        reply: Reply<(String, Vec<Delivery>)>,
    },
    Join {
        study: String,
        reply: Reply<JoinDecision>,
    },
    Assign {
        study: String,
        reply: Reply<local::Assignment>,
    },
    Run {
        study: String,
        reply: Reply<ReaderStudyRun>,
    },
    RunAndReport {
        study: String,
        reply: Reply<(ReaderStudyRun, ReaderStudyReport)>,
    },
    /// One secure sum of a job over the given sites (`fedanno bench secagg`).
    SecureSum {
        study: String,
        job: Job,
        dim: usize,
        sites: Vec<SiteId>,
        reply: Reply<Vec<u128>>,
    },
}

pub(crate) async fn execute(cx: &Context, c: Command) {
    match c {
        Command::Launch { manifest, reply } => {
            let _ = reply.send(launch(cx, &manifest).await);
        }
        Command::Join { study, reply } => {
            let _ = reply.send(join(cx, &study).await);
        }
        Command::Assign { study, reply } => {
            let _ = reply.send(assign(cx, &study).await);
        }
        Command::Run { study, reply } => {
            let _ = reply.send(run(cx, &study).await);
        }
        Command::RunAndReport { study, reply } => {
            let r = async {
                let run = run(cx, &study).await?;
                let report = finish(cx, &run).await?;
                Ok((run, report))
            };
            let _ = reply.send(r.await);
        }
        Command::SecureSum {
            study,
            job,
            dim,
            sites,
            reply,
        } => {
            let r = async {
                let (_, m) = known(cx, &study).await?;
                let sum = SecureAggregator::new(cx, &m, sites)
                    .secure_sum(&job, dim)
                    .await
                    .map_err(ReaderStudyError::from)?;
                Ok(sum)
            };
            let _ = reply.send(r.await);
        }
    }
}

/// The reader-study commands of a running node.
impl AppHandle {
    /// Signs a manifest and announces it to its participants (coordinator).
    pub async fn reader_study_launch(
        &self,
        manifest: &str,
    ) -> Result<(String, Vec<Delivery>), AppError> {
        let manifest = manifest.to_string();
        self.reader_study(|reply| Command::Launch { manifest, reply })
            .await
    }

    /// Applies this site's policy to a reader study's manifest and tells the coordinator.
    pub async fn reader_study_join(&self, study: &str) -> Result<JoinDecision, AppError> {
        self.on_study(study, |study, reply| Command::Join { study, reply })
            .await
    }

    /// Selects this site's cases for a reader study and reports the counts to the
    /// coordinator.
    pub async fn reader_study_assign(&self, study: &str) -> Result<local::Assignment, AppError> {
        self.on_study(study, |study, reply| Command::Assign { study, reply })
            .await
    }

    /// Runs a reader study's consensus and quality releases (coordinator).
    pub async fn reader_study_run(&self, study: &str) -> Result<ReaderStudyRun, AppError> {
        self.on_study(study, |study, reply| Command::Run { study, reply })
            .await
    }

    /// Runs a reader study and publishes its report (coordinator): what `study run` does.
    pub async fn reader_study_run_and_report(
        &self,
        study: &str,
    ) -> Result<(ReaderStudyRun, ReaderStudyReport), AppError> {
        self.on_study(study, |study, reply| Command::RunAndReport { study, reply })
            .await
    }

    /// One secure sum of `job` over `sites` under a launched reader study (coordinator).
    pub async fn secure_sum(
        &self,
        study: &str,
        job: Job,
        dim: usize,
        sites: Vec<SiteId>,
    ) -> Result<Vec<u128>, AppError> {
        let study = study.to_string();
        self.reader_study(|reply| Command::SecureSum {
            study,
            job,
            dim,
            sites,
            reply,
        })
        .await
    }

    /// A command about one reader study, named by its id.
    async fn on_study<T>(
        &self,
        study: &str,
        make: impl FnOnce(String, Reply<T>) -> Command,
    ) -> Result<T, AppError> {
        let study = study.to_string();
        self.reader_study(|reply| make(study, reply)).await
    }

    /// The coordinator's progress of a reader-study run.
    pub fn reader_study_progress(&self, study: &str) -> Option<RunProgress> {
        self.context().reader_studies().progress(study)
    }

    /// Test hook: answer `n` more input requests, then fall silent on every later one.
    #[cfg(feature = "test-hooks")]
    pub fn go_silent_after(&self, n: u32) {
        self.context().reader_studies().faults.go_silent_after(n);
    }

    /// Test hook: a dishonest coordinator's two secure sums of one input (see
    /// `dishonest::round`).
    #[cfg(feature = "test-hooks")]
    pub async fn dishonest_round(
        &self,
        study: &str,
        job: &Job,
        dim: usize,
        sites: Vec<SiteId>,
        exclude: Vec<SiteId>,
    ) -> (Result<Vec<u128>, EmError>, Result<Vec<u128>, EmError>) {
        dishonest::round(self.context(), study, job, dim, sites, exclude).await
    }
}

/// What `study launch` reports per participant.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Delivery {
    pub site: String,
    pub delivered: bool,
    pub error: Option<String>,
}

/// How long a site has to acknowledge an announcement, decision or progress report.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a site has to acknowledge a release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a site may take to have its log co-signed at the report milestone.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends a reader-study request to `to` and waits for its answer.
async fn exchange(
    cx: &Context,
    to: &SiteId,
    kind: MessageKind,
    rel: &Release<'_>,
    req: ReaderStudyRequest,
    timeout: Duration,
) -> Result<Response, AppError> {
    let req = Request::ReaderStudy(Box::new(req));
    cx.request(to, kind, rel, &req, Some(timeout)).await
}

async fn launch(cx: &Context, text: &str) -> Result<(String, Vec<Delivery>), AppError> {
    let m = Manifest::parse(text).map_err(ReaderStudyError::from)?;
    if m.study.coordinator != cx.site().as_str() {
        return Err(ReaderStudyError::WrongCoordinator {
            named: m.study.coordinator.clone(),
            this: cx.site().to_string(),
        }
        .into());
    }
    if !cx.identity().has_role(Role::Coordinator) {
        return Err(ReaderStudyError::NoCoordinatorRole.into());
    }
    let signed = SignedManifest::sign(
        &m.study.id,
        text,
        cx.site().clone(),
        cx.identity().signing(),
    );
    let row = ReaderStudyRow {
        study: m.study.id.clone(),
        manifest: text.to_string(),
        coordinator: cx.site().to_string(),
        signature: signed.signature.to_vec(),
        manifest_hash: signed.hash().to_vec(),
        role: ReaderStudyRole::Coordinator,
        state: ReaderStudyState::Launched,
        decision: Vec::new(),
        received_at: 0,
        updated_at: 0,
    };
    let new = cx
        .store()
        .put_reader_study(row)
        .await
        .map_err(ReaderStudyError::from)?;
    if new {
        note(cx, &m.study.id, format!("launched: {:?}", m.study.title)).await?;
    }
    let mut out = Vec::new();
    for site in &m.participants.sites {
        out.push(announce_to(cx, &m, &signed, site).await?);
    }
    Ok((m.study.id.clone(), out))
}

/// Announces a launched study to one participant and records whether it was delivered
/// (unless the site has already answered).
async fn announce_to(
    cx: &Context,
    m: &Manifest,
    signed: &SignedManifest,
    site: &str,
) -> Result<Delivery, AppError> {
    let delivery = |delivered, error| Delivery {
        site: site.to_string(),
        delivered,
        error,
    };
    if site == cx.site().as_str() {
        return Ok(delivery(true, None));
    }
    let to = site_id(site)?;
    let req = ReaderStudyRequest::Announce {
        manifest: signed.clone(),
    };
    let rel = Release::of(&m.study.id);
    let kind = MessageKind::StudyAnnouncement;
    let (delivered, error) = match exchange(cx, &to, kind, &rel, req, EXCHANGE_TIMEOUT).await {
        Ok(Response::Receipt { .. }) => (true, None),
        Ok(Response::Refused { reason }) => (false, Some(format!("refused: {reason:?}"))),
        Ok(_) => (false, Some("unexpected answer".into())),
        Err(e) => (false, Some(e.to_string())),
    };
    let sites = cx
        .store()
        .reader_study_sites(&m.study.id)
        .await
        .map_err(ReaderStudyError::from)?;
    let answered = sites.into_iter().any(|x| {
        x.site == site && !matches!(x.status, SiteStatus::Announced | SiteStatus::Unreachable)
    });
    if !answered {
        let status = if delivered {
            SiteStatus::Announced
        } else {
            SiteStatus::Unreachable
        };
        cx.store()
            .set_reader_study_site(&m.study.id, site, status, None, None)
            .await
            .map_err(ReaderStudyError::from)?;
    }
    Ok(delivery(delivered, error))
}

/// The roles of a reader study's coordinator, as this site knows them.
fn coordinator_roles(cx: &Context, row: &ReaderStudyRow) -> Result<Vec<Role>, AppError> {
    if row.coordinator == cx.site().as_str() {
        return Ok(cx.identity().roles().to_vec());
    }
    Ok(cx.member(&site_id(&row.coordinator)?)?.roles)
}

async fn join(cx: &Context, study: &str) -> Result<JoinDecision, AppError> {
    let (row, m) = known(cx, study).await?;
    let roles = coordinator_roles(cx, &row)?;
    let d = m.evaluate(cx.policy(), cx.site().as_str(), &roles);
    let (state, status) = if d.joined {
        (ReaderStudyState::Joined, SiteStatus::Joined)
    } else {
        (ReaderStudyState::Declined, SiteStatus::Declined)
    };
    note(cx, study, format!("{state}: {}", d.reasons.join("; "))).await?;
    let store = cx.store();
    if row.role == ReaderStudyRole::Coordinator {
        store
            .set_reader_study_site(study, cx.site().as_str(), status, None, None)
            .await
            .map_err(ReaderStudyError::from)?;
    } else {
        store
            .set_reader_study_state(study, state, Some(d.reasons.clone()))
            .await
            .map_err(ReaderStudyError::from)?;
        let mut manifest_hash = [0u8; 32];
        if row.manifest_hash.len() == 32 {
            manifest_hash.copy_from_slice(&row.manifest_hash);
        }
        let req = ReaderStudyRequest::Decision {
            study: study.to_string(),
            manifest_hash,
            joined: d.joined,
        };
        let to = site_id(&row.coordinator)?;
        let kind = MessageKind::StudyDecision;
        exchange(cx, &to, kind, &Release::of(study), req, EXCHANGE_TIMEOUT).await?;
    }
    cx.bump();
    Ok(d)
}

async fn assign(cx: &Context, study: &str) -> Result<local::Assignment, AppError> {
    let (row, m) = known(cx, study).await?;
    if !participating(cx, &row).await? {
        return Err(ReaderStudyError::NotJoined(study.to_string()).into());
    }
    let a = local::assign(cx.store(), &m, cx.site().as_str())
        .await
        .map_err(ReaderStudyError::from)?;
    cx.reader_studies().forget_data(study);
    let what = format!(
        "assigned {} cases read by {} readers",
        a.cases,
        a.readers.len()
    );
    note(cx, study, what).await?;
    let reads: Vec<ReadCount> = a.reads.clone();
    if row.role == ReaderStudyRole::Coordinator {
        let me = cx.site().as_str();
        cx.store()
            .set_reader_study_site(study, me, SiteStatus::Assigned, Some(a.cases), Some(reads))
            .await
            .map_err(ReaderStudyError::from)?;
    } else {
        cx.store()
            .set_reader_study_state(study, ReaderStudyState::Assigned, None)
            .await
            .map_err(ReaderStudyError::from)?;
        let rel = Release {
            seal: true,
            ..Release::of(study)
        };
        let req = ReaderStudyRequest::Progress {
            study: study.to_string(),
            cases: a.cases,
            reads,
        };
        let to = site_id(&row.coordinator)?;
        let kind = MessageKind::AnnotationMetadata;
        exchange(cx, &to, kind, &rel, req, EXCHANGE_TIMEOUT).await?;
    }
    cx.bump();
    Ok(a)
}

/// What a finished reader-study run released.
#[derive(Debug, Clone)]
pub struct ReaderStudyRun {
    pub manifest: Manifest,
    pub consensus: ConsensusOutcome,
    pub quality: Option<QualityOutcome>,
    pub sites: Vec<String>,
    pub progress: RunProgress,
    pub one_round_refused: Option<String>,
}

/// Sends a release (consensus or report) to every site but this one.
async fn release(
    cx: &Context,
    m: &Manifest,
    sites: &[SiteId],
    what: ReleaseKind,
    body: Vec<u8>,
) -> Result<(), AppError> {
    let rel = Release {
        reader_study: Some(&m.study.id),
        statistic: Some(m.consensus.method.statistic()),
        contributing_sites: Some(sites.len() as u32),
        cases: None,
        seal: false,
    };
    for site in sites.iter().filter(|s| *s != cx.site()) {
        let req = ReaderStudyRequest::Release {
            study: m.study.id.clone(),
            what: what.as_str().to_string(),
            body: body.clone(),
        };
        let r = exchange(cx, site, MessageKind::Result, &rel, req, RELEASE_TIMEOUT).await;
        if let Err(e) = r {
            let what = format!("could not deliver the {what} to {site}: {e}");
            note(cx, &m.study.id, what).await?;
        }
    }
    Ok(())
}

/// Runs a reader study end to end at its coordinator: consensus, release, quality.
async fn run(cx: &Context, study: &str) -> Result<ReaderStudyRun, AppError> {
    let (row, m) = known(cx, study).await?;
    if row.role != ReaderStudyRole::Coordinator {
        return Err(ReaderStudyError::NotCoordinator(study.to_string()).into());
    }
    let sites: Vec<SiteId> = cx
        .store()
        .reader_study_sites(study)
        .await
        .map_err(ReaderStudyError::from)?
        .into_iter()
        .filter(|x| x.status.runnable())
        .filter_map(|x| SiteId::new(x.site).ok())
        .collect();
    if (sites.len() as u32) < m.privacy.min_sites {
        return Err(ReaderStudyError::TooFewSites {
            joined: sites.len() as u32,
            needed: m.privacy.min_sites,
        }
        .into());
    }
    update(cx, study, |p| *p = RunProgress::default());
    set_state(cx, study, ReaderStudyState::Running, None).await?;
    note(cx, study, format!("run started with {} sites", sites.len())).await?;
    let result = run_rounds(cx, &m, sites).await;
    match &result {
        Ok(_) => set_state(cx, study, ReaderStudyState::Completed, Some(Vec::new())).await?,
        Err(e) => {
            let why = vec![e.to_string()];
            set_state(cx, study, ReaderStudyState::Failed, Some(why)).await?;
            note(cx, study, format!("run failed: {e}")).await?;
        }
    }
    cx.bump();
    result
}

async fn set_state(
    cx: &Context,
    study: &str,
    state: ReaderStudyState,
    reasons: Option<Vec<String>>,
) -> Result<(), AppError> {
    cx.store()
        .set_reader_study_state(study, state, reasons)
        .await
        .map_err(ReaderStudyError::from)?;
    Ok(())
}

/// The consensus EM: one-round STAPLE first when the manifest wants it, falling back to
/// iterative when a site's policy refuses the histogram (unless one round is required).
/// Returns the outcome, the next job step, and why one round was refused.
async fn consensus(
    cx: &Context,
    m: &Manifest,
    agg: &mut SecureAggregator<'_>,
) -> Result<(ConsensusOutcome, u32, Option<String>), AppError> {
    let jobs_err = |e: EmError| AppError::from(ReaderStudyError::from(e));
    if !jobs::wants_one_round(m) {
        let (c, next) = jobs::run_consensus(m, agg, false, 0)
            .await
            .map_err(jobs_err)?;
        return Ok((c, next, None));
    }
    match jobs::run_consensus(m, agg, true, 0).await {
        Ok((c, next)) => Ok((c, next, None)),
        Err(EmError::Refused(why)) if m.consensus.protocol != Protocol::OneRound => {
            let what = format!("one-round STAPLE refused ({why}); running iterative EM");
            note(cx, &m.study.id, what).await?;
            let (c, next) = jobs::run_consensus(m, agg, false, 1)
                .await
                .map_err(jobs_err)?;
            Ok((c, next, Some(why)))
        }
        Err(e) => Err(jobs_err(e)),
    }
}

async fn run_rounds(
    cx: &Context,
    m: &Manifest,
    sites: Vec<SiteId>,
) -> Result<ReaderStudyRun, AppError> {
    let study = m.study.id.as_str();
    let mut agg = SecureAggregator::new(cx, m, sites);
    let (consensus, next, one_round_refused) = consensus(cx, m, &mut agg).await?;
    let sites = agg.sites.clone();
    let what = format!(
        "consensus reached after {} iterations over {} sites",
        consensus.iterations(),
        sites.len()
    );
    note(cx, study, what).await?;
    update(cx, study, |p| p.phase = RunPhase::Release);
    let body = consensus.to_bytes();
    release(cx, m, &sites, ReleaseKind::Consensus, body).await?;
    if sites.contains(cx.site()) {
        store_consensus(cx, m, &consensus).await?;
    }
    for site in &sites {
        cx.store()
            .set_reader_study_site(study, site.as_str(), SiteStatus::Contributed, None, None)
            .await
            .map_err(ReaderStudyError::from)?;
    }
    let quality = if m.metrics.release.is_empty() {
        None
    } else {
        update(cx, study, |p| p.phase = RunPhase::Quality);
        let mut agg = SecureAggregator::new(cx, m, sites.clone());
        let (q, _) = jobs::run_quality(m, &consensus, &mut agg, next)
            .await
            .map_err(ReaderStudyError::from)?;
        Some(q)
    };
    update(cx, study, |p| p.phase = RunPhase::Done);
    let progress = cx.reader_studies().progress(study).unwrap_or_default();
    Ok(ReaderStudyRun {
        manifest: m.clone(),
        consensus,
        quality,
        sites: sites.iter().map(|x| x.to_string()).collect(),
        progress,
        one_round_refused,
    })
}

/// Bytes sent to, received from, and messages exchanged with each site in a reader study,
/// from this site's audit log.
async fn traffic(cx: &Context, study: &str) -> Result<HashMap<String, (u64, u64, u64)>, AppError> {
    let filter = AuditFilter {
        study: Some(study.to_string()),
        ..Default::default()
    };
    let entries = cx
        .store()
        .audit_entries(filter)
        .await
        .map_err(|e| AppError::Audit(e.into()))?;
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
    Ok(traffic)
}

/// The study's milestone before its report: every contributing site's log (and the
/// coordinator's) co-signed now by a quorum of its witnesses (the coordinator's `[witness]
/// quorum`), each co-signature verified here. A contributing site short of the quorum stops the
/// release. Sites that did not contribute are listed with what they showed, if anything.
async fn witnessed_heads(
    cx: &Context,
    study: &str,
    contributed: &[String],
    sites: &[String],
) -> Result<Vec<AuditRef>, AppError> {
    let quorum = cx.policy().witness.quorum as usize;
    let (cp, cos) = witness_round_checkpoint(cx).await?;
    let mut heads = vec![head(cx, &cp, &cos)];
    for site in sites.iter().filter(|s| *s != cx.site().as_str()) {
        let Ok(to) = SiteId::new(site.clone()) else {
            continue;
        };
        let req = ReaderStudyRequest::Witness {
            study: study.to_string(),
        };
        let rel = Release::of(study);
        let shown = match exchange(cx, &to, MessageKind::Witness, &rel, req, WITNESS_TIMEOUT).await
        {
            Ok(Response::ReaderStudy(ReaderStudyResponse::Witnessed {
                checkpoint,
                cosignatures,
            })) => checked_head(cx, &to, &checkpoint, &cosignatures),
            Ok(_) => Err("an unexpected answer".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match shown {
            Ok(h) => heads.push(h),
            Err(why) if contributed.contains(site) => {
                return Err(ReaderStudyError::Unwitnessed(format!("{site}: {why}")).into());
            }
            Err(why) => note(cx, study, format!("{site} showed no witnessed log: {why}")).await?,
        }
    }
    for h in &heads {
        let required = contributed.contains(&h.site) || h.site == cx.site().as_str();
        if required && h.witnesses.len() < quorum {
            return Err(ReaderStudyError::Unwitnessed(format!(
                "{}'s checkpoint of size {} has {} co-signatures; the quorum is {quorum}",
                h.site,
                h.size,
                h.witnesses.len()
            ))
            .into());
        }
    }
    Ok(heads)
}

/// A checkpoint and the distinct witnesses whose co-signature of it verifies.
fn head(cx: &Context, cp: &SignedCheckpoint, cos: &[Cosignature]) -> AuditRef {
    let mut witnesses: Vec<String> = cos
        .iter()
        .filter(|c| {
            let key = if &c.witness == cx.site() {
                Some(cx.audit().public_key())
            } else {
                cx.members().signing_key(&c.witness)
            };
            key.is_some_and(|k| c.verify(cp, &k).is_ok())
        })
        .map(|c| c.witness.to_string())
        .collect();
    witnesses.sort();
    witnesses.dedup();
    AuditRef {
        site: cp.signer.to_string(),
        size: cp.size,
        root: hex(&cp.root),
        witnesses,
    }
}

/// What a site showed at the milestone: its own checkpoint (its key, its log's origin) with
/// the co-signatures that verify.
fn checked_head(
    cx: &Context,
    site: &SiteId,
    cp: &SignedCheckpoint,
    cos: &[Cosignature],
) -> Result<AuditRef, String> {
    let member = cx.member(site).map_err(|e| e.to_string())?;
    if !is_own_checkpoint(cx, &member, cp) {
        return Err("a checkpoint that is not its own".into());
    }
    Ok(head(cx, cp, cos))
}

/// Builds the reader-study report at the coordinator, stores it and sends it to the sites.
async fn finish(cx: &Context, run: &ReaderStudyRun) -> Result<ReaderStudyReport, AppError> {
    let m = &run.manifest;
    let id = m.study.id.as_str();
    let traffic = traffic(cx, id).await?;
    let rows = cx
        .store()
        .reader_study_sites(id)
        .await
        .map_err(ReaderStudyError::from)?;
    let contributed: Vec<String> = rows
        .iter()
        .filter(|r| r.status == SiteStatus::Contributed)
        .map(|r| r.site.clone())
        .collect();
    let sites = rows
        .iter()
        .map(|r| {
            let t = traffic.get(&r.site).copied().unwrap_or_default();
            SiteFacts {
                site: r.site.clone(),
                status: r.status.as_str().to_string(),
                reason: None,
                // Seen from the coordinator: what it sent to the site and received from it.
                bytes_sent: t.1,
                bytes_received: t.0,
                messages: t.2,
            }
        })
        .collect();
    let facts = RunFacts {
        generated_at: now(),
        coordinator: cx.site().to_string(),
        sites,
        secure_rounds: run.progress.secure_rounds,
        restarts: run.progress.restarts,
        dropped: run.progress.dropped.clone(),
        one_round_refused: run.one_round_refused.clone(),
        audit: witnessed_heads(cx, id, &contributed, &run.sites).await?,
    };
    let report = summary::build(m, &run.consensus, run.quality.as_ref(), &facts);
    let json = crate::reader_studies::report::to_json(&report).to_string();
    cx.store()
        .put_reader_study_result(id, ReleaseKind::Report, json.clone())
        .await
        .map_err(ReaderStudyError::from)?;
    note(cx, id, "report stored".into()).await?;
    let ids: Vec<SiteId> = run
        .sites
        .iter()
        .filter_map(|x| SiteId::new(x.clone()).ok())
        .collect();
    release(cx, m, &ids, ReleaseKind::Report, json.into_bytes())
        .await
        .map(|()| report)
}

/// Test hooks: what a dishonest coordinator would try. Only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub(crate) mod dishonest {
    use fedanno_protocol::ids::SiteId;

    use super::super::known;
    use super::SecureAggregator;
    use crate::network::node::context::Context;
    use crate::reader_studies::jobs::{EmError, Job};

    /// One secure sum of `job` over `sites`, then the same input again over `sites` without
    /// `exclude`, as if they had gone silent: the difference of the two sums would be their
    /// input. Returns both outcomes.
    pub(crate) async fn round(
        cx: &Context,
        study: &str,
        job: &Job,
        dim: usize,
        sites: Vec<SiteId>,
        exclude: Vec<SiteId>,
    ) -> (Result<Vec<u128>, EmError>, Result<Vec<u128>, EmError>) {
        let m = match known(cx, study).await {
            Ok((_, m)) => m,
            Err(e) => {
                let e = || Err(EmError::Aggregate(e.to_string()));
                return (e(), e());
            }
        };
        let mut agg = SecureAggregator::new(cx, &m, sites.clone());
        let first = agg.secure_sum(job, dim).await;
        let rest = sites.into_iter().filter(|x| !exclude.contains(x)).collect();
        let mut agg = SecureAggregator::new(cx, &m, rest);
        let second = agg.secure_sum(job, dim).await;
        (first, second)
    }
}
