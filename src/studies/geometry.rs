//! The `hdsgd run` hook of the geometry observables (`[geometry] observables`, the physics in
//! [`crate::analysis::geometry`]), called once after the run's own outputs are written:
//!
//! * "conserved": `geometry.csv` with columns `n,seed,source,t,eg,qperp_min,drift,i_k_l…` (source `sgd` for the
//!   simulation, `ode` for the matched ODE; i_k_l the entries k ≤ l of I(t) = M̃ᵀQ⊥⁻¹M̃, 0-based;
//!   drift = ‖I(t) − I(0)‖_F/‖I(0)‖_F, qperp_min the smallest eigenvalue of Q⊥ = Q − MP⁻¹Mᵀ),
//!   `geometry.json` (per run and per N: the largest and the final drift, and the largest drift in
//!   the well-conditioned window λ_min(Q⊥(t)) ≥ [`WINDOW_FLOOR`]·λ_min(Q⊥(0))), and `geometry_drift.svg` (mean drift over seeds vs t per N, ODE dashed). Rows where
//!   Q⊥ is numerically singular (long after convergence) have empty I and drift fields.
//! * "selection": `selection.csv` with `n,seed,eg_final,converged,dist,dist_min,ratio,dist_to_selected`
//!   (dist = ‖W∞ − W₀‖²_F/N at the last record, dist_min the Procrustes minimum, ratio = dist/dist_min,
//!   dist_to_selected = ‖W∞ − W_sel‖²_F/N), `selection.json` (mean ± s.e. of the ratio over
//!   converged runs per N) and `selection.svg` (dist vs dist_min). The weights are not part of the
//!   run results, so each run is simulated again from its seed (bit-identical: checked against the
//!   run's recorded final overlaps), which doubles the simulation cost.
//! * "escape": `escape.csv`, `escape.json`, `escape.svg`: the escape times of the run's width and
//!   of every `[geometry] widths` (re-simulated), with the fit against ln N and the prediction
//!   1/(2μ) ([`crate::analysis::geometry::overparam`]).

use super::output::{cell, num, opt, write_json, CsvTable};
use super::plots::{self, Panel, Series};
use super::runner::{par_map_tasks, run_spec, simulate_all, tasks, RunResult};
use super::Cancel;
use crate::analysis::escape::{crossing_time, escape_time_sd, Crossing, EscapeRule};
use crate::analysis::fits::linear_fit;
use crate::analysis::fits::mean_std;
use crate::analysis::geometry::conserved::{conserved_quantity, orthogonal_part, relative_drift};
use crate::analysis::geometry::overparam::plateau_rate;
use crate::analysis::geometry::selection::{distance2, procrustes_minimum, selected_weights};
use crate::analysis::geometry::GeometryObservable;
use crate::config::{Experiment, OdeInitial, SimulatorKind};
use crate::overlaps::Overlaps;
use crate::simulators::direct::DirectSimulator;
use crate::simulators::Simulator;
use anyhow::{bail, Context, Result};
use nalgebra::DMatrix;
use serde_json::json;
use std::ops::ControlFlow;
use std::path::Path;

/// Writes the requested geometry observables of a finished `hdsgd run` into `dir` (module docs).
/// Does nothing without a `[geometry]` section or observables.
pub fn observe_run(exp: &Experiment, results: &[RunResult], dir: &Path, threads: usize, cancel: &Cancel) -> Result<()> {
    let Some(cfg) = &exp.config.geometry else {
        return Ok(());
    };
    if cfg.observables.contains(&GeometryObservable::Conserved) {
        conserved_outputs(exp, results, dir)?;
    }
    if cfg.observables.contains(&GeometryObservable::Selection) {
        selection_outputs(exp, results, dir, threads, cancel, cfg.converged_eg)?;
    }
    if cfg.observables.contains(&GeometryObservable::Escape) {
        let widths: Vec<usize> = match &cfg.widths {
            Some(w) => w.iter().map(|&p| p as usize).collect(),
            None => vec![exp.model.p()],
        };
        escape_outputs(exp, results, dir, threads, cancel, &widths, cfg.escape_fraction)?;
    }
    Ok(())
}

