//! The local Bugsink (a Sentry-protocol server started by `scripts/stack.sh up bugsink`): its
//! DSN, and the events it stored, read back through its HTTP API (issues of the project, their
//! events, each event's data as the SDK sent it).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The running Bugsink of the local stack.
pub struct Bugsink {
    dir: PathBuf,
    port: String,
}

impl Bugsink {
    /// The local stack's Bugsink; the test fails with what to run when it is not up.
    pub fn local() -> Bugsink {
        let state = std::env::var("SLA_STACK_STATE")
            .unwrap_or_else(|_| "/var/tmp/sla-monitor-stack".to_string());
        let dir = PathBuf::from(state).join("bugsink");
        assert!(
            dir.join("dsn").exists() && dir.join("api_token").exists(),
            "no Bugsink in {}: run scripts/stack.sh up bugsink (scripts/test.sh does)",
            dir.display()
        );
        let port = std::env::var("SLA_BUGSINK_PORT").unwrap_or_else(|_| "9280".to_string());
        Bugsink { dir, port }
    }

    /// The DSN of its project.
    pub fn dsn(&self) -> String {
        self.read("dsn")
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `GET /api/canonical/0/{path}` as JSON.
    fn get(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}/api/canonical/0/{path}", self.port);
        let output = Command::new("curl")
            .args(["-fsS", "-H"])
            .arg(format!("Authorization: Bearer {}", self.read("api_token")))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "GET {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Every item of a paginated list.
    fn list(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page = self.get(path);
        loop {
            items.extend(page["results"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => {
                    let rest = next.split("/api/canonical/0/").nth(1).unwrap().to_string();
                    page = self.get(&rest);
                }
                None => return items,
            }
        }
    }

    /// Every event stored with `environment` (tests use a unique one), as the SDK sent it,
    /// each with the `issue_id` Bugsink grouped it into. Only issues seen in the last hour are
    /// read (the stack's Bugsink keeps earlier runs' events).
    pub fn events(&self, environment: &str) -> Vec<Value> {
        let since = (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut events = Vec::new();
        for issue in self.list("issues/?project=1") {
            if issue["last_seen"]
                .as_str()
                .is_some_and(|seen| seen < since.as_str())
            {
                continue;
            }
            let issue_id = issue["id"].as_str().unwrap().to_string();
            for event in self.list(&format!("events/?issue={issue_id}")) {
                let id = event["id"].as_str().unwrap();
                let mut data = self.get(&format!("events/{id}/"))["data"].take();
                if data["environment"] == environment {
                    data["issue_id"] = Value::from(issue_id.clone());
                    events.push(data);
                }
            }
        }
        events.sort_by(|a, b| {
            a["timestamp"]
                .as_f64()
                .partial_cmp(&b["timestamp"].as_f64())
                .unwrap()
        });
        events
    }
}

/// A tag of an event as the SDK sends them (an object, or a list of pairs).
pub fn tag(event: &Value, key: &str) -> Option<String> {
    match &event["tags"] {
        Value::Object(map) => map.get(key).and_then(Value::as_str).map(String::from),
        Value::Array(pairs) => pairs
            .iter()
            .find(|p| p[0] == key)
            .and_then(|p| p[1].as_str())
            .map(String::from),
        _ => None,
    }
}
