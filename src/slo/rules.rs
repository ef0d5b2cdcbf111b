//! Grafana-managed burn-rate alert rules generated from an SLO ([`generate`]): one rule per
//! burn-rate window, in Grafana 10.4's file-provisioning format, each one Elasticsearch query →
//! reduce → threshold, which the `alerts` evaluator runs live and in backtests with Grafana's
//! semantics.
//!
//! Query A sums the window documents' `over_sla_count` and `count` per `resolution` bucket
//! (the monitor's window), slides two `moving_fn` sums over them — the long and the short
//! window, both ending with the newest bucket — and a `bucket_script` turns them into the
//! burn rate: the lower of the two windows' error ratios over the error budget (1 − target),
//! or 0 while the short window holds fewer than the minimum records (the guard against paging
//! on a handful of records). Reduce B takes the newest bucket's value; C fires above the burn
//! rate. Only windows judged against the SLO's threshold count (`sla_ms` in the query).

use super::spec::{BurnWindow, SloSpec};
use serde_json::{json, Value};

/// The rule uid of window `index` of `slo`.
pub fn rule_uid(slo: &SloSpec, index: usize) -> String {
    format!("slo-{}-{}", slo.name, index + 1)
}

/// `d` in its largest whole unit, as Grafana and Elasticsearch write intervals: 30d, 6h, 5m.
pub fn short_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn moving_sum(id: &str, of: &str, buckets: u64) -> Value {
    json!({
        "id": id, "type": "moving_fn", "field": of, "hide": true,
        "settings": { "window": buckets, "shift": 1, "script": "MovingFunctions.sum(values)" }
    })
}

/// The Painless script of the burn rate, with the guard.
pub fn burn_rate_script(slo: &SloSpec) -> String {
    let budget = 1.0 - slo.target;
    format!(
        "params.all_short < {} ? 0.0 : Math.min(params.bad_short / params.all_short, \
         params.bad_long / params.all_long) / {budget:.10}",
        slo.minimum_records.max(1)
    )
}

fn rule(slo: &SloSpec, index: usize, window: &BurnWindow) -> Value {
    let resolution = slo.resolution.as_millis() as u64;
    let long_buckets = window.long.as_millis() as u64 / resolution;
    let short_buckets = window.short.as_millis() as u64 / resolution;
    let (long, short) = (short_duration(window.long), short_duration(window.short));
    let expr = |ref_id: &str, model: Value| {
        json!({
            "refId": ref_id,
            "relativeTimeRange": { "from": window.long.as_secs(), "to": 0 },
            "datasourceUid": "__expr__",
            "model": model,
        })
    };
    let mut b = json!({ "refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                        "settings": { "mode": "dropNN" } });
    b["datasource"] = json!({ "type": "__expr__", "uid": "__expr__" });
    let mut c = json!({ "refId": "C", "type": "threshold", "expression": "B",
                        "conditions": [{ "evaluator": { "type": "gt", "params": [window.burn_rate] } }] });
    c["datasource"] = json!({ "type": "__expr__", "uid": "__expr__" });
    json!({
        "uid": rule_uid(slo, index),
        "title": format!("{} burn rate {} ({long}/{short} at {}x)", slo.display_name, window.severity, window.burn_rate),
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": { "from": window.long.as_secs(), "to": 0 },
                "datasourceUid": slo.datasource_uid,
                "model": {
                    "refId": "A",
                    "datasource": { "type": "elasticsearch", "uid": slo.datasource_uid },
                    "query": format!("job:\"{}\" AND sla_ms:{}", slo.job.replace('"', "\\\""), slo.threshold_ms()),
                    "alias": format!("burn rate {long}/{short}"),
                    "metrics": [
                        { "id": "1", "type": "sum", "field": "over_sla_count", "hide": true },
                        { "id": "2", "type": "sum", "field": "count", "hide": true },
                        moving_sum("3", "1", long_buckets),
                        moving_sum("4", "2", long_buckets),
                        moving_sum("5", "1", short_buckets),
                        moving_sum("6", "2", short_buckets),
                        {
                            "id": "7", "type": "bucket_script",
                            "pipelineVariables": [
                                { "name": "bad_long", "pipelineAgg": "3" },
                                { "name": "all_long", "pipelineAgg": "4" },
                                { "name": "bad_short", "pipelineAgg": "5" },
                                { "name": "all_short", "pipelineAgg": "6" }
                            ],
                            "settings": { "script": burn_rate_script(slo) }
                        }
                    ],
                    "bucketAggs": bucket_aggs(slo),
                    "timeField": "@timestamp",
                    "intervalMs": resolution,
                    "maxDataPoints": 43200
                }
            },
            expr("B", b),
            expr("C", c)
        ],
        // No window document in the range is no traffic, hence no burn; a monitor that stopped
        // writing is the "SLA miss" rule's NoData.
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "0s",
        "isPaused": false,
        "labels": {
            "severity": window.severity,
            "slo": slo.name,
            "service": slo.service,
            "job": slo.job,
        },
        // Per value: each instance's own traffic passes the minimum-traffic guard or not.
        "annotations": {
            "summary": format!(
                "{}{}: error budget burning at {{{{ humanize $values.B.Value }}}}x over {long} and {short} (alert above {}x: {:.0} % of the {} budget gone at this rate)",
                slo.job,
                slo.dimension.as_ref().map_or(String::new(), |name| format!(" {name}={{{{ index $labels \"dimensions.{name}\" }}}}")),
                window.burn_rate, 100.0 * slo.budget_share(window), short_duration(slo.time_window)
            ),
            "description": format!(
                "SLO {}: {} % of records within {} ms over {}. Both the last {long} and the last {short} burn the error budget more than {}x faster than sustainable (and the last {short} hold at least {} records).",
                slo.name, slo.target * 100.0, slo.threshold_ms(), short_duration(slo.time_window), window.burn_rate, slo.minimum_records
            ),
            "runbook": "docs/slo.md, section Burn-rate alerts; then docs/operations.md, Runbook: SLA miss."
        }
    })
}

