//! Experiment files (TOML): schema, validation with errors that name the field, and the resolved
//! [`Experiment`] every command works from. Every key is documented in README.md.

mod initial_file;

use crate::analysis::escape::EscapeConfig;
use crate::analysis::geometry::GeometryConfig;
use crate::analysis::phase::PhaseConfig;
use crate::analysis::scaling::ScalingConfig;
use crate::grid::{time_grid, GridKind};
use crate::init::{InitSpec, TeacherInit};
use crate::model::{Activation, Model, SecondLayer, SecondLayerKind, Training};
use crate::ode::{OdeOptions, OdeVariant};
use crate::overlaps::Overlaps;
use crate::rng::Generator;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// An invalid experiment file: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read experiment file {path}: {message}")]
    Io { path: String, message: String },
    #[error("malformed experiment file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for `{field}`: {message}")]
    Field { field: String, message: String },
}

/// Largest student or teacher width an experiment file may ask for (the pre-flight of the
/// commands has a lower limit, lifted by `--allow-large`).
pub const MAX_WIDTH_HARD: usize = 1024;
/// Largest number of record times (`time.points`, the length of `time.times`).
pub const MAX_POINTS: usize = 1_000_000;

fn field_err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// "quadratic", "linear", "erf" or "relu".
    pub activation: Activation,
    /// Student width p ≥ 1.
    pub p: i64,
    /// Teacher width p* ≥ 1.
    pub p_star: i64,
    /// Student second layer a: "uniform" (1/p), "ones" or a list of p numbers, fixed; or a table
    /// `{ init = …, train = true, eta = η_a, weight_decay = ℓ_a }` to train it
    /// ([`crate::model::SecondLayerSgd`]). Default "uniform".
    #[serde(default = "uniform")]
    pub a: SecondLayer,
    /// Teacher second layer v: "uniform" (1/p*), "ones" or a list of p* numbers. Default "uniform".
    #[serde(default = "uniform")]
    pub v: SecondLayer,
    /// Label-noise variance Δ ≥ 0. Default 0.
    #[serde(default)]
    pub noise: f64,
}

fn uniform() -> SecondLayer {
    SecondLayer::Named(SecondLayerKind::Uniform)
}

/// `[training]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Learning rate η > 0.
    pub eta: f64,
    /// Weight decay ℓ₂ ≥ 0. Default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Mini-batch size B ≥ 1. Default 1.
    #[serde(default = "one")]
    pub batch: i64,
}

fn one() -> i64 {
    1
}

/// `[init]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// "orthonormal" (P = I exactly, default) or "gaussian".
    #[serde(default)]
    pub teacher: TeacherInit,
    /// Standard deviation σ₀ of the student entries. Default 1: Q₀ ≈ I, the teacher's scale,
    /// while M₀ ~ N^{-1/2} (an uninformed start).
    #[serde(default = "unit")]
    pub sigma0: f64,
    /// Informed start: student rows w_i = Σ_k student_mix[i][k] w*_k + σ₀ g_i (a p×p* matrix).
    /// Default: absent (uninformed start).
    pub student_mix: Option<Vec<Vec<f64>>>,
    /// Explicit initial Q (p×p), for `initial = "explicit"` ODE runs.
    pub q0: Option<Vec<Vec<f64>>>,
    /// Explicit initial M (p×p*).
    pub m0: Option<Vec<Vec<f64>>>,
    /// Explicit teacher overlap P (p*×p*); default: the identity.
    pub p: Option<Vec<Vec<f64>>>,
    /// The teacher's weights from a file: an N × p* matrix (.npy float64, or CSV of numbers), replacing
    /// `teacher`; every `simulation.n` must be its N; direct simulator only.
    pub teacher_file: Option<String>,
}

fn unit() -> f64 {
    1.0
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            teacher: TeacherInit::default(),
            sigma0: 1.0,
            student_mix: None,
            q0: None,
            m0: None,
            p: None,
            teacher_file: None,
        }
    }
}

/// Which simulator runs the SGD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimulatorKind {
    /// SGD on the N-dimensional weights (theory.md §2).
    #[default]
    Direct,
    /// Exact Gram-chain simulation for isotropic Gaussian inputs (theory.md §7).
    Chain,
}

/// `[simulation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    /// "direct" (default) or "chain".
    #[serde(default)]
    pub simulator: SimulatorKind,
    /// Input dimensions N (each ≥ 1).
    pub n: Vec<i64>,
    /// Seeds per N (≥ 1).
    pub seeds: i64,
    /// Base seed of the experiment; run seeds derive from (base_seed, N, seed index). Default 0.
    #[serde(default)]
    pub base_seed: u64,
    /// A run diverges when an overlap exceeds this in absolute value. Default 1e6.
    #[serde(default = "bound")]
    pub divergence_bound: f64,
    /// The Gaussian input generator of the direct simulator: "box-muller" (default, the generator
    /// of every shipped result) or "ziggurat" (faster on AVX2-only CPUs; see [`Generator`]).
    #[serde(default)]
    pub generator: Generator,
}

