//! The linear-noise approximation (LNA) of the overlap dynamics (theory.md §6, docs/fluctuations.md).
//!
//! At finite N, s_N(t) = s(t) + N^{-1/2} ξ(t) + O(1/N) with s(t) the ODE solution and ξ Gaussian,
//! dξ = J(t) ξ dt + G dW, GGᵀ = D(s(t)) ([`crate::population::fluctuations::diffusion`]),
//! J = ∂f/∂s ([`super::jacobian`]). Its covariance Σ = Cov ξ solves
//!
//!   dΣ/dt = JΣ + ΣJᵀ + D,
//!
//! with Σ(0) = N·Cov s(0) ([`initial_covariance`]) for the spread over seeds around the ODE started
//! at the mean initial overlaps ([`mean_initial_overlaps`]), or Σ(0) = 0 for the deviation of a run
//! from the ODE started at its own initial overlaps. [`covariance_path`] integrates the pair (s, Σ).

use super::{jacobian, rhs_state, OdeVariant};
use crate::init::InitSpec;
use crate::model::{Model, Training};
use crate::overlaps::Overlaps;
use crate::population::fluctuations::{diffusion_with, FluctuationError, Quadrature};
use nalgebra::{DMatrix, DVector};

/// Step control of [`covariance_path`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LnaOptions {
    /// Largest step of the Σ integration (RK4; the path advances in half steps).
    pub max_step: f64,
    /// Relative step of the finite-difference Jacobian ([`super::jacobian`]).
    pub fd_step: f64,
    /// Quadrature of D for the erf network.
    pub quadrature: Quadrature,
}

impl Default for LnaOptions {
    fn default() -> Self {
        LnaOptions {
            max_step: 0.05,
            fd_step: 1e-5,
            quadrature: Quadrature::Accurate,
        }
    }
}

/// The ODE path and the LNA covariance on a time grid.
#[derive(Debug, Clone)]
pub struct LnaSolution {
    pub times: Vec<f64>,
    /// s(t) in state coordinates ([`Overlaps::to_state`]).
    pub states: Vec<DVector<f64>>,
    /// Σ(t) = lim N·Cov s_N(t) (state coordinates).
    pub sigma: Vec<DMatrix<f64>>,
}

/// N·Cov s(0) of the random initialisation of `init` (theory.md §1, `init::initial_weights`):
/// w_i = Σ_k mix_ik w*_k + σ₀ g_i, g_i ~ N(0, I_N) independent of the (fixed) teacher. With
/// h_ik = g_i·w*_k/√N ~ N(0, P) (independent over i) and G_ij = (g_i·g_j − Nδ_ij)/√N
/// (N·Cov(G_ij, G_kl) → δ_ik δ_jl + δ_il δ_jk, uncorrelated with h):
/// √N δQ_ij = σ₀(mix_i·h_j + mix_j·h_i) + σ₀² G_ij, √N δM_ik = σ₀ h_ik.
///
/// ```
/// use hdsgd::{init::{InitSpec, TeacherInit}, ode::lna::initial_covariance};
/// use nalgebra::DMatrix;
/// let init = InitSpec::uninformed(TeacherInit::Orthonormal, 0.5);
/// let s0 = initial_covariance(&init, 1, &DMatrix::identity(1, 1));
/// // N·Var Q = 2σ₀⁴, N·Var M = σ₀², uncorrelated.
/// assert!((s0[(0, 0)] - 2.0 * 0.5f64.powi(4)).abs() < 1e-15 && (s0[(1, 1)] - 0.25).abs() < 1e-15);
/// assert_eq!(s0[(0, 1)], 0.0);
/// ```
pub fn initial_covariance(init: &InitSpec, p: usize, p_teacher: &DMatrix<f64>) -> DMatrix<f64> {
    let k = p_teacher.nrows();
    let mix = mixing(init, p, k);
    let s0 = init.sigma0;
    // Linear map from the independent Gaussian sources (h whitened by P^{1/2}, then G_ij, i ≤ j,
    // with N·Var G_ii = 2) to the state; Σ(0) = A Aᵀ.
    let root = crate::population::gaussian::whiten(p_teacher);
    let n_h = p * k;
    let n_g = p * (p + 1) / 2;
    let len = Overlaps::state_len(p, k);
    let mut a = DMatrix::zeros(len, n_h + n_g);
    // Column of source h_jl (in whitened coordinates e): h_j = root·e_j.
    let mut row = 0;
    let mut g_col = n_h;
    for i in 0..p {
        for j in i..p {
            for l in 0..k {
                // σ₀(mix_i·h_j + mix_j·h_i), h_j = root e_j: coefficient of e_jl is σ₀ (mix_i root)_l.
                for m in 0..k {
                    a[(row, j * k + l)] += s0 * mix[(i, m)] * root[(m, l)];
                    a[(row, i * k + l)] += s0 * mix[(j, m)] * root[(m, l)];
                }
            }
            a[(row, g_col)] = s0 * s0 * if i == j { 2f64.sqrt() } else { 1.0 };
            g_col += 1;
            row += 1;
        }
    }
    for i in 0..p {
        for kk in 0..k {
            for l in 0..k {
                a[(row, i * k + l)] = s0 * root[(kk, l)];
            }
            row += 1;
        }
    }
    &a * a.transpose()
}

