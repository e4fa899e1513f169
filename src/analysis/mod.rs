//! Analyses built on the simulators and the ODE: plateau stability, escape times, finite-size scaling.

pub mod escape;
pub mod scaling;
pub mod stability;
