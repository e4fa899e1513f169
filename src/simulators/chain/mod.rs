//! The exact reduced ("Gram chain") simulator for isotropic Gaussian inputs (theory.md §7).
//!
//! For x ~ N(0, I_N) the loss and the SGD update see x only through (λ, ν) and ‖x‖², so the Gram
//! matrix C = [[Q, M], [Mᵀ, P]] of the weight rows is a Markov chain at every finite N. This
//! simulator runs that chain exactly (no 1/N truncation: ‖x‖²/N, weight decay, label noise and the
//! mini-batch cross terms x_b·x_c all enter) at a cost per sample independent of N. It carries a
//! square-root factor F of C (C = F Fᵀ, d × r̃ with d = p + p*, r̃ ≤ d) and updates it by the exact
//! linear map the step induces on the rows' coordinates: see [`factor`] for the method, the
//! positive-semi-definiteness argument and the singular case. Trajectories have exactly the law of
//! [`super::direct::DirectSimulator`]'s (tested by `tests/chain_equivalence.rs`), not its numbers.
//!
//! Valid for isotropic Gaussian inputs only; the direct simulator remains the ground truth.

pub mod factor;

use self::factor::{bartlett, compress_rows, ChiTable, GramFactor};
use super::{record_loop, step_second_layer, Record, RunSpec, SampleStepper, Simulator, Trajectory};
use crate::init::{InitSpec, TeacherInit};
use crate::model::Activation;
use crate::overlaps::Overlaps;
use crate::rng::{standard_normal, stream, SimRng};
use nalgebra::DMatrix;
use std::ops::ControlFlow;
use std::time::Instant;

/// Stream numbers of a run's generators (see [`crate::rng::stream`]), as in the direct simulator.
const INIT_STREAM: u64 = 0;
const SGD_STREAM: u64 = 1;

/// Scratch space of one step, allocated once per run.
#[derive(Debug, Clone)]
struct Scratch {
    /// g_b (B rows of `stride`): the inputs' coordinates in the current basis.
    g: Vec<f64>,
    /// Bartlett factor A of the inputs' orthogonal parts (B rows of `stride`).
    a: Vec<f64>,
    /// z^b in internal order (B rows of d): teacher ν then student λ.
    z: Vec<f64>,
    /// coef[i·B + b] = c_ib = η δ_i^b /(B N), the coefficients of the student rows' update.
    coef: Vec<f64>,
    /// Label noises ξ_b.
    xi: Vec<f64>,
    /// Σ_b r^b g(λ_i^b) of the step (p), for a trained second layer.
    da: Vec<f64>,
    /// B' = min(B, N − r̃), the number of new columns of this step.
    bp: usize,
}

/// How ‖x‖² enters the update: `Exact` is the chain; `Unit` forces ‖x_b‖² = N (a deliberately
/// wrong variant, for the power check of the equivalence tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputNorm {
    Exact,
    Unit,
}

/// The exact Gram-chain simulator.
///
/// ```
/// use hdsgd::model::{Activation, Model, Training};
/// use hdsgd::simulators::{chain::ChainSimulator, RunSpec, Simulator};
/// use hdsgd::init::TeacherInit;
/// let spec = RunSpec {
///     model: Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0),
///     training: Training { eta: 0.1, weight_decay: 0.0, batch: 1 },
///     n: 1_000_000,
///     divergence_bound: 1e6,
/// };
/// // N = 10⁶ costs no more per sample than N = 10.
/// let mut sim = ChainSimulator::new(spec, TeacherInit::Orthonormal, 1.0, 42);
/// let traj = sim.run(&[0.0, 0.001, 0.002], &mut |_| std::ops::ControlFlow::Continue(()));
/// assert_eq!(traj.records.len(), 3);
/// assert_eq!(traj.samples, 2000);
/// // P = I exactly, Q₀ ≈ I:
/// assert_eq!(traj.initial.p[(0, 0)], 1.0);
/// assert!((traj.initial.q[(0, 0)] - 1.0).abs() < 0.01);
/// ```
#[derive(Debug, Clone)]
pub struct ChainSimulator {
    spec: RunSpec,
    factor: GramFactor,
    p_teacher: DMatrix<f64>,
    chi: ChiTable,
    rng: SimRng,
    scratch: Scratch,
    norm: InputNorm,
    /// The specialised step for this (p, p*, B), used once the basis is full.
    fast: Option<fn(&mut ChainSimulator) -> f64>,
}

