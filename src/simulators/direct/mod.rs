//! The direct simulator: one-pass SGD on the actual N-dimensional weights (theory.md §2).
//!
//! Each step draws B fresh inputs x^b ~ N(0, I_N), computes λ^b = Wx^b/√N, ν^b = W*x^b/√N,
//! the residual r^b = Σ_k v_k g(ν_k^b) + √Δ ξ^b − Σ_i a_i g(λ_i^b), δ_i^b = a_i g'(λ_i^b) r^b, and
//! updates w_i ← w_i (1 − ηℓ₂/N) + (η/(B√N)) Σ_b δ_i^b x^b. Cost O((p + p*) N B) per step; no
//! allocation in the step (its scratch space is allocated once per run).
//!
//! Speed (issue 5, docs/performance.md): the inputs come from the fast exact generator
//! [`FastNormal`], generated chunk by chunk and consumed while hot in cache by explicit-SIMD kernels
//! ([`kernel`], AVX2/FMA chosen at run time; the AVX-512F fused pass); how a step traverses the
//! weights, and over how many threads, is chosen in one place (`traverse`), and every traversal
//! gives the same numbers bit for bit. W is streamed once per step: the update of step t is
//! kept *pending* and applied during the pass of step t + 1 that computes λ = W x_{t+1}/√N with the
//! updated rows (so λ is exactly the projection on the current weights, as in theory.md §2).
//! Pending updates are flushed, with the same floating-point operations, before the overlaps are
//! computed and before [`DirectSimulator::step`] or [`Simulator::run`] return, so a run's numbers do
//! not depend on when that happens; they depend only on the seed (and on the instruction set,
//! through FMA rounding of the projections and updates, the generator itself being bit-identical).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod kernel;
#[cfg(target_arch = "x86_64")]
mod split;
#[cfg(target_arch = "x86_64")]
mod team;
mod traverse;

#[cfg(target_arch = "x86_64")]
pub use split::SPLIT_MIN_N;

use super::{record_loop, step_second_layer, Record, RunSpec, SampleStepper, Simulator, Trajectory};
use crate::init::{initial_weights, InitSpec, TeacherInit};
use crate::isa::Isa;
use crate::overlaps::Overlaps;
use crate::rng::{standard_normal, stream, FastNormal, Generator, SimRng, NORMAL_BLOCK};
use kernel::Acc;
use nalgebra::DMatrix;
use ndarray::{Array2, ArrayView2};
use rand::Rng;
use std::ops::ControlFlow;
use traverse::{Traversal, SUPER_CHUNK};

/// Bytes of padding around the buffers a step writes, and alignment of the simulator: two cache
/// lines (the adjacent-line prefetcher pairs them).
const PAD_BYTES: usize = 128;

/// A heap slice with [`PAD_BYTES`] of unused padding on both sides, so that no other allocation
/// shares a cache line with it. Why: simulators created one after another by one thread get
/// neighbouring heap blocks; when they then run on different cores, a line holding the end of one's
/// hot buffer and the start of another's would bounce between the cores every step (false sharing).
#[derive(Debug, Clone, PartialEq)]
struct Padded<T> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Clone> Padded<T> {
    const PAD: usize = PAD_BYTES.div_ceil(std::mem::size_of::<T>());

    fn new(value: T, len: usize) -> Self {
        Padded {
            buf: vec![value; len + 2 * Self::PAD],
            len,
        }
    }
}

impl<T: Clone> std::ops::Deref for Padded<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[Self::PAD..Self::PAD + self.len]
    }
}

impl<T: Clone> std::ops::DerefMut for Padded<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[Self::PAD..Self::PAD + self.len]
    }
}

/// Scratch space of one step, allocated once. Every buffer written by the step is [`Padded`].
#[derive(Debug, Clone)]
struct Scratch {
    /// The B inputs of the current step (B rows of stride `npad`, N used; the generator writes
    /// whole blocks, the tail beyond N is ignored).
    x_new: Padded<f64>,
    /// The B inputs of the previous step, needed by its pending update.
    x_prev: Padded<f64>,
    /// Row stride of the input buffers: N rounded up to a multiple of [`NORMAL_BLOCK`].
    npad: usize,
    /// Lanes of the dot products: student (i·B + b) then teacher (p·B + k·B + b).
    acc: Padded<Acc>,
    /// λ^b (p each).
    lambda: Padded<f64>,
    /// ν^b (p* each).
    nu: Padded<f64>,
    /// coef[i·B + b] = η δ_i^b /(B√N) of the last step.
    coef: Padded<f64>,
    /// Σ_b r^b g(λ_i^b) of the current step (p), for a trained second layer.
    da: Padded<f64>,
    /// 1 − ηℓ₂/N.
    decay: f64,
    /// Whether the update of the last step (coef, decay, x_prev) is still to be applied to W.
    pending: bool,
    /// [`SUPER_CHUNK`] (0 disables super-chunks: tests compare both orders).
    super_chunk: usize,
}

