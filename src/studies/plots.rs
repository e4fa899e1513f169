//! Figures (SVG, via plotters): panels of curves with optional shaded bands, linear or log axes.
//!
//! Hand-written on top of plotters only for the layout conventions; drawing itself is plotters':
//!
//! * bands are given by their lower and upper edges (e.g. the 16 % and 84 % quantiles over seeds),
//!   so that a band on a log axis never crosses zero;
//! * colours come from one qualitative palette (Okabe–Ito); a figure that compares methods over
//!   several N keys the colours to N with swatches ([`Series::swatch`]) and the line styles to the
//!   methods with black keys ([`Series::style_key`]), so that the legend reads as two short lists;
//! * log axes skip non-positive points; tick labels are short numbers (no `0.7000000000000001`);
//! * a grid of panels never has an empty cell (the last row's panels are wider);
//! * a panel with nothing to draw says so in words instead of drawing empty axes.

use crate::analysis::fits::quantile;
use anyhow::{anyhow, Result};
use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use std::path::Path;

/// One curve of a panel, or one legend key.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// A shaded band: its (lower, upper) edges at each x.
    pub band: Option<(Vec<f64>, Vec<f64>)>,
    /// Palette index (same index, same colour; [`INK`] is black).
    pub color: usize,
    /// Dashed (theory) or solid (measurement).
    pub dashed: bool,
    /// Draw markers instead of a line.
    pub markers: bool,
    /// A legend entry without data: a colour swatch (true) or a line-style key (false).
    pub key: Option<bool>,
}

/// The palette index of black (style keys, single reference curves).
pub const INK: usize = usize::MAX;

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
            key: None,
        }
    }

    /// The same curve dashed (theory, ODE).
    pub fn dashed(self) -> Self {
        Series { dashed: true, ..self }
    }

    /// The same points as markers, without a line.
    pub fn markers(self) -> Self {
        Series { markers: true, ..self }
    }

    /// The same curve with a shaded band between the edges `lo` and `hi`.
    pub fn with_band(self, lo: Vec<f64>, hi: Vec<f64>) -> Self {
        Series {
            band: Some((lo, hi)),
            ..self
        }
    }

    /// A legend entry only: a swatch of palette colour `color` (e.g. "N = 1000").
    pub fn swatch(label: impl Into<String>, color: usize) -> Self {
        Series {
            key: Some(true),
            ..Series::line(label, vec![], vec![], color)
        }
    }

    /// A legend entry only: a black solid or dashed line (e.g. "SGD", "ODE").
    pub fn style_key(label: impl Into<String>, dashed: bool) -> Self {
        Series {
            key: Some(false),
            dashed,
            ..Series::line(label, vec![], vec![], INK)
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

impl Panel {
    /// A panel with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        series: Vec<Series>,
    ) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            series,
        }
    }

    /// The same panel with logarithmic x (`log_x`) and y (`log_y`) axes.
    pub fn log_axes(self, log_x: bool, log_y: bool) -> Self {
        Panel { log_x, log_y, ..self }
    }
}

/// A colour-blind-safe qualitative palette (Okabe–Ito, without its yellow, which is too light on
/// white, and its black, which is [`INK`]); neighbouring indices differ in hue and lightness.
pub fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 7] = [
        RGBColor(0, 114, 178),   // blue
        RGBColor(213, 94, 0),    // vermillion
        RGBColor(0, 158, 115),   // bluish green
        RGBColor(204, 121, 167), // reddish purple
        RGBColor(230, 159, 0),   // orange
        RGBColor(86, 180, 233),  // sky blue
        RGBColor(120, 120, 120), // grey
    ];
    if i == INK {
        RGBColor(30, 30, 30)
    } else {
        P[i % P.len()]
    }
}

/// An axis label in words with its symbol, for an observable name of the output tables.
///
/// ```
/// use hdsgd::studies::plots::observable_label;
/// assert_eq!(observable_label("norm_m"), "‖M‖_F (norm of M)");
/// assert_eq!(observable_label("q_0_1"), "Q₀₁ (student–student overlap)");
/// ```
pub fn observable_label(name: &str) -> String {
    fn sub(s: &str) -> String {
        s.chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_u32(0x2080 + d).unwrap_or(c),
                None => c,
            })
            .collect()
    }
    let parts: Vec<&str> = name.split('_').collect();
    match (name, parts.as_slice()) {
        ("eg" | "e_g", _) => "e_g (population error)".into(),
        ("tr_q", _) => "tr Q (trace of the student overlaps)".into(),
        ("norm_m", _) => "‖M‖_F (norm of M)".into(),
        ("cons_drift", _) => "‖I(t) − I(0)‖/‖I(0)‖ (drift of the conserved quantity)".into(),
        (_, ["q", i, j]) => format!("Q{} (student–student overlap)", sub(&format!("{i}{j}"))),
        (_, ["m", i, k]) => format!("M{} (student–teacher overlap)", sub(&format!("{i}{k}"))),
        (_, ["cons", k, l]) => format!("I{} (conserved quantity)", sub(&format!("{k}{l}"))),
        _ => name.into(),
    }
}

