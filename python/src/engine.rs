//! Every call into the `hdsgd` crate made by the binding lives in this file, so that a change of the
//! crate's API (module moves, renames) is a one-file fix here. The rest of the binding sees only the
//! plain types defined below (`Vec`, `ndarray` arrays, strings) and the opaque [`Exp`] and [`Sim`].
//!
//! Numbers are those of the CLI bit for bit: experiments are validated by `Experiment::from_toml` /
//! `Experiment::load`, run seeds come from `hdsgd::rng::run_seed`, simulators are built as the
//! CLI's runner builds them, and [`Sim::advance_to`] steps, sums the training loss and checks for
//! divergence exactly as the crate's record loop (`simulators::record_loop`) does.

use hdsgd::config::{ConfigError, Experiment, ExperimentConfig, SimulationConfig, SimulatorKind};
use hdsgd::ode::{integrate, OdeStop};
use hdsgd::overlaps::Overlaps;
use hdsgd::population::population_error;
use hdsgd::simulators::chain::ChainSimulator;
use hdsgd::simulators::direct::DirectSimulator;
use hdsgd::simulators::{grid_steps, RunSpec};
use nalgebra::DMatrix;
use ndarray::{Array2, Array3};
use std::path::Path;
use std::time::{Duration, Instant};

/// Crate name and version of the engine (for `hdsgd.__version__` and summaries).
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Errors of the engine, mapped to Python exceptions by the binding.
#[derive(Debug, Clone)]
pub enum EngineError {
    /// Invalid input: `field` names the experiment key when known (→ `ValueError`).
    Invalid { field: Option<String>, message: String },
    /// A file could not be read (→ `OSError`).
    Io(String),
    /// Anything else (→ `RuntimeError`).
    Other(String),
}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        let message = e.to_string();
        match e {
            ConfigError::Io { .. } => EngineError::Io(message),
            ConfigError::Parse { .. } => EngineError::Invalid { field: None, message },
            ConfigError::Field { field, .. } => EngineError::Invalid {
                field: Some(field),
                message,
            },
        }
    }
}

pub type EResult<T> = Result<T, EngineError>;

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field: Some(field.into()),
        message: format!("invalid value for `{field}`: {}", message.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Experiments
// ---------------------------------------------------------------------------------------------

/// A validated experiment (opaque to the rest of the binding).
#[derive(Debug, Clone)]
pub struct Exp(Experiment);

/// Loads an experiment file exactly as the CLI does (`Experiment::load`).
pub fn load_path(path: &Path) -> EResult<Exp> {
    Ok(Exp(Experiment::load(path)?))
}

/// Parses and validates TOML text (the serialised dict form) with the CLI's loader; `name` is the
/// default name (the CLI uses the file stem). Parse errors name `<source>` instead of a file.
pub fn load_toml(text: &str, name: &str, source: &str) -> EResult<Exp> {
    Experiment::from_toml(text, name).map(Exp).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: source.into(),
            message,
        }
        .into(),
        other => other.into(),
    })
}

