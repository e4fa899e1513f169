//! Finite-size scaling of the fluctuations around the overlap ODEs (theory.md §6): the estimators.
//!
//! At finite N the overlaps fluctuate around the ODE with standard deviation ~ N^{-1/2} and a mean
//! bias ~ N^{-1} (away from instabilities). The `hdsgd scaling` command simulates every (N, seed), and at each
//! record time and for each observable (e_g, every overlap, tr Q and ‖M‖_F; with `[geometry] observables =
//! ["conserved"]` also the entries `cons_k_l` of the conserved quantity I(t) and its drift `cons_drift`,
//! [`super::geometry::conserved`]) computes the mean and variance over
//! seeds and the mean deviation from two ODEs:
//! * the matched ODE, started from each run's own initial overlaps;
//! * the typical ODE, started from Q₀ = σ₀² I, M₀ = 0 (P = I, or `[init] p`). For the quadratic
//!   network M = 0 is invariant, so this ODE stays on the plateau forever: the comparison is
//!   meaningful only before the escape (where M ~ N^{-1/2} anyway).
//!
//! Then, per observable and time window, it fits std ∝ N^{-b} and |mean deviation| ∝ N^{-a}.
//! Window statistics are built per run (a run's window average), so that the correlation of one
//! run's records in time is accounted for in the standard errors:
//! * variance: d_r = mean_{t∈W} (x_r(t) − x̄(t))², V = Σ_r d_r/(n − 1), se(V) = sd(d)·√n/(n − 1),
//!   std = √V, se(std) = se(V)/(2√V);
//! * mean deviation: D_r = mean_{t∈W} (x_r(t) − x_ode(t)), D̄ = mean_r D_r, se = sd(D)/√n.
//!
//! After the escape from a plateau the symmetry of the quadratic network (W → OW) and of the
//! committee (permutations of hidden units) makes individual overlaps non-self-averaging (the
//! selected solution depends on the O(N^{-1/2}) start and on the SGD noise), and the O(1) spread of
//! escape times makes e_g(t) differ by O(1) between seeds: there the fits measure b ≈ 0, which is
//! physics, not a failure of the method. See docs/studies.md.

use super::fits::{power_law_fit, PowerLawFit};
use crate::overlaps::Overlaps;
use serde::{Deserialize, Serialize};

/// `[scaling]` section of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScalingConfig {
    /// Time windows [t_start, t_end] of the fits (closed intervals of record times).
    /// Default: one window over every record time after t = 0.
    #[serde(default)]
    pub windows: Vec<[f64; 2]>,
}

impl ScalingConfig {
    /// Checks the section; on error returns (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for w in &self.windows {
            if !(w[0].is_finite() && w[1].is_finite() && w[0] >= 0.0 && w[0] <= w[1]) {
                return Err((
                    "windows".into(),
                    format!("each window must be [t_start, t_end] with 0 ≤ t_start ≤ t_end (got {w:?})"),
                ));
            }
        }
        Ok(())
    }
}

/// Values x[run][record] of one observable for the runs at one N, with the two ODE references.
#[derive(Debug, Clone, Default)]
pub struct ObservableRuns {
    pub sim: Vec<Vec<f64>>,
    pub matched: Vec<Vec<f64>>,
    /// The typical ODE on the record times (one curve for all runs at this N).
    pub typical: Vec<f64>,
}

/// Per-N window statistics of one observable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub n: usize,
    pub runs: usize,
    pub std: f64,
    pub se_std: f64,
    /// Standard deviation of x − x_matched-ODE (the fluctuation around the matched ODE).
    pub std_dev_matched: f64,
    pub se_std_dev_matched: f64,
    pub mean_dev_matched: f64,
    pub se_mean_dev_matched: f64,
    pub mean_dev_typical: f64,
    pub se_mean_dev_typical: f64,
}

