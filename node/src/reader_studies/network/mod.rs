//! Reader studies on the network: announcing a manifest, sites' decisions and progress, and
//! the secure-aggregation rounds (SA-v1, see `protocol/src/secagg.rs`) that carry every
//! released statistic.
//!
//! The coordinator drives ([`SecureAggregator`], `commands::run`); a site answers
//! (`participant::handle`). A site contributes to a round only after checking the signed
//! roster (its coordinator, its own place in it, the study's and its policy's minimum number
//! of sites), the signed key bundle, that the job is the roster's input, and the roster rule:
//! for the same input it never contributes to a roster that leaves out a site which submitted
//! under an earlier one (asked of that site directly, or taken from the coordinator's signed
//! abort certificate when it cannot be reached). Each masked vector passes the policy gate and
//! is recorded in the store and the audit log before it leaves.
//!
//! Layout: this file holds the reader-study state of a running node ([`ReaderStudyRuntime`])
//! and the helpers every side shares; `participant` answers the coordinator (and other sites'
//! statements); `rounds` is the coordinator's side of a secure sum; `commands` are what
//! [`crate::network::node::AppHandle`] asks (launch, join, assign, run, report). Everything
//! here reaches the node through its `Context`.

mod commands;
mod participant;
mod rounds;

pub(crate) use commands::{Command, execute};
pub use commands::{Delivery, ReaderStudyRun};
pub(crate) use participant::handle;
pub use rounds::SecureAggregator;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fedanno_protocol::ids::SiteId;
use ring::rand::SecureRandom;
use serde::Serialize;
use x25519_dalek::StaticSecret;

use super::ReaderStudyError;
use super::jobs::LocalData;
use super::local;
use super::manifest::Manifest;
use super::states::{ReaderStudyRole, RunPhase};
use crate::network::audit::AuditEvent;
use crate::network::node::AppError;
use crate::network::node::context::Context;
use crate::site::store::ReaderStudyRow;

/// Round secrets kept at once (one per roster in flight).
const MAX_SECRETS: usize = 256;

/// The reader-study state of a running node: round secrets (in memory only: a restart aborts
/// the round, which the protocol allows), each study's local data (loaded once per
/// assignment), and the coordinator's progress of each run.
#[derive(Default)]
pub struct ReaderStudyRuntime {
    secrets: Mutex<HashMap<[u8; 32], StaticSecret>>,
    data: Mutex<HashMap<String, Arc<LocalData>>>,
    progress: Mutex<HashMap<String, RunProgress>>,
    #[cfg(feature = "test-hooks")]
    pub(crate) faults: hooks::Faults,
}

/// A coordinator's view of a reader-study run in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunProgress {
    pub phase: RunPhase,
    pub secure_rounds: u32,
    pub restarts: u32,
    pub dropped: Vec<String>,
}

impl ReaderStudyRuntime {
    pub fn progress(&self, study: &str) -> Option<RunProgress> {
        self.progress.lock().ok()?.get(study).cloned()
    }

    fn keep_secret(&self, hash: [u8; 32], secret: StaticSecret) {
        if let Ok(mut m) = self.secrets.lock() {
            if m.len() >= MAX_SECRETS {
                // Rounds are short; a full table means stale rosters. Forget them all.
                m.clear();
            }
            m.insert(hash, secret);
        }
    }

    fn take_secret(&self, hash: &[u8; 32]) -> Option<StaticSecret> {
        self.secrets.lock().ok()?.remove(hash)
    }

    fn forget_data(&self, study: &str) {
        if let Ok(mut d) = self.data.lock() {
            d.remove(study);
        }
    }
}

/// Updates a run's progress and wakes whoever waits on the node's activity.
fn update(cx: &Context, study: &str, f: impl FnOnce(&mut RunProgress)) {
    if let Ok(mut p) = cx.reader_studies().progress.lock() {
        f(p.entry(study.to_string()).or_default());
    }
    cx.bump();
}

fn hex8(h: &[u8; 32]) -> String {
    crate::site::identity::hex(&h[..8])
}

