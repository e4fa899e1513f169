//! `hdsgd phase`: the SGD phase diagram of Veiga et al. (2022) (docs/phase_diagram.md). For every
//! grid point (κ, δ) of `[phase]` and every N of `[simulation] n`, an ordinary validated
//! [`Experiment`] with the resolved width p = round(scale·N^κ), learning rate η = η₀·N^(−δ) and
//! record times τ·N^ϑ (the `[time]` section of a phase file is in the region's unit τ = ν/N^(1+ϑ))
//! is simulated by the usual runner (seeds in parallel), with the matched ODE of the region's terms
//! where it is defined. Each point is classified from its late-time risk against N
//! ([`crate::analysis::phase::classify`]). Writes `phase.csv`, `risk.csv`, `summary.json`,
//! `phase_diagram.svg` and `risk.svg`.

use super::outdir::Staging;
use super::output::{cell, num, write_json, CsvTable};
use super::plots::{self, Panel, Series, INK};
use super::preflight::{self, Command};
use super::runner::{simulate_all, RunResult};
use super::{output_dir, OutputOptions};
use crate::analysis::fits::{quantile, summarize};
use crate::analysis::phase::{
    classify, learning_rate, width, Class, Classification, PhaseConfig, PhaseOde, PointAtN, Region,
};
use crate::config::{ConfigError, Experiment, OdeInitial, OdeTerms};
use crate::ode::{integrate, OdeOptions, OdeSolution, OdeVariant};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One (κ, δ, N) of the grid, resolved to an ordinary experiment.
#[derive(Debug, Clone)]
pub struct Cell {
    pub kappa: f64,
    pub delta: f64,
    pub region: Region,
    /// Exponent of the time unit τ = ν/N^(1+ϑ).
    pub theta: f64,
    pub n: usize,
    /// The experiment at this N: p, η, record times t = τ·N^ϑ (samples/N) resolved.
    pub exp: Experiment,
    /// The ODE terms integrated (`None`: no ODE).
    pub ode: Option<OdeVariant>,
}

impl Cell {
    /// SGD samples of one run.
    pub fn samples(&self) -> f64 {
        self.exp.grid.last().copied().unwrap_or(0.0) * self.n as f64
    }
}

fn field(f: &str, m: String) -> anyhow::Error {
    ConfigError::Field {
        field: f.into(),
        message: m,
    }
    .into()
}

/// The `[phase]` section of an experiment, or an error saying the command needs one.
pub fn phase_config(exp: &Experiment) -> Result<&PhaseConfig> {
    let Some(cfg) = exp.config.phase.as_ref() else {
        bail!("`hdsgd phase` needs a [phase] section (docs/phase_diagram.md)");
    };
    if exp.ns.len() < 2 {
        return Err(field(
            "simulation.n",
            "`hdsgd phase` classifies a point by its risk against N: give at least two N".into(),
        ));
    }
    Ok(cfg)
}

/// Resolves every (κ, δ, N) of the grid (κ-major, then δ, then N). Errors, naming the field,
/// before any computation: a width that rounds to 0 (`phase.scale`), a run longer than
/// `phase.max_run_samples` (`time.t_max`, with the samples it would need), the ODE asked for in
/// the no-ODE region (`phase.ode`), and whatever the resolved experiment itself refuses.
pub fn resolve(exp: &Experiment) -> Result<Vec<Cell>> {
    let cfg = phase_config(exp)?;
    let mut cells = vec![];
    for (kappa, delta) in cfg.points() {
        let region = Region::of(kappa, delta);
        let theta = region.theta(kappa, delta);
        let ode = match (cfg.ode, region.ode_variant()) {
            (PhaseOde::All, None) => {
                return Err(field(
                    "phase.ode",
                    format!(
                        "\"all\" asks for the ODE at (κ, δ) = ({kappa}, {delta}), in the region −δ ≥ (κ + 1)/2 where it has no deterministic limit: use \"where_defined\""
                    ),
                ))
            }
            (PhaseOde::None, _) => None,
            (_, v) => v,
        };
        for &n in &exp.ns {
            let cell = resolve_cell(exp, cfg, (kappa, delta, region, theta), n, ode)?;
            if cell.samples() > cfg.max_run_samples {
                return Err(field(
                    "time.t_max",
                    format!(
                        "at (κ, δ) = ({kappa}, {delta}), N = {n} a run needs {:.3e} SGD samples (τ_max·N^(1+ϑ), ϑ = {theta}), more than phase.max_run_samples = {:.3e}",
                        cell.samples(),
                        cfg.max_run_samples
                    ),
                ));
            }
            cells.push(cell);
        }
    }
    Ok(cells)
}

