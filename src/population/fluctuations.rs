//! The per-sample fluctuations of the overlaps: D(s) = Cov_z[F(s, z)] of the linear-noise
//! approximation (theory.md §6, docs/fluctuations.md).
//!
//! # The increment
//! In state coordinates s = (Q upper triangle row by row, M row by row) ([`Overlaps::to_state`]),
//! one sample moves the overlaps by Δs = F/N + O(N^{-3/2}) with, at learning rate η' = η/B,
//!
//!   F_Q = η'(δλᵀ + λδᵀ) + η'² δδᵀ − 2η'ℓ₂Q,   F_M = η' δνᵀ − η'ℓ₂M,
//!
//! δ_i = a_i g'(λ_i)(Σ_m c_m g(z_m) + √Δ ξ), z = (λ, ν) ~ N(0, C), ξ ~ N(0, 1) independent.
//! E[F] = f(s) is the ODE's right-hand side (`ode::derivatives`; checked in the tests) and
//! D = Cov[F] the diffusion matrix; the weight-decay part is deterministic and does not enter D.
//!
//! # What is exact and what is leading order
//! * The η² term is η'²(‖x‖²/N)δδᵀ; only the O(N^{-1/2}) fluctuation of ‖x‖²/N is dropped (its
//!   contribution to N·Cov is O(N^{-1/2})).
//! * A mini-batch step (B samples, t += B/N) is, to leading order, B single-sample steps at
//!   η' = η/B: its increment is Σ_b F_b(η/B)/N plus cross terms (η/B)² (x_b·x_c/N) δ^b δ^cᵀ, b ≠ c,
//!   whose variance per unit time is O(N^{-2}). Hence D(η, B) = D(η/B, 1) exactly at leading
//!   order (and so is the drift, theory.md §4).
//! * Weight decay: no effect on D (deterministic); label noise Δ: through δ only.
//!
//! # How D is computed
//! * quadratic and linear: F is a polynomial in u = (L⁻¹z, ξ) of degree ≤ 6, and D is computed
//!   exactly by the moment engine of [`super::gaussian`] (Hermite expansion, Wick) — [`diffusion`];
//! * erf: tensor trapezoidal quadrature ([`trapezoid_rule`]) in the whitened (p + p*)-dimensional
//!   Gaussian with [`erf_nodes`] nodes per dimension (3-node Gauss–Hermite for ξ: F is quadratic in
//!   ξ, so that part is exact); p + p* ≤ [`ERF_MAX_WIDTH`]; the tests show 1e-8 relative accuracy
//!   for variances C_mm ≲ 1.2 (Gauss–Hermite converges only algebraically on erf integrands);
//! * ReLU: not available.

use super::gaussian::{hermite_covariance, whiten, Poly};
use super::PopulationError;
use crate::model::{Activation, Model, Training};
use crate::overlaps::Overlaps;
use nalgebra::{DMatrix, DVector};

/// Largest p + p* for which the erf quadrature is supported (accuracy shown in the tests; the cost
/// grows like erf_nodes^(p+p*)).
pub const ERF_MAX_WIDTH: usize = 3;

/// Errors of the fluctuation matrix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FluctuationError {
    #[error(transparent)]
    Population(#[from] PopulationError),
    /// The erf quadrature's cost grows like nodes^(p+p*).
    #[error("the fluctuation matrix D of the erf network is computed for p + p* ≤ {ERF_MAX_WIDTH} (got {0})")]
    ErfWidth(usize),
}

