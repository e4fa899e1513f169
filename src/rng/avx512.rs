//! The AVX-512 version of [`super::FastNormal::fill`]: all eight lanes in one register, the
//! scalar code's operations one for one (no FMA), hence bit-identical output. Used when the
//! CPU has AVX-512F: native rotates, 32 registers and fewer instructions per number.

use super::*;
use std::arch::x86_64::*;

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

#[inline(always)]
unsafe fn set1(x: f64) -> __m512d {
    _mm512_set1_pd(x)
}

#[inline(always)]
unsafe fn box_muller(r1: __m512i, r2: __m512i) -> (__m512d, __m512d) {
    let mul = |a, b| _mm512_mul_pd(a, b);
    let add = |a, b| _mm512_add_pd(a, b);
    let sub = |a, b| _mm512_sub_pd(a, b);
    let one = _mm512_set1_epi64(ONE_BITS as i64);
    let u1 = sub(
        set1(2.0),
        _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64::<12>(r1), one)),
    );
    // ln_unit
    let bits = _mm512_castpd_si512(u1);
    let e = _mm512_srli_epi64::<52>(bits);
    let magic = _mm512_set1_epi64(0x4330_0000_0000_0000);
    let mut k = sub(
        _mm512_castsi512_pd(_mm512_or_si512(e, magic)),
        set1((1u64 << 52) as f64 + 1023.0),
    );
    let mut m = _mm512_castsi512_pd(_mm512_or_si512(
        _mm512_and_si512(bits, _mm512_set1_epi64(MANTISSA as i64)),
        one,
    ));
    let big = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(m, set1(SQRT2));
    m = _mm512_mask_mul_pd(m, big, m, set1(0.5));
    k = _mm512_mask_add_pd(k, big, k, set1(1.0));
    let f = sub(m, set1(1.0));
    let s = _mm512_div_pd(f, add(set1(2.0), f));
    let z = mul(s, s);
    let w = mul(z, z);
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
    let inner = sub(hfsq, add(mul(s, add(hfsq, r)), mul(k, set1(LN2_LO))));
    let ln = sub(mul(k, set1(LN2_HI)), sub(inner, f));
    let radius = _mm512_sqrt_pd(mul(set1(-2.0), ln));
    // sincos_kernel
    let y = mul(
        sub(
            _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64::<12>(r2), one)),
            set1(1.5),
        ),
        set1(FRAC_PI_2),
    );
    let z = mul(y, y);
    let v = mul(z, y);
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
    let w = sub(set1(1.0), hz);
    let cos = add(w, add(sub(sub(set1(1.0), w), hz), mul(z, rc)));
    let swap = _mm512_test_epi64_mask(r2, _mm512_set1_epi64(1));
    let cx = _mm512_mask_blend_pd(swap, cos, sin);
    let sy = _mm512_mask_blend_pd(swap, sin, cos);
    let neg_c = _mm512_slli_epi64::<63>(_mm512_xor_si512(r2, _mm512_srli_epi64::<1>(r2)));
    let neg_s = _mm512_slli_epi64::<63>(_mm512_srli_epi64::<1>(r2));
    let cx = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(cx), neg_c));
    let sy = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(sy), neg_s));
    (mul(cx, radius), mul(sy, radius))
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
    // Two blocks per iteration: two independent Box–Muller chains in flight (the evaluation
    // is latency-bound; 7 % faster than one block at a time here). The stream is unchanged.
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
    let (c, sn) = box_muller(r1, r2);
    let (c2, sn2) = box_muller(r3, r4);
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
    let (c, sn) = box_muller(r1, r2);
    (_mm512_permutex2var_pd(c, lo, sn), _mm512_permutex2var_pd(c, hi, sn))
}