impl Exp {
    /// The resolved experiment as the JSON `hdsgd check` prints.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).expect("an experiment serialises")
    }

    /// The times a run at dimension `n` records: the grid rounded to whole steps.
    pub fn record_times(&self, n: usize) -> Vec<f64> {
        let b = self.0.training.batch;
        grid_steps(&self.0.grid, n, b)
            .iter()
            .map(|&s| s as f64 * b as f64 / n as f64)
            .collect()
    }

    pub fn p(&self) -> usize {
        self.0.model.p()
    }

    pub fn p_star(&self) -> usize {
        self.0.model.p_star()
    }

    pub fn noise(&self) -> f64 {
        self.0.model.noise
    }

    /// The same experiment with a single run configuration: `[simulation]` replaced by one N, enough
    /// seeds for `seed_index`, the given simulator and base seed (other keys kept), re-validated.
    fn single_run(&self, kind: SimKind, n: i64, seed_index: u64, base_seed: Option<u64>) -> EResult<Exp> {
        let mut config: ExperimentConfig = self.0.config.clone();
        let old = config.simulation.take();
        let seeds = i64::try_from(seed_index)
            .ok()
            .and_then(|s| s.checked_add(1))
            .ok_or_else(|| invalid("seed", "too large"))?;
        config.simulation = Some(SimulationConfig {
            simulator: match kind {
                SimKind::Direct => SimulatorKind::Direct,
                SimKind::Chain => SimulatorKind::Chain,
            },
            n: vec![n],
            seeds,
            base_seed: base_seed.or(old.as_ref().map(|s| s.base_seed)).unwrap_or(0),
            divergence_bound: old.as_ref().map(|s| s.divergence_bound).unwrap_or(1e6),
            generator: old.as_ref().map(|s| s.generator).unwrap_or_default(),
        });
        Ok(Exp(Experiment::from_config(config, &self.0.name)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Simulators
// ---------------------------------------------------------------------------------------------

/// Which simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKind {
    Direct,
    Chain,
}

enum Engine {
    Direct(Box<DirectSimulator>),
    Chain(Box<ChainSimulator>),
}

impl Engine {
    /// One SGD step (weights fully updated on return); the summed per-sample loss of the batch.
    #[inline]
    fn step(&mut self) -> f64 {
        match self {
            Engine::Direct(s) => s.step(),
            Engine::Chain(s) => s.step(),
        }
    }

    fn overlaps(&self) -> Overlaps {
        match self {
            Engine::Direct(s) => s.overlaps(),
            Engine::Chain(s) => s.overlaps(),
        }
    }
}

/// Outcome of [`Sim::advance_to`].
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// Reached the target; mean training loss since the call started (`None`: no step taken).
    Done(Option<f64>),
    /// Stopped early because `interrupt` returned true (state consistent, at a whole step).
    Interrupted,
    /// The run diverged at this time (t of the step that blew up, as the CLI reports it).
    Diverged(f64),
}

/// One simulated run, at (N, seed index) of an experiment.
pub struct Sim {
    engine: Engine,
    spec: RunSpec,
    /// Seed index, base seed and the run's generator seed.
    pub seed_index: u64,
    pub base_seed: u64,
    pub run_seed: u64,
    /// Steps done so far.
    steps: u64,
    /// Steps left until the next bound check (the record loop's countdown, kept across calls so
    /// that checks fall on the same steps as in a CLI run).
    until_check: u64,
    check_every: u64,
    diverged_at: Option<f64>,
    initial: Overlaps,
}

impl Sim {
    /// Builds run (N = `n`, seed index `seed_index`) of `exp` with the CLI's seed
    /// `run_seed(base_seed, N, seed_index)` (`base_seed` overrides the experiment's). `split` > 1
    /// splits each direct step over that many threads (same numbers).
    pub fn new(
        exp: &Exp,
        kind: SimKind,
        n: i64,
        seed_index: u64,
        base_seed: Option<u64>,
        split: usize,
    ) -> EResult<Sim> {
        let one = exp.single_run(kind, n, seed_index, base_seed)?;
        let e = &one.0;
        let n = e.ns[0];
        let seed = hdsgd::rng::run_seed(e.base_seed, n, seed_index);
        let spec = RunSpec {
            model: e.model.clone(),
            training: e.training,
            n,
            divergence_bound: e.divergence_bound,
        };
        let engine = match kind {
            SimKind::Direct => Engine::Direct(Box::new(
                DirectSimulator::with_init(spec.clone(), &e.init, seed)
                    .with_generator(e.generator)
                    .with_split(split),
            )),
            SimKind::Chain => Engine::Chain(Box::new(ChainSimulator::with_init(spec.clone(), &e.init, seed))),
        };
        let initial = engine.overlaps();
        // As simulators::record_loop: an O(16 p/N) overhead for the direct simulator.
        let check_every = (n / (16 * spec.training.batch)).max(1) as u64;
        Ok(Sim {
            engine,
            spec,
            seed_index,
            base_seed: e.base_seed,
            run_seed: seed,
            steps: 0,
            until_check: check_every,
            check_every,
            diverged_at: None,
            initial,
        })
    }

    pub fn n(&self) -> usize {
        self.spec.n
    }

    pub fn batch(&self) -> usize {
        self.spec.training.batch
    }

    pub fn p(&self) -> usize {
        self.spec.model.p()
    }

    pub fn p_star(&self) -> usize {
        self.spec.model.p_star()
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// t = steps·B/N (the record loop's formula).
    pub fn t(&self) -> f64 {
        self.time(self.steps)
    }

    fn time(&self, steps: u64) -> f64 {
        steps as f64 * self.spec.training.batch as f64 / self.spec.n as f64
    }

    /// The step a time is recorded at: round(t N / B), as the CLI rounds its grid.
    pub fn step_of_time(&self, t: f64) -> u64 {
        grid_steps(&[t], self.spec.n, self.spec.training.batch)[0]
    }

    pub fn diverged_at(&self) -> Option<f64> {
        self.diverged_at
    }

    /// Steps `target − steps` SGD steps (no-op if already there), exactly as the CLI's record loop
    /// does between two records: the training loss summed in step order from this call's start,
    /// a divergence at a non-finite loss (any step) or at overlaps beyond the bound (every
    /// N/(16B) steps, counted from t = 0, and at the end of the call). `interrupt` is called about
    /// every `poll` of wall time; when it returns true the run stops at the current step.
    pub fn advance_to(&mut self, target: u64, poll: Duration, interrupt: &mut dyn FnMut() -> bool) -> Advance {
        if let Some(t) = self.diverged_at {
            return Advance::Diverged(t);
        }
        let from = self.steps;
        let mut loss_sum = 0.0;
        // The clock is read every `stride` steps (well under a millisecond of work: ~1e5 input
        // entries for the direct simulator, whose step costs O(N B); the chain's does not depend
        // on N), and `interrupt` is called about every `poll`.
        let b = self.spec.training.batch;
        let stride = match self.engine {
            Engine::Direct(_) => (65_536 / (self.spec.n * b)).max(1),
            Engine::Chain(_) => (1024 / b).max(1),
        } as u64;
        let mut last_poll = Instant::now();
        let mut until_clock = stride;
        while self.steps < target {
            let l = self.engine.step();
            self.steps += 1;
            loss_sum += l;
            self.until_check -= 1;
            let check = self.until_check == 0;
            if check {
                self.until_check = self.check_every;
            }
            if !l.is_finite() || (check && !self.engine.overlaps().is_bounded(self.spec.divergence_bound)) {
                let t = self.time(self.steps);
                self.diverged_at = Some(t);
                return Advance::Diverged(t);
            }
            until_clock -= 1;
            if until_clock == 0 {
                until_clock = stride;
                if last_poll.elapsed() >= poll {
                    if interrupt() {
                        return Advance::Interrupted;
                    }
                    last_poll = Instant::now();
                }
            }
        }
        if self.steps > from && !self.engine.overlaps().is_bounded(self.spec.divergence_bound) {
            let t = self.time(self.steps);
            self.diverged_at = Some(t);
            return Advance::Diverged(t);
        }
        let done = self.steps - from;
        Advance::Done((done > 0).then(|| loss_sum / (done * self.spec.training.batch as u64) as f64))
    }

    /// Current overlaps as (Q, M, P).
    pub fn overlaps(&self) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        arrays(&self.engine.overlaps())
    }

    /// Overlaps at t = 0 (where the matched ODE starts).
    pub fn initial_overlaps(&self) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        arrays(&self.initial)
    }

    /// e_g from the exact current overlaps (label noise excluded), as in the CLI's records.
    pub fn eg(&self) -> f64 {
        population_error(&self.spec.model, &self.engine.overlaps().gram())
    }

    /// The current overlaps in the output files' column order (`column_names`).
    pub fn state(&self) -> Vec<f64> {
        self.engine.overlaps().to_state().iter().copied().collect()
    }

    /// A copy of the student weights (p × N), direct simulator only.
    pub fn weights(&self) -> Option<Array2<f64>> {
        match &self.engine {
            Engine::Direct(s) => Some(s.weights().to_owned()),
            Engine::Chain(_) => None,
        }
    }

    /// A copy of the teacher weights (p* × N), direct simulator only.
    pub fn teacher(&self) -> Option<Array2<f64>> {
        match &self.engine {
            Engine::Direct(s) => Some(s.teacher().to_owned()),
            Engine::Chain(_) => None,
        }
    }

    /// The direct simulator's kernel ("avx512f fused pass", "avx2+fma", "portable") or "chain".
    pub fn kernel(&self) -> &'static str {
        match &self.engine {
            Engine::Direct(s) => s.kernel_name(),
            Engine::Chain(_) => "chain",
        }
    }
}

