//! Experiments: the runner over (N, seed) in parallel ([`runner`]), output files ([`output`]),
//! figures ([`plots`]), and the `run` and `ode` commands built from them.

pub mod output;
pub mod plots;
pub mod runner;

use crate::config::{Experiment, OdeInitial};
use crate::ode::{integrate, OdeSolution, OdeStop};
use crate::overlaps::Overlaps;
use anyhow::{bail, Result};
use output::{check_output_dir, push_row, trajectory_header, write_atomic};
use plots::{Panel, Series};
use runner::{initial_overlaps, simulate_all, tasks, RunResult};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options shared by the commands that write an output folder.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// Output folder (default: the experiment's).
    pub out: Option<PathBuf>,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Overwrite an existing output folder.
    pub force: bool,
    /// Show progress bars.
    pub progress: bool,
}

/// A run that stopped early because its overlaps blew up.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub n: usize,
    /// Seed index (−1 for an explicit-initial-condition ODE).
    pub seed: i64,
    /// "simulation" or "ode".
    pub what: &'static str,
    pub t: f64,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} run N = {}, seed {} diverged at t = {} (overlaps non-finite or beyond the divergence bound)",
            self.what, self.n, self.seed, self.t
        )
    }
}

/// Error returned when outputs were written but some runs diverged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} run(s) diverged; their trajectories stop at the divergence time:\n  {}", .0.len(), .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct DivergedRuns(pub Vec<Divergence>);

fn ode_divergence(sol: &OdeSolution, n: usize, seed: i64) -> Option<Divergence> {
    match &sol.stop {
        Some(OdeStop::Diverged { t }) | Some(OdeStop::Failed { t, .. }) => Some(Divergence {
            n,
            seed,
            what: "ode",
            t: *t,
        }),
        _ => None,
    }
}

fn ode_rows(exp: &Experiment, out: &mut String, n: usize, seed: i64, sol: &OdeSolution) {
    // The ODE's training loss is its expectation, the population loss e_g + Δ/2.
    for ((t, ov), eg) in sol.t.iter().zip(&sol.overlaps).zip(&sol.eg) {
        push_row(out, n, seed, *t, *eg, Some(eg + exp.model.noise / 2.0), ov);
    }
}

/// The output folder of a command.
pub fn output_dir(exp: &Experiment, opts: &OutputOptions) -> PathBuf {
    opts.out.clone().unwrap_or_else(|| exp.output_dir.clone())
}

/// `hdsgd run`: simulate every (N, seed), integrate the ODE, write `trajectories.csv`, `ode.csv`,
/// `summary.json` and figures. Returns the output folder, or [`DivergedRuns`] (after writing).
pub fn run(exp: &Experiment, opts: &OutputOptions) -> Result<PathBuf> {
    if exp.ns.is_empty() {
        bail!("`hdsgd run` needs a [simulation] section (use `hdsgd ode` for ODE-only experiments)");
    }
    let dir = output_dir(exp, opts);
    check_output_dir(&dir, opts.force)?;
    let start = Instant::now();
    let results = simulate_all(exp, opts.threads, opts.progress)?;
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let mut traj_csv = trajectory_header(p, k) + "\n";
    let mut ode_csv = trajectory_header(p, k) + "\n";
    let mut divergences = vec![];
    for r in &results {
        for rec in &r.trajectory.records {
            push_row(
                &mut traj_csv,
                r.task.n,
                r.task.seed_index as i64,
                rec.t,
                rec.eg,
                rec.train_loss,
                &rec.overlaps,
            );
        }
        if let Some(t) = r.trajectory.diverged_at {
            divergences.push(Divergence {
                n: r.task.n,
                seed: r.task.seed_index as i64,
                what: "simulation",
                t,
            });
        }
        if let Some(sol) = &r.ode {
            ode_rows(exp, &mut ode_csv, r.task.n, r.task.seed_index as i64, sol);
            divergences.extend(ode_divergence(sol, r.task.n, r.task.seed_index as i64));
        }
    }
    let explicit = explicit_ode(exp)?;
    if let Some(sol) = &explicit {
        ode_rows(exp, &mut ode_csv, 0, -1, sol);
        divergences.extend(ode_divergence(sol, 0, -1));
    }
    write_atomic(&dir.join("trajectories.csv"), traj_csv.as_bytes())?;
    write_atomic(&dir.join("ode.csv"), ode_csv.as_bytes())?;
    let runs: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "n": r.task.n,
                "seed": r.task.seed_index,
                "run_seed": r.task.seed,
                "samples": r.trajectory.samples,
                "wall_seconds": r.wall_seconds,
                "samples_per_second": r.trajectory.samples as f64 / r.wall_seconds.max(1e-12),
                "diverged_at": r.trajectory.diverged_at,
            })
        })
        .collect();
    write_summary(exp, &dir, opts, start, json!(runs), &divergences)?;
    if exp.figures {
        figures(exp, &dir, &results, explicit.as_ref())?;
    }
    crate::geometry::observe_run(exp, &results, &dir, opts.threads)?;
    if !divergences.is_empty() {
        return Err(DivergedRuns(divergences).into());
    }
    Ok(dir)
}

