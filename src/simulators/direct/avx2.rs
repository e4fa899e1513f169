//! AVX2/FMA versions of the chunk kernels of [`super::kernel`] (same lanes and operation order,
//! FMA instead of separate multiply and add). Selected at run time; every function requires a CPU
//! with AVX2 and FMA, and its caller has checked the bounds.
#![cfg(target_arch = "x86_64")]

use super::kernel::Acc;
use std::arch::x86_64::*;

/// Adds the lanes of (lo, hi) to `acc` (lanes 0–3 and 4–7).
#[inline(always)]
unsafe fn add_to(acc: &mut Acc, lo: __m256d, hi: __m256d) {
    let p = acc.as_mut_ptr();
    _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), lo));
    _mm256_storeu_pd(p.add(4), _mm256_add_pd(_mm256_loadu_pd(p.add(4)), hi));
}

/// Dot products of R rows (at w, w + stride, ...) with x: 8 lanes per row in two registers.
#[inline(always)]
unsafe fn dot_group<const R: usize>(w: *const f64, stride: usize, x: &[f64], acc: &mut [Acc]) {
    let len = x.len();
    let xp = x.as_ptr();
    let mut lo = [_mm256_setzero_pd(); R];
    let mut hi = [_mm256_setzero_pd(); R];
    let mut j = 0;
    while j + 8 <= len {
        let x0 = _mm256_loadu_pd(xp.add(j));
        let x1 = _mm256_loadu_pd(xp.add(j + 4));
        for r in 0..R {
            let row = w.add(r * stride + j);
            lo[r] = _mm256_fmadd_pd(_mm256_loadu_pd(row), x0, lo[r]);
            hi[r] = _mm256_fmadd_pd(_mm256_loadu_pd(row.add(4)), x1, hi[r]);
        }
        j += 8;
    }
    if j + 4 <= len {
        let x0 = _mm256_loadu_pd(xp.add(j));
        for r in 0..R {
            lo[r] = _mm256_fmadd_pd(_mm256_loadu_pd(w.add(r * stride + j)), x0, lo[r]);
        }
        j += 4;
    }
    for r in 0..R {
        let a = acc.get_unchecked_mut(r);
        add_to(a, lo[r], hi[r]);
        for t in j..len {
            a[t % 8] = (*w.add(r * stride + t)).mul_add(*xp.add(t), a[t % 8]);
        }
    }
}

/// See [`super::kernel::dot_rows`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_rows(w: *const f64, stride: usize, x: &[f64], acc: &mut [Acc]) {
    let rows = acc.len();
    let mut r = 0;
    while r + 4 <= rows {
        dot_group::<4>(w.add(r * stride), stride, x, &mut acc[r..r + 4]);
        r += 4;
    }
    if r + 2 <= rows {
        dot_group::<2>(w.add(r * stride), stride, x, &mut acc[r..r + 2]);
        r += 2;
    }
    if r < rows {
        dot_group::<1>(w.add(r * stride), stride, x, &mut acc[r..r + 1]);
    }
}

/// R rows: w ← c·xp + decay·w, acc += w·xn.
#[inline(always)]
unsafe fn update_dot_group<const R: usize, const DECAY: bool>(
    w: *mut f64,
    stride: usize,
    decay: f64,
    c: &[f64],
    xp: &[f64],
    xn: &[f64],
    acc: &mut [Acc],
) {
    let len = xn.len();
    let (pp, pn) = (xp.as_ptr(), xn.as_ptr());
    let d = _mm256_set1_pd(decay);
    let mut cv = [_mm256_setzero_pd(); R];
    for r in 0..R {
        cv[r] = _mm256_set1_pd(*c.get_unchecked(r));
    }
    let mut lo = [_mm256_setzero_pd(); R];
    let mut hi = [_mm256_setzero_pd(); R];
    let upd = |wv: __m256d, x: __m256d, cr: __m256d| {
        let base = if DECAY { _mm256_mul_pd(d, wv) } else { wv };
        _mm256_fmadd_pd(cr, x, base)
    };
    let mut j = 0;
    while j + 8 <= len {
        let p0 = _mm256_loadu_pd(pp.add(j));
        let p1 = _mm256_loadu_pd(pp.add(j + 4));
        let n0 = _mm256_loadu_pd(pn.add(j));
        let n1 = _mm256_loadu_pd(pn.add(j + 4));
        for r in 0..R {
            let row = w.add(r * stride + j);
            let w0 = upd(_mm256_loadu_pd(row), p0, cv[r]);
            let w1 = upd(_mm256_loadu_pd(row.add(4)), p1, cv[r]);
            _mm256_storeu_pd(row, w0);
            _mm256_storeu_pd(row.add(4), w1);
            lo[r] = _mm256_fmadd_pd(w0, n0, lo[r]);
            hi[r] = _mm256_fmadd_pd(w1, n1, hi[r]);
        }
        j += 8;
    }
    if j + 4 <= len {
        let p0 = _mm256_loadu_pd(pp.add(j));
        let n0 = _mm256_loadu_pd(pn.add(j));
        for r in 0..R {
            let row = w.add(r * stride + j);
            let w0 = upd(_mm256_loadu_pd(row), p0, cv[r]);
            _mm256_storeu_pd(row, w0);
            lo[r] = _mm256_fmadd_pd(w0, n0, lo[r]);
        }
        j += 4;
    }
    for r in 0..R {
        let a = acc.get_unchecked_mut(r);
        add_to(a, lo[r], hi[r]);
        let cr = *c.get_unchecked(r);
        for t in j..len {
            let wp = w.add(r * stride + t);
            let base = if DECAY { decay * *wp } else { *wp };
            *wp = cr.mul_add(*pp.add(t), base);
            a[t % 8] = (*wp).mul_add(*pn.add(t), a[t % 8]);
        }
    }
}