/// One point of an I(t) series.
struct Point {
    t: f64,
    eg: f64,
    /// Smallest eigenvalue of Q⊥ (NaN if P is singular).
    qperp_min: f64,
    /// I(t) and its relative drift, `None` where Q⊥ is singular.
    value: Option<(DMatrix<f64>, f64)>,
}

/// Per run: (N, SGD times, SGD drifts, ODE times, ODE drifts).
type DriftCurves = (usize, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// The "well-conditioned window" of a series: records with λ_min(Q⊥(t)) ≥ WINDOW_FLOOR·λ_min(Q⊥(0)).
/// Beyond it (the student aligned with the teacher) I(t) is a ratio of vanishing quantities and
/// its numerical error (~ integrator error / λ_min(Q⊥) for the ODE) dominates.
pub const WINDOW_FLOOR: f64 = 1e-3;

/// I(t) along one series of (t, overlaps, e_g); `None` entries where Q⊥ is singular.
/// Errors if I(0) itself is unavailable (degenerate start).
fn series(exp: &Experiment, pts: impl Iterator<Item = (f64, Overlaps, f64)>) -> Result<Vec<Point>> {
    let mut out = vec![];
    let mut i0: Option<DMatrix<f64>> = None;
    for (t, ov, eg) in pts {
        let i = conserved_quantity(&ov, t, &exp.model, &exp.training);
        let qperp_min = orthogonal_part(&ov).map_or(f64::NAN, |q| q.symmetric_eigenvalues().min());
        let value = match (&i0, i) {
            (None, Ok(i)) => {
                i0 = Some(i.clone());
                Some((i, 0.0))
            }
            (None, Err(e)) => {
                return Err(e).context("conserved quantity at t = 0 (needs a non-degenerate start, p + p* ≤ N)")
            }
            (Some(i0), Ok(i)) => {
                let d = relative_drift(i0, &i);
                Some((i, d))
            }
            (Some(_), Err(_)) => None,
        };
        out.push(Point {
            t,
            eg,
            qperp_min,
            value,
        });
    }
    Ok(out)
}

/// Writes `geometry.csv`, `geometry.json` and `geometry_drift.svg` (module docs). Every series is
/// computed first, so a degenerate start fails before any file of this observable is written.
fn conserved_outputs(exp: &Experiment, results: &[RunResult], dir: &Path) -> Result<()> {
    let k = exp.model.p_star();
    let mut csv = CsvTable::new(conserved_header(k))?;
    let mut runs = vec![];
    // Per N: the drift curves of the SGD runs and of the ODEs, for the figure and the summary.
    let mut curves: Vec<DriftCurves> = vec![];
    for r in results {
        let (n, seed) = (r.task.n, r.task.seed_index);
        let (sgd, ode) = run_series(exp, r)?;
        let mut summary = json!({"n": n, "seed": seed});
        for (name, s) in [("sgd", Some(&sgd)), ("ode", ode.as_ref())] {
            let Some(s) = s else { continue };
            push_conserved_rows(&mut csv, n, seed, name, s, k)?;
            summary[name] = series_summary(s);
        }
        runs.push(summary);
        curves.push(drift_curves(n, &sgd, ode.as_deref()));
    }
    let per_n: Vec<_> = exp.ns.iter().map(|&n| conserved_per_n(&runs, n)).collect();
    let panel = drift_panel(exp, &curves);
    csv.write(&dir.join("geometry.csv"))?;
    let summary = json!({
        "observable": "I(t) = M̃ᵀ Q⊥⁻¹ M̃, M̃ = M exp(−4(η/B) a V P t), Q⊥ = Q − M P⁻¹ Mᵀ; drift = ‖I(t) − I(0)‖_F / ‖I(0)‖_F",
        "ode_variant": format!("{:?}", exp.ode_options.variant),
        "per_n": per_n,
        "runs": runs,
    });
    write_json(&dir.join("geometry.json"), &summary)?;
    if exp.figures {
        plots::draw(&dir.join("geometry_drift.svg"), &[panel], 1)?;
    }
    Ok(())
}

/// The columns of `geometry.csv`: the fixed ones, then the upper triangle (k ≤ l) of the
/// symmetric p*×p* matrix I, row by row, so each independent entry appears once.
fn conserved_header(k: usize) -> Vec<String> {
    let mut header: Vec<String> = ["n", "seed", "source", "t", "eg", "qperp_min", "drift"]
        .map(String::from)
        .to_vec();
    for a in 0..k {
        for b in a..k {
            header.push(format!("i_{a}_{b}"));
        }
    }
    header
}

/// I(t) along one run's SGD records and along its matched ODE (if any). Separate from the
/// output so the CSV, the summary and the figure all read the same series.
fn run_series(exp: &Experiment, r: &RunResult) -> Result<(Vec<Point>, Option<Vec<Point>>)> {
    let (n, seed) = (r.task.n, r.task.seed_index);
    let sgd = series(
        exp,
        r.trajectory
            .records
            .iter()
            .map(|rec| (rec.t, rec.overlaps.clone(), rec.eg)),
    )
    .with_context(|| format!("run N = {n}, seed {seed}"))?;
    let ode = match &r.ode {
        Some(sol) => Some(series(
            exp,
            sol.t
                .iter()
                .zip(&sol.overlaps)
                .zip(&sol.eg)
                .map(|((t, ov), eg)| (*t, ov.clone(), *eg)),
        )?),
        None => None,
    };
    Ok((sgd, ode))
}

/// One `geometry.csv` row per point of series `s` (source `name`). Where Q⊥ is singular the
/// drift and I fields stay empty rather than printing a meaningless number.
fn push_conserved_rows(csv: &mut CsvTable, n: usize, seed: u64, name: &str, s: &[Point], k: usize) -> Result<()> {
    for pt in s {
        let mut row = vec![
            num(n),
            num(seed),
            name.to_string(),
            num(pt.t),
            num(pt.eg),
            cell(pt.qperp_min),
        ];
        match &pt.value {
            Some((i, d)) => {
                row.push(cell(*d));
                for a in 0..k {
                    for b in a..k {
                        row.push(cell(i[(a, b)]));
                    }
                }
            }
            None => row.extend(std::iter::repeat_n(String::new(), 1 + k * (k + 1) / 2)),
        }
        csv.row(row)?;
    }
    Ok(())
}

/// One series' entry of a run in `geometry.json`: the largest and final drift, and the largest
/// drift inside the well-conditioned window ([`WINDOW_FLOOR`]), where the drift measures the
/// dynamics rather than the conditioning of Q⊥.
fn series_summary(s: &[Point]) -> serde_json::Value {
    let drifts: Vec<f64> = s.iter().filter_map(|p| p.value.as_ref().map(|x| x.1)).collect();
    let floor = WINDOW_FLOOR * s[0].qperp_min;
    let window: Vec<&Point> = s.iter().take_while(|p| p.qperp_min >= floor).collect();
    json!({
        "max_drift": drifts.iter().copied().fold(0.0, f64::max),
        "final_drift": drifts.last(),
        "window_t_end": window.last().map(|p| p.t),
        "max_drift_window": window.iter().filter_map(|p| p.value.as_ref().map(|x| x.1)).fold(0.0, f64::max),
        "singular_rows": s.iter().filter(|x| x.value.is_none()).count(),
    })
}

/// A run's drift curves for the figure, NaN where Q⊥ is singular (so the mean over seeds shows
/// a gap there instead of a fabricated value).
fn drift_curves(n: usize, sgd: &[Point], ode: Option<&[Point]>) -> DriftCurves {
    let drift_of = |s: &[Point]| -> Vec<f64> { s.iter().map(|p| p.value.as_ref().map_or(f64::NAN, |x| x.1)).collect() };
    let t: Vec<f64> = sgd.iter().map(|x| x.t).collect();
    let (ode_t, ode_d) = ode
        .map(|o| (o.iter().map(|x| x.t).collect(), drift_of(o)))
        .unwrap_or_default();
    (n, t, drift_of(sgd), ode_t, ode_d)
}

/// The per-N entry of `geometry.json`: means over the seeds of N of the per-run summaries, read
/// back from `runs` so the per-N numbers are exactly those the per-run entries show.
fn conserved_per_n(runs: &[serde_json::Value], n: usize) -> serde_json::Value {
    let stat = |src: &str| {
        let mean_of = |key: &str| {
            let v: Vec<f64> = runs
                .iter()
                .filter(|r| r["n"] == n)
                .filter_map(|r| r[src][key].as_f64())
                .collect();
            (v.iter().sum::<f64>() / v.len().max(1) as f64, v.len())
        };
        let (m, runs) = mean_of("max_drift");
        json!({"mean_max_drift": m, "mean_max_drift_window": mean_of("max_drift_window").0,
               "mean_window_t_end": mean_of("window_t_end").0, "runs": runs})
    };
    json!({"n": n, "sgd": stat("sgd"), "ode": stat("ode")})
}

/// `geometry_drift.svg`: per N the mean SGD drift over seeds and, when the runs have a matched
/// ODE, its mean drift dashed; the longest time axis among the seeds is used so no run is cut.
fn drift_panel(exp: &Experiment, curves: &[DriftCurves]) -> Panel {
    let mut panel = Panel {
        title: format!("{}: drift of the conserved quantity", exp.name),
        x_label: "t = samples / N".into(),
        y_label: "‖I(t) − I(0)‖ / ‖I(0)‖".into(),
        log_x: exp.log_time,
        log_y: true,
        series: vec![],
    };
    for (ci, &n) in exp.ns.iter().enumerate() {
        let mine: Vec<_> = curves.iter().filter(|c| c.0 == n).collect();
        let t = mine
            .iter()
            .map(|c| c.1.clone())
            .max_by_key(|v| v.len())
            .unwrap_or_default();
        let (m, _) = mean_std(mine.iter().map(|c| c.2.as_slice()));
        panel.series.push(Series::line(format!("N = {n} SGD (mean)"), t, m, ci));
        if mine.iter().any(|c| !c.4.is_empty()) {
            let t = mine
                .iter()
                .map(|c| c.3.clone())
                .max_by_key(|v| v.len())
                .unwrap_or_default();
            let (m, _) = mean_std(mine.iter().map(|c| c.4.as_slice()));
            let mut s = Series::line(format!("N = {n} ODE (matched)"), t, m, ci);
            s.dashed = true;
            panel.series.push(s);
        }
    }
    panel
}

/// One run's selection measurement.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SelectionRow {
    pub n: usize,
    pub seed: u64,
    /// e_g at the last record.
    pub eg_final: f64,
    /// e_g_final below `converged_eg`.
    pub converged: bool,
    /// ‖W∞ − W₀‖²_F/N.
    pub dist: f64,
    /// Procrustes minimum over the zero-loss manifold.
    pub dist_min: f64,
    /// ‖W∞ − W_sel‖²_F/N (W_sel the Procrustes-closest solution).
    pub dist_to_selected: f64,
}

