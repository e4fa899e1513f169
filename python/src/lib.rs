//! `hdsgd._hdsgd`: the native part of the `hdsgd` Python package (PyO3). The pure-Python layer
//! (`hdsgd/__init__.py`) re-exports it and adds pandas/dataclass conveniences.
//!
//! Calls into the hdsgd crate are all in [`engine`]; this file converts arguments, results and
//! errors, releases the GIL during simulations and polls for Ctrl-C.

mod convert;
mod engine;

use engine::{Advance, EngineError, Exp, Sim, SimKind};
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;
use toml::{Table, Value};

pyo3::create_exception!(
    hdsgd,
    ConfigError,
    PyValueError,
    "Invalid experiment or argument; `.field` names the experiment key (e.g. \"training.eta\") when known."
);
pyo3::create_exception!(
    hdsgd,
    Diverged,
    PyRuntimeError,
    "A run or an ODE diverged (an overlap non-finite or beyond the divergence bound); `.t` is the time."
);

/// How often a long call re-acquires the GIL to look for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

fn to_pyerr(py: Python<'_>, e: EngineError) -> PyErr {
    match e {
        EngineError::Invalid { field, message } => {
            let err = ConfigError::new_err(message);
            let _ = err.value(py).setattr("field", field);
            err
        }
        EngineError::Io(m) => PyOSError::new_err(m),
        EngineError::Other(m) => PyRuntimeError::new_err(m),
    }
}

fn diverged(py: Python<'_>, t: f64, message: String) -> PyErr {
    let err = Diverged::new_err(message);
    let _ = err.value(py).setattr("t", t);
    err
}

fn value_error(py: Python<'_>, field: &str, message: impl std::fmt::Display) -> PyErr {
    to_pyerr(
        py,
        EngineError::Invalid {
            field: Some(field.into()),
            message: format!("invalid value for `{field}`: {message}"),
        },
    )
}

/// An experiment from a path (str or os.PathLike: read as the CLI reads it) or a dict with the
/// file's sections and keys (serialised to TOML and validated by the same loader); `fill` may add
/// missing sections to a dict first.
fn experiment(py: Python<'_>, exp: &Bound<'_, PyAny>, fill: &dyn Fn(&mut Table)) -> PyResult<Exp> {
    if exp.cast::<PyDict>().is_ok() {
        let mut t = convert::table(exp, "")?;
        fill(&mut t);
        let text =
            toml::to_string(&t).map_err(|e| PyValueError::new_err(format!("cannot serialise the experiment: {e}")))?;
        return engine::load_toml(&text, "experiment", "<dict>").map_err(|e| to_pyerr(py, e));
    }
    let path = py
        .import("os")?
        .getattr("fspath")?
        .call1((exp,))
        .map_err(|_| PyTypeError::new_err("an experiment is a path to a TOML file or a dict of its sections"))?;
    if !path.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "experiment paths must be str (or os.PathLike of str)",
        ));
    }
    let path: String = path.extract()?;
    engine::load_path(std::path::Path::new(&path)).map_err(|e| to_pyerr(py, e))
}

fn no_fill(_: &mut Table) {}

/// The TOML text of an experiment dict, as the binding serialises it before validation (write it
/// to a file to run the same experiment with the CLI).
#[pyfunction]
fn to_toml(exp: &Bound<'_, PyAny>) -> PyResult<String> {
    let t = convert::table(exp, "")?;
    toml::to_string(&t).map_err(|e| PyValueError::new_err(format!("cannot serialise the experiment: {e}")))
}

/// `hdsgd.check(exp)`: the resolved experiment as `hdsgd check` prints it (a JSON string).
#[pyfunction]
fn check_json(py: Python<'_>, exp: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(experiment(py, exp, &no_fill)?.to_json())
}

/// The times a run at dimension `n` records (the grid rounded to whole steps).
#[pyfunction]
fn record_times<'py>(py: Python<'py>, exp: &Bound<'py, PyAny>, n: usize) -> PyResult<Bound<'py, PyArray1<f64>>> {
    if n == 0 {
        return Err(value_error(py, "n", "must be ≥ 1"));
    }
    Ok(experiment(py, exp, &no_fill)?.record_times(n).into_pyarray(py))
}

