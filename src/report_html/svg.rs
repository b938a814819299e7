//! Charts as inline SVG: axes (linear, logarithmic, or a "nines" axis for percentiles), lines,
//! stacked areas and marks. Plain Rust over numbers and strings; no PostgreSQL here.
//!
//! Every drawn series is one `<polyline>` (a line) or `<polygon>` (an area) with `data-series` set
//! to its name, so that what a chart shows can be counted in the page's DOM.

use std::fmt::Write;

/// Where a value lands on an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear {
        min: f64,
        max: f64,
    },
    /// powers of ten; values at or below 0 are not drawn
    Log {
        min: f64,
        max: f64,
    },
}

impl Scale {
    /// A linear scale from 0 (or the lowest value, when negative) to a round number above the
    /// highest value.
    pub fn linear_from_zero(values: impl IntoIterator<Item = f64>) -> Scale {
        let (lo, hi) = bounds(values).unwrap_or((0.0, 1.0));
        let max = if hi > 0.0 {
            nice_step(hi / 5.0) * 5.0
        } else {
            1.0
        };
        Scale::Linear {
            min: lo.min(0.0),
            max: if max >= hi { max } else { hi },
        }
    }

    /// A linear scale over exactly the values' range (a little room when they are all equal).
    pub fn linear_over(values: impl IntoIterator<Item = f64>) -> Scale {
        match bounds(values) {
            Some((lo, hi)) if hi > lo => Scale::Linear { min: lo, max: hi },
            Some((lo, _)) => Scale::Linear {
                min: lo - 0.5,
                max: lo + 0.5,
            },
            None => Scale::Linear { min: 0.0, max: 1.0 },
        }
    }

    /// A log scale from the power of ten at or below the lowest positive value to the one at or
    /// above the highest.
    pub fn log_over(values: impl IntoIterator<Item = f64>) -> Scale {
        match bounds(values.into_iter().filter(|v| *v > 0.0)) {
            Some((lo, hi)) => {
                let min = 10f64.powf(lo.log10().floor());
                let mut max = 10f64.powf(hi.log10().ceil());
                if max <= min {
                    max = min * 10.0;
                }
                Scale::Log { min, max }
            }
            None => Scale::Log {
                min: 0.1,
                max: 10.0,
            },
        }
    }

    /// Position of `v` from 0 (min) to 1 (max); None when it cannot be drawn.
    fn fraction(&self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return None;
        }
        match *self {
            Scale::Linear { min, max } => Some((v - min) / (max - min)),
            Scale::Log { min, max } => {
                (v > 0.0).then(|| (v.log10() - min.log10()) / (max.log10() - min.log10()))
            }
        }
    }

    /// Tick values and their labels.
    fn ticks(&self, format: fn(f64) -> String) -> Vec<(f64, String)> {
        match *self {
            Scale::Linear { min, max } => {
                let step = nice_step((max - min) / 5.0);
                let mut v = (min / step).ceil() * step;
                let mut ticks = Vec::new();
                while v <= max + step * 1e-9 && ticks.len() < 12 {
                    ticks.push((v, format(v)));
                    v += step;
                }
                ticks
            }
            Scale::Log { min, max } => {
                let (lo, hi) = (min.log10().round() as i32, max.log10().round() as i32);
                (lo..=hi)
                    .map(|e| 10f64.powi(e))
                    .map(|v| (v, format(v)))
                    .collect()
            }
        }
    }
}

/// Lowest and highest finite value.
fn bounds(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// 1, 2 or 5 times a power of ten, at least `rough`.
fn nice_step(rough: f64) -> f64 {
    if rough.is_nan() || rough <= 0.0 || rough.is_infinite() {
        return 1.0;
    }
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// A number as a person reads it: 3 significant digits, thousands without decimals.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 9) as usize;
        format!("{v:.digits$}")
    }
}

