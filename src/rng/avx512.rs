//! The AVX-512 version of [`super::FastNormal::fill`]: all eight lanes in one register, the
//! Box–Muller transform of [`super::lanes`] on `__m512d`, hence the portable stream bit for bit.
//! Used when the CPU has AVX-512F: native rotates, 32 registers and fewer instructions per number.

use super::lanes::{self, Lanes};
use super::ziggurat::ZigPending;
use super::ziggurat_tables as zig;
use super::*;
use std::arch::x86_64::*;
use std::f64::consts::SQRT_2;

#[inline(always)]
unsafe fn next(s: &mut [__m512i; 4]) -> __m512i {
    let out = _mm512_add_epi64(_mm512_rol_epi64::<23>(_mm512_add_epi64(s[0], s[3])), s[0]);
    let t = _mm512_slli_epi64::<17>(s[1]);
    s[2] = _mm512_xor_si512(s[2], s[0]);
    s[3] = _mm512_xor_si512(s[3], s[1]);
    s[1] = _mm512_xor_si512(s[1], s[2]);
    s[0] = _mm512_xor_si512(s[0], s[3]);
    s[2] = _mm512_xor_si512(s[2], t);
    s[3] = _mm512_rol_epi64::<45>(s[3]);
    out
}

impl Lanes for __m512d {
    type Bits = __m512i;
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        _mm512_set1_pd(x)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        _mm512_add_pd(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        _mm512_sub_pd(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm512_mul_pd(self, b)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        _mm512_div_pd(self, b)
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        _mm512_sqrt_pd(self)
    }
    #[inline(always)]
    unsafe fn unit(r: __m512i) -> Self {
        _mm512_castsi512_pd(_mm512_or_si512(
            _mm512_srli_epi64::<12>(r),
            _mm512_set1_epi64(ONE_BITS as i64),
        ))
    }
    #[inline(always)]
    unsafe fn exponent_mantissa(self) -> (Self, Self) {
        let bits = _mm512_castpd_si512(self);
        // Biased exponent e (971..1023) → e − 1023 exactly, via 2^52 + e − (2^52 + 1023).
        let e = _mm512_srli_epi64::<52>(bits);
        let magic = _mm512_set1_epi64(0x4330_0000_0000_0000);
        let k = _mm512_sub_pd(
            _mm512_castsi512_pd(_mm512_or_si512(e, magic)),
            Self::splat((1u64 << 52) as f64 + 1023.0),
        );
        let m = _mm512_castsi512_pd(_mm512_or_si512(
            _mm512_and_si512(bits, _mm512_set1_epi64(MANTISSA as i64)),
            _mm512_set1_epi64(ONE_BITS as i64),
        ));
        let big = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(m, Self::splat(SQRT_2));
        let m = _mm512_mask_mul_pd(m, big, m, Self::splat(0.5));
        let k = _mm512_mask_add_pd(k, big, k, Self::splat(1.0));
        (k, m)
    }
    #[inline(always)]
    unsafe fn quadrant(c: Self, s: Self, r: __m512i) -> (Self, Self) {
        let swap = _mm512_test_epi64_mask(r, _mm512_set1_epi64(1));
        let cx = _mm512_mask_blend_pd(swap, c, s);
        let sy = _mm512_mask_blend_pd(swap, s, c);
        let neg_c = _mm512_slli_epi64::<63>(_mm512_xor_si512(r, _mm512_srli_epi64::<1>(r)));
        let neg_s = _mm512_slli_epi64::<63>(_mm512_srli_epi64::<1>(r));
        (
            _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(cx), neg_c)),
            _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(sy), neg_s)),
        )
    }
}

/// Fills `out` (a multiple of NORMAL_BLOCK long) block by block.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn fill(s: &mut [[u64; NORMAL_LANES]; 4], out: &mut [f64]) {
    let mut st = load_state(s);
    let p = out.as_mut_ptr();
    let blocks = out.len() / NORMAL_BLOCK;
    let mut i = 0;
    // Two blocks per iteration: two independent Box–Muller chains in flight, since the
    // evaluation is latency-bound (docs/performance.md). The stream is unchanged.
    {
        while i + 2 <= blocks {
            let (x0, x1, x2, x3) = next_2blocks(&mut st);
            let o = p.add(i * NORMAL_BLOCK);
            _mm512_storeu_pd(o, x0);
            _mm512_storeu_pd(o.add(8), x1);
            _mm512_storeu_pd(o.add(16), x2);
            _mm512_storeu_pd(o.add(24), x3);
            i += 2;
        }
    }
    while i < blocks {
        let (x0, x1) = next_block(&mut st);
        let o = p.add(i * NORMAL_BLOCK);
        _mm512_storeu_pd(o, x0);
        _mm512_storeu_pd(o.add(8), x1);
        i += 1;
    }
    store_state(s, &st);
}

/// The generator state in registers (word w of the eight lanes in `st[w]`).
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(crate) unsafe fn load_state(s: &[[u64; NORMAL_LANES]; 4]) -> [__m512i; 4] {
    [
        _mm512_loadu_si512(s[0].as_ptr() as *const _),
        _mm512_loadu_si512(s[1].as_ptr() as *const _),
        _mm512_loadu_si512(s[2].as_ptr() as *const _),
        _mm512_loadu_si512(s[3].as_ptr() as *const _),
    ]
}

/// Writes the state of [`load_state`] back.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(crate) unsafe fn store_state(s: &mut [[u64; NORMAL_LANES]; 4], st: &[__m512i; 4]) {
    for w in 0..4 {
        _mm512_storeu_si512(s[w].as_mut_ptr() as *mut _, st[w]);
    }
}

