//! The direct simulator: one-pass SGD on the actual N-dimensional weights (theory.md §2).
//!
//! Each step draws B fresh inputs x^b ~ N(0, I_N), computes λ^b = Wx^b/√N, ν^b = W*x^b/√N,
//! the residual r^b = Σ_k v_k g(ν_k^b) + √Δ ξ^b − Σ_i a_i g(λ_i^b), δ_i^b = a_i g'(λ_i^b) r^b, and
//! updates w_i ← w_i (1 − ηℓ₂/N) + (η/(B√N)) Σ_b δ_i^b x^b. Cost O((p + p*) N B) per step; no
//! allocation in the step ([`Scratch`] is allocated once per run).

pub mod kernel;

use super::{grid_steps, Record, RunSpec, Simulator, Trajectory};
use crate::init::{initial_weights, InitSpec, TeacherInit};
use crate::overlaps::Overlaps;
use crate::rng::{fill_standard_normal, standard_normal, stream, SimRng};
use nalgebra::DMatrix;
use ndarray::{Array2, ArrayView2};
use std::ops::ControlFlow;

/// Scratch space of one step, allocated once.
#[derive(Debug, Clone)]
struct Scratch {
    /// The B inputs (B × N).
    x: Vec<f64>,
    /// λ^b (p each).
    lambda: Vec<f64>,
    /// ν^b (p* each).
    nu: Vec<f64>,
    /// coef[i·B + b] = η δ_i^b /(B√N).
    coef: Vec<f64>,
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
#[derive(Debug, Clone)]
pub struct DirectSimulator {
    spec: RunSpec,
    w: Array2<f64>,
    w_star: Array2<f64>,
    p_teacher: DMatrix<f64>,
    rng: SimRng,
    scratch: Scratch,
}

/// Stream numbers of a run's generators (see [`crate::rng::stream`]).
const INIT_STREAM: u64 = 0;
const SGD_STREAM: u64 = 1;

impl DirectSimulator {
    /// A run with random initial weights: teacher as `teacher`, student rows iid N(0, σ₀²).
    /// Initial weights and SGD samples come from separate streams of `seed`.
    pub fn new(spec: RunSpec, teacher: TeacherInit, sigma0: f64, seed: u64) -> Self {
        let init = InitSpec {
            teacher,
            sigma0,
            student_mix: None,
        };
        Self::with_init(spec, &init, seed)
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
        DirectSimulator {
            scratch: Scratch {
                x: vec![0.0; b * n],
                lambda: vec![0.0; b * p],
                nu: vec![0.0; b * k],
                coef: vec![0.0; b * p],
            },
            spec,
            w,
            w_star,
            p_teacher,
            rng: stream(seed, SGD_STREAM),
        }
    }

    /// Current student weights (p × N).
    pub fn weights(&self) -> ArrayView2<'_, f64> {
        self.w.view()
    }

    /// Teacher weights (p* × N).
    pub fn teacher(&self) -> ArrayView2<'_, f64> {
        self.w_star.view()
    }

    /// Current overlaps (O(p(p + p*)N)).
    pub fn overlaps(&self) -> Overlaps {
        let w = self.w.view();
        let n = self.spec.n as f64;
        let dot = |a: ArrayView2<f64>, b: ArrayView2<f64>| {
            DMatrix::from_fn(a.nrows(), b.nrows(), |i, j| a.row(i).dot(&b.row(j)) / n)
        };
        Overlaps::new(dot(w, w), dot(w, self.w_star.view()), self.p_teacher.clone())
    }

    /// One SGD step on B fresh samples; returns Σ_b ½(r^b)², the summed training loss of the batch
    /// (non-finite when the run blew up).
    pub fn step(&mut self) -> f64 {
        let model = &self.spec.model;
        let (p, k, n, batch) = (model.p(), model.p_star(), self.spec.n, self.spec.training.batch);
        let g = model.activation;
        let inv_sqrt_n = 1.0 / (n as f64).sqrt();
        let noise_sd = model.noise.sqrt();
        let lr = self.spec.training.eta / batch as f64 * inv_sqrt_n;
        let s = &mut self.scratch;
        let w = self.w.as_slice().expect("standard layout");
        let w_star = self.w_star.as_slice().expect("standard layout");
        let mut loss = 0.0;
        for b in 0..batch {
            let x = &mut s.x[b * n..(b + 1) * n];
            fill_standard_normal(&mut self.rng, x);
            let lambda = &mut s.lambda[b * p..(b + 1) * p];
            let nu = &mut s.nu[b * k..(b + 1) * k];
            // λ = Wx/√N, ν = W*x/√N
            kernel::project(w, n, x, inv_sqrt_n, lambda);
            kernel::project(w_star, n, x, inv_sqrt_n, nu);
            let xi = if noise_sd > 0.0 {
                standard_normal(&mut self.rng)
            } else {
                0.0
            };
            // r = y − ŷ with y = Σ v_k g(ν_k) + √Δ ξ
            let r = model.teacher_output(nu) + noise_sd * xi - model.student_output(lambda);
            loss += 0.5 * r * r;
            for i in 0..p {
                // η δ_i^b /(B√N), δ_i = a_i g'(λ_i) r
                s.coef[i * batch + b] = lr * model.a[i] * g.dg(lambda[i]) * r;
            }
        }
        let decay = 1.0 - self.spec.training.eta * self.spec.training.weight_decay / n as f64;
        kernel::update(self.w.as_slice_mut().expect("standard layout"), n, decay, &s.coef, &s.x);
        loss
    }
}

impl Simulator for DirectSimulator {
    fn initial_overlaps(&self) -> Overlaps {
        self.overlaps()
    }

    fn run(&mut self, grid: &[f64], observe: &mut dyn FnMut(&Record) -> ControlFlow<()>) -> Trajectory {
        let (n, batch) = (self.spec.n, self.spec.training.batch);
        let steps = grid_steps(grid, n, batch);
        let initial = self.overlaps();
        let bound = self.spec.divergence_bound;
        let time = |s: u64| s as f64 * batch as f64 / n as f64;
        // Besides a non-finite loss (checked every step), the overlaps are compared with the
        // divergence bound every 1/16 unit of t: an O(16 p/N) overhead.
        let check_every = (n / (16 * batch)).max(1) as u64;
        let mut traj = Trajectory {
            initial,
            records: Vec::with_capacity(steps.len()),
            diverged_at: None,
            samples: 0,
        };
        let mut done: u64 = 0;
        'records: for &target in &steps {
            let mut loss_sum = 0.0;
            let from = done;
            while done < target {
                let l = self.step();
                done += 1;
                loss_sum += l;
                if !l.is_finite() || (done % check_every == 0 && !self.overlaps().is_bounded(bound)) {
                    traj.diverged_at = Some(time(done));
                    break 'records;
                }
            }
            let ov = self.overlaps();
            if !ov.is_bounded(bound) {
                traj.diverged_at = Some(time(done));
                break;
            }
            let train = (done > from).then(|| loss_sum / ((done - from) * batch as u64) as f64);
            let rec = Record::new(&self.spec.model, time(done), ov, train);
            let flow = observe(&rec);
            traj.records.push(rec);
            if flow.is_break() {
                break;
            }
        }
        traj.samples = done * batch as u64;
        traj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{student_weights, teacher_weights};
    use crate::model::{Activation, Model, Training};
    use rand::SeedableRng;

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
        let x = sim.scratch.x.clone();
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
}
