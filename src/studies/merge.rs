//! `hdsgd merge DIR`: puts the shards of one study back together ([`super::shard`]) and writes the
//! files of the one-machine command, through the same output code: the merged CSVs are identical
//! byte for byte to those of a one-machine run of the same experiment (the timings in
//! `summary.json` aside).
//!
//! It refuses, naming what is wrong: shard folders of another shard format version, of different
//! experiments (hash of the resolved experiment), commands, shard counts K or hdsgd versions;
//! tasks found twice, or not in their shard's assignment; missing shards and missing tasks, each
//! with the command that reruns the shard (which resumes from its finished tasks).
//!
//! The merged files go into DIR itself, beside the shard folders (or into `--out`), with
//! `merge.json` (the shards merged, their hosts and timings).

use super::outdir::Staging;
use super::output::{check_output_dir, write_atomic};
use super::runner::RunTask;
use super::shard::{
    self, absolute, read_manifest, read_results, shard_tasks, Manifest, ShardSpec, StudyCommand, TaskId, TaskResult,
};
use super::{DivergedRuns, OutputOptions};
use crate::config::Experiment;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `hdsgd merge`.
#[derive(Debug, Args, Clone)]
pub struct MergeArgs {
    /// The study folder holding the shard folders (shard-IIII-of-KKKK/).
    pub dir: PathBuf,
    /// Folder of the merged outputs (default: DIR itself, beside the shard folders).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite merged outputs already there.
    #[arg(long)]
    pub force: bool,
    /// Worker threads, for the outputs that compute (default: all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// At most this many items of a list are named in an error.
const NAMED: usize = 12;

fn name_some<T: std::fmt::Display>(items: &[T]) -> String {
    let mut s: Vec<String> = items.iter().take(NAMED).map(|x| x.to_string()).collect();
    if items.len() > NAMED {
        s.push(format!("and {} more", items.len() - NAMED));
    }
    s.join(", ")
}

/// One shard folder found in DIR.
struct Found {
    spec: ShardSpec,
    folder: String,
    manifest: Manifest,
}

/// `hdsgd merge`: checks the shards of DIR, gathers their results in task order and writes the
/// command's outputs. Returns the output folder.
pub fn command(args: &MergeArgs) -> Result<PathBuf> {
    let start = Instant::now();
    let dir = &args.dir;
    let found = find_shards(dir)?;
    let (exp, expected) = check_study(dir, &found)?;
    let first = &found[0].manifest;
    let command = first.command;
    let index = shard::task_index(&exp);
    let gathered = gather(dir, &found, command, &exp, &index)?;
    refuse_incomplete(dir, &exp, &found, &expected, gathered.problems, &gathered.missing_tasks)?;

    // Every task exactly once: write the command's outputs from them, in task order.
    let out = args.out.clone().unwrap_or_else(|| dir.clone());
    check_merge_output(dir, &out, args.force)?;
    // Staged (studies::outdir): into another folder, a staging folder renamed into place; beside
    // the shard folders, staged files moved in one by one with merge.json last.
    let stage = if absolute(&out) == absolute(dir) {
        Staging::begin_files(&out, "merge.json")?
    } else {
        Staging::begin(&out, args.force)?
    };
    let results: Vec<TaskResult> = gathered
        .slots
        .into_iter()
        .map(|r| r.expect("every task present"))
        .collect();
    let run_seconds: f64 = results
        .iter()
        .map(|r| match r {
            TaskResult::Run(r) => r.wall_seconds,
            TaskResult::Escape(r) => r.wall_seconds,
        })
        .sum();
    let opts = OutputOptions {
        out: Some(out.clone()),
        threads: args.threads,
        force: args.force,
        progress: !args.quiet && std::io::stderr().is_terminal(),
        ..Default::default()
    };
    let outcome = shard::write_outputs(command, &exp, stage.path(), &opts, start, results);
    if outcome.is_ok() || outcome.as_ref().is_err_and(|e| e.is::<DivergedRuns>()) {
        let merge = merge_json(dir, &found, &exp, index.len(), run_seconds, start);
        write_atomic(
            &stage.path().join("merge.json"),
            serde_json::to_string_pretty(&merge)?.as_bytes(),
        )?;
    }
    stage.finish(outcome)?;
    Ok(out)
}

/// The shard folders of DIR (shard-IIII-of-KKKK/, in name order), each with its manifest.
fn find_shards(dir: &Path) -> Result<Vec<Found>> {
    if !dir.is_dir() {
        bail!("{}: no such folder", dir.display());
    }
    let mut found = vec![];
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shard-"))
        .collect();
    entries.sort();
    for name in entries {
        let Some(spec) = ShardSpec::from_folder_name(&name) else {
            bail!(
                "{}: a folder named like a shard folder but not shard-IIII-of-KKKK with I < K",
                dir.join(&name).display()
            );
        };
        let manifest = read_manifest(&dir.join(&name))?;
        if (manifest.index, manifest.count) != (spec.index, spec.count) {
            bail!(
                "{}: its manifest is that of shard {} (folder renamed?)",
                dir.join(&name).display(),
                manifest.shard
            );
        }
        found.push(Found {
            spec,
            folder: name,
            manifest,
        });
    }
    if found.is_empty() {
        bail!(
            "{}: no shard folders (shard-IIII-of-KKKK/) to merge: run `hdsgd run|escape|scaling EXP --shard I/K --out {}` first",
            dir.display(),
            dir.display()
        );
    }
    Ok(found)
}

/// One study: same experiment, command, K and hdsgd version everywhere, and every shard's task
/// list its assignment in this hdsgd. Returns the experiment and the assignment of every shard.
fn check_study(dir: &Path, found: &[Found]) -> Result<(Experiment, Vec<Vec<RunTask>>)> {
    agree(found, "experiments (experiment hash)", |m| m.experiment_hash.clone())?;
    agree(found, "commands", |m| m.command.to_string())?;
    agree(found, "shard counts K", |m| m.count.to_string())?;
    agree(found, "hdsgd versions", |m| m.crate_version.clone())?;
    let exp = found[0]
        .manifest
        .experiment()
        .with_context(|| format!("{}/manifest.json", found[0].folder))?;
    let expected = shard_tasks(&exp, found[0].manifest.count);
    for f in found {
        let want: Vec<TaskId> = expected[f.spec.index].iter().map(TaskId::from).collect();
        if f.manifest.tasks != want {
            bail!(
                "{}: its task list is not shard {}'s assignment in this hdsgd (written by another version?)",
                dir.join(&f.folder).display(),
                f.spec
            );
        }
    }
    Ok((exp, expected))
}

/// The shards' results in task order, and what is out of place, duplicated or missing.
struct Gathered {
    slots: Vec<Option<TaskResult>>,
    /// Tasks out of place, then duplicated tasks.
    problems: Vec<String>,
    /// Per shard index, its tasks without a result.
    missing_tasks: BTreeMap<usize, Vec<TaskId>>,
}

fn gather(
    dir: &Path,
    found: &[Found],
    command: StudyCommand,
    exp: &Experiment,
    index: &BTreeMap<(usize, u64), usize>,
) -> Result<Gathered> {
    let (p, p_star) = (exp.model.p(), exp.model.p_star());
    let mut g = Gathered {
        slots: (0..index.len()).map(|_| None).collect(),
        problems: vec![],
        missing_tasks: BTreeMap::new(),
    };
    let mut seen: BTreeMap<TaskId, Vec<String>> = BTreeMap::new();
    for f in found {
        let path = dir.join(&f.folder).join("results.jsonl");
        let file = read_results(&path, command, p, p_star)?;
        if file.torn {
            eprintln!(
                "warning: {}: ignoring a torn last line (an interrupted write); rerunning the shard redoes that task",
                path.display()
            );
        }
        let mut here = std::collections::BTreeSet::new();
        for (line, r) in file.lines {
            let id = r.task();
            seen.entry(id)
                .or_default()
                .push(format!("{}/results.jsonl line {line}", f.folder));
            if !f.manifest.tasks.contains(&id) {
                g.problems.push(format!(
                    "{}/results.jsonl line {line}: task {id} is not one of shard {}'s tasks",
                    f.folder, f.spec
                ));
                continue;
            }
            here.insert(id);
            g.slots[index[&(id.n, id.seed)]] = Some(r);
        }
        let missing: Vec<TaskId> = f.manifest.tasks.iter().filter(|t| !here.contains(t)).copied().collect();
        if !missing.is_empty() {
            g.missing_tasks.insert(f.spec.index, missing);
        }
    }
    let duplicates: Vec<String> = seen
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| format!("task {id} found {} times ({})", at.len(), at.join(", ")))
        .collect();
    if !duplicates.is_empty() {
        g.problems.push(format!("duplicated tasks: {}", name_some(&duplicates)));
    }
    Ok(g)
}

