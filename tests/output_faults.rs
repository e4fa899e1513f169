//! Fault injection on the output protocol (README "Output folders"; `studies::outdir`): a command
//! interrupted at any step of writing its outputs (an error, or an abort like `kill -9`), or stopped
//! by a full disk, leaves its output folder complete or absent (with `--force`: the previous
//! complete folder), never a mix, and no stale file once the next command has run.
//!
//! The steps are counted by the binary itself (`HDSGD_FAULT_AT=k` fails the k-th output step,
//! `HDSGD_FAULT_AT=k:abort` aborts there); each test walks k = 1, 2, … until the command gets past
//! its last step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SMALL: &str = r#"
name = "faults"
[model]
activation = "quadratic"
p = 2
p_star = 1
v = "ones"
[training]
eta = 0.2
[simulation]
n = [60, 120]
seeds = 2
base_seed = 7
[time]
t_max = 3.0
grid = "log"
t_min = 0.05
points = 8
[output]
plot = ["norm_m", "q_0_1", "tr_q"]
"#;

fn hdsgd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hdsgd"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The files of a folder with their bytes (summary.json without its timings).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let mut bytes = std::fs::read(e.path()).unwrap();
        if name == "summary.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("summary.json parses");
            for key in [
                "wall_seconds",
                "runs",
                "wall_seconds_this_invocation",
                "cpu_seconds_all_runs",
            ] {
                v.as_object_mut().unwrap().remove(key);
            }
            bytes = v.to_string().into_bytes();
        }
        m.insert(name, bytes);
    }
    m
}

/// Names in `parent` other than `keep` (stale staging folders, temporary files).
fn strays(parent: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

struct Case {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    exp_a: PathBuf,
    exp_b: PathBuf,
}

/// Two experiments with different outputs (A, B) in a fresh folder; outputs go to root/out/x.
fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let exp_a = root.join("a.toml");
    let exp_b = root.join("b.toml");
    std::fs::write(&exp_a, SMALL).unwrap();
    std::fs::write(&exp_b, SMALL.replace("base_seed = 7", "base_seed = 8")).unwrap();
    std::fs::create_dir(root.join("out")).unwrap();
    Case {
        _tmp: tmp,
        root,
        exp_a,
        exp_b,
    }
}

