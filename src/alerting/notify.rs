//! What the evaluator tells others: Alertmanager v2 alerts (as Grafana sends them: alertname =
//! rule title, `grafana_folder`, the rule's labels; no data and errors as `DatasourceNoData` /
//! `DatasourceError`), webhook payloads on state changes, and annotation templates.

use super::evaluation::Labels;
use super::instances::{InstanceState, InstanceTransition};
use super::rule::AlertRule;
use super::state::AlertState;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Renders the annotation templates this evaluator understands: `{{ $values.B.Value }}`,
/// `{{ humanize $values.B.Value }}` (B being the rule's reduce ref), `{{ $value }}` and
/// `{{ $labels.NAME }}` or `{{ index $labels "NAME" }}` (the instance's labels: its series'
/// and the rule's; `index` for names with a dot, such as `dimensions.tenant`). Other templates
/// are left as written.
pub fn render(template: &str, rule: &AlertRule, labels: &Labels, value: Option<f64>) -> String {
    let shown = |humanize: bool| match value {
        Some(v) if humanize => humanize_si(v),
        Some(v) => v.to_string(),
        None => "no value".to_string(),
    };
    let b = format!("$values.{}.Value", rule.reduce_ref);
    let mut out = template
        .replace(&format!("{{{{ humanize {b} }}}}"), &shown(true))
        .replace(&format!("{{{{ {b} }}}}"), &shown(false))
        .replace("{{ $value }}", &shown(false));
    for (k, v) in labels {
        out = out
            .replace(&format!("{{{{ $labels.{k} }}}}"), v)
            .replace(&format!("{{{{ index $labels \"{k}\" }}}}"), v);
    }
    out
}

/// Grafana's (Prometheus') `humanize`: SI prefix and four significant digits, e.g.
/// 10002.43 → `10k`, 1234567 → `1.235M`, 0.0042 → `4.2m`.
pub fn humanize_si(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    const UP: [&str; 9] = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    const DOWN: [&str; 9] = ["", "m", "u", "n", "p", "f", "a", "z", "y"];
    let (mut v, mut i) = (value, 0);
    if value.abs() >= 1.0 {
        while v.abs() >= 1000.0 && i < UP.len() - 1 {
            v /= 1000.0;
            i += 1;
        }
    } else {
        while v.abs() < 1.0 && i < DOWN.len() - 1 {
            v *= 1000.0;
            i += 1;
        }
    }
    let digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (4 - digits).max(0) as usize;
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    let prefix = if value.abs() >= 1.0 { UP[i] } else { DOWN[i] };
    format!("{text}{prefix}")
}

/// The labels of an instance: its series' labels, then the rule's (which win a conflict).
pub fn instance_labels(rule: &AlertRule, series: &Labels) -> Labels {
    let mut labels = series.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The labels Grafana 10.4 gives the alert of an instance in `state` (`compat.go`,
/// `StateToPostableAlert`): the series' and the rule's labels, `alertname` = title,
/// `grafana_folder`, `__alert_rule_uid__`; NoData is sent as `alertname=DatasourceNoData` and
/// Error as `DatasourceError`, both with `rulename` = title, and a query error also carries
/// `ref_id` and `datasource_uid` of the failing query.
pub fn alert_labels(rule: &AlertRule, state: AlertState, series: &Labels) -> Labels {
    let mut labels = instance_labels(rule, series);
    labels.insert("alertname".into(), rule.title.clone());
    labels.insert("grafana_folder".into(), rule.folder.clone());
    labels.insert("__alert_rule_uid__".into(), rule.uid.clone());
    let renamed = match state {
        AlertState::NoData => Some("DatasourceNoData"),
        AlertState::Error => Some("DatasourceError"),
        _ => None,
    };
    if let Some(name) = renamed {
        labels.insert("rulename".into(), rule.title.clone());
        labels.insert("alertname".into(), name.into());
    }
    if state == AlertState::Error {
        // Every evaluation error here is query A failing against its data source.
        labels.insert("ref_id".into(), rule.query_ref.clone());
        labels.insert("datasource_uid".into(), rule.datasource_uid.clone());
    }
    labels
}

/// The Alertmanager v2 `POST /api/v2/alerts` body Grafana 10.4 sends for instances' states:
/// per instance a firing alert (Alerting, NoData, Error) from `StartsAt` to `EndsAt` (which
/// expires it unless re-sent), or, on the evaluation that resolved an Alerting instance, its
/// alert ending now.
pub fn alertmanager_alert(rule: &AlertRule, instances: &[InstanceState]) -> Value {
    let alerts: Vec<Value> = instances
        .iter()
        .map(|InstanceState { labels, state }| {
            let shown = instance_labels(rule, labels);
            let mut annotations: Map<String, Value> = rule
                .annotations
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value::from(render(v, rule, &shown, state.last_value)),
                    )
                })
                .collect();
            if let Some(error) = &state.error {
                annotations.insert("Error".into(), Value::from(error.clone()));
            }
            json!({
                "labels": alert_labels(rule, state.state, labels),
                "annotations": annotations,
                "startsAt": iso(state.starts_at_ms),
                "endsAt": iso(state.ends_at_ms),
                "generatorURL": format!("sla-monitor-alerts:/rules/{}", rule.uid)
            })
        })
        .collect();
    Value::Array(alerts)
}

