//! Scoring a backtest against known incidents, by the four numbers the SRE workbook judges
//! alerting by (ch. 5, "Alerting on SLOs"): precision, recall, detection time, reset time.
//!
//! Definitions (also in docs/alerting.md):
//! - a **notification** is an alert of the rule's own firing state sent to Alertmanager, from
//!   its first send to its resolution or expiry (`DatasourceNoData`/`DatasourceError` alerts
//!   are counted apart, as `other_alerts`);
//! - an incident **concerns** an alert instance when it names no job, or the instance's job;
//! - **precision**: notifications that overlapped an incident they concern ÷ all notifications;
//!   **time precision**: time spent Alerting inside such incidents ÷ all time spent Alerting
//!   (both 1 when the rule never fired: it paged nobody wrongly);
//! - **recall**: incidents overlapped by at least one notification ÷ incidents (1 without
//!   incidents);
//! - **detection time**: incident start → the first such notification's start (0 when already
//!   firing); **reset time**: incident end → the last such notification's end (negative when
//!   it ended before the incident did; none while it still fires at the end of the range).
//!
//! Pure: a [`Timeline`] and the incidents in, a [`Score`] out.

use super::backtest::{iso, signed_duration, Ending, SentAlert, Timeline};
use super::evaluation::Labels;
use super::incidents::Incident;
use super::instances::labels_text;
use super::state::AlertState;
use serde::Serialize;
use std::collections::BTreeSet;

/// What the rule did about one incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentOutcome {
    /// The incident.
    #[serde(flatten)]
    pub incident: Incident,
    /// Whether a notification overlapped it.
    pub detected: bool,
    /// The instances (`{job="…"}`) whose notifications overlapped it.
    pub notified_by: Vec<String>,
    /// Start of the first notification overlapping it (Unix ms).
    pub notified_at_ms: Option<i64>,
    /// Incident start → that notification (ms, ≥ 0).
    pub detection_ms: Option<i64>,
    /// End of the last notification overlapping it, when it ended within the range (Unix ms).
    pub resolved_at_ms: Option<i64>,
    /// Incident end → that end (ms; negative: the alert ended before the incident did).
    pub reset_ms: Option<i64>,
    /// A notification overlapping it was still firing at the end of the range.
    pub still_firing: bool,
}

/// The four numbers for one alert instance, or for the whole rule (every instance).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Numbers {
    /// Notifications sent (firing alerts of the rule).
    pub notifications: usize,
    /// Of them, those that overlapped no incident they concern.
    pub false_notifications: usize,
    /// Share of notifications that overlapped an incident.
    pub precision: f64,
    /// Share of the time spent Alerting that lay inside incidents.
    pub time_precision: f64,
    /// Share of the incidents notified.
    pub recall: f64,
    /// The longest detection time; `None` (infinite) when an incident was missed or there
    /// were none.
    pub detection_max_ms: Option<i64>,
    /// The mean detection time of the detected incidents.
    pub detection_mean_ms: Option<i64>,
    /// The longest reset time; `None` when no detected incident's alert ended or one still
    /// fires.
    pub reset_max_ms: Option<i64>,
    /// Time spent Alerting (ms).
    pub firing_ms: i64,
}

/// The score of one alert instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceScore {
    /// The instance (`{job="…"}`, `{}` for a rule with one series).
    pub instance: String,
    /// The rule-level instance of a rule whose instances are per job (the one Grafana keeps
    /// for NoData or Error of the whole query): only incidents naming no job concern it, so
    /// it is not scored as having missed the jobs' incidents.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rule_level: bool,
    /// How many of the incidents concern it.
    pub incidents: usize,
    /// Its numbers, over the incidents that concern it.
    #[serde(flatten)]
    pub numbers: Numbers,
}

/// A backtest's score against the incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// The rule as a whole: an incident is detected when any instance it concerns notified.
    #[serde(flatten)]
    pub numbers: Numbers,
    /// `DatasourceNoData` and `DatasourceError` alerts sent (not counted above).
    pub other_alerts: usize,
    /// Each incident, with what the rule did.
    pub incidents: Vec<IncidentOutcome>,
    /// Per alert instance.
    pub instances: Vec<InstanceScore>,
}

