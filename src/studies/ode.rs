//! `hdsgd ode`: integrate the overlap ODE without simulating (matched: from each run's exact
//! initial overlaps; explicit: from `[init] q0, m0, p`), write `ode.csv`, `summary.json` and a figure.

use super::outdir::Staging;
use super::output::trajectory_table;
use super::plots::{self, Panel, Series};
use super::preflight::{preflight, Command};
use super::run::{explicit_ode, ode_rows};
use super::runner::{self, initial_overlaps, tasks};
use super::{ode_divergence, output_dir, write_summary, DivergedRuns, OutputOptions};
use crate::config::{Experiment, OdeInitial};
use crate::ode::{integrate, OdeSolution};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::PathBuf;
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
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let mut csv = trajectory_table(p, k)?;
    let mut divergences = vec![];
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
    for (n, seed, sol) in &sols {
        let nominal = if *seed < 0 {
            runner::NominalTimes::identity()
        } else {
            runner::NominalTimes::new(exp, *n)
        };
        ode_rows(exp, &mut csv, *n, *seed, sol, &nominal)?;
        divergences.extend(ode_divergence(sol, *n, *seed));
    }
    csv.write(&dir.join("ode.csv"))?;
    write_summary(exp, &dir, opts, start, json!([]), &divergences)?;
    if exp.figures {
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
        plots::draw(&dir.join("ode.svg"), &panels, 1)?;
    }
    let dir = stage.commit()?;
    if !divergences.is_empty() {
        return Err(DivergedRuns(divergences).into());
    }
    Ok(dir)
}
