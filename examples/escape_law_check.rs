//! The predicted escape-time law (analysis::escape_theory) against a finished escape study of the
//! quadratic network (p* = 1, a = 1/p, v = 1, σ₀ = 0.1, e_g rule with fraction ½, tolerance 0.05,
//! t_max = 40): predicted and measured mean and s.d., and the one-sample KS distance per N.
//!   cargo run --release --example escape_law_check -- P ETA RESULTS_DIR
//! e.g. `-- 1 0.15 results/escape_quadratic_chain_full` (docs/fluctuations.md).
use hdsgd::analysis::escape::EscapeRule;
use hdsgd::analysis::escape_theory::{escape_law, ks_distance, ks_p_value, EscapeLawOptions};
use hdsgd::analysis::stability::{analyse, PlateauOptions};
use hdsgd::init::{InitSpec, TeacherInit};
use hdsgd::model::{Activation, Model, Training};
use hdsgd::ode::OdeVariant;
use nalgebra::DMatrix;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (p, eta, dir) = (
        args[1].parse::<usize>().unwrap(),
        args[2].parse::<f64>().unwrap(),
        &args[3],
    );
    let model = Model::new(Activation::Quadratic, vec![1.0 / p as f64; p], vec![1.0], 0.0);
    let tr = Training {
        eta,
        weight_decay: 0.0,
        batch: 1,
    };
    let init = InitSpec::uninformed(TeacherInit::Orthonormal, 0.1);
    let pt = DMatrix::identity(1, 1);
    let st = analyse(&model, &tr, OdeVariant::Full, 0.1, &pt, &PlateauOptions::default()).unwrap();
    let rule = EscapeRule::EgFraction {
        eg_plateau: st.plateau.eg,
        fraction: 0.5,
        tolerance: 0.05,
    };
    let t0 = std::time::Instant::now();
    let law = escape_law(&model, &tr, &init, &pt, rule, &EscapeLawOptions::default()).unwrap();
    println!(
        "s_Z = {:.5} (initial {:.5}), mu = {:.5}, built in {:.1}s",
        law.z_variance,
        law.z_variance_initial,
        law.mu,
        t0.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(format!("{dir}/escape_times.csv")).unwrap();
    let mut by_n: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let t: f64 = if f[3] == "0" {
            f[2].parse().unwrap()
        } else {
            f64::INFINITY
        };
        by_n.entry(f[0].parse().unwrap()).or_default().push(t);
    }
    for (n, ts) in by_n {
        let pr = law.summary(n as f64);
        let fin: Vec<f64> = ts.iter().copied().filter(|t| t.is_finite()).collect();
        let m = fin.iter().sum::<f64>() / fin.len() as f64;
        let sd = (fin.iter().map(|t| (t - m).powi(2)).sum::<f64>() / (fin.len() - 1) as f64).sqrt();
        let d = ks_distance(&ts, 40.0, |t| law.cdf(n as f64, t));
        println!("N = {n}: measured mean {m:.3} sd {sd:.3} | predicted mean {:.3} sd {:.3} median {:.3} | KS {d:.4} p = {:.3e} (n = {})", pr.mean, pr.sd, pr.median, ks_p_value(d, ts.len()), ts.len());
    }
}
