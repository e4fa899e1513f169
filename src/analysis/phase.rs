//! The SGD phase diagram of Veiga, Stephan, Loureiro, Krzakala and Zdeborová (2022,
//! arXiv:2202.00293) in hdsgd's conventions (docs/phase_diagram.md): the student width and the
//! learning rate scale with the input dimension as p = N^κ and η = η₀·N^(−δ), and the region of the
//! (κ, δ) plane decides the time unit τ = ν/N^(1+ϑ) (ν = SGD samples), the terms the limiting ODE
//! keeps and what learning looks like.
//!
//! hdsgd's first-order term of dQ/dt is (η/p)·O(1) and its η² term (η/p)²·O(1) (with a = 1/p), so
//! with η/p ∝ N^(−(κ+δ)):
//!
//! | region | condition | ϑ | ODE terms | late risk vs N |
//! |---|---|---|---|---|
//! | perfect learning | κ + δ > 0 | κ + δ | first order | decreasing (noise floor ∝ N^(−(κ+δ))) |
//! | Saad–Solla line | κ + δ = 0 | 0 | both | constant plateau ∝ Δ |
//! | bad learning | κ < −δ < (κ + 1)/2 | 2(κ + δ) | η² alone | not learning |
//! | no ODE | −δ ≥ (κ + 1)/2 | κ − 1 (no theory unit: p samples) | none | not learning |
//!
//! This module holds the `[phase]` section, the per-N resolution of the scalings ([`width`],
//! [`learning_rate`]), the regions and the classification of a measured point ([`classify`]).

use crate::ode::OdeVariant;
use serde::{Deserialize, Serialize};

/// Tolerance of κ + δ = 0 (the Saad–Solla line is a line: grid values such as κ = 0.3, δ = −0.3
/// must land on it despite rounding).
pub const LINE_TOLERANCE: f64 = 1e-9;

/// `[phase]`: the (κ, δ) grid of `hdsgd phase` and its classification rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    /// Width exponents κ ≥ 0 of p = round(scale·N^κ).
    pub kappa: Vec<f64>,
    /// Learning-rate exponents δ of η = η₀·N^(−δ); the grid is every (κ, δ) pair.
    pub delta: Vec<f64>,
    /// Prefactor of the width. Default 1.
    #[serde(default = "one")]
    pub scale: f64,
    /// Learning-rate prefactor η₀ > 0 (Veiga et al.'s γ₀).
    pub eta0: f64,
    /// Which points integrate the ODE. Default "where_defined".
    #[serde(default)]
    pub ode: PhaseOde,
    /// The late-time risk of a run is its mean e_g over this last fraction of the record times
    /// (0 < f ≤ 1). Default 0.25.
    #[serde(default = "quarter")]
    pub late_fraction: f64,
    /// A point does not learn when its late risk at the largest N is at least this fraction of its
    /// initial risk (0 < f < 1). Default 0.5.
    #[serde(default = "half")]
    pub learned_fraction: f64,
    /// The late risk decreases with N when its log–log slope s satisfies s < −min_slope and
    /// s < −z·se(s). Default 0.1.
    #[serde(default = "tenth")]
    pub min_slope: f64,
    /// z of the significance of the slope (in standard errors). Default 2.
    #[serde(default = "two")]
    pub z: f64,
    /// Largest number of SGD samples of one run (≥ 1). Default 10⁹.
    #[serde(default = "billion")]
    pub max_run_samples: f64,
}

fn one() -> f64 {
    1.0
}
fn quarter() -> f64 {
    0.25
}
fn half() -> f64 {
    0.5
}
fn tenth() -> f64 {
    0.1
}
fn two() -> f64 {
    2.0
}
fn billion() -> f64 {
    1e9
}

/// `[phase] ode`: which grid points integrate the ODE of their region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PhaseOde {
    /// Every point outside the no-ODE region.
    #[default]
    WhereDefined,
    /// No point (simulations only).
    None,
    /// Every point; a point in the no-ODE region is an error.
    All,
}

