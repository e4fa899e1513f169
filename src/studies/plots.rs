//! Figures (SVG, via plotters): panels of curves with optional ±σ bands, linear or log axes.
//!
//! Hand-written on top of plotters only for the layout conventions (bands, dashed theory lines,
//! log axes that skip non-positive points); drawing itself is plotters'.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// One curve of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// Half-width of a shaded band around y (e.g. one standard deviation over seeds).
    pub band: Option<Vec<f64>>,
    /// Palette index (same index, same colour).
    pub color: usize,
    /// Dashed (theory) or solid (measurement).
    pub dashed: bool,
    /// Draw markers instead of a line.
    pub markers: bool,
}

impl Series {
    /// A solid line.
    pub fn line(label: impl Into<String>, x: Vec<f64>, y: Vec<f64>, color: usize) -> Self {
        Series {
            label: label.into(),
            x,
            y,
            band: None,
            color,
            dashed: false,
            markers: false,
        }
    }
}

/// One panel of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// A colour-blind-safe palette (Okabe–Ito).
pub fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(120, 120, 120),
        RGBColor(0, 0, 0),
    ];
    P[i % P.len()]
}

fn usable(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

fn range(series: &[Series], log: bool, pick: impl Fn(&Series) -> Vec<f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for v in pick(s) {
            if usable(v, log) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() {
        return if log { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        if hi <= lo {
            (lo / 2.0, hi * 2.0)
        } else {
            (lo / 1.2, hi * 1.2)
        }
    } else {
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            0.5 * lo.abs().max(1.0)
        };
        (lo - pad, hi + pad)
    }
}

/// Draws `panels` in a grid of `cols` columns into an SVG file.
pub fn draw(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    super::outdir::fault_point(&format!("draw {}", path.display()))?;
    let cols = cols.max(1).min(panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (520 * cols as u32, 400 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
        draw_panel(area, panel).map_err(|e| anyhow!("drawing {}: {e}", panel.title))?;
    }
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// The corner of the plot area with the fewest data points (curves and band edges), so that the
/// legend hides as little as possible (e.g. not the plateau of a decaying e_g). Ties go to the
/// upper right.
fn legend_corner(panel: &Panel, xr: (f64, f64), yr: (f64, f64)) -> SeriesLabelPosition {
    let frac = |v: f64, (lo, hi): (f64, f64), log: bool| {
        if log {
            (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    // Legend box as a fraction of the plot area (about what 8 entries take at this size).
    const W: f64 = 0.5;
    const H: f64 = 0.45;
    // (position, right side?, top side?)
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerLeft, false, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
    ];
    let mut counts = [0usize; 4];
    for s in &panel.series {
        let mut ys: Vec<(f64, f64)> = s.x.iter().copied().zip(s.y.iter().copied()).collect();
        if let Some(b) = &s.band {
            for ((x, y), w) in s.x.iter().zip(&s.y).zip(b) {
                ys.push((*x, y + w));
                ys.push((*x, y - w));
            }
        }
        for (x, y) in ys {
            if !usable(x, panel.log_x) || !usable(y, panel.log_y) {
                continue;
            }
            let (fx, fy) = (frac(x, xr, panel.log_x), frac(y, yr, panel.log_y));
            for (count, &(_, right, top)) in counts.iter_mut().zip(&corners) {
                let in_x = if right { fx >= 1.0 - W } else { fx <= W };
                let in_y = if top { fy >= 1.0 - H } else { fy <= H };
                if in_x && in_y {
                    *count += 1;
                }
            }
        }
    }
    let best = (0..4).min_by_key(|&i| (counts[i], i)).unwrap_or(0);
    corners[best].0.clone()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel<'a>(area: &'a Area, panel: &Panel) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let xr = range(&panel.series, panel.log_x, |s| s.x.clone());
    let yr = range(&panel.series, panel.log_y, |s| {
        let mut v = s.y.clone();
        if let Some(b) = &s.band {
            v.extend(s.y.iter().zip(b).map(|(y, b)| y + b));
            v.extend(
                s.y.iter()
                    .zip(b)
                    .map(|(y, b)| y - b)
                    .filter(|v| !panel.log_y || *v > 0.0),
            );
        }
        v
    });
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60);
    // The four axis combinations are different types in plotters, hence the macro.
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for s in &panel.series {
                let c = color(s.color);
                let pts: Vec<(f64, f64)> =
                    s.x.iter()
                        .zip(&s.y)
                        .filter(|(x, y)| usable(**x, panel.log_x) && usable(**y, panel.log_y))
                        .map(|(x, y)| (*x, *y))
                        .collect();
                if let Some(b) = &s.band {
                    let mut poly: Vec<(f64, f64)> = Vec::new();
                    let mut lower: Vec<(f64, f64)> = Vec::new();
                    for ((x, y), w) in s.x.iter().zip(&s.y).zip(b) {
                        let lo = if panel.log_y { (y - w).max(y * 1e-3) } else { y - w };
                        if usable(*x, panel.log_x) && usable(y + w, panel.log_y) && usable(lo, panel.log_y) {
                            poly.push((*x, y + w));
                            lower.push((*x, lo));
                        }
                    }
                    poly.extend(lower.into_iter().rev());
                    if poly.len() > 2 {
                        chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18))))?;
                    }
                }
                let style = ShapeStyle::from(&c).stroke_width(2);
                let anno = if s.markers {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.filled())))?
                } else if s.dashed {
                    chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))?
                } else {
                    chart.draw_series(LineSeries::new(pts.clone(), style))?
                };
                if !s.label.is_empty() {
                    let gap = if s.dashed { 4 } else { 0 };
                    anno.label(s.label.as_str()).legend(move |(x, y)| {
                        let style = ShapeStyle::from(&c).stroke_width(2);
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (8 - gap / 2, 0)], style)
                            + PathElement::new(vec![(8 + gap / 2, 0), (16, 0)], style)
                    });
                }
            }
            if panel.series.iter().any(|s| !s.label.is_empty()) {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .position(legend_corner(panel, xr, yr))
                    .draw()?;
            }
        }};
    }
    match (panel.log_x, panel.log_y) {
        (false, false) => body!(builder.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?),
        (true, false) => body!(builder.build_cartesian_2d((xr.0..xr.1).log_scale(), yr.0..yr.1)?),
        (false, true) => body!(builder.build_cartesian_2d(xr.0..xr.1, (yr.0..yr.1).log_scale())?),
        (true, true) => body!(builder.build_cartesian_2d((xr.0..xr.1).log_scale(), (yr.0..yr.1).log_scale())?),
    }
    Ok(())
}