fn explicit_ode(exp: &Experiment) -> Result<Option<OdeSolution>> {
    Ok(match (&exp.ode_initial, &exp.explicit_initial) {
        (OdeInitial::Explicit, Some(init)) => Some(integrate(
            &exp.model,
            &exp.training,
            init,
            &exp.grid,
            &exp.ode_options,
            |_, _: &_| false,
        )?),
        _ => None,
    })
}

fn write_summary(
    exp: &Experiment,
    dir: &Path,
    opts: &OutputOptions,
    start: Instant,
    runs: serde_json::Value,
    divergences: &[Divergence],
) -> Result<()> {
    let summary = json!({
        "crate": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "experiment": exp,
        "threads": if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads },
        "wall_seconds": start.elapsed().as_secs_f64(),
        "eg_convention": "e_g = ½ E[(y − ŷ)²] over a fresh sample, label noise excluded (the noise adds Δ/2)",
        "runs": runs,
        "divergences": divergences.iter().map(|d| json!({"n": d.n, "seed": d.seed, "what": d.what, "t": d.t})).collect::<Vec<_>>(),
    });
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )
}

/// `hdsgd ode`: integrate without simulating (matched: from each run's exact initial overlaps;
/// explicit: from `[init] q0, m0, p`), write `ode.csv`, `summary.json` and a figure.
pub fn ode(exp: &Experiment, opts: &OutputOptions) -> Result<PathBuf> {
    if !crate::population::has_ode(exp.model.activation) {
        bail!(
            "invalid value for `model.activation`: the overlap ODE is not available for `{}` (use `hdsgd run` to simulate it)",
            exp.model.activation.name()
        );
    }
    let dir = output_dir(exp, opts);
    check_output_dir(&dir, opts.force)?;
    let start = Instant::now();
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let mut csv = trajectory_header(p, k) + "\n";
    let mut divergences = vec![];
    let mut sols: Vec<(usize, i64, OdeSolution)> = vec![];
    if let Some(sol) = explicit_ode(exp)? {
        sols.push((0, -1, sol));
    }
    if exp.ode_initial == OdeInitial::Matched {
        let ts = tasks(exp);
        let bar = indicatif::ProgressBar::hidden();
        let matched = runner::par_map_tasks(&ts, opts.threads, &bar, |task, _| {
            let init = initial_overlaps(exp, task);
            let times = runner::record_times(exp, task.n);
            integrate(
                &exp.model,
                &exp.training,
                &init,
                &times,
                &exp.ode_options,
                |_, _: &_| false,
            )
        })?;
        for (task, sol) in ts.iter().zip(matched) {
            sols.push((task.n, task.seed_index as i64, sol?));
        }
    }
    for (n, seed, sol) in &sols {
        ode_rows(exp, &mut csv, *n, *seed, sol);
        divergences.extend(ode_divergence(sol, *n, *seed));
    }
    write_atomic(&dir.join("ode.csv"), csv.as_bytes())?;
    write_summary(exp, &dir, opts, start, json!([]), &divergences)?;
    if exp.figures {
        let mut panels = vec![Panel {
            title: format!("{}: ODE", exp.name),
            x_label: "t = samples / N".into(),
            y_label: "e_g".into(),
            log_x: exp.log_time,
            log_y: sols.iter().all(|(_, _, s)| s.eg.iter().all(|&e| e > 0.0)),
            series: vec![],
        }];
        for (i, (n, seed, sol)) in sols.iter().enumerate().take(8) {
            let label = if *seed < 0 {
                "explicit".to_string()
            } else {
                format!("N={n}, seed {seed}")
            };
            panels[0]
                .series
                .push(Series::line(label, sol.t.clone(), sol.eg.clone(), i));
        }
        plots::draw(&dir.join("ode.svg"), &panels, 1)?;
    }
    if !divergences.is_empty() {
        return Err(DivergedRuns(divergences).into());
    }
    Ok(dir)
}

