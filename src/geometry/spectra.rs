//! `hdsgd hessian`: Hessian spectra of the population loss at the plateau and at a solution.
//!
//! * Start: the explicit initial overlaps (`[init] q0, m0, p`) if given, else the initial overlaps of
//!   run (N = `geometry.hessian_n`, seed index 0) of the experiment.
//! * Plateau: the stationary point of e_g with M = 0, found by integrating the gradient-flow ODE
//!   from (Q₀, M = 0) (M = 0 is invariant) until max|dQ/dt| < 1e-13 (reported with |∇_W e_g|; for
//!   uniform layers also compared with q* = v p*/(a(p + 2)) of theory.md §5).
//! * Solution: the point of the zero-loss manifold closest to the start (Procrustes,
//!   [`super::selection::selected_solution`]), the end point of the ODE from an isotropic start; e_g
//!   there is zero up to rounding.
//!
//! Both are realised as weights at N = `hessian_n` ([`super::hessian::realise`]); the full pN × pN
//! Hessian is diagonalised and its eigenvalues counted with the tolerance zero_tol·max|λ|.
//! Outputs: `hessian.json` (counts, expected counts, min/max, bulk prediction) and
//! `hessian_spectra.csv` (`point,index,eigenvalue`).

use super::conserved::check_model;
use super::hessian::{
    bulk_eigenvalues, counts, expected_plateau_counts, expected_solution_counts, gradient, hessian,
    population_error_at, realise, spectrum, SpectrumCounts,
};
use super::selection::selected_solution;
use super::{GeometryConfig, MAX_HESSIAN_DIM};
use crate::config::Experiment;
use crate::experiments::output::{check_output_dir, write_atomic};
use crate::experiments::runner::{initial_overlaps, RunTask};
use crate::experiments::{output_dir, OutputOptions};
use crate::model::{Model, Training};
use crate::ode::{derivatives, integrate, OdeOptions, OdeVariant};
use crate::overlaps::Overlaps;
use crate::rng::run_seed;
use anyhow::{bail, Context, Result};
use nalgebra::DMatrix;
use serde_json::json;
use std::fmt::Write as _;

/// The plateau of the ODE `variant` from (Q₀, M = 0) (M = 0 is invariant): integrates until
/// max|dQ/dt| < `tol` (or t = 1e7). Returns the overlaps and the final max|dQ/dt|. With
/// [`OdeVariant::GradientFlow`] this is the stationary point of e_g restricted to M = 0.
pub fn plateau(
    model: &Model,
    training: &Training,
    q0: &DMatrix<f64>,
    p: &DMatrix<f64>,
    variant: OdeVariant,
    tol: f64,
) -> Result<(Overlaps, f64)> {
    let start = Overlaps::new(q0.clone(), DMatrix::zeros(q0.nrows(), p.nrows()), p.clone());
    let opts = OdeOptions {
        rtol: 1e-12,
        atol: 1e-14,
        variant,
        ..OdeOptions::default()
    };
    let rate = |ov: &Overlaps| {
        derivatives(model, training, ov, variant)
            .map(|(dq, _)| dq.amax())
            .unwrap_or(f64::NAN)
    };
    let mut last: Option<Overlaps> = None;
    let sol = integrate(model, training, &start, &[0.0, 1e7], &opts, |_, ov: &Overlaps| {
        let stop = rate(ov) < tol;
        if stop {
            last = Some(ov.clone());
        }
        stop
    })?;
    let ov = match last {
        Some(ov) => ov,
        None => sol
            .overlaps
            .last()
            .cloned()
            .context("plateau integration produced nothing")?,
    };
    let r = rate(&ov);
    Ok((ov, r))
}

/// The spectrum of one point, its counts and the expected ones.
struct PointReport {
    name: &'static str,
    eigenvalues: Vec<f64>,
    json: serde_json::Value,
    counts: SpectrumCounts,
    expected: Option<(usize, usize, usize)>,
}

fn analyse(
    name: &'static str,
    model: &Model,
    ov: &Overlaps,
    n: usize,
    seed: u64,
    zero_tol: f64,
    expected: Option<(usize, usize, usize)>,
) -> Result<PointReport> {
    let (w, ws) = realise(ov, n, seed)?;
    let h = hessian(model, &w, &ws);
    let eigenvalues = spectrum(&h);
    let c = counts(&eigenvalues, zero_tol);
    let bulk = bulk_eigenvalues(model, ov, n);
    // How many eigenvalues sit at each predicted bulk value (within the zero tolerance).
    let bulk_hits: Vec<usize> = bulk
        .iter()
        .map(|b| eigenvalues.iter().filter(|&&e| (e - b).abs() <= c.tol).count())
        .collect();
    let json = json!({
        "e_g": population_error_at(model, &w, &ws),
        "gradient_max_abs": gradient(model, &w, &ws).amax(),
        "q": ov.q.iter().copied().collect::<Vec<_>>(),
        "m": ov.m.iter().copied().collect::<Vec<_>>(),
        "counts": c,
        "expected": expected.map(|(a, b, d)| json!({"negative": a, "zero": b, "positive": d})),
        "bulk_predicted": bulk,
        "bulk_multiplicity_predicted": n.saturating_sub(model.p() + model.p_star()),
        "bulk_eigenvalues_found": bulk_hits,
    });
    Ok(PointReport {
        name,
        eigenvalues,
        json,
        counts: c,
        expected,
    })
}

