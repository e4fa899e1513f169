//! The square-root factor of the Gram matrix and its exact SGD update (theory.md §7).
//!
//! The d = p* + p weight rows (teacher rows first, then student rows) live in an r̃-dimensional
//! subspace of R^N. With an orthonormal basis U (N × r̃) of a subspace containing every row, write
//! the rows as √N F Uᵀ: the d × r̃ coordinate matrix F is the *factor*, and C = F Fᵀ is the Gram matrix
//! (theory.md §3, rows reordered). F is kept lower trapezoidal: row k has zeros beyond column k
//! (teacher rows) and beyond column r_t + i (student i), r_t = rank of the teacher block.
//!
//! **One step.** A fresh input is x = U g + ξ with g ~ N(0, I_r̃) and ξ isotropic in the
//! (N − r̃)-dimensional complement, independent of g. For B inputs, Gram–Schmidt of ξ_1..ξ_B gives
//! an orthonormal e_1..e_B' (B' = min(B, N − r̃)) with ξ_b = Σ_j A_bj e_j and A the Bartlett factor
//! (A_jj² ~ χ²_{N−r̃−j}, A_bj ~ N(0, 1) for b > j, all independent; theory.md §7). In the basis
//! (U, e) the SGD step w_i ← κ w_i + (η/(B√N)) Σ_b δ_i^b x_b (κ = 1 − ηℓ₂/N) is the *linear* map
//!
//!   F_i ← [κ F_i + Σ_b c_ib g_b,  Σ_b c_ib A_b],   c_ib = η δ_i^b /(B N),
//!
//! on the student rows, the teacher rows being unchanged (and zero on the new columns). This is the
//! exact finite-N update: F' F'ᵀ is the Q', M' of theory.md §7, ‖x_b‖²/N and the cross terms
//! x_b·x_c = (ΓΓᵀ + AAᵀ)_bc included.
//!
//! **Compression.** The new factor has r̃ + B' columns but rank ≤ d. An orthogonal change of the
//! basis (Householder reflections from the right on the student block, an LQ factorisation) brings
//! it back to lower-trapezoidal form with exact zeros beyond column r_t + p, which are dropped: the
//! dropped directions carry no row, so they rejoin the orthogonal complement. The new basis is a
//! function of the past only, so the next input is again N(0, I) in it: the chain is exact.
//!
//! **Why a factor.** C = F Fᵀ is symmetric positive semi-definite by construction, whatever the
//! rounding, and the update uses orthogonal transformations only (backward stable): no
//! re-factorisation, no loss of definiteness over 10⁹ steps. P is never touched (teacher rows are
//! not updated), so it stays exactly at its initial value.
//!
//! **Singular C.** r̃ only has to be the dimension of *a* subspace containing the rows, chosen from
//! the past: counting a direction the rows do not use is exact (that direction just moves from the
//! complement into g). So a zero student (σ₀ = 0) starts with r̃ = r_t and grows by B' per step up
//! to d; no numerical rank decision is ever taken.

use crate::init::{InitSpec, TeacherInit};
use crate::rng::{standard_normal, SimRng};
use rand_distr::{ChiSquared, Distribution};

/// A χ² sample with `dof` degrees of freedom (dof ≤ 0 gives 0: an empty complement).
#[inline]
pub fn chi_squared(rng: &mut SimRng, dof: usize) -> f64 {
    match dof {
        0 => 0.0,
        1 => {
            let z = standard_normal(rng);
            z * z
        }
        k => ChiSquared::new(k as f64).expect("dof > 0").sample(rng),
    }
}

/// Precomputed χ² samplers for the degrees of freedom N − r̃ − j (r̃ ≤ d, j < B) a run can need,
/// so that the step loop does not rebuild them.
#[derive(Debug, Clone)]
pub struct ChiTable {
    n: usize,
    /// dist[dof_offset] samples χ²_{n − dof_offset}, for dof offsets 0..len.
    dist: Vec<Option<ChiSquared<f64>>>,
}

impl ChiTable {
    /// Samplers for χ²_{n−o}, o = 0..max_offset (those with n − o ≥ 2; 1 and 0 are special-cased).
    pub fn new(n: usize, max_offset: usize) -> Self {
        let dist = (0..=max_offset)
            .map(|o| {
                let k = n.saturating_sub(o);
                (k >= 2).then(|| ChiSquared::new(k as f64).expect("dof ≥ 2"))
            })
            .collect();
        ChiTable { n, dist }
    }

    /// A χ²_k sample, k = n − offset ≥ 0.
    #[inline]
    pub fn sample(&self, rng: &mut SimRng, offset: usize) -> f64 {
        match self.dist.get(offset) {
            Some(Some(d)) => d.sample(rng),
            _ => chi_squared(rng, self.n.saturating_sub(offset)),
        }
    }
}

