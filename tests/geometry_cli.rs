//! End-to-end tests of the geometry outputs of the `hdsgd` binary: `hdsgd run` with
//! `[geometry] observables` and `hdsgd hessian`.

use std::path::Path;
use std::process::Command;

mod common;

/// p = 2, p* = 1 with every geometry observable, two widths and a 60 × 60 Hessian.
fn small() -> String {
    common::small_quadratic("[40, 80]", 2, 30.0, 30)
        .set("", "name", "\"geo_small\"")
        .set("simulation", "base_seed", 3)
        .set("geometry", "observables", r#"["conserved", "selection", "escape"]"#)
        .set("geometry", "widths", "[1, 2]")
        .set("geometry", "hessian_n", 30)
        .text()
}

fn hdsgd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hdsgd"))
        .args(args)
        .output()
        .expect("binary runs")
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
    // The distance travelled can never beat the Procrustes minimum by more than rounding.
    let sel = std::fs::read_to_string(d.join("selection.csv")).unwrap();
    for line in sel.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (dist, dmin): (f64, f64) = (f[4].parse().unwrap(), f[5].parse().unwrap());
        let converged = f[3] == "true";
        if converged {
            // A converged run sits (nearly) on the manifold, so it is at least d_min away from W₀
            // up to its distance to the manifold, which is tiny at e_g < 1e-4.
            assert!(dist > 0.5 * dmin, "{line}");
        }
    }
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
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.a"));
    std::fs::write(&bad, small().replace("hessian_n = 30", "hessian_n = 5000")).unwrap();
    let o = hdsgd(&[
        "hessian",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("h3").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("geometry.hessian_n"));
}
