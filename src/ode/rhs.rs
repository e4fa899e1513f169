//! Right-hand sides of the overlap ODEs (theory.md §4).

use crate::model::{Model, Training};
use crate::overlaps::Overlaps;
use crate::population::{first_order_moments, moments, readout_drift, PopulationError};
use nalgebra::DMatrix;

/// Which terms of the ODE to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OdeVariant {
    /// The full N → ∞ limit of one-pass SGD (η² term included).
    #[default]
    Full,
    /// Gradient flow on the population loss: the η² E[δδᵀ] term dropped (theory.md §5). The limit
    /// of the perfect-learning region κ + δ > 0 of Veiga et al. (2022) in its time unit
    /// (docs/phase_diagram.md).
    GradientFlow,
    /// The η² term alone: dQ/dt = (η/B)² E[δδᵀ], dM/dt = 0 (weight decay dropped with the
    /// first-order term). The limit of the bad-learning band κ < −δ < (κ + 1)/2 of Veiga et al.
    /// (2022) in its time unit t = ν/N^(1+2(κ+δ)), where the first-order term vanishes as
    /// N^(κ+δ) → 0 (docs/phase_diagram.md).
    SecondOrder,
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
    // Gradient flow needs no E[δδᵀ], the costly part of the erf moments.
    let mo = if variant == OdeVariant::GradientFlow {
        first_order_moments(model, &ov.gram())?
    } else {
        moments(model, &ov.gram())?
    };
    let lr = training.eta / training.batch as f64;
    let l2 = training.weight_decay;
    let mut dq = (&mo.delta_lambda + mo.delta_lambda.transpose() - &ov.q * (2.0 * l2)) * lr;
    let mut dm = (&mo.delta_nu - &ov.m * l2) * lr;
    if variant == OdeVariant::SecondOrder {
        dq.fill(0.0);
        dm.fill(0.0);
    }
    if variant != OdeVariant::GradientFlow {
        dq += &mo.delta_delta * (lr * lr);
    }
    Ok((dq, dm))
}

