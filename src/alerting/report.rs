//! The backtest report: one self-contained HTML page (inline CSS and SVG, no script, no
//! external asset: it opens offline and from a CI artifact) showing, per rule and variant,
//! the reduced series against the threshold, the state of every alert instance as coloured
//! bands, the notifications, the known incidents overlaid, and the score.

use super::backtest::{iso, signed_duration as duration, Timeline};
use super::expressions::Threshold;
use super::incidents::Incident;
use super::score::{Numbers, Score};
use serde::Serialize;
use std::fmt::Write;

/// One replay of a rule, as provisioned or changed by a variant, with its score when
/// incidents were given.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The timeline.
    #[serde(flatten)]
    pub timeline: Timeline,
    /// `as provisioned`, or the variant's settings.
    pub variant: String,
    /// The threshold the series was judged against (drawn as a line).
    #[serde(skip)]
    pub threshold: Option<Threshold>,
    /// The score against the incidents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
}

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 220.0;
const CHART_HEIGHT: f64 = 180.0;
const LANE: f64 = 18.0;

/// State colours, as Grafana draws them.
const STATES: [(&str, &str); 5] = [
    ("Normal", "#56a64b"),
    ("Pending", "#e0b400"),
    ("Alerting", "#e02f44"),
    ("NoData", "#8e8e8e"),
    ("Error", "#8f3bb8"),
];
const INCIDENT_COLOUR: &str = "rgba(50, 116, 217, 0.18)";
/// One colour per alert instance (Grafana's classic palette), in the order the instances are
/// listed; the instance's name in its state lane is written in it.
const PALETTE: [&str; 8] = [
    "#1f60c4", "#e0752d", "#37872d", "#8f3bb8", "#c4162a", "#0a8a8a", "#b8860b", "#6e6e6e",
];

/// The colour of the `index`-th instance.
fn instance_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// The chart's value axis: linear, or symmetric-logarithmic when the values span orders of
/// magnitude (a +5 s breach beside a +298 s one would otherwise look flat), so every
/// instance's series stays readable against the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ValueAxis {
    low: f64,
    high: f64,
    log: bool,
}

impl ValueAxis {
    /// Values further apart than this ratio (largest magnitude over the median one) are drawn
    /// on a logarithmic axis.
    const LOG_RATIO: f64 = 20.0;