/// Lower-trapezoidal Bartlett factor of `rows` iid N(0, I_m) vectors: `out` (rows × stride,
/// row-major) gets T with T Tᵀ ~ Wishart(m, I_rows), T_jj = √χ²_{m−j}, T_bj ~ N(0, 1) for b > j,
/// for columns j < min(rows, m); returns that number of columns.
///
/// `dof_offset` is N − m, the offset into `chi` (whose samplers are for χ²_{N−o}).
#[inline(always)]
pub fn bartlett(
    rng: &mut SimRng,
    chi: &ChiTable,
    dof_offset: usize,
    rows: usize,
    stride: usize,
    out: &mut [f64],
) -> usize {
    let m = chi.n.saturating_sub(dof_offset);
    let cols = rows.min(m);
    for b in 0..rows {
        let row = &mut out[b * stride..b * stride + cols];
        for (j, t) in row.iter_mut().enumerate() {
            *t = match b.cmp(&j) {
                std::cmp::Ordering::Greater => standard_normal(rng),
                std::cmp::Ordering::Equal => chi.sample(rng, dof_offset + j).sqrt(),
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    cols
}

/// The factor F of C = F Fᵀ (see the module documentation), rows ordered teacher then student.
#[derive(Debug, Clone, PartialEq)]
pub struct GramFactor {
    /// Teacher width p*.
    pub p_star: usize,
    /// Student width p.
    pub p: usize,
    /// Input dimension N.
    pub n: usize,
    /// Columns used by the teacher rows (their rank, min(p*, N)).
    pub rt: usize,
    /// r̃: columns currently in use (dimension of the basis), ≤ min(d, N).
    pub width: usize,
    /// Row stride of `f`: d + B, room for the B' new columns of a step.
    pub stride: usize,
    /// d × stride, row-major.
    pub f: Vec<f64>,
}

impl GramFactor {
    /// d = p + p*.
    pub fn d(&self) -> usize {
        self.p + self.p_star
    }

    /// A zero factor with room for `batch` new columns.
    pub fn zeros(p: usize, p_star: usize, n: usize, batch: usize) -> Self {
        let d = p + p_star;
        let stride = d + batch;
        GramFactor {
            p_star,
            p,
            n,
            rt: p_star.min(n),
            width: 0,
            stride,
            f: vec![0.0; d * stride],
        }
    }

    /// A random initial factor with exactly the law of [`crate::init::initial_weights`]: teacher
    /// rows iid N(0, I_N) (or Gram–Schmidt orthonormalised to norm √N, so P = I), student rows
    /// w_i = Σ_k mix_ik w*_k + σ₀ g_i with g_i iid N(0, I_N) (mix = 0 unless `student_mix` is given).
    ///
    /// The d rows (teacher first) of an iid Gaussian d × N matrix are T Vᵀ with V Haar-orthonormal
    /// and T the Bartlett factor (Wishart(N, I_d) Gram). Gram–Schmidt of the teacher rows returns
    /// the first p* columns of V (T_kk > 0), so the orthonormal teacher is the identity block; the
    /// student coordinates are σ₀ T_i/√N plus the mix of the teacher coordinates, in both cases.
    ///
    /// `self` must be a fresh [`GramFactor::zeros`] (it fixes p, p*, N and B).
    pub fn initialise(&mut self, rng: &mut SimRng, chi: &ChiTable, init: &InitSpec) {
        let (p_star, n, stride) = (self.p_star, self.n, self.stride);
        let d = self.d();
        let cols = bartlett(rng, chi, 0, d, stride, &mut self.f);
        let scale = 1.0 / (n as f64).sqrt();
        for k in 0..p_star {
            let row = &mut self.f[k * stride..k * stride + cols];
            match init.teacher {
                TeacherInit::Gaussian => row.iter_mut().for_each(|t| *t *= scale),
                TeacherInit::Orthonormal => {
                    assert!(p_star <= n, "orthonormal teacher needs p* ≤ N");
                    row.iter_mut()
                        .enumerate()
                        .for_each(|(j, t)| *t = if j == k { 1.0 } else { 0.0 });
                }
            }
        }
        let (teacher, student) = self.f.split_at_mut(p_star * stride);
        for (i, row) in student.chunks_exact_mut(stride).enumerate() {
            row[..cols].iter_mut().for_each(|t| *t *= init.sigma0 * scale);
            if let Some(mix) = &init.student_mix {
                for (k, &c) in mix[i].iter().enumerate() {
                    let tk = &teacher[k * stride..k * stride + cols];
                    row[..cols].iter_mut().zip(tk).for_each(|(x, t)| *x += c * t);
                }
            }
        }
        // With σ₀ = 0 the students lie in the teacher span (any larger count is exact too).
        self.width = if init.sigma0 == 0.0 { self.rt } else { cols };
    }

    /// C_ab = F_a · F_b in the internal row order (teacher rows 0..p*, student rows p*..d).
    #[inline]
    pub fn dot(&self, a: usize, b: usize) -> f64 {
        let s = self.stride;
        let w = self.width;
        self.f[a * s..a * s + w]
            .iter()
            .zip(&self.f[b * s..b * s + w])
            .map(|(x, y)| x * y)
            .sum()
    }

    /// The Gram matrix in the user's order (students first): C = [[Q, M], [Mᵀ, P]].
    pub fn gram(&self) -> nalgebra::DMatrix<f64> {
        let d = self.d();
        // user index u → internal row: students u < p are rows p* + u, teachers are rows u − p.
        let row = |u: usize| if u < self.p { self.p_star + u } else { u - self.p };
        nalgebra::DMatrix::from_fn(d, d, |a, b| self.dot(row(a), row(b)))
    }

    /// Largest |C_ab| over the student rows (Q and M entries), NaN-propagating: the divergence test.
    pub fn max_abs_student_overlap(&self) -> f64 {
        let mut worst: f64 = 0.0;
        for i in self.p_star..self.d() {
            for b in 0..=i {
                let c = self.dot(i, b).abs();
                if c.is_nan() {
                    return f64::NAN;
                }
                worst = worst.max(c);
            }
        }
        worst
    }

    /// Restores the lower-trapezoidal form of the student block on columns rt..new_width by
    /// Householder reflections from the right (an LQ factorisation): student i ends with zeros beyond
    /// column rt + i. Returns the new width min(new_width, rt + p). Preserves F Fᵀ exactly up to
    /// rounding (orthogonal transformation), and never touches the teacher rows (zero there).
    pub fn compress(&mut self, new_width: usize) -> usize {
        compress_rows(&mut self.f, self.stride, self.p_star, self.p, self.rt, new_width);
        self.width = new_width.min(self.rt + self.p);
        self.width
    }
}

/// [`GramFactor::compress`] on the raw factor `f` (rows of stride `s`, p* teacher rows then p
/// student rows, teacher rank `rt`); inlined so that the chain's specialised steps see constant
/// dimensions.
#[inline(always)]
pub fn compress_rows(f: &mut [f64], s: usize, ps: usize, p: usize, rt: usize, new_width: usize) {
    for i in 0..p {
        let c = rt + i;
        if c + 1 >= new_width {
            break;
        }
        let (head, tail) = f.split_at_mut((ps + i + 1) * s);
        let x = &mut head[(ps + i) * s + c..(ps + i) * s + new_width];
        // Reflect x onto α e₀ with α = −sign(x₀)‖x‖ (no cancellation in v₀ = x₀ − α).
        let tail_norm2: f64 = x[1..].iter().map(|t| t * t).sum();
        if tail_norm2 == 0.0 {
            continue;
        }
        let norm = (x[0] * x[0] + tail_norm2).sqrt();
        let alpha = if x[0] >= 0.0 { -norm } else { norm };
        // v = x − α e₀ (stored in x), vᵀv = 2‖x‖² − 2αx₀ = 2 norm (norm + |x₀|).
        x[0] -= alpha;
        let vv = x[0] * x[0] + tail_norm2;
        let beta = 2.0 / vv;
        // The remaining student rows: y ← y − β (y·v) v.
        for k in 0..p - i - 1 {
            let y = &mut tail[k * s + c..k * s + new_width];
            let proj = beta * y.iter().zip(x.iter()).map(|(a, b)| a * b).sum::<f64>();
            y.iter_mut().zip(x.iter()).for_each(|(a, b)| *a -= proj * b);
        }
        x[0] = alpha;
        x[1..].iter_mut().for_each(|t| *t = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;
    use rand::SeedableRng;

    fn gram_internal(f: &GramFactor, w: usize) -> DMatrix<f64> {
        let d = f.d();
        DMatrix::from_fn(d, d, |a, b| {
            (0..w).map(|j| f.f[a * f.stride + j] * f.f[b * f.stride + j]).sum()
        })
    }

    /// The compression is an orthogonal change of basis: F Fᵀ is unchanged, the student block is
    /// lower trapezoidal afterwards and the teacher rows are untouched.
    #[test]
    fn compress_preserves_the_gram_matrix() {
        let mut rng = SimRng::seed_from_u64(5);
        for (p, ps, extra) in [(1, 1, 1), (2, 2, 1), (3, 1, 4), (2, 3, 2)] {
            let n = 1000;
            let chi = ChiTable::new(n, p + ps + extra);
            let mut fac = GramFactor::zeros(p, ps, n, extra);
            fac.initialise(&mut rng, &chi, &InitSpec::uninformed(TeacherInit::Gaussian, 0.7));
            let w = fac.width + extra;
            for i in ps..p + ps {
                for j in 0..w {
                    fac.f[i * fac.stride + j] = standard_normal(&mut rng);
                }
            }
            let before = gram_internal(&fac, w);
            let teacher: Vec<f64> = fac.f[..ps * fac.stride].to_vec();
            let nw = fac.compress(w);
            assert_eq!(nw, ps + p);
            let after = gram_internal(&fac, nw);
            assert!((&before - &after).amax() < 1e-12, "{before} vs {after}");
            assert_eq!(&fac.f[..ps * fac.stride], &teacher[..]);
            for i in 0..p {
                for j in ps + i + 1..w {
                    assert_eq!(fac.f[(ps + i) * fac.stride + j], 0.0);
                }
            }
        }
    }

    /// Bartlett: E[T Tᵀ] = m I for T the factor of `rows` iid N(0, I_m) vectors (mean of 20000 draws
    /// within 5 standard errors; Var[(TTᵀ)_bb] = 2m, Var[(TTᵀ)_bc] = m).
    #[test]
    fn bartlett_gram_is_wishart() {
        let mut rng = SimRng::seed_from_u64(11);
        let (n, rows, draws) = (7usize, 3usize, 20000);
        let chi = ChiTable::new(n, rows);
        let mut t = vec![0.0; rows * rows];
        let mut sum = DMatrix::<f64>::zeros(rows, rows);
        for _ in 0..draws {
            bartlett(&mut rng, &chi, 0, rows, rows, &mut t);
            let tm = DMatrix::from_row_slice(rows, rows, &t);
            sum += &tm * tm.transpose();
        }
        let mean = sum / draws as f64;
        for b in 0..rows {
            for c in 0..rows {
                let (expect, var) = if b == c {
                    (n as f64, 2.0 * n as f64)
                } else {
                    (0.0, n as f64)
                };
                let se = (var / draws as f64).sqrt();
                assert!((mean[(b, c)] - expect).abs() < 5.0 * se, "{b}{c}: {}", mean[(b, c)]);
            }
        }
    }

    /// More vectors than dimensions: the Gram has rank m and the extra rows have only N(0, 1) entries.
    #[test]
    fn bartlett_beyond_the_dimension() {
        let mut rng = SimRng::seed_from_u64(1);
        let chi = ChiTable::new(2, 4);
        let mut t = vec![9.0; 4 * 4];
        assert_eq!(bartlett(&mut rng, &chi, 0, 4, 4, &mut t), 2);
        assert!(t[0] > 0.0 && t[5] > 0.0 && t[1] == 0.0);
    }

    /// The orthonormal teacher block is exactly the identity, so P = I exactly.
    #[test]
    fn orthonormal_teacher_is_exact() {
        let mut rng = SimRng::seed_from_u64(2);
        let chi = ChiTable::new(50, 5);
        let mut fac = GramFactor::zeros(2, 3, 50, 1);
        fac.initialise(&mut rng, &chi, &InitSpec::uninformed(TeacherInit::Orthonormal, 1.0));
        let c = fac.gram();
        assert_eq!(c.view((2, 2), (3, 3)).into_owned(), DMatrix::identity(3, 3));
        let mut zero = GramFactor::zeros(2, 3, 50, 1);
        zero.initialise(&mut rng, &chi, &InitSpec::uninformed(TeacherInit::Orthonormal, 0.0));
        assert_eq!(zero.width, 3);
        assert_eq!(zero.gram().view((0, 0), (2, 5)).amax(), 0.0);
        // Informed start with σ₀ = 0: M₀ = mix·P and Q₀ = mix·P·mixᵀ exactly (here P = I).
        let mut warm = GramFactor::zeros(2, 3, 50, 1);
        let mix = vec![vec![0.5, 0.0, -0.2], vec![0.0, 0.3, 0.0]];
        let spec = InitSpec {
            student_mix: Some(mix.clone()),
            ..InitSpec::uninformed(TeacherInit::Orthonormal, 0.0)
        };
        warm.initialise(&mut rng, &chi, &spec);
        let mm = DMatrix::from_fn(2, 3, |i, k| mix[i][k]);
        let c = warm.gram();
        assert!((c.view((0, 2), (2, 3)) - &mm).amax() < 1e-15);
        assert!((c.view((0, 0), (2, 2)) - &mm * mm.transpose()).amax() < 1e-15);
    }
}
