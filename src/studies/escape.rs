//! `hdsgd escape`: plateau-escape times per (N, seed) (theory.md §6, the measurement in
//! [`crate::analysis::escape`]). Each run is simulated on the experiment's record grid until it
//! escapes; the per-N statistics, the fit of mean t_esc = c·ln N + b and the predicted slope 1/(2μ)
//! are written and printed, with the predicted law of the escape times at each N
//! ([`crate::analysis::escape_theory`], docs/fluctuations.md §3) and the KS distance of the measured
//! times to it.
//!
//! Resumable: each finished run is appended to `escape_runs.csv` in the output folder (its
//! configuration hash in `escape_runs.json`, [`super::journal`]); re-running the same command skips
//! the (N, seed) already there.

use super::hash::fnv1a;
use super::journal::Journal;
use super::outdir::Staging;
use super::output::{cell, num, opt, summary as output_summary, write_json, CsvTable};
use super::plateau::stability;
use super::plots::{self, Panel, Series};
use super::preflight::{preflight, Command};
use super::runner::{build_simulator, par_map_tasks, tasks, RunTask};
use super::{output_dir, Cancel, Cancelled, DivergedRuns, Divergence, OutputOptions};
use crate::analysis::escape::{
    escape_time_sd, fit_log_n, ode_escape_time, summarize_runs, usable_for_fit, EscapeConfig, EscapeDetector,
    EscapeRule, EscapeRun, EscapeStatus, EscapeSummary,
};
use crate::analysis::escape_theory::{
    escape_law, ks_distance, ks_p_value, EscapeLaw, EscapeLawOptions, PredictedEscape,
};
use crate::analysis::fits::{linear_fit, LinearFit};
use crate::analysis::geometry::{conserved, GeometryObservable};
use crate::analysis::stability::{to_json, PlateauOptions, Stability};
use crate::config::Experiment;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

/// Simulates one run on the experiment's record grid until it escapes or reaches t_max.
/// `Err(Cancelled)` when `cancel` stops it first: an interrupted run has no escape status.
pub fn escape_run(exp: &Experiment, rule: EscapeRule, task: &RunTask, cancel: &Cancel) -> Result<EscapeRun, Cancelled> {
    let start = Instant::now();
    let mut sim = build_simulator(exp, task);
    let mut det = EscapeDetector::new(rule);
    let mut last_t = 0.0;
    let conserved = conserved_requested(exp);
    let mut last_overlaps = None;
    let traj = sim.run(&exp.grid, &mut |rec| {
        last_t = rec.t;
        if conserved {
            last_overlaps = Some(rec.overlaps.clone());
        }
        match det.observe(rec.t, &rec.overlaps, rec.eg) {
            Some(_) => ControlFlow::Break(()),
            None if cancel.is_cancelled() => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    });
    if det.escaped().is_none() {
        cancel.check()?;
    }
    let (t_escape, status) = match (det.escaped(), traj.diverged_at) {
        (Some(t), _) => (t, EscapeStatus::Escaped),
        (None, Some(t)) => (t, EscapeStatus::Diverged),
        (None, None) if det.reached_plateau() => (last_t, EscapeStatus::Censored),
        (None, None) => (last_t, EscapeStatus::NoPlateau),
    };
    Ok(EscapeRun {
        n: task.n,
        seed_index: task.seed_index,
        run_seed: task.seed,
        t_escape,
        status,
        samples: traj.samples,
        wall_seconds: start.elapsed().as_secs_f64(),
        // Undefined (singular Q⊥, non-finite overlaps) is None, an empty cell: files never hold NaN.
        conserved_drift: last_overlaps
            .map(|ov| {
                let pts = [(0.0, &traj.initial), (last_t, &ov)];
                conserved::observable_series(&pts, &exp.model, &exp.training, "cons_drift")[1]
            })
            .filter(|d| d.is_finite()),
    })
}

/// Whether `[geometry] observables` lists "conserved".
fn conserved_requested(exp: &Experiment) -> bool {
    exp.config
        .geometry
        .as_ref()
        .is_some_and(|g| g.requests(GeometryObservable::Conserved))
}

/// The resume journal (`escape_runs.csv`, its hash in `escape_runs.json`).
pub const RUNS_FILE: &str = "escape_runs.csv";
const RUNS_NAME: &str = "escape_runs";
const RUNS_HEADER: &str = "n,seed,run_seed,t_escape,censored,status,samples,wall_seconds";

/// The journal's header: [`RUNS_HEADER`], plus `conserved_drift` when measured.
fn runs_header(exp: &Experiment) -> String {
    if conserved_requested(exp) {
        format!("{RUNS_HEADER},conserved_drift")
    } else {
        RUNS_HEADER.to_string()
    }
}

/// Hash of everything a run's escape time depends on (model, training, initialisation, simulator,
/// seeds, grid, escape rule and crate version): resumed runs must match it.
pub fn config_hash(exp: &Experiment, rule: &EscapeRule) -> String {
    let mut v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "model": exp.model,
        "training": exp.training,
        "teacher": exp.teacher_init,
        "sigma0": exp.sigma0,
        "simulator": exp.simulator,
        "base_seed": exp.base_seed,
        "divergence_bound": exp.divergence_bound,
        "grid": exp.grid,
        "rule": format!("{rule:?}"),
    });
    // Added only when present, so that the hash of the default (uninformed) start is unchanged.
    if let Some(mix) = &exp.init.student_mix {
        v["student_mix"] = json!(mix);
    }
    if conserved_requested(exp) {
        v["conserved_drift"] = json!(true);
    }
    format!("{:016x}", fnv1a(v.to_string().as_bytes()))
}