fn bound() -> f64 {
    1e6
}

/// `[time]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Last time t_max > 0 (in samples/N).
    pub t_max: f64,
    /// "linear" (default) or "log".
    #[serde(default)]
    pub grid: GridKind,
    /// Number of record times after t = 0. Default 50.
    #[serde(default = "fifty")]
    pub points: i64,
    /// First non-zero time of a log grid. Default t_max/1000.
    pub t_min: Option<f64>,
    /// Explicit record times (replaces grid/points/t_min); each in [0, t_max].
    pub times: Option<Vec<f64>>,
}

fn fifty() -> i64 {
    50
}

/// Initial condition of the ODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OdeInitial {
    /// One ODE per simulated run, from that run's exact initial overlaps.
    #[default]
    Matched,
    /// One ODE from `[init] q0, m0, p`.
    Explicit,
    /// One ODE from the overlaps (and a) in `[ode] initial_file` (a row of a trajectory CSV, or JSON).
    File,
}

impl OdeInitial {
    /// One ODE from a given initial condition (explicit or from a file), rather than one per run.
    pub fn is_given(self) -> bool {
        matches!(self, OdeInitial::Explicit | OdeInitial::File)
    }
}

/// `[ode]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdeConfig {
    /// "matched" (default), "explicit" or "file".
    #[serde(default)]
    pub initial: OdeInitial,
    /// With `initial = "file"`: a CSV in the format of trajectories.csv/ode.csv (columns q_i_j, m_i_k,
    /// optionally a_i) or a JSON object {q, m, p?, a?}; a relative path is from the working folder.
    pub initial_file: Option<String>,
    /// With a CSV `initial_file`: the data row to start from (0 = the first). Default 0.
    #[serde(default)]
    pub initial_row: usize,
    /// Relative tolerance. Default 1e-8.
    #[serde(default = "rtol")]
    pub rtol: f64,
    /// Absolute tolerance. Default 1e-10.
    #[serde(default = "atol")]
    pub atol: f64,
    /// Drop the η² term (gradient flow). Default false.
    #[serde(default)]
    pub gradient_flow: bool,
    /// Which terms of the ODE to keep: "full" (default), "first_order" (= `gradient_flow = true`)
    /// or "second_order" (the η² term alone); the regions of Veiga et al. (2022) keep different
    /// terms (docs/phase_diagram.md). Absent: decided by `gradient_flow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<OdeTerms>,
}

/// `[ode] terms`: the terms of dQ/dt = (η/B)(first order) + (η/B)²E[δδᵀ] the ODE keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeTerms {
    /// Both terms: the N → ∞ limit at fixed η, p ([`OdeVariant::Full`]).
    Full,
    /// The first-order term alone, gradient flow ([`OdeVariant::GradientFlow`]).
    FirstOrder,
    /// The η² term alone ([`OdeVariant::SecondOrder`]).
    SecondOrder,
}

impl OdeTerms {
    /// The ODE right-hand side that keeps these terms.
    pub fn variant(self) -> OdeVariant {
        match self {
            OdeTerms::Full => OdeVariant::Full,
            OdeTerms::FirstOrder => OdeVariant::GradientFlow,
            OdeTerms::SecondOrder => OdeVariant::SecondOrder,
        }
    }
}

fn rtol() -> f64 {
    1e-8
}
fn atol() -> f64 {
    1e-10
}