#[inline(always)]
unsafe fn update_dot_decay<const DECAY: bool>(
    w: *mut f64,
    stride: usize,
    decay: f64,
    c: &[f64],
    xp: &[f64],
    xn: &[f64],
    acc: &mut [Acc],
) {
    let rows = acc.len();
    let mut r = 0;
    while r + 4 <= rows {
        update_dot_group::<4, DECAY>(w.add(r * stride), stride, decay, &c[r..], xp, xn, &mut acc[r..r + 4]);
        r += 4;
    }
    if r + 2 <= rows {
        update_dot_group::<2, DECAY>(w.add(r * stride), stride, decay, &c[r..], xp, xn, &mut acc[r..r + 2]);
        r += 2;
    }
    if r < rows {
        update_dot_group::<1, DECAY>(w.add(r * stride), stride, decay, &c[r..], xp, xn, &mut acc[r..r + 1]);
    }
}

/// See [`super::kernel::update_dot_rows`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn update_dot_rows(
    w: *mut f64,
    stride: usize,
    decay: f64,
    c: &[f64],
    xp: &[f64],
    xn: &[f64],
    acc: &mut [Acc],
) {
    if decay == 1.0 {
        update_dot_decay::<false>(w, stride, decay, c, xp, xn, acc)
    } else {
        update_dot_decay::<true>(w, stride, decay, c, xp, xn, acc)
    }
}

/// See [`super::kernel::axpy_row`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn axpy_row(w: &mut [f64], decay: f64, c: &[f64], xs: &[f64], x_stride: usize) {
    let len = w.len();
    let wp = w.as_mut_ptr();
    let d = _mm256_set1_pd(decay);
    for (b, &cb) in c.iter().enumerate() {
        let x = xs.as_ptr().add(b * x_stride);
        let cv = _mm256_set1_pd(cb);
        let scale = b == 0 && decay != 1.0;
        let mut j = 0;
        while j + 4 <= len {
            let wv = _mm256_loadu_pd(wp.add(j));
            let base = if scale { _mm256_mul_pd(d, wv) } else { wv };
            _mm256_storeu_pd(wp.add(j), _mm256_fmadd_pd(cv, _mm256_loadu_pd(x.add(j)), base));
            j += 4;
        }
        for t in j..len {
            let base = if scale { decay * *wp.add(t) } else { *wp.add(t) };
            *wp.add(t) = cb.mul_add(*x.add(t), base);
        }
    }
}

/// See [`super::kernel::stream_pass`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn stream_pass(read: &[f64], rw: &mut [f64], z: u64) -> f64 {
    let mut acc = [_mm256_setzero_si256(); 4];
    let rp = read.as_ptr() as *const __m256i;
    let n16 = read.len() / 16;
    for i in 0..n16 {
        for k in 0..4 {
            acc[k] = _mm256_or_si256(acc[k], _mm256_loadu_si256(rp.add(4 * i + k)));
        }
    }
    let zv = _mm256_set1_epi64x(z as i64);
    let wp = rw.as_mut_ptr() as *mut __m256i;
    for i in 0..rw.len() / 4 {
        _mm256_storeu_si256(wp.add(i), _mm256_xor_si256(_mm256_loadu_si256(wp.add(i)), zv));
    }
    let a = _mm256_or_si256(_mm256_or_si256(acc[0], acc[1]), _mm256_or_si256(acc[2], acc[3]));
    let mut out = [0u64; 4];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, a);
    f64::from_bits(out[0] | out[1] | out[2] | out[3])
}
