//! Simulation vs ODE with weight decay, label noise and mini-batches (issue 12, item 6): tests that
//! catch a wrong term of the overlap ODE (theory.md §4), for the quadratic and the erf activation.
//!
//! # Setting
//! The exact Gram-chain simulator (theory.md §7; same law as the direct simulator, tested by
//! `tests/chain_equivalence.rs` including erf, B = 4, weight decay and label noise; its cost per sample
//! does not depend on N), N = 40 000, S = 128 seeds per case, B = 4, informed start (`student_mix`) so
//! that there is no plateau: the overlaps move by O(1) on t ∈ [0, 4] and no small deviation is
//! amplified (theory.md §6). Record times t = 0.5, 1, …, 4 (T = 8); observables e_g and every entry of Q
//! (i ≤ j) and M (O = 6 and 8). Each run is compared with the ODE integrated from its own exact initial
//! overlaps ("matched").
//! * quadratic: p = 2, p* = 1, a = (½, ½), v = 1, η = 0.8, B = 4, ℓ₂ = 0.1, Δ = 0.5, M₀ ≈ (0.6, −0.3),
//!   σ₀ = 0.6;
//! * erf: p = p* = 2, a = v = 1, η = 2, B = 4, ℓ₂ = 0.05, Δ = 0.3, M₀ ≈ [[0.6, 0.2], [−0.1, 0.5]], σ₀ = 0.4.
//!
//! # Bands (derivation)
//! Theory.md §6: a run is s_N(t) = s(t) + ξ(t)/√N + b(t)/N + o(1/N), with s(t) its matched ODE, ξ Gaussian,
//! mean 0, covariance Σ(t) from the linear-noise approximation dΣ/dt = JΣ + ΣJᵀ + D, Σ(0) = 0, and b(t) an
//! O(1) bias. So for each observable o and time t the deviations d_r = sim − ODE of the S independent runs
//! are iid with mean b/N and standard deviation σ/√N. Three families of comparisons per test, each at
//! family-wise false-alarm probability α/3 with α = 1e-3 (Bonferroni over its comparisons, m = T·O):
//! 1. mean over seeds: |d̄| ≤ t·se + c_o/N, se = s.d.(d_r)/√S, t the two-sided Student-t_{S−1} quantile at
//!    α/(3m) (4.69 quadratic, m = 48; 4.76 erf, m = 64), since (d̄ − b/N)/se is Student-t and c_o ≥ |b|;
//! 2. every single run: |d_r| ≤ z·σ_LNA/√N + c_o/N, z = Φ⁻¹(1 − α/(6mS)) (5.44 and 5.49). σ_LNA is computed
//!    here from theory, not fitted: J by differentiating the ODE right-hand side, D = Cov of the
//!    per-sample increment N·Δs = ((η/B)(δλᵀ + λδᵀ) + (η/B)² δδᵀ, (η/B) δνᵀ) written from the SGD update
//!    itself (not from the ODE's moment formulas), averaged over (λ, ν, ξ): the library's
//!    `population::fluctuations` (exact moment engine for the quadratic, Gauss–Hermite for erf) and
//!    `ode::lna::covariance_path`, e_g by the delta method;
//! 3. variance over seeds: N·s.d.(d_r)²/σ²_LNA within the χ²_{S−1}/(S−1) quantiles at α/(6m) on each side
//!    ([0.53, 1.67]), a check of the fluctuation theory itself.
//!
//! Bias allowance c_o (`calibrate_bias`, an ignored test, 16 384 / 4 096 / 2 048 seeds at N = 400 / 800 /
//! 1 600): N·mean(d) is the same at the three N within its errors, as an O(1/N) bias must be (largest over t,
//! quadratic e_g: 2.84 ± 0.09, 3.10 ± 0.25, 2.17 ± 0.48; every other quadratic observable ≤ 0.98 at N = 400 and
//! 800, ≤ 2.1 ± 1.6 at N = 1 600; erf ≤ 0.44).
//! c_o = 1.25 × max over N ∈ {400, 800} and t of N(|mean| + 3 se), rounded up to a multiple of 0.5: quadratic
//! e_g 5, q_0_0 4.5, q_0_1 2.5, q_1_1 2, m_0_0 2.5, m_1_0 1.5; erf e_g 0.5, overlaps ≤ 1 (1 for all). At
//! N = 40 000, S = 128 this widens the mean band by at most 0.6 se (c√S/(σ√N)), and the per-run band by less
//! than 0.06 σ/√N.
//!
//! Measured with the fixed seeds: worst mean z 1.84 (quadratic) and 2.10 (erf) against 4.69 / 4.76; worst
//! single run 4.05 / 3.77 σ_LNA against 5.44 / 5.49; variance ratios [0.81, 1.32] / [0.82, 1.22].
//! Over 12 other base seeds (`HDSGD_TERMS_SEED` = 1 … 12) all passed, worst mean z 2.82 / 2.35, worst single
//! run 4.40 / 4.30, variance ratios [0.70, 1.47] / [0.64, 1.44]: as expected for the maxima of 48–64
//! t-statistics and ~7 000 Gaussian deviations (a bias larger than its allowance would show as mean z growing
//! with √(NS)).
//!
//! # Falsification
//! In the tests, each deliberately wrong ODE must leave the mean band (max z over t and o, fixed seeds,
//! quadratic / erf; limits 4.69 / 4.76): gradient flow (η² term dropped) 1063 / 1384; η × 1.1 51 / 132;
//! ℓ₂ halved 52 / 394; Δ = 0 (the noise term of E[δδᵀ] dropped) 249 / 1200; B = 1 instead of 4: the ODE
//! diverges before t = 0.5 / 8709.
//!
//! Source mutations (applied one at a time to `src/ode/rhs.rs` and `src/population/`, the suite run, the
//! mutation reverted; z = worst mean z of the failing test, limit 4.69 / 4.76; the two older tests
//! `sim_vs_ode_quadratic.rs` and `sim_vs_ode_erf.rs` for comparison):
//!
//! | mutation                                                   | quadratic test | erf test   | old quad / old erf |
//! |------------------------------------------------------------|----------------|------------|--------------------|
//! | ode/rhs.rs: weight decay −2ℓ₂Q → −ℓ₂Q                       | FAIL z = 254   | FAIL 358   | pass / pass        |
//! | ode/rhs.rs: weight decay −ℓ₂M → −2ℓ₂M                       | FAIL 463       | FAIL 661   | pass / pass        |
//! | ode/rhs.rs: batch factor (η/B)² → η²/B                      | FAIL (1)       | FAIL 5396  | pass / pass        |
//! | quadratic.rs: noise term 4A(ΔQ)A of E[δδᵀ] dropped          | FAIL 249       | pass (2)   | pass / pass        |
//! | quadratic.rs: η² term, Wick 8·CKCKC → 4·CKCKC               | FAIL 319       | pass (2)   | FAIL / pass        |
//! | erf.rs: noise term Δ·J2 of E[δδᵀ] dropped                   | pass (2)       | FAIL 1200  | pass / pass        |
//! | erf.rs: I4 Λ0 cross term C12·C14·C23 → C12·C13·C24          | pass (2)       | FAIL 63.9  | pass / pass        |
//! | erf.rs: I4 Λ1 cross term 2·C12·C13·C23 → C12·C13·C23        | pass (2)       | FAIL 18.5  | pass / pass        |
//! | erf.rs: I4 off-diagonal (m ≠ l) terms counted once          | pass (2)       | FAIL 1340  | pass / FAIL        |
//! | erf.rs: η² term prefactor 4/π² × 1.05                       | pass (2)       | FAIL 27.3  | pass / pass        |
//! | erf.rs: η² term prefactor 4/π² → 2/π²                       | pass (2)       | FAIL 240   | pass / FAIL        |
//! | erf.rs: I3 cross term C12·C13 × 0.9 (η term)                | pass (2)       | FAIL 26.8  | pass / pass        |
//!
//! (1) the mutated ODE diverges at t ≈ 1.80 while every run stays bounded ("the correct ODE stopped").
//! (2) the mutated code is not used by that case. In every failing case the mean family fails, already at
//! t = 0.5; the single-run family fails as well except for the Λ1, × 1.05 and I3 mutations (worst single run
//! 4.1–5.3 σ_LNA), which only the mean over 128 seeds resolves.
//!
//! Runtime (release): about 2 s of CPU for the quadratic and 3 s for the erf test (two threads each); 4.5 and
//! 6.7 s of wall time alone, 11.4 s for both together, measured with the 2 cores loaded by other jobs (load
//! average ≈ 10). Re-run on fresh randomness with
//! `HDSGD_TERMS_SEED=k cargo test --release --test sim_vs_ode_terms -- --nocapture` (prints the tables).