impl Default for OdeConfig {
    fn default() -> Self {
        OdeConfig {
            initial: OdeInitial::Matched,
            initial_file: None,
            initial_row: 0,
            rtol: rtol(),
            atol: atol(),
            gradient_flow: false,
            terms: None,
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output folder. Default `results/<name>`.
    pub dir: Option<String>,
    /// Write figures. Default true.
    pub figures: Option<bool>,
    /// Overlap columns to plot (e.g. ["m_0_0", "q_0_0"]). Default: every m entry and q_0_0.
    pub plot: Option<Vec<String>>,
}

/// The whole experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Name (default: the file stem).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    pub model: ModelConfig,
    pub training: TrainingConfig,
    #[serde(default)]
    pub init: InitConfig,
    pub simulation: Option<SimulationConfig>,
    pub time: TimeConfig,
    #[serde(default)]
    pub ode: OdeConfig,
    #[serde(default)]
    pub output: OutputConfig,
    /// `[escape]`: plateau-escape measurement (see [`crate::analysis::escape`]).
    pub escape: Option<EscapeConfig>,
    /// `[scaling]`: finite-size scaling study (see [`crate::analysis::scaling`]).
    pub scaling: Option<ScalingConfig>,
    /// `[geometry]`: quadratic-network geometry observables (see [`crate::analysis::geometry`]).
    pub geometry: Option<GeometryConfig>,
    /// `[phase]`: the (κ, δ) grid of `hdsgd phase` (see [`crate::analysis::phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseConfig>,
}

/// A validated experiment, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub name: String,
    /// The file as written (with defaults filled in).
    pub config: ExperimentConfig,
    pub model: Model,
    pub training: Training,
    pub teacher_init: TeacherInit,
    pub sigma0: f64,
    /// The initial condition of simulated runs (teacher kind, σ₀, informed mix).
    pub init: InitSpec,
    pub simulator: SimulatorKind,
    /// Input dimensions (empty for ODE-only experiments).
    pub ns: Vec<usize>,
    pub seeds: u64,
    pub base_seed: u64,
    pub divergence_bound: f64,
    /// The direct simulator's input generator (`[simulation] generator`).
    pub generator: Generator,
    /// Record times, starting at 0.
    pub grid: Vec<f64>,
    /// Whether the grid is logarithmic (for plots).
    pub log_time: bool,
    pub ode_initial: OdeInitial,
    #[serde(skip)]
    pub ode_options: OdeOptions,
    /// Explicit initial overlaps, when given.
    #[serde(skip)]
    pub explicit_initial: Option<Overlaps>,
    /// The teacher rows (p* × N) of `[init] teacher_file`, when given (shared by the runs).
    #[serde(skip)]
    pub teacher_weights: Option<std::sync::Arc<ndarray::Array2<f64>>>,
    pub output_dir: PathBuf,
    pub figures: bool,
    pub plot_columns: Vec<String>,
}

impl Experiment {
    /// Reads, parses and validates an experiment file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Where: line and column (in characters) of the first invalid byte.
            let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = ok.iter().filter(|&&b| b == b'\n').count() + 1;
            let start = ok.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&ok[start..]).chars().count() + 1;
            ConfigError::Parse {
                path: path.display().to_string(),
                message: format!("invalid UTF-8 at line {line}, column {column}"),
            }
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        Self::from_toml(&text, stem.as_deref().unwrap_or("experiment")).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; `default_name` names the experiment if the file does not.
    pub fn from_toml(text: &str, default_name: &str) -> Result<Self, ConfigError> {
        let config: ExperimentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".into(),
            message: e.to_string(),
        })?;
        Self::from_config(config, default_name)
    }

    /// Validates a parsed configuration.
    pub fn from_config(config: ExperimentConfig, default_name: &str) -> Result<Self, ConfigError> {
        let c = &config;
        let name = c.name.clone().unwrap_or_else(|| default_name.to_string());
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(field_err("name", "must be a non-empty name without path separators"));
        }
        let mut model = model_of(c)?;
        let (p, p_star) = (model.p(), model.p_star());
        let training = training_of(c)?;
        let init = init_of(c, p, p_star)?;
        let (simulator, ns, seeds, base_seed, divergence_bound) = simulation_of(c, p_star)?;
        let (grid, log_time) = time_grid_of(&c.time)?;
        let (explicit_initial, ode_options) = ode_of(c, &mut model, divergence_bound)?;
        let teacher_weights = teacher_file_of(c, p_star, &ns, simulator)?;
        let o = &c.ode;
        let output_dir = c
            .output
            .dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new("results").join(&name));
        let plot_columns = plot_columns_of(c, p, p_star)?;
        validate_sections(c, &model)?;

        Ok(Experiment {
            name,
            model,
            training,
            teacher_init: c.init.teacher,
            sigma0: c.init.sigma0,
            init,
            simulator,
            ns,
            seeds,
            base_seed,
            divergence_bound,
            generator: c.simulation.as_ref().map(|s| s.generator).unwrap_or_default(),
            grid,
            log_time,
            ode_initial: o.initial,
            ode_options,
            explicit_initial,
            teacher_weights,
            figures: c.output.figures.unwrap_or(true),
            plot_columns,
            output_dir,
            config,
        })
    }
}

/// `[model]` → the model (widths, second layers, noise).
fn model_of(c: &ExperimentConfig) -> Result<Model, ConfigError> {
    let p = positive(c.model.p, "model.p")?;
    let p_star = positive(c.model.p_star, "model.p_star")?;
    for (w, f) in [(p, "model.p"), (p_star, "model.p_star")] {
        if w > MAX_WIDTH_HARD {
            return Err(field_err(
                f,
                format!("{w} exceeds {MAX_WIDTH_HARD}, the largest width hdsgd handles"),
            ));
        }
    }
    let a = c.model.a.resolve(p).map_err(|m| field_err("model.a", m))?;
    let train_a = c.model.a.sgd().map_err(|m| field_err("model.a", m))?;
    let v = c.model.v.resolve(p_star).map_err(|m| field_err("model.v", m))?;
    if c.model.v.sgd().map_err(|m| field_err("model.v", m))?.is_some() {
        return Err(field_err(
            "model.v",
            "the teacher's second layer is fixed (`train = true` is for `model.a`)",
        ));
    }
    non_negative(c.model.noise, "model.noise")?;
    let mut model = Model::new(c.model.activation, a, v, c.model.noise);
    model.train_a = train_a;
    Ok(model)
}

