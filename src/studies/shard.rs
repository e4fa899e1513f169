//! Sharded studies: `hdsgd run|escape|scaling EXP --shard I/K` runs only shard I of K of the
//! study's (N, seed) tasks and writes their raw per-task results into a folder of its own,
//! `OUT/shard-IIII-of-KKKK/`; `hdsgd merge OUT` ([`super::merge`]) puts the shards back together
//! and writes the very files the one-machine command writes.
//!
//! **Shard numbers** are 0-based: I ∈ 0..K, as SLURM's `$SLURM_ARRAY_TASK_ID` of `--array=0-(K-1)`.
//!
//! **Assignment** ([`assign`]): deterministic longest-processing-time-first. The cost of a task is
//! the number of samples it consumes to reach the end of the grid ([`task_samples`], t_max·N
//! rounded to whole steps); tasks are sorted by cost, largest first (ties: task order, i.e. N then
//! seed index), and each goes to the shard with the least cost so far (ties: the lowest shard
//! index). It depends only on the experiment and K. Every run keeps its own seed
//! ([`crate::rng::run_seed`] of base seed, N and seed index), so a run's numbers do not depend on K
//! nor on the shard that ran it.
//!
//! **A shard folder** holds
//! * `manifest.json`: format name and version ([`FORMAT_VERSION`]), crate version, command, hash of
//!   the resolved experiment ([`experiment_hash`]), the experiment itself (the file as written,
//!   defaults filled in, so that the merge needs nothing else), shard I/K and its task list;
//! * `results.jsonl`: one JSON line per finished task, appended and flushed as each task finishes
//!   (floats in shortest round-trip form, read back bit for bit; non-finite values as strings).
//!   Re-running the same shard command resumes: finished tasks are kept, a torn last line (an
//!   interruption mid-write) is dropped with a warning, the rest is run;
//! * `done.json`, when every task of the shard is finished: wall and CPU time of the last
//!   invocation, threads, host, SLURM job ids.

use super::escape;
use super::hash::fnv1a_hex;
use super::output::write_atomic;
use super::runner::{simulate_tasks, task_samples, tasks, RunResult, RunTask};
use super::{output_dir, OutputOptions};
use crate::analysis::escape::{EscapeRun, EscapeStatus};
use crate::config::{Experiment, ExperimentConfig};
use crate::ode::{OdeSolution, OdeStop};
use crate::overlaps::Overlaps;
use crate::simulators::{Record, Trajectory};
use anyhow::{bail, Context, Result};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The `format` field of a shard manifest.
pub const FORMAT: &str = "hdsgd-shard";
/// Version of the shard folder format (manifest and result lines). Bump it whenever either changes:
/// `hdsgd merge` refuses shards of another version.
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const RESULTS: &str = "results.jsonl";
const DONE: &str = "done.json";

/// Shard I of K (0-based: I ∈ 0..K).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for ShardSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, k)| Some((i.trim().parse::<usize>().ok()?, k.trim().parse::<usize>().ok()?)));
        let Some((index, count)) = parsed else {
            bail!("--shard {s:?}: expected I/K with whole numbers 0 ≤ I < K (shards are numbered from 0), e.g. 0/4");
        };
        if count == 0 {
            bail!("--shard {s}: the number of shards K must be at least 1");
        }
        if index >= count {
            bail!(
                "--shard {s}: shard index {index} out of range: shards are numbered 0 to {} (0-based)",
                count - 1
            );
        }
        Ok(ShardSpec { index, count })
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl ShardSpec {
    /// The shard's folder name inside the study folder: `shard-IIII-of-KKKK`.
    pub fn folder_name(&self) -> String {
        format!("shard-{:04}-of-{:04}", self.index, self.count)
    }

    /// The shard a folder name ([`ShardSpec::folder_name`]) stands for.
    pub fn from_folder_name(name: &str) -> Option<Self> {
        let (i, k) = name.strip_prefix("shard-")?.split_once("-of-")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(k) {
            return None;
        }
        let spec = ShardSpec {
            index: i.parse().ok()?,
            count: k.parse().ok()?,
        };
        (spec.index < spec.count && spec.folder_name() == name).then_some(spec)
    }
}

