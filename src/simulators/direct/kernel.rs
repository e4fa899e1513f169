//! The per-sample kernels of the direct simulator: the projections λ = Wx/√N, ν = W*x/√N and the
//! rank-B update of W, in two forms. [`project`] and [`update`] are the reference: theory.md §2
//! written plainly, which the tests check the fast step against. The chunk kernels ([`dot_rows`],
//! [`update_dot_rows`], [`axpy_row`]) are what the fast step runs, dispatched on the instruction
//! set (AVX2/FMA in `avx2`, portable here); the Gaussian inputs come from
//! [`crate::rng::FastNormal`].
//!
//! Weight matrices are row-major slices of `rows × n` numbers.

/// out_i = scale · Σ_j rows[i, j] x_j  (λ = W x /√N with scale = 1/√N).
#[inline]
pub fn project(rows: &[f64], n: usize, x: &[f64], scale: f64, out: &mut [f64]) {
    debug_assert_eq!(rows.len(), out.len() * n);
    debug_assert_eq!(x.len(), n);
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(n)) {
        *o = scale * row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
    }
}

/// w_i ← decay · w_i + Σ_b coef[i·B + b] · x_b for the B inputs `xs` (B × n, row-major).
///
/// This is the SGD update of theory.md §2 with decay = 1 − ηℓ₂/N and coef = η δ_i^b/(B√N).
#[inline]
pub fn update(rows: &mut [f64], n: usize, decay: f64, coef: &[f64], xs: &[f64]) {
    let batch = xs.len() / n;
    debug_assert_eq!(coef.len(), rows.len() / n * batch);
    for (i, row) in rows.chunks_exact_mut(n).enumerate() {
        let c = &coef[i * batch..(i + 1) * batch];
        if decay != 1.0 {
            row.iter_mut().for_each(|w| *w *= decay);
        }
        for (b, x) in xs.chunks_exact(n).enumerate() {
            let cb = c[b];
            row.iter_mut().zip(x).for_each(|(w, x)| *w += cb * x);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fused chunk kernels of the fast step, dispatched on the instruction set.
// ---------------------------------------------------------------------------------------------
//
// Conventions shared by the AVX2 and the portable versions, so that they differ only by FMA
// rounding:
// * a dot product accumulates element j of a row into lane j mod 8 of an `Acc`; chunks start at
//   multiples of 16, so lanes are the same whatever the chunking; [`reduce`] sums the lanes in a
//   fixed order;
// * the update of element j is w ← c·x_prev + decay·w (decay·w skipped when decay = 1, which is
//   exact), the same operations in the fused pass and in [`axpy_rows`], so that a run's numbers do
//   not depend on when pending updates are flushed.

use crate::isa::Isa;

/// Eight partial sums of one dot product (lane = element index mod 8).
pub type Acc = [f64; 8];

/// The dot product from its lanes: ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)).
#[inline]
pub fn reduce(a: &Acc) -> f64 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Checks the shapes of a chunk call once, outside the hot loops (which then index unchecked).
#[inline]
fn check_rows(len_w: usize, stride: usize, rows: usize, j0: usize, len: usize) {
    assert!(
        rows == 0 || (rows - 1) * stride + j0 + len <= len_w,
        "row chunk out of bounds"
    );
}

/// `acc_r += Σ_{j<len} w[r·stride + j0 + j] · x[j]` for rows r < acc.len()  (projections λ, ν).
#[inline]
pub fn dot_rows(isa: Isa, w: &[f64], stride: usize, j0: usize, x: &[f64], acc: &mut [Acc]) {
    check_rows(w.len(), stride, acc.len(), j0, x.len());
    // SAFETY: the extents are checked above; `w` is borrowed whole.
    unsafe { dot_rows_at(isa, w.as_ptr().add(j0), stride, x, acc) }
}

/// [`dot_rows`] on the rows at `w`, `w + stride`, … (each read for `x.len()` numbers), for passes
/// that hand column ranges of the same rows to several threads.
///
/// # Safety
/// The rows must be valid for those reads, and no thread may write them meanwhile.
#[inline]
pub(crate) unsafe fn dot_rows_at(isa: Isa, w: *const f64, stride: usize, x: &[f64], acc: &mut [Acc]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma is only selected on CPUs that have it.
        Isa::Avx2Fma => super::avx2::dot_rows(w, stride, x, acc),
        _ => {
            // Blocks of 8 (one per lane) so that LLVM vectorises with the baseline SIMD.
            for (r, a) in acc.iter_mut().enumerate() {
                let row = std::slice::from_raw_parts(w.add(r * stride), x.len());
                let (wc, xc) = (row.chunks_exact(8), x.chunks_exact(8));
                let (wt, xt) = (wc.remainder(), xc.remainder());
                for (wb, xb) in wc.zip(xc) {
                    for l in 0..8 {
                        a[l] += wb[l] * xb[l];
                    }
                }
                for (l, (wj, xj)) in wt.iter().zip(xt).enumerate() {
                    a[l] += wj * xj;
                }
            }
        }
    }
}

/// The fused pass over one chunk for B = 1: for rows r < acc.len(),
/// `w_r[j] ← c_r·xp[j] + decay·w_r[j]` (the pending update of the previous step), then
/// `acc_r += w_r[j]·xn[j]` (the projection of the new input on the updated row).
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn update_dot_rows(
    isa: Isa,
    w: &mut [f64],
    stride: usize,
    j0: usize,
    decay: f64,
    c: &[f64],
    xp: &[f64],
    xn: &[f64],
    acc: &mut [Acc],
) {
    check_rows(w.len(), stride, acc.len(), j0, xn.len());
    // SAFETY: the extents are checked above (and those of c, xp by update_dot_rows_at); `w` is
    // borrowed whole.
    unsafe { update_dot_rows_at(isa, w.as_mut_ptr().add(j0), stride, decay, c, xp, xn, acc) }
}

/// [`update_dot_rows`] on the rows at `w`, `w + stride`, … (each read and written for `xn.len()`
/// numbers), for passes that hand column ranges of the same rows to several threads.
///
/// # Safety
/// The rows must be valid for those reads and writes, and no other thread may access them
/// meanwhile.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn update_dot_rows_at(
    isa: Isa,
    w: *mut f64,
    stride: usize,
    decay: f64,
    c: &[f64],
    xp: &[f64],
    xn: &[f64],
    acc: &mut [Acc],
) {
    let len = xn.len();
    assert!(c.len() >= acc.len() && xp.len() == len);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in dot_rows_at.
        Isa::Avx2Fma => super::avx2::update_dot_rows(w, stride, decay, c, xp, xn, acc),
        _ => {
            for (r, a) in acc.iter_mut().enumerate() {
                let row = std::slice::from_raw_parts_mut(w.add(r * stride), len);
                let cr = c[r];
                let mut upd = |wb: &mut [f64], pb: &[f64], nb: &[f64]| {
                    for l in 0..wb.len() {
                        let d = if decay == 1.0 { wb[l] } else { decay * wb[l] };
                        wb[l] = cr * pb[l] + d;
                        a[l] += wb[l] * nb[l];
                    }
                };
                // Blocks of 8 (one per lane), then the tail into lanes 0.., as in dot_rows.
                let mut wc = row.chunks_exact_mut(8);
                for ((wb, pb), nb) in (&mut wc).zip(xp.chunks_exact(8)).zip(xn.chunks_exact(8)) {
                    upd(wb, pb, nb);
                }
                let t = len - len % 8;
                upd(wc.into_remainder(), &xp[t..], &xn[t..]);
            }
        }
    }
}

