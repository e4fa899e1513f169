//! Solution selection on the zero-loss manifold (theory.md §5): how far SGD moves the student,
//! ‖W∞ − W₀‖²_F/N, against the smallest possible move onto the manifold {W : WᵀAW = W*ᵀVW*}.
//!
//! # Reduction to orthogonal Procrustes in overlap space
//! For A = aI (a > 0), V = diag(v) (v_k > 0) and p ≥ p*, put S = (V/a)^{1/2} W* (p* × N, full row
//! rank). Then WᵀW = SᵀS iff W = RS with R (p × p*) having orthonormal columns (RᵀR = I): both have
//! the same row space, R = WS⁺, and SᵀRᵀRS = SᵀS forces RᵀR = I. So
//!
//!   ‖W₀ − RS‖²_F/N = tr Q₀ + tr((V/a)^{1/2} P (V/a)^{1/2}) − 2 tr(Rᵀ X),   X = W₀Sᵀ/N = M₀ (V/a)^{1/2},
//!
//! and max over RᵀR = I of tr(RᵀX) is the nuclear norm ‖X‖_* (sum of singular values), attained at
//! the polar factor R = UWᵀ of the thin SVD X = UΣWᵀ (orthogonal Procrustes; Schönemann 1966). Hence
//!
//!   d²_min = tr Q₀ + tr(VP)/a − 2 ‖M₀ (V/a)^{1/2}‖_*,
//!
//! a function of the initial overlaps only, and the closest solution has overlaps
//! M_sel = R (V/a)^{1/2} P, Q_sel = R (V/a)^{1/2} P (V/a)^{1/2} Rᵀ ([`selected_solution`]).
//! For V = vI, P = I this is M_sel = √(v/a)·polar(M₀), the end point of the ODE from an isotropic start.

use super::conserved::check_model;
use super::GeometryError;
use crate::model::Model;
use crate::overlaps::Overlaps;
use nalgebra::DMatrix;

/// (V/a)^{1/2} after checking the conditions of the reduction (module docs).
fn scale(model: &Model) -> Result<DMatrix<f64>, GeometryError> {
    let a = check_model(model)?;
    if a <= 0.0 {
        return Err(GeometryError::field("model.a", "solution selection needs a > 0"));
    }
    if model.v.iter().any(|&v| v <= 0.0) {
        return Err(GeometryError::field(
            "model.v",
            "solution selection needs every v_k > 0",
        ));
    }
    if model.p() < model.p_star() {
        return Err(GeometryError::field(
            "model.p",
            "the zero-loss manifold WᵀAW = W*ᵀVW* is empty for p < p*",
        ));
    }
    let k = model.p_star();
    Ok(DMatrix::from_fn(k, k, |i, j| {
        if i == j {
            (model.v[i] / a).sqrt()
        } else {
            0.0
        }
    }))
}

/// d²_min = tr Q₀ + tr(VP)/a − 2‖M₀(V/a)^{1/2}‖_*: the minimum of ‖W − W₀‖²_F/N over the zero-loss
/// manifold (module docs).
///
/// ```
/// use hdsgd::{analysis::geometry::selection::procrustes_minimum, model::{Activation, Model}, overlaps::Overlaps};
/// use nalgebra::DMatrix;
/// // p = p* = 1, a = v = 1, P = 1: the manifold is w = ±w*, and from Q₀ = 1, M₀ = 0.6 the closest
/// // point is w*: ‖w₀ − w*‖²/N = 1 + 1 − 2·0.6.
/// let model = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
/// let one = DMatrix::identity(1, 1);
/// let ov = Overlaps::new(one.clone(), DMatrix::from_element(1, 1, 0.6), one);
/// assert!((procrustes_minimum(&ov, &model).unwrap() - 0.8).abs() < 1e-14);
/// ```
pub fn procrustes_minimum(ov0: &Overlaps, model: &Model) -> Result<f64, GeometryError> {
    let s = scale(model)?;
    let a = model.a[0];
    let tr_vp: f64 = (0..model.p_star()).map(|k| model.v[k] * ov0.p[(k, k)]).sum();
    let nuclear: f64 = (&ov0.m * s).singular_values().sum();
    Ok(ov0.q.trace() + tr_vp / a - 2.0 * nuclear)
}