/// The experiment at one (κ, δ, N): the file with p, η, N and the times (× N^ϑ) replaced.
fn resolve_cell(
    exp: &Experiment,
    cfg: &PhaseConfig,
    (kappa, delta, region, theta): (f64, f64, Region, f64),
    n: usize,
    ode: Option<OdeVariant>,
) -> Result<Cell> {
    let p = width(n, kappa, cfg.scale).map_err(|m| field("phase.scale", m))?;
    let mut c = exp.config.clone();
    c.phase = None;
    c.model.p = p as i64;
    c.training.eta = learning_rate(n, cfg.eta0, delta);
    let unit = (n as f64).powf(theta);
    c.time.t_max *= unit;
    c.time.t_min = c.time.t_min.map(|t| t * unit);
    c.time.times = c.time.times.map(|ts| ts.iter().map(|t| t * unit).collect());
    if let Some(sim) = c.simulation.as_mut() {
        sim.n = vec![n as i64];
    }
    c.ode.initial = OdeInitial::Matched;
    c.ode.gradient_flow = false;
    c.ode.terms = Some(match ode.unwrap_or_default() {
        OdeVariant::Full => OdeTerms::Full,
        OdeVariant::GradientFlow => OdeTerms::FirstOrder,
        OdeVariant::SecondOrder => OdeTerms::SecondOrder,
    });
    let name = format!("{}_kappa{kappa}_delta{delta}_n{n}", exp.name);
    let mut sub = Experiment::from_config(c, &name)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("at (κ, δ) = ({kappa}, {delta}), N = {n} (p = {p})"))?;
    if ode.is_none() {
        // The runner integrates the matched ODE only for `Matched` experiments.
        sub.ode_initial = OdeInitial::Explicit;
    }
    Ok(Cell {
        kappa,
        delta,
        region,
        theta,
        n,
        exp: sub,
        ode,
    })
}

/// The pre-flight of `hdsgd phase`: the grid resolved ([`resolve`]), each resolved experiment
/// through the usual checks of `hdsgd run` (widths, memory, samples), the output folder checked.
pub fn plan(exp: &Experiment, opts: &OutputOptions) -> Result<(Vec<Cell>, OutputOptions)> {
    let cells = resolve(exp)?;
    let mut opts = opts.clone();
    for c in &cells {
        let plan = preflight::plan_with(&c.exp, Command::Run, &opts, false).with_context(|| {
            format!(
                "at (κ, δ) = ({}, {}), N = {} (p = {})",
                c.kappa,
                c.delta,
                c.n,
                c.exp.model.p()
            )
        })?;
        if opts.threads != 0 {
            opts.threads = plan.threads;
        }
    }
    let total: f64 = cells.iter().map(|c| c.samples() * c.exp.seeds as f64).sum();
    if total > preflight::MAX_SAMPLES && !preflight::allow_large() {
        return Err(field(
            "simulation.seeds",
            format!(
                "the grid needs {total:.3e} SGD samples in all, above {:.0e} (--allow-large lifts this)",
                preflight::MAX_SAMPLES
            ),
        ));
    }
    Ok((cells, opts))
}