/// The next two blocks (see [`next_block`]), their Box–Muller evaluations side by side so that
/// the core has two independent log/sqrt/sincos chains in flight.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(crate) unsafe fn next_2blocks(st: &mut [__m512i; 4]) -> (__m512d, __m512d, __m512d, __m512d) {
    let lo = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    let hi = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    let r1 = next(st);
    let r2 = next(st);
    let r3 = next(st);
    let r4 = next(st);
    let (c, sn) = lanes::box_muller::<__m512d>(r1, r2);
    let (c2, sn2) = lanes::box_muller::<__m512d>(r3, r4);
    (
        _mm512_permutex2var_pd(c, lo, sn),
        _mm512_permutex2var_pd(c, hi, sn),
        _mm512_permutex2var_pd(c2, lo, sn2),
        _mm512_permutex2var_pd(c2, hi, sn2),
    )
}

/// The next block of [`NORMAL_BLOCK`] numbers of the stream, in block order: (numbers 0–7,
/// numbers 8–15). This is what [`fill`] stores; the fused step of the direct simulator
/// consumes it straight from the registers.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(crate) unsafe fn next_block(st: &mut [__m512i; 4]) -> (__m512d, __m512d) {
    // Block layout: [cos 0–3, sin 0–3, cos 4–7, sin 4–7].
    let lo = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    let hi = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    let r1 = next(st);
    let r2 = next(st);
    let (c, sn) = lanes::box_muller::<__m512d>(r1, r2);
    (_mm512_permutex2var_pd(c, lo, sn), _mm512_permutex2var_pd(c, hi, sn))
}

/// The fast path of [`super::ziggurat`] on eight words (one per lane): the candidates x, and the
/// mask of the lanes it did not accept (to be completed by [`super::ziggurat::fallback`], which
/// accepts at once those inside their rectangle). The test is |u| < t_g against the group
/// thresholds of [`zig::GROUP_THRESHOLDS`] (`t`, in four registers), which accepts a subset of the
/// exact fast path's words: one gather (X[i]) instead of two. Branch-free: the fallback is applied
/// a block later ([`ZigPending`]).
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
unsafe fn ziggurat_fast(w: __m512i, t: &[__m512d; 4]) -> (__m512d, __mmask8) {
    let i = _mm512_and_si512(w, _mm512_set1_epi64(0xFF));
    let u = _mm512_sub_pd(
        _mm512_castsi512_pd(_mm512_or_si512(
            _mm512_srli_epi64::<12>(w),
            _mm512_set1_epi64(0x4000_0000_0000_0000),
        )),
        _mm512_set1_pd(3.0),
    );
    let x = _mm512_mul_pd(u, _mm512_i64gather_pd::<8>(i, zig::X.as_ptr()));
    // Group g = i div 8: bits 0–3 pick among 16 thresholds of a register pair, bit 4 the pair.
    let g = _mm512_srli_epi64::<3>(i);
    let lo = _mm512_permutex2var_pd(t[0], g, t[1]);
    let hi = _mm512_permutex2var_pd(t[2], g, t[3]);
    let tg = _mm512_mask_blend_pd(_mm512_test_epi64_mask(g, _mm512_set1_epi64(16)), lo, hi);
    let inside =
        _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_abs_pd(u), tg) & _mm512_cmpneq_epi64_mask(i, _mm512_set1_epi64(255));
    (x, !inside)
}

/// The group thresholds of [`ziggurat_fast`] in registers.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(crate) unsafe fn zig_thresholds() -> [__m512d; 4] {
    let p = zig::GROUP_THRESHOLDS.as_ptr();
    [
        _mm512_loadu_pd(p),
        _mm512_loadu_pd(p.add(8)),
        _mm512_loadu_pd(p.add(16)),
        _mm512_loadu_pd(p.add(24)),
    ]
}

/// Generates the next block of the ziggurat stream (see [`super::Generator::Ziggurat`]: numbers
/// 0–7 from the first word of lanes 0–7, numbers 8–15 from their second word) into `out`, after
/// completing the block that `pend` holds; the new block is left pending in `pend` (its
/// candidates stored, its rejected numbers to be completed by the next call or by
/// [`ZigPending::complete`]).
///
/// # Safety
/// The CPU must support AVX-512F; `out` must be valid for 16 writes, and the pending block's
/// storage still valid.
#[inline(always)]
pub(crate) unsafe fn zig_block(st: &mut [__m512i; 4], out: *mut f64, pend: &mut ZigPending) {
    let t = zig_thresholds();
    let r1 = next(st);
    let r2 = next(st);
    let (x0, m0) = ziggurat_fast(r1, &t);
    let (x1, m1) = ziggurat_fast(r2, &t);
    _mm512_storeu_pd(out, x0);
    _mm512_storeu_pd(out.add(8), x1);
    pend.complete();
    let words = pend.words_mut();
    _mm512_storeu_si512(words.as_mut_ptr() as *mut _, r1);
    _mm512_storeu_si512(words.as_mut_ptr().add(8) as *mut _, r2);
    pend.set(m0 as u32 | (m1 as u32) << 8, out);
}

/// [`fill`] for the ziggurat stream.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn fill_ziggurat(s: &mut [[u64; NORMAL_LANES]; 4], out: &mut [f64]) {
    let mut st = load_state(s);
    let p = out.as_mut_ptr();
    let mut pend = ZigPending::new();
    for i in 0..out.len() / NORMAL_BLOCK {
        zig_block(&mut st, p.add(i * NORMAL_BLOCK), &mut pend);
    }
    pend.complete();
    store_state(s, &st);
}
