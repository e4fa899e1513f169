//! An exact Gaussian moment engine: polynomials in independent standard normals, their means and
//! covariances in closed form (Isserlis/Wick), for the fluctuation matrix D of the quadratic and
//! linear networks ([`super::fluctuations`]).
//!
//! For z ~ N(0, C) write z = L u with L Lᵀ = C and u ~ N(0, I_d) ([`whiten`]); every polynomial in z
//! (and in an independent label-noise variable ξ, one more coordinate of u) is then a [`Poly`] in u.
//! Wick's theorem for independent coordinates is the product of the one-dimensional moments
//! E[u^n] = (n − 1)!! (n even, 0 for n odd), which gives [`Poly::mean`]. For second moments the
//! engine expands each polynomial in the orthogonal probabilists' Hermite basis,
//! u^n = Σ_j n!/(2^j j! (n − 2j)!) He_{n−2j}(u), where E[He_α He_β] = α! δ_αβ, so that
//! Cov[P, R] = Σ_{α ≠ 0} α! P̂_α R̂_α is one sparse dot product ([`Poly::hermite`], [`covariance`]).
//! Both are exact in exact arithmetic, at any degree; [`isserlis`] computes E[z_{i1}⋯z_{ik}] from
//! C directly (the sum over pairings), an independent reference for the tests.

use nalgebra::DMatrix;
use std::collections::BTreeMap;

/// Exponent vector of a monomial u^α = Π_k u_k^{α_k}.
type Exponents = Vec<u8>;

/// A polynomial in `dim` independent standard normal variables u_k (sparse, monomial basis).
#[derive(Debug, Clone, PartialEq)]
pub struct Poly {
    dim: usize,
    terms: BTreeMap<Exponents, f64>,
}

impl Poly {
    /// The zero polynomial in `dim` variables.
    pub fn zero(dim: usize) -> Self {
        Poly {
            dim,
            terms: BTreeMap::new(),
        }
    }

    /// The constant c.
    pub fn constant(dim: usize, c: f64) -> Self {
        let mut p = Poly::zero(dim);
        p.add_term(vec![0; dim], c);
        p
    }

    /// The linear form Σ_k coef_k u_k (dim = coef.len()).
    pub fn linear(coef: &[f64]) -> Self {
        let dim = coef.len();
        let mut p = Poly::zero(dim);
        for (k, &c) in coef.iter().enumerate() {
            let mut e = vec![0; dim];
            e[k] = 1;
            p.add_term(e, c);
        }
        p
    }

    /// Number of variables.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Total degree (0 for the zero polynomial).
    pub fn degree(&self) -> usize {
        self.terms
            .keys()
            .map(|e| e.iter().map(|&x| x as usize).sum())
            .max()
            .unwrap_or(0)
    }

    fn add_term(&mut self, e: Exponents, c: f64) {
        if c != 0.0 {
            *self.terms.entry(e).or_insert(0.0) += c;
        }
    }

    /// self + other.
    pub fn add(&self, other: &Poly) -> Poly {
        assert_eq!(self.dim, other.dim, "polynomials in different variables");
        let mut out = self.clone();
        for (e, &c) in &other.terms {
            out.add_term(e.clone(), c);
        }
        out
    }

    /// c·self.
    pub fn scale(&self, c: f64) -> Poly {
        Poly {
            dim: self.dim,
            terms: self.terms.iter().map(|(e, &x)| (e.clone(), c * x)).collect(),
        }
    }

    /// self·other.
    pub fn mul(&self, other: &Poly) -> Poly {
        assert_eq!(self.dim, other.dim, "polynomials in different variables");
        let mut out = Poly::zero(self.dim);
        for (ea, &ca) in &self.terms {
            for (eb, &cb) in &other.terms {
                let e: Exponents = ea.iter().zip(eb).map(|(a, b)| a + b).collect();
                out.add_term(e, ca * cb);
            }
        }
        out
    }

    /// E[P(u)] = Σ_α c_α Π_k (α_k − 1)!! (Wick for independent coordinates; odd powers vanish).
    pub fn mean(&self) -> f64 {
        self.terms
            .iter()
            .map(|(e, &c)| c * e.iter().map(|&n| normal_moment(n as usize)).product::<f64>())
            .sum()
    }

