//! A small deterministic generator (SplitMix64) for synthetic data: the same seed gives the same
//! files on every machine. Not for anything secret.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for a sub-stream (e.g. one case or one reader), independent of the others.
    pub fn derive(seed: u64, stream: &[u64]) -> Self {
        let mut r = Rng(seed ^ 0x5EED_F00D_CAFE_BABE);
        for s in stream {
            r.0 ^= s.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            r.next_u64();
        }
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in lo..=hi.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A stateless hash of a voxel index, uniform in [-1, 1): per-voxel noise that does not depend
/// on iteration order.
pub fn voxel_noise(seed: u64, index: u64) -> f64 {
    let mut r = Rng::derive(seed, &[index]);
    r.unit() * 2.0 - 1.0
}