impl ChainSimulator {
    /// A run whose initial Gram matrix has the law of the direct simulator's initialisation
    /// (teacher as `teacher`, student rows iid N(0, σ₀²)); initial condition and SGD samples come
    /// from separate streams of `seed`.
    pub fn new(spec: RunSpec, teacher: TeacherInit, sigma0: f64, seed: u64) -> Self {
        Self::with_init(spec, &InitSpec::uninformed(teacher, sigma0), seed)
    }

    /// A run whose initial Gram matrix has the law of [`crate::init::initial_weights`] for `init`
    /// (including an informed start), as `DirectSimulator::with_init`.
    pub fn with_init(spec: RunSpec, init: &InitSpec, seed: u64) -> Self {
        let (p, k, n, b) = (spec.model.p(), spec.model.p_star(), spec.n, spec.training.batch);
        let chi = ChiTable::new(n, p + k + b);
        let mut rng = stream(seed, INIT_STREAM);
        let mut factor = GramFactor::zeros(p, k, n, b);
        factor.initialise(&mut rng, &chi, init);
        Self::from_factor(spec, factor, chi, seed)
    }

    fn from_factor(spec: RunSpec, factor: GramFactor, chi: ChiTable, seed: u64) -> Self {
        let (d, b) = (factor.d(), spec.training.batch);
        let p_teacher = Overlaps::from_gram(&factor.gram(), factor.p).p;
        let fast = fixed_step(factor.p, factor.p_star, b);
        ChainSimulator {
            scratch: Scratch {
                g: vec![0.0; b * factor.stride],
                a: vec![0.0; b * factor.stride],
                z: vec![0.0; b * d],
                coef: vec![0.0; b * factor.p],
                xi: vec![0.0; b],
                da: vec![0.0; factor.p],
                bp: 0,
            },
            spec,
            factor,
            p_teacher,
            chi,
            rng: stream(seed, SGD_STREAM),
            norm: InputNorm::Exact,
            fast,
        }
    }

    /// The deliberately wrong chain with ‖x_b‖²/N forced to 1 (the orthogonal part rescaled to
    /// norm² N − ‖g_b‖², or 0 if negative): only for checking that the equivalence tests can reject
    /// a wrong simulator.
    #[doc(hidden)]
    pub fn with_unit_input_norm(mut self) -> Self {
        self.norm = InputNorm::Unit;
        self.fast = None;
        self
    }

    /// Current overlaps (exact: C = F Fᵀ; P is the initial one, never modified).
    pub fn overlaps(&self) -> Overlaps {
        let c = self.factor.gram();
        let mut o = Overlaps::from_gram(&c, self.factor.p);
        o.p.copy_from(&self.p_teacher);
        o
    }

    /// The student's current second layer a (its initial value while fixed).
    pub fn second_layer(&self) -> &[f64] {
        &self.spec.model.a
    }

    /// r̃, the dimension of the basis the rows are expressed in (≤ min(p + p*, N)).
    pub fn rank(&self) -> usize {
        self.factor.width
    }

    /// One SGD step on B fresh samples; returns Σ_b ½(r^b)², the summed training loss of the batch
    /// (non-finite when the run blew up). Cost O(B d (d + B)), independent of N; no allocation.
    pub fn step(&mut self) -> f64 {
        // The specialised step applies once the basis is full (r̃ = p + p* < N), i.e. after at
        // most p steps from any start; it performs the same floating-point operations in the same
        // order as the general one (one code path, constant dimensions), so the numbers are equal.
        if let Some(fast) = self.fast {
            if self.factor.width == self.factor.d() && self.spec.n > self.factor.width {
                return fast(self);
            }
        }
        self.draw();
        self.apply()
    }

    /// Draws one step's randomness into the scratch space: the inputs' coordinates g_b in the
    /// current basis, the label noises ξ_b, and the Bartlett factor A of their orthogonal parts.
    fn draw(&mut self) {
        let dims = self.dims();
        let sc = &mut self.scratch;
        let noisy = self.spec.model.noise > 0.0;
        sc.bp = draw_step(&mut self.rng, &self.chi, noisy, dims, &mut sc.g, &mut sc.xi, &mut sc.a);
        if self.norm == InputNorm::Unit {
            force_unit_norm(&sc.g, &mut sc.a, dims.nb, dims.s, dims.width, sc.bp, self.spec.n);
        }
    }

