//! Grafana data-source provisioning: which index and time field a data-source uid stands for.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One provisioned data source (only what the evaluator needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Datasource {
    /// Display name.
    pub name: String,
    /// Stable uid referenced by dashboards and rules.
    pub uid: String,
    /// Plugin type, e.g. `elasticsearch`.
    #[serde(rename = "type")]
    pub kind: String,
    /// URL as seen by Grafana.
    #[serde(default)]
    pub url: String,
    /// Type-specific settings (`index`, `timeField` for Elasticsearch).
    #[serde(rename = "jsonData", default)]
    pub json_data: serde_json::Value,
}

impl Datasource {
    /// The index of an Elasticsearch data source.
    pub fn index(&self) -> Option<&str> {
        self.json_data["index"]
            .as_str()
            .or_else(|| self.json_data["database"].as_str())
    }
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    datasources: Vec<Datasource>,
}

/// Reads a data-source provisioning file into a map by uid.
pub fn parse(yaml: &str) -> Result<BTreeMap<String, Datasource>, serde_norway::Error> {
    let file: File = serde_norway::from_str(yaml)?;
    Ok(file
        .datasources
        .into_iter()
        .map(|d| (d.uid.clone(), d))
        .collect())
}