/// Per-run window variance estimate (see the module documentation): (std, se(std)).
pub fn window_std(curves: &[Vec<f64>], idx: &[usize]) -> (f64, f64) {
    let n = curves.len();
    if n < 3 || idx.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let means: Vec<f64> = idx
        .iter()
        .map(|&k| curves.iter().map(|c| c[k]).sum::<f64>() / n as f64)
        .collect();
    let d: Vec<f64> = curves
        .iter()
        .map(|c| idx.iter().zip(&means).map(|(&k, m)| (c[k] - m).powi(2)).sum::<f64>() / idx.len() as f64)
        .collect();
    let nf = n as f64;
    let v = d.iter().sum::<f64>() / (nf - 1.0);
    let dm = d.iter().sum::<f64>() / nf;
    let sd_d = (d.iter().map(|x| (x - dm).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt();
    let se_v = sd_d * nf.sqrt() / (nf - 1.0);
    (v.sqrt(), se_v / (2.0 * v.sqrt()))
}

/// Mean over runs of the per-run window average of `x − reference`: (mean, standard error).
pub fn window_mean_dev(curves: &[Vec<f64>], reference: &dyn Fn(usize, usize) -> f64, idx: &[usize]) -> (f64, f64) {
    let n = curves.len();
    if n < 2 || idx.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let d: Vec<f64> = curves
        .iter()
        .enumerate()
        .map(|(r, c)| idx.iter().map(|&k| c[k] - reference(r, k)).sum::<f64>() / idx.len() as f64)
        .collect();
    let s = super::fits::summarize(&d);
    (s.mean, s.se)
}

/// The statistics of one observable at one N over the record indices `idx`.
pub fn window_stats(n: usize, obs: &ObservableRuns, idx: &[usize]) -> WindowStats {
    let (std, se_std) = window_std(&obs.sim, idx);
    let dev: Vec<Vec<f64>> = obs
        .sim
        .iter()
        .zip(&obs.matched)
        .map(|(s, m)| s.iter().zip(m).map(|(a, b)| a - b).collect())
        .collect();
    let (std_dev_matched, se_std_dev_matched) = window_std(&dev, idx);
    let (mean_dev_matched, se_mean_dev_matched) = window_mean_dev(&obs.sim, &|r, k| obs.matched[r][k], idx);
    let (mean_dev_typical, se_mean_dev_typical) = window_mean_dev(&obs.sim, &|_, k| obs.typical[k], idx);
    WindowStats {
        n,
        runs: obs.sim.len(),
        std,
        se_std,
        std_dev_matched,
        se_std_dev_matched,
        mean_dev_matched,
        se_mean_dev_matched,
        mean_dev_typical,
        se_mean_dev_typical,
    }
}

/// The four fitted quantities of a window, with their theory exponents.
pub const QUANTITIES: [(&str, f64); 4] = [
    ("std", 0.5),
    ("std_dev_matched", 0.5),
    ("abs_mean_dev_matched", 1.0),
    ("abs_mean_dev_typical", 1.0),
];

/// Fits the four quantities of [`QUANTITIES`] against N.
pub fn fit_window(stats: &[WindowStats]) -> Vec<Option<PowerLawFit>> {
    let n: Vec<f64> = stats.iter().map(|s| s.n as f64).collect();
    let pick = |f: &dyn Fn(&WindowStats) -> (f64, f64)| -> Option<PowerLawFit> {
        let (y, se): (Vec<f64>, Vec<f64>) = stats.iter().map(f).unzip();
        power_law_fit(&n, &y, &se)
    };
    vec![
        pick(&|s| (s.std, s.se_std)),
        pick(&|s| (s.std_dev_matched, s.se_std_dev_matched)),
        pick(&|s| (s.mean_dev_matched.abs(), s.se_mean_dev_matched)),
        pick(&|s| (s.mean_dev_typical.abs(), s.se_mean_dev_typical)),
    ]
}

/// Observable `name` ("eg", an overlap column, "tr_q" or "norm_m").
pub fn observable_value(ov: &Overlaps, eg: f64, name: &str) -> f64 {
    if name == "eg" {
        eg
    } else {
        ov.observable(name).unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let c = ScalingConfig {
            windows: vec![[2.0, 1.0]],
        };
        assert_eq!(c.validate().unwrap_err().0, "windows");
        assert!(ScalingConfig::default().validate().is_ok());
    }

    #[test]
    fn window_std_of_constant_offsets() {
        // Runs x_r(t) = c_r (constant in time): the window variance is the sample variance of c_r.
        let c = [1.0, 2.0, 4.0, 5.0];
        let curves: Vec<Vec<f64>> = c.iter().map(|&v| vec![v; 5]).collect();
        let (s, se) = window_std(&curves, &[1, 2, 3]);
        assert!((s * s - 10.0 / 3.0).abs() < 1e-12);
        // By hand from the module's formulas: d_r = (c_r − 3)² = (4, 1, 1, 4), sd(d) = √3,
        // se(V) = √3·√4/3, se(std) = se(V)/(2√V) = 1/√10.
        assert!((se - 0.1f64.sqrt()).abs() < 1e-12, "{se}");
        let (m, se_m) = window_mean_dev(&curves, &|_, _| 1.0, &[0, 4]);
        assert!((m - 2.0).abs() < 1e-12);
        // D_r = c_r − 1 = (0, 1, 3, 4): sd = √(10/3), se = sd/√4.
        assert!((se_m - (10.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12, "{se_m}");
    }
}
