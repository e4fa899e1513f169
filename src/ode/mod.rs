//! The deterministic overlap ODEs of the N → ∞ limit (theory.md §4): right-hand sides ([`derivatives`])
//! and their integration on a time grid with error control and a stop hook ([`integrate`]).
//!
//! The integrator is Dormand–Prince 5(4) from the `ode_solvers` crate (adaptive step, rtol/atol,
//! continuous output to evaluate the solution exactly on the requested grid).
//!
//! [`jacobian`] linearises the right-hand side; [`lna`] integrates the covariance of the
//! linear-noise approximation, dΣ/dt = JΣ + ΣJᵀ + D, along an ODE path (theory.md §6).

mod integrate;
mod jacobian;
pub mod lna;
mod rhs;

pub use integrate::{integrate, OdeOptions, OdeSolution, OdeStop, StopHook};
pub use jacobian::{jacobian, rhs_state};
pub use rhs::{derivatives, OdeVariant};