impl PhaseConfig {
    /// Checks the ranges; the error is (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_string(), m));
        if self.kappa.is_empty() || self.delta.is_empty() {
            let f = if self.kappa.is_empty() { "kappa" } else { "delta" };
            return bad(f, "must list at least one value".into());
        }
        if let Some(k) = self.kappa.iter().find(|k| !(k.is_finite() && **k >= 0.0)) {
            return bad(
                "kappa",
                format!("{k} is not ≥ 0: a width p = N^κ that shrinks with N is not a scaling"),
            );
        }
        if let Some(d) = self.delta.iter().find(|d| !d.is_finite()) {
            return bad("delta", format!("{d} is not a finite number"));
        }
        for (f, v) in [("kappa", &self.kappa), ("delta", &self.delta)] {
            if v.windows(2).any(|w| w[1] <= w[0]) {
                return bad(f, "must be strictly increasing".into());
            }
        }
        for (f, v) in [
            ("scale", self.scale),
            ("eta0", self.eta0),
            ("min_slope", self.min_slope),
            ("z", self.z),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(f, format!("must be > 0 (got {v})"));
            }
        }
        if !(self.late_fraction > 0.0 && self.late_fraction <= 1.0) {
            return bad(
                "late_fraction",
                format!("must be in (0, 1] (got {})", self.late_fraction),
            );
        }
        if !(self.learned_fraction > 0.0 && self.learned_fraction < 1.0) {
            return bad(
                "learned_fraction",
                format!("must be in (0, 1) (got {})", self.learned_fraction),
            );
        }
        if self.max_run_samples.is_nan() || self.max_run_samples < 1.0 {
            return bad("max_run_samples", format!("must be ≥ 1 (got {})", self.max_run_samples));
        }
        Ok(())
    }

    /// The grid points (κ, δ), κ-major.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.kappa
            .iter()
            .flat_map(|&k| self.delta.iter().map(move |&d| (k, d)))
            .collect()
    }
}

/// The four regions of Veiga et al. (2022), Fig. 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// κ + δ > 0: the η² term vanishes, the risk goes to zero.
    Perfect,
    /// κ + δ = 0: both terms, a noise-limited plateau (Saad & Solla).
    Line,
    /// κ < −δ < (κ + 1)/2: the η² term dominates.
    Bad,
    /// −δ ≥ (κ + 1)/2: no deterministic limit.
    NoOde,
}

impl Region {
    /// The region of (κ, δ) (κ + δ = 0 within [`LINE_TOLERANCE`]).
    ///
    /// ```
    /// use hdsgd::analysis::phase::Region;
    /// assert_eq!(Region::of(0.5, 0.0), Region::Perfect);
    /// assert_eq!(Region::of(0.3, -0.3), Region::Line);
    /// assert_eq!(Region::of(0.0, -0.25), Region::Bad);
    /// assert_eq!(Region::of(0.0, -0.5), Region::NoOde);
    /// ```
    pub fn of(kappa: f64, delta: f64) -> Region {
        let s = kappa + delta;
        if s.abs() <= LINE_TOLERANCE {
            Region::Line
        } else if s > 0.0 {
            Region::Perfect
        } else if -delta < (kappa + 1.0) / 2.0 - LINE_TOLERANCE {
            Region::Bad
        } else {
            Region::NoOde
        }
    }

    /// Its name in the outputs.
    pub fn name(self) -> &'static str {
        match self {
            Region::Perfect => "perfect",
            Region::Line => "line",
            Region::Bad => "bad",
            Region::NoOde => "no_ode",
        }
    }

    /// The exponent ϑ of the region's time unit τ = ν/N^(1+ϑ) (module table): κ + δ in the
    /// perfect region and on the line, 2(κ + δ) in the bad band; in the no-ODE region, where the
    /// theory has no unit, κ − 1 (p samples per unit: the bad band's unit at the boundary).
    pub fn theta(self, kappa: f64, delta: f64) -> f64 {
        match self {
            Region::Perfect => kappa + delta,
            Region::Line => 0.0,
            Region::Bad => 2.0 * (kappa + delta),
            Region::NoOde => kappa - 1.0,
        }
    }

    /// The terms the region's limiting ODE keeps (`None`: no ODE).
    pub fn ode_variant(self) -> Option<OdeVariant> {
        match self {
            Region::Perfect => Some(OdeVariant::GradientFlow),
            Region::Line => Some(OdeVariant::Full),
            Region::Bad => Some(OdeVariant::SecondOrder),
            Region::NoOde => None,
        }
    }
}

