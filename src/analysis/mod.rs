//! Analyses: pure functions of the model, the training and the overlaps (never of an experiment
//! file): plateau stability ([`stability`]), predicted finite-N fluctuations ([`fluctuations`]), escape times ([`escape`]) and their predicted law ([`escape_theory`]), finite-size scaling
//! ([`scaling`]), the quadratic network's geometry ([`geometry`]), the SGD phase diagram of Veiga
//! et al. ([`phase`]), and the small statistics they
//! share ([`fits`]). Their `[escape]`, `[scaling]` and `[geometry]` parameter types are imported by
//! `config`; the commands that run them are in `studies`.

pub mod escape;
pub mod escape_theory;
pub mod fits;
pub mod fluctuations;
pub mod geometry;
pub mod phase;
pub mod scaling;
pub mod stability;
