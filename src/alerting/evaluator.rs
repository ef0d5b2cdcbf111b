//! The evaluator service: evaluates each rule every interval against Elasticsearch, keeps its
//! state with Grafana's semantics, logs state changes only, serves the state over HTTP, and
//! notifies Alertmanager (v2 API) and a webhook.

use super::notify::{alertmanager_alert, webhook_payload};
use super::rule::AlertRule;
use super::state::{AlertState, Lifecycle, RuleState, Transition};
use crate::shutdown::Shutdown;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use elasticsearch::Elasticsearch;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How many past transitions each rule keeps for `/state`.
const HISTORY: usize = 200;

/// What the evaluator needs.
pub struct EvaluatorConfig {
    /// Rules to evaluate.
    pub rules: Vec<AlertRule>,
    /// Elasticsearch client.
    pub client: Elasticsearch,
    /// Index queried (the data source's index).
    pub index: String,
    /// Evaluation interval overriding the rule groups' (None: as provisioned).
    pub interval: Option<Duration>,
    /// Alertmanager base URL, e.g. `http://127.0.0.1:9093`.
    pub alertmanager: Option<String>,
    /// Webhook receiving state changes.
    pub webhook: Option<String>,
}

/// A rule's state and history, as served by `/state`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    /// Rule uid.
    pub uid: String,
    /// Rule title.
    pub title: String,
    /// Current state.
    pub state: RuleState,
    /// Past transitions, oldest first.
    pub transitions: VecDeque<Transition>,
}

/// The state of every rule, shared with the HTTP endpoint.
pub type SharedStatus = Arc<RwLock<Vec<RuleStatus>>>;

/// `GET /state`: every rule's state and transitions as JSON.
pub fn state_router(status: SharedStatus) -> Router {
    Router::new()
        .route("/state", get(serve_state))
        .with_state(status)
}

async fn serve_state(State(status): State<SharedStatus>) -> Json<Vec<RuleStatus>> {
    Json(status.read().expect("status lock").clone())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs the evaluation loops until shutdown.
pub async fn run(config: EvaluatorConfig, status: SharedStatus, shutdown: Shutdown) {
    let config = Arc::new(config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    {
        let mut s = status.write().expect("status lock");
        *s = config
            .rules
            .iter()
            .map(|r| RuleStatus {
                uid: r.uid.clone(),
                title: r.title.clone(),
                state: RuleState::new(now_ms()),
                transitions: VecDeque::new(),
            })
            .collect();
    }
    let mut loops = Vec::new();
    for index in 0..config.rules.len() {
        let (config, status, http, mut shutdown) = (
            config.clone(),
            status.clone(),
            http.clone(),
            shutdown.clone(),
        );
        loops.push(tokio::spawn(async move {
            let rule = &config.rules[index];
            let interval = config
                .interval
                .unwrap_or(rule.interval)
                .max(Duration::from_millis(100));
            tracing::info!(rule = %rule.title, ?interval, index = %config.index, "evaluating");
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut firing_since: Option<(i64, AlertState)> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait() => break,
                }
                let now = now_ms();
                let evaluation = rule.evaluate(&config.client, &config.index, now).await;
                let lifecycle = Lifecycle {
                    pending_period: rule.pending_period,
                    keep_firing_for: rule.keep_firing_for,
                    no_data_state: rule.no_data_state,
                    exec_err_state: rule.exec_err_state,
                };
                let (transition, state) = {
                    let mut all = status.write().expect("status lock");
                    let entry = &mut all[index];
                    let transition = entry.state.apply(&lifecycle, &evaluation, now);
                    if let Some(t) = &transition {
                        entry.transitions.push_back(t.clone());
                        if entry.transitions.len() > HISTORY {
                            entry.transitions.pop_front();
                        }
                    }
                    (transition, entry.state.clone())
                };
                metrics::gauge!("sla_alert_rule_firing", "rule" => rule.title.clone())
                    .set(f64::from(u8::from(state.state.is_firing())));
                if let Some(t) = &transition {
                    log_transition(rule, t);
                    if let Some(url) = &config.webhook {
                        post(&http, url, &webhook_payload(rule, t)).await;
                    }
                }
                if let Some(base) = &config.alertmanager {
                    let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
                    if state.state.is_firing() {
                        let since = match firing_since {
                            Some((since, kind))
                                if kind == state.state || state.state == AlertState::Recovering =>
                            {
                                since
                            }
                            _ => state.since_ms,
                        };
                        firing_since = Some((since, state.state));
                        post(
                            &http,
                            &url,
                            &alertmanager_alert(rule, &state, since, now, state.state),
                        )
                        .await;
                    } else if let Some((since, kind)) = firing_since.take() {
                        post(
                            &http,
                            &url,
                            &alertmanager_alert(rule, &state, since, now, kind),
                        )
                        .await;
                    }
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
}

fn log_transition(rule: &AlertRule, t: &Transition) {
    let lasted = humantime::format_duration(Duration::from_secs(
        (t.previous_lasted_ms / 1000).max(0) as u64,
    ));
    let value = t
        .value
        .map_or_else(|| "no value".to_string(), |v| format!("{v:.0}"));
    match &t.error {
        Some(e) => {
            tracing::warn!(rule = %rule.title, "{:?} -> {:?} after {lasted} ({e})", t.from, t.to)
        }
        None => {
            tracing::info!(rule = %rule.title, "{:?} -> {:?} after {lasted} ({} = {value})", t.from, t.to, rule.reduce_ref)
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) {
    match http.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!("{url} answered {}", r.status()),
        Err(e) => tracing::warn!("posting to {url}: {e}"),
    }
}
