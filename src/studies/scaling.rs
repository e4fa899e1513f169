//! `hdsgd scaling`: finite-size scaling of the fluctuations around the overlap ODEs (theory.md §6;
//! the estimators and the method are documented in [`crate::analysis::scaling`]). Simulates every
//! (N, seed), compares with the matched and typical ODEs, writes `scaling.csv`, `scaling_fits.csv`,
//! `summary.json` and figures, and the linear-noise prediction of N·Var (`scaling_theory.csv`, the
//! dashed curves of `scaling_collapse.svg`; [`crate::analysis::fluctuations`], docs/fluctuations.md).

use super::outdir::Staging;
use super::output::{cell, num, summary as output_summary, write_json, CsvTable};
use super::plots::{self, Panel, Series};
use super::preflight::{preflight, Command};
use super::runner::{record_times, simulate_all, NominalTimes, RunResult};
use super::{output_dir, DivergedRuns, Divergence, OutputOptions};
use crate::analysis::fits::{summarize, PowerLawFit};
use crate::analysis::fluctuations::{theory_curves, TheoryCurves};
use crate::analysis::geometry::{conserved, GeometryObservable};
use crate::analysis::scaling::{fit_window, observable_value, window_stats, ObservableRuns, WindowStats, QUANTITIES};
use crate::analysis::stability::symmetric_start;
use crate::config::Experiment;
use crate::ode::{integrate, OdeSolution};
use crate::overlaps::Overlaps;
use anyhow::{bail, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// The series of observable `name` along a trajectory of (t, overlaps, e_g) points: [`observable_value`](crate::analysis::scaling::observable_value)
/// pointwise, or for the conserved-quantity observables (`cons_k_l`, `cons_drift`, requested by
/// `[geometry] observables = ["conserved"]`) [`conserved::observable_series`].
fn observable_series(exp: &Experiment, name: &str, pts: &[(f64, &Overlaps, f64)]) -> Vec<f64> {
    if name.starts_with("cons_") {
        let tv: Vec<(f64, &Overlaps)> = pts.iter().map(|(t, ov, _)| (*t, *ov)).collect();
        conserved::observable_series(&tv, &exp.model, &exp.training, name)
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
    check(exp)?;
    let opts = &preflight(exp, Command::Scaling, opts)?;
    let stage = Staging::begin(&output_dir(exp, opts), opts.force)?;
    let start = Instant::now();
    let results = simulate_all(exp, opts.threads, opts.progress, &opts.cancel)?;
    let written = write_outputs(exp, stage.path(), opts, start, results);
    stage.finish(written).map(|_| ())
}

/// What `hdsgd scaling` requires of an experiment (checked before any computation).
pub(crate) fn check(exp: &Experiment) -> Result<()> {
    if exp.ns.len() < 2 {
        bail!("`hdsgd scaling` needs a [simulation] section with at least two N");
    }
    if exp.seeds < 3 {
        bail!("`hdsgd scaling` needs at least 3 seeds per N (simulation.seeds)");
    }
    Ok(())
}

/// The outputs of `hdsgd scaling` from its finished runs (in task order): the one-machine command
/// and `hdsgd merge` of its shards both end here.
pub(crate) fn write_outputs(
    exp: &Experiment,
    dir: &Path,
    opts: &OutputOptions,
    start: Instant,
    mut results: Vec<RunResult>,
) -> Result<()> {
    let cfg = exp.config.scaling.clone().unwrap_or_default();
    let diverged = results.iter().filter(|r| r.trajectory.diverged_at.is_some()).count();
    complete_matched_odes(exp, &mut results)?;
    let names = observable_names(exp)?;
    let windows: Vec<[f64; 2]> = if cfg.windows.is_empty() {
        vec![[
            exp.grid.get(1).copied().unwrap_or(0.0),
            *exp.grid.last().unwrap_or(&0.0),
        ]]
    } else {
        cfg.windows.clone()
    };
    let stats = compute_stats(exp, &results, &names, &windows)?;
    let fits = fit_table(&names, &windows, &stats.all_stats)?;
    stats.csv.write(&dir.join("scaling.csv"))?;
    fits.csv.write(&dir.join("scaling_fits.csv"))?;
    let theory = predicted_curves(exp, &names);
    write_theory_table(dir, &theory)?;
    let summary = output_summary(
        exp,
        opts.threads,
        json!({
            "wall_seconds": start.elapsed().as_secs_f64(),
            "diverged_runs": diverged,
            "windows": windows,
            "fits": fits.summary,
            "theory": match &theory {
                Ok(_) => json!({"file": "scaling_theory.csv", "method": "linear-noise approximation along the ODE of the mean initial overlaps (docs/fluctuations.md §2)"}),
                Err(e) => json!({"available": false, "reason": e}),
            },
        }),
    );
    write_json(&dir.join("summary.json"), &summary)?;
    print_summary(exp, &names, &windows, &fits.all_fits, diverged);
    if exp.figures {
        figures(
            exp,
            dir,
            &names,
            &windows,
            &stats.collapse,
            &stats.all_stats,
            &fits.all_fits,
            theory.as_ref().ok(),
        )?;
    }
    // Outputs written; diverged runs (left out of the statistics) make the exit code 3.
    let diverged: Vec<Divergence> = results
        .iter()
        .filter_map(|r| {
            r.trajectory.diverged_at.map(|t| Divergence {
                n: r.task.n,
                seed: r.task.seed_index as i64,
                what: "simulation",
                t,
            })
        })
        .collect();
    if !diverged.is_empty() {
        return Err(DivergedRuns(diverged).into());
    }
    Ok(())
}

/// Matched ODEs: computed here for the runs that do not carry one (the experiment asked for an
/// explicit one).
fn complete_matched_odes(exp: &Experiment, results: &mut [RunResult]) -> Result<()> {
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
    Ok(())
}

/// The observables studied: e_g, the overlap columns, the rotation-invariant observables and,
/// when `[geometry]` requests it, the conserved-quantity observables.
fn observable_names(exp: &Experiment) -> Result<Vec<String>> {
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let mut names = vec!["eg".to_string()];
    names.extend(Overlaps::column_names(p, k));
    // The rotation-invariant observables: self-averaging even after the escape (module doc).
    names.extend(["tr_q".to_string(), "norm_m".to_string()]);
    let conserved = exp
        .config
        .geometry
        .as_ref()
        .is_some_and(|g| g.requests(GeometryObservable::Conserved));
    if conserved {
        // I(t) needs Q⊥ invertible, i.e. the p + p* rows of W, W* independent: p + p* ≤ N.
        if let Some(&n) = exp.ns.iter().find(|&&n| n < p + k) {
            bail!(
                "simulation.n: N = {n} < p + p* = {}: the conserved quantity requested by geometry.observables needs p + p* ≤ N",
                p + k
            );
        }
        names.extend(conserved::observable_names(k));
    }
    Ok(names)
}

/// The per-N statistics: the rows of `scaling.csv`, the window statistics (per observable, per
/// window, per N) and the collapse curves for the figures.
struct ScalingStats {
    csv: CsvTable,
    all_stats: Vec<Vec<Vec<WindowStats>>>,
    collapse: Collapse,
}

/// Simulations against the matched and typical ODEs, N by N.
fn compute_stats(
    exp: &Experiment,
    results: &[RunResult],
    names: &[String],
    windows: &[[f64; 2]],
) -> Result<ScalingStats> {
    let typical_start = symmetric_start(exp.model.p(), exp.sigma0, &exp.teacher_overlap());
    let mut out = ScalingStats {
        csv: CsvTable::new([
            "n",
            "t",
            "t_exact",
            "observable",
            "mean",
            "variance",
            "mean_dev_matched",
            "mean_dev_typical",
            "ode_typical",
            "n_seeds",
        ])?,
        all_stats: vec![vec![vec![]; windows.len()]; names.len()],
        collapse: vec![vec![]; names.len()],
    };
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
        for (j, name) in names.iter().enumerate() {
            let obs = observable_runs(exp, name, &runs, &typical, times.len());
            let (tt, nvar) = observable_rows(exp, &mut out.csv, n, &times, name, &obs)?;
            out.collapse[j].push((n, tt, nvar));
            for (w, win) in windows.iter().enumerate() {
                let idx: Vec<usize> = (0..times.len())
                    .filter(|&kk| times[kk] >= win[0] && times[kk] <= win[1])
                    .collect();
                out.all_stats[j][w].push(window_stats(n, &obs, &idx));
            }
        }
    }
    Ok(out)
}

/// One observable along the complete runs at one N, their matched ODEs and the typical ODE (NaN
/// where the typical ODE stopped early).
fn observable_runs(
    exp: &Experiment,
    name: &str,
    runs: &[&RunResult],
    typical: &OdeSolution,
    n_times: usize,
) -> ObservableRuns {
    let typical_ok = typical.t.len() == n_times;
    ObservableRuns {
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
            ode_series(exp, name, typical)
        } else {
            vec![f64::NAN; n_times]
        },
    }
}

