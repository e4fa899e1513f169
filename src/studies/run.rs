//! `hdsgd run`: simulate every (N, seed) in parallel, integrate the ODE (matched: from each run's
//! exact initial overlaps; or explicit), write `trajectories.csv`, `ode.csv`, `summary.json`, the
//! figures and the requested geometry observables.

use super::output::{check_output_dir, push_row, trajectory_table, CsvTable};
use super::plots::{self, Panel, Series};
use super::runner::{simulate_all, RunResult};
use super::{ode_divergence, output_dir, write_summary, DivergedRuns, Divergence, OutputOptions};
use crate::analysis::fits::mean_std;
use crate::config::{Experiment, OdeInitial};
use crate::ode::{integrate, OdeSolution};
use crate::overlaps::Overlaps;
use anyhow::{bail, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(crate) fn ode_rows(exp: &Experiment, out: &mut CsvTable, n: usize, seed: i64, sol: &OdeSolution) -> Result<()> {
    // The ODE's training loss is its expectation, the population loss e_g + Δ/2.
    for ((t, ov), eg) in sol.t.iter().zip(&sol.overlaps).zip(&sol.eg) {
        push_row(out, n, seed, *t, *eg, Some(eg + exp.model.noise / 2.0), ov)?;
    }
    Ok(())
}

/// `hdsgd run`: simulate every (N, seed), integrate the ODE, write `trajectories.csv`, `ode.csv`,
/// `summary.json` and figures. Returns the output folder, or [`DivergedRuns`] (after writing).
pub fn run(exp: &Experiment, opts: &OutputOptions) -> Result<PathBuf> {
    check(exp)?;
    let dir = output_dir(exp, opts);
    check_output_dir(&dir, opts.force)?;
    let start = Instant::now();
    let results = simulate_all(exp, opts.threads, opts.progress)?;
    write_outputs(exp, &dir, opts, start, &results)
}

/// What `hdsgd run` requires of an experiment (checked before any computation).
pub(crate) fn check(exp: &Experiment) -> Result<()> {
    if exp.ns.is_empty() {
        bail!("`hdsgd run` needs a [simulation] section (use `hdsgd ode` for ODE-only experiments)");
    }
    Ok(())
}

/// The outputs of `hdsgd run` from its finished runs (in task order): the one-machine command and
/// `hdsgd merge` of its shards both end here.
pub(crate) fn write_outputs(
    exp: &Experiment,
    dir: &Path,
    opts: &OutputOptions,
    start: Instant,
    results: &[RunResult],
) -> Result<PathBuf> {
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let mut traj_csv = trajectory_table(p, k)?;
    let mut ode_csv = trajectory_table(p, k)?;
    let mut divergences = vec![];
    for r in results {
        for rec in &r.trajectory.records {
            push_row(
                &mut traj_csv,
                r.task.n,
                r.task.seed_index as i64,
                rec.t,
                rec.eg,
                rec.train_loss,
                &rec.overlaps,
            )?;
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
            ode_rows(exp, &mut ode_csv, r.task.n, r.task.seed_index as i64, sol)?;
            divergences.extend(ode_divergence(sol, r.task.n, r.task.seed_index as i64));
        }
    }
    let explicit = explicit_ode(exp)?;
    if let Some(sol) = &explicit {
        ode_rows(exp, &mut ode_csv, 0, -1, sol)?;
        divergences.extend(ode_divergence(sol, 0, -1));
    }
    traj_csv.write(&dir.join("trajectories.csv"))?;
    ode_csv.write(&dir.join("ode.csv"))?;
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
    write_summary(exp, dir, opts, start, json!(runs), &divergences)?;
    if exp.figures {
        figures(exp, dir, results, explicit.as_ref())?;
    }
    super::geometry::observe_run(exp, results, dir, opts.threads)?;
    if !divergences.is_empty() {
        return Err(DivergedRuns(divergences).into());
    }
    Ok(dir.to_path_buf())
}

pub(crate) fn explicit_ode(exp: &Experiment) -> Result<Option<OdeSolution>> {
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