/// The fluctuating part of F (module docs) for one sample, written from the SGD update itself:
/// F_Q = η'(δλᵀ + λδᵀ) + η'²δδᵀ, F_M = η'δνᵀ, η' = `lr` (the deterministic weight-decay part left
/// out), in state order. `delta` is scratch of length p.
pub fn sample_increment(model: &Model, lr: f64, z: &[f64], xi: f64, delta: &mut [f64], f: &mut [f64]) {
    let p = model.p();
    let (lambda, nu) = z.split_at(p);
    let g = model.activation;
    let r = model.teacher_output(nu) - model.student_output(lambda) + model.noise.sqrt() * xi;
    for i in 0..p {
        delta[i] = model.a[i] * g.dg(lambda[i]) * r;
    }
    let mut e = 0;
    for i in 0..p {
        for j in i..p {
            f[e] = lr * (delta[i] * lambda[j] + lambda[i] * delta[j]) + lr * lr * delta[i] * delta[j];
            e += 1;
        }
    }
    for di in delta.iter() {
        for nk in nu {
            f[e] = lr * di * nk;
            e += 1;
        }
    }
}

/// The deterministic weight-decay part of F: (−2η'ℓ₂Q, −η'ℓ₂M) in state order.
pub fn weight_decay_increment(training: &Training, ov: &Overlaps) -> DVector<f64> {
    let lr = training.eta / training.batch as f64;
    let l2 = training.weight_decay;
    Overlaps::new(&ov.q * (-2.0 * lr * l2), &ov.m * (-lr * l2), ov.p.clone()).to_state()
}

/// D(s) = Cov_z[F(s, z)] (module docs) in state coordinates, at the overlaps `ov`: exact for the
/// quadratic and linear networks, Gauss–Hermite quadrature for erf (p + p* ≤ [`ERF_MAX_WIDTH`]).
///
/// ```
/// use hdsgd::{model::{Activation, Model, Training}, overlaps::Overlaps, population::fluctuations::diffusion};
/// use nalgebra::DMatrix;
/// // theory.md §6 worked case: p = p* = 1, a = v = 1, P = 1, M = 0: D_MM = η²·4(15Q − 18Q² + 15Q³).
/// let model = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
/// let tr = Training { eta: 0.1, weight_decay: 0.0, batch: 1 };
/// let q = 0.4;
/// let ov = Overlaps::new(DMatrix::from_element(1, 1, q), DMatrix::zeros(1, 1), DMatrix::identity(1, 1));
/// let d = diffusion(&model, &tr, &ov).unwrap();
/// let expected = 0.01 * 4.0 * (15.0 * q - 18.0 * q * q + 15.0 * q.powi(3));
/// assert!((d[(1, 1)] - expected).abs() < 1e-14);
/// ```
pub fn diffusion(model: &Model, training: &Training, ov: &Overlaps) -> Result<DMatrix<f64>, FluctuationError> {
    diffusion_with(model, training, ov, Quadrature::Accurate)
}

/// How the erf network's D is integrated (the polynomial activations are always exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quadrature {
    /// Trapezoid rule with [`erf_nodes`] nodes, p + p* ≤ [`ERF_MAX_WIDTH`]: 1e-8 relative.
    #[default]
    Accurate,
    /// A coarser rule of the caller's choice at any width (faster; accuracy to be judged by the
    /// caller, e.g. ~1e-2 relative for 10 Gauss–Hermite nodes at p + p* = 4).
    GaussHermite(usize),
    /// The trapezoid rule of [`trapezoid_rule`] with the given number of nodes, at any width.
    Trapezoid(usize),
}

/// [`diffusion`] with an explicit erf [`Quadrature`].
pub fn diffusion_with(
    model: &Model,
    training: &Training,
    ov: &Overlaps,
    quadrature: Quadrature,
) -> Result<DMatrix<f64>, FluctuationError> {
    let rule = match (model.activation, quadrature) {
        (Activation::Quadratic | Activation::Linear, _) => return Ok(polynomial_diffusion(model, training, ov)),
        (Activation::Relu, _) => return Err(PopulationError::Unsupported("relu").into()),
        (Activation::Erf, Quadrature::Accurate) => {
            let width = model.p() + model.p_star();
            if width > ERF_MAX_WIDTH {
                return Err(FluctuationError::ErfWidth(width));
            }
            trapezoid_rule(erf_nodes(width))
        }
        (Activation::Erf, Quadrature::GaussHermite(n)) => gauss_hermite(n),
        (Activation::Erf, Quadrature::Trapezoid(n)) => trapezoid_rule(n),
    };
    Ok(quadrature_moments(model, training, ov, &rule).1)
}

