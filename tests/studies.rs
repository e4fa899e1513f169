//! Integration tests of the escape-time and finite-size-scaling studies (issue 3).
//! Fixed seeds; tolerances are stated multiples of predicted standard errors.

use hdsgd::analysis::escape::{self, EscapeDetector, EscapeRule, EscapeStatus};
use hdsgd::analysis::fits::power_law_fit;
use hdsgd::analysis::scaling::{fit_window, window_stats, ObservableRuns};
use hdsgd::analysis::stability::PlateauOptions;
use hdsgd::config::Experiment;
use hdsgd::rng::{standard_normal, stream};
use hdsgd::studies::escape::escape_run;
use hdsgd::studies::plateau::stability;
use hdsgd::studies::runner::tasks;
use hdsgd::studies::Cancel;
use hdsgd::studies::OutputOptions;

mod common;

/// Quadratic p = p* = 1, a = v = 1, σ₀ = 0.1, η = 0.15 (the escape_quadratic_p1 experiment).
fn escape_config(ns: &str, seeds: usize, t_max: f64) -> Experiment {
    common::escape_p1(ns, seeds, t_max, (t_max * 20.0) as usize).experiment("escape_test")
}

#[test]
fn escape_extraction_on_synthetic_trajectories() {
    // e_g(t) = 1 + e^{-t} until t = 5 (approach from above to the plateau value 1), then
    // 1 − (t − 5)/10: crosses 0.5 at t = 10 exactly; records every 0.3 (10 is not a record time).
    let rule = EscapeRule::EgFraction {
        eg_plateau: 1.0,
        fraction: 0.5,
        tolerance: 0.05,
    };
    let eg = |t: f64| {
        if t < 5.0 {
            1.0 + (-t).exp()
        } else {
            1.0 - (t - 5.0) / 10.0
        }
    };
    let mut d = EscapeDetector::new(rule);
    let mut k = 0;
    let t_esc = loop {
        let t = 0.3 * k as f64;
        if let Some(te) = d.observe_value(t, 0.0, eg(t)) {
            break te;
        }
        k += 1;
    };
    // Linear interpolation is exact on the linear part.
    assert!((t_esc - 10.0).abs() < 1e-9, "{t_esc}");

    // Censoring: a trajectory that stays on the plateau never escapes.
    let mut d = EscapeDetector::new(rule);
    for k in 0..1000 {
        let t = 0.1 * k as f64;
        assert_eq!(d.observe_value(t, 0.0, 1.0 + 0.01 * (t).sin()), None);
    }
    assert!(d.reached_plateau());

    // Overlap criterion: max|M| = 0.01 e^{t/2} crosses 0.5 at t = 2 ln 50; the chord of a convex
    // increasing curve lies above it, so the interpolated crossing is early by less than a record spacing.
    let mut d = EscapeDetector::new(EscapeRule::MaxOverlap { threshold: 0.5 });
    let exact = 2.0 * 50f64.ln();
    let mut k = 0;
    let t_esc = loop {
        let t = 0.05 * k as f64;
        if let Some(te) = d.observe_value(t, 0.01 * (t / 2.0).exp(), 1.0) {
            break te;
        }
        k += 1;
    };
    assert!(t_esc <= exact + 1e-12 && t_esc > exact - 0.05, "{t_esc} vs {exact}");
}

#[test]
fn a_run_that_cannot_escape_is_censored() {
    // t_max = 1 is far below the escape time (≈ 6 at N = 100): censored at t_max, not dropped.
    let exp = escape_config("[100]", 2, 1.0);
    let st = stability(&exp, &PlateauOptions::default()).unwrap();
    let rule = EscapeRule::EgFraction {
        eg_plateau: st.plateau.eg,
        fraction: 0.5,
        tolerance: 0.05,
    };
    for task in tasks(&exp) {
        let r = escape_run(&exp, rule, &task, &Cancel::new()).unwrap();
        assert!(r.censored());
        assert!(matches!(r.status, EscapeStatus::Censored | EscapeStatus::NoPlateau));
        assert!((r.t_escape - 1.0).abs() < 1e-12);
    }
}

