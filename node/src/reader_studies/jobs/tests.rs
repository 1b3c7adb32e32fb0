//! Federated equals pooled: every driver, run over a plain sum of per-site vectors for random
//! partitions of random data, gives bit for bit what the pooled `stats` driver gives.

use super::*;
use fedanno_stats::fixed::tests_rng::XorShift;
use fedanno_stats::multilabel::{MultiLabelOptions, multilabel_staple};

struct Plain<'a>(&'a [LocalData]);

impl Aggregator for Plain<'_> {
    fn sum(
        &mut self,
        job: &Job,
        dim: usize,
    ) -> impl Future<Output = Result<Vec<u128>, EmError>> + Send {
        let r = (|| {
            // Every site decodes the job from its bytes, as a real round does.
            let job =
                &Job::from_bytes(&job.to_bytes()).map_err(|e| EmError::Aggregate(e.to_string()))?;
            assert_eq!(
                job.input_id(),
                fedanno_protocol::crypto::sha256(&job.to_bytes())
            );
            let mut acc = vec![0u128; dim];
            for d in self.0 {
                let v = compute(job, d)?;
                if v.len() != dim {
                    return Err(EmError::Dim {
                        got: v.len(),
                        expected: dim,
                    });
                }
                acc.iter_mut()
                    .zip(v)
                    .for_each(|(a, b)| *a = a.wrapping_add(b));
            }
            Ok(acc)
        })();
        std::future::ready(r)
    }
}

fn manifest(method: &str, labels: &str, protocol: &str, readers: usize, local: bool) -> Manifest {
    let panel: Vec<String> = (0..readers).map(|i| format!("\"r{i:02}\"")).collect();
    let (kind, task) = match method {
        "dawid-skene" => (
            "classification",
            "categories = [\"1\", \"2\", \"3\"]".to_string(),
        ),
        _ => ("segmentation", format!("labels = [{labels}]")),
    };
    let local = if local {
        "[readers.local]\ns1 = [\"zz-local\"]\n"
    } else {
        ""
    };
    Manifest::parse(&format!(
        "[study]\nid = \"t\"\ntitle = \"t\"\ncoordinator = \"s1\"\n[task]\nkind = \"{kind}\"\n{task}\n\
         [readers]\npanel = [{}]\n{local}[consensus]\nmethod = \"{method}\"\nprotocol = \"{protocol}\"\n\
         [metrics]\nrelease = [\"performance\", \"dice\", \"hd95\"]\n\
         [privacy]\nmin_sites = 3\nmin_cases = 1\n[participants]\nsites = [\"s1\", \"s2\", \"s3\"]\n",
        panel.join(", ")
    ))
    .expect("valid manifest")
}

/// Runs the consensus from step 0 and checks that the release survives its wire form.
async fn consensus(m: &Manifest, sites: &[LocalData], one_round: bool) -> (ConsensusOutcome, u32) {
    let (out, next) = run_consensus(m, &mut Plain(sites), one_round, 0)
        .await
        .unwrap();
    released(&out);
    (out, next)
}

fn random_cases(
    rng: &mut XorShift,
    n_raters: usize,
    n_labels: usize,
    all_present: bool,
) -> Vec<SegCase> {
    let n_cases = 3 + rng.below(6);
    (0..n_cases)
        .map(|_| {
            let dims = [4 + rng.below(5), 4 + rng.below(5), 2 + rng.below(3)];
            let n = dims.iter().product::<usize>();
            let truth: Vec<u8> = (0..n).map(|_| rng.below(n_labels) as u8).collect();
            let mut readers = Vec::new();
            for r in 0..n_raters {
                if !all_present && rng.below(5) == 0 {
                    continue;
                }
                let mut m = Vec::with_capacity(n);
                for &t in &truth {
                    m.push(if rng.below(6) == 0 {
                        rng.below(n_labels) as u8
                    } else {
                        t
                    });
                }
                readers.push((r, m));
            }
            SegCase::new(String::new(), dims, [0.8, 0.8, 2.0], readers)
        })
        .filter(|c| !c.readers.is_empty())
        .collect()
}

/// One site's (or the pool's) segmentation data.
fn seg(n_raters: usize, n_labels: usize, cases: Vec<SegCase>) -> LocalData {
    LocalData::Segmentation {
        n_raters,
        n_labels,
        cases,
        histograms: Default::default(),
    }
}

fn split<T: Clone>(rng: &mut XorShift, items: &[T]) -> Vec<Vec<T>> {
    let parts = 1 + rng.below(7);
    let mut out = vec![Vec::new(); parts];
    for it in items {
        out[rng.below(parts)].push(it.clone());
    }
    out
}

