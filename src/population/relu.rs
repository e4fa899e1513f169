//! ReLU activation: e_g from the arc-cosine kernel. (Being written; see the population helper.)

use nalgebra::DMatrix;

/// e_g = ½ Σ_{m,l} c_m c_l E[relu(z_m) relu(z_l)].
pub fn population_error(coef: &[f64], c: &DMatrix<f64>) -> f64 {
    let _ = (coef, c);
    todo!("relu population error")
}
