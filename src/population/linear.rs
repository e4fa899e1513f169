//! Linear activation g(z) = z: r = cᵀz with c = (−a, v), so everything is linear algebra.
//!
//! E[δ_i z_j] = a_i (Cc)_j, E[δ_i δ_j] = a_i a_j (cᵀCc + Δ), e_g = ½ cᵀCc.

use super::Moments;
use crate::model::Model;
use nalgebra::{DMatrix, DVector};

/// e_g = ½ cᵀ C c.
pub fn population_error(coef: &[f64], c: &DMatrix<f64>) -> f64 {
    let cv = DVector::from_column_slice(coef);
    0.5 * (cv.transpose() * c * &cv)[(0, 0)]
}

/// The ODE moments for g(z) = z (module docs).
pub fn moments(model: &Model, c: &DMatrix<f64>) -> Moments {
    let (p, k) = (model.p(), model.p_star());
    let coef = model.signed_coefficients();
    let cc = c * DVector::from_column_slice(&coef);
    let var_r = 2.0 * population_error(&coef, c) + model.noise;
    let a = &model.a;
    Moments {
        delta_lambda: DMatrix::from_fn(p, p, |i, j| a[i] * cc[j]),
        delta_nu: DMatrix::from_fn(p, k, |i, j| a[i] * cc[p + j]),
        delta_delta: DMatrix::from_fn(p, p, |i, j| a[i] * a[j] * var_r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::population::monte_carlo::{assert_closed_forms_match, random_spd};

    /// Closed forms against Monte Carlo (200k samples, 5 standard errors per entry).
    #[test]
    fn closed_forms_match_monte_carlo() {
        let model = Model::new(Activation::Linear, vec![0.7, -0.2], vec![1.0, 0.5], 0.2);
        let c = random_spd(4, 3);
        assert_closed_forms_match(&model, &c, 200_000, 5, 5.0);
    }
}