/// One row of the runs file: the RUNS_HEADER columns, plus `conserved_drift` when measured.
fn run_fields(r: &EscapeRun) -> Vec<String> {
    let mut f = vec![
        num(r.n),
        num(r.seed_index),
        num(r.run_seed),
        num(r.t_escape),
        num(r.censored() as u8),
        r.status.as_str().to_string(),
        num(r.samples),
        num(r.wall_seconds),
    ];
    f.extend(r.conserved_drift.map(num));
    f
}

/// A row of the runs file as read back (`conserved_drift` absent in files without it).
#[derive(Debug, serde::Deserialize)]
struct RunRecord {
    n: usize,
    seed: u64,
    run_seed: u64,
    t_escape: f64,
    #[allow(dead_code)]
    censored: u8,
    status: String,
    samples: u64,
    wall_seconds: f64,
    #[serde(default)]
    conserved_drift: Option<f64>,
}

impl RunRecord {
    fn run(self) -> Option<EscapeRun> {
        Some(EscapeRun {
            n: self.n,
            seed_index: self.seed,
            run_seed: self.run_seed,
            t_escape: self.t_escape,
            status: EscapeStatus::parse(&self.status)?,
            samples: self.samples,
            wall_seconds: self.wall_seconds,
            conserved_drift: self.conserved_drift,
        })
    }
}

/// The runs in the CSV text (a header line, then rows); a row cut by an interruption, or
/// otherwise malformed, is dropped (its run is simply redone).
fn parse_runs(text: &str) -> Vec<EscapeRun> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header = csv::StringRecord::from(RUNS_HEADER.split(',').chain(["conserved_drift"]).collect::<Vec<_>>());
    reader
        .records()
        .filter_map(|r| r.ok())
        .filter(|r| r.len() == 8 || r.len() == 9)
        .filter_map(|r| r.deserialize::<RunRecord>(Some(&header)).ok())
        .filter_map(RunRecord::run)
        .collect()
}

/// One journal line (without newline) for a run.
fn run_line(r: &EscapeRun) -> Result<String> {
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(vec![]);
    w.write_record(run_fields(r))?;
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("CSV buffer: {}", e.error()))?;
    Ok(String::from_utf8(bytes)?.trim_end_matches(['\n', '\r']).to_string())
}

/// A journal line read back (None if it is not one whole, valid run).
fn parse_line(line: &str) -> Option<EscapeRun> {
    let mut v = parse_runs(&format!("{RUNS_HEADER}\n{line}\n"));
    (v.len() == 1).then(|| v.remove(0))
}

/// Exit with [`DivergedRuns`] (code 3) when runs diverged: the outputs are written, the diverged
/// runs are a measured outcome, but they must not go unnoticed.
fn diverged(runs: &[EscapeRun]) -> Result<()> {
    let d: Vec<Divergence> = runs
        .iter()
        .filter(|r| r.status == EscapeStatus::Diverged)
        .map(|r| Divergence {
            n: r.n,
            seed: r.seed_index as i64,
            what: "simulation",
            t: r.t_escape,
        })
        .collect();
    if d.is_empty() {
        Ok(())
    } else {
        Err(DivergedRuns(d).into())
    }
}

/// `hdsgd escape`: escape times per (N, seed), summary per N, fit against ln N, theory slope, figures.
pub fn command(exp: &Experiment, opts: &OutputOptions) -> Result<()> {
    check(exp)?;
    let opts = &preflight(exp, Command::Escape, opts)?;
    let dir = output_dir(exp, opts);
    let Setup {
        cfg,
        popts,
        stability,
        rule,
        hash,
    } = setup(exp)?;
    let header = runs_header(exp);
    let opened = Journal::open(&dir, RUNS_NAME, &header, &hash, opts.force, |l| parse_line(l).is_some())?;
    let journal = opened.journal;
    let previous: Vec<EscapeRun> = opened.lines.iter().filter_map(|l| parse_line(l)).collect();
    let all = tasks(exp);
    let todo = not_done(&all, &previous);
    let study = if opened.resumed { "resuming" } else { "new study in" };
    announce(
        exp,
        &stability,
        &format!("{study} {}", dir.display()),
        previous.len(),
        todo.len(),
    );
    let start = Instant::now();
    // One whole line per finished run, so an interruption loses only unfinished runs.
    let new_runs = run_escapes(exp, rule, &todo, opts, exp.name.clone(), |r| {
        journal.append(&run_line(r)?)
    })?;
    let runs = in_task_order(&all, previous.into_iter().chain(new_runs).collect());
    let stage = Staging::begin(&dir, true)?;
    journal.copy_into(stage.path())?;
    let wall = start.elapsed().as_secs_f64();
    write_outputs(exp, &cfg, stage.path(), &runs, &stability, &popts, wall, opts)?;
    stage.commit()?;
    diverged(&runs)
}