/// A tick label: [`number`] without trailing zeros ("2", not "2.00").
pub fn tick(v: f64) -> String {
    let text = number(v);
    if text.contains('.') && !text.ends_with(['k', 'M', 'G']) {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `&`, `<`, `>`, `"` and `'` as entities: anything a run recorded is text, never markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An axis: its scale, its title, and how its tick labels read.
pub struct Axis {
    pub scale: Scale,
    pub title: String,
    pub format: fn(f64) -> String,
    /// fixed ticks instead of the scale's own
    pub ticks: Option<Vec<(f64, String)>>,
}

impl Axis {
    pub fn new(scale: Scale, title: &str) -> Axis {
        Axis {
            scale,
            title: title.into(),
            format: tick,
            ticks: None,
        }
    }
}

/// A series drawn as a line through its points, in order.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// a dot at each point too (for few points)
    pub dots: bool,
    pub dashed: bool,
}

/// One layer of a stacked area: between `lower` and `upper`, at the same x values.
pub struct Area {
    pub name: String,
    pub xs: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

/// A mark at an x value along the top of the plot (errors, deadlocks), with a tooltip.
pub struct Mark {
    pub x: f64,
    pub kind: MarkKind,
    pub title: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Error,
    Deadlock,
}

pub struct Chart {
    /// the `<svg>` element's id
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub lines: Vec<Line>,
    pub areas: Vec<Area>,
    pub marks: Vec<Mark>,
}

/// Series colours, in order (the legend repeats them).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const WIDTH: f64 = 920.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 44.0;

impl Chart {
    pub fn new(id: &str, title: &str, x: Axis, y: Axis) -> Chart {
        Chart {
            id: id.into(),
            title: title.into(),
            x,
            y,
            lines: Vec::new(),
            areas: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn px(&self, x: f64) -> Option<f64> {
        self.x
            .scale
            .fraction(x)
            .map(|f| LEFT + f * (WIDTH - LEFT - RIGHT))
    }

    fn py(&self, y: f64) -> Option<f64> {
        self.y
            .scale
            .fraction(y)
            .map(|f| HEIGHT - BOTTOM - f * (HEIGHT - TOP - BOTTOM))
    }

    /// The chart as a `<figure>`: title, SVG, legend.
    pub fn render(&self) -> String {
        let mut svg = String::new();
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let _ = write!(
            svg,
            r#"<svg id="{}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
            escape(&self.id),
            escape(&self.title)
        );
        let _ = write!(
            svg,
            r#"<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>"#
        );
        self.grid(&mut svg);
        let mut legend = Vec::new();
        self.areas_into(&mut svg, &mut legend);
        self.lines_into(&mut svg, &mut legend);
        self.marks_into(&mut svg);
        svg.push_str("</svg>");
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<figure><figcaption>{}</figcaption>{svg}"#,
            escape(&self.title)
        );
        out.push_str(&self.legend(&legend));
        out.push_str("</figure>");
        out
    }

    /// Grid lines with their tick labels, and both axes' titles.
    fn grid(&self, svg: &mut String) {
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let y_ticks = self
            .y
            .ticks
            .clone()
            .unwrap_or_else(|| self.y.scale.ticks(self.y.format));
        for (v, label) in y_ticks {
            if let Some(y) = self
                .py(v)
                .filter(|y| (TOP - 0.5..=HEIGHT - BOTTOM + 0.5).contains(y))
            {
                let _ = write!(
                    svg,
                    r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    WIDTH - RIGHT,
                    LEFT - 6.0,
                    y + 4.0,
                    escape(&label)
                );
            }
        }
        let x_ticks = self
            .x
            .ticks
            .clone()
            .unwrap_or_else(|| self.x.scale.ticks(self.x.format));
        for (v, label) in x_ticks {
            if let Some(x) = self
                .px(v)
                .filter(|x| (LEFT - 0.5..=WIDTH - RIGHT + 0.5).contains(x))
            {
                let _ = write!(
                    svg,
                    r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    HEIGHT - BOTTOM,
                    HEIGHT - BOTTOM + 16.0,
                    escape(&label)
                );
            }
        }
        let _ = write!(
            svg,
            r#"<text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 6.0,
            escape(&self.x.title)
        );
        let _ = write!(
            svg,
            r#"<text class="axis-title" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            escape(&self.y.title)
        );
    }

    /// The areas (filled between their lower and upper lines), each into the legend.
    fn areas_into(&self, svg: &mut String, legend: &mut Vec<(&'static str, String, bool)>) {
        for (i, area) in self.areas.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let forward = area.xs.iter().zip(&area.upper);
            let back = area.xs.iter().zip(&area.lower).rev();
            let points: Vec<String> = forward
                .chain(back)
                .filter_map(|(&x, &y)| Some(format!("{:.1},{:.1}", self.px(x)?, self.py(y)?)))
                .collect();
            let _ = write!(
                svg,
                r#"<polygon class="area" data-series="{}" fill="{color}" points="{}"><title>{}</title></polygon>"#,
                escape(&area.name),
                points.join(" "),
                escape(&area.name)
            );
            legend.push((color, area.name.clone(), false));
        }
    }

    /// The lines (with their dots), each into the legend.
    fn lines_into(&self, svg: &mut String, legend: &mut Vec<(&'static str, String, bool)>) {
        for (i, line) in self.lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = line
                .points
                .iter()
                .filter_map(|&(x, y)| Some((self.px(x)?, self.py(y)?)))
                .collect();
            let text: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline class="line{}" data-series="{}" stroke="{color}" points="{}"><title>{}</title></polyline>"#,
                if line.dashed { " dashed" } else { "" },
                escape(&line.name),
                text.join(" "),
                escape(&line.name)
            );
            if line.dots {
                for (x, y) in &points {
                    let _ = write!(
                        svg,
                        r#"<circle class="dot" cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
                    );
                }
            }
            legend.push((color, line.name.clone(), line.dashed));
        }
    }

    /// The marks above the plot: errors and deadlocks.
    fn marks_into(&self, svg: &mut String) {
        for mark in &self.marks {
            if let Some(x) = self.px(mark.x) {
                let (class, y) = match mark.kind {
                    MarkKind::Error => ("mark error", TOP + 6.0),
                    MarkKind::Deadlock => ("mark deadlock", TOP + 16.0),
                };
                let _ = write!(
                    svg,
                    r#"<path class="{class}" d="M{:.1},{:.1} l5,-8 h-10 z"><title>{}</title></path>"#,
                    x,
                    y,
                    escape(&mark.title)
                );
            }
        }
    }

    /// The legend under the chart: each series' colour and name, then what the marks mean.
    fn legend(&self, legend: &[(&'static str, String, bool)]) -> String {
        let mut out = String::from(r#"<div class="legend">"#);
        for (color, name, dashed) in legend {
            let short: String = name.chars().take(70).collect();
            let ellipsis = if short.len() < name.len() { "…" } else { "" };
            let _ = write!(
                out,
                r#"<span title="{}"><i style="background:{color}"{}></i>{}{ellipsis}</span>"#,
                escape(name),
                if *dashed { r#" class="dashed""# } else { "" },
                escape(&short)
            );
        }
        if self.marks.iter().any(|m| m.kind == MarkKind::Error) {
            out.push_str(r#"<span><b class="error">▼</b>errors</span>"#);
        }
        if self.marks.iter().any(|m| m.kind == MarkKind::Deadlock) {
            out.push_str(r#"<span><b class="deadlock">▼</b>deadlocks</span>"#);
        }
        out.push_str("</div>");
        out
    }
}

/// Where percentile `p` (50 … 100) sits on a "nines" axis: 90 → 1, 99 → 2, 99.9 → 3 …; 100 (the
/// slowest call) one step past the highest finite percentile `last`.
pub fn nines(p: f64, last: f64) -> f64 {
    if p >= 100.0 {
        nines(last, last) + 0.5
    } else {
        -(1.0 - p / 100.0).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_numbers_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(730.0), 1000.0);
        assert_eq!(number(1234.6), "1235");
        assert_eq!(number(12345.0), "12k");
        assert_eq!(number(0.2134), "0.213");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "–");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1.5e6), "1.5M");
    }

    #[test]
    fn scales_cover_their_values() {
        let Scale::Log { min, max } = Scale::log_over([0.21, 0.0, 37.0]) else {
            panic!("a log scale")
        };
        assert_eq!((min, max), (0.1, 100.0));
        let Scale::Linear { min, max } = Scale::linear_from_zero([3.0, 4321.0]) else {
            panic!("a linear scale")
        };
        assert_eq!((min, max), (0.0, 5000.0));
        assert_eq!(
            Scale::Log {
                min: 0.1,
                max: 100.0
            }
            .fraction(0.0),
            None
        );
        assert_eq!(
            Scale::Linear { min: 0.0, max: 2.0 }.fraction(1.0),
            Some(0.5)
        );
    }

    #[test]
    fn the_nines_axis() {
        assert!((nines(90.0, 99.99) - 1.0).abs() < 1e-12);
        assert!((nines(99.9, 99.99) - 3.0).abs() < 1e-9);
        assert!((nines(100.0, 99.99) - 4.5).abs() < 1e-9);
    }

    #[test]
    fn text_is_never_markup() {
        assert_eq!(
            escape(r#"</title><script>alert('x')</script>&"#),
            "&lt;/title&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        let mut chart = Chart::new(
            "c",
            "<b>",
            Axis::new(Scale::Linear { min: 0.0, max: 1.0 }, "x"),
            Axis::new(Scale::Linear { min: 0.0, max: 1.0 }, "y"),
        );
        chart.lines.push(Line {
            name: "<script>".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0), (f64::NAN, 1.0)],
            dots: true,
            dashed: false,
        });
        let svg = chart.render();
        assert!(!svg.contains("<script") && !svg.contains("<b>"), "{svg}");
        // a point that cannot be drawn is left out
        assert!(svg.contains(r#"points="70.0,256.0 900.0,22.0""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2);
    }
}
