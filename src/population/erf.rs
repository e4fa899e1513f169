//! erf activation g(z) = erf(z/√2): Saad–Solla integrals I2, I3, I4, J2 (theory.md §4).
//! (Being written; see the population helper.)

use super::Moments;
use crate::model::Model;
use nalgebra::DMatrix;

/// e_g = ½ Σ_{m,l} c_m c_l I2(z_m, z_l).
pub fn population_error(coef: &[f64], c: &DMatrix<f64>) -> f64 {
    let _ = (coef, c);
    todo!("erf population error")
}

/// The ODE moments for erf.
pub fn moments(model: &Model, c: &DMatrix<f64>) -> Moments {
    let _ = (model, c);
    todo!("erf moments")
}