#[tokio::test]
async fn binary_staple_iterative_and_one_round_equal_pooled() {
    let mut rng = XorShift::new(0x5a5a);
    for round in 0..8 {
        let r = 3 + rng.below(4);
        let cases = random_cases(&mut rng, r, 2, false);
        let pooled_data = seg(r, 2, cases.clone());
        let pooled = staple::staple(
            pooled_data.binary_histogram().unwrap(),
            &staple::StapleOptions::default(),
        )
        .unwrap();
        let sites: Vec<LocalData> = split(&mut rng, &cases)
            .into_iter()
            .map(|c| seg(r, 2, c))
            .collect();
        let m = manifest("staple", "\"lesion\"", "iterative", r, false);
        for one_round in [false, true] {
            let (out, _) = consensus(&m, &sites, one_round).await;
            let ConsensusOutcome::Staple {
                params,
                iterations,
                voxels_ge_half,
                probability_sum,
                ..
            } = out
            else {
                panic!("not staple")
            };
            assert_eq!(params, pooled.params, "round {round} one_round {one_round}");
            assert_eq!(iterations, pooled.iterations);
            assert_eq!(voxels_ge_half, pooled.voxels_ge_half);
            assert_eq!(probability_sum.to_bits(), pooled.probability_sum.to_bits());
        }
    }
}

#[tokio::test]
async fn multilabel_staple_equals_pooled() {
    let mut rng = XorShift::new(0x3131);
    for _ in 0..6 {
        let r = 3 + rng.below(3);
        let cases = random_cases(&mut rng, r, 4, true);
        let pooled_data = seg(r, 4, cases.clone());
        let pooled = multilabel_staple(
            pooled_data.label_histogram().unwrap(),
            &MultiLabelOptions::default(),
        )
        .unwrap();
        let sites: Vec<LocalData> = split(&mut rng, &cases)
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(|c| seg(r, 4, c))
            .collect();
        let m = manifest("multilabel-staple", "\"a\", \"b\", \"c\"", "auto", r, false);
        let (out, _) = consensus(&m, &sites, false).await;
        let ConsensusOutcome::Multi {
            params,
            priors,
            iterations,
            label_counts,
            ..
        } = out
        else {
            panic!("not multi")
        };
        assert_eq!(params, pooled.params);
        assert_eq!(priors, pooled.priors);
        assert_eq!(iterations, pooled.iterations);
        assert_eq!(label_counts, pooled.label_counts);
    }
}

#[tokio::test]
async fn dawid_skene_and_agreement_equal_pooled() {
    let mut rng = XorShift::new(0xd00d);
    for _ in 0..8 {
        let (r, k) = (3 + rng.below(4), 3);
        let units = 10 + rng.below(60);
        let cells: Vec<Option<u32>> = (0..units * r)
            .map(|_| (rng.below(5) != 0).then(|| rng.below(k) as u32))
            .collect();
        let all = Ratings::from_cells(units, r, k, cells).unwrap();
        let pooled = dawid_skene::dawid_skene(&all, &dawid_skene::DsOptions::default()).unwrap();
        let parts: Vec<Vec<usize>> = split(&mut rng, &(0..units).collect::<Vec<_>>());
        let sites: Vec<LocalData> = parts
            .iter()
            .map(|p| LocalData::Classification {
                ratings: all.select_units(p).unwrap(),
            })
            .collect();
        let m = manifest("dawid-skene", "", "auto", r, false);
        let (out, next) = consensus(&m, &sites, false).await;
        let ConsensusOutcome::DawidSkene {
            params,
            iterations,
            log_likelihood,
            ..
        } = &out
        else {
            panic!("not DS")
        };
        assert_eq!(params, &pooled.params);
        assert_eq!(*iterations, pooled.iterations);
        assert_eq!(log_likelihood.to_bits(), pooled.log_likelihood.to_bits());
        let (q, _) = run_quality(&m, &out, &mut Plain(&sites), next)
            .await
            .unwrap();
        let agreement = q.agreement.expect("agreement");
        assert_eq!(agreement, AgreementStats::from_ratings(&all));
        // The confusion counts add up to the consensus-labelled ratings of each reader.
        let labels = ds_labels(params, &all).unwrap();
        for (ri, rq) in q.readers.iter().enumerate() {
            let expected = all
                .rows()
                .zip(&labels)
                .filter(|(row, l)| l.is_some() && row[ri].is_some())
                .count() as u64;
            assert_eq!(rq.confusion.iter().sum::<u64>(), expected);
        }
    }
}