/// Trapezoid nodes per dimension of the erf quadrature for p + p* = `width`: D accurate to 1e-8
/// relative when every variance C_mm ≲ 1.2 (tests; measured errors in docs/fluctuations.md: about
/// 1e-6 at C_mm ≈ 2, 1e-4 at C_mm ≈ 4, where the erf saturates and the integrand has sharp edges).
pub fn erf_nodes(width: usize) -> usize {
    match width {
        0..=2 => 61,
        _ => 49,
    }
}

/// The increment F as polynomials in u = (whitened z, ξ) (quadratic and linear only).
fn increment_polynomials(model: &Model, lr: f64, c: &DMatrix<f64>) -> Vec<Poly> {
    let (p, k) = (model.p(), model.p_star());
    let d = p + k;
    let l = whiten(c);
    let z: Vec<Poly> = (0..d)
        .map(|m| Poly::linear(&(0..=d).map(|j| if j < d { l[(m, j)] } else { 0.0 }).collect::<Vec<_>>()))
        .collect();
    let quadratic = model.activation == Activation::Quadratic;
    let g = |x: &Poly| if quadratic { x.mul(x) } else { x.clone() };
    let dg = |x: &Poly| {
        if quadratic {
            x.scale(2.0)
        } else {
            Poly::constant(d + 1, 1.0)
        }
    };
    let mut xi = vec![0.0; d + 1];
    xi[d] = model.noise.sqrt();
    let r = model
        .signed_coefficients()
        .iter()
        .zip(&z)
        .fold(Poly::linear(&xi), |acc, (cm, zm)| acc.add(&g(zm).scale(*cm)));
    let delta: Vec<Poly> = (0..p).map(|i| dg(&z[i]).mul(&r).scale(model.a[i])).collect();
    let mut f = Vec::with_capacity(Overlaps::state_len(p, k));
    for i in 0..p {
        for j in i..p {
            let lin = delta[i].mul(&z[j]).add(&z[i].mul(&delta[j])).scale(lr);
            f.push(lin.add(&delta[i].mul(&delta[j]).scale(lr * lr)));
        }
    }
    for i in 0..p {
        for m in 0..k {
            f.push(delta[i].mul(&z[p + m]).scale(lr));
        }
    }
    f
}

/// D for polynomial activations by the exact moment engine.
fn polynomial_diffusion(model: &Model, training: &Training, ov: &Overlaps) -> DMatrix<f64> {
    let lr = training.eta / training.batch as f64;
    let h: Vec<_> = increment_polynomials(model, lr, &ov.gram())
        .iter()
        .map(Poly::hermite)
        .collect();
    let len = h.len();
    let mut d = DMatrix::zeros(len, len);
    for a in 0..len {
        for b in a..len {
            let v = hermite_covariance(&h[a], &h[b]);
            d[(a, b)] = v;
            d[(b, a)] = v;
        }
    }
    d
}

