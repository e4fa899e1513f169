//! `hdsgd ode`: integrate the overlap ODE without simulating (matched: from each run's exact
//! initial overlaps; explicit: from `[init] q0, m0, p`), write `ode.csv`, `summary.json` and a figure.

use super::outdir::Staging;
use super::output::trajectory_table;
use super::plots::{self, Panel, Series};
use super::preflight::{preflight, Command};
use super::run::{explicit_ode, ode_rows};
use super::runner::{self, initial_overlaps, tasks};
use super::{ode_divergence, output_dir, write_summary, DivergedRuns, Divergence, OutputOptions};
use crate::config::{Experiment, OdeInitial};
use crate::ode::{integrate, OdeSolution};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `hdsgd ode`: integrate without simulating (matched: from each run's exact initial overlaps;
/// explicit: from `[init] q0, m0, p`), write `ode.csv`, `summary.json` and a figure.
pub fn ode(exp: &Experiment, opts: &OutputOptions) -> Result<PathBuf> {
    if !crate::population::has_ode(exp.model.activation) {
        bail!(
            "invalid value for `model.activation`: the overlap ODE is not available for `{}` (use `hdsgd run` to simulate it)",
            exp.model.activation.name()
        );
    }
    let opts = &preflight(exp, Command::Ode, opts)?;
    let stage = Staging::begin(&output_dir(exp, opts), opts.force)?;
    let dir = stage.path().to_path_buf();
    let start = Instant::now();
    let sols = solutions(exp, opts)?;
    let divergences = write_table(exp, &dir, &sols)?;
    // The teacher overlap P each ODE ran with (with the experiment's v and Δ, e_g of every row follows).
    let runs: Vec<_> = sols
        .iter()
        .map(|(n, seed, sol)| {
            let p = sol.overlaps.first().map(|o| super::run::matrix_rows(&o.p));
            json!({"n": n, "seed": seed, "teacher_overlap": p})
        })
        .collect();
    write_summary(exp, &dir, opts, start, json!(runs), &divergences)?;
    if exp.figures {
        figure(exp, &dir, &sols)?;
    }
    let dir = stage.commit()?;
    if !divergences.is_empty() {
        return Err(DivergedRuns(divergences).into());
    }
    Ok(dir)
}

/// The ODE solutions of `hdsgd ode`: the explicit one (seed −1) and/or one per (N, seed) from that
/// run's exact initial overlaps (matched), in task order.
fn solutions(exp: &Experiment, opts: &OutputOptions) -> Result<Vec<(usize, i64, OdeSolution)>> {
    let mut sols: Vec<(usize, i64, OdeSolution)> = vec![];
    if let Some(sol) = explicit_ode(exp)? {
        sols.push((0, -1, sol));
    }
    if exp.ode_initial == OdeInitial::Matched {
        let ts = tasks(exp);
        let bar = indicatif::ProgressBar::hidden();
        let matched = runner::par_map_tasks(&ts, opts.threads, &opts.cancel, &bar, |task, _| {
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
    Ok(sols)
}

/// `ode.csv` (one row per solution and time, labelled with the nominal grid time); the solutions
/// that diverged.
fn write_table(exp: &Experiment, dir: &Path, sols: &[(usize, i64, OdeSolution)]) -> Result<Vec<Divergence>> {
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let mut csv = trajectory_table(p, k, exp.model.train_a.is_some())?;
    let mut divergences = vec![];
    for (n, seed, sol) in sols {
        let nominal = if *seed < 0 {
            runner::NominalTimes::identity()
        } else {
            runner::NominalTimes::new(exp, *n)
        };
        ode_rows(exp, &mut csv, *n, *seed, sol, &nominal)?;
        divergences.extend(ode_divergence(sol, *n, *seed));
    }
    csv.write(&dir.join("ode.csv"))?;
    Ok(divergences)
}

/// `ode.svg`: e_g(t) of at most 8 solutions, and a_i(t) when the second layer is trained.
fn figure(exp: &Experiment, dir: &Path, sols: &[(usize, i64, OdeSolution)]) -> Result<()> {
    let mut panels = vec![Panel {
        title: format!("{}: ODE", exp.name),
        x_label: plots::TIME_LABEL.into(),
        y_label: plots::observable_label("eg"),
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
    if exp.model.train_a.is_some() {
        panels.push(second_layer_panel(exp, sols));
    }
    plots::draw(&dir.join("ode.svg"), &panels, 1)
}

/// The trained second layer a_i(t) of the first solution (one colour per i, at most 8), the other
/// solutions' (at most 7 more) dashed in the same colours.
fn second_layer_panel(exp: &Experiment, sols: &[(usize, i64, OdeSolution)]) -> Panel {
    let mut series = vec![];
    for (s, (_, _, sol)) in sols.iter().enumerate().take(8) {
        let Some(a) = &sol.a else { continue };
        for i in 0..exp.model.p().min(8) {
            let y = a.iter().map(|ai| ai[i]).collect();
            let line = Series::line(
                if s == 0 { format!("a_{i}") } else { String::new() },
                sol.t.clone(),
                y,
                i,
            );
            series.push(if s == 0 { line } else { line.dashed() });
        }
    }
    Panel {
        title: format!("{}: trained second layer", exp.name),
        x_label: plots::TIME_LABEL.into(),
        y_label: "a_i (second-layer weights)".into(),
        log_x: exp.log_time,
        log_y: false,
        series,
    }
}