/// The tasks of `all` without a run in `done` (matched by (N, seed)).
fn not_done(all: &[RunTask], done: &[EscapeRun]) -> Vec<RunTask> {
    let done: std::collections::HashSet<(usize, u64)> = done.iter().map(|r| (r.n, r.seed_index)).collect();
    all.iter()
        .filter(|t| !done.contains(&(t.n, t.seed_index)))
        .copied()
        .collect()
}

/// Prints μ, the plateau's e_g and what is left to do (`study`: new or resumed, and where).
fn announce(exp: &Experiment, stability: &Stability, study: &str, done: usize, todo: usize) {
    eprintln!(
        "{}: μ = {}, e_g(plateau) = {:.6}; {study}: {done} run(s) done before, {todo} to do",
        exp.name,
        stability
            .mu
            .map_or("none (stable plateau)".to_string(), |m| format!("{m:.6}")),
        stability.plateau.eg,
    );
}

/// A progress bar over `len` runs (hidden unless `show`), labelled `prefix`.
pub(crate) fn runs_bar(show: bool, len: usize, prefix: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} runs, ETA {eta}")
            .expect("valid template"),
    );
    b.set_prefix(prefix);
    b
}

/// Simulates the escape runs `todo` in parallel (with a progress bar labelled `prefix` if
/// `opts.progress`), handing each finished run to `record` as it finishes; the runs in task order.
pub(crate) fn run_escapes(
    exp: &Experiment,
    rule: EscapeRule,
    todo: &[RunTask],
    opts: &OutputOptions,
    prefix: String,
    record: impl Fn(&EscapeRun) -> Result<()> + Sync,
) -> Result<Vec<EscapeRun>> {
    let bar = runs_bar(opts.progress, todo.len(), prefix);
    let runs = par_map_tasks(
        todo,
        opts.threads,
        &opts.cancel,
        &bar,
        |task, bar| -> Result<EscapeRun> {
            let r = escape_run(exp, rule, task, &opts.cancel)?;
            record(&r)?;
            bar.inc(1);
            Ok(r)
        },
    )?;
    bar.finish_and_clear();
    runs.into_iter().collect()
}

/// Only this configuration's tasks `all`, in task order, each once.
fn in_task_order(all: &[RunTask], mut runs: Vec<EscapeRun>) -> Vec<EscapeRun> {
    let index: BTreeMap<(usize, u64), usize> = all.iter().enumerate().map(|(i, t)| ((t.n, t.seed_index), i)).collect();
    runs.retain(|r| index.contains_key(&(r.n, r.seed_index)));
    runs.sort_by_key(|r| index[&(r.n, r.seed_index)]);
    runs.dedup_by_key(|r| (r.n, r.seed_index));
    runs
}

/// What `hdsgd escape` requires of an experiment (checked before any computation).
pub(crate) fn check(exp: &Experiment) -> Result<()> {
    if exp.ns.is_empty() {
        bail!("`hdsgd escape` needs a [simulation] section");
    }
    Ok(())
}

/// The escape criterion of an experiment and the plateau analysis it comes from.
pub(crate) struct Setup {
    pub cfg: EscapeConfig,
    pub popts: PlateauOptions,
    pub stability: Stability,
    pub rule: EscapeRule,
    /// [`config_hash`], kept in the runs file's sidecar `escape_runs.json`.
    pub hash: String,
}

pub(crate) fn setup(exp: &Experiment) -> Result<Setup> {
    let cfg = exp.config.escape.clone().unwrap_or_default();
    let popts = PlateauOptions::default();
    let stability = stability(exp, &popts).context("plateau analysis of the configuration")?;
    let rule = EscapeRule::new(&cfg, stability.plateau.eg);
    let hash = config_hash(exp, &rule);
    Ok(Setup {
        cfg,
        popts,
        stability,
        rule,
        hash,
    })
}

