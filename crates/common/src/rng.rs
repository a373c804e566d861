//! Counter-based random numbers (Philox4x32-10), the one generator weft uses everywhere.
//!
//! Written by hand because the same numbers must come out of the CPU executor, the WGSL
//! kernels and the data loader: value `i` of stream `s` under seed `k` is a pure function of
//! (k, s, i), so a dropout mask is the same on every device and needs no storage.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: four random words from a 128-bit counter and a 64-bit key.
pub fn philox(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// A u32 → [0, 1) float with 24 bits of randomness (exactly representable in f32).
pub fn to_unit(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The `index`-th uniform [0, 1) number of `stream` under `seed`, computed directly.
pub fn uniform_at(seed: u64, stream: u64, index: u64) -> f32 {
    let block = philox(
        [
            (index >> 2) as u32,
            (index >> 34) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        [seed as u32, (seed >> 32) as u32],
    );
    to_unit(block[(index & 3) as usize])
}

/// A sequential reader over one stream (initialisation, shuffles, synthetic data).
#[derive(Debug, Clone)]
pub struct Rng {
    seed: u64,
    stream: u64,
    next: u64,
}

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng {
            seed,
            stream,
            next: 0,
        }
    }

    /// A uniform number in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        let v = uniform_at(self.seed, self.stream, self.next);
        self.next += 1;
        v
    }

    /// A uniform 64-bit-derived number in [0, 1) as f64 (for shuffles of large tables).
    pub fn uniform_f64(&mut self) -> f64 {
        let a = f64::from(self.uniform());
        let b = f64::from(self.uniform());
        (a + b / 16_777_216.0).min(1.0 - f64::EPSILON)
    }

    /// An integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// A standard normal number (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = f64::from(self.uniform()).max(1e-12);
        let u2 = f64::from(self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_reference_vector() {
        // Known-answer test from the Random123 distribution (philox4x32_10, zero inputs).
        assert_eq!(
            philox([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
    }

    #[test]
    fn uniform_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(7, 1);
        let xs: Vec<f32> = (0..10_000).map(|_| r.uniform()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
