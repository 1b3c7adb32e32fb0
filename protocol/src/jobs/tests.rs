//! Job and release encoding: golden bytes, round trips, bounded and canonical decoding.
//!
//! The golden bytes are the bytes the node produced before jobs had wire structs of their own
//! (when `Job` embedded the statistics crate's parameter types), so the two encodings agree.

use super::*;
use crate::testkit::hex;

fn staple() -> StapleParams {
    StapleParams {
        prior: 0.25,
        sensitivity: vec![0.5, 1.0],
        specificity: vec![0.75, 2.0],
    }
}

fn multi() -> MultiLabelParams {
    MultiLabelParams {
        n_raters: 1,
        n_labels: 2,
        confusion: vec![0.5, 0.25, 0.125, 1.0, 2.0, 4.0],
    }
}

fn ds() -> DsParams {
    DsParams {
        k: 2,
        n_raters: 1,
        class_priors: vec![0.5, 0.5],
        confusion: vec![1.0, 0.0, 0.25, 0.75],
    }
}

/// One job of every kind, in variant order.
pub(crate) fn jobs() -> Vec<Job> {
    let priors = || vec![0.75, 0.25];
    [
        JobKind::StapleInit,
        JobKind::StapleStep { params: staple() },
        JobKind::StapleHistogram,
        JobKind::MultiSeed,
        JobKind::MultiStep {
            params: multi(),
            priors: priors(),
        },
        JobKind::MultiCounts {
            params: multi(),
            priors: priors(),
        },
        JobKind::DsInit,
        JobKind::DsStep { params: ds() },
        JobKind::SegQuality {
            consensus: SegConsensus::Staple(staple()),
            hd95: true,
        },
        JobKind::SegQuality {
            consensus: SegConsensus::Multi {
                params: multi(),
                priors: priors(),
            },
            hd95: false,
        },
        JobKind::LabelQuality { params: ds() },
        JobKind::Bench { dim: 1000, seed: 7 },
    ]
    .into_iter()
    .map(|kind| Job {
        study: "lung".into(),
        step: 300,
        kind,
    })
    .collect()
}

/// One release of every kind, in variant order.
pub(crate) fn outcomes() -> Vec<ConsensusOutcome> {
    vec![
        ConsensusOutcome::Staple {
            params: staple(),
            iterations: 14,
            converged: true,
            voxels_ge_half: 1234,
            probability_sum: 0.5,
            units: 70_000,
            one_round: false,
        },
        ConsensusOutcome::Multi {
            params: multi(),
            priors: vec![0.75, 0.25],
            iterations: 3,
            converged: false,
            label_counts: vec![10, 20, 0],
        },
        ConsensusOutcome::DawidSkene {
            params: ds(),
            iterations: 200,
            converged: true,
            log_likelihood: -2.0,
            units: 120,
        },
    ]
}

// Study "lung" (04 6c756e67), step 300 (ac02), then the kind's index and fields. f64 is 8 bytes
// little-endian (0.25 = 000000000000d03f), vectors and u32/u64/usize are varint-prefixed.
const STAPLE: &str =
    "000000000000d03f02000000000000e03f000000000000f03f02000000000000e83f0000000000000040";
const MULTI: &str = "010206000000000000e03f000000000000d03f000000000000c03f000000000000f03f00000000000000400000000000001040";
const PRIORS: &str = "02000000000000e83f000000000000d03f";
const DS: &str = "020102000000000000e03f000000000000e03f04000000000000f03f0000000000000000000000000000d03f000000000000e83f";

fn golden_jobs() -> Vec<String> {
    let head = "046c756e67ac02";
    [
        "00".to_string(),
        format!("01{STAPLE}"),
        "02".into(),
        "03".into(),
        format!("04{MULTI}{PRIORS}"),
        format!("05{MULTI}{PRIORS}"),
        "06".into(),
        format!("07{DS}"),
        format!("0800{STAPLE}01"),
        format!("0801{MULTI}{PRIORS}00"),
        format!("09{DS}"),
        "0ae80707".into(),
    ]
    .into_iter()
    .map(|k| format!("{head}{k}"))
    .collect()
}

fn golden_outcomes() -> Vec<String> {
    vec![
        format!("00{STAPLE}0e01d209000000000000e03ff0a20400"),
        format!("01{MULTI}{PRIORS}0300030a1400"),
        format!("02{DS}c8010100000000000000c078"),
    ]
}

