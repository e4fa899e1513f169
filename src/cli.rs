//! The `hdsgd` command line.

use crate::config::Experiment;
use crate::studies::preflight::{self, Command as Cmd};
use crate::studies::shard::{ShardSpec, StudyCommand};
use crate::studies::{self, Cancel, Cancelled, DivergedRuns, OutputOptions};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit codes, listed under every `--help`.
pub const EXIT_CODES: &str = "Exit codes:
  0  success
  1  invalid input (experiment file, pre-flight) or I/O error: nothing written, a previous output folder left as it was
  2  usage error (unknown command or option, missing argument)
  3  outputs written, but some runs diverged (each named on stderr with its time of divergence)
  130  interrupted by Ctrl-C: the command stopped within one record interval, nothing written (an escape
       study or a shard keeps the runs finished before, and resumes); a second Ctrl-C exits at once";

/// Online SGD in two-layer teacher–student networks: finite-N simulations against the overlap ODEs.
#[derive(Debug, Parser)]
#[command(name = "hdsgd", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The experiment file and output options shared by the commands.
#[derive(Debug, Args, Clone)]
pub struct ExperimentArgs {
    /// Experiment file (TOML; every key is documented in README.md).
    pub experiment: PathBuf,
    /// Output folder (default: the experiment's `output.dir`, else `results/<name>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Overwrite an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Lift the size limits of the pre-flight (memory, samples, widths; see README).
    #[arg(long)]
    pub allow_large: bool,
}

impl ExperimentArgs {
    /// Output options from the arguments.
    pub fn output_options(&self) -> OutputOptions {
        OutputOptions {
            out: self.out.clone(),
            threads: self.threads,
            force: self.force,
            progress: !self.quiet && std::io::stderr().is_terminal(),
            cancel: interrupt().clone(),
        }
    }
}

/// [`ExperimentArgs`] of the commands that run as shards on a cluster (`run`, `escape`, `scaling`).
#[derive(Debug, Args, Clone)]
pub struct StudyArgs {
    #[command(flatten)]
    pub args: ExperimentArgs,
    /// Run only shard I of K (0-based, 0 ≤ I < K) of the (N, seed) runs, into OUT/shard-IIII-of-KKKK/
    /// (resumes from its finished runs); `hdsgd merge OUT` then writes the outputs.
    #[arg(long, value_name = "I/K")]
    pub shard: Option<String>,
    /// `run` only (direct simulator, not with --shard): also write each run's final weights as NumPy
    /// files, weights/{w,w_star,a}_n{N}_seed{S}.npy.
    #[arg(long)]
    pub save_weights: bool,
}

impl StudyArgs {
    /// Runs shard I/K of `command` when `--shard` is given (true), else nothing (false).
    fn shard(&self, command: StudyCommand) -> anyhow::Result<bool> {
        if self.save_weights && (self.shard.is_some() || command != StudyCommand::Run) {
            anyhow::bail!("--save-weights is for `hdsgd run` on one machine (not with --shard, `escape` or `scaling`)");
        }
        let Some(s) = &self.shard else {
            return Ok(false);
        };
        let spec: ShardSpec = s.parse()?;
        let exp = load(&self.args.experiment)?;
        let dir = studies::shard::command(command, &exp, &self.args.experiment, &self.args.output_options(), spec)?;
        eprintln!("wrote {}", dir.display());
        Ok(true)
    }
}

#[derive(Debug, Subcommand)]
#[command(after_help = EXIT_CODES)]
pub enum Command {
    /// Simulate every (N, seed), integrate the ODE, write trajectories.csv, ode.csv, summary.json, figures.
    #[command(after_help = EXIT_CODES)]
    Run(StudyArgs),
    /// Integrate the overlap ODE only; write ode.csv, summary.json and a figure.
    #[command(after_help = EXIT_CODES)]
    Ode(ExperimentArgs),
    /// Validate an experiment file, run the pre-flight (memory, samples, output folder, degenerate
    /// designs) and print the resolved configuration (JSON, stdout) and the pre-flight (stderr).
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Plateau fixed point of the ODE and its linear stability (growth rate μ, escape slope 1/(2μ)).
    #[command(after_help = EXIT_CODES)]
    Plateau(ExperimentArgs),
    /// Plateau-escape times over seeds and N, with a fit of mean escape time vs log N (resumable).
    #[command(after_help = EXIT_CODES)]
    Escape(StudyArgs),
    /// Finite-size scaling of fluctuations and deviations from the ODE.
    #[command(after_help = EXIT_CODES)]
    Scaling(StudyArgs),
    /// Hessian spectra of the population loss at the plateau and at a solution (quadratic network).
    #[command(after_help = EXIT_CODES)]
    Hessian(ExperimentArgs),
    /// SGD phase diagram (Veiga et al. 2022): a (κ, δ) grid of width p = N^κ and learning rate
    /// η = η₀N^(−δ), simulated at several N, classified; phase.csv, risk.csv, phase_diagram.svg.
    #[command(after_help = EXIT_CODES)]
    Phase(ExperimentArgs),
    /// Throughput of the simulators (ns per sample, samples per second).
    #[command(after_help = EXIT_CODES)]
    Bench(studies::bench::BenchArgs),
    /// Merge the shards of a study (`--shard I/K` runs) into the outputs of the one-machine command.
    #[command(after_help = EXIT_CODES)]
    Merge(studies::merge::MergeArgs),
    /// Write (and with --submit, submit) a SLURM job array running a study as shards, and its merge.
    #[command(after_help = EXIT_CODES)]
    Slurm(studies::slurm::SlurmArgs),
}

