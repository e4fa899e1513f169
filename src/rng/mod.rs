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

// ---------------------------------------------------------------------------------------------
// Fast exact N(0, 1) generator: Box–Muller over 8 interleaved xoshiro256++ lanes.
// ---------------------------------------------------------------------------------------------

use crate::isa::{avx512_available, Isa};

/// Number of independent xoshiro256++ lanes of a [`FastNormal`].
pub const NORMAL_LANES: usize = 8;
/// Numbers produced per block by a [`FastNormal`] (two per lane).
pub const NORMAL_BLOCK: usize = 2 * NORMAL_LANES;

/// Bits of 1.0: OR-ing 52 random mantissa bits into them gives a uniform double in [1, 2).
const ONE_BITS: u64 = 0x3FF0_0000_0000_0000;
const MANTISSA: u64 = 0x000F_FFFF_FFFF_FFFF;

pub mod jump;
mod lanes;
mod ziggurat;
pub(crate) use ziggurat::ZigPending;
mod ziggurat_tables;

pub use ziggurat::ziggurat;

/// Which exact N(0, 1) map a [`FastNormal`] applies to its xoshiro words (TOML:
/// `[simulation] generator`, "ziggurat" or "box-muller"). Both consume two words of every lane
/// per block, so they share the lanes, the seeding and the jump-ahead; they give different
/// numbers from the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    /// The 256-layer ziggurat ([`ziggurat()`]): one word per number, rejected words (≈ 1.5 %)
    /// completed by a scalar fallback. Faster than Box–Muller on AVX2 (1.3 vs 1.8 ns per
    /// number), slower with AVX-512F (1.1 vs 0.75 ns), where its table gathers cost more than
    /// Box–Muller's arithmetic (docs/performance.md).
    Ziggurat,
    /// Box–Muller ([`box_muller`]): two words per pair of numbers. The default: the generator of
    /// every shipped result, and the faster one on AVX-512F CPUs.
    #[default]
    BoxMuller,
}

impl Generator {
    /// Its name in the TOML and in reports: "ziggurat" or "box-muller".
    pub fn name(self) -> &'static str {
        match self {
            Generator::Ziggurat => "ziggurat",
            Generator::BoxMuller => "box-muller",
        }
    }
}

/// One xoshiro256++ step (Blackman & Vigna 2018) on a state `[s0, s1, s2, s3]`; returns the output.
#[inline(always)]
pub fn xoshiro256pp_next(s: &mut [u64; 4]) -> u64 {
    let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
    let t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3].rotate_left(45);
    out
}

/// The xoshiro256 jump: advances a state by 2^128 steps, so that lanes seeded by successive jumps
/// never overlap (Blackman & Vigna's reference `jump()`).
pub fn xoshiro256_jump(s: &mut [u64; 4]) {
    const JUMP: [u64; 4] = [
        0x180e_c6d3_3cfd_0aba,
        0xd5a6_1266_f0c9_392c,
        0xa958_2618_e03f_c9aa,
        0x39ab_dc45_29b1_661c,
    ];
    let mut acc = [0u64; 4];
    for j in JUMP {
        for b in 0..64 {
            if j & (1u64 << b) != 0 {
                for k in 0..4 {
                    acc[k] ^= s[k];
                }
            }
            xoshiro256pp_next(s);
        }
    }
    *s = acc;
}

/// The Box–Muller map of two xoshiro outputs to two independent N(0, 1) numbers.
///
/// u₁ = 2 − (1 + 52 random bits of `r1`) ∈ (0, 1]; the angle θ = kπ/2 + y with k the two low bits
/// of `r2` and y = (π/2)·(U − 1/2), U from its 52 high bits, so θ is uniform on the circle and
/// (cos θ, sin θ) = quadrant rotation of (cos y, sin y) with |y| ≤ π/4, where the polynomials are
/// accurate to about an ulp. Returns (√(−2 ln u₁) cos θ, √(−2 ln u₁) sin θ).
#[inline(always)]
pub fn box_muller(r1: u64, r2: u64) -> (f64, f64) {
    // SAFETY: f64 lanes need no instruction-set extension.
    unsafe { lanes::box_muller(r1, r2) }
}

