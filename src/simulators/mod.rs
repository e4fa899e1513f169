//! Finite-N simulators of one-pass SGD (theory.md §2). Each produces the overlaps and e_g on a time
//! grid, with the same [`Simulator`] interface:
//! * [`direct`]: the ground truth, online SGD on the N-dimensional weights;
//! * [`chain`]: the exact reduced Gram-chain simulation for isotropic Gaussian inputs (theory.md §7).

pub mod chain;
pub mod direct;

use crate::model::{Model, SecondLayerSgd, Training};
use crate::overlaps::Overlaps;
use crate::population::population_error;
use ndarray::Array2;
use std::ops::ControlFlow;

/// One recorded point of a trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// t = (samples seen)/N.
    pub t: f64,
    /// Q and M at t (P is constant: see [`Trajectory::initial`]).
    pub overlaps: Overlaps,
    /// Population error e_g(C) from the exact overlaps, label noise excluded.
    pub eg: f64,
    /// Mean per-sample training loss ½(y − ŷ)² (label noise included) over the samples since the
    /// previous record; `None` for a record with no sample before it (t = 0).
    pub train_loss: Option<f64>,
    /// The student's second layer at t, when it is trained (`Model::train_a`; `None` when fixed).
    pub a: Option<Vec<f64>>,
}

impl Record {
    /// A record with e_g computed from the overlaps and the model's current second layer (kept in
    /// the record when it is trained).
    pub fn new(model: &Model, t: f64, overlaps: Overlaps, train_loss: Option<f64>) -> Self {
        let eg = population_error(model, &overlaps.gram());
        Record {
            t,
            overlaps,
            eg,
            train_loss,
            a: model.train_a.map(|_| model.a.clone()),
        }
    }
}

/// A finished (or stopped) run.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// The exact overlaps at t = 0 (the matched ODE starts here).
    pub initial: Overlaps,
    /// The recorded points, in time order.
    pub records: Vec<Record>,
    /// Time at which the run diverged (non-finite or exploding overlaps), if it did.
    pub diverged_at: Option<f64>,
    /// Number of samples consumed.
    pub samples: u64,
}

/// A finite-N SGD simulator, ready to run from its initial condition.
///
/// `observe` is called at every record; returning `ControlFlow::Break(())` stops the run there
/// (the stop hook an escape-time measurement needs).
pub trait Simulator {
    /// Exact overlaps of the initial condition.
    fn initial_overlaps(&self) -> Overlaps;

    /// Runs to the last time of `grid` (increasing times t = samples/N), recording at each grid
    /// time rounded to a whole number of steps (see [`grid_steps`]).
    fn run(&mut self, grid: &[f64], observe: &mut dyn FnMut(&Record) -> ControlFlow<()>) -> Trajectory;

    /// The current N-dimensional weights (student W, p × N; teacher W*, p* × N) and second layer a,
    /// for simulators that have them (the direct one; the Gram chain has only the overlaps: `None`).
    fn weights_now(&self) -> Option<(Array2<f64>, Array2<f64>, Vec<f64>)> {
        None
    }
}

/// The step counts at which a grid is recorded: s_k = round(t_k N / B), without repeats
/// (t = s·B/N is the time actually recorded).
///
/// ```
/// assert_eq!(hdsgd::simulators::grid_steps(&[0.0, 0.001, 0.002, 1.0], 1000, 1), vec![0, 1, 2, 1000]);
/// assert_eq!(hdsgd::simulators::grid_steps(&[0.0, 0.0001, 1.0], 1000, 2), vec![0, 500]);
/// ```
pub fn grid_steps(grid: &[f64], n: usize, batch: usize) -> Vec<u64> {
    let mut steps: Vec<u64> = grid
        .iter()
        .map(|&t| (t * n as f64 / batch as f64).round() as u64)
        .collect();
    steps.dedup();
    steps
}