/// The resolved grid for `hdsgd check`: one line per (κ, δ, N) with its region, ϑ, ODE terms, p, η,
/// t_max and samples, and the total.
pub fn report(cells: &[Cell]) -> String {
    let mut out = String::from("pre-flight for `hdsgd phase`: the grid resolved per N\n");
    for c in cells {
        out.push_str(&format!(
            "  κ = {}, δ = {} ({}, ϑ = {}, ODE {}): N = {}: p = {}, η = {:.6}, t_max = {:.6} (samples/N), {:.3e} samples/run × {} seeds\n",
            c.kappa,
            c.delta,
            c.region.name(),
            c.theta,
            if c.ode.is_some() { terms_name(c.ode) } else { "none" },
            c.n,
            c.exp.model.p(),
            c.exp.training.eta,
            c.exp.grid.last().copied().unwrap_or(0.0),
            c.samples(),
            c.exp.seeds
        ));
    }
    let total: f64 = cells.iter().map(|c| c.samples() * c.exp.seeds as f64).sum();
    out.push_str(&format!(
        "  {} (κ, δ, N) cells, {total:.3e} SGD samples in all",
        cells.len()
    ));
    out
}

/// What one cell measured.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub cell: Cell,
    pub runs: Vec<RunResult>,
    /// Per run, the matched gradient-flow ODE (first-order term alone) on its record times: the
    /// reference of the excess risk the classification reads (`None` for a diverged run; empty
    /// when `[phase] ode = "none"`: the excess is then the risk itself).
    pub reference: Vec<Option<OdeSolution>>,
    pub wall_seconds: f64,
}

/// The matched gradient-flow ODE of every run of a cell (the region's own ODE when that is
/// gradient flow). Empty with `[phase] ode = "none"`: then the rule reads the risk itself.
fn reference_odes(cell: &Cell, runs: &[RunResult], ode: PhaseOde) -> Result<Vec<Option<OdeSolution>>> {
    if ode == PhaseOde::None {
        return Ok(vec![]);
    }
    let opts = OdeOptions {
        variant: OdeVariant::GradientFlow,
        ..cell.exp.ode_options
    };
    runs.iter()
        .map(|r| {
            if r.trajectory.diverged_at.is_some() {
                return Ok(None);
            }
            if cell.ode == Some(OdeVariant::GradientFlow) {
                return Ok(r.ode.clone());
            }
            let times: Vec<f64> = r.trajectory.records.iter().map(|x| x.t).collect();
            let e = &cell.exp;
            Ok(Some(integrate(
                &e.model,
                &e.training,
                &r.trajectory.initial,
                &times,
                &opts,
                |_, _: &_| false,
            )?))
        })
        .collect()
}

/// The mean e_g over the last `fraction` of the records after t = 0 (at least one record).
pub fn late_mean(eg: &[f64], fraction: f64) -> f64 {
    let after = eg.len().saturating_sub(1).max(1);
    let k = ((fraction * after as f64).ceil() as usize).clamp(1, eg.len().max(1));
    let tail = &eg[eg.len().saturating_sub(k)..];
    tail.iter().sum::<f64>() / tail.len() as f64
}

/// The measurement of a cell for [`classify`]: late risk (mean, s.e. over seeds), initial risk,
/// diverged runs; and the mean late risk of its matched ODEs.
pub fn measure(r: &CellResult, cfg: &PhaseConfig) -> (PointAtN, Option<f64>) {
    let late = |eg: &[f64]| late_mean(eg, cfg.late_fraction);
    let (sim, excess): (Vec<f64>, Vec<f64>) = r
        .runs
        .iter()
        .enumerate()
        .filter(|(_, x)| x.trajectory.diverged_at.is_none())
        .map(|(i, x)| {
            let risk = late(&x.trajectory.records.iter().map(|r| r.eg).collect::<Vec<_>>());
            // A reference that stopped early (it cannot diverge: gradient flow decreases e_g)
            // counts as no excess information.
            let reference = match r.reference.get(i) {
                None => 0.0,
                Some(gf) => gf
                    .as_ref()
                    .filter(|o| o.stop.is_none())
                    .map_or(f64::NAN, |o| late(&o.eg)),
            };
            (risk, risk - reference)
        })
        .unzip();
    let e = summarize(&excess);
    let init: Vec<f64> = r
        .runs
        .iter()
        .filter_map(|x| x.trajectory.records.first())
        .map(|r| r.eg)
        .collect();
    let s = summarize(&sim);
    let odes: Vec<f64> = r
        .runs
        .iter()
        .filter_map(|x| x.ode.as_ref())
        .filter(|o| o.stop.is_none())
        .map(|o| late_mean(&o.eg, cfg.late_fraction))
        .collect();
    let point = PointAtN {
        n: r.cell.n,
        risk: s.mean,
        risk_se: s.se,
        initial_risk: summarize(&init).mean,
        excess: e.mean,
        excess_se: e.se,
        diverged: r.runs.len() - sim.len(),
    };
    (point, (!odes.is_empty()).then(|| summarize(&odes).mean))
}