/// The commands that run as shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StudyCommand {
    Run,
    Escape,
    Scaling,
}

impl StudyCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyCommand::Run => "run",
            StudyCommand::Escape => "escape",
            StudyCommand::Scaling => "scaling",
        }
    }

    /// The preflight checks of the one-machine command.
    pub(crate) fn preflight(self) -> super::preflight::Command {
        match self {
            StudyCommand::Run => super::preflight::Command::Run,
            StudyCommand::Escape => super::preflight::Command::Escape,
            StudyCommand::Scaling => super::preflight::Command::Scaling,
        }
    }

    /// The command's own requirements on the experiment (the one-machine command checks the same).
    pub fn check(self, exp: &Experiment) -> Result<()> {
        match self {
            StudyCommand::Run => super::run::check(exp),
            StudyCommand::Escape => escape::check(exp),
            StudyCommand::Scaling => super::scaling::check(exp),
        }
    }
}

impl std::fmt::Display for StudyCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest-processing-time-first assignment of tasks with these costs to `k` shards: the shard of
/// each task. Tasks by decreasing cost (ties: lower task index first), each to the shard with the
/// smallest total cost so far (ties: lowest shard index). Deterministic.
pub fn assign(costs: &[u64], k: usize) -> Vec<usize> {
    assert!(k >= 1, "at least one shard");
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; k];
    let mut shard = vec![0; costs.len()];
    for i in order {
        let s = (0..k).min_by_key(|&s| (load[s], s)).expect("k ≥ 1");
        shard[i] = s;
        load[s] += costs[i];
    }
    shard
}

/// The tasks of each of `k` shards ([`assign`] with [`task_samples`] as cost), each in task order.
pub fn shard_tasks(exp: &Experiment, k: usize) -> Vec<Vec<RunTask>> {
    let all = tasks(exp);
    let costs: Vec<u64> = all.iter().map(|t| task_samples(exp, t.n)).collect();
    let mut out = vec![vec![]; k];
    for (task, s) in all.into_iter().zip(assign(&costs, k)) {
        out[s].push(task);
    }
    out
}

/// Hash of the resolved experiment (its JSON, every default filled in): shards of one study carry
/// the same.
pub fn experiment_hash(exp: &Experiment) -> Result<String> {
    Ok(fnv1a_hex(serde_json::to_string(exp)?.as_bytes()))
}

/// A task as written in manifests and result lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    pub n: usize,
    pub seed: u64,
    pub run_seed: u64,
}

impl From<&RunTask> for TaskId {
    fn from(t: &RunTask) -> Self {
        TaskId {
            n: t.n,
            seed: t.seed_index,
            run_seed: t.seed,
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "N = {} seed {}", self.n, self.seed)
    }
}

/// `manifest.json` of a shard folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub crate_version: String,
    pub command: StudyCommand,
    pub experiment_hash: String,
    /// "I/K".
    pub shard: String,
    pub index: usize,
    pub count: usize,
    /// The experiment file the shard was started from (absolute), for the rerun commands.
    pub experiment_file: PathBuf,
    /// The hdsgd binary that ran the shard (absolute), for the rerun commands.
    pub binary: PathBuf,
    /// The experiment's name and its file as written, with defaults filled in.
    pub experiment_name: String,
    pub experiment: ExperimentConfig,
    /// The shard's tasks, in task order.
    pub tasks: Vec<TaskId>,
}