/// The x label of time axes.
pub const TIME_LABEL: &str = "t = samples/N (time)";

/// Per record index over runs (runs that stopped early contribute to the times they reached): the
/// median and the `lo` and `hi` quantiles, for a band that stays inside the data (on a log axis it
/// never crosses zero for positive data, unlike mean ± s.d.).
pub fn quantile_band(curves: &[Vec<f64>], lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let len = curves.iter().map(|c| c.len()).max().unwrap_or(0);
    let (mut m, mut l, mut h) = (vec![], vec![], vec![]);
    for i in 0..len {
        let mut v: Vec<f64> = curves
            .iter()
            .filter_map(|c| c.get(i).copied())
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        m.push(quantile(&v, 0.5));
        l.push(quantile(&v, lo));
        h.push(quantile(&v, hi));
    }
    (m, l, h)
}

fn usable(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

fn range(series: &[Series], log: bool, pick: impl Fn(&Series) -> Vec<f64>) -> Option<(f64, f64)> {
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
        return None;
    }
    Some(if log {
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
    })
}

/// A short tick label: up to 4 significant digits, scientific notation outside [1e-3, 1e5).
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        // 1.00e4 → 1e4, 2.50e-4 → 2.5e-4
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Tick values of a log axis on [lo, hi]: the powers of ten, or 1-2-5, or 1…9 per decade,
/// whichever first gives at least three ticks; at most 12 (every k-th power of ten over a very
/// long range).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return vec![];
    }
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut out = vec![];
    for mults in [
        &[1.0][..],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ] {
        out.clear();
        for k in k0..=k1 {
            for m in mults {
                let v = m * 10f64.powi(k);
                if v >= lo && v <= hi {
                    out.push(v);
                }
            }
        }
        if out.len() >= 3 {
            break;
        }
    }
    if out.len() > 12 {
        let step = out.len().div_ceil(12);
        out = out.into_iter().step_by(step).collect();
    }
    out
}