/// Mean escape time grows with N as ln N/(2μ). Theory (theory.md §6, stability analysis of this
/// config): μ = 0.4139, so mean t_esc(1600) − mean t_esc(100) ≈ ln 16/(2μ) = 3.35, while the spread
/// per run is ≈ √ψ′(1/2)/(2μ) = 2.7 (more at N = 100, where a few runs escape late), so with 64 seeds
/// per N the difference has a standard error ≈ 0.6. Asserted: the difference is within 3 of its
/// standard errors of the prediction, and the test can tell a wrong slope (twice the prediction,
/// 1/μ, lies beyond 3 standard errors); the spread at N = 1600 is that of the theory within 35 %.
#[test]
fn mean_escape_time_grows_with_n() {
    let exp = escape_config("[100, 1600]", 64, 40.0);
    let st = stability(&exp, &PlateauOptions::default()).unwrap();
    let mu = st.mu.unwrap();
    assert!((mu - 0.4139).abs() < 1e-3);
    let rule = EscapeRule::EgFraction {
        eg_plateau: st.plateau.eg,
        fraction: 0.5,
        tolerance: 0.05,
    };
    let runs: Vec<_> = tasks(&exp)
        .iter()
        .map(|t| escape_run(&exp, rule, t, &Cancel::new()).unwrap())
        .collect();
    // η·a = 0.15 is close to the stability edge, so at N = 100 a rare run may diverge (a competing
    // outcome, left out of the means); none may stay on the plateau until t_max = 40 (≈ 12 spreads
    // beyond the mean), and most must escape.
    assert!(
        runs.iter()
            .all(|r| !matches!(r.status, EscapeStatus::Censored | EscapeStatus::NoPlateau)),
        "no censoring expected at t_max = 40"
    );
    let escaped = runs.iter().filter(|r| r.status == EscapeStatus::Escaped).count();
    assert!(
        escaped * 10 >= runs.len() * 9,
        "only {escaped} of {} runs escaped",
        runs.len()
    );
    let s = escape::summarize_runs(&runs);
    let diff = s[1].mean - s[0].mean;
    let se = (s[0].se.powi(2) + s[1].se.powi(2)).sqrt();
    eprintln!(
        "mean t_esc: N=100 {:.3} ± {:.3}, N=1600 {:.3} ± {:.3}; diff {diff:.3} ± {se:.3}, theory {:.3}",
        s[0].mean,
        s[0].se,
        s[1].mean,
        s[1].se,
        16f64.ln() / (2.0 * mu)
    );
    let theory = 16f64.ln() / (2.0 * mu);
    assert!(
        (diff - theory).abs() < 3.0 * se,
        "difference {diff} ± {se} vs ln 16/(2μ) = {theory}"
    );
    assert!(
        (diff - 2.0 * theory).abs() > 3.0 * se,
        "the test cannot tell a slope 1/μ"
    );
    let spread = escape::trigamma(0.5).sqrt() / (2.0 * mu);
    eprintln!("spread at N = 1600: {:.3}, theory {spread:.3}", s[1].std);
    assert!(
        (s[1].std / spread - 1.0).abs() < 0.35,
        "spread {} vs {spread}",
        s[1].std
    );
}

