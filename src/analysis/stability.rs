//! Plateau fixed points of the overlap ODEs and their linear stability (theory.md §4–6).
//!
//! The plateau is the fixed point the ODE reaches from a small symmetric start (Q₀ = σ₀² I, M₀ = 0):
//! for the quadratic network M = 0 is invariant (dM/dt is linear in M), for erf the flow stays in the
//! permutation-symmetric subspace (all M_ik equal). [`find_plateau`] integrates until the right-hand
//! side is stationary, then polishes the point with Newton's method on the whole state (Q upper
//! triangle + M). [`jacobian`] linearises the full right-hand side there by central finite
//! differences; the largest real part μ > 0 of its eigenvalues is the growth rate of the unstable
//! directions. Since the initial overlaps with the teacher are O(N^{-1/2}), the perturbation reaches
//! O(1) after t ≈ ln N/(2μ): the predicted escape-time slope in ln N is 1/(2μ) (theory.md §6).
//!
//! Uniform second layers (A = aI, V = vI, P = I), quadratic activation, M = 0, Q = qI: the M block
//! of the Jacobian is exactly 2ηa(v(p* + 2) − aq(p + 2))·I (from E[δνᵀ] = 2A[τC + 2CKC]_λν with
//! τ = −apq + vp*, [CKC]_λν = (v − aq)M), and in the η → 0 limit q = q* = vp*/(a(p + 2)) so that
//! μ → 4ηav (checked in the tests).

use crate::model::{Activation, Model, Training};
use crate::ode::{derivatives, integrate, OdeOptions, OdeStop, OdeVariant};
use crate::overlaps::Overlaps;
use crate::population::population_error;
use anyhow::{bail, Context, Result};
use nalgebra::{linalg::Schur, Complex, DMatrix, DVector};
use serde_json::json;

/// Settings of the plateau search and of the finite-difference Jacobian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlateauOptions {
    /// Longest integration time of the approach to the plateau.
    pub t_max: f64,
    /// The integration stops once max |dstate/dt| is below this.
    pub stationary_tol: f64,
    /// Newton stops once max |dstate/dt| is below this.
    pub newton_tol: f64,
    /// Relative step of the central differences: h_j = fd_step·max(1, |x_j|). The default 1e-5 is
    /// near ε^{1/3} (ε = 2.2e-16), which balances the O(h²) truncation and O(ε/h) rounding errors
    /// (both ~1e-11 relative for O(1) overlaps).
    pub fd_step: f64,
}

impl Default for PlateauOptions {
    fn default() -> Self {
        PlateauOptions {
            t_max: 1e4,
            stationary_tol: 1e-9,
            newton_tol: 1e-13,
            fd_step: 1e-5,
        }
    }
}

/// A fixed point of the overlap ODE.
#[derive(Debug, Clone)]
pub struct Plateau {
    pub overlaps: Overlaps,
    /// e_g there (label noise excluded).
    pub eg: f64,
    /// Time at which the integration from the start became stationary.
    pub t_stationary: f64,
    /// max |dstate/dt| at the returned point.
    pub residual: f64,
    /// Newton iterations used by the polish.
    pub newton_iterations: usize,
}

/// The linearisation of the ODE at a plateau.
#[derive(Debug, Clone)]
pub struct Stability {
    pub plateau: Plateau,
    /// ∂(dstate/dt)/∂state, state = (Q upper triangle row by row, M row by row).
    pub jacobian: DMatrix<f64>,
    /// Its eigenvalues, by decreasing real part.
    pub eigenvalues: Vec<Complex<f64>>,
    /// Largest real part of the eigenvalues when positive: the growth rate μ of the unstable
    /// directions (None: the fixed point is linearly stable).
    pub mu: Option<f64>,
    /// Number of eigenvalues with real part > 1e-9·max|eigenvalue| (unstable directions).
    pub unstable_count: usize,
    /// Unit eigenvector of the real eigenvalue μ, when μ is real (in state coordinates).
    pub unstable_vector: Option<DVector<f64>>,
}

