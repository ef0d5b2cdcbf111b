//! The local Bugsink (a Sentry-protocol server started by `scripts/stack.sh up bugsink`): its
//! DSN, and the events it stored, read back through its own management shell.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The running Bugsink of the local stack.
pub struct Bugsink {
    dir: PathBuf,
}

impl Bugsink {
    /// The local stack's Bugsink; the test fails with what to run when it is not up.
    pub fn local() -> Bugsink {
        let state = std::env::var("SLA_STACK_STATE")
            .unwrap_or_else(|_| "/var/tmp/sla-monitor-stack".to_string());
        let dir = PathBuf::from(state).join("bugsink");
        assert!(
            dir.join("dsn").exists() && dir.join("manage").exists(),
            "no Bugsink in {}: run scripts/stack.sh up bugsink (scripts/test.sh does)",
            dir.display()
        );
        Bugsink { dir }
    }

    /// The DSN of its project.
    pub fn dsn(&self) -> String {
        std::fs::read_to_string(self.dir.join("dsn"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Every event stored with `environment` (tests use a unique one), oldest first, as the
    /// SDK sent it, each with the `issue_id` Bugsink grouped it into.
    pub fn events(&self, environment: &str) -> Vec<Value> {
        let script = format!(
            r#"import json
from events.models import Event
out = []
for e in Event.objects.order_by("digested_at"):
    d = e.get_parsed_data()
    if d.get("environment") == {environment:?}:
        d["issue_id"] = str(e.issue_id)
        out.append(d)
print(json.dumps(out))"#
        );
        let output = Command::new(self.dir.join("manage"))
            .args(["shell", "-v", "0", "-c", &script])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "reading Bugsink's events: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let last = text.lines().last().unwrap_or("[]");
        serde_json::from_str::<Value>(last)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
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
