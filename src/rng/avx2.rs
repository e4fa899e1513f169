//! The AVX2 version of [`super::FastNormal::fill`]: four lanes per vector, the Box–Muller
//! transform of [`super::lanes`] on `__m256d`, hence the portable stream bit for bit.

use super::lanes::{self, Lanes};
use super::ziggurat::ZigPending;
use super::ziggurat_tables as zig;
use super::*;
use std::arch::x86_64::*;
use std::f64::consts::SQRT_2;

#[inline(always)]
unsafe fn rotl(x: __m256i, k: i32) -> __m256i {
    // Shift counts must be immediates in the intrinsics; the two used are 23 and 45.
    match k {
        23 => _mm256_or_si256(_mm256_slli_epi64(x, 23), _mm256_srli_epi64(x, 41)),
        _ => _mm256_or_si256(_mm256_slli_epi64(x, 45), _mm256_srli_epi64(x, 19)),
    }
}

#[inline(always)]
unsafe fn next(s: &mut [__m256i; 4]) -> __m256i {
    let out = _mm256_add_epi64(rotl(_mm256_add_epi64(s[0], s[3]), 23), s[0]);
    let t = _mm256_slli_epi64(s[1], 17);
    s[2] = _mm256_xor_si256(s[2], s[0]);
    s[3] = _mm256_xor_si256(s[3], s[1]);
    s[1] = _mm256_xor_si256(s[1], s[2]);
    s[0] = _mm256_xor_si256(s[0], s[3]);
    s[2] = _mm256_xor_si256(s[2], t);
    s[3] = rotl(s[3], 45);
    out
}

impl Lanes for __m256d {
    type Bits = __m256i;
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        _mm256_set1_pd(x)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        _mm256_add_pd(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        _mm256_sub_pd(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm256_mul_pd(self, b)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        _mm256_div_pd(self, b)
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        _mm256_sqrt_pd(self)
    }
    #[inline(always)]
    unsafe fn unit(r: __m256i) -> Self {
        _mm256_castsi256_pd(_mm256_or_si256(
            _mm256_srli_epi64(r, 12),
            _mm256_set1_epi64x(ONE_BITS as i64),
        ))
    }
    #[inline(always)]
    unsafe fn exponent_mantissa(self) -> (Self, Self) {
        let bits = _mm256_castpd_si256(self);
        // Biased exponent e (971..1023) → e − 1023 exactly, via 2^52 + e − (2^52 + 1023).
        let e = _mm256_srli_epi64(bits, 52);
        let magic = _mm256_set1_epi64x(0x4330_0000_0000_0000);
        let k = _mm256_sub_pd(
            _mm256_castsi256_pd(_mm256_or_si256(e, magic)),
            Self::splat((1u64 << 52) as f64 + 1023.0),
        );
        let m = _mm256_castsi256_pd(_mm256_or_si256(
            _mm256_and_si256(bits, _mm256_set1_epi64x(MANTISSA as i64)),
            _mm256_set1_epi64x(ONE_BITS as i64),
        ));
        let big = _mm256_cmp_pd::<_CMP_GT_OQ>(m, Self::splat(SQRT_2));
        let m = _mm256_blendv_pd(m, _mm256_mul_pd(m, Self::splat(0.5)), big);
        let k = _mm256_blendv_pd(k, _mm256_add_pd(k, Self::splat(1.0)), big);
        (k, m)
    }
    #[inline(always)]
    unsafe fn quadrant(c: Self, s: Self, r: __m256i) -> (Self, Self) {
        let swap = _mm256_castsi256_pd(_mm256_slli_epi64(r, 63));
        let cx = _mm256_blendv_pd(c, s, swap);
        let sy = _mm256_blendv_pd(s, c, swap);
        let neg_c = _mm256_slli_epi64(_mm256_xor_si256(r, _mm256_srli_epi64(r, 1)), 63);
        let neg_s = _mm256_slli_epi64(_mm256_srli_epi64(r, 1), 63);
        (
            _mm256_xor_pd(cx, _mm256_castsi256_pd(neg_c)),
            _mm256_xor_pd(sy, _mm256_castsi256_pd(neg_s)),
        )
    }
}

/// The next block of the stream: the (cos, sin) outputs of lanes 0–3 (state `a`), then of lanes
/// 4–7 (state `b`), in block order.
#[inline(always)]
unsafe fn next_block(a: &mut [__m256i; 4], b: &mut [__m256i; 4]) -> [__m256d; 4] {
    let (ra1, ra2) = (next(a), next(a));
    let (rb1, rb2) = (next(b), next(b));
    let (ca, sa) = lanes::box_muller::<__m256d>(ra1, ra2);
    let (cb, sb) = lanes::box_muller::<__m256d>(rb1, rb2);
    [ca, sa, cb, sb]
}

#[inline(always)]
unsafe fn store_block(o: *mut f64, x: [__m256d; 4]) {
    for (q, v) in x.into_iter().enumerate() {
        _mm256_storeu_pd(o.add(4 * q), v);
    }
}

/// Fills `out` (a multiple of NORMAL_BLOCK long) block by block.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fill(s: &mut [[u64; NORMAL_LANES]; 4], out: &mut [f64]) {
    let load = |w: usize, g: usize| _mm256_loadu_si256(s[w].as_ptr().add(4 * g) as *const __m256i);
    let mut a = [load(0, 0), load(1, 0), load(2, 0), load(3, 0)];
    let mut b = [load(0, 1), load(1, 1), load(2, 1), load(3, 1)];
    let blocks = out.len() / NORMAL_BLOCK;
    let p = out.as_mut_ptr();
    let mut i = 0;
    // Two blocks per iteration: four independent Box–Muller evaluations in flight, to hide the
    // latency of the log/div/sqrt chains (the stream is unchanged: each lane still advances
    // twice per block, in block order).
    while i + 2 <= blocks {
        let x = next_block(&mut a, &mut b);
        let y = next_block(&mut a, &mut b);
        store_block(p.add(i * NORMAL_BLOCK), x);
        store_block(p.add((i + 1) * NORMAL_BLOCK), y);
        i += 2;
    }
    if i < blocks {
        store_block(p.add(i * NORMAL_BLOCK), next_block(&mut a, &mut b));
    }
    for w in 0..4 {
        _mm256_storeu_si256(s[w].as_mut_ptr() as *mut __m256i, a[w]);
        _mm256_storeu_si256(s[w].as_mut_ptr().add(4) as *mut __m256i, b[w]);
    }
}