impl Stability {
    /// The predicted slope of the mean escape time against ln N, 1/(2μ).
    pub fn escape_slope(&self) -> Option<f64> {
        self.mu.map(|mu| 1.0 / (2.0 * mu))
    }
}

pub use crate::ode::{jacobian, rhs_state};

/// The symmetric start of the plateau search: Q₀ = σ₀² I, M₀ = 0, with teacher overlap `p_teacher`.
pub fn symmetric_start(p: usize, sigma0: f64, p_teacher: &DMatrix<f64>) -> Overlaps {
    let k = p_teacher.nrows();
    Overlaps::new(
        DMatrix::identity(p, p) * (sigma0 * sigma0),
        DMatrix::zeros(p, k),
        p_teacher.clone(),
    )
}

/// How [`find_plateau`] reaches the fixed point and refines it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlateauMethod {
    /// Integrate the whole state (rtol 1e-10, atol 1e-12) until max |dstate/dt| < `stationary_tol`
    /// (or the point is left again), then polish with Newton's method (finite-difference Jacobian)
    /// down to `newton_tol`. Errors when the ODE diverges or is not stationary by `t_max`.
    /// `Plateau::residual` is max |dstate/dt|. Used by `hdsgd plateau` and `hdsgd escape`.
    Newton(PlateauOptions),
    /// Integrate (rtol 1e-12, atol 1e-14, up to t = 1e7) until max |dQ/dt| < `tol`, without
    /// polish (the last point when never below `tol`). For a start with M = 0, which the quadratic
    /// network keeps: the stationary point restricted to M = 0 (with
    /// [`OdeVariant::GradientFlow`], that of e_g). `Plateau::residual` is max |dQ/dt|. Used by
    /// `hdsgd hessian` and the over-parameterisation study.
    Integrate { tol: f64 },
}

/// The plateau reached by the ODE `variant` from `start` (module docs), by `method`.
pub fn find_plateau(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    start: &Overlaps,
    method: &PlateauMethod,
) -> Result<Plateau> {
    let (t_stationary, ov) = match method {
        PlateauMethod::Newton(opts) => approach_full_state(model, training, variant, start, opts)?,
        PlateauMethod::Integrate { tol } => approach_q(model, training, variant, start, *tol)?,
    };
    let (overlaps, residual, newton_iterations) = match method {
        PlateauMethod::Newton(opts) => newton_polish(model, training, variant, ov, opts)?,
        PlateauMethod::Integrate { .. } => {
            let r = max_dq_dt(model, training, variant, &ov);
            (ov, r, 0)
        }
    };
    Ok(Plateau {
        eg: population_error(model, &overlaps.gram()),
        overlaps,
        t_stationary,
        residual,
        newton_iterations,
    })
}

/// max |dQ/dt| at `ov` (NaN where the right-hand side is undefined).
fn max_dq_dt(model: &Model, training: &Training, variant: OdeVariant, ov: &Overlaps) -> f64 {
    derivatives(model, training, ov, variant)
        .map(|(dq, _)| dq.amax())
        .unwrap_or(f64::NAN)
}

/// [`PlateauMethod::Integrate`]: (time, point) where max |dQ/dt| first fell below `tol`, else the
/// last point integrated.
fn approach_q(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    start: &Overlaps,
    tol: f64,
) -> Result<(f64, Overlaps)> {
    let opts = OdeOptions {
        rtol: 1e-12,
        atol: 1e-14,
        variant,
        ..OdeOptions::default()
    };
    let mut last: Option<(f64, Overlaps)> = None;
    let sol = integrate(model, training, start, &[0.0, 1e7], &opts, |t, ov: &Overlaps| {
        let stop = max_dq_dt(model, training, variant, ov) < tol;
        if stop {
            last = Some((t, ov.clone()));
        }
        stop
    })?;
    match last {
        Some(found) => Ok(found),
        None => Ok((
            sol.t.last().copied().unwrap_or(0.0),
            sol.overlaps
                .last()
                .cloned()
                .context("plateau integration produced nothing")?,
        )),
    }
}

