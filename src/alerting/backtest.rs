//! Backtesting a rule: its evaluations at every interval of a past range, replayed through the
//! Grafana 10.4 state machine, give the state timeline and the alerts Grafana would have sent
//! to Alertmanager — how often, and for how long, the rule would have fired.
//!
//! Pure: the evaluations are passed in (see `AlertRule::evaluate_many` for running them against
//! stored windows).

use super::evaluation::{Evaluation, Labels, Results};
use super::instances::{labels_text, InstanceState, InstanceTransition, RuleInstances};
use super::notify::alert_labels;
use super::rule::AlertRule;
use super::state::{format_state, AlertState, Lifecycle};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// How an alert sent to Alertmanager ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Ending {
    /// Grafana sent it resolved (an Alerting rule returning to Normal).
    Resolved,
    /// Grafana stopped sending it and Alertmanager let it expire at its `endsAt` (NoData and
    /// Error, and Alerting left for NoData or Error, are never resolved explicitly).
    Expired,
    /// Still firing at the end of the range.
    Firing,
}

/// One alert as Alertmanager would have held it: from its first send to its end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentAlert {
    /// The instance's labels (its series', e.g. `job`).
    pub labels: Labels,
    /// `alertname` label (the rule title, `DatasourceNoData` or `DatasourceError`).
    pub alertname: String,
    /// The rule state it was sent for.
    pub state: AlertState,
    /// `startsAt` (Unix ms).
    pub starts_at_ms: i64,
    /// When it ended: resolution, or the last `endsAt` it was sent with (Unix ms).
    pub ends_at_ms: i64,
    /// How it ended.
    pub ending: Ending,
    /// How many times it would have been sent (first send and resends).
    pub sends: u32,
}

/// The result of a backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// Rule title.
    pub rule: String,
    /// The Grafana version whose semantics were replayed.
    pub grafana_version: &'static str,
    /// First evaluation (Unix ms).
    pub from_ms: i64,
    /// End of the range (Unix ms).
    pub to_ms: i64,
    /// Evaluations replayed.
    pub evaluations: usize,
    /// Of which failed (query errors).
    pub errors: usize,
    /// Every change of state of every instance, oldest first.
    pub transitions: Vec<InstanceTransition>,
    /// Every alert that would have been sent to Alertmanager, by start.
    pub alerts: Vec<SentAlert>,
    /// Per instance (`{job="…"}`, `{}` for the rule-level one), milliseconds spent in each
    /// state while it existed.
    pub time_in_state_ms: BTreeMap<String, BTreeMap<String, i64>>,
    /// The instances after the last evaluation.
    pub final_states: Vec<InstanceState>,
    /// Per instance (`{job="…"}`), the value of the reduced series at each evaluation (`None`
    /// for no data or an error): what a report draws against the threshold.
    #[serde(skip)]
    pub values: BTreeMap<String, Vec<(i64, Option<f64>)>>,
}

impl Timeline {
    /// How many times an instance entered Alerting.
    pub fn times_fired(&self) -> usize {
        self.transitions
            .iter()
            .filter(|t| {
                t.transition.to == AlertState::Alerting && t.transition.from != AlertState::Alerting
            })
            .count()
    }
}

