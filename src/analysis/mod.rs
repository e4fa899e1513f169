//! Analyses: pure functions of the model, the training and the overlaps (never of an experiment
//! file): plateau stability ([`stability`]), escape times ([`escape`]), finite-size scaling
//! ([`scaling`]), the quadratic network's geometry ([`geometry`]), the SGD phase diagram of Veiga
//! et al. ([`phase`]), and the small statistics they
//! share ([`fits`]). Their `[escape]`, `[scaling]` and `[geometry]` parameter types are imported by
//! `config`; the commands that run them are in `studies`.

pub mod escape;
pub mod fits;
pub mod geometry;
pub mod phase;
pub mod scaling;
pub mod stability;