/// The mean initial overlaps of `init`: Q₀ = mix·P·mixᵀ + σ₀² I, M₀ = mix·P.
pub fn mean_initial_overlaps(init: &InitSpec, p: usize, p_teacher: &DMatrix<f64>) -> Overlaps {
    let mix = mixing(init, p, p_teacher.nrows());
    let m = &mix * p_teacher;
    let q = &m * mix.transpose() + DMatrix::identity(p, p) * init.sigma0.powi(2);
    Overlaps::new(q, m, p_teacher.clone())
}

fn mixing(init: &InitSpec, p: usize, k: usize) -> DMatrix<f64> {
    match &init.student_mix {
        Some(rows) => DMatrix::from_fn(p, k, |i, j| rows[i][j]),
        None => DMatrix::zeros(p, k),
    }
}

/// J and D at one point of the path.
struct Linearisation {
    j: DMatrix<f64>,
    d: DMatrix<f64>,
}

impl Linearisation {
    fn at(
        model: &Model,
        tr: &Training,
        p_t: &DMatrix<f64>,
        s: &DVector<f64>,
        opts: &LnaOptions,
    ) -> Result<Self, FluctuationError> {
        let ov = Overlaps::from_state(s, p_t);
        Ok(Linearisation {
            j: jacobian(model, tr, OdeVariant::Full, &ov, opts.fd_step)?,
            d: diffusion_with(model, tr, &ov, opts.quadrature)?,
        })
    }

    fn rhs(&self, sigma: &DMatrix<f64>) -> DMatrix<f64> {
        &self.j * sigma + sigma * self.j.transpose() + &self.d
    }
}

/// One RK4 step of the ODE path on the state vector.
fn path_step(
    model: &Model,
    tr: &Training,
    p_t: &DMatrix<f64>,
    s: &DVector<f64>,
    h: f64,
) -> Result<DVector<f64>, FluctuationError> {
    let f = |x: &DVector<f64>| rhs_state(model, tr, OdeVariant::Full, p_t, x);
    let k1 = f(s)?;
    let k2 = f(&(s + &k1 * (h / 2.0)))?;
    let k3 = f(&(s + &k2 * (h / 2.0)))?;
    let k4 = f(&(s + &k3 * h))?;
    Ok(s + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0))
}

