//! The predicted distribution of plateau-escape times at finite N, with no fitted constant
//! (theory.md §6, docs/fluctuations.md).
//!
//! From an uninformed start (M₀ = 0 on average) of the quadratic network, M = 0 is invariant for the
//! ODE and the mean path s̄(t) stays on it. Along it X = √N·M obeys the linear SDE
//! dX = J_MM(t) X dt + G_M dW (the M blocks of the Jacobian and of D at M = 0; the M block
//! decouples from Q there). With p* = 1 and a uniform second layer the path keeps Q ∝ I, so that
//! J_MM = μ(t) I and D_MM = d(t) I, and X(t) = φ(t)[X(0) + ∫ φ⁻¹ G_M dW] with φ = exp ∫μ. After the
//! transient X(t) ≈ φ(t) Z with Z ~ N(0, s_Z I_p),
//!
//!   s_Z = N·Var M_i(0) + ∫₀^∞ d(t) φ(t)⁻² dt,
//!
//! and a run escapes at leading order like the deterministic ODE started from (Q̄₀, M₀ = Z/√N): its
//! escape time is T(‖Z‖/√N), T(r) the ODE escape time from M₀ = r·e₁ (rotation invariance), under
//! the escape rule of the runs. With ‖Z‖² = s_Z χ²_p and T decreasing,
//!
//!   P(t_esc ≤ t) = P(χ²_p ≥ N ρ(t)²/s_Z),   ρ = T⁻¹,
//!
//! at every N. For r below the table, T(r) = T(r₀) + ln(r₀/r)/μ_∞ (μ_∞ the plateau growth rate):
//! hence mean ≈ ln N/(2μ_∞) + const and an N-independent spread (√ψ′(p/2)/(2μ_∞) asymptotically).

use super::escape::{crossing_time, Crossing, EscapeDetector, EscapeRule};
use crate::init::InitSpec;
use crate::model::{erf, Activation, Model, Training};
use crate::ode::lna::initial_covariance;
use crate::ode::{integrate, jacobian, rhs_state, OdeOptions, OdeVariant};
use crate::overlaps::Overlaps;
use crate::population::fluctuations::diffusion;
use crate::population::population_error;
use anyhow::{bail, Result};
use nalgebra::{DMatrix, DVector};

/// Numerical settings of [`escape_law`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EscapeLawOptions {
    /// Step of the noise accumulation along the M = 0 path.
    pub step: f64,
    /// Radii of the T(r) table (log-spaced on [r_min, r_max]).
    pub radii: usize,
    pub r_min: f64,
    pub r_max: f64,
    /// Spacing of the ODE records on which the escape rule is applied (then interpolated as for runs).
    pub record_dt: f64,
}

impl Default for EscapeLawOptions {
    fn default() -> Self {
        EscapeLawOptions {
            step: 0.01,
            radii: 160,
            r_min: 1e-6,
            r_max: 0.3,
            record_dt: 0.005,
        }
    }
}

/// The predicted law of the escape time (module docs), valid for every N.
#[derive(Debug, Clone)]
pub struct EscapeLaw {
    /// Variance of each component of Z (initial overlap plus accumulated SGD noise).
    pub z_variance: f64,
    /// Its part from the initial overlap, N·Var M_i(0).
    pub z_variance_initial: f64,
    /// Degrees of freedom p·p* of ‖Z‖².
    pub dof: usize,
    /// Growth rate μ_∞ at the end of the M = 0 path (the plateau).
    pub mu: f64,
    /// (ln r, T(r)), r increasing (T decreasing).
    table: Vec<(f64, f64)>,
}

/// Predicted mean, standard deviation and median of the escape time at one N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictedEscape {
    pub mean: f64,
    pub sd: f64,
    pub median: f64,
}

