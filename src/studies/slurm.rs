//! `hdsgd slurm EXP --command run|escape|scaling --shards K`: a study as a SLURM job array (one
//! array task per shard, [`super::shard`]) and a merge job ([`super::merge`]) that waits for the
//! whole array (`--dependency=afterok`). Writes into the job folder `OUT/slurm/`:
//!
//! * `array.sh`: `#SBATCH --array=0-(K-1)`; task I runs
//!   `<this hdsgd> <command> <EXP> --shard I/K --threads $SLURM_CPUS_PER_TASK --out OUT`;
//! * `merge.sh`: `<this hdsgd> merge OUT --force`;
//! * `submit.sh`: submits both (what `--submit` does), with the commands to watch, rerun a shard
//!   and re-point the merge in its comments;
//! * `logs/`: the jobs' output (`shard-I-jobJ.out`, `merge-jobJ.out`); `jobs.txt` after `--submit`.
//!
//! Paths in the scripts are absolute (binary, experiment, OUT), so the jobs run from any folder.
//! With `--submit` it calls `sbatch --parsable` for the array, then for the merge with
//! `--dependency=afterok:<array>`, and prints the job ids and the follow-up commands.

use super::shard::{
    absolute, experiment_hash, read_manifest, shard_loads, shard_tasks, shell_quote, ShardSpec, StudyCommand,
};
use crate::config::Experiment;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `hdsgd slurm`.
#[derive(Debug, Args, Clone)]
pub struct SlurmArgs {
    /// Experiment file (TOML).
    pub experiment: PathBuf,
    /// The study to run as shards.
    #[arg(long, value_enum)]
    pub command: StudyCommand,
    /// Number of shards K (array tasks 0 … K−1).
    #[arg(long)]
    pub shards: usize,
    /// Time limit of each array task and of the merge (`#SBATCH --time`, e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account (`#SBATCH --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// CPUs per array task (`#SBATCH --cpus-per-task`; the shard runs with as many threads).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// Extra sbatch option for both scripts, e.g. `--sbatch-arg=--mem=2G` (repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Study folder: the shards and the merged outputs (default: the experiment's); the job
    /// folder is its `slurm/`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Submit the array and the merge with sbatch.
    #[arg(long)]
    pub submit: bool,
}

/// The scripts of a study.
pub struct JobScripts {
    pub array: String,
    pub merge: String,
    pub submit: String,
}

/// `sbatch` found on PATH.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file() && is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    true
}

fn sbatch_header(args: &SlurmArgs, job_name: &str, output: &str) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "#SBATCH --job-name={job_name}");
    let _ = writeln!(h, "#SBATCH --output={output}");
    let _ = writeln!(h, "#SBATCH --cpus-per-task={}", args.cpus_per_task);
    if let Some(t) = &args.time {
        let _ = writeln!(h, "#SBATCH --time={t}");
    }
    if let Some(p) = &args.partition {
        let _ = writeln!(h, "#SBATCH --partition={p}");
    }
    if let Some(a) = &args.account {
        let _ = writeln!(h, "#SBATCH --account={a}");
    }
    for a in &args.sbatch_args {
        let _ = writeln!(h, "#SBATCH {a}");
    }
    h
}

/// What the three scripts of a study share: the study, its folders, and the shell-quoted paths.
struct ScriptContext<'a> {
    args: &'a SlurmArgs,
    exp_file: &'a Path,
    out: &'a Path,
    bin: &'a Path,
    /// The job folder `OUT/slurm`.
    job: PathBuf,
    /// The job name, `hdsgd-NAME-COMMAND`.
    name: String,
    bin_q: String,
    exp_q: String,
    out_q: String,
    job_q: String,
}

