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
//! let opts = OutputOptions { out: Some("/tmp/qs".into()), threads: 0, force: true, progress: false };
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
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// Output folder (default: the experiment's).
    pub out: Option<PathBuf>,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Overwrite an existing output folder.
    pub force: bool,
    /// Show progress bars.
    pub progress: bool,
}

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
