//! Grafana-managed alert rules, evaluated outside Grafana: the rule is read from the same
//! provisioning file Grafana loads, query A is sent to Elasticsearch the way Grafana's
//! Elasticsearch data source sends it, then reduced (B) and compared with a threshold (C); the
//! state follows Grafana 10.4's state machine, live (`evaluator`) or over a past range
//! (`backtest`), scored against known incidents (`incidents`, `score`, `requirements`), with
//! what-if `variants` and an HTML `report`; `commands` is what the `alerts` job runs.

pub mod aligned;
pub mod backtest;
pub mod commands;
pub mod datasource;
pub mod es_query;
pub mod evaluation;
pub mod evaluator;
pub mod expressions;
pub mod incidents;
pub mod instances;
pub mod notify;
pub mod report;
pub mod requirements;
pub mod rule;
pub mod schedule;
pub mod score;
pub mod state;
pub mod variants;