/// [`PlateauMethod::Newton`], first half: (time, point) of the most stationary point of the
/// integration of the whole state.
fn approach_full_state(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    start: &Overlaps,
    opts: &PlateauOptions,
) -> Result<(f64, Overlaps)> {
    let ode_opts = OdeOptions {
        rtol: 1e-10,
        atol: 1e-12,
        variant,
        ..OdeOptions::default()
    };
    // The most stationary point seen so far. An unstable plateau is left again once rounding
    // errors in its unstable directions have grown (e.g. the permutation-symmetric plateau of the
    // erf committee): the integration then stops when |F| has risen 1e3-fold above a minimum
    // below `leave_tol`, and Newton starts from that minimum.
    let leave_tol = 1e-4;
    let mut best: Option<(f64, f64, Overlaps)> = None;
    let sol = integrate(
        model,
        training,
        start,
        &[0.0, opts.t_max],
        &ode_opts,
        |t, ov: &Overlaps| {
            let Ok(r) = rhs_state(model, training, variant, &ov.p, &ov.to_state()).map(|f| f.amax()) else {
                return true;
            };
            if best.as_ref().is_none_or(|b| r < b.0) {
                best = Some((r, t, ov.clone()));
            }
            let r_min = best.as_ref().map_or(f64::INFINITY, |b| b.0);
            r < opts.stationary_tol || (r_min < leave_tol && r > 1e3 * r_min)
        },
    )?;
    match (&sol.stop, best) {
        (Some(OdeStop::Diverged { t }), _) => bail!(
            "no plateau: the ODE from the symmetric start (Q0 = σ0² I, M0 = 0) diverges at t = {t} (learning rate beyond the plateau's existence?)"
        ),
        (Some(OdeStop::Failed { t, message }), _) => bail!(
            "no plateau: the ODE from the symmetric start diverges or fails at t = {t} ({message}; a finite-time blow-up gives a step-size underflow)"
        ),
        (_, Some((r, t, ov))) if r < leave_tol => Ok((t, ov)),
        _ => bail!(
            "no plateau: the ODE from the symmetric start is not stationary (|dstate/dt| ≥ {}) by t = {}",
            leave_tol,
            opts.t_max
        ),
    }
}

/// [`PlateauMethod::Newton`], second half: Newton's method on the whole state from `ov`; returns
/// the point, its max |dstate/dt| and the iterations used.
fn newton_polish(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    mut ov: Overlaps,
    opts: &PlateauOptions,
) -> Result<(Overlaps, f64, usize)> {
    let mut x = ov.to_state();
    let mut f = rhs_state(model, training, variant, &ov.p, &x)?;
    let mut iterations = 0;
    while f.amax() > opts.newton_tol && iterations < 30 {
        let j = jacobian(model, training, variant, &ov, opts.fd_step)?;
        let Some(dx) = j.lu().solve(&(-&f)) else { break };
        let x_new = &x + dx;
        let f_new = rhs_state(model, training, variant, &ov.p, &x_new)?;
        // Stop when Newton no longer improves (also when the residual became NaN).
        if f_new.amax().partial_cmp(&f.amax()) != Some(std::cmp::Ordering::Less) {
            break;
        }
        iterations += 1;
        x = x_new;
        f = f_new;
        ov = Overlaps::from_state(&x, &ov.p);
    }
    Ok((ov, f.amax(), iterations))
}

