//! Small statistics used by the studies: sample summaries, quantiles, and straight-line fits
//! (weighted least squares with known standard errors, or ordinary least squares) with the
//! standard errors of their parameters.

/// Count, mean, standard deviation (n − 1 normalisation) and standard error of the mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSummary {
    pub count: usize,
    pub mean: f64,
    /// Sample standard deviation, √(Σ(x − x̄)²/(n − 1)); NaN for fewer than two values.
    pub std: f64,
    /// Standard error of the mean, std/√n.
    pub se: f64,
}

/// Summary of a sample (mean, std, standard error).
///
/// ```
/// let s = hdsgd::analysis::fits::summarize(&[1.0, 2.0, 3.0]);
/// assert_eq!((s.count, s.mean, s.std), (3, 2.0, 1.0));
/// assert!((s.se - 1.0 / 3f64.sqrt()).abs() < 1e-15);
/// ```
pub fn summarize(x: &[f64]) -> SampleSummary {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    SampleSummary {
        count: n,
        mean,
        std,
        se: std / (n as f64).sqrt(),
    }
}

/// The q-quantile (0 ≤ q ≤ 1) of an increasingly sorted sample, linear interpolation between
/// order statistics (Hyndman–Fan type 7, the default of R and numpy). NaN for an empty sample.
///
/// ```
/// use hdsgd::analysis::fits::quantile;
/// assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
/// assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
/// ```
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// A straight-line fit y = slope·x + intercept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
    /// Standard error of the slope (see [`linear_fit`] for which one).
    pub se_slope: f64,
    /// Standard error of the intercept.
    pub se_intercept: f64,
    /// Covariance of (slope, intercept).
    pub cov: f64,
    /// χ² = Σ wᵢ rᵢ² of the residuals (weighted fits; the residual sum of squares otherwise).
    pub chi2: f64,
    /// Degrees of freedom, points − 2.
    pub dof: usize,
}

impl LinearFit {
    /// χ²/dof (NaN when dof = 0).
    pub fn reduced_chi2(&self) -> f64 {
        self.chi2 / self.dof as f64
    }
}

/// Least-squares straight line through (xᵢ, yᵢ). Needs at least two distinct x.
///
/// * With `se = Some(σ)`: weighted least squares with weights wᵢ = 1/σᵢ² and the parameters'
///   covariance (XᵀWX)⁻¹, i.e. the σᵢ taken as the known standard errors of the yᵢ (not rescaled by
///   χ²/dof; compare [`LinearFit::reduced_chi2`] with 1 to judge the fit).
/// * With `se = None`: ordinary least squares, covariance s²(XᵀX)⁻¹ with s² = RSS/(n − 2)
///   (infinite standard errors with two points).
///
/// ```
/// use hdsgd::analysis::fits::linear_fit;
/// let f = linear_fit(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0], None).unwrap();
/// assert!((f.slope - 2.0).abs() < 1e-12 && (f.intercept - 1.0).abs() < 1e-12);
/// let w = linear_fit(&[0.0, 1.0], &[1.0, 3.0], Some(&[0.1, 0.1])).unwrap();
/// assert!((w.se_slope - 0.1 * 2f64.sqrt()).abs() < 1e-12);
/// ```
pub fn linear_fit(x: &[f64], y: &[f64], se: Option<&[f64]>) -> Option<LinearFit> {
    let n = x.len();
    if n < 2 || y.len() != n || se.is_some_and(|s| s.len() != n) {
        return None;
    }
    let w: Vec<f64> = match se {
        Some(s) => s.iter().map(|s| 1.0 / (s * s)).collect(),
        None => vec![1.0; n],
    };
    if w.iter().any(|w| !(w.is_finite() && *w > 0.0)) || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let sw: f64 = w.iter().sum();
    let sx: f64 = w.iter().zip(x).map(|(w, x)| w * x).sum();
    let sy: f64 = w.iter().zip(y).map(|(w, y)| w * y).sum();
    let (xm, ym) = (sx / sw, sy / sw);
    // Centred sums: numerically stable normal equations.
    let sxx: f64 = w.iter().zip(x).map(|(w, x)| w * (x - xm) * (x - xm)).sum();
    let sxy: f64 = w.iter().zip(x).zip(y).map(|((w, x), y)| w * (x - xm) * (y - ym)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = ym - slope * xm;
    let chi2: f64 = w
        .iter()
        .zip(x)
        .zip(y)
        .map(|((w, x), y)| w * (y - slope * x - intercept).powi(2))
        .sum();
    let dof = n - 2;
    // (XᵀWX)⁻¹ in centred form: var(slope) = 1/Sxx, var(intercept) = 1/Sw + x̄²/Sxx, cov = −x̄/Sxx.
    let scale = match se {
        Some(_) => 1.0,
        None => {
            if dof == 0 {
                f64::INFINITY
            } else {
                chi2 / dof as f64
            }
        }
    };
    let var_slope = scale / sxx;
    let var_intercept = scale * (1.0 / sw + xm * xm / sxx);
    Some(LinearFit {
        slope,
        intercept,
        se_slope: var_slope.sqrt(),
        se_intercept: var_intercept.sqrt(),
        cov: -scale * xm / sxx,
        chi2,
        dof,
    })
}

/// A power law y = A·N^{−exponent}, fitted as a straight line of ln y against ln N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLawFit {
    /// The exponent (minus the log–log slope).
    pub exponent: f64,
    /// Its standard error: the weighted-fit standard error, multiplied by √(χ²/dof) when that
    /// exceeds 1 (a fit worse than the error bars widens its own error bar, never narrows it).
    pub se_exponent: f64,
    /// ln A.
    pub log_prefactor: f64,
    /// The underlying straight-line fit of ln y on ln N.
    pub line: LinearFit,
}

