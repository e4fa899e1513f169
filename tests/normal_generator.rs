//! Statistics of the fast N(0, 1) generator (`hdsgd::rng::FastNormal`) with fixed seeds.
//!
//! Every tolerance is a stated multiple of the standard error predicted for iid N(0, 1) numbers;
//! with 5σ per check and fewer than ten checks the false-alarm probability is below 1e-5 (Bonferroni).

use hdsgd::isa::Isa;
use hdsgd::model::erf;
use hdsgd::rng::FastNormal;

const N: usize = 1 << 22;

fn sample(seed: u64) -> Vec<f64> {
    let mut g = FastNormal::new(seed);
    let mut x = vec![0.0; N];
    g.fill(&mut x);
    x
}

/// Mean, variance, third and fourth moments: E x = 0, E x² = 1, E x³ = 0, E x⁴ = 3, with
/// Var x = 1, Var x² = 2, Var x³ = 15, Var x⁴ = 96, so the standard error of each sample moment is
/// √(Var/n). Each must be within 5 standard errors.
#[test]
fn moments_within_five_standard_errors() {
    let x = sample(20260101);
    let n = x.len() as f64;
    let m = |k: i32| x.iter().map(|v| v.powi(k)).sum::<f64>() / n;
    for (k, expect, var) in [(1, 0.0, 1.0), (2, 1.0, 2.0), (3, 0.0, 15.0), (4, 3.0, 96.0)] {
        let se = (var / n).sqrt();
        let got = m(k);
        assert!(
            (got - expect).abs() < 5.0 * se,
            "moment {k}: {got} vs {expect} (se {se})"
        );
    }
    // Tails (where Box–Muller's log matters): P(|x| > 4) = erfc(4/√2) = 6.334e-5; the count is
    // binomial, within 5 standard deviations of n·P.
    let p4 = 1.0 - erf(4.0 / std::f64::consts::SQRT_2);
    let count = x.iter().filter(|v| v.abs() > 4.0).count() as f64;
    let sd = (n * p4 * (1.0 - p4)).sqrt();
    assert!((count - n * p4).abs() < 5.0 * sd, "tail count {count} vs {}", n * p4);
}

/// Kolmogorov–Smirnov test against Φ at significance α = 1e-3: the asymptotic critical value of
/// √n·D is √(−ln(α/2)/2) = 1.9495 (n = 4·10⁶, so the asymptotic form is accurate).
#[test]
fn kolmogorov_smirnov_against_phi() {
    let mut x = sample(777);
    x.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = x.len() as f64;
    let phi = |z: f64| 0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2));
    let mut d: f64 = 0.0;
    for (i, &z) in x.iter().enumerate() {
        let f = phi(z);
        d = d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n);
    }
    let crit = (-(1e-3f64 / 2.0).ln() / 2.0).sqrt();
    assert!(n.sqrt() * d < crit, "KS statistic √n·D = {} ≥ {crit}", n.sqrt() * d);
}

/// Independence inside and across blocks: the Box–Muller partners (offset 4), neighbouring lanes
/// (offset 1) and successive blocks (offset 16) have E[x_i x_j] = 0 (Var 1) and
/// E[x_i² x_j²] = 1 (Var 8) when independent; each within 5 standard errors.
#[test]
fn pairs_are_uncorrelated() {
    let x = sample(4242);
    for lag in [1usize, 4, 8, 16] {
        let m = x.len() - lag;
        let n = m as f64;
        let c1 = (0..m).map(|i| x[i] * x[i + lag]).sum::<f64>() / n;
        let c2 = (0..m).map(|i| x[i] * x[i] * x[i + lag] * x[i + lag]).sum::<f64>() / n;
        assert!(c1.abs() < 5.0 / n.sqrt(), "lag {lag}: E[xy] = {c1}");
        assert!((c2 - 1.0).abs() < 5.0 * (8.0 / n).sqrt(), "lag {lag}: E[x²y²] = {c2}");
    }
}

/// The detected instruction set and the portable one give the same stream (bit-identical).
#[test]
fn stream_does_not_depend_on_instruction_set() {
    let mut a = FastNormal::with_isa(9, Isa::detect());
    let mut b = FastNormal::with_isa(9, Isa::Portable);
    let (mut x, mut y) = (vec![0.0; 1 << 16], vec![0.0; 1 << 16]);
    a.fill(&mut x);
    b.fill(&mut y);
    assert!(x.iter().zip(&y).all(|(u, v)| u.to_bits() == v.to_bits()));
}
