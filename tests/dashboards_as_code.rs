//! Dashboards, alert rules, notification routing and the Docker stack are code: every file
//! parses, cross references hold (data-source uids, fields that exist in the index mapping,
//! the threshold equals the documented SLA, files the compose stack mounts), Prometheus and
//! Alertmanager accept their configs, and the Grafana alert rule's query A, run against real
//! Elasticsearch holding real monitor output, crosses the threshold exactly when the delay
//! is on.

mod support;

use serde_json::Value;
use sla_monitor::alerting::evaluation::Evaluation;
use sla_monitor::alerting::{datasource, rule};
use sla_monitor::sink::elasticsearch::mapping;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    let mut value: serde_norway::Value =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: merge keys: {e}"));
    serde_json::to_value(value).unwrap()
}

const DATASOURCES: &str = "dashboards/grafana/provisioning/datasources/datasources.yaml";
const RULES: &str = "dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml";
const NOTIFICATIONS: &str = "dashboards/grafana/provisioning/alerting/notifications.yaml";
const DASHBOARD: &str = "dashboards/grafana/dashboards/sla-monitor.json";
const SLO_RULES: &str = "dashboards/grafana/provisioning/alerting/slo-visits-latency.yaml";
const COMPLETENESS_RULES: &str =
    "dashboards/grafana/provisioning/alerting/completeness-alert-rules.yaml";

/// Fields of the window index (the mapping the monitor creates, default percentiles).
fn index_fields() -> BTreeSet<String> {
    mapping::properties(&[0.5, 0.75, 0.9, 0.99])
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Every Elasticsearch field an ES query model refers to.
fn es_fields(model: &Value) -> Vec<String> {
    let mut fields = Vec::new();
    for m in model["metrics"].as_array().into_iter().flatten() {
        if let Some(f) = m["field"].as_str().filter(|f| *f != "select field") {
            fields.push(f.to_string());
        }
    }
    for b in model["bucketAggs"].as_array().into_iter().flatten() {
        fields.extend(b["field"].as_str().map(String::from));
    }
    fields.extend(model["timeField"].as_str().map(String::from));
    fields
}

/// The monitor's documented default SLA, read from its own --help.
fn documented_sla_ms() -> f64 {
    let help = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let sla = help.split("--sla <SLA>").nth(1).unwrap();
    let default = sla
        .split("[default: ")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    humantime::parse_duration(default).unwrap().as_millis() as f64
}

#[test]
fn dashboard_uses_provisioned_datasources_and_existing_fields() {
    let sources = datasource::parse(&read(DATASOURCES)).unwrap();
    assert_eq!(
        sources["sla-elasticsearch"].index(),
        Some("visits_sync_sla")
    );
    assert_eq!(
        sources["sla-elasticsearch"].json_data["timeField"],
        "@timestamp"
    );
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert_eq!(
        dashboard["uid"], "sla-monitor",
        "a stable uid keeps links working"
    );
    let fields = index_fields();
    let completeness_fields: BTreeSet<String> = mapping::completeness_properties()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Latency percentiles per window",
        "Records per window",
        "SLA breach ratio",
        "Late and malformed records",
        "Completeness per source window",
    ] {
        assert!(
            titles.contains(&wanted),
            "missing panel {wanted}: {titles:?}"
        );
    }
    // One dashboard for every pipeline: a `job` variable filled from the index, which every
    // Elasticsearch panel filters on.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "job" && v["query"].as_str().unwrap().contains("\"job\"")),
        "{variables:?}"
    );
    // The per-value panels also filter on the tenant variable, filled from the value index.
    assert!(variables.iter().any(|v| v["name"] == "tenant"
        && v["datasource"]["uid"] == "sla-dimensions"
        && v["query"].as_str().unwrap().contains("dimensions.tenant")));
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            if target["datasource"]["uid"] == "sla-dimensions" {
                assert_eq!(
                    target["query"], "job:\"$job\" AND dimensions.tenant:($tenant)",
                    "panel {}",
                    panel["title"]
                );
            } else if target["datasource"]["type"] == "elasticsearch" {
                assert_eq!(target["query"], "job:\"$job\"", "panel {}", panel["title"]);
            }
        }
    }
    let mut value_fields = fields.clone();
    value_fields.extend([
        "dimensions.tenant".to_string(),
        "records_elsewhere_at_most".to_string(),
    ]);
    for panel in panels {
        let uid = panel["datasource"]["uid"].as_str().unwrap();
        assert!(
            sources.contains_key(uid),
            "panel {} uses unknown data source {uid}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            let t_uid = target["datasource"]["uid"].as_str().unwrap();
            let source = &sources[t_uid];
            if source.kind == "elasticsearch" {
                // The completeness panels read the completeness index's mapping.
                let fields = match t_uid {
                    "sla-completeness" => &completeness_fields,
                    "sla-dimensions" => &value_fields,
                    _ => &fields,
                };
                for field in es_fields(target) {
                    assert!(
                        fields.contains(&field),
                        "panel {} queries {field}, not in the index mapping",
                        panel["title"]
                    );
                }
            } else {
                assert!(
                    target["expr"].as_str().unwrap().contains("sla_"),
                    "{target}"
                );
            }
        }
    }
}