/// Mean and standard deviation over runs, per record index, of one observable (runs that stopped
/// early contribute to the times they reached).
pub fn mean_std<'a>(curves: impl Iterator<Item = &'a [f64]>) -> (Vec<f64>, Vec<f64>) {
    let curves: Vec<&[f64]> = curves.collect();
    let len = curves.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut mean = vec![];
    let mut std = vec![];
    for i in 0..len {
        let vals: Vec<f64> = curves.iter().filter_map(|c| c.get(i).copied()).collect();
        let n = vals.len() as f64;
        let m = vals.iter().sum::<f64>() / n;
        let v = if vals.len() > 1 {
            vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        mean.push(m);
        std.push(v.sqrt());
    }
    (mean, std)
}

/// Figures of `hdsgd run`: e_g(t) (`eg.svg`) and the chosen overlaps (`overlaps.svg`): simulation
/// mean ± std over seeds per N (solid, shaded) against the ODE (dashed: mean of the matched ODEs,
/// or the explicit one).
fn figures(exp: &Experiment, dir: &Path, results: &[RunResult], explicit: Option<&OdeSolution>) -> Result<()> {
    type Observable = Box<dyn Fn(&Overlaps, f64) -> f64>;
    let mut observables: Vec<(String, Observable)> = vec![("e_g".into(), Box::new(|_: &Overlaps, eg: f64| eg))];
    for col in &exp.plot_columns {
        let name = col.clone();
        observables.push((
            col.clone(),
            Box::new(move |ov: &Overlaps, _| ov.observable(&name).expect("validated observable")),
        ));
    }
    let mut panels = vec![];
    for (oi, (obs_name, f)) in observables.iter().enumerate() {
        let mut series = vec![];
        let mut log_y = oi == 0;
        for (ci, &n) in exp.ns.iter().enumerate() {
            let runs: Vec<&RunResult> = results.iter().filter(|r| r.task.n == n).collect();
            let sim: Vec<Vec<f64>> = runs
                .iter()
                .map(|r| {
                    r.trajectory
                        .records
                        .iter()
                        .map(|rec| f(&rec.overlaps, rec.eg))
                        .collect()
                })
                .collect();
            let t = runs
                .iter()
                .map(|r| r.trajectory.records.iter().map(|rec| rec.t).collect::<Vec<_>>())
                .max_by_key(|v| v.len())
                .unwrap_or_default();
            let (m, s) = mean_std(sim.iter().map(|v| v.as_slice()));
            log_y &= m.iter().all(|&x| x > 0.0);
            let mut ser = Series::line(format!("N = {n} (SGD, ±1 s.d.)"), t, m, ci);
            ser.band = Some(s);
            series.push(ser);
            let odes: Vec<Vec<f64>> = runs
                .iter()
                .filter_map(|r| r.ode.as_ref())
                .map(|sol| sol.overlaps.iter().zip(&sol.eg).map(|(ov, eg)| f(ov, *eg)).collect())
                .collect();
            if !odes.is_empty() {
                let t_ode = runs
                    .iter()
                    .filter_map(|r| r.ode.as_ref())
                    .map(|s| s.t.clone())
                    .max_by_key(|v| v.len())
                    .unwrap_or_default();
                let (m, _) = mean_std(odes.iter().map(|v| v.as_slice()));
                let mut ser = Series::line(format!("N = {n} ODE (matched)"), t_ode, m, ci);
                ser.dashed = true;
                series.push(ser);
            }
        }
        if let Some(sol) = explicit {
            let y: Vec<f64> = sol.overlaps.iter().zip(&sol.eg).map(|(ov, eg)| f(ov, *eg)).collect();
            let mut ser = Series::line("ODE", sol.t.clone(), y, 7);
            ser.dashed = true;
            series.push(ser);
        }
        panels.push(Panel {
            title: format!("{}: {obs_name}", exp.name),
            x_label: "t = samples / N".into(),
            y_label: obs_name.clone(),
            log_x: exp.log_time,
            log_y,
            series,
        });
    }
    plots::draw(&dir.join("eg.svg"), &panels[..1], 1)?;
    if panels.len() > 1 {
        plots::draw(&dir.join("overlaps.svg"), &panels[1..], 2)?;
    }
    Ok(())
}
