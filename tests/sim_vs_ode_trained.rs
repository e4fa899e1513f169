//! Simulation vs ODE with a trained second layer (issue 15): the erf committee p = p* = 2, v = 1,
//! label noise Δ = 0.01, first layer η = 1, second layer trained from a₀ = (0.2, 0.5) with η_a = 1:
//! the direct simulator against the ODE started from each run's own initial overlaps and a₀
//! (theory.md §4, §6, with da_i/dt = η_a E[r g(λ_i)]). Every recorded e_g, overlap and a_i must lie
//! within k/√N of its matched ODE; the ODE with a wrong second-layer rate (η_a halved) must not.
//!
//! Choice of k. The deviations are O(N^{-1/2}) with an O(1) amplitude the theory does not give in
//! closed form, so it was MEASURED by `deviations_scale_like_one_over_sqrt_n` (ignored by default:
//! `cargo test --release --test sim_vs_ode_trained -- --ignored --nocapture`; table in
//! docs/trained_second_layer.md): N = 1000 … 16000, 4 seeds each, other seeds than the test's.
//! √N·max|sim − ode| was 0.98, 0.73, 0.96, 0.70, 0.84 for N = 1000 … 16000 (flat in N: the N^{-1/2}
//! law), and σ_max = max over t and observables of √(mean over the 20 runs of N·(sim − ode)²) = 0.52;
//! a 20-run estimate has relative uncertainty ≈ 1/√(2·20) ≈ 16 %, so we take σ ≤ 0.65 (0.52 + 1.5
//! of those 16 %). With 4 seeds × 21 times × 10 observables = 840 comparisons, a family-wise
//! false-alarm probability of 1e-3 needs z ≈ 4.9 (Bonferroni), so k = 4.9 × 0.65 ≈ 3.2.

use hdsgd::config::Experiment;
use hdsgd::model::SecondLayerSgd;
use hdsgd::ode::{integrate, OdeSolution};
use hdsgd::overlaps::Overlaps;
use hdsgd::simulators::Trajectory;
use hdsgd::studies::runner::simulate_all;

mod common;

const K: f64 = 3.2;

fn experiment(ns: &[usize], seeds: u64, base_seed: u64) -> Experiment {
    let text = format!(
        r#"
[model]
activation = "erf"
p = 2
p_star = 2
a = {{ init = [0.2, 0.5], train = true, eta = 1.0 }}
v = "ones"
noise = 0.01
[init]
teacher = "orthonormal"
sigma0 = 0.1
[training]
eta = 1.0
[simulation]
n = {ns:?}
seeds = {seeds}
base_seed = {base_seed}
[time]
t_max = 10.0
points = 20
[ode]
rtol = 1e-9
atol = 1e-12
"#
    );
    Experiment::from_toml(&text, "sim_vs_ode_trained").expect("valid experiment")
}

/// e_g, every overlap entry and every a_i.
fn observables(eg: f64, ov: &Overlaps, a: &[f64]) -> Vec<(String, f64)> {
    let mut out = vec![("eg".to_string(), eg)];
    out.extend(Overlaps::column_names(2, 2).into_iter().map(|n| {
        let x = ov.observable(&n).expect("column");
        (n, x)
    }));
    out.extend(a.iter().enumerate().map(|(i, x)| (format!("a_{i}"), *x)));
    out
}

/// Per record: (t, observables) of a simulated run and of an ODE solution.
fn sim_rows(tr: &Trajectory) -> Vec<(f64, Vec<(String, f64)>)> {
    tr.records
        .iter()
        .map(|r| {
            (
                r.t,
                observables(r.eg, &r.overlaps, r.a.as_deref().expect("trained a recorded")),
            )
        })
        .collect()
}

fn ode_rows(sol: &OdeSolution) -> Vec<(f64, Vec<(String, f64)>)> {
    let a = sol.a.as_ref().expect("trained a integrated");
    (0..sol.t.len())
        .map(|i| (sol.t[i], observables(sol.eg[i], &sol.overlaps[i], &a[i])))
        .collect()
}