/// Refuses to merge when anything is out of place, duplicated or missing: one error listing the
/// problems (`problems`, then the missing shards, then the unfinished ones) and the commands that
/// rerun the shards concerned.
fn refuse_incomplete(
    dir: &Path,
    exp: &Experiment,
    found: &[Found],
    expected: &[Vec<RunTask>],
    mut problems: Vec<String>,
    missing_tasks: &BTreeMap<usize, Vec<TaskId>>,
) -> Result<()> {
    let first = &found[0].manifest;
    let (command, k) = (first.command, first.count);
    let present: Vec<usize> = found.iter().map(|f| f.spec.index).collect();
    let missing_shards: Vec<usize> = (0..k).filter(|i| !present.contains(i)).collect();
    if !missing_shards.is_empty() {
        let names: Vec<String> = missing_shards
            .iter()
            .map(|&i| {
                let spec = ShardSpec { index: i, count: k };
                format!("{spec} ({}, {} task(s))", spec.folder_name(), expected[i].len())
            })
            .collect();
        problems.push(format!(
            "missing {} of {k} shard(s): {}",
            missing_shards.len(),
            name_some(&names)
        ));
    }
    for (i, tasks) in missing_tasks {
        problems.push(format!(
            "shard {i}/{k} is unfinished: {} of its {} task(s) missing: {}",
            tasks.len(),
            expected[*i].len(),
            name_some(tasks)
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "cannot merge {} ({} of `hdsgd {command}`, {k} shard(s)):\n  {}",
        dir.display(),
        exp.name,
        problems.join("\n  ")
    );
    let rerun: Vec<usize> = missing_shards
        .iter()
        .chain(missing_tasks.keys())
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !rerun.is_empty() {
        msg.push_str("\nrerun (a shard resumes from its finished tasks):");
        for &i in &rerun {
            msg.push_str(&format!("\n  {}", first.rerun_command(i, dir)));
        }
        let script = absolute(&dir.join("slurm").join("array.sh"));
        if script.exists() {
            let list: Vec<String> = rerun.iter().map(|i| i.to_string()).collect();
            msg.push_str(&format!(
                "\nor on SLURM: sbatch --array={} {}",
                list.join(","),
                shard::shell_quote(&script.to_string_lossy())
            ));
        }
    }
    bail!(msg);
}

/// The content of `merge.json`: the shards merged, their hosts and timings.
fn merge_json(
    dir: &Path,
    found: &[Found],
    exp: &Experiment,
    tasks: usize,
    run_seconds: f64,
    start: Instant,
) -> serde_json::Value {
    let first = &found[0].manifest;
    let shards: Vec<serde_json::Value> = found
        .iter()
        .map(|f| {
            let done = std::fs::read_to_string(dir.join(&f.folder).join("done.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            json!({"shard": f.spec.to_string(), "folder": f.folder, "tasks": f.manifest.tasks.len(), "done": done})
        })
        .collect();
    json!({
        "crate": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "shard_format_version": shard::FORMAT_VERSION,
        "command": first.command,
        "experiment": exp.name,
        "experiment_hash": first.experiment_hash,
        "experiment_file": first.experiment_file,
        "merged_from": absolute(dir),
        "shard_count": first.count,
        "tasks": tasks,
        "run_wall_seconds_sum": run_seconds,
        "wall_seconds_merge": start.elapsed().as_secs_f64(),
        "cpu_seconds_merge": shard::process_cpu_seconds(),
        "shards": shards,
    })
}

/// All shards must agree on `what`; otherwise an error naming the groups of folders.
fn agree(found: &[Found], what: &str, key: impl Fn(&Manifest) -> String) -> Result<()> {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for f in found {
        groups.entry(key(&f.manifest)).or_default().push(&f.folder);
    }
    if groups.len() > 1 {
        let parts: Vec<String> = groups
            .iter()
            .map(|(k, folders)| format!("{k} in {}", name_some(folders)))
            .collect();
        bail!(
            "the shard folders are of different {what}: {}; merge the shards of one study (move the others away)",
            parts.join("; ")
        );
    }
    Ok(())
}

/// The merged outputs go beside the shard folders (DIR may hold only shard folders and the job
/// folder `slurm/` unless `force`), or into another folder (empty unless `force`).
fn check_merge_output(dir: &Path, out: &Path, force: bool) -> Result<()> {
    if absolute(out) != absolute(dir) {
        return check_output_dir(out, force);
    }
    if force {
        return Ok(());
    }
    let mut others: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n == "slurm" || ShardSpec::from_folder_name(n).is_some()))
        .collect();
    others.sort();
    if !others.is_empty() {
        bail!(
            "{} already holds outputs ({}): pass --force to overwrite them, or --out to merge into another folder",
            dir.display(),
            name_some(&others)
        );
    }
    Ok(())
}