/// Replays `evaluations` (time-ordered) through the state machine of each instance, starting
/// at the first one (as a rule created then), with Grafana's sending rules; `to_ms` closes the
/// range.
pub fn replay(
    rule: &AlertRule,
    lifecycle: &Lifecycle,
    evaluations: &[(i64, Results)],
    to_ms: i64,
) -> Timeline {
    let from_ms = evaluations.first().map_or(to_ms, |(t, _)| *t);
    let mut machine = RuleInstances::default();
    let mut transitions = Vec::new();
    let mut alerts: Vec<SentAlert> = Vec::new();
    // Index in `alerts` of the alert still held by Alertmanager, per instance and alertname.
    let mut open: BTreeMap<(Labels, String), usize> = BTreeMap::new();
    let mut time_in_state_ms: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut errors = 0;
    let mut values: BTreeMap<String, Vec<(i64, Option<f64>)>> = BTreeMap::new();
    for (i, (at, results)) in evaluations.iter().enumerate() {
        for (labels, evaluation) in results {
            let value = match evaluation {
                Evaluation::Value { value, .. } => Some(*value),
                _ => None,
            };
            values
                .entry(labels_text(labels))
                .or_default()
                .push((*at, value));
        }
        if results
            .iter()
            .any(|(_, e)| matches!(e, Evaluation::Error(_)))
        {
            errors += 1;
        }
        let applied = machine.apply(lifecycle, results, *at, true);
        transitions.extend(applied.transitions);
        // Alerts whose endsAt passed without a resend have expired in Alertmanager.
        open.retain(|_, &mut index| {
            let alert = &mut alerts[index];
            let expired = alert.ends_at_ms < *at;
            if expired {
                alert.ending = Ending::Expired;
            }
            !expired
        });
        for InstanceState { labels, state } in applied.to_send {
            if state.state == AlertState::Normal {
                // The resolving evaluation: the instance's alert ends now.
                let name = alert_labels(rule, AlertState::Alerting, &labels)["alertname"].clone();
                if let Some(index) = open.remove(&(labels, name)) {
                    let alert = &mut alerts[index];
                    (alert.ends_at_ms, alert.ending, alert.sends) =
                        (*at, Ending::Resolved, alert.sends + 1);
                }
                continue;
            }
            let name = alert_labels(rule, state.state, &labels)["alertname"].clone();
            let key = (labels.clone(), name.clone());
            match open.get(&key) {
                Some(&index) => {
                    alerts[index].ends_at_ms = state.ends_at_ms;
                    alerts[index].sends += 1;
                }
                None => {
                    open.insert(key, alerts.len());
                    alerts.push(SentAlert {
                        labels,
                        alertname: name,
                        state: state.state,
                        starts_at_ms: state.starts_at_ms,
                        ends_at_ms: state.ends_at_ms,
                        ending: Ending::Firing,
                        sends: 1,
                    });
                }
            }
        }
        let until = evaluations.get(i + 1).map_or(to_ms, |(t, _)| *t).max(*at);
        for instance in machine.states() {
            *time_in_state_ms
                .entry(labels_text(&instance.labels))
                .or_default()
                .entry(format!("{:?}", instance.state.state))
                .or_default() += until - at;
        }
    }
    for (_, index) in open {
        if alerts[index].ends_at_ms <= to_ms {
            alerts[index].ending = Ending::Expired;
        }
    }
    alerts.sort_by_key(|a| a.starts_at_ms);
    Timeline {
        rule: rule.title.clone(),
        grafana_version: super::state::GRAFANA_VERSION,
        from_ms,
        to_ms,
        evaluations: evaluations.len(),
        errors,
        transitions,
        alerts,
        time_in_state_ms,
        final_states: machine.states(),
        values,
    }
}

/// A time as RFC 3339 in UTC, to the second (backtest texts and reports).
pub(crate) fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A duration to the second, negative ones with a sign, `—` for none (scores and reports).
pub(crate) fn signed_duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) => {
            let sign = if ms < 0 { "-" } else { "" };
            let text = humantime::format_duration(std::time::Duration::from_secs(
                ms.unsigned_abs() / 1000,
            ));
            format!("{sign}{text}")
        }
    }
}

fn duration(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms / 1000).max(0) as u64))
        .to_string()
}