    /// The deterministic part of the step, from the draws in the scratch space (see [`factor`]).
    fn apply(&mut self) -> f64 {
        let dims = self.dims();
        let sc = &mut self.scratch;
        let draws = Draws {
            g: &sc.g,
            a: &sc.a,
            xi: &sc.xi,
            bp: sc.bp,
        };
        let loss = apply_step(
            &self.spec,
            &mut self.factor.f,
            dims,
            &draws,
            &mut sc.z,
            &mut sc.coef,
            &mut sc.da,
        );
        finish_second_layer(&mut self.spec, &mut sc.da);
        self.factor.width = (dims.width + sc.bp).min(dims.rt + dims.p);
        loss
    }

    /// The current step's dimensions.
    fn dims(&self) -> Dims {
        let f = &self.factor;
        Dims {
            p: f.p,
            ps: f.p_star,
            nb: self.spec.training.batch,
            s: f.stride,
            width: f.width,
            rt: f.rt,
        }
    }

    /// Runs `samples` samples (rounded up to whole steps) and returns the elapsed wall time in
    /// seconds, for throughput measurements.
    pub fn time_steps(&mut self, samples: u64) -> f64 {
        let steps = samples.div_ceil(self.spec.training.batch as u64);
        let start = Instant::now();
        let mut acc = 0.0;
        for _ in 0..steps {
            acc += self.step();
        }
        std::hint::black_box(acc);
        start.elapsed().as_secs_f64()
    }
}

/// Σ_m c_m g(z_m) (the network output for second layer `c`).
#[inline(always)]
fn output(act: Activation, c: &[f64], z: &[f64]) -> f64 {
    c.iter().zip(z).map(|(c, &z)| c * act.g(z)).sum()
}

/// Dimensions of a step: widths p, p*, batch B, row stride s of the factor, basis width r̃ (`width`)
/// and teacher rank r_t. Constants in the specialised steps, so the loops below unroll.
#[derive(Debug, Clone, Copy)]
struct Dims {
    p: usize,
    ps: usize,
    nb: usize,
    s: usize,
    width: usize,
    rt: usize,
}

/// One step's randomness (see [`ChainSimulator::draw`]): g_b (B rows of stride s), the Bartlett
/// factor A (B rows of stride s), the label noises ξ_b, and B' the number of new columns.
struct Draws<'a> {
    g: &'a [f64],
    a: &'a [f64],
    xi: &'a [f64],
    bp: usize,
}

/// Draws g_b ~ N(0, I_r̃), ξ_b ~ N(0, 1) (if `noisy`) and the Bartlett factor of the B inputs'
/// components orthogonal to the basis (Wishart(N − r̃, I_B) Gram), in this order from `rng`;
/// returns B' = min(B, N − r̃).
#[inline(always)]
fn draw_step(
    rng: &mut SimRng,
    chi: &ChiTable,
    noisy: bool,
    d: Dims,
    g: &mut [f64],
    xi: &mut [f64],
    a: &mut [f64],
) -> usize {
    for b in 0..d.nb {
        for x in g[b * d.s..b * d.s + d.width].iter_mut() {
            *x = standard_normal(rng);
        }
        xi[b] = if noisy { standard_normal(rng) } else { 0.0 };
    }
    bartlett(rng, chi, d.width, d.nb, d.s, a)
}

/// The second-layer update at the end of a step (trained layer only): a is O(p) exact state of the
/// chain, moved by the same law as in the direct simulator from the sums Σ_b r^b g(λ_i^b) that
/// [`apply_step`] accumulated in `da`; the next step's residuals and coefficients use the new a.
#[inline(always)]
fn finish_second_layer(spec: &mut RunSpec, da: &mut [f64]) {
    if let Some(sgd) = spec.model.train_a {
        step_second_layer(&mut spec.model.a, da, sgd, spec.n, spec.training.batch);
    }
}

