//! Sharded studies on a real SLURM cluster (issue 13). Ignored by `cargo test`: they need the
//! local one-node cluster of scripts/slurm/ (or any SLURM whose sbatch/squeue/scontrol work and
//! whose nodes see this machine's /tmp), and run through
//!
//!     scripts/cluster_test.sh      (as root: starts the cluster, runs these tests, stops it)
//!
//! or, with a cluster already running and `source scripts/slurm/env.sh` done,
//! `cargo test --release --test cluster -- --ignored --test-threads=1`.
//!
//! 1. An `escape` and a `run` study submitted with `hdsgd slurm --submit` as arrays of 4 and 5
//!    shards: every array task and the merge complete, and the merged files are identical to those
//!    of one-machine runs.
//! 2. One array task of a `run` study (12 chain runs of 1.5·10⁷ samples) is cancelled (`scancel`) after its first finished run; it is
//!    resubmitted alone (`sbatch --array=I`), resumes from its finished run, the waiting merge is
//!    pointed at it (`scontrol update ... Dependency=afterok:`), and the merged files are again
//!    identical to the one-machine ones.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Upper bound on any wait for jobs (seconds).
const WAIT: &str = "150";

/// Quadratic p = p* = 1 escape (tests/studies.rs), 3 N × 4 seeds.
fn escape_text() -> String {
    common::escape_p1("[100, 200, 400]", 4, 30.0, 600)
        .set("", "name", "\"cluster_escape\"")
        .text()
}

/// A small `run` study: quadratic p = 2, p* = 1, 3 N × 3 seeds, log grid.
fn run_text() -> String {
    common::small_quadratic("[60, 120, 240]", 3, 3.0, 8)
        .set("", "name", "\"cluster_run\"")
        .set("simulation", "base_seed", 7)
        .set("time", "grid", "\"log\"")
        .set("time", "t_min", 0.05)
        .text()
}