/// The CLI's seed of run (N, seed index): SplitMix64 hash of (base_seed, N, seed index).
#[pyfunction]
fn run_seed(base_seed: u64, n: usize, seed: u64) -> u64 {
    engine::run_seed(base_seed, n, seed)
}

/// Overlap column names of the output files: `q_i_j` (i ≤ j), then `m_i_k`.
#[pyfunction]
fn columns(p: usize, p_star: usize) -> Vec<String> {
    engine::column_names(p, p_star)
}

// ---------------------------------------------------------------------------------------------
// Simulators
// ---------------------------------------------------------------------------------------------

/// Base class of [`DirectSimulator`] and [`ChainSimulator`]: one run (N, seed index) of an
/// experiment, advanced from Python. Calls from several threads on one simulator are serialised.
#[pyclass(subclass, frozen, module = "hdsgd")]
struct Simulator {
    inner: Mutex<Sim>,
    kind: SimKind,
}

fn lock_ignoring_poison(m: &Mutex<Sim>) -> MutexGuard<'_, Sim> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Simulator {
    fn build(
        py: Python<'_>,
        exp: &Bound<'_, PyAny>,
        kind: SimKind,
        n: i64,
        seed: i64,
        base_seed: Option<u64>,
        threads: usize,
    ) -> PyResult<Self> {
        if seed < 0 {
            return Err(value_error(py, "seed", format!("must be ≥ 0 (got {seed})")));
        }
        if threads == 0 {
            return Err(value_error(py, "threads", "must be ≥ 1"));
        }
        // The dict form needs only [model], [training] (and optionally [init], [simulation] for
        // base_seed/divergence_bound): the other required sections get placeholders.
        let fill = |t: &mut Table| {
            if !t.contains_key("time") {
                let mut time = Table::new();
                time.insert("t_max".into(), Value::Float(1.0));
                t.insert("time".into(), Value::Table(time));
            }
            if !t.contains_key("simulation") {
                let mut s = Table::new();
                s.insert("n".into(), Value::Array(vec![Value::Integer(n)]));
                s.insert("seeds".into(), Value::Integer(1));
                t.insert("simulation".into(), Value::Table(s));
            }
        };
        let e = experiment(py, exp, &fill)?;
        let sim = py
            .detach(|| Sim::new(&e, kind, n, seed as u64, base_seed, threads))
            .map_err(|err| to_pyerr(py, err))?;
        Ok(Simulator {
            inner: Mutex::new(sim),
            kind,
        })
    }

    /// Runs `f` on the simulator, waiting (without the GIL) while another thread uses it.
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&mut Sim) -> R) -> R {
        loop {
            match self.inner.try_lock() {
                Ok(mut g) => return f(&mut g),
                Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(lock_ignoring_poison(&self.inner))),
            }
        }
    }

    /// Advances to the step `target(sim)` with the GIL released, polling for signals.
    fn run_to(
        &self,
        py: Python<'_>,
        target: impl FnOnce(&Sim) -> Result<u64, EngineError> + Send,
    ) -> PyResult<Option<f64>> {
        let mut signal: Option<PyErr> = None;
        let out = py.detach(|| {
            let mut sim = lock_ignoring_poison(&self.inner);
            let target = target(&sim)?;
            let mut interrupt = || {
                Python::attach(|py| match py.check_signals() {
                    Ok(()) => false,
                    Err(e) => {
                        signal = Some(e);
                        true
                    }
                })
            };
            let r = sim.advance_to(target, POLL, &mut interrupt);
            Ok((r, sim.n(), sim.seed_index))
        });
        match out {
            Err(e) => Err(to_pyerr(py, e)),
            Ok((Advance::Done(loss), _, _)) => Ok(loss),
            Ok((Advance::Interrupted, _, _)) => {
                Err(signal.unwrap_or_else(|| PyRuntimeError::new_err("interrupted")))
            }
            Ok((Advance::Diverged(t), n, seed)) => Err(diverged(
                py,
                t,
                format!(
                    "simulation run N = {n}, seed {seed} diverged at t = {t} (overlaps non-finite or beyond the divergence bound)"
                ),
            )),
        }
    }
}

