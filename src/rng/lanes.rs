//! The Box–Muller transform of [`super::FastNormal`], written once over lanes of f64.
//!
//! The portable generator evaluates it one f64 at a time, the AVX2 and AVX-512F generators on 4
//! and 8 lanes at once, and the three must produce the same stream bit for bit (a run's numbers
//! depend only on its seed). So the log and sin/cos are fdlibm's algorithms written with IEEE
//! operations that are each correctly rounded (+, −, ×, ÷, √; no FMA, no library call): the same
//! sequence of them gives the same bits on every lane type. [`Lanes`] is that handful of
//! operations, plus the three bit manipulations whose best form differs by instruction set.

use super::{MANTISSA, ONE_BITS};
use std::f64::consts::{FRAC_PI_2, SQRT_2};

#[allow(clippy::excessive_precision)] // fdlibm's published digits, kept as printed.
mod fdlibm {
    // fdlibm e_log.c (Sun Microsystems 1993): log(1+f) = f − f²/2 + s(f²/2 + R(s²)), s = f/(2+f).
    pub(super) const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
    pub(super) const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    pub(super) const LG1: f64 = 6.666_666_666_666_735_130e-01;
    pub(super) const LG2: f64 = 3.999_999_999_940_941_908e-01;
    pub(super) const LG3: f64 = 2.857_142_874_366_239_149e-01;
    pub(super) const LG4: f64 = 2.222_219_843_214_978_396e-01;
    pub(super) const LG5: f64 = 1.818_357_216_161_805_012e-01;
    pub(super) const LG6: f64 = 1.531_383_769_920_937_332e-01;
    pub(super) const LG7: f64 = 1.479_819_860_511_658_591e-01;
    // fdlibm k_sin.c / k_cos.c: minimax polynomials on |y| ≤ π/4.
    pub(super) const S1: f64 = -1.666_666_666_666_663_243_48e-01;
    pub(super) const S2: f64 = 8.333_333_333_322_489_461_24e-03;
    pub(super) const S3: f64 = -1.984_126_982_985_794_931_34e-04;
    pub(super) const S4: f64 = 2.755_731_370_707_006_767_89e-06;
    pub(super) const S5: f64 = -2.505_076_025_340_686_341_95e-08;
    pub(super) const S6: f64 = 1.589_690_995_211_550_102_21e-10;
    pub(super) const C1: f64 = 4.166_666_666_666_660_190_37e-02;
    pub(super) const C2: f64 = -1.388_888_888_887_410_957_49e-03;
    pub(super) const C3: f64 = 2.480_158_728_947_672_941_78e-05;
    pub(super) const C4: f64 = -2.755_731_435_139_066_330_35e-07;
    pub(super) const C5: f64 = 2.087_572_321_298_174_827_90e-09;
    pub(super) const C6: f64 = -1.135_964_755_778_819_482_65e-11;
}
use fdlibm::*;

/// Lanes of f64 (`f64`, AVX2's `__m256d`, AVX-512F's `__m512d`) with the operations of the
/// Box–Muller transform. Implementations are `#[inline(always)]` wrappers of one instruction (or
/// a few, for the bit manipulations), so that the generic code compiles, inside each generator's
/// `#[target_feature]` function, to what a hand-written version would.
///
/// Every method is `unsafe`: it may only run on a CPU with the lane type's instruction set
/// (none for f64, AVX2 for `__m256d`, AVX-512F for `__m512d`).
pub(crate) trait Lanes: Copy {
    /// The matching lanes of u64 (xoshiro outputs).
    type Bits: Copy;
    /// x in every lane.
    unsafe fn splat(x: f64) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    unsafe fn sqrt(self) -> Self;
    /// The double 1 + 2⁻⁵²·⌊r/2¹²⌋ ∈ [1, 2): the 52 high bits of r as its mantissa.
    unsafe fn unit(r: Self::Bits) -> Self;
    /// (k, m) with `self` = 2^k·m exactly, k an integer and m ∈ (√2/2, √2] (for `self` a
    /// positive normal double).
    unsafe fn exponent_mantissa(self) -> (Self, Self);
    /// (cos θ, sin θ) from (c, s) = (cos y, sin y), for θ = qπ/2 + y with q the two low bits of r:
    /// q odd swaps c and s, q = 1, 2 negate the cosine, q = 2, 3 the sine.
    unsafe fn quadrant(c: Self, s: Self, r: Self::Bits) -> (Self, Self);
}

