//! Federated studies end to end on real nodes (loopback TCP): a 3-site segmentation study and
//! a classification study equal the pooled computation bit for bit; a site whose policy refuses
//! the manifest sends nothing but its "declined"; a dishonest coordinator cannot difference two
//! rosters; a site that goes silent is dropped and the study completes without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fedanno_node::annotations::nifti::{self, NiftiLimits};
use fedanno_node::network::audit::AuditEvent;
use fedanno_node::network::node::Node;
use fedanno_node::network::policy::Policy;
use fedanno_node::reader_studies::jobs::{ConsensusOutcome, Job, JobKind, staple_dim};
use fedanno_node::reader_studies::states::ReleaseKind;
use fedanno_node::site::store::AuditFilter;
use fedanno_node::site::store::Store;
use fedanno_node::tools::demo::{self, SEGMENTATION_MANIFEST};
use fedanno_protocol::ids::SiteId;
use fedanno_stats::dawid_skene::{DsOptions, dawid_skene};
use fedanno_stats::multilabel::{LabelPatternHistogram, MultiLabelOptions, multilabel_staple};
use fedanno_stats::ratings::LabeledRatings;
use fedanno_stats::staple::{PatternHistogram, StapleOptions, staple};
use fedanno_tests::network::{Consortium, with_policy};

struct Member {
    id: SiteId,
    store: Store,
    synth: PathBuf,
    node: Node,
}

/// `n` sites (the first coordinates), each with `cases` synthetic cases, nodes fully connected;
/// site `i` runs `policies[i]` (default: the research policy).
async fn consortium(ids: &[&str], cases: usize, policies: &[Policy]) -> (Consortium, Vec<Member>) {
    let c = Consortium::new(ids);
    for (i, id) in ids.iter().enumerate() {
        demo::prepare_site(
            c.site(i),
            &c.tmp.path().join("synth").join(id),
            cases,
            [24, 24, 12],
            i as u64 + 1,
            &format!("{id}-case-"),
            &demo::local_reader(id),
        )
        .await
        .unwrap_or_else(|e| panic!("prepare {id}: {e:#}"));
    }
    let nodes = c
        .start_with(|i| {
            with_policy(
                policies
                    .get(i)
                    .cloned()
                    .unwrap_or_else(Policy::default_site),
            )
        })
        .await;
    let members = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| Member {
            id: c.id(i).clone(),
            store: c.site(i).store.clone(),
            synth: c.tmp.path().join("synth").join(ids[i]),
            node,
        })
        .collect();
    (c, members)
}