/// `[training]` → η, weight decay, batch.
fn training_of(c: &ExperimentConfig) -> Result<Training, ConfigError> {
    if !(c.training.eta.is_finite() && c.training.eta > 0.0) {
        return Err(field_err(
            "training.eta",
            format!("must be > 0 (got {})", c.training.eta),
        ));
    }
    non_negative(c.training.weight_decay, "training.weight_decay")?;
    let batch = positive(c.training.batch, "training.batch")?;
    let training = Training {
        eta: c.training.eta,
        weight_decay: c.training.weight_decay,
        batch,
    };
    Ok(training)
}

/// `[init]` → the initialisation of the runs.
fn init_of(c: &ExperimentConfig, p: usize, p_star: usize) -> Result<InitSpec, ConfigError> {
    if !(c.init.sigma0.is_finite() && c.init.sigma0 >= 0.0) {
        return Err(field_err("init.sigma0", format!("must be ≥ 0 (got {})", c.init.sigma0)));
    }

    if let Some(mix) = &c.init.student_mix {
        matrix(mix, p, p_star, "init.student_mix")?;
    }
    let init = InitSpec {
        teacher: c.init.teacher,
        sigma0: c.init.sigma0,
        student_mix: c.init.student_mix.clone(),
    };
    Ok(init)
}

/// `[init] teacher_file` → the teacher rows (p* × N), checked against p* and every N of the runs.
fn teacher_file_of(
    c: &ExperimentConfig,
    p_star: usize,
    ns: &[usize],
    simulator: SimulatorKind,
) -> Result<Option<std::sync::Arc<ndarray::Array2<f64>>>, ConfigError> {
    const FIELD: &str = "init.teacher_file";
    let Some(path) = &c.init.teacher_file else {
        return Ok(None);
    };
    if simulator != SimulatorKind::Direct {
        return Err(field_err(
            FIELD,
            "a teacher from a file needs simulation.simulator = \"direct\"",
        ));
    }
    let w_star = crate::init::read_teacher(Path::new(path), p_star).map_err(|m| field_err(FIELD, m))?;
    if let Some(&n) = ns.iter().find(|&&n| n != w_star.ncols()) {
        return Err(field_err(
            FIELD,
            format!("{path} has N = {} rows, but simulation.n lists N = {n}", w_star.ncols()),
        ));
    }
    Ok(Some(std::sync::Arc::new(w_star)))
}

/// `[simulation]` → (simulator, N grid, seeds, base seed, divergence bound); no runs without it.
fn simulation_of(
    c: &ExperimentConfig,
    p_star: usize,
) -> Result<(SimulatorKind, Vec<usize>, u64, u64, f64), ConfigError> {
    let sim = match &c.simulation {
        Some(s) => {
            if s.n.is_empty() {
                return Err(field_err("simulation.n", "must list at least one N"));
            }
            let ns =
                s.n.iter()
                    .map(|&n| positive(n, "simulation.n"))
                    .collect::<Result<Vec<_>, _>>()?;
            if c.init.teacher == TeacherInit::Orthonormal {
                if let Some(&n) = ns.iter().find(|&&n| n < p_star) {
                    return Err(field_err(
                        "simulation.n",
                        format!("N = {n} is smaller than p* = {p_star}: an orthonormal teacher needs N ≥ p*"),
                    ));
                }
            }
            let seeds = positive(s.seeds, "simulation.seeds")? as u64;
            if !(s.divergence_bound.is_finite() && s.divergence_bound > 0.0) {
                return Err(field_err("simulation.divergence_bound", "must be a positive number"));
            }
            (s.simulator, ns, seeds, s.base_seed, s.divergence_bound)
        }
        None => (SimulatorKind::Direct, vec![], 0, 0, bound()),
    };
    Ok(sim)
}

