//! Statistical equivalence of the Gram-chain simulator with the direct simulator when the student's
//! second layer is trained (issue 15): a is O(p) extra exact state of the chain, moved by the same
//! law a_i ← a_i (1 − η_a ℓ_a/N) + (η_a/(BN)) Σ_b r^b g(λ_i^b), and the first-layer update uses the
//! current a, so at every finite N the joint law of (Q, M, a) must be that of direct SGD.
//!
//! Design (as `tests/chain_equivalence.rs` for the fixed layer): two models (an erf committee with a
//! Gaussian teacher, label noise and second-layer weight decay; a quadratic committee with weight
//! decay), N ∈ {20, 200}, B ∈ {1, 4} with η = B·η₁ and η_a = B·η_a1 (the same ODE limit), `SEEDS`
//! independent seeds per simulator, two-sample KS tests at t = 1 and t = 4 on every entry of Q, M,
//! every a_i and e_g (at t = 0 the law is the fixed layer's, tested there; a₀ is deterministic).
//!
//! Threshold: Bonferroni over the whole family at family-wise α = 0.01, fixed before looking at the
//! results. Power: `wrong_second_layer_rate_is_rejected` compares direct SGD with a chain whose η_a
//! is 30 % too small, which the same threshold must reject.

mod common;

use common::ks::ks_two_sample;
use hdsgd::init::{InitSpec, TeacherInit};
use hdsgd::model::{Activation, Model, SecondLayerSgd, Training};
use hdsgd::population::population_error;
use hdsgd::rng::run_seed;
use hdsgd::simulators::chain::ChainSimulator;
use hdsgd::simulators::direct::DirectSimulator;
use hdsgd::simulators::{grid_steps, RunSpec};
use rayon::prelude::*;

const SEEDS: u64 = 1000;
const ALPHA: f64 = 0.01;
const TIMES: [f64; 3] = [0.0, 1.0, 4.0];
const NS: [usize; 2] = [20, 200];
const BATCHES: [usize; 2] = [1, 4];

#[derive(Clone)]
struct Case {
    name: &'static str,
    activation: Activation,
    a0: Vec<f64>,
    v: Vec<f64>,
    noise: f64,
    weight_decay: f64,
    eta1: f64,
    eta_a1: f64,
    weight_decay_a: f64,
    teacher: TeacherInit,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "erf p=2 p*=2 trained a",
            activation: Activation::Erf,
            a0: vec![0.3, 0.6],
            v: vec![1.0, 1.0],
            noise: 0.05,
            weight_decay: 0.0,
            eta1: 0.8,
            eta_a1: 0.8,
            weight_decay_a: 0.1,
            teacher: TeacherInit::Gaussian,
        },
        Case {
            name: "quadratic p=2 p*=1 trained a",
            activation: Activation::Quadratic,
            a0: vec![0.5, 0.5],
            v: vec![1.0],
            noise: 0.1,
            weight_decay: 0.05,
            eta1: 0.2,
            eta_a1: 0.3,
            weight_decay_a: 0.0,
            teacher: TeacherInit::Orthonormal,
        },
    ]
}

fn spec(case: &Case, n: usize, batch: usize, eta_a_factor: f64) -> RunSpec {
    let b = batch as f64;
    RunSpec {
        model: Model::new(case.activation, case.a0.clone(), case.v.clone(), case.noise).with_trained_a(
            SecondLayerSgd {
                eta: case.eta_a1 * b * eta_a_factor,
                weight_decay: case.weight_decay_a,
            },
        ),
        training: Training {
            eta: case.eta1 * b,
            weight_decay: case.weight_decay,
            batch,
        },
        n,
        divergence_bound: 1e6,
    }
}

/// One record: the Gram matrix C and the second layer a.
type State = (nalgebra::DMatrix<f64>, Vec<f64>);

#[derive(Clone, Copy, PartialEq)]
enum Sim {
    Direct,
    Chain,
    /// The chain with η_a 30 % too small (wrong on purpose).
    SlowChain,
}

/// `SEEDS` runs: [seed][record].
fn sample(case: &Case, n: usize, batch: usize, which: Sim) -> Vec<Vec<State>> {
    let steps = grid_steps(&TIMES, n, batch);
    assert_eq!(steps.len(), TIMES.len());
    let init = InitSpec::uninformed(case.teacher, 1.0);
    let base = if which == Sim::Direct { 31 } else { 42 } + 100 * batch as u64;
    (0..SEEDS)
        .into_par_iter()
        .map(|i| {
            let seed = run_seed(base, n, i);
            let mut done = 0;
            match which {
                Sim::Direct => {
                    let mut sim = DirectSimulator::with_init(spec(case, n, batch, 1.0), &init, seed);
                    steps
                        .iter()
                        .map(|&target| {
                            while done < target {
                                sim.step();
                                done += 1;
                            }
                            (sim.overlaps().gram(), sim.second_layer().to_vec())
                        })
                        .collect()
                }
                Sim::Chain | Sim::SlowChain => {
                    let factor = if which == Sim::Chain { 1.0 } else { 0.7 };
                    let mut sim = ChainSimulator::with_init(spec(case, n, batch, factor), &init, seed);
                    steps
                        .iter()
                        .map(|&target| {
                            while done < target {
                                sim.step();
                                done += 1;
                            }
                            (sim.overlaps().gram(), sim.second_layer().to_vec())
                        })
                        .collect()
                }
            }
        })
        .collect()
}