/// da/dt of a trained second layer ([`crate::model::SecondLayerSgd`]) at the model's current a:
///
/// da_i/dt = (η_a/B)(E[r g(λ_i)] − ℓ_a a_i),
///
/// the N → ∞ limit of a_i ← a_i (1 − η_a ℓ_a/N) + (η_a/(BN)) Σ_b r^b g(λ_i^b) at t = samples/N (the
/// step's fluctuations, O(1/N) each, average out like those of Q and M; no η_a² term survives).
/// Empty for a fixed second layer. The a-dependence of dQ/dt and dM/dt is that of [`derivatives`]
/// at the current a (δ_i = a_i g'(λ_i) r).
pub fn readout_derivative(model: &Model, training: &Training, ov: &Overlaps) -> Vec<f64> {
    let Some(sgd) = model.train_a else {
        return vec![];
    };
    let rate = sgd.eta / training.batch as f64;
    readout_drift(model, &ov.gram())
        .iter()
        .zip(&model.a)
        .map(|(e, a)| rate * (e - sgd.weight_decay * a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::population::{monte_carlo::random_spd, population_error, readout_drift};

    fn setup(act: Activation, seed: u64) -> (Model, Overlaps) {
        let model = Model::new(act, vec![0.6, 0.3, -0.2], vec![1.0, 0.4], 0.3);
        (model, Overlaps::from_gram(&random_spd(5, seed), 3))
    }

    /// Along gradient flow the population error decreases at the exact rate
    /// de_g/dt = −η Σ_i E[δ_i z]ᵀ C⁻¹ E[δ_i z] (E[δ_i x] = Uᵀ C⁻¹ E[δ_i z]/√N by Gaussian regression,
    /// and dw_i/dt = η√N E[δ_i x] while ∇_{w_i} e_g = −E[δ_i x]/√N). This ties the e_g closed form to
    /// the moment closed forms: central finite difference of e_g along (dQ, dM), relative 1e-6.
    #[test]
    fn gradient_flow_decreases_eg_at_the_exact_rate() {
        for act in [Activation::Quadratic, Activation::Linear, Activation::Erf] {
            for seed in 0..3 {
                let (model, ov) = setup(act, seed);
                let tr = Training {
                    eta: 0.7,
                    weight_decay: 0.0,
                    batch: 1,
                };
                let (dq, dm) = derivatives(&model, &tr, &ov, OdeVariant::GradientFlow).unwrap();
                let h = 1e-6;
                let shifted = |s: f64| {
                    let o = Overlaps::new(&ov.q + &dq * s, &ov.m + &dm * s, ov.p.clone());
                    population_error(&model, &o.gram())
                };
                let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
                let c = ov.gram();
                let cinv = c.clone().try_inverse().unwrap();
                let mo = moments(&model, &c).unwrap();
                let mut rate = 0.0;
                for i in 0..model.p() {
                    let e = nalgebra::DVector::from_fn(5, |m, _| {
                        if m < 3 {
                            mo.delta_lambda[(i, m)]
                        } else {
                            mo.delta_nu[(i, m - 3)]
                        }
                    });
                    rate -= tr.eta * (e.transpose() * &cinv * &e)[(0, 0)];
                }
                assert!(rate < 0.0);
                assert!(
                    (fd - rate).abs() < 1e-6 * rate.abs(),
                    "{act:?} seed {seed}: {fd} vs {rate}"
                );
            }
        }
    }

    /// Exact structure of the right-hand side: it depends on (η, B) only through η/B; weight decay
    /// adds −(η/B)(2ℓ₂Q, ℓ₂M); the full ODE exceeds gradient flow by (η/B)² E[δδᵀ].
    #[test]
    fn right_hand_side_structure() {
        let (model, ov) = setup(Activation::Quadratic, 7);
        let tr = |eta, weight_decay, batch| Training {
            eta,
            weight_decay,
            batch,
        };
        let d = |t: Training, v| derivatives(&model, &t, &ov, v).unwrap();
        let (a, b) = (
            d(tr(0.4, 0.0, 4), OdeVariant::Full),
            d(tr(0.1, 0.0, 1), OdeVariant::Full),
        );
        assert!((&a.0 - &b.0).amax() < 1e-12 && (&a.1 - &b.1).amax() < 1e-12);
        let wd = d(tr(0.4, 0.5, 4), OdeVariant::Full);
        assert!((&wd.0 - (&a.0 - &ov.q * (0.1 * 2.0 * 0.5))).amax() < 1e-12);
        assert!((&wd.1 - (&a.1 - &ov.m * (0.1 * 0.5))).amax() < 1e-12);
        let gf = d(tr(0.4, 0.0, 4), OdeVariant::GradientFlow);
        let dd = moments(&model, &ov.gram()).unwrap().delta_delta;
        assert!((&a.0 - &gf.0 - &dd * 0.01).amax() < 1e-12);
        // The second-order variant is the rest of the full ODE: Full = GradientFlow + SecondOrder
        // (weight decay belongs to the first-order part), and M does not move.
        let so = d(tr(0.4, 0.5, 4), OdeVariant::SecondOrder);
        assert!((&so.0 - dd * 0.01).amax() < 1e-12 && so.1.amax() == 0.0);
    }

    /// E[r g(λ_i)] is −∂e_g/∂a_i (the label noise has mean zero): central finite differences of the
    /// closed-form e_g in a_i, relative 1e-7, for every activation with an ODE. Together with the
    /// Monte-Carlo check of each activation's file this ties the drift of a to both e_g and samples.
    #[test]
    fn readout_drift_is_minus_the_gradient_of_eg() {
        for act in [Activation::Quadratic, Activation::Linear, Activation::Erf] {
            for seed in 0..3 {
                let (model, ov) = setup(act, seed);
                let c = ov.gram();
                let drift = readout_drift(&model, &c);
                for (i, d) in drift.iter().enumerate() {
                    let h = 1e-6;
                    let eg = |s: f64| {
                        let mut m = model.clone();
                        m.a[i] += s;
                        population_error(&m, &c)
                    };
                    let fd = (eg(h) - eg(-h)) / (2.0 * h);
                    assert!(
                        (fd + d).abs() < 1e-7 * (1.0 + d.abs()),
                        "{act:?} seed {seed} a_{i}: {fd} vs {d}"
                    );
                }
            }
        }
    }

    /// da/dt = (η_a/B)(E[r g(λ)] − ℓ_a a) for a trained layer, empty for a fixed one; and dQ/dt, dM/dt
    /// of a trained layer are those of the fixed layer at the current a.
    #[test]
    fn readout_derivative_structure() {
        let (model, ov) = setup(Activation::Erf, 4);
        let tr = Training {
            eta: 0.6,
            weight_decay: 0.1,
            batch: 3,
        };
        assert!(readout_derivative(&model, &tr, &ov).is_empty());
        let sgd = crate::model::SecondLayerSgd {
            eta: 0.9,
            weight_decay: 0.25,
        };
        let trained = model.clone().with_trained_a(sgd);
        let da = readout_derivative(&trained, &tr, &ov);
        let drift = readout_drift(&model, &ov.gram());
        for i in 0..3 {
            let expect = 0.9 / 3.0 * (drift[i] - 0.25 * model.a[i]);
            assert!((da[i] - expect).abs() < 1e-15);
        }
        let d = |m: &Model| derivatives(m, &tr, &ov, OdeVariant::Full).unwrap();
        assert_eq!(d(&model), d(&trained));
    }
}
