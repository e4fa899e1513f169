//! Order parameters (theory.md §3): Q = WWᵀ/N, M = WW*ᵀ/N, P = W*W*ᵀ/N and their Gram matrix
//! C = [[Q, M], [Mᵀ, P]], the covariance of z = (λ, ν) for one fresh sample.

use nalgebra::{DMatrix, DVector};
use ndarray::ArrayView2;

/// The overlaps of a student (p rows) with itself and with a teacher (p* rows).
///
/// ```
/// use hdsgd::overlaps::Overlaps;
/// use nalgebra::DMatrix;
/// let o = Overlaps::new(DMatrix::identity(2, 2), DMatrix::zeros(2, 1), DMatrix::identity(1, 1));
/// let c = o.gram();
/// assert_eq!(c.shape(), (3, 3));
/// // The ODE state packs Q's upper triangle and M row by row:
/// assert_eq!(Overlaps::from_state(&o.to_state(), &o.p), o);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Overlaps {
    /// Q = WWᵀ/N (p×p).
    pub q: DMatrix<f64>,
    /// M = WW*ᵀ/N (p×p*).
    pub m: DMatrix<f64>,
    /// P = W*W*ᵀ/N (p*×p*), constant during training.
    pub p: DMatrix<f64>,
}

impl Overlaps {
    /// From the three blocks (shapes are checked in debug builds).
    pub fn new(q: DMatrix<f64>, m: DMatrix<f64>, p: DMatrix<f64>) -> Self {
        debug_assert_eq!(q.nrows(), q.ncols());
        debug_assert_eq!(m.nrows(), q.nrows());
        debug_assert_eq!(m.ncols(), p.nrows());
        Overlaps { q, m, p }
    }

    /// Student width p.
    pub fn p_student(&self) -> usize {
        self.q.nrows()
    }

    /// Teacher width p*.
    pub fn p_star(&self) -> usize {
        self.p.nrows()
    }

    /// Overlaps of explicit weights: Q = WWᵀ/N, M = WW*ᵀ/N, P = W*W*ᵀ/N, with N = number of columns.
    pub fn from_weights(w: ArrayView2<f64>, w_star: ArrayView2<f64>) -> Self {
        let n = w.ncols() as f64;
        let dot = |a: ArrayView2<f64>, b: ArrayView2<f64>| {
            DMatrix::from_fn(a.nrows(), b.nrows(), |i, j| a.row(i).dot(&b.row(j)) / n)
        };
        Overlaps::new(dot(w, w), dot(w, w_star), dot(w_star, w_star))
    }

    /// C = [[Q, M], [Mᵀ, P]], the covariance of z = (λ, ν).
    pub fn gram(&self) -> DMatrix<f64> {
        let (p, k) = (self.p_student(), self.p_star());
        let mut c = DMatrix::zeros(p + k, p + k);
        c.view_mut((0, 0), (p, p)).copy_from(&self.q);
        c.view_mut((0, p), (p, k)).copy_from(&self.m);
        c.view_mut((p, 0), (k, p)).copy_from(&self.m.transpose());
        c.view_mut((p, p), (k, k)).copy_from(&self.p);
        c
    }

    /// Splits a Gram matrix C of size p + p* into overlaps.
    pub fn from_gram(c: &DMatrix<f64>, p: usize) -> Self {
        let k = c.nrows() - p;
        Overlaps::new(
            c.view((0, 0), (p, p)).into_owned(),
            c.view((0, p), (p, k)).into_owned(),
            c.view((p, p), (k, k)).into_owned(),
        )
    }

    /// Length of the ODE state: p(p+1)/2 entries of Q plus p·p* of M.
    pub fn state_len(p: usize, p_star: usize) -> usize {
        p * (p + 1) / 2 + p * p_star
    }

    /// Packs (Q upper triangle row by row, then M row by row) into an ODE state vector.
    pub fn to_state(&self) -> DVector<f64> {
        let (p, k) = (self.p_student(), self.p_star());
        let mut s = Vec::with_capacity(Self::state_len(p, k));
        for i in 0..p {
            for j in i..p {
                s.push(self.q[(i, j)]);
            }
        }
        for i in 0..p {
            for j in 0..k {
                s.push(self.m[(i, j)]);
            }
        }
        DVector::from_vec(s)
    }

