//! Pre-flight: everything that can be known about a command before it computes anything, checked
//! by every command first and printed by `hdsgd check`. Cheap: it allocates nothing in proportion to
//! N, the seeds or the grid.
//!
//! * The output folder: an existing file, a non-empty folder without `--force` (an escape study's own
//!   folder is resumed instead), a parent that cannot be created or written to: errors naming the path.
//! * Size: an estimate of the memory a command holds at once (the weights of the concurrent runs,
//!   the records and ODE solutions kept for the outputs, the CSV text) and of the SGD samples it
//!   draws. Refused, naming the field that drives it and the estimate, when the memory exceeds what
//!   the machine has available (`MemAvailable` of /proc/meminfo; [`DEFAULT_MEMORY_LIMIT`] where that
//!   cannot be read), when the samples exceed [`MAX_SAMPLES`], or when p or p* exceeds
//!   [`MAX_WIDTH`]. `--allow-large` (or `HDSGD_ALLOW_LARGE=1`) lifts these size limits.
//! * Threads: `--threads` above [`MAX_THREADS_PER_CORE`] × the cores is lowered to that, with a
//!   warning.
//! * Degenerate designs: a duplicated N (refused: its runs would be averaged as if they were more
//!   seeds); a batch so large that a run takes no step (refused); record times pushed beyond t_max
//!   by the rounding to whole steps of B/N (refused beyond 1 % of t_max, warned below); `[scaling]`
//!   windows outside [0, t_max] or holding no record time (refused).

use super::outdir;
use super::runner::task_samples;
use super::OutputOptions;
use crate::config::{Experiment, SimulatorKind};
use crate::simulators::grid_steps;
use anyhow::{bail, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest student or teacher width p, p* (and `[geometry] widths` entry) without `--allow-large`.
pub const MAX_WIDTH: usize = 256;
/// Largest number of SGD samples of one command (all runs together) without `--allow-large`.
pub const MAX_SAMPLES: f64 = 1e13;
/// Memory limit where the available memory cannot be read (bytes).
pub const DEFAULT_MEMORY_LIMIT: f64 = 16e9;
/// `--threads` is capped at this many threads per core.
pub const MAX_THREADS_PER_CORE: usize = 4;
/// A last record time beyond t_max by more than this fraction of t_max is refused.
pub const MAX_OVERSHOOT: f64 = 0.01;

static ALLOW_LARGE: AtomicBool = AtomicBool::new(false);

/// Lifts the size limits for this process (the `--allow-large` flag).
pub fn set_allow_large(allow: bool) {
    ALLOW_LARGE.store(allow, Ordering::SeqCst);
}

/// Whether the size limits are lifted (`--allow-large`, or `HDSGD_ALLOW_LARGE=1`).
pub fn allow_large() -> bool {
    ALLOW_LARGE.load(Ordering::SeqCst) || std::env::var_os("HDSGD_ALLOW_LARGE").is_some_and(|v| v != "0")
}

/// The commands that compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Command {
    Run,
    Ode,
    Plateau,
    Escape,
    Scaling,
    Hessian,
}

impl Command {
    /// The command's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Command::Run => "run",
            Command::Ode => "ode",
            Command::Plateau => "plateau",
            Command::Escape => "escape",
            Command::Scaling => "scaling",
            Command::Hessian => "hessian",
        }
    }

    /// The command an experiment file is most likely written for (what `hdsgd check` checks when
    /// not told): `escape` with an `[escape]` section, `scaling` with `[scaling]`, else `run` with a
    /// `[simulation]` section, else `ode`.
    pub fn for_experiment(exp: &Experiment) -> Command {
        if exp.config.escape.is_some() {
            Command::Escape
        } else if exp.config.scaling.is_some() {
            Command::Scaling
        } else if exp.ns.is_empty() {
            Command::Ode
        } else {
            Command::Run
        }
    }

    fn simulates(self) -> bool {
        matches!(self, Command::Run | Command::Escape | Command::Scaling)
    }
}