/// Chain runs of 1.5·10⁷ samples each (≈ 1 s on an idle core at 1.4·10⁷ samples/s for p = 2,
/// p* = 1), 3 per shard of 4: long enough to cancel a shard between its first and its last run.
const LONG_RUN: &str = r#"
name = "cluster_long"
[model]
activation = "quadratic"
p = 2
p_star = 1
v = "ones"
[training]
eta = 0.2
[simulation]
simulator = "chain"
n = [10000000]
seeds = 12
base_seed = 5
[time]
t_max = 1.5
grid = "log"
t_min = 0.01
points = 20
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_cluster() {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty() && Path::new(&conf).exists(),
        "no SLURM cluster (SLURM_CONF unset or missing): run scripts/cluster_test.sh"
    );
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let o = run(program, args);
    assert!(
        o.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn hdsgd(args: &[&str]) -> String {
    ok(env!("CARGO_BIN_EXE_hdsgd"), args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// scripts/slurm/wait.sh: bounded wait, then the final state of every job or array task.
fn wait(jobs: &[&str]) -> String {
    let script = repo().join("scripts/slurm/wait.sh");
    let mut args = vec![WAIT];
    args.extend_from_slice(jobs);
    let o = run(s(&script), &args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "jobs {jobs:?} did not all complete:\n{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A folder the cluster's jobs can write (they run as the submitting user on this machine).
fn tempdir() -> tempfile::TempDir {
    let t = tempfile::Builder::new().prefix("hdsgd-cluster-").tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    t
}

/// `hdsgd slurm ... --submit`: (array job id, merge job id) from the job folder's jobs.txt.
fn submit(exp: &Path, command: &str, shards: usize, out: &Path) -> (String, String) {
    let stdout = hdsgd(&[
        "slurm",
        s(exp),
        "--command",
        command,
        "--shards",
        &shards.to_string(),
        "--time",
        "00:05:00",
        "--out",
        s(out),
        "--submit",
    ]);
    eprintln!("{stdout}");
    let jobs = std::fs::read_to_string(out.join("slurm/jobs.txt")).unwrap();
    let id = |what: &str| {
        jobs.lines()
            .find_map(|l| l.strip_prefix(what))
            .unwrap_or_else(|| panic!("no {what} in jobs.txt: {jobs}"))
            .trim()
            .to_string()
    };
    let (array, merge) = (id("array "), id("merge "));
    assert!(stdout.contains(&format!("submitted array job {array}")), "{stdout}");
    assert!(stdout.contains(&format!("squeue -j {array},{merge}")), "{stdout}");
    (array, merge)
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/cluster_test.sh"]
fn sharded_studies_on_slurm_merge_to_the_one_machine_bytes() {
    require_cluster();
    let t0 = Instant::now();
    let tmp = tempdir();
    let t = tmp.path();
    let esc = t.join("escape.toml");
    std::fs::write(&esc, escape_text()).unwrap();
    let runx = t.join("run.toml");
    std::fs::write(&runx, run_text()).unwrap();
    // Both studies in the queue at once: 9 one-CPU array tasks and 2 merges.
    let (ea, em) = submit(&esc, "escape", 4, &t.join("escape"));
    let (ra, rm) = submit(&runx, "run", 5, &t.join("run"));
    // The one-machine references, while the cluster works.
    hdsgd(&["escape", s(&esc), "--out", s(&t.join("escape-one")), "--threads", "1"]);
    hdsgd(&["run", s(&runx), "--out", s(&t.join("run-one")), "--threads", "1"]);
    let states = wait(&[&ea, &em, &ra, &rm]);
    eprintln!("{states}");
    assert_eq!(
        states.lines().filter(|l| l.ends_with(" COMPLETED 0:0")).count(),
        4 + 1 + 5 + 1
    );
    // escape_times, escape_summary, escape_fit, escape_runs.json (the runs file's hash) and two figures.
    assert_eq!(common::assert_same_outputs(&t.join("escape-one"), &t.join("escape")), 6);
    assert_eq!(common::assert_same_outputs(&t.join("run-one"), &t.join("run")), 4);
    for i in 0..4 {
        assert!(t.join(format!("escape/slurm/logs/shard-{i}-job{ea}.out")).exists());
    }
    assert!(t.join(format!("run/slurm/logs/merge-job{rm}.out")).exists());
    let merge: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("run/merge.json")).unwrap()).unwrap();
    assert_eq!(merge["shards"][4]["done"]["slurm_array_job_id"], ra.as_str());
    eprintln!(
        "escape (4 shards) and run (5 shards) on SLURM: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// The number of complete lines of a shard's results file.
fn finished(dir: &Path, shard: &str) -> usize {
    std::fs::read_to_string(dir.join(shard).join("results.jsonl"))
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

fn state(job: &str) -> String {
    ok("squeue", &["-h", "-t", "all", "-j", job, "-o", "%T"])
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs a SLURM cluster: scripts/cluster_test.sh"]
fn cancelled_array_task_is_rerun_alone_and_merges_to_the_same_bytes() {
    require_cluster();
    let t0 = Instant::now();
    let tmp = tempdir();
    let t = tmp.path();
    let exp = t.join("long.toml");
    std::fs::write(&exp, LONG_RUN).unwrap();
    let dir = t.join("study");
    let (array, merge) = submit(&exp, "run", 4, &dir);
    // Cancel array task 0 once it has finished its first run (of 3).
    let task0 = format!("{array}_0");
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished(&dir, "shard-0000-of-0004") == 0 {
        assert!(Instant::now() < deadline, "shard 0 finished no run in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok("scancel", &[&task0]);
    let done_before = finished(&dir, "shard-0000-of-0004");
    assert!(done_before < 3, "shard 0 finished before it could be cancelled");
    // The other tasks complete; task 0 is CANCELLED, and the merge can never start.
    let others: Vec<String> = (1..4).map(|i| format!("{array}_{i}")).collect();
    let refs: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
    wait(&refs);
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&task0) != "CANCELLED" || state(&merge) != "PENDING" {
        assert!(
            Instant::now() < deadline,
            "task 0: {}, merge: {}",
            state(&task0),
            state(&merge)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!dir.join("trajectories.csv").exists());
    // Resubmit index 0 alone and point the merge at it.
    let script = dir.join("slurm/array.sh");
    let new = ok("sbatch", &["--parsable", "--array=0", s(&script)]);
    let new = new.trim().split(';').next().unwrap().to_string();
    ok(
        "scontrol",
        &[
            "update",
            &format!("JobId={merge}"),
            &format!("Dependency=afterok:{new}"),
        ],
    );
    // The one-machine reference meanwhile.
    hdsgd(&["run", s(&exp), "--out", s(&t.join("one")), "--threads", "2"]);
    let states = wait(&[&new, &merge]);
    eprintln!("{states}");
    let log = std::fs::read_to_string(dir.join(format!("slurm/logs/shard-0-job{new}.out"))).unwrap();
    assert!(
        log.contains(&format!("3 task(s), {done_before} done before")),
        "the rerun did not resume: {log}"
    );
    assert_eq!(common::assert_same_outputs(&t.join("one"), &dir), 4);
    eprintln!(
        "cancel, resubmit and merge on SLURM: {:.1} s ({done_before} run(s) kept by the cancelled shard)",
        t0.elapsed().as_secs_f64()
    );
}