/// The deterministic part of a step (see [`factor`]): z^b = F g_b, the residuals r^b, the
/// coefficients c_ib = η δ_i^b /(B N) with δ_i^b = a_i g'(λ_i^b) r^b, the update of the student
/// rows F_i ← [κ F_i + Σ_b c_ib g_b, Σ_b c_ib A_b], and the compression back to r̃ ≤ p + p*
/// columns; for a trained second layer, adds Σ_b r^b g(λ_i^b) to `da` (see [`finish_second_layer`]).
/// Returns Σ_b ½ (r^b)².
#[inline(always)]
fn apply_step(
    spec: &RunSpec,
    f: &mut [f64],
    dm: Dims,
    dr: &Draws,
    z_all: &mut [f64],
    coef_all: &mut [f64],
    da: &mut [f64],
) -> f64 {
    let model = &spec.model;
    let (p, ps, nb, s, width, rt) = (dm.p, dm.ps, dm.nb, dm.s, dm.width, dm.rt);
    let (n, d, bp) = (spec.n, p + ps, dr.bp);
    let noise_sd = model.noise.sqrt();
    let coef_scale = spec.training.eta / (nb as f64 * n as f64);
    let act = model.activation;
    let (a_c, v_c) = (&model.a[..p], &model.v[..ps]);
    let mut loss = 0.0;
    for b in 0..nb {
        let g = &dr.g[b * s..b * s + width];
        // z = F g (ν, λ exactly), using the lower-trapezoidal structure.
        let z = &mut z_all[b * d..(b + 1) * d];
        for (row, zr) in z.iter_mut().enumerate() {
            let len = if row < ps {
                (row + 1).min(width)
            } else {
                (rt + row - ps + 1).min(width)
            };
            let fr = &f[row * s..row * s + len];
            *zr = fr.iter().zip(g).map(|(a, b)| a * b).sum();
        }
        let (nu, lambda) = z.split_at(ps);
        let r = output(act, v_c, nu) + noise_sd * dr.xi[b] - output(act, a_c, lambda);
        loss += 0.5 * r * r;
        for i in 0..p {
            // c_ib = η δ_i^b /(B N), δ_i = a_i g'(λ_i) r
            coef_all[i * nb + b] = coef_scale * a_c[i] * act.dg(lambda[i]) * r;
        }
        if model.train_a.is_some() {
            for (d, &l) in da.iter_mut().zip(lambda) {
                *d += r * act.g(l);
            }
        }
    }
    // Student rows: F_i ← [κ F_i + Σ_b c_ib g_b, Σ_b c_ib A_b]; teacher rows unchanged.
    let decay = 1.0 - spec.training.eta * spec.training.weight_decay / n as f64;
    for i in 0..p {
        let row = &mut f[(ps + i) * s..(ps + i + 1) * s];
        let coef = &coef_all[i * nb..(i + 1) * nb];
        if decay != 1.0 {
            row[..width].iter_mut().for_each(|x| *x *= decay);
        }
        row[width..width + bp].iter_mut().for_each(|x| *x = 0.0);
        for (b, &cb) in coef.iter().enumerate() {
            let g = &dr.g[b * s..b * s + width];
            row[..width].iter_mut().zip(g).for_each(|(x, g)| *x += cb * g);
            // A is lower trapezoidal: row b has entries in columns ≤ b only.
            let a = &dr.a[b * s..b * s + bp.min(b + 1)];
            row[width..width + a.len()]
                .iter_mut()
                .zip(a)
                .for_each(|(x, a)| *x += cb * a);
        }
    }
    compress_rows(f, s, ps, p, rt, width + bp);
    loss
}

