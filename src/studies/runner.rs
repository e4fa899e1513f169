//! Runs every (N, seed) of an experiment in parallel, each with its own deterministic seed, so that
//! results are bit-identical whatever the thread count.

use super::{Cancel, Cancelled};
use crate::config::{Experiment, OdeInitial, SimulatorKind};
use crate::init::initial_weights;
use crate::ode::{integrate, OdeSolution};
use crate::overlaps::Overlaps;
use crate::rng::{run_seed, stream};
use crate::simulators::chain::ChainSimulator;
use crate::simulators::direct::DirectSimulator;
use crate::simulators::{grid_steps, RunSpec, Simulator, Trajectory};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::ops::ControlFlow;
use std::time::Instant;

/// One simulated run of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTask {
    /// Input dimension.
    pub n: usize,
    /// Seed index 0..seeds.
    pub seed_index: u64,
    /// The run's seed, [`run_seed`]`(base_seed, n, seed_index)`.
    pub seed: u64,
}

/// All runs of an experiment, ordered by N then seed index.
pub fn tasks(exp: &Experiment) -> Vec<RunTask> {
    exp.ns
        .iter()
        .flat_map(|&n| {
            (0..exp.seeds).map(move |i| RunTask {
                n,
                seed_index: i,
                seed: run_seed(exp.base_seed, n, i),
            })
        })
        .collect()
}

/// The simulator parameters of a task.
pub fn run_spec(exp: &Experiment, n: usize) -> RunSpec {
    RunSpec {
        model: exp.model.clone(),
        training: exp.training,
        n,
        divergence_bound: exp.divergence_bound,
    }
}

/// Builds the configured simulator for a task, at its initial condition.
pub fn build_simulator(exp: &Experiment, task: &RunTask) -> Box<dyn Simulator + Send> {
    build_simulator_split(exp, task, 1)
}

/// [`build_simulator`] with each step of a direct run split over `split` threads where that
/// applies ([`DirectSimulator::with_split`]; the numbers are the same).
pub fn build_simulator_split(exp: &Experiment, task: &RunTask, split: usize) -> Box<dyn Simulator + Send> {
    let spec = run_spec(exp, task.n);
    match exp.simulator {
        SimulatorKind::Direct => Box::new(
            DirectSimulator::with_init(spec, &exp.init, task.seed)
                .with_generator(exp.generator)
                .with_split(split),
        ),
        SimulatorKind::Chain => Box::new(ChainSimulator::with_init(spec, &exp.init, task.seed)),
    }
}

/// Threads per run when a study has fewer runs than threads (`threads` = 0: all cores): each run
/// gets threads / runs of them for its split step, so that one large-N run still uses the machine.
pub fn split_threads(threads: usize, runs: usize) -> usize {
    let t = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    (t / runs.max(1)).max(1)
}

/// The exact initial overlaps of a task, without building a whole simulator when avoidable
/// (same law and same numbers as the direct simulator's initialisation).
pub fn initial_overlaps(exp: &Experiment, task: &RunTask) -> Overlaps {
    match exp.simulator {
        SimulatorKind::Direct => {
            let mut rng = stream(task.seed, 0);
            let (w, w_star) = initial_weights(&mut rng, exp.model.p(), exp.model.p_star(), task.n, &exp.init);
            Overlaps::from_weights(w.view(), w_star.view())
        }
        SimulatorKind::Chain => build_simulator(exp, task).initial_overlaps(),
    }
}

/// A progress bar over `total` samples (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} {human_pos}/{human_len} samples, {rate}, ETA {eta}",
        )
        .expect("valid template")
        // Whole samples per second ({per_sec} prints four decimals).
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", indicatif::HumanCount(s.per_sec().max(0.0) as u64));
        }),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Number of samples a task consumes to reach the end of the grid.
pub fn task_samples(exp: &Experiment, n: usize) -> u64 {
    grid_steps(&exp.grid, n, exp.training.batch)
        .last()
        .copied()
        .unwrap_or(0)
        * exp.training.batch as u64
}

/// Maps `f` over the tasks in parallel on a pool of `threads` threads (0: all cores), returning the
/// results in task order. `f` gets the progress bar to advance (in samples). Once `cancel` is set,
/// no further task starts and the call returns [`Cancelled`] (tasks already running finish, or
/// stop early if `f` checks `cancel` itself).
pub fn par_map_tasks<R, F>(
    tasks: &[RunTask],
    threads: usize,
    cancel: &Cancel,
    bar: &ProgressBar,
    f: F,
) -> anyhow::Result<Vec<R>>
where
    R: Send,
    F: Fn(&RunTask, &ProgressBar) -> R + Sync + Send,
{
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    // Largest N first keeps the cores busy to the end; results are put back in task order.
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tasks[i].n));
    let run = |i: usize| (i, (!cancel.is_cancelled()).then(|| f(&tasks[i], bar)));
    let mut out: Vec<(usize, Option<R>)> = pool.install(|| order.par_iter().map(|&i| run(i)).collect());
    out.sort_by_key(|(i, _)| *i);
    let out: Option<Vec<R>> = out.into_iter().map(|(_, r)| r).collect();
    Ok(out.ok_or(Cancelled)?)
}