/// The outputs of `hdsgd escape` from finished runs in task order, runs file included (as a
/// one-machine invocation leaves it, so that `hdsgd escape` on the folder finds every run done):
/// what `hdsgd merge` of escape shards writes.
pub(crate) fn write_merged(
    exp: &Experiment,
    dir: &Path,
    runs: &[EscapeRun],
    start: Instant,
    opts: &OutputOptions,
) -> Result<()> {
    let s = setup(exp)?;
    let lines = runs.iter().map(run_line).collect::<Result<Vec<_>>>()?;
    super::journal::write_complete(dir, RUNS_NAME, &runs_header(exp), &s.hash, &lines)?;
    let wall = start.elapsed().as_secs_f64();
    write_outputs(exp, &s.cfg, dir, runs, &s.stability, &s.popts, wall, opts)?;
    diverged(runs)
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    exp: &Experiment,
    cfg: &EscapeConfig,
    dir: &Path,
    runs: &[EscapeRun],
    stability: &Stability,
    popts: &PlateauOptions,
    wall: f64,
    opts: &OutputOptions,
) -> Result<()> {
    write_times_table(exp, dir, runs)?;
    let summaries = summarize_runs(runs);
    let pred = predict(exp, cfg, stability, runs, &summaries);
    write_summary_table(dir, &summaries, &pred)?;
    let a = analyse(exp, cfg, stability, summaries);
    let mut fit = fit_json(exp, cfg, stability, popts, &a);
    fit["predicted"] = pred.json(&a.summaries, a.fit);
    write_json(&dir.join("escape_fit.json"), &fit)?;
    let summary = output_summary(
        exp,
        opts.threads,
        json!({
            "wall_seconds_this_invocation": wall,
            "cpu_seconds_all_runs": runs.iter().map(|r| r.wall_seconds).sum::<f64>(),
            "samples_all_runs": runs.iter().map(|r| r.samples).sum::<u64>(),
        }),
    );
    write_json(&dir.join("summary.json"), &summary)?;
    print_summary(exp, cfg, stability, &a);
    pred.print(&a.summaries);
    if exp.figures {
        figures(exp, dir, runs, &a.summaries, a.fit, a.slope_theory, &a.ode_times, &pred)?;
    }
    Ok(())
}

/// `escape_times.csv`: one row per run.
fn write_times_table(exp: &Experiment, dir: &Path, runs: &[EscapeRun]) -> Result<()> {
    let conserved = conserved_requested(exp);
    let mut header = vec!["n", "seed", "t_escape", "censored", "status"];
    header.extend(conserved.then_some("conserved_drift"));
    let mut times = CsvTable::new(header)?;
    for r in runs {
        let mut row = vec![
            num(r.n),
            num(r.seed_index),
            num(r.t_escape),
            num(r.censored() as u8),
            r.status.as_str().to_string(),
        ];
        row.extend(conserved.then(|| opt(r.conserved_drift)));
        times.row(row)?;
    }
    times.write(&dir.join("escape_times.csv"))
}

/// `escape_summary.csv`: the per-N statistics, then the predicted law's mean, s.d. and median and
/// the KS distance and p-value of the measured times against it (empty without a prediction).
fn write_summary_table(dir: &Path, summaries: &[EscapeSummary], pred: &Prediction) -> Result<()> {
    let mut csv = CsvTable::new([
        "n",
        "ln_n",
        "count",
        "censored",
        "diverged",
        "mean",
        "std",
        "se",
        "q25",
        "median",
        "q75",
        "pred_mean",
        "pred_std",
        "pred_median",
        "ks",
        "ks_p",
    ])?;
    for (s, p) in summaries.iter().zip(&pred.per_n) {
        let pc = |f: &dyn Fn(&PredictedN) -> f64| opt(p.as_ref().map(f));
        csv.row([
            num(s.n),
            num((s.n as f64).ln()),
            num(s.count),
            num(s.censored),
            num(s.diverged),
            // Undefined statistics (every run censored: no mean, no quantile) are empty cells.
            cell(s.mean),
            cell(s.std),
            cell(s.se),
            cell(s.q25),
            cell(s.median),
            cell(s.q75),
            pc(&|p| p.law.mean),
            pc(&|p| p.law.sd),
            pc(&|p| p.law.median),
            pc(&|p| p.ks),
            pc(&|p| p.ks_p),
        ])?;
    }
    csv.write(&dir.join("escape_summary.csv"))
}

/// The predicted law at one N and the KS comparison of its measured escape times.
struct PredictedN {
    law: PredictedEscape,
    ks: f64,
    ks_p: f64,
}

/// The predicted escape-time law of the study (None with the reason when it does not apply) and its
/// statistics per N, in the order of the summaries.
struct Prediction {
    law: Option<EscapeLaw>,
    note: Option<String>,
    per_n: Vec<Option<PredictedN>>,
}