/// A fast exact standard-normal generator over [`NORMAL_LANES`] xoshiro256++ lanes, lane ℓ+1 being
/// lane ℓ advanced by 2^128 steps; each block of [`NORMAL_BLOCK`] numbers advances every lane by
/// two steps, with either [`Generator`]:
///
/// * [`Generator::Ziggurat`]: number 8k + ℓ of a block is [`ziggurat()`] of word k
///   of lane ℓ. The SIMD paths run the ziggurat's fast path on all lanes at once and call the one
///   scalar fallback for the lanes it rejects, so every path gives the same stream.
/// * [`Generator::BoxMuller`] (the default): in block order, for lane groups g = 0, 1 (lanes 4g..4g+3): the
///   four cosine outputs, then the four sine outputs, of [`box_muller`] of each lane's two words.
///   The transform is written once over lanes of f64 (no FMA, own log/sin/cos), so the paths
///   give the same stream.
///
/// The stream depends only on the seed and the generator: the AVX2 and portable paths, and on
/// CPUs with AVX-512F the AVX-512 version of the AVX2 choice (set `HDSGD_NO_AVX512=1` to disable
/// it), are bit-identical (tested).
///
/// "Exact": both maps are exact in law up to double rounding and the 52-bit resolution of their
/// uniforms (Box–Muller: |x| ≤ √(104 ln 2) ≈ 8.49, the mass beyond is 2e-17; the ziggurat: its
/// tabulated layer areas agree to 1e-9 relative, see `ziggurat_tables`).
///
/// ```
/// use hdsgd::rng::{FastNormal, NORMAL_BLOCK};
/// let mut g = FastNormal::new(7);
/// let mut x = vec![0.0; 4 * NORMAL_BLOCK];
/// g.fill(&mut x);
/// let mean = x.iter().sum::<f64>() / x.len() as f64;
/// assert!(mean.abs() < 0.5);
/// ```
#[derive(Debug, Clone)]
pub struct FastNormal {
    /// State word w of lane ℓ at `s[w][ℓ]` (structure of arrays, as the vector code loads it).
    s: [[u64; NORMAL_LANES]; 4],
    isa: Isa,
    /// With `Isa::Avx2Fma`: use the AVX-512F version (same stream) if the CPU has it.
    wide: bool,
    generator: Generator,
}

impl FastNormal {
    /// The default generator (Box–Muller) seeded from `seed` (through SplitMix64), on the best
    /// instruction set here.
    pub fn new(seed: u64) -> Self {
        Self::with_isa(seed, Isa::detect())
    }

    /// [`Self::new`] with an explicit [`Generator`].
    pub fn with_generator(seed: u64, generator: Generator) -> Self {
        Self::with_isa(seed, Isa::detect()).generator(generator)
    }

    /// The same lanes with another [`Generator`] (the state is kept: switching mid-stream
    /// continues from the same xoshiro words).
    pub fn generator(mut self, generator: Generator) -> Self {
        self.generator = generator;
        self
    }

    /// The [`Generator`] in use.
    pub fn generator_kind(&self) -> Generator {
        self.generator
    }

    /// The default generator on an explicit instruction set (falls back to portable if
    /// unavailable).
    pub fn with_isa(seed: u64, isa: Isa) -> Self {
        let mut lane = [0u64; 4];
        let mut z = seed;
        for w in lane.iter_mut() {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *w = splitmix64(z.wrapping_sub(0x9E37_79B9_7F4A_7C15));
        }
        if lane == [0; 4] {
            lane[0] = 1;
        }
        let mut s = [[0u64; NORMAL_LANES]; 4];
        for l in 0..NORMAL_LANES {
            for w in 0..4 {
                s[w][l] = lane[w];
            }
            xoshiro256_jump(&mut lane);
        }
        let isa = if isa.available() { isa } else { Isa::Portable };
        FastNormal {
            s,
            isa,
            wide: avx512_available(),
            generator: Generator::default(),
        }
    }

    /// Switches the instruction set (the stream is the same on all of them); falls back to
    /// portable if `isa` is unavailable.
    pub fn set_isa(&mut self, isa: Isa) {
        self.isa = if isa.available() { isa } else { Isa::Portable };
    }

    /// The code path that generates: "avx512f", "avx2" or "portable" (all give the same stream).
    pub fn simd_name(&self) -> &'static str {
        match (self.isa, self.wide) {
            (Isa::Avx2Fma, true) => "avx512f",
            (Isa::Avx2Fma, false) => "avx2",
            (Isa::Portable, _) => "portable",
        }
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Turns the AVX-512F path on (where available and not disabled by `HDSGD_NO_AVX512`) or off;
    /// the stream is the same either way (tests compare the kernels built on each path).
    pub fn set_avx512(&mut self, on: bool) {
        self.wide = on && avx512_available();
    }

