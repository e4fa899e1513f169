//! Golden-file test of the quickstart (issue 12, item 6): `hdsgd run experiments/quickstart.toml`
//! through the CLI binary must reproduce the committed reference `results/quickstart/` bit for bit,
//! as the README claims ("identical bit for bit", `cmp results/quickstart/trajectories.csv …`).
//!
//! Compared byte for byte: `trajectories.csv` (every SGD run, N = 250 … 2000, 8 seeds, 81 records)
//! and `ode.csv` (the matched ODEs). From `summary.json` only the deterministic per-run fields are
//! compared (n, seed, run_seed, samples, diverged_at) and the divergence list; timings legitimately
//! differ and the rest of the file is configuration echo. The figures are not compared (they are
//! derived from the two CSVs, and their styling is expected to change).
//!
//! If a deliberate change of the simulator, the generator streams or the output format changes
//! these files, regenerate the reference with `scripts/regenerate_results.sh` and say why in the
//! commit. Cost: the quickstart itself with 2 threads, 4.5–6.5 s of wall time (README: 6 s), 13 s when
//! the 2 cores are loaded by other jobs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first line (1-based) and byte offset at which two files differ, for a readable failure.
fn first_difference(a: &[u8], b: &[u8]) -> Option<(usize, usize)> {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))?;
    let line = a[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    Some((line, at))
}

fn line_of(text: &[u8], line: usize) -> String {
    String::from_utf8_lossy(text.split(|&c| c == b'\n').nth(line - 1).unwrap_or(b"<end of file>")).into_owned()
}

fn assert_identical(reference: &Path, produced: &Path) {
    let a = std::fs::read(reference).unwrap_or_else(|e| panic!("reading {}: {e}", reference.display()));
    let b = std::fs::read(produced).unwrap_or_else(|e| panic!("reading {}: {e}", produced.display()));
    if let Some((line, at)) = first_difference(&a, &b) {
        panic!(
            "{} differs from the committed reference {} at byte {at} (line {line}; sizes {} vs {}):\n  reference: {}\n  produced:  {}",
            produced.display(),
            reference.display(),
            a.len(),
            b.len(),
            line_of(&a, line),
            line_of(&b, line)
        );
    }
}

/// The deterministic part of `summary.json`: per run (n, seed, run_seed, samples, diverged_at),
/// and the list of divergences.
fn deterministic_summary(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("summary.json is JSON");
    let runs: Vec<serde_json::Value> = v["runs"]
        .as_array()
        .expect("summary.json has runs")
        .iter()
        .map(|r| {
            serde_json::json!({
                "n": r["n"], "seed": r["seed"], "run_seed": r["run_seed"],
                "samples": r["samples"], "diverged_at": r["diverged_at"],
            })
        })
        .collect();
    serde_json::json!({ "runs": runs, "divergences": v["divergences"] })
}

#[test]
fn quickstart_reproduces_the_committed_reference_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("quickstart");
    let exp = repo().join("experiments/quickstart.toml");
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_hdsgd"))
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            "2",
            "--quiet",
        ])
        .output()
        .expect("the binary runs");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "hdsgd run quickstart failed ({:?}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("quickstart: {secs:.1} s of wall time with 2 threads");
    let reference = repo().join("results/quickstart");
    for name in ["trajectories.csv", "ode.csv"] {
        assert_identical(&reference.join(name), &out.join(name));
    }
    let (a, b) = (
        deterministic_summary(&reference.join("summary.json")),
        deterministic_summary(&out.join("summary.json")),
    );
    assert_eq!(
        a["runs"].as_array().unwrap().len(),
        32,
        "4 N × 8 seeds in the reference"
    );
    assert_eq!(
        a, b,
        "run seeds, sample counts or divergences differ from the reference summary.json"
    );
}
