//! Sharded studies without a cluster: `hdsgd run|escape|scaling --shard I/K` then `hdsgd merge`
//! give the one-machine files byte for byte (K = 1, 3, 4 and K > tasks); the merge refuses mixed,
//! duplicated, missing and foreign-format shards, naming them; an interrupted shard resumes; bad
//! `--shard` values and `hdsgd slurm` errors are one-line errors that write nothing.

mod common;
use common::hdsgd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small `run` study: quadratic p = 2, p* = 1, 2 N × 3 seeds, log grid.
fn run_text() -> String {
    common::small_quadratic("[60, 120]", 3, 3.0, 8)
        .set("", "name", "\"small\"")
        .set("simulation", "base_seed", 7)
        .set("time", "grid", "\"log\"")
        .set("time", "t_min", 0.05)
        .text()
}

/// Quadratic p = p* = 1 escape (tests/studies.rs), 2 N × 4 seeds.
fn escape_text() -> String {
    common::escape_p1("[100, 200]", 4, 30.0, 600)
        .set("", "name", "\"esc\"")
        .text()
}

const SCALING: &str = r#"
name = "sca"
[model]
activation = "quadratic"
p = 2
p_star = 1
v = "ones"
[training]
eta = 0.2
[simulation]
n = [100, 200]
seeds = 4
[time]
t_max = 2.0
points = 4
[scaling]
windows = [[0.5, 1.0], [1.5, 2.0]]
"#;

fn ok(args: &[&str]) -> Output {
    let o = hdsgd(args);
    assert!(o.status.success(), "hdsgd {args:?} failed: {}", stderr(&o));
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs every shard of K (one process each, 1 thread) into `out`.
fn shards(cmd: &str, exp: &Path, k: usize, out: &Path) {
    for i in 0..k {
        ok(&[
            cmd,
            s(exp),
            "--shard",
            &format!("{i}/{k}"),
            "--out",
            s(out),
            "--threads",
            "1",
        ]);
    }
}

fn one_machine(cmd: &str, exp: &Path, out: &Path) {
    ok(&[cmd, s(exp), "--out", s(out), "--threads", "2"]);
}

fn check_study(cmd: &str, text: &str, ks: &[usize], files: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let exp = write(tmp.path(), "exp.toml", text);
    let one = tmp.path().join("one");
    one_machine(cmd, &exp, &one);
    for &k in ks {
        let dir = tmp.path().join(format!("k{k}"));
        shards(cmd, &exp, k, &dir);
        ok(&["merge", s(&dir), "--threads", "1"]);
        assert_eq!(common::assert_same_outputs(&one, &dir), files, "{cmd} K = {k}");
        assert!(dir.join("merge.json").exists());
    }
}

#[test]
fn run_shards_merge_to_the_one_machine_bytes() {
    // 6 tasks; K = 10 leaves shards without tasks.
    check_study("run", &run_text(), &[1, 3, 4, 10], 4);
}

#[test]
fn escape_shards_merge_to_the_one_machine_bytes() {
    // escape_times, escape_summary, escape_fit, the runs file's sidecar escape_runs.json and the two figures.
    check_study("escape", &escape_text(), &[1, 3, 4], 6);
}

#[test]
fn scaling_shards_merge_to_the_one_machine_bytes() {
    // One more than before issue 18: scaling_theory.csv (the linear-noise prediction).
    check_study("scaling", SCALING, &[1, 3, 4], 5);
}

/// A merged escape folder is a finished one-machine folder: `hdsgd escape` there runs nothing
/// new and writes the same files.
#[test]
fn merged_escape_folder_is_complete_for_the_escape_command() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = write(tmp.path(), "exp.toml", &escape_text());
    let dir = tmp.path().join("m");
    shards("escape", &exp, 3, &dir);
    ok(&["merge", s(&dir)]);
    let times = std::fs::read(dir.join("escape_times.csv")).unwrap();
    let runs = std::fs::read(dir.join("escape_runs.csv")).unwrap();
    ok(&["escape", s(&exp), "--out", s(&dir)]);
    assert_eq!(std::fs::read(dir.join("escape_times.csv")).unwrap(), times);
    assert_eq!(
        std::fs::read(dir.join("escape_runs.csv")).unwrap(),
        runs,
        "runs were redone"
    );
}