/// The direct N-dimensional SGD simulator.
///
/// ```
/// use hdsgd::model::{Activation, Model, Training};
/// use hdsgd::simulators::{direct::DirectSimulator, RunSpec, Simulator};
/// use hdsgd::init::TeacherInit;
/// let spec = RunSpec {
///     model: Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0),
///     training: Training { eta: 0.1, weight_decay: 0.0, batch: 1 },
///     n: 200,
///     divergence_bound: 1e6,
/// };
/// let mut sim = DirectSimulator::new(spec, TeacherInit::Orthonormal, 1.0, 42);
/// let traj = sim.run(&[0.0, 1.0, 2.0], &mut |_| std::ops::ControlFlow::Continue(()));
/// assert_eq!(traj.records.len(), 3);
/// assert_eq!(traj.samples, 400);
/// ```
// Aligned to PAD_BYTES (and so a multiple of it in size): simulators stored side by side (e.g. in
// a Vec, then run on different threads) never share a cache line, although each writes its own
// generator state and scratch fields every step.
#[derive(Debug, Clone)]
#[repr(align(128))]
pub struct DirectSimulator {
    spec: RunSpec,
    w: Array2<f64>,
    w_star: Array2<f64>,
    p_teacher: DMatrix<f64>,
    /// Label noise ξ.
    rng: SimRng,
    /// The inputs x.
    gauss: FastNormal,
    isa: Isa,
    scratch: Scratch,
    /// The split step over several threads, if set ([`DirectSimulator::with_split`]).
    #[cfg(target_arch = "x86_64")]
    split: Option<split::Split>,
}

/// Stream numbers of a run's generators (see [`crate::rng::stream`]).
const INIT_STREAM: u64 = 0;
const SGD_STREAM: u64 = 1;
const INPUT_STREAM: u64 = 2;

impl DirectSimulator {
    /// A run with random initial weights: teacher as `teacher`, student rows iid N(0, σ₀²).
    /// Initial weights and SGD samples come from separate streams of `seed`.
    pub fn new(spec: RunSpec, teacher: TeacherInit, sigma0: f64, seed: u64) -> Self {
        Self::with_init(spec, &InitSpec::uninformed(teacher, sigma0), seed)
    }

    /// A run with random initial weights drawn as `init` describes (see [`initial_weights`]).
    pub fn with_init(spec: RunSpec, init: &InitSpec, seed: u64) -> Self {
        let mut rng = stream(seed, INIT_STREAM);
        let (w, w_star) = initial_weights(&mut rng, spec.model.p(), spec.model.p_star(), spec.n, init);
        Self::from_weights(spec, w, w_star, seed)
    }

    /// A run from explicit weights (p × N student, p* × N teacher).
    pub fn from_weights(spec: RunSpec, w: Array2<f64>, w_star: Array2<f64>, seed: u64) -> Self {
        let (p, k, n, b) = (spec.model.p(), spec.model.p_star(), spec.n, spec.training.batch);
        assert_eq!(w.dim(), (p, n), "student weights must be p × N");
        assert_eq!(w_star.dim(), (k, n), "teacher weights must be p* × N");
        let w = w.as_standard_layout().into_owned();
        let w_star = w_star.as_standard_layout().into_owned();
        let p_teacher = Overlaps::from_weights(w_star.view(), w_star.view()).p;
        let npad = n.div_ceil(NORMAL_BLOCK) * NORMAL_BLOCK;
        DirectSimulator {
            scratch: Scratch {
                x_new: Padded::new(0.0, b * npad),
                x_prev: Padded::new(0.0, b * npad),
                npad,
                acc: Padded::new([0.0; 8], b * (p + k)),
                lambda: Padded::new(0.0, b * p),
                nu: Padded::new(0.0, b * k),
                coef: Padded::new(0.0, b * p),
                da: Padded::new(0.0, p),
                decay: 1.0,
                pending: false,
                super_chunk: SUPER_CHUNK,
            },
            spec,
            w,
            w_star,
            p_teacher,
            rng: stream(seed, SGD_STREAM),
            gauss: FastNormal::new(stream(seed, INPUT_STREAM).next_u64()),
            isa: Isa::detect(),
            #[cfg(target_arch = "x86_64")]
            split: None,
        }
    }

    /// The same run with each step's N columns split over up to `threads` threads (the calling
    /// one and `threads − 1` of the simulator's own, which busy-wait between steps), for when
    /// seeds alone cannot fill the cores (one run at large N). Bit-identical to the unsplit run: the split step generates the same inputs (with a jump-ahead of the
    /// stream) and sums the same products in the same order (see the `split` module). It applies
    /// to B = 1 steps with p + p* ≤ 8 on the AVX-512F and AVX2 kernels, from N = [`SPLIT_MIN_N`]
    /// on; elsewhere (portable kernels, mini-batches, more rows), or with `threads` ≤ 1, steps run
    /// on one thread as before.
    pub fn with_split(mut self, threads: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let (p, k) = (self.spec.model.p(), self.spec.model.p_star());
            self.split = (self.spec.training.batch == 1 && p + k <= avx512::MAX_ROWS)
                .then(|| split::Split::new(self.spec.n, p + k, threads))
                .flatten();
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = threads;
        self
    }

    /// Threads a step uses (1 unless [`Self::with_split`] applies).
    pub fn step_threads(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2Fma {
            if let Some(sp) = &self.split {
                return sp.threads();
            }
        }
        1
    }

