//! The AVX2 version of [`super::FastNormal::fill`]: four lanes per vector, the scalar code's
//! operations one for one (no FMA), hence bit-identical output.

use super::*;
use std::arch::x86_64::*;

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

#[inline(always)]
unsafe fn set1(x: f64) -> __m256d {
    _mm256_set1_pd(x)
}

/// Vector [`ln_unit`].
#[inline(always)]
unsafe fn ln_unit(u: __m256d) -> __m256d {
    let bits = _mm256_castpd_si256(u);
    // Biased exponent e (971..1023) → e − 1023 exactly, via 2^52 + e − (2^52 + 1023).
    let e = _mm256_srli_epi64(bits, 52);
    let magic = _mm256_set1_epi64x(0x4330_0000_0000_0000);
    let mut k = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(e, magic)),
        set1((1u64 << 52) as f64 + 1023.0),
    );
    let mut m = _mm256_castsi256_pd(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi64x(MANTISSA as i64)),
        _mm256_set1_epi64x(ONE_BITS as i64),
    ));
    let big = _mm256_cmp_pd::<_CMP_GT_OQ>(m, set1(SQRT2));
    m = _mm256_blendv_pd(m, _mm256_mul_pd(m, set1(0.5)), big);
    k = _mm256_blendv_pd(k, _mm256_add_pd(k, set1(1.0)), big);
    let f = _mm256_sub_pd(m, set1(1.0));
    let s = _mm256_div_pd(f, _mm256_add_pd(set1(2.0), f));
    let z = _mm256_mul_pd(s, s);
    let w = _mm256_mul_pd(z, z);
    let mul = |a, b| _mm256_mul_pd(a, b);
    let add = |a, b| _mm256_add_pd(a, b);
    let t1 = mul(w, add(set1(LG2), mul(w, add(set1(LG4), mul(w, set1(LG6))))));
    let t2 = mul(
        z,
        add(
            set1(LG1),
            mul(w, add(set1(LG3), mul(w, add(set1(LG5), mul(w, set1(LG7)))))),
        ),
    );
    let r = add(t2, t1);
    let hfsq = mul(mul(set1(0.5), f), f);
    let inner = _mm256_sub_pd(hfsq, add(mul(s, add(hfsq, r)), mul(k, set1(LN2_LO))));
    _mm256_sub_pd(mul(k, set1(LN2_HI)), _mm256_sub_pd(inner, f))
}

/// Vector [`box_muller`]: (cos outputs, sin outputs) of four lanes.
#[inline(always)]
unsafe fn box_muller(r1: __m256i, r2: __m256i) -> (__m256d, __m256d) {
    let one = _mm256_set1_epi64x(ONE_BITS as i64);
    let mul = |a, b| _mm256_mul_pd(a, b);
    let add = |a, b| _mm256_add_pd(a, b);
    let u1 = _mm256_sub_pd(
        set1(2.0),
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(r1, 12), one)),
    );
    let radius = _mm256_sqrt_pd(mul(set1(-2.0), ln_unit(u1)));
    let y = mul(
        _mm256_sub_pd(
            _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(r2, 12), one)),
            set1(1.5),
        ),
        set1(FRAC_PI_2),
    );
    let z = mul(y, y);
    let v = mul(z, y);
    // Horner, innermost first, exactly as in the scalar expressions.
    let rs = add(set1(S5), mul(z, set1(S6)));
    let rs = add(set1(S4), mul(z, rs));
    let rs = add(set1(S3), mul(z, rs));
    let rs = add(set1(S2), mul(z, rs));
    let sin = add(y, mul(v, add(set1(S1), mul(z, rs))));
    let rc = add(set1(C5), mul(z, set1(C6)));
    let rc = add(set1(C4), mul(z, rc));
    let rc = add(set1(C3), mul(z, rc));
    let rc = add(set1(C2), mul(z, rc));
    let rc = mul(z, add(set1(C1), mul(z, rc)));
    let hz = mul(set1(0.5), z);
    let w = _mm256_sub_pd(set1(1.0), hz);
    let cos = add(w, add(_mm256_sub_pd(_mm256_sub_pd(set1(1.0), w), hz), mul(z, rc)));
    let swap = _mm256_castsi256_pd(_mm256_slli_epi64(r2, 63));
    let cx = _mm256_blendv_pd(cos, sin, swap);
    let sy = _mm256_blendv_pd(sin, cos, swap);
    let neg_c = _mm256_slli_epi64(_mm256_xor_si256(r2, _mm256_srli_epi64(r2, 1)), 63);
    let neg_s = _mm256_slli_epi64(_mm256_srli_epi64(r2, 1), 63);
    let cx = _mm256_xor_pd(cx, _mm256_castsi256_pd(neg_c));
    let sy = _mm256_xor_pd(sy, _mm256_castsi256_pd(neg_s));
    (mul(cx, radius), mul(sy, radius))
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
        let ra1 = next(&mut a);
        let ra2 = next(&mut a);
        let rb1 = next(&mut b);
        let rb2 = next(&mut b);
        let rc1 = next(&mut a);
        let rc2 = next(&mut a);
        let rd1 = next(&mut b);
        let rd2 = next(&mut b);
        let (ca, sa) = box_muller(ra1, ra2);
        let (cb, sb) = box_muller(rb1, rb2);
        let (cc, sc) = box_muller(rc1, rc2);
        let (cd, sd) = box_muller(rd1, rd2);
        let o = p.add(i * NORMAL_BLOCK);
        _mm256_storeu_pd(o, ca);
        _mm256_storeu_pd(o.add(4), sa);
        _mm256_storeu_pd(o.add(8), cb);
        _mm256_storeu_pd(o.add(12), sb);
        _mm256_storeu_pd(o.add(16), cc);
        _mm256_storeu_pd(o.add(20), sc);
        _mm256_storeu_pd(o.add(24), cd);
        _mm256_storeu_pd(o.add(28), sd);
        i += 2;
    }
    if i < blocks {
        let ra1 = next(&mut a);
        let ra2 = next(&mut a);
        let rb1 = next(&mut b);
        let rb2 = next(&mut b);
        let (ca, sa) = box_muller(ra1, ra2);
        let (cb, sb) = box_muller(rb1, rb2);
        let o = p.add(i * NORMAL_BLOCK);
        _mm256_storeu_pd(o, ca);
        _mm256_storeu_pd(o.add(4), sa);
        _mm256_storeu_pd(o.add(8), cb);
        _mm256_storeu_pd(o.add(12), sb);
    }
    for w in 0..4 {
        _mm256_storeu_si256(s[w].as_mut_ptr() as *mut __m256i, a[w]);
        _mm256_storeu_si256(s[w].as_mut_ptr().add(4) as *mut __m256i, b[w]);
    }
}
