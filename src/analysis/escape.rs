//! Plateau-escape times over seeds and N (theory.md §6).
//!
//! Linearising the ODE at the plateau (see [`super::stability`]), the unstable overlaps grow like
//! e^{μt} from an O(N^{-1/2}) start, so the escape time is t_esc ≈ (1/(2μ))[ln N − ln χ²_{pp*} + c]:
//! its mean over seeds grows like ln N/(2μ) while its spread does not shrink with N.
//!
//! This module holds the measurement: the escape rule and its online detector ([`EscapeDetector`]),
//! its crossing condition ([`Crossing`]: linear or ln interpolation, ≤ or <, waiting for the
//! plateau or not), a run's outcome ([`EscapeRun`]), the per-N statistics and the fit against
//! ln N, ψ′ ([`trigamma`]) for the predicted spread ([`escape_time_sd`]), and the escape time of
//! the ODE from the typical start.
//! The `hdsgd escape` command that simulates the runs and writes the files is in the studies layer.

use super::fits::{linear_fit, quantile, summarize, LinearFit};
use crate::model::{Model, Training};
use crate::ode::{integrate, OdeOptions};
use crate::overlaps::Overlaps;
use crate::population::{population_error, PopulationError};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which observable defines the escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EscapeCriterion {
    /// First t at which e_g ≤ fraction·e_g(plateau), after the run has reached the plateau.
    #[default]
    Eg,
    /// First t at which max_ik |M_ik| ≥ m_threshold.
    MaxOverlap,
}

/// `[escape]` section of an experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscapeConfig {
    /// "eg" (default) or "max_overlap".
    #[serde(default)]
    pub criterion: EscapeCriterion,
    /// f in e_g ≤ f·e_g(plateau), 0 < f < 1. Default 0.5.
    #[serde(default = "half")]
    pub fraction: f64,
    /// A run has reached the plateau once |e_g − e_g(plateau)| ≤ tol·e_g(plateau) at a record, or
    /// e_g − e_g(plateau) changed sign between two records. Default 0.05.
    #[serde(default = "tolerance")]
    pub plateau_tolerance: f64,
    /// Threshold of max |M_ik| for `criterion = "max_overlap"`. Default 0.5.
    #[serde(default = "half")]
    pub m_threshold: f64,
}

fn half() -> f64 {
    0.5
}
fn tolerance() -> f64 {
    0.05
}

impl Default for EscapeConfig {
    fn default() -> Self {
        EscapeConfig {
            criterion: EscapeCriterion::Eg,
            fraction: half(),
            plateau_tolerance: tolerance(),
            m_threshold: half(),
        }
    }
}

impl EscapeConfig {
    /// Checks the section; on error returns (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_string(), m));
        if !(self.fraction > 0.0 && self.fraction < 1.0) {
            return bad("fraction", format!("must be in (0, 1) (got {})", self.fraction));
        }
        if !(self.plateau_tolerance > 0.0 && self.plateau_tolerance < 1.0) {
            return bad(
                "plateau_tolerance",
                format!("must be in (0, 1) (got {})", self.plateau_tolerance),
            );
        }
        if !(self.m_threshold.is_finite() && self.m_threshold > 0.0) {
            return bad("m_threshold", format!("must be > 0 (got {})", self.m_threshold));
        }
        Ok(())
    }
}

/// A resolved escape rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EscapeRule {
    /// e_g ≤ fraction·eg_plateau after |e_g − eg_plateau| ≤ tolerance·eg_plateau (or a crossing of
    /// eg_plateau between records).
    EgFraction {
        eg_plateau: f64,
        fraction: f64,
        tolerance: f64,
    },
    /// max_ik |M_ik| ≥ threshold.
    MaxOverlap { threshold: f64 },
}

impl EscapeRule {
    /// The rule of a configuration, given the plateau's e_g.
    pub fn new(cfg: &EscapeConfig, eg_plateau: f64) -> Self {
        match cfg.criterion {
            EscapeCriterion::Eg => EscapeRule::EgFraction {
                eg_plateau,
                fraction: cfg.fraction,
                tolerance: cfg.plateau_tolerance,
            },
            EscapeCriterion::MaxOverlap => EscapeRule::MaxOverlap {
                threshold: cfg.m_threshold,
            },
        }
    }
}

/// Where the escape time is placed between the two records around the threshold crossing (its
/// resolution is the record spacing otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// The observable linearly in t.
    Linear,
    /// Its logarithm linearly in t (the record itself when either value is ≤ 0).
    Log,
}

