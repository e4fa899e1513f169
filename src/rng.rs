//! Random numbers: per-run seeds and standard Gaussian vectors.
//!
//! Every run owns one generator seeded from (base seed, N, seed index) by [`run_seed`], so a run's
//! result does not depend on which thread ran it or in which order: the bit-for-bit reproducibility
//! of experiments rests on this.

use rand::{Rng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
pub use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator of every simulation: xoshiro256++ (Blackman & Vigna 2018), fast and with 256 bits of state.
pub type SimRng = Xoshiro256PlusPlus;

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of run (N, seed index) of an experiment with `base` seed: a hash chain of the three.
///
/// ```
/// use hdsgd::rng::run_seed;
/// assert_eq!(run_seed(1, 1000, 3), run_seed(1, 1000, 3));
/// assert_ne!(run_seed(1, 1000, 3), run_seed(1, 1000, 4));
/// assert_ne!(run_seed(1, 1000, 3), run_seed(1, 2000, 3));
/// ```
pub fn run_seed(base: u64, n: usize, index: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(base) ^ n as u64) ^ index)
}

/// A generator for one purpose (`stream`: initialisation, SGD samples, ...) of a run.
pub fn stream(seed: u64, stream: u64) -> SimRng {
    SimRng::seed_from_u64(splitmix64(seed ^ splitmix64(stream.wrapping_add(0xA5A5))))
}

/// Fills `out` with iid N(0, 1) numbers.
#[inline]
pub fn fill_standard_normal<R: Rng + ?Sized>(rng: &mut R, out: &mut [f64]) {
    for x in out.iter_mut() {
        *x = rng.sample(StandardNormal);
    }
}

/// One N(0, 1) number.
#[inline]
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(StandardNormal)
}