impl<'a> ScriptContext<'a> {
    fn new(args: &'a SlurmArgs, exp: &Experiment, exp_file: &'a Path, out: &'a Path, bin: &'a Path) -> Self {
        let job = out.join("slurm");
        let q = |p: &Path| shell_quote(&p.to_string_lossy());
        ScriptContext {
            args,
            exp_file,
            out,
            bin,
            name: format!("hdsgd-{}-{}", exp.name, args.command),
            bin_q: q(bin),
            exp_q: q(exp_file),
            out_q: q(out),
            job_q: q(&job),
            job,
        }
    }

    /// The log file pattern `pattern` in the job folder's `logs/`.
    fn log(&self, pattern: &str) -> String {
        self.job.join("logs").join(pattern).to_string_lossy().into_owned()
    }
}

/// The three scripts for `exp` with study folder `out` (absolute) and binary `bin` (absolute).
pub fn scripts(args: &SlurmArgs, exp: &Experiment, exp_file: &Path, out: &Path, bin: &Path) -> JobScripts {
    let c = ScriptContext::new(args, exp, exp_file, out, bin);
    JobScripts {
        array: array_script(&c),
        merge: merge_script(&c),
        submit: submit_script(&c),
    }
}

/// `array.sh`: array task I runs shard I/K of the study with `$SLURM_CPUS_PER_TASK` threads.
fn array_script(c: &ScriptContext) -> String {
    let k = c.args.shards;
    let mut array = String::from("#!/bin/bash\n");
    let _ = write!(
        array,
        "# `hdsgd {cmd}` of {exp_file} as a SLURM job array: task I runs shard I of {k} (0-based).\n\
         # Written by `hdsgd slurm`; submit with submit.sh. A failed or cancelled task can be rerun\n\
         # alone, `sbatch --array=I {job}/array.sh`: it resumes from its shard's finished runs.\n",
        cmd = c.args.command,
        exp_file = c.exp_file.display(),
        job = c.job.display(),
    );
    array.push_str(&sbatch_header(c.args, &c.name, &c.log("shard-%a-job%A.out")));
    let _ = writeln!(array, "#SBATCH --array=0-{}", k - 1);
    let _ = write!(
        array,
        "set -euo pipefail\n\
         exec {bin_q} {cmd} {exp_q} --shard \"$SLURM_ARRAY_TASK_ID/{k}\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" --out {out_q}\n",
        bin_q = c.bin_q,
        exp_q = c.exp_q,
        out_q = c.out_q,
        cmd = c.args.command,
    );
    array
}

/// `merge.sh`: `hdsgd merge OUT --force`, run after the whole array.
fn merge_script(c: &ScriptContext) -> String {
    let k = c.args.shards;
    let mut merge = String::from("#!/bin/bash\n");
    let _ = write!(
        merge,
        "# Merges the {k} shards of {out} into the outputs of a one-machine `hdsgd {cmd}` (written\n\
         # into {out}; --force overwrites a previous merge). Submitted by submit.sh after the array.\n",
        out = c.out.display(),
        cmd = c.args.command,
    );
    merge.push_str(&sbatch_header(
        c.args,
        &format!("{}-merge", c.name),
        &c.log("merge-job%j.out"),
    ));
    let _ = write!(
        merge,
        "set -euo pipefail\n\
         exec {bin_q} merge {out_q} --force --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"\n",
        bin_q = c.bin_q,
        out_q = c.out_q,
    );
    merge
}