/// The student width at dimension N: p = round(scale·N^κ) (rounded half away from zero); an
/// error message when that is 0 (or beyond `usize`).
///
/// ```
/// use hdsgd::analysis::phase::width;
/// assert_eq!(width(1000, 0.5, 1.0), Ok(32));   // √1000 = 31.6
/// assert_eq!(width(100, 0.0, 8.0), Ok(8));
/// assert!(width(100, 0.0, 0.4).is_err());       // rounds to 0
/// ```
pub fn width(n: usize, kappa: f64, scale: f64) -> Result<usize, String> {
    let p = (scale * (n as f64).powf(kappa)).round();
    if !(p >= 1.0 && p <= u32::MAX as f64) {
        return Err(format!(
            "p = round({scale}·{n}^{kappa}) = {p} at N = {n}: the width must be at least 1"
        ));
    }
    Ok(p as usize)
}

/// The learning rate at dimension N: η = η₀·N^(−δ) (hdsgd's η is Veiga et al.'s γ, with
/// a = 1/p: docs/phase_diagram.md).
pub fn learning_rate(n: usize, eta0: f64, delta: f64) -> f64 {
    eta0 * (n as f64).powf(-delta)
}

/// The measured class of a grid point (docs/phase_diagram.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The late risk decreases with N.
    Perfect,
    /// The late risk is learned (below the learned fraction of the start) and flat in N.
    Plateau,
    /// Not learning: a run diverged, the risk stays near its start, or it grows with N.
    NotLearning,
}

impl Class {
    /// Its name in the outputs.
    pub fn name(self) -> &'static str {
        match self {
            Class::Perfect => "perfect",
            Class::Plateau => "plateau",
            Class::NotLearning => "not_learning",
        }
    }

    /// The region this class is the signature of (not learning: the bad band or no ODE).
    pub fn agrees_with(self, region: Region) -> bool {
        matches!(
            (self, region),
            (Class::Perfect, Region::Perfect)
                | (Class::Plateau, Region::Line)
                | (Class::NotLearning, Region::Bad | Region::NoOde)
        )
    }
}

/// The measurement of one grid point at one N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointAtN {
    pub n: usize,
    /// Mean over seeds of the late-time risk (e_g).
    pub risk: f64,
    /// Its standard error over seeds.
    pub risk_se: f64,
    /// Mean over seeds of the initial risk.
    pub initial_risk: f64,
    /// Mean over seeds of the late excess risk over the run's matched gradient-flow ODE (the
    /// first-order term alone): the part of the risk the η² (noise) term adds.
    pub excess: f64,
    /// Its standard error over seeds.
    pub excess_se: f64,
    /// Runs that diverged.
    pub diverged: usize,
}

/// A classified grid point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classification {
    pub class: Class,
    /// Log–log slope s of the late risk against N (NaN when it cannot be fitted).
    pub slope: f64,
    /// Its standard error.
    pub slope_se: f64,
}