#[tokio::test]
async fn segmentation_quality_is_additive_and_a_perfect_reader_scores_one() {
    let mut rng = XorShift::new(0x9e9e);
    let r = 4;
    let mut cases = random_cases(&mut rng, r, 2, true);
    // Reader 0 copies the majority of the others exactly in every case: its masks are the
    // consensus under a model where it is certain.
    for c in &mut cases {
        let n = c.readers[0].1.len();
        let fixed: Vec<u8> = (0..n).map(|i| u8::from(i % 3 == 0)).collect();
        for (_, m) in c.readers.iter_mut() {
            *m = PackedMask::pack(&fixed);
        }
    }
    let pooled = [seg(r, 2, cases.clone())];
    let sites: Vec<LocalData> = split(&mut rng, &cases)
        .into_iter()
        .map(|c| seg(r, 2, c))
        .collect();
    let m = manifest("staple", "\"lesion\"", "iterative", r, false);
    let (c1, s1) = consensus(&m, &pooled, false).await;
    let (c2, s2) = consensus(&m, &sites, false).await;
    assert_eq!(c1, c2);
    let (q1, _) = run_quality(&m, &c1, &mut Plain(&pooled), s1).await.unwrap();
    let (q2, _) = run_quality(&m, &c2, &mut Plain(&sites), s2).await.unwrap();
    assert_eq!(q1, q2);
    for rq in &q1.readers {
        assert_eq!(rq.cases, cases.len() as u64);
        assert_eq!(rq.dice_pooled(), Some(1.0));
        assert_eq!(rq.sensitivity(), Some(1.0));
        assert_eq!(rq.specificity(), Some(1.0));
        assert_eq!(rq.dice_histogram[DICE_BINS - 1], cases.len() as u64);
        // Identical surfaces: HD95 0 falls in the first bin.
        assert_eq!(rq.hd95_histogram[0], cases.len() as u64);
    }
}

#[test]
fn ternary_cells_round_trip() {
    for r in 1..=5 {
        for i in 0..histogram_dim(r) {
            assert_eq!(ternary_index(ternary_key(i, r), r), i);
        }
    }
}

#[test]
fn job_ids_differ_by_step_and_parameters() {
    let a = Job {
        study: "s".into(),
        step: 0,
        kind: JobKind::StapleInit,
    };
    let mut b = a.clone();
    b.step = 1;
    assert_ne!(a.input_id(), b.input_id());
    assert_eq!(a.input_id(), a.clone().input_id());
}

#[test]
fn bench_job_is_deterministic_of_the_right_length_and_ignores_the_data() {
    let job = |dim, seed| Job {
        study: "bench".into(),
        step: 0,
        kind: JobKind::Bench { dim, seed },
    };
    let empty = seg(2, 2, Vec::new());
    let other = seg(
        1,
        2,
        vec![SegCase::new(
            "c".into(),
            [2, 1, 1],
            [1.0; 3],
            vec![(0, vec![0, 1])],
        )],
    );
    assert_eq!(job(1000, 7).statistic(), Statistic::Bench);
    let v = compute(&job(1000, 7), &empty).unwrap();
    assert_eq!(v.len(), 1000);
    assert_eq!(v, compute(&job(1000, 7), &empty).unwrap());
    // The same at every site: the vector depends on the seed alone.
    assert_eq!(v, compute(&job(1000, 7), &other).unwrap());
    assert_eq!(v, bench_vector(1000, 7).unwrap());
    // A prefix of a longer vector, different for another seed, and not degenerate.
    assert_eq!(v[..10], compute(&job(10, 7), &empty).unwrap()[..]);
    assert_ne!(v, compute(&job(1000, 8), &empty).unwrap());
    let distinct: std::collections::BTreeSet<u128> = v.iter().copied().collect();
    assert_eq!(distinct.len(), v.len());
    assert!(v.iter().any(|x| *x > u128::from(u64::MAX)));
    assert!(compute(&job(0, 7), &empty).unwrap().is_empty());
    // Never more than the protocol carries (nothing is allocated for an absurd dimension).
    let max = fedanno_protocol::secagg::MAX_DIM as u32;
    assert_eq!(compute(&job(max, 1), &empty).unwrap().len(), max as usize);
    assert!(matches!(
        compute(&job(max + 1, 1), &empty),
        Err(EmError::Mismatch(_))
    ));
    assert!(matches!(
        compute(&job(u32::MAX, 1), &empty),
        Err(EmError::Mismatch(_))
    ));
}

/// Every consensus the drivers release survives its wire form unchanged.
fn released(out: &ConsensusOutcome) {
    assert_eq!(
        ConsensusOutcome::from_bytes(&out.to_bytes()).as_ref(),
        Ok(out)
    );
}