/// The `scaling.csv` rows of one observable at one N; returns the collapse curve (times t > 0,
/// N·variance).
fn observable_rows(
    exp: &Experiment,
    csv: &mut CsvTable,
    n: usize,
    times: &[f64],
    name: &str,
    obs: &ObservableRuns,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let nominal = NominalTimes::new(exp, n);
    let (mut nvar, mut tt) = (vec![], vec![]);
    for (kk, &t) in times.iter().enumerate() {
        let vals: Vec<f64> = obs.sim.iter().map(|c| c[kk]).collect();
        let s = summarize(&vals);
        let dm: f64 = obs
            .sim
            .iter()
            .zip(&obs.matched)
            .map(|(a, b)| a[kk] - b[kk])
            .sum::<f64>()
            / vals.len() as f64;
        let dt = s.mean - obs.typical[kk];
        csv.row([
            num(n),
            num(nominal.of(t)),
            num(t),
            name.to_string(),
            cell(s.mean),
            cell(s.std * s.std),
            cell(dm),
            cell(dt),
            cell(obs.typical[kk]),
            num(vals.len()),
        ])?;
        if t > 0.0 {
            tt.push(t);
            nvar.push(n as f64 * s.std * s.std);
        }
    }
    Ok((tt, nvar))
}

/// The power-law fits: the rows of `scaling_fits.csv`, their `summary.json` entries and the fits
/// per observable, per window (for the printout and the figures).
struct FitTable {
    csv: CsvTable,
    summary: Vec<serde_json::Value>,
    all_fits: Vec<Vec<Vec<Option<PowerLawFit>>>>,
}

