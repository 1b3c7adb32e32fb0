//! Rosters and signed objects: validation, sign/verify/tamper for every signed type, the retry
//! rules and the domains.

use super::*;

#[test]
fn roster_validate() {
    let r = roster(3, 10);
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(r.index_of(&site(2)), Some(2));
    assert_eq!(r.index_of(&site(3)), None);

    let mut x = r.clone();
    x.sites.swap(0, 2);
    assert_eq!(x.validate(), Err(SecAggError::RosterUnsorted));
    let mut x = r.clone();
    x.sites[1] = site(0);
    assert_eq!(x.validate(), Err(SecAggError::DuplicateSite));
    assert_eq!(
        roster(2, 10).validate(),
        Err(SecAggError::RosterTooSmall { len: 2, min: 3 })
    );
    let mut x = roster(4, 10);
    x.min_sites = 5;
    assert_eq!(
        x.validate(),
        Err(SecAggError::RosterTooSmall { len: 4, min: 5 })
    );
    x.min_sites = u32::MAX;
    assert!(matches!(
        x.validate(),
        Err(SecAggError::RosterTooSmall { .. })
    ));
    x.min_sites = 4;
    assert_eq!(x.validate(), Ok(()));
    assert_eq!(roster(MAX_ROSTER, 10).validate(), Ok(()));
    assert_eq!(
        roster(MAX_ROSTER + 1, 10).validate(),
        Err(SecAggError::RosterTooLarge {
            len: MAX_ROSTER + 1,
            max: MAX_ROSTER
        })
    );
    assert_eq!(roster(3, MAX_DIM as u32).validate(), Ok(()));
    assert_eq!(
        roster(3, MAX_DIM as u32 + 1).validate(),
        Err(SecAggError::BadDimension {
            dim: MAX_DIM + 1,
            max: MAX_DIM
        })
    );
    assert!(roster(3, 0).validate().is_err());
    for bad in ["", "a\nb", &"x".repeat(MAX_NAME_LEN + 1)] {
        let mut x = r.clone();
        x.study = bad.to_string();
        assert_eq!(x.validate(), Err(SecAggError::BadName));
        let mut x = r.clone();
        x.schema = bad.to_string();
        assert_eq!(x.validate(), Err(SecAggError::BadName));
    }
    // Every field is in the hash.
    let h = r.hash();
    let variants: Vec<Roster> = vec![
        Roster {
            study: "other".into(),
            ..r.clone()
        },
        Roster {
            input: [8; 32],
            ..r.clone()
        },
        Roster {
            attempt: 1,
            ..r.clone()
        },
        Roster {
            schema: "s2".into(),
            ..r.clone()
        },
        Roster {
            dim: 11,
            ..r.clone()
        },
        Roster {
            sites: vec![site(0), site(1), site(3)],
            ..r.clone()
        },
        Roster {
            min_sites: 2,
            ..r.clone()
        },
        Roster {
            coordinator: site(1),
            ..r.clone()
        },
        Roster {
            deadline: 1,
            ..r.clone()
        },
    ];
    for v in variants {
        assert_ne!(v.hash(), h);
    }
}

#[test]
fn signed_roster_sign_verify_and_tamper() {
    let r = roster(3, 8);
    let s = SignedRoster::sign(r.clone(), None, &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
    assert_eq!(
        s.verify(&crypto::public_key(&ed25519_key(1))),
        Err(SecAggError::BadSignature)
    );
    let tampers: Vec<Tamper<SignedRoster>> = vec![
        Box::new(|s| s.roster.study = "other".into()),
        Box::new(|s| s.roster.input[0] ^= 1),
        Box::new(|s| s.roster.schema = "other".into()),
        Box::new(|s| s.roster.dim += 1),
        Box::new(|s| s.roster.sites[2] = site(3)),
        Box::new(|s| s.roster.min_sites = 2),
        Box::new(|s| s.roster.coordinator = site(1)),
        Box::new(|s| s.roster.deadline += 1),
        Box::new(|s| s.signature[10] ^= 1),
    ];
    for t in &tampers {
        let mut x = s.clone();
        t(&mut x);
        assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));
    }
    // A signed but invalid roster is refused on its form.
    let bad = SignedRoster::sign(roster(2, 8), None, &coord_key());
    assert!(matches!(
        bad.verify(&coord_pk()),
        Err(SecAggError::RosterTooSmall { .. })
    ));
    // A retry needs the previous certificate; a first attempt may not carry one.
    let retry = SignedRoster::sign(
        Roster {
            attempt: 1,
            ..r.clone()
        },
        None,
        &coord_key(),
    );
    assert_eq!(retry.verify(&coord_pk()), Err(SecAggError::MissingPrevious));
    let (_, cert, _) = retry_pair();
    let first = SignedRoster::sign(roster(4, 8), Some(cert), &coord_key());
    assert_eq!(
        first.verify(&coord_pk()),
        Err(SecAggError::PreviousMismatch)
    );
}