type Matrices<'py> = (
    Bound<'py, numpy::PyArray2<f64>>,
    Bound<'py, numpy::PyArray2<f64>>,
    Bound<'py, numpy::PyArray2<f64>>,
);

#[pymethods]
impl Simulator {
    /// Advances by `samples` fresh samples (a multiple of the batch size B) with the GIL released;
    /// returns the mean training loss ½(y − ŷ)² over them (None for 0 samples). Raises
    /// `hdsgd.Diverged` if the run diverges, KeyboardInterrupt on Ctrl-C (the run then stays at
    /// the last whole step done).
    fn advance(&self, py: Python<'_>, samples: i64) -> PyResult<Option<f64>> {
        if samples < 0 {
            return Err(value_error(py, "samples", format!("must be ≥ 0 (got {samples})")));
        }
        let samples = samples as u64;
        self.run_to(py, move |sim| {
            let b = sim.batch() as u64;
            if !samples.is_multiple_of(b) {
                return Err(EngineError::Invalid {
                    field: Some("samples".into()),
                    message: format!("invalid value for `samples`: {samples} is not a multiple of the batch size {b}"),
                });
            }
            Ok(sim.steps() + samples / b)
        })
    }

    /// Advances to time `t` rounded to a whole step, round(t N / B), as the CLI rounds its record
    /// grid (so a loop over `hdsgd.record_times(exp, n)` reproduces `hdsgd run` exactly); returns
    /// the mean training loss since the current time (None if no step is taken).
    fn advance_to(&self, py: Python<'_>, t: f64) -> PyResult<Option<f64>> {
        if !(t.is_finite() && t >= 0.0) {
            return Err(value_error(py, "t", format!("must be a finite time ≥ 0 (got {t})")));
        }
        self.run_to(py, move |sim| {
            let target = sim.step_of_time(t);
            if target < sim.steps() {
                return Err(EngineError::Invalid {
                    field: Some("t".into()),
                    message: format!(
                        "invalid value for `t`: {t} is before the current time {} (runs only go forward)",
                        sim.t()
                    ),
                });
            }
            Ok(target)
        })
    }

