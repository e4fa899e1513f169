//! Stationary points of the population loss restricted to M = 0 (theory.md §5): the plateau the
//! Hessian spectra of `hdsgd hessian` are taken at.

use crate::model::{Model, Training};
use crate::ode::{derivatives, integrate, OdeOptions, OdeVariant};
use crate::overlaps::Overlaps;
use anyhow::{Context, Result};
use nalgebra::DMatrix;

/// The plateau of the ODE `variant` from (Q₀, M = 0) (M = 0 is invariant): integrates until
/// max|dQ/dt| < `tol` (or t = 1e7). Returns the overlaps and the final max|dQ/dt|. With
/// [`OdeVariant::GradientFlow`] this is the stationary point of e_g restricted to M = 0.
pub fn plateau(
    model: &Model,
    training: &Training,
    q0: &DMatrix<f64>,
    p: &DMatrix<f64>,
    variant: OdeVariant,
    tol: f64,
) -> Result<(Overlaps, f64)> {
    let start = Overlaps::new(q0.clone(), DMatrix::zeros(q0.nrows(), p.nrows()), p.clone());
    let opts = OdeOptions {
        rtol: 1e-12,
        atol: 1e-14,
        variant,
        ..OdeOptions::default()
    };
    let rate = |ov: &Overlaps| {
        derivatives(model, training, ov, variant)
            .map(|(dq, _)| dq.amax())
            .unwrap_or(f64::NAN)
    };
    let mut last: Option<Overlaps> = None;
    let sol = integrate(model, training, &start, &[0.0, 1e7], &opts, |_, ov: &Overlaps| {
        let stop = rate(ov) < tol;
        if stop {
            last = Some(ov.clone());
        }
        stop
    })?;
    let ov = match last {
        Some(ov) => ov,
        None => sol
            .overlaps
            .last()
            .cloned()
            .context("plateau integration produced nothing")?,
    };
    let r = rate(&ov);
    Ok((ov, r))
}

/// True for A = aI, V = vI, P = I (the case of the plateau count formula and of q*).
pub fn uniform_layers(model: &Model, p: &DMatrix<f64>) -> bool {
    let v = model.v[0];
    model.v.iter().all(|&x| x == v) && (p - DMatrix::identity(p.nrows(), p.ncols())).amax() < 1e-12
}
