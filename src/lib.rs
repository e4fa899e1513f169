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
//! Modules in layers, each importing only from the layers below it (docs/architecture.md; enforced
//! by `tests/architecture.rs`):
//!
//! 1. core: [`isa`] (CPU-feature dispatch), [`rng`], [`model`] (activations, second layers), [`overlaps`], [`init`], [`grid`];
//! 2. [`population`] (closed-form averages over the overlaps);
//! 3. [`ode`] (right-hand sides, integrator) and [`simulators`] (direct, chain);
//! 4. [`analysis`]: pure functions of model, training and overlaps (stability, escape, scaling,
//!    fits, the quadratic network's geometry);
//! 5. [`config`] (experiment files, validated into an [`config::Experiment`]);
//! 6. [`studies`]: one module per command, with the runner, output files and figures they share;
//! 7. [`cli`].

// Docs write expectations as E[δλᵀ] and blocks as [X]_λν: math, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]
// Index loops mirror the equations (δ_i, λ_i, ...) and are kept as such.
#![allow(clippy::needless_range_loop)]

pub mod analysis;
pub mod cli;
pub mod config;
pub mod grid;
pub mod init;
pub mod isa;
pub mod model;
pub mod ode;
pub mod overlaps;
pub mod population;
pub mod rng;
pub mod simulators;
pub mod studies;