    /// Current overlaps (Q, M, P) = (WWᵀ/N, WW*ᵀ/N, W*W*ᵀ/N) as new NumPy arrays.
    fn overlaps<'py>(&self, py: Python<'py>) -> Matrices<'py> {
        let (q, m, p) = self.with(py, |s| s.overlaps());
        (q.into_pyarray(py), m.into_pyarray(py), p.into_pyarray(py))
    }

    /// Overlaps (Q, M, P) at t = 0 (where the CLI's matched ODE starts).
    fn initial_overlaps<'py>(&self, py: Python<'py>) -> Matrices<'py> {
        let (q, m, p) = self.with(py, |s| s.initial_overlaps());
        (q.into_pyarray(py), m.into_pyarray(py), p.into_pyarray(py))
    }

    /// Population error e_g from the exact current overlaps (label noise excluded).
    fn eg(&self, py: Python<'_>) -> f64 {
        self.with(py, |s| s.eg())
    }

    /// The current state as one row of `trajectories.csv`: a dict with n, seed, t (the exact step
    /// time: the file's `t_exact`; the file's `t` is the nominal grid time), eg, train_loss (the
    /// argument, e.g. what `advance` returned) and the q_i_j, m_i_k columns.
    #[pyo3(signature = (train_loss=None))]
    fn record<'py>(&self, py: Python<'py>, train_loss: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let (n, seed, t, eg, state, p, k) = self.with(py, |s| {
            (s.n(), s.seed_index, s.t(), s.eg(), s.state(), s.p(), s.p_star())
        });
        let d = PyDict::new(py);
        d.set_item("n", n)?;
        d.set_item("seed", seed)?;
        d.set_item("t", t)?;
        d.set_item("eg", eg)?;
        d.set_item("train_loss", train_loss)?;
        for (c, x) in engine::column_names(p, k).iter().zip(state) {
            d.set_item(c, x)?;
        }
        Ok(d)
    }

    /// t = samples/N = steps·B/N.
    #[getter]
    fn t(&self, py: Python<'_>) -> f64 {
        self.with(py, |s| s.t())
    }
    /// SGD steps done.
    #[getter]
    fn steps(&self, py: Python<'_>) -> u64 {
        self.with(py, |s| s.steps())
    }
    /// Samples consumed (steps·B).
    #[getter]
    fn samples(&self, py: Python<'_>) -> u64 {
        self.with(py, |s| s.steps() * s.batch() as u64)
    }
    /// Input dimension N.
    #[getter]
    fn n(&self, py: Python<'_>) -> usize {
        self.with(py, |s| s.n())
    }
    /// Mini-batch size B.
    #[getter]
    fn batch(&self, py: Python<'_>) -> usize {
        self.with(py, |s| s.batch())
    }
    /// Student width p.
    #[getter]
    fn p(&self, py: Python<'_>) -> usize {
        self.with(py, |s| s.p())
    }
    /// Teacher width p*.
    #[getter]
    fn p_star(&self, py: Python<'_>) -> usize {
        self.with(py, |s| s.p_star())
    }
    /// Seed index (the `seed` column of trajectories.csv).
    #[getter]
    fn seed(&self, py: Python<'_>) -> u64 {
        self.with(py, |s| s.seed_index)
    }
    /// The experiment's base seed.
    #[getter]
    fn base_seed(&self, py: Python<'_>) -> u64 {
        self.with(py, |s| s.base_seed)
    }
    /// The run's generator seed, run_seed(base_seed, N, seed) (`run_seed` in summary.json).
    #[getter]
    fn run_seed(&self, py: Python<'_>) -> u64 {
        self.with(py, |s| s.run_seed)
    }
    /// Time at which the run diverged, or None.
    #[getter]
    fn diverged_at(&self, py: Python<'_>) -> Option<f64> {
        self.with(py, |s| s.diverged_at())
    }
    /// Code path of a step ("avx512f fused pass", "avx2+fma", "portable" or "chain").
    #[getter]
    fn kernel(&self, py: Python<'_>) -> &'static str {
        self.with(py, |s| s.kernel())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let name = match self.kind {
            SimKind::Direct => "DirectSimulator",
            SimKind::Chain => "ChainSimulator",
        };
        self.with(py, |s| {
            format!(
                "<hdsgd.{name} N={} seed={} p={} p*={} B={} t={}{}>",
                s.n(),
                s.seed_index,
                s.p(),
                s.p_star(),
                s.batch(),
                s.t(),
                s.diverged_at()
                    .map(|t| format!(" diverged at t={t}"))
                    .unwrap_or_default()
            )
        })
    }
}

/// The direct simulator: SGD on the actual p × N student weights (the ground truth).
///
/// `DirectSimulator(exp, n, seed=0, *, base_seed=None, threads=1)`: run (N = n, seed index
/// `seed`) of experiment `exp` (a path, or a dict with at least `model` and `training`, optionally
/// `init` and `simulation` for base_seed/divergence_bound), seeded as the CLI seeds it.
#[pyclass(extends = Simulator, frozen, module = "hdsgd")]
struct DirectSimulator;

#[pymethods]
impl DirectSimulator {
    #[new]
    #[pyo3(signature = (exp, n, seed=0, *, base_seed=None, threads=1))]
    fn new(
        py: Python<'_>,
        exp: &Bound<'_, PyAny>,
        n: i64,
        seed: i64,
        base_seed: Option<u64>,
        threads: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let base = Simulator::build(py, exp, SimKind::Direct, n, seed, base_seed, threads)?;
        Ok(PyClassInitializer::from(base).add_subclass(DirectSimulator))
    }

    /// A copy (a new, writable NumPy array, p × N) of the current student weights; modifying it
    /// does not affect the simulator.
    fn weights<'py>(slf: PyRef<'py, Self>, py: Python<'py>) -> Bound<'py, numpy::PyArray2<f64>> {
        let w = slf.as_super().with(py, |s| s.weights().expect("direct simulator"));
        w.into_pyarray(py)
    }

    /// A copy (p* × N) of the teacher weights.
    fn teacher_weights<'py>(slf: PyRef<'py, Self>, py: Python<'py>) -> Bound<'py, numpy::PyArray2<f64>> {
        let w = slf.as_super().with(py, |s| s.teacher().expect("direct simulator"));
        w.into_pyarray(py)
    }
}