impl Manifest {
    fn new(
        command: StudyCommand,
        exp: &Experiment,
        exp_file: &Path,
        spec: ShardSpec,
        tasks: &[RunTask],
    ) -> Result<Self> {
        Ok(Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            command,
            experiment_hash: experiment_hash(exp)?,
            shard: spec.to_string(),
            index: spec.index,
            count: spec.count,
            experiment_file: absolute(exp_file),
            binary: std::env::current_exe().unwrap_or_else(|_| "hdsgd".into()),
            experiment_name: exp.name.clone(),
            experiment: exp.config.clone(),
            tasks: tasks.iter().map(TaskId::from).collect(),
        })
    }

    /// The experiment, rebuilt from the manifest and checked against its hash.
    pub fn experiment(&self) -> Result<Experiment> {
        let exp = Experiment::from_config(self.experiment.clone(), &self.experiment_name)
            .context("the experiment in the manifest does not validate")?;
        let h = experiment_hash(&exp)?;
        if h != self.experiment_hash {
            bail!(
                "the experiment in the manifest hashes to {h}, not to its experiment_hash {} (edited by hand?)",
                self.experiment_hash
            );
        }
        Ok(exp)
    }

    /// The shard command that (re)runs this shard (it resumes from the finished tasks).
    pub fn rerun_command(&self, index: usize, out: &Path) -> String {
        format!(
            "{} {} {} --shard {index}/{} --out {}",
            shell_quote(&self.binary.to_string_lossy()),
            self.command,
            shell_quote(&self.experiment_file.to_string_lossy()),
            self.count,
            shell_quote(&absolute(out).to_string_lossy())
        )
    }
}

/// Reads and checks the format of `dir/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let (format, version) = (v["format"].as_str(), v["format_version"].as_u64());
    if format != Some(FORMAT) {
        bail!("{} is not an hdsgd shard manifest (format {format:?})", path.display());
    }
    if version != Some(FORMAT_VERSION as u64) {
        bail!(
            "{} is in shard format version {} (written by hdsgd {}); this hdsgd {} reads version {FORMAT_VERSION}: merge with the hdsgd that wrote it, or rerun the shard with this one",
            path.display(),
            v["format_version"],
            v["crate_version"].as_str().unwrap_or("?"),
            env!("CARGO_PKG_VERSION")
        );
    }
    serde_json::from_value(v).with_context(|| format!("reading {}", path.display()))
}

/// A finished task as stored in `results.jsonl`.
#[derive(Debug, Clone)]
pub enum TaskResult {
    /// `hdsgd run` and `hdsgd scaling`: the trajectory and its matched ODE.
    Run(Box<RunResult>),
    /// `hdsgd escape`: the run's escape measurement.
    Escape(EscapeRun),
}

impl TaskResult {
    pub fn task(&self) -> TaskId {
        match self {
            TaskResult::Run(r) => TaskId::from(&r.task),
            TaskResult::Escape(r) => TaskId {
                n: r.n,
                seed: r.seed_index,
                run_seed: r.run_seed,
            },
        }
    }

    /// One line of `results.jsonl` (with its newline).
    pub fn to_line(&self) -> Result<String> {
        match self {
            TaskResult::Run(r) => run_line(r),
            TaskResult::Escape(r) => escape_line(r),
        }
    }

    /// Parses a line written by [`TaskResult::to_line`] for `command`; `p`, `p_star` are the widths.
    pub fn from_line(line: &str, command: StudyCommand, p: usize, p_star: usize) -> Result<Self> {
        Ok(match command {
            StudyCommand::Run | StudyCommand::Scaling => {
                TaskResult::Run(Box::new(serde_json::from_str::<RunLine>(line)?.into_result(p, p_star)?))
            }
            StudyCommand::Escape => TaskResult::Escape(serde_json::from_str::<EscapeLine>(line)?.into_run()?),
        })
    }
}

/// The line of a finished run (with its newline).
fn run_line(r: &RunResult) -> Result<String> {
    let mut s = serde_json::to_string(&RunLine::from(r))?;
    s.push('\n');
    Ok(s)
}

/// The line of a finished escape run (with its newline).
fn escape_line(r: &EscapeRun) -> Result<String> {
    let mut s = serde_json::to_string(&EscapeLine::from(r))?;
    s.push('\n');
    Ok(s)
}

