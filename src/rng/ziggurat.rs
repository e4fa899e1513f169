//! The ziggurat map of one xoshiro output to one N(0, 1) number (Marsaglia & Tsang 2000, with the
//! 256 layers of [`super::ziggurat_tables`]), split into the fast path that the SIMD generators
//! evaluate on all lanes at once and the scalar fallback that they call per lane.
//!
//! A word w gives the layer i = w mod 256 (its 8 low bits), and from its 52 high bits
//! u = 2·(1 + 2⁻⁵²·⌊w/2¹²⌋) − 3 ∈ [−1, 1) and x = u·X[i]. The fast path accepts x when
//! |x| < X[i+1] (the part of layer i under the density, ≈ 98.5 % of words). Otherwise
//! [`fallback`] completes the draw: the wedge test of layer i, the tail beyond R for the base
//! layer, and on rejection a new draw. Every operation of the fast path (an exact subtraction,
//! one correctly rounded product, an absolute value and a comparison) gives the same bits on
//! every lane type, and the fallback is one scalar function of w: so the portable, AVX2 and
//! AVX-512F generators give the same stream bit for bit by construction.
//!
//! Why the fallback draws its further uniforms from a generator keyed by the rejected word
//! (SplitMix64 seeded with w ⊕ [`FALLBACK_KEY`]) rather than from the lane's own xoshiro stream:
//! so that every number consumes exactly one word of its lane, whatever was rejected. The stream
//! then advances by a fixed number of xoshiro steps per block, and the jump-ahead of the split
//! step and of sharded runs ([`super::FastNormal::block_jump`]) applies unchanged. The words
//! reaching the fallback are a fixed set (those rejected by the fast path), each keying a
//! SplitMix64 sequence, the counter-based construction by which SplitMix64 seeds generators; the
//! extra uniforms enter only through the wedge and tail tests and the ≈ 1.5 % of restarts.

use super::lanes;
use super::splitmix64;
use super::ziggurat_tables::{F, R, X};
use super::NORMAL_BLOCK;

/// Bits of 2.0: OR-ing 52 random mantissa bits into them gives a uniform double in [2, 4).
const TWO_BITS: u64 = 0x4000_0000_0000_0000;

/// The key XOR-ed into a rejected word to seed its fallback generator (an arbitrary constant, so
/// that the fallback's SplitMix64 sequence is not the one `splitmix64(w)` starts elsewhere).
pub(super) const FALLBACK_KEY: u64 = 0x5A17_6A7E_0F5E_ED01;

/// (i, u, x) of a word: layer, uniform in [−1, 1), candidate x = u·X[i].
#[inline(always)]
pub(super) fn candidate(w: u64) -> (usize, f64, f64) {
    let i = (w & 0xFF) as usize;
    let u = f64::from_bits((w >> 12) | TWO_BITS) - 3.0;
    (i, u, u * X[i])
}

/// The fast path: x if the word's candidate lies inside its layer's rectangle, else `None`.
#[inline(always)]
pub(super) fn fast(w: u64) -> Option<f64> {
    let (i, _, x) = candidate(w);
    (x.abs() < X[i + 1]).then_some(x)
}

/// The N(0, 1) number of a word: [`fast`], else [`fallback`].
#[inline(always)]
pub fn ziggurat(w: u64) -> f64 {
    match fast(w) {
        Some(x) => x,
        None => fallback(w),
    }
}

/// A generated ziggurat block whose rejected numbers are still to be completed: its 16 words
/// (in block order), the mask of the rejected ones and where the block was stored. The SIMD
/// generators complete a block one block later, once its mask (which waits for the table
/// gathers) is long known: so the ≈ 21 % of blocks with a rejection cost a cheap branch
/// misprediction instead of a pipeline stall.
pub(crate) struct ZigPending {
    words: [u64; NORMAL_BLOCK],
    rejected: u32,
    at: *mut f64,
}

impl ZigPending {
    /// Nothing pending.
    pub(crate) fn new() -> Self {
        ZigPending {
            words: [0; NORMAL_BLOCK],
            rejected: 0,
            at: std::ptr::null_mut(),
        }
    }

    /// Where the next block's words go (before [`Self::set`]).
    #[inline(always)]
    pub(crate) fn words_mut(&mut self) -> &mut [u64; NORMAL_BLOCK] {
        &mut self.words
    }

    /// Makes the block stored at `at` (its words in [`Self::words_mut`]) pending, with the mask
    /// of its rejected numbers; the previous one must have been completed.
    #[inline(always)]
    pub(crate) fn set(&mut self, rejected: u32, at: *mut f64) {
        self.rejected = rejected;
        self.at = at;
    }

