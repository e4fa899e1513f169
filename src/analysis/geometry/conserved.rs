//! The conserved quantity of the quadratic network's gradient-flow ODE (theory.md §5).
//!
//! # Derivation
//! Quadratic activation, uniform student second layer A = aI, teacher layer V = diag(v), learning
//! rate per sample η̄ = η/B, weight decay ℓ₂. With K = diag(−aI, V) and τ = tr(K C) (theory.md §4),
//! the blocks of E[z zᵀ r] = τC + 2CKC are
//! [·]_λλ = τQ − 2aQ² + 2MVMᵀ and [·]_λν = τM − 2aQM + 2MVP, so the ODE without the η² term
//! (gradient flow, [`crate::ode::OdeVariant::GradientFlow`]) reads, with the *symmetric* matrix
//! K̂(t) = 2η̄a(τI − 2aQ) − η̄ℓ₂ I,
//!
//! * dM/dt = K̂ M + 4η̄a M V P,
//! * dQ/dt = K̂ Q + Q K̂ + 8η̄a M V Mᵀ.
//!
//! For the orthogonal part Q⊥ = Q − M P⁻¹ Mᵀ (the Gram matrix of the student components orthogonal
//! to the teacher span, i.e. the Schur complement of P in C):
//! d(MP⁻¹Mᵀ)/dt = K̂ MP⁻¹Mᵀ + MP⁻¹Mᵀ K̂ + 4η̄a MVMᵀ + 4η̄a MVMᵀ, hence **dQ⊥/dt = K̂ Q⊥ + Q⊥ K̂**.
//! For M̃ = M e^{−4η̄a V P t} (VP commutes with its own exponential): **dM̃/dt = K̂ M̃**.
//! With Φ the propagator of dΦ/dt = K̂Φ, Φ(0) = I: M̃(t) = Φ M̃(0) and Q⊥(t) = Φ Q⊥(0) Φᵀ, so
//!
//!   I(t) = M̃ᵀ Q⊥⁻¹ M̃ = M̃(0)ᵀ Q⊥(0)⁻¹ M̃(0)   (p* × p*)
//!
//! is constant. Weight decay only shifts K̂ and label noise only enters the η² term, so both keep
//! I conserved under gradient flow; the η² term E[δδᵀ] (and the SGD noise at finite N) break it.
//!
//! Conditions: quadratic activation, all a_i equal, P invertible and Q⊥ invertible, i.e. the Gram
//! matrix C positive definite (at finite N: the p + p* rows of W and W* linearly independent, which
//! needs p + p* ≤ N and a non-degenerate start, e.g. a random one). Because Φ is invertible for all
//! t, Q⊥ stays invertible along the flow, though it shrinks as the student aligns with the teacher:
//! at long times I(t) is the ratio of two exponentially small quantities and its numerical relative
//! error grows accordingly (measure drift on windows where Q⊥ is not yet tiny).
//!
//! # Isotropic starts
//! With V = vI, P = I and Q(0) ∝ I, the right-hand side of the *full* ODE (η², label noise, weight
//! decay included) keeps Q a function of MMᵀ and gives dM/dt = F(MMᵀ) M with F symmetric, so the left
//! and right singular vectors of M are frozen: the polar factor M(MᵀM)^{−1/2} ([`polar_factor`]) is
//! constant and the run ends (when it converges to zero loss) at M∞ = √(v/a)·polar(M₀).

use super::GeometryError;
use crate::model::{Activation, Model, Training};
use crate::overlaps::Overlaps;
use nalgebra::DMatrix;

/// Checks that the model has the rotational symmetry the conserved quantity needs: quadratic
/// activation and a uniform student second layer (all a_i equal and non-zero).
pub fn check_model(model: &Model) -> Result<f64, GeometryError> {
    if model.activation != Activation::Quadratic {
        return Err(GeometryError::field(
            "model.activation",
            "the geometry observables need the quadratic activation",
        ));
    }
    let a = model.a[0];
    if a == 0.0 || model.a.iter().any(|&x| x != a) {
        return Err(GeometryError::field(
            "model.a",
            "the geometry observables need a uniform, non-zero student second layer (A = aI)",
        ));
    }
    Ok(a)
}