/// Fits y ∝ N^{−exponent} from positive values `y` with standard errors `se_y` (delta method:
/// se(ln y) = se_y/y). Points with non-positive or non-finite y or se are skipped; `None` when fewer
/// than two points remain.
///
/// ```
/// use hdsgd::analysis::fits::power_law_fit;
/// let n = [100.0, 400.0, 1600.0];
/// let y: Vec<f64> = n.iter().map(|n: &f64| 3.0 / n.sqrt()).collect();
/// let se: Vec<f64> = y.iter().map(|y| 0.01 * y).collect();
/// let f = power_law_fit(&n, &y, &se).unwrap();
/// assert!((f.exponent - 0.5).abs() < 1e-12);
/// ```
pub fn power_law_fit(n: &[f64], y: &[f64], se_y: &[f64]) -> Option<PowerLawFit> {
    let mut lx = vec![];
    let mut ly = vec![];
    let mut ls = vec![];
    for ((n, y), s) in n.iter().zip(y).zip(se_y) {
        if *n > 0.0 && y.is_finite() && *y > 0.0 && s.is_finite() && *s > 0.0 {
            lx.push(n.ln());
            ly.push(y.ln());
            ls.push(s / y);
        }
    }
    let line = linear_fit(&lx, &ly, Some(&ls))?;
    let inflate = if line.dof > 0 {
        line.reduced_chi2().sqrt().max(1.0)
    } else {
        1.0
    };
    Some(PowerLawFit {
        exponent: -line.slope,
        se_exponent: line.se_slope * inflate,
        log_prefactor: line.intercept,
        line,
    })
}

/// Mean and standard deviation over runs, per record index, of one observable (runs that stopped
/// early contribute to the times they reached).
pub fn mean_std<'a>(curves: impl Iterator<Item = &'a [f64]>) -> (Vec<f64>, Vec<f64>) {
    let curves: Vec<&[f64]> = curves.collect();
    let len = curves.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut mean = vec![];
    let mut std = vec![];
    for i in 0..len {
        let vals: Vec<f64> = curves.iter().filter_map(|c| c.get(i).copied()).collect();
        let n = vals.len() as f64;
        let m = vals.iter().sum::<f64>() / n;
        let v = if vals.len() > 1 {
            vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        mean.push(m);
        std.push(v.sqrt());
    }
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_fit_matches_closed_form() {
        // Two points with unequal errors: the line passes through both; slope se = √(σ1² + σ2²)/Δx.
        let f = linear_fit(&[1.0, 3.0], &[2.0, 6.0], Some(&[0.3, 0.4])).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-12);
        assert!((f.se_slope - 0.5 / 2.0).abs() < 1e-12);
        assert_eq!(f.dof, 0);
        assert!(linear_fit(&[1.0, 1.0], &[2.0, 3.0], None).is_none());
    }

    #[test]
    fn ols_standard_error() {
        // y = x + (+1, −1, +1, −1), worked by hand: x̄ = ȳ = 1.5, Sxx = 5, Sxy = 3, so slope 0.6,
        // intercept 0.6; residuals (0.4, −1.2, 1.2, −0.4), RSS = 3.2, s² = RSS/(n − 2) = 1.6;
        // se(slope)² = s²/Sxx = 0.32, se(intercept)² = s²(1/n + x̄²/Sxx) = 1.12.
        let x = [0.0, 1.0, 2.0, 3.0];
        let y = [1.0, 0.0, 3.0, 2.0];
        let f = linear_fit(&x, &y, None).unwrap();
        assert!((f.slope - 0.6).abs() < 1e-12);
        assert!((f.intercept - 0.6).abs() < 1e-12);
        assert!((f.chi2 - 3.2).abs() < 1e-12, "{}", f.chi2);
        assert_eq!(f.dof, 2);
        assert!((f.se_slope - 0.32f64.sqrt()).abs() < 1e-12, "{}", f.se_slope);
        assert!((f.se_intercept - 1.12f64.sqrt()).abs() < 1e-12, "{}", f.se_intercept);
    }

    #[test]
    fn quantiles() {
        let s = [0.0, 10.0];
        assert_eq!(quantile(&s, 0.0), 0.0);
        assert_eq!(quantile(&s, 1.0), 10.0);
        assert_eq!(quantile(&s, 0.3), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
