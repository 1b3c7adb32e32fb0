//! Fixed-point quantisation of per-unit EM contributions.
//!
//! Owns the one rule that makes federated EM bit-identical to pooled EM: every per-unit
//! (per-voxel, per-case) real quantity is rounded to an integer multiple of 2^-[`FRAC_BITS`]
//! *before* it is summed, and sums are integers (u128/i128), so they do not depend on order or
//! partition. Headroom: u128 sums hold 2^76 units of weight ≤ 1.

/// Fractional bits of the fixed-point encoding (a weight in [0, 1] becomes an integer in
/// [0, 2^52], exactly representable as f64).
pub const FRAC_BITS: u32 = 52;

/// The fixed-point encoding of 1.0.
pub const ONE: u64 = 1 << FRAC_BITS;

const SCALE: f64 = ONE as f64;

/// Quantises a weight to [0, [`ONE`]]; values outside [0, 1] are clamped, NaN becomes 0.
pub fn quantize_unit(w: f64) -> u64 {
    if w.is_nan() || w <= 0.0 {
        return 0;
    }
    if w >= 1.0 {
        return ONE;
    }
    // Multiplying by a power of two is exact; rounding is the only approximation. `x` lies in
    // (0, 2^52), so truncating and comparing the (exact) fraction with 1/2 is `x.round()`
    // (half away from zero) without a libm call.
    let x = w * SCALE;
    let t = x as u64;
    t + u64::from(x - t as f64 >= 0.5)
}

/// Quantises a finite real number (e.g. a log-likelihood term); `None` when not finite or too
/// large for the encoding.
pub fn quantize_signed(x: f64) -> Option<i128> {
    if !x.is_finite() || x.abs() >= 2f64.powi(70) {
        return None;
    }
    let y = x * SCALE;
    if y.abs() < 2f64.powi(62) {
        // As `y.round()` (half away from zero) without a libm call: the fraction y − trunc(y)
        // is exact.
        let t = y as i64;
        let f = y - t as f64;
        let r = t + i64::from(f >= 0.5) - i64::from(f <= -0.5);
        return Some(i128::from(r));
    }
    Some(y.round() as i128)
}

/// Converts an unsigned fixed-point sum back to f64.
pub fn to_f64(sum: u128) -> f64 {
    sum as f64 / SCALE
}

/// Converts a signed fixed-point sum back to f64.
pub fn signed_to_f64(sum: i128) -> f64 {
    sum as f64 / SCALE
}

/// Ratio of two fixed-point (or integer) sums, `None` when the denominator is zero.
pub fn ratio(num: u128, den: u128) -> Option<f64> {
    if den == 0 {
        None
    } else {
        Some(num as f64 / den as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_bounds_and_rounding() {
        assert_eq!(quantize_unit(0.0), 0);
        assert_eq!(quantize_unit(1.0), ONE);
        assert_eq!(quantize_unit(-3.0), 0);
        assert_eq!(quantize_unit(f64::NAN), 0);
        assert_eq!(quantize_unit(0.5), ONE / 2);
        assert_eq!(to_f64(u128::from(quantize_unit(0.25))), 0.25);
        assert_eq!(quantize_signed(f64::NEG_INFINITY), None);
        assert_eq!(quantize_signed(-0.5), Some(-(i128::from(ONE) / 2)));
    }

    #[test]
    fn quantization_rounds_like_f64_round() {
        let reference = |w: f64| (w * SCALE).round() as u64;
        let mut rng = tests_rng::XorShift::new(0x9a17);
        for _ in 0..100_000 {
            // Uniform, tiny, and exact ties (odd multiples of 2^-53).
            let u = rng.unit();
            let tiny = u * 2f64.powi(-(rng.below(60) as i32));
            let tie = ((rng.next_u64() >> 12) | 1) as f64 * 2f64.powi(-53);
            for w in [u, tiny, tie, 1.0 - tiny] {
                if w > 0.0 && w < 1.0 {
                    assert_eq!(quantize_unit(w), reference(w), "{w:e}");
                }
                for x in [w, -w, w * 1e3, -w * 1e5, tie * 1024.0, -tie * 8.0] {
                    let expected = (x * SCALE).round() as i128;
                    assert_eq!(quantize_signed(x), Some(expected), "{x:e}");
                }
            }
        }
    }
}

/// A small deterministic RNG for the property tests of this crate and (with the `testkit`
/// feature) of the node's federated-equals-pooled tests.
#[cfg(any(test, feature = "testkit"))]
pub mod tests_rng {
    /// xorshift64*.
    #[derive(Debug)]
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }

        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in 0..n (n > 0).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }

        /// Uniform in [0, 1).
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Assigns each of 0..n to one of `parts` random parts (some may be empty), each part
        /// in a shuffled order.
        pub fn partition(&mut self, n: usize, parts: usize) -> Vec<Vec<usize>> {
            let mut out = vec![Vec::new(); parts.max(1)];
            for i in 0..n {
                let p = self.below(out.len());
                out[p].push(i);
            }
            for part in &mut out {
                for i in (1..part.len()).rev() {
                    let j = self.below(i + 1);
                    part.swap(i, j);
                }
            }
            out
        }
    }
}