#[test]
fn bad_shard_values_are_one_line_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = write(tmp.path(), "exp.toml", &run_text());
    let out = tmp.path().join("out");
    for (value, needle) in [
        ("0/0", "at least 1"),
        ("5/4", "out of range"),
        ("4/4", "out of range"),
        ("abc", "expected I/K"),
        ("3", "expected I/K"),
        ("-1/4", "expected I/K"),
        ("1/4/5", "expected I/K"),
        ("", "expected I/K"),
    ] {
        for cmd in ["run", "escape", "scaling"] {
            let o = hdsgd(&[cmd, s(&exp), "--out", s(&out), &format!("--shard={value}")]);
            assert_eq!(o.status.code(), Some(1), "{cmd} --shard {value:?}");
            let err = stderr(&o);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with("error: --shard") && err.contains(needle), "{err}");
            assert!(!out.exists(), "{cmd} --shard {value:?} wrote {}", out.display());
        }
    }
}

/// Folder of a finished K-shard study of `text`.
fn sharded(tmp: &Path, name: &str, text: &str, cmd: &str, k: usize) -> (PathBuf, PathBuf) {
    let exp = write(tmp, &format!("{name}.toml"), text);
    let dir = tmp.join(name);
    shards(cmd, &exp, k, &dir);
    (exp, dir)
}

fn merge_error(dir: &Path) -> String {
    let o = hdsgd(&["merge", s(dir)]);
    assert_eq!(o.status.code(), Some(1), "merge of {} succeeded", dir.display());
    assert!(!dir.join("trajectories.csv").exists() && !dir.join("merge.json").exists());
    stderr(&o)
}

#[test]
fn merge_refuses_what_does_not_fit_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (exp, dir) = sharded(t, "a", &run_text(), "run", 3);
    let shard1 = dir.join("shard-0001-of-0003");
    let results = shard1.join("results.jsonl");
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.lines().count(), 2);

    // Empty folder, and a folder that does not exist.
    let empty = t.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = merge_error(&empty);
    assert!(e.contains("no shard folders") && e.lines().count() == 1, "{e}");
    assert!(std::fs::read_dir(&empty).unwrap().next().is_none());
    assert!(merge_error(&t.join("nope")).contains("no such folder"));

    // A missing shard: named, with the command that reruns it, which works.
    let moved = t.join("moved");
    std::fs::rename(&shard1, &moved).unwrap();
    let e = merge_error(&dir);
    assert!(
        e.contains("missing 1 of 3 shard(s): 1/3 (shard-0001-of-0003, 2 task(s))"),
        "{e}"
    );
    let rerun = e
        .lines()
        .find(|l| l.contains("--shard 1/3"))
        .expect("rerun command")
        .trim();
    let words: Vec<&str> = rerun.split(' ').collect();
    assert_eq!(words[0], env!("CARGO_BIN_EXE_hdsgd"));
    assert_eq!(&words[1..], ["run", s(&exp), "--shard", "1/3", "--out", s(&dir)]);
    ok(&words[1..]);
    ok(&["merge", s(&dir)]);
    let merged = std::fs::read(dir.join("trajectories.csv")).unwrap();
    // A second merge into the same folder asks for --force.
    let o = hdsgd(&["merge", s(&dir)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let again = t.join("again");
    ok(&["merge", s(&dir), "--out", s(&again)]);
    assert_eq!(std::fs::read(again.join("trajectories.csv")).unwrap(), merged);
    for f in [
        "trajectories.csv",
        "ode.csv",
        "summary.json",
        "eg.svg",
        "overlaps.svg",
        "merge.json",
    ] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }

    // Missing tasks: named, with the rerun command.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&results, format!("{}\n", lines[0])).unwrap();
    let e = merge_error(&dir);
    assert!(
        e.contains("shard 1/3 is unfinished: 1 of its 2 task(s) missing: N = "),
        "{e}"
    );
    assert!(e.contains("--shard 1/3 --out"), "{e}");

    // A duplicated task: named with both places.
    std::fs::write(&results, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[0])).unwrap();
    let e = merge_error(&dir);
    assert!(e.contains("duplicated tasks: task N = "), "{e}");
    assert!(
        e.contains("shard-0001-of-0003/results.jsonl line 1, shard-0001-of-0003/results.jsonl line 3"),
        "{e}"
    );
    std::fs::write(&results, &text).unwrap();

    // Shards of another experiment in the folder.
    let (_, other) = sharded(t, "b", &run_text().replace("eta = 0.2", "eta = 0.25"), "run", 3);
    let keep = t.join("keep");
    std::fs::rename(dir.join("shard-0002-of-0003"), &keep).unwrap();
    std::fs::rename(other.join("shard-0002-of-0003"), dir.join("shard-0002-of-0003")).unwrap();
    let e = merge_error(&dir);
    assert!(
        e.contains("different experiments (experiment hash)") && e.contains("shard-0002-of-0003"),
        "{e}"
    );
    std::fs::remove_dir_all(dir.join("shard-0002-of-0003")).unwrap();
    std::fs::rename(&keep, dir.join("shard-0002-of-0003")).unwrap();

    // Shards of another K.
    let (_, k4) = sharded(t, "c", &run_text(), "run", 4);
    std::fs::rename(k4.join("shard-0003-of-0004"), dir.join("shard-0003-of-0004")).unwrap();
    let e = merge_error(&dir);
    assert!(e.contains("different shard counts K"), "{e}");
    std::fs::remove_dir_all(dir.join("shard-0003-of-0004")).unwrap();

    // Another shard format version.
    let m = shard1.join("manifest.json");
    let manifest = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        manifest.replace("\"format_version\": 1,", "\"format_version\": 99,"),
    )
    .unwrap();
    let e = merge_error(&dir);
    assert!(
        e.contains("shard format version 99") && e.contains("shard-0001-of-0003"),
        "{e}"
    );
    std::fs::write(&m, &manifest).unwrap();

    // Everything restored: the merge is the same as before.
    ok(&["merge", s(&dir)]);
    assert_eq!(std::fs::read(dir.join("trajectories.csv")).unwrap(), merged);
}