/// (name, value) of every Q, M entry, every a_i and e_g (non-finite values of a diverged run → +∞).
fn observables(case: &Case, (c, a): &State) -> Vec<(String, f64)> {
    let (p, k) = (case.a0.len(), case.v.len());
    let mut out = vec![];
    for i in 0..p {
        for j in i..p {
            out.push((format!("Q{i}{j}"), c[(i, j)]));
        }
        for j in 0..k {
            out.push((format!("M{i}{j}"), c[(i, p + j)]));
        }
        out.push((format!("a{i}"), a[i]));
    }
    let model = Model::new(case.activation, a.clone(), case.v.clone(), case.noise);
    out.push(("e_g".into(), population_error(&model, c)));
    for (_, x) in out.iter_mut() {
        if !x.is_finite() {
            *x = f64::INFINITY;
        }
    }
    out
}

/// (label, D, p) of every KS test between two samples at the records t > 0.
fn compare(case: &Case, label: &str, x: &[Vec<State>], y: &[Vec<State>]) -> Vec<(String, f64, f64)> {
    let mut out = vec![];
    for (r, &t) in TIMES.iter().enumerate().skip(1) {
        let names: Vec<String> = observables(case, &x[0][r]).into_iter().map(|(n, _)| n).collect();
        let col =
            |s: &[Vec<State>], k: usize| -> Vec<f64> { s.iter().map(|run| observables(case, &run[r])[k].1).collect() };
        for (k, name) in names.iter().enumerate() {
            let (d, p) = ks_two_sample(&mut col(x, k), &mut col(y, k));
            out.push((format!("{label} t={t} {name}"), d, p));
        }
    }
    out
}

/// The Bonferroni family: per case, N, B and record t > 0: Q, M, a entries and e_g.
fn family_size() -> usize {
    cases()
        .iter()
        .map(|c| {
            let (p, k) = (c.a0.len(), c.v.len());
            (p * (p + 1) / 2 + p * k + p + 1) * (TIMES.len() - 1) * NS.len() * BATCHES.len()
        })
        .sum()
}

#[test]
fn chain_has_the_law_of_direct_sgd_with_a_trained_second_layer() {
    let k = family_size();
    let threshold = ALPHA / k as f64;
    let mut all = vec![];
    for case in cases() {
        for &n in &NS {
            for &b in &BATCHES {
                let direct = sample(&case, n, b, Sim::Direct);
                let chain = sample(&case, n, b, Sim::Chain);
                // The second layer really moves (otherwise the test would only repeat the fixed one).
                let mut moved: Vec<f64> = direct.iter().map(|run| (run[2].1[0] - case.a0[0]).abs()).collect();
                moved.sort_by(f64::total_cmp);
                let median = moved[moved.len() / 2];
                assert!(median > 1e-2, "{} N={n} B={b}: a barely moves ({median})", case.name);
                all.extend(compare(&case, &format!("{} N={n} B={b}", case.name), &direct, &chain));
            }
        }
    }
    assert_eq!(all.len(), k, "the Bonferroni family must be the tests actually run");
    all.sort_by(|x, y| x.2.total_cmp(&y.2));
    println!("{k} KS tests, Bonferroni threshold {threshold:.2e}; smallest p-values:");
    for (label, d, p) in all.iter().take(5) {
        println!("  {label:<50} D = {d:.4}  p = {p:.3e}");
    }
    let below = all.iter().filter(|r| r.2 < 0.1).count();
    println!("  {below} of {k} p-values below 0.1");
    let (label, d, p) = &all[0];
    assert!(*p >= threshold, "{label}: KS D = {d:.4}, p = {p:.3e} < {threshold:.2e}");
}

/// The same family-wise threshold rejects a chain whose η_a is 30 % too small (erf case, N = 20,
/// B = 1): the test has power against a wrong second-layer law.
#[test]
fn wrong_second_layer_rate_is_rejected() {
    let threshold = ALPHA / family_size() as f64;
    let case = cases().into_iter().next().expect("erf case");
    let direct = sample(&case, 20, 1, Sim::Direct);
    let wrong = sample(&case, 20, 1, Sim::SlowChain);
    let mut res = compare(&case, "slow chain N=20 B=1", &direct, &wrong);
    res.sort_by(|x, y| x.2.total_cmp(&y.2));
    let (label, d, p) = &res[0];
    println!("{label}: D = {d:.4}, p = {p:.3e} (threshold {threshold:.2e})");
    assert!(*p < threshold, "the equivalence test has no power against a wrong η_a");
}