    fn new(points: &[f64], thresholds: &[f64]) -> Self {
        let (mut low, mut high) = points
            .iter()
            .chain(thresholds)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(*v), h.max(*v))
            });
        if !low.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        if high - low < 1e-9 {
            high = low + 1.0;
        }
        let mut magnitudes: Vec<f64> = points.iter().chain(thresholds).map(|v| v.abs()).collect();
        magnitudes.sort_by(f64::total_cmp);
        let median = magnitudes.get(magnitudes.len() / 2).copied().unwrap_or(0.0);
        let largest = magnitudes.last().copied().unwrap_or(0.0);
        let log = largest > Self::LOG_RATIO * median.max(1.0);
        ValueAxis { low, high, log }
    }

    /// Symmetric log: sign(v)·log10(1 + |v|), linear near zero, logarithmic beyond.
    fn scaled(&self, v: f64) -> f64 {
        if self.log {
            v.signum() * (1.0 + v.abs()).log10()
        } else {
            v
        }
    }

    /// The vertical position of `v` in a chart `height` high whose top is at `top`.
    fn y(&self, v: f64, top: f64, height: f64) -> f64 {
        let (low, high) = (self.scaled(self.low), self.scaled(self.high));
        top + (high - self.scaled(v)) / (high - low) * height
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn share(value: f64) -> String {
    format!("{:.0} %", value * 100.0)
}

/// The report for `runs` (grouped by rule, variants side by side) against `incidents`.
pub fn render(runs: &[Run], incidents: &[Incident]) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sla-monitor backtest</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 32px; }} h3 {{ font-size: 15px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f2f2f2; }}
.legend span {{ display: inline-block; margin-right: 14px; font-size: 13px; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }}
.fail {{ color: #c4162a; font-weight: bold; }}
svg text {{ font-size: 11px; fill: #333; }}
</style></head><body>
<h1>Backtest report</h1>
"#
    );
    let _ = writeln!(page, r#"<div class="legend" id="legend">"#);
    for (state, colour) in STATES {
        let _ = write!(
            page,
            r#"<span><i class="swatch" style="background:{colour}"></i>{state}</span>"#
        );
    }
    let _ = write!(
        page,
        r##"<span><i class="swatch" style="background:{INCIDENT_COLOUR};border:1px solid #3274d9"></i>incident</span><span><i class="swatch" style="background:{}"></i><i class="swatch" style="background:{}"></i>series (B), one colour per instance (its name in its state lane)</span><span>▼ notification</span></div>"##,
        instance_colour(0),
        instance_colour(1)
    );
    let _ = writeln!(
        page,
        "<p>{} known incident(s). Grafana {} semantics; each rule starts Normal at its first evaluation.</p>",
        incidents.len(),
        runs.first().map_or("10.4", |r| r.timeline.grafana_version)
    );
    let mut rules: Vec<&str> = Vec::new();
    for run in runs {
        if !rules.contains(&run.timeline.rule.as_str()) {
            rules.push(&run.timeline.rule);
        }
    }
    for rule in rules {
        let of_rule: Vec<&Run> = runs.iter().filter(|r| r.timeline.rule == rule).collect();
        let _ = writeln!(page, "<h2>Rule “{}”</h2>", escape(rule));
        comparison_table(&mut page, &of_rule);
        for run in of_rule {
            let _ = writeln!(page, "<h3>{} — {}</h3>", escape(rule), escape(&run.variant));
            chart(&mut page, run, incidents);
            if let Some(score) = &run.score {
                incident_table(&mut page, score);
            }
        }
    }
    page.push_str("</body></html>\n");
    page
}

fn comparison_table(page: &mut String, runs: &[&Run]) {
    let _ = writeln!(
        page,
        r#"<table class="scores"><tr><th>variant</th><th>evaluations</th><th>notifications</th><th>false</th><th>precision</th><th>time precision</th><th>recall</th><th>detection (max)</th><th>detection (mean)</th><th>reset (max)</th><th>time Alerting</th></tr>"#
    );
    for run in runs {
        let t = &run.timeline;
        match &run.score {
            Some(Score { numbers: n, .. }) => {
                let Numbers {
                    notifications,
                    false_notifications,
                    precision,
                    time_precision,
                    recall,
                    detection_max_ms,
                    detection_mean_ms,
                    reset_max_ms,
                    firing_ms,
                } = n;
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{notifications}</td><td>{false_notifications}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&run.variant),
                    t.evaluations,
                    share(*precision),
                    share(*time_precision),
                    share(*recall),
                    duration(*detection_max_ms),
                    duration(*detection_mean_ms),
                    duration(*reset_max_ms),
                    duration(Some(*firing_ms)),
                );
            }
            None => {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td colspan=\"8\">no incidents file: not scored (fired {} time(s))</td></tr>",
                    escape(&run.variant),
                    t.evaluations,
                    t.alerts.len(),
                    t.times_fired()
                );
            }
        }
    }
    page.push_str("</table>\n");
}

fn incident_table(page: &mut String, score: &Score) {
    if score.incidents.is_empty() {
        return;
    }
    let _ = writeln!(
        page,
        "<table class=\"incidents\"><tr><th>incident</th><th>job</th><th>start</th><th>end</th><th>detected</th><th>by</th><th>detection</th><th>reset</th></tr>"
    );
    for o in &score.incidents {
        let detected = if o.detected {
            "yes".to_string()
        } else {
            r#"<span class="fail">missed</span>"#.to_string()
        };
        let reset = if o.still_firing {
            "still firing".to_string()
        } else {
            duration(o.reset_ms)
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{detected}</td><td>{}</td><td>{}</td><td>{reset}</td></tr>",
            escape(&o.incident.name),
            escape(o.incident.job.as_deref().unwrap_or("any")),
            iso(o.incident.start_ms),
            iso(o.incident.end_ms),
            escape(&o.notified_by.join(" ")),
            duration(o.detection_ms),
        );
    }
    page.push_str("</table>\n");
}