use hdsgd::analysis::fluctuations::predicted_n_var;
use hdsgd::init::{InitSpec, TeacherInit};
use hdsgd::model::{Activation, Model, Training};
use hdsgd::ode::lna::{covariance_path, LnaOptions};
use hdsgd::ode::{integrate, OdeOptions, OdeVariant};
use hdsgd::overlaps::Overlaps;
use hdsgd::population::fluctuations::Quadrature;
use hdsgd::population::population_error;
use hdsgd::rng::run_seed;
use hdsgd::simulators::chain::ChainSimulator;
use hdsgd::simulators::{RunSpec, Simulator, Trajectory};
use nalgebra::{DMatrix, DVector};
use std::ops::ControlFlow;
use std::time::Instant;

// ----------------------------------------------------------------------------------------------
// Statistics helpers (no external crate: the quantiles only need a few digits).
// ----------------------------------------------------------------------------------------------

/// erfc(x), fractional error < 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * poly.exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

/// z such that P(|Z| > z) = q for Z ~ N(0, 1), by bisection.
fn normal_two_sided(q: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if erfc(mid / std::f64::consts::SQRT_2) > q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// t such that P(|T_ν| > t) = q (Cornish–Fisher expansion of Student's t to O(ν⁻²); relative error
/// below 1e-3 for ν ≥ 60 at the tail probabilities used here).
fn student_two_sided(q: f64, nu: f64) -> f64 {
    let z = normal_two_sided(q);
    let (z3, z5) = (z.powi(3), z.powi(5));
    z + (z3 + z) / (4.0 * nu) + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * nu * nu)
}