/// The fast path of [`super::ziggurat`] on four words (one per lane): the candidates, and the
/// 4-bit mask of the lanes it rejected (see [`ZigPending`]).
#[inline(always)]
unsafe fn ziggurat_fast(w: __m256i) -> (__m256d, u32) {
    let i = _mm256_and_si256(w, _mm256_set1_epi64x(0xFF));
    let u = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(
            _mm256_srli_epi64(w, 12),
            _mm256_set1_epi64x(0x4000_0000_0000_0000),
        )),
        _mm256_set1_pd(3.0),
    );
    let xi = _mm256_i64gather_pd::<8>(zig::X.as_ptr(), i);
    let edge = _mm256_i64gather_pd::<8>(zig::X.as_ptr().add(1), i);
    let x = _mm256_mul_pd(u, xi);
    let abs = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
    // NLT: NaN cannot occur, so this is |x| ≥ X[i+1], the complement of the fast path's test.
    (x, _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_NLT_UQ>(abs, edge)) as u32)
}

/// [`fill`] for the ziggurat stream: numbers 8k + ℓ of a block from word k of lane ℓ (lanes 0–3
/// in `a`, 4–7 in `b`), each block completed one block later (see [`ZigPending`]).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fill_ziggurat(s: &mut [[u64; NORMAL_LANES]; 4], out: &mut [f64]) {
    let load = |w: usize, g: usize| _mm256_loadu_si256(s[w].as_ptr().add(4 * g) as *const __m256i);
    let mut a = [load(0, 0), load(1, 0), load(2, 0), load(3, 0)];
    let mut b = [load(0, 1), load(1, 1), load(2, 1), load(3, 1)];
    let p = out.as_mut_ptr();
    let mut pend = ZigPending::new();
    for i in 0..out.len() / NORMAL_BLOCK {
        let o = p.add(i * NORMAL_BLOCK);
        let r = [next(&mut a), next(&mut b), next(&mut a), next(&mut b)];
        let mut rejected = 0;
        for (q, &w) in r.iter().enumerate() {
            let (x, m) = ziggurat_fast(w);
            _mm256_storeu_pd(o.add(4 * q), x);
            rejected |= m << (4 * q);
        }
        pend.complete();
        for (q, &w) in r.iter().enumerate() {
            _mm256_storeu_si256(pend.words_mut().as_mut_ptr().add(4 * q) as *mut __m256i, w);
        }
        pend.set(rejected, o);
    }
    pend.complete();
    for w in 0..4 {
        _mm256_storeu_si256(s[w].as_mut_ptr() as *mut __m256i, a[w]);
        _mm256_storeu_si256(s[w].as_mut_ptr().add(4) as *mut __m256i, b[w]);
    }
}