/// e^{−4 (η/B) a V P t}, the factor that removes the teacher-driven growth of M.
fn growth_factor(model: &Model, training: &Training, a: f64, p: &DMatrix<f64>, t: f64) -> DMatrix<f64> {
    let k = p.nrows();
    let lr = training.eta / training.batch as f64;
    let vp = DMatrix::from_fn(k, k, |i, j| model.v[i] * p[(i, j)]);
    (vp * (-4.0 * lr * a * t)).exp()
}

/// Q⊥ = Q − M P⁻¹ Mᵀ, the Gram matrix of the student's components orthogonal to the teacher span.
pub fn orthogonal_part(ov: &Overlaps) -> Result<DMatrix<f64>, GeometryError> {
    let p_inv =
        ov.p.clone()
            .cholesky()
            .ok_or_else(|| GeometryError::Degenerate("the teacher overlap P is not positive definite".into()))?
            .inverse();
    Ok(&ov.q - &ov.m * p_inv * ov.m.transpose())
}

/// I(t) = M̃ᵀ Q⊥⁻¹ M̃ with M̃ = M e^{−4(η/B) a V P t} and Q⊥ = Q − M P⁻¹ Mᵀ (module docs), a
/// symmetric p* × p* matrix, constant along the gradient-flow ODE.
///
/// Errors when the model lacks the symmetry ([`check_model`]) or Q⊥ is not positive definite
/// (degenerate Gram matrix).
///
/// ```
/// use hdsgd::{analysis::geometry::conserved::conserved_quantity, model::{Activation, Model, Training}, overlaps::Overlaps};
/// use nalgebra::DMatrix;
/// let model = Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0);
/// let tr = Training { eta: 0.1, weight_decay: 0.0, batch: 1 };
/// let ov = Overlaps::new(DMatrix::identity(2, 2), DMatrix::from_column_slice(2, 1, &[0.1, 0.2]), DMatrix::identity(1, 1));
/// // At t = 0: Mᵀ (Q − MMᵀ)⁻¹ M.
/// let i0 = conserved_quantity(&ov, 0.0, &model, &tr).unwrap();
/// let qperp = DMatrix::identity(2, 2) - &ov.m * ov.m.transpose();
/// let expect = ov.m.transpose() * qperp.try_inverse().unwrap() * &ov.m;
/// assert!((i0 - expect).amax() < 1e-14);
/// ```
pub fn conserved_quantity(
    ov: &Overlaps,
    t: f64,
    model: &Model,
    training: &Training,
) -> Result<DMatrix<f64>, GeometryError> {
    let a = check_model(model)?;
    let q_perp = orthogonal_part(ov)?;
    let chol = q_perp.cholesky().ok_or_else(|| {
        GeometryError::Degenerate(
            "Q⊥ = Q − M P⁻¹ Mᵀ is not positive definite (the student rows are not independent of the teacher's); \
             the conserved quantity needs a non-degenerate Gram matrix"
                .into(),
        )
    })?;
    let m_tilde = &ov.m * growth_factor(model, training, a, &ov.p, t);
    let x = chol.solve(&m_tilde);
    let i = m_tilde.transpose() * x;
    // Symmetrise away rounding.
    Ok((&i + i.transpose()) * 0.5)
}

/// Relative drift ‖I(t) − I(0)‖_F / ‖I(0)‖_F of a conserved-quantity series against its first
/// entry (0 for a constant series).
pub fn relative_drift(i0: &DMatrix<f64>, it: &DMatrix<f64>) -> f64 {
    (it - i0).norm() / i0.norm()
}

