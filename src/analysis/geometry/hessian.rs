//! Gradient and Hessian of the quadratic network's population loss with respect to the student
//! weights W (p × N), in closed form (theory.md §5).
//!
//! # Derivation
//! With Z = [W; W*] the Gram matrix is C = ZZᵀ/N and, with K = diag(−A, V),
//! G = ZᵀKZ/N = (W*ᵀVW* − WᵀAW)/N (N × N, symmetric): τ = tr(KC) = tr G and tr(KCKC) = tr(G²), so
//!
//!   e_g(W) = ½ (tr G)² + tr(G²).
//!
//! Along a direction E (p × N), dG = −(EᵀAW + WᵀAE)/N and d²G = −2EᵀAE/N. Hence
//! * gradient: ∇_W e_g = −(2/N) A W X with X = τ I_N + 2G, i.e. (no N × N matrix needed, since
//!   WG = MVW* − QAW) ∇_W e_g = −(2/N) A (τW + 2MVW* − 2QAW);
//! * Hessian: H[E, F] = tr(dG_E) tr(dG_F) + 2 tr(dG_E dG_F) − (2/N) tr(X EᵀAF). In the basis
//!   E = e_i e_αᵀ (index i·N + α), with u_i = a_i w_i:
//!
//!   H_{iα,jβ} = (4/N²) a_i a_j (w_iα w_jβ + w_iβ w_jα + δ_αβ w_i·w_j) − (2/N) a_i δ_ij X_αβ.
//!
//! # Structure (uniform layers A = aI)
//! * Bulk: for directions whose rows are orthogonal to span(W, W*), G acts as 0 and the Hessian is
//!   (2a/N)(2aQ − τI) ⊗ I: eigenvalues (2a/N)(2a q_k − τ) (q_k the eigenvalues of Q), each with
//!   multiplicity N − rank(W; W*) ([`bulk_eigenvalues`]).
//! * Solution manifold {WᵀAW = W*ᵀVW*}: G = 0 there, so H[E, E] = (tr dG)² + 2 tr(dG²) ≥ 0 and
//!   H E = 0 iff EᵀW + WᵀE = 0. Writing W = RS (S = (V/a)^{1/2}W*, RᵀR = I_{p*}) the null space has
//!   dimension (p − p*)(N − p*) (rows orthogonal to the teacher, columns orthogonal to range R) +
//!   (p − p*)p* + p*(p* − 1)/2 (W_Tᵀ E_T antisymmetric), in total
//!   **(p − p*)N + p*(p* − 1)/2** = dim of the O(p) orbit (the Stiefel manifold, pp* − p*(p*+1)/2)
//!   + the (p − p*)(N − p*) flat directions orthogonal to the teacher. No negative eigenvalue.
//! * Plateau (M = 0, Q = q*I, V = vI, P = I): the bulk eigenvalue (2a/N)(2aq* − τ) vanishes
//!   (stationarity in Q); rows in the teacher span give pp* negative eigenvalues, rows in the student
//!   span give p(p+1)/2 positive ones (symmetric changes of Q) and p(p − 1)/2 zero ones (O(p)
//!   rotations). Expected: **pp* negative, p(N − p − p*) + p(p − 1)/2 zero, p(p + 1)/2 positive**.

use super::GeometryError;
use crate::model::Model;
use crate::overlaps::Overlaps;
use crate::population::population_error;
use crate::rng::{fill_standard_normal, stream};
use nalgebra::{DMatrix, SymmetricEigen};

/// e_g at explicit weights (W p × N, W* p* × N), through the overlaps.
pub fn population_error_at(model: &Model, w: &DMatrix<f64>, w_star: &DMatrix<f64>) -> f64 {
    population_error(model, &overlaps_of(w, w_star).gram())
}

/// The overlaps of explicit weights (nalgebra version of [`Overlaps::from_weights`]).
pub fn overlaps_of(w: &DMatrix<f64>, w_star: &DMatrix<f64>) -> Overlaps {
    let n = w.ncols() as f64;
    Overlaps::new(
        w * w.transpose() / n,
        w * w_star.transpose() / n,
        w_star * w_star.transpose() / n,
    )
}

fn diag(x: &[f64]) -> DMatrix<f64> {
    DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(x))
}

/// τ = tr(KC) = tr(VP) − tr(AQ).
fn tau(model: &Model, ov: &Overlaps) -> f64 {
    let tv: f64 = model.v.iter().enumerate().map(|(k, v)| v * ov.p[(k, k)]).sum();
    let ta: f64 = model.a.iter().enumerate().map(|(i, a)| a * ov.q[(i, i)]).sum();
    tv - ta
}