/// The timeline as text for a terminal: the transitions, the alerts sent, a summary.
pub fn render_text(timeline: &Timeline, reduce_ref: &str) -> String {
    let mut out = String::new();
    let t = timeline;
    let _ = writeln!(
        out,
        "{:?} from {} to {}: {} evaluations ({} failed), Grafana {} semantics; the rule starts Normal at the first one.",
        t.rule,
        iso(t.from_ms),
        iso(t.to_ms),
        t.evaluations,
        t.errors,
        t.grafana_version
    );
    let _ = writeln!(out, "\nState changes:");
    if t.transitions.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for change in &t.transitions {
        let tr = &change.transition;
        let value = tr.value.map_or_else(
            || "no value".to_string(),
            |v| format!("{reduce_ref} = {v:.0}"),
        );
        let detail = tr.error.as_deref().unwrap_or(&value);
        let _ = writeln!(
            out,
            "  {}  {} {} -> {} after {} ({detail})",
            iso(tr.at_ms),
            labels_text(&change.labels),
            format_state(tr.from, tr.from_reason),
            format_state(tr.to, tr.reason),
            duration(tr.previous_lasted_ms)
        );
    }
    let _ = writeln!(out, "\nAlerts sent to Alertmanager:");
    if t.alerts.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for a in &t.alerts {
        let _ = writeln!(
            out,
            "  {}  {} {} ({:?}) for {}, {:?} {}, sent {} time(s)",
            iso(a.starts_at_ms),
            a.alertname,
            labels_text(&a.labels),
            a.state,
            duration(a.ends_at_ms - a.starts_at_ms),
            a.ending,
            iso(a.ends_at_ms),
            a.sends
        );
    }
    let _ = writeln!(out, "\nSummary: fired {} time(s);", t.times_fired());
    for (instance, states) in &t.time_in_state_ms {
        for (state, ms) in states {
            let share = 100.0 * *ms as f64 / (t.to_ms - t.from_ms).max(1) as f64;
            let _ = writeln!(out, "  {instance} {state}: {} ({share:.1}%)", duration(*ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::rule;

    fn sla_rule() -> AlertRule {
        rule::provisioned_sla_rule()
    }

    const MIN: i64 = 60_000;

    fn lifecycle() -> Lifecycle {
        crate::alerting::state::minute_lifecycle()
    }

    fn value(v: f64) -> Evaluation {
        Evaluation::Value {
            value: v,
            met: v > 5000.0,
        }
    }

    /// Minute-by-minute evaluations from a compact script: `.` clear, `X` breach, `-` no data,
    /// `E` error.
    fn script(s: &str) -> Vec<(i64, Results)> {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                let e = match c {
                    '.' => value(200.0),
                    'X' => value(12_000.0),
                    '-' => Evaluation::NoData,
                    _ => Evaluation::Error("connection refused".into()),
                };
                (i as i64 * MIN, vec![(Labels::new(), e)])
            })
            .collect()
    }

    #[test]
    fn a_breach_longer_than_for_fires_once_and_resolves() {
        let evaluations = script("..XXXXX...");
        let t = replay(&sla_rule(), &lifecycle(), &evaluations, 10 * MIN);
        assert_eq!(t.times_fired(), 1);
        let path: Vec<_> = t
            .transitions
            .iter()
            .map(|t| (t.transition.from, t.transition.to, t.transition.at_ms))
            .collect();
        assert_eq!(
            path,
            vec![
                (AlertState::Normal, AlertState::Pending, 2 * MIN),
                (AlertState::Pending, AlertState::Alerting, 4 * MIN),
                (AlertState::Alerting, AlertState::Normal, 7 * MIN),
            ]
        );
        assert_eq!(t.alerts.len(), 1);
        let a = &t.alerts[0];
        assert_eq!(
            (a.state, a.starts_at_ms, a.ends_at_ms, a.ending, a.sends),
            (AlertState::Alerting, 4 * MIN, 7 * MIN, Ending::Resolved, 4),
            "sent at 4, 5, 6 min (every evaluation: the 1 m interval exceeds the 30 s resend delay) and resolved at 7"
        );
        let times = &t.time_in_state_ms["{}"];
        assert_eq!(times["Pending"], 2 * MIN);
        assert_eq!(times["Alerting"], 3 * MIN);
        assert_eq!(times["Normal"], 5 * MIN);
    }

    #[test]
    fn short_breaches_pend_without_firing() {
        let t = replay(&sla_rule(), &lifecycle(), &script(".XX.X.XX."), 9 * MIN);
        assert_eq!(t.times_fired(), 0);
        assert!(t.alerts.is_empty(), "Pending is never sent");
    }

    #[test]
    fn no_data_is_sent_at_once_and_expires_instead_of_resolving() {
        let t = replay(&sla_rule(), &lifecycle(), &script("..---....."), 10 * MIN);
        assert_eq!(t.alerts.len(), 1);
        let a = &t.alerts[0];
        assert_eq!(a.alertname, "DatasourceNoData");
        assert_eq!(a.starts_at_ms, 2 * MIN, "no pending period for NoData");
        assert_eq!(
            (a.ends_at_ms, a.ending),
            (4 * MIN + 4 * MIN, Ending::Expired),
            "last sent at 4 min with endsAt 4 intervals later; never resolved"
        );
        assert_eq!(t.times_fired(), 0, "NoData is not Alerting");
    }

    #[test]
    fn alerting_then_errors_sends_a_datasource_error_and_lets_the_alert_expire() {
        let t = replay(&sla_rule(), &lifecycle(), &script("XXXXEEE..."), 10 * MIN);
        let names: Vec<_> = t
            .alerts
            .iter()
            .map(|a| (a.alertname.as_str(), a.ending))
            .collect();
        assert_eq!(
            names,
            vec![
                ("SLA miss", Ending::Expired),
                ("DatasourceError", Ending::Expired)
            ]
        );
        assert_eq!(t.errors, 3);
        let text = render_text(&t, "B");
        assert!(text.contains("Alerting -> Error"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("fired 1 time(s)"), "{text}");
    }

    #[test]
    fn still_firing_at_the_end_is_reported_as_firing() {
        let t = replay(&sla_rule(), &lifecycle(), &script("XXXXX"), 5 * MIN);
        assert_eq!(t.alerts[0].ending, Ending::Firing);
        assert_eq!(t.final_states[0].state.state, AlertState::Alerting);
    }

    /// Two pipelines, one breaching: one alert instance per job; the breaching one fires and
    /// is resolved when its series disappears for two evaluations (MissingSeries).
    #[test]
    fn one_instance_per_job_and_a_vanished_series_resolves() {
        let job = |name: &str| -> Labels { [("job".to_string(), name.to_string())].into() };
        let evaluations: Vec<(i64, Results)> = (0..9)
            .map(|m| {
                let mut results = vec![(job("visits"), value(-4_000.0))];
                if m < 6 {
                    results.push((
                        job("checkout"),
                        Evaluation::Value {
                            value: 300.0,
                            met: true,
                        },
                    ));
                }
                (m * MIN, results)
            })
            .collect();
        let t = replay(&sla_rule(), &lifecycle(), &evaluations, 9 * MIN);
        assert_eq!(t.times_fired(), 1);
        let [a] = t.alerts.as_slice() else {
            panic!("{:?}", t.alerts)
        };
        assert_eq!(a.labels, job("checkout"));
        assert_eq!(
            (a.starts_at_ms, a.ending, a.ends_at_ms),
            (2 * MIN, Ending::Resolved, 7 * MIN),
            "missing at 6, stale at 7"
        );
        assert!(t.time_in_state_ms[r#"{job="visits"}"#]
            .keys()
            .all(|s| s == "Normal"));
        let last = t.transitions.last().unwrap();
        assert_eq!(
            last.transition.reason,
            Some(crate::alerting::state::StateReason::MissingSeries)
        );
        assert_eq!(t.final_states.len(), 1, "the checkout instance is gone");
        let text = render_text(&t, "B");
        assert!(text.contains(r#"{job="checkout"}"#), "{text}");
    }
}