/// `[time]` → the record grid and whether it is logarithmic.
fn time_grid_of(t: &TimeConfig) -> Result<(Vec<f64>, bool), ConfigError> {
    if !(t.t_max.is_finite() && t.t_max > 0.0) {
        return Err(field_err("time.t_max", format!("must be > 0 (got {})", t.t_max)));
    }
    let grid = match &t.times {
        Some(times) => {
            if times.is_empty() {
                return Err(field_err("time.times", "must not be empty"));
            }
            if times.len() > MAX_POINTS {
                return Err(field_err(
                    "time.times",
                    format!("{} record times exceed the limit of {MAX_POINTS}", times.len()),
                ));
            }
            for &x in times {
                if !(x.is_finite() && (0.0..=t.t_max).contains(&x)) {
                    return Err(field_err(
                        "time.times",
                        format!("{x} is outside [0, t_max = {}]", t.t_max),
                    ));
                }
            }
            if times.windows(2).any(|w| w[1] <= w[0]) {
                return Err(field_err("time.times", "must be strictly increasing"));
            }
            let mut g = times.clone();
            if g[0] > 0.0 {
                g.insert(0, 0.0);
            }
            (g, t.grid == GridKind::Log)
        }
        None => {
            let points = positive(t.points, "time.points")?;
            if points > MAX_POINTS {
                return Err(field_err(
                    "time.points",
                    format!("{points} record times exceed the limit of {MAX_POINTS}"),
                ));
            }
            let t_min = t.t_min.unwrap_or(t.t_max / 1000.0);
            if t.grid == GridKind::Log && !(t_min > 0.0 && t_min < t.t_max) {
                return Err(field_err(
                    "time.t_min",
                    format!(
                        "must satisfy 0 < t_min < t_max (got t_min = {t_min}, t_max = {})",
                        t.t_max
                    ),
                ));
            }
            (time_grid(t.grid, points, t_min, t.t_max), t.grid == GridKind::Log)
        }
    };
    Ok(grid)
}

/// `[ode]` (and `[init] q0, m0, p`) → the explicit initial overlaps and the integrator options.
/// `[ode]` → the given initial overlaps (explicit or from a file; a file's a becomes the model's
/// initial second layer) and the integrator options.
fn ode_of(
    c: &ExperimentConfig,
    model: &mut Model,
    divergence_bound: f64,
) -> Result<(Option<Overlaps>, OdeOptions), ConfigError> {
    let (p, p_star) = (model.p(), model.p_star());
    let o = &c.ode;
    for (v, f) in [(o.rtol, "ode.rtol"), (o.atol, "ode.atol")] {
        if !(v.is_finite() && v > 0.0) {
            return Err(field_err(f, format!("must be > 0 (got {v})")));
        }
    }
    let explicit_initial = match o.initial {
        OdeInitial::File => Some(file_overlaps(c, model)?),
        _ => {
            if o.initial_file.is_some() {
                return Err(field_err("ode.initial_file", "needs ode.initial = \"file\""));
            }
            explicit_overlaps(&c.init, p, p_star)?
        }
    };
    if o.initial == OdeInitial::Explicit && explicit_initial.is_none() {
        return Err(field_err(
            "init.q0",
            "ode.initial = \"explicit\" needs init.q0 and init.m0",
        ));
    }
    if o.initial.is_given() && !crate::population::has_ode(c.model.activation) {
        return Err(field_err(
            "ode.initial",
            format!(
                "a given initial condition needs the overlap ODE, which `{}` does not have",
                c.model.activation.name()
            ),
        ));
    }
    if o.initial == OdeInitial::Matched && c.simulation.is_none() {
        return Err(field_err(
            "ode.initial",
            "\"matched\" needs a [simulation] section (or use \"explicit\" with init.q0, init.m0)",
        ));
    }
    let variant = match (o.gradient_flow, o.terms) {
        (true, Some(t)) if t != OdeTerms::FirstOrder => {
            return Err(field_err(
                "ode.terms",
                "contradicts ode.gradient_flow = true (which keeps the first-order term alone)",
            ))
        }
        (true, _) => OdeVariant::GradientFlow,
        (false, t) => t.map_or(OdeVariant::Full, OdeTerms::variant),
    };
    let ode_options = OdeOptions {
        rtol: o.rtol,
        atol: o.atol,
        divergence_bound,
        variant,
        ..OdeOptions::default()
    };
    Ok((explicit_initial, ode_options))
}

/// `[output] plot` → the plotted observables (checked), by default every m_ik and q_0_0.
fn plot_columns_of(c: &ExperimentConfig, p: usize, p_star: usize) -> Result<Vec<String>, ConfigError> {
    let all_columns = Overlaps::column_names(p, p_star);
    let columns = match &c.output.plot {
        Some(cols) => {
            let probe = Overlaps::new(
                DMatrix::zeros(p, p),
                DMatrix::zeros(p, p_star),
                DMatrix::zeros(p_star, p_star),
            );
            for col in cols {
                if probe.observable(col).is_none() {
                    return Err(field_err(
                        "output.plot",
                        format!(
                            "unknown observable `{col}` (have tr_q, norm_m, {}{})",
                            all_columns.iter().take(12).cloned().collect::<Vec<_>>().join(", "),
                            if all_columns.len() > 12 { ", …" } else { "" }
                        ),
                    ));
                }
            }
            cols.clone()
        }
        None => all_columns
            .iter()
            .filter(|c| c.starts_with("m_") || *c == "q_0_0")
            .cloned()
            .collect(),
    };
    Ok(columns)
}

