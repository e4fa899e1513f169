//! The per-sample kernels of the direct simulator: Gaussian input generation, the projections
//! λ = Wx/√N, ν = W*x/√N, and the rank-B update of W. Kept separate and allocation-free so that
//! faster (explicit-SIMD) versions can replace them without touching the simulator.
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