    /// Completes the pending block (its rejected numbers, from [`fallback`]).
    ///
    /// # Safety
    /// The block's storage must still be valid for writes.
    #[inline(always)]
    pub(crate) unsafe fn complete(&mut self) {
        if self.rejected != 0 {
            self.fix();
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn fix(&mut self) {
        let mut m = self.rejected;
        while m != 0 {
            let b = m.trailing_zeros() as usize;
            *self.at.add(b) = fallback(self.words[b]);
            m &= m - 1;
        }
        self.rejected = 0;
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014) as a generator: the fallback's uniforms.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// A uniform double in (0, 1]: 2 − (1 + 52 random bits).
    fn unit(&mut self) -> f64 {
        2.0 - f64::from_bits((self.next() >> 12) | super::ONE_BITS)
    }
}

/// ln y for y ∈ (0, 1] a normal double: the generator's own fdlibm log (one scalar code, so the
/// fallback does not depend on the platform's libm).
#[inline]
fn ln(y: f64) -> f64 {
    // SAFETY: f64 lanes need no instruction-set extension.
    unsafe { lanes::ln_unit(y) }
}

/// The number of a word that [`fast`] rejected (the SIMD generators call it per lane).
///
/// Layer i ≥ 1: x is accepted when a uniform point y ∈ (F[i], F[i+1]] of the layer's height lies
/// under the density, ln y < −x²/2; layer 0 (|x| ≥ R): a draw from the tail (Marsaglia 1964:
/// a = −ln U₁/R, b = −ln U₂ until 2b > a², then R + a, with the sign of u). A rejected wedge
/// point restarts the ziggurat with a word of the fallback generator.
#[cold]
#[inline(never)]
pub fn fallback(w: u64) -> f64 {
    let mut aux = SplitMix(w ^ FALLBACK_KEY);
    let mut w = w;
    loop {
        let (i, u, x) = candidate(w);
        if x.abs() < X[i + 1] {
            return x;
        }
        if i == 0 {
            return tail(u, &mut aux);
        }
        let y = F[i + 1] + (F[i] - F[i + 1]) * aux.unit();
        if under_density(i, x.abs(), y) {
            return x;
        }
        w = aux.next();
    }
}

/// Whether the point (a, y) of the wedge of layer i ≥ 1 (X[i+1] ≤ a < X[i], F[i] ≤ y < F[i+1])
/// lies under the density, y < f(a) = exp(−a²/2).
///
/// Most points are decided by a squeeze, without a logarithm: f is convex for a ≥ 1 and concave
/// for a ≤ 1, so on a layer entirely on one side it lies between the chord through the layer's
/// corners (X[i+1], F[i+1]), (X[i], F[i]) and the larger (convex) or smaller (concave) of the two
/// tangents there, f(X)·(1 − X·(a − X)). Points farther than [`SQUEEZE_MARGIN`] from both bounds
/// are decided by them (the bounds are computed with a few roundings of numbers ≤ 4, far less
/// than the margin); the others, and the layer that straddles a = 1, by ln y < −a²/2.
#[inline]
fn under_density(i: usize, a: f64, y: f64) -> bool {
    let (x0, x1, f0, f1) = (X[i], X[i + 1], F[i], F[i + 1]);
    let chord = f0 + (f1 - f0) * ((x0 - a) / (x0 - x1));
    let t0 = f0 * (1.0 - x0 * (a - x0));
    let t1 = f1 * (1.0 - x1 * (a - x1));
    let (lower, upper) = if x1 >= 1.0 {
        (t0.max(t1), chord)
    } else if x0 <= 1.0 {
        (chord, t0.min(t1))
    } else {
        (f64::NEG_INFINITY, f64::INFINITY)
    };
    if y < lower - SQUEEZE_MARGIN {
        true
    } else if y > upper + SQUEEZE_MARGIN {
        false
    } else {
        ln(y) < -0.5 * a * a
    }
}

/// The margin around the squeeze bounds of [`under_density`] inside which the exact test decides.
const SQUEEZE_MARGIN: f64 = 1e-13;

/// The tail beyond R, with the sign of u.
fn tail(u: f64, aux: &mut SplitMix) -> f64 {
    loop {
        let a = -ln(aux.unit()) / R;
        let b = -ln(aux.unit());
        if 2.0 * b > a * a {
            return if u < 0.0 { -(R + a) } else { R + a };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables are the ziggurat of exp(−x²/2): F = f(X) to rounding, X decreasing, and every
    /// layer (the base one with its tail: X[0]·F[1] = R·f(R) + ∫_R^∞ f) of the same area V.
    #[test]
    fn tables_are_a_ziggurat() {
        let f = |x: f64| (-0.5 * x * x).exp();
        for i in 0..257 {
            assert!((F[i] - f(X[i])).abs() < 1e-16, "F[{i}]");
        }
        assert_eq!((X[1], X[256], F[256]), (R, 0.0, 1.0));
        let v = X[0] * F[1];
        for i in 1..256 {
            assert!(X[i + 1] < X[i]);
            assert!((X[i] * (F[i + 1] - F[i]) - v).abs() < 1e-11, "layer {i}");
        }
        // The tail mass ∫_R^∞ exp(−x²/2) dx = √(π/2)·erfc(R/√2): Mills ratio series at R ≈ 3.65
        // is not precise enough, so compare with the value computed to 1e-15 by quadrature below.
        let (mut tail, h) = (0.0, 1e-4);
        let mut x = R;
        while x < R + 20.0 {
            tail += h * (f(x) + 4.0 * f(x + h / 2.0) + f(x + h)) / 6.0;
            x += h;
        }
        assert!((R * F[1] + tail - v).abs() < 1e-12, "base layer area");
    }

    /// The fast path accepts exactly the candidates inside their rectangle, and a word that it
    /// rejects gets a finite number from the fallback (of at least the rectangle's edge in
    /// absolute value, unless it was redrawn).
    #[test]
    fn fast_path_and_fallback_agree_on_their_domains() {
        let mut s = SplitMix(7);
        let (mut rejected, n) = (0, 200_000);
        for _ in 0..n {
            let w = s.next();
            let (i, _, x) = candidate(w);
            match fast(w) {
                Some(y) => assert_eq!(y, x),
                None => {
                    rejected += 1;
                    assert!(x.abs() >= X[i + 1]);
                    assert!(ziggurat(w).is_finite());
                }
            }
        }
        // Expected rejection rate Σ_i (1 − X[i+1]/X[i])/256 ≈ 0.01492; binomial sd √(np(1−p)) ≈ 54.
        let expected: f64 = (0..256).map(|i| 1.0 - X[i + 1] / X[i]).sum::<f64>() / 256.0 * n as f64;
        assert!((rejected as f64 - expected).abs() < 6.0 * (expected * (1.0 - expected / n as f64)).sqrt());
    }

    /// The squeeze decides as the exact test does: on a grid of points of every wedge, and most
    /// points are decided without the logarithm (checked by counting undecided ones).
    #[test]
    fn squeeze_agrees_with_the_exact_test() {
        let mut s = SplitMix(9);
        for i in 1..256 {
            for _ in 0..400 {
                let a = X[i + 1] + (X[i] - X[i + 1]) * (1.0 - s.unit());
                let y = F[i] + (F[i + 1] - F[i]) * (1.0 - s.unit());
                assert_eq!(
                    under_density(i, a, y),
                    y < (-0.5 * a * a).exp(),
                    "layer {i}, a = {a}, y = {y}"
                );
            }
        }
    }

    /// The AVX-512F group thresholds accept only what the exact fast path accepts: for every layer
    /// i ≠ 255, the largest |u| below its group's threshold (and so, the product being monotone,
    /// every smaller one) gives a rounded |u·X[i]| below X[i+1]; and they lose little (each within
    /// 30 % of the layer's own ratio).
    #[test]
    fn group_thresholds_are_conservative() {
        use super::super::ziggurat_tables::GROUP_THRESHOLDS as T;
        for i in 0..255 {
            let t = T[i / 8];
            let below = f64::from_bits(t.to_bits() - 1);
            assert!(below * X[i] < X[i + 1], "layer {i}");
            assert!(t > 0.7 * X[i + 1] / X[i], "layer {i}");
        }
    }

    /// Words of the base layer beyond R land in the tail, beyond R, with the sign of u.
    #[test]
    fn tail_words_give_tail_numbers() {
        let mut s = SplitMix(8);
        let mut seen = 0;
        while seen < 1000 {
            let w = s.next() & !0xFF; // layer 0
            let (_, u, x) = candidate(w);
            if x.abs() >= R {
                let z = fallback(w);
                assert!(z.abs() > R && z.signum() == u.signum(), "{z} from u = {u}");
                seen += 1;
            }
        }
    }
}