fn to_array(m: &DMatrix<f64>) -> Array2<f64> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

fn arrays(o: &Overlaps) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    (to_array(&o.q), to_array(&o.m), to_array(&o.p))
}

/// Overlap column names of the output files (`q_i_j` for i ≤ j, then `m_i_k`).
pub fn column_names(p: usize, p_star: usize) -> Vec<String> {
    Overlaps::column_names(p, p_star)
}

/// The CLI's run seed of (base seed, N, seed index).
pub fn run_seed(base: u64, n: usize, index: u64) -> u64 {
    hdsgd::rng::run_seed(base, n, index)
}

// ---------------------------------------------------------------------------------------------
// ODE
// ---------------------------------------------------------------------------------------------

/// An ODE solution on (a prefix of) the requested times.
pub struct OdeOut {
    pub t: Vec<f64>,
    /// Q(t) (T × p × p), M(t) (T × p × p*), P (p* × p*).
    pub q: Array3<f64>,
    pub m: Array3<f64>,
    pub p: Array2<f64>,
    pub eg: Vec<f64>,
    /// The state vectors in the output files' column order (T × columns).
    pub state: Array2<f64>,
    /// Why it stopped early: ("diverged" | "failed", t, message).
    pub stop: Option<(&'static str, f64, String)>,
}

/// Integrates the ODE of an experiment with `[ode] initial = "explicit"` on `times` (which the
/// experiment's `[time] times` holds; t = 0 is the start even when `times` does not list it, and is
/// then left out of the result), as `hdsgd ode` integrates its explicit initial condition.
pub fn integrate_explicit(exp: &Exp, times: &[f64], divergence_bound: Option<f64>) -> EResult<OdeOut> {
    let e = &exp.0;
    let init = e
        .explicit_initial
        .as_ref()
        .ok_or_else(|| invalid("init.q0", "the ODE needs init.q0 and init.m0"))?;
    let mut options = e.ode_options;
    if let Some(b) = divergence_bound {
        if !(b.is_finite() && b > 0.0) {
            return Err(invalid("divergence_bound", "must be a positive number"));
        }
        options.divergence_bound = b;
    }
    let sol = integrate(&e.model, &e.training, init, &e.grid, &options, |_, _: &_| false).map_err(|err| {
        EngineError::Invalid {
            field: Some("model.activation".into()),
            message: format!("invalid value for `model.activation`: {err}"),
        }
    })?;
    let skip = usize::from(e.grid.len() > times.len());
    let (p, k) = (e.model.p(), e.model.p_star());
    let rows: Vec<&Overlaps> = sol.overlaps.iter().skip(skip).collect();
    let tn = rows.len();
    let q = Array3::from_shape_fn((tn, p, p), |(r, i, j)| rows[r].q[(i, j)]);
    let m = Array3::from_shape_fn((tn, p, k), |(r, i, j)| rows[r].m[(i, j)]);
    let cols = Overlaps::state_len(p, k);
    let mut state = Array2::zeros((tn, cols));
    for (r, ov) in rows.iter().enumerate() {
        for (c, x) in ov.to_state().iter().enumerate() {
            state[(r, c)] = *x;
        }
    }
    let stop = match &sol.stop {
        Some(OdeStop::Diverged { t }) => Some((
            "diverged",
            *t,
            format!("the ODE diverged at t = {t} (overlaps non-finite or beyond the divergence bound)"),
        )),
        Some(OdeStop::Failed { t, message }) => {
            Some(("failed", *t, format!("the ODE integrator failed at t = {t}: {message}")))
        }
        _ => None,
    };
    Ok(OdeOut {
        t: sol.t.iter().skip(skip).copied().collect(),
        q,
        m,
        p: to_array(&init.p),
        eg: sol.eg.iter().skip(skip).copied().collect(),
        state,
        stop,
    })
}

// ---------------------------------------------------------------------------------------------
// Commands (the high-level API): the CLI's own functions, writing the CLI's files
// ---------------------------------------------------------------------------------------------
//
// The CLI's own command functions (`hdsgd::studies`).
use hdsgd::studies::{DivergedRuns, OutputOptions};

/// A command of the CLI that writes an output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Run,
    Ode,
    Plateau,
    Escape,
    Scaling,
    Hessian,
}