/// The results of a `results.jsonl`: the parsed lines with their line numbers (1-based), the byte
/// length of the complete lines, and whether a torn last line (no newline) followed them.
pub struct ResultsFile {
    pub lines: Vec<(usize, TaskResult)>,
    pub valid_len: u64,
    pub torn: bool,
}

/// Reads `path` (missing: no results). A complete line that does not parse is an error; an
/// incomplete last line (cut by an interruption) is reported in `torn`.
pub fn read_results(path: &Path, command: StudyCommand, p: usize, p_star: usize) -> Result<ResultsFile> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let valid = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..valid]).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let mut lines = vec![];
    for (i, line) in text.lines().enumerate() {
        let r = TaskResult::from_line(line, command, p, p_star)
            .with_context(|| format!("{} line {} is corrupt", path.display(), i + 1))?;
        lines.push((i + 1, r));
    }
    Ok(ResultsFile {
        lines,
        valid_len: valid as u64,
        torn: valid < bytes.len(),
    })
}

/// `hdsgd run|escape|scaling EXP --shard I/K`: runs shard I's tasks (resuming from its finished
/// ones) and writes them into `OUT/shard-IIII-of-KKKK/`. Returns that folder.
pub fn command(
    command: StudyCommand,
    exp: &Experiment,
    exp_file: &Path,
    opts: &OutputOptions,
    spec: ShardSpec,
) -> Result<PathBuf> {
    command.check(exp)?;
    let opts = &super::preflight::preflight_shard(exp, command.preflight(), opts)?;
    let start = Instant::now();
    let root = output_dir(exp, opts);
    let dir = root.join(spec.folder_name());
    let my_tasks = shard_tasks(exp, spec.count).swap_remove(spec.index);
    let manifest = Manifest::new(command, exp, exp_file, spec, &my_tasks)?;
    // The escape criterion comes from a plateau analysis: do it before writing anything.
    let escape_setup = match command {
        StudyCommand::Escape => Some(escape::setup(exp)?),
        _ => None,
    };
    prepare_folder(&dir, &manifest, opts.force)?;
    let (file, done) = open_results(&dir, command, exp, &manifest, spec)?;
    let todo: Vec<RunTask> = my_tasks
        .iter()
        .filter(|t| !done.contains(&TaskId::from(*t)))
        .copied()
        .collect();
    if opts.progress || !done.is_empty() {
        eprintln!(
            "{} shard {spec}: {} task(s), {} done before, {} to do",
            exp.name,
            my_tasks.len(),
            done.len(),
            todo.len()
        );
    }
    let file = Mutex::new(file);
    // One write per finished task, flushed, so that an interruption loses only unfinished tasks.
    let append = |line: String| -> Result<()> {
        let mut f = file.lock().map_err(|_| anyhow::anyhow!("results file lock poisoned"))?;
        f.write_all(line.as_bytes())?;
        f.flush()?;
        Ok(())
    };
    match escape_setup {
        None => {
            simulate_tasks(exp, &todo, opts.threads, opts.progress, &opts.cancel, &|r| {
                append(run_line(r)?)
            })?;
        }
        Some(setup) => {
            let prefix = format!("{} {spec}", exp.name);
            escape::run_escapes(exp, setup.rule, &todo, opts, prefix, |r| append(escape_line(r)?))?;
        }
    }
    write_done(&dir, spec, my_tasks.len(), todo.len(), start, opts)?;
    Ok(dir)
}

