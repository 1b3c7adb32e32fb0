//! Masking: masks cancel for 3-50 sites, a masked vector hides its input, and every refusal of
//! mask_input, aggregate and verify_key_bundle.

use super::*;

#[test]
fn masks_cancel() {
    let mut rng = XorShift::new(0x5ca1e);
    for (n, dim) in [(3usize, 257u32), (4, 64), (10, 33), (50, 8)] {
        let r = roster(n, dim);
        let d = dim as usize;
        let mut xs: Vec<Vec<u128>> = (0..n).map(|_| random_vec(&mut rng, d)).collect();
        // Values near 2^127 and negative signed values.
        xs[0][0] = (1u128 << 127) - 1;
        xs[1][0] = 1u128 << 127;
        xs[2][0] = encode_signed(-5);
        xs[0][1] = encode_signed(i128::MIN);
        xs[1][1] = encode_signed(-1);
        xs[2][1] = encode_signed(i128::MAX);
        let want: Vec<u128> = (0..d)
            .map(|j| xs.iter().fold(0u128, |a, x| a.wrapping_add(x[j])))
            .collect();
        let ys = mask_all(&r, &xs);
        assert_eq!(aggregate(&r, &ys).unwrap(), want, "{n} sites");
        // Any order of submission.
        let mut rev = ys.clone();
        rev.reverse();
        assert_eq!(aggregate(&r, &rev).unwrap(), want);
    }
    // Small signed values decode exactly.
    let r = roster(3, 2);
    let xs = vec![
        vec![encode_signed(-10), encode_signed(7)],
        vec![encode_signed(3), encode_signed(-7)],
        vec![encode_signed(-1), encode_signed(0)],
    ];
    let sum = aggregate(&r, &mask_all(&r, &xs)).unwrap();
    assert_eq!(
        sum.iter().map(|&v| decode_signed(v)).collect::<Vec<_>>(),
        [-8, 0]
    );
}

#[test]
fn masked_input_hides_every_element() {
    let r = roster(4, 1024);
    let x = vec![0u128; 1024];
    let keys = bundle(&r);
    for (i, s) in r.sites.iter().enumerate() {
        let y = mask_input(&x, &r, s, &round_secret(i, 0), &keys).unwrap();
        assert_eq!(y.site, *s);
        assert_eq!(y.roster_hash, r.hash());
        assert_eq!(y.values.iter().filter(|&&v| v == 0).count(), 0);
        // Roughly half the bits set: no structure left.
        let ones: u32 = y.values.iter().map(|v| v.count_ones()).sum();
        let total = 1024 * 128;
        assert!(ones > total * 45 / 100 && ones < total * 55 / 100);
    }
}

#[test]
fn mask_input_refusals() {
    let r = roster(3, 4);
    let keys = bundle(&r);
    let x = vec![1u128; 4];
    assert_eq!(
        mask_input(&x[..3], &r, &site(0), &round_secret(0, 0), &keys),
        Err(SecAggError::DimensionMismatch {
            expected: 4,
            got: 3
        })
    );
    assert_eq!(
        mask_input(&x, &r, &site(5), &round_secret(0, 0), &keys),
        Err(SecAggError::NotInRoster)
    );
    // Someone else's secret (or a bundle carrying a substituted key for me).
    assert_eq!(
        mask_input(&x, &r, &site(0), &round_secret(1, 0), &keys),
        Err(SecAggError::OwnKeyMismatch)
    );
    assert_eq!(
        mask_input(&x, &r, &site(0), &round_secret(0, 0), &keys[..2]),
        Err(SecAggError::WrongCount {
            expected: 3,
            got: 2
        })
    );
    let mut bad = r.clone();
    bad.sites.swap(0, 1);
    assert_eq!(
        mask_input(&x, &bad, &site(0), &round_secret(0, 0), &keys),
        Err(SecAggError::RosterUnsorted)
    );
    let mut low = keys.clone();
    low[2].public = [0; 32];
    assert_eq!(
        mask_input(&x, &r, &site(0), &round_secret(0, 0), &low),
        Err(SecAggError::LowOrderKey)
    );
}

