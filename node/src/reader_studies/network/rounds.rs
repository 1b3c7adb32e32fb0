//! The coordinator's side of a secure sum: rosters, round keys, masked inputs, dropouts and
//! restarts with a signed abort certificate.

use std::time::Duration;

use fedanno_protocol::crypto;
use fedanno_protocol::ids::SiteId;
use fedanno_protocol::reader_study::{ReaderStudyRequest, ReaderStudyResponse};
use fedanno_protocol::secagg::{
    self, AbortCertificate, MaskedInput, Roster, RoundKey, SignedRoster,
};
use fedanno_protocol::wire::{RefusalReason, Request, Response};

use super::participant::{contribute, round_key};
use super::{hex8, note, update};
use crate::network::kinds::MessageKind;
use crate::network::node::AppError;
use crate::network::node::context::Context;
use crate::network::node::outbound::Release;
use crate::reader_studies::jobs::{Aggregator, EmError, Job};
use crate::reader_studies::manifest::Manifest;
use crate::reader_studies::states::SiteStatus;
use crate::site::clock::now;

/// Runs secure sums over the study's sites, dropping silent ones and restarting the round.
pub struct SecureAggregator<'a> {
    cx: &'a Context,
    m: &'a Manifest,
    pub sites: Vec<SiteId>,
    timeout: Duration,
}

/// The two steps of an attempt.
#[derive(Clone, Copy)]
enum Step {
    Keys,
    Inputs,
}

/// How one attempt of a secure sum ended.
enum Attempt {
    Sum(Vec<u128>),
    /// These sites did not answer; the abort certificate for the retry.
    Silent(Vec<SiteId>, Box<AbortCertificate>, &'static str),
}

fn aggregate_err(e: impl std::fmt::Display) -> EmError {
    EmError::Aggregate(e.to_string())
}

/// Maps a site's refusal of a round step; policy refusals are the whole round's.
fn refused(reason: RefusalReason, site: &SiteId) -> AppError {
    match reason {
        RefusalReason::PolicyDenied => AppError::PolicyRefused(site.to_string()),
        other => AppError::Refused(format!("{other:?}")),
    }
}

impl<'a> SecureAggregator<'a> {
    pub(crate) fn new(cx: &'a Context, m: &'a Manifest, sites: Vec<SiteId>) -> Self {
        Self {
            cx,
            m,
            sites,
            timeout: Duration::from_secs(m.deadlines.round_timeout_secs),
        }
    }

    async fn ask(&self, site: &SiteId, req: ReaderStudyRequest) -> Result<Response, AppError> {
        let rel = Release::of(&self.m.study.id);
        let req = Request::ReaderStudy(Box::new(req));
        self.cx
            .request(
                site,
                MessageKind::SecaggKeys,
                &rel,
                &req,
                Some(self.timeout),
            )
            .await
    }