impl Interpolation {
    /// The crossing time of `threshold` between the records (t0, v0) and (t1, v1), v1 past the
    /// threshold; `sign` is +1 for a falling observable, −1 for a rising one.
    fn place(self, (t0, v0): (f64, f64), (t1, v1): (f64, f64), threshold: f64, sign: f64) -> f64 {
        match self {
            Interpolation::Linear => {
                let (d0, d1) = (sign * (v0 - threshold), sign * (v1 - threshold));
                if d0 > 0.0 {
                    t0 + (t1 - t0) * d0 / (d0 - d1)
                } else {
                    t1
                }
            }
            Interpolation::Log => {
                if v0 > 0.0 && v1 > 0.0 {
                    let f = (v0.ln() - threshold.ln()) / (v0.ln() - v1.ln());
                    t0 + f * (t1 - t0)
                } else {
                    t1
                }
            }
        }
    }
}

/// When a record counts as escaped under an [`EscapeRule`], and where the time is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub interpolation: Interpolation,
    /// Past the threshold strictly (e_g < threshold, max|M| > threshold) rather than at it.
    pub strict: bool,
    /// Only once the run has reached the plateau band of [`EscapeRule::EgFraction`] (the overlap
    /// rule never waits); otherwise from the first record.
    pub after_plateau: bool,
}

impl Crossing {
    /// `hdsgd escape`: e_g ≤ f·e_g(plateau) after the plateau was reached, e_g interpolated linearly.
    pub const ESCAPE: Crossing = Crossing {
        interpolation: Interpolation::Linear,
        strict: false,
        after_plateau: true,
    };
    /// The over-parameterisation study ([`super::geometry::overparam`]): the first record with
    /// e_g < f·e_g(plateau), ln e_g interpolated linearly.
    pub const FIRST_BELOW_LOG: Crossing = Crossing {
        interpolation: Interpolation::Log,
        strict: true,
        after_plateau: false,
    };
}

/// Online escape-time extraction from records (t, overlaps, e_g) in time order, by an
/// [`EscapeRule`] and a [`Crossing`] ([`Crossing::ESCAPE`] for [`EscapeDetector::new`]).
///
/// ```
/// use hdsgd::analysis::escape::{EscapeDetector, EscapeRule};
/// let mut d = EscapeDetector::new(EscapeRule::EgFraction { eg_plateau: 1.0, fraction: 0.5, tolerance: 0.05 });
/// let m = |x: f64| x; // e_g(t): 1.5, 1.0 (plateau), 1.0, 0.6, 0.2
/// for (t, eg) in [(0.0, 1.5), (1.0, 1.0), (2.0, 1.0), (3.0, 0.6), (4.0, 0.2)] {
///     d.observe_value(t, m(eg), eg);
/// }
/// // 0.5 is crossed a quarter of the way from t = 3 (0.6) to t = 4 (0.2).
/// assert!((d.escaped().unwrap() - 3.25).abs() < 1e-12);
/// ```
#[derive(Debug, Clone)]
pub struct EscapeDetector {
    rule: EscapeRule,
    crossing: Crossing,
    reached: bool,
    prev: Option<(f64, f64)>,
    escaped: Option<f64>,
}

impl EscapeDetector {
    /// A detector of `hdsgd escape` ([`Crossing::ESCAPE`]) that has seen nothing yet.
    pub fn new(rule: EscapeRule) -> Self {
        Self::with_crossing(rule, Crossing::ESCAPE)
    }

    /// A detector with an explicit crossing condition that has seen nothing yet.
    pub fn with_crossing(rule: EscapeRule, crossing: Crossing) -> Self {
        EscapeDetector {
            rule,
            crossing,
            reached: matches!(rule, EscapeRule::MaxOverlap { .. }) || !crossing.after_plateau,
            prev: None,
            escaped: None,
        }
    }

    /// Feeds one record; returns the escape time once escaped.
    pub fn observe(&mut self, t: f64, ov: &Overlaps, eg: f64) -> Option<f64> {
        let max_m = ov.m.amax();
        self.observe_value(t, max_m, eg)
    }

