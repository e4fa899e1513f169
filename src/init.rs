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
    let w = student_for_teacher(rng, p, spec, &w_star);
    (w, w_star)
}

/// Student weights (p × N) drawn from `rng` for a given teacher `w_star` (p* × N), as in
/// [`initial_weights`]: rows Σ_k mix_ik w*_k + σ₀ g_i (the teacher loaded from a file, `[init] teacher_file`).
pub fn student_for_teacher<R: Rng + ?Sized>(
    rng: &mut R,
    p: usize,
    spec: &InitSpec,
    w_star: &Array2<f64>,
) -> Array2<f64> {
    let mut w = student_weights(rng, p, w_star.ncols(), spec.sigma0);
    if let Some(mix) = &spec.student_mix {
        for (i, row) in mix.iter().enumerate() {
            for (k, &c) in row.iter().enumerate() {
                if c != 0.0 {
                    w.row_mut(i).scaled_add(c, &w_star.row(k));
                }
            }
        }
    }
    w
}

/// Reads a teacher from `path`: an N × p* matrix (one column per teacher unit), NumPy `.npy` (f64) or
/// CSV (numbers only, no header), returned as the p* × N teacher rows. Errors name the file and say
/// what is wrong (unreadable, malformed, wrong number of columns, a non-finite entry).
pub fn read_teacher(path: &std::path::Path, p_star: usize) -> Result<Array2<f64>, String> {
    let at = |m: String| format!("{}: {m}", path.display());
    let npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let m: Array2<f64> = if npy {
        ndarray_npy::read_npy(path).map_err(|e| at(format!("not a 2-D float64 .npy array ({e})")))?
    } else {
        read_csv_matrix(path).map_err(at)?
    };
    if m.ncols() != p_star {
        return Err(at(format!(
            "is {} × {}, expected N × p* with p* = {p_star} columns",
            m.nrows(),
            m.ncols()
        )));
    }
    if let Some(x) = m.iter().find(|x| !x.is_finite()) {
        return Err(at(format!("contains a non-finite entry ({x})")));
    }
    Ok(m.reversed_axes().as_standard_layout().into_owned())
}

/// A CSV of numbers (no header, equal row lengths) as a matrix.
fn read_csv_matrix(path: &std::path::Path) -> Result<Array2<f64>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut values = vec![];
    let mut cols = None;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("malformed CSV: {e}"))?;
        if *cols.get_or_insert(record.len()) != record.len() {
            return Err(format!(
                "row {i} has {} fields, the first has {}",
                record.len(),
                cols.unwrap_or(0)
            ));
        }
        for f in record.iter() {
            values.push(
                f.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("row {i}: `{f}` is not a number"))?,
            );
        }
    }
    let cols = cols.ok_or("is empty")?;
    Array2::from_shape_vec((values.len() / cols, cols), values).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A teacher file is N × p* (.npy or CSV), returned as p* × N rows; wrong widths, non-finite
    /// entries, malformed and missing files are errors naming the file.
    #[test]
    fn teacher_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let npy = dir.path().join("t.npy");
        ndarray_npy::write_npy(&npy, &m).unwrap();
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "1,2\n3,4\n5,6\n").unwrap();
        for path in [&npy, &csv] {
            let w = read_teacher(path, 2).unwrap();
            assert_eq!(w, m.t());
            let e = read_teacher(path, 3).unwrap_err();
            assert!(e.contains("3 × 2") && e.contains(path.to_str().unwrap()), "{e}");
        }
        std::fs::write(&csv, "1,2\n3,nan\n").unwrap();
        assert!(read_teacher(&csv, 2).unwrap_err().contains("non-finite"));
        std::fs::write(&csv, "1,2\n3\n").unwrap();
        assert!(read_teacher(&csv, 2).unwrap_err().contains("fields"));
        std::fs::write(&csv, "1,x\n").unwrap();
        assert!(read_teacher(&csv, 2).unwrap_err().contains("`x`"));
        assert!(read_teacher(&dir.path().join("none.npy"), 2)
            .unwrap_err()
            .contains("none.npy"));
    }
}
