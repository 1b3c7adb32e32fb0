//! Study commands the `AppHandle` runs: launch, join, assign, run, report.

use super::participant::store_consensus;
use super::*;

/// What `study launch` reports per participant.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
        .put_reader_study(ReaderStudyRow {
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
            &Request::ReaderStudy(Box::new(ReaderStudyRequest::Announce {
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
            .reader_study_sites(&m.study.id)
            .await
            .map_err(store_err)?
            .into_iter()
            .any(|x| x.site == *site && x.status != "announced" && x.status != "unreachable");
        if !known {
            s.store
                .set_reader_study_site(
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
    let row = reader_study_row(s, study).await?;
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
            .set_reader_study_site(
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
            .set_reader_study_state(study, status, Some(d.reasons.clone()))
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
            &Request::ReaderStudy(Box::new(ReaderStudyRequest::Decision {
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
    let row = reader_study_row(s, study).await?;
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
            .set_reader_study_site(
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
            .set_reader_study_state(study, "assigned", None)
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
            &Request::ReaderStudy(Box::new(ReaderStudyRequest::Progress {
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
pub struct ReaderStudyRun {
    pub manifest: Manifest,
    pub consensus: ConsensusOutcome,
    pub quality: Option<QualityOutcome>,
    pub sites: Vec<String>,
    pub progress: RunProgress,
    pub one_round_refused: Option<String>,
}

pub(super) async fn release(
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
            &Request::ReaderStudy(Box::new(ReaderStudyRequest::Release {
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
pub async fn run(s: &Shared, study: &str) -> Result<ReaderStudyRun, AppError> {
    let row = reader_study_row(s, study).await?;
    if row.role != "coordinator" {
        return Err(AppError::Study(format!(
            "this site does not coordinate study {study}"
        )));
    }
    let m = manifest_of(&row)?;
    let sites: Vec<SiteId> = s
        .store
        .reader_study_sites(study)
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
        .set_reader_study_state(study, "running", None)
        .await
        .map_err(store_err)?;
    note(s, study, format!("run started with {} sites", sites.len())).await?;
    let result = run_inner(s, &m, sites).await;
    match &result {
        Ok(_) => s
            .store
            .set_reader_study_state(study, "completed", Some(Vec::new()))
            .await
            .map_err(store_err)?,
        Err(e) => {
            s.store
                .set_reader_study_state(study, "failed", Some(vec![e.to_string()]))
                .await
                .map_err(store_err)?;
            note(s, study, format!("run failed: {e}")).await?;
        }
    }
    s.bump();
    result
}

pub(super) async fn run_inner(
    s: &Shared,
    m: &Manifest,
    sites: Vec<SiteId>,
) -> Result<ReaderStudyRun, AppError> {
    let study = m.study.id.clone();
    let mut agg = SecureAggregator::new(s, m, sites);
    let mut one_round_refused = None;
    let (consensus, next) = if jobs::wants_one_round(m) {
        match jobs::run_consensus(m, &mut agg, true, 0).await {
            Ok(x) => x,
            Err(EmError::Refused(why))
                if m.consensus.protocol != crate::reader_studies::manifest::Protocol::OneRound =>
            {
                note(
                    s,
                    &study,
                    format!("one-round STAPLE refused ({why}); running iterative EM"),
                )
                .await?;
                one_round_refused = Some(why);
                jobs::run_consensus(m, &mut agg, false, 1)
                    .await
                    .map_err(|e| AppError::Study(e.to_string()))?
            }
            Err(e) => return Err(AppError::Study(e.to_string())),
        }
    } else {
        jobs::run_consensus(m, &mut agg, false, 0)
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
            .set_reader_study_site(
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
        let (q, _) = jobs::run_quality(m, &consensus, &mut agg, next)
            .await
            .map_err(|e| AppError::Study(e.to_string()))?;
        Some(q)
    };
    update(s, &study, |p| p.phase = "done".into());
    let progress = s.study.progress(&study).unwrap_or_default();
    Ok(ReaderStudyRun {
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
    let m = match reader_study_row(s, study)
        .await
        .and_then(|r| manifest_of(&r))
    {
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
pub async fn finish(
    s: &Shared,
    run: &ReaderStudyRun,
) -> Result<crate::reader_studies::report::ReaderStudyReport, AppError> {
    use crate::reader_studies::summary::{RunFacts, SiteFacts};
    let m = &run.manifest;
    let id = m.study.id.clone();
    let entries = s
        .store
        .audit_entries(crate::site::store::AuditFilter {
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
    let rows = s.store.reader_study_sites(&id).await.map_err(store_err)?;
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
    audit.push(crate::reader_studies::report::AuditRef {
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
            audit.push(crate::reader_studies::report::AuditRef {
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
    let report =
        crate::reader_studies::summary::build(m, &run.consensus, run.quality.as_ref(), &facts);
    let json = crate::reader_studies::report::to_json(&report).to_string();
    s.store
        .put_reader_study_result(&id, "report", json.clone())
        .await
        .map_err(store_err)?;
    note(s, &id, "report stored".into()).await?;
    publish_report(s, m, &run.sites, &json).await?;
    Ok(report)
}
