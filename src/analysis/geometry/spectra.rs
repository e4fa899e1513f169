//! Stationary points of the population loss restricted to M = 0 (theory.md §5): the plateau the
//! Hessian spectra of `hdsgd hessian` are taken at is found by
//! [`find_plateau`](crate::analysis::stability::find_plateau) with
//! [`PlateauMethod::Integrate`](crate::analysis::stability::PlateauMethod::Integrate) and the
//! gradient-flow ODE.

use crate::model::Model;
use nalgebra::DMatrix;

/// True for A = aI, V = vI, P = I (the case of the plateau count formula and of q*).
pub fn uniform_layers(model: &Model, p: &DMatrix<f64>) -> bool {
    let v = model.v[0];
    model.v.iter().all(|&x| x == v) && (p - DMatrix::identity(p.nrows(), p.ncols())).amax() < 1e-12
}
