//! The site's side of a study: answering announcements, decisions, progress, rosters, inputs,
//! statements and releases, with every check a contribution needs before it leaves.

use super::*;

pub(super) async fn receipt(
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

pub(super) async fn refuse(
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
pub(crate) async fn handle(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    message_hash: [u8; 32],
    req: ReaderStudyRequest,
) -> Result<(), AppError> {
    match req {
        ReaderStudyRequest::Announce { manifest } => {
            announce(s, member, id, message_hash, manifest).await
        }
        ReaderStudyRequest::Decision {
            study,
            manifest_hash,
            joined,
        } => {
            let check = |row: &ReaderStudyRow| {
                let m = manifest_of(row).map_err(|e| e.to_string())?;
                let participant = m
                    .participants
                    .sites
                    .iter()
                    .any(|x| x == member.site.as_str());
                if row.role != "coordinator" || row.manifest_hash != manifest_hash || !participant {
                    return Err("a decision on another manifest or from a non-participant".into());
                }
                Ok(())
            };
            if reader_study_for(s, member, id, &study, check)
                .await?
                .is_none()
            {
                return Ok(());
            }
            let status = if joined { "joined" } else { "declined" };
            s.store
                .set_reader_study_site(
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
        ReaderStudyRequest::Progress {
            study,
            cases,
            reads,
        } => {
            let check = |row: &ReaderStudyRow| {
                if row.role != "coordinator" {
                    return Err("progress sent to a non-coordinator".into());
                }
                Ok(())
            };
            if reader_study_for(s, member, id, &study, check)
                .await?
                .is_none()
            {
                return Ok(());
            }
            let reads = serde_json::to_value(&reads).unwrap_or(serde_json::Value::Null);
            s.store
                .set_reader_study_site(&study, member.site.as_str(), "assigned", Some(cases), reads)
                .await
                .map_err(store_err)?;
            note(s, &study, format!("{} assigned {cases} cases", member.site)).await?;
            s.bump();
            receipt(s, member, id, message_hash, &study).await
        }
        ReaderStudyRequest::Keys { roster } => {
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
                        &Response::ReaderStudy(ReaderStudyResponse::Key { key }),
                    )
                    .await
                }
                Err(r) => refusal(s, member, id, &study, r).await,
            }
        }
        ReaderStudyRequest::Input { roster, keys, job } => {
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
                        &Response::ReaderStudy(ReaderStudyResponse::Masked { input }),
                    )
                    .await
                }
                Err(r) => refusal(s, member, id, &study, r).await,
            }
        }
        ReaderStudyRequest::Statement { roster_hash } => {
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
                &Response::ReaderStudy(ReaderStudyResponse::Statement { statement }),
            )
            .await
        }
        ReaderStudyRequest::Release { study, what, body } => {
            let check = |row: &ReaderStudyRow| {
                if row.coordinator != member.site.as_str() {
                    return Err("a release from a site that does not coordinate the study".into());
                }
                Ok(())
            };
            let Some(row) = reader_study_for(s, member, id, &study, check).await? else {
                return Ok(());
            };
            match accept_release(s, &row, &what, &body).await {
                Ok(()) => receipt(s, member, id, message_hash, &study).await,
                Err(e) => refusal(s, member, id, &study, Refusal::Malformed(e.to_string())).await,
            }
        }
    }
}

/// The study a coordinator-bound request names, if this site knows it and `check` accepts its
/// row; otherwise the request is refused as malformed (and `None` returned).
pub(super) async fn reader_study_for(
    s: &Shared,
    member: &MemberInfo,
    id: u64,
    study: &str,
    check: impl FnOnce(&ReaderStudyRow) -> Result<(), String>,
) -> Result<Option<ReaderStudyRow>, AppError> {
    let Some(row) = s.store.reader_study(study).await.map_err(store_err)? else {
        refuse(
            s,
            member,
            id,
            None,
            RefusalReason::Malformed,
            "unknown study".into(),
        )
        .await?;
        return Ok(None);
    };
    if let Err(why) = check(&row) {
        refusal(s, member, id, study, Refusal::Malformed(why)).await?;
        return Ok(None);
    }
    Ok(Some(row))
}

pub(super) async fn refusal(
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

pub(super) async fn announce(
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
    let row = ReaderStudyRow {
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
    match s.store.put_reader_study(row).await {
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

pub(super) async fn accept_release(
    s: &Shared,
    row: &ReaderStudyRow,
    what: &str,
    body: &[u8],
) -> Result<(), AppError> {
    let m = manifest_of(row)?;
    match what {
        "consensus" => {
            let outcome =
                ConsensusOutcome::from_bytes(body).map_err(|e| AppError::Study(e.to_string()))?;
            store_consensus(s, &m, &outcome).await?;
            s.store
                .set_reader_study_state(&m.study.id, "completed", None)
                .await
                .map_err(store_err)?;
        }
        "report" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| AppError::Study("a report that is not UTF-8".into()))?;
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| AppError::Study(e.to_string()))?;
            s.store
                .put_reader_study_result(&m.study.id, "report", text.to_string())
                .await
                .map_err(store_err)?;
            note(s, &m.study.id, "received the study report".into()).await?;
        }
        other => return Err(AppError::Study(format!("unknown release {other:?}"))),
    }
    s.bump();
    Ok(())
}

pub(super) async fn store_consensus(
    s: &Shared,
    m: &Manifest,
    outcome: &ConsensusOutcome,
) -> Result<(), AppError> {
    // The data the rounds used (loaded once per assignment), not a second read of the store.
    let data = local_data(s, m).await?;
    let n = local::store_consensus(&s.store, m, &data, outcome)
        .await
        .map_err(store_err)?;
    s.store
        .put_reader_study_result(
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
pub(super) async fn check_roster(
    s: &Shared,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
) -> Result<(Manifest, Arc<LocalData>), Refusal> {
    let r = &signed.roster;
    let row = s
        .store
        .reader_study(&r.study)
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
pub(super) async fn round_key(
    s: &Shared,
    from: Option<&MemberInfo>,
    signed: &SignedRoster,
) -> Result<RoundKey, Refusal> {
    let (_, data) = check_roster(s, from, signed).await?;
    let r = &signed.roster;
    if let Some(member) = from {
        // Refuse early when the policy would refuse the masked vector anyway.
        let roles = Shared::roles_of(member);
        let d = s.policy.decide(&crate::network::policy::Outbound {
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
pub(super) async fn ask_statement(
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
        &Request::ReaderStudy(Box::new(ReaderStudyRequest::Statement { roster_hash })),
        Some(STATEMENT_TIMEOUT),
    )
    .await?;
    match resp {
        Response::ReaderStudy(ReaderStudyResponse::Statement { statement }) => {
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
pub(super) async fn guard(s: &Shared, signed: &SignedRoster) -> Result<(), Refusal> {
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
pub(super) async fn contribute(
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
    let job = Job::from_bytes(job_bytes).map_err(|e| Refusal::Malformed(format!("job: {e}")))?;
    if job.study != r.study || job.statistic().as_str() != r.schema {
        return Err(Refusal::Malformed(
            "the job belongs to another study or schema".into(),
        ));
    }
    guard(s, signed).await?;
    let x = {
        let (job, data) = (job.clone(), data.clone());
        tokio::task::spawn_blocking(move || jobs::compute(&job, &data))
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
            statistic: Some(job.statistic().as_str()),
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