/// The step for B = 1 at full width r̃ = p + p* < N with p = P, p* = PS known at compile time:
/// [`draw_step`] and [`apply_step`] with constant dimensions and the scratch space on the stack.
/// Same operations in the same order as the general path, hence the same numbers.
fn step_fixed<const PS: usize, const P: usize>(sim: &mut ChainSimulator) -> f64 {
    const MAX: usize = MAX_FIXED + MAX_FIXED + 1;
    let d = PS + P;
    let dims = Dims {
        p: P,
        ps: PS,
        nb: 1,
        s: d + 1,
        width: d,
        rt: PS,
    };
    debug_assert_eq!((sim.factor.stride, sim.factor.width, sim.factor.rt), (d + 1, d, PS));
    let (mut g, mut a, mut xi, mut z, mut coef) = ([0.0; MAX], [0.0; MAX], [0.0; 1], [0.0; MAX], [0.0; MAX_FIXED]);
    let mut da = [0.0; MAX_FIXED];
    let noisy = sim.spec.model.noise > 0.0;
    let bp = draw_step(
        &mut sim.rng,
        &sim.chi,
        noisy,
        dims,
        &mut g[..d + 1],
        &mut xi,
        &mut a[..d + 1],
    );
    let draws = Draws {
        g: &g[..d + 1],
        a: &a[..d + 1],
        xi: &xi,
        bp,
    };
    let loss = apply_step(
        &sim.spec,
        &mut sim.factor.f,
        dims,
        &draws,
        &mut z[..d],
        &mut coef[..P],
        &mut da[..P],
    );
    finish_second_layer(&mut sim.spec, &mut da[..P]);
    loss
}

/// Largest p and p* with a specialised step ([`step_fixed`]).
const MAX_FIXED: usize = 4;

/// The specialised step for (p, p*, B), if there is one.
fn fixed_step(p: usize, ps: usize, batch: usize) -> Option<fn(&mut ChainSimulator) -> f64> {
    macro_rules! table {
        ($(($a:literal, $b:literal)),*) => {
            match (ps, p) {
                $(($a, $b) => Some(step_fixed::<$a, $b> as fn(&mut ChainSimulator) -> f64),)*
                _ => None,
            }
        };
    }
    if batch != 1 {
        return None;
    }
    table!(
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (3, 1),
        (3, 2),
        (3, 3),
        (3, 4),
        (4, 1),
        (4, 2),
        (4, 3),
        (4, 4)
    )
}

/// The wrong variant: rescales each A_b so that ‖g_b‖² + ‖A_b‖² = N.
fn force_unit_norm(g: &[f64], a: &mut [f64], nb: usize, s: usize, width: usize, bp: usize, n: usize) {
    for b in 0..nb {
        let g2: f64 = g[b * s..b * s + width].iter().map(|x| x * x).sum();
        let row = &mut a[b * s..b * s + bp.min(b + 1)];
        let a2: f64 = row.iter().map(|x| x * x).sum();
        let target = (n as f64 - g2).max(0.0);
        let f = if a2 > 0.0 { (target / a2).sqrt() } else { 0.0 };
        row.iter_mut().for_each(|x| *x *= f);
    }
}

impl Simulator for ChainSimulator {
    fn initial_overlaps(&self) -> Overlaps {
        self.overlaps()
    }

    fn run(&mut self, grid: &[f64], observe: &mut dyn FnMut(&Record) -> ControlFlow<()>) -> Trajectory {
        record_loop(self, grid, observe)
    }
}

impl SampleStepper for ChainSimulator {
    fn spec(&self) -> &RunSpec {
        &self.spec
    }

    fn step_once(&mut self) -> f64 {
        self.step()
    }

    fn within_bound(&mut self) -> bool {
        self.factor.max_abs_student_overlap() <= self.spec.divergence_bound
    }

    fn current_overlaps(&mut self) -> Overlaps {
        self.overlaps()
    }
}

/// Throughput of the chain in samples per second on the calling thread: `samples` samples of one
/// run (orthonormal teacher, σ₀ = 1) after a warm-up of samples/10.
///
/// ```
/// use hdsgd::model::{Activation, Model, Training};
/// use hdsgd::simulators::{chain::bench_chain, RunSpec};
/// let spec = RunSpec {
///     model: Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0),
///     training: Training { eta: 0.01, weight_decay: 0.0, batch: 1 },
///     n: 10_000,
///     divergence_bound: 1e6,
/// };
/// assert!(bench_chain(spec, 10_000, 1) > 0.0);
/// ```
pub fn bench_chain(spec: RunSpec, samples: u64, seed: u64) -> f64 {
    let mut sim = ChainSimulator::new(spec, TeacherInit::Orthonormal, 1.0, seed);
    sim.time_steps(samples / 10);
    let secs = sim.time_steps(samples);
    let steps = samples.div_ceil(sim.spec.training.batch as u64);
    (steps * sim.spec.training.batch as u64) as f64 / secs
}

#[cfg(test)]
mod tests;