#[test]
fn jobs_and_releases_keep_their_bytes() {
    // The bytes of the protocol's golden vectors (protocol/src/jobs/tests.rs), from the
    // statistics types through the conversion.
    let staple = StapleParams {
        prior: 0.25,
        sensitivity: vec![0.5, 1.0],
        specificity: vec![0.75, 2.0],
    };
    let job = Job {
        study: "lung".into(),
        step: 300,
        kind: JobKind::StapleStep {
            params: staple.clone(),
        },
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&job.to_bytes()),
        "046c756e67ac0201000000000000d03f02000000000000e03f000000000000f03f02000000000000e83f0000000000000040"
    );
    assert_eq!(Job::from_bytes(&job.to_bytes()), Ok(job.clone()));
    assert_eq!(job.statistic(), Statistic::Staple);
    let ds = DsParams {
        k: 2,
        n_raters: 1,
        class_priors: vec![0.5, 0.5],
        confusion: vec![1.0, 0.0, 0.25, 0.75],
    };
    let out = ConsensusOutcome::DawidSkene {
        params: ds,
        iterations: 200,
        converged: true,
        log_likelihood: -2.0,
        units: 120,
    };
    assert_eq!(
        hex(&out.to_bytes()),
        "02020102000000000000e03f000000000000e03f04000000000000f03f0000000000000000000000000000d03f000000000000e83fc8010100000000000000c078"
    );
    released(&out);
}

#[test]
fn jobs_and_releases_of_inconsistent_shape_are_refused() {
    let job = |kind| Job {
        study: "s".into(),
        step: 1,
        kind,
    };
    let refused = |j: Job| {
        assert!(
            matches!(Job::from_bytes(&j.to_bytes()), Err(WireError::Shape(_))),
            "{j:?}"
        );
    };
    refused(job(JobKind::StapleStep {
        params: StapleParams {
            prior: 0.5,
            sensitivity: vec![0.5, 0.5],
            specificity: vec![0.5],
        },
    }));
    let multi = MultiLabelParams {
        n_raters: 2,
        n_labels: 2,
        confusion: vec![0.5; 2 * 3 * 2],
    };
    let mut short = multi.clone();
    short.confusion.pop();
    refused(job(JobKind::MultiStep {
        params: short,
        priors: vec![0.5, 0.5],
    }));
    refused(job(JobKind::MultiCounts {
        params: multi.clone(),
        priors: vec![1.0],
    }));
    let mut huge = multi.clone();
    huge.n_raters = usize::MAX;
    refused(job(JobKind::SegQuality {
        consensus: SegConsensus::Multi {
            params: huge,
            priors: vec![0.5, 0.5],
        },
        hd95: false,
    }));
    let ds = DsParams {
        k: 3,
        n_raters: 1,
        class_priors: vec![0.5; 3],
        confusion: vec![0.5; 8],
    };
    refused(job(JobKind::DsStep { params: ds.clone() }));
    let ds = DsParams {
        k: 1 << 31,
        n_raters: 1 << 31,
        ..ds
    };
    refused(job(JobKind::LabelQuality { params: ds }));
    let out = ConsensusOutcome::Multi {
        params: multi.clone(),
        priors: vec![0.5, 0.5],
        iterations: 1,
        converged: true,
        label_counts: vec![1, 2],
    };
    assert!(matches!(
        ConsensusOutcome::from_bytes(&out.to_bytes()),
        Err(WireError::Shape(_))
    ));
    // Well-formed ones pass, and garbage is a codec error, not a panic.
    let ok = job(JobKind::MultiCounts {
        params: multi,
        priors: vec![0.5, 0.5],
    });
    assert_eq!(Job::from_bytes(&ok.to_bytes()), Ok(ok));
    assert!(matches!(
        Job::from_bytes(&[0xff; 9]),
        Err(WireError::Codec(_))
    ));
}

/// A case keeps its readers' masks as runs: they unpack exactly, and a mostly-background mask
/// costs its runs, not its voxels.
#[test]
fn cases_keep_masks_as_runs_that_unpack_exactly() {
    let mut rng = XorShift::new(0x5eed);
    for c in random_cases(&mut rng, 3, 3, true) {
        for ((_, packed), (_, mask)) in c.readers.iter().zip(c.masks()) {
            assert_eq!(packed.unpack(), mask);
            assert_eq!(PackedMask::pack(&mask), *packed);
        }
    }
    let mut big = vec![0u8; 512 * 512 * 30];
    big[100_000..120_000].fill(1);
    let packed = PackedMask::pack(&big);
    assert_eq!((packed.len(), packed.runs.len()), (big.len(), 3));
    assert_eq!(packed.unpack(), big);
}