/// Names of the conserved-quantity observables tabulated by `hdsgd scaling` (and `hdsgd escape`):
/// `cons_k_l` for the entries k ≤ l of I(t) (0-based, p* × p*) and `cons_drift` for the relative
/// drift ‖I(t) − I(t₀)‖_F/‖I(t₀)‖_F against the first point t₀ of the same trajectory.
pub fn observable_names(p_star: usize) -> Vec<String> {
    let mut names = vec![];
    for k in 0..p_star {
        for l in k..p_star {
            names.push(format!("cons_{k}_{l}"));
        }
    }
    names.push("cons_drift".into());
    names
}

/// The series of conserved-quantity observable `name` ([`observable_names`]) along a trajectory
/// given as (t, overlaps) points; NaN where I is undefined (Q⊥ singular, or ‖I(t₀)‖ = 0 for the
/// drift) and for an unknown name.
///
/// ```
/// use hdsgd::{analysis::geometry::conserved::observable_series, model::{Activation, Model, Training}, overlaps::Overlaps};
/// use nalgebra::DMatrix;
/// let model = Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0);
/// let tr = Training { eta: 0.1, weight_decay: 0.0, batch: 1 };
/// let ov = Overlaps::new(DMatrix::identity(2, 2), DMatrix::from_column_slice(2, 1, &[0.1, 0.2]), DMatrix::identity(1, 1));
/// let pts = [(0.0, &ov), (0.0, &ov)];
/// assert_eq!(observable_series(&pts, &model, &tr, "cons_drift"), vec![0.0, 0.0]);
/// ```
pub fn observable_series(pts: &[(f64, &Overlaps)], model: &Model, training: &Training, name: &str) -> Vec<f64> {
    let values: Vec<Option<DMatrix<f64>>> = pts
        .iter()
        .map(|(t, ov)| conserved_quantity(ov, *t, model, training).ok())
        .collect();
    if name == "cons_drift" {
        let i0 = values.first().cloned().flatten();
        return values
            .iter()
            .map(|it| match (&i0, it) {
                (Some(i0), Some(it)) if i0.norm() > 0.0 => relative_drift(i0, it),
                _ => f64::NAN,
            })
            .collect();
    }
    let entry = name.strip_prefix("cons_").and_then(|r| {
        let (k, l) = r.split_once('_')?;
        Some((k.parse::<usize>().ok()?, l.parse::<usize>().ok()?))
    });
    values
        .iter()
        .map(|i| match (i, entry) {
            (Some(i), Some((k, l))) if k < i.nrows() && l < i.ncols() => i[(k, l)],
            _ => f64::NAN,
        })
        .collect()
}