/// `hdsgd phase`: resolve and check the grid, simulate every cell, classify, write the outputs.
pub fn command(exp: &Experiment, opts: &OutputOptions) -> Result<PathBuf> {
    let (cells, opts) = plan(exp, opts)?;
    let stage = Staging::begin(&output_dir(exp, &opts), opts.force)?;
    let start = Instant::now();
    let mut results = vec![];
    for cell in cells {
        let t0 = Instant::now();
        opts.cancel.check()?;
        let runs = simulate_all(&cell.exp, opts.threads, opts.progress, &opts.cancel)?;
        let reference = reference_odes(&cell, &runs, phase_config(exp)?.ode)?;
        results.push(CellResult {
            cell,
            runs,
            reference,
            wall_seconds: t0.elapsed().as_secs_f64(),
        });
    }
    let written = write_outputs(exp, stage.path(), &opts, start, &results);
    let dir = stage.finish(written)?;
    eprintln!("wrote {}", dir.display());
    Ok(dir)
}

/// The cells of one grid point, in N order.
fn by_point(results: &[CellResult]) -> Vec<&[CellResult]> {
    results
        .chunk_by(|a, b| a.cell.kappa == b.cell.kappa && a.cell.delta == b.cell.delta)
        .collect()
}

fn write_outputs(
    exp: &Experiment,
    dir: &Path,
    opts: &OutputOptions,
    start: Instant,
    results: &[CellResult],
) -> Result<()> {
    let cfg = phase_config(exp)?;
    let points = by_point(results);
    let classes: Vec<Classification> = points
        .iter()
        .map(|pt| classify(&pt.iter().map(|r| measure(r, cfg).0).collect::<Vec<_>>(), cfg))
        .collect();
    phase_table(cfg, &points, &classes)?.write(&dir.join("phase.csv"))?;
    risk_table(results)?.write(&dir.join("risk.csv"))?;
    write_json(
        &dir.join("summary.json"),
        &summary(exp, cfg, opts, start, &points, &classes),
    )?;
    if exp.figures {
        diagram(&dir.join("phase_diagram.svg"), cfg, &points, &classes)?;
        risk_figure(&dir.join("risk.svg"), &points)?;
    }
    Ok(())
}

/// `phase.csv`: one row per (κ, δ, N), with the point's slope and class repeated.
fn phase_table(cfg: &PhaseConfig, points: &[&[CellResult]], classes: &[Classification]) -> Result<CsvTable> {
    let mut t = CsvTable::new([
        "kappa",
        "delta",
        "region",
        "theta",
        "n",
        "p",
        "eta",
        "t_max",
        "samples",
        "seeds",
        "diverged",
        "initial_risk",
        "risk",
        "risk_se",
        "excess",
        "excess_se",
        "ode_risk",
        "ode_terms",
        "slope",
        "slope_se",
        "class",
        "agrees",
    ])?;
    for (pt, cl) in points.iter().zip(classes) {
        for r in pt.iter() {
            let (m, ode) = measure(r, cfg);
            let c = &r.cell;
            t.row([
                num(c.kappa),
                num(c.delta),
                c.region.name().into(),
                num(c.theta),
                num(c.n),
                num(c.exp.model.p()),
                num(c.exp.training.eta),
                num(c.exp.grid.last().copied().unwrap_or(0.0)),
                num(c.samples().round()),
                num(c.exp.seeds),
                num(m.diverged),
                cell(m.initial_risk),
                cell(m.risk),
                cell(m.risk_se),
                cell(m.excess),
                cell(m.excess_se),
                ode.map_or(String::new(), cell),
                terms_name(c.ode).into(),
                cell(cl.slope),
                cell(cl.slope_se),
                cl.class.name().into(),
                cl.class.agrees_with(c.region).to_string(),
            ])?;
        }
    }
    Ok(t)
}