    /// The same run on another instruction set for its kernels (tests and benchmarks; the input
    /// stream is the same on every instruction set).
    pub fn with_isa(mut self, isa: Isa) -> Self {
        let isa = if isa.available() { isa } else { Isa::Portable };
        self.isa = isa;
        self.gauss.set_isa(isa);
        self
    }

    /// The same run with the inputs from another [`Generator`] (the default is Box–Muller, the
    /// generator of every shipped result). Set it before the first step.
    pub fn with_generator(mut self, generator: Generator) -> Self {
        self.gauss = self.gauss.generator(generator);
        self
    }

    /// The [`Generator`] of the inputs.
    pub fn generator(&self) -> Generator {
        self.gauss.generator_kind()
    }

    /// The instruction set of the kernels.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The same run without the AVX-512F code (generator and fused pass), on AVX2 where the
    /// kernels are AVX2 (tests and benchmarks: both give bit-identical runs).
    pub fn without_avx512(mut self) -> Self {
        self.gauss.set_avx512(false);
        self
    }

    /// The code paths of a step, for reports: "avx512f fused pass", "avx2+fma" or "portable".
    pub fn kernel_name(&self) -> &'static str {
        match self.traversal() {
            Traversal::Fused => "avx512f fused pass",
            _ => self.isa.name(),
        }
    }

    /// Current student weights (p × N). (Updates are only pending inside [`Simulator::run`], so
    /// outside of it the stored weights are the current ones.)
    pub fn weights(&self) -> ArrayView2<'_, f64> {
        debug_assert!(!self.scratch.pending);
        self.w.view()
    }

    /// The student's current second layer a (its initial value while fixed).
    pub fn second_layer(&self) -> &[f64] {
        &self.spec.model.a
    }

    /// Teacher weights (p* × N).
    pub fn teacher(&self) -> ArrayView2<'_, f64> {
        self.w_star.view()
    }

    /// Current overlaps (O(p(p + p*)N)).
    pub fn overlaps(&self) -> Overlaps {
        debug_assert!(!self.scratch.pending, "overlaps of stale weights");
        let w = self.w.view();
        let n = self.spec.n as f64;
        let dot = |a: ArrayView2<f64>, b: ArrayView2<f64>| {
            DMatrix::from_fn(a.nrows(), b.nrows(), |i, j| a.row(i).dot(&b.row(j)) / n)
        };
        Overlaps::new(dot(w, w), dot(w, self.w_star.view()), self.p_teacher.clone())
    }

    /// A sufficient condition for [`Overlaps::is_bounded`] at O(pN) instead of O(p(p + p*)N), for
    /// the divergence check of wide students: by Cauchy–Schwarz |Q_ij| ≤ √(Q_ii Q_jj) ≤ max_i Q_ii
    /// and |M_ik| ≤ √(Q_ii P_kk), so every entry is within `bound` when max Q_ii ≤ b and
    /// max Q_ii · max P_kk ≤ b². The relative margin 10⁻⁶ covers the rounding of the computed
    /// dot products (≤ N·2⁻⁵³ ≈ 10⁻⁹ relative at N = 10⁷), so this never says true where the full
    /// check would say false: the divergence times, and every output, are unchanged. A non-finite
    /// row fails the comparison (NaN) and falls through to the full check.
    fn clearly_bounded(&self, bound: f64) -> bool {
        let n = self.spec.n as f64;
        let lim = bound * (1.0 - 1e-6);
        let p_max = (0..self.p_teacher.nrows())
            .map(|k| self.p_teacher[(k, k)])
            .fold(0.0, f64::max);
        let mut q_max = 0.0f64;
        for row in self.w.rows() {
            let q = row.dot(&row) / n;
            if q.is_nan() || q > lim {
                return false;
            }
            q_max = q_max.max(q);
        }
        q_max * p_max <= lim * lim
    }

    /// One SGD step on B fresh samples; returns Σ_b ½(r^b)², the summed training loss of the batch
    /// (non-finite when the run blew up). The weights are fully updated on return.
    pub fn step(&mut self) -> f64 {
        let loss = self.step_fused();
        self.flush();
        loss
    }

    /// `steps` SGD steps without recording (the fast path of [`Simulator::run`], for benchmarks
    /// and callers that only need the final weights); returns the summed training loss.
    pub fn advance(&mut self, steps: u64) -> f64 {
        let mut loss = 0.0;
        for _ in 0..steps {
            loss += self.step_fused();
        }
        self.flush();
        loss
    }

    /// Applies the pending update of the last step to W (no-op if none).
    fn flush(&mut self) {
        let s = &mut self.scratch;
        if !s.pending {
            return;
        }
        let (n, batch) = (self.spec.n, self.spec.training.batch);
        let w = self.w.as_slice_mut().expect("standard layout");
        for (i, row) in w.chunks_exact_mut(n).enumerate() {
            let c = &s.coef[i * batch..(i + 1) * batch];
            kernel::axpy_row(self.isa, row, s.decay, c, &s.x_prev, s.npad);
        }
        s.pending = false;
    }

    /// One SGD step (theory.md §2) on B fresh inputs x^b, leaving its update pending:
    ///
    /// w_i ← w_i (1 − ηℓ₂/N) + (η/(B√N)) Σ_b δ_i^b x^b,   δ_i^b = a_i g'(λ_i^b) r^b,
    /// r^b = Σ_k v_k g(ν_k^b) + √Δ ξ^b − Σ_i a_i g(λ_i^b),   λ^b = W x^b/√N,   ν^b = W* x^b/√N.
    ///
    /// The pass ([`Self::pass`]) generates the x^b, applies the previous step's pending update to
    /// W and accumulates the projections on the updated rows; this step's update is applied by
    /// the next pass, or by [`Self::flush`]. A trained second layer ([`crate::model::SecondLayerSgd`])
    /// moves at the end of the step, O(p) work on the same λ^b and r^b (the W update above uses the a
    /// of before the step): a_i ← a_i (1 − η_a ℓ_a/N) + (η_a/(BN)) Σ_b r^b g(λ_i^b). Returns Σ_b ½(r^b)².
    fn step_fused(&mut self) -> f64 {
        self.pass();
        let model = &self.spec.model;
        let (p, k, n, batch) = (model.p(), model.p_star(), self.spec.n, self.spec.training.batch);
        let (eta, l2) = (self.spec.training.eta, self.spec.training.weight_decay);
        let inv_sqrt_n = 1.0 / (n as f64).sqrt();
        let noise_sd = model.noise.sqrt();
        let lr = eta / batch as f64 * inv_sqrt_n;
        let s = &mut self.scratch;
        let (acc_s, acc_t) = s.acc.split_at(p * batch);
        let mut loss = 0.0;
        for b in 0..batch {
            let lambda = &mut s.lambda[b * p..(b + 1) * p];
            let nu = &mut s.nu[b * k..(b + 1) * k];
            for i in 0..p {
                lambda[i] = kernel::reduce(&acc_s[i * batch + b]) * inv_sqrt_n;
            }
            for r in 0..k {
                nu[r] = kernel::reduce(&acc_t[r * batch + b]) * inv_sqrt_n;
            }
            let xi = if noise_sd > 0.0 {
                standard_normal(&mut self.rng)
            } else {
                0.0
            };
            let r = model.teacher_output(nu) + noise_sd * xi - model.student_output(lambda);
            loss += 0.5 * r * r;
            for i in 0..p {
                // η δ_i^b /(B√N)
                s.coef[i * batch + b] = lr * model.a[i] * model.activation.dg(lambda[i]) * r;
            }
            if model.train_a.is_some() {
                for (d, &l) in s.da.iter_mut().zip(lambda.iter()) {
                    *d += r * model.activation.g(l);
                }
            }
        }
        s.decay = 1.0 - eta * l2 / n as f64;
        s.pending = true;
        std::mem::swap(&mut s.x_new, &mut s.x_prev);
        if let Some(sgd) = self.spec.model.train_a {
            step_second_layer(&mut self.spec.model.a, &mut s.da, sgd, n, batch);
        }
        loss
    }
}