/// The series of every instance against the threshold, state bands, notifications and
/// incidents, on one time axis.
fn chart(page: &mut String, run: &Run, incidents: &[Incident]) {
    let t = &run.timeline;
    let (from, to) = (t.from_ms, t.to_ms.max(t.from_ms + 1));
    let instances: Vec<String> = {
        let mut names: Vec<String> = t.time_in_state_ms.keys().cloned().collect();
        for name in t.values.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    };
    let plot_width = WIDTH - LEFT - 10.0;
    let x = |ms: i64| LEFT + (ms - from) as f64 / (to - from) as f64 * plot_width;
    let bands_top = CHART_HEIGHT + 30.0;
    let height = bands_top + LANE * (instances.len() as f64 + 1.0) + 30.0;
    let _ = writeln!(
        page,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" aria-label="{}">"#,
        escape(&format!("{} {}", t.rule, run.variant))
    );
    // Incidents behind everything.
    for i in incidents.iter().filter(|i| i.overlaps(from, to)) {
        let (x0, x1) = (x(i.start_ms.max(from)), x(i.end_ms.min(to)));
        let _ = writeln!(
            page,
            r##"<rect class="incident" x="{x0:.1}" y="10" width="{:.1}" height="{:.1}" fill="{INCIDENT_COLOUR}" stroke="#3274d9"><title>{}</title></rect>"##,
            (x1 - x0).max(1.0),
            height - 40.0,
            escape(&format!(
                "{} ({} – {})",
                i.name,
                iso(i.start_ms),
                iso(i.end_ms)
            ))
        );
    }
    // The series and the threshold share one value axis.
    let points: Vec<f64> = t
        .values
        .values()
        .flatten()
        .filter_map(|(_, v)| *v)
        .collect();
    let thresholds: Vec<f64> = match run.threshold {
        Some(Threshold::Above(v)) | Some(Threshold::Below(v)) => vec![v],
        Some(Threshold::WithinRange(a, b)) | Some(Threshold::OutsideRange(a, b)) => vec![a, b],
        None => vec![],
    };
    let axis = ValueAxis::new(&points, &thresholds);
    let (low, high) = (axis.low, axis.high);
    let y = |v: f64| axis.y(v, 10.0, CHART_HEIGHT);
    let _ = writeln!(
        page,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{LEFT}" y2="10" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="end">{high:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{low:.0}</text>"##,
        10.0 + CHART_HEIGHT,
        LEFT - 4.0,
        14.0,
        LEFT - 4.0,
        10.0 + CHART_HEIGHT,
    );
    if axis.log {
        let _ = writeln!(
            page,
            r##"<text class="log-scale" x="{:.1}" y="{:.1}" text-anchor="end" fill="#666">log scale</text>"##,
            LEFT - 4.0,
            10.0 + CHART_HEIGHT / 2.0,
        );
    }
    for threshold in &thresholds {
        let _ = writeln!(
            page,
            r##"<line class="threshold" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e02f44" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#e02f44">threshold {threshold}</text>"##,
            WIDTH - 10.0,
            y(*threshold),
            y(*threshold),
            WIDTH - 12.0,
            y(*threshold) - 3.0
        );
    }
    for (name, values) in &t.values {
        let index = instances.iter().position(|i| i == name).unwrap_or(0);
        series_path(page, values, &x, &y, instance_colour(index));
    }
    // One band of states per instance, from its transitions.
    for (lane, instance) in instances.iter().enumerate() {
        let top = bands_top + LANE * lane as f64;
        let _ = writeln!(
            page,
            r#"<text class="instance" x="{:.1}" y="{:.1}" text-anchor="end" fill="{}">{}</text>"#,
            LEFT - 4.0,
            top + LANE - 5.0,
            instance_colour(lane),
            escape(instance)
        );
        let mut state = "Normal".to_string();
        let mut since = from;
        let changes = t
            .transitions
            .iter()
            .filter(|c| &super::instances::labels_text(&c.labels) == instance);
        let mut segments = Vec::new();
        for change in changes {
            segments.push((since, change.transition.at_ms, state.clone()));
            state = format!("{:?}", change.transition.to);
            since = change.transition.at_ms;
        }
        segments.push((since, to, state));
        for (start, end, state) in segments.into_iter().filter(|(s, e, _)| e > s) {
            let colour = STATES
                .iter()
                .find(|(s, _)| *s == state)
                .map_or("#ccc", |(_, c)| c);
            let _ = writeln!(
                page,
                r#"<rect class="state {state}" x="{:.1}" y="{top:.1}" width="{:.2}" height="{:.1}" fill="{colour}"><title>{} {state} {} – {}</title></rect>"#,
                x(start),
                (x(end) - x(start)).max(0.5),
                LANE - 3.0,
                escape(instance),
                iso(start),
                iso(end)
            );
        }
    }
    // Notifications: a marker at each firing alert's start.
    let marks = bands_top + LANE * instances.len() as f64 + 12.0;
    let _ = writeln!(
        page,
        r#"<text x="{:.1}" y="{marks:.1}" text-anchor="end">notifications</text>"#,
        LEFT - 4.0
    );
    for alert in &t.alerts {
        let at = x(alert.starts_at_ms);
        let _ = writeln!(
            page,
            r#"<path class="notification" d="M{:.1},{:.1} L{:.1},{:.1} L{at:.1},{marks:.1} Z" fill="{}"><title>{} {} sent {} ({:?})</title></path>"#,
            at - 5.0,
            marks - 10.0,
            at + 5.0,
            marks - 10.0,
            if alert.alertname == t.rule {
                "#e02f44"
            } else {
                "#8e8e8e"
            },
            escape(&alert.alertname),
            escape(&super::instances::labels_text(&alert.labels)),
            iso(alert.starts_at_ms),
            alert.ending
        );
    }
    let _ = writeln!(
        page,
        r#"<text x="{LEFT}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        height - 4.0,
        iso(from),
        WIDTH - 10.0,
        height - 4.0,
        iso(to)
    );
    page.push_str("</svg>\n");
}