fn terms_name(v: Option<OdeVariant>) -> &'static str {
    match v {
        None => "",
        Some(OdeVariant::Full) => "full",
        Some(OdeVariant::GradientFlow) => "first_order",
        Some(OdeVariant::SecondOrder) => "second_order",
    }
}

/// `risk.csv`: e_g of every record of every run and matched ODE, against τ and t.
fn risk_table(results: &[CellResult]) -> Result<CsvTable> {
    let mut t = CsvTable::new(["kappa", "delta", "n", "seed", "source", "tau", "t", "eg"])?;
    for r in results {
        let unit = (r.cell.n as f64).powf(r.cell.theta);
        for run in &r.runs {
            let sgd = run.trajectory.records.iter().map(|x| (x.t, x.eg));
            let ode = run
                .ode
                .iter()
                .flat_map(|o| o.t.iter().copied().zip(o.eg.iter().copied()));
            for (source, rows) in [("sgd", sgd.collect::<Vec<_>>()), ("ode", ode.collect())] {
                for (time, eg) in rows {
                    t.row([
                        num(r.cell.kappa),
                        num(r.cell.delta),
                        num(r.cell.n),
                        num(run.task.seed_index),
                        source.into(),
                        num(time / unit),
                        num(time),
                        cell(eg),
                    ])?;
                }
            }
        }
    }
    Ok(t)
}

