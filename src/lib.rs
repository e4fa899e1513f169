//! # hdsgd
//!
//! One-pass (online) SGD in two-layer teacher–student networks in high dimension: finite-N
//! simulators, the deterministic overlap ODEs of the N → ∞ limit, and the experiments that compare
//! them. Conventions follow `theory.md` (shipped beside the project, summarised in README.md):
//!
//! * input x ~ N(0, I_N), student ŷ = Σ_i a_i g(w_i·x/√N), teacher y = Σ_k v_k g(w*_k·x/√N) + √Δ ξ;
//! * SGD: w_i ← w_i (1 − ηℓ₂/N) + (η/(B√N)) Σ_b δ_i^b x^b, δ_i = a_i g'(λ_i)(y − ŷ);
//! * time t = samples/N; overlaps Q = WWᵀ/N, M = WW*ᵀ/N, P = W*W*ᵀ/N.
//!
//! Modules, one job each: [`model`] (activations, second layers), [`overlaps`], [`population`]
//! (closed-form averages), [`ode`] (right-hand sides, integrator), [`simulators`] (direct, chain),
//! [`experiments`] (runner, outputs, figures), [`analysis`] (stability, escape, scaling),
//! [`geometry`] (the quadratic network's symmetry), [`config`] (experiment files).

// Docs write expectations as E[δλᵀ] and blocks as [X]_λν: math, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]
// Index loops mirror the equations (δ_i, λ_i, ...) and are kept as such.
#![allow(clippy::needless_range_loop)]

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod config;
pub mod experiments;
pub mod geometry;
pub mod grid;
pub mod init;
pub mod model;
pub mod ode;
pub mod overlaps;
pub mod population;
pub mod rng;
pub mod simulators;