    /// Coefficients in the probabilists' Hermite basis He_α(u) = Π_k He_{α_k}(u_k).
    pub fn hermite(&self) -> BTreeMap<Exponents, f64> {
        let mut out: BTreeMap<Exponents, f64> = BTreeMap::new();
        for (e, &c) in &self.terms {
            // Product over coordinates of u^n = Σ_j n!/(2^j j!(n−2j)!) He_{n−2j}.
            let mut partial: Vec<(Exponents, f64)> = vec![(Vec::with_capacity(self.dim), c)];
            for &n in e {
                let n = n as usize;
                let mut next = Vec::with_capacity(partial.len() * (n / 2 + 1));
                for (pe, pc) in &partial {
                    for j in 0..=n / 2 {
                        let w = factorial(n) / (2f64.powi(j as i32) * factorial(j) * factorial(n - 2 * j));
                        let mut ne = pe.clone();
                        ne.push((n - 2 * j) as u8);
                        next.push((ne, pc * w));
                    }
                }
                partial = next;
            }
            for (he, hc) in partial {
                *out.entry(he).or_insert(0.0) += hc;
            }
        }
        out
    }
}

/// Cov[P, R] from Hermite coefficients: Σ_{α ≠ 0} α! P̂_α R̂_α (E[He_α He_β] = α! δ_αβ).
pub fn hermite_covariance(p: &BTreeMap<Exponents, f64>, r: &BTreeMap<Exponents, f64>) -> f64 {
    let (small, large) = if p.len() <= r.len() { (p, r) } else { (r, p) };
    small
        .iter()
        .filter(|(e, _)| e.iter().any(|&n| n > 0))
        .filter_map(|(e, &c)| {
            large
                .get(e)
                .map(|&d| c * d * e.iter().map(|&n| factorial(n as usize)).product::<f64>())
        })
        .sum()
}

/// Cov[P, R] for two polynomials in the same independent standard normals.
pub fn covariance(p: &Poly, r: &Poly) -> f64 {
    hermite_covariance(&p.hermite(), &r.hermite())
}

/// E[u^n] for u ~ N(0, 1): (n − 1)!! for even n, 0 for odd n.
fn normal_moment(n: usize) -> f64 {
    if n % 2 == 1 {
        0.0
    } else {
        (1..n).step_by(2).map(|k| k as f64).product()
    }
}

fn factorial(n: usize) -> f64 {
    (1..=n).map(|k| k as f64).product()
}

/// A square root L of a positive semi-definite C (L Lᵀ = C), by the symmetric eigendecomposition
/// (negative rounding-level eigenvalues clipped to 0), so that z = L u for u ~ N(0, I).
pub fn whiten(c: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = c.clone().symmetric_eigen();
    let d = c.nrows();
    DMatrix::from_fn(d, d, |i, j| {
        eig.eigenvectors[(i, j)] * eig.eigenvalues[j].max(0.0).sqrt()
    })
}

