//! ReLU activation g(z) = max(z, 0): the population error in closed form from the first-order
//! arc-cosine kernel (Y. Cho, L. Saul, "Kernel methods for deep learning", NeurIPS 2009):
//!
//!   E[relu(u) relu(w)] = (σ_u σ_w / (2π)) (sin θ + (π − θ) cos θ),  cos θ = C_uw / (σ_u σ_w),
//!
//! for (u, w) centred Gaussian with variances σ_u², σ_w² and covariance C_uw. The ODE moments are
//! not implemented for ReLU ([`super::moments`] returns an error): ReLU runs are simulation-only.

use nalgebra::DMatrix;
use std::f64::consts::PI;

/// E[relu(u) relu(w)] from the covariance `cov` of (u, w) (arc-cosine kernel of degree 1).
///
/// A zero variance means the argument is identically 0, hence so is the average. cos θ is clamped
/// to [−1, 1] against rounding for (nearly) collinear arguments.
/// ```
/// use hdsgd::population::relu::relu_kernel;
/// // u = w: E[relu(u)²] = σ²/2.
/// assert!((relu_kernel(&[[3.0, 3.0], [3.0, 3.0]]) - 1.5).abs() < 1e-15);
/// // Independent: E[relu(u)] E[relu(w)] = σ_u σ_w / (2π).
/// assert!((relu_kernel(&[[1.0, 0.0], [0.0, 4.0]]) - 2.0 / (2.0 * std::f64::consts::PI)).abs() < 1e-15);
/// ```
pub fn relu_kernel(cov: &[[f64; 2]; 2]) -> f64 {
    let [[c11, c12], [_, c22]] = *cov;
    let s = (c11.max(0.0) * c22.max(0.0)).sqrt();
    if s == 0.0 {
        return 0.0;
    }
    let cos = (c12 / s).clamp(-1.0, 1.0);
    let theta = cos.acos();
    s / (2.0 * PI) * ((1.0 - cos * cos).sqrt() + (PI - theta) * cos)
}

/// e_g = ½ Σ_{m,l} c_m c_l E[relu(z_m) relu(z_l)], with coef = c = (−a, v) and C the Gram matrix of z.
///
/// ```
/// use hdsgd::population::relu::population_error;
/// use nalgebra::DMatrix;
/// // p = p* = 1, a = v = 1, independent unit-variance student and teacher:
/// // ½ (½ + ½ − 2/(2π)) = ½ − 1/(2π).
/// let c = DMatrix::identity(2, 2);
/// let eg = population_error(&[-1.0, 1.0], &c);
/// assert!((eg - (0.5 - 0.5 / std::f64::consts::PI)).abs() < 1e-15);
/// ```
pub fn population_error(coef: &[f64], c: &DMatrix<f64>) -> f64 {
    let d = coef.len();
    let mut sum = 0.0;
    for m in 0..d {
        sum += coef[m] * coef[m] * 0.5 * c[(m, m)].max(0.0);
        for l in 0..m {
            let cov = [[c[(m, m)], c[(m, l)]], [c[(l, m)], c[(l, l)]]];
            sum += 2.0 * coef[m] * coef[l] * relu_kernel(&cov);
        }
    }
    0.5 * sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, Model};
    use crate::population::monte_carlo::{assert_within, estimate, random_spd};

    /// e_g against Monte Carlo at random positive-definite C for several widths. 300k samples;
    /// tolerance 5 standard errors (4 values: false-alarm probability < 3e-6).
    #[test]
    fn population_error_matches_monte_carlo() {
        for (case, (p, k)) in [(1, 1), (2, 2), (3, 1), (2, 4)].into_iter().enumerate() {
            let a: Vec<f64> = (0..p).map(|i| 0.8 - 0.3 * i as f64).collect();
            let v: Vec<f64> = (0..k).map(|i| 1.0 + 0.2 * i as f64).collect();
            let model = Model::new(Activation::Relu, a, v, 0.0);
            let c = random_spd(p + k, 70 + case as u64);
            let est = estimate(&model, &c, 300_000, 80 + case as u64);
            let eg = DMatrix::from_element(1, 1, population_error(&model.signed_coefficients(), &c));
            assert_within("e_g", &eg, &est[0], 5.0);
        }
    }

    /// Exact cases: anti-collinear arguments (θ = π) give 0, zero variance gives 0, and a student
    /// equal to the teacher has zero error.
    #[test]
    fn exact_identities() {
        assert!(relu_kernel(&[[2.0, -2.0], [-2.0, 2.0]]).abs() < 1e-15);
        assert_eq!(relu_kernel(&[[0.0, 0.0], [0.0, 5.0]]), 0.0);
        // Rounding beyond collinearity does not produce NaN.
        assert!((relu_kernel(&[[1.0, 1.0 + 1e-15], [1.0 + 1e-15, 1.0]]) - 0.5).abs() < 1e-14);
        let c = DMatrix::from_element(2, 2, 1.3);
        assert!(population_error(&[-1.0, 1.0], &c).abs() < 1e-15);
    }
}