#[test]
fn retry_with_previous_certificate() {
    let (r0, cert, r1) = retry_pair();
    assert_eq!(cert.verify(&coord_pk()), Ok(()));
    assert_eq!(cert.roster_hash, r0.hash());
    assert_eq!(
        cert.submitters().cloned().collect::<Vec<_>>(),
        (0..4).map(site).collect::<Vec<_>>()
    );
    let s = SignedRoster::sign(r1.clone(), Some(cert.clone()), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
    // The previous certificate is covered by the roster signature.
    let mut x = s.clone();
    x.previous.as_mut().unwrap().submitted.pop();
    assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));
    let mut x = s.clone();
    x.previous = None;
    assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));

    // Previous certificate for another input, another study, or not the previous attempt.
    let other_input = AbortCertificate::sign(
        &Roster {
            input: [1; 32],
            ..r0.clone()
        },
        vec![],
        &coord_key(),
    );
    let other_study = AbortCertificate::sign(
        &Roster {
            study: "brain".into(),
            ..r0.clone()
        },
        vec![],
        &coord_key(),
    );
    let other_attempt = AbortCertificate::sign(
        &Roster {
            attempt: 1,
            ..r0.clone()
        },
        vec![],
        &coord_key(),
    );
    for prev in [other_input, other_study, other_attempt] {
        let s = SignedRoster::sign(r1.clone(), Some(prev), &coord_key());
        assert_eq!(s.verify(&coord_pk()), Err(SecAggError::PreviousMismatch));
    }
    let s = SignedRoster::sign(
        Roster {
            attempt: 2,
            ..r1.clone()
        },
        Some(cert.clone()),
        &coord_key(),
    );
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::PreviousMismatch));
    // Signed by another key than the roster.
    let foreign = AbortCertificate::sign(&r0, vec![], &ed25519_key(1));
    let s = SignedRoster::sign(r1.clone(), Some(foreign), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::BadSignature));

    // The retry may not exclude a site the certificate says submitted.
    let excl = Roster {
        sites: vec![site(0), site(1), site(2), site(4)],
        ..r1.clone()
    };
    let s = SignedRoster::sign(excl, Some(cert.clone()), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::ExcludedSubmitter));

    // If every site submitted, only a retry over the same sites is acceptable.
    let all = AbortCertificate::sign(
        &r0,
        (0..5).map(|i| (site(i), digest(i as u8))).collect(),
        &coord_key(),
    );
    let bigger = Roster {
        attempt: 1,
        ..roster(6, 8)
    };
    let s = SignedRoster::sign(bigger, Some(all.clone()), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Err(SecAggError::CompleteAbort));
    let same = Roster {
        attempt: 1,
        ..r0.clone()
    };
    let s = SignedRoster::sign(same, Some(all), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
}

#[test]
fn abort_certificate_sign_verify_and_tamper() {
    let (_, cert, _) = retry_pair();
    assert_eq!(cert.verify(&coord_pk()), Ok(()));
    let tampers: Vec<Tamper<AbortCertificate>> = vec![
        Box::new(|c| c.roster_hash[0] ^= 1),
        Box::new(|c| c.study = "brain".into()),
        Box::new(|c| c.input[31] ^= 1),
        Box::new(|c| c.attempt = 7),
        Box::new(|c| c.roster[4] = site(9)),
        Box::new(|c| c.submitted[1].1[0] ^= 1),
        Box::new(|c| {
            c.submitted.pop();
        }),
        Box::new(|c| c.signature[63] ^= 1),
    ];
    for t in &tampers {
        let mut x = cert.clone();
        t(&mut x);
        assert_eq!(x.verify(&coord_pk()), Err(SecAggError::BadSignature));
    }
    // Malformed but signed: a submitter outside the roster, a duplicate, an unsorted roster.
    let r0 = roster(5, 8);
    let outside = AbortCertificate::sign(&r0, vec![(site(9), digest(1))], &coord_key());
    assert_eq!(outside.verify(&coord_pk()), Err(SecAggError::NotInRoster));
    let twice = AbortCertificate::sign(
        &r0,
        vec![(site(1), digest(1)), (site(1), digest(2))],
        &coord_key(),
    );
    assert_eq!(twice.verify(&coord_pk()), Err(SecAggError::DuplicateSite));
    let mut unsorted = r0.clone();
    unsorted.sites.swap(0, 1);
    let c = AbortCertificate::sign(&unsorted, vec![], &coord_key());
    assert_eq!(c.verify(&coord_pk()), Err(SecAggError::RosterUnsorted));
    // sign puts submissions in canonical order.
    let c = AbortCertificate::sign(
        &r0,
        vec![(site(3), digest(3)), (site(0), digest(0))],
        &coord_key(),
    );
    assert_eq!(c.verify(&coord_pk()), Ok(()));
    assert_eq!(c.submitted[0].0, site(0));
}

