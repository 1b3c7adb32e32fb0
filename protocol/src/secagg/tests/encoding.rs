//! Fixed point, byte round trips, bounded decoding and mutation fuzzing.

use super::*;

#[test]
fn fixed_point() {
    for (x, f) in [
        (0.0, 16),
        (1.5, 16),
        (-1.5, 16),
        (-0.0, 3),
        (1e-6, 40),
        (-123456.789, 32),
        (0.1, 52),
    ] {
        let e = encode_fixed(x, f).unwrap();
        let back = decode_fixed(e, f).unwrap();
        assert!(
            (back - x).abs() <= 0.5 / 2f64.powi(f as i32),
            "{x} at {f} bits"
        );
    }
    assert_eq!(encode_fixed(1.0, 16), Ok(1 << 16));
    assert_eq!(encode_fixed(-1.0, 0), Ok(u128::MAX));
    assert_eq!(encode_fixed(2.5, 0), Ok(3));
    assert_eq!(encode_fixed(-2.5, 0), Ok(encode_signed(-3)));
    assert_eq!(encode_fixed(0.75, 1), Ok(2));
    // Sums decode.
    let s = [0.25, -1.0, 3.5]
        .iter()
        .fold(0u128, |a, &x| a.wrapping_add(encode_fixed(x, 20).unwrap()));
    assert_eq!(decode_fixed(s, 20), Ok(2.75));
    // Range: |x|·2^frac < 2^100.
    assert!(encode_fixed(2f64.powi(99), 0).is_ok());
    assert_eq!(
        encode_fixed(2f64.powi(100), 0),
        Err(SecAggError::OutOfRange)
    );
    assert_eq!(
        encode_fixed(-2f64.powi(100), 0),
        Err(SecAggError::OutOfRange)
    );
    assert_eq!(encode_fixed(1.0, 100), Err(SecAggError::OutOfRange));
    assert!(encode_fixed(1.0, 99).is_ok());
    assert_eq!(encode_fixed(f64::MAX, 1), Err(SecAggError::OutOfRange));
    assert_eq!(encode_fixed(f64::NAN, 8), Err(SecAggError::NotFinite));
    assert_eq!(encode_fixed(f64::INFINITY, 8), Err(SecAggError::NotFinite));
    assert_eq!(
        encode_fixed(f64::NEG_INFINITY, 8),
        Err(SecAggError::NotFinite)
    );
    assert_eq!(
        encode_fixed(1.0, MAX_FRAC_BITS + 1),
        Err(SecAggError::BadFracBits(127))
    );
    assert_eq!(
        decode_fixed(0, u32::MAX),
        Err(SecAggError::BadFracBits(u32::MAX))
    );
    // Wrapped or random values are refused by decode_fixed.
    assert_eq!(
        decode_fixed(1u128 << 126, 0),
        Err(SecAggError::LikelyWrapped)
    );
    assert_eq!(
        decode_fixed(encode_signed(-(1i128 << 126)), 0),
        Err(SecAggError::LikelyWrapped)
    );
    assert_eq!(
        decode_fixed(u128::MAX / 2, 0),
        Err(SecAggError::LikelyWrapped)
    );
    assert!(decode_fixed((1u128 << 126) - 1, 0).is_ok());
    // Signed embedding round trips at the extremes.
    for v in [0i128, 1, -1, i128::MIN, i128::MAX] {
        assert_eq!(decode_signed(encode_signed(v)), v);
    }
    assert_eq!(encode_signed(-1), u128::MAX);
}

// ---- Decoding ----

#[test]
fn round_trips_through_bytes() {
    let (r0, cert, r1) = retry_pair();
    let s = SignedRoster::sign(r1.clone(), Some(cert.clone()), &coord_key());
    assert_eq!(SignedRoster::from_bytes(&s.to_bytes()).unwrap(), s);
    assert_eq!(Roster::from_bytes(&r0.to_bytes()).unwrap(), r0);
    assert_eq!(
        AbortCertificate::from_bytes(&cert.to_bytes()).unwrap(),
        cert
    );
    let k = RoundKey::sign(&r1, site(1), &round_secret(1, 1), &sign_key(1));
    assert_eq!(RoundKey::from_bytes(&k.to_bytes()).unwrap(), k);
    let st = SubmissionStatement::sign(&r0, site(2), true, &sign_key(2));
    assert_eq!(SubmissionStatement::from_bytes(&st.to_bytes()).unwrap(), st);
    // The largest masked input (all values maximal) fits its limit, and hash = SHA-256(bytes).
    let big = MaskedInput {
        roster_hash: [1; 32],
        site: site(0),
        values: vec![u128::MAX; MAX_DIM],
    };
    let b = big.to_bytes();
    assert!(b.len() <= MAX_MASKED_INPUT_BYTES);
    assert_eq!(MaskedInput::from_bytes(&b).unwrap(), big);
    assert_eq!(big.hash(), crypto::sha256(&b));
    // The largest signed roster (full roster, full previous certificate) fits its limit.
    let full = Roster {
        attempt: 1,
        study: "s".repeat(MAX_NAME_LEN),
        schema: "t".repeat(MAX_NAME_LEN),
        ..roster(MAX_ROSTER, 8)
    };
    let full0 = Roster {
        attempt: 0,
        ..full.clone()
    };
    let c = AbortCertificate::sign(
        &full0,
        full0
            .sites
            .iter()
            .map(|s| (s.clone(), [0xff; 32]))
            .collect(),
        &coord_key(),
    );
    let s = SignedRoster::sign(full, Some(c), &coord_key());
    assert!(
        s.to_bytes().len() <= MAX_SECAGG_MESSAGE_BYTES,
        "{}",
        s.to_bytes().len()
    );
    assert!(SignedRoster::from_bytes(&s.to_bytes()).is_ok());
}

