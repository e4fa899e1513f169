//! Initial weights (theory.md §1): teacher rows iid N(0, 1) or orthonormalised so that P = I exactly,
//! student rows iid N(0, σ₀²).

use crate::rng::fill_standard_normal;
use ndarray::Array2;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the teacher rows are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TeacherInit {
    /// Rows iid N(0, I_N): P = W*W*ᵀ/N = I + O(N^{-1/2}).
    Gaussian,
    /// Gaussian rows orthogonalised (Gram–Schmidt) and rescaled to norm √N: P = I exactly.
    #[default]
    Orthonormal,
}

/// Teacher weights (p* × N).
///
/// ```
/// use hdsgd::init::{teacher_weights, TeacherInit};
/// use rand::SeedableRng;
/// let mut rng = hdsgd::rng::SimRng::seed_from_u64(1);
/// let w = teacher_weights(&mut rng, 2, 50, TeacherInit::Orthonormal);
/// let p01 = w.row(0).dot(&w.row(1)) / 50.0;
/// let p11 = w.row(1).dot(&w.row(1)) / 50.0;
/// assert!(p01.abs() < 1e-12 && (p11 - 1.0).abs() < 1e-12);
/// ```
pub fn teacher_weights<R: Rng + ?Sized>(rng: &mut R, p_star: usize, n: usize, kind: TeacherInit) -> Array2<f64> {
    let mut w = Array2::zeros((p_star, n));
    fill_standard_normal(rng, w.as_slice_mut().expect("standard layout"));
    if kind == TeacherInit::Orthonormal {
        assert!(p_star <= n, "orthonormal teacher needs p* ≤ N");
        let scale = (n as f64).sqrt();
        for k in 0..p_star {
            // Modified Gram–Schmidt, twice for numerical orthogonality.
            for _ in 0..2 {
                for j in 0..k {
                    let proj = w.row(k).dot(&w.row(j)) / (scale * scale);
                    let rj = w.row(j).to_owned();
                    w.row_mut(k).scaled_add(-proj, &rj);
                }
            }
            let norm = w.row(k).dot(&w.row(k)).sqrt();
            w.row_mut(k).mapv_inplace(|x| x * scale / norm);
        }
    }
    w
}

/// Student weights (p × N), iid N(0, σ₀²).
pub fn student_weights<R: Rng + ?Sized>(rng: &mut R, p: usize, n: usize, sigma0: f64) -> Array2<f64> {
    let mut w = Array2::zeros((p, n));
    fill_standard_normal(rng, w.as_slice_mut().expect("standard layout"));
    w.mapv_inplace(|x| x * sigma0);
    w
}

/// The whole initial condition of a simulated run.
///
/// Student rows are w_i = Σ_k mix_ik w*_k + σ₀ g_i with g_i iid N(0, I_N): with `student_mix` absent
/// (the default) an uninformed start, M₀ ~ N^{-1/2}; with it an informed ("warm") start,
/// M₀ ≈ mix·P, Q₀ ≈ mix·P·mixᵀ + σ₀² I, useful to compare SGD with the ODE away from the plateau.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitSpec {
    pub teacher: TeacherInit,
    pub sigma0: f64,
    /// p × p* mixing matrix (rows of the student), if any.
    pub student_mix: Option<Vec<Vec<f64>>>,
}

impl InitSpec {
    /// An uninformed start: teacher as `teacher`, student rows iid N(0, σ₀²), no mixing.
    ///
    /// ```
    /// use hdsgd::init::{InitSpec, TeacherInit};
    /// let init = InitSpec::uninformed(TeacherInit::Orthonormal, 0.1);
    /// assert!(init.student_mix.is_none());
    /// ```
    pub fn uninformed(teacher: TeacherInit, sigma0: f64) -> Self {
        InitSpec {
            teacher,
            sigma0,
            student_mix: None,
        }
    }
}

/// Initial (student, teacher) weights of a run, drawn from `rng` (teacher first, then student).
///
/// ```
/// use hdsgd::init::{initial_weights, InitSpec, TeacherInit};
/// use rand::SeedableRng;
/// let spec = InitSpec { teacher: TeacherInit::Orthonormal, sigma0: 0.0, student_mix: Some(vec![vec![0.5]]) };
/// let mut rng = hdsgd::rng::SimRng::seed_from_u64(1);
/// let (w, ws) = initial_weights(&mut rng, 1, 1, 100, &spec);
/// assert!((w.row(0).dot(&ws.row(0)) / 100.0 - 0.5).abs() < 1e-12);
/// ```
pub fn initial_weights<R: Rng + ?Sized>(
    rng: &mut R,
    p: usize,
    p_star: usize,
    n: usize,
    spec: &InitSpec,
) -> (Array2<f64>, Array2<f64>) {
    let w_star = teacher_weights(rng, p_star, n, spec.teacher);
    let mut w = student_weights(rng, p, n, spec.sigma0);
    if let Some(mix) = &spec.student_mix {
        for (i, row) in mix.iter().enumerate() {
            for (k, &c) in row.iter().enumerate() {
                if c != 0.0 {
                    w.row_mut(i).scaled_add(c, &w_star.row(k));
                }
            }
        }
    }
    (w, w_star)
}