/// Simulates every task of `exp` with the direct simulator and measures the selection distances
/// (re-runs are bit-identical to `hdsgd run`'s; `expected_final`, when given, is checked against
/// each run's final overlaps).
pub fn selection_rows(
    exp: &Experiment,
    threads: usize,
    cancel: &Cancel,
    converged_eg: f64,
    expected_final: Option<&[Overlaps]>,
) -> Result<Vec<SelectionRow>> {
    if exp.simulator != SimulatorKind::Direct {
        bail!("invalid value for `simulation.simulator`: the \"selection\" observable needs the weights, i.e. the \"direct\" simulator");
    }
    let ts = tasks(exp);
    let bar = indicatif::ProgressBar::hidden();
    let rows = par_map_tasks(
        &ts,
        threads,
        cancel,
        &bar,
        |task, _| -> Result<(SelectionRow, Overlaps)> {
            let mut sim = DirectSimulator::new(run_spec(exp, task.n), exp.teacher_init, exp.sigma0, task.seed)
                .with_generator(exp.generator);
            let w0 = sim.weights().to_owned();
            let ov0 = sim.overlaps();
            let traj = sim.run(&exp.grid, &mut |_| match cancel.is_cancelled() {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            });
            cancel.check()?;
            let last = traj.records.last().context("run recorded nothing")?;
            let w = sim.weights();
            let wsel = selected_weights(w0.view(), sim.teacher(), &exp.model)?;
            Ok((
                SelectionRow {
                    n: task.n,
                    seed: task.seed_index,
                    eg_final: last.eg,
                    converged: traj.diverged_at.is_none() && last.eg < converged_eg,
                    dist: distance2(w0.view(), w),
                    dist_min: procrustes_minimum(&ov0, &exp.model)?,
                    dist_to_selected: distance2(wsel.view(), w),
                },
                last.overlaps.clone(),
            ))
        },
    )?;
    let mut out = vec![];
    for (i, r) in rows.into_iter().enumerate() {
        let (row, ov) = r?;
        if let Some(exp_ov) = expected_final.and_then(|e| e.get(i)) {
            if exp_ov != &ov {
                bail!(
                    "internal error: re-simulated run N = {}, seed {} differs from the recorded one",
                    row.n,
                    row.seed
                );
            }
        }
        out.push(row);
    }
    Ok(out)
}

