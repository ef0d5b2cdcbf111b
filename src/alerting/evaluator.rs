//! The evaluator service: evaluates each rule every interval against Elasticsearch, keeps its
//! state with Grafana 10.4's semantics, logs state changes only, serves the state over HTTP,
//! sends alerts to **every** Alertmanager replica (v2 API) when Grafana would (firing states at
//! most every 30 s, the resolving evaluation at once, never Pending), and posts each state
//! change to a webhook.

use super::instances::{labels_text, InstanceState, InstanceTransition, RuleInstances};
use super::notify::{alertmanager_alert, webhook_payload};
use super::rule::AlertRule;
use super::schedule::Schedule;
use super::state::{format_state, Lifecycle};
use crate::runtime::shutdown::Shutdown;
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
    /// Base URLs of the Alertmanager replicas, e.g. `http://127.0.0.1:9093`; each receives
    /// every alert (replicas deduplicate notifications among themselves).
    pub alertmanagers: Vec<String>,
    /// Webhook receiving state changes.
    pub webhook: Option<String>,
}

/// A rule's instances and history, as served by `/state`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    /// Rule uid.
    pub uid: String,
    /// Rule title.
    pub title: String,
    /// When the rule was last evaluated (Unix ms).
    pub last_evaluation_ms: Option<i64>,
    /// Current state of each alert instance (one per series, e.g. per job).
    pub instances: Vec<InstanceState>,
    /// Past transitions of all instances, oldest first.
    pub transitions: VecDeque<InstanceTransition>,
    #[serde(skip)]
    machine: RuleInstances,
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
                last_evaluation_ms: None,
                instances: Vec::new(),
                transitions: VecDeque::new(),
                machine: RuleInstances::default(),
            })
            .collect();
    }
    // One sender per replica: the evaluation loops never wait for an Alertmanager, and each
    // replica receives the alerts in the order they were evaluated.
    let senders: Arc<Vec<AlertmanagerSender>> = Arc::new(
        config
            .alertmanagers
            .iter()
            .map(|base| AlertmanagerSender::spawn(base, http.clone()))
            .collect(),
    );
    let mut loops = Vec::new();
    for index in 0..config.rules.len() {
        let (config, status, http, senders, mut shutdown) = (
            config.clone(),
            status.clone(),
            http.clone(),
            senders.clone(),
            shutdown.clone(),
        );
        loops.push(tokio::spawn(async move {
            let rule = &config.rules[index];
            let lifecycle = Lifecycle::of(rule, config.interval);
            let interval = lifecycle.interval;
            tracing::info!(rule = %rule.title, ?interval, index = %config.index, "evaluating");
            // Grafana's scheduler: evaluations at multiples of the interval since the epoch,
            // each stamped with its scheduled time (see `schedule`), as the backtest does.
            let step_ms = interval.as_millis().max(1) as i64;
            let mut schedule = Schedule::starting(now_ms(), step_ms);
            loop {
                let wait = Duration::from_millis((schedule.next_ms() - now_ms()).max(0) as u64);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => break,
                }
                if now_ms() < schedule.next_ms() {
                    continue; // woken early (the timer's resolution): wait for the rest
                }
                let (now, skipped) = schedule.take(now_ms());
                if skipped > 0 {
                    tracing::warn!(
                        rule = %rule.title,
                        skipped,
                        "evaluations skipped: the previous one took longer than the interval"
                    );
                }
                let results = rule.evaluate(&config.client, &config.index, now).await;
                let sending = !config.alertmanagers.is_empty();
                let (applied, firing) = {
                    let mut all = status.write().expect("status lock");
                    let entry = &mut all[index];
                    let applied = entry.machine.apply(&lifecycle, &results, now, sending);
                    entry.last_evaluation_ms = Some(now);
                    entry.instances = entry.machine.states();
                    entry
                        .transitions
                        .extend(applied.transitions.iter().cloned());
                    while entry.transitions.len() > HISTORY {
                        entry.transitions.pop_front();
                    }
                    (applied, entry.machine.any_firing())
                };
                metrics::gauge!("sla_alert_rule_firing", "rule" => rule.title.clone())
                    .set(f64::from(u8::from(firing)));
                for t in &applied.transitions {
                    log_transition(rule, t);
                    if let Some(url) = &config.webhook {
                        post(&http, url, &webhook_payload(rule, t)).await;
                    }
                }
                if !applied.to_send.is_empty() {
                    // One request with every instance to send, as Grafana's sender posts them.
                    let body = alertmanager_alert(rule, &applied.to_send);
                    for sender in senders.iter() {
                        sender.send(body.clone());
                    }
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
}

/// Alerts queued for one Alertmanager replica (Grafana's per-Alertmanager sender).
struct AlertmanagerSender {
    base: String,
    queue: tokio::sync::mpsc::Sender<serde_json::Value>,
}

impl AlertmanagerSender {
    /// Alerts waiting for a replica that does not answer; past this the newest are dropped
    /// (and counted): the next send of a firing state carries the same alert again.
    const QUEUE: usize = 64;

    fn spawn(base: &str, http: reqwest::Client) -> Self {
        let (queue, mut alerts) = tokio::sync::mpsc::channel::<serde_json::Value>(Self::QUEUE);
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        // Labels and logs show the URL without the credentials it may carry.
        let label = crate::runtime::redact::without_userinfo(base);
        tokio::spawn(async move {
            while let Some(body) = alerts.recv().await {
                let ok = post(&http, &url, &body).await;
                metrics::counter!(
                    "sla_alert_notifications_total",
                    "alertmanager" => label.clone(),
                    "outcome" => if ok { "sent" } else { "failed" }
                )
                .increment(1);
            }
        });
        AlertmanagerSender {
            base: crate::runtime::redact::without_userinfo(base),
            queue,
        }
    }

    fn send(&self, body: serde_json::Value) {
        if self.queue.try_send(body).is_err() {
            metrics::counter!(
                "sla_alert_notifications_total",
                "alertmanager" => self.base.clone(),
                "outcome" => "dropped"
            )
            .increment(1);
        }
    }
}

fn log_transition(rule: &AlertRule, change: &InstanceTransition) {
    let t = &change.transition;
    let instance = labels_text(&change.labels);
    let lasted = humantime::format_duration(Duration::from_secs(
        (t.previous_lasted_ms / 1000).max(0) as u64,
    ));
    let value = t
        .value
        .map_or_else(|| "no value".to_string(), |v| format!("{v:.0}"));
    let (from, to) = (
        format_state(t.from, t.from_reason),
        format_state(t.to, t.reason),
    );
    match &t.error {
        Some(e) => {
            tracing::warn!(rule = %rule.title, %instance, "{from} -> {to} after {lasted} ({e})")
        }
        None => tracing::info!(
            rule = %rule.title,
            %instance,
            "{from} -> {to} after {lasted} ({} = {value})",
            rule.reduce_ref
        ),
    }
}

/// Posts `body` as JSON; whether the receiver accepted it.
async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> bool {
    match http.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            let shown = crate::runtime::redact::without_userinfo(url);
            tracing::warn!("{shown} answered {}", r.status());
            false
        }
        Err(e) => {
            let shown = crate::runtime::redact::without_userinfo(url);
            tracing::warn!("posting to {shown}: {}", e.without_url());
            false
        }
    }
}