/// The command is resumable and its results do not depend on the thread count: an interrupted
/// runs file (last run lost, a line cut in the middle) is completed to the same escape_times.csv.
#[test]
fn escape_command_resumes_and_is_thread_independent() {
    let exp = escape_config("[100, 200]", 4, 30.0);
    let tmp = tempfile::tempdir().unwrap();
    let opts = |dir: &std::path::Path, threads: usize, force: bool| OutputOptions {
        out: Some(dir.to_path_buf()),
        threads,
        force,
        ..Default::default()
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    hdsgd::studies::escape::command(&exp, &opts(&a, 1, false)).unwrap();
    hdsgd::studies::escape::command(&exp, &opts(&b, 2, false)).unwrap();
    let times = |d: &std::path::Path| std::fs::read_to_string(d.join("escape_times.csv")).unwrap();
    let reference = times(&a);
    assert_eq!(reference, times(&b));
    assert_eq!(reference.lines().count(), 1 + 8);
    // Interrupt: drop the last run and cut the one before in the middle.
    let runs_path = b.join("escape_runs.csv");
    let text = std::fs::read_to_string(&runs_path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    let cut = lines.pop().unwrap();
    let mut new = lines.join("\n");
    new.push('\n');
    new.push_str(&cut[..cut.len() / 2]);
    std::fs::write(&runs_path, new).unwrap();
    hdsgd::studies::escape::command(&exp, &opts(&b, 2, false)).unwrap();
    assert_eq!(reference, times(&b));
    // Another configuration refuses the folder unless --force.
    let other = escape_config("[100, 200]", 4, 31.0);
    assert!(hdsgd::studies::escape::command(&other, &opts(&b, 1, false)).is_err());
}

/// The cancellation flag (what Ctrl-C sets in the CLI and in Python): a command cancelled before it
/// starts returns `Cancelled` and creates no folder; an escape study cancelled in the middle keeps
/// only whole runs in its journal, and resuming it gives the uncancelled study's bytes, wherever
/// the cancellation landed.
#[test]
fn cancelled_commands_write_nothing_and_escape_resumes_to_the_same_bytes() {
    use hdsgd::studies::Cancelled;
    let tmp = tempfile::tempdir().unwrap();
    let cancelled = Cancel::new();
    cancelled.cancel();
    let run_exp = common::small_quadratic("[100, 200]", 2, 5.0, 6).experiment("c");
    let out = tmp.path().join("run");
    let opts = OutputOptions {
        out: Some(out.clone()),
        cancel: cancelled,
        ..Default::default()
    };
    let err = hdsgd::studies::run(&run_exp, &opts).unwrap_err();
    assert!(err.is::<Cancelled>(), "{err:#}");
    assert!(!out.exists(), "a cancelled run left {}", out.display());

    let exp = escape_config("[100, 200, 400]", 8, 30.0);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let opts = |dir: &std::path::Path, cancel: Cancel| OutputOptions {
        out: Some(dir.to_path_buf()),
        threads: 1,
        cancel,
        ..Default::default()
    };
    hdsgd::studies::escape::command(&exp, &opts(&a, Cancel::new())).unwrap();
    let cancel = Cancel::new();
    let journal = b.join("escape_runs.csv");
    let watcher = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            // Cancel once two runs are recorded (or give up after a while: then the study ran to
            // its end, and the resume below must still give the same bytes).
            for _ in 0..20_000 {
                let lines = std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count());
                if lines >= 3 {
                    cancel.cancel();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        })
    };
    let first = hdsgd::studies::escape::command(&exp, &opts(&b, cancel));
    let fired = watcher.join().unwrap();
    if let Err(e) = &first {
        assert!(fired && e.is::<Cancelled>(), "{e:#}");
        assert!(
            !b.join("escape_times.csv").exists(),
            "a cancelled study wrote its tables"
        );
    }
    hdsgd::studies::escape::command(&exp, &opts(&b, Cancel::new())).unwrap();
    let times = |d: &std::path::Path| std::fs::read_to_string(d.join("escape_times.csv")).unwrap();
    assert_eq!(times(&a), times(&b));
}

/// Synthetic runs x_r(t) = 1 + β/N + N^{-1/2} σ ξ_r(t) (ξ iid N(0,1) over runs and times) against a
/// reference ODE 1: the fits must recover b = 1/2 (std) and a = 1 (mean deviation) within 3 of
/// their own standard errors (fixed seed).
#[test]
fn scaling_fits_recover_known_exponents() {
    let (beta, sigma, runs, times) = (2.0, 1.0, 400, 20);
    let ns = [100usize, 200, 400, 800, 1600];
    let mut rng = stream(2024, 0);
    let idx: Vec<usize> = (0..times).collect();
    let stats: Vec<_> = ns
        .iter()
        .map(|&n| {
            let nf = n as f64;
            let sim: Vec<Vec<f64>> = (0..runs)
                .map(|_| {
                    (0..times)
                        .map(|_| 1.0 + beta / nf + sigma / nf.sqrt() * standard_normal(&mut rng))
                        .collect()
                })
                .collect();
            let obs = ObservableRuns {
                matched: vec![vec![1.0; times]; runs],
                typical: vec![1.0; times],
                sim,
            };
            window_stats(n, &obs, &idx)
        })
        .collect();
    let fits = fit_window(&stats);
    let b = fits[0].unwrap();
    let a = fits[2].unwrap();
    eprintln!(
        "b = {} ± {}, a = {} ± {}",
        b.exponent, b.se_exponent, a.exponent, a.se_exponent
    );
    assert!((b.exponent - 0.5).abs() < 3.0 * b.se_exponent);
    assert!((a.exponent - 1.0).abs() < 3.0 * a.se_exponent);
    // The standard errors are informative (not so wide that the test cannot fail).
    assert!(b.se_exponent < 0.05 && a.se_exponent < 0.25);
    // Noise-free power law: exact.
    let n: Vec<f64> = ns.iter().map(|&n| n as f64).collect();
    let y: Vec<f64> = n.iter().map(|n| 5.0 * n.powf(-0.75)).collect();
    let f = power_law_fit(&n, &y, &[1e-3; 5]).unwrap();
    assert!((f.exponent - 0.75).abs() < 1e-10);
}