/// Writes `selection.csv`, `selection.json` and `selection.svg` (module docs). The runs are
/// simulated again for their weights; `results`' final overlaps are handed over so the re-runs
/// are checked to be the recorded ones.
fn selection_outputs(
    exp: &Experiment,
    results: &[RunResult],
    dir: &Path,
    threads: usize,
    cancel: &Cancel,
    converged_eg: f64,
) -> Result<()> {
    let finals: Vec<Overlaps> = results
        .iter()
        .filter_map(|r| r.trajectory.records.last().map(|x| x.overlaps.clone()))
        .collect();
    let check = (finals.len() == results.len()).then_some(finals.as_slice());
    let rows = selection_rows(exp, threads, cancel, converged_eg, check)?;
    selection_table(&rows)?.write(&dir.join("selection.csv"))?;
    let per_n: Vec<_> = exp.ns.iter().map(|&n| selection_per_n(&rows, n)).collect();
    let panel = selection_panel(exp, &rows);
    let summary = json!({
        "definition": "dist = ‖W∞ − W₀‖²_F/N at the last record; dist_min = tr Q₀ + tr(VP)/a − 2‖M₀(V/a)^{1/2}‖_* (Procrustes); ratio over runs with final e_g < converged_eg",
        "converged_eg": converged_eg,
        "per_n": per_n,
        "runs": rows,
    });
    write_json(&dir.join("selection.json"), &summary)?;
    if exp.figures {
        plots::draw(&dir.join("selection.svg"), &[panel], 1)?;
    }
    Ok(())
}

