//! `hdsgd phase` (docs/phase_diagram.md): its pre-flight errors (naming the field, nothing written),
//! the three behaviours of Veiga et al.'s Fig. 2 classified as the theory says, bit-identical
//! outputs for 1 and 2 threads, and the `[ode] terms` option.

use hdsgd::config::Experiment;
use hdsgd::ode::OdeVariant;
use std::path::{Path, PathBuf};

mod common;
use common::hdsgd;

/// Fig. 2 of Veiga et al. at κ = 1/4: δ = −1/2 (bad band), δ = −κ (Saad–Solla line) and
/// δ = 1/2 − κ (perfect learning, ϑ = 1/2); N = 3⁴, 4⁴, 5⁴ so that p = N^(1/4) = 3, 4, 5 exactly.
const FIG2: &str = r#"
name = "fig2"
[model]
activation = "erf"
p = 1
p_star = 1
v = "ones"
noise = 1e-3
[training]
eta = 1.0
[simulation]
n = [81, 256, 625]
seeds = 3
base_seed = 16
[time]
t_max = 20.0
grid = "log"
points = 30
t_min = 0.01
[output]
figures = false
[phase]
kappa = [0.25]
delta = [-0.5, -0.25, 0.25]
eta0 = 2.0
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Each bad input is refused before any computation with the field it names; no folder appears.
#[test]
fn preflight_errors_name_the_field_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("kappa = [0.25]", "kappa = [-0.5]", "phase.kappa"),
        ("eta0 = 2.0", "eta0 = 2.0\nscale = 0.1", "phase.scale"),
        ("t_max = 20.0", "t_max = 1e9", "time.t_max"),
        ("eta0 = 2.0", "eta0 = 2.0\node = \"all\"", "phase.ode"),
        ("n = [81, 256, 625]", "n = [81]", "simulation.n"),
        // p = 300 at every N: above the pre-flight's width limit of 256 without --allow-large.
        ("kappa = [0.25]", "kappa = [0.0]\nscale = 300.0", "model.p"),
    ];
    for (i, (from, to, field)) in cases.iter().enumerate() {
        let text = FIG2
            .replace(from, to)
            .replace("delta = [-0.5,", "delta = [-0.75, -0.5,");
        let file = write(tmp.path(), &format!("bad{i}.toml"), &text);
        let out = tmp.path().join(format!("out{i}"));
        let o = hdsgd(&["phase", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{to}: {err}");
        assert!(err.contains(field), "{to}: expected `{field}` in: {err}");
        assert!(!out.exists(), "{to}: output written");
    }
    // The sample cap says how many samples the run would need.
    let text = FIG2.replace("t_max = 20.0", "t_max = 1e9");
    let file = write(tmp.path(), "cap.toml", &text);
    let o = hdsgd(&[
        "phase",
        file.to_str().unwrap(),
        "--out",
        tmp.path().join("cap").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("SGD samples"));
}

fn column<'a>(header: &'a str, row: &'a str, name: &str) -> &'a str {
    let i = header.split(',').position(|h| h == name).unwrap();
    row.split(',').nth(i).unwrap()
}

/// The three behaviours at κ = 1/4 are classified as their regions (fixed seeds). The rule's own
/// significance is z = 2 standard errors of the log–log slope of the excess risk over gradient
/// flow; beyond that, the perfect point's slope must be the theory's −(κ + δ) = −1/2 within 3
/// standard errors of the fit (its errors from the seeds). Also: 1 and 2 threads write identical
/// files.
#[test]
fn fig2_points_are_classified_as_their_regions_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "fig2.toml", FIG2);
    let mut dirs = vec![];
    for threads in ["1", "2"] {
        let out = tmp.path().join(format!("t{threads}"));
        let o = hdsgd(&[
            "phase",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            threads,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dirs.push(out);
    }
    for f in ["phase.csv", "risk.csv"] {
        assert_eq!(
            std::fs::read(dirs[0].join(f)).unwrap(),
            std::fs::read(dirs[1].join(f)).unwrap(),
            "{f} differs between 1 and 2 threads"
        );
    }
    let csv = std::fs::read_to_string(dirs[0].join("phase.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 9);
    for row in &rows {
        assert_eq!(column(header, row, "agrees"), "true", "{row}");
        let p: usize = column(header, row, "p").parse().unwrap();
        let n: f64 = column(header, row, "n").parse().unwrap();
        assert_eq!(p as f64, n.powf(0.25).round());
    }
    let perfect = rows.iter().find(|r| column(header, r, "region") == "perfect").unwrap();
    let slope: f64 = column(header, perfect, "slope").parse().unwrap();
    let se: f64 = column(header, perfect, "slope_se").parse().unwrap();
    assert!((slope + 0.5).abs() <= 3.0 * se, "slope {slope} ± {se}, theory −1/2");
}

/// `[ode] terms` selects the right-hand side; it may not contradict `gradient_flow`.
#[test]
fn ode_terms_option() {
    let base = "[model]\nactivation = \"erf\"\np = 2\np_star = 1\n[training]\neta = 0.5\n[simulation]\nn = [50]\nseeds = 1\n[time]\nt_max = 1.0\n";
    let variant =
        |extra: &str| Experiment::from_toml(&format!("{base}[ode]\n{extra}"), "t").map(|e| e.ode_options.variant);
    assert_eq!(variant("terms = \"full\"").unwrap(), OdeVariant::Full);
    assert_eq!(variant("terms = \"first_order\"").unwrap(), OdeVariant::GradientFlow);
    assert_eq!(variant("gradient_flow = true").unwrap(), OdeVariant::GradientFlow);
    assert_eq!(variant("terms = \"second_order\"").unwrap(), OdeVariant::SecondOrder);
    let err = variant("terms = \"second_order\"\ngradient_flow = true").unwrap_err();
    assert!(err.to_string().contains("ode.terms"), "{err}");
    assert!(variant("terms = \"third\"").is_err());
}

/// Every (κ, δ, N) resolves to an ordinary experiment with p = round(scale·N^κ), η = η₀N^(−δ), the
/// record times τ·N^ϑ and the region's ODE terms (none in the no-ODE region), in κ, δ, N order.
#[test]
fn cells_resolve_to_ordinary_experiments() {
    let text = FIG2.replace("delta = [-0.5,", "delta = [-0.75, -0.5,");
    let exp = Experiment::from_toml(&text, "fig2").unwrap();
    let cells = hdsgd::studies::phase::resolve(&exp).unwrap();
    assert_eq!(cells.len(), 4 * 3);
    let expected = [
        (-0.75, None),
        (-0.5, Some(OdeVariant::SecondOrder)),
        (-0.25, Some(OdeVariant::Full)),
        (0.25, Some(OdeVariant::GradientFlow)),
    ];
    for (c, (delta, ode)) in cells.iter().zip(expected.iter().flat_map(|e| [e; 3])) {
        let n = c.n as f64;
        assert_eq!((c.kappa, c.delta, c.ode), (0.25, *delta, *ode));
        assert_eq!(c.exp.model.p() as f64, n.powf(0.25).round());
        assert_eq!(c.exp.training.eta, 2.0 * n.powf(-delta));
        assert_eq!(c.exp.ns, vec![c.n]);
        let unit = n.powf(c.theta);
        assert_eq!(*c.exp.grid.last().unwrap(), 20.0 * unit);
        assert_eq!(c.samples(), 20.0 * unit * n);
    }
    assert_eq!(
        cells.iter().map(|c| c.n).take(3).collect::<Vec<_>>(),
        vec![81, 256, 625]
    );
    // ϑ per region: no ODE κ − 1, bad 2(κ + δ), line 0, perfect κ + δ.
    let thetas: Vec<f64> = cells.iter().step_by(3).map(|c| c.theta).collect();
    assert_eq!(thetas, vec![-0.75, -0.5, 0.0, 0.5]);
}

/// The late risk is the mean over the last fraction of the records after t = 0 (at least one).
#[test]
fn late_mean_takes_the_last_fraction() {
    use hdsgd::studies::phase::late_mean;
    let eg = [9.0, 4.0, 3.0, 2.0, 1.0];
    assert_eq!(late_mean(&eg, 0.25), 1.0);
    assert_eq!(late_mean(&eg, 0.5), 1.5);
    assert_eq!(late_mean(&eg, 1.0), 2.5);
    assert_eq!(late_mean(&eg, 0.01), 1.0);
}

/// `hdsgd check` on a phase file prints the resolved grid (p, η per N) and refuses what the
/// command refuses.
#[test]
fn check_prints_the_resolved_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "fig2.toml", FIG2);
    let o = hdsgd(&["check", file.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`hdsgd phase`") && err.contains("N = 625: p = 5, η = 50.000000"),
        "{err}"
    );
    assert!(err.contains("9 (κ, δ, N) cells"), "{err}");
    let bad = write(
        tmp.path(),
        "bad.toml",
        &FIG2.replace("eta0 = 2.0", "eta0 = 2.0\nscale = 0.1"),
    );
    let o = hdsgd(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("phase.scale"));
}
