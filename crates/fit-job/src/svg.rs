//! Small inline SVG charts for the fit report: lines and grouped bars on
//! linear axes, no scripts, no network.

use std::fmt::Write as _;

pub enum Kind {
    Line,
    Bars,
    /// Points without a line.
    Dots,
}

pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub kind: Kind,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
    /// Draw y = x (Lorenz curves, calibration).
    pub diagonal: bool,
}

const W: f64 = 480.0;
const H: f64 = 300.0;
const L: f64 = 56.0;
const B: f64 = 40.0;
const T: f64 = 28.0;
const R: f64 = 12.0;

fn finite_max(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| v.is_finite()).fold(0.0, f64::max)
}

impl Chart<'_> {
    pub fn render(&self) -> String {
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let mut x_max = finite_max(all().map(|p| p.0));
        let mut y_max = finite_max(all().map(|p| p.1));
        if self.diagonal {
            x_max = x_max.max(y_max);
            y_max = x_max;
        }
        let (x_max, y_max) = (x_max.max(1e-12) * 1.05, y_max.max(1e-12) * 1.1);
        let sx = |x: f64| L + x / x_max * (W - L - R);
        let sy = |y: f64| H - B - y / y_max * (H - B - T);
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg viewBox='0 0 {W} {H}' width='{W}' height='{H}' role='img' aria-label='{t}'>\
             <text x='{L}' y='16' font-size='13' font-weight='bold'>{t}</text>\
             <line x1='{L}' y1='{b}' x2='{r}' y2='{b}' stroke='#999'/><line x1='{L}' y1='{T}' x2='{L}' y2='{b}' stroke='#999'/>\
             <text x='{cx}' y='{xl}' font-size='11' text-anchor='middle'>{xlab}</text>\
             <text x='12' y='{cy}' font-size='11' text-anchor='middle' transform='rotate(-90 12 {cy})'>{ylab}</text>",
            t = self.title,
            b = H - B,
            r = W - R,
            cx = (L + W - R) / 2.0,
            xl = H - 6.0,
            cy = (T + H - B) / 2.0,
            xlab = self.x_label,
            ylab = self.y_label,
        );
        for k in 0..=4 {
            let v = y_max / 1.1 * f64::from(k) / 4.0;
            let _ = write!(
                s,
                "<text x='{}' y='{}' font-size='10' text-anchor='end'>{}</text>",
                L - 4.0,
                sy(v) + 3.0,
                tick(v)
            );
        }
        if self.diagonal {
            let m = x_max / 1.05;
            let _ = write!(
                s,
                "<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#bbb' stroke-dasharray='4 3'/>",
                sx(0.0),
                sy(0.0),
                sx(m),
                sy(m)
            );
        }
        let bars: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| matches!(s.kind, Kind::Bars))
            .collect();
        for (k, series) in self.series.iter().enumerate() {
            self.draw(&mut s, series, &bars, &sx, &sy);
            let _ = write!(
                s,
                "<rect x='{x}' y='{y}' width='10' height='10' fill='{c}'/><text x='{tx}' y='{ty}' font-size='11'>{n}</text>",
                x = L + 10.0,
                y = T + 4.0 + 14.0 * k as f64,
                c = series.color,
                tx = L + 24.0,
                ty = T + 13.0 + 14.0 * k as f64,
                n = series.name
            );
        }
        s.push_str("</svg>");
        s
    }

    fn draw(
        &self,
        s: &mut String,
        series: &Series<'_>,
        bars: &[&Series<'_>],
        sx: &dyn Fn(f64) -> f64,
        sy: &dyn Fn(f64) -> f64,
    ) {
        let ok = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        match series.kind {
            Kind::Line => {
                let pts: Vec<String> = series
                    .points
                    .iter()
                    .filter(ok)
                    .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
                    .collect();
                let _ = write!(
                    s,
                    "<polyline fill='none' stroke='{}' stroke-width='2' points='{}'/>",
                    series.color,
                    pts.join(" ")
                );
            }
            Kind::Dots => {
                for p in series.points.iter().filter(ok) {
                    let _ = write!(
                        s,
                        "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{}'/>",
                        sx(p.0),
                        sy(p.1),
                        series.color
                    );
                }
            }
            Kind::Bars => {
                let slot = bars
                    .iter()
                    .position(|b| std::ptr::eq(*b, series))
                    .unwrap_or(0);
                let width = (sx(1.0) - sx(0.0)) * 0.8 / bars.len().max(1) as f64;
                for p in series.points.iter().filter(ok) {
                    let x = sx(p.0) - width * bars.len() as f64 / 2.0 + width * slot as f64;
                    let _ = write!(
                        s,
                        "<rect x='{x:.1}' y='{:.1}' width='{width:.1}' height='{:.1}' fill='{}'/>",
                        sy(p.1),
                        sy(0.0) - sy(p.1),
                        series.color
                    );
                }
            }
        }
    }
}

fn tick(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
