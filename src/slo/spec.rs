//! The SLO file: a latency objective for one monitored pipeline, in OpenSLO's shape where it
//! fits (`apiVersion`, `kind: SLO`, `metadata.name`, `spec.service`, `spec.timeWindow`,
//! `spec.objectives[].target`), with the indicator (the monitor's job and SLA) and the
//! burn-rate alerting as sla-monitor fields. [`SloSpec::parse`] refuses what cannot work, with
//! the reason (`alerts slo validate`).

use serde::Deserialize;
use std::time::Duration;

/// One burn-rate alert: fires when both windows burn the budget faster than `burn_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnWindow {
    /// `page` or `ticket` (the `severity` label).
    pub severity: String,
    /// The long window (e.g. 1 h).
    pub long: Duration,
    /// The short window (e.g. 5 m), which makes the alert reset soon after the burn stops.
    pub short: Duration,
    /// How many times faster than sustainable (e.g. 14.4).
    pub burn_rate: f64,
}

/// A checked SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    /// `metadata.name`: the rules' uids and the `slo` label derive from it.
    pub name: String,
    /// `metadata.displayName` or the name: the rules' titles start with it.
    pub display_name: String,
    /// `spec.service`.
    pub service: String,
    /// `spec.description`.
    pub description: String,
    /// The monitored pipeline: the monitor's `--job-name`.
    pub job: String,
    /// The latency threshold: the monitor's `--sla` (window documents judged against another
    /// SLA are not counted).
    pub threshold: Duration,
    /// The objective: the share of records within the threshold (0–1, e.g. 0.995).
    pub target: f64,
    /// The SLO's time window (e.g. 28 days, rolling).
    pub time_window: Duration,
    /// No page when the short window holds fewer records than this.
    pub minimum_records: u64,
    /// The histogram bucket the rules sum windows in: the monitor's window length.
    pub resolution: Duration,
    /// How often Grafana evaluates the rules.
    pub interval: Duration,
    /// The burn-rate alerts.
    pub windows: Vec<BurnWindow>,
    /// The Grafana folder of the rules.
    pub folder: String,
    /// The data source uid the rules query.
    pub datasource_uid: String,
    /// `spec.indicator.dimension`: one SLO per value of this dimension (a monitor's
    /// `--dimension NAME=…`), read from the value documents; `None` for the whole pipeline.
    pub dimension: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    service: String,
    #[serde(default)]
    description: String,
    indicator: Indicator,
    time_window: Vec<TimeWindow>,
    budgeting_method: Option<String>,
    objectives: Vec<Objective>,
    #[serde(default)]
    alerting: Alerting,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Indicator {
    job: String,
    threshold: String,
    #[serde(default)]
    dimension: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TimeWindow {
    duration: String,
    #[serde(default = "yes")]
    is_rolling: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Objective {
    target: f64,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Alerting {
    #[serde(default = "default_minimum")]
    minimum_records: u64,
    #[serde(default = "default_resolution")]
    resolution: String,
    #[serde(default = "default_interval")]
    interval: String,
    #[serde(default = "default_folder")]
    folder: String,
    #[serde(default)]
    datasource_uid: Option<String>,
    #[serde(default)]
    windows: Option<Vec<WindowSpec>>,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            minimum_records: default_minimum(),
            resolution: default_resolution(),
            interval: default_interval(),
            folder: default_folder(),
            datasource_uid: None,
            windows: None,
        }
    }
}

fn default_minimum() -> u64 {
    100
}
fn default_resolution() -> String {
    "1m".into()
}
fn default_interval() -> String {
    "1m".into()
}
fn default_folder() -> String {
    "slo".into()
}
/// The data source of whole-window documents (the provisioned `sla-elasticsearch`).
pub const WINDOWS_DATASOURCE: &str = "sla-elasticsearch";
/// The data source of dimension value documents (the provisioned `sla-dimensions`).
pub const VALUES_DATASOURCE: &str = "sla-dimensions";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WindowSpec {
    severity: String,
    long: String,
    short: String,
    burn_rate: f64,
}

/// The SRE workbook's multi-window, multi-burn-rate alerts (table 5-8) for a 30-day window:
/// page at 2 % of the budget in 1 h (14.4×, checked over 5 m too) and 5 % in 6 h (6×, 30 m);
/// ticket at 10 % in 3 days (1×, 6 h).
pub fn workbook_windows() -> Vec<BurnWindow> {
    let w = |severity: &str, long: u64, short: u64, burn_rate: f64| BurnWindow {
        severity: severity.into(),
        long: Duration::from_secs(long),
        short: Duration::from_secs(short),
        burn_rate,
    };
    vec![
        w("page", 3_600, 300, 14.4),
        w("page", 6 * 3_600, 1_800, 6.0),
        w("ticket", 3 * 86_400, 6 * 3_600, 1.0),
    ]
}

/// Why an SLO file is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct SloError(pub String);

fn parse_duration(text: &str, what: &str) -> Result<Duration, SloError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        SloError(format!(
            "{what} {text:?} is not a duration (like 5s, 1h, 28d): {e}"
        ))
    })?;
    if d.is_zero() {
        return Err(SloError(format!("{what} must be longer than zero")));
    }
    Ok(d)
}

