//! Finite-size scaling of the fluctuations around the overlap ODEs (theory.md §6).
//!
//! At finite N the overlaps fluctuate around the ODE with standard deviation ~ N^{-1/2} and a mean
//! bias ~ N^{-1} (away from instabilities). `hdsgd scaling` simulates every (N, seed), and at each
//! record time and for each observable (e_g, every overlap, tr Q and ‖M‖_F; with `[geometry] observables =
//! ["conserved"]` also the entries `cons_k_l` of the conserved quantity I(t) and its drift `cons_drift`,
//! [`crate::geometry::conserved`]) computes the mean and variance over
//! seeds and the mean deviation from two ODEs:
//! * the matched ODE, started from each run's own initial overlaps;
//! * the typical ODE, started from Q₀ = σ₀² I, M₀ = 0 (P = I, or `[init] p`). For the quadratic
//!   network M = 0 is invariant, so this ODE stays on the plateau forever: the comparison is
//!   meaningful only before the escape (where M ~ N^{-1/2} anyway).
//!
//! Then, per observable and time window, it fits std ∝ N^{-b} and |mean deviation| ∝ N^{-a}.
//! Window statistics are built per run (a run's window average), so that the correlation of one
//! run's records in time is accounted for in the standard errors:
//! * variance: d_r = mean_{t∈W} (x_r(t) − x̄(t))², V = Σ_r d_r/(n − 1), se(V) = sd(d)·√n/(n − 1),
//!   std = √V, se(std) = se(V)/(2√V);
//! * mean deviation: D_r = mean_{t∈W} (x_r(t) − x_ode(t)), D̄ = mean_r D_r, se = sd(D)/√n.
//!
//! After the escape from a plateau the symmetry of the quadratic network (W → OW) and of the
//! committee (permutations of hidden units) makes individual overlaps non-self-averaging (the
//! selected solution depends on the O(N^{-1/2}) start and on the SGD noise), and the O(1) spread of
//! escape times makes e_g(t) differ by O(1) between seeds: there the fits measure b ≈ 0, which is
//! physics, not a failure of the method. See docs/studies.md.

use super::fits::{power_law_fit, PowerLawFit};
use crate::config::Experiment;
use crate::experiments::output::{check_output_dir, write_atomic};
use crate::experiments::plots::{self, Panel, Series};
use crate::experiments::runner::{record_times, simulate_all, RunResult};
use crate::experiments::{output_dir, OutputOptions};
use crate::ode::{integrate, OdeSolution};
use crate::overlaps::Overlaps;
use anyhow::{bail, Result};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// `[scaling]` section of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScalingConfig {
    /// Time windows [t_start, t_end] of the fits (closed intervals of record times).
    /// Default: one window over every record time after t = 0.
    #[serde(default)]
    pub windows: Vec<[f64; 2]>,
}

impl ScalingConfig {
    /// Checks the section; on error returns (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for w in &self.windows {
            if !(w[0].is_finite() && w[1].is_finite() && w[0] >= 0.0 && w[0] <= w[1]) {
                return Err((
                    "windows".into(),
                    format!("each window must be [t_start, t_end] with 0 ≤ t_start ≤ t_end (got {w:?})"),
                ));
            }
        }
        Ok(())
    }
}

/// Values x[run][record] of one observable for the runs at one N, with the two ODE references.
#[derive(Debug, Clone, Default)]
pub struct ObservableRuns {
    pub sim: Vec<Vec<f64>>,
    pub matched: Vec<Vec<f64>>,
    /// The typical ODE on the record times (one curve for all runs at this N).
    pub typical: Vec<f64>,
}

/// Per-N window statistics of one observable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub n: usize,
    pub runs: usize,
    pub std: f64,
    pub se_std: f64,
    /// Standard deviation of x − x_matched-ODE (the fluctuation around the matched ODE).
    pub std_dev_matched: f64,
    pub se_std_dev_matched: f64,
    pub mean_dev_matched: f64,
    pub se_mean_dev_matched: f64,
    pub mean_dev_typical: f64,
    pub se_mean_dev_typical: f64,
}

