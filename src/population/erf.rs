//! erf activation g(z) = erf(z/√2), g'(z) = √(2/π) e^{−z²/2}: the Saad–Solla integrals
//! (theory.md §4; D. Saad, S. Solla, Phys. Rev. E 52, 4225 (1995); S. Goldt et al., NeurIPS 2019,
//! arXiv:1906.08632, appendix).
//!
//! Each integral is an average over jointly Gaussian arguments (u, w, …) with zero mean; it is a
//! function of their covariance matrix alone, passed as a small fixed-size array `cov` whose entry
//! `cov[a][b]` is the covariance of arguments a and b (indices 0-based here, 1-based in the formulas).
//! Arguments may coincide: then the covariance matrix simply has equal rows (e.g. I3(λ_i, λ_i, λ_i)
//! has all nine entries equal to C_ii); [`sub_covariance`] builds it from C and the argument indices.
//!
//! With c = (−a, v) over z = (λ, ν), r = Σ_m c_m g(z_m) + √Δ ξ and δ_i = a_i g'(λ_i) r:
//! * E[δ_i z_j] = a_i Σ_m c_m I3(λ_i, z_j, z_m),
//! * E[δ_i δ_j] = a_i a_j (Σ_{m,l} c_m c_l I4(λ_i, λ_j, z_m, z_l) + Δ J2(λ_i, λ_j)),
//! * e_g = ½ Σ_{m,l} c_m c_l I2(z_m, z_l).

use super::Moments;
use crate::model::Model;
use nalgebra::DMatrix;
use std::f64::consts::PI;

/// The covariance matrix of the arguments (z_{idx[0]}, …, z_{idx[K−1]}) of an integral, read off
/// the Gram matrix C: `cov[a][b] = C[idx[a], idx[b]]` (repeated indices give repeated rows).
///
/// ```
/// use hdsgd::population::erf::sub_covariance;
/// use nalgebra::DMatrix;
/// let c = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
/// assert_eq!(sub_covariance(&c, [0, 0, 1]), [[2.0, 2.0, 0.5], [2.0, 2.0, 0.5], [0.5, 0.5, 1.0]]);
/// ```
pub fn sub_covariance<const K: usize>(c: &DMatrix<f64>, idx: [usize; K]) -> [[f64; K]; K] {
    let mut cov = [[0.0; K]; K];
    for (a, row) in cov.iter_mut().enumerate() {
        for (b, x) in row.iter_mut().enumerate() {
            *x = c[(idx[a], idx[b])];
        }
    }
    cov
}

/// arcsin with its argument clamped to [−1, 1]: the exact argument is in [−1, 1] by Cauchy–Schwarz,
/// but rounding can push it out when two arguments are (nearly) perfectly correlated.
#[inline]
fn asin_clamped(x: f64) -> f64 {
    x.clamp(-1.0, 1.0).asin()
}

/// I2(u, w) = E[g(u) g(w)] = (2/π) arcsin( C12 / √((1 + C11)(1 + C22)) ).
///
/// Saad & Solla (1995), eq. (8); Goldt et al. (2019). For u = w with unit variance it is
/// (2/π) arcsin(1/2) = 1/3:
/// ```
/// use hdsgd::population::erf::i2;
/// assert!((i2(&[[1.0, 1.0], [1.0, 1.0]]) - 1.0 / 3.0).abs() < 1e-15);
/// ```
pub fn i2(cov: &[[f64; 2]; 2]) -> f64 {
    let [[c11, c12], [_, c22]] = *cov;
    2.0 / PI * asin_clamped(c12 / ((1.0 + c11) * (1.0 + c22)).sqrt())
}

/// I3(u, w, s) = E[g'(u) w g(s)] = (2/π) (C23 (1 + C11) − C12 C13) / ((1 + C11) √Λ3),
/// Λ3 = (1 + C11)(1 + C33) − C13².
///
/// Saad & Solla (1995), appendix; Goldt et al. (2019). (C22 does not enter: w appears linearly.)
/// ```
/// use hdsgd::population::erf::i3;
/// // u independent of (w, s): E[g'(u)] E[w g(s)] = (1/√2)·(2/π)/√2·C23 = C23/π at unit variances.
/// let cov = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.3], [0.0, 0.3, 1.0]];
/// assert!((i3(&cov) - 0.3 / std::f64::consts::PI).abs() < 1e-15);
/// ```
pub fn i3(cov: &[[f64; 3]; 3]) -> f64 {
    let [[c11, c12, c13], [_, _, c23], [_, _, c33]] = *cov;
    let k11 = 1.0 + c11;
    let lambda3 = k11 * (1.0 + c33) - c13 * c13;
    2.0 / PI * (c23 * k11 - c12 * c13) / (k11 * lambda3.sqrt())
}

