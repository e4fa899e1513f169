//! Integration of the overlap ODEs on a time grid.

use super::rhs::{derivatives, readout_derivative, OdeVariant};
use crate::model::{Model, Training};
use crate::overlaps::Overlaps;
use crate::population::{population_error, PopulationError};
use nalgebra::{DMatrix, DVector};
use ode_solvers::continuous_output_model::ContinuousOutputModel;
use ode_solvers::{Dopri5, OutputType, System};
use std::borrow::Cow;

/// Integrator settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OdeOptions {
    /// Relative tolerance of the Dormand–Prince error control.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// The run is declared divergent when an overlap is non-finite or exceeds this in absolute value.
    pub divergence_bound: f64,
    /// Which terms to keep.
    pub variant: OdeVariant,
    /// Maximal number of integrator steps.
    pub max_steps: u32,
}

impl Default for OdeOptions {
    fn default() -> Self {
        OdeOptions {
            rtol: 1e-8,
            atol: 1e-10,
            divergence_bound: 1e6,
            variant: OdeVariant::Full,
            max_steps: 10_000_000,
        }
    }
}

/// A user event checked after every accepted integrator step (e.g. an escape from a plateau).
/// Returning `true` stops the integration at that step.
pub trait StopHook {
    /// Called with the time and overlaps after each accepted step.
    fn stop(&mut self, t: f64, ov: &Overlaps) -> bool;
}

impl<F: FnMut(f64, &Overlaps) -> bool> StopHook for F {
    fn stop(&mut self, t: f64, ov: &Overlaps) -> bool {
        self(t, ov)
    }
}

/// Why an integration ended before the end of the grid.
#[derive(Debug, Clone, PartialEq)]
pub enum OdeStop {
    /// An overlap became non-finite or exceeded the divergence bound at this time.
    Diverged { t: f64 },
    /// The user's [`StopHook`] fired at this time.
    Hook { t: f64 },
    /// The integrator itself failed (step-size underflow, too many steps).
    Failed { t: f64, message: String },
}

/// The ODE solution on (a prefix of) the grid.
#[derive(Debug, Clone)]
pub struct OdeSolution {
    /// Grid times reached.
    pub t: Vec<f64>,
    /// Overlaps at those times.
    pub overlaps: Vec<Overlaps>,
    /// e_g at those times (label noise excluded).
    pub eg: Vec<f64>,
    /// The student's second layer a at those times, when it is trained (`Model::train_a`).
    pub a: Option<Vec<Vec<f64>>>,
    /// `None` when the whole grid was integrated.
    pub stop: Option<OdeStop>,
}

struct OverlapSystem<'a, 's, H> {
    model: &'a Model,
    training: Training,
    p_teacher: DMatrix<f64>,
    options: OdeOptions,
    hook: H,
    // Borrowed so that the reason survives the stepper, which owns the system.
    stop: &'s mut Option<OdeStop>,
}

/// Whether a is part of the ODE state: a trained layer with η_a ≠ 0 (at η_a = 0 it is constant, and
/// leaving it out keeps the integrator's error norm, hence its steps, those of the fixed layer).
fn a_in_state(model: &Model) -> bool {
    model.train_a.is_some_and(|s| s.eta != 0.0)
}

/// The ODE state: the overlaps ([`Overlaps::to_state`]) followed, when [`a_in_state`], by a.
fn pack(model: &Model, ov: &Overlaps) -> DVector<f64> {
    let s = ov.to_state();
    if !a_in_state(model) {
        return s;
    }
    DVector::from_iterator(s.len() + model.p(), s.iter().chain(&model.a).copied())
}

/// Inverse of [`pack`]: the overlaps and the model at the state's second layer (borrowed when fixed).
fn unpack<'m>(model: &'m Model, y: &DVector<f64>, p_teacher: &DMatrix<f64>) -> (Overlaps, Cow<'m, Model>) {
    let len = Overlaps::state_len(model.p(), model.p_star());
    let ov = Overlaps::from_state(&y.rows(0, len).into_owned(), p_teacher);
    if !a_in_state(model) {
        return (ov, Cow::Borrowed(model));
    }
    let mut m = model.clone();
    m.a.copy_from_slice(&y.as_slice()[len..]);
    (ov, Cow::Owned(m))
}

impl<H: StopHook> System<f64, DVector<f64>> for OverlapSystem<'_, '_, H> {
    fn system(&self, _t: f64, y: &DVector<f64>, dy: &mut DVector<f64>) {
        let (ov, model) = unpack(self.model, y, &self.p_teacher);
        // `integrate` checked that the activation has moments, so this cannot fail here.
        let (dq, dm) = derivatives(&model, &self.training, &ov, self.options.variant).expect("moments available");
        let d = Overlaps::new(dq, dm, self.p_teacher.clone()).to_state();
        let da = if a_in_state(&model) {
            readout_derivative(&model, &self.training, &ov)
        } else {
            vec![]
        };
        dy.copy_from(&DVector::from_iterator(
            d.len() + da.len(),
            d.iter().chain(&da).copied(),
        ));
    }

    fn solout(&mut self, t: f64, y: &DVector<f64>, _dy: &DVector<f64>) -> bool {
        let (ov, model) = unpack(self.model, y, &self.p_teacher);
        let bound = self.options.divergence_bound;
        if !ov.is_bounded(bound) || !model.a.iter().all(|a| a.is_finite() && a.abs() <= bound) {
            *self.stop = Some(OdeStop::Diverged { t });
            return true;
        }
        if self.hook.stop(t, &ov) {
            *self.stop = Some(OdeStop::Hook { t });
            return true;
        }
        false
    }
}

