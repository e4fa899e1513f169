//! Geometry of the quadratic network (theory.md §5; Bocchi et al., arXiv:2604.03068): with
//! g(z) = z² and a uniform student second layer the network computes xᵀ(WᵀAW)x/N, invariant under
//! W → OW (O orthogonal). This module measures the consequences:
//!
//! * [`conserved`]: the conserved quantity I(t) = M̃ᵀQ⊥⁻¹M̃ of the gradient-flow ODE and its drift
//!   along the full ODE and SGD (`[geometry] observables = ["conserved"]` in `hdsgd run`);
//! * [`selection`]: the distance SGD moves the student vs the orthogonal-Procrustes minimum over
//!   the zero-loss manifold (`observables = ["selection"]`);
//! * [`hessian`]: the closed-form Hessian of the population loss in W and its spectrum at the
//!   plateau and on the solution manifold ([`spectra`], the `hdsgd hessian` command).
//!
//! * [`overparam`]: the plateau growth rate μ of the over-parameterised quadratic network and the
//!   escape-time crossing rule of the "escape" observable.
//!
//! The `hdsgd run` hook that writes the observables and the `hdsgd hessian` command are in the
//! studies layer; this module also holds the `[geometry]` section ([`GeometryConfig`]).

pub mod conserved;
pub mod hessian;
pub mod overparam;
pub mod selection;
pub mod spectra;

use crate::model::Model;
use serde::{Deserialize, Serialize};

/// Errors of the geometry computations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// The model or configuration does not allow the computation (names the field).
    #[error("invalid value for `{field}`: {message}")]
    Field { field: String, message: String },
    /// A matrix that must be invertible / positive definite is not.
    #[error("degenerate overlaps: {0}")]
    Degenerate(String),
}

impl GeometryError {
    /// A [`GeometryError::Field`].
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        GeometryError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An observable `hdsgd run` can record (`[geometry] observables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeometryObservable {
    /// The conserved quantity I(t) and its relative drift, along SGD and the matched ODE:
    /// `geometry.csv`, `geometry.json`, `geometry_drift.svg` (`hdsgd run`); observables `cons_k_l`,
    /// `cons_drift` in `hdsgd scaling`; column `conserved_drift` of `escape_times.csv` (`hdsgd escape`).
    Conserved,
    /// ‖W∞ − W₀‖²_F/N vs the Procrustes minimum over the zero-loss manifold, per run:
    /// `selection.csv`, `selection.json`, `selection.svg` (re-simulates each run to access weights).
    Selection,
    /// Plateau-escape times (e_g < escape_fraction · plateau e_g) for each student width in
    /// `widths`, with the fit of mean escape time vs ln N and the linear-stability slope 1/(2μ):
    /// `escape.csv`, `escape.json`, `escape.svg` ([`overparam`]).
    Escape,
}

/// `[geometry]` section of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeometryConfig {
    /// Observables written by `hdsgd run`: any of "conserved", "selection", "escape" ("conserved"
    /// also acts in `hdsgd scaling` and `hdsgd escape`). Default none.
    #[serde(default)]
    pub observables: Vec<GeometryObservable>,
    /// Input dimension N of the Hessian (`hdsgd hessian`); p·N ≤ 2000. Default 100.
    #[serde(default = "hessian_n")]
    pub hessian_n: i64,
    /// An eigenvalue counts as zero when |λ| ≤ zero_tol · max|λ|. Default 1e-6.
    #[serde(default = "zero_tol")]
    pub zero_tol: f64,
    /// A run counts as converged (selection) when its final e_g is below this. Default 1e-4.
    #[serde(default = "converged_eg")]
    pub converged_eg: f64,
    /// Student widths p of the "escape" study (each run like the experiment, with model.a resolved
    /// for that p). Default: the experiment's p only.
    pub widths: Option<Vec<i64>>,
    /// A run has escaped the plateau when e_g < escape_fraction · e_g(plateau). Default 0.5.
    #[serde(default = "escape_fraction")]
    pub escape_fraction: f64,
}

fn escape_fraction() -> f64 {
    0.5
}

fn hessian_n() -> i64 {
    100
}
fn zero_tol() -> f64 {
    1e-6
}
fn converged_eg() -> f64 {
    1e-4
}

impl Default for GeometryConfig {
    fn default() -> Self {
        GeometryConfig {
            observables: vec![],
            hessian_n: hessian_n(),
            zero_tol: zero_tol(),
            converged_eg: converged_eg(),
            widths: None,
            escape_fraction: escape_fraction(),
        }
    }
}

/// Largest p·N of the explicit Hessian (a dense (pN)² matrix and its eigendecomposition).
pub const MAX_HESSIAN_DIM: i64 = 2000;

impl GeometryConfig {
    /// Checks the section; on error returns (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        if self.hessian_n < 1 {
            return err("hessian_n", format!("must be ≥ 1 (got {})", self.hessian_n));
        }
        if !(self.zero_tol.is_finite() && self.zero_tol > 0.0 && self.zero_tol < 1.0) {
            return err("zero_tol", format!("must be in (0, 1) (got {})", self.zero_tol));
        }
        if !(self.converged_eg.is_finite() && self.converged_eg > 0.0) {
            return err("converged_eg", format!("must be > 0 (got {})", self.converged_eg));
        }
        if !(self.escape_fraction > 0.0 && self.escape_fraction < 1.0) {
            return err(
                "escape_fraction",
                format!("must be in (0, 1) (got {})", self.escape_fraction),
            );
        }
        if let Some(w) = &self.widths {
            if w.is_empty() || w.iter().any(|&p| p < 1) {
                return err("widths", "must be a non-empty list of widths ≥ 1".into());
            }
        }
        for (i, o) in self.observables.iter().enumerate() {
            if self.observables[..i].contains(o) {
                return err("observables", format!("{o:?} is listed twice"));
            }
        }
        Ok(())
    }

    /// Whether `observables` lists `o`.
    pub fn requests(&self, o: GeometryObservable) -> bool {
        self.observables.contains(&o)
    }

    /// Checks that the model allows the requested observables (quadratic activation, uniform
    /// student layer; selection also a > 0, v > 0, p ≥ p*); on error returns (field, message) with
    /// the full field name.
    pub fn validate_model(&self, model: &Model) -> Result<(), (String, String)> {
        let to_pair = |e: GeometryError| match e {
            GeometryError::Field { field, message } => {
                (field, format!("{message} (requested by geometry.observables)"))
            }
            GeometryError::Degenerate(m) => ("geometry.observables".to_string(), m),
        };
        if !self.observables.is_empty() {
            conserved::check_model(model).map_err(to_pair)?;
        }
        if self.observables.contains(&GeometryObservable::Selection) {
            selection::procrustes_minimum(
                &crate::overlaps::Overlaps::new(
                    nalgebra::DMatrix::identity(model.p(), model.p()),
                    nalgebra::DMatrix::zeros(model.p(), model.p_star()),
                    nalgebra::DMatrix::identity(model.p_star(), model.p_star()),
                ),
                model,
            )
            .map_err(to_pair)?;
        }
        Ok(())
    }
}