/// [`Prediction`] of the runs: the law of `analysis::escape_theory` under the study's escape rule;
/// KS against all runs of an N (censored and diverged runs beyond t_max).
fn predict(
    exp: &Experiment,
    cfg: &EscapeConfig,
    stability: &Stability,
    runs: &[EscapeRun],
    summaries: &[EscapeSummary],
) -> Prediction {
    let rule = EscapeRule::new(cfg, stability.plateau.eg);
    let p_teacher = exp.teacher_overlap();
    let t_max = exp.grid.last().copied().unwrap_or(0.0);
    match escape_law(
        &exp.model,
        &exp.training,
        &exp.init,
        &p_teacher,
        rule,
        &EscapeLawOptions::default(),
    ) {
        Err(e) => Prediction {
            law: None,
            note: Some(format!("{e:#}")),
            per_n: summaries.iter().map(|_| None).collect(),
        },
        Ok(law) => {
            let per_n = summaries
                .iter()
                .map(|s| {
                    let times: Vec<f64> = runs
                        .iter()
                        .filter(|r| r.n == s.n)
                        .map(|r| if r.censored() { f64::INFINITY } else { r.t_escape })
                        .collect();
                    let n = s.n as f64;
                    let ks = ks_distance(&times, t_max, |t| law.cdf(n, t));
                    Some(PredictedN {
                        law: law.summary(n),
                        ks,
                        ks_p: ks_p_value(ks, times.len()),
                    })
                })
                .collect();
            Prediction {
                law: Some(law),
                note: None,
                per_n,
            }
        }
    }
}

impl Prediction {
    /// The `predicted` object of escape_fit.json: s_Z, μ_∞, per-N statistics and the line through
    /// the predicted means over the N of the fit (the predicted intercept beside the fitted one).
    fn json(&self, summaries: &[EscapeSummary], fit: Option<LinearFit>) -> serde_json::Value {
        let Some(law) = &self.law else {
            return json!({ "available": false, "reason": self.note });
        };
        let (x, y): (Vec<f64>, Vec<f64>) = summaries
            .iter()
            .zip(&self.per_n)
            .filter(|(s, _)| usable_for_fit(s))
            .filter_map(|(s, p)| p.as_ref().map(|p| ((s.n as f64).ln(), p.law.mean)))
            .unzip();
        let line = linear_fit(&x, &y, None);
        json!({
            "available": true,
            "method": "linear-noise approximation: t_esc = T(‖Z‖/√N), Z ~ N(0, s_Z I), T the ODE escape time from M0 = r e1 (docs/fluctuations.md §3); no fitted constant",
            "z_variance": law.z_variance,
            "z_variance_initial_overlap": law.z_variance_initial,
            "mu_plateau": law.mu,
            "slope_of_predicted_means": line.map(|f| f.slope),
            "intercept_of_predicted_means": line.map(|f| f.intercept),
            "fitted_intercept": fit.map(|f| f.intercept),
            "per_n": summaries.iter().zip(&self.per_n).map(|(s, p)| json!({
                "n": s.n,
                "mean": p.as_ref().map(|p| p.law.mean),
                "std": p.as_ref().map(|p| p.law.sd),
                "median": p.as_ref().map(|p| p.law.median),
                "ks": p.as_ref().map(|p| p.ks),
                "ks_p": p.as_ref().map(|p| p.ks_p),
            })).collect::<Vec<_>>(),
        })
    }

    fn print(&self, summaries: &[EscapeSummary]) {
        match &self.law {
            None => println!(
                "  predicted law: not available ({})",
                self.note.as_deref().unwrap_or("")
            ),
            Some(law) => {
                println!(
                    "  predicted law (LNA, no fitted constant): s_Z = {:.5} (initial overlap {:.5}), μ = {:.5}",
                    law.z_variance, law.z_variance_initial, law.mu
                );
                for (s, p) in summaries
                    .iter()
                    .zip(&self.per_n)
                    .filter_map(|(s, p)| Some((s, p.as_ref()?)))
                {
                    println!(
                        "  N = {:<9} predicted mean {:.4} s.d. {:.4} median {:.4}; KS {:.4} (p = {:.3})",
                        s.n, p.law.mean, p.law.sd, p.law.median, p.ks, p.ks_p
                    );
                }
            }
        }
    }
}

/// The per-N statistics, the ln N fit, the theory and the deterministic (ODE) reference.
struct Analysis {
    summaries: Vec<EscapeSummary>,
    fit: Option<LinearFit>,
    slope_theory: Option<f64>,
    std_theory: Option<f64>,
    ode_times: Vec<(usize, Option<f64>)>,
    ode_fit: Option<LinearFit>,
    ode_local_slopes: Vec<serde_json::Value>,
    censored: usize,
    diverged: usize,
}

