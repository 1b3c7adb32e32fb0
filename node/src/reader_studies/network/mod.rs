//! Studies on the network: announcing a manifest, sites' decisions and progress, and the
//! secure-aggregation rounds (SA-v1, design-notes §3.3) that carry every released statistic.
//!
//! The coordinator drives ([`SecureAggregator`], [`run`]); a site answers (`site::handle`). A
//! site contributes to a round only after checking the signed roster (its coordinator, its
//! own place in it, the study's and its policy's minimum number of sites), the signed key
//! bundle, that the job is the roster's input, and the roster rule: for the same input it
//! never contributes to a roster that leaves out a site which submitted under an earlier one
//! (asked of that site directly, or taken from the coordinator's signed abort certificate when
//! it cannot be reached). Each masked vector passes the policy gate and is recorded in the
//! store and the audit log before it leaves.

//!
//! Layout: this file holds the study state of a node and the helpers every side shares;
//! `site` answers the coordinator (and other sites' statements); `rounds` is the
//! coordinator's side of a secure sum ([`SecureAggregator`]); `commands` are what the
//! `AppHandle` calls (launch, join, assign, run, report).

mod commands;
mod participant;
mod rounds;

pub use commands::{
    Delivery, ReaderStudyRun, assign, dishonest_round, finish, join, launch, publish_report, run,
};
pub(crate) use participant::handle;
pub use rounds::SecureAggregator;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedanno_protocol::crypto;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::reader_study::{
    ReadCount, ReaderStudyRequest, ReaderStudyResponse, SignedManifest,
};
use fedanno_protocol::secagg::{
    self, AbortCertificate, MaskedInput, Roster, RoundKey, SignedRoster, SubmissionStatement,
};
use fedanno_protocol::wire::{Receipt, RefusalReason, Request, Response};
use ring::rand::SecureRandom;
use serde::Serialize;
use x25519_dalek::StaticSecret;

use crate::network::audit::AuditEvent;
use crate::network::node::AppError;
use crate::network::node::outbound::{self, Release};
use crate::network::node::shared::{MemberInfo, Shared, now};
use crate::reader_studies::jobs::{
    self, Aggregator, ConsensusOutcome, EmError, Job, LocalData, QualityOutcome,
};
use crate::reader_studies::local;
use crate::reader_studies::manifest::{JoinDecision, Manifest};
use crate::site::store::{ReaderStudyRow, SubmissionRow};

/// Round secrets kept at once (one per roster in flight).
pub(super) const MAX_SECRETS: usize = 256;
/// How long a site waits for another site's submission statement.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Study state of a running node.
pub struct ReaderStudyState {
    secrets: Mutex<HashMap<[u8; 32], StaticSecret>>,
    data: Mutex<HashMap<String, Arc<LocalData>>>,
    progress: Mutex<HashMap<String, RunProgress>>,
    /// Fault injection for tests: after this many masked vectors the site stops answering
    /// input requests (it hangs, like a site that went silent mid-round).
    silent_after: AtomicU32,
    inputs_answered: AtomicU32,
}

impl Default for ReaderStudyState {
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

impl ReaderStudyState {
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

pub(super) fn update(s: &Shared, study: &str, f: impl FnOnce(&mut RunProgress)) {
    if let Ok(mut p) = s.study.progress.lock() {
        f(p.entry(study.to_string()).or_default());
    }
    s.bump();
}

pub(super) fn hex8(h: &[u8; 32]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub(super) async fn note(s: &Shared, study: &str, what: String) -> Result<(), AppError> {
    tracing::info!(study = %study, "{what}");
    s.audit
        .record(AuditEvent::ReaderStudy {
            study: study.to_string(),
            what,
        })
        .await?;
    Ok(())
}

pub(super) fn store_err(e: impl std::fmt::Display) -> AppError {
    AppError::Study(e.to_string())
}

pub(super) fn my_key(s: &Shared) -> [u8; 32] {
    crypto::public_key(&s.signing)
}

pub(super) fn site_key(s: &Shared, site: &SiteId) -> Option<[u8; 32]> {
    if *site == s.site {
        Some(my_key(s))
    } else {
        s.member_by_site(site).map(|m| m.signing_key)
    }
}

pub(super) fn new_secret() -> Result<StaticSecret, AppError> {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut b[..])
        .map_err(|_| AppError::Study("no randomness for a round key".into()))?;
    Ok(StaticSecret::from(*b))
}

pub(super) fn keep_secret(s: &Shared, hash: [u8; 32], secret: StaticSecret) {
    if let Ok(mut m) = s.study.secrets.lock() {
        if m.len() >= MAX_SECRETS {
            // Rounds are short; a full table means stale rosters. Forget them all.
            m.clear();
        }
        m.insert(hash, secret);
    }
}

pub(super) async fn reader_study_row(s: &Shared, study: &str) -> Result<ReaderStudyRow, AppError> {
    s.store
        .reader_study(study)
        .await
        .map_err(store_err)?
        .ok_or_else(|| AppError::Study(format!("no study {study} at this site")))
}

pub(super) fn manifest_of(row: &ReaderStudyRow) -> Result<Manifest, AppError> {
    Manifest::parse(&row.manifest).map_err(|e| AppError::Study(e.to_string()))
}

/// This site's data for a study (loaded once per assignment).
pub(super) async fn local_data(s: &Shared, m: &Manifest) -> Result<Arc<LocalData>, AppError> {
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
pub(super) async fn participating(s: &Shared, row: &ReaderStudyRow) -> Result<bool, AppError> {
    if row.role == "participant" {
        return Ok(matches!(
            row.state.as_str(),
            "joined" | "assigned" | "completed"
        ));
    }
    let sites = s
        .store
        .reader_study_sites(&row.study)
        .await
        .map_err(store_err)?;
    Ok(sites.iter().any(|x| {
        x.site == s.site.as_str()
            && matches!(x.status.as_str(), "joined" | "assigned" | "contributed")
    }))
}

/// Why a contribution is refused (answered with a reason code; the detail is audited here).
pub(super) enum Refusal {
    Policy(String),
    Malformed(String),
    Internal(AppError),
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        Refusal::Internal(e)
    }
}

pub(super) fn refusal_error(r: Refusal) -> AppError {
    match r {
        Refusal::Policy(w) => AppError::PolicyRefused(w),
        Refusal::Malformed(w) => AppError::Study(w),
        Refusal::Internal(e) => e,
    }
}
