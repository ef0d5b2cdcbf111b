//! Alert delivery through an Alertmanager HA pair, as the stack runs it: two real Alertmanager
//! replicas gossiping on loopback with the config rendered from the repo's template, the
//! `alerts` evaluator running the provisioned SLA rule (test timings) and sending to **both**
//! replicas, SLA windows in the real Elasticsearch. The replica that notified first is
//! SIGKILLed while the rule fires; the receiver still gets exactly one firing notification
//! (the survivor knows it was sent: the notification log is gossiped) and, when the SLA is met
//! again, exactly one resolved notification from the survivor.

mod support;

use serde_json::{json, Value};
use sla_monitor::sink::elasticsearch::mapping;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::private_broker::free_port;
use support::*;

/// The Alertmanager binary (Debian names it prometheus-alertmanager).
fn alertmanager_binary() -> String {
    std::env::var("SLA_TEST_ALERTMANAGER_BIN").unwrap_or_else(|_| {
        for name in ["prometheus-alertmanager", "alertmanager"] {
            if Command::new(name).arg("--version").output().is_ok() {
                return name.to_string();
            }
        }
        panic!("no Alertmanager binary (apt-get install prometheus-alertmanager)")
    })
}

/// One replica: web on `port`, gossip on `gossip`, peering with `peer_gossip`.
struct Replica {
    url: String,
    child: Child,
}

