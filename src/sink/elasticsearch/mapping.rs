//! The explicit mapping of the window index, as an index template and as a mapping update
//! for an index that already exists.

use crate::event_time::window_document::percentile_field;
use serde_json::{json, Map, Value};

/// The `properties` of a window document for the given quantiles.
pub fn properties(quantiles: &[f64]) -> Value {
    let mut properties = Map::new();
    for (field, kind) in [
        ("@timestamp", "date"),
        ("window_end", "date"),
        ("window_start_ms", "long"),
        ("job", "keyword"),
        ("count", "long"),
        ("min", "float"),
        ("max", "float"),
        ("mean", "float"),
        ("sla_ms", "long"),
        ("over_sla_count", "long"),
        ("within_sla_count", "long"),
        ("exact", "boolean"),
        ("latency_histogram", "histogram"),
    ] {
        properties.insert(field.into(), json!({ "type": kind }));
    }
    for &q in quantiles {
        properties.insert(percentile_field(q), json!({ "type": "float" }));
    }
    Value::Object(properties)
}

/// The `properties` of a dimension value document (`--dimension`): a window document's, with
/// each dimension's value (a keyword under `dimensions`) and `records_elsewhere_at_most`.
pub fn values_properties(quantiles: &[f64], names: &[String]) -> Value {
    let mut properties = properties(quantiles);
    let dimensions: Map<String, Value> = names
        .iter()
        .map(|name| (name.clone(), json!({ "type": "keyword" })))
        .collect();
    properties["dimensions"] = json!({ "properties": dimensions });
    properties["records_elsewhere_at_most"] = json!({ "type": "long" });
    properties
}

/// The index template of the dimension value index.
pub fn values_template(index: &str, quantiles: &[f64], names: &[String]) -> Value {
    template(index, values_properties(quantiles, names))
}

/// The `properties` of a completeness document (see
/// [`crate::completeness::document::CompletenessDocument`]).
pub fn completeness_properties() -> Value {
    let mut properties = Map::new();
    for (field, kind) in [
        ("@timestamp", "date"),
        ("window_end", "date"),
        ("window_start_ms", "long"),
        ("job", "keyword"),
        ("source_topic", "keyword"),
        ("as_of", "date"),
        ("as_of_ms", "long"),
        ("final", "boolean"),
        ("sla_ms", "long"),
        ("lost_after_ms", "long"),
        ("expected", "long"),
        ("arrived_within_sla", "long"),
        ("arrived_late", "long"),
        ("dead_lettered", "long"),
        ("filtered", "long"),
        ("in_flight", "long"),
        ("overdue", "long"),
        ("lost", "long"),
        ("unknown", "long"),
        ("duplicates", "long"),
        ("misses", "long"),
        ("missing", "long"),
        ("oldest_missing_age_ms", "long"),
        ("first_missing", "keyword"),
    ] {
        properties.insert(field.into(), json!({ "type": kind }));
    }
    Value::Object(properties)
}

/// The index template applying the mapping to `index` (created on first write if missing).
/// Unknown fields are refused (`dynamic: strict`) so a typo cannot create a field silently.
pub fn index_template(index: &str, quantiles: &[f64]) -> Value {
    template(index, properties(quantiles))
}

/// The index template of the completeness index.
pub fn completeness_template(index: &str) -> Value {
    template(index, completeness_properties())
}

fn template(index: &str, properties: Value) -> Value {
    json!({
        "index_patterns": [index],
        "priority": 500,
        "template": {
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "dynamic": "strict", "properties": properties }
        },
        "_meta": { "managed_by": "sla-monitor" }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_document_field_explicitly() {
        let p = properties(&[0.5, 0.99, 0.999]);
        assert_eq!(p["@timestamp"]["type"], "date");
        assert_eq!(p["count"]["type"], "long");
        assert_eq!(p["p99_9"]["type"], "float");
        assert_eq!(p["job"]["type"], "keyword");
        assert_eq!(p["latency_histogram"]["type"], "histogram");
        let t = index_template("visits_sync_sla", &[0.5]);
        assert_eq!(t["index_patterns"][0], "visits_sync_sla");
        assert_eq!(t["template"]["mappings"]["dynamic"], "strict");
    }
}