/// An interrupted shard (a torn last line) resumes: the finished tasks are kept, the torn one is
/// redone, and the merge is the same; a finished shard runs nothing again; a shard folder of
/// another experiment is refused unless --force.
#[test]
fn interrupted_shards_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for (cmd, text) in [("run", &run_text()), ("escape", &escape_text())] {
        let (exp, dir) = sharded(t, cmd, text, cmd, 2);
        ok(&["merge", s(&dir), "--out", s(&t.join(format!("{cmd}-ref")))]);
        let results = dir.join("shard-0000-of-0002/results.jsonl");
        let full = std::fs::read_to_string(&results).unwrap();
        let lines: Vec<&str> = full.lines().collect();
        assert!(lines.len() >= 3);
        // Lose the last task and cut the one before in the middle.
        let torn = format!(
            "{}\n{}",
            lines[..lines.len() - 2].join("\n"),
            &lines[lines.len() - 2][..40]
        );
        std::fs::write(&results, torn).unwrap();
        let o = ok(&[cmd, s(&exp), "--shard", "0/2", "--out", s(&dir), "--threads", "1"]);
        let err = stderr(&o);
        assert!(err.contains("torn last line"), "{err}");
        assert!(
            err.contains(&format!("{} done before, 2 to do", lines.len() - 2)),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&results).unwrap().lines().count(), lines.len());
        // Finished: nothing to do.
        let o = ok(&[cmd, s(&exp), "--shard", "0/2", "--out", s(&dir), "--threads", "1"]);
        assert!(stderr(&o).contains(", 0 to do"), "{}", stderr(&o));
        let merged = t.join(format!("{cmd}-merged"));
        ok(&["merge", s(&dir), "--out", s(&merged)]);
        assert!(common::assert_same_outputs(&t.join(format!("{cmd}-ref")), &merged) >= 4);
        // The folder of another experiment's shard.
        let other = write(t, "other.toml", &text.replace("seeds = ", "seeds = 1"));
        let o = hdsgd(&[cmd, s(&other), "--shard", "0/2", "--out", s(&dir)]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&results).unwrap().lines().count(), lines.len());
    }
}