/// The exact Gram-chain simulator (isotropic Gaussian inputs): the same law as the direct
/// simulator at a cost per sample independent of N (not the same numbers).
///
/// `ChainSimulator(exp, n, seed=0, *, base_seed=None)`, arguments as `DirectSimulator`'s.
#[pyclass(extends = Simulator, frozen, module = "hdsgd")]
struct ChainSimulator;

#[pymethods]
impl ChainSimulator {
    #[new]
    #[pyo3(signature = (exp, n, seed=0, *, base_seed=None))]
    fn new(
        py: Python<'_>,
        exp: &Bound<'_, PyAny>,
        n: i64,
        seed: i64,
        base_seed: Option<u64>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let base = Simulator::build(py, exp, SimKind::Chain, n, seed, base_seed, 1)?;
        Ok(PyClassInitializer::from(base).add_subclass(ChainSimulator))
    }
}

// ---------------------------------------------------------------------------------------------
// ODE
// ---------------------------------------------------------------------------------------------

fn float_list(py: Python<'_>, obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<f64>> {
    let obj = if obj.hasattr("tolist")? {
        obj.call_method0("tolist")?
    } else {
        obj.clone()
    };
    obj.extract::<Vec<f64>>()
        .map_err(|_| value_error(py, field, "must be a list of numbers"))
}

