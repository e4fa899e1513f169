//! Analyses built on the simulators and the ODE: plateau stability ([`stability`]), escape times
//! ([`escape`]), finite-size scaling ([`scaling`]), and the small statistics they share ([`fits`]).

pub mod escape;
pub mod fits;
pub mod scaling;
pub mod stability;