#[test]
fn golden_bytes_and_round_trips() {
    for (job, want) in jobs().iter().zip(golden_jobs()) {
        let b = job.to_bytes();
        assert_eq!(hex(&b), want, "{job:?}");
        assert_eq!(Job::from_bytes(&b).as_ref(), Ok(job));
        assert_eq!(job.input_id(), crypto::sha256(&b));
    }
    assert_eq!(jobs().len(), golden_jobs().len());
    for (o, want) in outcomes().iter().zip(golden_outcomes()) {
        let b = o.to_bytes();
        assert_eq!(hex(&b), want, "{o:?}");
        assert_eq!(ConsensusOutcome::from_bytes(&b).as_ref(), Ok(o));
    }
    assert_eq!(
        hex(&jobs()[1].input_id()),
        "0c0cf94e38c61410555e4676a8457590b75f8172c7b134d46197b2e8bb17319d"
    );
}

#[test]
fn must_fail() {
    let b = jobs()[1].to_bytes();
    assert_eq!(
        Job::from_bytes(&b[..b.len() - 1]),
        Err(CodecError::Truncated)
    );
    let mut trailing = b.clone();
    trailing.push(0);
    assert_eq!(
        Job::from_bytes(&trailing),
        Err(CodecError::TrailingBytes { count: 1 })
    );
    // Step 300 as an over-long varint (ac 82 00) decodes in postcard but is not canonical.
    let mut overlong = b[..5].to_vec();
    overlong.extend([0xac, 0x82, 0x00]);
    overlong.extend_from_slice(&b[7..]);
    assert_eq!(Job::from_bytes(&overlong), Err(CodecError::NonCanonical));
    // An unknown kind or release variant.
    assert_eq!(
        Job::from_bytes(&[1, b's', 0, 11]),
        Err(CodecError::Malformed)
    );
    assert_eq!(
        ConsensusOutcome::from_bytes(&[3]),
        Err(CodecError::Malformed)
    );
    let big = vec![0u8; MAX_JOB_BYTES + 1];
    assert_eq!(
        Job::from_bytes(&big),
        Err(CodecError::Oversized {
            len: MAX_JOB_BYTES + 1,
            max: MAX_JOB_BYTES
        })
    );
}

#[test]
fn bounded_fields_refuse_long_values_before_allocating() {
    let job = |kind| Job {
        study: "s".into(),
        step: 0,
        kind,
    };
    let long_study = Job {
        study: "s".repeat(MAX_NAME_LEN + 1),
        ..jobs()[0].clone()
    };
    assert_eq!(
        Job::from_bytes(&long_study.to_bytes()),
        Err(CodecError::Malformed)
    );
    let mut p = staple();
    p.sensitivity = vec![0.5; MAX_RATERS + 1];
    assert!(Job::from_bytes(&job(JobKind::StapleStep { params: p }).to_bytes()).is_err());
    let mut p = ds();
    p.class_priors = vec![0.5; MAX_CLASSES + 1];
    assert!(Job::from_bytes(&job(JobKind::DsStep { params: p }).to_bytes()).is_err());
    let priors = vec![0.5; MAX_CLASSES + 1];
    let kind = JobKind::MultiStep {
        params: multi(),
        priors,
    };
    assert!(Job::from_bytes(&job(kind).to_bytes()).is_err());
    // The largest confusion tensor fits the job limit; one more entry is refused.
    let mut p = multi();
    p.confusion = vec![0.5; MAX_PARAMS];
    let full = job(JobKind::SegQuality {
        consensus: SegConsensus::Multi {
            params: p.clone(),
            priors: vec![0.5; MAX_CLASSES],
        },
        hd95: true,
    });
    assert_eq!(Job::from_bytes(&full.to_bytes()).as_ref(), Ok(&full));
    p.confusion.push(0.5);
    let over = ConsensusOutcome::Multi {
        params: p,
        priors: Vec::new(),
        iterations: 0,
        converged: false,
        label_counts: Vec::new(),
    };
    assert_eq!(
        ConsensusOutcome::from_bytes(&over.to_bytes()),
        Err(CodecError::Malformed)
    );
    // A declared length of 2^32 confusion entries with nothing behind it fails without
    // allocating: DsStep, k 2, 1 rater, 2 priors, then the confusion length.
    let mut huge = job(JobKind::DsStep { params: ds() }).to_bytes();
    huge.truncate(4 + 3 + 16);
    huge.extend([0x80, 0x80, 0x80, 0x80, 0x10]);
    assert!(Job::from_bytes(&huge).is_err());
}
