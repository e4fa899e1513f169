//! Right-hand sides of the overlap ODEs (theory.md §4).

use crate::model::{Model, Training};
use crate::overlaps::Overlaps;
use crate::population::{moments, PopulationError};
use nalgebra::DMatrix;

/// Which terms of the ODE to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OdeVariant {
    /// The full N → ∞ limit of one-pass SGD (η² term included).
    #[default]
    Full,
    /// Gradient flow on the population loss: the η² E[δδᵀ] term dropped (theory.md §5).
    GradientFlow,
}

/// dQ/dt and dM/dt at the given overlaps:
///
/// dQ/dt = (η/B)(E[δλᵀ] + E[λδᵀ] − 2ℓ₂Q) + (η²/B²) E[δδᵀ],
/// dM/dt = (η/B)(E[δνᵀ] − ℓ₂M).
///
/// ```
/// use hdsgd::{model::{Activation, Model, Training}, overlaps::Overlaps, ode::{derivatives, OdeVariant}};
/// use nalgebra::DMatrix;
/// // At the teacher (M = Q = P = 1, p = p* = 1, no noise) nothing moves.
/// let model = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
/// let tr = Training { eta: 0.1, weight_decay: 0.0, batch: 1 };
/// let one = DMatrix::identity(1, 1);
/// let (dq, dm) = derivatives(&model, &tr, &Overlaps::new(one.clone(), one.clone(), one), OdeVariant::Full).unwrap();
/// assert!(dq[(0, 0)].abs() < 1e-14 && dm[(0, 0)].abs() < 1e-14);
/// ```
pub fn derivatives(
    model: &Model,
    training: &Training,
    ov: &Overlaps,
    variant: OdeVariant,
) -> Result<(DMatrix<f64>, DMatrix<f64>), PopulationError> {
    let mo = moments(model, &ov.gram())?;
    let lr = training.eta / training.batch as f64;
    let l2 = training.weight_decay;
    let mut dq = (&mo.delta_lambda + mo.delta_lambda.transpose() - &ov.q * (2.0 * l2)) * lr;
    if variant == OdeVariant::Full {
        dq += &mo.delta_delta * (lr * lr);
    }
    let dm = (&mo.delta_nu - &ov.m * l2) * lr;
    Ok((dq, dm))
}
