//! The coordinator's side of a secure sum: rosters, round keys, masked inputs, dropouts and
//! restarts with a signed abort certificate.

use super::participant::{contribute, round_key};
use super::*;

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
            &Request::ReaderStudy(Box::new(ReaderStudyRequest::Keys {
                roster: signed.clone(),
            })),
            Some(self.timeout),
        )
        .await?;
        match resp {
            Response::ReaderStudy(ReaderStudyResponse::Key { key }) => {
                let pk =
                    site_key(s, site).ok_or_else(|| AppError::NotConnected(site.to_string()))?;
                key.verify(&pk)
                    .map_err(|e| AppError::BadReply(e.to_string()))?;
                if key.site != *site || key.roster_hash != signed.roster.hash() {
                    return Err(AppError::BadReply("a round key for another roster".into()));
                }
                Ok(key)
            }
            Response::Refused {
                reason: RefusalReason::PolicyDenied,
            } => Err(AppError::PolicyRefused(site.to_string())),
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
            &Request::ReaderStudy(Box::new(ReaderStudyRequest::Input {
                roster: signed.clone(),
                keys: keys.to_vec(),
                job: job.to_vec(),
            })),
            Some(self.timeout),
        )
        .await?;
        match resp {
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
            Response::Refused {
                reason: RefusalReason::PolicyDenied,
            } => Err(AppError::PolicyRefused(site.to_string())),
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
                    Err(AppError::PolicyRefused(_)) => {
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
                    Err(AppError::PolicyRefused(r)) => {
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
                .set_reader_study_site(study, n, "dropped", None, serde_json::Value::Null)
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