#[test]
fn round_key_and_statement_sign_verify_and_tamper() {
    let r = roster(3, 8);
    let pk = crypto::public_key(&sign_key(1));
    let k = RoundKey::sign(&r, site(1), &round_secret(1, 0), &sign_key(1));
    assert_eq!(k.public, crypto::x25519_public(&round_secret(1, 0)));
    assert_eq!(k.verify(&pk), Ok(()));
    assert_eq!(
        k.verify(&crypto::public_key(&sign_key(2))),
        Err(SecAggError::BadSignature)
    );
    let tampers: Vec<Tamper<RoundKey>> = vec![
        Box::new(|k| k.roster_hash[3] ^= 1),
        Box::new(|k| k.site = site(2)),
        Box::new(|k| k.public[0] ^= 1),
        Box::new(|k| k.signature[0] ^= 1),
    ];
    for t in &tampers {
        let mut x = k.clone();
        t(&mut x);
        assert_eq!(x.verify(&pk), Err(SecAggError::BadSignature));
    }

    let st = SubmissionStatement::sign(&r, site(1), true, &sign_key(1));
    assert_eq!(st.roster_hash, r.hash());
    assert_eq!(st.verify(&pk), Ok(()));
    let tampers: Vec<Tamper<SubmissionStatement>> = vec![
        Box::new(|s| s.roster_hash[3] ^= 1),
        Box::new(|s| s.site = site(2)),
        Box::new(|s| s.submitted = false),
        Box::new(|s| s.signature[0] ^= 1),
    ];
    for t in &tampers {
        let mut x = st.clone();
        t(&mut x);
        assert_eq!(x.verify(&pk), Err(SecAggError::BadSignature));
    }
    // Domains separate the objects: a statement's signature is not a round key's.
    let m = codec::encode(&(&st.roster_hash, &st.site, st.submitted));
    assert!(crypto::verify(&pk, DOMAIN_STATEMENT, &m, &st.signature));
    assert!(!crypto::verify(&pk, DOMAIN_ROUND_KEY, &m, &st.signature));
}

#[test]
fn check_retry_refuses_excluding_a_provable_submitter() {
    let (r0, cert, r1) = retry_pair();
    // The coordinator lied: site 3 submitted, the certificate omits it, the retry excludes it.
    let lying = AbortCertificate::sign(
        &r0,
        (0..3).map(|i| (site(i), digest(i as u8))).collect(),
        &coord_key(),
    );
    let r1_without_3 = Roster {
        sites: vec![site(0), site(1), site(2)],
        ..r1.clone()
    };
    let s = SignedRoster::sign(r1_without_3, Some(lying), &coord_key());
    assert_eq!(s.verify(&coord_pk()), Ok(()));
    let sk = site_keys(5);
    let lookup = |s: &SiteId| sk.get(s).copied();
    let claim = SubmissionStatement::sign(&r0, site(3), true, &sign_key(3));
    assert_eq!(
        check_retry(&s, std::slice::from_ref(&claim), lookup),
        Err(SecAggError::ExcludedSubmitter)
    );
    // What does not prove anything is ignored.
    let denial = SubmissionStatement::sign(&r0, site(3), false, &sign_key(3));
    let other_roster = SubmissionStatement::sign(&r1, site(3), true, &sign_key(3));
    let mut forged = claim.clone();
    forged.signature[0] ^= 1;
    let by_other_key = SubmissionStatement::sign(&r0, site(3), true, &sign_key(2));
    let included = SubmissionStatement::sign(&r0, site(1), true, &sign_key(1));
    assert_eq!(
        check_retry(
            &s,
            &[denial, other_roster, forged, by_other_key, included],
            lookup
        ),
        Ok(())
    );
    assert_eq!(
        check_retry(&s, std::slice::from_ref(&claim), |_: &SiteId| None),
        Ok(())
    );
    // The honest retry keeps site 3 and passes; a first attempt passes.
    let honest = SignedRoster::sign(r1, Some(cert), &coord_key());
    assert_eq!(
        check_retry(&honest, std::slice::from_ref(&claim), lookup),
        Ok(())
    );
    let first = SignedRoster::sign(r0, None, &coord_key());
    assert_eq!(check_retry(&first, &[claim], lookup), Ok(()));
}

#[test]
fn domains_are_distinct_and_nul_terminated() {
    let all = [
        DOMAIN_ROSTER,
        DOMAIN_ROUND_KEY,
        DOMAIN_ABORT,
        DOMAIN_STATEMENT,
        MASK_SALT,
        crypto::DOMAIN_CERT,
        crypto::DOMAIN_CERT_REQUEST,
        crypto::DOMAIN_CRL,
        crypto::DOMAIN_ENVELOPE,
        crypto::DOMAIN_RECEIPT,
        crypto::SEAL_SALT,
    ];
    for (i, a) in all.iter().enumerate() {
        assert_eq!(a.last(), Some(&0));
        assert_eq!(a.iter().filter(|&&b| b == 0).count(), 1);
        for b in &all[i + 1..] {
            assert!(!a.starts_with(b) && !b.starts_with(a));
        }
    }
}
