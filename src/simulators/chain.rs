//! The exact reduced ("Gram chain") simulator for isotropic Gaussian inputs (theory.md §7).
//! (Being written: see issue 4.)

use crate::config::Experiment;
use crate::experiments::runner::RunTask;
use crate::simulators::Simulator;

/// Builds a chain simulator for a task (not available yet: config validation rejects "chain").
pub fn build(_exp: &Experiment, _task: &RunTask) -> Box<dyn Simulator + Send> {
    unreachable!("the chain simulator is rejected by config validation until it lands")
}