/// A series as a path, reduced to each pixel column's lowest and highest value (a 30-day
/// backtest has 43,200 points; the page stays small and draws the same picture).
fn series_path(
    page: &mut String,
    values: &[(i64, Option<f64>)],
    x: &impl Fn(i64) -> f64,
    y: &impl Fn(f64) -> f64,
    colour: &str,
) {
    let mut path = String::new();
    let mut column: Option<(i64, f64, f64)> = None;
    let mut pen_down = false;
    let flush = |path: &mut String, c: (i64, f64, f64), pen_down: &mut bool| {
        let (px, low, high) = (c.0 as f64, y(c.1), y(c.2));
        let _ = write!(
            path,
            "{}{px:.1},{high:.1} L{px:.1},{low:.1} ",
            if *pen_down { "L" } else { "M" }
        );
        *pen_down = true;
    };
    for &(at, value) in values {
        let px = x(at).round() as i64;
        match value {
            None => {
                if let Some(c) = column.take() {
                    flush(&mut path, c, &mut pen_down);
                }
                pen_down = false;
            }
            Some(v) => match &mut column {
                Some((cx, low, high)) if *cx == px => {
                    *low = low.min(v);
                    *high = high.max(v);
                }
                _ => {
                    if let Some(c) = column.take() {
                        flush(&mut path, c, &mut pen_down);
                    }
                    column = Some((px, v, v));
                }
            },
        }
    }
    if let Some(c) = column.take() {
        flush(&mut path, c, &mut pen_down);
    }
    if !path.is_empty() {
        let _ = writeln!(
            page,
            r#"<path class="series" d="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
            path.trim_end()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::backtest::replay;
    use crate::alerting::evaluation::{Evaluation, Labels, Results};
    use crate::alerting::rule::provisioned_sla_rule;
    use crate::alerting::score::score;
    use crate::alerting::state::minute_lifecycle;

    #[test]
    fn the_page_holds_the_legend_scores_bands_notifications_and_incidents_and_nothing_external() {
        let rule = provisioned_sla_rule();
        let evaluations: Vec<(i64, Results)> = (0..30)
            .map(|m| {
                let breach = (5..15).contains(&m);
                let value = if breach { 2_500.0 } else { -2_000.0 + m as f64 };
                let labels = Labels::from([("job".to_string(), "checkout <&>".to_string())]);
                (
                    m * 60_000,
                    vec![(labels, Evaluation::Value { value, met: breach })],
                )
            })
            .collect();
        let timeline = replay(&rule, &minute_lifecycle(), &evaluations, 30 * 60_000);
        let incidents = vec![Incident {
            name: "consumer stuck".into(),
            start_ms: 5 * 60_000,
            end_ms: 16 * 60_000,
            job: None,
        }];
        let run = Run {
            score: Some(score(&timeline, &incidents)),
            timeline,
            variant: "as provisioned".into(),
            threshold: Some(rule.threshold),
        };
        let page = render(&[run], &incidents);
        for needle in [
            "id=\"legend\"",
            "Alerting",
            "class=\"scores\"",
            "100 %",
            "consumer stuck",
            "class=\"incident\"",
            "class=\"notification\"",
            "class=\"series\"",
            "class=\"threshold\"",
            "checkout &lt;&amp;&gt;",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
        assert!(!page.contains("<script"), "no script");
        assert!(
            !page.contains("src=") && !page.contains("href=") && !page.contains("url("),
            "no external asset"
        );
        assert!(!page.contains("<&>"), "labels are escaped");
    }

    #[test]
    fn a_long_series_is_reduced_to_pixel_columns() {
        let values: Vec<(i64, Option<f64>)> =
            (0..43_200).map(|i| (i, Some((i % 7) as f64))).collect();
        let mut page = String::new();
        series_path(
            &mut page,
            &values,
            &|ms| ms as f64 / 43_200.0 * 900.0,
            &|v| v,
            instance_colour(0),
        );
        let points = page.matches(',').count();
        assert!(points <= 2 * 902, "{points} points");
    }

    #[test]
    fn values_orders_of_magnitude_apart_are_drawn_on_a_log_axis() {
        // B = p99 − SLA: one instance 5 s over, another 298 s over, the threshold at 0.
        let axis = ValueAxis::new(&[-4_000.0, 5_000.0, 298_000.0, -3_000.0, -4_500.0], &[0.0]);
        assert!(axis.log);
        let (top, height) = (10.0, 180.0);
        let (threshold, small, large) = (
            axis.y(0.0, top, height),
            axis.y(5_000.0, top, height),
            axis.y(298_000.0, top, height),
        );
        // Linear, the +5 s breach would sit 3 px above the threshold; here it is well clear.
        assert!(threshold - small > 0.25 * height, "{threshold} {small}");
        assert!(small > large);
        assert_eq!(axis.y(298_000.0, top, height), top);
        // Values of one magnitude stay linear.
        assert!(!ValueAxis::new(&[800.0, 1_200.0, 2_000.0], &[1_000.0]).log);
    }

    #[test]
    fn each_instance_has_its_own_colour() {
        assert_ne!(instance_colour(0), instance_colour(1));
        assert_eq!(instance_colour(0), instance_colour(PALETTE.len()));
    }
}