/// The rank-B update of one row segment: `w[j] ← c_0·x_0[j] + decay·w[j]`, then
/// `w[j] ← c_b·x_b[j] + w[j]` for b = 1..B, with `x_b = xs[b·x_stride..]`. This is theory.md §2's update with decay = 1 − ηℓ₂/N
/// and c_b = η δ^b/(B√N).
#[inline]
pub fn axpy_row(isa: Isa, w: &mut [f64], decay: f64, c: &[f64], xs: &[f64], x_stride: usize) {
    let len = w.len();
    assert!(!c.is_empty() && (c.len() - 1) * x_stride + len <= xs.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in dot_rows; bounds checked above.
        Isa::Avx2Fma => unsafe { super::avx2::axpy_row(w, decay, c, xs, x_stride) },
        _ => {
            for (b, &cb) in c.iter().enumerate() {
                let x = &xs[b * x_stride..b * x_stride + len];
                if b == 0 && decay != 1.0 {
                    w.iter_mut().zip(x).for_each(|(wj, xj)| *wj = cb * xj + decay * *wj);
                } else {
                    w.iter_mut().zip(x).for_each(|(wj, xj)| *wj += cb * xj);
                }
            }
        }
    }
}

/// A STREAM-like pass for the floor of the bench: reads every row of `read` and of `rw`, writes every
/// row of `rw` (unchanged values), with no arithmetic dependency. Returns a value to keep the reads live.
pub fn stream_pass(isa: Isa, read: &[f64], rw: &mut [f64]) -> f64 {
    let z = std::hint::black_box(0u64);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in dot_rows.
        Isa::Avx2Fma => unsafe { super::avx2::stream_pass(read, rw, z) },
        _ => {
            let mut acc = [0u64; 4];
            for c in read.chunks_exact(4) {
                for k in 0..4 {
                    acc[k] |= c[k].to_bits();
                }
            }
            rw.iter_mut().for_each(|w| *w = f64::from_bits(w.to_bits() ^ z));
            f64::from_bits(acc[0] | acc[1] | acc[2] | acc[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{fill_standard_normal, SimRng};
    use rand::SeedableRng;

    const EPS: f64 = f64::EPSILON / 2.0; // unit roundoff u

    fn gamma(k: usize) -> f64 {
        k as f64 * EPS / (1.0 - k as f64 * EPS)
    }

    fn randn(rng: &mut SimRng, len: usize) -> Vec<f64> {
        let mut v = vec![0.0; len];
        fill_standard_normal(rng, &mut v);
        v
    }

    fn isas() -> Vec<Isa> {
        let avx2 = crate::isa::simd_tests_enabled(
            crate::isa::SimdFeature::Avx2,
            Isa::Avx2Fma.available(),
            "kernel tests across instruction sets",
        );
        if avx2 {
            vec![Isa::Avx2Fma, Isa::Portable]
        } else {
            vec![Isa::Portable]
        }
    }

    /// Shapes covering the row groups (4, 2, 1), the 8- and 4-wide loops and scalar tails.
    const SHAPES: [(usize, usize); 8] = [(1, 1), (2, 3), (3, 4), (5, 7), (6, 8), (7, 13), (4, 100), (9, 1037)];

    /// Each lane sums ⌈n/8⌉ products and the lanes are reduced in 3 levels, so a computed dot
    /// product is within γ_{⌈n/8⌉+4} Σ|w_j x_j| of the exact one (Higham, Accuracy and Stability
    /// of Numerical Algorithms, §3.1); two evaluations differ by at most twice that.
    #[test]
    fn dot_rows_agree_with_reference_and_across_isas() {
        let mut rng = SimRng::seed_from_u64(1);
        for (rows, n) in SHAPES {
            let w = randn(&mut rng, rows * n);
            let x = randn(&mut rng, n);
            let mut exact = vec![0.0; rows];
            project(&w, n, &x, 1.0, &mut exact);
            for isa in isas() {
                let mut acc = vec![[0.0; 8]; rows];
                // in chunks of 16 as the simulator does
                for j0 in (0..n).step_by(16) {
                    let len = 16.min(n - j0);
                    dot_rows(isa, &w, n, j0, &x[j0..j0 + len], &mut acc);
                }
                for r in 0..rows {
                    let abs: f64 = (0..n).map(|j| (w[r * n + j] * x[j]).abs()).sum();
                    let tol = 2.0 * gamma(n.div_ceil(8) + 4) * abs;
                    let got = reduce(&acc[r]);
                    assert!(
                        (got - exact[r]).abs() <= tol,
                        "{isa:?} {rows}×{n} row {r}: {got} vs {}",
                        exact[r]
                    );
                }
            }
        }
    }

    /// The fused update + dot equals the rank-one update (theory.md §2) followed by the projection,
    /// up to rounding: an updated element c·x + d·w is within 2u(|c x| + |d w|) of the exact value
    /// in either evaluation order (with or without FMA), so two evaluations differ by less than
    /// 5u(|c x| + |d w|); the projections then obey the bound of the previous test plus the
    /// propagated update error, ≤ 5u Σ_j (|c x_j| + |d w_j|)|xn_j|.
    #[test]
    fn update_dot_rows_is_update_then_project() {
        let mut rng = SimRng::seed_from_u64(2);
        for (rows, n) in SHAPES {
            for decay in [1.0, 0.93] {
                let w0 = randn(&mut rng, rows * n);
                let xp = randn(&mut rng, n);
                let xn = randn(&mut rng, n);
                let c: Vec<f64> = (0..rows).map(|r| 0.1 * (r as f64 - 1.5)).collect();
                let mut w_ref = w0.clone();
                update(&mut w_ref, n, decay, &c, &xp);
                let mut lam_ref = vec![0.0; rows];
                project(&w_ref, n, &xn, 1.0, &mut lam_ref);
                for isa in isas() {
                    let mut w = w0.clone();
                    let mut acc = vec![[0.0; 8]; rows];
                    for j0 in (0..n).step_by(32) {
                        let len = 32.min(n - j0);
                        let (xpc, xnc) = (&xp[j0..j0 + len], &xn[j0..j0 + len]);
                        update_dot_rows(isa, &mut w, n, j0, decay, &c, xpc, xnc, &mut acc);
                    }
                    for r in 0..rows {
                        let mut prop = 0.0;
                        for j in 0..n {
                            let e = 5.0 * EPS * ((c[r] * xp[j]).abs() + (decay * w0[r * n + j]).abs());
                            let k = r * n + j;
                            assert!((w[k] - w_ref[k]).abs() <= e, "{isa:?} w[{r},{j}]");
                            prop += e * xn[j].abs();
                        }
                        let abs: f64 = (0..n).map(|j| (w_ref[r * n + j] * xn[j]).abs()).sum();
                        let tol = 2.0 * gamma(n.div_ceil(8) + 4) * abs + prop;
                        let got = reduce(&acc[r]);
                        assert!(
                            (got - lam_ref[r]).abs() <= tol,
                            "{isa:?} λ_{r}: {got} vs {}",
                            lam_ref[r]
                        );
                    }
                    // The flush (axpy_row) performs the very same operations: bit-identical rows.
                    let mut w2 = w0.clone();
                    for r in 0..rows {
                        axpy_row(isa, &mut w2[r * n..(r + 1) * n], decay, &c[r..r + 1], &xp, 0);
                    }
                    assert!(
                        w.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} flush differs"
                    );
                }
            }
        }
    }

    /// The rank-B update of axpy_row is theory.md §2's update (reference `update`), up to rounding:
    /// B + 1 terms, each evaluation within γ_{B+1} Σ|terms| of the exact sum.
    #[test]
    fn axpy_row_is_the_rank_b_update() {
        let mut rng = SimRng::seed_from_u64(3);
        let (n, batch, stride) = (45, 3, 48);
        let w0 = randn(&mut rng, n);
        let xs = randn(&mut rng, batch * stride);
        let c = [0.3, -0.2, 0.05];
        let dense: Vec<f64> = (0..batch)
            .flat_map(|b| xs[b * stride..b * stride + n].to_vec())
            .collect();
        let mut w_ref = w0.clone();
        update(&mut w_ref, n, 0.9, &c, &dense);
        for isa in isas() {
            let mut w = w0.clone();
            axpy_row(isa, &mut w, 0.9, &c, &xs, stride);
            for j in 0..n {
                let abs = (0.9 * w0[j]).abs() + (0..batch).map(|b| (c[b] * xs[b * stride + j]).abs()).sum::<f64>();
                assert!((w[j] - w_ref[j]).abs() <= 2.0 * gamma(batch + 2) * abs, "{isa:?} {j}");
            }
        }
    }

    #[test]
    fn stream_pass_leaves_rows_unchanged() {
        let mut rng = SimRng::seed_from_u64(4);
        let read = randn(&mut rng, 64);
        let rw0 = randn(&mut rng, 36);
        for isa in isas() {
            let mut rw = rw0.clone();
            stream_pass(isa, &read, &mut rw);
            assert_eq!(rw, rw0);
        }
    }
}
