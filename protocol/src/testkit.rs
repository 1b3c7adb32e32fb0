//! Test-only helpers (compiled under `cfg(test)` only): fixed keys, a deterministic randomness
//! source, a xorshift generator for mutation tests, and hex.
//!
//! ring seals its `SecureRandom` trait (its own fixed test generators live in a private module),
//! so a deterministic *ring* `SecureRandom` cannot be written outside ring. Sealing therefore takes
//! its randomness through [`crate::envelope::Entropy`], implemented for every ring
//! `SecureRandom` and, here, for [`TestRng`].

use ring::signature::Ed25519KeyPair;
use x25519_dalek::StaticSecret;

use crate::crypto::sha256;

/// An Ed25519 key from a fixed 32-byte seed `[b; 32]`.
pub fn ed25519_key(b: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[b; 32]).unwrap()
}

/// An X25519 secret `[b; 32]`.
pub fn x25519_secret(b: u8) -> StaticSecret {
    StaticSecret::from([b; 32])
}

/// Deterministic bytes: SHA-256(seed ‖ counter) blocks.
pub struct TestRng {
    seed: u64,
    counter: std::cell::Cell<u64>,
}

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: std::cell::Cell::new(0),
        }
    }

    pub fn fill(&self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let c = self.counter.get();
            self.counter.set(c + 1);
            let mut input = self.seed.to_be_bytes().to_vec();
            input.extend_from_slice(&c.to_be_bytes());
            let block = sha256(&input);
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

/// xorshift64*: a tiny generator for mutation tests.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// One random mutation of `b`: flip a bit, set a byte, insert, delete, truncate, or extend.
    pub fn mutate(&mut self, b: &[u8]) -> Vec<u8> {
        let mut v = b.to_vec();
        let rounds = 1 + self.below(3);
        for _ in 0..rounds {
            match self.below(7) {
                0 | 1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                2 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                3 => {
                    let i = self.below(v.len() + 1);
                    v.insert(i, self.next() as u8);
                }
                4 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v.remove(i);
                }
                5 => {
                    let n = self.below(v.len() + 1);
                    v.truncate(n);
                }
                _ => {
                    let i = self.below(v.len() + 1);
                    let big = [0xffu8, 0xff, 0xff, 0xff, 0x0f];
                    for (k, x) in big.iter().enumerate() {
                        v.insert(i + k, *x);
                    }
                }
            }
        }
        v
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