    async fn key_of(&self, site: &SiteId, signed: &SignedRoster) -> Result<RoundKey, AppError> {
        let cx = self.cx;
        if site == cx.site() {
            return round_key(cx, None, signed)
                .await
                .map_err(|r| r.into_error());
        }
        let req = ReaderStudyRequest::Keys {
            roster: signed.clone(),
        };
        match self.ask(site, req).await? {
            Response::ReaderStudy(ReaderStudyResponse::Key { key }) => {
                let pk = cx
                    .signing_key_of(site)
                    .ok_or_else(|| AppError::NotConnected(site.to_string()))?;
                key.verify(&pk)
                    .map_err(|e| AppError::BadReply(e.to_string()))?;
                if key.site != *site || key.roster_hash != signed.roster.hash() {
                    return Err(AppError::BadReply("a round key for another roster".into()));
                }
                Ok(key)
            }
            Response::Refused { reason } => Err(refused(reason, site)),
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
        let cx = self.cx;
        if site == cx.site() {
            return contribute(cx, None, signed, keys, job)
                .await
                .map(|x| x.0)
                .map_err(|r| r.into_error());
        }
        let req = ReaderStudyRequest::Input {
            roster: signed.clone(),
            keys: keys.to_vec(),
            job: job.to_vec(),
        };
        match self.ask(site, req).await? {
            Response::ReaderStudy(ReaderStudyResponse::Masked { input }) => {
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
            Response::Refused { reason } => Err(refused(reason, site)),
            _ => Err(AppError::BadReply(
                "unexpected answer to an input request".into(),
            )),
        }
    }

    /// The roster of one attempt over the current sites.
    fn roster(&mut self, job: &Job, input: [u8; 32], dim: usize, attempt: u32) -> Roster {
        self.sites.sort();
        self.sites.dedup();
        Roster {
            study: self.m.study.id.clone(),
            input,
            attempt,
            schema: job.statistic().to_string(),
            dim: dim as u32,
            sites: self.sites.clone(),
            min_sites: self.m.privacy.min_sites,
            coordinator: self.cx.site().clone(),
            deadline: now() + self.timeout.as_secs(),
        }
    }

    /// One attempt: round keys from every site, then masked inputs, then their sum.
    async fn attempt(
        &self,
        job: &Job,
        bytes: &[u8],
        roster: &Roster,
        signed: &SignedRoster,
    ) -> Result<Attempt, EmError> {
        let signing = self.cx.identity().signing();
        let answers = futures::future::join_all(self.sites.iter().map(|s| self.key_of(s, signed)));
        let (keys, silent) = self.collect(answers.await, job, Step::Keys)?;
        if !silent.is_empty() {
            let abort = AbortCertificate::sign(roster, Vec::new(), signing);
            return Ok(Attempt::Silent(silent, Box::new(abort), "round keys"));
        }
        let answers = self
            .sites
            .iter()
            .map(|s| self.input_of(s, signed, &keys, bytes));
        let answers = futures::future::join_all(answers).await;
        let (inputs, silent) = self.collect(answers, job, Step::Inputs)?;
        if !silent.is_empty() {
            let received = inputs.iter().map(|i| (i.site.clone(), i.hash())).collect();
            let abort = AbortCertificate::sign(roster, received, signing);
            return Ok(Attempt::Silent(silent, Box::new(abort), "masked vectors"));
        }
        let sum = secagg::aggregate(roster, &inputs).map_err(aggregate_err)?;
        Ok(Attempt::Sum(sum))
    }

    /// Splits the sites' answers into the good ones and the silent sites; a policy refusal
    /// ends the whole sum.
    fn collect<T>(
        &self,
        answers: Vec<Result<T, AppError>>,
        job: &Job,
        step: Step,
    ) -> Result<(Vec<T>, Vec<SiteId>), EmError> {
        let (mut good, mut silent) = (Vec::new(), Vec::new());
        for (site, a) in self.sites.iter().zip(answers) {
            match (a, step) {
                (Ok(x), _) => good.push(x),
                (Err(AppError::PolicyRefused(_)), Step::Keys) => {
                    return Err(EmError::Refused(format!(
                        "{site}'s policy refuses {} vectors",
                        job.statistic()
                    )));
                }
                (Err(AppError::PolicyRefused(r)), Step::Inputs) => {
                    return Err(EmError::Refused(format!(
                        "{site} refused to contribute: {r}"
                    )));
                }
                (Err(e), Step::Keys) => {
                    tracing::warn!(site = %site, error = %e, "a site did not answer a roster");
                    silent.push(site.clone());
                }
                (Err(e), Step::Inputs) => {
                    tracing::warn!(site = %site, error = %e, "a site did not submit its masked vector");
                    silent.push(site.clone());
                }
            }
        }
        Ok((good, silent))
    }

    /// One secure sum, with restarts: a site that does not answer a step is dropped and the
    /// round starts again with a new roster, fresh keys and the signed abort certificate.
    pub async fn secure_sum(&mut self, job: &Job, dim: usize) -> Result<Vec<u128>, EmError> {
        let study = self.m.study.id.clone();
        let bytes = job.to_bytes();
        let input = crypto::sha256(&bytes);
        let min = self.m.privacy.min_sites.max(secagg::MIN_ROSTER as u32) as usize;
        let mut previous: Option<AbortCertificate> = None;
        for attempt in 0..=self.sites.len() as u32 {
            let roster = self.roster(job, input, dim, attempt);
            if self.sites.len() < min {
                return Err(EmError::Aggregate(format!(
                    "only {} sites remain; the study needs at least {min}",
                    self.sites.len()
                )));
            }
            let hash = roster.hash();
            let signing = self.cx.identity().signing();
            let signed = SignedRoster::sign(roster.clone(), previous.take(), signing);
            match self.attempt(job, &bytes, &roster, &signed).await? {
                Attempt::Sum(sum) => {
                    update(self.cx, &study, |p| p.secure_rounds += 1);
                    let what = format!(
                        "secure sum of {} ({dim} elements) over {} sites, roster {} attempt {attempt}",
                        job.statistic(),
                        self.sites.len(),
                        hex8(&hash)
                    );
                    note(self.cx, &study, what).await.map_err(aggregate_err)?;
                    return Ok(sum);
                }
                Attempt::Silent(silent, abort, step) => {
                    previous = Some(*abort);
                    self.restart(&study, &silent, &hash, attempt, step).await?;
                }
            }
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
        update(self.cx, study, |p| {
            p.restarts += 1;
            for n in &names {
                if !p.dropped.contains(n) {
                    p.dropped.push(n.clone());
                }
            }
        });
        for n in &names {
            let _ = self
                .cx
                .store()
                .set_reader_study_site(study, n, SiteStatus::Dropped, None, None)
                .await;
        }
        let what = format!(
            "round aborted at the {step} step (roster {} attempt {attempt}): no answer from {}; restarting without",
            hex8(hash),
            names.join(", ")
        );
        note(self.cx, study, what).await.map_err(aggregate_err)
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