/// What a command is about to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub command: Command,
    /// Worker threads, after the cap.
    pub threads: usize,
    /// Simulated runs.
    pub runs: f64,
    /// SGD samples of all runs (an upper bound for `escape`, whose runs stop at the escape).
    pub samples: f64,
    /// Memory estimate by part (name, bytes).
    pub memory: Vec<(&'static str, f64)>,
    /// The memory limit (bytes) and where it comes from.
    pub memory_limit: (f64, &'static str),
    /// What the output folder will be (created, replaced, resumed).
    pub folder: String,
    pub warnings: Vec<String>,
}

impl Plan {
    /// Total of the memory estimate (bytes).
    pub fn memory_total(&self) -> f64 {
        self.memory.iter().map(|(_, b)| b).sum()
    }

    /// One paragraph for `hdsgd check` and the logs.
    pub fn report(&self) -> String {
        let parts: Vec<String> = self
            .memory
            .iter()
            .filter(|(_, b)| *b > 0.0)
            .map(|(n, b)| format!("{n} {}", bytes(*b)))
            .collect();
        format!(
            "pre-flight for `hdsgd {}` on {} thread(s): {} run(s), {:.3e} SGD samples; memory ≈ {} ({}) of {} ({}); output folder: {}",
            self.command.name(),
            self.threads,
            self.runs,
            self.samples,
            bytes(self.memory_total()),
            if parts.is_empty() { "negligible".to_string() } else { parts.join(", ") },
            bytes(self.memory_limit.0),
            self.memory_limit.1,
            self.folder,
        )
    }
}

/// Bytes in decimal units.
pub fn bytes(b: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut x = b;
    let mut u = 0;
    while x >= 1000.0 && u + 1 < units.len() {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{x:.0} {}", units[u])
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// The memory the machine has available: `MemAvailable` of /proc/meminfo, else the documented default.
pub fn memory_limit() -> (f64, &'static str) {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb * 1024.0, "available, /proc/meminfo"))
        .unwrap_or((DEFAULT_MEMORY_LIMIT, "default limit"))
}

/// Cores of the machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn field(field: &str, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid value for `{field}`: {message}")
}

fn large_hint() -> &'static str {
    "pass --allow-large to run it anyway"
}

/// Bytes of the state of one run held while it runs (weights and buffers).
fn run_state_bytes(exp: &Experiment, n: f64) -> f64 {
    let (p, k, b) = (
        exp.model.p() as f64,
        exp.model.p_star() as f64,
        exp.training.batch as f64,
    );
    match exp.simulator {
        // W, W* and two B×N input buffers.
        SimulatorKind::Direct => 8.0 * n * (p + k + 2.0 * b) + 4096.0,
        // The (p + p*) × (p + p* + B) factor and the B-column work arrays.
        SimulatorKind::Chain => {
            let d = p + k;
            8.0 * (d * (d + b) + 2.0 * b * (d + b) + b * (2.0 * d + 1.0)) + 4096.0
        }
    }
}

/// Bytes of one record (the overlaps, e_g, t and the training loss, with their headers).
fn record_bytes(exp: &Experiment) -> f64 {
    let (p, k) = (exp.model.p() as f64, exp.model.p_star() as f64);
    8.0 * (p * p + p * k + k * k) + 160.0
}

/// Bytes of one CSV row of a trajectory table.
fn csv_row_bytes(exp: &Experiment) -> f64 {
    let (p, k) = (exp.model.p() as f64, exp.model.p_star() as f64);
    24.0 * (5.0 + p * (p + 1.0) / 2.0 + p * k)
}

/// The plan of `command` on `exp` with `opts`, or an error naming the field (module docs).
/// Prints nothing and creates nothing.
pub fn plan(exp: &Experiment, command: Command, opts: &OutputOptions) -> Result<Plan> {
    plan_with(exp, command, opts, true)
}

/// [`plan`], without the output folder check when `check_folder` is false (a shard's folder is a
/// resumable journal inside a study folder that holds the other shards).
pub fn plan_with(exp: &Experiment, command: Command, opts: &OutputOptions, check_folder: bool) -> Result<Plan> {
    let large = allow_large();
    let mut warnings = vec![];
    if !large {
        check_widths(exp)?;
    }
    check_trained_second_layer(exp, command, check_folder)?;
    let threads = resolve_threads(opts.threads, &mut warnings);
    // Degenerate designs of the simulated runs.
    if command.simulates() || (command == Command::Ode && !exp.ns.is_empty()) {
        check_ns_distinct(exp)?;
        check_record_times(exp, &mut warnings)?;
    }
    if command == Command::Scaling {
        check_scaling(exp)?;
    }

    // Size.
    let runs = if command.simulates() || command == Command::Ode {
        exp.ns.len() as f64 * exp.seeds as f64
    } else {
        0.0
    };
    let samples = planned_samples(exp, command);
    let concurrent = (threads as f64).min(runs.max(1.0));
    let weights = concurrent_weights(exp, concurrent);
    let memory = memory_estimate(exp, command, runs, concurrent, weights);
    let limit = memory_limit();
    if !large {
        check_memory(exp, command, threads, runs, weights, &memory, &limit)?;
        check_samples(exp, command, runs, samples)?;
    }

    let folder = if check_folder {
        folder_status(exp, command, opts)?
    } else {
        "a shard folder (resumable)".to_string()
    };
    Ok(Plan {
        command,
        threads,
        runs,
        samples,
        memory,
        memory_limit: limit,
        folder,
        warnings,
    })
}

/// p, p* and the `[geometry] widths` within [`MAX_WIDTH`].
fn check_widths(exp: &Experiment) -> Result<()> {
    let (p, k) = (exp.model.p(), exp.model.p_star());
    if p > MAX_WIDTH {
        bail!(field(
            "model.p",
            format!("p = {p} exceeds {MAX_WIDTH} (the ODE's state has p(p+1)/2 + p·p* entries and its Jacobian their square); {}", large_hint())
        ));
    }
    if k > MAX_WIDTH {
        bail!(field(
            "model.p_star",
            format!("p* = {k} exceeds {MAX_WIDTH}; {}", large_hint())
        ));
    }
    if let Some(w) = exp.config.geometry.as_ref().and_then(|g| g.widths.as_ref()) {
        if let Some(&big) = w.iter().find(|&&w| w as usize > MAX_WIDTH) {
            bail!(field(
                "geometry.widths",
                format!("width {big} exceeds {MAX_WIDTH}; {}", large_hint())
            ));
        }
    }
    Ok(())
}

/// The thread count: all cores for 0, capped at [`MAX_THREADS_PER_CORE`] × the cores (with a
/// warning).
fn resolve_threads(requested: usize, warnings: &mut Vec<String>) -> usize {
    let cores = cores();
    let cap = MAX_THREADS_PER_CORE * cores;
    match requested {
        0 => cores,
        t if t > cap => {
            warnings.push(format!(
                "--threads {t} is more than {MAX_THREADS_PER_CORE} × the {cores} core(s) of this machine: using {cap} threads (results do not depend on the thread count)"
            ));
            cap
        }
        t => t,
    }
}

/// No N listed twice.
fn check_ns_distinct(exp: &Experiment) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for &n in &exp.ns {
        if !seen.insert(n) {
            bail!(field(
                "simulation.n",
                format!("N = {n} is listed twice (its runs would be pooled as if they were more seeds: raise simulation.seeds instead)")
            ));
        }
    }
    Ok(())
}