/// E[F] (weight decay included, so that it is the ODE's right-hand side) and D = Cov[F] by tensor
/// Gauss–Hermite quadrature with `nodes` per whitened input dimension and 3 for ξ. Exact for the
/// polynomial activations when 2·nodes − 1 ≥ the degree of F Fᵀ in each variable (12 for the
/// quadratic network: nodes ≥ 7); for erf an approximation converging exponentially in `nodes`.
pub fn quadrature_moments(
    model: &Model,
    training: &Training,
    ov: &Overlaps,
    rule: &(Vec<f64>, Vec<f64>),
) -> (DVector<f64>, DMatrix<f64>) {
    let (p, k) = (model.p(), model.p_star());
    let d = p + k;
    let lmat = whiten(&ov.gram());
    let (x, w) = rule;
    let nodes = x.len();
    let (xx, wx) = gauss_hermite(3);
    let lr = training.eta / training.batch as f64;
    let len = Overlaps::state_len(p, k);
    let mut mean = DVector::<f64>::zeros(len);
    let mut second = DMatrix::<f64>::zeros(len, len);
    let (mut idx, mut z) = (vec![0usize; d], vec![0.0; d]);
    let (mut f, mut delta) = (DVector::<f64>::zeros(len), vec![0.0; p]);
    for _ in 0..nodes.pow(d as u32) {
        let mut weight = 1.0;
        for (m, zm) in z.iter_mut().enumerate() {
            *zm = (0..d).map(|l| lmat[(m, l)] * x[idx[l]]).sum();
            weight *= w[idx[m]];
        }
        for (xi, wxi) in xx.iter().zip(&wx) {
            sample_increment(model, lr, &z, *xi, &mut delta, f.as_mut_slice());
            mean.axpy(weight * wxi, &f, 1.0);
            second.ger(weight * wxi, &f, &f, 1.0);
        }
        for il in idx.iter_mut() {
            *il += 1;
            if *il < nodes {
                break;
            }
            *il = 0;
        }
    }
    let cov = second - &mean * mean.transpose();
    (mean + weight_decay_increment(training, ov), cov)
}

/// The trapezoidal rule for E[f(Z)], Z ~ N(0, 1): n equispaced nodes on [−9, 9], weights h·φ(x).
/// For f analytic in a strip it converges like exp(−π²/(h²(½ + κ))) when |f(x + iy)| grows like
/// e^{κy²} (κ = 2σ² for a product of four erf(σu/√2)), much faster than Gauss–Hermite, whose error
/// for erf integrands decreases only algebraically (docs/fluctuations.md).
pub fn trapezoid_rule(n: usize) -> (Vec<f64>, Vec<f64>) {
    let half = 9.0;
    let h = 2.0 * half / (n - 1) as f64;
    let norm = h / (2.0 * std::f64::consts::PI).sqrt();
    (0..n)
        .map(|j| {
            let x = -half + j as f64 * h;
            (x, norm * (-0.5 * x * x).exp())
        })
        .unzip()
}

/// Probabilists' Gauss–Hermite rule with n nodes (Golub–Welsch): Σ_k w_k f(x_k) = E[f(Z)],
/// Z ~ N(0, 1), exact for polynomials of degree ≤ 2n − 1.
pub fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut jac = DMatrix::<f64>::zeros(n, n);
    for k in 1..n {
        let b = (k as f64).sqrt();
        jac[(k - 1, k)] = b;
        jac[(k, k - 1)] = b;
    }
    let eig = jac.symmetric_eigen();
    let mut pairs: Vec<(f64, f64)> = (0..n)
        .map(|j| (eig.eigenvalues[j], eig.eigenvectors[(0, j)].powi(2)))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs.into_iter().unzip()
}