/// The analyses' own sections (`[escape]`, `[scaling]`, `[geometry]`), validated by their types.
fn validate_sections(c: &ExperimentConfig, model: &Model) -> Result<(), ConfigError> {
    if let Some(e) = &c.escape {
        e.validate().map_err(|(f, m)| field_err(&format!("escape.{f}"), m))?;
    }
    if let Some(s) = &c.scaling {
        s.validate().map_err(|(f, m)| field_err(&format!("scaling.{f}"), m))?;
    }
    if let Some(g) = &c.geometry {
        if model.train_a.is_some() {
            return Err(field_err(
                "model.a",
                "a trained second layer (`train = true`) cannot be combined with [geometry], whose observables assume a fixed a",
            ));
        }
        g.validate().map_err(|(f, m)| field_err(&format!("geometry.{f}"), m))?;
        g.validate_model(model).map_err(|(f, m)| field_err(&f, m))?;
    }
    if let Some(ph) = &c.phase {
        ph.validate().map_err(|(f, m)| field_err(&format!("phase.{f}"), m))?;
    }
    Ok(())
}

impl Experiment {
    /// The teacher overlap P of the ODE analyses: `[init] p` when given, else the identity (the
    /// orthonormal teacher's P).
    pub fn teacher_overlap(&self) -> DMatrix<f64> {
        let k = self.model.p_star();
        self.explicit_initial
            .as_ref()
            .map(|o| o.p.clone())
            .unwrap_or_else(|| DMatrix::identity(k, k))
    }
}

fn positive(x: i64, field: &str) -> Result<usize, ConfigError> {
    if x < 1 {
        Err(field_err(field, format!("must be ≥ 1 (got {x})")))
    } else {
        Ok(x as usize)
    }
}

fn non_negative(x: f64, field: &str) -> Result<(), ConfigError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(field_err(field, format!("must be ≥ 0 (got {x})")))
    }
}

fn matrix(rows: &[Vec<f64>], r: usize, c: usize, field: &str) -> Result<DMatrix<f64>, ConfigError> {
    if rows.len() != r || rows.iter().any(|row| row.len() != c) {
        return Err(field_err(
            field,
            format!("must be a {r}×{c} matrix (list of {r} rows of {c} numbers)"),
        ));
    }
    if rows.iter().flatten().any(|x| !x.is_finite()) {
        return Err(field_err(field, "contains a non-finite entry"));
    }
    Ok(DMatrix::from_fn(r, c, |i, j| rows[i][j]))
}

/// `[ode] initial = "file"`: the overlaps of `initial_file` (P from the file, else `[init] p`, else
/// I), checked like explicit ones; the file's a, if any, becomes the trained layer's initial a.
fn file_overlaps(c: &ExperimentConfig, model: &mut Model) -> Result<Overlaps, ConfigError> {
    const FIELD: &str = "ode.initial_file";
    let (p, k) = (model.p(), model.p_star());
    let path = c
        .ode
        .initial_file
        .as_ref()
        .ok_or_else(|| field_err(FIELD, "ode.initial = \"file\" needs the file's path"))?;
    let f = initial_file::read(Path::new(path), p, k, c.ode.initial_row).map_err(|m| field_err(FIELD, m))?;
    let pm = match (f.p, &c.init.p) {
        (Some(pm), _) => pm,
        (None, Some(pp)) => matrix(pp, k, k, "init.p")?,
        (None, None) => DMatrix::identity(k, k),
    };
    if let Some(a) = f.a {
        if model.train_a.is_none() {
            return Err(field_err(
                FIELD,
                format!("{path} has the second layer a (a_i), but model.a is fixed: set `train = true` or drop a"),
            ));
        }
        model.a = a;
    }
    let ov = Overlaps::new(f.q, f.m, pm);
    check_gram(&ov, FIELD)?;
    Ok(ov)
}

/// The Gram matrix [[Q, M], [Mᵀ, P]] of given overlaps must be symmetric positive semi-definite.
fn check_gram(ov: &Overlaps, field: &str) -> Result<(), ConfigError> {
    let c = ov.gram();
    if (&c - c.transpose()).amax() > 1e-12 {
        return Err(field_err(field, "Q0 and P must be symmetric"));
    }
    if c.symmetric_eigenvalues().min() < -1e-12 {
        return Err(field_err(
            field,
            "the Gram matrix [[Q0, M0], [M0ᵀ, P]] is not positive semi-definite",
        ));
    }
    Ok(())
}