/// The Procrustes rotation R (p × p*, RᵀR = I) of the closest solution W_sel = R (V/a)^{1/2} W*.
pub fn procrustes_rotation(ov0: &Overlaps, model: &Model) -> Result<DMatrix<f64>, GeometryError> {
    let s = scale(model)?;
    let x = &ov0.m * s;
    let svd = x.svd(true, true);
    match (svd.u, svd.v_t) {
        (Some(u), Some(vt)) => Ok(u * vt),
        _ => Err(GeometryError::Degenerate("SVD failed".into())),
    }
}

/// Overlaps of the closest zero-loss solution to the start `ov0`: M = R(V/a)^{1/2}P,
/// Q = R(V/a)^{1/2}P(V/a)^{1/2}Rᵀ (module docs). When M₀ is rank deficient the rotation is not
/// unique and one minimiser is returned.
pub fn selected_solution(ov0: &Overlaps, model: &Model) -> Result<Overlaps, GeometryError> {
    let s = scale(model)?;
    let r = procrustes_rotation(ov0, model)?;
    let m = &r * &s * &ov0.p;
    let q = &r * &s * &ov0.p * &s * r.transpose();
    Ok(Overlaps::new((&q + q.transpose()) * 0.5, m, ov0.p.clone()))
}

/// ‖W − W₀‖²_F / N for two p × N weight matrices (row-major `ndarray` views, as the direct simulator
/// exposes them).
pub fn distance2(w0: ndarray::ArrayView2<f64>, w: ndarray::ArrayView2<f64>) -> f64 {
    let n = w.ncols() as f64;
    w0.iter().zip(w.iter()).map(|(x, y)| (y - x) * (y - x)).sum::<f64>() / n
}

/// The Procrustes-selected weights W_sel = R (V/a)^{1/2} W* for a start W₀ (p × N), computed from
/// the weights (for tests and for the distance of the end point to the selected solution).
pub fn selected_weights(
    w0: ndarray::ArrayView2<f64>,
    w_star: ndarray::ArrayView2<f64>,
    model: &Model,
) -> Result<ndarray::Array2<f64>, GeometryError> {
    let ov0 = Overlaps::from_weights(w0, w_star);
    let s = scale(model)?;
    let rs = procrustes_rotation(&ov0, model)? * s; // p × p*
    let (p, n) = w0.dim();
    Ok(ndarray::Array2::from_shape_fn((p, n), |(i, al)| {
        (0..model.p_star()).map(|k| rs[(i, k)] * w_star[(k, al)]).sum()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{student_weights, teacher_weights, TeacherInit};
    use crate::model::Activation;
    use crate::population::population_error;
    use rand::SeedableRng;

    /// The overlap formula equals the weight-space distance to W_sel, W_sel has zero loss, and no
    /// other point R'S of the manifold (random Stiefel R') is closer.
    #[test]
    fn procrustes_reduction_holds_on_weights() {
        let model = Model::new(Activation::Quadratic, vec![0.25; 3], vec![1.0, 0.5], 0.0);
        let mut rng = crate::rng::SimRng::seed_from_u64(5);
        let n = 40;
        let ws = teacher_weights(&mut rng, 2, n, TeacherInit::Gaussian);
        let w0 = student_weights(&mut rng, 3, n, 1.0);
        let ov0 = Overlaps::from_weights(w0.view(), ws.view());
        let dmin = procrustes_minimum(&ov0, &model).unwrap();
        let wsel = selected_weights(w0.view(), ws.view(), &model).unwrap();
        assert!((distance2(w0.view(), wsel.view()) - dmin).abs() < 1e-12);
        let ov_sel = Overlaps::from_weights(wsel.view(), ws.view());
        // e_g = ½τ² + tr(KCKC) cancels O(1) terms: zero up to rounding (~1e-16 per term).
        assert!(population_error(&model, &ov_sel.gram()).abs() < 1e-12);
        let expect = selected_solution(&ov0, &model).unwrap();
        assert!((ov_sel.gram() - expect.gram()).amax() < 1e-12);
        let s = scale(&model).unwrap();
        for trial in 0..50 {
            let mut r = crate::rng::SimRng::seed_from_u64(100 + trial);
            let g = student_weights(&mut r, 3, 2, 1.0);
            let gm = DMatrix::from_fn(3, 2, |i, j| g[(i, j)]);
            let rr = gm.qr().q(); // 3 × 2 orthonormal columns
            let rs = rr * &s;
            let w = ndarray::Array2::from_shape_fn((3, n), |(i, al)| (0..2).map(|k| rs[(i, k)] * ws[(k, al)]).sum());
            assert!(distance2(w0.view(), w.view()) >= dmin - 1e-12);
        }
    }
}