/// a_i ← a_i (1 − η_a ℓ_a/N) + (η_a/(BN)) sum_i, with sum_i = Σ_b r^b g(λ_i^b) (then reset to 0):
/// the second-layer update of one step ([`crate::model::SecondLayerSgd`]), shared by both simulators. At η_a = 0 it leaves a bit for bit unchanged (a·1 + 0 = a).
pub(crate) fn step_second_layer(a: &mut [f64], sums: &mut [f64], sgd: SecondLayerSgd, n: usize, batch: usize) {
    let scale = sgd.eta / (batch as f64 * n as f64);
    let decay = 1.0 - sgd.eta * sgd.weight_decay / n as f64;
    for (ai, si) in a.iter_mut().zip(sums.iter_mut()) {
        *ai = *ai * decay + scale * *si;
        *si = 0.0;
    }
}

/// Common parameters of a simulated run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub model: Model,
    pub training: Training,
    /// Input dimension N.
    pub n: usize,
    /// A run diverges when an overlap exceeds this in absolute value (or is non-finite).
    pub divergence_bound: f64,
}

/// What the shared record loop ([`record_loop`]) needs from a simulator.
pub(crate) trait SampleStepper {
    /// The run's parameters.
    fn spec(&self) -> &RunSpec;
    /// One SGD step on B samples; returns the summed per-sample loss ½r² (non-finite on blow-up).
    fn step_once(&mut self) -> f64;
    /// Whether every overlap is finite and within the divergence bound (called every 1/16 unit of t).
    fn within_bound(&mut self) -> bool;
    /// The exact current overlaps.
    fn current_overlaps(&mut self) -> Overlaps;
}

/// The record loop shared by the simulators: steps to each grid time (rounded to whole steps, see
/// [`grid_steps`]), records t, the overlaps, e_g and the mean training loss since the previous record,
/// stops at a divergence (a non-finite loss at any step, or overlaps beyond the bound, checked every
/// 1/16 unit of t and at each record) or when `observe` breaks.
pub(crate) fn record_loop<S: SampleStepper>(
    sim: &mut S,
    grid: &[f64],
    observe: &mut dyn FnMut(&Record) -> ControlFlow<()>,
) -> Trajectory {
    let (n, batch) = (sim.spec().n, sim.spec().training.batch);
    let steps = grid_steps(grid, n, batch);
    let time = |s: u64| s as f64 * batch as f64 / n as f64;
    // An O(16 p/N) overhead for the direct simulator, O(1) for the chain.
    let check_every = (n / (16 * batch)).max(1) as u64;
    let mut traj = Trajectory {
        initial: sim.current_overlaps(),
        records: Vec::with_capacity(steps.len()),
        diverged_at: None,
        samples: 0,
    };
    let mut done: u64 = 0;
    // Steps left until the next bound check (at every multiple of check_every); a countdown
    // rather than a division per step, which would cost as much as a chain step's arithmetic.
    let mut until_check = check_every;
    'records: for &target in &steps {
        let mut loss_sum = 0.0;
        let from = done;
        while done < target {
            let l = sim.step_once();
            done += 1;
            loss_sum += l;
            until_check -= 1;
            let check = until_check == 0;
            if check {
                until_check = check_every;
            }
            if !l.is_finite() || (check && !sim.within_bound()) {
                traj.diverged_at = Some(time(done));
                break 'records;
            }
        }
        let ov = sim.current_overlaps();
        if !ov.is_bounded(sim.spec().divergence_bound) {
            traj.diverged_at = Some(time(done));
            break;
        }
        let train = (done > from).then(|| loss_sum / ((done - from) * batch as u64) as f64);
        let rec = Record::new(&sim.spec().model, time(done), ov, train);
        let flow = observe(&rec);
        traj.records.push(rec);
        if flow.is_break() {
            break;
        }
    }
    traj.samples = done * batch as u64;
    traj
}
