//! Goldt et al. (NeurIPS 2019, arXiv:1906.08632): the final generalisation error of an erf student
//! of width K learning a noisy erf teacher of width M = 2 (v* = 1, label noise σ = 0.1, Δ = σ²),
//! training only the first layer (a = 1, the soft committee machine) or both layers (a trained from a
//! small start). The paper's finding: e_g(t → ∞) grows with K when only the first layer is trained,
//! and stays constant or decreases with K when both are.
//!
//! The overlap ODE (N → ∞) from the overlaps of one random initialisation per K (σ₀ = 0.1 at
//! N = 10⁴, seed 2019), integrated to t = 2·10⁴ (or until the integrator's stiffness detector stops
//! it at the fixed point); e_g at the last time t reached and at t/2 are printed to show convergence.
//!
//!   cargo run --release --example goldt2019_final_error [out.svg]
//!
//! writes the figure (default docs/figures/goldt2019_final_error.svg).

use hdsgd::init::{initial_weights, InitSpec, TeacherInit};
use hdsgd::model::{Activation, Model, SecondLayerSgd, Training};
use hdsgd::ode::{integrate, OdeOptions, OdeSolution, OdeStop};
use hdsgd::overlaps::Overlaps;
use hdsgd::rng::stream;
use hdsgd::studies::plots::{self, Panel, Series};

const M: usize = 2;
const ETA: f64 = 0.5;
const NOISE: f64 = 0.01;
const T_MAX: f64 = 2e4;

/// The initial overlaps of one random initialisation of width `k` (N = 10⁴, σ₀ = 0.1).
fn initial(k: usize) -> Overlaps {
    let mut rng = stream(2019, k as u64);
    let init = InitSpec::uninformed(TeacherInit::Orthonormal, 0.1);
    let (w, ws) = initial_weights(&mut rng, k, M, 10_000, &init);
    Overlaps::from_weights(w.view(), ws.view())
}

/// The ODE of width `k`, both layers trained (a₀ small and distinct) or the first only (a = 1).
fn solve(k: usize, both: bool, grid: &[f64]) -> OdeSolution {
    let model = if both {
        let a0 = (0..k).map(|i| 0.1 + 0.05 * i as f64).collect();
        Model::new(Activation::Erf, a0, vec![1.0; M], NOISE).with_trained_a(SecondLayerSgd {
            eta: ETA,
            weight_decay: 0.0,
        })
    } else {
        Model::new(Activation::Erf, vec![1.0; k], vec![1.0; M], NOISE)
    };
    let tr = Training {
        eta: ETA,
        weight_decay: 0.0,
        batch: 1,
    };
    let sol = integrate(&model, &tr, &initial(k), grid, &OdeOptions::default(), |_, _: &_| false).expect("erf ODE");
    // Close to the fixed point Dormand–Prince's stiffness detector can stop the integration (its step
    // is then limited by stability, not accuracy): the state has converged, keep the points reached.
    match &sol.stop {
        None | Some(OdeStop::Failed { .. }) if sol.t.len() > grid.len() / 2 => sol,
        other => panic!("K = {k}, both = {both}: stopped at {other:?}"),
    }
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/figures/goldt2019_final_error.svg".into());
    let grid = hdsgd::grid::time_grid(hdsgd::grid::GridKind::Log, 200, 0.1, T_MAX);
    let ks: Vec<usize> = (2..=6).collect();
    let mut finals = [vec![], vec![]];
    let mut curves = vec![];
    println!(
        "| K | first layer: t reached | e_g(t/2) | e_g(t) | both layers: t reached | e_g(t/2) | e_g(t) | final a |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &k in &ks {
        let (first, both) = (solve(k, false, &grid), solve(k, true, &grid));
        // e_g at the last time reached and at half of it: equal when the ODE has converged.
        let half = |s: &OdeSolution| s.eg[s.t.iter().position(|&t| t >= s.t.last().unwrap() / 2.0).unwrap()];
        let a = both.a.as_ref().unwrap().last().unwrap();
        let a: Vec<String> = a.iter().map(|x| format!("{x:.3}")).collect();
        println!(
            "| {k} | {:.0} | {:.3e} | {:.3e} | {:.0} | {:.3e} | {:.3e} | {} |",
            first.t.last().unwrap(),
            half(&first),
            first.eg.last().unwrap(),
            both.t.last().unwrap(),
            half(&both),
            both.eg.last().unwrap(),
            a.join(", ")
        );
        finals[0].push(*first.eg.last().unwrap());
        finals[1].push(*both.eg.last().unwrap());
        curves.push((k, first, both));
    }
    let kx: Vec<f64> = ks.iter().map(|&k| k as f64).collect();
    let final_panel = Panel::new(
        "erf, M = 2, σ = 0.1, η = η_a = 0.5: final e_g (ODE)",
        "K (student width)",
        "e_g (population error)",
        vec![
            Series::line("first layer trained (a = 1)", kx.clone(), finals[0].clone(), 0).markers(),
            Series::line("both layers trained", kx, finals[1].clone(), 1).markers(),
        ],
    )
    .log_axes(false, true);
    let mut curve_series = vec![];
    for (ci, (k, first, both)) in curves.iter().enumerate() {
        curve_series.push(Series::line(
            format!("K = {k}, both"),
            both.t.clone(),
            both.eg.clone(),
            ci,
        ));
        curve_series.push(Series::line(String::new(), first.t.clone(), first.eg.clone(), ci).dashed());
    }
    curve_series.push(Series::style_key("both layers trained", false));
    curve_series.push(Series::style_key("first layer only (a = 1)", true));
    let curve_panel =
        Panel::new("e_g(t)", plots::TIME_LABEL, "e_g (population error)", curve_series).log_axes(true, true);
    plots::draw(std::path::Path::new(&out), &[final_panel, curve_panel], 2)?;
    println!("wrote {out}");
    Ok(())
}