/// `hdsgd check`.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Experiment file.
    pub experiment: PathBuf,
    /// The command to check for (default: `escape` for a file with an [escape] section, `scaling`
    /// with [scaling], else `run`, or `ode` without [simulation]; a file with a [phase] section
    /// gets the pre-flight of `hdsgd phase` and its resolved grid).
    #[arg(long, value_enum)]
    pub command: Option<Cmd>,
    /// Output folder to check (default: the experiment's).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads to check for (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// As with --force: an existing output folder would be replaced.
    #[arg(long)]
    pub force: bool,
    /// Lift the size limits of the pre-flight.
    #[arg(long)]
    pub allow_large: bool,
}

/// Exit code: invalid input or I/O error.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: outputs written, some runs diverged.
pub const EXIT_DIVERGED: u8 = 3;
/// Exit code: stopped by Ctrl-C (128 + SIGINT, the shell's convention).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The process's cancellation flag, set by the first Ctrl-C (the handler is installed by [`main`]).
fn interrupt() -> &'static Cancel {
    static FLAG: std::sync::OnceLock<Cancel> = std::sync::OnceLock::new();
    FLAG.get_or_init(Cancel::new)
}

/// First Ctrl-C: ask the running command to stop cleanly (its staging folder is removed, finished
/// escape/shard runs stay recorded). Second Ctrl-C: exit at once, as without a handler.
fn install_interrupt_handler() {
    let flag = interrupt().clone();
    let installed = ctrlc::set_handler(move || {
        if flag.is_cancelled() {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        flag.cancel();
        eprintln!("\ninterrupted: stopping the running simulations (Ctrl-C again to exit at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: no Ctrl-C handler ({e}); Ctrl-C will stop hdsgd without cleaning up");
    }
}

/// Entry point of the binary: parse (usage errors exit with 2), dispatch, report errors without
/// panicking (see [`EXIT_CODES`]).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    install_interrupt_handler();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<Cancelled>().is_some() {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_INTERRUPTED)
            } else if let Some(d) = e.downcast_ref::<DivergedRuns>() {
                eprintln!("error: outputs written, but {d}");
                ExitCode::from(EXIT_DIVERGED)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_INVALID)
            }
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Experiment> {
    Ok(Experiment::load(path)?)
}

/// Runs one command.
pub fn dispatch(command: Command) -> anyhow::Result<()> {
    let allow_large = match &command {
        Command::Run(StudyArgs { args: a, .. })
        | Command::Escape(StudyArgs { args: a, .. })
        | Command::Scaling(StudyArgs { args: a, .. })
        | Command::Ode(a)
        | Command::Plateau(a)
        | Command::Hessian(a)
        | Command::Phase(a) => a.allow_large,
        Command::Check(c) => c.allow_large,
        Command::Bench(_) | Command::Merge(_) | Command::Slurm(_) => false,
    };
    preflight::set_allow_large(allow_large);
    match command {
        Command::Run(a) if a.shard(StudyCommand::Run)? => {}
        Command::Escape(a) if a.shard(StudyCommand::Escape)? => {}
        Command::Scaling(a) if a.shard(StudyCommand::Scaling)? => {}
        Command::Run(StudyArgs {
            args: a, save_weights, ..
        }) => {
            let exp = load(&a.experiment)?;
            let dir = studies::run::run_with(&exp, &a.output_options(), save_weights)?;
            eprintln!("wrote {}", dir.display());
        }
        Command::Ode(a) => {
            let exp = load(&a.experiment)?;
            let dir = studies::ode(&exp, &a.output_options())?;
            eprintln!("wrote {}", dir.display());
        }
        Command::Check(c) => {
            let exp = load(&c.experiment)?;
            let opts = OutputOptions {
                out: c.out.clone(),
                threads: c.threads,
                force: c.force,
                ..Default::default()
            };
            if c.command.is_none() && exp.config.phase.is_some() {
                let (cells, _) = studies::phase::plan(&exp, &opts)?;
                eprintln!("{}", studies::phase::report(&cells));
                println!("{}", serde_json::to_string_pretty(&exp)?);
                return Ok(());
            }
            let cmd = c.command.unwrap_or_else(|| Cmd::for_experiment(&exp));
            let plan = preflight::plan(&exp, cmd, &opts)?;
            for w in &plan.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!("{}", plan.report());
            println!("{}", serde_json::to_string_pretty(&exp)?);
        }
        Command::Plateau(a) => studies::plateau::command(&load(&a.experiment)?, &a.output_options())?,
        Command::Escape(StudyArgs { args: a, .. }) => {
            studies::escape::command(&load(&a.experiment)?, &a.output_options())?
        }
        Command::Scaling(StudyArgs { args: a, .. }) => {
            studies::scaling::command(&load(&a.experiment)?, &a.output_options())?
        }
        Command::Hessian(a) => studies::hessian::command(&load(&a.experiment)?, &a.output_options())?,
        Command::Phase(a) => {
            studies::phase::command(&load(&a.experiment)?, &a.output_options())?;
        }
        Command::Bench(a) => studies::bench::command(&a)?,
        Command::Merge(a) => {
            let dir = studies::merge::command(&a)?;
            eprintln!("wrote {}", dir.display());
        }
        Command::Slurm(a) => studies::slurm::command(&a)?,
    }
    Ok(())
}