/// Intervals `[from, to)` one instance spent Alerting, from its transitions.
fn alerting_intervals(timeline: &Timeline, labels: &Labels) -> Vec<(i64, i64)> {
    let mut intervals = Vec::new();
    let mut since = None;
    for change in timeline.transitions.iter().filter(|t| &t.labels == labels) {
        let t = &change.transition;
        match (since, t.to == AlertState::Alerting) {
            (None, true) => since = Some(t.at_ms),
            (Some(from), false) => {
                intervals.push((from, t.at_ms));
                since = None;
            }
            _ => {}
        }
    }
    if let Some(from) = since {
        intervals.push((from, timeline.to_ms));
    }
    intervals
}

/// The end of a notification for overlap: its resolution or expiry, or the range's end.
fn notification_end(alert: &SentAlert, to_ms: i64) -> i64 {
    match alert.ending {
        Ending::Firing => to_ms,
        _ => alert.ends_at_ms.min(to_ms),
    }
}

/// Milliseconds of `[from, to)` covered by the union of `incidents`.
fn covered_ms(from: i64, to: i64, incidents: &[&Incident]) -> i64 {
    let mut spans: Vec<(i64, i64)> = incidents
        .iter()
        .filter(|i| i.overlaps(from, to))
        .map(|i| (i.start_ms.max(from), i.end_ms.min(to)))
        .collect();
    spans.sort_unstable();
    let (mut total, mut reached) = (0, from);
    for (start, end) in spans {
        let start = start.max(reached);
        if end > start {
            total += end - start;
            reached = end;
        }
    }
    total
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// The numbers of the notifications and Alerting intervals of `instances` (labels) against
/// `relevant` incidents, and what happened to each of those incidents.
fn numbers(
    timeline: &Timeline,
    instances: &[Labels],
    relevant: &[&Incident],
) -> (Numbers, Vec<IncidentOutcome>) {
    let notifications: Vec<&SentAlert> = timeline
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Alerting && instances.contains(&a.labels))
        .collect();
    let mut false_notifications = 0;
    for alert in &notifications {
        let end = notification_end(alert, timeline.to_ms);
        if !relevant
            .iter()
            .any(|i| i.concerns(&alert.labels) && i.overlaps(alert.starts_at_ms, end))
        {
            false_notifications += 1;
        }
    }
    let (mut firing_ms, mut firing_inside_ms) = (0, 0);
    for labels in instances {
        let own: Vec<&Incident> = relevant
            .iter()
            .copied()
            .filter(|i| i.concerns(labels))
            .collect();
        for (from, to) in alerting_intervals(timeline, labels) {
            firing_ms += to - from;
            firing_inside_ms += covered_ms(from, to, &own);
        }
    }
    let mut outcomes = Vec::with_capacity(relevant.len());
    for incident in relevant {
        let overlapping: Vec<&&SentAlert> = notifications
            .iter()
            .filter(|a| {
                incident.concerns(&a.labels)
                    && incident.overlaps(a.starts_at_ms, notification_end(a, timeline.to_ms))
            })
            .collect();
        let notified_at_ms = overlapping.iter().map(|a| a.starts_at_ms).min();
        let still_firing = overlapping.iter().any(|a| a.ending == Ending::Firing);
        let resolved_at_ms = (!still_firing)
            .then(|| overlapping.iter().map(|a| a.ends_at_ms).max())
            .flatten();
        let notified_by: BTreeSet<String> =
            overlapping.iter().map(|a| labels_text(&a.labels)).collect();
        outcomes.push(IncidentOutcome {
            incident: (*incident).clone(),
            detected: notified_at_ms.is_some(),
            notified_by: notified_by.into_iter().collect(),
            notified_at_ms,
            detection_ms: notified_at_ms.map(|at| (at - incident.start_ms).max(0)),
            resolved_at_ms,
            reset_ms: resolved_at_ms.map(|at| at - incident.end_ms),
            still_firing,
        });
    }
    let detected: Vec<i64> = outcomes.iter().filter_map(|o| o.detection_ms).collect();
    let all_detected = !outcomes.is_empty() && detected.len() == outcomes.len();
    let resets: Vec<Option<i64>> = outcomes
        .iter()
        .filter(|o| o.detected)
        .map(|o| o.reset_ms)
        .collect();
    let numbers = Numbers {
        notifications: notifications.len(),
        false_notifications,
        precision: ratio(
            notifications.len() - false_notifications,
            notifications.len(),
        ),
        time_precision: if firing_ms == 0 {
            1.0
        } else {
            firing_inside_ms as f64 / firing_ms as f64
        },
        recall: ratio(detected.len(), outcomes.len()),
        detection_max_ms: all_detected
            .then(|| detected.iter().copied().max())
            .flatten(),
        detection_mean_ms: (!detected.is_empty())
            .then(|| detected.iter().sum::<i64>() / detected.len() as i64),
        reset_max_ms: (!resets.is_empty() && resets.iter().all(Option::is_some))
            .then(|| resets.iter().flatten().copied().max())
            .flatten(),
        firing_ms,
    };
    (numbers, outcomes)
}