fn summary(
    exp: &Experiment,
    cfg: &PhaseConfig,
    opts: &OutputOptions,
    start: Instant,
    points: &[&[CellResult]],
    classes: &[Classification],
) -> serde_json::Value {
    let pts: Vec<_> = points
        .iter()
        .zip(classes)
        .map(|(pt, cl)| {
            let c0 = &pt[0].cell;
            json!({
                "kappa": c0.kappa, "delta": c0.delta, "region": c0.region.name(), "theta": c0.theta,
                "ode_terms": terms_name(c0.ode), "class": cl.class.name(), "agrees": cl.class.agrees_with(c0.region),
                "slope": finite(cl.slope), "slope_se": finite(cl.slope_se),
                "per_n": pt.iter().map(|r| json!({
                    "n": r.cell.n, "p": r.cell.exp.model.p(), "eta": r.cell.exp.training.eta,
                    "t_max": r.cell.exp.grid.last(), "samples_per_run": r.cell.samples(),
                    "wall_seconds": r.wall_seconds,
                    "runs": r.runs.iter().map(|x| json!({
                        "seed": x.task.seed_index, "run_seed": x.task.seed, "samples": x.trajectory.samples,
                        "wall_seconds": x.wall_seconds,
                        "samples_per_second": x.trajectory.samples as f64 / x.wall_seconds.max(1e-12),
                        "diverged_at": x.trajectory.diverged_at,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    super::output::summary(
        exp,
        opts.threads,
        json!({
            "wall_seconds": start.elapsed().as_secs_f64(),
            "rule": "not learning if a run diverged or late risk ≥ learned_fraction·initial at the largest N, or slope > z·se; perfect if slope < −min_slope and < −z·se; else plateau (docs/phase_diagram.md)",
            "resolution": "p = round(scale·N^κ) (≥ 1, else an error), η = η₀·N^(−δ), t = τ·N^ϑ",
            "eg_convention": "e_g = ½ E[(y − ŷ)²] over a fresh sample, label noise excluded (the noise adds Δ/2)",
            "phase": cfg,
            "points": pts,
        }),
    )
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `phase_diagram.svg`: the points in the (κ, −δ) plane, one marker colour per measured class, and
/// the theory boundaries κ + δ = 0 and −δ = (κ + 1)/2 (Veiga et al., Fig. 1).
fn diagram(path: &Path, cfg: &PhaseConfig, points: &[&[CellResult]], classes: &[Classification]) -> Result<()> {
    let mut series = vec![];
    for (i, class) in [Class::Perfect, Class::Plateau, Class::NotLearning].iter().enumerate() {
        let (x, y): (Vec<f64>, Vec<f64>) = points
            .iter()
            .zip(classes)
            .filter(|(_, c)| c.class == *class)
            .map(|(pt, _)| (pt[0].cell.kappa, -pt[0].cell.delta))
            .unzip();
        series.push(Series::line(format!("measured: {}", class.name().replace('_', " ")), x, y, i).markers());
    }
    let k_lo = cfg.kappa[0].min(0.0);
    let k_hi = cfg.kappa.last().copied().unwrap_or(1.0).max(k_lo + 0.1);
    // The boundaries continue beyond the grid, leaving its lower right corner to the legend.
    let ks = vec![k_lo, k_hi + 0.75 * (k_hi - k_lo)];
    series.push(Series::line("κ + δ = 0", ks.clone(), ks.clone(), INK).dashed());
    let edge = ks.iter().map(|k| (k + 1.0) / 2.0).collect();
    series.push(Series::line("−δ = (κ + 1)/2", ks, edge, 3).dashed());
    let panel = Panel::new(
        "SGD phase diagram: measured classes and the boundaries of Veiga et al. (2022)",
        "κ (width p = N^κ)",
        "−δ (learning rate η = η₀ N^(−δ))",
        series,
    );
    plots::draw(path, &[panel], 1)
}

/// `risk.svg`: per grid point, the median e_g over seeds against τ for each N (solid) and the
/// median of the matched ODEs (dashed).
fn risk_figure(path: &Path, points: &[&[CellResult]]) -> Result<()> {
    let panels: Vec<Panel> = points.iter().map(|pt| risk_panel(pt)).collect();
    plots::draw(path, &panels, 3.min(panels.len()))
}

fn median_curve(curves: &[Vec<f64>]) -> Vec<f64> {
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|i| {
            let mut v: Vec<f64> = curves.iter().map(|c| c[i]).collect();
            v.sort_by(f64::total_cmp);
            quantile(&v, 0.5)
        })
        .collect()
}

/// One point's panel of `risk.svg`: per N the median over its non-diverged runs (solid) and over
/// their matched ODEs (dashed), against τ.
fn risk_panel(pt: &[CellResult]) -> Panel {
    let c0 = &pt[0].cell;
    let mut series = vec![];
    for (i, r) in pt.iter().enumerate() {
        let unit = (r.cell.n as f64).powf(r.cell.theta);
        let ok: Vec<&RunResult> = r.runs.iter().filter(|x| x.trajectory.diverged_at.is_none()).collect();
        let Some(first) = ok.first() else { continue };
        let sgd: Vec<Vec<f64>> = ok
            .iter()
            .map(|x| x.trajectory.records.iter().map(|r| r.eg).collect())
            .collect();
        let x = first.trajectory.records.iter().map(|r| r.t / unit).collect();
        let label = format!("N = {}, p = {}", r.cell.n, r.cell.exp.model.p());
        series.push(Series::line(label, x, median_curve(&sgd), i));
        let odes: Vec<&OdeSolution> = ok.iter().filter_map(|x| x.ode.as_ref()).collect();
        if let Some(o) = odes.first() {
            let y = median_curve(&odes.iter().map(|o| o.eg.clone()).collect::<Vec<_>>());
            let x = o.t.iter().map(|t| t / unit).take(y.len()).collect();
            series.push(Series::line("", x, y, i).dashed());
        }
    }
    series.extend([Series::style_key("SGD", false), Series::style_key("ODE", true)]);
    let title = format!(
        "κ = {}, δ = {} ({}, ϑ = {})",
        c0.kappa,
        c0.delta,
        c0.region.name(),
        c0.theta
    );
    Panel::new(title, "τ = samples/N^(1+ϑ)", "e_g (population risk)", series).log_axes(true, true)
}