/// ∇_W e_g = −(2/N) A (τW + 2MVW* − 2QAW) (p × N), module docs; quadratic activation, any A, V.
///
/// ```
/// use hdsgd::{analysis::geometry::hessian::{gradient, population_error_at}, model::{Activation, Model}};
/// use nalgebra::DMatrix;
/// let model = Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0);
/// let w = DMatrix::from_row_slice(2, 3, &[1.0, 0.2, -0.3, 0.1, 0.9, 0.4]);
/// let ws = DMatrix::from_row_slice(1, 3, &[0.5, -1.0, 1.2]);
/// let g = gradient(&model, &w, &ws);
/// let h = 1e-6;
/// let mut wp = w.clone();
/// wp[(1, 2)] += h;
/// let mut wm = w.clone();
/// wm[(1, 2)] -= h;
/// let fd = (population_error_at(&model, &wp, &ws) - population_error_at(&model, &wm, &ws)) / (2.0 * h);
/// assert!((fd - g[(1, 2)]).abs() < 1e-8);
/// ```
pub fn gradient(model: &Model, w: &DMatrix<f64>, w_star: &DMatrix<f64>) -> DMatrix<f64> {
    let n = w.ncols() as f64;
    let ov = overlaps_of(w, w_star);
    let (a, v) = (diag(&model.a), diag(&model.v));
    let inner = w * tau(model, &ov) + (&ov.m * v * w_star - &ov.q * &a * w) * 2.0;
    &a * inner * (-2.0 / n)
}

/// The full Hessian of e_g with respect to W, a symmetric pN × pN matrix indexed by i·N + α
/// (module docs). Cost O(p²N²) memory and time: meant for N up to a few hundred.
pub fn hessian(model: &Model, w: &DMatrix<f64>, w_star: &DMatrix<f64>) -> DMatrix<f64> {
    let (p, n) = (w.nrows(), w.ncols());
    let nf = n as f64;
    let ov = overlaps_of(w, w_star);
    let (a, v) = (&model.a, diag(&model.v));
    // X = τI + 2G, G = (W*ᵀVW* − WᵀAW)/N.
    let aw = diag(a) * w;
    let g = (w_star.transpose() * v * w_star - w.transpose() * &aw) / nf;
    let x = DMatrix::identity(n, n) * tau(model, &ov) + g * 2.0;
    let mut h = DMatrix::zeros(p * n, p * n);
    let c = 4.0 / (nf * nf);
    for i in 0..p {
        for j in 0..p {
            let aij = c * a[i] * a[j];
            let wij = ov.q[(i, j)] * nf; // w_i·w_j
            for al in 0..n {
                let wia = w[(i, al)];
                let wja = w[(j, al)];
                for be in 0..n {
                    let mut val = aij * (wia * w[(j, be)] + w[(i, be)] * wja);
                    if al == be {
                        val += aij * wij;
                    }
                    if i == j {
                        val -= 2.0 / nf * a[i] * x[(al, be)];
                    }
                    h[(i * n + al, j * n + be)] = val;
                }
            }
        }
    }
    h
}

/// The bulk eigenvalues (2a/N)(2a q_k − τ) (q_k the eigenvalues of Q, ascending) of the Hessian on
/// directions orthogonal to span(W, W*), for a uniform student layer a; each has multiplicity
/// N − rank(W; W*).
pub fn bulk_eigenvalues(model: &Model, ov: &Overlaps, n: usize) -> Vec<f64> {
    let a = model.a[0];
    let t = tau(model, ov);
    let mut q: Vec<f64> = ov.q.clone().symmetric_eigenvalues().iter().copied().collect();
    q.sort_by(f64::total_cmp);
    q.iter().map(|qk| 2.0 * a / n as f64 * (2.0 * a * qk - t)).collect()
}

/// Weights (W p × N, W* p* × N) with exactly the given Gram matrix C (up to rounding): C = F Fᵀ
/// from the symmetric eigendecomposition (negative rounding eigenvalues clipped to 0, so singular C
/// such as a point of the solution manifold are allowed), Z = [W; W*] = F O with O (r × N) random
/// rows, orthogonal and of norm √N (r = p + p* ≤ N).
pub fn realise(ov: &Overlaps, n: usize, seed: u64) -> Result<(DMatrix<f64>, DMatrix<f64>), GeometryError> {
    let c = ov.gram();
    let r = c.nrows();
    if n < r {
        return Err(GeometryError::field(
            "geometry.hessian_n",
            format!("N = {n} is smaller than p + p* = {r}"),
        ));
    }
    let eig = SymmetricEigen::new(c.clone());
    let scale = eig.eigenvalues.amax().max(1e-300);
    if eig.eigenvalues.min() < -1e-10 * scale {
        return Err(GeometryError::Degenerate(
            "the Gram matrix is not positive semi-definite".into(),
        ));
    }
    let f = DMatrix::from_fn(r, r, |i, k| {
        eig.eigenvectors[(i, k)] * eig.eigenvalues[k].max(0.0).sqrt()
    });
    let mut rng = stream(seed, 7);
    let mut gauss = vec![0.0; n * r];
    fill_standard_normal(&mut rng, &mut gauss);
    let g = DMatrix::from_column_slice(n, r, &gauss);
    let qf = g.qr().q(); // N × r, orthonormal columns
    let o = qf.transpose() * (n as f64).sqrt();
    let z = f * o;
    let p = ov.p_student();
    Ok((z.rows(0, p).into_owned(), z.rows(p, r - p).into_owned()))
}