/// I4(u, w, s, t) = E[g'(u) g'(w) g(s) g(t)] = (4/π²) Λ4^{−1/2} arcsin( Λ0 / √(Λ1 Λ2) ) with
/// * Λ4 = (1 + C11)(1 + C22) − C12²,
/// * Λ0 = Λ4 C34 − C23 C24 (1 + C11) − C13 C14 (1 + C22) + C12 C13 C24 + C12 C14 C23,
/// * Λ1 = Λ4 (1 + C33) − C23² (1 + C11) − C13² (1 + C22) + 2 C12 C13 C23,
/// * Λ2 = Λ4 (1 + C44) − C24² (1 + C11) − C14² (1 + C22) + 2 C12 C14 C24.
///
/// Saad & Solla (1995), appendix; Goldt et al. (2019).
/// ```
/// use hdsgd::population::erf::{i2, i4, j2};
/// // (u, w) independent of (s, t): I4 = J2(u, w) · I2(s, t).
/// let cov = [[1.0, 0.2, 0.0, 0.0], [0.2, 0.5, 0.0, 0.0], [0.0, 0.0, 1.5, 0.4], [0.0, 0.0, 0.4, 0.8]];
/// let prod = j2(&[[1.0, 0.2], [0.2, 0.5]]) * i2(&[[1.5, 0.4], [0.4, 0.8]]);
/// assert!((i4(&cov) - prod).abs() < 1e-15);
/// ```
pub fn i4(cov: &[[f64; 4]; 4]) -> f64 {
    let [[c11, c12, c13, c14], [_, c22, c23, c24], [_, _, c33, c34], [_, _, _, c44]] = *cov;
    let (k11, k22) = (1.0 + c11, 1.0 + c22);
    let lambda4 = k11 * k22 - c12 * c12;
    let lambda0 = lambda4 * c34 - c23 * c24 * k11 - c13 * c14 * k22 + c12 * c13 * c24 + c12 * c14 * c23;
    let lambda1 = lambda4 * (1.0 + c33) - c23 * c23 * k11 - c13 * c13 * k22 + 2.0 * c12 * c13 * c23;
    let lambda2 = lambda4 * (1.0 + c44) - c24 * c24 * k11 - c14 * c14 * k22 + 2.0 * c12 * c14 * c24;
    4.0 / (PI * PI) / lambda4.sqrt() * asin_clamped(lambda0 / (lambda1 * lambda2).sqrt())
}

/// J2(u, w) = E[g'(u) g'(w)] = (2/π) ((1 + C11)(1 + C22) − C12²)^{−1/2}.
///
/// Saad & Solla (1995); Goldt et al. (2019). It carries the label noise into E[δδᵀ].
/// ```
/// use hdsgd::population::erf::j2;
/// // Zero variance: g'(0)² = 2/π.
/// assert!((j2(&[[0.0, 0.0], [0.0, 0.0]]) - 2.0 / std::f64::consts::PI).abs() < 1e-15);
/// ```
pub fn j2(cov: &[[f64; 2]; 2]) -> f64 {
    let [[c11, c12], [_, c22]] = *cov;
    2.0 / PI / ((1.0 + c11) * (1.0 + c22) - c12 * c12).sqrt()
}

/// e_g = ½ Σ_{m,l} c_m c_l I2(z_m, z_l), with coef = c = (−a, v) and C the Gram matrix of z.
///
/// ```
/// use hdsgd::population::erf::population_error;
/// use nalgebra::DMatrix;
/// // p = p* = 1, a = v = 1, student = teacher (Q = M = P = 1): zero error.
/// let c = DMatrix::from_element(2, 2, 1.0);
/// assert!(population_error(&[-1.0, 1.0], &c).abs() < 1e-15);
/// ```
pub fn population_error(coef: &[f64], c: &DMatrix<f64>) -> f64 {
    let d = coef.len();
    let mut sum = 0.0;
    // I2 is symmetric: off-diagonal pairs counted twice.
    for m in 0..d {
        sum += coef[m] * coef[m] * i2(&sub_covariance(c, [m, m]));
        for l in 0..m {
            sum += 2.0 * coef[m] * coef[l] * i2(&sub_covariance(c, [m, l]));
        }
    }
    0.5 * sum
}