/// Opens (or creates) the shard's results file, locked, positioned at its end, with a torn last
/// line cut off; and the tasks it already holds, each of which must be one of the shard's, once.
fn open_results(
    dir: &Path,
    command: StudyCommand,
    exp: &Experiment,
    manifest: &Manifest,
    spec: ShardSpec,
) -> Result<(std::fs::File, std::collections::BTreeSet<TaskId>)> {
    let results_path = dir.join(RESULTS);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&results_path)
        .with_context(|| format!("opening {}", results_path.display()))?;
    lock(&file, &results_path, spec)?;
    let previous = read_results(&results_path, command, exp.model.p(), exp.model.p_star())?;
    let mut done = std::collections::BTreeSet::new();
    for (line, r) in &previous.lines {
        let id = r.task();
        if !manifest.tasks.contains(&id) {
            bail!(
                "{} line {line}: task {id} is not one of shard {spec}'s tasks: pass --force to start the shard afresh",
                results_path.display()
            );
        }
        if !done.insert(id) {
            bail!(
                "{} line {line}: task {id} is there twice: pass --force to start the shard afresh",
                results_path.display()
            );
        }
    }
    if previous.torn {
        eprintln!(
            "warning: {}: dropping a torn last line (an interrupted write); its task is run again",
            results_path.display()
        );
        file.set_len(previous.valid_len)?;
    }
    use std::io::Seek as _;
    file.seek(std::io::SeekFrom::End(0))?;
    Ok((file, done))
}

/// Writes `done.json`, the mark of a finished shard: its size, what the last invocation ran and
/// cost, and where (host, SLURM job).
fn write_done(
    dir: &Path,
    spec: ShardSpec,
    tasks: usize,
    ran: usize,
    start: Instant,
    opts: &OutputOptions,
) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let done_json = serde_json::json!({
        "shard": spec.to_string(),
        "tasks": tasks,
        "tasks_run_by_last_invocation": ran,
        "wall_seconds_last_invocation": start.elapsed().as_secs_f64(),
        "cpu_seconds_last_invocation": process_cpu_seconds(),
        "threads": if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads },
        "host": hostname(),
        "slurm_job_id": env("SLURM_JOB_ID"),
        "slurm_array_job_id": env("SLURM_ARRAY_JOB_ID"),
        "slurm_array_task_id": env("SLURM_ARRAY_TASK_ID"),
    });
    write_atomic(&dir.join(DONE), serde_json::to_string_pretty(&done_json)?.as_bytes())
}

/// Takes an exclusive lock on the results file for the life of the process, so that a second
/// invocation of the same shard (e.g. resubmitted while the first still runs) fails instead of
/// writing the same tasks twice. Where locks are unsupported (some network file systems) it warns.
fn lock(file: &std::fs::File, path: &Path, spec: ShardSpec) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own; the lock is released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                bail!(
                    "{} is locked by another running hdsgd: shard {spec} is already running",
                    path.display()
                );
            }
            eprintln!(
                "warning: {}: cannot lock ({e}); do not run shard {spec} twice at once",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path, spec);
    Ok(())
}

/// Creates the shard folder with its manifest, or checks that an existing one is this shard's
/// (then the shard resumes). `force` starts it afresh.
fn prepare_folder(dir: &Path, manifest: &Manifest, force: bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a folder", dir.display());
    }
    if dir.exists() && force {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if dir.join(MANIFEST).exists() {
        let old = read_manifest(dir).map_err(|e| anyhow::anyhow!("{e:#}: pass --force to start the shard afresh"))?;
        let same = old.experiment_hash == manifest.experiment_hash
            && old.command == manifest.command
            && old.crate_version == manifest.crate_version
            && old.tasks == manifest.tasks;
        if !same {
            bail!(
                "{} holds shard {} of `hdsgd {}` for experiment hash {} (hdsgd {}), not this one ({} for {}, hdsgd {}): pass --force to start it afresh, or --out to choose another folder",
                dir.display(),
                old.shard,
                old.command,
                old.experiment_hash,
                old.crate_version,
                manifest.command,
                manifest.experiment_hash,
                manifest.crate_version
            );
        }
        return Ok(());
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty but has no {MANIFEST}: pass --force to start the shard afresh, or --out to choose another folder",
            dir.display()
        );
    }
    write_atomic(&dir.join(MANIFEST), serde_json::to_string_pretty(manifest)?.as_bytes())
}

/// `path` made absolute against the current folder (not resolving links), cleaned of `.`.
pub fn absolute(path: &Path) -> PathBuf {
    let p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    p.components().collect()
}