/// The escape-time law of `model` trained by `training` from the uninformed start `init` (teacher
/// overlap `p_teacher`), under `rule` (module docs). Quadratic activation, p* = 1, uniform a.
pub fn escape_law(
    model: &Model,
    training: &Training,
    init: &InitSpec,
    p_teacher: &DMatrix<f64>,
    rule: EscapeRule,
    opts: &EscapeLawOptions,
) -> Result<EscapeLaw> {
    check_scope(model, init)?;
    let p = model.p();
    let start = Overlaps::new(
        DMatrix::identity(p, p) * init.sigma0.powi(2),
        DMatrix::zeros(p, 1),
        p_teacher.clone(),
    );
    let z_variance_initial = initial_covariance(init, p, p_teacher)[(p * (p + 1) / 2, p * (p + 1) / 2)];
    let (noise, mu) = accumulated_noise(model, training, &start, opts)?;
    let table = radius_table(model, training, &start, rule, mu, opts)?;
    Ok(EscapeLaw {
        z_variance: z_variance_initial + noise,
        z_variance_initial,
        dof: p,
        mu,
        table,
    })
}

fn check_scope(model: &Model, init: &InitSpec) -> Result<()> {
    if model.activation != Activation::Quadratic || model.p_star() != 1 {
        bail!("the predicted escape law is implemented for the quadratic network with p* = 1");
    }
    if model.a.iter().any(|&a| a != model.a[0]) {
        bail!("the predicted escape law needs a uniform student second layer (Q stays ∝ I)");
    }
    if init.student_mix.is_some() || init.sigma0 <= 0.0 {
        bail!("the predicted escape law needs an uninformed start with σ₀ > 0 (M = 0 on average)");
    }
    Ok(())
}

/// ∫₀^∞ d(t) φ(t)⁻² dt along the M = 0 path (trapezoid, step `opts.step`, until φ⁻² < 1e-16), and
/// the growth rate μ at the end. Checks J_MM = μI and D_MM = dI.
fn accumulated_noise(
    model: &Model,
    training: &Training,
    start: &Overlaps,
    opts: &EscapeLawOptions,
) -> Result<(f64, f64)> {
    let p = model.p();
    let m0 = p * (p + 1) / 2;
    let rates = |s: &DVector<f64>| -> Result<(f64, f64)> {
        let ov = Overlaps::from_state(s, &start.p);
        let j = jacobian(model, training, OdeVariant::Full, &ov, 1e-5)?;
        let d = diffusion(model, training, &ov)?;
        let (jm, dm) = (j.view((m0, m0), (p, p)), d.view((m0, m0), (p, p)));
        let (mu, dd) = (jm[(0, 0)], dm[(0, 0)]);
        let j_off = (jm - DMatrix::identity(p, p) * mu).amax();
        let d_off = (dm - DMatrix::identity(p, p) * dd).amax();
        if j_off > 1e-6 * mu.abs() || d_off > 1e-6 * dd.abs() {
            bail!("the M block of the linearisation is not isotropic along the M = 0 path");
        }
        Ok((mu, dd))
    };
    let h = opts.step;
    let (mut s, mut log_phi, mut acc, mut t) = (start.to_state(), 0.0f64, 0.0, 0.0);
    let (mut mu, mut d) = rates(&s)?;
    while (-2.0 * log_phi).exp() > 1e-16 {
        if t > 1e4 {
            bail!("the plateau is not unstable (μ = {mu:.3e}): no escape to predict");
        }
        s = rk4(model, training, &start.p, &s, h)?;
        let (mu1, d1) = rates(&s)?;
        let log_phi1 = log_phi + 0.5 * h * (mu + mu1);
        acc += 0.5 * h * (d * (-2.0 * log_phi).exp() + d1 * (-2.0 * log_phi1).exp());
        (mu, d, log_phi, t) = (mu1, d1, log_phi1, t + h);
    }
    Ok((acc, mu))
}

fn rk4(model: &Model, tr: &Training, p_t: &DMatrix<f64>, s: &DVector<f64>, h: f64) -> Result<DVector<f64>> {
    let f = |x: &DVector<f64>| rhs_state(model, tr, OdeVariant::Full, p_t, x);
    let k1 = f(s)?;
    let k2 = f(&(s + &k1 * (h / 2.0)))?;
    let k3 = f(&(s + &k2 * (h / 2.0)))?;
    let k4 = f(&(s + &k3 * h))?;
    Ok(s + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0))
}

