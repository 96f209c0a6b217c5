//! Charts drawn on the server as SVG: lines over time (vital signs, lab
//! values, log growth) and bars (DP histograms with their accuracy,
//! counts). This module computes the geometry; `chart_partial.html` turns
//! it into `<svg>` elements with presentation attributes only (no inline
//! styles, so the strict CSP holds) and a data table beside it for screen
//! readers and for anyone who prefers the numbers.

/// Chart width in SVG units.
const WIDTH: f64 = 720.0;
/// Chart height in SVG units.
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// A series with more points than this is drawn as a line only.
const MAX_DOTS: usize = 80;

/// Series colours (colour-blind safe, Okabe–Ito), in order.
const PALETTE: [&str; 6] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];

/// A point of a line: x in days since 1970-01-01 (fractions allowed), y.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub(crate) x: f64,
    pub(crate) y: f64,
}

/// A named line.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<Point>,
}

/// One bar, with an optional ± accuracy.
#[derive(Clone, Debug)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) plus_minus: Option<f64>,
}

/// A tick on an axis.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tick {
    pub(crate) at: f64,
    pub(crate) label: String,
}

/// A dot of a drawn series.
#[derive(Clone, Debug)]
pub(crate) struct Dot {
    pub(crate) cx: f64,
    pub(crate) cy: f64,
    pub(crate) tip: String,
}

/// A drawn series.
#[derive(Clone, Debug)]
pub(crate) struct DrawnSeries {
    pub(crate) name: String,
    pub(crate) color: &'static str,
    /// `points` attribute of the polyline.
    pub(crate) polyline: String,
    pub(crate) dots: Vec<Dot>,
}

/// A drawn bar.
#[derive(Clone, Debug)]
pub(crate) struct DrawnBar {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) w: f64,
    pub(crate) h: f64,
    pub(crate) label_x: f64,
    pub(crate) label: String,
    pub(crate) tip: String,
    /// Whisker from y1 to y2 (the accuracy interval), if any.
    pub(crate) whisker: Option<(f64, f64)>,
}

/// A chart, ready for `chart_partial.html`.
#[derive(Clone, Debug)]
pub(crate) struct Chart {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) unit: String,
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) left: f64,
    pub(crate) right: f64,
    pub(crate) top: f64,
    pub(crate) bottom: f64,
    pub(crate) x_ticks: Vec<Tick>,
    pub(crate) y_ticks: Vec<Tick>,
    pub(crate) series: Vec<DrawnSeries>,
    pub(crate) bars: Vec<DrawnBar>,
    /// The numbers, for the table beside the chart.
    pub(crate) table_head: Vec<String>,
    pub(crate) table: Vec<Vec<String>>,
}

