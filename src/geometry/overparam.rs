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
use crate::config::{Experiment, OdeInitial};
use crate::experiments::output::write_atomic;
use crate::experiments::plots::{self, Panel, Series};
use crate::experiments::runner::{simulate_all, RunResult};
use crate::model::{Model, Training};
use crate::ode::OdeVariant;
use crate::overlaps::Overlaps;
use crate::population::population_error;
use anyhow::{Context, Result};
use nalgebra::DMatrix;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

/// First time a series of (t, e_g) falls below `threshold`, interpolating ln e_g linearly between
/// the two records around the crossing; `None` if it never does.
///
/// ```
/// use hdsgd::geometry::overparam::crossing_time;
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
/// use hdsgd::geometry::overparam::trigamma;
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

/// Least-squares line y = A + B x; returns (A, B).
fn fit_line(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

/// The experiment with student width `p` (second layer re-resolved from the file's `model.a`).
fn with_width(exp: &Experiment, p: usize) -> Result<Experiment> {
    let mut e = exp.clone();
    e.model.a = exp
        .config
        .model
        .a
        .resolve(p)
        .map_err(|m| anyhow::anyhow!("invalid value for `geometry.widths`: model.a {m} for p = {p}"))?;
    e.config.model.p = p as i64;
    // Escape times need no matched ODE.
    e.ode_initial = OdeInitial::Explicit;
    e.explicit_initial = None;
    Ok(e)
}

/// Escape-time study over `widths` (module docs): writes `escape.csv`
/// (`p,n,seed,t_esc,eg_plateau,diverged_at`; empty t_esc when a run did not escape, empty
/// diverged_at when it did not diverge; a run that diverged before escaping has no t_esc),
/// `escape.json` (per p: μ, predicted slope 1/(2μ) and spread √ψ′(pp*/2)/(2μ), fitted intercept and slope of mean t_esc vs ln N, per-N mean ± s.e.) and
/// `escape.svg`. `results` are the runs of the experiment's own width.
pub fn escape_outputs(
    exp: &Experiment,
    results: &[RunResult],
    dir: &Path,
    threads: usize,
    widths: &[usize],
    fraction: f64,
) -> Result<()> {
    let mut csv = String::from("p,n,seed,t_esc,eg_plateau,diverged_at\n");
    let mut per_p = vec![];
    let mut panel = Panel {
        title: format!("{}: plateau escape (e_g < {fraction}·plateau)", exp.name),
        x_label: "N".into(),
        y_label: "mean escape time".into(),
        log_x: true,
        log_y: false,
        series: vec![],
    };
    for (ci, &p) in widths.iter().enumerate() {
        let own = p == exp.model.p();
        let e = with_width(exp, p)?;
        let owned;
        let runs: &[RunResult] = if own {
            results
        } else {
            owned = simulate_all(&e, threads, false)?;
            &owned
        };
        let p_teacher = &runs.first().context("no runs")?.trajectory.initial.p;
        // The plateau and μ depend on P, which is exactly I for an orthonormal teacher; for a
        // Gaussian teacher the first run's P is used for the prediction.
        let (_, eg_plat, mu) = plateau_rate(&e.model, &e.training, e.sigma0, p_teacher)?;
        let mut by_n = vec![];
        let (mut xs, mut ys, mut ses) = (vec![], vec![], vec![]);
        for &n in &e.ns {
            let mut times = vec![];
            let mut total = 0;
            let mut diverged = 0;
            for r in runs.iter().filter(|r| r.task.n == n) {
                total += 1;
                diverged += usize::from(r.trajectory.diverged_at.is_some());
                let series: Vec<(f64, f64)> = r.trajectory.records.iter().map(|x| (x.t, x.eg)).collect();
                let t = crossing_time(&series, fraction * eg_plat);
                let _ = writeln!(
                    csv,
                    "{p},{n},{},{},{eg_plat},{}",
                    r.task.seed_index,
                    t.map(|x| x.to_string()).unwrap_or_default(),
                    r.trajectory.diverged_at.map(|x| x.to_string()).unwrap_or_default()
                );
                times.extend(t);
            }
            let k = times.len() as f64;
            let mean = times.iter().sum::<f64>() / k;
            let sd = (times.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0)).sqrt();
            if !times.is_empty() {
                xs.push((n as f64).ln());
                ys.push(mean);
                ses.push(if times.len() > 1 { sd / k.sqrt() } else { f64::NAN });
            }
            by_n.push(
                json!({"n": n, "escaped": times.len(), "runs": total, "diverged": diverged,
                "mean_t_esc": (!times.is_empty()).then_some(mean),
                "se_t_esc": (times.len() > 1).then_some(sd / k.sqrt()),
                "sd_t_esc": (times.len() > 1).then_some(sd)}),
            );
        }
        let fit = fit_line(&xs, &ys);
        // Standard error of the fitted slope from the standard errors of the means (independent
        // seeds per N): se_B² = Σ (x_i − x̄)² se_i² / Sxx².
        let slope_se = {
            let mx = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
            let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
            let v: f64 = xs.iter().zip(&ses).map(|(x, se)| (x - mx).powi(2) * se * se).sum();
            (sxx > 0.0 && v.is_finite()).then(|| v.sqrt() / sxx)
        };
        let slope_theory = 1.0 / (2.0 * mu);
        // theory.md §6: the spread over seeds √ψ′(pp*/2)/(2μ), independent of N.
        let sd_theory = trigamma((p * e.model.p_star()) as f64 / 2.0).sqrt() / (2.0 * mu);
        per_p.push(json!({
            "p": p, "a": e.model.a[0], "eg_plateau": eg_plat, "mu": mu, "slope_theory": slope_theory,
            "sd_theory": sd_theory,
            "fit_intercept": fit.map(|f| f.0), "fit_slope": fit.map(|f| f.1), "fit_slope_se": slope_se, "per_n": by_n,
        }));
        let nx: Vec<f64> = xs.iter().map(|x| x.exp()).collect();
        let mut s = Series::line(format!("p = {p}"), nx.clone(), ys.clone(), ci);
        s.markers = true;
        panel.series.push(s);
        if let Some((a, b)) = fit {
            panel.series.push(Series::line(
                format!("p = {p} fit, slope {b:.2}"),
                nx.clone(),
                xs.iter().map(|x| a + b * x).collect(),
                ci,
            ));
            // Theory slope through the data's centre of mass.
            let (mx, my) = (
                xs.iter().sum::<f64>() / xs.len() as f64,
                ys.iter().sum::<f64>() / ys.len() as f64,
            );
            let mut th = Series::line(
                format!("p = {p} 1/(2μ) = {slope_theory:.2}"),
                nx,
                xs.iter().map(|x| my + slope_theory * (x - mx)).collect(),
                ci,
            );
            th.dashed = true;
            panel.series.push(th);
        }
    }
    write_atomic(&dir.join("escape.csv"), csv.as_bytes())?;
    let summary = json!({
        "definition": "t_esc = first t with e_g < fraction · e_g(plateau of the full ODE from (σ0² I, M = 0)), ln e_g interpolated between records; fit: mean t_esc = A + B ln N; slope_theory = 1/(2μ)",
        "fraction": fraction,
        "per_p": per_p,
    });
    write_atomic(
        &dir.join("escape.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if exp.figures {
        plots::draw(&dir.join("escape.svg"), &[panel], 1)?;
    }
    Ok(())
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

    #[test]
    fn line_fit_is_exact_on_a_line() {
        let (a, b) = fit_line(&[1.0, 2.0, 3.0], &[3.0, 5.0, 7.0]).unwrap();
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
    }
}
