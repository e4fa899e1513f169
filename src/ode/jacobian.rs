//! The right-hand side of the overlap ODEs on the state vector and its Jacobian J = ∂f/∂s, shared by
//! the plateau stability analysis (`analysis::stability`) and the linear-noise approximation
//! ([`super::lna`]).

use super::{derivatives, OdeVariant};
use crate::model::{Model, Training};
use crate::overlaps::Overlaps;
use crate::population::PopulationError;
use nalgebra::{DMatrix, DVector};

/// The right-hand side of the ODE as a function of the state vector.
pub fn rhs_state(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    p_teacher: &DMatrix<f64>,
    state: &DVector<f64>,
) -> Result<DVector<f64>, PopulationError> {
    let ov = Overlaps::from_state(state, p_teacher);
    let (dq, dm) = derivatives(model, training, &ov, variant)?;
    Ok(Overlaps::new(dq, dm, p_teacher.clone()).to_state())
}

/// The Jacobian of the ODE's right-hand side at `ov`, in state coordinates, by central
/// differences: J_ij = (F_i(x + h_j e_j) − F_i(x − h_j e_j))/(2h_j), h_j = rel_step·max(1, |x_j|)
/// (error O(h²) + O(ε/h); see [`PlateauOptions::fd_step`]).
///
/// ```
/// use hdsgd::{ode::jacobian, model::{Activation, Model, Training}, overlaps::Overlaps, ode::OdeVariant};
/// use nalgebra::DMatrix;
/// let model = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
/// let tr = Training { eta: 0.1, weight_decay: 0.0, batch: 1 };
/// // At the teacher (q = m = 1) both eigenvalues are negative.
/// let ov = Overlaps::new(DMatrix::identity(1, 1), DMatrix::identity(1, 1), DMatrix::identity(1, 1));
/// let j = jacobian(&model, &tr, OdeVariant::Full, &ov, 1e-5).unwrap();
/// assert!(j.complex_eigenvalues().iter().all(|l| l.re < 0.0));
/// ```
pub fn jacobian(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    ov: &Overlaps,
    rel_step: f64,
) -> Result<DMatrix<f64>, PopulationError> {
    let x = ov.to_state();
    let d = x.len();
    let mut j = DMatrix::zeros(d, d);
    for c in 0..d {
        let h = rel_step * x[c].abs().max(1.0);
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp[c] += h;
        xm[c] -= h;
        let fp = rhs_state(model, training, variant, &ov.p, &xp)?;
        let fm = rhs_state(model, training, variant, &ov.p, &xm)?;
        j.set_column(c, &((fp - fm) / (xp[c] - xm[c])));
    }
    Ok(j)
}