/// A number for people: at most 3 decimals, no trailing zeros.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    if x != 0.0 && x.abs() < 0.001 {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// A "nice" step (1, 2 or 5 × 10^k) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Round ticks covering `[lo, hi]` (about five), and the widened range.
fn nice_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<Tick>) {
    let (lo, hi) = if (hi - lo).abs() < f64::EPSILON * lo.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    };
    let step = nice_step((hi - lo) / 5.0);
    let start = (lo / step).floor() * step;
    let end = (hi / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut v = start;
    while v <= end + step * 1e-9 && ticks.len() < 20 {
        let at = if v.abs() < step * 1e-9 { 0.0 } else { v };
        ticks.push(Tick { at, label: num(at) });
        v += step;
    }
    (start, end, ticks)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a day number.
pub(crate) fn date_label(day: f64) -> String {
    let (y, m, d) = civil_from_days(day.floor() as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM` (or `HH:MM:SS`) of a day number's time of day (UTC).
fn clock_label(day: f64, seconds: bool) -> String {
    let secs = (((day - day.floor()) * 86_400.0).round() as i64).min(86_399);
    if seconds {
        format!("{:02}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
    }
}

/// `YYYY-MM-DD`, with `HH:MM` when the point has a time of day.
pub(crate) fn moment_label(day: f64) -> String {
    if (day - day.floor()).abs() < 1e-9 {
        date_label(day)
    } else {
        format!("{} {}", date_label(day), clock_label(day, false))
    }
}

/// Ticks for a date axis over `[lo, hi]` (day numbers): years, months or
/// days depending on the span.
fn date_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<Tick>) {
    const SECOND: f64 = 1.0 / 86_400.0;
    // One instant: a month around it, on a date axis.
    let (lo, hi) = if hi - lo < SECOND { (lo - 15.0, hi + 15.0) } else { (lo, hi) };
    let span = hi - lo;
    if span < 2.0 {
        // Within a day or two: clock times at a round number of seconds.
        let seconds = span * 86_400.0;
        let steps = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
            10_800.0, 21_600.0, 43_200.0,
        ];
        let step_s = steps.into_iter().find(|s| seconds / s <= 7.0).unwrap_or(43_200.0);
        let step = step_s * SECOND;
        let mut ticks = Vec::new();
        let mut at = (lo / step).ceil() * step;
        while at <= hi && ticks.len() < 20 {
            ticks.push(Tick { at, label: clock_label(at, step_s < 60.0) });
            at += step;
        }
        return (lo, hi, ticks);
    }
    let (y0, m0, _) = civil_from_days(lo.floor() as i64);
    let (y1, _, _) = civil_from_days(hi.ceil() as i64);
    let mut ticks = Vec::new();
    if span > 3.0 * 365.0 {
        let step = nice_step((y1 - y0) as f64 / 6.0).max(1.0) as i64;
        let mut y = y0 - y0.rem_euclid(step) + step;
        while y <= y1 && ticks.len() < 20 {
            let at = days_from_civil(y, 1, 1) as f64;
            if at >= lo && at <= hi {
                ticks.push(Tick { at, label: y.to_string() });
            }
            y += step;
        }
    } else if span > 60.0 {
        let months = span / 30.4;
        let step = [1u32, 2, 3, 6, 12].into_iter().find(|s| months / f64::from(*s) <= 7.0).unwrap_or(12);
        let (mut y, mut m) = (y0, m0);
        for _ in 0..60 {
            // Advance to the next month boundary that is a multiple of step.
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
            if (m - 1) % step != 0 {
                continue;
            }
            let at = days_from_civil(y, m, 1) as f64;
            if at > hi {
                break;
            }
            if at >= lo {
                ticks.push(Tick { at, label: format!("{y:04}-{m:02}") });
            }
        }
    } else {
        let step = nice_step(span / 6.0).max(1.0);
        let mut at = (lo / step).ceil() * step;
        while at <= hi && ticks.len() < 20 {
            ticks.push(Tick { at, label: date_label(at) });
            at += step;
        }
    }
    (lo, hi, ticks)
}

fn sanitize_id(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

impl Chart {
    fn frame(id: &str, title: &str, unit: &str) -> Self {
        Chart {
            id: sanitize_id(id),
            title: title.to_owned(),
            unit: unit.to_owned(),
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            right: WIDTH - RIGHT,
            top: TOP,
            bottom: HEIGHT - BOTTOM,
            x_ticks: Vec::new(),
            y_ticks: Vec::new(),
            series: Vec::new(),
            bars: Vec::new(),
            table_head: Vec::new(),
            table: Vec::new(),
        }
    }

    fn y_of(&self, v: f64, lo: f64, hi: f64) -> f64 {
        self.bottom - (v - lo) / (hi - lo) * (self.bottom - self.top)
    }

    fn x_of(&self, v: f64, lo: f64, hi: f64) -> f64 {
        self.left + (v - lo) / (hi - lo) * (self.right - self.left)
    }

    /// Lines over time; `x` of each point is a day number. `None` if no
    /// series has a point.
    pub(crate) fn lines(id: &str, title: &str, unit: &str, series: &[Series]) -> Option<Self> {
        let pts: Vec<Point> = series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|p| p.x.is_finite() && p.y.is_finite())
            .collect();
        let first = pts.first()?;
        let (mut xlo, mut xhi, mut ylo, mut yhi) = (first.x, first.x, first.y, first.y);
        for p in &pts {
            xlo = xlo.min(p.x);
            xhi = xhi.max(p.x);
            ylo = ylo.min(p.y);
            yhi = yhi.max(p.y);
        }
        let mut chart = Self::frame(id, title, unit);
        let (xlo, xhi, x_ticks) = date_ticks(xlo, xhi);
        let (ylo, yhi, y_ticks) = nice_ticks(ylo, yhi);
        chart.x_ticks = x_ticks.into_iter().map(|t| Tick { at: chart.x_of(t.at, xlo, xhi), ..t }).collect();
        chart.y_ticks = y_ticks.into_iter().map(|t| Tick { at: chart.y_of(t.at, ylo, yhi), ..t }).collect();
        chart.table_head = vec!["date".into()];
        let mut rows: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (i, s) in series.iter().enumerate() {
            chart.table_head.push(s.name.clone());
            let mut points: Vec<Point> =
                s.points.iter().copied().filter(|p| p.x.is_finite() && p.y.is_finite()).collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let mut polyline = String::new();
            let mut dots = Vec::with_capacity(points.len());
            for p in &points {
                let (cx, cy) = (chart.x_of(p.x, xlo, xhi), chart.y_of(p.y, ylo, yhi));
                if !polyline.is_empty() {
                    polyline.push(' ');
                }
                polyline.push_str(&format!("{cx:.1},{cy:.1}"));
                let date = moment_label(p.x);
                if points.len() <= MAX_DOTS {
                    dots.push(Dot { cx, cy, tip: format!("{}: {} {unit} on {date}", s.name, num(p.y)) });
                }
                let row = rows.entry(date).or_insert_with(|| vec![String::new(); series.len()]);
                row[i] = num(p.y);
            }
            chart.series.push(DrawnSeries {
                name: s.name.clone(),
                color: PALETTE[i % PALETTE.len()],
                polyline,
                dots,
            });
        }
        chart.table =
            rows.into_iter().map(|(date, values)| std::iter::once(date).chain(values).collect()).collect();
        Some(chart)
    }

    /// The same chart with lines only (for dense series).
    pub(crate) fn without_dots(mut self) -> Self {
        for s in &mut self.series {
            s.dots.clear();
        }
        self
    }

    /// Bars with optional ± whiskers. `None` without bars.
    pub(crate) fn bars(id: &str, title: &str, unit: &str, bars: &[Bar]) -> Option<Self> {
        if bars.is_empty() {
            return None;
        }
        let mut lo: f64 = 0.0;
        let mut hi: f64 = 0.0;
        for b in bars {
            let pm = b.plus_minus.unwrap_or(0.0);
            lo = lo.min(b.value - pm);
            hi = hi.max(b.value + pm);
        }
        let mut chart = Self::frame(id, title, unit);
        let (lo, hi, y_ticks) = nice_ticks(lo, hi);
        chart.y_ticks = y_ticks.into_iter().map(|t| Tick { at: chart.y_of(t.at, lo, hi), ..t }).collect();
        let slot = (chart.right - chart.left) / bars.len() as f64;
        let zero = chart.y_of(0.0, lo, hi);
        chart.table_head = vec!["bin".into(), "value".into(), "±".into()];
        for (i, b) in bars.iter().enumerate() {
            let x = chart.left + slot * i as f64 + slot * 0.15;
            let w = slot * 0.7;
            let top = chart.y_of(b.value, lo, hi);
            let (y, h) = if top < zero { (top, zero - top) } else { (zero, top - zero) };
            let whisker =
                b.plus_minus.map(|pm| (chart.y_of(b.value + pm, lo, hi), chart.y_of(b.value - pm, lo, hi)));
            let pm_text = b.plus_minus.map(|pm| format!(" ± {}", num(pm))).unwrap_or_default();
            chart.bars.push(DrawnBar {
                x,
                y,
                w,
                h,
                label_x: x + w / 2.0,
                label: b.label.clone(),
                tip: format!("{}: {}{pm_text} {unit}", b.label, num(b.value)),
                whisker,
            });
            chart.table.push(vec![
                b.label.clone(),
                num(b.value),
                b.plus_minus.map(num).unwrap_or_else(|| "–".into()),
            ]);
        }
        Some(chart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for z in [-800_000, -1, 0, 59, 365, 10_957, 19_000, 50_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(date_label(19_723.7), "2024-01-01");
    }

    #[test]
    fn nice_ticks_cover_the_range_with_round_steps() {
        let (lo, hi, ticks) = nice_ticks(3.2, 97.0);
        assert!(lo <= 3.2 && hi >= 97.0);
        let labels: Vec<&str> = ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0", "20", "40", "60", "80", "100"]);
        // A flat series still gets a range.
        let (lo, hi, ticks) = nice_ticks(120.0, 120.0);
        assert!(lo < 120.0 && hi > 120.0 && ticks.len() >= 2);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(0.13), 0.2);
    }

    #[test]
    fn date_ticks_pick_years_months_or_days() {
        let d = |y, m, d| days_from_civil(y, m, d) as f64;
        let (_, _, years) = date_ticks(d(2010, 5, 1), d(2020, 2, 1));
        assert!(years.iter().all(|t| t.label.len() == 4), "{years:?}");
        assert!(years.len() >= 3 && years.len() <= 11);
        let (_, _, months) = date_ticks(d(2020, 1, 15), d(2020, 9, 1));
        assert!(months.iter().all(|t| t.label.len() == 7), "{months:?}");
        assert!(months.len() <= 8);
        let (_, _, days) = date_ticks(d(2020, 1, 1), d(2020, 1, 20));
        assert!(days.iter().all(|t| t.label.len() == 10), "{days:?}");
        let (_, _, clock) = date_ticks(d(2020, 1, 1) + 0.5, d(2020, 1, 1) + 0.52);
        assert!(clock.iter().all(|t| t.label.len() == 5 && t.label.contains(':')), "{clock:?}");
        assert!(clock.len() >= 2 && clock.len() <= 8, "{clock:?}");
        // Half a minute of log growth: ticks every few seconds.
        let (_, _, secs) = date_ticks(d(2020, 1, 1) + 0.5, d(2020, 1, 1) + 0.5 + 30.0 / 86_400.0);
        assert!(secs.iter().all(|t| t.label.len() == 8), "{secs:?}");
        assert!(secs.len() >= 3 && secs.len() <= 8, "{secs:?}");
        // One instant: a month around it.
        let (lo, hi, one) = date_ticks(d(2020, 6, 15), d(2020, 6, 15));
        assert!((hi - lo - 30.0).abs() < 1e-9 && !one.is_empty(), "{one:?}");
        assert_eq!(moment_label(d(2020, 1, 1) + 0.75), "2020-01-01 18:00");
        assert_eq!(moment_label(d(2020, 1, 1)), "2020-01-01");
    }

    #[test]
    fn a_line_chart_stays_inside_its_frame() {
        let d = |y, m| days_from_civil(y, m, 1) as f64;
        let series = vec![
            Series {
                name: "Systolic".into(),
                points: vec![Point { x: d(2019, 1), y: 131.0 }, Point { x: d(2021, 6), y: 118.0 }],
            },
            Series { name: "Diastolic".into(), points: vec![Point { x: d(2020, 3), y: 82.0 }] },
        ];
        let c = Chart::lines("bp", "Blood pressure", "mm[Hg]", &series).expect("chart");
        for s in &c.series {
            for dot in &s.dots {
                assert!(dot.cx >= c.left - 1e-6 && dot.cx <= c.right + 1e-6, "{dot:?}");
                assert!(dot.cy >= c.top - 1e-6 && dot.cy <= c.bottom + 1e-6, "{dot:?}");
            }
        }
        assert_eq!(c.series[0].dots.len(), 2);
        assert!(c.series[0].dots[0].tip.contains("131 mm[Hg] on 2019-01-01"));
        assert_eq!(c.table.len(), 3, "one row per date");
        assert_eq!(c.table_head, ["date", "Systolic", "Diastolic"]);
        assert!(Chart::lines("x", "empty", "", &[]).is_none());
    }

    #[test]
    fn bars_start_at_zero_and_carry_whiskers() {
        let bars = vec![
            Bar { label: "<18.5".into(), value: 4.0, plus_minus: Some(3.0) },
            Bar { label: "18.5–25".into(), value: 12.0, plus_minus: Some(3.0) },
            Bar { label: "≥30".into(), value: -1.5, plus_minus: Some(3.0) },
        ];
        let c = Chart::bars("h", "BMI", "patients", &bars).expect("chart");
        assert_eq!(c.bars.len(), 3);
        // The negative noisy count hangs below the zero line.
        let zero_line = c.bars[0].y + c.bars[0].h;
        assert!((c.bars[2].y - zero_line).abs() < 1e-6);
        let (w1, w2) = c.bars[1].whisker.expect("whisker");
        assert!(w1 < c.bars[1].y && w2 > c.bars[1].y);
        assert!(c.bars[1].tip.contains("12 ± 3 patients"));
        assert!(Chart::bars("x", "none", "", &[]).is_none());
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(132.80000001), "132.8");
        assert_eq!(num(-0.0001), "-1.00e-4");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(f64::NAN), "–");
    }
}