/// The date histogram the rules sum windows in, inside a terms aggregation on the dimension's
/// values for a per-value SLO (one series, hence one alert instance, per value; at most 200).
fn bucket_aggs(slo: &SloSpec) -> Value {
    let histogram = json!({
        "id": "8", "type": "date_histogram", "field": "@timestamp",
        "settings": { "interval": short_duration(slo.resolution), "min_doc_count": "0", "trimEdges": "0" }
    });
    match &slo.dimension {
        Some(name) => json!([
            {
                "id": "9", "type": "terms", "field": format!("dimensions.{name}"),
                "settings": { "size": "200", "order": "asc", "orderBy": "_key", "min_doc_count": "1" }
            },
            histogram
        ]),
        None => json!([histogram]),
    }
}

/// The rule provisioning file (YAML) for `slo`.
pub fn generate(slo: &SloSpec, source: &str) -> String {
    let file = json!({
        "apiVersion": 1,
        "groups": [{
            "orgId": 1,
            "name": format!("slo-{}", slo.name),
            "folder": slo.folder,
            "interval": short_duration(slo.interval),
            "rules": slo.windows.iter().enumerate().map(|(i, w)| rule(slo, i, w)).collect::<Vec<_>>()
        }]
    });
    format!(
        "# Generated by `alerts slo generate {source}`; edit the SLO file and generate again.\n\
         # Multi-window, multi-burn-rate alerts (SRE workbook, ch. 5) for SLO {:?}: {} % of\n\
         # records of job {:?} within {} ms over a rolling {}. See docs/slo.md.\n{}",
        slo.name,
        slo.target * 100.0,
        slo.job,
        slo.threshold_ms(),
        short_duration(slo.time_window),
        serde_norway::to_string(&file).expect("rules serialize")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::es_query::{ScriptInput, ValueMetric};
    use crate::alerting::expressions::Threshold;
    use crate::alerting::rule;

    const EXAMPLE: &str = include_str!("../../dashboards/slo/visits-latency.slo.yaml");
    const PROVISIONED: &str =
        include_str!("../../dashboards/grafana/provisioning/alerting/slo-visits-latency.yaml");

    #[test]
    fn the_provisioned_rules_are_the_generated_ones() {
        let slo = SloSpec::parse(EXAMPLE).unwrap();
        assert_eq!(
            generate(&slo, "dashboards/slo/visits-latency.slo.yaml"),
            PROVISIONED,
            "run: cargo run --bin alerts -- slo generate dashboards/slo/visits-latency.slo.yaml \
             > dashboards/grafana/provisioning/alerting/slo-visits-latency.yaml"
        );
    }

    #[test]
    fn generated_rules_load_in_the_evaluator() {
        let slo = SloSpec::parse(EXAMPLE).unwrap();
        let rules = rule::load(&generate(&slo, "x")).unwrap();
        assert_eq!(rules.len(), 3);
        let page = &rules[0];
        assert_eq!(page.threshold, Threshold::Above(14.4));
        assert_eq!(page.range_from.as_secs(), 3_600);
        assert_eq!(page.labels["severity"], "page");
        assert_eq!(rules[2].labels["severity"], "ticket");
        assert!(page.query.reads_earlier_buckets());
        let ValueMetric::Script {
            variables, script, ..
        } = &page.query.value
        else {
            panic!("a bucket script");
        };
        assert!(
            script.starts_with("params.all_short < 100 ? 0.0"),
            "{script}"
        );
        let windows: Vec<_> = variables
            .iter()
            .map(|(_, input)| match input {
                ScriptInput::MovingFn { settings, .. } => settings["window"].as_u64().unwrap(),
                ScriptInput::Metric(_) => 0,
            })
            .collect();
        assert_eq!(windows, [60, 60, 5, 5]);
        assert_eq!(
            page.query.query,
            "job:\"visits-synchronizer\" AND sla_ms:5000"
        );
    }

    #[test]
    fn a_per_value_slo_gives_one_instance_per_value_from_the_value_documents() {
        let threshold = EXAMPLE
            .lines()
            .find(|l| l.trim_start().starts_with("threshold:"))
            .unwrap();
        let file = EXAMPLE.replace(threshold, "    threshold: 500ms\n    dimension: tenant");
        let slo = SloSpec::parse(&file).unwrap();
        assert_eq!(slo.dimension.as_deref(), Some("tenant"));
        assert_eq!(slo.datasource_uid, "sla-dimensions");
        assert!(slo.describe("f").contains("per value of tenant"));
        let rules = rule::load(&generate(&slo, "x")).unwrap();
        let page = &rules[0];
        assert_eq!(page.datasource_uid, "sla-dimensions");
        let fields: Vec<&str> = page
            .query
            .group_by
            .iter()
            .map(|t| t.field.as_str())
            .collect();
        assert_eq!(fields, ["dimensions.tenant"]);
        assert_eq!(
            page.query.query,
            "job:\"visits-synchronizer\" AND sla_ms:500"
        );
        assert!(page.annotations["summary"]
            .contains(r#"tenant={{ index $labels "dimensions.tenant" }}"#));
        let bad = EXAMPLE.replace(threshold, "    threshold: 5s\n    dimension: \"ten ant\"");
        assert!(SloSpec::parse(&bad).unwrap_err().0.contains("--dimension"));
    }
}