/// `selection.csv`: one row per run; the ratio is printed as well so the table can be read
/// without recomputing it.
fn selection_table(rows: &[SelectionRow]) -> Result<CsvTable> {
    let mut csv = CsvTable::new([
        "n",
        "seed",
        "eg_final",
        "converged",
        "dist",
        "dist_min",
        "ratio",
        "dist_to_selected",
    ])?;
    for r in rows {
        csv.row([
            num(r.n),
            num(r.seed),
            cell(r.eg_final),
            num(r.converged),
            cell(r.dist),
            cell(r.dist_min),
            cell(r.dist / r.dist_min),
            cell(r.dist_to_selected),
        ])?;
    }
    Ok(csv)
}

/// The per-N entry of `selection.json`: mean ± s.e. of the ratio over the converged runs only
/// (a run still on the plateau has not reached the zero-loss manifold, so its distance says
/// nothing about selection); `null` where there are too few converged runs.
fn selection_per_n(rows: &[SelectionRow], n: usize) -> serde_json::Value {
    let conv: Vec<&SelectionRow> = rows.iter().filter(|r| r.n == n && r.converged).collect();
    let ratios: Vec<f64> = conv.iter().map(|r| r.dist / r.dist_min).collect();
    let k = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / k;
    let sd = (ratios.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0)).sqrt();
    let to_sel: Vec<f64> = conv.iter().map(|r| r.dist_to_selected).collect();
    json!({
        "n": n,
        "converged_runs": conv.len(),
        "runs": rows.iter().filter(|r| r.n == n).count(),
        "mean_ratio": if conv.is_empty() { None } else { Some(mean) },
        "se_ratio": if conv.len() > 1 { Some(sd / k.sqrt()) } else { None },
        "mean_dist_to_selected": if conv.is_empty() { None } else { Some(to_sel.iter().sum::<f64>() / k) },
    })
}