/// The reference outputs of `exp` (no fault).
fn reference(c: &Case, exp: &Path, name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = c.root.join(name);
    let o = hdsgd(
        &["run", exp.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--quiet"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    snapshot(&dir)
}

/// Walks every output step of `hdsgd run` with an error (`abort` false) or an abort injected there:
/// first onto no folder, then with --force onto a complete previous folder. Returns the number of
/// steps.
fn walk(abort: bool, no_exchange: bool) -> usize {
    let c = case();
    let ref_a = reference(&c, &c.exp_a, "ref_a");
    let ref_b = reference(&c, &c.exp_b, "ref_b");
    assert_ne!(ref_a, ref_b);
    let parent = c.root.join("out");
    let out = parent.join("x");
    let out_s = out.to_str().unwrap();
    let exchange = if no_exchange { "1" } else { "0" };
    let mut steps = 0;
    for force in [false, true] {
        for k in 1.. {
            let at = if abort { format!("{k}:abort") } else { k.to_string() };
            let env = [("HDSGD_FAULT_AT", at.as_str()), ("HDSGD_NO_RENAME_EXCHANGE", exchange)];
            if force {
                // A complete previous folder (A) to replace by B.
                let _ = std::fs::remove_dir_all(&out);
                let o = hdsgd(&["run", c.exp_a.to_str().unwrap(), "--out", out_s, "--quiet"], &[]);
                assert!(o.status.success(), "{}", stderr(&o));
            }
            let exp = if force { &c.exp_b } else { &c.exp_a };
            let mut args = vec!["run", exp.to_str().unwrap(), "--out", out_s, "--quiet"];
            if force {
                args.push("--force");
            }
            let o = hdsgd(&args, &env);
            let want_new = if force { &ref_b } else { &ref_a };
            if o.status.success() {
                assert_eq!(&snapshot(&out), want_new, "k = {k}: complete after success");
                if stderr(&o).contains("injected fault") {
                    // The fault hit the removal of the previous folder, after the new one was in
                    // place: a warning, and the next command removes the leftover.
                    assert!(force && stderr(&o).contains("warning"), "k = {k}: {}", stderr(&o));
                    let o = hdsgd(
                        &["run", c.exp_b.to_str().unwrap(), "--out", out_s, "--quiet", "--force"],
                        &[],
                    );
                    assert!(o.status.success(), "{}", stderr(&o));
                    assert_eq!(strays(&parent, &["x"]), Vec::<String>::new(), "k = {k}");
                    continue;
                }
                // Past the last step: the new folder, complete, nothing else.
                assert!(!stderr(&o).contains("HDSGD_FAULT_AT"), "{}", stderr(&o));
                assert_eq!(strays(&parent, &["x"]), Vec::<String>::new(), "k = {k}");
                steps = steps.max(k - 1);
                break;
            }
            let err = stderr(&o);
            assert!(
                err.contains("HDSGD_FAULT_AT") || err.contains("injected fault"),
                "k = {k}: {err}"
            );
            if abort {
                assert!(!o.status.success() && o.status.code() != Some(0), "k = {k}");
            } else {
                assert_eq!(o.status.code(), Some(1), "k = {k}: {err}");
            }
            // Complete or absent (or, with --force, the previous complete folder).
            match (out.exists(), force) {
                (false, false) => {}
                (true, false) => assert_eq!(&snapshot(&out), want_new, "k = {k}: a partial folder"),
                (true, true) => {
                    let s = snapshot(&out);
                    assert!(
                        s == ref_a || s == ref_b,
                        "k = {k} (--force): neither the old nor the new folder"
                    );
                }
                (false, true) => {
                    // Only a kill between moving the old folder aside and renaming the new one
                    // into place (file systems without RENAME_EXCHANGE): the old one is intact
                    // beside it, and the next command puts it back.
                    let aside: Vec<String> = strays(&parent, &[])
                        .into_iter()
                        .filter(|n| n.starts_with(".x.old-"))
                        .collect();
                    assert!(
                        abort && no_exchange && aside.len() == 1,
                        "k = {k} (--force): the previous folder is gone"
                    );
                    assert_eq!(snapshot(&parent.join(&aside[0])), ref_a, "k = {k}");
                    let o = hdsgd(&["check", c.exp_a.to_str().unwrap(), "--out", out_s], &[]);
                    assert!(o.status.success(), "{}", stderr(&o));
                    let o = hdsgd(&["run", c.exp_a.to_str().unwrap(), "--out", out_s, "--quiet"], &[]);
                    assert!(!o.status.success(), "the restored folder is refused without --force");
                    assert_eq!(snapshot(&out), ref_a, "k = {k}: restored");
                }
            }
            if !abort {
                // A failed command cleans up after itself.
                let keep: &[&str] = if out.exists() { &["x"] } else { &[] };
                assert_eq!(
                    strays(&parent, keep),
                    Vec::<String>::new(),
                    "k = {k}: stale files after an error"
                );
            } else {
                // A killed one may leave its staging folder: the next command removes it.
                let o = hdsgd(
                    &["run", c.exp_a.to_str().unwrap(), "--out", out_s, "--quiet", "--force"],
                    &[],
                );
                assert!(o.status.success(), "{}", stderr(&o));
                assert_eq!(snapshot(&out), ref_a);
                assert_eq!(
                    strays(&parent, &["x"]),
                    Vec::<String>::new(),
                    "k = {k}: stale after the next run"
                );
                if !force {
                    std::fs::remove_dir_all(&out).unwrap();
                }
            }
            assert!(k < 100, "no end to the output steps");
        }
    }
    steps
}

#[test]
fn an_error_at_any_output_step_leaves_the_folder_complete_or_absent() {
    let steps = walk(false, false);
    eprintln!("hdsgd run: {steps} output steps, each failed once (fresh and --force)");
    // Staging folder, trajectories, ode, summary, two figures, the rename(s).
    assert!(steps >= 6, "{steps}");
}

#[test]
fn a_kill_at_any_output_step_leaves_the_folder_complete_or_absent() {
    let steps = walk(true, false);
    eprintln!("hdsgd run: {steps} output steps, each aborted once (fresh and --force)");
}

/// The same on a file system that cannot swap two folders (the old folder moved aside first).
#[test]
fn faults_without_rename_exchange() {
    walk(false, true);
    walk(true, true);
}

/// The escape study's journal survives a kill at any step; resuming gives the outputs of an
/// uninterrupted run, and the folder only ever holds the journal or a complete study.
#[test]
fn a_killed_escape_study_resumes_to_the_same_outputs() {
    let text = r#"
name = "esc"
[model]
activation = "quadratic"
p = 1
p_star = 1
a = "ones"
v = "ones"
[init]
sigma0 = 0.1
[training]
eta = 0.1
[simulation]
n = [100, 200]
seeds = 3
base_seed = 5
[time]
t_max = 30.0
points = 300
[escape]
fraction = 0.5
"#;
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("esc.toml");
    std::fs::write(&exp, text).unwrap();
    let reference = tmp.path().join("ref");
    let o = hdsgd(
        &[
            "escape",
            exp.to_str().unwrap(),
            "--out",
            reference.to_str().unwrap(),
            "--threads",
            "1",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let want = std::fs::read(reference.join("escape_times.csv")).unwrap();
    let parent = tmp.path().join("p");
    std::fs::create_dir(&parent).unwrap();
    let out = parent.join("e");
    let out_s = out.to_str().unwrap();
    for k in 1.. {
        let _ = std::fs::remove_dir_all(&out);
        let at = format!("{k}:abort");
        let o = hdsgd(
            &["escape", exp.to_str().unwrap(), "--out", out_s, "--threads", "1"],
            &[("HDSGD_FAULT_AT", &at)],
        );
        if o.status.success() {
            assert_eq!(std::fs::read(out.join("escape_times.csv")).unwrap(), want);
            break;
        }
        if out.exists() {
            let names: Vec<String> = strays(&out, &[]);
            let journal_only = names.iter().all(|n| n.starts_with("escape_runs."));
            assert!(
                journal_only || out.join("escape_times.csv").exists(),
                "k = {k}: a partial study folder: {names:?}"
            );
            // Every journal line is whole.
            let j = std::fs::read_to_string(out.join("escape_runs.csv")).unwrap();
            assert!(j.ends_with('\n'), "k = {k}");
        }
        let o = hdsgd(
            &["escape", exp.to_str().unwrap(), "--out", out_s, "--threads", "1"],
            &[],
        );
        assert!(o.status.success(), "k = {k}: resume: {}", stderr(&o));
        assert_eq!(std::fs::read(out.join("escape_times.csv")).unwrap(), want, "k = {k}");
        assert_eq!(strays(&parent, &["e"]), Vec::<String>::new(), "k = {k}");
        assert!(k < 100);
    }
}

/// Sets RLIMIT_FSIZE (and ignores SIGXFSZ, so that the write fails with EFBIG instead of killing
/// the process) in the child before exec.
fn with_file_size_limit(c: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// A full disk: every output file beyond a size limit fails to write. The command exits with 1
/// naming the error, and leaves no folder (or the previous one, with --force).
#[test]
fn a_full_disk_leaves_the_folder_complete_or_absent() {
    let c = case();
    let ref_a = reference(&c, &c.exp_a, "ref_a");
    let parent = c.root.join("out");
    let out = parent.join("x");
    let out_s = out.to_str().unwrap().to_string();
    // The limit cuts trajectories.csv (the largest table) in the middle.
    let biggest = ref_a.values().map(|b| b.len()).max().unwrap() as u64;
    for force in [false, true] {
        if force {
            let o = hdsgd(&["run", c.exp_a.to_str().unwrap(), "--out", &out_s, "--quiet"], &[]);
            assert!(o.status.success());
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hdsgd"));
        cmd.args(["run", c.exp_b.to_str().unwrap(), "--out", &out_s, "--quiet"]);
        if force {
            cmd.arg("--force");
        }
        with_file_size_limit(&mut cmd, biggest / 2);
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("File too large"), "{}", stderr(&o));
        if force {
            assert_eq!(snapshot(&out), ref_a, "the previous folder must be intact");
            assert_eq!(strays(&parent, &["x"]), Vec::<String>::new());
        } else {
            assert!(!out.exists());
            assert_eq!(strays(&parent, &[]), Vec::<String>::new());
        }
    }
}

/// The same with a real full file system (a 64 kB tmpfs), where the test may mount one (root with
/// CAP_SYS_ADMIN); reported as skipped elsewhere.
#[test]
fn a_full_tmpfs_leaves_the_folder_complete_or_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt.to_str().unwrap()])
        .output();
    let mounted = matches!(&m, Ok(o) if o.status.success());
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here ({}); the RLIMIT_FSIZE test covers the full disk",
            m.map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_else(|e| e.to_string())
        );
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let exp = tmp.path().join("big.toml");
    // Outputs of a few hundred kB: more than the file system holds.
    std::fs::write(
        &exp,
        SMALL
            .replace("seeds = 2", "seeds = 12")
            .replace("points = 8", "points = 60"),
    )
    .unwrap();
    let out = mnt.join("x");
    let o = hdsgd(
        &["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(strays(&mnt, &[]), Vec::<String>::new(), "stale files on the full disk");
}