fn fit_table(names: &[String], windows: &[[f64; 2]], all_stats: &[Vec<Vec<WindowStats>>]) -> Result<FitTable> {
    let mut out = FitTable {
        csv: CsvTable::new([
            "observable",
            "window_start",
            "window_end",
            "quantity",
            "exponent",
            "se_exponent",
            "theory",
            "log_prefactor",
            "chi2",
            "dof",
            "n_points",
        ])?,
        summary: vec![],
        all_fits: vec![vec![]; names.len()],
    };
    for (j, name) in names.iter().enumerate() {
        for (w, win) in windows.iter().enumerate() {
            let fits = fit_window(&all_stats[j][w]);
            for ((q, theory), f) in QUANTITIES.iter().zip(&fits) {
                match f {
                    Some(f) => {
                        out.csv.row([
                            name.clone(),
                            num(win[0]),
                            num(win[1]),
                            num(q),
                            cell(f.exponent),
                            cell(f.se_exponent),
                            num(theory),
                            cell(f.log_prefactor),
                            cell(f.line.chi2),
                            num(f.line.dof),
                            num(f.line.dof + 2),
                        ])?;
                        out.summary.push(json!({"observable": name, "window": win, "quantity": q, "exponent": f.exponent, "se": f.se_exponent, "theory": theory}));
                    }
                    None => {
                        let (e, t) = (String::new(), num(theory));
                        out.csv.row([
                            name.clone(),
                            num(win[0]),
                            num(win[1]),
                            num(q),
                            e.clone(),
                            e.clone(),
                            t,
                            e.clone(),
                            e.clone(),
                            e,
                            num(0),
                        ])?;
                    }
                }
            }
            out.all_fits[j].push(fits);
        }
    }
    Ok(out)
}

/// The fitted exponents on stdout.
fn print_summary(
    exp: &Experiment,
    names: &[String],
    windows: &[[f64; 2]],
    all_fits: &[Vec<Vec<Option<PowerLawFit>>>],
    diverged: usize,
) {
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
}

/// Per observable, per N: (N, times, N·variance).
type Collapse = Vec<Vec<(usize, Vec<f64>, Vec<f64>)>>;

/// The LNA prediction on the record grid, or why there is none (activation without D, erf wider
/// than the supported quadrature).
fn predicted_curves(exp: &Experiment, names: &[String]) -> Result<TheoryCurves, String> {
    let opts = crate::ode::lna::LnaOptions::default();
    let p_teacher = exp.teacher_overlap();
    theory_curves(
        &exp.model,
        &exp.training,
        &exp.init,
        &p_teacher,
        &exp.grid,
        names,
        &opts,
    )
    .map_err(|e| e.to_string())
}