/// Eigenvalue counts of a spectrum: negative (< −tol), zero (|λ| ≤ tol) and positive (> tol),
/// with tol = `rel_tol` · max|λ|.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpectrumCounts {
    pub negative: usize,
    pub zero: usize,
    pub positive: usize,
    /// The absolute tolerance used.
    pub tol: f64,
    pub min: f64,
    pub max: f64,
}

/// Counts of a spectrum (see [`SpectrumCounts`]).
pub fn counts(eigenvalues: &[f64], rel_tol: f64) -> SpectrumCounts {
    let amax = eigenvalues.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let tol = rel_tol * amax;
    SpectrumCounts {
        negative: eigenvalues.iter().filter(|&&x| x < -tol).count(),
        zero: eigenvalues.iter().filter(|&&x| x.abs() <= tol).count(),
        positive: eigenvalues.iter().filter(|&&x| x > tol).count(),
        tol,
        min: eigenvalues.iter().copied().fold(f64::INFINITY, f64::min),
        max: eigenvalues.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Ascending eigenvalues of a symmetric matrix.
pub fn spectrum(h: &DMatrix<f64>) -> Vec<f64> {
    let mut e: Vec<f64> = h.clone().symmetric_eigenvalues().iter().copied().collect();
    e.sort_by(f64::total_cmp);
    e
}

/// Expected (negative, zero, positive) counts at a point of the zero-loss manifold, uniform student
/// layer and p ≥ p*: (0, (p − p*)N + p*(p* − 1)/2, p*N − p*(p* − 1)/2) (module docs).
pub fn expected_solution_counts(p: usize, p_star: usize, n: usize) -> (usize, usize, usize) {
    let zero = (p - p_star) * n + p_star * (p_star - 1) / 2;
    (0, zero, p * n - zero)
}

/// Expected (negative, zero, positive) counts at the plateau M = 0, Q = q*I for uniform layers
/// (A = aI, V = vI, P = I): (pp*, p(N − p − p*) + p(p − 1)/2, p(p + 1)/2) (module docs).
pub fn expected_plateau_counts(p: usize, p_star: usize, n: usize) -> (usize, usize, usize) {
    (p * p_star, p * (n - p - p_star) + p * (p - 1) / 2, p * (p + 1) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn setup() -> (Model, DMatrix<f64>, DMatrix<f64>) {
        let model = Model::new(Activation::Quadratic, vec![0.3, 0.5, 0.4], vec![1.0, 0.6], 0.0);
        let ov = Overlaps::new(
            DMatrix::from_row_slice(3, 3, &[1.0, 0.1, 0.0, 0.1, 0.7, -0.2, 0.0, -0.2, 1.3]),
            DMatrix::from_row_slice(3, 2, &[0.2, 0.1, -0.3, 0.05, 0.1, 0.4]),
            DMatrix::from_row_slice(2, 2, &[1.0, 0.3, 0.3, 1.1]),
        );
        let (w, ws) = realise(&ov, 9, 4).unwrap();
        assert!((overlaps_of(&w, &ws).gram() - ov.gram()).amax() < 1e-12);
        (model, w, ws)
    }

    /// Central differences: error O(h²·third derivative) ≈ 1e-10 at h = 1e-5, far below the 1e-7
    /// tolerance, while a wrong term (entries O(1/N) ≈ 0.1) would show at 1e-2.
    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let (model, w, ws) = setup();
        let g = gradient(&model, &w, &ws);
        let h = hessian(&model, &w, &ws);
        assert!((&h - h.transpose()).amax() < 1e-14);
        let n = w.ncols();
        let step = 1e-5;
        for i in 0..3 {
            for al in 0..n {
                let mut wp = w.clone();
                wp[(i, al)] += step;
                let mut wm = w.clone();
                wm[(i, al)] -= step;
                let fd = (population_error_at(&model, &wp, &ws) - population_error_at(&model, &wm, &ws)) / (2.0 * step);
                assert!((fd - g[(i, al)]).abs() < 1e-7, "grad {i},{al}: {fd} vs {}", g[(i, al)]);
                let dg = (gradient(&model, &wp, &ws) - gradient(&model, &wm, &ws)) / (2.0 * step);
                for j in 0..3 {
                    for be in 0..n {
                        let an = h[(i * n + al, j * n + be)];
                        assert!(
                            (dg[(j, be)] - an).abs() < 1e-7,
                            "H {i},{al},{j},{be}: {} vs {an}",
                            dg[(j, be)]
                        );
                    }
                }
            }
        }
    }
}