fn analyse(exp: &Experiment, cfg: &EscapeConfig, stability: &Stability, summaries: Vec<EscapeSummary>) -> Analysis {
    let fit = fit_log_n(&summaries);
    let slope_theory = stability.escape_slope();
    // The deterministic reference: the ODE's escape time from the typical initial size, at the
    // experiment's N and far beyond (where its slope must tend to 1/(2μ)).
    let rule = EscapeRule::new(cfg, stability.plateau.eg);
    let t_long = 50.0 * exp.grid.last().copied().unwrap_or(1.0);
    let p_teacher = exp.teacher_overlap();
    let ode_at = |n: f64| {
        ode_escape_time(
            &exp.model,
            &exp.training,
            &exp.ode_options,
            exp.sigma0,
            &p_teacher,
            rule,
            n,
            t_long,
        )
        .ok()
        .flatten()
    };
    let ode_times: Vec<(usize, Option<f64>)> = summaries.iter().map(|s| (s.n, ode_at(s.n as f64))).collect();
    let ode_fit = {
        let (x, y): (Vec<f64>, Vec<f64>) = ode_times
            .iter()
            .filter_map(|(n, t)| t.map(|t| ((*n as f64).ln(), t)))
            .unzip();
        linear_fit(&x, &y, None)
    };
    let ode_large: Vec<(f64, Option<f64>)> = [1e4, 1e6, 1e8, 1e10, 1e12].iter().map(|&n| (n, ode_at(n))).collect();
    let ode_local_slopes: Vec<serde_json::Value> = ode_large
        .windows(2)
        .map(|w| {
            let slope = match (w[0].1, w[1].1) {
                (Some(a), Some(b)) => Some((b - a) / (w[1].0 / w[0].0).ln()),
                _ => None,
            };
            json!({"n_from": w[0].0, "n_to": w[1].0, "slope": slope})
        })
        .collect();
    let std_theory = stability
        .mu
        .map(|mu| escape_time_sd(exp.model.p(), exp.model.p_star(), mu));
    let censored: usize = summaries.iter().map(|s| s.censored).sum();
    let diverged: usize = summaries.iter().map(|s| s.diverged).sum();
    Analysis {
        summaries,
        fit,
        slope_theory,
        std_theory,
        ode_times,
        ode_fit,
        ode_local_slopes,
        censored,
        diverged,
    }
}

/// The content of `escape_fit.json`.
fn fit_json(
    exp: &Experiment,
    cfg: &EscapeConfig,
    stability: &Stability,
    popts: &PlateauOptions,
    a: &Analysis,
) -> serde_json::Value {
    let (fit, slope_theory) = (a.fit, a.slope_theory);
    json!({
        "model": "mean t_escape = slope·ln N + intercept, weighted least squares (weights 1/se², se of the parameters from the per-N se), over the N without censored runs",
        "slope": fit.map(|f| f.slope),
        "se_slope": fit.map(|f| f.se_slope),
        "intercept": fit.map(|f| f.intercept),
        "se_intercept": fit.map(|f| f.se_intercept),
        "chi2": fit.map(|f| f.chi2),
        "dof": fit.map(|f| f.dof),
        "n_used": a.summaries.iter().filter(|s| usable_for_fit(s)).map(|s| s.n).collect::<Vec<_>>(),
        "theory_slope": slope_theory,
        "theory_std": a.std_theory,
        "theory_std_formula": "√ψ′(p p*/2)/(2μ) (initial-overlap fluctuations only, theory.md §6)",
        "slope_minus_theory_in_se": match (fit, slope_theory) { (Some(f), Some(s)) => Some((f.slope - s) / f.se_slope), _ => None },
        "ode_typical_start": "ODE from Q0 = σ0² I, M0 = σ0/√N (all entries), same escape rule",
        "ode_escape_times": a.ode_times.iter().map(|(n, t)| json!({"n": n, "t_escape": t})).collect::<Vec<_>>(),
        "ode_slope_at_experiment_n": a.ode_fit.map(|f| f.slope),
        "ode_local_slopes_large_n": a.ode_local_slopes,
        "censored_runs": a.censored,
        "diverged_runs": a.diverged,
        "criterion": cfg,
        "stability": to_json(exp.sigma0, stability, popts),
    })
}

/// The per-N table, the fit, the theory and the warnings on stdout.
fn print_summary(exp: &Experiment, cfg: &EscapeConfig, stability: &Stability, a: &Analysis) {
    let (censored, diverged) = (a.censored, a.diverged);
    println!("{}: escape times (criterion {:?})", exp.name, cfg.criterion);
    println!("  N      count censored diverged   mean      s.e.     std     median");
    // Undefined statistics (no run escaped) print as "—", as they are empty in the CSV.
    let f = |x: f64| if x.is_finite() { format!("{x:.4}") } else { "—".into() };
    for s in &a.summaries {
        println!(
            "  {:<6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            s.n,
            s.count,
            s.censored,
            s.diverged,
            f(s.mean),
            f(s.se),
            f(s.std),
            f(s.median)
        );
    }
    if let Some(f) = a.fit {
        println!(
            "  fit: mean t_esc = ({:.4} ± {:.4})·ln N + ({:.4} ± {:.4}), χ²/dof = {:.3}/{}",
            f.slope, f.se_slope, f.intercept, f.se_intercept, f.chi2, f.dof
        );
    }
    if let (Some(s), Some(mu)) = (a.slope_theory, stability.mu) {
        println!(
            "  theory: μ = {mu:.6}, slope 1/(2μ) = {s:.4}; spread √ψ′(pp*/2)/(2μ) = {:.4}",
            a.std_theory.unwrap_or(f64::NAN)
        );
    }
    if let Some(f) = a.ode_fit {
        let last = a.ode_local_slopes.last().and_then(|v| v["slope"].as_f64());
        println!(
            "  ODE from the typical start (M0 = σ0/√N): slope {:.4} over the experiment's N; local slope {:.4} at N = 1e10…1e12",
            f.slope,
            last.unwrap_or(f64::NAN)
        );
    }
    if censored > diverged {
        println!(
            "  warning: {} run(s) reached t_max without escaping; the N with such runs are left out of the fit",
            censored - diverged
        );
    }
    if diverged > 0 {
        println!("  warning: {diverged} run(s) diverged (listed in escape_times.csv, left out of the means)");
    }
}