/// The ODE path from `initial` (full ODE, η² term included) and Σ(t) from Σ(0) = `sigma0`, at the
/// increasing `times` (≥ 0; the path starts at t = 0). Classical RK4 with steps ≤ `max_step`
/// between consecutive output times: the path in half steps, so that J and D are evaluated on the
/// path at the RK4 stages of Σ.
pub fn covariance_path(
    model: &Model,
    training: &Training,
    initial: &Overlaps,
    sigma0: &DMatrix<f64>,
    times: &[f64],
    opts: &LnaOptions,
) -> Result<LnaSolution, FluctuationError> {
    let p_t = &initial.p;
    let mut t = 0.0;
    let mut s = initial.to_state();
    let mut sigma = sigma0.clone();
    let mut lin = Linearisation::at(model, training, p_t, &s, opts)?;
    let mut out = LnaSolution {
        times: Vec::with_capacity(times.len()),
        states: Vec::with_capacity(times.len()),
        sigma: Vec::with_capacity(times.len()),
    };
    for &target in times {
        let span = target - t;
        let steps = (span / opts.max_step).ceil().max(0.0) as usize;
        for _ in 0..steps {
            let h = span / steps as f64;
            let s_mid = path_step(model, training, p_t, &s, h / 2.0)?;
            let s_end = path_step(model, training, p_t, &s_mid, h / 2.0)?;
            let mid = Linearisation::at(model, training, p_t, &s_mid, opts)?;
            let end = Linearisation::at(model, training, p_t, &s_end, opts)?;
            let k1 = lin.rhs(&sigma);
            let k2 = mid.rhs(&(&sigma + &k1 * (h / 2.0)));
            let k3 = mid.rhs(&(&sigma + &k2 * (h / 2.0)));
            let k4 = end.rhs(&(&sigma + &k3 * h));
            sigma += (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0);
            sigma = (&sigma + sigma.transpose()) * 0.5;
            s = s_end;
            lin = end;
        }
        t = target;
        out.times.push(t);
        out.states.push(s.clone());
        out.sigma.push(sigma.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::TeacherInit;
    use crate::model::Activation;
    use crate::population::fluctuations::diffusion;

    /// The Σ ODE against its exact solution in the scalar case where it has one: quadratic
    /// p = p* = 1 on the invariant line M = 0 from Q₀ = q*, the plateau (a fixed point, so J and D
    /// are constant): for the M entry, Σ(t) = Σ(0)e^{2μt} + D(e^{2μt} − 1)/(2μ). Tolerance 1e-7
    /// relative: RK4 with step 0.05 contributes ~ (μh)⁴ ≈ 1e-9, the rest is the drift of the path
    /// from the relaxed (not exact) fixed point and the finite-difference μ.
    #[test]
    fn scalar_plateau_matches_the_exact_solution() {
        let model = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
        let tr = Training {
            eta: 0.1,
            weight_decay: 0.0,
            batch: 1,
        };
        // The plateau: relax Q along the ODE on the invariant line M = 0.
        let mut q = 0.3;
        for _ in 0..200 {
            let ov = Overlaps::new(
                DMatrix::from_element(1, 1, q),
                DMatrix::zeros(1, 1),
                DMatrix::identity(1, 1),
            );
            let f = rhs_state(&model, &tr, OdeVariant::Full, &ov.p, &ov.to_state()).unwrap();
            q += f[0] * 2.0;
        }
        let ov = Overlaps::new(
            DMatrix::from_element(1, 1, q),
            DMatrix::zeros(1, 1),
            DMatrix::identity(1, 1),
        );
        let j = jacobian(&model, &tr, OdeVariant::Full, &ov, 1e-5).unwrap();
        let d = diffusion(&model, &tr, &ov).unwrap();
        let mu = j[(1, 1)];
        let sigma0 = DMatrix::from_diagonal(&DVector::from_vec(vec![0.0, 0.7]));
        let sol = covariance_path(&model, &tr, &ov, &sigma0, &[1.0, 5.0], &LnaOptions::default()).unwrap();
        for (t, s) in sol.times.iter().zip(&sol.sigma) {
            let e = (2.0 * mu * t).exp();
            let exact = 0.7 * e + d[(1, 1)] * (e - 1.0) / (2.0 * mu);
            assert!(
                (s[(1, 1)] - exact).abs() < 1e-7 * exact,
                "t = {t}: {} vs {exact}",
                s[(1, 1)]
            );
            assert!(s[(0, 1)].abs() < 1e-12, "Q and M decouple at M = 0");
        }
    }

    /// Σ(0) by Monte Carlo over initial weights at N = 400 (4000 draws, informed start p = 2,
    /// p* = 2, Gaussian-teacher P): every entry of N·Cov within 5 standard errors plus the O(N^{-1/2})
    /// finite-N correction allowance (theory: the formula is the N → ∞ limit).
    #[test]
    fn initial_covariance_matches_sampled_weights() {
        use crate::init::initial_weights;
        use rand::SeedableRng;
        let init = InitSpec {
            teacher: TeacherInit::Orthonormal,
            sigma0: 0.7,
            student_mix: Some(vec![vec![0.5, -0.2], vec![0.1, 0.8]]),
        };
        let n = 400;
        let draws = 4000;
        let p_t = DMatrix::identity(2, 2);
        let mut rng = crate::rng::SimRng::seed_from_u64(9);
        let states: Vec<DVector<f64>> = (0..draws)
            .map(|_| {
                let (w, ws) = initial_weights(&mut rng, 2, 2, n, &init);
                Overlaps::from_weights(w.view(), ws.view()).to_state()
            })
            .collect();
        let mean = states.iter().fold(DVector::zeros(7), |a, s| a + s) / draws as f64;
        let expected_mean = mean_initial_overlaps(&init, 2, &p_t).to_state();
        let cov = states
            .iter()
            .fold(DMatrix::zeros(7, 7), |a, s| a + (s - &mean) * (s - &mean).transpose())
            * (n as f64 / (draws - 1) as f64);
        let theory = initial_covariance(&init, 2, &p_t);
        for a in 0..7 {
            // se of a variance-type entry ≈ √((Σ_aa Σ_bb + Σ_ab²)/draws).
            assert!((mean[a] - expected_mean[a]).abs() < 5.0 * (theory[(a, a)] / (n * draws) as f64).sqrt());
            for b in 0..7 {
                let se = ((theory[(a, a)] * theory[(b, b)] + theory[(a, b)].powi(2)) / draws as f64).sqrt();
                assert!(
                    (cov[(a, b)] - theory[(a, b)]).abs() < 5.0 * se + 0.05,
                    "[{a},{b}]: {} vs {}",
                    cov[(a, b)],
                    theory[(a, b)]
                );
            }
        }
    }
}
