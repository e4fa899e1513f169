//! Recording time grids in t = samples/N.

use serde::{Deserialize, Serialize};

/// Spacing of a time grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GridKind {
    /// `points` equally spaced times in (0, t_max].
    #[default]
    Linear,
    /// `points` logarithmically spaced times from t_min to t_max.
    Log,
}

/// The record times: always t = 0, then `points` times up to and including t_max.
///
/// ```
/// use hdsgd::grid::{time_grid, GridKind};
/// assert_eq!(time_grid(GridKind::Linear, 4, 0.0, 2.0), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
/// let g = time_grid(GridKind::Log, 3, 0.1, 10.0);
/// assert_eq!(g.len(), 4);
/// assert!((g[2] - 1.0).abs() < 1e-12 && g[3] == 10.0);
/// ```
pub fn time_grid(kind: GridKind, points: usize, t_min: f64, t_max: f64) -> Vec<f64> {
    let mut g = vec![0.0];
    match kind {
        GridKind::Linear => g.extend((1..=points).map(|k| t_max * k as f64 / points as f64)),
        GridKind::Log => {
            if points == 1 {
                g.push(t_max);
            } else {
                let (l0, l1) = (t_min.ln(), t_max.ln());
                g.extend((0..points).map(|k| (l0 + (l1 - l0) * k as f64 / (points - 1) as f64).exp()));
            }
        }
    }
    if let Some(last) = g.last_mut() {
        *last = t_max;
    }
    g
}
