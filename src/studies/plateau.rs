//! `hdsgd plateau`: the plateau fixed point of an experiment's ODE and its linear stability
//! ([`crate::analysis::stability`]), printed, and written as `plateau.json` with `--out`.

use super::output::write_json;
use super::OutputOptions;
use crate::analysis::stability::{analyse, to_json, PlateauOptions, Stability};
use crate::config::Experiment;
use crate::overlaps::Overlaps;
use anyhow::{bail, Result};

/// The stability analysis of an experiment: its model and training, from Q₀ = σ₀² I, M₀ = 0, P
/// from `[init] p` (else the identity).
pub fn stability(exp: &Experiment, opts: &PlateauOptions) -> Result<Stability> {
    analyse(
        &exp.model,
        &exp.training,
        exp.ode_options.variant,
        exp.sigma0,
        &exp.teacher_overlap(),
        opts,
    )
}

/// `hdsgd plateau`: prints the plateau, e_g there, the Jacobian's eigenvalues, μ and 1/(2μ);
/// with `--out` also writes `plateau.json` there.
pub fn command(exp: &Experiment, opts: &OutputOptions) -> Result<()> {
    let popts = PlateauOptions::default();
    let s = stability(exp, &popts)?;
    let names = Overlaps::column_names(exp.model.p(), exp.model.p_star());
    println!(
        "experiment {}: plateau of the {:?} ODE from Q0 = σ0² I = {}·I, M0 = 0",
        exp.name,
        exp.ode_options.variant,
        exp.sigma0 * exp.sigma0
    );
    println!(
        "  stationary at t = {:.3}, Newton polish: {} iteration(s), residual max|dstate/dt| = {:.2e}",
        s.plateau.t_stationary, s.plateau.newton_iterations, s.plateau.residual
    );
    for (n, v) in names.iter().zip(s.plateau.overlaps.to_state().iter()) {
        println!("  {n} = {v:.12}");
    }
    println!("  e_g = {:.12}", s.plateau.eg);
    println!(
        "  Jacobian eigenvalues (central differences, relative step {:e}):",
        popts.fd_step
    );
    for l in &s.eigenvalues {
        if l.im == 0.0 {
            println!("    {:+.10}", l.re);
        } else {
            println!("    {:+.10} {:+.10}i", l.re, l.im);
        }
    }
    match (s.mu, s.escape_slope()) {
        (Some(mu), Some(slope)) => {
            println!(
                "  unstable directions: {}; growth rate μ = {mu:.10}; predicted escape slope 1/(2μ) = {slope:.10} per unit ln N",
                s.unstable_count
            );
            if let Some(v) = &s.unstable_vector {
                let parts: Vec<String> = names
                    .iter()
                    .zip(v.iter())
                    .filter(|(_, x)| x.abs() > 1e-8)
                    .map(|(n, x)| format!("{n}: {x:+.4}"))
                    .collect();
                println!("  an unstable eigenvector: {}", parts.join(", "));
            }
        }
        _ => println!("  the fixed point is linearly stable: no escape"),
    }
    if let Some(dir) = &opts.out {
        let path = dir.join("plateau.json");
        if path.exists() && !opts.force {
            bail!("{} exists: pass --force to overwrite it", path.display());
        }
        write_json(&path, &to_json(exp.sigma0, &s, &popts))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