    /// Feeds one record given max |M_ik| and e_g (for synthetic trajectories).
    pub fn observe_value(&mut self, t: f64, max_m: f64, eg: f64) -> Option<f64> {
        if self.escaped.is_some() {
            return self.escaped;
        }
        // Signed distance to the threshold, positive before the escape.
        let (value, threshold, sign) = match self.rule {
            EscapeRule::EgFraction {
                eg_plateau,
                fraction,
                tolerance,
            } => {
                if !self.reached {
                    let near = (eg - eg_plateau).abs() <= tolerance * eg_plateau;
                    let crossed = self
                        .prev
                        .is_some_and(|(_, pe)| (pe - eg_plateau) * (eg - eg_plateau) < 0.0);
                    self.reached = near || crossed;
                }
                (eg, fraction * eg_plateau, 1.0)
            }
            EscapeRule::MaxOverlap { threshold } => (max_m, threshold, -1.0),
        };
        let d = sign * (value - threshold);
        let past = if self.crossing.strict { d < 0.0 } else { d <= 0.0 };
        if self.reached && past {
            let t_esc = match self.prev {
                Some(prev) => self.crossing.interpolation.place(prev, (t, value), threshold, sign),
                None => t,
            };
            self.escaped = Some(t_esc);
        }
        self.prev = Some((t, value));
        self.escaped
    }

    /// The escape time, once escaped.
    pub fn escaped(&self) -> Option<f64> {
        self.escaped
    }

    /// Whether the plateau was reached (always true for the overlap criterion).
    pub fn reached_plateau(&self) -> bool {
        self.reached
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeStatus {
    /// Escaped at t_escape.
    Escaped,
    /// Reached t_max on the plateau (t_escape = t_max, a right-censored observation).
    Censored,
    /// Reached t_max without ever reaching the plateau band (censored; see `plateau_tolerance`).
    NoPlateau,
    /// The simulation diverged at t_escape (censored).
    Diverged,
}

impl EscapeStatus {
    /// The name written in the output files.
    pub fn as_str(self) -> &'static str {
        match self {
            EscapeStatus::Escaped => "escaped",
            EscapeStatus::Censored => "censored",
            EscapeStatus::NoPlateau => "no_plateau",
            EscapeStatus::Diverged => "diverged",
        }
    }

    /// The status of a name written by [`EscapeStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "escaped" => EscapeStatus::Escaped,
            "censored" => EscapeStatus::Censored,
            "no_plateau" => EscapeStatus::NoPlateau,
            "diverged" => EscapeStatus::Diverged,
            _ => return None,
        })
    }
}

/// One run's escape measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EscapeRun {
    pub n: usize,
    pub seed_index: u64,
    pub run_seed: u64,
    /// Escape time, or the last time reached when not escaped.
    pub t_escape: f64,
    pub status: EscapeStatus,
    pub samples: u64,
    pub wall_seconds: f64,
    /// Relative drift ‖I(t) − I(0)‖_F/‖I(0)‖_F of the conserved quantity between the start and the
    /// last record t (the record that detected the escape, t_escape ≤ t < t_escape + one record
    /// interval; t_max or the divergence time for censored runs), when `[geometry] observables` lists "conserved"
    /// ([`super::geometry::conserved`]); NaN where I is undefined (Q⊥ singular).
    pub conserved_drift: Option<f64>,
}

impl EscapeRun {
    /// Right-censored (did not escape).
    pub fn censored(&self) -> bool {
        self.status != EscapeStatus::Escaped
    }
}

/// Per-N statistics of the escape times.
#[derive(Debug, Clone, PartialEq)]
pub struct EscapeSummary {
    pub n: usize,
    pub count: usize,
    /// Runs that did not escape (t_max reached, or diverged).
    pub censored: usize,
    /// Of which diverged (a competing outcome near the learning-rate edge, not a late escape).
    pub diverged: usize,
    /// Mean, std and standard error over the escaped runs (biased low when some runs reached t_max
    /// without escaping; conditional on not diverging).
    pub mean: f64,
    pub std: f64,
    pub se: f64,
    /// Quartiles with the censored runs counted as +∞ (NaN when the quantile falls among them).
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
}

/// Summaries per N (in increasing N) of a set of runs.
pub fn summarize_runs(runs: &[EscapeRun]) -> Vec<EscapeSummary> {
    let mut by_n: BTreeMap<usize, Vec<&EscapeRun>> = BTreeMap::new();
    for r in runs {
        by_n.entry(r.n).or_default().push(r);
    }
    by_n.into_iter()
        .map(|(n, rs)| {
            let escaped: Vec<f64> = rs.iter().filter(|r| !r.censored()).map(|r| r.t_escape).collect();
            let s = summarize(&escaped);
            let mut all: Vec<f64> = rs
                .iter()
                .map(|r| if r.censored() { f64::INFINITY } else { r.t_escape })
                .collect();
            all.sort_by(f64::total_cmp);
            let q = |x: f64| {
                let v = quantile(&all, x);
                if v.is_finite() {
                    v
                } else {
                    f64::NAN
                }
            };
            EscapeSummary {
                n,
                count: rs.len(),
                censored: rs.len() - escaped.len(),
                diverged: rs.iter().filter(|r| r.status == EscapeStatus::Diverged).count(),
                mean: s.mean,
                std: s.std,
                se: s.se,
                q25: q(0.25),
                median: q(0.5),
                q75: q(0.75),
            }
        })
        .collect()
}