/// How many runs there are, how many did not escape, and how many of those diverged.
#[derive(Debug, Clone, Copy)]
struct NotEscaped {
    all: usize,
    not_escaped: usize,
    diverged: usize,
}

impl NotEscaped {
    fn of(summaries: &[EscapeSummary]) -> Self {
        let (all, not_escaped, diverged) = summaries
            .iter()
            .fold((0, 0, 0), |(a, c, d), s| (a + s.count, c + s.censored, d + s.diverged));
        NotEscaped {
            all,
            not_escaped,
            diverged,
        }
    }
}

/// The figures of `hdsgd escape`: the empirical CDF of the escape times per N
/// (`escape_ecdf.svg`) and the mean escape time against ln N with the fit and the theory
/// (`escape_vs_logn.svg`).
#[allow(clippy::too_many_arguments)]
fn figures(
    exp: &Experiment,
    dir: &Path,
    runs: &[EscapeRun],
    summaries: &[EscapeSummary],
    fit: Option<LinearFit>,
    slope_theory: Option<f64>,
    ode_times: &[(usize, Option<f64>)],
    pred: &Prediction,
) -> Result<()> {
    let counts = NotEscaped::of(summaries);
    ecdf_figure(exp, dir, runs, summaries, counts, pred.law.as_ref())?;
    log_n_figure(exp, dir, summaries, counts, fit, slope_theory, ode_times)
}

/// Empirical CDF per N (censored runs never reach the top), with the runs that did not escape
/// counted in the legend and the title, and the predicted CDF per N (dashed, same colour).
fn ecdf_figure(
    exp: &Experiment,
    dir: &Path,
    runs: &[EscapeRun],
    summaries: &[EscapeSummary],
    counts: NotEscaped,
    law: Option<&EscapeLaw>,
) -> Result<()> {
    let t_max = exp.grid.last().copied().unwrap_or(0.0);
    let NotEscaped {
        all,
        not_escaped,
        diverged,
    } = counts;
    let status = if all > 0 && not_escaped == all {
        format!(" — no run escaped by t_max = {t_max}: raise time.t_max")
    } else if not_escaped > 0 {
        format!(
            " — {not_escaped} of {all} runs did not escape ({diverged} diverged, {} reached t_max)",
            not_escaped - diverged
        )
    } else {
        String::new()
    };
    let mut series: Vec<Series> = summaries
        .iter()
        .enumerate()
        .map(|(ci, s)| ecdf_series(runs, s, ci))
        .collect();
    if let Some(law) = law {
        let t: Vec<f64> = (0..=400).map(|k| t_max * k as f64 / 400.0).collect();
        for (ci, s) in summaries.iter().enumerate() {
            let y = t.iter().map(|&ti| law.cdf(s.n as f64, ti)).collect();
            series.push(Series::line(format!("N = {} predicted", s.n), t.clone(), y, ci).dashed());
        }
    }
    let panel = Panel::new(
        format!("{}: escape times{status}", exp.name),
        "t_escape (escape time, samples/N)",
        "fraction of runs escaped (empirical CDF)",
        series,
    );
    plots::draw(&dir.join("escape_ecdf.svg"), &[panel], 1)
}

/// The empirical CDF of the escape times of the runs of `s.n` as a step line in colour `ci`,
/// normalised by all runs (those that did not escape keep it below 1).
fn ecdf_series(runs: &[EscapeRun], s: &EscapeSummary, ci: usize) -> Series {
    let mut t: Vec<f64> = runs
        .iter()
        .filter(|r| r.n == s.n && !r.censored())
        .map(|r| r.t_escape)
        .collect();
    t.sort_by(f64::total_cmp);
    let (mut x, mut y) = (vec![], vec![]);
    for (i, &ti) in t.iter().enumerate() {
        x.push(ti);
        y.push(i as f64 / s.count as f64);
        x.push(ti);
        y.push((i + 1) as f64 / s.count as f64);
    }
    let label = if s.censored == 0 {
        format!("N = {} ({} runs)", s.n, s.count)
    } else {
        format!(
            "N = {} ({} runs; {} diverged, {} at t_max)",
            s.n,
            s.count,
            s.diverged,
            s.censored - s.diverged
        )
    };
    Series::line(label, x, y, ci)
}