#[test]
fn aggregate_refusals() {
    let r = roster(3, 4);
    let mut rng = XorShift::new(77);
    let xs: Vec<Vec<u128>> = (0..3).map(|_| random_vec(&mut rng, 4)).collect();
    let ys = mask_all(&r, &xs);
    assert!(aggregate(&r, &ys).is_ok());
    assert_eq!(
        aggregate(&r, &ys[..2]),
        Err(SecAggError::WrongCount {
            expected: 3,
            got: 2
        })
    );
    let dup = vec![ys[0].clone(), ys[1].clone(), ys[1].clone()];
    assert_eq!(aggregate(&r, &dup), Err(SecAggError::DuplicateSite));
    let mut stranger = ys.clone();
    stranger[2].site = site(7);
    assert_eq!(aggregate(&r, &stranger), Err(SecAggError::NotInRoster));
    let mut wrong = ys.clone();
    wrong[1].roster_hash[0] ^= 1;
    assert_eq!(aggregate(&r, &wrong), Err(SecAggError::WrongRoster));
    let mut short = ys.clone();
    short[2].values.pop();
    assert_eq!(
        aggregate(&r, &short),
        Err(SecAggError::DimensionMismatch {
            expected: 4,
            got: 3
        })
    );
    let mut other = r.clone();
    other.attempt = 1;
    assert_eq!(aggregate(&other, &ys), Err(SecAggError::WrongRoster));
}

#[test]
fn key_bundle_refusals() {
    let r = roster(4, 4);
    let sk = site_keys(4);
    let lookup = |s: &SiteId| sk.get(s).copied();
    let keys = bundle(&r);
    assert_eq!(verify_key_bundle(&r, &keys, lookup), Ok(()));

    // Forged: a key re-signed by another site's signing key, or a tampered public key.
    let mut forged = keys.clone();
    forged[1] = RoundKey::sign(&r, site(1), &x25519_secret(42), &sign_key(3));
    assert_eq!(
        verify_key_bundle(&r, &forged, lookup),
        Err(SecAggError::BadSignature)
    );
    let mut tampered = keys.clone();
    tampered[2].public[5] ^= 1;
    assert_eq!(
        verify_key_bundle(&r, &tampered, lookup),
        Err(SecAggError::BadSignature)
    );

    // A key signed for another roster.
    let mut other = r.clone();
    other.attempt = 1;
    let mut replayed = keys.clone();
    replayed[3] = RoundKey::sign(&other, site(3), &round_secret(3, 0), &sign_key(3));
    assert_eq!(
        verify_key_bundle(&r, &replayed, lookup),
        Err(SecAggError::WrongRoster)
    );

    // Missing, duplicate, out of order, unknown.
    assert_eq!(
        verify_key_bundle(&r, &keys[..3], lookup),
        Err(SecAggError::WrongCount {
            expected: 4,
            got: 3
        })
    );
    let mut dup = keys.clone();
    dup[2] = keys[1].clone();
    assert_eq!(
        verify_key_bundle(&r, &dup, lookup),
        Err(SecAggError::DuplicateSite)
    );
    let mut swapped = keys.clone();
    swapped.swap(1, 2);
    assert_eq!(
        verify_key_bundle(&r, &swapped, lookup),
        Err(SecAggError::OutOfOrder)
    );
    let mut stranger = keys.clone();
    stranger[0] = RoundKey::sign(&r, site(9), &round_secret(9, 0), &sign_key(9));
    assert_eq!(
        verify_key_bundle(&r, &stranger, lookup),
        Err(SecAggError::NotInRoster)
    );
    assert_eq!(
        verify_key_bundle(&r, &keys, |s: &SiteId| (s != &site(2)).then(|| sk[s])),
        Err(SecAggError::UnknownSiteKey)
    );

    // Low-order public keys, properly signed by their site: all-zero, one, and a point of
    // order 8 (RFC 7748 §6.1 / the curve25519 small-subgroup list).
    let order8 = unhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    let mut one = [0u8; 32];
    one[0] = 1;
    for pk in [[0u8; 32], one, order8.try_into().unwrap()] {
        let mut low = keys.clone();
        low[1].public = pk;
        low[1].signature = crypto::sign(
            &sign_key(1),
            DOMAIN_ROUND_KEY,
            &codec::encode(&(&low[1].roster_hash, &low[1].site, &low[1].public)),
        );
        assert_eq!(low[1].verify(&sk[&site(1)]), Ok(()));
        assert_eq!(
            verify_key_bundle(&r, &low, lookup),
            Err(SecAggError::LowOrderKey)
        );
    }

    // A site republishing another site's public key.
    let mut copy = keys.clone();
    copy[3].public = keys[0].public;
    copy[3].signature = crypto::sign(
        &sign_key(3),
        DOMAIN_ROUND_KEY,
        &codec::encode(&(&copy[3].roster_hash, &copy[3].site, &copy[3].public)),
    );
    assert_eq!(
        verify_key_bundle(&r, &copy, lookup),
        Err(SecAggError::DuplicatePublicKey)
    );

    // An invalid roster is refused before anything else.
    let mut bad = r.clone();
    bad.dim = 0;
    assert!(matches!(
        verify_key_bundle(&bad, &keys, lookup),
        Err(SecAggError::BadDimension { .. })
    ));
}
