//! Authentication against a real, secured Elasticsearch (a private instance started by
//! `scripts/stack.sh` with security on, so the shared one is untouched): without credentials
//! the monitor stops and says what to set; with basic auth (password from a file) or an API key
//! (from a file) it writes its windows.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const STACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh");

/// A private Elasticsearch with security on; stopped and removed on drop.
struct SecuredElasticsearch {
    state: PathBuf,
    port: u16,
    password: String,
}

impl SecuredElasticsearch {
    fn stack(&self, command: &str) -> std::process::Output {
        Command::new(STACK)
            .args([command, "elasticsearch"])
            .env("SLA_STACK_STATE", &self.state)
            .env("SLA_ES_PORT", self.port.to_string())
            .env("SLA_ES_BOOTSTRAP_PASSWORD", &self.password)
            .output()
            .unwrap()
    }

    fn start() -> Self {
        // Elasticsearch runs as nobody when the tests run as root: a world-readable state dir.
        let state = PathBuf::from(format!("/var/tmp/{}", unique("sla_test_es_secure")));
        std::fs::create_dir_all(&state).unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&state)
            .status()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let es = SecuredElasticsearch {
            state,
            port,
            password: unique("pw"),
        };
        let out = es.stack("up");
        assert!(
            out.status.success(),
            "starting a secured Elasticsearch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        es
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn count(&self, index: &str) -> u64 {
        let client = reqwest::Client::new();
        let _ = client
            .post(format!("{}/{index}/_refresh", self.url()))
            .basic_auth("elastic", Some(&self.password))
            .send()
            .await;
        let response = client
            .get(format!("{}/{index}/_count", self.url()))
            .basic_auth("elastic", Some(&self.password))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        body["count"].as_u64().unwrap_or(0)
    }

    async fn api_key(&self) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/_security/api_key", self.url()))
            .basic_auth("elastic", Some(&self.password))
            .json(&serde_json::json!({"name": "sla-monitor-test"}))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        body["encoded"]
            .as_str()
            .unwrap_or_else(|| panic!("no API key: {body}"))
            .to_string()
    }
}

impl Drop for SecuredElasticsearch {
    fn drop(&mut self) {
        self.stack("down");
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_authenticates_with_basic_auth_or_an_api_key_and_explains_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let es = SecuredElasticsearch::start();
    let s = monitor_topics("auth");
    create_topic(&s.reduced, 2).await;
    let base = (now_ms() - 60_000) / WINDOW * WINDOW;
    let (records, _) = windows_of_records(base, 0..2, 10, 7);
    produce(&s.reduced, &records).await;
    let monitor = |group: &str, index: &str, auth: &[&str]| {
        let mut args = MonitorArgs::new(&s, group)
            .set("--es-url", &es.url())
            .set("--es-index", index)
            .set("--idle-timeout", "1s");
        for pair in auth.chunks(2) {
            args = args.set(pair[0], pair[1]);
        }
        args.start(dir.path())
    };

    // No credentials: the monitor stops and says what to set — in its log, and as a fatal
    // event to the Sentry-protocol server its DSN names.
    let bugsink = support::bugsink::Bugsink::local();
    let environment = unique("test");
    let dsn = bugsink.dsn();
    let mut refused = MonitorArgs::bare(&s, &unique("auth_g0"))
        .set("--es-index", &test_index("auth_none"))
        .set("--es-url", &es.url())
        .start_with_env(
            dir.path(),
            &[
                ("SENTRY_DSN", dsn.as_str()),
                ("SENTRY_ENVIRONMENT", environment.as_str()),
            ],
        );
    assert!(
        !refused.wait(Duration::from_secs(60)).success(),
        "must not run without credentials"
    );
    let log = refused.log_text();
    assert!(
        log.contains("SLA_ES_PASSWORD") && log.contains("SLA_ES_API_KEY"),
        "{log}"
    );
    let mut events = Vec::new();
    wait_for("the refusal in Bugsink", Duration::from_secs(20), || {
        events = bugsink.events(&environment);
        events.iter().any(|e| e["level"] == "fatal")
    });
    let fatal = events.iter().find(|e| e["level"] == "fatal").unwrap();
    assert!(
        fatal["exception"].to_string().contains("SLA_ES_PASSWORD"),
        "{fatal:#}"
    );
    assert_eq!(
        support::bugsink::tag(fatal, "job").as_deref(),
        Some("monitor")
    );

    // Basic authentication, the password read from a file outside the repo.
    let password_file = dir.path().join("es-password");
    std::fs::write(&password_file, format!("{}\n", es.password)).unwrap();
    let basic_index = test_index("auth_basic");
    let basic = monitor(
        &unique("auth_g1"),
        &basic_index,
        &[
            "--es-username",
            "elastic",
            "--es-password-file",
            password_file.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while es.count(&basic_index).await < 2 {
        assert!(
            Instant::now() < deadline,
            "no windows with basic auth:\n{}",
            basic.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(basic.terminate(Duration::from_secs(30)).success());

    // API key, read from a file.
    let key_file = dir.path().join("es-api-key");
    std::fs::write(&key_file, es.api_key().await).unwrap();
    let key_index = test_index("auth_key");
    let keyed = monitor(
        &unique("auth_g2"),
        &key_index,
        &["--es-api-key-file", key_file.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while es.count(&key_index).await < 2 {
        assert!(
            Instant::now() < deadline,
            "no windows with an API key:\n{}",
            keyed.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(keyed.terminate(Duration::from_secs(30)).success());
}