/// Mean ± s.e. vs ln N, the fitted line, the predicted slope (through the weighted centroid of
/// the points: the theory fixes the slope, not the intercept) and the ODE's escape times.
fn log_n_figure(
    exp: &Experiment,
    dir: &Path,
    summaries: &[EscapeSummary],
    counts: NotEscaped,
    fit: Option<LinearFit>,
    slope_theory: Option<f64>,
    ode_times: &[(usize, Option<f64>)],
) -> Result<()> {
    let pts: Vec<&EscapeSummary> = summaries.iter().filter(|s| s.mean.is_finite()).collect();
    let x: Vec<f64> = pts.iter().map(|s| (s.n as f64).ln()).collect();
    let y: Vec<f64> = pts.iter().map(|s| s.mean).collect();
    let mut series = vec![Series::line("mean ± s.e.", x.clone(), y.clone(), 0).markers()];
    for (xi, s) in x.iter().zip(&pts) {
        series.push(Series::line("", vec![*xi, *xi], vec![s.mean - s.se, s.mean + s.se], 0));
    }
    if let (Some(lo), Some(hi)) = (x.first(), x.last()) {
        let xs = vec![lo - 0.2, hi + 0.2];
        if let Some(f) = fit {
            series.push(Series::line(
                format!("fit: slope {:.3} ± {:.3}", f.slope, f.se_slope),
                xs.clone(),
                xs.iter().map(|x| f.slope * x + f.intercept).collect(),
                1,
            ));
        }
        if let Some(c) = slope_theory {
            series.push(theory_line(&pts, &x, &y, c, xs));
        }
    }
    let (ox, oy): (Vec<f64>, Vec<f64>) = ode_times
        .iter()
        .filter_map(|(n, t)| t.map(|t| ((*n as f64).ln(), t)))
        .unzip();
    if !ox.is_empty() {
        series.push(Series::line("ODE from M0 = σ0/√N", ox, oy, 3).dashed());
    }
    let NotEscaped { all, not_escaped, .. } = counts;
    let title = if not_escaped > 0 {
        format!(
            "{}: mean escape time vs ln N ({not_escaped} of {all} runs left out)",
            exp.name
        )
    } else {
        format!("{}: mean escape time vs ln N", exp.name)
    };
    let panel = Panel::new(
        title,
        "ln N (N: input dimension)",
        "mean escape time t_esc (± s.e.)",
        series,
    );
    plots::draw(&dir.join("escape_vs_logn.svg"), &[panel], 1)
}

/// The predicted line of slope `c` = 1/(2μ) over `xs`, through the centroid of the points
/// (`x` = ln N, `y` = mean) weighted by 1/s.e.².
fn theory_line(pts: &[&EscapeSummary], x: &[f64], y: &[f64], c: f64, xs: Vec<f64>) -> Series {
    let w: Vec<f64> = pts.iter().map(|s| 1.0 / (s.se * s.se).max(1e-300)).collect();
    let sw: f64 = w.iter().sum();
    let xm = w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() / sw;
    let ym = w.iter().zip(y).map(|(w, y)| w * y).sum::<f64>() / sw;
    let ys = xs.iter().map(|x| ym + c * (x - xm)).collect();
    Series::line(format!("theory: slope 1/(2μ) = {c:.3}"), xs, ys, 2).dashed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs file's text (after the hash line) for `runs`.
    fn text(runs: &[EscapeRun]) -> String {
        let mut t = CsvTable::flexible(RUNS_HEADER.split(',')).unwrap();
        for r in runs {
            t.row(run_fields(r)).unwrap();
        }
        String::from_utf8(t.into_bytes().unwrap()).unwrap()
    }

    #[test]
    fn run_lines_round_trip() {
        let r = EscapeRun {
            n: 1000,
            seed_index: 7,
            run_seed: u64::MAX - 3,
            t_escape: 0.1 + 0.2,
            status: EscapeStatus::Censored,
            samples: 123,
            wall_seconds: 1.5,
            conserved_drift: None,
        };
        assert_eq!(parse_runs(&text(&[r])), vec![r]);
        let r = EscapeRun {
            conserved_drift: Some(0.25),
            ..r
        };
        assert_eq!(parse_runs(&text(&[r])), vec![r]);
        // A torn last row (interrupted write) and an unknown status are dropped.
        let torn = text(&[r]) + "1000,7,3,0.5,0,esc";
        assert_eq!(parse_runs(&torn), vec![r]);
        let bad = text(&[r]).replace("censored", "esc");
        assert_eq!(parse_runs(&bad), vec![]);
        // One journal line and back.
        assert_eq!(parse_line(&run_line(&r).unwrap()), Some(r));
        assert_eq!(parse_line("1000,7,3,0.5,0,esc"), None);
    }
}