/// Every alert instance the timeline knows of (transitions, alerts, final states), and one per
/// job an incident names that never had an instance (it missed that incident).
fn instances(timeline: &Timeline, incidents: &[Incident]) -> Vec<Labels> {
    let mut all: BTreeSet<Labels> = timeline
        .transitions
        .iter()
        .map(|t| t.labels.clone())
        .chain(timeline.alerts.iter().map(|a| a.labels.clone()))
        .chain(timeline.final_states.iter().map(|s| s.labels.clone()))
        .collect();
    let by_job = all.iter().any(|l| l.contains_key("job"));
    for job in incidents.iter().filter_map(|i| i.job.as_ref()) {
        if by_job && !all.iter().any(|l| l.get("job") == Some(job)) {
            all.insert(Labels::from([("job".to_string(), job.clone())]));
        }
    }
    all.into_iter().collect()
}

/// Scores `timeline` against `incidents` (see the module documentation).
pub fn score(timeline: &Timeline, incidents: &[Incident]) -> Score {
    let all = instances(timeline, incidents);
    let by_job = all.iter().any(|l| l.contains_key("job"));
    let per_instance = all
        .iter()
        .map(|labels| {
            let rule_level = by_job && !labels.contains_key("job");
            let own: Vec<&Incident> = incidents
                .iter()
                .filter(|i| match rule_level {
                    true => i.job.is_none(),
                    false => i.concerns(labels),
                })
                .collect();
            InstanceScore {
                instance: labels_text(labels),
                rule_level,
                incidents: own.len(),
                numbers: numbers(timeline, std::slice::from_ref(labels), &own).0,
            }
        })
        .collect();
    // The rule as a whole answers for every incident (each concerns some instance, or the
    // job-less one; a rule that never had an instance missed them all).
    let (numbers, outcomes) = numbers(timeline, &all, &incidents.iter().collect::<Vec<_>>());
    Score {
        numbers,
        other_alerts: timeline
            .alerts
            .iter()
            .filter(|a| a.state != AlertState::Alerting)
            .count(),
        incidents: outcomes,
        instances: per_instance,
    }
}

/// One line of numbers (`notifications 2 (1 false), precision 50 %, …`).
pub fn numbers_text(n: &Numbers) -> String {
    format!(
        "notifications {} ({} false), precision {:.0} %, time precision {:.0} %, recall {:.0} %, detection max {} (mean {}), reset max {}",
        n.notifications,
        n.false_notifications,
        n.precision * 100.0,
        n.time_precision * 100.0,
        n.recall * 100.0,
        signed_duration(n.detection_max_ms),
        signed_duration(n.detection_mean_ms),
        signed_duration(n.reset_max_ms)
    )
}