/// Whether an N enters the fit: no run reached t_max without escaping (the mean would be biased),
/// at least two escaped runs. Diverged runs are left out of the mean (reported in the summary).
pub fn usable_for_fit(s: &EscapeSummary) -> bool {
    s.censored == s.diverged && s.count - s.censored >= 2 && s.se > 0.0
}

/// Weighted least-squares fit of mean t_esc = c·ln N + b over the N that are
/// [`usable_for_fit`] (weights 1/s.e.², parameter errors from the s.e. themselves).
pub fn fit_log_n(summaries: &[EscapeSummary]) -> Option<LinearFit> {
    let used: Vec<&EscapeSummary> = summaries.iter().filter(|s| usable_for_fit(s)).collect();
    let x: Vec<f64> = used.iter().map(|s| (s.n as f64).ln()).collect();
    let y: Vec<f64> = used.iter().map(|s| s.mean).collect();
    let se: Vec<f64> = used.iter().map(|s| s.se).collect();
    linear_fit(&x, &y, Some(&se))
}

/// The escape time of a series of (t, max |M|, e_g) records in time order, by `rule` and
/// `crossing`; `None` if it never escapes.
///
/// ```
/// use hdsgd::analysis::escape::{crossing_time, Crossing, EscapeRule};
/// let rule = EscapeRule::EgFraction { eg_plateau: 1.0, fraction: 0.5, tolerance: 0.05 };
/// let records = [(0.0, 0.0, 2.0), (1.0, 0.0, 1.0), (2.0, 0.0, 0.25)];
/// // ln e_g falls linearly from ln 1 to ln 0.25: ln 0.5 is crossed half-way.
/// let t = crossing_time(rule, Crossing::FIRST_BELOW_LOG, records).unwrap();
/// assert!((t - 1.5).abs() < 1e-12);
/// ```
pub fn crossing_time(
    rule: EscapeRule,
    crossing: Crossing,
    records: impl IntoIterator<Item = (f64, f64, f64)>,
) -> Option<f64> {
    let mut d = EscapeDetector::with_crossing(rule, crossing);
    records
        .into_iter()
        .find_map(|(t, max_m, eg)| d.observe_value(t, max_m, eg))
}

/// The predicted standard deviation over seeds of the escape time, √ψ′(pp*/2)/(2μ) (initial-overlap
/// fluctuations only, theory.md §6).
pub fn escape_time_sd(p: usize, p_star: usize, mu: f64) -> f64 {
    trigamma((p * p_star) as f64 / 2.0).sqrt() / (2.0 * mu)
}

/// Trigamma function ψ′(x), x > 0 (recurrence to x ≥ 20, then the asymptotic series to 1/x⁹; relative error < 1e-13).
///
/// ```
/// let pi2 = std::f64::consts::PI.powi(2);
/// assert!((hdsgd::analysis::escape::trigamma(1.0) - pi2 / 6.0).abs() < 1e-12);
/// assert!((hdsgd::analysis::escape::trigamma(0.5) - pi2 / 2.0).abs() < 1e-12);
/// ```
pub fn trigamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 20.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let x2 = 1.0 / (x * x);
    acc + 1.0 / x + x2 / 2.0 + x2 / x * (1.0 / 6.0 - x2 * (1.0 / 30.0 - x2 * (1.0 / 42.0 - x2 / 30.0)))
}

