//! Population averages over one fresh sample, as functions of the Gram matrix C alone (theory.md §3–4).
//!
//! For z = (λ, ν) ~ N(0, C) and δ_i = a_i g'(λ_i) r, r = y − ŷ = Σ_m c_m g(z_m) + √Δ ξ with c = (−a, v):
//! * e_g = ½ E[(y − ŷ)²] without the label noise (the noise adds Δ/2 to the population loss),
//! * the [`Moments`] E[δλᵀ], E[δνᵀ] and E[δδᵀ] that drive the overlap ODEs.
//!
//! Each activation has its own file with its closed forms: [`quadratic`] (Wick/Isserlis),
//! [`linear`], [`erf`] (Saad–Solla integrals), [`relu`] (arc-cosine kernel; e_g only).
//! [`fluctuations`] has the per-sample covariance D of the linear-noise approximation, computed
//! with the exact Gaussian moment engine [`gaussian`].

pub mod erf;
pub mod fluctuations;
pub mod gaussian;
pub mod linear;
pub mod quadratic;
pub mod relu;

use crate::model::{Activation, Model};
use nalgebra::DMatrix;

/// The averages that enter the overlap ODEs (theory.md §4).
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// E[δ_i λ_j] (p×p, not symmetric in general).
    pub delta_lambda: DMatrix<f64>,
    /// E[δ_i ν_k] (p×p*).
    pub delta_nu: DMatrix<f64>,
    /// E[δ_i δ_j] (p×p), label noise included.
    pub delta_delta: DMatrix<f64>,
}

/// Errors of population averages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PopulationError {
    /// The activation has no closed-form moments implemented.
    #[error("the overlap ODE is not available for activation `{0}` (simulation only)")]
    Unsupported(&'static str),
}

/// Population error e_g(C) = ½ E[(Σ_m c_m g(z_m))²], z ~ N(0, C), label noise excluded.
///
/// ```
/// use hdsgd::{model::{Activation, Model}, population::population_error};
/// use nalgebra::DMatrix;
/// // theory.md §4 check: p = p* = 1, a = v = 1, Q = P = 1; M = 1 gives 0, M = 0 gives 2.
/// let m = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
/// let c = |mm: f64| DMatrix::from_row_slice(2, 2, &[1.0, mm, mm, 1.0]);
/// assert!(population_error(&m, &c(1.0)).abs() < 1e-14);
/// assert!((population_error(&m, &c(0.0)) - 2.0).abs() < 1e-14);
/// ```
pub fn population_error(model: &Model, c: &DMatrix<f64>) -> f64 {
    let coef = model.signed_coefficients();
    match model.activation {
        Activation::Quadratic => quadratic::population_error(&coef, c),
        Activation::Linear => linear::population_error(&coef, c),
        Activation::Erf => erf::population_error(&coef, c),
        Activation::Relu => relu::population_error(&coef, c),
    }
}

/// E[g(z_m) g(z_l)] for z ~ N(0, C): the output kernel, in closed form for every activation
/// (quadratic: C_mm C_ll + 2 C_ml² by Isserlis; linear: C_ml; erf: I2(z_m, z_l); ReLU: the
/// arc-cosine kernel). e_g = ½ cᵀKc with c = (−a, v).
pub fn output_kernel(activation: Activation, c: &DMatrix<f64>, m: usize, l: usize) -> f64 {
    let cov = [[c[(m, m)], c[(m, l)]], [c[(l, m)], c[(l, l)]]];
    match activation {
        Activation::Quadratic => cov[0][0] * cov[1][1] + 2.0 * cov[0][1] * cov[0][1],
        Activation::Linear => cov[0][1],
        Activation::Erf => erf::i2(&cov),
        Activation::Relu => relu::relu_kernel(&cov),
    }
}

/// E[r g(λ_i)] for i < p, the drift of a trained second layer (theory.md §2, [`crate::model::SecondLayerSgd`]):
/// with r = Σ_m c_m g(z_m) + √Δ ξ, c = (−a, v), it is Σ_m c_m E[g(λ_i) g(z_m)] (the label noise has
/// mean zero and is independent of z), so da_i/dt = (η_a/B)(E[r g(λ_i)] − ℓ_a a_i) needs only the
/// [`output_kernel`]. Also −∂e_g/∂a_i.
///
/// ```
/// use hdsgd::{model::{Activation, Model}, population::readout_drift};
/// use nalgebra::DMatrix;
/// // Linear, p = p* = 1, a = 0.5, v = 1, Q = M = P = 1: E[(λ − 0.5λ) λ] = 0.5.
/// let m = Model::new(Activation::Linear, vec![0.5], vec![1.0], 0.0);
/// assert!((readout_drift(&m, &DMatrix::from_element(2, 2, 1.0))[0] - 0.5).abs() < 1e-15);
/// ```
pub fn readout_drift(model: &Model, c: &DMatrix<f64>) -> Vec<f64> {
    let coef = model.signed_coefficients();
    (0..model.p())
        .map(|i| {
            coef.iter()
                .enumerate()
                .map(|(m, cm)| cm * output_kernel(model.activation, c, i, m))
                .sum()
        })
        .collect()
}

/// The ODE moments at Gram matrix C (see [`Moments`]).
pub fn moments(model: &Model, c: &DMatrix<f64>) -> Result<Moments, PopulationError> {
    match model.activation {
        Activation::Quadratic => Ok(quadratic::moments(model, c)),
        Activation::Linear => Ok(linear::moments(model, c)),
        Activation::Erf => Ok(erf::moments(model, c)),
        Activation::Relu => Err(PopulationError::Unsupported("relu")),
    }
}