/// `s` quoted for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// CPU time (user + system, all threads) of this process so far, in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9);
        }
    }
    None
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

// ---- result lines: mirrors of the result types, with exact floats ------------------------------

/// An f64 written exactly: finite values as JSON numbers (shortest round-trip form, parsed back
/// bit for bit with serde_json's `float_roundtrip`), non-finite ones as "NaN", "inf", "-inf".
#[derive(Debug, Clone, Copy)]
struct X(f64);

impl Serialize for X {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            s.serialize_f64(x)
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for X {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = X;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<X, E> {
                Ok(X(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<X, E> {
                Ok(X(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<X, E> {
                Ok(X(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<X, E> {
                match v {
                    "NaN" => Ok(X(f64::NAN)),
                    "inf" => Ok(X(f64::INFINITY)),
                    "-inf" => Ok(X(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn xs(v: &[f64]) -> Vec<X> {
    v.iter().map(|&x| X(x)).collect()
}

fn fs(v: &[X]) -> Vec<f64> {
    v.iter().map(|x| x.0).collect()
}

/// Overlaps: the three matrices in column-major order.
#[derive(Serialize, Deserialize)]
struct Ov {
    q: Vec<X>,
    m: Vec<X>,
    p: Vec<X>,
}

impl From<&Overlaps> for Ov {
    fn from(o: &Overlaps) -> Self {
        Ov {
            q: xs(o.q.as_slice()),
            m: xs(o.m.as_slice()),
            p: xs(o.p.as_slice()),
        }
    }
}

impl Ov {
    fn into_overlaps(self, p: usize, k: usize) -> Result<Overlaps> {
        if self.q.len() != p * p || self.m.len() != p * k || self.p.len() != k * k {
            bail!("overlaps of the wrong shape for p = {p}, p* = {k}");
        }
        Ok(Overlaps::new(
            DMatrix::from_column_slice(p, p, &fs(&self.q)),
            DMatrix::from_column_slice(p, k, &fs(&self.m)),
            DMatrix::from_column_slice(k, k, &fs(&self.p)),
        ))
    }
}

#[derive(Serialize, Deserialize)]
struct Rec {
    t: X,
    eg: X,
    train_loss: Option<X>,
    ov: Ov,
}

#[derive(Serialize, Deserialize)]
struct Traj {
    initial: Ov,
    records: Vec<Rec>,
    diverged_at: Option<X>,
    samples: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Stop {
    Diverged { t: X },
    Hook { t: X },
    Failed { t: X, message: String },
}

#[derive(Serialize, Deserialize)]
struct Ode {
    t: Vec<X>,
    overlaps: Vec<Ov>,
    eg: Vec<X>,
    stop: Option<Stop>,
}

/// A line of a run or scaling shard.
#[derive(Serialize, Deserialize)]
struct RunLine {
    n: usize,
    seed: u64,
    run_seed: u64,
    wall_seconds: X,
    trajectory: Traj,
    ode: Option<Ode>,
}

impl From<&RunResult> for RunLine {
    fn from(r: &RunResult) -> Self {
        let t = &r.trajectory;
        RunLine {
            n: r.task.n,
            seed: r.task.seed_index,
            run_seed: r.task.seed,
            wall_seconds: X(r.wall_seconds),
            trajectory: Traj {
                initial: Ov::from(&t.initial),
                records: t
                    .records
                    .iter()
                    .map(|rec| Rec {
                        t: X(rec.t),
                        eg: X(rec.eg),
                        train_loss: rec.train_loss.map(X),
                        ov: Ov::from(&rec.overlaps),
                    })
                    .collect(),
                diverged_at: t.diverged_at.map(X),
                samples: t.samples,
            },
            ode: r.ode.as_ref().map(|o| Ode {
                t: xs(&o.t),
                overlaps: o.overlaps.iter().map(Ov::from).collect(),
                eg: xs(&o.eg),
                stop: o.stop.as_ref().map(|s| match s {
                    OdeStop::Diverged { t } => Stop::Diverged { t: X(*t) },
                    OdeStop::Hook { t } => Stop::Hook { t: X(*t) },
                    OdeStop::Failed { t, message } => Stop::Failed {
                        t: X(*t),
                        message: message.clone(),
                    },
                }),
            }),
        }
    }
}

impl RunLine {
    fn into_result(self, p: usize, k: usize) -> Result<RunResult> {
        let t = self.trajectory;
        let records = t
            .records
            .into_iter()
            .map(|r| {
                Ok(Record {
                    t: r.t.0,
                    eg: r.eg.0,
                    train_loss: r.train_loss.map(|x| x.0),
                    overlaps: r.ov.into_overlaps(p, k)?,
                    // Shards refuse a trained second layer (preflight), so a is fixed.
                    a: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ode = match self.ode {
            None => None,
            Some(o) => Some(OdeSolution {
                t: fs(&o.t),
                overlaps: o
                    .overlaps
                    .into_iter()
                    .map(|ov| ov.into_overlaps(p, k))
                    .collect::<Result<Vec<_>>>()?,
                eg: fs(&o.eg),
                a: None,
                stop: o.stop.map(|s| match s {
                    Stop::Diverged { t } => OdeStop::Diverged { t: t.0 },
                    Stop::Hook { t } => OdeStop::Hook { t: t.0 },
                    Stop::Failed { t, message } => OdeStop::Failed { t: t.0, message },
                }),
            }),
        };
        Ok(RunResult {
            task: RunTask {
                n: self.n,
                seed_index: self.seed,
                seed: self.run_seed,
            },
            trajectory: Trajectory {
                initial: t.initial.into_overlaps(p, k)?,
                records,
                diverged_at: t.diverged_at.map(|x| x.0),
                samples: t.samples,
            },
            wall_seconds: self.wall_seconds.0,
            ode,
            weights: None,
        })
    }
}

/// A line of an escape shard: the fields of [`EscapeRun`].
#[derive(Serialize, Deserialize)]
struct EscapeLine {
    n: usize,
    seed: u64,
    run_seed: u64,
    t_escape: X,
    status: String,
    samples: u64,
    wall_seconds: X,
    conserved_drift: Option<X>,
}

impl From<&EscapeRun> for EscapeLine {
    fn from(r: &EscapeRun) -> Self {
        EscapeLine {
            n: r.n,
            seed: r.seed_index,
            run_seed: r.run_seed,
            t_escape: X(r.t_escape),
            status: r.status.as_str().into(),
            samples: r.samples,
            wall_seconds: X(r.wall_seconds),
            conserved_drift: r.conserved_drift.map(X),
        }
    }
}

impl EscapeLine {
    fn into_run(self) -> Result<EscapeRun> {
        Ok(EscapeRun {
            n: self.n,
            seed_index: self.seed,
            run_seed: self.run_seed,
            t_escape: self.t_escape.0,
            status: EscapeStatus::parse(&self.status).with_context(|| format!("unknown status {:?}", self.status))?,
            samples: self.samples,
            wall_seconds: self.wall_seconds.0,
            conserved_drift: self.conserved_drift.map(|x| x.0),
        })
    }
}

/// The results of all shards gathered by [`super::merge`], in task order, handed to the command's
/// output writer.
pub(crate) fn write_outputs(
    command: StudyCommand,
    exp: &Experiment,
    dir: &Path,
    opts: &OutputOptions,
    start: Instant,
    results: Vec<TaskResult>,
) -> Result<()> {
    let mut runs = vec![];
    let mut escapes = vec![];
    for r in results {
        match r {
            TaskResult::Run(r) => runs.push(*r),
            TaskResult::Escape(r) => escapes.push(r),
        }
    }
    match command {
        StudyCommand::Run => super::run::write_outputs(exp, dir, opts, start, &runs).map(|_| ()),
        StudyCommand::Scaling => super::scaling::write_outputs(exp, dir, opts, start, runs),
        StudyCommand::Escape => escape::write_merged(exp, dir, &escapes, start, opts),
    }
}

/// Per shard, the sum of the costs ([`task_samples`]) of its tasks: the plan `hdsgd slurm` prints.
pub fn shard_loads(exp: &Experiment, k: usize) -> Vec<u64> {
    shard_tasks(exp, k)
        .iter()
        .map(|ts| ts.iter().map(|t| task_samples(exp, t.n)).sum())
        .collect()
}

/// Task ids by (n, seed index), for the merge.
pub(crate) fn task_index(exp: &Experiment) -> BTreeMap<(usize, u64), usize> {
    tasks(exp)
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.n, t.seed_index), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_and_refuse() {
        assert_eq!("0/1".parse::<ShardSpec>().unwrap(), ShardSpec { index: 0, count: 1 });
        assert_eq!("3/4".parse::<ShardSpec>().unwrap(), ShardSpec { index: 3, count: 4 });
        for bad in [
            "0/0", "5/4", "4/4", "a/b", "3", "-1/4", "1/4/5", "", "1/", "/4", "1.0/4",
        ] {
            let e = bad.parse::<ShardSpec>().unwrap_err().to_string();
            assert!(e.starts_with("--shard"), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        let s = ShardSpec { index: 3, count: 12 };
        assert_eq!(s.folder_name(), "shard-0003-of-0012");
        assert_eq!(ShardSpec::from_folder_name("shard-0003-of-0012"), Some(s));
        let big = ShardSpec {
            index: 12345,
            count: 20000,
        };
        assert_eq!(ShardSpec::from_folder_name(&big.folder_name()), Some(big));
        for bad in [
            "shard-3-of-12",
            "shard-0012-of-0012",
            "shard-0003-of-0012x",
            "shard-+003-of-0012",
        ] {
            assert_eq!(ShardSpec::from_folder_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn lpt_assignment() {
        // Largest first, each to the least-loaded shard (lowest index on ties).
        // Order 1 (5), 3 (5), 2 (3), 4 (2), 0 (1): loads 5|0, 5|5, 8|5, 8|7, 8|8.
        assert_eq!(assign(&[1, 5, 3, 5, 2], 2), vec![1, 0, 0, 1, 1]);
        assert_eq!(assign(&[4, 4, 4], 5), vec![0, 1, 2]);
        assert_eq!(assign(&[], 3), Vec::<usize>::new());
        assert_eq!(assign(&[7, 7, 7, 7], 1), vec![0; 4]);
        // Two N with 8 seeds each on 3 shards: the large tasks spread first.
        let costs: Vec<u64> = [100u64; 8].into_iter().chain([400u64; 8]).collect();
        let a = assign(&costs, 3);
        let mut load = [0u64; 3];
        for (c, s) in costs.iter().zip(&a) {
            load[*s] += c;
        }
        assert_eq!(load.iter().sum::<u64>(), 4000);
        assert!(
            load.iter().max().unwrap() - load.iter().min().unwrap() <= 100,
            "{load:?}"
        );
    }

    #[test]
    fn exact_floats_round_trip() {
        let vals = [
            0.1 + 0.2,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            1.0,
            1e300,
            std::f64::consts::PI,
            -1.2345678901234567e-200,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let text = serde_json::to_string(&xs(&vals)).unwrap();
        let back: Vec<X> = serde_json::from_str(&text).unwrap();
        for (a, b) in vals.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.0.to_bits(), "{a} in {text}");
        }
        // Many random bit patterns.
        let mut s = 0x1234_5678_9abc_def0u64;
        let vals: Vec<f64> = (0..20000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                f64::from_bits(s)
            })
            .filter(|x| x.is_finite())
            .collect();
        let back: Vec<X> = serde_json::from_str(&serde_json::to_string(&xs(&vals)).unwrap()).unwrap();
        assert!(vals.iter().zip(&back).all(|(a, b)| a.to_bits() == b.0.to_bits()));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a/b-c_d.toml"), "/a/b-c_d.toml");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
