//! Predicted finite-N fluctuations of observables from the linear-noise approximation
//! ([`crate::ode::lna`], theory.md §6, docs/fluctuations.md).
//!
//! An observable o(s) (e_g, an overlap, tr Q, ‖M‖) of the state fluctuates by ∇o·ξ/√N at leading
//! order (delta method), so N·Var o → ∇oᵀ Σ ∇o. For ‖M‖_F at M = 0 the map is not differentiable
//! (its fluctuation is χ-distributed, not Gaussian): no prediction there.

use crate::model::Model;
use crate::overlaps::Overlaps;
use crate::population::population_error;
use nalgebra::{DMatrix, DVector};

/// Value of a named observable at a state: "eg" (label noise excluded) or any name of
/// [`Overlaps::observable`].
fn value(model: &Model, p_teacher: &DMatrix<f64>, state: &DVector<f64>, name: &str) -> Option<f64> {
    let ov = Overlaps::from_state(state, p_teacher);
    if name == "eg" {
        Some(population_error(model, &ov.gram()))
    } else {
        ov.observable(name)
    }
}

/// ∇o at `state` by central differences (step 1e-6: O(h²) ≈ 1e-12 truncation, ~1e-10 rounding);
/// `None` for an unknown name or ‖M‖ at M ≈ 0.
pub fn observable_gradient(
    model: &Model,
    p_teacher: &DMatrix<f64>,
    state: &DVector<f64>,
    name: &str,
) -> Option<DVector<f64>> {
    value(model, p_teacher, state, name)?;
    if name == "norm_m" && Overlaps::from_state(state, p_teacher).m.norm() < 1e-6 {
        return None;
    }
    let h = 1e-6;
    let mut grad = DVector::zeros(state.len());
    for k in 0..state.len() {
        let (mut sp, mut sm) = (state.clone(), state.clone());
        sp[k] += h;
        sm[k] -= h;
        grad[k] = (value(model, p_teacher, &sp, name)? - value(model, p_teacher, &sm, name)?) / (2.0 * h);
    }
    Some(grad)
}

/// Predicted lim N·Var o(s_N(t)) = ∇oᵀ Σ ∇o (see the module docs).
///
/// ```
/// use hdsgd::{analysis::fluctuations::predicted_n_var, model::{Activation, Model}};
/// use nalgebra::{DMatrix, DVector};
/// let model = Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0);
/// let state = DVector::from_vec(vec![1.0, 0.0, 1.0, 0.0, 0.0]);
/// let sigma = DMatrix::from_diagonal(&DVector::from_vec(vec![2.0, 1.0, 3.0, 0.5, 0.5]));
/// // tr Q = q_0_0 + q_1_1: 2 + 3.
/// let v = predicted_n_var(&model, &DMatrix::identity(1, 1), &state, &sigma, "tr_q").unwrap();
/// assert!((v - 5.0).abs() < 1e-8);
/// ```
pub fn predicted_n_var(
    model: &Model,
    p_teacher: &DMatrix<f64>,
    state: &DVector<f64>,
    sigma: &DMatrix<f64>,
    name: &str,
) -> Option<f64> {
    let g = observable_gradient(model, p_teacher, state, name)?;
    Some((g.transpose() * sigma * &g)[(0, 0)])
}
