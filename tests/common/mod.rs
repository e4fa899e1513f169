//! Experiment files shared by the integration tests: `mod common;` in a test file, then a builder
//! such as [`small_quadratic`] with the settings of that test (`.set(section, key, value)`, values
//! written as TOML), `.text()` for the file, `.experiment(name)` for the validated experiment.
#![allow(dead_code)]

pub mod ks;

use hdsgd::config::Experiment;
use std::path::Path;

/// A TOML experiment file as (section, "key = value" lines); section "" is the top level.
#[derive(Debug, Clone)]
pub struct Toml {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Toml {
    /// An empty file.
    pub fn new() -> Self {
        Toml { sections: vec![] }
    }

    /// Sets `key = value` in `[section]` (replacing an existing key, appending the section when
    /// absent); `value` is TOML (strings quoted).
    pub fn set(mut self, section: &str, key: &str, value: impl std::fmt::Display) -> Self {
        let value = value.to_string();
        let i = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), vec![]));
                self.sections.len() - 1
            }
        };
        let lines = &mut self.sections[i].1;
        match lines.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value,
            None => lines.push((key.to_string(), value)),
        }
        self
    }

    /// The file text (top level first, then the sections in the order they were first set).
    pub fn text(&self) -> String {
        let mut out = String::from("\n");
        for (section, lines) in self.sections.iter().filter(|(s, _)| s.is_empty()) {
            debug_assert!(section.is_empty());
            for (k, v) in lines {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        for (section, lines) in self.sections.iter().filter(|(s, _)| !s.is_empty()) {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in lines {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    }

    /// The validated experiment of [`Toml::text`].
    pub fn experiment(&self, name: &str) -> Experiment {
        Experiment::from_toml(&self.text(), name).unwrap()
    }
}

impl Default for Toml {
    fn default() -> Self {
        Self::new()
    }
}

/// The small quadratic committee p = 2, p* = 1 (a default, v = ones), η = 0.2, with the given N
/// grid (TOML array), seeds and a linear time grid of `points` up to `t_max`.
pub fn small_quadratic(n: &str, seeds: usize, t_max: f64, points: usize) -> Toml {
    Toml::new()
        .set("model", "activation", "\"quadratic\"")
        .set("model", "p", 2)
        .set("model", "p_star", 1)
        .set("model", "v", "\"ones\"")
        .set("training", "eta", 0.2)
        .set("simulation", "n", n)
        .set("simulation", "seeds", seeds)
        .set("time", "t_max", format!("{t_max:?}"))
        .set("time", "points", points)
}

/// The escape_quadratic_p1 experiment: quadratic p = p* = 1, a = v = 1, σ₀ = 0.1, η = 0.15,
/// base seed 11, `[escape] fraction = 0.5`, with the given N grid, seeds, t_max and points.
pub fn escape_p1(n: &str, seeds: usize, t_max: f64, points: usize) -> Toml {
    Toml::new()
        .set("model", "activation", "\"quadratic\"")
        .set("model", "p", 1)
        .set("model", "p_star", 1)
        .set("model", "a", "\"ones\"")
        .set("model", "v", "\"ones\"")
        .set("init", "sigma0", 0.1)
        .set("training", "eta", 0.15)
        .set("simulation", "n", n)
        .set("simulation", "seeds", seeds)
        .set("simulation", "base_seed", 11)
        .set("time", "t_max", format!("{t_max:?}"))
        .set("time", "points", points)
        .set("escape", "fraction", 0.5)
}

/// Every file of the one-machine folder `one`, but the timings (summary.json), escape's runs file
/// (completion order, wall times) and merge.json, is in `merged` with the same bytes; returns how
/// many files were compared.
pub fn assert_same_outputs(one: &Path, merged: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(one).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if ["summary.json", "escape_runs.csv", "merge.json"].contains(&name.as_str()) {
            continue;
        }
        let a = std::fs::read(one.join(&name)).unwrap();
        let b = std::fs::read(merged.join(&name)).unwrap_or_else(|_| panic!("{name} missing in {}", merged.display()));
        assert!(
            a == b,
            "{name} differs between {} and {}",
            one.display(),
            merged.display()
        );
        n += 1;
    }
    n
}

/// Largest |sim − ode| over matching record times and named observables, with the observable and
/// the time where it happens (the ODE must be recorded at every simulated time).
pub fn max_deviation(sim: &[(f64, Vec<(String, f64)>)], ode: &[(f64, Vec<(String, f64)>)]) -> (f64, String, f64) {
    assert_eq!(sim.len(), ode.len(), "ODE must be recorded at every simulated time");
    let mut worst = (0.0, String::new(), 0.0);
    for ((ts, s), (to, o)) in sim.iter().zip(ode) {
        assert!((ts - to).abs() < 1e-12, "time mismatch {ts} vs {to}");
        for ((name, x), (_, y)) in s.iter().zip(o) {
            let d = (x - y).abs();
            assert!(d.is_finite(), "{name} non-finite at t = {ts}");
            if d > worst.0 {
                worst = (d, name.clone(), *ts);
            }
        }
    }
    worst
}

/// Runs the `hdsgd` binary of this build with `args` and returns its exit status and output.
pub fn hdsgd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hdsgd"))
        .args(args)
        .output()
        .expect("binary runs")
}