/// The score as text for a terminal: the rule's numbers, each incident, each instance.
pub fn render_text(score: &Score) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Score against {} incident(s): {}",
        score.incidents.len(),
        numbers_text(&score.numbers)
    );
    if score.other_alerts > 0 {
        let _ = writeln!(
            out,
            "  ({} DatasourceNoData/DatasourceError alert(s) not counted)",
            score.other_alerts
        );
    }
    for o in &score.incidents {
        let what = if o.detected {
            let reset = if o.still_firing {
                "still firing at the end".to_string()
            } else {
                format!("reset {}", signed_duration(o.reset_ms))
            };
            format!(
                "notified by {} after {}, {reset}",
                o.notified_by.join(" "),
                signed_duration(o.detection_ms)
            )
        } else {
            "MISSED: no notification".to_string()
        };
        let _ = writeln!(
            out,
            "  incident {:?} {} – {}{}: {what}",
            o.incident.name,
            iso(o.incident.start_ms),
            iso(o.incident.end_ms),
            o.incident
                .job
                .as_ref()
                .map_or(String::new(), |j| format!(" (job {j})"))
        );
    }
    for i in &score.instances {
        let what = match i.rule_level {
            true if i.incidents == 0 => format!(
                "the rule as a whole (NoData/Error), no incident concerns it: {} notification(s)",
                i.numbers.notifications
            ),
            true => format!("the rule as a whole: {}", numbers_text(&i.numbers)),
            false => numbers_text(&i.numbers),
        };
        let _ = writeln!(out, "  instance {}: {what}", i.instance);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::backtest::replay;
    use crate::alerting::evaluation::{Evaluation, Results};
    use crate::alerting::rule;
    use crate::alerting::state::minute_lifecycle;

    const MIN: i64 = 60_000;

    fn job(name: &str) -> Labels {
        Labels::from([("job".to_string(), name.to_string())])
    }

    /// Minute-by-minute evaluations of jobs from scripts: `.` clear, `X` breach.
    fn timeline(scripts: &[(&str, &str)]) -> Timeline {
        let minutes = scripts[0].1.len();
        let evaluations: Vec<(i64, Results)> = (0..minutes)
            .map(|m| {
                let results = scripts
                    .iter()
                    .map(|(name, s)| {
                        let breach = s.as_bytes()[m] == b'X';
                        let value = if breach { 3_000.0 } else { -3_000.0 };
                        (job(name), Evaluation::Value { value, met: breach })
                    })
                    .collect();
                (m as i64 * MIN, results)
            })
            .collect();
        replay(
            &rule::provisioned_sla_rule(),
            &minute_lifecycle(),
            &evaluations,
            minutes as i64 * MIN,
        )
    }

    fn incident(name: &str, from_min: i64, to_min: i64, job: Option<&str>) -> Incident {
        Incident {
            name: name.into(),
            start_ms: from_min * MIN,
            end_ms: to_min * MIN,
            job: job.map(str::to_string),
        }
    }

    #[test]
    fn a_detected_incident_and_a_false_page_give_the_four_numbers() {
        // The rule's `for` is 2 min: breaches at 2..8 fire at 4 and resolve at 8; breaches at
        // 12..16 fire at 14 and resolve at 16, outside any incident.
        let t = timeline(&[("a", "..XXXXXX....XXXX....")]);
        let incidents = [incident("real", 2, 9, None)];
        let s = score(&t, &incidents);
        let n = &s.numbers;
        assert_eq!((n.notifications, n.false_notifications), (2, 1));
        assert_eq!(n.precision, 0.5);
        assert_eq!(n.recall, 1.0);
        assert_eq!(n.detection_max_ms, Some(2 * MIN));
        assert_eq!(
            n.reset_max_ms,
            Some(-MIN),
            "resolved at 8, a minute before the end"
        );
        assert_eq!(n.firing_ms, 4 * MIN + 2 * MIN);
        assert!((n.time_precision - 4.0 / 6.0).abs() < 1e-9);
        let o = &s.incidents[0];
        assert_eq!(
            (o.detected, o.notified_at_ms, o.resolved_at_ms),
            (true, Some(4 * MIN), Some(8 * MIN))
        );
        assert_eq!(o.notified_by, vec![r#"{job="a"}"#.to_string()]);
    }

    #[test]
    fn a_missed_incident_lowers_recall_and_leaves_detection_unbounded() {
        let t = timeline(&[("a", "..XXXXX.............")]);
        let incidents = [
            incident("seen", 2, 8, None),
            incident("missed", 12, 15, None),
        ];
        let s = score(&t, &incidents);
        assert_eq!(s.numbers.recall, 0.5);
        assert_eq!(s.numbers.detection_max_ms, None);
        assert_eq!(s.numbers.detection_mean_ms, Some(2 * MIN));
        assert!(!s.incidents[1].detected);
    }

    #[test]
    fn incidents_of_a_job_are_scored_against_its_instance_only() {
        let t = timeline(&[("a", "..XXXXX......."), ("b", "..........XXXX")]);
        let incidents = [
            incident("a broke", 2, 7, Some("a")),
            incident("c broke", 3, 6, Some("c")),
        ];
        let s = score(&t, &incidents);
        // b's page concerns no incident of its own: a false notification.
        assert_eq!(s.numbers.false_notifications, 1);
        assert_eq!(s.numbers.recall, 0.5, "c never had an instance: missed");
        let by_instance = |i: &str| s.instances.iter().find(|x| x.instance == i).unwrap();
        assert_eq!(by_instance(r#"{job="a"}"#).numbers.recall, 1.0);
        assert_eq!(by_instance(r#"{job="a"}"#).numbers.precision, 1.0);
        assert_eq!(by_instance(r#"{job="b"}"#).numbers.precision, 0.0);
        assert_eq!(by_instance(r#"{job="c"}"#).numbers.recall, 0.0);
    }

    #[test]
    fn the_rule_level_instance_is_not_scored_against_the_jobs_incidents() {
        // Job a breaches; for two minutes the whole query had no data (the rule-level
        // instance, without a job label, goes NoData — not an SLA alert).
        let evaluations: Vec<(i64, Results)> = (0..10)
            .map(|m| {
                let results = if (4..6).contains(&m) {
                    vec![(Labels::new(), Evaluation::NoData)]
                } else {
                    let breach = (1..4).contains(&m);
                    let value = if breach { 3_000.0 } else { -3_000.0 };
                    vec![(job("a"), Evaluation::Value { value, met: breach })]
                };
                (m * MIN, results)
            })
            .collect();
        let t = replay(
            &rule::provisioned_sla_rule(),
            &minute_lifecycle(),
            &evaluations,
            10 * MIN,
        );
        let s = score(&t, &[incident("a broke", 1, 4, Some("a"))]);
        let rule_level = s.instances.iter().find(|i| i.instance == "{}").unwrap();
        assert!(rule_level.rule_level);
        assert_eq!(rule_level.incidents, 0);
        assert_eq!(
            rule_level.numbers.recall, 1.0,
            "no incident of its own to miss"
        );
        let text = render_text(&s);
        assert!(text.contains("instance {}: the rule as a whole"), "{text}");
        assert!(!text.contains("instance {}: notifications"), "{text}");
        let a = s
            .instances
            .iter()
            .find(|i| i.instance == r#"{job="a"}"#)
            .unwrap();
        assert!(!a.rule_level);
    }

    #[test]
    fn a_rule_without_any_instance_missed_every_incident() {
        let empty = replay(
            &rule::provisioned_sla_rule(),
            &minute_lifecycle(),
            &[],
            10 * MIN,
        );
        let s = score(&empty, &[incident("unseen", 1, 5, None)]);
        assert_eq!(s.numbers.recall, 0.0);
        assert_eq!(s.incidents.len(), 1);
        assert!(!s.incidents[0].detected);
        assert!(s.instances.is_empty());
    }

    #[test]
    fn a_rule_that_still_fires_has_no_reset_time_and_never_firing_is_precise() {
        let t = timeline(&[("a", "...XXXXXX")]);
        let s = score(&t, &[incident("ongoing", 3, 20, None)]);
        assert!(s.incidents[0].still_firing);
        assert_eq!(s.numbers.reset_max_ms, None);
        let quiet = timeline(&[("a", ".........")]);
        let s = score(&quiet, &[]);
        assert_eq!((s.numbers.precision, s.numbers.recall), (1.0, 1.0));
        assert_eq!(s.numbers.notifications, 0);
    }
}