impl Lanes for f64 {
    type Bits = u64;
    #[inline(always)]
    unsafe fn splat(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    unsafe fn add(self, b: f64) -> f64 {
        self + b
    }
    #[inline(always)]
    unsafe fn sub(self, b: f64) -> f64 {
        self - b
    }
    #[inline(always)]
    unsafe fn mul(self, b: f64) -> f64 {
        self * b
    }
    #[inline(always)]
    unsafe fn div(self, b: f64) -> f64 {
        self / b
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
    #[inline(always)]
    unsafe fn unit(r: u64) -> f64 {
        f64::from_bits((r >> 12) | ONE_BITS)
    }
    #[inline(always)]
    unsafe fn exponent_mantissa(self) -> (f64, f64) {
        let bits = self.to_bits();
        let mut k = ((bits >> 52) as i64 - 1023) as f64;
        let mut m = f64::from_bits((bits & MANTISSA) | ONE_BITS);
        if m > SQRT_2 {
            m *= 0.5;
            k += 1.0;
        }
        (k, m)
    }
    #[inline(always)]
    unsafe fn quadrant(c: f64, s: f64, r: u64) -> (f64, f64) {
        let (cx, sy) = if r & 1 != 0 { (s, c) } else { (c, s) };
        let cx = f64::from_bits(cx.to_bits() ^ (((r ^ (r >> 1)) & 1) << 63));
        let sy = f64::from_bits(sy.to_bits() ^ (((r >> 1) & 1) << 63));
        (cx, sy)
    }
}

/// c₀ + x(c₁ + x(c₂ + … + x·c_{K−1})), innermost product first (fdlibm's order).
#[inline(always)]
unsafe fn horner<L: Lanes, const K: usize>(x: L, c: [f64; K]) -> L {
    let mut acc = L::splat(c[K - 1]);
    for &ci in c[..K - 1].iter().rev() {
        acc = L::splat(ci).add(x.mul(acc));
    }
    acc
}

/// ln u for u ∈ (0, 1] a normal double: fdlibm's e_log.c without its special cases. With
/// u = 2^k·m, m ∈ (√2/2, √2], f = m − 1 and s = f/(2 + f),
/// ln u = k·ln 2 + f − f²/2 + s·(f²/2 + R(s²)), R fdlibm's minimax polynomial, ln 2 split into a
/// high part (k·LN2_HI exact) and a low one; accurate to about an ulp (tested).
///
/// # Safety
/// As for every [`Lanes`] method.
#[inline(always)]
pub(crate) unsafe fn ln_unit<L: Lanes>(u: L) -> L {
    let (k, m) = u.exponent_mantissa();
    let f = m.sub(L::splat(1.0));
    let s = f.div(L::splat(2.0).add(f));
    let z = s.mul(s);
    let w = z.mul(z);
    // R(z) split into its odd and even powers of z, as fdlibm evaluates it (two shorter chains).
    let t1 = w.mul(horner(w, [LG2, LG4, LG6]));
    let t2 = z.mul(horner(w, [LG1, LG3, LG5, LG7]));
    let r = t2.add(t1);
    let hfsq = L::splat(0.5).mul(f).mul(f);
    let inner = hfsq.sub(s.mul(hfsq.add(r)).add(k.mul(L::splat(LN2_LO))));
    k.mul(L::splat(LN2_HI)).sub(inner.sub(f))
}

/// (cos y, sin y) for |y| ≤ π/4: fdlibm's k_cos.c and k_sin.c with tail term zero,
/// sin y = y + y³·(S1 + y²·(S2 + … + y²·S6)) and, with h = y²/2 and w = 1 − h,
/// cos y = w + (((1 − w) − h) + y⁴·(C1 + … + y²·C6)) (the rounding of 1 − h recovered exactly).
///
/// # Safety
/// As for every [`Lanes`] method.
#[inline(always)]
pub(crate) unsafe fn sincos_kernel<L: Lanes>(y: L) -> (L, L) {
    let z = y.mul(y);
    let v = z.mul(y);
    let sin = y.add(v.mul(horner(z, [S1, S2, S3, S4, S5, S6])));
    let rc = z.mul(horner(z, [C1, C2, C3, C4, C5, C6]));
    let hz = L::splat(0.5).mul(z);
    let w = L::splat(1.0).sub(hz);
    let cos = w.add(L::splat(1.0).sub(w).sub(hz).add(z.mul(rc)));
    (cos, sin)
}

/// The Box–Muller map of two xoshiro outputs (per lane) to two independent N(0, 1) numbers: see
/// [`super::box_muller`], its f64 instance.
///
/// # Safety
/// As for every [`Lanes`] method.
#[inline(always)]
pub(crate) unsafe fn box_muller<L: Lanes>(r1: L::Bits, r2: L::Bits) -> (L, L) {
    let u1 = L::splat(2.0).sub(L::unit(r1));
    let radius = L::splat(-2.0).mul(ln_unit(u1)).sqrt();
    let y = L::unit(r2).sub(L::splat(1.5)).mul(L::splat(FRAC_PI_2));
    let (c, s) = sincos_kernel(y);
    let (cx, sy) = L::quadrant(c, s, r2);
    (cx.mul(radius), sy.mul(radius))
}