/// At every N: at least one SGD step, and the last record time (rounded to whole steps of B/N)
/// not beyond t_max by more than [`MAX_OVERSHOOT`] (warned below that).
fn check_record_times(exp: &Experiment, warnings: &mut Vec<String>) -> Result<()> {
    let t_max = *exp.grid.last().unwrap_or(&0.0);
    let b = exp.training.batch;
    for &n in &exp.ns {
        let steps = grid_steps(&exp.grid, n, b);
        let last = steps.last().copied().unwrap_or(0);
        if last == 0 {
            bail!(field(
                "training.batch",
                format!(
                    "B = {b} exceeds the samples of a whole run at N = {n} (t_max·N = {}): no SGD step would be taken; lower the batch or raise time.t_max",
                    t_max * n as f64
                )
            ));
        }
        let t_last = last as f64 * b as f64 / n as f64;
        if t_last > t_max * (1.0 + MAX_OVERSHOOT) {
            bail!(field(
                "training.batch",
                format!(
                    "with B = {b} at N = {n} the record times are multiples of B/N = {}, and the last one falls at t = {t_last} > t_max = {t_max}; lower the batch, raise N, or make t_max a multiple of B/N",
                    b as f64 / n as f64
                )
            ));
        }
        if t_last > t_max * (1.0 + 1e-12) {
            warnings.push(format!(
                "time.t_max: at N = {n} the record times are rounded to whole steps of B/N = {}: the last record is at t = {t_last}, beyond t_max = {t_max}",
                b as f64 / n as f64
            ));
        }
    }
    Ok(())
}

