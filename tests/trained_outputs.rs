//! Output files of a trained second layer (issue 15): `hdsgd run` writes the a_i columns in
//! trajectories.csv and ode.csv and each run's teacher overlap P in summary.json, draws the a_i panels;
//! a row of its trajectories.csv restarts the ODE (`[ode] initial = "file"`) at that state; bad input
//! leaves nothing written.

mod common;

use hdsgd::studies::{self, OutputOptions};
use std::path::Path;

fn trained(n: &str) -> common::Toml {
    common::small_quadratic(n, 2, 1.0, 4)
        .set("model", "a", "{ init = [0.3, 0.6], train = true, eta = 0.5 }")
        .set("model", "noise", 0.01)
}

fn opts(dir: &Path) -> OutputOptions {
    OutputOptions {
        out: Some(dir.to_path_buf()),
        threads: 1,
        force: false,
        progress: false,
        ..Default::default()
    }
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn run_writes_a_columns_p_and_restarts_from_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let exp = trained("[100]").experiment("trained_out");
    studies::run(&exp, &opts(&out)).unwrap();
    for file in ["trajectories.csv", "ode.csv"] {
        let (header, rows) = read_csv(&out.join(file));
        assert_eq!(&header[header.len() - 2..], ["a_0", "a_1"], "{file}");
        assert_eq!(rows.len(), 2 * 5, "{file}");
        // a starts at a₀ and moves.
        assert_eq!(&rows[0][header.len() - 2..], ["0.3", "0.6"], "{file}");
        assert_ne!(rows[4][header.len() - 2], "0.3", "{file}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = &summary["runs"][0]["teacher_overlap"];
    assert_eq!(p.as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(summary["experiment"]["model"]["train_a"]["eta"], 0.5);
    let svg = std::fs::read_to_string(out.join("overlaps.svg")).unwrap();
    assert!(svg.contains("trained second-layer weight"));

    // The ODE from the last row of seed 0's trajectory: starts exactly there.
    let restart = trained("[100]")
        .set("ode", "initial", "\"file\"")
        .set(
            "ode",
            "initial_file",
            format!("{:?}", out.join("trajectories.csv").display().to_string()),
        )
        .set("ode", "initial_row", 4)
        .experiment("restart");
    let dir = tmp.path().join("restart");
    studies::ode(&restart, &opts(&dir)).unwrap();
    let (header, rows) = read_csv(&dir.join("ode.csv"));
    let (_, traj) = read_csv(&out.join("trajectories.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let explicit = rows.iter().find(|r| r[col("seed")] == "-1").unwrap();
    for name in ["q_0_1", "m_1_0", "a_0", "a_1"] {
        assert_eq!(explicit[col(name)], traj[4][col(name)], "{name}");
    }
    assert!(std::fs::read_to_string(dir.join("ode.svg")).unwrap().contains("a_1"));
}

#[test]
fn bad_initial_file_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("wide.csv");
    std::fs::write(
        &csv,
        "q_0_0,q_0_1,q_0_2,q_1_1,q_1_2,q_2_2,m_0_0,m_1_0,m_2_0\n1,0,0,1,0,1,0,0,0\n",
    )
    .unwrap();
    let text = trained("[100]")
        .set("ode", "initial", "\"file\"")
        .set("ode", "initial_file", format!("{:?}", csv.display().to_string()))
        .text();
    let e = hdsgd::config::Experiment::from_toml(&text, "bad")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ode.initial_file") && e.contains("wide.csv") && e.contains("q_0_2"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

/// `run --save-weights`: weights/{w,w_star,a}_n{N}_seed{S}.npy hold each run's final weights, whose
/// overlaps and a are exactly the last record of trajectories.csv; the chain simulator refuses it.
#[test]
fn save_weights_writes_the_final_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let exp = trained("[60, 80]").experiment("weights");
    studies::run::run_with(&exp, &opts(&out), true).unwrap();
    let (header, rows) = read_csv(&out.join("trajectories.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (n, seed) in [(60, 0), (60, 1), (80, 1)] {
        let file = |what: &str| out.join("weights").join(format!("{what}_n{n}_seed{seed}.npy"));
        let w: ndarray::Array2<f64> = ndarray_npy::read_npy(file("w")).unwrap();
        let w_star: ndarray::Array2<f64> = ndarray_npy::read_npy(file("w_star")).unwrap();
        let a: ndarray::Array1<f64> = ndarray_npy::read_npy(file("a")).unwrap();
        assert_eq!((w.dim(), w_star.dim(), a.len()), ((2, n), (1, n), 2));
        let ov = hdsgd::overlaps::Overlaps::from_weights(w.view(), w_star.view());
        let last = rows
            .iter()
            .rfind(|r| r[col("n")] == n.to_string() && r[col("seed")] == seed.to_string())
            .unwrap();
        assert_eq!(last[col("q_0_1")], ov.q[(0, 1)].to_string());
        assert_eq!(last[col("m_1_0")], ov.m[(1, 0)].to_string());
        assert_eq!(last[col("a_1")], a[1].to_string());
    }
    let chain = trained("[60]")
        .set("simulation", "simulator", "\"chain\"")
        .experiment("chain");
    let dir = tmp.path().join("chain");
    let e = studies::run::run_with(&chain, &opts(&dir), true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--save-weights") && e.contains("simulation.simulator"),
        "{e}"
    );
    assert!(!dir.exists());
}

/// `[init] teacher_file`: the runs use the file's teacher (P = W*W*ᵀ/N in summary.json, exactly), and
/// the student is drawn for it from the run's seed.
#[test]
fn teacher_from_file_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 64;
    let w_star = ndarray::Array2::from_shape_fn((n, 1), |(j, _)| if j % 2 == 0 { 1.5 } else { -0.5 });
    let file = tmp.path().join("teacher.npy");
    ndarray_npy::write_npy(&file, &w_star).unwrap();
    let exp = trained(&format!("[{n}]"))
        .set("init", "teacher_file", format!("{:?}", file.display().to_string()))
        .experiment("file_teacher");
    let out = tmp.path().join("run");
    studies::run::run_with(&exp, &opts(&out), true).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = w_star.column(0).dot(&w_star.column(0)) / n as f64;
    assert_eq!(summary["runs"][1]["teacher_overlap"][0][0], p);
    let saved: ndarray::Array2<f64> = ndarray_npy::read_npy(out.join("weights/w_star_n64_seed1.npy")).unwrap();
    assert_eq!(saved, w_star.t());
}
