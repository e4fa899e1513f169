//! Two-sample Kolmogorov–Smirnov tests for the statistical equivalence tests (chain ≡ direct in law).

/// Kolmogorov's survival function Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} e^{−2j²λ²} (the Jacobi-theta form
/// √(2π)/λ Σ e^{−(2j−1)²π²/(8λ²)} for 1 − Q at small λ, where the first series converges slowly).
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1.0 {
        if lambda <= 0.0 {
            return 1.0;
        }
        let s: f64 = (1..=20)
            .map(|j| {
                let m = (2 * j - 1) as f64;
                (-m * m * std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda)).exp()
            })
            .sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s).clamp(0.0, 1.0)
    } else {
        let s: f64 = (1..=100)
            .map(|j| {
                let sign = if j % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * (j * j) as f64 * lambda * lambda).exp()
            })
            .sum();
        (2.0 * s).clamp(0.0, 1.0)
    }
}

/// Two-sample KS statistic D = sup |F_a − F_b| and its asymptotic p-value with Stephens'
/// correction, λ = (√n_e + 0.12 + 0.11/√n_e) D, n_e = n m/(n + m) (Numerical Recipes §14.3).
pub fn ks_two_sample(a: &mut [f64], b: &mut [f64]) -> (f64, f64) {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len(), b.len());
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < na && j < nb {
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < na && a[i] <= x {
            i += 1;
        }
        while j < nb && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na as f64 - j as f64 / nb as f64).abs());
    }
    let ne = (na * nb) as f64 / (na + nb) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    (d, kolmogorov_q(lambda))
}
