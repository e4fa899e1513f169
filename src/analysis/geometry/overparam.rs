//! Over-parameterisation study (issue 6 item 4; theory.md §5–6): plateau-escape times of the
//! quadratic network for several student widths p at fixed teacher, against the linear-stability
//! prediction of the slope of the mean escape time in ln N.
//!
//! A small, self-contained escape measurement (the general `hdsgd escape` command is another
//! module's): a run escapes at the first recorded time where e_g < f·e_plateau (linear
//! interpolation of ln e_g between records), e_plateau the population error at the plateau of the
//! *full* ODE started from (Q₀ = σ₀²I, M = 0) (M = 0 is invariant). Linearising dM/dt around that
//! plateau, M ↦ K̂M + 4η̄a MVP with K̂ = 2η̄a(τI − 2aQ) − η̄ℓ₂I (exactly linear in M since τ and the
//! η² term do not enter dM/dt), so the growth rate is μ = λ_max(K̂) + 4η̄a λ_max(VP) and
//! t_esc ≈ ln N/(2μ) + const (theory.md §6): the predicted slope is 1/(2μ), and the predicted
//! standard deviation over seeds √ψ′(pp*/2)/(2μ) (ψ′ = [`trigamma`]) does not depend on N.
//!
//! With `[geometry] widths = [...]` the study reruns the experiment for each width p (the student
//! second layer resolved for that p from `model.a`: use "ones" to hold ηa, hence μ, fixed).

use super::spectra::plateau;
use crate::model::{Model, Training};
use crate::ode::OdeVariant;
use crate::overlaps::Overlaps;
use crate::population::population_error;
use anyhow::Result;
use nalgebra::DMatrix;

/// First time a series of (t, e_g) falls below `threshold`, interpolating ln e_g linearly between
/// the two records around the crossing; `None` if it never does.
///
/// ```
/// use hdsgd::analysis::geometry::overparam::crossing_time;
/// let t = crossing_time(&[(0.0, 2.0), (1.0, 1.0), (2.0, 0.25)], 0.5).unwrap();
/// assert!((t - 1.5).abs() < 1e-12);
/// ```
pub fn crossing_time(series: &[(f64, f64)], threshold: f64) -> Option<f64> {
    let k = series.iter().position(|&(_, e)| e < threshold)?;
    if k == 0 {
        return Some(series[0].0);
    }
    let ((t0, e0), (t1, e1)) = (series[k - 1], series[k]);
    if e0 > 0.0 && e1 > 0.0 {
        let f = (e0.ln() - threshold.ln()) / (e0.ln() - e1.ln());
        Some(t0 + f * (t1 - t0))
    } else {
        Some(t1)
    }
}

/// The plateau of the full ODE from (σ₀²I, 0), its e_g and the growth rate μ of M there (module docs).
pub fn plateau_rate(
    model: &Model,
    training: &Training,
    sigma0: f64,
    p_teacher: &DMatrix<f64>,
) -> Result<(Overlaps, f64, f64)> {
    let p = model.p();
    let q0 = DMatrix::identity(p, p) * (sigma0 * sigma0).max(1e-3);
    let (ov, _) = plateau(model, training, &q0, p_teacher, OdeVariant::Full, 1e-12)?;
    let eg = population_error(model, &ov.gram());
    let lr = training.eta / training.batch as f64;
    let a = model.a[0];
    let tau: f64 = (0..model.p_star()).map(|k| model.v[k] * ov.p[(k, k)]).sum::<f64>() - a * ov.q.trace();
    let k_hat = (DMatrix::identity(p, p) * tau - &ov.q * (2.0 * a)) * (2.0 * lr * a)
        - DMatrix::identity(p, p) * (lr * training.weight_decay);
    let k_max = k_hat.symmetric_eigenvalues().max();
    // VP = V^{1/2}(V^{1/2}PV^{1/2})V^{−1/2} for v > 0: real eigenvalues, those of the symmetric middle.
    let ks = model.p_star();
    let sv: Vec<f64> = model.v.iter().map(|v| v.max(0.0).sqrt()).collect();
    let mid = DMatrix::from_fn(ks, ks, |i, j| sv[i] * p_teacher[(i, j)] * sv[j]);
    let mu = k_max + 4.0 * lr * a * mid.symmetric_eigenvalues().max();
    Ok((ov, eg, mu))
}

/// The trigamma function ψ′(x) = Σ_{k≥0} 1/(x + k)² for x > 0: recurrence ψ′(x) = ψ′(x + 1) + 1/x² up
/// to x ≥ 10, then the asymptotic series 1/x + 1/(2x²) + 1/(6x³) − 1/(30x⁵) + 1/(42x⁷) − 1/(30x⁹)
/// (Abramowitz & Stegun 6.4.12; error < 1e-12 at x ≥ 10).
///
/// ```
/// use hdsgd::analysis::geometry::overparam::trigamma;
/// let pi2 = std::f64::consts::PI.powi(2);
/// assert!((trigamma(1.0) - pi2 / 6.0).abs() < 1e-12);
/// assert!((trigamma(0.5) - pi2 / 2.0).abs() < 1e-12);
/// ```
pub fn trigamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 10.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let (x2, x3) = (x * x, x * x * x);
    let x5 = x3 * x2;
    acc + 1.0 / x + 1.0 / (2.0 * x2) + 1.0 / (6.0 * x3) - 1.0 / (30.0 * x5) + 1.0 / (42.0 * x5 * x2)
        - 1.0 / (30.0 * x5 * x2 * x2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    /// Uniform layers, η → 0 limit of theory.md §5: the plateau is Q = q*I with
    /// q* = v p*/(a(p + 2)) and μ → 4ηav. At η = 1e-3 the η² corrections are O(η) relative.
    #[test]
    fn plateau_rate_matches_the_small_eta_theory() {
        for p in [1usize, 2, 4] {
            let model = Model::new(Activation::Quadratic, vec![1.0; p], vec![1.0], 0.0);
            let tr = Training {
                eta: 1e-3,
                weight_decay: 0.0,
                batch: 1,
            };
            let (ov, _, mu) = plateau_rate(&model, &tr, 1.0, &DMatrix::identity(1, 1)).unwrap();
            let q_star = 1.0 / (p as f64 + 2.0);
            assert!((ov.q[(0, 0)] - q_star).abs() < 1e-2 * q_star, "p {p}: {}", ov.q[(0, 0)]);
            assert!((mu / 4e-3 - 1.0).abs() < 1e-2, "p {p}: μ = {mu}");
        }
    }
}