/// The polar factor M (MᵀM)^{−1/2} of a p × p* matrix M (p ≥ p*, full column rank), via the thin SVD
/// M = U Σ Wᵀ ↦ U Wᵀ. Returns `None` if M is rank deficient.
pub fn polar_factor(m: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    if m.nrows() < m.ncols() {
        return None;
    }
    let svd = m.clone().svd(true, true);
    let smax = svd.singular_values.max();
    if smax <= 0.0 || svd.singular_values.min() <= 1e-14 * smax {
        return None;
    }
    Some(svd.u? * svd.v_t?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ode::{derivatives, OdeVariant};

    fn model() -> Model {
        Model::new(Activation::Quadratic, vec![0.4; 3], vec![1.0, 0.3], 0.2)
    }

    fn overlaps() -> Overlaps {
        let q = DMatrix::from_row_slice(3, 3, &[1.0, 0.1, -0.2, 0.1, 0.8, 0.05, -0.2, 0.05, 1.2]);
        let m = DMatrix::from_row_slice(3, 2, &[0.1, -0.05, 0.2, 0.1, -0.1, 0.15]);
        let p = DMatrix::from_row_slice(2, 2, &[1.0, 0.4, 0.4, 0.9]);
        Overlaps::new(q, m, p)
    }

    /// The study observables are exactly the entries k ≤ l of I(t) and its drift against the first
    /// point; an unknown or out-of-range name gives NaN, never a silently wrong entry.
    #[test]
    fn observable_series_entries_and_drift() {
        let (model, tr) = (
            model(),
            Training {
                eta: 0.1,
                weight_decay: 0.0,
                batch: 1,
            },
        );
        let (a, mut b) = (overlaps(), overlaps());
        b.m[(0, 1)] += 0.05;
        let pts = [(0.0, &a), (0.7, &b)];
        assert_eq!(observable_names(2), ["cons_0_0", "cons_0_1", "cons_1_1", "cons_drift"]);
        let i0 = conserved_quantity(&a, 0.0, &model, &tr).unwrap();
        let i1 = conserved_quantity(&b, 0.7, &model, &tr).unwrap();
        assert_eq!(
            observable_series(&pts, &model, &tr, "cons_0_1"),
            [i0[(0, 1)], i1[(0, 1)]]
        );
        assert_eq!(
            observable_series(&pts, &model, &tr, "cons_1_1"),
            [i0[(1, 1)], i1[(1, 1)]]
        );
        assert_eq!(
            observable_series(&pts, &model, &tr, "cons_drift"),
            [0.0, relative_drift(&i0, &i1)]
        );
        for bad in ["cons_2_2", "cons_x", "cons_0"] {
            assert!(
                observable_series(&pts, &model, &tr, bad).iter().all(|x| x.is_nan()),
                "{bad}"
            );
        }
    }

    /// The two transport equations of the derivation, checked on the ODE right-hand side itself:
    /// dQ⊥/dt = K̂Q⊥ + Q⊥K̂ and dM/dt = K̂M + 4η̄aMVP (weight decay and batch included).
    #[test]
    fn gradient_flow_rhs_has_the_transport_form() {
        let (model, ov) = (model(), overlaps());
        let tr = Training {
            eta: 0.3,
            weight_decay: 0.07,
            batch: 2,
        };
        let (dq, dm) = derivatives(&model, &tr, &ov, OdeVariant::GradientFlow).unwrap();
        let lr = tr.eta / tr.batch as f64;
        let a = 0.4;
        let tau = -a * ov.q.trace() + (0..2).map(|k| model.v[k] * ov.p[(k, k)]).sum::<f64>();
        let k_hat = (DMatrix::identity(3, 3) * tau - &ov.q * (2.0 * a)) * (2.0 * lr * a)
            - DMatrix::identity(3, 3) * (lr * tr.weight_decay);
        let vmat = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(model.v.clone()));
        let dm_expect = &k_hat * &ov.m + &ov.m * &vmat * &ov.p * (4.0 * lr * a);
        assert!((&dm - dm_expect).amax() < 1e-14);
        let p_inv = ov.p.clone().try_inverse().unwrap();
        let q_perp = orthogonal_part(&ov).unwrap();
        let d_mpm = &dm * &p_inv * ov.m.transpose() + &ov.m * &p_inv * dm.transpose();
        let dq_perp = &dq - d_mpm;
        let expect = &k_hat * &q_perp + &q_perp * &k_hat;
        assert!((dq_perp - expect).amax() < 1e-14);
    }

    #[test]
    fn polar_factor_is_orthonormal_and_scale_free() {
        let m = DMatrix::from_row_slice(3, 2, &[1.0, 0.2, 0.3, -0.5, 0.1, 0.9]);
        let r = polar_factor(&m).unwrap();
        assert!((r.transpose() * &r - DMatrix::identity(2, 2)).amax() < 1e-14);
        assert!((polar_factor(&(&m * 3.0)).unwrap() - &r).amax() < 1e-14);
        assert!(polar_factor(&DMatrix::zeros(3, 2)).is_none());
    }

    #[test]
    fn wrong_models_are_refused_with_the_field() {
        let mut m = model();
        m.a[1] = 0.5;
        let e = conserved_quantity(
            &overlaps(),
            0.0,
            &m,
            &Training {
                eta: 0.1,
                weight_decay: 0.0,
                batch: 1,
            },
        );
        assert!(e.unwrap_err().to_string().contains("model.a"));
    }
}