/// Integrates the overlap ODE from (q0, m0, p) and returns a dict of arrays (the Python layer
/// wraps it in `hdsgd.OdeSolution`). `model` and `training` are the experiment's sections.
#[pyfunction]
#[pyo3(signature = (model, training, q0, m0, p=None, times=None, *, rtol=None, atol=None, gradient_flow=None, divergence_bound=None))]
#[allow(clippy::too_many_arguments)]
fn integrate_ode_raw<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    training: &Bound<'py, PyAny>,
    q0: &Bound<'py, PyAny>,
    m0: &Bound<'py, PyAny>,
    p: Option<&Bound<'py, PyAny>>,
    times: Option<&Bound<'py, PyAny>>,
    rtol: Option<f64>,
    atol: Option<f64>,
    gradient_flow: Option<bool>,
    divergence_bound: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let times = match times {
        Some(t) => float_list(py, t, "times")?,
        None => return Err(PyTypeError::new_err("integrate_ode needs `times`")),
    };
    let t_max = times
        .last()
        .copied()
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(1.0);
    let d = PyDict::new(py);
    d.set_item("model", model)?;
    d.set_item("training", training)?;
    let init = PyDict::new(py);
    init.set_item("q0", q0)?;
    init.set_item("m0", m0)?;
    init.set_item("p", p)?;
    d.set_item("init", init)?;
    let time = PyDict::new(py);
    time.set_item("t_max", t_max)?;
    time.set_item("times", times.clone())?;
    d.set_item("time", time)?;
    let ode = PyDict::new(py);
    ode.set_item("initial", "explicit")?;
    ode.set_item("rtol", rtol)?;
    ode.set_item("atol", atol)?;
    ode.set_item("gradient_flow", gradient_flow)?;
    d.set_item("ode", ode)?;
    let exp = experiment(py, d.as_any(), &no_fill)?;
    let out = py
        .detach(|| engine::integrate_explicit(&exp, &times, divergence_bound))
        .map_err(|e| to_pyerr(py, e))?;
    let r = PyDict::new(py);
    let eg = out.eg.clone();
    let noise = exp.noise();
    r.set_item("t", out.t.into_pyarray(py))?;
    r.set_item("q", out.q.into_pyarray(py))?;
    r.set_item("m", out.m.into_pyarray(py))?;
    r.set_item("p", out.p.into_pyarray(py))?;
    r.set_item("eg", out.eg.into_pyarray(py))?;
    r.set_item(
        "train_loss",
        eg.iter().map(|e| e + noise / 2.0).collect::<Vec<_>>().into_pyarray(py),
    )?;
    r.set_item("state", out.state.into_pyarray(py))?;
    r.set_item("columns", engine::column_names(exp.p(), exp.p_star()))?;
    match out.stop {
        Some((kind, t, message)) => r.set_item("stop", (kind, t, message))?,
        None => r.set_item("stop", py.None())?,
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Commands (high-level API; the Python layer wraps the output folder in `hdsgd.Result`)
// ---------------------------------------------------------------------------------------------

/// Runs a CLI command (`run`, `ode`, `plateau`, `escape`, `scaling`, `hessian`) into the folder
/// `out`, exactly as `hdsgd COMMAND EXP --out OUT` does. The command runs on a worker thread while
/// this one waits without the GIL and polls for Ctrl-C every 0.1 s. On KeyboardInterrupt it sets
/// the command's cancellation flag (`studies::Cancel`: every running simulation stops at its next
/// record time, the staging folder is removed, an escape study keeps its finished runs), waits up
/// to [`CANCEL_WAIT`] for the worker, and raises; a worker still running then finishes stopping in
/// the background (and removes `out` if `cleanup_if_abandoned`). Returns None, or the CLI's
/// divergence message when outputs were written but some runs diverged.
/// How long a Ctrl-C'd command is waited for before KeyboardInterrupt is raised anyway.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

#[pyfunction]
#[pyo3(signature = (command, exp, out, *, threads=None, force=false, progress=false, cleanup_if_abandoned=false))]
#[allow(clippy::too_many_arguments)]
fn run_command(
    py: Python<'_>,
    command: &str,
    exp: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    threads: Option<usize>,
    force: bool,
    progress: bool,
    cleanup_if_abandoned: bool,
) -> PyResult<Option<String>> {
    let cmd =
        engine::Command::parse(command).ok_or_else(|| PyValueError::new_err(format!("unknown command {command:?}")))?;
    if threads == Some(0) {
        return Err(value_error(py, "threads", "must be ≥ 1 (None: all cores)"));
    }
    let exp = experiment(py, exp, &no_fill)?;
    let out: String = py.import("os")?.getattr("fspath")?.call1((out,))?.extract()?;
    let out = std::path::PathBuf::from(out);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker_out = out.clone();
    let cancel = hdsgd::studies::Cancel::new();
    let worker_cancel = cancel.clone();
    std::thread::Builder::new()
        .name(format!("hdsgd-{command}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine::run_command(
                    &exp,
                    cmd,
                    &worker_out,
                    threads.unwrap_or(0),
                    force,
                    progress,
                    worker_cancel,
                )
            }))
            .unwrap_or_else(|_| Err(EngineError::Other("the command panicked".into())));
            if tx.send(r).is_err() && cleanup_if_abandoned {
                let _ = std::fs::remove_dir_all(&worker_out);
            }
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a worker thread: {e}")))?;
    let mut rx = rx;
    loop {
        // The receiver is Send but not Sync: it moves into the GIL-free closure and back.
        let (back, r) = py.detach(move || {
            let r = rx.recv_timeout(POLL);
            (rx, r)
        });
        rx = back;
        match r {
            Ok(r) => return r.map_err(|e| to_pyerr(py, e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    cancel.cancel();
                    // Usually the worker stops within a record interval: give it a moment so that
                    // the folder is already clean when KeyboardInterrupt reaches the caller.
                    py.detach(move || drop(rx.recv_timeout(CANCEL_WAIT)));
                    return Err(interrupt);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("the command's worker thread stopped"))
            }
        }
    }
}

#[pymodule]
fn _hdsgd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", engine::ENGINE_VERSION)?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("Diverged", py.get_type::<Diverged>())?;
    m.add_class::<Simulator>()?;
    m.add_class::<DirectSimulator>()?;
    m.add_class::<ChainSimulator>()?;
    m.add_function(wrap_pyfunction!(check_json, m)?)?;
    m.add_function(wrap_pyfunction!(to_toml, m)?)?;
    m.add_function(wrap_pyfunction!(record_times, m)?)?;
    m.add_function(wrap_pyfunction!(run_seed, m)?)?;
    m.add_function(wrap_pyfunction!(columns, m)?)?;
    m.add_function(wrap_pyfunction!(integrate_ode_raw, m)?)?;
    m.add_function(wrap_pyfunction!(run_command, m)?)?;
    Ok(())
}