/// A finished simulated run with its matched ODE.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub task: RunTask,
    pub trajectory: Trajectory,
    /// Wall time of the simulation (seconds).
    pub wall_seconds: f64,
    /// The ODE from this run's initial overlaps on this run's record times (matched mode).
    pub ode: Option<OdeSolution>,
}

/// Simulates every task (and integrates its matched ODE when configured).
pub fn simulate_all(
    exp: &Experiment,
    threads: usize,
    progress: bool,
    cancel: &Cancel,
) -> anyhow::Result<Vec<RunResult>> {
    simulate_tasks(exp, &tasks(exp), threads, progress, cancel, &|_| Ok(()))
}

/// [`simulate_all`] on some of the experiment's tasks (a shard's: [`super::shard`]); `on_done` gets
/// each run as soon as it is finished (from its worker thread), e.g. to append it to a file.
/// Results in the order of `ts`. A run interrupted through `cancel` is not handed to `on_done`.
pub fn simulate_tasks(
    exp: &Experiment,
    ts: &[RunTask],
    threads: usize,
    progress: bool,
    cancel: &Cancel,
    on_done: &(dyn Fn(&RunResult) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<Vec<RunResult>> {
    let total: u64 = ts.iter().map(|t| task_samples(exp, t.n)).sum();
    let bar = if progress {
        progress_bar(total, &exp.name)
    } else {
        ProgressBar::hidden()
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let n_tasks = ts.len();
    bar.set_message(format!("runs 0/{n_tasks}"));
    let split = split_threads(threads, ts.len());
    let results = par_map_tasks(ts, threads, cancel, &bar, |task, bar| -> anyhow::Result<RunResult> {
        let mut sim = build_simulator_split(exp, task, split);
        let n = task.n as f64;
        let start = Instant::now();
        let mut last_t = 0.0;
        let trajectory = sim.run(&exp.grid, &mut |rec| {
            bar.inc(((rec.t - last_t) * n).round() as u64);
            last_t = rec.t;
            match cancel.is_cancelled() {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        });
        cancel.check()?;
        let wall_seconds = start.elapsed().as_secs_f64();
        // ReLU has no closed-form ODE: its runs are simulated (with exact e_g) and not compared.
        let ode = if exp.ode_initial == OdeInitial::Matched && crate::population::has_ode(exp.model.activation) {
            let times: Vec<f64> = trajectory.records.iter().map(|r| r.t).collect();
            let times = if trajectory.diverged_at.is_some() {
                record_times(exp, task.n)
            } else {
                times
            };
            Some(integrate(
                &exp.model,
                &exp.training,
                &trajectory.initial,
                &times,
                &exp.ode_options,
                |_, _: &_| false,
            )?)
        } else {
            None
        };
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        bar.set_message(format!("runs {k}/{n_tasks}"));
        let result = RunResult {
            task: *task,
            trajectory,
            wall_seconds,
            ode,
        };
        on_done(&result)?;
        Ok(result)
    })?;
    bar.finish_and_clear();
    results.into_iter().collect()
}

/// The nominal grid time of the records of runs at one N: a run records at the grid times rounded
/// to whole steps of B/N, which differ between N in the last digits; the tables label each record
/// with the grid time it stands for, identical across N (and keep the exact time beside it). When
/// several grid times round to the same step (steps coarser than the grid), the record stands for
/// the first of them.
#[derive(Debug, Clone)]
pub struct NominalTimes {
    /// Step → nominal time; empty for an explicit ODE (its times are the grid itself).
    by_step: std::collections::HashMap<u64, f64>,
    n: usize,
    batch: usize,
}

impl NominalTimes {
    /// For the runs at dimension `n`.
    pub fn new(exp: &Experiment, n: usize) -> Self {
        let batch = exp.training.batch;
        let mut by_step = std::collections::HashMap::new();
        for &t in &exp.grid {
            by_step.entry((t * n as f64 / batch as f64).round() as u64).or_insert(t);
        }
        NominalTimes { by_step, n, batch }
    }

    /// Times that are already nominal (an explicit ODE on the grid).
    pub fn identity() -> Self {
        NominalTimes {
            by_step: Default::default(),
            n: 1,
            batch: 1,
        }
    }

    /// The nominal time of a record at exact time `t_exact` (itself if it is not on the grid).
    pub fn of(&self, t_exact: f64) -> f64 {
        let step = (t_exact * self.n as f64 / self.batch as f64).round() as u64;
        self.by_step.get(&step).copied().unwrap_or(t_exact)
    }
}

/// The times a run at dimension `n` records (grid rounded to whole steps).
pub fn record_times(exp: &Experiment, n: usize) -> Vec<f64> {
    let b = exp.training.batch;
    grid_steps(&exp.grid, n, b)
        .iter()
        .map(|&s| s as f64 * b as f64 / n as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheap initial overlaps used by `hdsgd ode` are exactly those the simulator starts from.
    #[test]
    fn initial_overlaps_match_the_simulator() {
        let text = r#"
[model]
activation = "quadratic"
p = 2
p_star = 1
[init]
student_mix = [[0.5], [0.1]]
[training]
eta = 0.1
[simulation]
n = [30, 50]
seeds = 2
[time]
t_max = 1.0
"#;
        let exp = Experiment::from_toml(text, "t").unwrap();
        for task in tasks(&exp) {
            assert_eq!(
                initial_overlaps(&exp, &task),
                build_simulator(&exp, &task).initial_overlaps()
            );
        }
    }
}