    /// The state of the eight lanes (word w of lane ℓ at `[w][ℓ]`), for code that splits the
    /// stream (the split step sets a copy's state to a jumped one).
    pub(crate) fn state_mut(&mut self) -> &mut [[u64; NORMAL_LANES]; 4] {
        &mut self.s
    }

    /// Whether this generator runs the AVX-512F path.
    pub(crate) fn runs_avx512(&self) -> bool {
        self.isa == Isa::Avx2Fma && self.wide
    }

    /// The state of the eight lanes, if this generator runs the AVX-512F path (for kernels that
    /// generate the stream themselves with [`avx512::next_block`], bit-identical to [`Self::fill`]).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn avx512_state(&mut self) -> Option<&mut [[u64; NORMAL_LANES]; 4]> {
        self.runs_avx512().then_some(&mut self.s)
    }

    /// The jump that skips `blocks` blocks of the stream (each block advances every lane by two
    /// xoshiro steps), for [`Self::jump`].
    pub fn block_jump(blocks: u64) -> jump::Jump {
        jump::Jump::new(2 * blocks as u128)
    }

    /// Skips ahead in the stream as `j` says (256 steps of every lane, whatever the distance):
    /// after `jump(&FastNormal::block_jump(b))` the generator produces what it would have produced
    /// after b more blocks.
    pub fn jump(&mut self, j: &jump::Jump) {
        j.apply_lanes(&mut self.s);
    }

    /// Fills `out` with iid N(0, 1) numbers; `out.len()` must be a multiple of [`NORMAL_BLOCK`]
    /// (callers round their buffers up and ignore the tail).
    #[inline]
    pub fn fill(&mut self, out: &mut [f64]) {
        assert!(
            out.len().is_multiple_of(NORMAL_BLOCK),
            "FastNormal::fill needs a multiple of {NORMAL_BLOCK}"
        );
        let zig = self.generator == Generator::Ziggurat;
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `wide` is set only if the CPU has AVX-512F (wide_available).
            Isa::Avx2Fma if self.wide && zig => unsafe { avx512::fill_ziggurat(&mut self.s, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2Fma if self.wide => unsafe { avx512::fill(&mut self.s, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is Avx2Fma only if the CPU has AVX2 and FMA (with_isa, set_isa).
            Isa::Avx2Fma if zig => unsafe { avx2::fill_ziggurat(&mut self.s, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2Fma => unsafe { avx2::fill(&mut self.s, out) },
            _ if zig => self.fill_portable_ziggurat(out),
            _ => self.fill_portable(out),
        }
    }

    fn fill_portable_ziggurat(&mut self, out: &mut [f64]) {
        for block in out.chunks_exact_mut(NORMAL_BLOCK) {
            for l in 0..NORMAL_LANES {
                let mut st = [self.s[0][l], self.s[1][l], self.s[2][l], self.s[3][l]];
                block[l] = ziggurat(xoshiro256pp_next(&mut st));
                block[NORMAL_LANES + l] = ziggurat(xoshiro256pp_next(&mut st));
                for w in 0..4 {
                    self.s[w][l] = st[w];
                }
            }
        }
    }

    fn fill_portable(&mut self, out: &mut [f64]) {
        for block in out.chunks_exact_mut(NORMAL_BLOCK) {
            for g in 0..2 {
                for j in 0..4 {
                    let l = 4 * g + j;
                    let mut st = [self.s[0][l], self.s[1][l], self.s[2][l], self.s[3][l]];
                    let r1 = xoshiro256pp_next(&mut st);
                    let r2 = xoshiro256pp_next(&mut st);
                    for w in 0..4 {
                        self.s[w][l] = st[w];
                    }
                    let (c, s) = box_muller(r1, r2);
                    block[8 * g + j] = c;
                    block[8 * g + 4 + j] = s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::{simd_tests_enabled, SimdFeature};
    use rand::{Rng, SeedableRng};
    use std::f64::consts::{FRAC_PI_2, SQRT_2 as SQRT2};

    // SAFETY (both): f64 lanes need no instruction-set extension.
    fn ln_unit(u: f64) -> f64 {
        unsafe { lanes::ln_unit(u) }
    }
    fn sincos_kernel(y: f64) -> (f64, f64) {
        unsafe { lanes::sincos_kernel(y) }
    }

    fn to_seed(s: [u64; 4]) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, w) in s.iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Our xoshiro256++ step and jump are the reference ones (as implemented by rand_xoshiro).
    #[test]
    fn xoshiro_matches_reference() {
        let mut s = [1, 2, 3, 0xDEAD_BEEF_u64];
        let mut r = SimRng::from_seed(to_seed(s));
        for _ in 0..1000 {
            assert_eq!(xoshiro256pp_next(&mut s), r.next_u64());
        }
        xoshiro256_jump(&mut s);
        r.jump();
        for _ in 0..100 {
            assert_eq!(xoshiro256pp_next(&mut s), r.next_u64());
        }
    }

    /// ln, sin, cos kernels agree with the standard library to a couple of ulps on their domains.
    #[test]
    fn elementary_kernels_are_accurate() {
        let mut r = SimRng::seed_from_u64(5);
        let mut us: Vec<f64> = (0..100_000)
            .map(|_| 2.0 - f64::from_bits((r.next_u64() >> 12) | ONE_BITS))
            .collect();
        us.extend([
            1.0,
            f64::EPSILON,
            2.0 * f64::EPSILON,
            0.5,
            SQRT2 / 2.0,
            // the neighbours of √2/2, where the mantissa reduction switches
            f64::from_bits((SQRT2 / 2.0).to_bits() + 1),
            f64::from_bits((SQRT2 / 2.0).to_bits() - 1),
        ]);
        for u in us {
            let (a, b) = (ln_unit(u), u.ln());
            assert!((a - b).abs() <= 2.0 * f64::EPSILON * b.abs(), "ln({u}): {a} vs {b}");
        }
        for i in 0..=100_000 {
            let y = std::f64::consts::FRAC_PI_4 * (2.0 * i as f64 / 100_000.0 - 1.0);
            let (c, s) = sincos_kernel(y);
            assert!((c - y.cos()).abs() <= 2.0 * f64::EPSILON, "cos({y})");
            assert!(
                (s - y.sin()).abs() <= 2.0 * f64::EPSILON * y.abs().max(f64::MIN_POSITIVE),
                "sin({y})"
            );
        }
    }

    /// Box–Muller's quadrant bookkeeping: the pair is ρ(cos θ, sin θ) with θ = kπ/2 + y.
    #[test]
    fn box_muller_is_the_polar_map() {
        let mut r = SimRng::seed_from_u64(6);
        for _ in 0..10_000 {
            let (r1, r2) = (r.next_u64(), r.next_u64());
            let u1 = 2.0 - f64::from_bits((r1 >> 12) | ONE_BITS);
            let rho = (-2.0 * u1.ln()).sqrt();
            let y = (f64::from_bits((r2 >> 12) | ONE_BITS) - 1.5) * FRAC_PI_2;
            let theta = (r2 & 3) as f64 * FRAC_PI_2 + y;
            let (a, b) = box_muller(r1, r2);
            assert!(
                (a - rho * theta.cos()).abs() < 1e-14 * (1.0 + rho),
                "{a} vs {}",
                rho * theta.cos()
            );
            assert!((b - rho * theta.sin()).abs() < 1e-14 * (1.0 + rho));
        }
    }

    /// The AVX2 path and, where the CPU has it, the AVX-512 one (`wide`), if their tests can run.
    fn simd_widths(test: &str) -> Vec<bool> {
        if !simd_tests_enabled(SimdFeature::Avx2, Isa::Avx2Fma.available(), test) {
            return vec![];
        }
        let mut widths = vec![false];
        if simd_tests_enabled(SimdFeature::Avx512, avx512_available(), test) {
            widths.push(true);
        }
        widths
    }

    /// The AVX2 and portable paths give the same stream, bit for bit (not only close), for both
    /// generators.
    #[test]
    fn simd_and_portable_streams_are_identical() {
        for wide in simd_widths("simd_and_portable_streams_are_identical") {
            for gen in [Generator::Ziggurat, Generator::BoxMuller] {
                let mut a = FastNormal::with_isa(11, Isa::Avx2Fma).generator(gen);
                a.wide = wide;
                let mut b = FastNormal::with_isa(11, Isa::Portable).generator(gen);
                for len in [16, 32, 48, 160, 4096, 99_984] {
                    let mut x = vec![0.0; len];
                    let mut y = vec![0.0; len];
                    a.fill(&mut x);
                    b.fill(&mut y);
                    for (i, (u, v)) in x.iter().zip(&y).enumerate() {
                        assert_eq!(u.to_bits(), v.to_bits(), "{gen:?} wide {wide} len {len} index {i}");
                    }
                }
            }
        }
    }

    /// The ziggurat's rejection and tail paths give the same numbers on every path: blocks found
    /// by scanning seeds, in which every lane's words hit the fallback (several wedge rejections
    /// in the same vector) or the tail beyond R, generated by each path from the same state.
    #[test]
    fn ziggurat_fallbacks_are_identical_across_paths() {
        let widths = simd_widths("ziggurat_fallbacks_are_identical_across_paths");
        let (mut tails, mut crowded) = (0, 0);
        for seed in 0..20_000u64 {
            let g = FastNormal::with_isa(seed, Isa::Portable).generator(Generator::Ziggurat);
            // The first block's 16 words, without generating.
            let mut words = vec![];
            for l in 0..NORMAL_LANES {
                let mut st = [g.s[0][l], g.s[1][l], g.s[2][l], g.s[3][l]];
                words.push(xoshiro256pp_next(&mut st));
                words.push(xoshiro256pp_next(&mut st));
            }
            let rejected = words.iter().filter(|&&w| ziggurat::fast(w).is_none()).count();
            let tail = words.iter().any(|&w| ziggurat(w).abs() > ziggurat_tables::R);
            if !(tail || rejected >= 2) {
                continue;
            }
            tails += tail as usize;
            crowded += (rejected >= 2) as usize;
            let mut reference = [0.0; NORMAL_BLOCK];
            g.clone().fill(&mut reference);
            for &wide in &widths {
                let mut h = g.clone();
                h.set_isa(Isa::Avx2Fma);
                h.wide = wide;
                let mut x = [0.0; NORMAL_BLOCK];
                h.fill(&mut x);
                assert_eq!(
                    x.map(f64::to_bits),
                    reference.map(f64::to_bits),
                    "seed {seed} wide {wide}"
                );
            }
        }
        // P(a tail number in a block) = 16 · P(|z| > R) ≈ 16 · 2.6e-4, P(≥ 2 rejections) ≈ 2.2 %:
        // ≈ 80 and ≈ 440 blocks expected; the scan must have found some of each.
        assert!(tails >= 20 && crowded >= 100, "tails {tails}, crowded {crowded}");
    }

    /// Block layout: lane ℓ's pair lands at (8g + j, 8g + 4 + j), ℓ = 4g + j; lanes are jumps apart.
    /// A jumped generator continues the stream exactly where the unjumped one would be.
    #[test]
    fn jump_skips_whole_blocks() {
        for isa in [Isa::Portable, Isa::detect()] {
            for gen in [Generator::Ziggurat, Generator::BoxMuller] {
                let mut a = FastNormal::with_isa(11, isa).generator(gen);
                let mut b = a.clone();
                let mut x = vec![0.0; 37 * NORMAL_BLOCK];
                a.fill(&mut x);
                b.jump(&FastNormal::block_jump(37));
                let (mut ya, mut yb) = (vec![0.0; 5 * NORMAL_BLOCK], vec![0.0; 5 * NORMAL_BLOCK]);
                a.fill(&mut ya);
                b.fill(&mut yb);
                assert_eq!(ya, yb);
            }
        }
    }

    #[test]
    fn block_layout_and_lanes() {
        let g = FastNormal::with_isa(3, Isa::Portable).generator(Generator::BoxMuller);
        let mut lane0 = [g.s[0][0], g.s[1][0], g.s[2][0], g.s[3][0]];
        let mut lane5 = lane0;
        for _ in 0..5 {
            xoshiro256_jump(&mut lane5);
        }
        let mut h = g.clone();
        let mut out = [0.0; NORMAL_BLOCK];
        h.fill(&mut out);
        let (c0, s0) = box_muller(xoshiro256pp_next(&mut lane0), xoshiro256pp_next(&mut lane0));
        let (c5, s5) = box_muller(xoshiro256pp_next(&mut lane5), xoshiro256pp_next(&mut lane5));
        assert_eq!((out[0], out[4]), (c0, s0));
        assert_eq!((out[9], out[13]), (c5, s5));
    }

    /// Ziggurat block layout: number 8k + ℓ is the ziggurat of word k of lane ℓ.
    #[test]
    fn ziggurat_block_layout() {
        let g = FastNormal::with_isa(4, Isa::Portable).generator(Generator::Ziggurat);
        let mut lanes: Vec<[u64; 4]> = (0..NORMAL_LANES)
            .map(|l| [g.s[0][l], g.s[1][l], g.s[2][l], g.s[3][l]])
            .collect();
        let mut h = g.clone();
        let mut out = [0.0; 2 * NORMAL_BLOCK];
        h.fill(&mut out);
        for block in out.chunks_exact(NORMAL_BLOCK) {
            for k in 0..2 {
                for (l, st) in lanes.iter_mut().enumerate() {
                    assert_eq!(block[8 * k + l], ziggurat(xoshiro256pp_next(st)));
                }
            }
        }
    }
}
