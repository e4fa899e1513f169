//! `hdsgd run`: simulate every (N, seed) in parallel, integrate the ODE (matched: from each run's
//! exact initial overlaps; or explicit), write `trajectories.csv`, `ode.csv`, `summary.json`, the
//! figures and the requested geometry observables.

use super::outdir::Staging;
use super::output::{push_row, trajectory_table, CsvTable};
use super::plots::{self, Panel, Series};
use super::preflight::{preflight, Command};
use super::runner::{simulate_all, NominalTimes, RunResult};
use super::{ode_divergence, output_dir, write_summary, DivergedRuns, Divergence, OutputOptions};
use crate::config::{Experiment, OdeInitial};
use crate::ode::{integrate, OdeSolution};
use crate::overlaps::Overlaps;
use anyhow::{bail, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The rows of one ODE solution (matched: at its run's record times, labelled with their nominal
/// grid times `nominal`; explicit: on the grid, [`NominalTimes::identity`]).
pub(crate) fn ode_rows(
    exp: &Experiment,
    out: &mut CsvTable,
    n: usize,
    seed: i64,
    sol: &OdeSolution,
    nominal: &NominalTimes,
) -> Result<()> {
    // The ODE's training loss is its expectation, the population loss e_g + Δ/2.
    for ((t, ov), eg) in sol.t.iter().zip(&sol.overlaps).zip(&sol.eg) {
        push_row(
            out,
            n,
            seed,
            nominal.of(*t),
            *t,
            *eg,
            Some(eg + exp.model.noise / 2.0),
            ov,
        )?;
    }
    Ok(())
}

/// `hdsgd run`: simulate every (N, seed), integrate the ODE, write `trajectories.csv`, `ode.csv`,
/// `summary.json` and figures. Returns the output folder, or [`DivergedRuns`] (after writing).
pub fn run(exp: &Experiment, opts: &OutputOptions) -> Result<PathBuf> {
    check(exp)?;
    let opts = &preflight(exp, Command::Run, opts)?;
    let stage = Staging::begin(&output_dir(exp, opts), opts.force)?;
    let start = Instant::now();
    let results = simulate_all(exp, opts.threads, opts.progress, &opts.cancel)?;
    let written = write_outputs(exp, stage.path(), opts, start, &results);
    stage.finish(written)
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
    let mut nominal: std::collections::BTreeMap<usize, NominalTimes> = Default::default();
    for r in results {
        let nominal = nominal
            .entry(r.task.n)
            .or_insert_with(|| NominalTimes::new(exp, r.task.n));
        for rec in &r.trajectory.records {
            push_row(
                &mut traj_csv,
                r.task.n,
                r.task.seed_index as i64,
                nominal.of(rec.t),
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
            ode_rows(exp, &mut ode_csv, r.task.n, r.task.seed_index as i64, sol, nominal)?;
            divergences.extend(ode_divergence(sol, r.task.n, r.task.seed_index as i64));
        }
    }
    let explicit = explicit_ode(exp)?;
    if let Some(sol) = &explicit {
        ode_rows(exp, &mut ode_csv, 0, -1, sol, &NominalTimes::identity())?;
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
    super::geometry::observe_run(exp, results, dir, opts.threads, &opts.cancel)?;
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

/// An observable of the figures as a function of a record's overlaps and e_g.
type Observable = Box<dyn Fn(&Overlaps, f64) -> f64>;

/// Figures of `hdsgd run`: e_g(t) (`eg.svg`) and the chosen overlaps (`overlaps.svg`). Per N (one
/// colour each): the simulation's median over seeds (solid) with the band of the 16–84 % quantiles
/// (shaded: it never crosses zero on a log axis, unlike mean ± s.d.), and the median of the
/// matched ODEs (dashed), or the explicit ODE (black, dashed). The legend lists the N (with their
/// diverged runs) and the two line styles; the title counts the diverged runs, whose curves stop at
/// the divergence (the statistics after it are over the surviving runs).
fn figures(exp: &Experiment, dir: &Path, results: &[RunResult], explicit: Option<&OdeSolution>) -> Result<()> {
    let status = divergence_status(exp, results);
    let mut panels: Vec<Panel> = observables(exp)
        .iter()
        .enumerate()
        .map(|(oi, (name, f))| observable_panel(exp, results, explicit, name, f, oi == 0, &status))
        .collect();
    // One legend in overlaps.svg (its first panel): the keys are the same in every panel.
    for p in panels.iter_mut().skip(2) {
        p.series.retain(|s| s.key.is_none());
    }
    plots::draw(&dir.join("eg.svg"), &panels[..1], 1)?;
    if panels.len() > 1 {
        plots::draw(&dir.join("overlaps.svg"), &panels[1..], 2)?;
    }
    Ok(())
}

/// e_g, then the experiment's plot columns.
fn observables(exp: &Experiment) -> Vec<(String, Observable)> {
    let mut observables: Vec<(String, Observable)> = vec![("e_g".into(), Box::new(|_: &Overlaps, eg: f64| eg))];
    for col in &exp.plot_columns {
        let name = col.clone();
        observables.push((
            col.clone(),
            Box::new(move |ov: &Overlaps, _| ov.observable(&name).expect("validated observable")),
        ));
    }
    observables
}

/// The times at which the runs of dimension `n` diverged.
fn diverged_at(results: &[RunResult], n: usize) -> Vec<f64> {
    results
        .iter()
        .filter(|r| r.task.n == n)
        .filter_map(|r| r.trajectory.diverged_at)
        .collect()
}

/// The end of the figures' titles: how many runs diverged (empty when none did).
fn divergence_status(exp: &Experiment, results: &[RunResult]) -> String {
    let total_diverged: usize = exp.ns.iter().map(|&n| diverged_at(results, n).len()).sum();
    if total_diverged == 0 {
        String::new()
    } else if total_diverged == results.len() {
        let last = results
            .iter()
            .filter_map(|r| r.trajectory.diverged_at)
            .fold(0.0, f64::max);
        format!(" — all {total_diverged} runs diverged (by t = {})", plots::tick(last))
    } else {
        format!(
            " — {total_diverged} of {} runs diverged (statistics: the runs still going)",
            results.len()
        )
    }
}

/// The panel of observable `name` (`f`): per N its simulation band and matched-ODE median, the
/// explicit ODE, then the legend keys. The y axis is logarithmic if `log_y` and every simulated
/// value is positive.
fn observable_panel(
    exp: &Experiment,
    results: &[RunResult],
    explicit: Option<&OdeSolution>,
    name: &str,
    f: &Observable,
    mut log_y: bool,
    status: &str,
) -> Panel {
    let mut series = vec![];
    let mut keys = vec![];
    for (ci, &n) in exp.ns.iter().enumerate() {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.task.n == n).collect();
        let (sim, positive) = sgd_band(&runs, f, ci);
        log_y &= positive;
        series.push(sim);
        let d = diverged_at(results, n).len();
        keys.push(Series::swatch(
            if d == 0 {
                format!("N = {n}")
            } else {
                format!("N = {n} ({d} of {} diverged)", runs.len())
            },
            ci,
        ));
        series.extend(matched_ode_median(&runs, f, ci));
    }
    keys.push(Series::style_key(
        format!("SGD: median over {} seeds, band 16–84 %", exp.seeds),
        false,
    ));
    if results.iter().any(|r| r.ode.is_some()) {
        keys.push(Series::style_key("ODE from each run's start (median)", true));
    }
    if let Some(sol) = explicit {
        let y: Vec<f64> = sol.overlaps.iter().zip(&sol.eg).map(|(ov, eg)| f(ov, *eg)).collect();
        series.push(Series::line("ODE (explicit initial condition)", sol.t.clone(), y, plots::INK).dashed());
    }
    series.extend(keys);
    Panel::new(
        format!("{}: {}{status}", exp.name, plots::observable_label(name)),
        plots::TIME_LABEL,
        plots::observable_label(name),
        series,
    )
    .log_axes(exp.log_time, log_y)
}

/// The simulations' median of `f` over `runs` with its 16–84 % band, in colour `ci`, and whether
/// every value is positive (drawable on a log axis).
fn sgd_band(runs: &[&RunResult], f: &Observable, ci: usize) -> (Series, bool) {
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
    let (m, lo, hi) = plots::quantile_band(&sim, 0.16, 0.84);
    let positive = sim.iter().flatten().all(|&x| x > 0.0);
    (Series::line("", t, m, ci).with_band(lo, hi), positive)
}

/// The median of `f` over the matched ODEs of `runs` (dashed, colour `ci`), if they have any.
fn matched_ode_median(runs: &[&RunResult], f: &Observable, ci: usize) -> Option<Series> {
    let odes: Vec<Vec<f64>> = runs
        .iter()
        .filter_map(|r| r.ode.as_ref())
        .map(|sol| sol.overlaps.iter().zip(&sol.eg).map(|(ov, eg)| f(ov, *eg)).collect())
        .collect();
    if odes.is_empty() {
        return None;
    }
    let t_ode = runs
        .iter()
        .filter_map(|r| r.ode.as_ref())
        .map(|s| s.t.clone())
        .max_by_key(|v| v.len())
        .unwrap_or_default();
    let (m, _, _) = plots::quantile_band(&odes, 0.5, 0.5);
    Some(Series::line("", t_ode, m, ci).dashed())
}