/// `selection.svg`: dist against dist_min for every run (converged or not), one colour per N,
/// with the diagonal y = x over the plotted range, on which a run took the shortest path.
fn selection_panel(exp: &Experiment, rows: &[SelectionRow]) -> Panel {
    let mut panel = Panel {
        title: format!("{}: distance travelled vs Procrustes minimum", exp.name),
        x_label: "min over zero-loss manifold of ‖W − W₀‖²/N".into(),
        y_label: "‖W∞ − W₀‖²/N (SGD)".into(),
        log_x: false,
        log_y: false,
        series: vec![],
    };
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (ci, &n) in exp.ns.iter().enumerate() {
        let mine: Vec<&SelectionRow> = rows.iter().filter(|r| r.n == n).collect();
        for r in &mine {
            lo = lo.min(r.dist_min).min(r.dist);
            hi = hi.max(r.dist_min).max(r.dist);
        }
        let mut s = Series::line(
            format!("N = {n}"),
            mine.iter().map(|r| r.dist_min).collect(),
            mine.iter().map(|r| r.dist).collect(),
            ci,
        );
        s.markers = true;
        panel.series.push(s);
    }
    if lo.is_finite() {
        let mut diag = Series::line("y = x", vec![lo, hi], vec![lo, hi], 7);
        diag.dashed = true;
        panel.series.push(diag);
    }
    panel
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
    cancel: &Cancel,
    widths: &[usize],
    fraction: f64,
) -> Result<()> {
    let mut csv = CsvTable::new(["p", "n", "seed", "t_esc", "eg_plateau", "diverged_at"])?;
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
        let e = with_width(exp, p)?;
        // The experiment's own width reuses the runs `hdsgd run` just made; others are simulated.
        let owned;
        let runs: &[RunResult] = if p == exp.model.p() {
            results
        } else {
            owned = simulate_all(&e, threads, false, cancel)?;
            &owned
        };
        let width = width_escape(&e, runs, p, fraction, &mut csv)?;
        per_p.push(width.summary());
        width.push_series(&mut panel, ci);
    }
    csv.write(&dir.join("escape.csv"))?;
    let summary = json!({
        "definition": "t_esc = first t with e_g < fraction · e_g(plateau of the full ODE from (σ0² I, M = 0)), ln e_g interpolated between records; fit: mean t_esc = A + B ln N; slope_theory = 1/(2μ)",
        "fraction": fraction,
        "per_p": per_p,
    });
    write_json(&dir.join("escape.json"), &summary)?;
    if exp.figures {
        plots::draw(&dir.join("escape.svg"), &[panel], 1)?;
    }
    Ok(())
}

/// One width's escape measurements and their prediction, kept together so `escape.json` and
/// `escape.svg` are drawn from the same numbers.
struct WidthEscape {
    p: usize,
    /// The resolved second-layer weight (the first entry of a).
    a: f64,
    eg_plateau: f64,
    mu: f64,
    /// ln N and mean t_esc for every N at which some run escaped: the points of the fit.
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// The per-N entries of `escape.json` (every N, escaped or not).
    by_n: Vec<serde_json::Value>,
    /// (intercept, slope) of mean t_esc against ln N; `None` with fewer than two points.
    fit: Option<(f64, f64)>,
    slope_se: Option<f64>,
    /// 1/(2μ).
    slope_theory: f64,
    /// √ψ′(pp*/2)/(2μ).
    sd_theory: f64,
}