/// How [`growth_rate`] obtains μ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrowthRate {
    /// The closed form of the quadratic network at a plateau with M = 0 and A = aI (the
    /// reference): dM/dt is exactly linear in M there, M ↦ K̂M + 4η̄a·MVP with
    /// K̂ = 2η̄a(τI − 2aQ) − η̄ℓ₂I, τ = Σ_k v_k P_kk − a tr Q, η̄ = η/B (τ and the η² term do not
    /// enter dM/dt), so μ = λ_max(K̂) + 4η̄a·λ_max(VP). The same for every ODE variant.
    ClosedForm,
    /// The largest real part of the eigenvalues of the finite-difference Jacobian of the ODE
    /// `variant` ([`linearise`]); any activation.
    Jacobian { variant: OdeVariant, fd_step: f64 },
}

/// The growth rate μ of the perturbations of the plateau `ov`: the largest real part of the
/// linearisation's eigenvalues (negative when the plateau is stable), by `method`.
pub fn growth_rate(model: &Model, training: &Training, ov: &Overlaps, method: GrowthRate) -> Result<f64> {
    match method {
        GrowthRate::ClosedForm => {
            if model.activation != Activation::Quadratic {
                bail!("the closed-form growth rate μ is that of the quadratic network");
            }
            Ok(closed_form_mu(model, training, ov))
        }
        GrowthRate::Jacobian { variant, fd_step } => {
            let j = jacobian(model, training, variant, ov, fd_step)?;
            let eigenvalues = sorted_eigenvalues(&j)?;
            Ok(eigenvalues.first().map_or(f64::NAN, |l| l.re))
        }
    }
}

/// [`GrowthRate::ClosedForm`].
fn closed_form_mu(model: &Model, training: &Training, ov: &Overlaps) -> f64 {
    let p = model.p();
    let lr = training.eta / training.batch as f64;
    let a = model.a[0];
    let tau: f64 = (0..model.p_star()).map(|k| model.v[k] * ov.p[(k, k)]).sum::<f64>() - a * ov.q.trace();
    let k_hat = (DMatrix::identity(p, p) * tau - &ov.q * (2.0 * a)) * (2.0 * lr * a)
        - DMatrix::identity(p, p) * (lr * training.weight_decay);
    let k_max = k_hat.symmetric_eigenvalues().max();
    // VP = V^{1/2}(V^{1/2}PV^{1/2})V^{−1/2} for v > 0: real eigenvalues, those of the symmetric middle.
    let ks = model.p_star();
    let sv: Vec<f64> = model.v.iter().map(|v| v.max(0.0).sqrt()).collect();
    let mid = DMatrix::from_fn(ks, ks, |i, j| sv[i] * ov.p[(i, j)] * sv[j]);
    k_max + 4.0 * lr * a * mid.symmetric_eigenvalues().max()
}

/// The eigenvalues of a Jacobian by decreasing real part. nalgebra's `complex_eigenvalues()`
/// iterates without limit at machine-epsilon tolerance and can stall on the (block-)diagonal
/// Jacobians of symmetric plateaus: a bounded Schur iteration instead.
fn sorted_eigenvalues(j: &DMatrix<f64>) -> Result<Vec<Complex<f64>>> {
    let Some(schur) = Schur::try_new(j.clone(), 1e-14, 100_000) else {
        bail!("the Schur decomposition of the Jacobian did not converge");
    };
    let mut eigenvalues: Vec<Complex<f64>> = schur.complex_eigenvalues().iter().copied().collect();
    eigenvalues.sort_by(|a, b| b.re.total_cmp(&a.re));
    Ok(eigenvalues)
}