/// Logs and audits a reader-study step.
async fn note(cx: &Context, study: &str, what: String) -> Result<(), AppError> {
    tracing::info!(study = %study, "{what}");
    cx.audit()
        .record(AuditEvent::ReaderStudy {
            study: study.to_string(),
            what,
        })
        .await?;
    Ok(())
}

fn new_secret() -> Result<StaticSecret, ReaderStudyError> {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(&mut b[..])
        .map_err(|_| ReaderStudyError::Randomness)?;
    Ok(StaticSecret::from(*b))
}

fn site_id(s: &str) -> Result<SiteId, ReaderStudyError> {
    SiteId::new(s.to_string()).map_err(|_| ReaderStudyError::SiteId(s.to_string()))
}

/// A reader study this site knows, with its manifest.
async fn known(cx: &Context, study: &str) -> Result<(ReaderStudyRow, Manifest), ReaderStudyError> {
    let row = cx
        .store()
        .reader_study(study)
        .await?
        .ok_or_else(|| ReaderStudyError::Unknown(study.to_string()))?;
    let m = Manifest::parse(&row.manifest)?;
    Ok((row, m))
}

/// This site's data for a reader study (loaded once per assignment).
async fn local_data(cx: &Context, m: &Manifest) -> Result<Arc<LocalData>, ReaderStudyError> {
    let runtime = cx.reader_studies();
    if let Some(d) = runtime
        .data
        .lock()
        .ok()
        .and_then(|d| d.get(&m.study.id).cloned())
    {
        return Ok(d);
    }
    let d = Arc::new(local::load(cx.store(), m, cx.site().as_str()).await?);
    if let Ok(mut map) = runtime.data.lock() {
        map.insert(m.study.id.clone(), d.clone());
    }
    Ok(d)
}

/// Whether this site takes part in a reader study (joined, at the coordinator too).
async fn participating(cx: &Context, row: &ReaderStudyRow) -> Result<bool, ReaderStudyError> {
    if row.role == ReaderStudyRole::Participant {
        return Ok(row.state.participating());
    }
    let sites = cx.store().reader_study_sites(&row.study).await?;
    Ok(sites
        .iter()
        .any(|x| x.site == cx.site().as_str() && x.status.participating()))
}

/// Why a contribution is refused (answered with a reason code; the detail is audited).
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

impl From<ReaderStudyError> for Refusal {
    fn from(e: ReaderStudyError) -> Self {
        Refusal::Internal(e.into())
    }
}

impl Refusal {
    /// The refusal as the coordinator's own error, when it contributes its own data.
    fn into_error(self) -> AppError {
        match self {
            Refusal::Policy(w) => AppError::PolicyRefused(w),
            Refusal::Malformed(w) => ReaderStudyError::Refused(w).into(),
            Refusal::Internal(e) => e,
        }
    }
}

/// Test hooks: fault injection for the tests of dropouts. Only with the `test-hooks` feature,
/// never in a release binary.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// After `silent_after` masked vectors the site stops answering input requests (it hangs,
    /// like a site that went silent mid-round).
    pub(crate) struct Faults {
        silent_after: AtomicU32,
        inputs_answered: AtomicU32,
    }

    impl Default for Faults {
        fn default() -> Self {
            Faults {
                silent_after: AtomicU32::new(u32::MAX),
                inputs_answered: AtomicU32::new(0),
            }
        }
    }

    impl Faults {
        /// Answer `n` more input requests, then fall silent (no answer, no refusal).
        pub(crate) fn go_silent_after(&self, n: u32) {
            let done = self.inputs_answered.load(Ordering::SeqCst);
            self.silent_after
                .store(done.saturating_add(n), Ordering::SeqCst);
        }

        /// Counts an input request; whether to leave it unanswered.
        pub(crate) fn silent_now(&self) -> bool {
            let n = self.inputs_answered.fetch_add(1, Ordering::SeqCst);
            n >= self.silent_after.load(Ordering::SeqCst)
        }
    }
}