    /// Inverse of [`Overlaps::to_state`], with the (fixed) teacher overlap P.
    pub fn from_state(s: &DVector<f64>, p_teacher: &DMatrix<f64>) -> Self {
        let k = p_teacher.nrows();
        let p = student_width(s.len(), k);
        let mut q = DMatrix::zeros(p, p);
        let mut idx = 0;
        for i in 0..p {
            for j in i..p {
                q[(i, j)] = s[idx];
                q[(j, i)] = s[idx];
                idx += 1;
            }
        }
        let m = DMatrix::from_fn(p, k, |i, j| s[idx + i * k + j]);
        Overlaps::new(q, m, p_teacher.clone())
    }

    /// Column names of the overlaps in output files: `q_i_j` (i ≤ j), then `m_i_k`, 0-based, in
    /// the order of [`Overlaps::to_state`].
    pub fn column_names(p: usize, p_star: usize) -> Vec<String> {
        let mut names = Vec::new();
        for i in 0..p {
            for j in i..p {
                names.push(format!("q_{i}_{j}"));
            }
        }
        for i in 0..p {
            for k in 0..p_star {
                names.push(format!("m_{i}_{k}"));
            }
        }
        names
    }

    /// A named scalar observable: a column `q_i_j` / `m_i_k` (any i, j order for Q), or the
    /// rotation-invariant `tr_q` (tr Q) and `norm_m` (‖M‖_F = (Σ M_ik²)^{1/2}), which are the
    /// meaningful averages over seeds when the model has a sign or rotational symmetry (g = z²).
    ///
    /// ```
    /// use hdsgd::overlaps::Overlaps;
    /// use nalgebra::DMatrix;
    /// let o = Overlaps::new(DMatrix::identity(2, 2), DMatrix::from_row_slice(2, 1, &[3.0, -4.0]), DMatrix::identity(1, 1));
    /// assert_eq!(o.observable("norm_m"), Some(5.0));
    /// assert_eq!(o.observable("m_1_0"), Some(-4.0));
    /// assert_eq!(o.observable("tr_q"), Some(2.0));
    /// assert_eq!(o.observable("q_2_0"), None);
    /// ```
    pub fn observable(&self, name: &str) -> Option<f64> {
        match name {
            "tr_q" => return Some(self.q.trace()),
            "norm_m" => return Some(self.m.norm()),
            _ => {}
        }
        let mut parts = name.split('_');
        let kind = parts.next()?;
        let i: usize = parts.next()?.parse().ok()?;
        let j: usize = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let mat = match kind {
            "q" => &self.q,
            "m" => &self.m,
            _ => return None,
        };
        (i < mat.nrows() && j < mat.ncols()).then(|| mat[(i, j)])
    }

    /// True when every entry is finite and every |Q_ij| ≤ `bound` (the divergence test).
    pub fn is_bounded(&self, bound: f64) -> bool {
        self.q
            .iter()
            .chain(self.m.iter())
            .all(|x| x.is_finite() && x.abs() <= bound)
    }
}

/// Solves p(p+1)/2 + p·p* = len for p.
fn student_width(len: usize, p_star: usize) -> usize {
    (0..=len)
        .find(|&p| Overlaps::state_len(p, p_star) == len)
        .expect("state length matches no student width")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn from_weights_and_gram() {
        let w = array![[1.0, 2.0], [0.0, 1.0]];
        let ws = array![[1.0, 1.0]];
        let o = Overlaps::from_weights(w.view(), ws.view());
        assert_eq!(o.q, DMatrix::from_row_slice(2, 2, &[2.5, 1.0, 1.0, 0.5]));
        assert_eq!(o.m, DMatrix::from_row_slice(2, 1, &[1.5, 0.5]));
        assert_eq!(o.p[(0, 0)], 1.0);
        let c = o.gram();
        assert_eq!(c, c.transpose());
        assert_eq!(Overlaps::from_gram(&c, 2), o);
        assert_eq!(
            Overlaps::column_names(2, 1),
            ["q_0_0", "q_0_1", "q_1_1", "m_0_0", "m_1_0"]
        );
    }
}
