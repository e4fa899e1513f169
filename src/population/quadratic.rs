//! Quadratic activation g(z) = z²: closed forms by Wick/Isserlis (theory.md §4).
//!
//! With K = diag(−a, v) the noise-free residual is r = zᵀKz, τ = tr(KC), and
//! * E[z zᵀ r]  = τ C + 2 CKC,
//! * E[z zᵀ r²] = C (τ² + 2 tr(KCKC)) + 4τ CKC + 8 CKCKC,
//! * e_g = ½ E[r²] = ½ τ² + tr(KCKC).
//!
//! Since δ_i = 2 a_i λ_i (r + √Δ ξ): E[δλᵀ] = 2A[E zzᵀr]_λλ, E[δνᵀ] = 2A[E zzᵀr]_λν and
//! E[δδᵀ] = 4A([E zzᵀr²]_λλ + ΔQ)A.

use super::Moments;
use crate::model::Model;
use nalgebra::DMatrix;

/// e_g = ½ τ² + tr(KCKC) with K = diag(coef), coef = (−a, v).
pub fn population_error(coef: &[f64], c: &DMatrix<f64>) -> f64 {
    let kc = k_times(coef, c);
    let tau = kc.trace();
    0.5 * tau * tau + (&kc * &kc).trace()
}

/// KC, with K = diag(coef).
fn k_times(coef: &[f64], c: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(c.nrows(), c.ncols(), |i, j| coef[i] * c[(i, j)])
}

/// The ODE moments for g(z) = z² (module docs).
pub fn moments(model: &Model, c: &DMatrix<f64>) -> Moments {
    let p = model.p();
    let k = model.p_star();
    let coef = model.signed_coefficients();
    let kc = k_times(&coef, c);
    let tau = kc.trace();
    let ckc = c * &kc;
    let ckckc = &ckc * &kc;
    let tr_kckc = (&kc * &kc).trace();
    let ezzr = c * tau + &ckc * 2.0;
    let ezzr2 = c * (tau * tau + 2.0 * tr_kckc) + &ckc * (4.0 * tau) + &ckckc * 8.0;
    let a = &model.a;
    Moments {
        delta_lambda: DMatrix::from_fn(p, p, |i, j| 2.0 * a[i] * ezzr[(i, j)]),
        delta_nu: DMatrix::from_fn(p, k, |i, j| 2.0 * a[i] * ezzr[(i, p + j)]),
        delta_delta: DMatrix::from_fn(p, p, |i, j| {
            4.0 * a[i] * a[j] * (ezzr2[(i, j)] + model.noise * c[(i, j)])
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::population::monte_carlo::{assert_closed_forms_match, random_spd};

    /// Closed forms against Monte Carlo at random positive-definite C. 400k samples; tolerance 5
    /// standard errors per entry (with ~30 entries per case, a false alarm has probability < 1e-4).
    #[test]
    fn closed_forms_match_monte_carlo() {
        for (case, (p, k, noise)) in [(2, 1, 0.0), (2, 2, 0.3), (3, 1, 0.1)].into_iter().enumerate() {
            let a: Vec<f64> = (0..p).map(|i| 0.5 + 0.3 * i as f64).collect();
            let v: Vec<f64> = (0..k).map(|i| 1.0 - 0.4 * i as f64).collect();
            let model = Model::new(Activation::Quadratic, a, v, noise);
            let c = random_spd(p + k, 11 + case as u64);
            assert_closed_forms_match(&model, &c, 400_000, 7 + case as u64, 5.0);
        }
    }
}