/// Draws `panels` in a grid of `cols` columns into an SVG file. The last row holds the remaining
/// panels, widened to fill it: no empty cell.
pub fn draw(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    super::outdir::fault_point(&format!("draw {}", path.display()))?;
    let cols = cols.max(1).min(panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let size = if panels.len() == 1 {
        (720, 500)
    } else {
        (520 * cols as u32, 400 * rows as u32)
    };
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let row_areas = root.split_evenly((rows, 1));
    for (r, row) in row_areas.iter().enumerate() {
        let here = &panels[(r * cols).min(panels.len())..((r + 1) * cols).min(panels.len())];
        if here.is_empty() {
            continue;
        }
        for (area, panel) in row.split_evenly((1, here.len())).iter().zip(here) {
            draw_panel(area, panel).map_err(|e| anyhow!("drawing {}: {e}", panel.title))?;
        }
    }
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// The corner of the plot area with the fewest data points (curves and band edges), so that the
/// legend hides as little as possible (e.g. not the plateau of a decaying e_g). Ties go to the
/// upper right.
fn legend_corner(panel: &Panel, xr: (f64, f64), yr: (f64, f64), (pw, ph): (u32, u32)) -> SeriesLabelPosition {
    let frac = |v: f64, (lo, hi): (f64, f64), log: bool| {
        if log {
            (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    // The legend box as a fraction of the plot area: ~7 px per character of the longest label
    // plus the key, ~17 px per entry (at the legend's font size).
    let labels: Vec<&Series> = panel.series.iter().filter(|s| !s.label.is_empty()).collect();
    let chars = labels.iter().map(|s| s.label.chars().count()).max().unwrap_or(0) as f64;
    let plot_w = (pw as f64 - 90.0).max(100.0);
    let plot_h = (ph as f64 - 90.0).max(100.0);
    let w_frac = ((chars * 7.0 + 45.0) / plot_w).min(1.0);
    let h_frac = ((labels.len() as f64 * 17.0 + 12.0) / plot_h).min(1.0);
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
        if let Some((lo, hi)) = &s.band {
            for ((x, l), h) in s.x.iter().zip(lo).zip(hi) {
                ys.push((*x, *h));
                ys.push((*x, *l));
            }
        }
        for (x, y) in ys {
            if !usable(x, panel.log_x) || !usable(y, panel.log_y) {
                continue;
            }
            let (fx, fy) = (frac(x, xr, panel.log_x), frac(y, yr, panel.log_y));
            for (count, &(_, right, top)) in counts.iter_mut().zip(&corners) {
                let in_x = if right { fx >= 1.0 - w_frac } else { fx <= w_frac };
                let in_y = if top { fy >= 1.0 - h_frac } else { fy <= h_frac };
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

/// A chart of one panel on either kind of axis (the four axis combinations are different types).
type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws one panel into `area`: axes, bands, curves and legend; or, when no point is drawable on
/// its axes, the title and a line saying so.
fn draw_panel(area: &Area, panel: &Panel) -> DrawResult {
    let Some((xr, yr)) = panel_ranges(panel) else {
        return say_nothing_to_draw(area, panel);
    };
    let corner = legend_corner(panel, xr, yr, area.dim_in_pixel());
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(64);
    // Log axes get their own ticks (1-2-5 or 1…9 per decade when the range is short).
    let lx = || (xr.0..xr.1).log_scale().with_key_points(log_ticks(xr.0, xr.1));
    let ly = || (yr.0..yr.1).log_scale().with_key_points(log_ticks(yr.0, yr.1));
    match (panel.log_x, panel.log_y) {
        (false, false) => draw_chart(builder.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?, panel, corner),
        (true, false) => draw_chart(builder.build_cartesian_2d(lx(), yr.0..yr.1)?, panel, corner),
        (false, true) => draw_chart(builder.build_cartesian_2d(xr.0..xr.1, ly())?, panel, corner),
        (true, true) => draw_chart(builder.build_cartesian_2d(lx(), ly())?, panel, corner),
    }
}

/// The x and y ranges of a panel (band edges included in y), or None when it has no point that
/// is drawable on its axes.
fn panel_ranges(panel: &Panel) -> Option<((f64, f64), (f64, f64))> {
    let xr = range(&panel.series, panel.log_x, |s| s.x.clone());
    let yr = range(&panel.series, panel.log_y, |s| {
        let mut v = s.y.clone();
        if let Some((lo, hi)) = &s.band {
            v.extend(lo.iter().chain(hi));
        }
        v
    });
    let drawable = panel.series.iter().any(|s| {
        s.x.iter()
            .zip(&s.y)
            .any(|(x, y)| usable(*x, panel.log_x) && usable(*y, panel.log_y))
    });
    match (xr, yr, drawable) {
        (Some(xr), Some(yr), true) => Some((xr, yr)),
        _ => None,
    }
}

/// A panel with nothing to draw says so (title and a message) rather than draw empty axes.
fn say_nothing_to_draw(area: &Area, panel: &Panel) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        panel.title.clone(),
        (20, 14),
        ("sans-serif", 18).into_font().color(&BLACK),
    ))?;
    let msg = "nothing to draw: no finite data point on these axes (see the title and the tables)";
    let x = (w as i32 / 2 - 3 * msg.chars().count() as i32).max(10);
    area.draw(&Text::new(
        msg,
        (x, h as i32 / 2),
        ("sans-serif", 14).into_font().color(&RGBColor(150, 30, 30)),
    ))?;
    Ok(())
}

/// Axes, then every band (under every line), then every curve, then the legend in `corner`.
fn draw_chart<'a, 'b: 'a, X, Y>(
    mut chart: Chart<'a, 'b, X, Y>,
    panel: &Panel,
    corner: SeriesLabelPosition,
) -> DrawResult
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let fmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_labels(8)
        .y_labels(8)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for s in &panel.series {
        draw_band(&mut chart, panel, s)?;
    }
    for s in &panel.series {
        draw_curve(&mut chart, panel, s)?;
    }
    if panel.series.iter().any(|s| !s.label.is_empty()) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.88))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .position(corner)
            .draw()?;
    }
    Ok(())
}

/// The band of `s`, if any: a light fill with thin edges, so that overlapping bands stay apart.
fn draw_band<'a, 'b: 'a, X, Y>(chart: &mut Chart<'a, 'b, X, Y>, panel: &Panel, s: &Series) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let Some((lo, hi)) = &s.band else { return Ok(()) };
    let c = color(s.color);
    let mut upper: Vec<(f64, f64)> = Vec::new();
    let mut lower: Vec<(f64, f64)> = Vec::new();
    for ((x, l), h) in s.x.iter().zip(lo).zip(hi) {
        if usable(*x, panel.log_x) && usable(*h, panel.log_y) && usable(*l, panel.log_y) {
            upper.push((*x, *h));
            lower.push((*x, *l));
        }
    }
    if upper.len() > 1 {
        let edge = ShapeStyle::from(&c.mix(0.55)).stroke_width(1);
        chart.draw_series(std::iter::once(PathElement::new(upper.clone(), edge)))?;
        chart.draw_series(std::iter::once(PathElement::new(lower.clone(), edge)))?;
        let mut poly = upper;
        poly.extend(lower.into_iter().rev());
        chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.13))))?;
    }
    Ok(())
}