#[test]
fn sgd_follows_matched_ode_within_k_over_sqrt_n() {
    const N: usize = 4000;
    let exp = experiment(&[N], 4, 151_515);
    let results = simulate_all(&exp, 1, false, &hdsgd::studies::Cancel::new()).expect("runs");
    let band = K / (N as f64).sqrt();
    for r in &results {
        assert!(r.trajectory.diverged_at.is_none());
        let sim = sim_rows(&r.trajectory);
        assert_eq!(sim.len(), 21);
        let ode = r.ode.as_ref().expect("matched ODE");
        assert!(ode.stop.is_none(), "ODE stopped: {:?}", ode.stop);
        let (dev, name, t) = common::max_deviation(&sim, &ode_rows(ode));
        eprintln!(
            "seed {}: max |sim − ode| = {dev:.4} ({name} at t = {t}), √N·max = {:.3}, band {band:.4}",
            r.task.seed_index,
            dev * (N as f64).sqrt()
        );
        assert!(
            dev <= band,
            "seed {}: {name} at t = {t}: {dev} > k/√N = {band}",
            r.task.seed_index
        );
        // The a's must move by much more than the band, or the comparison would not test their law.
        let a_last = r.trajectory.records.last().unwrap().a.clone().unwrap();
        assert!((a_last[0] - 0.2).abs() > 5.0 * band, "a_0 barely moved: {a_last:?}");

        // Power: the ODE with η_a halved leaves the band.
        let times: Vec<f64> = sim.iter().map(|(t, _)| *t).collect();
        let sgd = exp.model.train_a.unwrap();
        let wrong_model = exp.model.clone().with_trained_a(SecondLayerSgd {
            eta: sgd.eta / 2.0,
            ..sgd
        });
        let wrong = integrate(
            &wrong_model,
            &exp.training,
            &r.trajectory.initial,
            &times,
            &exp.ode_options,
            |_, _: &_| false,
        )
        .expect("ODE");
        let (wdev, wname, wt) = common::max_deviation(&sim, &ode_rows(&wrong));
        eprintln!("  η_a-halved ODE: max deviation {wdev:.3} ({wname} at t = {wt})");
        assert!(
            wdev > band,
            "the η_a-halved ODE stays within the band ({wdev} at {wname})"
        );
    }
}

/// The measurement behind k (see the module docs): √N·max|sim − ode| per N and σ(t) maximised.
#[test]
#[ignore]
fn deviations_scale_like_one_over_sqrt_n() {
    let ns = [1000, 2000, 4000, 8000, 16000];
    let exp = experiment(&ns, 4, 2019);
    let results = simulate_all(&exp, 0, false, &hdsgd::studies::Cancel::new()).expect("runs");
    let mut sum_sq: Vec<Vec<f64>> = vec![];
    println!("|   N | √N·max over seeds, times, observables | worst observable |");
    println!("|---|---|---|");
    for &n in &ns {
        let mut worst = (0.0, String::new());
        for r in results.iter().filter(|r| r.task.n == n) {
            let (sim, ode) = (sim_rows(&r.trajectory), ode_rows(r.ode.as_ref().unwrap()));
            let (dev, name, t) = common::max_deviation(&sim, &ode);
            if dev > worst.0 {
                worst = (dev, format!("{name} at t = {t}"));
            }
            for (ri, ((_, s), (_, o))) in sim.iter().zip(&ode).enumerate() {
                if sum_sq.len() <= ri {
                    sum_sq.push(vec![0.0; s.len()]);
                }
                for (j, ((_, x), (_, y))) in s.iter().zip(o).enumerate() {
                    sum_sq[ri][j] += n as f64 * (x - y).powi(2);
                }
            }
        }
        println!("| {n} | {:.3} | {} |", worst.0 * (n as f64).sqrt(), worst.1);
    }
    let runs = results.len() as f64;
    let sigma_max = sum_sq.iter().flatten().map(|s| (s / runs).sqrt()).fold(0.0, f64::max);
    println!("σ_max = {sigma_max:.3} over {runs} runs");
}