/// Classifies a point from its measurements at several N (increasing), in this order:
///
/// 1. not learning, when a run diverged or the late risk at the largest N is at least
///    `learned_fraction` × its initial risk;
/// 2. from the weighted log–log fit ln E = s ln N + c of the excess risk E over gradient flow
///    (s.e. of ln E = se/E, from the seeds; points with E ≤ 0 are left out): not learning when
///    s > z·se(s) (the noise part grows with N), perfect when s < −min_slope and s < −z·se(s) (the
///    noise floor ∝ (η/p)·N^ϑ = N^(−(κ+δ)) in the perfect region's unit), else plateau.
///
/// The excess, not the risk itself, because at a finite τ_max gradient flow itself has not
/// finished (an over-parametrised committee converges slowly) and its residual risk depends on p,
/// hence on N; the η² term is what the regions differ in (docs/phase_diagram.md). With fewer than
/// two usable N (or zero standard errors) the slope is NaN and a learned point is a plateau.
pub fn classify(points: &[PointAtN], cfg: &PhaseConfig) -> Classification {
    let fit = crate::analysis::fits::power_law_fit(
        &points.iter().map(|p| p.n as f64).collect::<Vec<_>>(),
        &points.iter().map(|p| p.excess).collect::<Vec<_>>(),
        &points.iter().map(|p| p.excess_se).collect::<Vec<_>>(),
    );
    let (slope, slope_se) = fit.map_or((f64::NAN, f64::NAN), |f| (-f.exponent, f.se_exponent));
    let last = points.last();
    let diverged = points.iter().any(|p| p.diverged > 0);
    let stuck = last.is_none_or(|p| p.risk.is_nan() || p.risk >= cfg.learned_fraction * p.initial_risk);
    let class = if diverged || stuck || slope > cfg.z * slope_se {
        Class::NotLearning
    } else if slope < -cfg.min_slope && slope < -cfg.z * slope_se {
        Class::Perfect
    } else {
        Class::Plateau
    };
    Classification { class, slope, slope_se }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PhaseConfig {
        PhaseConfig {
            kappa: vec![0.0],
            delta: vec![0.0],
            scale: 1.0,
            eta0: 1.0,
            ode: PhaseOde::WhereDefined,
            late_fraction: 0.25,
            learned_fraction: 0.5,
            min_slope: 0.1,
            z: 2.0,
            max_run_samples: 1e9,
        }
    }

    /// A measurement whose excess over gradient flow is its risk (gradient flow at zero).
    fn at(n: usize, risk: f64, se: f64) -> PointAtN {
        PointAtN {
            n,
            risk,
            risk_se: se,
            initial_risk: 0.3,
            excess: risk,
            excess_se: se,
            diverged: 0,
        }
    }

    /// The regions and their boundaries κ + δ = 0 and −δ = (κ + 1)/2 (Veiga et al., Fig. 1), and
    /// the time exponents of the module table.
    #[test]
    fn regions_and_time_units() {
        assert_eq!(Region::of(0.25, 0.25), Region::Perfect);
        assert_eq!(Region::of(0.25, -0.25), Region::Line);
        assert_eq!(Region::of(0.25, -0.5), Region::Bad);
        assert_eq!(Region::of(0.25, -0.625), Region::NoOde); // on the boundary: no ODE
        assert_eq!(Region::of(0.5, -0.74), Region::Bad);
        assert_eq!(Region::Perfect.theta(0.25, 0.25), 0.5);
        assert_eq!(Region::Bad.theta(0.25, -0.5), -0.5);
        // The bad band's unit meets the no-ODE unit on the boundary −δ = (κ + 1)/2.
        let (k, d) = (0.5, -0.75);
        assert!((Region::Bad.theta(k, d) - Region::NoOde.theta(k, d)).abs() < 1e-15);
        assert_eq!(Region::NoOde.ode_variant(), None);
    }

    /// The three classes on synthetic measurements: N^(−1/2) with 2 % errors is perfect; a flat
    /// risk within errors is a plateau; a risk near its start, or a growing one, does not learn.
    #[test]
    fn classification_rule() {
        let c = cfg();
        let ns = [100, 400, 1600];
        let decay: Vec<_> = ns
            .iter()
            .map(|&n| at(n, 0.1 / (n as f64).sqrt(), 0.002 / (n as f64).sqrt()))
            .collect();
        let r = classify(&decay, &c);
        assert_eq!(r.class, Class::Perfect);
        assert!((r.slope + 0.5).abs() < 1e-9);
        let flat: Vec<_> = ns
            .iter()
            .zip([0.010, 0.0102, 0.0099])
            .map(|(&n, r)| at(n, r, 0.0003))
            .collect();
        assert_eq!(classify(&flat, &c).class, Class::Plateau);
        let stuck: Vec<_> = ns.iter().map(|&n| at(n, 0.2, 0.01)).collect();
        assert_eq!(classify(&stuck, &c).class, Class::NotLearning);
        let growing: Vec<_> = ns
            .iter()
            .zip([0.01, 0.02, 0.04])
            .map(|(&n, r)| at(n, r, 0.001))
            .collect();
        assert_eq!(classify(&growing, &c).class, Class::NotLearning);
        // A risk that grows with p (hence N) through an unfinished gradient flow, with an excess
        // that decays: perfect, as its excess says.
        let slow: Vec<_> = decay
            .iter()
            .map(|x| PointAtN {
                risk: x.risk + 1e-3 * (x.n as f64).ln(),
                ..*x
            })
            .collect();
        assert_eq!(classify(&slow, &c).class, Class::Perfect);
        let mut diverged = decay.clone();
        diverged[0].diverged = 1;
        assert_eq!(classify(&diverged, &c).class, Class::NotLearning);
    }

    #[test]
    fn validation_names_fields() {
        let field = |f: fn(&mut PhaseConfig)| {
            let mut c = cfg();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(field(|c| c.kappa = vec![-0.5]), "kappa");
        assert_eq!(field(|c| c.delta = vec![0.5, 0.0]), "delta");
        assert_eq!(field(|c| c.eta0 = 0.0), "eta0");
        assert_eq!(field(|c| c.scale = f64::NAN), "scale");
        assert_eq!(field(|c| c.learned_fraction = 1.0), "learned_fraction");
        assert!(cfg().validate().is_ok());
        assert_eq!(cfg().points(), vec![(0.0, 0.0)]);
    }
}