/// `hdsgd scaling` end to end on a tiny experiment: the tables' shape (one row per N, time and
/// observable; one fit row per observable, window and quantity), and their numbers against an
/// independent computation: `hdsgd run` of the same experiment simulates the same runs (same seeds,
/// bit-identical), so the mean and variance over seeds of each observable, and the mean deviation
/// from the matched ODE, must be those of its trajectories.csv and ode.csv.
#[test]
fn scaling_command_writes_its_tables() {
    let exp = common::small_quadratic("[100, 200]", 4, 2.0, 4)
        .set("init", "sigma0", 1.0)
        .set("scaling", "windows", "[[0.5, 1.0], [1.5, 2.0]]")
        .experiment("scaling_test");
    let tmp = tempfile::tempdir().unwrap();
    let opts = |out: &str| OutputOptions {
        out: Some(tmp.path().join(out)),
        threads: 1,
        force: false,
        ..Default::default()
    };
    hdsgd::studies::scaling::command(&exp, &opts("s")).unwrap();
    hdsgd::studies::run(&exp, &opts("r")).unwrap();
    let csv = std::fs::read_to_string(tmp.path().join("s/scaling.csv")).unwrap();
    // 2 N × 5 times × (e_g + 5 overlaps + tr_q + norm_m) rows.
    assert_eq!(csv.lines().count(), 1 + 2 * 5 * 8);
    let fits = std::fs::read_to_string(tmp.path().join("s/scaling_fits.csv")).unwrap();
    assert_eq!(fits.lines().count(), 1 + 8 * 2 * 4);
    assert!(tmp.path().join("s/scaling_collapse.svg").exists());

    // Rows of a CSV as maps column → value.
    let table = |path: &str| -> Vec<std::collections::BTreeMap<String, String>> {
        let mut r = csv::Reader::from_path(tmp.path().join(path)).unwrap();
        let h = r.headers().unwrap().clone();
        r.records()
            .map(|rec| {
                let rec = rec.unwrap();
                h.iter()
                    .zip(rec.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    };
    let f = |m: &std::collections::BTreeMap<String, String>, k: &str| -> f64 { m[k].parse().unwrap() };
    let traj = table("r/trajectories.csv");
    let ode = table("r/ode.csv");
    let value = |row: &std::collections::BTreeMap<String, String>, obs: &str| -> f64 {
        match obs {
            "eg" => f(row, "eg"),
            "tr_q" => f(row, "q_0_0") + f(row, "q_1_1"),
            "norm_m" => (f(row, "m_0_0").powi(2) + f(row, "m_1_0").powi(2)).sqrt(),
            c => f(row, c),
        }
    };
    let mut checked = 0;
    for row in table("s/scaling.csv") {
        let (n, t, obs) = (row["n"].clone(), f(&row, "t"), row["observable"].clone());
        let pick = |rows: &[std::collections::BTreeMap<String, String>]| -> Vec<f64> {
            rows.iter()
                .filter(|r| r["n"] == n && f(r, "t") == t)
                .map(|r| value(r, &obs))
                .collect()
        };
        let (sim, matched) = (pick(&traj), pick(&ode));
        assert_eq!(sim.len(), 4, "{n} {t} {obs}");
        assert_eq!(matched.len(), 4, "{n} {t} {obs}");
        let k = sim.len() as f64;
        let mean = sim.iter().sum::<f64>() / k;
        let var = sim.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
        let dev = sim.iter().zip(&matched).map(|(a, b)| a - b).sum::<f64>() / k;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
        assert!(
            close(f(&row, "mean"), mean),
            "{n} {t} {obs}: mean {} vs {mean}",
            row["mean"]
        );
        assert!(
            close(f(&row, "variance"), var),
            "{n} {t} {obs}: variance {} vs {var}",
            row["variance"]
        );
        assert!(
            (f(&row, "mean_dev_matched") - dev).abs() <= 1e-12 * (1.0 + mean.abs()),
            "{n} {t} {obs}: mean_dev_matched {} vs {dev}",
            row["mean_dev_matched"]
        );
        assert_eq!(row["n_seeds"], "4");
        checked += 1;
    }
    assert_eq!(checked, 2 * 5 * 8);
    // Every fit row names its window and its theory exponent.
    for row in table("s/scaling_fits.csv") {
        let theory = f(&row, "theory");
        let q = row["quantity"].as_str();
        assert_eq!(theory, if q.starts_with("std") { 0.5 } else { 1.0 }, "{q}");
        assert!(["0.5", "1.5"].contains(&row["window_start"].as_str()));
    }
}
