//! Over-parameterisation study (issue 6 item 4; theory.md §5–6): plateau-escape times of the
//! quadratic network for several student widths p at fixed teacher, against the linear-stability
//! prediction of the slope of the mean escape time in ln N.
//!
//! The escape measurement is the escape rule of [`crate::analysis::escape`] with the crossing
//! [`Crossing::FIRST_BELOW_LOG`](crate::analysis::escape::Crossing::FIRST_BELOW_LOG): a run escapes
//! at the first recorded time where e_g < f·e_plateau (linear interpolation of ln e_g between
//! records, no wait for the plateau), e_plateau the population error at the plateau of the *full*
//! ODE started from (Q₀ = σ₀²I, M = 0) (M = 0 is invariant;
//! [`PlateauMethod::Integrate`]). μ is the closed form [`GrowthRate::ClosedForm`] at that plateau
//! and t_esc ≈ ln N/(2μ) + const (theory.md §6): the predicted slope is 1/(2μ), and the predicted
//! standard deviation over seeds [`escape_time_sd`](crate::analysis::escape::escape_time_sd)
//! = √ψ′(pp*/2)/(2μ) does not depend on N.
//!
//! With `[geometry] widths = [...]` the study reruns the experiment for each width p (the student
//! second layer resolved for that p from `model.a`: use "ones" to hold ηa, hence μ, fixed).

use crate::analysis::stability::{find_plateau, growth_rate, GrowthRate, PlateauMethod};
use crate::model::{Model, Training};
use crate::ode::OdeVariant;
use crate::overlaps::Overlaps;
use anyhow::Result;
use nalgebra::DMatrix;

/// The plateau of the full ODE from (σ₀²I, 0), its e_g and the growth rate μ of M there (module docs).
pub fn plateau_rate(
    model: &Model,
    training: &Training,
    sigma0: f64,
    p_teacher: &DMatrix<f64>,
) -> Result<(Overlaps, f64, f64)> {
    let p = model.p();
    let q0 = DMatrix::identity(p, p) * (sigma0 * sigma0).max(1e-3);
    let start = Overlaps::new(q0, DMatrix::zeros(p, p_teacher.nrows()), p_teacher.clone());
    let method = PlateauMethod::Integrate { tol: 1e-12 };
    let plateau = find_plateau(model, training, OdeVariant::Full, &start, &method)?;
    let mu = growth_rate(model, training, &plateau.overlaps, GrowthRate::ClosedForm)?;
    Ok((plateau.overlaps, plateau.eg, mu))
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