/// Integrates the overlap ODE from `initial` (at t = grid[0]) and returns it on `grid`
/// (increasing times). The integration stops early on divergence, on the `hook`, or on an
/// integrator failure; the solution then holds the grid points reached. A trained second layer
/// (`model.train_a`) starts at `model.a` and is integrated with the overlaps
/// ([`readout_derivative`]); the solution then holds it in [`OdeSolution::a`].
///
/// ```
/// use hdsgd::{model::{Activation, Model, Training}, overlaps::Overlaps, ode::{integrate, OdeOptions}};
/// use nalgebra::DMatrix;
/// let model = Model::new(Activation::Quadratic, vec![1.0], vec![1.0], 0.0);
/// let tr = Training { eta: 0.1, weight_decay: 0.0, batch: 1 };
/// let init = Overlaps::new(DMatrix::identity(1, 1) * 0.5, DMatrix::from_element(1, 1, 0.1), DMatrix::identity(1, 1));
/// let sol = integrate(&model, &tr, &init, &[0.0, 10.0, 200.0], &OdeOptions::default(), |_, _: &_| false).unwrap();
/// assert!(sol.stop.is_none() && sol.eg[2] < 1e-6 * sol.eg[0]);
/// ```
pub fn integrate<H: StopHook>(
    model: &Model,
    training: &Training,
    initial: &Overlaps,
    grid: &[f64],
    options: &OdeOptions,
    hook: H,
) -> Result<OdeSolution, PopulationError> {
    // Fail early (and cleanly) when the activation has no ODE.
    derivatives(model, training, initial, options.variant)?;
    let mut sol = OdeSolution {
        t: vec![],
        overlaps: vec![],
        eg: vec![],
        a: model.train_a.map(|_| vec![]),
        stop: None,
    };
    if grid.is_empty() {
        return Ok(sol);
    }
    let (t0, t1) = (grid[0], *grid.last().unwrap());
    if !initial.is_bounded(options.divergence_bound) {
        sol.stop = Some(OdeStop::Diverged { t: t0 });
        return Ok(sol);
    }
    if t1 <= t0 {
        for &t in grid {
            sol.push(model, t, initial.clone());
        }
        return Ok(sol);
    }
    let (dense, t_reached, stop) = solve(model, training, initial, (t0, t1), options, hook);
    sample_grid(&mut sol, model, initial, grid, t_reached, &dense);
    sol.stop = stop;
    Ok(sol)
}

impl OdeSolution {
    /// Appends the grid point (t, ov) with its e_g (and a, when trained), keeping the columns in step.
    fn push(&mut self, model: &Model, t: f64, ov: Overlaps) {
        self.eg.push(population_error(model, &ov.gram()));
        if let Some(a) = &mut self.a {
            a.push(model.a.clone());
        }
        self.t.push(t);
        self.overlaps.push(ov);
    }
}

/// Runs Dormand–Prince from `initial` over `(t0, t1)` with dense output, so the grid can be
/// sampled afterwards at any resolution without forcing the step size. Returns the dense
/// output, the last time that can be trusted and why the integration ended early, if it did
/// (the divergence check or hook takes precedence over an integrator error at the same step).
fn solve<H: StopHook>(
    model: &Model,
    training: &Training,
    initial: &Overlaps,
    (t0, t1): (f64, f64),
    options: &OdeOptions,
    hook: H,
) -> (ContinuousOutputModel<f64, DVector<f64>>, f64, Option<OdeStop>) {
    let mut event = None;
    let system = OverlapSystem {
        model,
        training: *training,
        p_teacher: initial.p.clone(),
        options: *options,
        hook,
        stop: &mut event,
    };
    let mut stepper = Dopri5::from_param(
        system,
        t0,
        t1,
        t1 - t0,
        pack(model, initial),
        options.rtol,
        options.atol,
        0.9,
        0.04,
        0.2,
        10.0,
        t1 - t0,
        0.0,
        options.max_steps,
        1000,
        OutputType::Continuous,
    );
    let mut dense = ContinuousOutputModel::default();
    let result = stepper.integrate_with_continuous_output_model(&mut dense);
    let last_t = *stepper.x_out().last().unwrap_or(&t0);
    drop(stepper);
    let (t_reached, stop) = match (&result, event) {
        (_, Some(s)) => {
            let t = match &s {
                OdeStop::Diverged { t } | OdeStop::Hook { t } | OdeStop::Failed { t, .. } => *t,
            };
            (t, Some(s))
        }
        (Err(e), None) => (
            last_t,
            Some(OdeStop::Failed {
                t: last_t,
                message: e.to_string(),
            }),
        ),
        (Ok(_), None) => (t1, None),
    };
    (dense, t_reached, stop)
}

/// Samples the dense output at the grid times up to `t_reached`. Times at or before grid[0]
/// take `initial` itself, not the interpolant, so the first record is exactly the start.
fn sample_grid(
    sol: &mut OdeSolution,
    model: &Model,
    initial: &Overlaps,
    grid: &[f64],
    t_reached: f64,
    dense: &ContinuousOutputModel<f64, DVector<f64>>,
) {
    let t0 = grid[0];
    let p_teacher = initial.p.clone();
    for &t in grid {
        if t > t_reached {
            break;
        }
        if t <= t0 {
            sol.push(model, t, initial.clone());
            continue;
        }
        let Some(y) = dense.evaluate(t) else { break };
        let (ov, m) = unpack(model, &y, &p_teacher);
        sol.push(&m, t, ov);
    }
}