fn whole_multiple(d: Duration, of: Duration) -> bool {
    d.as_millis() % of.as_millis() == 0
}

impl SloSpec {
    /// Reads and checks an SLO file.
    pub fn parse(yaml: &str) -> Result<SloSpec, SloError> {
        let file: File =
            serde_norway::from_str(yaml).map_err(|e| SloError(format!("not an SLO file: {e}")))?;
        if file.api_version != "openslo/v1" {
            return Err(SloError(format!(
                "apiVersion {:?}: write openslo/v1",
                file.api_version
            )));
        }
        if file.kind != "SLO" {
            return Err(SloError(format!("kind {:?}: write SLO", file.kind)));
        }
        let name = file.metadata.name;
        if name.is_empty()
            || name.len() > 30
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(SloError(format!(
                "metadata.name {name:?}: 1 to 30 lowercase letters, digits and '-' (rule uids derive from it)"
            )));
        }
        let spec = file.spec;
        if spec.indicator.job.trim().is_empty() {
            return Err(SloError(
                "spec.indicator.job is empty: name the monitor's --job-name".into(),
            ));
        }
        if spec
            .budgeting_method
            .as_deref()
            .is_some_and(|m| m != "Occurrences")
        {
            return Err(SloError(
                "spec.budgetingMethod: only Occurrences (records within the threshold ÷ records) is supported".into(),
            ));
        }
        if let Some(name) = &spec.indicator.dimension {
            if !crate::dimension::spec::is_dimension_name(name) {
                return Err(SloError(format!(
                    "spec.indicator.dimension {name:?}: the NAME of the monitor's --dimension \
                     NAME=… (letters, digits, '_' and '-', starting with a letter)"
                )));
            }
        }
        let threshold = parse_duration(&spec.indicator.threshold, "spec.indicator.threshold")?;
        if threshold.subsec_micros() % 1_000 != 0 {
            return Err(SloError(
                "spec.indicator.threshold: whole milliseconds (the monitor's --sla)".into(),
            ));
        }
        let [window] = spec.time_window.as_slice() else {
            return Err(SloError("spec.timeWindow: give exactly one window".into()));
        };
        if !window.is_rolling {
            return Err(SloError(
                "spec.timeWindow: only rolling windows are supported (isRolling: true)".into(),
            ));
        }
        let time_window = parse_duration(&window.duration, "spec.timeWindow.duration")?;
        let [objective] = spec.objectives.as_slice() else {
            return Err(SloError(
                "spec.objectives: give exactly one objective".into(),
            ));
        };
        let _ = &objective.display_name;
        let target = objective.target;
        if !(target > 0.0 && target < 1.0) {
            return Err(SloError(format!(
                "spec.objectives.target {target}: a share strictly between 0 and 1 (0.995 for 99.5 %)"
            )));
        }
        let alerting = spec.alerting;
        let resolution = parse_duration(&alerting.resolution, "spec.alerting.resolution")?;
        let interval = parse_duration(&alerting.interval, "spec.alerting.interval")?;
        if interval.subsec_nanos() != 0 {
            return Err(SloError(
                "spec.alerting.interval: whole seconds (Grafana's rule group interval)".into(),
            ));
        }
        let windows = match alerting.windows {
            None => workbook_windows(),
            Some(list) => list
                .into_iter()
                .map(|w| {
                    Ok(BurnWindow {
                        long: parse_duration(&w.long, "an alerting window's long")?,
                        short: parse_duration(&w.short, "an alerting window's short")?,
                        severity: w.severity,
                        burn_rate: w.burn_rate,
                    })
                })
                .collect::<Result<Vec<_>, SloError>>()?,
        };
        if windows.is_empty() {
            return Err(SloError("spec.alerting.windows is empty".into()));
        }
        for w in &windows {
            let name = format!(
                "the {} window {}/{}",
                w.severity,
                humantime::format_duration(w.long),
                humantime::format_duration(w.short)
            );
            if !matches!(w.severity.as_str(), "page" | "ticket") {
                return Err(SloError(format!(
                    "{name}: severity {:?} is not page or ticket",
                    w.severity
                )));
            }
            if w.short >= w.long {
                return Err(SloError(format!(
                    "{name}: the short window must be shorter than the long one"
                )));
            }
            if w.long > time_window {
                return Err(SloError(format!(
                    "{name}: the long window is longer than the SLO's time window"
                )));
            }
            if !(whole_multiple(w.long, resolution) && whole_multiple(w.short, resolution)) {
                return Err(SloError(format!(
                    "{name}: both windows must be whole multiples of spec.alerting.resolution ({})",
                    humantime::format_duration(resolution)
                )));
            }
            if !(w.burn_rate > 0.0 && w.burn_rate.is_finite()) {
                return Err(SloError(format!(
                    "{name}: burn rate {} must be positive",
                    w.burn_rate
                )));
            }
            // Burning `burn_rate` times the budget means an error ratio of burn_rate × (1 −
            // target); a ratio above 1 cannot happen, so the alert could never fire.
            if w.burn_rate * (1.0 - target) >= 1.0 {
                return Err(SloError(format!(
                    "{name}: a burn rate of {} needs more than 100 % of records over the \
                     threshold with target {target}: it can never fire (lower the burn rate or \
                     raise the target)",
                    w.burn_rate
                )));
            }
        }
        Ok(SloSpec {
            display_name: file.metadata.display_name.unwrap_or_else(|| name.clone()),
            name,
            service: spec.service,
            description: spec.description,
            job: spec.indicator.job,
            threshold,
            target,
            time_window,
            minimum_records: alerting.minimum_records,
            resolution,
            interval,
            windows,
            folder: alerting.folder,
            datasource_uid: alerting.datasource_uid.unwrap_or_else(|| {
                match spec.indicator.dimension {
                    Some(_) => VALUES_DATASOURCE,
                    None => WINDOWS_DATASOURCE,
                }
                .to_string()
            }),
            dimension: spec.indicator.dimension,
        })
    }

    /// The threshold in ms (the window documents' `sla_ms`).
    pub fn threshold_ms(&self) -> i64 {
        self.threshold.as_millis() as i64
    }

    /// Share of the budget an alert window consumes before it fires.
    pub fn budget_share(&self, window: &BurnWindow) -> f64 {
        window.burn_rate * window.long.as_secs_f64() / self.time_window.as_secs_f64()
    }

    /// What `alerts slo validate` says of a valid SLO read from `file`: the objective, then
    /// each burn-rate alert with its windows and the budget it uses before it fires.
    pub fn describe(&self, file: &str) -> String {
        let per_value = match &self.dimension {
            Some(name) => format!(", per value of {name}"),
            None => String::new(),
        };
        let mut out = format!(
            "{file}: valid — {} % of records of job {:?}{per_value} within {} ms over {}; {} burn-rate alerts\n",
            self.target * 100.0,
            self.job,
            self.threshold_ms(),
            short_duration(self.time_window),
            self.windows.len()
        );
        for w in &self.windows {
            out.push_str(&format!(
                "  {:<6} {} and {} above {}x ({:.1} % of the budget before it fires)\n",
                w.severity,
                short_duration(w.long),
                short_duration(w.short),
                w.burn_rate,
                100.0 * self.budget_share(w)
            ));
        }
        out
    }
}