fn explicit_overlaps(init: &InitConfig, p: usize, k: usize) -> Result<Option<Overlaps>, ConfigError> {
    let (q0, m0) = match (&init.q0, &init.m0) {
        (None, None) => return Ok(None),
        (Some(q), Some(m)) => (q, m),
        (Some(_), None) => return Err(field_err("init.m0", "init.q0 is given, init.m0 is missing")),
        (None, Some(_)) => return Err(field_err("init.q0", "init.m0 is given, init.q0 is missing")),
    };
    let q = matrix(q0, p, p, "init.q0")?;
    let m = matrix(m0, p, k, "init.m0")?;
    let pm = match &init.p {
        Some(pp) => matrix(pp, k, k, "init.p")?,
        None => DMatrix::identity(k, k),
    };
    let ov = Overlaps::new(q, m, pm);
    check_gram(&ov, "init.q0")?;
    Ok(Some(ov))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const MINIMAL: &str = r#"
[model]
activation = "quadratic"
p = 2
p_star = 1
[training]
eta = 0.5
[simulation]
n = [100]
seeds = 2
[time]
t_max = 1.0
"#;

    fn err(text: &str) -> String {
        Experiment::from_toml(text, "t").unwrap_err().to_string()
    }

    #[test]
    fn minimal_file_resolves() {
        let e = Experiment::from_toml(MINIMAL, "t").unwrap();
        assert_eq!(e.model.a, vec![0.5, 0.5]);
        assert_eq!(e.grid.len(), 51);
        assert_eq!(e.output_dir, Path::new("results/t"));
    }

    /// `[model] a` as a table: a trained second layer resolves to its initial weights and its SGD;
    /// `train = false` is the fixed layer; bad rates, unknown keys, a nested table, a trained
    /// teacher layer and [geometry] with a trained layer are errors naming `model.a` / `model.v`.
    #[test]
    fn trained_second_layer_config() {
        let with_a = |a: &str| MINIMAL.replace("p_star = 1", &format!("p_star = 1\na = {a}"));
        let e = Experiment::from_toml(
            &with_a("{ init = [0.1, 0.3], train = true, eta = 0.7, weight_decay = 0.2 }"),
            "t",
        )
        .unwrap();
        assert_eq!(e.model.a, vec![0.1, 0.3]);
        let sgd = e.model.train_a.unwrap();
        assert_eq!((sgd.eta, sgd.weight_decay), (0.7, 0.2));
        let fixed = Experiment::from_toml(&with_a("{ init = \"ones\" }"), "t").unwrap();
        assert_eq!((fixed.model.a, fixed.model.train_a), (vec![1.0, 1.0], None));
        let default_init = Experiment::from_toml(&with_a("{ train = true, eta = 1 }"), "t").unwrap();
        assert_eq!(default_init.model.a, vec![0.5, 0.5]);
        for (a, needle) in [
            ("{ train = true }", "needs `eta`"),
            ("{ train = true, eta = 0.0 }", "`eta` must be a finite number > 0"),
            ("{ train = true, eta = -1.0 }", "`eta` must be a finite number > 0"),
            ("{ train = true, eta = nan }", "`eta` must be a finite number > 0"),
            ("{ train = true, eta = inf }", "`eta` must be a finite number > 0"),
            ("{ train = true, eta = 1.0, weight_decay = -1.0 }", "weight_decay"),
            ("{ eta = 1.0 }", "need `train = true`"),
            ("{ init = [1.0], train = true, eta = 1.0 }", "init has 1 entries"),
            ("{ init = { train = true }, train = true, eta = 1.0 }", "not a table"),
        ] {
            let e = err(&with_a(a));
            assert!(e.contains("model.a") && e.contains(needle), "{a}: {e}");
        }
        assert!(err(&with_a("{ train = true, rate = 1.0 }")).contains("rate"));
        let v = MINIMAL.replace("p_star = 1", "p_star = 1\nv = { train = true, eta = 1.0 }");
        assert!(err(&v).contains("model.v"));
        let geo = with_a("{ train = true, eta = 1.0 }") + "[geometry]\n";
        assert!(err(&geo).contains("model.a"), "{}", err(&geo));
    }

    /// `[ode] initial = "file"` starts the ODE from a row of a trajectory CSV (its a becomes the
    /// trained layer's a₀); a missing file, wrong widths, a fixed layer with a in the file, and
    /// `initial_file` without `initial = "file"` are errors naming `ode.initial_file`.
    #[test]
    fn ode_initial_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("traj.csv");
        std::fs::write(
            &csv,
            "n,seed,t,q_0_0,q_0_1,q_1_1,m_0_0,m_1_0,a_0,a_1\n10,0,0,1,0.1,0.9,0.2,0.3,0.4,0.6\n",
        )
        .unwrap();
        let text = |a: &str, file: &std::path::Path| {
            MINIMAL.replace("p_star = 1", &format!("p_star = 1\na = {a}"))
                + &format!(
                    "[ode]\ninitial = \"file\"\ninitial_file = {:?}\n",
                    file.display().to_string()
                )
        };
        let trained = "{ train = true, eta = 0.5 }";
        let e = Experiment::from_toml(&text(trained, &csv), "t").unwrap();
        let init = e.explicit_initial.as_ref().unwrap();
        assert_eq!((init.q[(0, 1)], init.m[(1, 0)], init.p[(0, 0)]), (0.1, 0.3, 1.0));
        assert_eq!(e.model.a, vec![0.4, 0.6]);
        assert!(e.ode_initial.is_given());
        let fixed = err(&text("\"uniform\"", &csv));
        assert!(fixed.contains("ode.initial_file") && fixed.contains("fixed"), "{fixed}");
        let missing = err(&text(trained, &dir.path().join("nope.csv")));
        assert!(
            missing.contains("ode.initial_file") && missing.contains("nope.csv"),
            "{missing}"
        );
        let wide = err(&text(trained, &csv).replace("p = 2", "p = 3"));
        assert!(wide.contains("ode.initial_file") && wide.contains("q_0_2"), "{wide}");
        let stray = MINIMAL.to_string() + "[ode]\ninitial_file = \"x.csv\"\n";
        assert!(err(&stray).contains("ode.initial_file"));
    }

    /// `[init] teacher_file`: the teacher of the runs; its N must be every simulation.n, its columns p*;
    /// the chain simulator refuses it; errors name `init.teacher_file`.
    #[test]
    fn teacher_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("teacher.csv");
        std::fs::write(
            &csv,
            (0..100)
                .map(|i| format!("{}\n", (i % 7) as f64 - 3.0))
                .collect::<String>(),
        )
        .unwrap();
        let with = |extra: &str| {
            MINIMAL.replace(
                "[training]",
                &format!(
                    "[init]\nteacher_file = {:?}\n{extra}[training]",
                    csv.display().to_string()
                ),
            )
        };
        let e = Experiment::from_toml(&with(""), "t").unwrap();
        assert_eq!(e.teacher_weights.as_ref().unwrap().dim(), (1, 100));
        let wrong_n = err(&with("").replace("n = [100]", "n = [100, 50]"));
        assert!(
            wrong_n.contains("init.teacher_file") && wrong_n.contains("N = 50"),
            "{wrong_n}"
        );
        let wide = err(&with("").replace("p_star = 1", "p_star = 2"));
        assert!(wide.contains("init.teacher_file") && wide.contains("p* = 2"), "{wide}");
        let chain = err(&with("").replace("seeds = 2", "seeds = 2\nsimulator = \"chain\""));
        assert!(
            chain.contains("init.teacher_file") && chain.contains("direct"),
            "{chain}"
        );
    }

    /// `[simulation] generator`: Box–Muller by default, "ziggurat" selectable, anything else an
    /// error naming the accepted values.
    #[test]
    fn generator_key() {
        assert_eq!(
            Experiment::from_toml(MINIMAL, "t").unwrap().generator,
            Generator::BoxMuller
        );
        let zig = MINIMAL.replace("seeds = 2", "seeds = 2\ngenerator = \"ziggurat\"");
        assert_eq!(Experiment::from_toml(&zig, "t").unwrap().generator, Generator::Ziggurat);
        let bad = err(&MINIMAL.replace("seeds = 2", "seeds = 2\ngenerator = \"polar\""));
        assert!(bad.contains("generator") && bad.contains("box-muller"), "{bad}");
    }

    #[test]
    fn bad_inputs_name_their_field() {
        assert!(err(&MINIMAL.replace("n = [100]", "n = [-5]")).contains("simulation.n"));
        assert!(err(&MINIMAL.replace("p = 2", "p = 0")).contains("model.p"));
        assert!(err(&MINIMAL.replace("eta = 0.5", "eta = 0.0")).contains("training.eta"));
        assert!(err(&MINIMAL.replace("eta = 0.5", "eta = -1.0")).contains("training.eta"));
        assert!(err(&MINIMAL.replace("\"quadratic\"", "\"tanh\"")).contains("tanh"));
        assert!(err(&MINIMAL.replace("seeds = 2", "seeds = 2\nbogus = 1")).contains("bogus"));
        assert!(err(&MINIMAL.replace("t_max = 1.0", "t_max = 1.0\ntimes = [0.5, 2.0]")).contains("time.times"));
        assert!(err("[model\n").contains("malformed"));
    }

    /// [`MINIMAL`] with a `[geometry]` section.
    fn geometry() -> String {
        format!("{MINIMAL}[geometry]\nobservables = [\"conserved\", \"selection\"]\n")
    }

    #[test]
    fn geometry_section_validates_with_field_names() {
        let e = Experiment::from_toml(&geometry(), "t").unwrap();
        assert_eq!(e.config.geometry.unwrap().observables.len(), 2);
        let err = |t: &str| Experiment::from_toml(t, "t").unwrap_err().to_string();
        assert!(
            err(&geometry().replace("\"selection\"]", "\"selection\"]\nzero_tol = 2.0")).contains("geometry.zero_tol")
        );
        assert!(err(&geometry().replace("\"selection\"]", "\"conserved\"]")).contains("geometry.observables"));
        assert!(err(&geometry().replace("\"selection\"]", "\"bogus\"]")).contains("bogus"));
        assert!(err(&geometry().replace("p = 2", "p = 2\na = [0.3, 0.7]")).contains("model.a"));
        assert!(err(&geometry().replace("\"quadratic\"", "\"erf\"")).contains("model.activation"));
        assert!(err(&geometry().replace("p_star = 1", "p_star = 3")).contains("model.p"));
    }
}