/// The SLO panels read the histogram field and judge against the SLO file's objective.
#[test]
fn slo_panels_follow_the_slo_file() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let panel = |title: &str| {
        dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"].as_str().unwrap().starts_with(title))
            .unwrap_or_else(|| panic!("no panel {title}"))
            .clone()
    };
    let percentiles = panel("True latency percentiles over the range");
    assert_eq!(
        percentiles["targets"][0]["metrics"][0]["field"],
        "latency_histogram"
    );
    let slo =
        sla_monitor::slo::spec::SloSpec::parse(&read("dashboards/slo/visits-latency.slo.yaml"))
            .unwrap();
    let budget = panel("Error budget left over the range");
    let script = budget["targets"][0]["metrics"][2]["settings"]["script"]
        .as_str()
        .unwrap()
        .to_string();
    let share = format!("{}", ((1.0 - slo.target) * 1e6).round() / 1e6);
    assert!(
        script.contains(&format!("({share} * params.total)")),
        "{script} must use the SLO's budget {share}"
    );
    assert!(budget["title"]
        .as_str()
        .unwrap()
        .contains(&format!("{} %", slo.target * 100.0)));

    // The burn-rate rules provisioned beside the SLA rule: generated from this SLO (a unit
    // test compares them byte for byte), on the provisioned data source, reading fields of
    // the mapping, judged against the monitor's documented default SLA.
    let raw = yaml(SLO_RULES);
    let sources = datasource::parse(&read(DATASOURCES)).unwrap();
    let rules = rule::load(&read(SLO_RULES)).unwrap();
    assert_eq!(rules.len(), slo.windows.len());
    assert_eq!(slo.threshold_ms() as f64, documented_sla_ms());
    for (r, spec) in rules
        .iter()
        .zip(raw["groups"][0]["rules"].as_array().unwrap())
    {
        assert!(
            r.uid.len() <= 40,
            "Grafana uids are at most 40 characters: {}",
            r.uid
        );
        assert_eq!(sources[&r.datasource_uid].kind, "elasticsearch");
        let model = &spec["data"][0]["model"];
        for metric in model["metrics"].as_array().unwrap() {
            if matches!(metric["type"].as_str(), Some("sum")) {
                let field = metric["field"].as_str().unwrap();
                assert!(index_fields().contains(field), "{} reads {field}", r.title);
            }
        }
        assert!(spec["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("$values.B"));
    }
}

#[test]
fn alert_rule_is_complete_and_matches_the_documented_sla() {
    let raw = yaml(RULES);
    let spec = &raw["groups"][0]["rules"][0];
    assert_eq!(spec["title"], "SLA miss");
    assert_eq!(spec["for"], "2m");
    assert_eq!(spec["labels"]["severity"], "critical");
    let summary = spec["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("$values.B"),
        "the summary shows the value: {summary}"
    );
    assert!(spec["annotations"]["runbook"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    let sources = datasource::parse(&read(DATASOURCES)).unwrap();
    let rules = rule::load(&read(RULES)).unwrap();
    let r = &rules[0];
    assert_eq!(sources[&r.datasource_uid].kind, "elasticsearch");
    for field in es_fields(&spec["data"][0]["model"]) {
        assert!(
            index_fields().contains(&field),
            "query A uses {field}, not in the mapping"
        );
    }
    // Each pipeline is judged against its own SLA: the value is p99 minus the window's sla_ms
    // (what the monitor's --sla wrote), per job, and the threshold is 0.
    assert_eq!(
        r.threshold,
        sla_monitor::alerting::expressions::Threshold::Above(0.0)
    );
    let model = &spec["data"][0]["model"];
    assert_eq!(model["bucketAggs"][0]["type"], "terms");
    assert_eq!(model["bucketAggs"][0]["field"], "job");
    let script = model["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "bucket_script")
        .expect("a bucket_script");
    assert_eq!(script["settings"]["script"], "params.p99 - params.sla");
    assert!(
        documented_sla_ms() > 0.0,
        "the monitor documents its default SLA"
    );
}

#[test]
fn notifications_hold_no_secrets_and_route_to_existing_receivers() {
    let n = yaml(NOTIFICATIONS);
    let points = n["contactPoints"].as_array().unwrap();
    let names: BTreeSet<&str> = points.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let kinds: BTreeSet<&str> = points
        .iter()
        .flat_map(|p| p["receivers"].as_array().unwrap())
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains("email") && kinds.contains("webhook"),
        "{kinds:?}"
    );
    for receiver in points
        .iter()
        .flat_map(|p| p["receivers"].as_array().unwrap())
    {
        for (key, value) in receiver["settings"].as_object().unwrap() {
            if let Some(text) = value.as_str() {
                if ["addresses", "url", "password", "username"].contains(&key.as_str()) {
                    assert!(
                        text.starts_with("${"),
                        "{key} must come from the environment, found {text:?}"
                    );
                }
            }
        }
    }
    for policy in n["policies"].as_array().unwrap() {
        assert!(names.contains(policy["receiver"].as_str().unwrap()));
    }
}

/// The path of an installed command (CI installs what the tests use).
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (apt-get install {name})"))
}

fn tool(name: &str, args: &[&str], dir: &str) -> String {
    let out = Command::new(name)
        .args(args)
        .current_dir(repo(dir))
        .output()
        .unwrap_or_else(|e| {
            panic!("{name}: {e} (install it: apt-get install prometheus prometheus-alertmanager)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} {args:?} failed:\n{text}");
    text
}

#[test]
fn prometheus_rules_and_alertmanager_routing_are_valid_and_tested() {
    tool(
        "promtool",
        &["check", "config", "prometheus.yml"],
        "dashboards/prometheus",
    );
    tool(
        "promtool",
        &["test", "rules", "alert-rules.test.yml"],
        "dashboards/prometheus",
    );
    // The template renders, with the environment's receivers, into a config amtool accepts.
    let dir = tempfile::tempdir().unwrap();
    let rendered = render_alertmanager_config(dir.path(), &LOOPBACK_RECEIVERS).unwrap();
    let config = tool(
        "amtool",
        &["check-config", rendered.to_str().unwrap()],
        "dashboards/alertmanager",
    );
    assert!(config.contains("SUCCESS"), "{config}");
    let am: Value = serde_norway::from_str(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
    assert_eq!(am["global"]["smtp_smarthost"], "127.0.0.1:2525");
    assert_eq!(
        am["receivers"][0]["email_configs"][0]["to"],
        "oncall@localhost"
    );
    assert_eq!(
        am["route"]["group_wait"], "30s",
        "defaults where the template has them"
    );
    assert!(
        am["global"]["smtp_auth_password"].is_null(),
        "the SMTP password must come from a file"
    );
    assert!(am["global"]["smtp_auth_password_file"].as_str().is_some());
    // Nothing in the template is a real address: receivers come only from the environment.
    let template = read("dashboards/alertmanager/alertmanager.yml.tmpl");
    assert!(!template.contains("example.com") && !template.contains('@'));
    // The Docker image runs the renderer with busybox's sh and awk: same output.
    let busybox = dir.path().join("busybox-bin");
    std::fs::create_dir_all(&busybox).unwrap();
    for tool in ["sh", "awk", "mv", "rm"] {
        std::os::unix::fs::symlink(which("busybox"), busybox.join(tool)).unwrap();
    }
    let with_busybox = render_alertmanager_config_with(
        &busybox.join("sh"),
        busybox.as_os_str(),
        dir.path(),
        "busybox.yml",
        &LOOPBACK_RECEIVERS,
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(with_busybox).unwrap(),
        std::fs::read_to_string(&rendered).unwrap()
    );
    // Every severity a provisioned rule uses reaches its receivers: the burn-rate rules' page
    // and ticket reached no e-mail route before.
    for (severity, receivers) in [
        ("critical", "oncall-email,oncall-webhook"),
        ("page", "oncall-email,oncall-webhook"),
        ("warning", "oncall-webhook"),
        ("ticket", "oncall-webhook"),
    ] {
        let routed = tool(
            "amtool",
            &[
                "config",
                "routes",
                "test",
                "--config.file",
                rendered.to_str().unwrap(),
                &format!("severity={severity}"),
            ],
            "dashboards/alertmanager",
        );
        // stdout (the receivers) comes first, then amtool's warnings.
        let first = routed.lines().next().unwrap_or("").trim();
        assert_eq!(first, receivers, "severity={severity}: {routed}");
    }
    // A missing receiver setting is refused by name, and nothing is written.
    let error = render_alertmanager_config(dir.path(), &LOOPBACK_RECEIVERS[1..]).unwrap_err();
    assert!(error.contains("set SLA_SMTP_SMARTHOST"), "{error}");
}

#[test]
fn compose_stack_is_complete_and_loopback_only() {
    let compose = yaml("docker/docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    for wanted in [
        "kafka",
        "kafka-init",
        "elasticsearch",
        "grafana",
        "prometheus",
        "alertmanager",
        "alertmanager-2",
        "grafana-init",
        "generator",
        "synchronizer",
        "monitor",
        "monitor-2",
    ] {
        assert!(services.contains_key(wanted), "missing service {wanted}");
    }
    // The two monitor replicas are instances of one monitor: same group, same job, same image.
    let (first, second) = (&services["monitor"], &services["monitor-2"]);
    assert_eq!(first["environment"], second["environment"]);
    assert_eq!(first["entrypoint"], second["entrypoint"]);
    assert_eq!(first["environment"]["SLA_MONITOR_GROUP"], "sla-monitor");
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            assert!(
                port.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond loopback"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            // Short syntax `source:target[:mode]`, or the long syntax's `source`.
            let source = match volume.as_str() {
                Some(short) => short.split(':').next().unwrap(),
                None => volume["source"].as_str().unwrap(),
            };
            if source.starts_with("../") {
                assert!(
                    repo("docker").join(source).exists(),
                    "{name} mounts missing {source}"
                );
            }
        }
    }
    // The Alertmanager HA pair: both replicas render the template and peer with each other.
    for replica in ["alertmanager", "alertmanager-2"] {
        let command = services[replica]["command"][0].as_str().unwrap();
        assert!(
            command.contains("render-config.sh")
                && command.contains("--cluster.peer=alertmanager:9094")
                && command.contains("--cluster.peer=alertmanager-2:9094"),
            "{replica}: {command}"
        );
    }
    assert_eq!(
        services["alertmanager-2"]["environment"], services["alertmanager"]["environment"],
        "the replicas render the same routing"
    );
    // Grafana sends its alerts to both replicas, and only to them.
    let sources = yaml(DATASOURCES);
    let alertmanagers: Vec<&str> = sources["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "alertmanager")
        .inspect(|d| assert_eq!(d["jsonData"]["handleGrafanaManagedAlerts"], true))
        .map(|d| d["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        alertmanagers,
        ["http://alertmanager:9093", "http://alertmanager-2:9093"]
    );
    let choice = services["grafana-init"]["command"][0].as_str().unwrap();
    assert!(
        choice.contains(r#"{"alertmanagersChoice":"external"}"#),
        "{choice}"
    );
    let prometheus = yaml("dashboards/prometheus/prometheus.yml");
    assert_eq!(
        prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"],
        serde_json::json!(["alertmanager:9093", "alertmanager-2:9093"])
    );
    let init = compose["services"]["kafka-init"]["command"][0]
        .as_str()
        .unwrap();
    assert!(
        init.contains("--topic reduced_visits")
            && init.contains("message.timestamp.type=LogAppendTime"),
        "{init}"
    );
    assert_eq!(
        compose["services"]["kafka"]["image"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("apache/kafka")
    );
    assert!(
        compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
            .as_str()
            .unwrap()
            .contains("controller"),
        "KRaft mode"
    );
    for job in ["generator", "synchronizer", "monitor", "monitor-2"] {
        assert_eq!(
            compose["services"][job]["build"]["dockerfile"],
            "docker/Dockerfile"
        );
    }
    // Services that build must not share an image name: Compose builds them in parallel and
    // the second tag fails ("image already exists").
    let mut built_images = BTreeSet::new();
    for (name, service) in services {
        if service.get("build").is_some() {
            let image = service["image"].as_str().unwrap_or(name).to_string();
            assert!(
                built_images.insert(image.clone()),
                "{name} builds image {image} like another service"
            );
        }
    }
    // Every long-running service comes back after a crash or a host restart; one-shots do not.
    for (name, service) in services {
        let restart = service["restart"].as_str();
        if ["kafka-init", "grafana-init"].contains(&name.as_str()) {
            assert_ne!(restart, Some("unless-stopped"), "{name} is a one-shot");
        } else {
            assert_eq!(
                restart,
                Some("unless-stopped"),
                "{name} has no restart policy"
            );
        }
    }
    // No host port is published twice, nor the alerts evaluator's default (127.0.0.1:9103).
    let mut host_ports = BTreeSet::new();
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let host = port
                .as_str()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .0
                .to_string();
            assert_ne!(
                host, "127.0.0.1:9103",
                "{name} takes the alerts evaluator's port"
            );
            assert!(
                host_ports.insert(host.clone()),
                "{name} publishes {host} twice"
            );
        }
    }
    // Notifications work out of the box: the Alertmanagers' default SMTP server is a service
    // of the stack (mailpit), not a placeholder that fails every e-mail.
    let smarthost = services["alertmanager"]["environment"]["SLA_SMTP_SMARTHOST"]
        .as_str()
        .unwrap();
    let default_host = smarthost
        .split_once(":-")
        .map(|(_, default)| default.trim_end_matches('}'))
        .expect("a default SMTP server");
    let default_service = default_host.split(':').next().unwrap();
    assert!(
        services.contains_key(default_service),
        "the default SMTP server {default_host} is not a service of the stack"
    );
    let example = read("docker/.env.example");
    assert!(
        !example.contains("example.com:"),
        ".env.example points a server at a placeholder host"
    );
    // The secret file is mounted so that a missing one is an error, not an empty directory.
    let secret = compose["services"]["alertmanager"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["target"] == "/etc/alertmanager/secrets/smtp_password")
        .expect("the SMTP password mount");
    assert_eq!(secret["bind"]["create_host_path"], false);
    assert_eq!(secret["read_only"], true);
    // The synchronizer listens beyond its container's loopback: PUT /delay needs a token, read
    // from a file outside the repo, mounted the same way.
    let synchronizer = &compose["services"]["synchronizer"];
    let token_path = synchronizer["environment"]["SLA_CONTROL_TOKEN_FILE"]
        .as_str()
        .expect("the synchronizer's control token file");
    let token = synchronizer["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["target"] == token_path)
        .expect("the control token mount");
    assert_eq!(token["bind"]["create_host_path"], false);
    assert_eq!(token["read_only"], true);
    assert!(token["source"]
        .as_str()
        .unwrap()
        .contains("${SLA_CONTROL_TOKEN_FILE:-./secrets/control_token}"));
    for job in ["generator", "synchronizer", "monitor", "monitor-2"] {
        let grace = compose["services"][job]["stop_grace_period"]
            .as_str()
            .unwrap();
        assert!(
            humantime::parse_duration(grace).unwrap() > std::time::Duration::from_secs(30),
            "{job}: stop_grace_period {grace} must exceed the 30 s drain timeout"
        );
    }
    let ignored = read(".dockerignore");
    for pattern in ["target/", ".git/", "docker/.env", "docker/secrets/"] {
        assert!(
            ignored.lines().any(|l| l.trim() == pattern),
            ".dockerignore lacks {pattern}"
        );
    }
    let grafana_env = &compose["services"]["grafana"]["environment"];
    assert!(
        grafana_env["GF_SECURITY_ADMIN_PASSWORD"]
            .as_str()
            .unwrap()
            .starts_with("${"),
        "no password in the repo"
    );
    let dockerfile = read("docker/Dockerfile");
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(
        !user.contains("root") && !user.contains(" 0"),
        "runs as non-root: {user}"
    );
    // The toolchain is pinned to a release (a floating `rust:1` changes compilers silently) and
    // the build keeps its registry and target directory in cache mounts.
    let from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a Rust build stage");
    let version = from["FROM rust:".len()..].split('-').next().unwrap();
    assert_eq!(version.split('.').count(), 3, "pinned to a release: {from}");
    for cache in ["target=/usr/local/cargo/registry", "target=/src/target"] {
        assert!(
            dockerfile.contains(&format!("--mount=type=cache,{cache}")),
            "{cache}"
        );
    }
    // Every monitor authenticates its internal records with a key mounted from outside the
    // repo, the same way as the control token.
    for (name, service) in services {
        if service["entrypoint"][0] != "/usr/local/bin/monitor" {
            continue;
        }
        let key_path = service["environment"]["SLA_INTERNAL_KEY_FILE"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no SLA_INTERNAL_KEY_FILE"));
        let key = service["volumes"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no volumes"))
            .iter()
            .find(|v| v["target"] == key_path)
            .unwrap_or_else(|| panic!("{name}: the internal key is not mounted"));
        assert_eq!(key["bind"]["create_host_path"], false, "{name}");
        assert_eq!(key["read_only"], true, "{name}");
    }
    // Prometheus scrapes every job service (the second pipeline's monitor by DNS: it runs only
    // with its profile).
    let prometheus = read("dashboards/prometheus/prometheus.yml");
    for (name, service) in services {
        if service["entrypoint"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("/usr/local/bin/"))
        {
            assert!(
                prometheus.contains(&format!("\"{name}:"))
                    || prometheus.contains(&format!("[\"{name}\"]")),
                "Prometheus does not scrape {name}"
            );
        }
    }
}

#[test]
fn secured_kafka_override_keeps_client_secrets_outside_the_repo() {
    let compose = yaml("docker/secured-kafka.yml");
    // Every service of the stack that talks to Kafka (the jobs) is covered by the override.
    let base = yaml("docker/docker-compose.yml");
    let jobs: Vec<String> = base["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| {
            s["entrypoint"][0]
                .as_str()
                .is_some_and(|e| e.starts_with("/usr/local/bin/"))
        })
        .map(|(name, _)| name.clone())
        .collect();
    assert!(jobs.len() >= 5, "{jobs:?}");
    for job in &jobs {
        let job = job.as_str();
        let service = &compose["services"][job];
        let env = &service["environment"];
        assert!(
            service["user"].as_str().unwrap().starts_with("${SLA_UID:?"),
            "{job}: runs as the owner of the private secrets directory"
        );
        assert!(
            env["SLA_REPLICATION_FACTOR"]
                .as_str()
                .unwrap()
                .starts_with("${SLA_REPLICATION_FACTOR"),
            "{job}: the replication factor of created topics is the user's"
        );
        assert!(
            env["SLA_BROKERS"]
                .as_str()
                .unwrap()
                .starts_with("${SLA_BROKERS:?"),
            "{job}: brokers come from the environment"
        );
        let config = env["SLA_KAFKA_CONFIG"].as_str().unwrap();
        assert!(
            config.starts_with("/etc/sla-monitor/kafka/"),
            "{job}: {config}"
        );
        let volume = service["volumes"][0].as_str().unwrap();
        assert!(
            volume.starts_with("${SLA_KAFKA_SECRETS_DIR:?")
                && volume.ends_with(":/etc/sla-monitor/kafka:ro"),
            "{job}: secrets mounted read-only from outside the repo: {volume}"
        );
    }
    // The documented `up` starts every service of the stack but the local broker (and the
    // generator, which writes test data).
    let text = read("docker/secured-kafka.yml");
    let command: String = text
        .lines()
        .skip_while(|l| !l.contains("up -d --build"))
        .take_while(|l| l.trim_end().ends_with('\\') || l.contains("up -d --build"))
        .chain(
            text.lines()
                .skip_while(|l| !l.contains("up -d --build"))
                .skip_while(|l| l.trim_end().ends_with('\\'))
                .take(1),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let started: BTreeSet<&str> = command
        .split_whitespace()
        .skip_while(|w| *w != "--build")
        .skip(1)
        .filter(|w| *w != "\\" && *w != "#")
        .collect();
    let base = yaml("docker/docker-compose.yml");
    for (service, spec) in base["services"].as_object().unwrap() {
        // Services behind a profile (the second pipeline's monitor) are started on request.
        if spec["profiles"].is_null()
            && !["kafka", "kafka-init", "generator"].contains(&service.as_str())
        {
            assert!(
                started.contains(service.as_str()),
                "the secured overlay's `up` leaves out {service}: {command}"
            );
        }
    }
    let template = repo("docker/kafka-client.properties.example");
    let properties = sla_monitor::kafka::properties::PropertiesFile::read(&template)
        .unwrap_or_else(|e| panic!("the template must be valid librdkafka properties: {e}"));
    let password = properties
        .properties
        .iter()
        .find(|(key, _)| key == "sasl.password")
        .map(|(_, value)| value.as_str());
    assert_eq!(password, Some("CHANGE-ME"), "a placeholder, never a secret");
}

/// The rule's query A against real monitor output: one-minute windows, the middle ones with a
/// 10 s delay. Evaluated at the end of each window, C holds exactly for the delayed ones.
#[tokio::test(flavor = "multi_thread")]
async fn alert_query_crosses_the_threshold_exactly_when_the_delay_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let reduced = unique("alertq_r");
    create_topic(&reduced, 2).await;
    let minute = 60_000;
    let base = (now_ms() - 30 * minute) / minute * minute;
    let delayed = |w: i64| (4..8).contains(&w);
    let mut records = Vec::new();
    for w in 0..12 {
        for p in 0..2 {
            for j in 0..20 {
                let t = base + w * minute + j * 2_900;
                let latency = if delayed(w) {
                    10_000 + j * 7
                } else {
                    40 + j * 11
                };
                records.push(record(p, t, latency, &format!("w{w}p{p}j{j}")));
            }
        }
    }
    produce(&reduced, &records).await;
    let index = test_index("alertq");
    let topics = MonitorTopics {
        reduced: reduced.clone(),
        dlq: unique("alertq_d"),
        checkpoints: unique("alertq_c"),
        shuffle: unique("alertq_s"),
    };
    // The user's default 1-minute windows, over records produced before it starts.
    let job = MonitorArgs::bare(&topics, &unique("alertq_g"))
        .elasticsearch(&index)
        .set("--idle-timeout", "1s")
        .start(dir.path());
    wait_for_es_documents(&index, 12, Duration::from_secs(60)).await;
    assert!(job.terminate(Duration::from_secs(30)).success());

    let rules = rule::load(&read(RULES)).unwrap();
    let r = &rules[0];
    let url = es_url().parse().unwrap();
    let client = elasticsearch::Elasticsearch::new(
        elasticsearch::http::transport::TransportBuilder::new(
            elasticsearch::http::transport::SingleNodeConnectionPool::new(url),
        )
        .build()
        .unwrap(),
    );
    for w in 0..12 {
        // An evaluation at a time when window w is the newest document (documents carry their
        // window's start as @timestamp).
        let at = base + w * minute + 30_000;
        let results = r.evaluate(&client, &index, at).await;
        // One instance: the one pipeline's, labelled with its job.
        let [(labels, Evaluation::Value { value, met })] = results.as_slice() else {
            panic!("window {w}: {results:?}");
        };
        assert_eq!(labels["job"], "visits-synchronizer");
        assert_eq!(*met, delayed(w), "window {w}: B = {value}");
        // B is p99 minus the window's own SLA (the monitor's default 5 s).
        if delayed(w) {
            assert!(
                *value >= 10_000.0 - 5_000.0,
                "window {w}: p99 - SLA {value}"
            );
        } else {
            assert!(*value < -4_000.0, "window {w}: p99 - SLA {value}");
        }
    }
    // Long after the last window, the 10-minute range holds no document: one NoData for the
    // whole rule.
    let results = r.evaluate(&client, &index, base + 40 * minute).await;
    assert!(
        matches!(results.as_slice(), [(labels, Evaluation::NoData)] if labels.is_empty()),
        "{results:?}"
    );
}

#[test]
fn records_missing_rule_reads_the_completeness_documents_per_pipeline() {
    let raw = yaml(COMPLETENESS_RULES);
    let rules = rule::load(&read(COMPLETENESS_RULES)).unwrap();
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(r.uid, "sla-records-missing");
    let sources = datasource::parse(&read(DATASOURCES)).unwrap();
    let source = &sources[&r.datasource_uid];
    assert_eq!(source.kind, "elasticsearch");
    // The data source is the index a monitor with --source-topic writes beside the windows.
    let windows = &sources["sla-elasticsearch"];
    assert_eq!(
        source.index().map(String::from),
        windows
            .index()
            .map(sla_monitor::sink::elasticsearch::completeness_index_of)
    );
    let spec = &raw["groups"][0]["rules"][0];
    let model = &spec["data"][0]["model"];
    let fields: std::collections::BTreeSet<String> =
        sla_monitor::sink::elasticsearch::mapping::completeness_properties()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    for metric in model["metrics"].as_array().unwrap() {
        let field = metric["field"].as_str().unwrap();
        assert!(fields.contains(field), "the rule reads {field}");
    }
    // One instance per pipeline, judged on records missing past the SLA (overdue + lost).
    assert_eq!(model["bucketAggs"][0]["type"], "terms");
    assert_eq!(model["bucketAggs"][0]["field"], "job");
    assert_eq!(model["metrics"][0]["field"], "missing");
    assert!(spec["annotations"]["runbook"]
        .as_str()
        .unwrap()
        .contains("Runbook: Records missing"));
    // In the Docker stack the monitors write completeness documents for the rule to read.
    let compose = read("docker/docker-compose.yml");
    assert!(compose.contains("SLA_SOURCE_TOPIC: visits"));
}

const DIMENSION_RULES: &str = "dashboards/grafana/provisioning/alerting/dimension-alert-rules.yaml";

#[test]
fn per_value_rule_reads_the_dimension_documents_per_pipeline_and_value() {
    let raw = yaml(DIMENSION_RULES);
    let rules = rule::load(&read(DIMENSION_RULES)).unwrap();
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(r.uid, "sla-miss-per-value");
    let sources = datasource::parse(&read(DATASOURCES)).unwrap();
    let source = &sources[&r.datasource_uid];
    // The data source is the index a monitor with --dimension writes beside the windows.
    assert_eq!(
        source.index().map(String::from),
        sources["sla-elasticsearch"]
            .index()
            .map(sla_monitor::sink::elasticsearch::values_index_of)
    );
    let model = &raw["groups"][0]["rules"][0]["data"][0]["model"];
    let mapped = sla_monitor::sink::elasticsearch::mapping::values_properties(
        &[0.5, 0.75, 0.9, 0.99],
        &["tenant".to_string()],
    );
    for field in es_fields(model) {
        let known = match field.split_once('.') {
            Some((object, inner)) => mapped[object]["properties"].get(inner).is_some(),
            None => mapped.get(&field).is_some(),
        };
        assert!(known, "the rule reads {field}, which the mapping lacks");
    }
    // One instance per (job, value), each judged against its own sla_ms.
    let fields: Vec<&str> = r.query.group_by.iter().map(|t| t.field.as_str()).collect();
    assert_eq!(fields, ["job", "dimensions.tenant"]);
    assert!(r.query.group_by.iter().all(|t| t.order == "asc"));
    assert!(read(DIMENSION_RULES).contains("at most 500 jobs × 200 values"));
}