/// [`moments`] without E[δδᵀ] (left at zero), for the first-order (gradient-flow) ODE: for erf it
/// skips the O(p²(p+p*)²) I4 sum ([`erf::first_order_moments`]); the other closed forms are cheap
/// and computed whole.
pub fn first_order_moments(model: &Model, c: &DMatrix<f64>) -> Result<Moments, PopulationError> {
    match model.activation {
        Activation::Erf => Ok(erf::first_order_moments(model, c)),
        _ => moments(model, c).map(|m| Moments {
            delta_delta: DMatrix::zeros(model.p(), model.p()),
            ..m
        }),
    }
}

/// Whether [`moments`] (hence the ODE) is available for this activation.
pub fn has_ode(activation: Activation) -> bool {
    !matches!(activation, Activation::Relu)
}

/// Monte-Carlo estimates of e_g and the [`Moments`] with their standard errors, for tests of the
/// closed forms: `samples` draws of z = L g (L Lᵀ = C) and ξ.
#[doc(hidden)]
pub mod monte_carlo {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_distr::StandardNormal;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Mean and standard error of each entry of a matrix-valued random variable.
    pub struct Estimate {
        pub mean: DMatrix<f64>,
        pub se: DMatrix<f64>,
    }

    /// Estimates (e_g as 1×1, E[δλᵀ], E[δνᵀ], E[δδᵀ], E[r g(λ)] as p×1), label noise drawn.
    pub fn estimate(model: &Model, c: &DMatrix<f64>, samples: usize, seed: u64) -> [Estimate; 5] {
        let (p, k) = (model.p(), model.p_star());
        let l = c.clone().cholesky().expect("C must be positive definite").l();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let shapes = [(1, 1), (p, p), (p, k), (p, p), (p, 1)];
        let mut sum: Vec<DMatrix<f64>> = shapes.iter().map(|&(r, c)| DMatrix::zeros(r, c)).collect();
        let mut sum2 = sum.clone();
        let g = model.activation;
        let mut z = vec![0.0; p + k];
        let mut delta = vec![0.0; p];
        for _ in 0..samples {
            let u: Vec<f64> = (0..p + k).map(|_| rng.sample(StandardNormal)).collect();
            for (i, zi) in z.iter_mut().enumerate() {
                *zi = (0..=i).map(|j| l[(i, j)] * u[j]).sum();
            }
            let xi: f64 = rng.sample(StandardNormal);
            let r0 = model.teacher_output(&z[p..]) - model.student_output(&z[..p]);
            let r = r0 + model.noise.sqrt() * xi;
            for i in 0..p {
                delta[i] = model.a[i] * g.dg(z[i]) * r;
            }
            let vals = [
                DMatrix::from_element(1, 1, 0.5 * r0 * r0),
                DMatrix::from_fn(p, p, |i, j| delta[i] * z[j]),
                DMatrix::from_fn(p, k, |i, j| delta[i] * z[p + j]),
                DMatrix::from_fn(p, p, |i, j| delta[i] * delta[j]),
                DMatrix::from_fn(p, 1, |i, _| r * g.g(z[i])),
            ];
            for (s, (s2, v)) in sum.iter_mut().zip(sum2.iter_mut().zip(vals)) {
                *s += &v;
                *s2 += v.component_mul(&v);
            }
        }
        let n = samples as f64;
        let mut out = sum.into_iter().zip(sum2).map(|(s, s2)| {
            let mean = s / n;
            let var = s2 / n - mean.component_mul(&mean);
            let se = var.map(|v| (v.max(0.0) / (n - 1.0)).sqrt());
            Estimate { mean, se }
        });
        [(); 5].map(|_| out.next().unwrap())
    }

    /// A random symmetric positive-definite matrix C = B Bᵀ/d + ε I of size `d`, for tests.
    pub fn random_spd(d: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let b = DMatrix::from_fn(d, d, |_, _| rng.sample::<f64, _>(StandardNormal));
        &b * b.transpose() / d as f64 + DMatrix::identity(d, d) * 0.2
    }

    /// Asserts that the closed-form e_g and [`Moments`] of `model` at `c` agree with a Monte-Carlo
    /// estimate from `samples` draws (seed `seed`) within `k` standard errors per entry.
    pub fn assert_closed_forms_match(model: &Model, c: &DMatrix<f64>, samples: usize, seed: u64, k: f64) {
        let est = estimate(model, c, samples, seed);
        let m = super::moments(model, c).expect("closed-form moments");
        let eg = DMatrix::from_element(1, 1, super::population_error(model, c));
        assert_within("e_g", &eg, &est[0], k);
        assert_within("E[δλ]", &m.delta_lambda, &est[1], k);
        assert_within("E[δν]", &m.delta_nu, &est[2], k);
        assert_within("E[δδ]", &m.delta_delta, &est[3], k);
        let drift = DMatrix::from_column_slice(model.p(), 1, &super::readout_drift(model, c));
        assert_within("E[r g(λ)]", &drift, &est[4], k);
    }

    /// Asserts |closed − mc| ≤ k·se entrywise (plus a tiny absolute floor for exact zeros).
    pub fn assert_within(name: &str, closed: &DMatrix<f64>, est: &Estimate, k: f64) {
        for i in 0..closed.nrows() {
            for j in 0..closed.ncols() {
                let (x, m, s) = (closed[(i, j)], est.mean[(i, j)], est.se[(i, j)]);
                assert!(
                    (x - m).abs() <= k * s + 1e-12,
                    "{name}[{i},{j}]: closed form {x} vs Monte Carlo {m} ± {s} (|diff| = {:.2} se)",
                    (x - m).abs() / s
                );
            }
        }
    }
}