/// `submit.sh`: submits the array, then the merge with `--dependency=afterok:<array>`, records
/// the job ids in `jobs.txt`, and documents the follow-up commands in its comments.
fn submit_script(c: &ScriptContext) -> String {
    let k = c.args.shards;
    let mut submit = String::from("#!/bin/bash\n");
    let _ = write!(
        submit,
        "# `hdsgd {cmd}` of {exp_file} on SLURM, as {k} shards, written by `hdsgd slurm`.\n\
         # This script submits the array (array.sh), then the merge (merge.sh), which starts once every\n\
         # array task has succeeded (afterok), and writes the two job ids into jobs.txt. Then:\n\
         #\n\
         #   squeue -j ARRAY,MERGE\n\
         #       watch them (finished jobs: scontrol show job ID)\n\
         #   sbatch --parsable --array=I {job}/array.sh\n\
         #       rerun shard I alone after a failure or scancel (it resumes from its finished runs)\n\
         #   scontrol update JobId=MERGE Dependency=afterok:NEWJOB\n\
         #       then point the waiting merge at the new job (else it stays PENDING, reason\n\
         #       DependencyNeverSatisfied)\n\
         #   {bin} merge {out}\n\
         #       merge by hand (names missing shards and tasks, and the commands that rerun them)\n\
         #\n\
         # Shards: {out}/shard-IIII-of-{kk:04}/; merged outputs: {out}; logs: {job}/logs/.\n\
         set -euo pipefail\n\
         cd {job_q}\n\
         array=$(sbatch --parsable array.sh)\n\
         array=${{array%%;*}}\n\
         merge=$(sbatch --parsable --dependency=afterok:\"$array\" merge.sh)\n\
         merge=${{merge%%;*}}\n\
         printf 'array %s\\nmerge %s\\n' \"$array\" \"$merge\" >jobs.txt\n\
         echo \"submitted array job $array ({k} shards) and merge job $merge (afterok:$array)\"\n\
         echo \"  watch:  squeue -j $array,$merge\"\n\
         echo \"  rerun shard I:  sbatch --parsable --array=I {job}/array.sh; then scontrol update JobId=$merge Dependency=afterok:<new job id>\"\n",
        cmd = c.args.command,
        exp_file = c.exp_file.display(),
        job = c.job.display(),
        job_q = c.job_q,
        bin = c.bin.display(),
        out = c.out.display(),
        kk = k,
    );
    submit
}

/// `hdsgd slurm`: writes the job folder, and with `--submit` submits the array and the merge.
pub fn command(args: &SlurmArgs) -> Result<()> {
    let exp = Experiment::load(&args.experiment)?;
    args.command.check(&exp)?;
    super::preflight::check_shardable(&exp, args.command.preflight())?;
    check_args(args)?;
    let sbatch = if args.submit {
        Some(find_on_path("sbatch").context(
            "sbatch not found on PATH (needed by --submit; without --submit the job scripts are only written)",
        )?)
    } else {
        None
    };
    let out = absolute(&args.out.clone().unwrap_or_else(|| exp.output_dir.clone()));
    let exp_file = absolute(&args.experiment);
    let bin = std::env::current_exe().context("locating the hdsgd binary")?;
    check_existing_shards(args, &exp, &out)?;
    let s = scripts(args, &exp, &exp_file, &out, &bin);
    let job = out.join("slurm");
    write_job_folder(&job, &s)?;
    print_plan(args, &exp);
    println!("wrote {}/{{array.sh, merge.sh, submit.sh}}", job.display());
    let Some(sbatch) = sbatch else {
        println!("submit with: {}", shell_quote(&job.join("submit.sh").to_string_lossy()));
        return Ok(());
    };
    submit_jobs(args, &sbatch, &job, &out)
}

/// The numeric options: at least one shard, at least one CPU per task.
fn check_args(args: &SlurmArgs) -> Result<()> {
    if args.shards == 0 {
        bail!("--shards 0: the number of shards K must be at least 1");
    }
    if args.cpus_per_task == 0 {
        bail!("--cpus-per-task 0: must be at least 1");
    }
    Ok(())
}

/// Shards already in the study folder `out` must be of this study (same experiment hash, command
/// and shard count), or the array tasks would fail.
fn check_existing_shards(args: &SlurmArgs, exp: &Experiment, out: &Path) -> Result<()> {
    let hash = experiment_hash(exp)?;
    let Ok(rd) = std::fs::read_dir(out) else {
        return Ok(());
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(spec) = ShardSpec::from_folder_name(&name) else {
            continue;
        };
        if let Ok(m) = read_manifest(&e.path()) {
            if m.experiment_hash != hash || m.command != args.command || spec.count != args.shards {
                bail!(
                    "{} holds shard {} of `hdsgd {}` for experiment hash {}, not of this study (`{}`, {} shards, hash {hash}): choose another --out, or remove the old shards",
                    out.display(),
                    m.shard,
                    m.command,
                    m.experiment_hash,
                    args.command,
                    args.shards
                );
            }
        }
    }
    Ok(())
}