/// True for A = aI, V = vI, P = I (the case of the plateau count formula and of q*).
fn uniform_layers(model: &Model, p: &DMatrix<f64>) -> bool {
    let v = model.v[0];
    model.v.iter().all(|&x| x == v) && (p - DMatrix::identity(p.nrows(), p.ncols())).amax() < 1e-12
}

/// `hdsgd hessian` (module docs).
pub fn command(exp: &Experiment, opts: &OutputOptions) -> Result<()> {
    let cfg = exp.config.geometry.clone().unwrap_or_default();
    let model = &exp.model;
    check_model(model).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (p, k) = (model.p(), model.p_star());
    let n = cfg.hessian_n as usize;
    if (p * n) as i64 > MAX_HESSIAN_DIM {
        bail!(
            "invalid value for `geometry.hessian_n`: p·N = {} exceeds {MAX_HESSIAN_DIM} (the Hessian is a dense (pN)² matrix)",
            p * n
        );
    }
    if n < p + k {
        bail!("invalid value for `geometry.hessian_n`: N = {n} < p + p* = {}", p + k);
    }
    let dir = output_dir(exp, opts);
    check_output_dir(&dir, opts.force)?;
    let GeometryConfig { zero_tol, .. } = cfg;
    let start = match &exp.explicit_initial {
        Some(ov) => ov.clone(),
        None => initial_overlaps(
            exp,
            &RunTask {
                n,
                seed_index: 0,
                seed: run_seed(exp.base_seed, n, 0),
            },
        ),
    };
    let a = model.a[0];
    let uniform = uniform_layers(model, &start.p);
    let (plat, rate) = plateau(
        model,
        &exp.training,
        &start.q,
        &start.p,
        OdeVariant::GradientFlow,
        1e-13,
    )?;
    let mut reports = vec![];
    let mut plateau_json = json!({"max_dq_dt": rate});
    if uniform {
        let q_star = model.v[0] * k as f64 / (a * (p as f64 + 2.0));
        plateau_json["q_star_theory"] = json!(q_star);
        plateau_json["max_abs_q_minus_q_star"] = json!((&plat.q - DMatrix::identity(p, p) * q_star).amax());
    }
    let mut rp = analyse(
        "plateau",
        model,
        &plat,
        n,
        exp.base_seed,
        zero_tol,
        uniform.then(|| expected_plateau_counts(p, k, n)),
    )?;
    rp.json["plateau"] = plateau_json;
    reports.push(rp);
    match selected_solution(&start, model) {
        Ok(sol) => reports.push(analyse(
            "solution",
            model,
            &sol,
            n,
            exp.base_seed,
            zero_tol,
            Some(expected_solution_counts(p, k, n)),
        )?),
        Err(e) => eprintln!("no solution point: {e}"),
    }
    let mut csv = String::from("point,index,eigenvalue\n");
    println!("Hessian of e_g w.r.t. W ({p} × {n}), p = {p}, p* = {k}; zero means |λ| ≤ {zero_tol:e}·max|λ|");
    println!(
        "{:<9} {:>8} {:>8} {:>8}   {:>13} {:>13}   expected (neg, zero, pos)",
        "point", "negative", "zero", "positive", "min", "max"
    );
    for r in &reports {
        for (i, e) in r.eigenvalues.iter().enumerate() {
            let _ = writeln!(csv, "{},{i},{e}", r.name);
        }
        let c = &r.counts;
        let exp_s = r
            .expected
            .map(|(a, b, d)| format!("({a}, {b}, {d})"))
            .unwrap_or_else(|| "n/a (non-uniform layers)".into());
        println!(
            "{:<9} {:>8} {:>8} {:>8}   {:>13.6e} {:>13.6e}   {exp_s}",
            r.name, c.negative, c.zero, c.positive, c.min, c.max
        );
    }
    let summary = json!({
        "n": n,
        "p": p,
        "p_star": k,
        "zero_tol_relative": zero_tol,
        "start": {"q": start.q.iter().copied().collect::<Vec<_>>(), "m": start.m.iter().copied().collect::<Vec<_>>(), "p": start.p.iter().copied().collect::<Vec<_>>()},
        "points": reports.iter().map(|r| (r.name.to_string(), r.json.clone())).collect::<serde_json::Map<_, _>>(),
    });
    write_atomic(
        &dir.join("hessian.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    write_atomic(&dir.join("hessian_spectra.csv"), csv.as_bytes())?;
    eprintln!("wrote {}", dir.display());
    Ok(())
}