/// The escape times of width `p`'s runs (`e` the experiment at that width), written to
/// `escape.csv` as they are measured, reduced per N and fitted against ln N.
fn width_escape(
    e: &Experiment,
    runs: &[RunResult],
    p: usize,
    fraction: f64,
    csv: &mut CsvTable,
) -> Result<WidthEscape> {
    let p_teacher = &runs.first().context("no runs")?.trajectory.initial.p;
    // The plateau and μ depend on P, which is exactly I for an orthonormal teacher; for a
    // Gaussian teacher the first run's P is used for the prediction.
    let (_, eg_plat, mu) = plateau_rate(&e.model, &e.training, e.sigma0, p_teacher)?;
    // No plateau band with FIRST_BELOW_LOG: the tolerance is not used.
    let rule = EscapeRule::EgFraction {
        eg_plateau: eg_plat,
        fraction,
        tolerance: 0.0,
    };
    let mut by_n = vec![];
    let (mut xs, mut ys, mut ses) = (vec![], vec![], vec![]);
    for &n in &e.ns {
        let (times, total, diverged) = escape_times(runs, n, p, rule, eg_plat, csv)?;
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
    // Ordinary least squares (unweighted): the slope's error is `slope_se` below.
    let fit = linear_fit(&xs, &ys, None).map(|f| (f.intercept, f.slope));
    let slope_se = slope_se(&xs, &ses);
    Ok(WidthEscape {
        p,
        a: e.model.a[0],
        eg_plateau: eg_plat,
        mu,
        fit,
        slope_se,
        slope_theory: 1.0 / (2.0 * mu),
        // theory.md §6: the spread over seeds √ψ′(pp*/2)/(2μ), independent of N.
        sd_theory: escape_time_sd(p, e.model.p_star(), mu),
        xs,
        ys,
        by_n,
    })
}

/// The escape times of the runs at `n` (runs that never crossed have none), one `escape.csv`
/// row per run, with the number of runs and of diverged runs: (times, total, diverged).
fn escape_times(
    runs: &[RunResult],
    n: usize,
    p: usize,
    rule: EscapeRule,
    eg_plat: f64,
    csv: &mut CsvTable,
) -> Result<(Vec<f64>, usize, usize)> {
    let mut times = vec![];
    let mut total = 0;
    let mut diverged = 0;
    for r in runs.iter().filter(|r| r.task.n == n) {
        total += 1;
        diverged += usize::from(r.trajectory.diverged_at.is_some());
        let records = r.trajectory.records.iter().map(|x| (x.t, 0.0, x.eg));
        let t = crossing_time(rule, Crossing::FIRST_BELOW_LOG, records);
        csv.row([
            num(p),
            num(n),
            num(r.task.seed_index),
            opt(t),
            num(eg_plat),
            opt(r.trajectory.diverged_at),
        ])?;
        times.extend(t);
    }
    Ok((times, total, diverged))
}

/// Standard error of the fitted slope from the standard errors of the means (independent seeds
/// per N): se_B² = Σ (x_i − x̄)² se_i² / Sxx². `None` when the x are all equal or some N has a
/// single escaped run (NaN s.e.), where the error is not estimable.
fn slope_se(xs: &[f64], ses: &[f64]) -> Option<f64> {
    let mx = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let v: f64 = xs.iter().zip(ses).map(|(x, se)| (x - mx).powi(2) * se * se).sum();
    (sxx > 0.0 && v.is_finite()).then(|| v.sqrt() / sxx)
}

impl WidthEscape {
    /// This width's entry of `escape.json`.
    fn summary(&self) -> serde_json::Value {
        let p = self.p;
        json!({
            "p": p, "a": self.a, "eg_plateau": self.eg_plateau, "mu": self.mu, "slope_theory": self.slope_theory,
            "sd_theory": self.sd_theory,
            "fit_intercept": self.fit.map(|f| f.0), "fit_slope": self.fit.map(|f| f.1), "fit_slope_se": self.slope_se,
            "per_n": self.by_n,
        })
    }

    /// This width's curves in `escape.svg`: the mean escape times, and with a fit the fitted
    /// line and the theory slope drawn through the data's centre of mass (only the slope is
    /// predicted, not the intercept).
    fn push_series(&self, panel: &mut Panel, ci: usize) {
        let (p, xs, ys, slope_theory) = (self.p, &self.xs, &self.ys, self.slope_theory);
        let nx: Vec<f64> = xs.iter().map(|x| x.exp()).collect();
        let mut s = Series::line(format!("p = {p}"), nx.clone(), ys.clone(), ci);
        s.markers = true;
        panel.series.push(s);
        if let Some((a, b)) = self.fit {
            panel.series.push(Series::line(
                format!("p = {p} fit, slope {b:.2}"),
                nx.clone(),
                xs.iter().map(|x| a + b * x).collect(),
                ci,
            ));
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
}
