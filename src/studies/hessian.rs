//! `hdsgd hessian`: Hessian spectra of the population loss at the plateau and at a solution.
//!
//! * Start: the explicit initial overlaps (`[init] q0, m0, p`) if given, else the initial overlaps of
//!   run (N = `geometry.hessian_n`, seed index 0) of the experiment.
//! * Plateau: the stationary point of e_g with M = 0, found by integrating the gradient-flow ODE
//!   from (Q₀, M = 0) (M = 0 is invariant) until max|dQ/dt| < 1e-13 (reported with |∇_W e_g|; for
//!   uniform layers also compared with q* = v p*/(a(p + 2)) of theory.md §5).
//! * Solution: the point of the zero-loss manifold closest to the start (Procrustes,
//!   [`selected_solution`]), the end point of the ODE from an isotropic start; e_g
//!   there is zero up to rounding.
//!
//! Both are realised as weights at N = `hessian_n` ([`realise`]); the full pN × pN
//! Hessian is diagonalised and its eigenvalues counted with the tolerance zero_tol·max|λ|.
//! Outputs: `hessian.json` (counts, expected counts, min/max, bulk prediction) and
//! `hessian_spectra.csv` (`point,index,eigenvalue`).

use super::outdir::Staging;
use super::output::{num, write_json, CsvTable};
use super::preflight::{preflight, Command};
use super::runner::{initial_overlaps, RunTask};
use super::{output_dir, OutputOptions};
use crate::analysis::geometry::conserved::check_model;
use crate::analysis::geometry::hessian::{
    bulk_eigenvalues, counts, expected_plateau_counts, expected_solution_counts, gradient, hessian,
    population_error_at, realise, spectrum, SpectrumCounts,
};
use crate::analysis::geometry::selection::selected_solution;
use crate::analysis::geometry::spectra::uniform_layers;
use crate::analysis::geometry::{GeometryConfig, MAX_HESSIAN_DIM};
use crate::analysis::stability::{find_plateau, PlateauMethod};
use crate::config::Experiment;
use crate::model::Model;
use crate::ode::OdeVariant;
use crate::overlaps::Overlaps;
use crate::rng::run_seed;
use anyhow::{bail, Result};
use nalgebra::DMatrix;
use serde_json::json;

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

/// `hdsgd hessian` (module docs).
pub fn command(exp: &Experiment, opts: &OutputOptions) -> Result<()> {
    let cfg = exp.config.geometry.clone().unwrap_or_default();
    let model = &exp.model;
    check_model(model).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (p, k) = (model.p(), model.p_star());
    let n = checked_hessian_n(&cfg, p, k)?;
    let opts = &preflight(exp, Command::Hessian, opts)?;
    let stage = Staging::begin(&output_dir(exp, opts), opts.force)?;
    let dir = stage.path().to_path_buf();
    let GeometryConfig { zero_tol, .. } = cfg;
    let start = start_overlaps(exp, n);
    let mut reports = vec![plateau_report(exp, &start, n, zero_tol)?];
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
    let csv = spectra_table(&reports, p, k, n, zero_tol)?;
    let summary = json!({
        "n": n,
        "p": p,
        "p_star": k,
        "zero_tol_relative": zero_tol,
        "start": {"q": start.q.iter().copied().collect::<Vec<_>>(), "m": start.m.iter().copied().collect::<Vec<_>>(), "p": start.p.iter().copied().collect::<Vec<_>>()},
        "points": reports.iter().map(|r| (r.name.to_string(), r.json.clone())).collect::<serde_json::Map<_, _>>(),
    });
    write_json(&dir.join("hessian.json"), &summary)?;
    csv.write(&dir.join("hessian_spectra.csv"))?;
    let dir = stage.commit()?;
    eprintln!("wrote {}", dir.display());
    Ok(())
}

/// `geometry.hessian_n` as N, refused before any work when the dense (pN)² Hessian would be
/// too large or when N < p + p* (the weights realising the overlaps need p + p* independent
/// directions).
fn checked_hessian_n(cfg: &GeometryConfig, p: usize, k: usize) -> Result<usize> {
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
    Ok(n)
}

/// The start overlaps: the explicit ones when given, else those of run (N = `n`, seed index 0),
/// so the command analyses the same start `hdsgd run` would simulate.
fn start_overlaps(exp: &Experiment, n: usize) -> Overlaps {
    match &exp.explicit_initial {
        Some(ov) => ov.clone(),
        None => initial_overlaps(
            exp,
            &RunTask {
                n,
                seed_index: 0,
                seed: run_seed(exp.base_seed, n, 0),
            },
        ),
    }
}

/// The plateau's report: the plateau is found from (Q₀, M = 0) by gradient flow, and its
/// residual (and, for uniform layers, the distance to the closed form q* of theory.md §5) is
/// reported beside the spectrum, so a badly converged plateau is visible in `hessian.json`.
fn plateau_report(exp: &Experiment, start: &Overlaps, n: usize, zero_tol: f64) -> Result<PointReport> {
    let model = &exp.model;
    let (p, k) = (model.p(), model.p_star());
    let a = model.a[0];
    let uniform = uniform_layers(model, &start.p);
    let m0 = Overlaps::new(start.q.clone(), DMatrix::zeros(p, k), start.p.clone());
    let method = PlateauMethod::Integrate { tol: 1e-13 };
    let found = find_plateau(model, &exp.training, OdeVariant::GradientFlow, &m0, &method)?;
    let (plat, rate) = (found.overlaps, found.residual);
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
    Ok(rp)
}

/// Prints the count table to stdout and returns `hessian_spectra.csv` (every eigenvalue of every
/// point), one pass over the reports so the two cannot disagree.
fn spectra_table(reports: &[PointReport], p: usize, k: usize, n: usize, zero_tol: f64) -> Result<CsvTable> {
    let mut csv = CsvTable::new(["point", "index", "eigenvalue"])?;
    println!("Hessian of e_g w.r.t. W ({p} × {n}), p = {p}, p* = {k}; zero means |λ| ≤ {zero_tol:e}·max|λ|");
    println!(
        "{:<9} {:>8} {:>8} {:>8}   {:>13} {:>13}   expected (neg, zero, pos)",
        "point", "negative", "zero", "positive", "min", "max"
    );
    for r in reports {
        for (i, e) in r.eigenvalues.iter().enumerate() {
            csv.row([r.name.to_string(), num(i), num(e)])?;
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
    Ok(csv)
}