/// What a shard of `command` would refuse about the experiment itself, independent of the machine
/// (memory and threads are checked by each shard where it runs): checked by `hdsgd slurm` before it
/// writes any job script, so that a study the shards cannot run is not submitted.
pub(crate) fn check_shardable(exp: &Experiment, command: Command) -> Result<()> {
    check_trained_second_layer(exp, command, false)
}

/// A trained second layer (`[model] a = { train = true, … }`) is supported by `run` and `ode` on one
/// machine; the plateau fixed point and its stability, the escape and scaling studies, the Hessian
/// and shards (whose files do not carry a) assume a fixed second layer, so they refuse it.
fn check_trained_second_layer(exp: &Experiment, command: Command, check_folder: bool) -> Result<()> {
    if exp.model.train_a.is_none() {
        return Ok(());
    }
    if !matches!(command, Command::Run | Command::Ode) {
        bail!(field(
            "model.a",
            format!(
                "`hdsgd {}` does not support a trained second layer (`train = true`): it assumes a fixed a; \
                 use `hdsgd run` or `hdsgd ode`, or set `train = false`",
                command.name()
            )
        ));
    }
    if !check_folder {
        bail!(field(
            "model.a",
            "shards do not support a trained second layer (`train = true`) yet; run the experiment on one \
             machine with `hdsgd run`"
        ));
    }
    Ok(())
}

/// `hdsgd scaling`: two N, three seeds, and windows within [0, t_max] holding a record time at
/// every N.
fn check_scaling(exp: &Experiment) -> Result<()> {
    if exp.ns.len() < 2 {
        bail!(field("simulation.n", "`hdsgd scaling` needs at least two N"));
    }
    if exp.seeds < 3 {
        bail!(field(
            "simulation.seeds",
            "`hdsgd scaling` needs at least 3 seeds per N"
        ));
    }
    let t_max = *exp.grid.last().unwrap_or(&0.0);
    for w in exp.config.scaling.as_ref().map(|s| s.windows.as_slice()).unwrap_or(&[]) {
        if w[1] > t_max {
            bail!(field(
                "scaling.windows",
                format!("window [{}, {}] ends beyond t_max = {t_max}", w[0], w[1])
            ));
        }
        for &n in &exp.ns {
            let b = exp.training.batch;
            let inside = grid_steps(&exp.grid, n, b)
                .iter()
                .map(|&s| s as f64 * b as f64 / n as f64)
                .filter(|t| *t >= w[0] && *t <= w[1])
                .count();
            if inside == 0 {
                bail!(field(
                    "scaling.windows",
                    format!("window [{}, {}] holds no record time at N = {n} (no fit possible): widen it or refine the time grid", w[0], w[1])
                ));
            }
        }
    }
    Ok(())
}

/// The SGD samples `command` draws, all runs together (in floating point: no overflow).
fn planned_samples(exp: &Experiment, command: Command) -> f64 {
    if !command.simulates() {
        return 0.0;
    }
    exp.ns
        .iter()
        .map(|&n| {
            let t_max = *exp.grid.last().unwrap_or(&0.0);
            // task_samples in floating point (its u64 would overflow for absurd sizes).
            let approx = (t_max * n as f64 / exp.training.batch as f64).round() * exp.training.batch as f64;
            if approx < 1e15 {
                task_samples(exp, n) as f64
            } else {
                approx
            }
        })
        .sum::<f64>()
        * exp.seeds as f64
        * if command == Command::Run {
            run_multiplier(exp)
        } else {
            1.0
        }
}

/// Bytes of the state of the `concurrent` runs held at once.
fn concurrent_weights(exp: &Experiment, concurrent: f64) -> f64 {
    // The largest N run first: the concurrent runs are (at most) the `threads` largest.
    let mut by_n: Vec<usize> = exp.ns.clone();
    by_n.sort_unstable_by(|a, b| b.cmp(a));
    let mut left = concurrent;
    let mut total = 0.0;
    for &n in &by_n {
        let take = left.min(exp.seeds as f64);
        total += take * run_state_bytes(exp, n as f64);
        left -= take;
        if left <= 0.0 {
            break;
        }
    }
    total
}