/// Replaces the postcard varint at `at` (of `old_len` bytes) by `value`'s varint.
fn with_varint(b: &[u8], at: usize, old_len: usize, value: u64) -> Vec<u8> {
    let mut out = b[..at].to_vec();
    out.extend(postcard::to_stdvec(&value).unwrap());
    out.extend_from_slice(&b[at + old_len..]);
    out
}

#[test]
fn decoding_is_bounded() {
    // MaskedInput: 32-byte hash, site (1 + 8 bytes), then the values' length prefix.
    let m = MaskedInput {
        roster_hash: [0; 32],
        site: site(0),
        values: vec![1, 2, 3],
    };
    let b = m.to_bytes();
    assert_eq!(b[41], 3);
    for declared in [MAX_DIM as u64 + 1, 1 << 40, u64::MAX] {
        let huge = with_varint(&b, 41, 1, declared);
        assert!(MaskedInput::from_bytes(&huge).is_err());
    }
    // One element too many, with the data present, is refused too.
    let over = MaskedInput {
        values: vec![0; MAX_DIM + 1],
        ..m.clone()
    };
    assert!(MaskedInput::from_bytes(&over.to_bytes()).is_err());

    // Roster: the sites' length prefix follows study, input, attempt, schema, dim.
    let r = roster(3, 5);
    let b = r.to_bytes();
    let at = 1 + r.study.len() + 32 + 1 + 1 + r.schema.len() + 1;
    assert_eq!(b[at], 3);
    for declared in [MAX_ROSTER as u64 + 1, 1 << 40, u64::MAX] {
        assert!(Roster::from_bytes(&with_varint(&b, at, 1, declared)).is_err());
    }
    let over = roster(MAX_ROSTER + 1, 5);
    assert!(Roster::from_bytes(&over.to_bytes()).is_err());
    let long = Roster {
        study: "x".repeat(MAX_NAME_LEN + 1),
        ..r.clone()
    };
    assert!(Roster::from_bytes(&long.to_bytes()).is_err());

    // AbortCertificate: both vectors are bounded.
    let (_, cert, _) = retry_pair();
    let big = AbortCertificate {
        submitted: (0..MAX_ROSTER + 1).map(|i| (site(i), [0; 32])).collect(),
        ..cert.clone()
    };
    assert!(AbortCertificate::from_bytes(&big.to_bytes()).is_err());
    let big = AbortCertificate {
        roster: (0..MAX_ROSTER + 1).map(site).collect(),
        ..cert
    };
    assert!(AbortCertificate::from_bytes(&big.to_bytes()).is_err());
}

#[test]
fn mutated_secagg_messages_never_panic_or_verify() {
    let (r0, cert, r1) = retry_pair();
    let signed = SignedRoster::sign(r1.clone(), Some(cert.clone()), &coord_key());
    let key = RoundKey::sign(&r1, site(1), &round_secret(1, 1), &sign_key(1));
    let st = SubmissionStatement::sign(&r0, site(2), true, &sign_key(2));
    let sk = site_keys(5);
    let keys = bundle(&r1);
    let mut rng = XorShift::new(0x5ec_a66);
    let xs: Vec<Vec<u128>> = (0..4).map(|_| random_vec(&mut rng, 8)).collect();
    let ys = mask_all(&r1, &xs);
    let seeds = [
        signed.to_bytes(),
        cert.to_bytes(),
        key.to_bytes(),
        st.to_bytes(),
        ys[0].to_bytes(),
        r1.to_bytes(),
    ];
    let mut decoded = 0;
    for i in 0..20_000 {
        let seed = &seeds[i % seeds.len()];
        let m = rng.mutate(seed);
        if &m == seed {
            continue;
        }
        if let Ok(x) = SignedRoster::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&coord_pk()).is_err(),
                "roster mutation {i} verified"
            );
            let _ = check_retry(&x, std::slice::from_ref(&st), |s| sk.get(s).copied());
        }
        if let Ok(x) = AbortCertificate::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&coord_pk()).is_err(),
                "certificate mutation {i} verified"
            );
        }
        if let Ok(x) = RoundKey::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&sk[&site(1)]).is_err(),
                "key mutation {i} verified"
            );
            let mut b = keys.clone();
            b[1] = x;
            assert!(verify_key_bundle(&r1, &b, |s| sk.get(s).copied()).is_err());
        }
        if let Ok(x) = SubmissionStatement::from_bytes(&m) {
            decoded += 1;
            assert!(
                x.verify(&sk[&site(2)]).is_err(),
                "statement mutation {i} verified"
            );
        }
        if let Ok(x) = MaskedInput::from_bytes(&m) {
            decoded += 1;
            let mut b = ys.clone();
            b[0] = x;
            // Either refused or, if only values changed, a different (wrong) sum: never a panic.
            let _ = aggregate(&r1, &b);
        }
        if let Ok(x) = Roster::from_bytes(&m) {
            decoded += 1;
            let _ = x.validate();
            let _ = verify_key_bundle(&x, &keys, |s| sk.get(s).copied());
            let _ = mask_input(&xs[0], &x, &site(0), &round_secret(0, 1), &keys);
            let _ = aggregate(&x, &ys);
        }
    }
    assert!(decoded > 0);
}