/// Per-run window variance estimate (see the module documentation): (std, se(std)).
pub fn window_std(curves: &[Vec<f64>], idx: &[usize]) -> (f64, f64) {
    let n = curves.len();
    if n < 3 || idx.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let means: Vec<f64> = idx
        .iter()
        .map(|&k| curves.iter().map(|c| c[k]).sum::<f64>() / n as f64)
        .collect();
    let d: Vec<f64> = curves
        .iter()
        .map(|c| idx.iter().zip(&means).map(|(&k, m)| (c[k] - m).powi(2)).sum::<f64>() / idx.len() as f64)
        .collect();
    let nf = n as f64;
    let v = d.iter().sum::<f64>() / (nf - 1.0);
    let dm = d.iter().sum::<f64>() / nf;
    let sd_d = (d.iter().map(|x| (x - dm).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt();
    let se_v = sd_d * nf.sqrt() / (nf - 1.0);
    (v.sqrt(), se_v / (2.0 * v.sqrt()))
}

/// Mean over runs of the per-run window average of `x − reference`: (mean, standard error).
pub fn window_mean_dev(curves: &[Vec<f64>], reference: &dyn Fn(usize, usize) -> f64, idx: &[usize]) -> (f64, f64) {
    let n = curves.len();
    if n < 2 || idx.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let d: Vec<f64> = curves
        .iter()
        .enumerate()
        .map(|(r, c)| idx.iter().map(|&k| c[k] - reference(r, k)).sum::<f64>() / idx.len() as f64)
        .collect();
    let s = super::fits::summarize(&d);
    (s.mean, s.se)
}

/// The statistics of one observable at one N over the record indices `idx`.
pub fn window_stats(n: usize, obs: &ObservableRuns, idx: &[usize]) -> WindowStats {
    let (std, se_std) = window_std(&obs.sim, idx);
    let dev: Vec<Vec<f64>> = obs
        .sim
        .iter()
        .zip(&obs.matched)
        .map(|(s, m)| s.iter().zip(m).map(|(a, b)| a - b).collect())
        .collect();
    let (std_dev_matched, se_std_dev_matched) = window_std(&dev, idx);
    let (mean_dev_matched, se_mean_dev_matched) = window_mean_dev(&obs.sim, &|r, k| obs.matched[r][k], idx);
    let (mean_dev_typical, se_mean_dev_typical) = window_mean_dev(&obs.sim, &|_, k| obs.typical[k], idx);
    WindowStats {
        n,
        runs: obs.sim.len(),
        std,
        se_std,
        std_dev_matched,
        se_std_dev_matched,
        mean_dev_matched,
        se_mean_dev_matched,
        mean_dev_typical,
        se_mean_dev_typical,
    }
}

/// The four fitted quantities of a window, with their theory exponents.
pub const QUANTITIES: [(&str, f64); 4] = [
    ("std", 0.5),
    ("std_dev_matched", 0.5),
    ("abs_mean_dev_matched", 1.0),
    ("abs_mean_dev_typical", 1.0),
];

/// Fits the four quantities of [`QUANTITIES`] against N.
pub fn fit_window(stats: &[WindowStats]) -> Vec<Option<PowerLawFit>> {
    let n: Vec<f64> = stats.iter().map(|s| s.n as f64).collect();
    let pick = |f: &dyn Fn(&WindowStats) -> (f64, f64)| -> Option<PowerLawFit> {
        let (y, se): (Vec<f64>, Vec<f64>) = stats.iter().map(f).unzip();
        power_law_fit(&n, &y, &se)
    };
    vec![
        pick(&|s| (s.std, s.se_std)),
        pick(&|s| (s.std_dev_matched, s.se_std_dev_matched)),
        pick(&|s| (s.mean_dev_matched.abs(), s.se_mean_dev_matched)),
        pick(&|s| (s.mean_dev_typical.abs(), s.se_mean_dev_typical)),
    ]
}

/// Observable `name` ("eg", an overlap column, "tr_q" or "norm_m").
fn observable_value(ov: &Overlaps, eg: f64, name: &str) -> f64 {
    if name == "eg" {
        eg
    } else {
        ov.observable(name).unwrap_or(f64::NAN)
    }
}

/// The series of observable `name` along a trajectory of (t, overlaps, e_g) points: [`observable_value`]
/// pointwise, or for the conserved-quantity observables (`cons_k_l`, `cons_drift`, requested by
/// `[geometry] observables = ["conserved"]`) [`crate::geometry::conserved::observable_series`].
fn observable_series(exp: &Experiment, name: &str, pts: &[(f64, &Overlaps, f64)]) -> Vec<f64> {
    if name.starts_with("cons_") {
        let tv: Vec<(f64, &Overlaps)> = pts.iter().map(|(t, ov, _)| (*t, *ov)).collect();
        crate::geometry::conserved::observable_series(&tv, &exp.model, &exp.training, name)
    } else {
        pts.iter().map(|(_, ov, eg)| observable_value(ov, *eg, name)).collect()
    }
}

/// [`observable_series`] along an ODE solution.
fn ode_series(exp: &Experiment, name: &str, o: &OdeSolution) -> Vec<f64> {
    let pts: Vec<_> =
        o.t.iter()
            .zip(&o.overlaps)
            .zip(&o.eg)
            .map(|((t, ov), eg)| (*t, ov, *eg))
            .collect();
    observable_series(exp, name, &pts)
}

/// `hdsgd scaling`: simulate, compare with the matched and typical ODEs, write `scaling.csv`,
/// `scaling_fits.csv`, `summary.json` and figures.
pub fn command(exp: &Experiment, opts: &OutputOptions) -> Result<()> {
    if exp.ns.len() < 2 {
        bail!("`hdsgd scaling` needs a [simulation] section with at least two N");
    }
    if exp.seeds < 3 {
        bail!("`hdsgd scaling` needs at least 3 seeds per N (simulation.seeds)");
    }
    let cfg = exp.config.scaling.clone().unwrap_or_default();
    let dir = output_dir(exp, opts);
    check_output_dir(&dir, opts.force)?;
    let start = Instant::now();
    let mut results = simulate_all(exp, opts.threads, opts.progress)?;
    let diverged = results.iter().filter(|r| r.trajectory.diverged_at.is_some()).count();
    // Matched ODEs (computed here when the experiment asked for an explicit one).
    for r in results.iter_mut() {
        if r.ode.is_none() {
            let times: Vec<f64> = record_times(exp, r.task.n);
            r.ode = Some(integrate(
                &exp.model,
                &exp.training,
                &r.trajectory.initial,
                &times,
                &exp.ode_options,
                |_, _: &_| false,
            )?);
        }
    }
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let p_teacher = exp
        .explicit_initial
        .as_ref()
        .map(|o| o.p.clone())
        .unwrap_or_else(|| DMatrix::identity(k, k));
    let typical_start = super::stability::symmetric_start(p, exp.sigma0, &p_teacher);
    let mut names = vec!["eg".to_string()];
    names.extend(Overlaps::column_names(p, k));
    // The rotation-invariant observables: self-averaging even after the escape (module doc).
    names.extend(["tr_q".to_string(), "norm_m".to_string()]);
    let conserved = exp
        .config
        .geometry
        .as_ref()
        .is_some_and(|g| g.requests(crate::geometry::GeometryObservable::Conserved));
    if conserved {
        // I(t) needs Q⊥ invertible, i.e. the p + p* rows of W, W* independent: p + p* ≤ N.
        if let Some(&n) = exp.ns.iter().find(|&&n| n < p + k) {
            bail!(
                "simulation.n: N = {n} < p + p* = {}: the conserved quantity requested by geometry.observables needs p + p* ≤ N",
                p + k
            );
        }
        names.extend(crate::geometry::conserved::observable_names(k));
    }
    let windows: Vec<[f64; 2]> = if cfg.windows.is_empty() {
        vec![[
            exp.grid.get(1).copied().unwrap_or(0.0),
            *exp.grid.last().unwrap_or(&0.0),
        ]]
    } else {
        cfg.windows.clone()
    };

    let mut csv = String::from("n,t,observable,mean,variance,mean_dev_matched,mean_dev_typical,ode_typical,n_seeds\n");
    let mut fits_csv = String::from(
        "observable,window_start,window_end,quantity,exponent,se_exponent,theory,log_prefactor,chi2,dof,n_points\n",
    );
    // per observable, per window: the per-N stats (for the figures)
    let mut all_stats: Vec<Vec<Vec<WindowStats>>> = vec![vec![vec![]; windows.len()]; names.len()];
    let mut all_fits: Vec<Vec<Vec<Option<PowerLawFit>>>> = vec![vec![]; names.len()];
    let mut collapse: Collapse = vec![vec![]; names.len()];
    for &n in &exp.ns {
        let times = record_times(exp, n);
        let typical = integrate(
            &exp.model,
            &exp.training,
            &typical_start,
            &times,
            &exp.ode_options,
            |_, _: &_| false,
        )?;
        // Runs that diverged do not have every record: only complete runs enter the statistics.
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.task.n == n && r.trajectory.records.len() == times.len())
            .filter(|r| r.ode.as_ref().is_some_and(|o| o.t.len() == times.len()))
            .collect();
        if runs.len() < 3 {
            bail!("N = {n}: fewer than 3 complete runs (divergences?)");
        }
        let typical_ok = typical.t.len() == times.len();
        for (j, name) in names.iter().enumerate() {
            let obs = ObservableRuns {
                sim: runs
                    .iter()
                    .map(|r| {
                        let pts: Vec<_> = r
                            .trajectory
                            .records
                            .iter()
                            .map(|rec| (rec.t, &rec.overlaps, rec.eg))
                            .collect();
                        observable_series(exp, name, &pts)
                    })
                    .collect(),
                matched: runs
                    .iter()
                    .map(|r| {
                        let o: &OdeSolution = r.ode.as_ref().expect("set above");
                        ode_series(exp, name, o)
                    })
                    .collect(),
                typical: if typical_ok {
                    ode_series(exp, name, &typical)
                } else {
                    vec![f64::NAN; times.len()]
                },
            };
            let (mut nvar, mut tt) = (vec![], vec![]);
            for (kk, &t) in times.iter().enumerate() {
                let vals: Vec<f64> = obs.sim.iter().map(|c| c[kk]).collect();
                let s = super::fits::summarize(&vals);
                let dm: f64 = obs
                    .sim
                    .iter()
                    .zip(&obs.matched)
                    .map(|(a, b)| a[kk] - b[kk])
                    .sum::<f64>()
                    / vals.len() as f64;
                let dt = s.mean - obs.typical[kk];
                let _ = writeln!(
                    csv,
                    "{n},{t},{name},{},{},{},{},{},{}",
                    cell(s.mean),
                    cell(s.std * s.std),
                    cell(dm),
                    cell(dt),
                    cell(obs.typical[kk]),
                    vals.len()
                );
                if t > 0.0 {
                    tt.push(t);
                    nvar.push(n as f64 * s.std * s.std);
                }
            }
            collapse[j].push((n, tt, nvar));
            for (w, win) in windows.iter().enumerate() {
                let idx: Vec<usize> = (0..times.len())
                    .filter(|&kk| times[kk] >= win[0] && times[kk] <= win[1])
                    .collect();
                all_stats[j][w].push(window_stats(n, &obs, &idx));
            }
        }
    }
    let mut fit_summary = vec![];
    for (j, name) in names.iter().enumerate() {
        for (w, win) in windows.iter().enumerate() {
            let fits = fit_window(&all_stats[j][w]);
            for ((q, theory), f) in QUANTITIES.iter().zip(&fits) {
                match f {
                    Some(f) => {
                        let _ = writeln!(
                            fits_csv,
                            "{name},{},{},{q},{},{},{theory},{},{},{},{}",
                            win[0],
                            win[1],
                            f.exponent,
                            f.se_exponent,
                            f.log_prefactor,
                            f.line.chi2,
                            f.line.dof,
                            f.line.dof + 2
                        );
                        fit_summary.push(json!({"observable": name, "window": win, "quantity": q, "exponent": f.exponent, "se": f.se_exponent, "theory": theory}));
                    }
                    None => {
                        let _ = writeln!(fits_csv, "{name},{},{},{q},,,{theory},,,,0", win[0], win[1]);
                    }
                }
            }
            all_fits[j].push(fits);
        }
    }
    write_atomic(&dir.join("scaling.csv"), csv.as_bytes())?;
    write_atomic(&dir.join("scaling_fits.csv"), fits_csv.as_bytes())?;
    let summary = json!({
        "crate": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "experiment": exp,
        "threads": if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads },
        "wall_seconds": start.elapsed().as_secs_f64(),
        "diverged_runs": diverged,
        "windows": windows,
        "fits": fit_summary,
    });
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    println!(
        "{}: fitted exponents (std ∝ N^-b, theory 1/2; |mean dev| ∝ N^-a, theory 1)",
        exp.name
    );
    for (j, name) in names.iter().enumerate() {
        for (w, win) in windows.iter().enumerate() {
            let f = &all_fits[j][w];
            let show = |x: &Option<PowerLawFit>| match x {
                Some(f) => format!("{:+.3} ± {:.3}", f.exponent, f.se_exponent),
                None => "—".into(),
            };
            println!(
                "  {name:<8} t∈[{}, {}]: b = {}, b(dev matched) = {}, a(matched) = {}, a(typical) = {}",
                win[0],
                win[1],
                show(&f[0]),
                show(&f[1]),
                show(&f[2]),
                show(&f[3])
            );
        }
    }
    if diverged > 0 {
        println!("  warning: {diverged} run(s) diverged and were left out");
    }
    if exp.figures {
        figures(exp, &dir, &names, &windows, &collapse, &all_stats, &all_fits)?;
    }
    Ok(())
}

