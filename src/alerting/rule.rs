//! Grafana alert-rule provisioning files, read into rules this crate can evaluate. Rules
//! whose shape is not supported are refused with the reason, never evaluated differently.
//!
//! Supported: condition = Threshold over a Reduce over one Elasticsearch query
//! (see [`EsQuery`]), with `for`, `noDataState` and `execErrState`, read as Grafana 10.4's
//! file provisioning reads them: a missing `noDataState` is NoData, a missing `execErrState`
//! is **Alerting**. `keep_firing_for` (Grafana 12) is refused: Grafana 10.4 would ignore it, so
//! evaluating it would show a lifecycle the provisioned Grafana never goes through.

use super::es_query::EsQuery;
use super::expressions::{Reduce, ReduceFunction, ReduceMode, Threshold};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the rule's state becomes when the query returns no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NoDataState {
    /// The NoData state.
    NoData,
    /// Treated as the condition being met.
    Alerting,
    /// Treated as the condition not being met.
    #[serde(rename = "OK")]
    Ok,
    /// The previous state is kept.
    KeepLast,
}

/// What the rule's state becomes when evaluation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ExecErrState {
    /// The Error state.
    Error,
    /// Treated as the condition being met.
    Alerting,
    /// Treated as the condition not being met.
    #[serde(rename = "OK")]
    Ok,
    /// The previous state is kept.
    KeepLast,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    folder: String,
    interval: String,
    rules: Vec<Spec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    uid: String,
    title: String,
    condition: String,
    data: Vec<QuerySpec>,
    #[serde(default = "default_no_data")]
    no_data_state: NoDataState,
    #[serde(default = "default_exec_err")]
    exec_err_state: ExecErrState,
    #[serde(rename = "for", default)]
    pending_period: Option<String>,
    #[serde(rename = "keep_firing_for", alias = "keepFiringFor", default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    is_paused: bool,
}

fn default_no_data() -> NoDataState {
    NoDataState::NoData
}

fn default_exec_err() -> ExecErrState {
    ExecErrState::Alerting
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuerySpec {
    ref_id: String,
    #[serde(default)]
    relative_time_range: Option<RelativeTimeRange>,
    datasource_uid: String,
    model: Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct RelativeTimeRange {
    from: u64,
    to: u64,
}

/// A rule ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Stable uid.
    pub uid: String,
    /// Title (the alert name).
    pub title: String,
    /// Folder.
    pub folder: String,
    /// Rule group.
    pub group: String,
    /// Evaluation interval of the group.
    pub interval: Duration,
    /// Data source uid of the query.
    pub datasource_uid: String,
    /// The index queried instead of the evaluator's (`--es-index`): set when the data
    /// source is the completeness index beside it (`<es-index>-completeness`).
    pub index: Option<String>,
    /// The query's range starts this long before the evaluation time.
    pub range_from: Duration,
    /// …and ends this long before it.
    pub range_to: Duration,
    /// Ref id of the query (A).
    pub query_ref: String,
    /// The query.
    pub query: EsQuery,
    /// Ref id of the reduction (B), whose value the annotations can show.
    pub reduce_ref: String,
    /// The reduction.
    pub reduce: Reduce,
    /// The threshold (the condition).
    pub threshold: Threshold,
    /// Pending period (`for`).
    pub pending_period: Duration,
    /// No-data handling.
    pub no_data_state: NoDataState,
    /// Error handling.
    pub exec_err_state: ExecErrState,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates as written).
    pub annotations: BTreeMap<String, String>,
}

/// A rule file that cannot be evaluated, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    /// Not valid provisioning YAML.
    #[error("not a Grafana alert-rule provisioning file: {0}")]
    Parse(String),
    /// A rule uses something this evaluator does not implement.
    #[error("rule {rule:?}: {reason}")]
    Unsupported {
        /// Rule title.
        rule: String,
        /// What is not supported.
        reason: String,
    },
}

fn duration(raw: &Option<String>, what: &str, rule: &str) -> Result<Duration, RuleError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("0") => Ok(Duration::ZERO),
        Some(text) => humantime::parse_duration(text).map_err(|e| RuleError::Unsupported {
            rule: rule.to_string(),
            reason: format!("{what} {text:?} is not a duration: {e}"),
        }),
    }
}