/// The audit events of one kind a site logged for a study.
async fn events(
    store: fedanno_node::site::store::Store,
    kind: &str,
    study: &str,
) -> Vec<AuditEvent> {
    store
        .audit_entries(AuditFilter {
            kind: Some(kind.into()),
            study: Some(study.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

fn labels(path: &Path) -> Vec<u8> {
    let img = nifti::read_file(path, &NiftiLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    img.to_labels_u8().unwrap_or_else(|e| panic!("{e}"))
}

/// What `fedanno consensus staple --readers-dir A --readers-dir B ...` pools: readers by
/// directory name (sorted), every case's present readers embedded at their positions.
fn pooled_staple(dirs: &[PathBuf]) -> fedanno_stats::staple::StapleResult {
    let mut cases: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for d in dirs {
        for r in std::fs::read_dir(d).unwrap() {
            let r = r.unwrap().path();
            let reader = r.file_name().unwrap().to_string_lossy().to_string();
            for f in std::fs::read_dir(&r).unwrap() {
                let f = f.unwrap().path();
                let name = f.file_name().unwrap().to_string_lossy().to_string();
                if let Some(case) = name.strip_suffix(".nii.gz") {
                    cases
                        .entry(case.to_string())
                        .or_default()
                        .insert(reader.clone(), f);
                }
            }
        }
    }
    let mut readers: Vec<String> = cases.values().flat_map(|m| m.keys().cloned()).collect();
    readers.sort();
    readers.dedup();
    let mut pooled = PatternHistogram {
        n_raters: readers.len(),
        patterns: Vec::new(),
    };
    for by_reader in cases.values() {
        let masks: Vec<Vec<u8>> = by_reader.values().map(|p| labels(p)).collect();
        let refs: Vec<&[u8]> = masks.iter().map(Vec::as_slice).collect();
        let positions: Vec<usize> = by_reader
            .keys()
            .map(|r| readers.iter().position(|x| x == r).unwrap())
            .collect();
        let h = PatternHistogram::from_raters(&refs, 1u8, None).unwrap();
        pooled
            .merge(&h.embed(&positions, readers.len()).unwrap())
            .unwrap();
    }
    staple(&pooled, &StapleOptions::default()).unwrap()
}

async fn run_reader_study(
    members: &[Member],
    manifest: &str,
) -> (
    String,
    fedanno_node::reader_studies::network::ReaderStudyRun,
) {
    let coord = &members[0].node.handle;
    let (id, deliveries) = coord.reader_study_launch(manifest).await.unwrap();
    assert!(deliveries.iter().all(|d| d.delivered), "{deliveries:?}");
    for m in members {
        let d = m.node.handle.reader_study_join(&id).await.unwrap();
        assert!(d.joined, "{:?}", d.reasons);
        m.node.handle.reader_study_assign(&id).await.unwrap();
    }
    let (run, report) = coord.reader_study_run_and_report(&id).await.unwrap();
    // The milestone before the release: every site's log co-signed by both others, each
    // co-signature verified by the coordinator.
    assert_eq!(report.audit.len(), members.len(), "{:?}", report.audit);
    for h in &report.audit {
        assert_eq!(h.witnesses.len(), members.len() - 1, "{h:?}");
        assert!(!h.witnesses.contains(&h.site), "{h:?}");
    }
    (id, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_site_studies_equal_the_pooled_computation() {
    let (_c, members) = consortium(&["site-a", "site-b", "site-c"], 10, &[]).await;
    let pooled = binary_staple_equals_pooled(&members).await;
    one_round_staple_equals_pooled(&members, &pooled).await;
    multilabel_staple_equals_pooled(&members).await;
    classification_equals_pooled(&members).await;
    for m in members {
        m.node.stop().await;
    }
}

/// Segmentation, iterative protocol: one secure sum per EM iteration.
async fn binary_staple_equals_pooled(members: &[Member]) -> fedanno_stats::staple::StapleResult {
    let manifest = SEGMENTATION_MANIFEST.replace("protocol = \"auto\"", "protocol = \"iterative\"");
    let (id, run) = run_reader_study(members, &manifest).await;
    let pooled = pooled_staple(
        &members
            .iter()
            .map(|m| m.synth.join("readers"))
            .collect::<Vec<_>>(),
    );
    let ConsensusOutcome::Staple {
        params,
        iterations,
        voxels_ge_half,
        probability_sum,
        one_round,
        ..
    } = &run.consensus
    else {
        panic!("not STAPLE: {:?}", run.consensus)
    };
    assert!(!one_round);
    assert_eq!(params, &pooled.params);
    assert_eq!(*iterations, pooled.iterations);
    assert_eq!(*voxels_ge_half, pooled.voxels_ge_half);
    assert_eq!(probability_sum.to_bits(), pooled.probability_sum.to_bits());
    // One secure sum per E-step (initial + iterations + 1) and one for the quality release.
    assert_eq!(run.progress.secure_rounds, pooled.iterations + 3);
    // The sites' progress (sealed annotation metadata: counts only) reached the coordinator.
    let rows = members[0].store.reader_study_sites(&id).await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r.cases, Some(10), "{r:?}");
        assert!(r.reads.as_ref().is_some_and(|a| !a.is_empty()), "{r:?}");
    }
    // Every site stored the consensus as annotations of the reader `consensus`, and has the
    // report.
    for m in members {
        let rows = m
            .store
            .list_annotations(fedanno_node::site::store::AnnotationFilter {
                reader: Some("consensus".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 10, "{}", m.id);
        consensus_carries_the_task_codes(m).await;
        assert!(
            m.store
                .reader_study_result(&id, ReleaseKind::Report)
                .await
                .unwrap()
                .is_some()
        );
    }
    pooled
}

/// The consensus segment carries the codes the task gives its label (the template's SCT
/// "Nodule"), made by the consensus method.
async fn consensus_carries_the_task_codes(m: &Member) {
    let versions = m
        .store
        .versions(
            fedanno_node::site::store::AnnotationFilter {
                reader: Some("consensus".into()),
                ..Default::default()
            },
            true,
        )
        .await
        .unwrap();
    let content = fedanno_node::annotations::interchange::export::content_of(&versions[0]).unwrap();
    let fedanno_node::annotations::model::Content::Segmentation(s) = content else {
        panic!("not a segmentation")
    };
    let d = s.segments[0].description.as_ref().expect("described");
    assert_eq!(
        (
            d.property_type.value.as_str(),
            d.property_type.meaning.as_str()
        ),
        ("27925004", "Nodule")
    );
    assert_eq!(
        d.method,
        fedanno_node::annotations::model::Method::Automatic
    );
    let algorithm = d.algorithm.as_ref().unwrap();
    assert_eq!(algorithm.name, "fedanno staple consensus");
}

/// The same data through the one-round protocol gives the same parameters.
async fn one_round_staple_equals_pooled(
    members: &[Member],
    pooled: &fedanno_stats::staple::StapleResult,
) {
    let manifest = SEGMENTATION_MANIFEST
        .replace("id = \"lung-nodules\"", "id = \"lung-nodules-one-round\"")
        .replace("protocol = \"auto\"", "protocol = \"one-round\"");
    let (_, run1) = run_reader_study(members, &manifest).await;
    let ConsensusOutcome::Staple {
        params: p1,
        iterations: i1,
        one_round,
        ..
    } = &run1.consensus
    else {
        panic!("not STAPLE")
    };
    assert!(one_round);
    assert_eq!(p1, &pooled.params);
    assert_eq!(*i1, pooled.iterations);
}

/// Multi-label STAPLE (ITK semantics) of the panel and the model, every reader on every case.
async fn multilabel_staple_equals_pooled(members: &[Member]) {
    let manifest = include_str!("../../policies/studies/brain-lesion-multilabel.toml")
        .replace(
            "labels = [\"enhancing\", \"edema\", \"necrosis\"]",
            "labels = [\"nodule\"]",
        )
        .replace("modality = \"MR\"", "modality = \"CT\"")
        .replace(
            "panel = [\"neuro-panel-1\", \"neuro-panel-2\"]",
            "panel = [\"panel-expert\", \"panel-generous\"]",
        )
        .replace("models = [\"brats-model\"]", "models = [\"model-a\"]");
    let (_, run) = run_reader_study(members, &manifest).await;
    let mut pooled_hist: Option<LabelPatternHistogram> = None;
    for m in members {
        let dir = m.synth.join("readers");
        let mut cases: Vec<String> = std::fs::read_dir(dir.join("model-a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".nii.gz"))
            .collect();
        cases.sort();
        for case in cases {
            let masks: Vec<Vec<u8>> = ["model-a", "panel-expert", "panel-generous"]
                .iter()
                .map(|r| labels(&dir.join(r).join(&case)))
                .collect();
            let refs: Vec<&[u8]> = masks.iter().map(Vec::as_slice).collect();
            let h = LabelPatternHistogram::from_raters(&refs, None)
                .unwrap()
                .with_label_count(2)
                .unwrap();
            match pooled_hist.as_mut() {
                Some(p) => p.merge(&h).unwrap(),
                None => pooled_hist = Some(h),
            }
        }
    }
    let pooled = multilabel_staple(&pooled_hist.unwrap(), &MultiLabelOptions::default()).unwrap();
    let ConsensusOutcome::Multi {
        params,
        priors,
        iterations,
        label_counts,
        ..
    } = &run.consensus
    else {
        panic!("not multi-label: {:?}", run.consensus)
    };
    assert_eq!(params, &pooled.params);
    assert_eq!(priors, &pooled.priors);
    assert_eq!(*iterations, pooled.iterations);
    assert_eq!(label_counts, &pooled.label_counts);
}

/// Classification: Dawid–Skene and agreement over the union of the sites' ratings.
async fn classification_equals_pooled(members: &[Member]) {
    let manifest = demo::classification_manifest(&["site-a", "site-b", "site-c"]);
    let (_, run) = run_reader_study(members, &manifest).await;
    let mut triples: Vec<(String, String, String)> = Vec::new();
    for m in members {
        let text = std::fs::read_to_string(m.synth.join("ratings.csv")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            triples.push((f[0].into(), f[1].into(), f[2].into()));
        }
    }
    // Raters in the study's (sorted) order, as a CSV sorted by rater lists them.
    triples.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let cats: Vec<String> = ["1", "2", "3", "4"].iter().map(|s| s.to_string()).collect();
    let lr = LabeledRatings::from_triples(&triples, &cats).unwrap();
    let pooled = dawid_skene(&lr.ratings, &DsOptions::default()).unwrap();
    let ConsensusOutcome::DawidSkene {
        params,
        iterations,
        log_likelihood,
        ..
    } = &run.consensus
    else {
        panic!("not DS")
    };
    assert_eq!(params, &pooled.params);
    assert_eq!(*iterations, pooled.iterations);
    assert_eq!(log_likelihood.to_bits(), pooled.log_likelihood.to_bits());
    let agreement = run
        .quality
        .as_ref()
        .and_then(|q| q.agreement.clone())
        .unwrap();
    assert_eq!(
        agreement,
        fedanno_stats::agreement::AgreementStats::from_ratings(&lr.ratings)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_site_sends_only_its_decline() {
    let strict = Policy::parse(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-site.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    let (_c, members) = consortium(
        &["site-a", "site-b", "site-c"],
        10,
        &[Policy::default_site(), Policy::default_site(), strict],
    )
    .await;
    let coord = &members[0].node.handle;
    let (id, _) = coord
        .reader_study_launch(SEGMENTATION_MANIFEST)
        .await
        .unwrap();
    let d = members[2].node.handle.reader_study_join(&id).await.unwrap();
    assert!(!d.joined);
    assert!(
        d.reasons.iter().any(|r| r.contains("at least 5")),
        "{:?}",
        d.reasons
    );
    for m in &members[..2] {
        assert!(m.node.handle.reader_study_join(&id).await.unwrap().joined);
        m.node.handle.reader_study_assign(&id).await.unwrap();
    }
    // Two sites are too few: the run refuses to start.
    let e = coord.reader_study_run(&id).await.unwrap_err().to_string();
    assert!(e.contains("at least 3"), "{e}");
    // What the strict site sent about this study: its decision and nothing else.
    let sent = events(members[2].store.clone(), "sent", &id).await;
    let kinds: Vec<String> = sent
        .iter()
        .filter_map(|e| match e {
            AuditEvent::Sent { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect();
    assert!(kinds.contains(&"study-decision".to_string()), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|k| k == "study-decision" || k == "receipt"),
        "{kinds:?}"
    );
    // The policy decision behind each of them is in the study's entries too.
    let decisions = events(members[2].store.clone(), "policy", &id).await;
    assert!(
        decisions.iter().any(|e| matches!(e, AuditEvent::Decision { kind, study: Some(s), allowed: true, .. } if kind == "study-decision" && *s == id)),
        "{decisions:?}"
    );
    for m in members {
        m.node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_report_is_released_while_a_log_lacks_its_quorum_of_witnesses() {
    // The coordinator wants three co-signatures per log; three sites can give each other two.
    let mut strict = Policy::default_site();
    strict.witness.quorum = 3;
    let (_c, members) = consortium(&["site-a", "site-b", "site-c"], 10, &[strict]).await;
    let coord = &members[0].node.handle;
    let (id, _) = coord
        .reader_study_launch(SEGMENTATION_MANIFEST)
        .await
        .unwrap();
    for m in &members {
        assert!(m.node.handle.reader_study_join(&id).await.unwrap().joined);
        m.node.handle.reader_study_assign(&id).await.unwrap();
    }
    let e = coord
        .reader_study_run_and_report(&id)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not witnessed") && e.contains("quorum is 3"),
        "{e}"
    );
    for m in &members {
        let report = m.store.reader_study_result(&id, ReleaseKind::Report).await;
        assert!(report.unwrap().is_none(), "{}", m.id);
    }
    // Each participant had its log co-signed for the milestone, and noted it in the study.
    let notes = events(members[1].store.clone(), "study", &id).await;
    assert!(
        notes.iter().any(|e| format!("{e:?}").contains("milestone")),
        "{notes:?}"
    );
    for m in members {
        m.node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_is_refused_and_a_silent_site_is_dropped() {
    let ids = ["site-a", "site-b", "site-c", "site-d"];
    let (_c, members) = consortium(&ids, 10, &[]).await;
    let manifest = SEGMENTATION_MANIFEST
        .replace(
            "sites = [\"site-a\", \"site-b\", \"site-c\"]",
            "sites = [\"site-a\", \"site-b\", \"site-c\", \"site-d\"]",
        )
        .replace(
            "site-c = [\"local-c\"]",
            "site-c = [\"local-c\"]\nsite-d = [\"local-d\"]",
        )
        .replace("protocol = \"auto\"", "protocol = \"iterative\"")
        .replace("round_timeout_secs = 60", "round_timeout_secs = 2");
    let coord = members[0].node.handle.clone();
    let (id, _) = coord.reader_study_launch(&manifest).await.unwrap();
    for m in &members {
        assert!(m.node.handle.reader_study_join(&id).await.unwrap().joined);
        m.node.handle.reader_study_assign(&id).await.unwrap();
    }
    // A dishonest coordinator: every site submits, then it claims site-d was silent and
    // retries the same input without it. The honest sites ask site-d, learn that it did
    // submit, and refuse: the coordinator never gets the second sum.
    let all: Vec<SiteId> = ids.iter().map(|s| SiteId::new(*s).unwrap()).collect();
    let job = Job {
        study: id.clone(),
        // A step the real run never uses: the guard keeps protecting an input whose sum the
        // coordinator already holds.
        step: 1000,
        kind: JobKind::StapleInit,
    };
    let n_readers = 7;
    let (honest, second) = coord
        .dishonest_round(
            &id,
            &job,
            staple_dim(n_readers),
            all.clone(),
            vec![SiteId::new("site-d").unwrap()],
        )
        .await;
    assert!(honest.is_ok(), "{honest:?}");
    let e = second.unwrap_err().to_string();
    assert!(e.contains("refused"), "{e}");
    let guard_noted = events(members[1].store.clone(), "study", &id)
        .await
        .iter()
        .any(
            |e| matches!(e, AuditEvent::ReaderStudy { what, .. } if what.contains("differencing guard")),
        );
    assert!(
        guard_noted,
        "no differencing-guard note at site-b; the error was {e}"
    );

    // Now site-d goes silent in the middle of the run: it answers two input requests, then
    // hangs. The coordinator waits out the round deadline, drops it, restarts the round with
    // fresh keys, and the study completes with three sites.
    members[3].node.handle.go_silent_after(2);
    let (run, report) = coord.reader_study_run_and_report(&id).await.unwrap();
    assert_eq!(run.sites, vec!["site-a", "site-b", "site-c"]);
    assert_eq!(run.progress.dropped, vec!["site-d".to_string()]);
    assert_eq!(run.progress.restarts, 1);
    assert!(
        report
            .sites
            .iter()
            .any(|s| s.site == "site-d" && s.status == "dropped")
    );
    // Site-d submitted exactly two vectors in this run (plus one in the first round above).
    let submitted = events(members[3].store.clone(), "study", &id)
        .await
        .iter()
        .filter(
            |e| matches!(e, AuditEvent::ReaderStudy { what, .. } if what.starts_with("submitted")),
        )
        .count();
    assert_eq!(submitted, 3);
    for m in members {
        m.node.stop().await;
    }
}