/// Monte-Carlo estimate of (E[F], Cov[F]) from `samples` draws (weight decay included in the mean),
/// and the standard errors of the covariance entries, for the tests.
#[doc(hidden)]
pub fn monte_carlo(
    model: &Model,
    training: &Training,
    ov: &Overlaps,
    samples: usize,
    seed: u64,
) -> (DVector<f64>, DMatrix<f64>, DMatrix<f64>) {
    use rand::{RngExt, SeedableRng};
    use rand_distr::StandardNormal;
    let (p, k) = (model.p(), model.p_star());
    let l = whiten(&ov.gram());
    let lr = training.eta / training.batch as f64;
    let len = Overlaps::state_len(p, k);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let draws: Vec<DVector<f64>> = (0..samples)
        .map(|_| {
            let u = DVector::from_fn(p + k, |_, _| rng.sample::<f64, _>(StandardNormal));
            let z = &l * u;
            let xi: f64 = rng.sample(StandardNormal);
            let (mut f, mut delta) = (DVector::zeros(len), vec![0.0; p]);
            sample_increment(model, lr, z.as_slice(), xi, &mut delta, f.as_mut_slice());
            f
        })
        .collect();
    let n = samples as f64;
    let mean = draws.iter().fold(DVector::zeros(len), |a, f| a + f) / n;
    let centred: Vec<DVector<f64>> = draws.iter().map(|f| f - &mean).collect();
    let cov = centred
        .iter()
        .fold(DMatrix::zeros(len, len), |a, f| a + f * f.transpose())
        / (n - 1.0);
    // se of a sample covariance entry: sd of the products (f_a − m_a)(f_b − m_b) over √n.
    let second = centred.iter().fold(DMatrix::zeros(len, len), |a: DMatrix<f64>, f| {
        let o = f * f.transpose();
        a + o.component_mul(&o)
    }) / n;
    let se = (second - cov.component_mul(&cov)).map(|v| (v.max(0.0) / n).sqrt());
    (mean + weight_decay_increment(training, ov), cov, se)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ode::{derivatives, OdeVariant};
    use crate::population::monte_carlo::random_spd;

    fn training(eta: f64, weight_decay: f64, batch: usize) -> Training {
        Training {
            eta,
            weight_decay,
            batch,
        }
    }

    fn model(act: Activation, p: usize, k: usize, noise: f64) -> Model {
        let a = (0..p).map(|i| 0.6 - 0.25 * i as f64).collect();
        let v = (0..k).map(|i| 1.0 - 0.3 * i as f64).collect();
        Model::new(act, a, v, noise)
    }

    fn state_of(model: &Model, tr: &Training, ov: &Overlaps) -> DVector<f64> {
        let (dq, dm) = derivatives(model, tr, ov, OdeVariant::Full).unwrap();
        Overlaps::new(dq, dm, ov.p.clone()).to_state()
    }

    /// E[F] is the ODE's right-hand side (the increment is written from the SGD update, the ODE
    /// from the closed-form moments): exact quadrature for the polynomial activations (rounding,
    /// 1e-12 relative), and the erf quadrature at its production node count to 1e-8 relative.
    #[test]
    fn mean_increment_is_the_ode_rhs() {
        for (act, p, k) in [
            (Activation::Quadratic, 2, 2),
            (Activation::Linear, 3, 1),
            (Activation::Erf, 2, 1),
            (Activation::Erf, 1, 2),
        ] {
            let m = model(act, p, k, 0.3);
            let tr = training(0.7, 0.2, 4);
            let ov = Overlaps::from_gram(&random_spd(p + k, 3), p);
            let nodes = if act == Activation::Erf { erf_nodes(p + k) } else { 7 };
            let rule = if act == Activation::Erf {
                trapezoid_rule(nodes)
            } else {
                gauss_hermite(nodes)
            };
            let (mean, _) = quadrature_moments(&m, &tr, &ov, &rule);
            let f = state_of(&m, &tr, &ov);
            let tol = if act == Activation::Erf { 1e-8 } else { 1e-12 };
            assert!((&mean - &f).amax() <= tol * f.amax(), "{act:?}: {mean} vs {f}");
        }
    }

    /// The moment engine's exact D equals the (also exact) 7-node Gauss–Hermite D of the polynomial
    /// activations: two independent exact computations, rounding-level agreement.
    #[test]
    fn exact_d_equals_exact_quadrature() {
        for (act, p, k, seed) in [
            (Activation::Quadratic, 2, 1, 1),
            (Activation::Quadratic, 2, 2, 2),
            (Activation::Linear, 2, 2, 3),
        ] {
            let m = model(act, p, k, 0.4);
            let tr = training(0.5, 0.1, 2);
            let ov = Overlaps::from_gram(&random_spd(p + k, seed), p);
            let exact = diffusion(&m, &tr, &ov).unwrap();
            let (_, quad) = quadrature_moments(&m, &tr, &ov, &gauss_hermite(7));
            assert!((&exact - &quad).amax() <= 1e-11 * exact.amax(), "{act:?}");
        }
    }

    /// D against a Monte-Carlo estimate of Cov[F] (400k draws of the SGD increment): quadratic,
    /// erf, linear; B = 1 and 4; with label noise and weight decay. Every entry within 5 standard
    /// errors of the sample covariance (≈ 150 comparisons over the cases: family-wise false alarm
    /// < 1e-4 for Gaussian errors).
    #[test]
    fn diffusion_matches_monte_carlo() {
        let cases = [
            (Activation::Quadratic, 2, 1, 0.0, 0.0, 1),
            (Activation::Quadratic, 2, 1, 0.5, 0.1, 4),
            (Activation::Erf, 2, 1, 0.3, 0.05, 4),
            (Activation::Erf, 1, 1, 0.0, 0.0, 1),
            (Activation::Linear, 2, 1, 0.2, 0.3, 4),
        ];
        for (case, (act, p, k, noise, l2, batch)) in cases.into_iter().enumerate() {
            let m = model(act, p, k, noise);
            let tr = training(0.8, l2, batch);
            let ov = Overlaps::from_gram(&random_spd(p + k, 10 + case as u64), p);
            let d = diffusion(&m, &tr, &ov).unwrap();
            let (_, mc, se) = monte_carlo(&m, &tr, &ov, 400_000, 20 + case as u64);
            for a in 0..d.nrows() {
                for b in 0..d.ncols() {
                    let z = (d[(a, b)] - mc[(a, b)]).abs() / se[(a, b)];
                    assert!(
                        z < 5.0,
                        "case {case} ({act:?}) D[{a},{b}] = {} vs MC {} ± {}",
                        d[(a, b)],
                        mc[(a, b)],
                        se[(a, b)]
                    );
                }
            }
        }
    }

    /// Accuracy of the erf quadrature at every supported width: D at the production node count and
    /// at 12 more nodes agree to 1e-8 relative (of max |D|), at random overlaps (variances ≈ 1.1) and
    /// at a plateau-like point with M = 0 and small Q.
    #[test]
    fn erf_quadrature_is_accurate_to_1e_8() {
        for (p, k) in [(1, 1), (2, 1), (1, 2)] {
            let m = model(Activation::Erf, p, k, 0.2);
            let tr = training(1.0, 0.0, 1);
            let c = random_spd(p + k, 7);
            let plateau = Overlaps::new(
                DMatrix::identity(p, p) * 0.3,
                DMatrix::zeros(p, k),
                DMatrix::identity(k, k),
            );
            for ov in [Overlaps::from_gram(&c, p), plateau] {
                let nodes = erf_nodes(p + k);
                let d = quadrature_moments(&m, &tr, &ov, &trapezoid_rule(nodes)).1;
                let fine = quadrature_moments(&m, &tr, &ov, &trapezoid_rule(nodes + 12)).1;
                let err = (&d - &fine).amax() / fine.amax();
                assert!(err < 1e-8, "p = {p}, p* = {k}: relative error {err:.2e}");
            }
        }
    }

    #[test]
    fn erf_beyond_the_supported_width_is_an_error() {
        let m = model(Activation::Erf, 2, 2, 0.0);
        let ov = Overlaps::from_gram(&random_spd(4, 1), 2);
        let e = diffusion(&m, &training(1.0, 0.0, 1), &ov).unwrap_err();
        assert_eq!(e, FluctuationError::ErfWidth(4));
        assert!(e.to_string().contains("p + p* ≤ 3"));
    }

    /// Leading-order mini-batch law: D depends on (η, B) through η/B only, and not on ℓ₂.
    #[test]
    fn batch_and_weight_decay_dependence() {
        let m = model(Activation::Quadratic, 2, 1, 0.3);
        let ov = Overlaps::from_gram(&random_spd(3, 4), 2);
        let d4 = diffusion(&m, &training(0.8, 0.3, 4), &ov).unwrap();
        let d1 = diffusion(&m, &training(0.2, 0.0, 1), &ov).unwrap();
        assert!((&d4 - &d1).amax() <= 1e-13 * d1.amax());
    }
}
