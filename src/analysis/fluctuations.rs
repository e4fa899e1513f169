//! Predicted finite-N fluctuations of observables from the linear-noise approximation
//! ([`crate::ode::lna`], theory.md §6, docs/fluctuations.md).
//!
//! An observable o(s) (e_g, an overlap, tr Q, ‖M‖) of the state fluctuates by ∇o·ξ/√N at leading
//! order (delta method), so N·Var o → ∇oᵀ Σ ∇o. For ‖M‖_F at M = 0 the map is not differentiable
//! (its fluctuation is χ-distributed, not Gaussian): no prediction there.

use crate::init::InitSpec;
use crate::model::{Model, Training};
use crate::ode::lna::{covariance_path, initial_covariance, mean_initial_overlaps, LnaOptions};
use crate::overlaps::Overlaps;
use crate::population::fluctuations::FluctuationError;
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

/// Predicted N·Var curves of the named observables on a time grid, for the two initial conditions
/// of the linear-noise approximation (docs/fluctuations.md §2), both along the ODE of the mean
/// initial overlaps of `init`:
/// * `spread`: Σ(0) = N·Cov s(0), the spread over seeds (compare with N·Var over seeds);
/// * `matched`: Σ(0) = 0, the deviation of a run from the ODE of its own initial overlaps.
///
/// `None` where the delta method does not apply (‖M‖ at M = 0, unknown names).
#[derive(Debug, Clone)]
pub struct TheoryCurves {
    pub times: Vec<f64>,
    pub names: Vec<String>,
    /// spread[t][observable].
    pub spread: Vec<Vec<Option<f64>>>,
    /// matched[t][observable].
    pub matched: Vec<Vec<Option<f64>>>,
}

/// [`TheoryCurves`] of `model` trained by `training` from `init` (teacher overlap `p_teacher`).
pub fn theory_curves(
    model: &Model,
    training: &Training,
    init: &InitSpec,
    p_teacher: &DMatrix<f64>,
    times: &[f64],
    names: &[String],
    opts: &LnaOptions,
) -> Result<TheoryCurves, FluctuationError> {
    let p = model.p();
    let start = mean_initial_overlaps(init, p, p_teacher);
    let len = start.to_state().len();
    let curves = |sigma0: &DMatrix<f64>| -> Result<Vec<Vec<Option<f64>>>, FluctuationError> {
        let sol = covariance_path(model, training, &start, sigma0, times, opts)?;
        Ok(sol
            .states
            .iter()
            .zip(&sol.sigma)
            .map(|(s, sig)| {
                names
                    .iter()
                    .map(|n| predicted_n_var(model, p_teacher, s, sig, n))
                    .collect()
            })
            .collect())
    };
    Ok(TheoryCurves {
        times: times.to_vec(),
        names: names.to_vec(),
        spread: curves(&initial_covariance(init, p, p_teacher))?,
        matched: curves(&DMatrix::zeros(len, len))?,
    })
}
