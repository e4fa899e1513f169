//! End-to-end tests of the geometry outputs of the `hdsgd` binary: `hdsgd run` with
//! `[geometry] observables` and `hdsgd hessian`.

use std::path::Path;

mod common;
use common::hdsgd;

/// p = 2, p* = 1 with every geometry observable, two widths and a 60 × 60 Hessian; t = 100 with
/// `converged_eg = 1e-3`, so that every run converges (e_g ≈ 2–4e-4 at the end) and the selection
/// check below has runs to check.
fn small() -> String {
    common::small_quadratic("[40, 80]", 2, 100.0, 30)
        .set("geometry", "converged_eg", 1e-3)
        .set("", "name", "\"geo_small\"")
        .set("simulation", "base_seed", 3)
        .set("geometry", "observables", r#"["conserved", "selection", "escape"]"#)
        .set("geometry", "widths", "[1, 2]")
        .set("geometry", "hessian_n", 30)
        .text()
}

fn header(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn run_writes_the_geometry_observables_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("geo.toml");
    std::fs::write(&exp, small()).unwrap();
    let outs: Vec<_> = ["1", "2"]
        .iter()
        .map(|th| {
            let out = tmp.path().join(format!("out{th}"));
            let o = hdsgd(&[
                "run",
                exp.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--threads",
                th,
                "--quiet",
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .collect();
    let d = &outs[0];
    assert_eq!(
        header(&d.join("geometry.csv")),
        "n,seed,source,t,eg,qperp_min,drift,i_0_0"
    );
    assert_eq!(
        header(&d.join("selection.csv")),
        "n,seed,eg_final,converged,dist,dist_min,ratio,dist_to_selected"
    );
    assert_eq!(header(&d.join("escape.csv")), "p,n,seed,t_esc,eg_plateau,diverged_at");
    // Two widths × two N × two seeds.
    assert_eq!(
        std::fs::read_to_string(d.join("escape.csv")).unwrap().lines().count(),
        9
    );
    for f in [
        "geometry.csv",
        "geometry.json",
        "selection.csv",
        "selection.json",
        "escape.csv",
        "escape.json",
    ] {
        let a = std::fs::read(outs[0].join(f)).unwrap();
        let b = std::fs::read(outs[1].join(f)).unwrap();
        assert_eq!(a, b, "{f} depends on the thread count");
        let text = String::from_utf8(a).unwrap();
        assert!(!text.contains("NaN"), "{f} holds NaN");
    }
    // Solution selection (docs/geometry.md §2): a converged run ends near the zero-loss manifold,
    // so the distance it travelled is close to the Procrustes minimum over the manifold: ratio ≈ 1,
    // a little below while the components orthogonal to the teacher are still decaying (0.96–1.01
    // here; dist_min = tr Q₀ + tr(VP)/a − 2‖M₀(V/a)^½‖_* ≈ 2 + 2 − 0.4: without its tr(VP)/a term the
    // ratios would be ≈ 2, and with the nuclear-norm term doubled ≈ 1.1).
    let sel = std::fs::read_to_string(d.join("selection.csv")).unwrap();
    let mut converged = 0;
    let mut ratios = vec![];
    for line in sel.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (eg, dist, dmin, ratio): (f64, f64, f64, f64) = (
            f[2].parse().unwrap(),
            f[4].parse().unwrap(),
            f[5].parse().unwrap(),
            f[6].parse().unwrap(),
        );
        assert_eq!(f[3] == "true", eg < 1e-3, "{line}");
        assert!((ratio - dist / dmin).abs() < 1e-12, "{line}");
        if f[3] == "true" {
            converged += 1;
            ratios.push(ratio);
            assert!((0.9..1.05).contains(&ratio), "{line}");
        }
    }
    assert_eq!(
        converged, 4,
        "every run must converge for the check to mean anything:\n{sel}"
    );
    // selection.json averages the same ratios.
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("selection.json")).unwrap()).unwrap();
    let per_n = js["per_n"].as_array().unwrap();
    let mean_json: f64 = per_n.iter().map(|x| x["mean_ratio"].as_f64().unwrap()).sum::<f64>() / per_n.len() as f64;
    let mean_csv = ratios.iter().sum::<f64>() / ratios.len() as f64;
    assert!((mean_json - mean_csv).abs() < 1e-12, "{mean_json} vs {mean_csv}");
}

#[test]
fn hessian_command_prints_counts_and_refuses_bad_models() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("geo.toml");
    std::fs::write(&exp, small()).unwrap();
    let out = tmp.path().join("h");
    let o = hdsgd(&["hessian", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    // p = 2, p* = 1, N = 30, a = 1/2, v = 1: plateau (pp*, p(N − p − p*) + p(p − 1)/2, p(p + 1)/2)
    // = (2, 55, 3), solution (0, (p − p*)N + p*(p* − 1)/2, rest) = (0, 30, 30).
    assert!(text.contains("plateau          2       55        3"), "{text}");
    assert!(text.contains("solution         0       30       30"), "{text}");
    assert!(out.join("hessian.json").exists() && out.join("hessian_spectra.csv").exists());
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, small().replace("p = 2\n", "p = 2\na = [0.3, 0.7]\n")).unwrap();
    let o = hdsgd(&[
        "hessian",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("h2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.a"));
    assert!(!tmp.path().join("h2").exists());
    std::fs::write(&bad, small().replace("hessian_n = 30", "hessian_n = 5000")).unwrap();
    let o = hdsgd(&[
        "hessian",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("h3").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("geometry.hessian_n"));
    assert!(!tmp.path().join("h3").exists());
}