/// Linear stability at a fixed point: Jacobian, eigenvalues, growth rate μ and its eigenvector.
pub fn linearise(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    plateau: Plateau,
    fd_step: f64,
) -> Result<Stability> {
    let j = jacobian(model, training, variant, &plateau.overlaps, fd_step)?;
    let eigenvalues = sorted_eigenvalues(&j)?;
    let scale = eigenvalues.iter().map(|l| l.norm()).fold(0.0, f64::max);
    let unstable_count = eigenvalues.iter().filter(|l| l.re > 1e-9 * scale).count();
    let mu = eigenvalues.first().filter(|l| l.re > 1e-9 * scale).map(|l| l.re);
    let unstable_vector = match (mu, eigenvalues.first()) {
        (Some(mu), Some(l)) if l.im.abs() <= 1e-9 * scale => {
            // Null vector of J − μI: the right-singular vector of the smallest singular value.
            let d = j.nrows();
            let Some(svd) = (&j - DMatrix::identity(d, d) * mu).try_svd(false, true, 1e-14, 100_000) else {
                bail!("the SVD of J − μI did not converge");
            };
            let vt = svd.v_t.expect("requested");
            let (imin, _) = svd
                .singular_values
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .expect("non-empty");
            let mut v: DVector<f64> = vt.row(imin).transpose();
            // Sign convention: largest component positive.
            let imax = v.iamax();
            if v[imax] < 0.0 {
                v = -v;
            }
            Some(v)
        }
        _ => None,
    };
    Ok(Stability {
        plateau,
        jacobian: j,
        eigenvalues,
        mu,
        unstable_count,
        unstable_vector,
    })
}

/// Plateau and linear stability of a model from the symmetric start Q₀ = σ₀² I, M₀ = 0 with
/// teacher overlap `p_teacher`.
pub fn analyse(
    model: &Model,
    training: &Training,
    variant: OdeVariant,
    sigma0: f64,
    p_teacher: &DMatrix<f64>,
    opts: &PlateauOptions,
) -> Result<Stability> {
    if sigma0 <= 0.0 {
        bail!("the plateau search starts from Q0 = σ0² I: `init.sigma0` must be > 0");
    }
    let start = symmetric_start(model.p(), sigma0, p_teacher);
    let plateau = find_plateau(model, training, variant, &start, &PlateauMethod::Newton(*opts))?;
    linearise(model, training, variant, plateau, opts.fd_step)
}