impl Replica {
    fn start(dir: &Path, config: &Path, port: u16, gossip: u16, peer_gossip: u16) -> Replica {
        let data = dir.join(format!("am-{port}"));
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(dir.join(format!("am-{port}.log"))).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.external-url={url}"))
            .arg(format!("--cluster.listen-address=127.0.0.1:{gossip}"))
            .arg(format!("--cluster.peer=127.0.0.1:{peer_gossip}"))
            // How long the second replica waits for the first one's notification to arrive by
            // gossip before it notifies itself (default 15 s).
            .arg("--cluster.peer-timeout=2s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Replica { url, child }
    }

    fn get(&self, path: &str) -> Option<String> {
        let url = format!("{}{path}", self.url);
        blocking(|| {
            tokio::runtime::Handle::current()
                .block_on(async { reqwest::get(&url).await.ok()?.text().await.ok() })
        })
    }

    /// Sum of a metric's samples whose labels contain every `labels` entry.
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.get("/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
                    && labels.iter().all(|x| l.contains(x))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn cluster_ready(&self) -> bool {
        self.get("/api/v2/status")
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .is_some_and(|s| {
                s["cluster"]["status"] == "ready"
                    && s["cluster"]["peers"].as_array().map_or(0, Vec::len) == 2
            })
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the current 2-second window's document every 500 ms, p99 above the SLA while
/// `breach` is set, as the monitor would.
fn write_windows(index: String, breach: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let start = now_ms() / 2_000 * 2_000;
            let p99 = if breach.load(Ordering::SeqCst) {
                12_000.0
            } else {
                150.0
            };
            let at = chrono::DateTime::from_timestamp_millis(start).unwrap();
            let doc = json!({
                "@timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "window_end": (at + chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "job": "visits-synchronizer", "count": 100, "p50": p99 / 2.0, "p75": p99 / 2.0,
                "p90": p99 / 2.0, "p99": p99, "max": p99, "min": 1.0, "mean": p99 / 2.0,
                "over_sla_count": 0, "within_sla_count": 100, "sla_ms": 5000, "exact": true
            });
            let (status, body) = es_request(
                elasticsearch::http::Method::Put,
                &format!("/{index}/_doc/visits-synchronizer-{start}?refresh=true"),
                Some(doc),
            )
            .await;
            assert!((200..300).contains(&status), "indexing a window: {body}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

fn notifications(received: &Mutex<Vec<Value>>, status: &str) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == status)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_notification_when_a_replica_dies_while_the_rule_fires() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, received) = json_receiver().await;
    let hook_url = format!("{hook}/alertmanager");
    let mut vars = LOOPBACK_RECEIVERS.to_vec();
    vars.retain(|(k, _)| *k != "SLA_ALERT_WEBHOOK_URL");
    vars.extend([
        ("SLA_ALERT_WEBHOOK_URL", hook_url.as_str()),
        ("SLA_SMTP_REQUIRE_TLS", "false"),
        ("SLA_AM_GROUP_WAIT", "1s"),
        ("SLA_AM_GROUP_INTERVAL", "2s"),
        ("SLA_AM_REPEAT_INTERVAL", "1h"),
    ]);
    let config = render_alertmanager_config(dir.path(), &vars).unwrap();
    let (web1, gossip1, web2, gossip2) = (free_port(), free_port(), free_port(), free_port());
    let mut replicas = vec![
        Replica::start(dir.path(), &config, web1, gossip1, gossip2),
        Replica::start(dir.path(), &config, web2, gossip2, gossip1),
    ];
    wait_for(
        "the two replicas to form a settled cluster",
        Duration::from_secs(60),
        || replicas.iter().all(Replica::cluster_ready),
    );

    let index = test_index("amha");
    let (status, body) = es_request(
        elasticsearch::http::Method::Put,
        &format!("/{index}"),
        Some(json!({"mappings": {"properties": mapping::properties(&[0.5, 0.75, 0.9, 0.99])}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (breach, stop) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    write_windows(index.clone(), breach.clone(), stop.clone());
    // The rule's first evaluation must see a window: with none it would be NoData, a
    // notification of its own (DatasourceNoData) before the one this test is about.
    wait_for_es_documents(&index, 1, Duration::from_secs(30)).await;

    let run = unique("run");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, test_rule_file(&run, "2s")).unwrap();
    let both = format!("{},{}", replicas[0].url, replicas[1].url);
    let alerts = start_alerts(&rules, &index, &["--alertmanager-url", &both], dir.path());

    // The rule fires; one replica notifies, the other finds the notification in the gossiped
    // notification log and does not.
    let fired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("a firing notification", Duration::from_secs(60), || {
            !notifications(&received, "firing").is_empty()
        })
    }));
    if fired.is_err() {
        let log = |p: u16| {
            std::fs::read_to_string(dir.path().join(format!("am-{p}.log"))).unwrap_or_default()
        };
        panic!(
            "no firing notification; received {:?}\nalerts:\n{}\nreplica 1:\n{}\nreplica 2:\n{}",
            received.lock().unwrap(),
            alerts.log_text(),
            log(web1),
            log(web2)
        );
    }
    let first = notifications(&received, "firing").remove(0);
    assert_eq!(first["alerts"][0]["labels"]["alertname"], "SLA miss");
    assert_eq!(first["alerts"][0]["labels"]["test_run"], run.as_str());
    let sender = first["externalURL"].as_str().unwrap().to_string();
    let sender_index = replicas.iter().position(|r| r.url == sender).unwrap();
    let survivor = replicas.remove(1 - sender_index);
    // The survivor has the notification log entry (the only gossip here: no silences) …
    wait_for(
        "the notification log to reach the other replica",
        Duration::from_secs(20),
        || {
            survivor.metric(
                "alertmanager_cluster_messages_received_total",
                &["msg_type=\"update\""],
            ) >= 1.0
        },
    );
    // … then the replica that notified dies while the rule keeps firing.
    let mut dead = replicas.remove(0);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let queries = survivor.metric("alertmanager_nflog_queries_total", &[]);
    wait_for(
        "the survivor to flush the alert group 3 more times (2 s group_interval)",
        Duration::from_secs(60),
        || survivor.metric("alertmanager_nflog_queries_total", &[]) >= queries + 3.0,
    );
    assert_eq!(
        notifications(&received, "firing").len(),
        1,
        "the survivor notified again: {:?}",
        received.lock().unwrap()
    );

    // The SLA is met again: `alerts` sends the resolved alert to both (one is gone), the
    // survivor notifies once.
    breach.store(false, Ordering::SeqCst);
    wait_for("a resolved notification", Duration::from_secs(60), || {
        !notifications(&received, "resolved").is_empty()
    });
    // Once the survivor dropped the resolved group, it can send nothing more.
    wait_for(
        "the survivor to drop the resolved group",
        Duration::from_secs(60),
        || survivor.metric("alertmanager_dispatcher_aggregation_groups", &[]) == 0.0,
    );
    stop.store(true, Ordering::SeqCst);
    let all = received.lock().unwrap().clone();
    let statuses: Vec<&str> = all.iter().map(|n| n["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["firing", "resolved"], "{all:?}");
    assert_eq!(all[1]["externalURL"], survivor.url.as_str());
    // `alerts` kept sending to both replicas: the dead one's sends failed.
    let failed = metric_sum(
        &alerts,
        "sla_alert_notifications_total",
        &[
            &format!("alertmanager=\"{}\"", dead.url),
            "outcome=\"failed\"",
        ],
    );
    assert!(
        failed.unwrap_or(0.0) >= 1.0,
        "no failed send to the dead replica recorded"
    );
    println!(
        "notifications: firing by {sender}, resolved by {} after the kill; {} failed sends to the dead replica",
        survivor.url,
        failed.unwrap()
    );
    assert!(alerts.terminate(Duration::from_secs(10)).success());
}