/// Isserlis' theorem: E[z_{i1} ⋯ z_{ik}] for z ~ N(0, C), the sum over all pairings of the
/// product of covariances (0 for odd k). Cost (k − 1)!!: a reference for small k (≤ 10).
///
/// ```
/// use hdsgd::population::gaussian::isserlis;
/// use nalgebra::DMatrix;
/// let c = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
/// // E[z0⁴] = 3 C00², E[z0² z1²] = C00 C11 + 2 C01².
/// assert_eq!(isserlis(&c, &[0, 0, 0, 0]), 12.0);
/// assert_eq!(isserlis(&c, &[0, 0, 1, 1]), 2.5);
/// ```
pub fn isserlis(c: &DMatrix<f64>, idx: &[usize]) -> f64 {
    match idx.len() {
        0 => 1.0,
        k if k % 2 == 1 => 0.0,
        _ => {
            let first = idx[0];
            let rest = &idx[1..];
            (0..rest.len())
                .map(|j| {
                    let others: Vec<usize> = rest
                        .iter()
                        .enumerate()
                        .filter(|&(m, _)| m != j)
                        .map(|(_, &x)| x)
                        .collect();
                    c[(first, rest[j])] * isserlis(c, &others)
                })
                .sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::monte_carlo::random_spd;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};
    use rand_distr::StandardNormal;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// z_i as polynomials in u for C = L Lᵀ.
    fn coordinates(c: &DMatrix<f64>) -> Vec<Poly> {
        let l = whiten(c);
        (0..c.nrows())
            .map(|i| Poly::linear(&l.row(i).iter().copied().collect::<Vec<_>>()))
            .collect()
    }

    fn product(z: &[Poly], idx: &[usize]) -> Poly {
        idx.iter()
            .fold(Poly::constant(z[0].dim(), 1.0), |acc, &i| acc.mul(&z[i]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The engine's mean of a product of coordinates equals Isserlis' sum over pairings at
        /// every degree ≤ 8, for random C and index lists: two exact computations, so the
        /// tolerance is rounding (relative 1e-10 of the sum of absolute pairing products).
        #[test]
        fn engine_mean_equals_isserlis(seed in 0u64..10_000, idx in proptest::collection::vec(0usize..4, 0..=8)) {
            let c = random_spd(4, seed);
            let z = coordinates(&c);
            let exact = isserlis(&c, &idx);
            let scale = isserlis(&c.abs(), &idx).max(1.0);
            let engine = product(&z, &idx).mean();
            prop_assert!((engine - exact).abs() <= 1e-10 * scale, "{engine} vs {exact}");
        }

        /// Cov[z^α, z^β] from the Hermite expansion equals E[z^{α+β}] − E[z^α]E[z^β] by Isserlis.
        #[test]
        fn hermite_covariance_equals_isserlis(seed in 0u64..10_000,
                a in proptest::collection::vec(0usize..3, 1..=4),
                b in proptest::collection::vec(0usize..3, 1..=4)) {
            let c = random_spd(3, seed);
            let z = coordinates(&c);
            let ab: Vec<usize> = a.iter().chain(&b).copied().collect();
            let exact = isserlis(&c, &ab) - isserlis(&c, &a) * isserlis(&c, &b);
            let scale = isserlis(&c.abs(), &ab).max(1.0);
            let engine = covariance(&product(&z, &a), &product(&z, &b));
            prop_assert!((engine - exact).abs() <= 1e-10 * scale, "{engine} vs {exact}");
        }
    }

    /// Isserlis itself against Monte Carlo (fixed seed, 10⁶ draws): every monomial of degree 4, 6
    /// and 8 in 3 correlated variables within 5 standard errors (a family of ~50 comparisons:
    /// false alarm < 1e-4).
    #[test]
    fn isserlis_matches_monte_carlo() {
        let c = random_spd(3, 5);
        let l = c.clone().cholesky().unwrap().l();
        let cases: Vec<Vec<usize>> = [
            vec![0, 0, 0, 0],
            vec![0, 1, 1, 2],
            vec![0, 0, 1, 1, 2, 2],
            vec![0, 1, 2, 2, 2, 2],
            vec![0, 0, 0, 0, 1, 1, 1, 1],
            vec![0, 1, 1, 1, 2, 2, 2, 2],
            vec![2, 2, 2, 2, 2, 2, 2, 2],
        ]
        .into();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
        let n = 1_000_000;
        let mut sums = vec![(0.0, 0.0); cases.len()];
        for _ in 0..n {
            let u: Vec<f64> = (0..3).map(|_| rng.sample(StandardNormal)).collect();
            let z: Vec<f64> = (0..3).map(|i| (0..=i).map(|j| l[(i, j)] * u[j]).sum()).collect();
            for (s, idx) in sums.iter_mut().zip(&cases) {
                let x: f64 = idx.iter().map(|&i| z[i]).product();
                s.0 += x;
                s.1 += x * x;
            }
        }
        for ((s, s2), idx) in sums.into_iter().zip(&cases) {
            let mean = s / n as f64;
            let se = ((s2 / n as f64 - mean * mean) / n as f64).sqrt();
            let exact = isserlis(&c, idx);
            assert!((mean - exact).abs() < 5.0 * se, "{idx:?}: MC {mean} ± {se} vs {exact}");
        }
    }

    #[test]
    fn hermite_of_monomials() {
        // u² = He2 + 1, u⁴ = He4 + 6 He2 + 3.
        let u = Poly::linear(&[1.0]);
        let h = u.mul(&u).mul(&u).mul(&u).hermite();
        assert_eq!(h[&vec![4u8]], 1.0);
        assert_eq!(h[&vec![2u8]], 6.0);
        assert_eq!(h[&vec![0u8]], 3.0);
        // Var(u²) = 2, Var(u⁴) = 105 − 9 = 96.
        let u2 = u.mul(&u);
        assert_eq!(covariance(&u2, &u2), 2.0);
        let u4 = u2.mul(&u2);
        assert_eq!(covariance(&u4, &u4), 96.0);
        assert_eq!(u4.degree(), 4);
    }
}