/// Prints the plan: tasks and samples per shard, and the imbalance of the largest shard.
fn print_plan(args: &SlurmArgs, exp: &Experiment) {
    let loads = shard_loads(exp, args.shards);
    let counts: Vec<usize> = shard_tasks(exp, args.shards).iter().map(|t| t.len()).collect();
    let total: u64 = loads.iter().sum();
    let max = loads.iter().copied().max().unwrap_or(0);
    let mean = total as f64 / args.shards as f64;
    println!(
        "{}: `hdsgd {}` as {} shard(s): {} task(s), {} to {} per shard; {:.3e} samples at most (t_max·N per run), {:.3e} in the largest shard ({:.1}% above the mean)",
        exp.name,
        args.command,
        args.shards,
        counts.iter().sum::<usize>(),
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
        total as f64,
        max as f64,
        if mean > 0.0 { (max as f64 / mean - 1.0) * 100.0 } else { 0.0 }
    );
}

/// `--submit`: submits the array, then the merge after it (afterok), records the job ids in
/// `jobs.txt` and prints the follow-up commands.
fn submit_jobs(args: &SlurmArgs, sbatch: &Path, job: &Path, out: &Path) -> Result<()> {
    let array = sbatch_parsable(sbatch, job, &[], "array.sh")?;
    let merge = sbatch_parsable(sbatch, job, &[format!("--dependency=afterok:{array}")], "merge.sh")?;
    std::fs::write(job.join("jobs.txt"), format!("array {array}\nmerge {merge}\n"))?;
    let script = shell_quote(&job.join("array.sh").to_string_lossy());
    println!(
        "submitted array job {array} ({} shard(s), tasks 0-{}) and merge job {merge} (afterok:{array})",
        args.shards,
        args.shards - 1
    );
    println!("  watch:          squeue -j {array},{merge}    (finished: scontrol show job {array})");
    println!("  rerun shard I:  sbatch --parsable --array=I {script}    (it resumes from its finished runs)");
    println!("  then:           scontrol update JobId={merge} Dependency=afterok:<new job id>");
    println!("  merged outputs: {} (logs: {}/logs)", out.display(), job.display());
    Ok(())
}

/// `sbatch --parsable EXTRA SCRIPT` in the job folder: the job id it prints (without the cluster
/// name after `;`), which must be a number.
fn sbatch_parsable(sbatch: &Path, job: &Path, extra: &[String], script: &str) -> Result<String> {
    let o = std::process::Command::new(sbatch)
        .arg("--parsable")
        .args(extra)
        .arg(script)
        .current_dir(job)
        .output()
        .with_context(|| format!("running {}", sbatch.display()))?;
    if !o.status.success() {
        bail!(
            "sbatch {script} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&o.stdout);
    let id = id.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "sbatch {script}: unexpected output {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    Ok(id)
}

/// Writes the scripts; on failure removes what it created, so that nothing is left behind.
fn write_job_folder(job: &Path, s: &JobScripts) -> Result<()> {
    // The first folder of the path that does not exist yet: removed again on failure.
    let mut created = None;
    let mut p = Some(job);
    while let Some(d) = p {
        if d.exists() {
            break;
        }
        created = Some(d.to_path_buf());
        p = d.parent();
    }
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(job.join("logs"))?;
        for (name, text) in [("array.sh", &s.array), ("merge.sh", &s.merge), ("submit.sh", &s.submit)] {
            let path = job.join(name);
            std::fs::write(&path, text)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        if let Some(c) = created {
            let _ = std::fs::remove_dir_all(c);
        }
        bail!("cannot write the job folder {}: {e}", job.display());
    }
    Ok(())
}