/// A duration as SLO files write it: `30d`, `1h`, `5m`, `90s` as `1m 30s`, `250ms`.
pub fn short_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            parts.push(format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../dashboards/slo/visits-latency.slo.yaml");

    #[test]
    fn durations_read_as_slo_files_write_them() {
        assert_eq!(short_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(short_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(short_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(short_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(short_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn the_description_names_the_time_window_as_written() {
        let slo = SloSpec::parse(EXAMPLE).unwrap();
        let text = slo.describe("visits-latency.slo.yaml");
        assert!(!text.contains("days"), "{text}");
        assert!(
            text.starts_with("visits-latency.slo.yaml: valid — "),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + slo.windows.len());
    }

    #[test]
    fn the_example_is_valid_with_the_workbook_windows() {
        let slo = SloSpec::parse(EXAMPLE).unwrap();
        assert_eq!(slo.name, "visits-latency");
        assert_eq!(slo.threshold_ms(), 5_000);
        assert_eq!(slo.windows, workbook_windows());
        assert!((slo.budget_share(&slo.windows[0]) - 0.02).abs() < 1e-9);
        assert!((slo.budget_share(&slo.windows[2]) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn impossible_specs_are_refused_with_the_reason() {
        let cases = [
            ("target: 0.995", "target: 99.5", "strictly between 0 and 1"),
            ("threshold: 5s", "threshold: soon", "not a duration"),
            (
                "duration: 30d",
                "duration: 30m",
                "longer than the SLO's time window",
            ),
            ("kind: SLO", "kind: SLI", "write SLO"),
            ("name: visits-latency", "name: Visits Latency", "lowercase"),
            ("job: visits-synchronizer", "job: ''", "--job-name"),
            ("resolution: 1m", "resolution: 7m", "whole multiples"),
            ("minimumRecords: 100", "minimumRecrds: 100", "unknown field"),
            ("target: 0.995", "target: 0.9", "can never fire"),
        ];
        for (from, to, reason) in cases {
            assert!(EXAMPLE.contains(from), "{from}");
            let text = EXAMPLE.replace(from, to);
            let err = SloSpec::parse(&text).expect_err(to);
            assert!(err.0.contains(reason), "{to}: {err}");
        }
        let swapped = EXAMPLE.replace(
            "alerting:\n",
            "alerting:\n    windows:\n      - {severity: page, long: 5m, short: 1h, burnRate: 14.4}\n",
        );
        assert!(SloSpec::parse(&swapped)
            .unwrap_err()
            .0
            .contains("shorter than the long"));
    }
}