impl Command {
    pub fn parse(name: &str) -> Option<Command> {
        Some(match name {
            "run" => Command::Run,
            "ode" => Command::Ode,
            "plateau" => Command::Plateau,
            "escape" => Command::Escape,
            "scaling" => Command::Scaling,
            "hessian" => Command::Hessian,
            _ => return None,
        })
    }
}

/// Runs `command` on `exp` exactly as `hdsgd COMMAND EXP --out OUT [--threads T] [--force]` does
/// (same function, same files). `Ok(Some(message))`: outputs written, but some runs diverged
/// (the CLI's exit code 3).
pub fn run_command(
    exp: &Exp,
    command: Command,
    out: &Path,
    threads: usize,
    force: bool,
    progress: bool,
    cancel: hdsgd::studies::Cancel,
) -> EResult<Option<String>> {
    let e = &exp.0;
    let opts = OutputOptions {
        out: Some(out.to_path_buf()),
        threads,
        force,
        progress,
        cancel,
    };
    let r = match command {
        Command::Run => hdsgd::studies::run(e, &opts).map(drop),
        Command::Ode => hdsgd::studies::ode(e, &opts).map(drop),
        Command::Plateau => hdsgd::studies::plateau::command(e, &opts),
        Command::Escape => hdsgd::studies::escape::command(e, &opts),
        Command::Scaling => hdsgd::studies::scaling::command(e, &opts),
        Command::Hessian => hdsgd::studies::hessian::command(e, &opts),
    };
    match r {
        Ok(()) => Ok(None),
        Err(err) => {
            if let Some(d) = err.downcast_ref::<DivergedRuns>() {
                return Ok(Some(d.to_string()));
            }
            Err(classify(err))
        }
    }
}

/// Maps a command's error to the binding's kinds: configuration errors (the crate's, or messages
/// in its "invalid value for `field`: …" form, or "`hdsgd CMD` needs …"), I/O errors, the rest.
fn classify(err: anyhow::Error) -> EngineError {
    let message = format!("{err:#}");
    if let Some(c) = err.downcast_ref::<ConfigError>() {
        return c.clone().into();
    }
    if let Some(rest) = message.strip_prefix("invalid value for `") {
        if let Some(end) = rest.find('`') {
            return EngineError::Invalid {
                field: Some(rest[..end].to_string()),
                message,
            };
        }
    }
    if message.starts_with("`hdsgd ") {
        return EngineError::Invalid { field: None, message };
    }
    if err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some()) || message.contains("already exists") {
        return EngineError::Io(message);
    }
    EngineError::Other(message)
}