/// The ODE moments for erf (module docs): E[δλᵀ], E[δνᵀ], E[δδᵀ].
///
/// This runs inside the ODE right-hand side, so it works on C directly without building the
/// per-integral covariance arrays: for E[δδᵀ] the quantities of I4 that depend only on (i, j)
/// (Λ4) or on (i, j, m) (Λ1, Λ2) are computed once per pair and reused over the (m, l) sum, and the
/// symmetries E[δ_i δ_j] = E[δ_j δ_i] and I4(…, z_m, z_l) = I4(…, z_l, z_m) halve the work twice.
/// Cost O(p (p+p*)²) for I3 and O(p² (p+p*)²/4) for I4; one scratch vector of length p + p*.
/// Must agree with the plain sums over [`i3`], [`i4`], [`j2`] (tested to 1e-13).
pub fn moments(model: &Model, c: &DMatrix<f64>) -> Moments {
    let (p, k) = (model.p(), model.p_star());
    let d = p + k;
    let coef = model.signed_coefficients();
    let a = &model.a;
    let dz = delta_z(model, c);

    // E[δ_i δ_j] = a_i a_j (Σ_{m,l} c_m c_l I4(λ_i, λ_j, z_m, z_l) + Δ J2(λ_i, λ_j)).
    let mut dd = DMatrix::zeros(p, p);
    let mut lam_m = vec![0.0; d];
    for i in 0..p {
        let k11 = 1.0 + c[(i, i)];
        for j in i..p {
            let k22 = 1.0 + c[(j, j)];
            let c12 = c[(i, j)];
            let lambda4 = k11 * k22 - c12 * c12;
            // Λ1 of I4(λ_i, λ_j, z_m, ·) for every m (Λ2 is the same expression at l).
            for (m, lm) in lam_m.iter_mut().enumerate() {
                let (c13, c23) = (c[(i, m)], c[(j, m)]);
                *lm = lambda4 * (1.0 + c[(m, m)]) - c23 * c23 * k11 - c13 * c13 * k22 + 2.0 * c12 * c13 * c23;
            }
            let mut sum = 0.0;
            for m in 0..d {
                let (c13, c23) = (c[(i, m)], c[(j, m)]);
                for l in 0..=m {
                    let (c14, c24) = (c[(i, l)], c[(j, l)]);
                    let lambda0 =
                        lambda4 * c[(m, l)] - c23 * c24 * k11 - c13 * c14 * k22 + c12 * c13 * c24 + c12 * c14 * c23;
                    let term = coef[m] * coef[l] * asin_clamped(lambda0 / (lam_m[m] * lam_m[l]).sqrt());
                    sum += if l == m { term } else { 2.0 * term };
                }
            }
            let noise = model.noise * 2.0 / PI / lambda4.sqrt();
            let v = a[i] * a[j] * (4.0 / (PI * PI) / lambda4.sqrt() * sum + noise);
            dd[(i, j)] = v;
            dd[(j, i)] = v;
        }
    }

    Moments {
        delta_lambda: dz.columns(0, p).into_owned(),
        delta_nu: dz.columns(p, k).into_owned(),
        delta_delta: dd,
    }
}

/// E[δ_i z_j] = a_i Σ_m c_m I3(λ_i, z_j, z_m) (p×(p+p*)), in O(p (p+p*)²).
fn delta_z(model: &Model, c: &DMatrix<f64>) -> DMatrix<f64> {
    let (p, d) = (model.p(), model.p() + model.p_star());
    let coef = model.signed_coefficients();
    let a = &model.a;
    let mut dz = DMatrix::zeros(p, d);
    for i in 0..p {
        let k11 = 1.0 + c[(i, i)];
        for m in 0..d {
            let c13 = c[(i, m)];
            let lambda3 = k11 * (1.0 + c[(m, m)]) - c13 * c13;
            let pre = a[i] * coef[m] * 2.0 / PI / (k11 * lambda3.sqrt());
            for j in 0..d {
                dz[(i, j)] += pre * (c[(j, m)] * k11 - c[(i, j)] * c13);
            }
        }
    }
    dz
}