/// `scaling_theory.csv`: t, observable, predicted N·Var over seeds (Σ(0) = N·Cov s(0)) and of the
/// deviation from the matched ODE (Σ(0) = 0); empty cells where the delta method does not apply.
/// Not written when there is no prediction.
fn write_theory_table(dir: &Path, theory: &Result<TheoryCurves, String>) -> Result<()> {
    let Ok(th) = theory else { return Ok(()) };
    let mut csv = CsvTable::new(["t", "observable", "n_var_seeds", "n_var_matched"])?;
    for (k, t) in th.times.iter().enumerate() {
        for (o, name) in th.names.iter().enumerate() {
            let c = |x: Option<f64>| x.map(cell).unwrap_or_default();
            csv.row([num(t), name.clone(), c(th.spread[k][o]), c(th.matched[k][o])])?;
        }
    }
    csv.write(&dir.join("scaling_theory.csv"))
}
type Picker = Box<dyn Fn(&WindowStats) -> f64>;

/// The figures of `hdsgd scaling` for e_g and the experiment's plot columns: the collapse
/// N·Var[observable](t) per N (`scaling_collapse.svg`) and, per time window, the std and |mean
/// deviation| against N with their fitted power laws (`scaling_fits.svg`).
#[allow(clippy::too_many_arguments)]
fn figures(
    exp: &Experiment,
    dir: &Path,
    names: &[String],
    windows: &[[f64; 2]],
    collapse: &Collapse,
    stats: &[Vec<Vec<WindowStats>>],
    fits: &[Vec<Vec<Option<PowerLawFit>>>],
    theory: Option<&TheoryCurves>,
) -> Result<()> {
    let shown: Vec<usize> = (0..names.len())
        .filter(|&j| j == 0 || exp.plot_columns.contains(&names[j]))
        .collect();
    let panels: Vec<Panel> = shown
        .iter()
        .map(|&j| {
            let mut panel = collapse_panel(exp, &names[j], &collapse[j]);
            if let Some(series) = theory.and_then(|th| theory_series(th, j, &collapse[j])) {
                panel.series.push(series);
            }
            panel
        })
        .collect();
    plots::draw(&dir.join("scaling_collapse.svg"), &panels, 2)?;
    let mut panels = vec![];
    for &j in &shown {
        for (w, win) in windows.iter().enumerate() {
            panels.push(window_panel(&names[j], win, &stats[j][w], &fits[j][w]));
        }
    }
    plots::draw(&dir.join("scaling_fits.svg"), &panels, windows.len().max(1))?;
    Ok(())
}

/// The predicted N·Var over seeds of observable `j` (dashed, ink colour), up to where it exceeds 100 times
/// the largest measured value (past the escape the linear-noise approximation grows without bound).
fn theory_series(th: &TheoryCurves, j: usize, curves: &[(usize, Vec<f64>, Vec<f64>)]) -> Option<Series> {
    let cap = 100.0 * curves.iter().flat_map(|c| c.2.iter().copied()).fold(0.0, f64::max);
    let (t, y): (Vec<f64>, Vec<f64>) = th
        .times
        .iter()
        .zip(&th.spread)
        .map_while(|(&t, row)| row[j].filter(|&v| v <= cap).map(|v| (t, v)))
        .filter(|&(t, v)| t > 0.0 && v > 0.0)
        .unzip();
    (t.len() >= 2).then(|| Series::line("LNA prediction", t, y, plots::INK).dashed())
}

/// N·Var over seeds of observable `name` against time, one curve per N.
fn collapse_panel(exp: &Experiment, name: &str, curves: &[(usize, Vec<f64>, Vec<f64>)]) -> Panel {
    let series = curves
        .iter()
        .enumerate()
        .map(|(ci, (n, t, y))| Series::line(format!("N = {n}"), t.clone(), y.clone(), ci))
        .collect();
    Panel::new(
        format!("{}: N·Var[{}]", exp.name, name),
        plots::TIME_LABEL,
        format!("N·Var over seeds of {}", plots::observable_label(name)),
        series,
    )
    .log_axes(exp.log_time, true)
}

/// Std and |mean deviation| (matched, typical) of observable `name` on the window `win` against N
/// (log–log, markers), each with its fitted power law N^-a (of the quantities' fits `fits`).
fn window_panel(name: &str, win: &[f64; 2], st: &[WindowStats], fits: &[Option<PowerLawFit>]) -> Panel {
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
    for (ci, ((label, f), fit)) in cols.iter().zip([&fits[0], &fits[2], &fits[3]]).enumerate() {
        let y: Vec<f64> = st.iter().map(f).collect();
        series.push(Series::line("", n.clone(), y, ci).markers());
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
    Panel::new(
        format!("{} on t ∈ [{}, {}]", plots::observable_label(name), win[0], win[1]),
        "N (input dimension)",
        "std and |mean deviation| (window average)",
        series,
    )
    .log_axes(true, true)
}