#[test]
fn slurm_writes_the_job_folder_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let exp = write(t, "exp.toml", &escape_text());
    let out = t.join("study");
    let o = ok(&[
        "slurm",
        s(&exp),
        "--command",
        "escape",
        "--shards",
        "4",
        "--time",
        "00:10:00",
        "--partition",
        "p",
        "--account",
        "acc",
        "--cpus-per-task",
        "2",
        "--sbatch-arg=--mem=1G",
        "--out",
        s(&out),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("4 shard(s): 8 task(s), 2 to 2 per shard"), "{stdout}");
    let array = std::fs::read_to_string(out.join("slurm/array.sh")).unwrap();
    for line in [
        "#SBATCH --array=0-3",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=00:10:00",
        "#SBATCH --partition=p",
        "#SBATCH --account=acc",
        "#SBATCH --mem=1G",
        &format!(
            "exec {} escape {} --shard \"$SLURM_ARRAY_TASK_ID/4\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" --out {}",
            env!("CARGO_BIN_EXE_hdsgd"),
            s(&exp),
            s(&out)
        ),
    ] {
        assert!(array.lines().any(|l| l == line), "no line {line:?} in\n{array}");
    }
    let merge = std::fs::read_to_string(out.join("slurm/merge.sh")).unwrap();
    assert!(merge.contains(&format!("merge {} --force", s(&out))), "{merge}");
    let submit = std::fs::read_to_string(out.join("slurm/submit.sh")).unwrap();
    assert!(
        submit.contains("sbatch --parsable --dependency=afterok:\"$array\" merge.sh"),
        "{submit}"
    );

    // --submit without sbatch on PATH; an unwritable job folder; no shards: one line, exit 1, nothing written.
    let fresh = t.join("fresh");
    let o = Command::new(env!("CARGO_BIN_EXE_hdsgd"))
        .args([
            "slurm",
            s(&exp),
            "--command",
            "run",
            "--shards",
            "4",
            "--submit",
            "--out",
            s(&fresh),
        ])
        .env("PATH", t.join("no-bin"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("sbatch not found on PATH") && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );
    assert!(!fresh.exists());
    let file = write(t, "a-file", "");
    let under_file = file.join("study");
    let o = hdsgd(&[
        "slurm",
        s(&exp),
        "--command",
        "run",
        "--shards",
        "4",
        "--out",
        s(&under_file),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot write the job folder") && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );
    let o = hdsgd(&[
        "slurm",
        s(&exp),
        "--command",
        "run",
        "--shards",
        "0",
        "--out",
        s(&fresh),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--shards 0") && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );
    assert!(!fresh.exists());
    // A study folder holding another study's shards.
    shards("escape", &exp, 2, &fresh);
    let o = hdsgd(&[
        "slurm",
        s(&exp),
        "--command",
        "escape",
        "--shards",
        "4",
        "--out",
        s(&fresh),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not of this study"), "{}", stderr(&o));
    assert!(!fresh.join("slurm").exists());
    // A trained second layer, which shards do not support: refused before any script is written.
    let trained = common::small_quadratic("[60, 120]", 3, 3.0, 8)
        .set("model", "a", "{ init = \"uniform\", train = true, eta = 0.5 }")
        .text();
    let trained = write(t, "trained.toml", &trained);
    let other = t.join("trained");
    let o = hdsgd(&[
        "slurm",
        s(&trained),
        "--command",
        "run",
        "--shards",
        "2",
        "--out",
        s(&other),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("model.a"), "{}", stderr(&o));
    assert!(!other.exists());
}

/// A shard that is running (its results file locked) is not run a second time at once.
#[cfg(unix)]
#[test]
fn a_running_shard_is_not_run_twice() {
    use std::os::unix::io::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let (exp, dir) = sharded(tmp.path(), "a", &run_text(), "run", 2);
    let results = dir.join("shard-0001-of-0002/results.jsonl");
    let before = std::fs::read(&results).unwrap();
    let f = std::fs::File::open(&results).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let o = hdsgd(&["run", s(&exp), "--shard", "1/2", "--out", s(&dir)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("shard 1/2 is already running"), "{}", stderr(&o));
    drop(f);
    ok(&["run", s(&exp), "--shard", "1/2", "--out", s(&dir)]);
    assert_eq!(std::fs::read(&results).unwrap(), before);
}