/// A JSON description of a stability analysis started from Q₀ = σ₀² I (used by `hdsgd plateau`
/// and the escape summary).
pub fn to_json(sigma0: f64, s: &Stability, opts: &PlateauOptions) -> serde_json::Value {
    let (p, k) = (s.plateau.overlaps.q.nrows(), s.plateau.overlaps.m.ncols());
    let names = Overlaps::column_names(p, k);
    let state = s.plateau.overlaps.to_state();
    json!({
        "start": {"q0": format!("{}·I", sigma0 * sigma0), "m0": 0.0},
        "plateau": names.iter().zip(state.iter()).map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "eg_plateau": s.plateau.eg,
        "t_stationary": s.plateau.t_stationary,
        "residual": s.plateau.residual,
        "newton_iterations": s.plateau.newton_iterations,
        "jacobian": "central finite differences of the full right-hand side, h_j = fd_step·max(1, |x_j|)",
        "fd_step": opts.fd_step,
        "state_order": names,
        "eigenvalues": s.eigenvalues.iter().map(|l| json!({"re": l.re, "im": l.im})).collect::<Vec<_>>(),
        "mu": s.mu,
        "unstable_count": s.unstable_count,
        "unstable_vector": s.unstable_vector.as_ref().map(|v| v.iter().copied().collect::<Vec<_>>()),
        "escape_slope": s.escape_slope(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn quad(p: usize, k: usize, a: f64, v: f64) -> Model {
        Model::new(Activation::Quadratic, vec![a; p], vec![v; k], 0.0)
    }

    fn training(eta: f64) -> Training {
        Training {
            eta,
            weight_decay: 0.0,
            batch: 1,
        }
    }

    /// p = p* = 1 quadratic, M = 0 (hand derivation). With h = ηa, u = aq, τ = v − u and the
    /// closed forms of theory.md §4:
    ///   dq/dt = 4ηa q [(v − 3u) + h(3v² − 6vu + 15u²)],   dm/dt = 6ηa (v − u) m + O(m³).
    /// The plateau solves 15h u² − (3 + 6hv) u + v(1 + 3hv) = 0 (smaller root; no real root when
    /// 144h²v² + 24hv − 9 > 0, i.e. hv > 0.1802), and the Jacobian there is diagonal with
    ///   μ = ∂(dm/dt)/∂m = 6ηa(v − u),   λ_q = ∂(dq/dt)/∂q = 4h u (30h u − 3 − 6hv).
    fn hand_p1(eta: f64, a: f64, v: f64) -> (f64, f64, f64) {
        let h = eta * a;
        let disc = (3.0 + 6.0 * h * v).powi(2) - 60.0 * h * v * (1.0 + 3.0 * h * v);
        let u = ((3.0 + 6.0 * h * v) - disc.sqrt()) / (30.0 * h);
        (
            u / a,
            6.0 * h * (v - u),
            4.0 * h * u * (30.0 * h * u - 3.0 - 6.0 * h * v),
        )
    }

    #[test]
    fn p1_quadratic_plateau_and_eigenvalues_match_hand_derivation() {
        for (eta, a, v) in [(0.15, 1.0, 1.0), (0.05, 0.5, 2.0), (0.01, 1.0, 1.0)] {
            let (model, tr) = (quad(1, 1, a, v), training(eta));
            let start = symmetric_start(1, 0.1, &DMatrix::identity(1, 1));
            let pl = find_plateau(
                &model,
                &tr,
                OdeVariant::Full,
                &start,
                &PlateauMethod::Newton(PlateauOptions::default()),
            )
            .unwrap();
            let (q, mu, lq) = hand_p1(eta, a, v);
            assert!(
                (pl.overlaps.q[(0, 0)] - q).abs() < 1e-10,
                "q {} vs {q}",
                pl.overlaps.q[(0, 0)]
            );
            assert_eq!(pl.overlaps.m[(0, 0)], 0.0);
            let s = linearise(&model, &tr, OdeVariant::Full, pl, 1e-5).unwrap();
            let j = &s.jacobian;
            // Finite differences have a relative error ~1e-10 here.
            assert!((j[(1, 1)] - mu).abs() < 1e-8 * mu.abs(), "μ {} vs {mu}", j[(1, 1)]);
            assert!((j[(0, 0)] - lq).abs() < 1e-8 * lq.abs(), "λ_q {} vs {lq}", j[(0, 0)]);
            assert!(j[(0, 1)].abs() < 1e-9 && j[(1, 0)].abs() < 1e-9);
            assert!((s.mu.unwrap() - mu).abs() < 1e-8 * mu);
            assert_eq!(s.unstable_count, 1);
        }
    }

    #[test]
    fn no_plateau_beyond_the_learning_rate_edge() {
        // ηav = 0.5 > 0.1802: the fixed-point equation has no real root and Q diverges (theory.md §5).
        let start = symmetric_start(1, 0.1, &DMatrix::identity(1, 1));
        let r = find_plateau(
            &quad(1, 1, 1.0, 1.0),
            &training(0.5),
            OdeVariant::Full,
            &start,
            &PlateauMethod::Newton(PlateauOptions::default()),
        );
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("diverges"), "{msg}");
    }

    /// Uniform layers (theory.md §5, flagged "not yet confirmed"): gradient flow (η² term dropped)
    /// gives exactly q* = vp*/(a(p + 2)) and μ = 4ηav; with the η² term, μ/(4ηav) → 1 as η → 0 with
    /// an O(η) correction, and the M block of the Jacobian is 2ηa(v(p* + 2) − aq(p + 2))·I.
    #[test]
    fn uniform_layers_plateau_and_growth_rate() {
        for (p, k, a, v) in [(2, 1, 0.5, 1.0), (3, 2, 1.0 / 3.0, 0.5), (4, 1, 0.25, 1.0)] {
            let model = quad(p, k, a, v);
            let start = symmetric_start(p, 0.1, &DMatrix::identity(k, k));
            let q_star = v * k as f64 / (a * (p + 2) as f64);
            let eta = 0.01;
            let gf = find_plateau(
                &model,
                &training(eta),
                OdeVariant::GradientFlow,
                &start,
                &PlateauMethod::Newton(PlateauOptions::default()),
            )
            .unwrap();
            assert!((&gf.overlaps.q - DMatrix::identity(p, p) * q_star).amax() < 1e-10);
            let s = linearise(&model, &training(eta), OdeVariant::GradientFlow, gf, 1e-5).unwrap();
            let mu_gf = 4.0 * eta * a * v;
            assert!((s.mu.unwrap() - mu_gf).abs() < 1e-8 * mu_gf, "{:?} vs {mu_gf}", s.mu);
            // p·p* unstable directions, all in the M block.
            assert_eq!(s.unstable_count, p * k);
            let mut prev = f64::NAN;
            for eta in [0.02, 0.01, 0.005] {
                let tr = training(eta);
                let pl = find_plateau(
                    &model,
                    &tr,
                    OdeVariant::Full,
                    &start,
                    &PlateauMethod::Newton(PlateauOptions::default()),
                )
                .unwrap();
                let q = pl.overlaps.q[(0, 0)];
                let s = linearise(&model, &tr, OdeVariant::Full, pl, 1e-5).unwrap();
                let nq = p * (p + 1) / 2;
                let block = 2.0 * eta * a * (v * (k + 2) as f64 - a * q * (p + 2) as f64);
                let mb = s.jacobian.view((nq, nq), (p * k, p * k)).into_owned();
                assert!((mb - DMatrix::identity(p * k, p * k) * block).amax() < 1e-9);
                assert!(s.jacobian.view((0, nq), (nq, p * k)).amax() < 1e-9);
                let rel = s.mu.unwrap() / (4.0 * eta * a * v) - 1.0;
                // The correction is O(η): halving η halves it (within 10 %).
                if prev.is_finite() {
                    assert!((rel / prev - 0.5).abs() < 0.05, "η = {eta}: {rel} vs {prev}");
                }
                prev = rel;
            }
            assert!(prev.abs() < 0.1);
        }
    }

    /// The finite-difference Jacobian against directional derivatives with a different step, at
    /// a fixed point and at a generic point (p = 2, p* = 2 quadratic, all entries coupled).
    #[test]
    fn jacobian_matches_directional_differences() {
        let model = Model::new(Activation::Quadratic, vec![0.7, 0.4], vec![1.0, 0.6], 0.1);
        let tr = training(0.05);
        let pt = DMatrix::identity(2, 2);
        let start = symmetric_start(2, 0.3, &pt);
        let pl = find_plateau(
            &model,
            &tr,
            OdeVariant::Full,
            &start,
            &PlateauMethod::Newton(PlateauOptions::default()),
        )
        .unwrap();
        let generic = Overlaps::new(
            DMatrix::from_row_slice(2, 2, &[0.8, 0.1, 0.1, 0.5]),
            DMatrix::from_row_slice(2, 2, &[0.3, -0.2, 0.1, 0.4]),
            pt.clone(),
        );
        for ov in [pl.overlaps, generic] {
            let j = jacobian(&model, &tr, OdeVariant::Full, &ov, 1e-5).unwrap();
            let x = ov.to_state();
            for dir in 0..3 {
                let d = DVector::from_fn(x.len(), |i, _| ((i * 7 + dir * 3) % 5) as f64 - 2.0);
                let e = 1e-4;
                let fp = rhs_state(&model, &tr, OdeVariant::Full, &pt, &(&x + &d * e)).unwrap();
                let fm = rhs_state(&model, &tr, OdeVariant::Full, &pt, &(&x - &d * e)).unwrap();
                let dd = (fp - fm) / (2.0 * e);
                // Truncation error of the directional difference ~ e²·|F'''| ~ 1e-8.
                assert!((&j * &d - dd).amax() < 1e-7);
            }
        }
    }

    /// The erf committee p = p* = 2 (a = v = 1): from M = 0 the flow reaches the permutation-
    /// symmetric (unspecialised) plateau, all M_ik equal, which rounding errors eventually leave;
    /// the search must stop there, and its single unstable direction is the specialisation mode
    /// M ∝ [[1, −1], [−1, 1]] (Saad & Solla 1995).
    #[test]
    fn erf_symmetric_plateau_and_specialisation_mode() {
        let model = Model::new(Activation::Erf, vec![1.0; 2], vec![1.0; 2], 0.0);
        let tr = training(1.0);
        let start = symmetric_start(2, 0.1, &DMatrix::identity(2, 2));
        let pl = find_plateau(
            &model,
            &tr,
            OdeVariant::Full,
            &start,
            &PlateauMethod::Newton(PlateauOptions::default()),
        )
        .unwrap();
        let m = &pl.overlaps.m;
        assert!(m[(0, 0)] > 0.1 && (m.max() - m.min()) < 1e-10, "{m}");
        assert!((pl.overlaps.q[(0, 0)] - pl.overlaps.q[(1, 1)]).abs() < 1e-10);
        assert!(pl.eg > 1e-3);
        let s = linearise(&model, &tr, OdeVariant::Full, pl, 1e-5).unwrap();
        assert_eq!(s.unstable_count, 1);
        let v = s.unstable_vector.unwrap();
        // State order: q_0_0, q_0_1, q_1_1, m_0_0, m_0_1, m_1_0, m_1_1.
        let expect = [0.0, 0.0, 0.0, 0.5, -0.5, -0.5, 0.5];
        let dot: f64 = v.iter().zip(expect).map(|(a, b)| a * b).sum();
        assert!(dot.abs() > 1.0 - 1e-8, "{v}");
    }

    /// The closed-form μ (the reference) against the largest eigenvalue of the finite-difference
    /// Jacobian at the same M = 0 plateau, for uniform and non-uniform layers, a non-identity P
    /// and weight decay.
    #[test]
    fn closed_form_growth_rate_matches_the_jacobian() {
        let cases = [
            (quad(1, 1, 1.0, 1.0), DMatrix::identity(1, 1), 0.1, 0.0),
            (quad(3, 1, 1.0, 1.0), DMatrix::identity(1, 1), 0.05, 0.0),
            (
                Model::new(Activation::Quadratic, vec![0.8; 2], vec![1.0, 0.6], 0.0),
                DMatrix::from_row_slice(2, 2, &[1.0, 0.3, 0.3, 0.9]),
                0.05,
                0.01,
            ),
        ];
        for (model, p_teacher, eta, wd) in cases {
            let tr = Training {
                eta,
                weight_decay: wd,
                batch: 1,
            };
            let start = symmetric_start(model.p(), 1.0, &p_teacher);
            let pl = find_plateau(
                &model,
                &tr,
                OdeVariant::Full,
                &start,
                &PlateauMethod::Integrate { tol: 1e-12 },
            )
            .unwrap();
            let closed = growth_rate(&model, &tr, &pl.overlaps, GrowthRate::ClosedForm).unwrap();
            let jac = GrowthRate::Jacobian {
                variant: OdeVariant::Full,
                fd_step: 1e-5,
            };
            let numerical = growth_rate(&model, &tr, &pl.overlaps, jac).unwrap();
            assert!(closed > 0.0, "μ = {closed}");
            assert!(
                (closed - numerical).abs() < 1e-8 * closed.abs().max(1.0),
                "{closed} vs {numerical}"
            );
        }
        let erf = Model::new(Activation::Erf, vec![1.0], vec![1.0], 0.0);
        let ov = symmetric_start(1, 1.0, &DMatrix::identity(1, 1));
        assert!(growth_rate(&erf, &training(0.1), &ov, GrowthRate::ClosedForm).is_err());
    }
}