/// Reads every rule of a provisioning file.
pub fn load(yaml: &str) -> Result<Vec<AlertRule>, RuleError> {
    let file: File = serde_norway::from_str(yaml).map_err(|e| RuleError::Parse(e.to_string()))?;
    let mut rules = Vec::new();
    for group in file.groups {
        let interval = duration(&Some(group.interval.clone()), "group interval", &group.name)?;
        for spec in group.rules {
            rules.push(compile(&group.name, &group.folder, interval, spec)?);
        }
    }
    Ok(rules)
}

fn compile(
    group: &str,
    folder: &str,
    interval: Duration,
    spec: Spec,
) -> Result<AlertRule, RuleError> {
    let title = spec.title.clone();
    let unsupported = |reason: String| RuleError::Unsupported {
        rule: title.clone(),
        reason,
    };
    if spec.keep_firing_for.is_some() {
        return Err(unsupported(
            "keep_firing_for is a Grafana 12 setting; the Grafana 10.4 this repository provisions \
             ignores it (remove it, or lengthen `for`)"
                .into(),
        ));
    }
    if spec.is_paused {
        return Err(unsupported("the rule is paused".into()));
    }
    let by_ref: BTreeMap<&str, &QuerySpec> =
        spec.data.iter().map(|q| (q.ref_id.as_str(), q)).collect();
    let step = |r: &str| {
        by_ref
            .get(r)
            .copied()
            .ok_or_else(|| unsupported(format!("refers to {r}, which is not in data")))
    };

    let condition = step(&spec.condition)?;
    if condition.model["type"] != "threshold" {
        return Err(unsupported(format!(
            "the condition {} must be a threshold expression, it is {}",
            spec.condition, condition.model["type"]
        )));
    }
    let conditions = condition.model["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [only] = conditions.as_slice() else {
        return Err(unsupported(
            "the threshold must have exactly one condition".into(),
        ));
    };
    if !only["unloadEvaluator"].is_null() {
        return Err(unsupported(
            "recovery thresholds (unloadEvaluator) are not supported".into(),
        ));
    }
    let params: Vec<f64> = only["evaluator"]["params"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let threshold = match (
        only["evaluator"]["type"].as_str().unwrap_or(""),
        params.as_slice(),
    ) {
        ("gt", [t, ..]) => Threshold::Above(*t),
        ("lt", [t, ..]) => Threshold::Below(*t),
        ("within_range", [a, b, ..]) => Threshold::WithinRange(*a, *b),
        ("outside_range", [a, b, ..]) => Threshold::OutsideRange(*a, *b),
        (other, _) => {
            return Err(unsupported(format!(
                "threshold type {other:?} with params {params:?} is not supported"
            )))
        }
    };

    let reduce_ref = condition.model["expression"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let reduce_step = step(&reduce_ref)?;
    if reduce_step.model["type"] != "reduce" {
        return Err(unsupported(format!(
            "{reduce_ref} must be a reduce expression, it is {}",
            reduce_step.model["type"]
        )));
    }
    let function: ReduceFunction = serde_json::from_value(reduce_step.model["reducer"].clone())
        .map_err(|_| {
            unsupported(format!(
                "reducer {} is not supported",
                reduce_step.model["reducer"]
            ))
        })?;
    let settings = &reduce_step.model["settings"];
    let mode = match settings["mode"].as_str().unwrap_or("") {
        "" | "strict" => ReduceMode::Strict,
        "dropNN" => ReduceMode::DropNonNumbers,
        "replaceNN" => {
            ReduceMode::ReplaceNonNumbers(settings["replaceWithValue"].as_f64().unwrap_or(0.0))
        }
        other => {
            return Err(unsupported(format!(
                "reduce mode {other:?} is not supported"
            )))
        }
    };

    let query_ref = reduce_step.model["expression"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let query = step(&query_ref)?;
    if query.datasource_uid == "__expr__" {
        return Err(unsupported(format!(
            "{query_ref} must be a data-source query (math and resample are not supported)"
        )));
    }
    let used = [
        spec.condition.as_str(),
        reduce_ref.as_str(),
        query_ref.as_str(),
    ];
    if let Some(extra) = spec
        .data
        .iter()
        .find(|q| !used.contains(&q.ref_id.as_str()))
    {
        return Err(unsupported(format!(
            "query {} is not part of the condition chain; only A → reduce → threshold is supported",
            extra.ref_id
        )));
    }
    let es = EsQuery::from_model(&query.model)
        .map_err(|e| unsupported(format!("query {query_ref}: {e}")))?;
    let range = query
        .relative_time_range
        .unwrap_or(RelativeTimeRange { from: 600, to: 0 });
    Ok(AlertRule {
        uid: spec.uid,
        title: spec.title,
        folder: folder.to_string(),
        group: group.to_string(),
        interval,
        datasource_uid: query.datasource_uid.clone(),
        index: None,
        range_from: Duration::from_secs(range.from),
        range_to: Duration::from_secs(range.to),
        query_ref,
        query: es,
        reduce_ref,
        reduce: Reduce { function, mode },
        threshold,
        pending_period: duration(&spec.pending_period, "for", &title)?,
        no_data_state: spec.no_data_state,
        exec_err_state: spec.exec_err_state,
        labels: spec.labels,
        annotations: spec.annotations,
    })
}

/// The SLA rule as provisioned in dashboards/, for tests.
#[cfg(test)]
pub(crate) fn provisioned_sla_rule() -> AlertRule {
    load(include_str!(
        "../../dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml"
    ))
    .expect("the provisioned rule loads")
    .remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::es_query::ValueMetric;

    const RULES: &str =
        include_str!("../../dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml");

    #[test]
    fn loads_the_provisioned_sla_rule() {
        let rules = load(RULES).unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.title, "SLA miss");
        assert_eq!(r.pending_period, Duration::from_secs(120));
        assert_eq!(r.threshold, Threshold::Above(0.0));
        assert_eq!(
            r.reduce,
            Reduce {
                function: ReduceFunction::Last,
                mode: ReduceMode::DropNonNumbers
            }
        );
        assert_eq!(r.range_from, Duration::from_secs(600));
        assert_eq!(r.no_data_state, NoDataState::NoData);
        assert_eq!(r.exec_err_state, ExecErrState::Error);
        assert_eq!(
            r.query.single_terms().map(|t| t.field.as_str()),
            Some("job")
        );
        assert!(
            matches!(&r.query.value, ValueMetric::Script { script, variables, .. }
                if script == "params.p99 - params.sla"
                    && variables.iter().map(|(_, m)| m.metric().field.as_str()).eq(["p99", "sla_ms"]))
        );
        assert_eq!(r.interval, Duration::from_secs(60));
    }

    #[test]
    fn refuses_what_it_cannot_evaluate_like_grafana() {
        let math = RULES.replace("type: reduce", "type: math");
        assert!(
            matches!(load(&math), Err(RuleError::Unsupported { reason, .. }) if reason.contains("reduce"))
        );
        let reducer = RULES.replace("reducer: last", "reducer: median");
        assert!(load(&reducer).is_err());
        let classic = RULES.replace("type: threshold", "type: classic_conditions");
        assert!(load(&classic).is_err());
        let range = RULES.replace("type: gt", "type: within_range");
        assert!(load(&range).is_err(), "within_range needs two params");
        assert!(matches!(load("groups: [1"), Err(RuleError::Parse(_))));
        let keep = RULES.replace("for: 2m", "for: 2m\n        keep_firing_for: 5m");
        assert!(
            matches!(load(&keep), Err(RuleError::Unsupported { reason, .. }) if reason.contains("Grafana 12"))
        );
    }

    #[test]
    fn missing_mappings_default_as_in_grafana_provisioning() {
        let bare = RULES
            .replace("        noDataState: NoData\n", "")
            .replace("        execErrState: Error\n", "");
        assert_ne!(bare, RULES);
        let r = &load(&bare).unwrap()[0];
        assert_eq!(r.no_data_state, NoDataState::NoData);
        assert_eq!(r.exec_err_state, ExecErrState::Alerting);
    }
}