/// The escape time T(r) of the ODE from (Q̄₀, r·e₁) on log-spaced radii; stops at the first radius
/// from which the rule does not fire (a start too far from the plateau).
fn radius_table(
    model: &Model,
    training: &Training,
    start: &Overlaps,
    rule: EscapeRule,
    mu: f64,
    opts: &EscapeLawOptions,
) -> Result<Vec<(f64, f64)>> {
    let (l0, l1) = (opts.r_min.ln(), opts.r_max.ln());
    let t_max = 2.0 * (1.0 / opts.r_min).ln() / mu + 100.0;
    let ode_opts = OdeOptions {
        rtol: 1e-10,
        atol: 1e-13,
        ..OdeOptions::default()
    };
    let mut table = Vec::with_capacity(opts.radii);
    for i in 0..opts.radii {
        let lr = l0 + (l1 - l0) * i as f64 / (opts.radii - 1) as f64;
        let mut ov = start.clone();
        ov.m[(0, 0)] = lr.exp();
        let grid: Vec<f64> = (0..=(t_max / opts.record_dt) as usize)
            .map(|k| k as f64 * opts.record_dt)
            .collect();
        let mut det = EscapeDetector::new(rule);
        // Stop one time unit after the (coarse, per-step) detector fired, so that the record grid
        // surely contains the crossing.
        let sol = integrate(model, training, &ov, &grid, &ode_opts, |t, o: &Overlaps| {
            det.observe(t, o, population_error(model, &o.gram()));
            det.escaped().is_some_and(|te| t > te + 1.0)
        })?;
        let records = sol
            .t
            .iter()
            .zip(&sol.overlaps)
            .zip(&sol.eg)
            .map(|((&t, o), &e)| (t, o.m.amax(), e));
        match crossing_time(rule, Crossing::ESCAPE, records) {
            Some(t) => table.push((lr, t)),
            None if i == 0 => bail!("the ODE from the smallest radius does not escape by t = {t_max:.0}"),
            None => break,
        }
    }
    Ok(table)
}

impl EscapeLaw {
    /// T(r) (module docs), extrapolated below the table with slope −1/μ in ln r.
    pub fn escape_time(&self, r: f64) -> f64 {
        let lr = r.ln();
        let (l0, t0) = self.table[0];
        if lr <= l0 {
            return t0 + (l0 - lr) / self.mu;
        }
        match self.table.windows(2).find(|w| lr <= w[1].0) {
            Some(w) => w[0].1 + (w[1].1 - w[0].1) * (lr - w[0].0) / (w[1].0 - w[0].0),
            None => self.table.last().expect("non-empty").1,
        }
    }

    /// ρ(t) = T⁻¹(t): the radius escaping exactly at t (extrapolated below the table for late t);
    /// `None` for t earlier than the largest tabulated radius escapes (probability ≈ 0).
    fn radius(&self, t: f64) -> Option<f64> {
        let (l0, t0) = self.table[0];
        if t >= t0 {
            return Some((l0 - (t - t0) * self.mu).exp());
        }
        self.table
            .windows(2)
            .find(|w| t >= w[1].1)
            .map(|w| (w[0].0 + (w[1].0 - w[0].0) * (t - w[0].1) / (w[1].1 - w[0].1)).exp())
    }

    /// P(t_esc ≤ t) at dimension n.
    pub fn cdf(&self, n: f64, t: f64) -> f64 {
        match self.radius(t) {
            Some(r) => chi2_survival(self.dof, n * r * r / self.z_variance),
            None => 0.0,
        }
    }

    /// Mean, s.d. (from ∫(1 − F) and ∫2t(1 − F), Simpson with step 0.005) and median (bisection).
    pub fn summary(&self, n: f64) -> PredictedEscape {
        let t_hi = self.table[0].1 + 60.0 / (self.mu * self.dof as f64) + (n.ln() / self.mu).max(0.0);
        let steps = ((t_hi / 0.005) as usize).max(2) & !1;
        let h = t_hi / steps as f64;
        let (mut m1, mut m2) = (0.0, 0.0);
        for k in 0..=steps {
            let t = k as f64 * h;
            let w = if k == 0 || k == steps {
                1.0
            } else if k % 2 == 1 {
                4.0
            } else {
                2.0
            };
            let s = 1.0 - self.cdf(n, t);
            m1 += w * s;
            m2 += w * 2.0 * t * s;
        }
        let (m1, m2) = (m1 * h / 3.0, m2 * h / 3.0);
        let (mut lo, mut hi) = (0.0, t_hi);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(n, mid) < 0.5 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        PredictedEscape {
            mean: m1,
            sd: (m2 - m1 * m1).max(0.0).sqrt(),
            median: 0.5 * (lo + hi),
        }
    }
}