/// The χ²_ν quantile at lower-tail probability `prob` (Wilson–Hilferty).
fn chi2_quantile(prob: f64, nu: f64) -> f64 {
    // Signed normal quantile from the two-sided one.
    let z = if prob < 0.5 {
        -normal_two_sided(2.0 * prob)
    } else {
        normal_two_sided(2.0 * (1.0 - prob))
    };
    let c = 2.0 / (9.0 * nu);
    nu * (1.0 - c + z * c.sqrt()).powi(3)
}

// ----------------------------------------------------------------------------------------------
// Observables: e_g, then the ODE state (Q upper triangle, M), as in `Overlaps::to_state`.
// ----------------------------------------------------------------------------------------------

fn observables(model: &Model, ov: &Overlaps) -> Vec<f64> {
    let mut v = vec![population_error(model, &ov.gram())];
    v.extend(ov.to_state().iter());
    v
}

fn observable_names(model: &Model) -> Vec<String> {
    let mut v = vec!["eg".to_string()];
    v.extend(Overlaps::column_names(model.p(), model.p_star()));
    v
}

// ----------------------------------------------------------------------------------------------
// Linear-noise approximation (theory.md §6): σ(t) of √N·(sim − matched ODE), Σ(0) = 0.
// ----------------------------------------------------------------------------------------------

/// σ(t, obs) = √(N·Var(sim − matched ODE)) at leading order, for the observables of
/// [`observables`] at `times`, from the library's linear-noise approximation
/// (`hdsgd::ode::lna::covariance_path`, Σ(0) = 0, along the ODE from `initial`; D = Cov of the
/// per-sample SGD increment, `population::fluctuations`), e_g by the delta method
/// (`analysis::fluctuations::predicted_n_var`). The erf D uses `nodes` Gauss–Hermite nodes per
/// dimension (p + p* = 4 is beyond the 1e-8 default quadrature; ~1e-2 relative is ample for these bands).
fn lna_sigma(model: &Model, tr: &Training, initial: &Overlaps, times: &[f64], nodes: usize) -> Vec<Vec<f64>> {
    let opts = LnaOptions {
        max_step: 2.0 * LNA_H,
        quadrature: Quadrature::GaussHermite(nodes),
        ..LnaOptions::default()
    };
    let len = initial.to_state().len();
    let sol = covariance_path(model, tr, initial, &DMatrix::zeros(len, len), times, &opts).expect("LNA");
    sol.states
        .iter()
        .zip(&sol.sigma)
        .map(|(s, sig)| {
            let eg = predicted_n_var(model, &initial.p, s, sig, "eg").expect("e_g gradient");
            let mut out = vec![eg.max(0.0).sqrt()];
            out.extend((0..len).map(|k| sig[(k, k)].max(0.0).sqrt()));
            out
        })
        .collect()
}

