//! SA-v1 tests: known answers for the pinned PRG and seed derivation, mask cancellation, every
//! refusal, signed objects, fixed point, bounded decoding and mutation fuzzing.

use std::collections::HashMap;

use super::*;
use crate::testkit::{XorShift, ed25519_key, hex, unhex, x25519_secret};

const COORD: u8 = 200;

/// One modification of a signed object.
type Tamper<T> = Box<dyn Fn(&mut T)>;

fn site(i: usize) -> SiteId {
    SiteId::new(format!("site-{i:03}")).unwrap()
}

fn sign_key(i: usize) -> Ed25519KeyPair {
    ed25519_key(i as u8)
}

fn round_secret(i: usize, attempt: u32) -> StaticSecret {
    x25519_secret(
        (i as u8)
            .wrapping_mul(7)
            .wrapping_add(attempt as u8)
            .wrapping_add(100),
    )
}

fn roster(n: usize, dim: u32) -> Roster {
    Roster {
        study: "liver-seg".into(),
        input: [9; 32],
        attempt: 0,
        schema: "staple-theta-v1".into(),
        dim,
        sites: (0..n).map(site).collect(),
        min_sites: 3,
        coordinator: site(COORD as usize),
        deadline: 1_800_000_000,
    }
}

fn site_keys(n: usize) -> HashMap<SiteId, [u8; 32]> {
    (0..n)
        .map(|i| (site(i), crypto::public_key(&sign_key(i))))
        .collect()
}

fn bundle(r: &Roster) -> Vec<RoundKey> {
    r.sites
        .iter()
        .enumerate()
        .map(|(i, s)| RoundKey::sign(r, s.clone(), &round_secret(i, r.attempt), &sign_key(i)))
        .collect()
}

fn random_vec(rng: &mut XorShift, dim: usize) -> Vec<u128> {
    (0..dim)
        .map(|_| (u128::from(rng.next()) << 64) | u128::from(rng.next()))
        .collect()
}

fn bytes_of(v: &[u128]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn mask_all(r: &Roster, xs: &[Vec<u128>]) -> Vec<MaskedInput> {
    let keys = bundle(r);
    let sk = site_keys(r.sites.len());
    verify_key_bundle(r, &keys, |s| sk.get(s).copied()).unwrap();
    r.sites
        .iter()
        .enumerate()
        .map(|(i, s)| mask_input(&xs[i], r, s, &round_secret(i, r.attempt), &keys).unwrap())
        .collect()
}

fn coord_key() -> Ed25519KeyPair {
    ed25519_key(COORD)
}

fn coord_pk() -> [u8; 32] {
    crypto::public_key(&coord_key())
}

fn digest(i: u8) -> [u8; 32] {
    [i; 32]
}

/// Attempt 0 of 5 sites where site 4 did not submit, and the retry without it.
fn retry_pair() -> (Roster, AbortCertificate, Roster) {
    let r0 = roster(5, 8);
    let submitted = (0..4).map(|i| (site(i), digest(i as u8))).collect();
    let cert = AbortCertificate::sign(&r0, submitted, &coord_key());
    let r1 = Roster {
        attempt: 1,
        ..roster(4, 8)
    };
    (r0, cert, r1)
}

mod encoding;
mod known_answers;
mod masking;
mod signed;