/// P(χ²_k ≥ x) for integer k ≥ 1: Q(k/2, x/2) by the half-integer recurrence
/// Q(a + 1, y) = Q(a, y) + y^a e^{−y}/Γ(a + 1), from Q(1, y) = e^{−y} and Q(½, y) = erfc(√y).
///
/// ```
/// use hdsgd::analysis::escape_theory::chi2_survival;
/// assert!((chi2_survival(2, 2.0) - (-1.0f64).exp()).abs() < 1e-15);
/// assert!((chi2_survival(1, 3.841_458_820_694_124) - 0.05).abs() < 1e-9);
/// ```
pub fn chi2_survival(k: usize, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let y = x / 2.0;
    // (a, Q(a, y), y^a e^{−y}/Γ(a + 1)) at a = 1 (even k) or a = ½ (odd k).
    let (mut a, mut q, mut term) = if k.is_multiple_of(2) {
        (1.0, (-y).exp(), y * (-y).exp())
    } else {
        let gamma_3_2 = 0.5 * std::f64::consts::PI.sqrt();
        (0.5, 1.0 - erf(y.sqrt()), y.sqrt() * (-y).exp() / gamma_3_2)
    };
    while a < k as f64 / 2.0 {
        q += term;
        a += 1.0;
        term *= y / a;
    }
    q
}

/// One-sample Kolmogorov–Smirnov distance between a sample of escape times (censored runs as +∞,
/// censoring at `t_censor`) and a CDF: sup_t |F_n(t) − F(t)| over t ≤ t_censor.
pub fn ks_distance(sample: &[f64], t_censor: f64, cdf: impl Fn(f64) -> f64) -> f64 {
    let mut x: Vec<f64> = sample
        .iter()
        .copied()
        .filter(|t| t.is_finite() && *t <= t_censor)
        .collect();
    x.sort_by(f64::total_cmp);
    let n = sample.len() as f64;
    let mut d = 0.0f64;
    for (i, &t) in x.iter().enumerate() {
        let f = cdf(t);
        d = d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n);
    }
    d.max((cdf(t_censor) - x.len() as f64 / n).abs())
}

/// Asymptotic p-value of a KS distance d for n samples (Kolmogorov series with Stephens' finite-n
/// factor √n + 0.12 + 0.11/√n).
pub fn ks_p_value(d: f64, n: usize) -> f64 {
    let sn = (n as f64).sqrt();
    let lambda = (sn + 0.12 + 0.11 / sn) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let s: f64 = (1..=100)
        .map(|j| {
            let j = j as f64;
            let sign = if j as usize % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * j * j * lambda * lambda).exp()
        })
        .sum();
    (2.0 * s).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2_survival_known_quantiles() {
        // Upper 5% points of χ²_k, k = 1 … 4.
        for (k, x) in [
            (1, 3.841_458_820_694_124),
            (2, 5.991_464_547_107_979),
            (3, 7.814_727_903_251_178),
            (4, 9.487_729_036_781_154),
        ] {
            assert!(
                (chi2_survival(k, x) - 0.05).abs() < 1e-9,
                "k = {k}: {}",
                chi2_survival(k, x)
            );
        }
        assert_eq!(chi2_survival(3, 0.0), 1.0);
    }

    #[test]
    fn ks_of_a_perfect_grid_sample() {
        // The sample (i − ½)/n of a uniform law: D = 1/(2n).
        let n = 50;
        let x: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
        let d = ks_distance(&x, 1.0, |t| t.clamp(0.0, 1.0));
        assert!((d - 0.5 / n as f64).abs() < 1e-12);
        assert!(ks_p_value(d, n) > 0.99);
        assert!(ks_p_value(0.3, 100) < 1e-6);
    }
}