/// The webhook body for a state change of an instance.
pub fn webhook_payload(rule: &AlertRule, change: &InstanceTransition) -> Value {
    let transition = &change.transition;
    let shown = instance_labels(rule, &change.labels);
    json!({
        "rule_uid": rule.uid,
        "title": rule.title,
        "from": transition.from,
        "from_reason": transition.from_reason,
        "to": transition.to,
        "reason": transition.reason,
        "at": iso(transition.at_ms),
        "previous_state_lasted_ms": transition.previous_lasted_ms,
        "value": transition.value,
        "error": transition.error,
        "labels": alert_labels(rule, transition.to, &change.labels),
        "annotations": rule.annotations.iter().map(|(k, v)| (k.clone(), render(v, rule, &shown, transition.value))).collect::<BTreeMap<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::rule;
    use crate::alerting::state::RuleState;

    fn sla_rule() -> AlertRule {
        rule::provisioned_sla_rule()
    }

    fn job(name: &str) -> Labels {
        [("job".to_string(), name.to_string())].into()
    }

    #[test]
    fn renders_the_summary_with_the_value_and_the_instance_labels() {
        let r = sla_rule();
        let labels = instance_labels(&r, &job("checkout"));
        let summary = render(&r.annotations["summary"], &r, &labels, Some(1_250.0));
        assert_eq!(summary, "checkout: p99 latency is 1.25k ms above its SLA");
        assert_eq!(humanize_si(10_002.429_7), "10k");
        assert_eq!(humanize_si(1_234_567.0), "1.235M");
        assert_eq!(humanize_si(6_642.18), "6.642k");
        assert_eq!(humanize_si(250.0), "250");
        assert_eq!(humanize_si(0.0042), "4.2m");
        assert_eq!(humanize_si(-1500.0), "-1.5k");
        assert!(
            render("{{ $value }} / {{ $labels.severity }}", &r, &labels, None)
                .contains("no value / critical")
        );
        let mut labels = labels;
        labels.insert("dimensions.tenant".into(), "gold".into());
        assert_eq!(
            render(
                r#"{{ index $labels "dimensions.tenant" }}"#,
                &r,
                &labels,
                None
            ),
            "gold"
        );
    }

    #[test]
    fn alertmanager_alerts_look_like_grafanas() {
        let r = sla_rule();
        let mut s = RuleState::new(0);
        s.state = AlertState::Alerting;
        s.starts_at_ms = 1_000;
        s.ends_at_ms = 241_000;
        s.last_value = Some(12_000.0);
        let instance = |s: &RuleState, labels: Labels| InstanceState {
            labels,
            state: s.clone(),
        };
        let body = alertmanager_alert(
            &r,
            &[instance(&s, job("checkout")), instance(&s, job("visits"))],
        );
        assert_eq!(body.as_array().unwrap().len(), 2, "one alert per instance");
        let alert = &body[0];
        assert_eq!(alert["labels"]["alertname"], "SLA miss");
        assert_eq!(alert["labels"]["job"], "checkout");
        assert_eq!(body[1]["labels"]["job"], "visits");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["labels"]["grafana_folder"], "alerts");
        assert_eq!(alert["startsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(alert["endsAt"], "1970-01-01T00:04:01.000Z");
        assert!(alert["labels"].get("rulename").is_none());
        assert!(alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("checkout: "));

        let no_data = alert_labels(&r, AlertState::NoData, &Labels::new());
        assert_eq!(no_data["alertname"], "DatasourceNoData");
        assert_eq!(no_data["rulename"], "SLA miss");
        assert!(!no_data.contains_key("ref_id"));

        s.state = AlertState::Error;
        s.error = Some("querying Elasticsearch: connection refused".into());
        let alert = &alertmanager_alert(&r, &[instance(&s, Labels::new())])[0];
        assert_eq!(alert["labels"]["alertname"], "DatasourceError");
        assert_eq!(alert["labels"]["rulename"], "SLA miss");
        assert_eq!(alert["labels"]["ref_id"], "A");
        assert_eq!(alert["labels"]["datasource_uid"], "sla-elasticsearch");
        assert_eq!(
            alert["annotations"]["Error"],
            "querying Elasticsearch: connection refused"
        );
    }
}