/// Per observable, per N: (N, times, N·variance).
type Collapse = Vec<Vec<(usize, Vec<f64>, Vec<f64>)>>;
type Picker = Box<dyn Fn(&WindowStats) -> f64>;

fn figures(
    exp: &Experiment,
    dir: &Path,
    names: &[String],
    windows: &[[f64; 2]],
    collapse: &Collapse,
    stats: &[Vec<Vec<WindowStats>>],
    fits: &[Vec<Vec<Option<PowerLawFit>>>],
) -> Result<()> {
    // Observables shown: e_g and the experiment's plot columns.
    let shown: Vec<usize> = (0..names.len())
        .filter(|&j| j == 0 || exp.plot_columns.contains(&names[j]))
        .collect();
    let mut panels = vec![];
    for &j in &shown {
        let series = collapse[j]
            .iter()
            .enumerate()
            .map(|(ci, (n, t, y))| Series::line(format!("N = {n}"), t.clone(), y.clone(), ci))
            .collect();
        panels.push(Panel {
            title: format!("{}: N·Var[{}]", exp.name, names[j]),
            x_label: "t".into(),
            y_label: "N × variance over seeds".into(),
            log_x: exp.log_time,
            log_y: true,
            series,
        });
    }
    plots::draw(&dir.join("scaling_collapse.svg"), &panels, 2)?;
    // Std and |mean deviation| vs N (log–log) per window, with the fitted power laws.
    let mut panels = vec![];
    for &j in &shown {
        for (w, win) in windows.iter().enumerate() {
            let st = &stats[j][w];
            let n: Vec<f64> = st.iter().map(|s| s.n as f64).collect();
            let mut series = vec![];
            let cols: [(&str, Picker); 3] = [
                ("std", Box::new(|s: &WindowStats| s.std)),
                (
                    "|mean dev| matched",
                    Box::new(|s: &WindowStats| s.mean_dev_matched.abs()),
                ),
                (
                    "|mean dev| typical",
                    Box::new(|s: &WindowStats| s.mean_dev_typical.abs()),
                ),
            ];
            for (ci, ((label, f), fit)) in cols
                .iter()
                .zip([&fits[j][w][0], &fits[j][w][2], &fits[j][w][3]])
                .enumerate()
            {
                let y: Vec<f64> = st.iter().map(f).collect();
                let mut m = Series::line("", n.clone(), y, ci);
                m.markers = true;
                series.push(m);
                if let (Some(fit), Some(lo), Some(hi)) = (fit, n.first(), n.last()) {
                    let xs = vec![*lo, *hi];
                    let ys = xs
                        .iter()
                        .map(|x: &f64| (fit.log_prefactor - fit.exponent * x.ln()).exp())
                        .collect();
                    series.push(Series::line(
                        format!("{label}: N^-({:.2} ± {:.2})", fit.exponent, fit.se_exponent),
                        xs,
                        ys,
                        ci,
                    ));
                }
            }
            panels.push(Panel {
                title: format!("{} t∈[{}, {}]", names[j], win[0], win[1]),
                x_label: "N".into(),
                y_label: "window average".into(),
                log_x: true,
                log_y: true,
                series,
            });
        }
    }
    plots::draw(&dir.join("scaling_fits.svg"), &panels, windows.len().max(1))?;
    Ok(())
}

/// A CSV cell: the number, or an empty field when it is undefined (e.g. the conserved quantity along
/// the typical ODE, which starts at M = 0 where I = 0): files never hold NaN.
fn cell(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let c = ScalingConfig {
            windows: vec![[2.0, 1.0]],
        };
        assert_eq!(c.validate().unwrap_err().0, "windows");
        assert!(ScalingConfig::default().validate().is_ok());
    }

    #[test]
    fn window_std_of_constant_offsets() {
        // Runs x_r(t) = c_r (constant in time): the window variance is the sample variance of c_r.
        let c = [1.0, 2.0, 4.0, 5.0];
        let curves: Vec<Vec<f64>> = c.iter().map(|&v| vec![v; 5]).collect();
        let (s, se) = window_std(&curves, &[1, 2, 3]);
        assert!((s * s - 10.0 / 3.0).abs() < 1e-12);
        assert!(se > 0.0);
        let (m, _) = window_mean_dev(&curves, &|_, _| 1.0, &[0, 4]);
        assert!((m - 2.0).abs() < 1e-12);
    }
}