/// The escape time of the ODE started from the typical size of a run's initial condition,
/// Q₀ = σ₀² I, M₀ = (σ₀/√N)·(all ones) (each M_ik at its rms value σ₀/√N), teacher overlap
/// `p_teacher`, with the same escape rule; `None` if it does not escape by `t_max`. Its dependence
/// on ln N is the deterministic, noise-free part of the finite-N escape-time slope: it tends to
/// 1/(2μ) only once ln N is large enough for the run to spend a long time near the plateau (the
/// approach to the plateau and the nonlinear exit add N-dependent corrections).
#[allow(clippy::too_many_arguments)]
pub fn ode_escape_time(
    model: &Model,
    training: &Training,
    ode_options: &OdeOptions,
    sigma0: f64,
    p_teacher: &DMatrix<f64>,
    rule: EscapeRule,
    n: f64,
    t_max: f64,
) -> Result<Option<f64>, PopulationError> {
    let mut start = super::stability::symmetric_start(model.p(), sigma0, p_teacher);
    start.m.fill(sigma0 / n.sqrt());
    let mut det = EscapeDetector::new(rule);
    integrate(
        model,
        training,
        &start,
        &[0.0, t_max],
        ode_options,
        |t, ov: &Overlaps| {
            let eg = population_error(model, &ov.gram());
            det.observe(t, ov, eg).is_some()
        },
    )?;
    Ok(det.escaped())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eg_rule() -> EscapeRule {
        EscapeRule::EgFraction {
            eg_plateau: 1.0,
            fraction: 0.5,
            tolerance: 0.05,
        }
    }

    #[test]
    fn config_validation_names_fields() {
        let mut c = EscapeConfig::default();
        assert!(c.validate().is_ok());
        c.fraction = 1.0;
        assert_eq!(c.validate().unwrap_err().0, "fraction");
        c.fraction = 0.5;
        c.m_threshold = -1.0;
        assert_eq!(c.validate().unwrap_err().0, "m_threshold");
    }

    #[test]
    fn escape_before_the_plateau_does_not_count() {
        // A run that starts below the threshold has not reached the plateau: no escape until it
        // rises to the plateau and falls again.
        let mut d = EscapeDetector::new(eg_rule());
        for (t, eg) in [(0.0, 0.3), (1.0, 0.4)] {
            assert_eq!(d.observe_value(t, 0.0, eg), None);
        }
        // Crosses the plateau value between t = 1 and t = 2 (0.4 → 1.3): reached.
        assert_eq!(d.observe_value(2.0, 0.0, 1.3), None);
        assert!(d.reached_plateau());
        assert_eq!(d.observe_value(3.0, 0.0, 0.5), Some(3.0));
    }

    /// The Debug string of the rule enters the escape config hash (studies::escape::config_hash):
    /// it must not change, or existing escape_runs.csv files would no longer resume.
    #[test]
    fn rule_debug_strings_are_stable() {
        assert_eq!(
            format!("{:?}", eg_rule()),
            "EgFraction { eg_plateau: 1.0, fraction: 0.5, tolerance: 0.05 }"
        );
        assert_eq!(
            format!("{:?}", EscapeRule::MaxOverlap { threshold: 0.5 }),
            "MaxOverlap { threshold: 0.5 }"
        );
    }

    /// FIRST_BELOW_LOG: no wait for the plateau, strict, ln interpolation; a first record below the
    /// threshold is the escape time itself; a record at the threshold is not an escape.
    #[test]
    fn first_below_log_crossing() {
        let c = Crossing::FIRST_BELOW_LOG;
        let rec = |v: &[(f64, f64)]| v.iter().map(|&(t, e)| (t, 0.0, e)).collect::<Vec<_>>();
        assert_eq!(crossing_time(eg_rule(), c, rec(&[(0.0, 0.3), (1.0, 0.2)])), Some(0.0));
        assert_eq!(
            crossing_time(eg_rule(), c, rec(&[(0.0, 2.0), (1.0, 0.5), (2.0, 0.6)])),
            None
        );
        let t = crossing_time(eg_rule(), c, rec(&[(0.0, 2.0), (1.0, 0.5), (2.0, 0.125)])).unwrap();
        assert_eq!(t, 1.0);
        // The escape crossing of the same series: ≤ at t = 1 (after the plateau band was crossed).
        assert_eq!(
            crossing_time(eg_rule(), Crossing::ESCAPE, rec(&[(0.0, 2.0), (1.0, 0.5)])),
            Some(1.0)
        );
        // Non-positive values: the record itself.
        assert_eq!(crossing_time(eg_rule(), c, rec(&[(0.0, 2.0), (1.0, 0.0)])), Some(1.0));
    }

    #[test]
    fn trigamma_matches_known_values() {
        let pi2 = std::f64::consts::PI.powi(2);
        assert!((trigamma(1.0) - pi2 / 6.0).abs() < 2e-15);
        assert!((trigamma(0.5) - pi2 / 2.0).abs() < 4e-15);
        // ψ′(x + 1) = ψ′(x) − 1/x² across the cut-off.
        for x in [0.3, 7.5, 19.5, 25.0] {
            assert!((trigamma(x + 1.0) - trigamma(x) + 1.0 / (x * x)).abs() < 1e-14 * trigamma(x));
        }
    }
}