// ----------------------------------------------------------------------------------------------
// Cases, simulation and the matched ODEs (correct and deliberately wrong).
// ----------------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    model: Model,
    training: Training,
    init: InitSpec,
    n: usize,
    seeds: u64,
    base_seed: u64,
    /// Record times after t = 0 (multiples of LNA_H, whole steps at this N and B).
    times: Vec<f64>,
    /// Bias allowance c_o per observable: |E[sim − ode]| ≤ c_o/N (see the header).
    bias: Vec<f64>,
    /// Gauss–Hermite nodes per input dimension for the erf D (unused for the quadratic: exact).
    nodes: usize,
}

/// An ODE to compare the runs with: the correct one first, then deliberately wrong ones.
struct OdeCase {
    label: &'static str,
    model: Model,
    training: Training,
    variant: OdeVariant,
}

fn ode_cases(case: &Case) -> Vec<OdeCase> {
    let (m, t) = (&case.model, case.training);
    let oc = |label, model: Model, training, variant| OdeCase {
        label,
        model,
        training,
        variant,
    };
    vec![
        oc("correct", m.clone(), t, OdeVariant::Full),
        oc("gradient flow (no η² term)", m.clone(), t, OdeVariant::GradientFlow),
        oc(
            "η × 1.1",
            m.clone(),
            Training { eta: t.eta * 1.1, ..t },
            OdeVariant::Full,
        ),
        oc(
            "weight decay halved",
            m.clone(),
            Training {
                weight_decay: t.weight_decay / 2.0,
                ..t
            },
            OdeVariant::Full,
        ),
        oc(
            "label noise Δ = 0",
            Model {
                noise: 0.0,
                ..m.clone()
            },
            t,
            OdeVariant::Full,
        ),
        oc("batch B = 1", m.clone(), Training { batch: 1, ..t }, OdeVariant::Full),
    ]
}

const ODE_OPTIONS: OdeOptions = OdeOptions {
    rtol: 1e-10,
    atol: 1e-12,
    divergence_bound: 1e6,
    variant: OdeVariant::Full,
    max_steps: 10_000_000,
};

/// Base seed: fixed, or from HDSGD_TERMS_SEED to re-run the whole test on fresh randomness (how the
/// false-alarm rate was checked).
fn base_seed(case: &Case) -> u64 {
    match std::env::var("HDSGD_TERMS_SEED") {
        Ok(s) => s.parse::<u64>().expect("HDSGD_TERMS_SEED is an integer") ^ case.base_seed,
        Err(_) => case.base_seed,
    }
}

/// One run of the chain: its trajectory on [0, times…].
fn run_one(case: &Case, n: usize, seed: u64) -> Trajectory {
    let spec = RunSpec {
        model: case.model.clone(),
        training: case.training,
        n,
        divergence_bound: 1e6,
    };
    let mut grid = vec![0.0];
    grid.extend(&case.times);
    let mut sim = ChainSimulator::with_init(spec, &case.init, seed);
    let traj = sim.run(&grid, &mut |_| ControlFlow::Continue(()));
    assert!(traj.diverged_at.is_none(), "{}: run diverged", case.name);
    assert_eq!(traj.records.len(), grid.len());
    for (rec, t) in traj.records.iter().zip(&grid) {
        assert!((rec.t - t).abs() < 1e-12, "record at {} instead of {t}", rec.t);
    }
    traj
}

/// sim − ode[t][obs] (t = 0 excluded: zero by construction) against each ODE of `odes`.
fn deviations(case: &Case, traj: &Trajectory, odes: &[OdeCase]) -> Vec<Vec<Vec<f64>>> {
    let mut grid = vec![0.0];
    grid.extend(&case.times);
    odes.iter()
        .enumerate()
        .map(|(k, oc)| {
            let opts = OdeOptions {
                variant: oc.variant,
                ..ODE_OPTIONS
            };
            let sol = integrate(&oc.model, &oc.training, &traj.initial, &grid, &opts, |_, _: &_| false).expect("ODE");
            // A wrong ODE may diverge: from there on its deviation is infinite (it left the band).
            assert!(sol.stop.is_none() || k > 0, "the correct ODE stopped: {:?}", sol.stop);
            traj.records[1..]
                .iter()
                .enumerate()
                .map(|(t, rec)| {
                    let s = observables(&case.model, &rec.overlaps);
                    match sol.overlaps.get(t + 1) {
                        Some(ov) => s.iter().zip(observables(&case.model, ov)).map(|(a, b)| a - b).collect(),
                        None => vec![f64::INFINITY; s.len()],
                    }
                })
                .collect()
        })
        .collect()
}