impl DirectSimulator {
    /// The overlaps of the true current weights (pending update applied first).
    fn flushed_overlaps(&mut self) -> Overlaps {
        self.flush();
        self.overlaps()
    }
}

impl Simulator for DirectSimulator {
    fn initial_overlaps(&self) -> Overlaps {
        self.overlaps()
    }

    fn run(&mut self, grid: &[f64], observe: &mut dyn FnMut(&Record) -> ControlFlow<()>) -> Trajectory {
        let traj = record_loop(self, grid, observe);
        self.flush();
        traj
    }

    fn weights_now(&self) -> Option<(Array2<f64>, Array2<f64>, Vec<f64>)> {
        Some((
            self.weights().to_owned(),
            self.w_star.clone(),
            self.spec.model.a.clone(),
        ))
    }
}

impl SampleStepper for DirectSimulator {
    fn spec(&self) -> &RunSpec {
        &self.spec
    }

    fn step_once(&mut self) -> f64 {
        self.step_fused()
    }

    fn within_bound(&mut self) -> bool {
        let bound = self.spec.divergence_bound;
        self.flush();
        self.clearly_bounded(bound) || self.overlaps().is_bounded(bound)
    }

    fn current_overlaps(&mut self) -> Overlaps {
        self.flushed_overlaps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{student_weights, teacher_weights};
    use crate::isa::{simd_tests_enabled, SimdFeature};
    use crate::model::{Activation, Model, SecondLayerSgd, Training};
    use crate::rng::fill_standard_normal;
    use rand::SeedableRng;

    /// The cheap divergence pre-check never accepts what the full check refuses: random widths,
    /// scales straddling the bound, and rows made nearly parallel (|Q_ij| close to max Q_ii).
    #[test]
    fn clearly_bounded_implies_bounded() {
        let mut accepted = 0;
        for trial in 0..400 {
            let (p, k, n) = (1 + trial % 5, 1 + trial % 3, 20 + trial % 7);
            let model = Model::new(Activation::Erf, vec![1.0; p], vec![1.0; k], 0.0);
            let training = Training {
                eta: 0.1,
                weight_decay: 0.0,
                batch: 1,
            };
            let spec = RunSpec {
                model,
                training,
                n,
                divergence_bound: 1e6,
            };
            let mut sim = DirectSimulator::new(spec, TeacherInit::Gaussian, 1.0, trial as u64);
            let scale = 0.5 + (trial % 40) as f64 / 20.0;
            let w0: Vec<f64> = sim.weights().row(0).to_vec();
            for (i, mut row) in sim.w.rows_mut().into_iter().enumerate() {
                for (j, x) in row.iter_mut().enumerate() {
                    let parallel = if trial % 2 == 0 { w0[j] } else { *x };
                    *x = scale * (parallel + 1e-3 * i as f64 * *x);
                }
            }
            let bound = 4.0;
            if sim.clearly_bounded(bound) {
                accepted += 1;
                assert!(sim.overlaps().is_bounded(bound), "trial {trial}");
            }
        }
        assert!(accepted > 50 && accepted < 400, "{accepted}");
    }

    /// The update is −η·(∂ℓ/∂w_i)·√N/... : check δ_i x/√N against finite differences of the
    /// per-sample loss ℓ(W) = ½(y − ŷ(W))², i.e. ∂ℓ/∂w_ij = −δ_i x_j/√N.
    #[test]
    fn gradient_matches_finite_differences() {
        for act in [Activation::Quadratic, Activation::Erf, Activation::Linear] {
            let n = 7;
            let model = Model::new(act, vec![0.7, -0.4], vec![1.0, 0.5], 0.0);
            let mut rng = SimRng::seed_from_u64(3);
            let w = student_weights(&mut rng, 2, n, 1.0);
            let ws = teacher_weights(&mut rng, 2, n, TeacherInit::Gaussian);
            let mut x = vec![0.0; n];
            fill_standard_normal(&mut rng, &mut x);
            let loss = |w: &Array2<f64>| {
                let mut l = [0.0; 2];
                let mut nu = [0.0; 2];
                kernel::project(w.as_slice().unwrap(), n, &x, 1.0 / (n as f64).sqrt(), &mut l);
                kernel::project(ws.as_slice().unwrap(), n, &x, 1.0 / (n as f64).sqrt(), &mut nu);
                let r = model.teacher_output(&nu) - model.student_output(&l);
                (0.5 * r * r, l, r)
            };
            let (_, lambda, r) = loss(&w);
            for i in 0..2 {
                for j in 0..n {
                    let h = 1e-6;
                    let mut wp = w.clone();
                    wp[(i, j)] += h;
                    let mut wm = w.clone();
                    wm[(i, j)] -= h;
                    let fd = (loss(&wp).0 - loss(&wm).0) / (2.0 * h);
                    let delta = model.a[i] * act.dg(lambda[i]) * r;
                    let analytic = -delta * x[j] / (n as f64).sqrt();
                    assert!(
                        (fd - analytic).abs() < 1e-7 * (1.0 + analytic.abs()),
                        "{act:?} {i} {j}: {fd} vs {analytic}"
                    );
                }
            }
        }
    }

    /// One step moves w exactly by (η/√N) δ x (B = 1, no decay): recompute it by hand.
    #[test]
    fn step_is_the_sgd_update() {
        let n = 16;
        let spec = RunSpec {
            model: Model::new(Activation::Quadratic, vec![0.5, 0.5], vec![1.0], 0.0),
            training: Training {
                eta: 0.3,
                weight_decay: 0.0,
                batch: 1,
            },
            n,
            divergence_bound: 1e6,
        };
        let mut sim = DirectSimulator::new(spec.clone(), TeacherInit::Gaussian, 1.0, 9);
        let w0 = sim.w.clone();
        sim.step();
        let x = sim.scratch.x_prev[..n].to_vec();
        let lam: Vec<f64> = (0..2)
            .map(|i| w0.row(i).iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() / 4.0)
            .collect();
        let nu: f64 = sim.w_star.row(0).iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() / 4.0;
        let r = nu * nu - 0.5 * (lam[0] * lam[0] + lam[1] * lam[1]);
        for i in 0..2 {
            for j in 0..n {
                let expect = w0[(i, j)] + 0.3 / 4.0 * 0.5 * 2.0 * lam[i] * r * x[j];
                assert!((sim.w[(i, j)] - expect).abs() < 1e-12);
            }
        }
    }

    fn spec(act: Activation, n: usize, batch: usize, l2: f64, noise: f64) -> RunSpec {
        RunSpec {
            model: Model::new(act, vec![0.6, 0.4, -0.3], vec![1.0, 0.5], noise),
            training: Training {
                eta: 0.4,
                weight_decay: l2,
                batch,
            },
            n,
            divergence_bound: 1e6,
        }
    }

    /// Every step of the fast simulator is theory.md §2's update computed from the weights before
    /// the step, with the reference kernels (`project`, `update`) on the same inputs and label
    /// noise: all activations, B = 1 and 3, with and without weight decay and label noise, N with a
    /// partial last chunk and several chunks. Weights are O(1) and the two computations differ by
    /// rounding only (a few ulps per step, see the kernel tests), hence the 1e-12 tolerance.
    #[test]
    fn steps_follow_the_law_exactly() {
        for act in [
            Activation::Quadratic,
            Activation::Erf,
            Activation::Linear,
            Activation::Relu,
        ] {
            for (n, batch) in [(37, 1), (1100, 1), (37, 3), (300, 5)] {
                for (l2, noise) in [(0.0, 0.0), (0.7, 0.2)] {
                    let sp = spec(act, n, batch, l2, noise);
                    let mut sim = DirectSimulator::new(sp.clone(), TeacherInit::Gaussian, 1.0, 5);
                    let model = &sp.model;
                    let sq = (n as f64).sqrt();
                    for _ in 0..4 {
                        let w0 = sim.w.clone();
                        let mut noise_rng = sim.rng.clone();
                        let loss = sim.step();
                        let npad = sim.scratch.npad;
                        let xs: Vec<f64> = (0..batch)
                            .flat_map(|b| sim.scratch.x_prev[b * npad..b * npad + n].to_vec())
                            .collect();
                        let mut coef = vec![0.0; 3 * batch];
                        let mut loss_ref = 0.0;
                        for b in 0..batch {
                            let x = &xs[b * n..(b + 1) * n];
                            let (mut l, mut nu) = ([0.0; 3], [0.0; 2]);
                            kernel::project(w0.as_slice().unwrap(), n, x, 1.0 / sq, &mut l);
                            kernel::project(sim.w_star.as_slice().unwrap(), n, x, 1.0 / sq, &mut nu);
                            let xi = if noise > 0.0 {
                                standard_normal(&mut noise_rng)
                            } else {
                                0.0
                            };
                            let r = model.teacher_output(&nu) + noise.sqrt() * xi - model.student_output(&l);
                            loss_ref += 0.5 * r * r;
                            for i in 0..3 {
                                coef[i * batch + b] = 0.4 / (batch as f64 * sq) * model.a[i] * act.dg(l[i]) * r;
                            }
                        }
                        let mut w_ref = w0.clone();
                        let decay = 1.0 - 0.4 * l2 / n as f64;
                        kernel::update(w_ref.as_slice_mut().unwrap(), n, decay, &coef, &xs);
                        assert!((loss - loss_ref).abs() < 1e-12 * (1.0 + loss_ref), "{act:?} loss");
                        for (a, b) in sim.w.iter().zip(w_ref.iter()) {
                            assert!((a - b).abs() < 1e-12, "{act:?} n={n} B={batch}: {a} vs {b}");
                        }
                    }
                }
            }
        }
    }

    /// Pending updates are flushed with the same operations as the fused pass applies them: a run
    /// is bit-identical whether it is flushed every step (public `step`), never until the end, or
    /// at the records of any grid.
    #[test]
    fn flush_timing_does_not_change_the_run() {
        for batch in [1, 2] {
            let mut sp = spec(Activation::Quadratic, 211, batch, 0.3, 0.1);
            sp.training.eta = 0.05; // stable for t ≤ 2
            let mut a = DirectSimulator::new(sp.clone(), TeacherInit::Gaussian, 1.0, 8);
            let mut b = a.clone();
            let steps = crate::simulators::grid_steps(&[2.0], 211, batch)[0];
            for _ in 0..steps {
                a.step();
                b.step_fused();
            }
            b.flush();
            assert!(a.w.iter().zip(b.w.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
            let mut c = DirectSimulator::new(sp.clone(), TeacherInit::Gaussian, 1.0, 8);
            let mut d = c.clone();
            let tc = c.run(&[0.0, 2.0], &mut |_| ControlFlow::Continue(()));
            let td = d.run(&[0.0, 0.3, 1.0, 1.7, 2.0], &mut |_| ControlFlow::Continue(()));
            assert!(tc.diverged_at.is_none() && td.diverged_at.is_none());
            assert_eq!(tc.records.last().unwrap().overlaps, td.records.last().unwrap().overlaps);
            assert!(a.w.iter().zip(c.w.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    /// A trained second layer: each step moves a by theory.md §2's
    /// a_i ← a_i (1 − η_a ℓ_a/N) + (η_a/(BN)) Σ_b r^b g(λ_i^b) from the λ^b and r^b of the weights and
    /// a before the step, while W moves with the a before the step (recomputed by hand with the
    /// reference kernels, B = 1 and 3); records carry a.
    #[test]
    fn trained_second_layer_steps() {
        let sgd = SecondLayerSgd {
            eta: 0.8,
            weight_decay: 0.3,
        };
        for (act, batch) in [
            (Activation::Erf, 1),
            (Activation::Quadratic, 3),
            (Activation::Linear, 2),
        ] {
            let mut sp = spec(act, 37, batch, 0.2, 0.1);
            sp.model = sp.model.with_trained_a(sgd);
            let mut sim = DirectSimulator::new(sp.clone(), TeacherInit::Gaussian, 1.0, 5);
            let sq = 37f64.sqrt();
            for _ in 0..4 {
                let (w0, a0) = (sim.w.clone(), sim.second_layer().to_vec());
                let model = Model {
                    a: a0.clone(),
                    ..sp.model.clone()
                };
                let mut noise_rng = sim.rng.clone();
                sim.step();
                let mut a_ref: Vec<f64> = a0.iter().map(|a| a * (1.0 - 0.8 * 0.3 / 37.0)).collect();
                let mut coef = vec![0.0; 3 * batch];
                let npad = sim.scratch.npad;
                let xs: Vec<f64> = (0..batch)
                    .flat_map(|b| sim.scratch.x_prev[b * npad..b * npad + 37].to_vec())
                    .collect();
                for b in 0..batch {
                    let x = &xs[b * 37..(b + 1) * 37];
                    let (mut l, mut nu) = ([0.0; 3], [0.0; 2]);
                    kernel::project(w0.as_slice().unwrap(), 37, x, 1.0 / sq, &mut l);
                    kernel::project(sim.w_star.as_slice().unwrap(), 37, x, 1.0 / sq, &mut nu);
                    let r = model.teacher_output(&nu) + 0.1f64.sqrt() * standard_normal(&mut noise_rng)
                        - model.student_output(&l);
                    for i in 0..3 {
                        a_ref[i] += 0.8 / (batch as f64 * 37.0) * r * act.g(l[i]);
                        coef[i * batch + b] = 0.4 / (batch as f64 * sq) * a0[i] * act.dg(l[i]) * r;
                    }
                }
                let mut w_ref = w0.clone();
                kernel::update(w_ref.as_slice_mut().unwrap(), 37, 1.0 - 0.4 * 0.2 / 37.0, &coef, &xs);
                for (x, y) in sim.second_layer().iter().zip(&a_ref) {
                    assert!((x - y).abs() < 1e-12, "{act:?} B={batch}: a {x} vs {y}");
                }
                for (x, y) in sim.w.iter().zip(w_ref.iter()) {
                    assert!((x - y).abs() < 1e-12, "{act:?} B={batch}: w {x} vs {y}");
                }
            }
            let traj = sim.run(&[0.0, 0.5], &mut |_| ControlFlow::Continue(()));
            assert_eq!(traj.records.last().unwrap().a.as_deref(), Some(sim.second_layer()));
        }
    }

    /// A trained second layer with η_a = 0 (any ℓ_a) is bit for bit the fixed-layer run: weights,
    /// losses and a, through pending updates and flushes, on the split step too.
    #[test]
    fn zero_rate_second_layer_is_the_fixed_layer() {
        for (p, k, n, threads) in [(2, 2, 300, 1), (3, 1, 1100, 1), (2, 2, 70_000, 2)] {
            let fixed = erf_spec(p, k, n, 0.3);
            let mut trained = fixed.clone();
            trained.model = trained.model.with_trained_a(SecondLayerSgd {
                eta: 0.0,
                weight_decay: 0.5,
            });
            let mut a = DirectSimulator::new(fixed, TeacherInit::Gaussian, 1.0, 7).with_split(threads);
            let mut b = DirectSimulator::new(trained, TeacherInit::Gaussian, 1.0, 7).with_split(threads);
            assert_lockstep(&mut a, &mut b, 3, &format!("p={p} k={k} n={n}"));
            assert_eq!(a.second_layer(), b.second_layer());
        }
    }

    /// A trained second layer is bit-identical whatever the number of threads of a split step
    /// (its update is O(p) work after the reduction of the projections).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn trained_second_layer_is_bit_identical_when_split() {
        let test = "trained_second_layer_is_bit_identical_when_split";
        if !simd_tests_enabled(SimdFeature::Avx2, Isa::detect() == Isa::Avx2Fma, test) {
            return;
        }
        let mut sp = erf_spec(2, 2, SPLIT_MIN_N + 1037, 0.1);
        sp.model = sp.model.with_trained_a(SecondLayerSgd {
            eta: 0.7,
            weight_decay: 0.1,
        });
        let one = DirectSimulator::new(sp, TeacherInit::Gaussian, 1.0, 11);
        for threads in [2, 3] {
            let (mut a, mut b) = (one.clone(), one.clone().with_split(threads));
            assert_lockstep(&mut a, &mut b, 2, &format!("threads={threads}"));
            let bits = |s: &DirectSimulator| s.second_layer().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
            assert_ne!(a.second_layer(), one.second_layer(), "a must move");
        }
    }

    /// B = 1 erf runs with label noise and weight decay `l2` (the bit-identity tests).
    fn erf_spec(p: usize, k: usize, n: usize, l2: f64) -> RunSpec {
        RunSpec {
            model: Model::new(Activation::Erf, vec![0.5; p], vec![0.7; k], 0.01),
            training: Training {
                eta: 0.3,
                weight_decay: l2,
                batch: 1,
            },
            n,
            divergence_bound: 1e6,
        }
    }

    /// Steps two simulators of the same run side by side (`rounds` × a flushed step and 3–4
    /// pending ones) and asserts bit-identical losses, weights and inputs after each round.
    fn assert_lockstep(a: &mut DirectSimulator, b: &mut DirectSimulator, rounds: usize, what: &str) {
        let bits = |s: &DirectSimulator| s.w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for r in 0..rounds {
            assert_eq!(a.step().to_bits(), b.step().to_bits(), "{what}");
            let k = 3 + r as u64 % 2;
            assert_eq!(a.advance(k).to_bits(), b.advance(k).to_bits(), "{what}");
            assert_eq!(bits(a), bits(b), "{what}");
            assert!(a.scratch.x_prev == b.scratch.x_prev, "{what}");
        }
    }

    /// The AVX-512F fused pass (B = 1, p + p* ≤ 8) is bit-identical to the AVX2 chunk loop, for
    /// every row-count specialisation, with and without weight decay, for N with partial blocks,
    /// partial groups of 8 and 4, and several chunks; through pending updates (`advance`) and
    /// flushed steps (`step`).
    #[test]
    fn avx512_pass_is_bit_identical_to_avx2() {
        let here = Isa::detect() == Isa::Avx2Fma && FastNormal::new(0).simd_name() == "avx512f";
        if !simd_tests_enabled(SimdFeature::Avx512, here, "avx512_pass_is_bit_identical_to_avx2") {
            return;
        }
        for (p, k) in [(1, 1), (2, 1), (2, 2), (4, 4), (3, 2), (1, 7), (5, 3)] {
            for n in [5, 13, 16, 37, 512, 1037, 1100, 2051] {
                for (l2, gen) in [
                    (0.0, Generator::BoxMuller),
                    (0.5, Generator::BoxMuller),
                    (0.5, Generator::Ziggurat),
                ] {
                    let mut a = DirectSimulator::new(erf_spec(p, k, n, l2), TeacherInit::Gaussian, 1.0, 21 + n as u64)
                        .with_generator(gen);
                    let mut b = a.clone().without_avx512();
                    assert_eq!(a.kernel_name(), "avx512f fused pass");
                    assert_eq!(b.kernel_name(), "avx2+fma");
                    assert_lockstep(&mut a, &mut b, 3, &format!("p={p} k={k} n={n} l2={l2} {gen:?}"));
                }
            }
        }
    }

    /// A split step (columns on several threads, inputs from jumped generators, chunk partial sums
    /// added in order after the join) is bit-identical to the single-thread step, on the AVX-512F
    /// pass and on the AVX2 chunk loop: for several thread counts, row counts, N with and without
    /// a partial last chunk and block, with and without weight decay; through pending updates and
    /// flushes.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn split_steps_are_bit_identical() {
        let test = "split_steps_are_bit_identical";
        if !simd_tests_enabled(SimdFeature::Avx2, Isa::detect() == Isa::Avx2Fma, test) {
            return;
        }
        let wide = simd_tests_enabled(SimdFeature::Avx512, FastNormal::new(0).simd_name() == "avx512f", test);
        for (p, k) in [(1, 1), (4, 4), (3, 2)] {
            for n in [SPLIT_MIN_N, SPLIT_MIN_N + 1037, 100_003] {
                for (threads, l2, gen) in [
                    (2, 0.0, Generator::BoxMuller),
                    (3, 0.5, Generator::Ziggurat),
                    (8, 0.0, Generator::BoxMuller),
                ] {
                    let one = DirectSimulator::new(erf_spec(p, k, n, l2), TeacherInit::Gaussian, 1.0, 5 + n as u64)
                        .with_generator(gen);
                    let what = format!("p={p} k={k} n={n} threads={threads} {gen:?}");
                    let avx2 = one.clone().without_avx512();
                    let mut pairs = vec![(avx2.clone(), avx2.with_split(threads))];
                    if wide {
                        pairs.push((one.clone(), one.with_split(threads)));
                    }
                    for (mut a, mut b) in pairs {
                        assert!(b.step_threads() >= 2, "{what}: not split");
                        let what = format!("{what} ({})", a.kernel_name());
                        assert_lockstep(&mut a, &mut b, 2, &what);
                    }
                }
            }
        }
    }

    /// With many rows, a B = 1 step streams rows over super-chunks: the same chunks and the same
    /// floating-point operations as the chunk-by-chunk order, so bit-identical runs (any ISA;
    /// partial last chunk and super-chunk; row counts not multiples of 4).
    #[test]
    fn super_chunks_are_bit_identical() {
        for (p, k) in [(9, 1), (6, 7), (16, 16)] {
            for n in [37, 1100, 5000] {
                let model = Model::new(Activation::Quadratic, vec![0.3; p], vec![0.5; k], 0.0);
                let sp = RunSpec {
                    model,
                    training: Training {
                        eta: 0.1,
                        weight_decay: 0.2,
                        batch: 1,
                    },
                    n,
                    divergence_bound: 1e6,
                };
                let mut a = DirectSimulator::new(sp, TeacherInit::Gaussian, 1.0, 4);
                a.scratch.super_chunk = 2048; // several super-chunks at these N
                let mut b = a.clone();
                b.scratch.super_chunk = 0;
                for _ in 0..3 {
                    assert_eq!(a.advance(3).to_bits(), b.advance(3).to_bits());
                    assert_eq!(a.step().to_bits(), b.step().to_bits());
                    let same = a.w.iter().zip(b.w.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "p={p} k={k} n={n}");
                }
            }
        }
    }

    /// The AVX2 and portable kernels run the same law on the same (bit-identical) inputs; they
    /// differ by FMA rounding, ~1e-16 per operation, which 30 contracting SGD steps cannot grow
    /// beyond 1e-10.
    #[test]
    fn instruction_sets_agree() {
        if !simd_tests_enabled(SimdFeature::Avx2, Isa::Avx2Fma.available(), "instruction_sets_agree") {
            return;
        }
        let sp = spec(Activation::Quadratic, 300, 1, 0.1, 0.1);
        let base = DirectSimulator::new(sp, TeacherInit::Gaussian, 1.0, 3);
        let mut a = base.clone().with_isa(Isa::Avx2Fma);
        let mut b = base.with_isa(Isa::Portable);
        for _ in 0..30 {
            a.step();
            b.step();
        }
        assert_eq!(a.scratch.x_prev, b.scratch.x_prev);
        for (x, y) in a.w.iter().zip(b.w.iter()) {
            assert!((x - y).abs() < 1e-10);
        }
    }
}
