//! The studies: one module per command ([`run`], [`ode`], [`plateau`], [`escape`], [`scaling`],
//! [`hessian`], [`geometry`] (the `hdsgd run` hook of the geometry observables), [`bench`],
//! [`phase`]), built
//! on the shared services [`preflight`] (checks and size estimates before any compute), [`runner`]
//! (every (N, seed) in parallel), [`outdir`] (a staging folder renamed into place: complete or
//! absent), [`output`] (tables and JSON), [`journal`] (resume files) and [`plots`] (SVG figures);
//! [`shard`], [`merge`] and [`slurm`] run `run`, `escape`
//! and `scaling` as shards on a cluster and merge them into the one-machine outputs. A study reads
//! a validated [`Experiment`] and writes an output folder; the physics it calls lives below, in
//! `analysis`, `ode` and `simulators`.
//!
//! Programmatic use (what the command line does):
//!
//! ```no_run
//! use hdsgd::{config::Experiment, studies::{self, OutputOptions}};
//! let exp = Experiment::load("experiments/quickstart.toml".as_ref())?;
//! let opts = OutputOptions { out: Some("/tmp/qs".into()), force: true, ..Default::default() };
//! let dir = studies::run(&exp, &opts)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod bench;
pub mod escape;
pub mod geometry;
pub mod hash;
pub mod hessian;
pub mod journal;
pub mod merge;
pub mod ode;
pub mod outdir;
pub mod output;
pub mod phase;
pub mod plateau;
pub mod plots;
pub mod preflight;
pub mod run;
pub mod runner;
pub mod scaling;
pub mod shard;
pub mod slurm;

pub use ode::ode;
pub use run::run;

use crate::config::Experiment;
use crate::ode::{OdeSolution, OdeStop};
use anyhow::Result;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options shared by the commands that write an output folder.
///
/// `OutputOptions { out: Some(dir), ..Default::default() }`: all cores, no overwrite, no progress,
/// not cancellable from outside.
#[derive(Debug, Clone, Default)]
pub struct OutputOptions {
    /// Output folder (default: the experiment's).
    pub out: Option<PathBuf>,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Overwrite an existing output folder.
    pub force: bool,
    /// Show progress bars.
    pub progress: bool,
    /// Set from another thread to stop the command (e.g. the Python binding on Ctrl-C).
    pub cancel: Cancel,
}

/// A cancellation flag shared between a running command and whoever may stop it.
///
/// The runner checks it before each run and at each record of a running simulation; once set, the
/// command stops within one record interval of every running simulation and returns a
/// [`Cancelled`] error: its staging folder is removed, nothing is written, and a resumable study
/// (escape, shards) keeps exactly the runs that finished before (an interrupted run is not
/// recorded, so it cannot be mistaken for a censored one).
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the command to stop (idempotent; any thread).
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The error of a command stopped through its [`Cancel`] flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled: the command was stopped before it finished; nothing was written")]
pub struct Cancelled;

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
#[error("{}; their trajectories stop at the divergence time:\n  {}", diverged_count(.0), .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct DivergedRuns(pub Vec<Divergence>);

/// "3 simulation run(s) and 3 ODE(s) diverged": the two kinds counted apart.
fn diverged_count(d: &[Divergence]) -> String {
    let sim = d.iter().filter(|x| x.what == "simulation").count();
    let ode = d.len() - sim;
    match (sim, ode) {
        (s, 0) => format!("{s} simulation run(s) diverged"),
        (0, o) => format!("{o} ODE(s) diverged"),
        (s, o) => format!("{s} simulation run(s) and {o} ODE(s) diverged"),
    }
}

pub(crate) fn ode_divergence(sol: &OdeSolution, n: usize, seed: i64) -> Option<Divergence> {
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

/// The output folder of a command.
pub fn output_dir(exp: &Experiment, opts: &OutputOptions) -> PathBuf {
    opts.out.clone().unwrap_or_else(|| exp.output_dir.clone())
}

/// Writes `summary.json` of `hdsgd run` and `hdsgd ode`.
pub(crate) fn write_summary(
    exp: &Experiment,
    dir: &Path,
    opts: &OutputOptions,
    start: Instant,
    runs: serde_json::Value,
    divergences: &[Divergence],
) -> Result<()> {
    let summary = output::summary(
        exp,
        opts.threads,
        json!({
            "wall_seconds": start.elapsed().as_secs_f64(),
            "eg_convention": "e_g = ½ E[(y − ŷ)²] over a fresh sample, label noise excluded (the noise adds Δ/2)",
            "runs": runs,
            "divergences": divergences.iter().map(|d| json!({"n": d.n, "seed": d.seed, "what": d.what, "t": d.t})).collect::<Vec<_>>(),
        }),
    );
    output::write_json(&dir.join("summary.json"), &summary)
}