/// One run: (seed index, sim − ode[ode][t][obs], initial overlaps).
type RunDeviations = (u64, Vec<Vec<Vec<f64>>>, Overlaps);

/// Every run of `case` at dimension n (two threads): devs[ode][run][t][obs], and the mean initial
/// overlaps (for the LNA path).
fn simulate(case: &Case, n: usize, seeds: u64, odes: &[OdeCase]) -> (Vec<Vec<Vec<Vec<f64>>>>, Overlaps) {
    let base = base_seed(case);
    let workers = 2;
    let mut per_run: Vec<RunDeviations> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    (w..seeds)
                        .step_by(workers as usize)
                        .map(|i| {
                            let traj = run_one(case, n, run_seed(base, n, i));
                            let d = deviations(case, &traj, odes);
                            (i, d, traj.initial)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    per_run.sort_by_key(|r| r.0);
    let s0 = per_run
        .iter()
        .fold(DVector::zeros(per_run[0].2.to_state().len()), |acc, r| {
            acc + r.2.to_state()
        })
        / seeds as f64;
    let p_t = per_run[0].2.p.clone();
    let mut devs = vec![Vec::new(); odes.len()];
    for (_, d, _) in per_run {
        for (k, dk) in d.into_iter().enumerate() {
            devs[k].push(dk);
        }
    }
    (devs, Overlaps::from_state(&s0, &p_t))
}

/// Mean and standard deviation over runs, per [t][obs].
fn mean_sd(devs: &[Vec<Vec<f64>>]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let s = devs.len() as f64;
    let (nt, no) = (devs[0].len(), devs[0][0].len());
    let mut mean = vec![vec![0.0; no]; nt];
    let mut sd = vec![vec![0.0; no]; nt];
    for t in 0..nt {
        for o in 0..no {
            let m = devs.iter().map(|d| d[t][o]).sum::<f64>() / s;
            let v = devs.iter().map(|d| (d[t][o] - m).powi(2)).sum::<f64>() / (s - 1.0);
            mean[t][o] = m;
            sd[t][o] = v.sqrt();
        }
    }
    (mean, sd)
}

// ----------------------------------------------------------------------------------------------
// The checks.
// ----------------------------------------------------------------------------------------------

/// Half the largest step of the LNA integration.
const LNA_H: f64 = 0.05;
/// Family-wise false-alarm probability of each case, split equally over its three families of
/// comparisons (mean, per run, variance).
const ALPHA: f64 = 1e-3;

fn check_case(case: &Case) {
    let start = Instant::now();
    let odes = ode_cases(case);
    let (devs, init_mean) = simulate(case, case.n, case.seeds, &odes);
    let sim_secs = start.elapsed().as_secs_f64();
    let names = observable_names(&case.model);
    let sig = lna_sigma(&case.model, &case.training, &init_mean, &case.times, case.nodes);
    let (nt, no) = (case.times.len(), names.len());
    let (s, n) = (case.seeds as f64, case.n as f64);
    let m = (nt * no) as f64;
    let a3 = ALPHA / 3.0;
    let z_mean = student_two_sided(a3 / m, s - 1.0);
    let z_run = normal_two_sided(a3 / (m * s));
    let (v_lo, v_hi) = (
        chi2_quantile(a3 / (2.0 * m), s - 1.0) / (s - 1.0),
        chi2_quantile(1.0 - a3 / (2.0 * m), s - 1.0) / (s - 1.0),
    );
    eprintln!(
        "{}: N = {}, {} seeds, {} times × {} observables; z_mean = {z_mean:.2}, z_run = {z_run:.2}, \
         variance ratio in [{v_lo:.2}, {v_hi:.2}]; simulation {sim_secs:.1} s, LNA {:.1} s",
        case.name,
        case.n,
        case.seeds,
        nt,
        no,
        start.elapsed().as_secs_f64() - sim_secs
    );
    // z-score of a mean deviation beyond the bias allowance (infinite for a diverged wrong ODE).
    let score = |mean: f64, sd: f64, o: usize| {
        if mean.is_finite() {
            (mean.abs() - case.bias[o] / n).max(0.0) / (sd / s.sqrt())
        } else {
            f64::INFINITY
        }
    };
    let (mean, sd) = mean_sd(&devs[0]);
    // Failures per family: mean test, per-run band, variance, wrong ODEs inside the band.
    let mut failures: [Vec<String>; 4] = Default::default();
    eprintln!("  obs     | max z (mean) | max per-run |d|/(σ/√N) | var ratio range | σ_LNA range");
    let mut worst = (0.0f64, 0.0f64, 1.0f64, 1.0f64);
    for (o, name) in names.iter().enumerate() {
        let (mut zm, mut zr, mut vr_lo, mut vr_hi) = (0.0f64, 0.0f64, f64::INFINITY, 0.0f64);
        let (mut sl, mut sh) = (f64::INFINITY, 0.0f64);
        for t in 0..nt {
            let z = score(mean[t][o], sd[t][o], o);
            zm = zm.max(z);
            if z > z_mean {
                failures[0].push(format!(
                    "{name} at t = {}: mean(sim − ode) = {:.3e} ± {:.3e} (z = {z:.2} > {z_mean:.2}, bias allowance {:.1e})",
                    case.times[t],
                    mean[t][o],
                    sd[t][o] / s.sqrt(),
                    case.bias[o] / n
                ));
            }
            let band = sig[t][o] / n.sqrt();
            for (r, d) in devs[0].iter().enumerate() {
                let x = (d[t][o].abs() - case.bias[o] / n).max(0.0) / band;
                zr = zr.max(x);
                if x > z_run {
                    failures[1].push(format!(
                        "run {r}: {name} at t = {}: |sim − ode| = {:.3e} > {z_run:.2} σ/√N = {:.3e}",
                        case.times[t],
                        d[t][o].abs(),
                        z_run * band
                    ));
                }
            }
            let ratio = (sd[t][o] / band).powi(2);
            vr_lo = vr_lo.min(ratio);
            vr_hi = vr_hi.max(ratio);
            if !(v_lo..=v_hi).contains(&ratio) {
                failures[2].push(format!(
                    "{name} at t = {}: Var over seeds / LNA variance = {ratio:.3} outside [{v_lo:.2}, {v_hi:.2}]",
                    case.times[t]
                ));
            }
            sl = sl.min(sig[t][o]);
            sh = sh.max(sig[t][o]);
        }
        eprintln!("  {name:7} | {zm:12.2} | {zr:23.2} | [{vr_lo:.2}, {vr_hi:.2}]    | [{sl:.3}, {sh:.3}]");
        worst = (worst.0.max(zm), worst.1.max(zr), worst.2.min(vr_lo), worst.3.max(vr_hi));
    }
    eprintln!(
        "  worst: mean z {:.2} (limit {z_mean:.2}), per-run {:.2} (limit {z_run:.2}), variance ratio [{:.2}, {:.2}]",
        worst.0, worst.1, worst.2, worst.3
    );
    // Falsification: every deliberately wrong ODE must leave the band of the mean test.
    for (k, oc) in odes.iter().enumerate().skip(1) {
        let (mw, sw) = mean_sd(&devs[k]);
        let (mut best, mut at) = (0.0f64, String::new());
        for t in 0..nt {
            for o in 0..no {
                let z = score(mw[t][o], sw[t][o], o);
                if z > best {
                    best = z;
                    at = format!(
                        "{} at t = {} (mean deviation {:.3e})",
                        names[o], case.times[t], mw[t][o]
                    );
                }
            }
        }
        eprintln!("  wrong ODE {:28}: max z = {best:9.1} ({at})", oc.label);
        if best <= z_mean {
            failures[3].push(format!(
                "the wrong ODE `{}` stays inside the band (max z = {best:.2})",
                oc.label
            ));
        }
    }
    eprintln!("  total {:.1} s", start.elapsed().as_secs_f64());
    let families = [
        "mean over seeds outside z·se + c/N",
        "single runs outside z·σ_LNA/√N + c/N",
        "variance over seeds inconsistent with the LNA",
        "wrong ODEs inside the band",
    ];
    let report: Vec<String> = families
        .iter()
        .zip(&failures)
        .filter(|(_, f)| !f.is_empty())
        .map(|(name, f)| {
            let shown: Vec<&str> = f.iter().take(8).map(String::as_str).collect();
            let more = if f.len() > 8 {
                format!("\n    … and {} more", f.len() - 8)
            } else {
                String::new()
            };
            format!("  {} ({}):\n    {}{more}", name, f.len(), shown.join("\n    "))
        })
        .collect();
    assert!(report.is_empty(), "{}:\n{}", case.name, report.join("\n"));
}

fn quadratic_case() -> Case {
    Case {
        name: "quadratic p=2 p*=1, B=4, ℓ₂=0.1, Δ=0.5",
        model: Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.5),
        training: Training {
            eta: 0.8,
            weight_decay: 0.1,
            batch: 4,
        },
        init: InitSpec {
            teacher: TeacherInit::Orthonormal,
            sigma0: 0.6,
            student_mix: Some(vec![vec![0.6], vec![-0.3]]),
        },
        n: 40_000,
        seeds: 128,
        base_seed: 20_261_201,
        times: (1..=8).map(|k| 0.5 * k as f64).collect(),
        // eg, q_0_0, q_0_1, q_1_1, m_0_0, m_1_0 (header: calibration)
        bias: vec![5.0, 4.5, 2.5, 2.0, 2.5, 1.5],
        nodes: 7,
    }
}

fn erf_case() -> Case {
    Case {
        name: "erf p=p*=2, B=4, ℓ₂=0.05, Δ=0.3",
        model: Model::new(Activation::Erf, vec![1.0, 1.0], vec![1.0, 1.0], 0.3),
        training: Training {
            eta: 2.0,
            weight_decay: 0.05,
            batch: 4,
        },
        init: InitSpec {
            teacher: TeacherInit::Orthonormal,
            sigma0: 0.4,
            student_mix: Some(vec![vec![0.6, 0.2], vec![-0.1, 0.5]]),
        },
        n: 40_000,
        seeds: 128,
        base_seed: 19_951_225,
        times: (1..=8).map(|k| 0.5 * k as f64).collect(),
        // eg, then every overlap (header: calibration)
        bias: vec![0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        nodes: 10,
    }
}

#[test]
fn quadratic_weight_decay_noise_batch_follow_the_ode() {
    check_case(&quadratic_case());
}

#[test]
fn erf_weight_decay_noise_batch_follow_the_ode() {
    check_case(&erf_case());
}

/// Calibration of the bias allowance (not part of the suite: `cargo test --release --test
/// sim_vs_ode_terms -- --ignored --nocapture`): N·mean(sim − ode) ± N·se at N = 400, 800, 1600,
/// largest |·| over the record times, per observable. Theory: constant in N (bias O(1/N)).
#[test]
#[ignore]
fn calibrate_bias() {
    for case in [quadratic_case(), erf_case()] {
        let odes: Vec<OdeCase> = ode_cases(&case).into_iter().take(1).collect();
        let names = observable_names(&case.model);
        for (n, seeds) in [(400usize, 16384u64), (800, 4096), (1600, 2048)] {
            let start = Instant::now();
            let (devs, _) = simulate(&case, n, seeds, &odes);
            let (mean, sd) = mean_sd(&devs[0]);
            let nf = n as f64;
            let line: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(o, name)| {
                    // Largest N·|mean| over t, and the upper bound max_t N(|mean| + 3 se).
                    let se = |t: usize| nf * sd[t][o] / (seeds as f64).sqrt();
                    let (t, _) = (0..case.times.len())
                        .map(|t| (t, mean[t][o].abs()))
                        .fold((0, -1.0), |a, b| if b.1 > a.1 { b } else { a });
                    let bound = (0..case.times.len())
                        .map(|t| nf * mean[t][o].abs() + 3.0 * se(t))
                        .fold(0.0, f64::max);
                    format!(
                        "{name} {:+.2}±{:.2} (t={}) ≤{bound:.2}",
                        nf * mean[t][o],
                        se(t),
                        case.times[t]
                    )
                })
                .collect();
            eprintln!(
                "{} N = {n}: {} [{:.1} s]",
                case.name,
                line.join(", "),
                start.elapsed().as_secs_f64()
            );
        }
    }
}