/// The curve of `s` (solid, dashed or markers) and its legend entry, whose key shows the same
/// style (or a colour swatch).
fn draw_curve<'a, 'b: 'a, X, Y>(chart: &mut Chart<'a, 'b, X, Y>, panel: &Panel, s: &Series) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let c = color(s.color);
    let style = ShapeStyle::from(&c).stroke_width(2);
    let pts: Vec<(f64, f64)> =
        s.x.iter()
            .zip(&s.y)
            .filter(|(x, y)| usable(**x, panel.log_x) && usable(**y, panel.log_y))
            .map(|(x, y)| (*x, *y))
            .collect();
    // A curve with a single point (a run that diverged right after it) is a marker.
    let anno = if s.markers || (pts.len() == 1 && s.key.is_none()) {
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.filled())))?
    } else if s.dashed {
        chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))?
    } else {
        chart.draw_series(LineSeries::new(pts.clone(), style))?
    };
    if s.label.is_empty() {
        return Ok(());
    }
    let (dashed, swatch, markers) = (s.dashed, s.key == Some(true), s.markers);
    anno.label(s.label.as_str()).legend(move |(x, y)| {
        // One element type for every kind of key: a box and two strokes, the unused ones
        // invisible.
        let style = ShapeStyle::from(&c).stroke_width(2);
        let none = ShapeStyle::from(&WHITE.mix(0.0));
        let (rect, strokes) = if swatch {
            (Rectangle::new([(0, -5), (16, 5)], c.mix(0.8).filled()), [none, none])
        } else if markers {
            (Rectangle::new([(5, -3), (11, 3)], style.filled()), [none, none])
        } else {
            (Rectangle::new([(0, 0), (1, 1)], none), [style, style])
        };
        let (a, b) = if dashed { ((0, 6), (10, 16)) } else { ((0, 8), (8, 16)) };
        EmptyElement::at((x, y))
            + rect
            + PathElement::new(vec![(a.0, 0), (a.1, 0)], strokes[0])
            + PathElement::new(vec![(b.0, 0), (b.1, 0)], strokes[1])
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.7000000000000001), "0.7");
        assert_eq!(tick(1000.0), "1000");
        assert_eq!(tick(0.01), "0.01");
        assert_eq!(tick(1e-4), "1e-4");
        assert_eq!(tick(2.5e6), "2.5e6");
        assert_eq!(tick(-0.25), "-0.25");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn log_ticks_fill_short_ranges() {
        assert_eq!(log_ticks(0.005, 150.0), vec![0.01, 0.1, 1.0, 10.0, 100.0]);
        assert_eq!(log_ticks(200.0, 2400.0), vec![200.0, 500.0, 1000.0, 2000.0]);
        assert_eq!(log_ticks(3.0, 9.5).len(), 7);
        assert!(log_ticks(1e-300, 1e300).len() <= 12);
    }

    #[test]
    fn quantile_bands_stay_inside_positive_data() {
        let curves = vec![vec![1.0, 1e-6], vec![2.0, 1e-3], vec![3.0]];
        let (m, lo, hi) = quantile_band(&curves, 0.16, 0.84);
        assert_eq!(m[0], 2.0);
        assert!((m[1] - 0.0005005).abs() < 1e-15);
        assert!(lo.iter().all(|&x| x > 0.0) && hi[0] <= 3.0 && lo[0] >= 1.0);
    }

    /// Every panel has a picture and an all-empty panel says so (no empty axes, no empty cells).
    #[test]
    fn empty_panels_say_so_and_grids_have_no_holes() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |title: &str, y: Vec<f64>| Panel {
            title: title.into(),
            x_label: TIME_LABEL.into(),
            y_label: observable_label("eg"),
            log_x: true,
            log_y: true,
            series: vec![Series::line("a", vec![0.0, 1.0, 2.0][..y.len()].to_vec(), y, 0)],
        };
        let f = tmp.path().join("f.svg");
        draw(
            &f,
            &[
                p("one", vec![1.0, 2.0]),
                p("two", vec![1.0, 0.5]),
                p("empty", vec![0.0]),
            ],
            2,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&f).unwrap();
        assert!(svg.contains("nothing to draw"));
        assert!(svg.contains("e_g (population error)"));
    }
}