/// The memory `command` holds at once, part by part (bytes).
fn memory_estimate(
    exp: &Experiment,
    command: Command,
    runs: f64,
    concurrent: f64,
    weights: f64,
) -> Vec<(&'static str, f64)> {
    let (p, k) = (exp.model.p(), exp.model.p_star());
    let grid = exp.grid.len() as f64;
    let d = (p * (p + 1) / 2 + p * k) as f64;
    let mut memory: Vec<(&'static str, f64)> = vec![];
    match command {
        Command::Run | Command::Scaling => {
            memory.push(("weights of the concurrent runs", weights));
            memory.push(("records and matched ODEs", runs * grid * 2.0 * record_bytes(exp)));
            let tables = if command == Command::Run { 2.0 } else { 1.5 };
            memory.push(("tables", runs * grid * tables * csv_row_bytes(exp)));
            memory.push(("ODE solutions being integrated", concurrent * grid * 8.0 * 8.0 * d));
            memory.push(("run list", runs * 64.0));
        }
        Command::Escape => {
            memory.push(("weights of the concurrent runs", weights));
            memory.push(("records of the concurrent runs", concurrent * grid * record_bytes(exp)));
            memory.push(("run list and results", runs * 160.0));
        }
        Command::Ode => {
            // Matched: each run's initial weights are drawn to get its exact initial overlaps.
            memory.push(("initial weights of the concurrent runs", weights));
            memory.push(("ODE solutions", runs.max(1.0) * grid * record_bytes(exp)));
            memory.push(("tables", runs.max(1.0) * grid * csv_row_bytes(exp)));
        }
        Command::Plateau => {
            memory.push(("Jacobian of the ODE", 8.0 * d * d * 6.0));
        }
        Command::Hessian => {
            let n = exp.config.geometry.as_ref().map(|g| g.hessian_n).unwrap_or(100).max(1) as f64;
            let dim = p as f64 * n;
            memory.push(("Hessian and its eigendecomposition", 8.0 * dim * dim * 4.0));
        }
    }
    memory
}

/// The memory estimate within the limit, or an error naming the field that drives it.
fn check_memory(
    exp: &Experiment,
    command: Command,
    threads: usize,
    runs: f64,
    weights: f64,
    memory: &[(&'static str, f64)],
    limit: &(f64, &'static str),
) -> Result<()> {
    let total: f64 = memory.iter().map(|(_, b)| b).sum();
    if total > limit.0 {
        bail!(memory_error(exp, command, threads, runs, weights, memory, limit, total));
    }
    Ok(())
}

/// The error of a memory estimate beyond the limit, naming the field that drives it.
#[allow(clippy::too_many_arguments)]
fn memory_error(
    exp: &Experiment,
    command: Command,
    threads: usize,
    runs: f64,
    weights: f64,
    memory: &[(&'static str, f64)],
    limit: &(f64, &'static str),
    total: f64,
) -> anyhow::Error {
    let grid = exp.grid.len() as f64;
    let culprit = if exp.training.batch > 1 && weights > 0.5 * total {
        "training.batch"
    } else if weights > 0.5 * total {
        "simulation.n"
    } else if command == Command::Hessian {
        "geometry.hessian_n"
    } else if command == Command::Plateau {
        "model.p"
    } else if runs > grid {
        "simulation.seeds"
    } else if exp.config.time.times.is_some() {
        "time.times"
    } else {
        "time.points"
    };
    let parts: Vec<String> = memory
        .iter()
        .filter(|(_, b)| *b > 0.0)
        .map(|(n, b)| format!("{n} {}", bytes(*b)))
        .collect();
    field(
        culprit,
        format!(
            "`hdsgd {}` would need ≈ {} of memory ({}) on {threads} thread(s), more than the {} {}; lower it (or use fewer --threads, or simulation.simulator = \"chain\" for large N), or {}",
            command.name(),
            bytes(total),
            parts.join(", "),
            bytes(limit.0),
            limit.1,
            large_hint()
        ),
    )
}

/// The SGD samples within [`MAX_SAMPLES`].
fn check_samples(exp: &Experiment, command: Command, runs: f64, samples: f64) -> Result<()> {
    if samples > MAX_SAMPLES {
        let biggest = exp.ns.iter().copied().max().unwrap_or(0);
        bail!(field(
            if exp.seeds as f64 * exp.ns.len() as f64 > 1e6 { "simulation.seeds" } else { "simulation.n" },
            format!(
                "`hdsgd {}` would draw {samples:.3e} SGD samples ({runs} runs up to N = {biggest}, t_max = {}), more than the limit of {MAX_SAMPLES:e}; {}",
                command.name(),
                exp.grid.last().unwrap_or(&0.0),
                large_hint()
            )
        ));
    }
    Ok(())
}

/// How many times `hdsgd run` simulates each run: once, plus once more for the "selection"
/// geometry observable and once per width for "escape".
fn run_multiplier(exp: &Experiment) -> f64 {
    use crate::analysis::geometry::GeometryObservable;
    let Some(g) = &exp.config.geometry else {
        return 1.0;
    };
    let mut m = 1.0;
    if g.requests(GeometryObservable::Selection) {
        m += 1.0;
    }
    if g.requests(GeometryObservable::Escape) {
        m += g.widths.as_ref().map(|w| w.len()).unwrap_or(1) as f64;
    }
    m
}

/// The output folder check of the module docs, without creating anything.
fn folder_status(exp: &Experiment, command: Command, opts: &OutputOptions) -> Result<String> {
    let dir = match (command, &opts.out) {
        (Command::Plateau, None) => return Ok("none (plateau writes plateau.json only with --out)".into()),
        (_, Some(d)) => d.clone(),
        (_, None) => exp.output_dir.clone(),
    };
    let shown = dir.display();
    if dir.exists() {
        if !dir.is_dir() {
            bail!("output path {shown} exists and is not a folder");
        }
        if outdir::non_empty(&dir)? {
            if command == Command::Escape && dir.join(super::escape::RUNS_FILE).exists() {
                return Ok(if opts.force {
                    format!("{shown} (an escape study: its finished runs are discarded, --force)")
                } else {
                    format!("{shown} (an escape study: resumed)")
                });
            }
            if !opts.force {
                bail!(
                    "output folder {shown} already exists and is not empty: pass --force to overwrite it, or --out to choose another"
                );
            }
            return Ok(format!("{shown} (replaced at the end, --force)"));
        }
    }
    // The nearest existing ancestor must be a folder we may write into.
    let abs = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
    if abs.file_name().is_none() {
        bail!("output folder {shown} has no name (use a path such as results/NAME)");
    }
    let mut anc: &Path = abs.parent().unwrap_or(Path::new("/"));
    while !anc.exists() {
        match anc.parent() {
            Some(a) => anc = a,
            None => break,
        }
    }
    if !anc.is_dir() {
        bail!("cannot create output folder {shown}: {} is not a folder", anc.display());
    }
    if !writable(anc) {
        bail!("cannot create output folder {shown}: {} is not writable", anc.display());
    }
    Ok(if dir.exists() {
        format!("{shown} (empty, filled at the end)")
    } else {
        format!("{shown} (created at the end)")
    })
}

fn writable(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    }
    #[cfg(not(unix))]
    {
        !std::fs::metadata(dir)
            .map(|m| m.permissions().readonly())
            .unwrap_or(true)
    }
}

/// The pre-flight of a command: the [`plan`], its warnings printed on stderr, and the options with
/// the thread count capped. Every command calls it before computing.
pub fn preflight(exp: &Experiment, command: Command, opts: &OutputOptions) -> Result<OutputOptions> {
    preflight_with(exp, command, opts, true)
}

/// [`preflight`] of a shard (`--shard I/K`): no output folder check ([`plan_with`]).
pub fn preflight_shard(exp: &Experiment, command: Command, opts: &OutputOptions) -> Result<OutputOptions> {
    preflight_with(exp, command, opts, false)
}

fn preflight_with(
    exp: &Experiment,
    command: Command,
    opts: &OutputOptions,
    check_folder: bool,
) -> Result<OutputOptions> {
    let plan = plan_with(exp, command, opts, check_folder)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let mut opts = opts.clone();
    if opts.threads != 0 {
        opts.threads = plan.threads;
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[model]
activation = "quadratic"
p = 2
p_star = 1
[training]
eta = 0.5
[simulation]
n = [100, 200]
seeds = 2
[time]
t_max = 1.0
"#;

    fn opts() -> OutputOptions {
        OutputOptions {
            out: Some(std::env::temp_dir().join("hdsgd-preflight-test-none")),
            threads: 1,
            force: false,
            ..Default::default()
        }
    }

    fn err(text: &str, c: Command) -> String {
        let exp = Experiment::from_toml(text, "t").unwrap();
        format!("{:#}", plan(&exp, c, &opts()).unwrap_err())
    }

    /// A trained second layer passes for `run` and `ode`; every other command, and a shard, refuses it
    /// naming `model.a`.
    #[test]
    fn trained_second_layer_only_for_run_and_ode() {
        let text = BASE.replace("p_star = 1", "p_star = 1\na = { train = true, eta = 0.3 }");
        let exp = Experiment::from_toml(&text, "t").unwrap();
        for c in [Command::Run, Command::Ode] {
            assert!(plan(&exp, c, &opts()).is_ok(), "{}", c.name());
        }
        for c in [Command::Plateau, Command::Escape, Command::Scaling, Command::Hessian] {
            let e = format!("{:#}", plan(&exp, c, &opts()).unwrap_err());
            assert!(e.contains("model.a") && e.contains(c.name()), "{e}");
        }
        let e = format!("{:#}", plan_with(&exp, Command::Run, &opts(), false).unwrap_err());
        assert!(e.contains("model.a") && e.contains("shards"), "{e}");
    }

    #[test]
    fn a_small_experiment_passes() {
        let exp = Experiment::from_toml(BASE, "t").unwrap();
        let p = plan(&exp, Command::Run, &opts()).unwrap();
        assert_eq!(p.runs, 4.0);
        assert_eq!(p.samples, 2.0 * (100.0 + 200.0));
        assert!(p.warnings.is_empty());
        assert!(p.memory_total() < 1e6, "{}", p.report());
    }

    #[test]
    fn sizes_and_designs_are_refused_naming_the_field() {
        let e = err(&BASE.replace("n = [100, 200]", "n = [1000000000000]"), Command::Run);
        assert!(e.contains("simulation.n") && e.contains("memory"), "{e}");
        let e = err(&BASE.replace("n = [100, 200]", "n = [100, 100]"), Command::Run);
        assert!(e.contains("simulation.n") && e.contains("twice"), "{e}");
        let e = err(&BASE.replace("eta = 0.5", "eta = 0.5\nbatch = 1000"), Command::Run);
        assert!(e.contains("training.batch") && e.contains("no SGD step"), "{e}");
        let e = err(&BASE.replace("eta = 0.5", "eta = 0.5\nbatch = 150"), Command::Run);
        assert!(e.contains("training.batch") && e.contains("t_max"), "{e}");
        let e = err(&BASE.replace("p = 2", "p = 300"), Command::Plateau);
        assert!(e.contains("model.p"), "{e}");
        let scaling = BASE.replace("seeds = 2", "seeds = 3");
        let e = err(
            &format!("{scaling}[scaling]\nwindows = [[0.5, 2.0]]\n"),
            Command::Scaling,
        );
        assert!(e.contains("scaling.windows"), "{e}");
        let e = err(
            &format!("{scaling}[scaling]\nwindows = [[0.501, 0.502]]\n")
                .replace("t_max = 1.0", "t_max = 1.0\npoints = 4"),
            Command::Scaling,
        );
        assert!(e.contains("scaling.windows") && e.contains("no record time"), "{e}");
        let e = err(
            &BASE
                .replace("seeds = 2", "seeds = 1000000")
                .replace("t_max = 1.0", "t_max = 1e9"),
            Command::Run,
        );
        assert!(e.contains("simulation."), "{e}");
    }

    #[test]
    fn a_small_overshoot_is_a_warning_and_threads_are_capped() {
        // B = 3 at N = 100: steps of 0.03, the last record at round(33.3)·0.03 = 0.99 … at N = 200
        // round(66.7) = 67 → 1.005 > 1.
        let exp = Experiment::from_toml(&BASE.replace("eta = 0.5", "eta = 0.5\nbatch = 3"), "t").unwrap();
        let mut o = opts();
        o.threads = 1_000_000;
        let p = plan(&exp, Command::Run, &o).unwrap();
        assert!(p.warnings.iter().any(|w| w.contains("time.t_max")), "{:?}", p.warnings);
        assert!(p.warnings.iter().any(|w| w.contains("--threads")), "{:?}", p.warnings);
        assert_eq!(p.threads, MAX_THREADS_PER_CORE * cores());
    }

    #[test]
    fn output_folder_problems_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let exp = Experiment::from_toml(BASE, "t").unwrap();
        let mut o = opts();
        o.out = Some(file.join("out"));
        let e = format!("{:#}", plan(&exp, Command::Run, &o).unwrap_err());
        assert!(
            e.contains(&file.display().to_string()) && e.contains("not a folder"),
            "{e}"
        );
        o.out = Some(tmp.path().to_path_buf());
        let e = format!("{:#}", plan(&exp, Command::Run, &o).unwrap_err());
        assert!(e.contains("--force"), "{e}");
    }
}