/// The first-order moments E[δλᵀ], E[δνᵀ] alone (E[δδᵀ] left at zero), for the ODEs that drop the
/// η² term (gradient flow): O(p (p+p*)²) instead of the O(p² (p+p*)²) of the I4 sum of [`moments`].
pub fn first_order_moments(model: &Model, c: &DMatrix<f64>) -> Moments {
    let (p, k) = (model.p(), model.p_star());
    let dz = delta_z(model, c);
    Moments {
        delta_lambda: dz.columns(0, p).into_owned(),
        delta_nu: dz.columns(p, k).into_owned(),
        delta_delta: DMatrix::zeros(p, p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::population::monte_carlo::{assert_closed_forms_match, random_spd};
    use rand::{RngExt, SeedableRng};
    use rand_distr::StandardNormal;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The moments written as plain sums of the documented integrals, each with its covariance
    /// taken from C for every argument pair (the reference the optimised [`moments`] must match).
    fn moments_by_definition(model: &Model, c: &DMatrix<f64>) -> Moments {
        let (p, k) = (model.p(), model.p_star());
        let d = p + k;
        let coef = model.signed_coefficients();
        let a = &model.a;
        let dz = DMatrix::from_fn(p, d, |i, j| {
            a[i] * (0..d).map(|m| coef[m] * i3(&sub_covariance(c, [i, j, m]))).sum::<f64>()
        });
        let dd = DMatrix::from_fn(p, p, |i, j| {
            let mut s = 0.0;
            for m in 0..d {
                for l in 0..d {
                    s += coef[m] * coef[l] * i4(&sub_covariance(c, [i, j, m, l]));
                }
            }
            a[i] * a[j] * (s + model.noise * j2(&sub_covariance(c, [i, j])))
        });
        Moments {
            delta_lambda: dz.columns(0, p).into_owned(),
            delta_nu: dz.columns(p, k).into_owned(),
            delta_delta: dd,
        }
    }

    fn erf_model(p: usize, k: usize, noise: f64, ones: bool) -> Model {
        let (a, v): (Vec<f64>, Vec<f64>) = if ones {
            (vec![1.0; p], vec![1.0; k])
        } else {
            (
                (0..p).map(|i| 0.6 - 0.25 * i as f64).collect(),
                (0..k).map(|i| 1.0 + 0.3 * i as f64).collect(),
            )
        };
        Model::new(Activation::Erf, a, v, noise)
    }

    /// Monte-Carlo mean and standard error of f(z), z ~ N(0, cov), for the single-integral tests.
    fn mc<const K: usize>(cov: &[[f64; K]; K], samples: usize, seed: u64, f: impl Fn(&[f64; K]) -> f64) -> (f64, f64) {
        let cm = DMatrix::from_fn(K, K, |a, b| cov[a][b]);
        // Repeated arguments make cov singular (no Cholesky factor): z = U diag(√λ) g from the
        // eigen-decomposition handles the positive semi-definite case exactly.
        let eig = cm.symmetric_eigen();
        let l = DMatrix::from_fn(K, K, |a, b| {
            eig.eigenvectors[(a, b)] * eig.eigenvalues[b].max(0.0).sqrt()
        });
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let (mut s, mut s2) = (0.0, 0.0);
        let mut z = [0.0; K];
        let mut u = [0.0; K];
        for _ in 0..samples {
            for x in u.iter_mut() {
                *x = rng.sample(StandardNormal);
            }
            for (a, za) in z.iter_mut().enumerate() {
                *za = (0..K).map(|b| l[(a, b)] * u[b]).sum();
            }
            let x = f(&z);
            s += x;
            s2 += x * x;
        }
        let n = samples as f64;
        let mean = s / n;
        (mean, ((s2 / n - mean * mean).max(0.0) / (n - 1.0)).sqrt())
    }

    fn g(z: f64) -> f64 {
        Activation::Erf.g(z)
    }
    fn dg(z: f64) -> f64 {
        Activation::Erf.dg(z)
    }

    /// Exact values: I2(u, u) at unit variance is (2/π) arcsin(1/2) = 1/3; E[g(u)²] → 1 as
    /// var → ∞; the integrals vanish when odd in one argument independent of the rest.
    #[test]
    fn exact_identities() {
        assert!((i2(&[[1.0, 1.0], [1.0, 1.0]]) - 1.0 / 3.0).abs() < 1e-15);
        assert!((i2(&[[1e12, 1e12], [1e12, 1e12]]) - 1.0).abs() < 1e-6);
        assert_eq!(i2(&[[1.0, 0.0], [0.0, 2.0]]), 0.0);
        // I3 with s independent of (u, w): E[g(s)] = 0.
        assert_eq!(i3(&[[1.0, 0.4, 0.0], [0.4, 1.0, 0.0], [0.0, 0.0, 1.0]]), 0.0);
        // I3(u, u, u) at variance q: E[g'(u) u g(u)] = (2/π) q / ((1+q)√(1+2q)).
        let q = 0.7;
        let expect = 2.0 / PI * q / ((1.0 + q) * (1.0 + 2.0 * q).sqrt());
        assert!((i3(&[[q; 3]; 3]) - expect).abs() < 1e-15);
        // J2(u, u) at variance q: E[g'(u)²] = (2/π)/√(1 + 2q).
        assert!((j2(&[[q; 2]; 2]) - 2.0 / PI / (1.0 + 2.0 * q).sqrt()).abs() < 1e-15);
        // Small-variance (linear) limit: g(z) ≈ √(2/π) z, g' ≈ √(2/π), so
        // I2 ≈ (2/π) C12, I3 ≈ (2/π) C23, I4 ≈ (4/π²) C34, up to O(C²).
        let e = 1e-6;
        let cov = [
            [e, 0.3 * e, 0.2 * e, -0.1 * e],
            [0.3 * e, e, 0.5 * e, 0.1 * e],
            [0.2 * e, 0.5 * e, e, 0.4 * e],
            [-0.1 * e, 0.1 * e, 0.4 * e, e],
        ];
        assert!((i4(&cov) / (4.0 / (PI * PI) * 0.4 * e) - 1.0).abs() < 1e-5);
        let cov3 = [[e, 0.3 * e, 0.2 * e], [0.3 * e, e, 0.5 * e], [0.2 * e, 0.5 * e, e]];
        assert!((i3(&cov3) / (2.0 / PI * 0.5 * e) - 1.0).abs() < 1e-5);
        // Perfectly correlated arguments (the arcsin argument at its clamp): I4(u,u,u,u) at unit
        // variance is the one-dimensional E[g'(u)² g(u)²], u ~ N(0, 1), here by Simpson's rule on
        // [−12, 12] (error ≪ 1e-12); and just off the singular point the value is continuous.
        let quad = {
            let (a, b, m) = (-12.0f64, 12.0f64, 24_000usize);
            let h = (b - a) / m as f64;
            let f = |u: f64| dg(u).powi(2) * g(u).powi(2) * (-u * u / 2.0).exp() / (2.0 * PI).sqrt();
            let inner: f64 = (1..m)
                .map(|k| f(a + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 })
                .sum();
            (f(a) + f(b) + inner) * h / 3.0
        };
        let exact = i4(&[[1.0; 4]; 4]);
        assert!((exact - quad).abs() < 1e-12, "I4(u,u,u,u) = {exact}, quadrature {quad}");
        let near = {
            let d = 1e-9;
            let mut c = [[1.0 - d; 4]; 4];
            for (i, row) in c.iter_mut().enumerate() {
                row[i] = 1.0;
            }
            i4(&c)
        };
        assert!((near - exact).abs() < 1e-6, "{near} vs {exact}");
    }

    /// Each integral against Monte Carlo at random positive-definite covariances and at repeated
    /// arguments (singular covariances). 200k samples; tolerance 5 standard errors per value
    /// (about 40 values in all, so a false alarm has probability < 40·6e-7 ≈ 2e-5).
    #[test]
    fn integrals_match_monte_carlo() {
        const S: usize = 200_000;
        const K: f64 = 5.0;
        let check = |name: &str, closed: f64, (m, se): (f64, f64)| {
            assert!(
                (closed - m).abs() <= K * se + 1e-12,
                "{name}: closed {closed} vs Monte Carlo {m} ± {se}"
            );
        };
        for case in 0..3u64 {
            let c = random_spd(4, 100 + case);
            let seed = 1000 * (case + 1);
            let cov2 = sub_covariance(&c, [0, 1]);
            check("I2", i2(&cov2), mc(&cov2, S, seed, |z| g(z[0]) * g(z[1])));
            check("J2", j2(&cov2), mc(&cov2, S, seed + 1, |z| dg(z[0]) * dg(z[1])));
            let cov3 = sub_covariance(&c, [0, 1, 2]);
            check("I3", i3(&cov3), mc(&cov3, S, seed + 2, |z| dg(z[0]) * z[1] * g(z[2])));
            let cov4 = sub_covariance(&c, [0, 1, 2, 3]);
            check(
                "I4",
                i4(&cov4),
                mc(&cov4, S, seed + 3, |z| dg(z[0]) * dg(z[1]) * g(z[2]) * g(z[3])),
            );
            // Repeated arguments: I2(u,u), I3(u,u,u), I3(u,w,u), I3(u,u,s), I4(u,u,u,u), I4(u,w,u,w),
            // I4(u,u,s,s), I4(u,w,s,s), J2(u,u).
            let c11 = sub_covariance(&c, [2, 2]);
            check("I2(u,u)", i2(&c11), mc(&c11, S, seed + 4, |z| g(z[0]) * g(z[1])));
            check("J2(u,u)", j2(&c11), mc(&c11, S, seed + 5, |z| dg(z[0]) * dg(z[1])));
            for (tag, idx) in [
                ("I3(u,u,u)", [1, 1, 1]),
                ("I3(u,w,u)", [0, 3, 0]),
                ("I3(u,u,s)", [2, 2, 3]),
            ] {
                let cv = sub_covariance(&c, idx);
                check(tag, i3(&cv), mc(&cv, S, seed + 6, |z| dg(z[0]) * z[1] * g(z[2])));
            }
            for (tag, idx) in [
                ("I4(u,u,u,u)", [0, 0, 0, 0]),
                ("I4(u,w,u,w)", [1, 3, 1, 3]),
                ("I4(u,u,s,s)", [2, 2, 0, 0]),
                ("I4(u,w,s,s)", [0, 1, 3, 3]),
            ] {
                let cv = sub_covariance(&c, idx);
                check(
                    tag,
                    i4(&cv),
                    mc(&cv, S, seed + 7, |z| dg(z[0]) * dg(z[1]) * g(z[2]) * g(z[3])),
                );
            }
        }
    }

    /// The optimised [`moments`] equals the plain sums of the integrals to rounding, at random C,
    /// including p = 1 and p > p*, p < p*.
    #[test]
    fn moments_equal_sums_of_integrals() {
        for (case, (p, k, noise)) in [(1, 1, 0.0), (2, 2, 0.3), (3, 2, 0.1), (2, 4, 0.0), (5, 3, 1.0)]
            .into_iter()
            .enumerate()
        {
            let model = erf_model(p, k, noise, case % 2 == 0);
            let c = random_spd(p + k, 50 + case as u64);
            let fast = moments(&model, &c);
            let slow = moments_by_definition(&model, &c);
            // The gradient-flow shortcut is the same first-order computation, bit for bit.
            let first = first_order_moments(&model, &c);
            assert!(first.delta_lambda == fast.delta_lambda && first.delta_nu == fast.delta_nu);
            for (x, y) in [
                (&fast.delta_lambda, &slow.delta_lambda),
                (&fast.delta_nu, &slow.delta_nu),
                (&fast.delta_delta, &slow.delta_delta),
            ] {
                assert!((x - y).amax() < 1e-13, "case {case}: {x} vs {y}");
            }
        }
    }

    /// e_g and the moments against Monte Carlo of δ at random positive-definite C, several
    /// (p, p*, Δ) including p = p* = 2. 300k samples; tolerance 5 standard errors per entry (at most
    /// ~25 entries per case, 4 cases: false-alarm probability < 100·6e-7 ≈ 6e-5).
    #[test]
    fn closed_forms_match_monte_carlo() {
        for (case, (p, k, noise, ones)) in [
            (2, 2, 0.0, true),
            (2, 2, 0.5, false),
            (3, 1, 0.1, false),
            (1, 3, 0.0, true),
        ]
        .into_iter()
        .enumerate()
        {
            let model = erf_model(p, k, noise, ones);
            let c = random_spd(p + k, 21 + case as u64);
            assert_closed_forms_match(&model, &c, 300_000, 31 + case as u64, 5.0);
        }
    }

    /// A student identical to the teacher (singular C with equal rows) has zero error and zero
    /// mean gradient, without NaN.
    #[test]
    fn perfect_student_is_stationary() {
        let model = erf_model(2, 2, 0.0, true);
        let p = random_spd(2, 9);
        let c = DMatrix::from_fn(4, 4, |i, j| p[(i % 2, j % 2)]);
        assert!(population_error(&model.signed_coefficients(), &c).abs() < 1e-14);
        let m = moments(&model, &c);
        assert!(m.delta_lambda.amax() < 1e-14 && m.delta_nu.amax() < 1e-14);
        assert!(m.delta_delta.amax() < 1e-12, "{}", m.delta_delta);
    }
}
