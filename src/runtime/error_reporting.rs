//! Errors in one place: every job reports to Sentry, or any server that speaks its protocol
//! (a self-hosted Sentry, Bugsink), when given a DSN — fatal exits with their cause chain,
//! panics, errors and the warnings operators act on, each tagged (job, job name, topic,
//! partition, offset, window start, rejection reason, Kafka error code) and carrying the log
//! lines before it as breadcrumbs. Without a DSN nothing is sent and no thread is started.
//!
//! What leaves the process is scrubbed ([`crate::runtime::redact::scrub_text`]: URLs' userinfo,
//! passwords, tokens), dead letters never carry their record's text (only the reason and how
//! many), and identical events are rate-limited: at most one per kind per
//! [`EVENT_INTERVAL`], the next one saying how many were held back — a sink failing for
//! minutes is one issue with a count, not thousands of events.

use crate::runtime::redact::{scrub_text, Secret};
use anyhow::Context as _;
use sentry::protocol::{Breadcrumb, Context, Event, Level, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one event of a kind (level, logger, message with its numbers masked) per interval.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// Fields of log lines that become tags, so events can be filtered and grouped by them.
pub const TAG_FIELDS: [&str; 9] = [
    "records",
    "topic",
    "partition",
    "offset",
    "window_start",
    "reason",
    "kafka_error",
    "suppressed",
    "instance",
];

/// Where errors are reported (the flags every job takes).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ErrorReportingArgs {
    /// Sentry DSN to report errors, fatal exits, panics and actionable warnings to (sentry.io, a
    /// self-hosted Sentry, or a Sentry-compatible server such as Bugsink). Nothing is sent, and
    /// no thread runs, without one. Environment only (refused as a flag).
    #[arg(long, env = "SENTRY_DSN", hide = true, hide_env_values = true)]
    pub sentry_dsn: Option<Secret>,

    /// File holding the DSN, instead of --sentry-dsn.
    #[arg(long, env = "SENTRY_DSN_FILE", conflicts_with = "sentry_dsn")]
    pub sentry_dsn_file: Option<PathBuf>,

    /// Environment reported with every event (production, staging, …).
    #[arg(long, env = "SENTRY_ENVIRONMENT", default_value = "production")]
    pub sentry_environment: String,

    /// Release reported with every event (default sla-monitor@VERSION).
    #[arg(long, env = "SENTRY_RELEASE")]
    pub sentry_release: Option<String>,
}

impl ErrorReportingArgs {
    /// The DSN, from the flag or the file; `None` when neither is given.
    pub fn dsn(&self) -> anyhow::Result<Option<sentry::types::Dsn>> {
        let text = match (&self.sentry_dsn, &self.sentry_dsn_file) {
            (Some(dsn), _) => dsn.expose().trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("--sentry-dsn-file {}: cannot read it", path.display()))?
                .trim()
                .to_string(),
            (None, None) => return Ok(None),
        };
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "the Sentry DSN is not valid ({e}): it looks like https://KEY@HOST/PROJECT_ID"
            )
        })
    }
}

/// Error reporting of a running job; dropping it sends what is queued (at most 2 s).
pub struct ErrorReporting {
    guard: Option<sentry::ClientInitGuard>,
}

impl ErrorReporting {
    /// Whether events are sent (a DSN was given).
    pub fn enabled(&self) -> bool {
        self.guard.is_some()
    }

    /// Tags every later event with `key=value` (e.g. the monitored pipeline's job name).
    pub fn tag(&self, key: &str, value: &str) {
        if self.enabled() {
            sentry::configure_scope(|scope| scope.set_tag(key, value));
        }
    }

    /// Reports the error that ends the job, with its cause chain, as fatal.
    pub fn fatal(&self, error: &anyhow::Error) {
        if !self.enabled() {
            return;
        }
        let mut event = sentry::integrations::anyhow::event_from_error(error);
        event.level = Level::Fatal;
        sentry::capture_event(event);
    }
}

/// Starts error reporting for `job` (when `args` name a DSN) and then logging, which sends
/// breadcrumbs and events when reporting is on: the first thing every job does.
pub fn start(args: &ErrorReportingArgs, job: &'static str) -> anyhow::Result<ErrorReporting> {
    let reporting = init(args, job);
    crate::runtime::telemetry::init_logging(reporting.as_ref().is_ok_and(ErrorReporting::enabled));
    reporting
}

impl ErrorReporting {
    /// The job's outcome, its error reported as fatal first.
    pub fn outcome<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Err(e) = &result {
            self.fatal(e);
        }
        result
    }
}

/// Starts error reporting for `job` when `args` name a DSN (panics included); call before the
/// logging set-up, which adds breadcrumbs and events when this is enabled.
pub fn init(args: &ErrorReportingArgs, job: &'static str) -> anyhow::Result<ErrorReporting> {
    let Some(dsn) = args.dsn()? else {
        return Ok(ErrorReporting { guard: None });
    };
    let limiter = Arc::new(RateLimiter::new(EVENT_INTERVAL));
    let options = {
        let mut o = sentry::ClientOptions::default();
        o.dsn = Some(dsn);
        o.environment = Some(Cow::Owned(args.sentry_environment.clone()));
        o.release =
            Some(Cow::Owned(args.sentry_release.clone().unwrap_or_else(
                || format!("sla-monitor@{}", env!("CARGO_PKG_VERSION")),
            )));
        o.send_default_pii = false;
        o.max_breadcrumbs = 50;
        o.before_send = Some(Arc::new(move |event| {
            prepare(event, &limiter, Instant::now())
        }));
        o.before_breadcrumb = Some(Arc::new(|crumb| Some(prepare_breadcrumb(crumb))));
        o
    };
    let guard = sentry::init(options);
    sentry::configure_scope(|scope| scope.set_tag("job", job));
    Ok(ErrorReporting { guard: Some(guard) })
}

/// What is done to every event before it is sent: dead letters lose their record's text,
/// known fields become tags, everything is scrubbed, and repeats are held back.
fn prepare(
    mut event: Event<'static>,
    limiter: &RateLimiter,
    now: Instant,
) -> Option<Event<'static>> {
    let fields = match event.contexts.get("Rust Tracing Fields") {
        Some(Context::Other(map)) => map.clone(),
        _ => Default::default(),
    };
    for key in TAG_FIELDS {
        if let Some(value) = fields.get(key) {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            event.tags.insert(key.to_string(), text);
        }
    }
    let module = match event.contexts.get("Rust Tracing Location") {
        Some(Context::Other(map)) => map
            .get("module_path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    };
    // A dead-letter line stands for itself and the lines of its reason it held back (or, the
    // last one before a stop, for the records it names).
    let dead_letter = module.ends_with("dead_letter");
    let count = |tag: &str| event.tags.get(tag).and_then(|s| s.parse::<u64>().ok());
    let (named, suppressed) = (count("records"), count("suppressed"));
    let weight = match (dead_letter, named, suppressed) {
        (false, ..) => 1,
        (true, Some(records), _) => records,
        (true, None, suppressed) => 1 + suppressed.unwrap_or(0),
    };
    if dead_letter {
        // A refused record's detail may quote its payload: only the reason and the count go.
        let reason = event.tags.get("reason").cloned().unwrap_or_default();
        event.message = Some(format!("records refused and dead-lettered: {reason}"));
        event.exception.values.clear();
        event.tags.remove("suppressed");
        event.tags.remove("offset");
    }
    // Whatever else a log line held stays on this machine.
    event.contexts.remove("Rust Tracing Fields");
    event.extra.clear();
    event.message = event.message.map(|m| scrub_text(&m));
    for exception in event.exception.values.iter_mut() {
        exception.value = exception.value.take().map(|v| scrub_text(&v));
    }
    for crumb in event.breadcrumbs.values.iter_mut() {
        crumb.message = crumb.message.take().map(|m| scrub_text(&m));
    }
    let always = event.level == Level::Fatal
        || event
            .exception
            .values
            .iter()
            .any(|e| e.mechanism.as_ref().is_some_and(|m| m.ty == "panic"));
    if always {
        return Some(event);
    }
    let kind = event_kind(&event, &module);
    // Repeats are one issue, whatever numbers their text carries.
    event.fingerprint = Cow::Owned(vec![Cow::Owned(kind.clone())]);
    // The last dead-letter line before a stop always goes: nothing would carry its count later.
    let held_back = if dead_letter && named.is_some() {
        limiter.admit_now(kind, now)
    } else {
        limiter.admit(kind, now, weight)?
    };
    if dead_letter {
        // How many records of this reason since the last event about it.
        event
            .tags
            .insert("records".into(), (weight + held_back).to_string());
    } else if held_back > 0 {
        event
            .tags
            .insert("held_back_since_last".into(), held_back.to_string());
    }
    Some(event)
}

/// A log line as a breadcrumb: scrubbed, without its fields, and a dead letter's without the
/// record's text (its detail may quote the payload).
fn prepare_breadcrumb(mut crumb: Breadcrumb) -> Breadcrumb {
    let dead_letter = crumb
        .category
        .as_deref()
        .is_some_and(|c| c.ends_with("dead_letter"));
    crumb.message = if dead_letter {
        Some("a record was refused and dead-lettered".into())
    } else {
        crumb.message.map(|m| scrub_text(&m))
    };
    crumb.data.clear();
    crumb
}

/// What makes two events "the same" for rate limiting: level, where, and the text with its
/// numbers masked (offsets and counts differ between repeats).
fn event_kind(event: &Event<'_>, module: &str) -> String {
    let text = event
        .message
        .clone()
        .or_else(|| event.exception.values.last().and_then(|e| e.value.clone()))
        .unwrap_or_default();
    // Numbers with what sticks to them ("740.5ms", "1.9s", "127.0.0.1") become one `#`.
    let mut masked = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() && !in_number {
            in_number = true;
            masked.push('#');
        } else if in_number && (c.is_alphanumeric() || c == '.') {
        } else {
            in_number = false;
            masked.push(c);
        }
    }
    format!("{:?} {module} {masked}", event.level)
}

/// How many kinds of event the rate limiter keeps apart: kinds come from message text, which
/// records and servers can choose, so beyond this many (within one interval) the new ones
/// share one allowance (`OVERFLOW_KIND`) instead of growing the map without bound.
const MAX_KINDS: usize = 1_000;
const OVERFLOW_KIND: &str = "(more kinds of event than the rate limiter keeps apart)";

/// One event per kind per interval; counts what it held back (each event weighing, for dead
/// letters, the records it stands for). Keeps at most [`MAX_KINDS`] kinds apart.
struct RateLimiter {
    interval: Duration,
    kinds: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RateLimiter {
    fn new(interval: Duration) -> Self {
        RateLimiter {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(weight held back since the last one admitted)` when an event of `kind` may go at
    /// `now`; otherwise its `weight` is added to what is held back.
    fn admit(&self, kind: String, now: Instant, weight: u64) -> Option<u64> {
        let mut kinds = self.kinds.lock().expect("rate limiter lock");
        let kind = self.slot(&mut kinds, kind, now);
        match kinds.get_mut(&kind) {
            Some((last, held)) if now.duration_since(*last) < self.interval => {
                *held += weight;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }

    /// Admits an event of `kind` whatever the interval; returns the weight held back before it.
    fn admit_now(&self, kind: String, now: Instant) -> u64 {
        let mut kinds = self.kinds.lock().expect("rate limiter lock");
        let kind = self.slot(&mut kinds, kind, now);
        kinds.insert(kind, (now, 0)).map_or(0, |(_, held)| held)
    }

    /// The kind an event of `kind` is counted under: its own while there is room (kinds whose
    /// interval has passed with nothing held back are forgotten first: they would be admitted
    /// anyway), else [`OVERFLOW_KIND`].
    fn slot(
        &self,
        kinds: &mut HashMap<String, (Instant, u64)>,
        kind: String,
        now: Instant,
    ) -> String {
        if kinds.len() < MAX_KINDS || kinds.contains_key(&kind) {
            return kind;
        }
        kinds.retain(|_, (last, held)| now.duration_since(*last) < self.interval || *held > 0);
        if kinds.len() < MAX_KINDS {
            kind
        } else {
            OVERFLOW_KIND.to_string()
        }
    }

    #[cfg(test)]
    fn kinds_kept(&self) -> usize {
        self.kinds.lock().expect("rate limiter lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::protocol::{Exception, Map};

    /// A stream of distinct messages (attacker-chosen text) keeps the limiter's map bounded,
    /// and the kinds beyond its room share one allowance per interval.
    #[test]
    fn distinct_kinds_beyond_the_cap_share_one_allowance() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut admitted = 0;
        for i in 0..10_000 {
            if limiter.admit(format!("kind {i:x}y"), t0, 1).is_some() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, MAX_KINDS + 1);
        assert!(limiter.kinds_kept() <= MAX_KINDS + 1);
        // An interval later, new kinds get their own room again.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(limiter.admit("a new kind".into(), later, 1), Some(0));
        assert!(limiter.kinds_kept() <= MAX_KINDS + 1);
    }

    #[test]
    fn dead_letter_breadcrumbs_lose_the_record_text() {
        let crumb = prepare_breadcrumb(Breadcrumb {
            category: Some("sla_monitor::kafka::dead_letter".into()),
            message: Some(r#"record sent: "card 4111" is not a time"#.into()),
            ..Default::default()
        });
        assert!(!crumb.message.unwrap().contains("4111"));
    }

    fn log_event(message: &str, module: &str, fields: &[(&str, Value)]) -> Event<'static> {
        let mut event = Event {
            message: Some(message.to_string()),
            level: Level::Warning,
            ..Default::default()
        };
        let fields: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        event
            .contexts
            .insert("Rust Tracing Fields".into(), Context::Other(fields));
        let location: Map<String, Value> = [("module_path".to_string(), Value::from(module))]
            .into_iter()
            .collect();
        event
            .contexts
            .insert("Rust Tracing Location".into(), Context::Other(location));
        event
    }

    #[test]
    fn repeats_are_held_back_and_counted() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let sink_failed = |offset: u64| {
            log_event(
                &format!("writing 3 windows failed at offset {offset}: connection refused"),
                "sla_monitor::sink::driver",
                &[],
            )
        };
        assert!(prepare(sink_failed(1), &limiter, at(0)).is_some());
        for s in 1..50 {
            assert!(
                prepare(sink_failed(s), &limiter, at(s)).is_none(),
                "held back at {s} s"
            );
        }
        let next = prepare(sink_failed(99), &limiter, at(61)).unwrap();
        assert_eq!(next.tags["held_back_since_last"], "49");
        assert_eq!(next.fingerprint.len(), 1, "one issue for all repeats");
        let other = log_event("Kafka unreachable", "sla_monitor::kafka::context", &[]);
        assert!(
            prepare(other, &limiter, at(62)).is_some(),
            "another kind is not held back"
        );
    }

    #[test]
    fn dead_letters_send_the_reason_never_the_record() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        let event = log_event(
            r#"record of orders sent to orders_dlq: start time field:/meta/t: "card 4111-1111" is not a time"#,
            "sla_monitor::kafka::dead_letter",
            &[
                ("reason", Value::from("invalid_stamp")),
                ("partition", Value::from(3)),
                ("offset", Value::from(42)),
                ("suppressed", Value::from(17)),
            ],
        );
        let sent = prepare(event, &limiter, Instant::now()).unwrap();
        assert_eq!(
            sent.message.as_deref(),
            Some("records refused and dead-lettered: invalid_stamp")
        );
        assert_eq!(sent.tags["reason"], "invalid_stamp");
        assert_eq!(sent.tags["partition"], "3");
        assert_eq!(
            sent.tags["records"], "18",
            "itself and the 17 its log line held back"
        );
        // The next lines of that reason within the minute are counted into the next event.
        let again = || {
            log_event(
                "record of orders sent to orders_dlq: other text",
                "sla_monitor::kafka::dead_letter",
                &[
                    ("reason", Value::from("invalid_stamp")),
                    ("suppressed", Value::from(9)),
                ],
            )
        };
        let t0 = Instant::now();
        assert!(prepare(again(), &limiter, t0 + Duration::from_secs(10)).is_none());
        let later = prepare(again(), &limiter, t0 + Duration::from_secs(70)).unwrap();
        assert_eq!(later.tags["records"], "20", "10 held back + 10 now");
        // The job stops: its last line names what its log held back, and goes at once with
        // what the reports held back.
        assert!(prepare(again(), &limiter, t0 + Duration::from_secs(75)).is_none());
        let last = log_event(
            "4 more records of orders sent to orders_dlq (invalid_stamp) since the last line",
            "sla_monitor::kafka::dead_letter",
            &[
                ("reason", Value::from("invalid_stamp")),
                ("records", Value::from(4)),
            ],
        );
        let last = prepare(last, &limiter, t0 + Duration::from_secs(76)).unwrap();
        assert_eq!(last.tags["records"], "14", "10 held back + 4 named");
        let text = serde_json::to_string(&sent).unwrap();
        assert!(!text.contains("4111"), "{text}");
    }

    #[test]
    fn secrets_are_scrubbed_everywhere() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        let mut event = log_event(
            "Elasticsearch https://elastic:hunter2@es:9200 refused the credentials",
            "sla_monitor::sink::elasticsearch",
            &[("password", Value::from("hunter2"))],
        );
        event.exception.values.push(Exception {
            ty: "Error".into(),
            value: Some("sasl.password=hunter2 rejected".into()),
            ..Default::default()
        });
        event.breadcrumbs.values.push(Breadcrumb {
            message: Some("token: hunter2".into()),
            ..Default::default()
        });
        event.extra.insert("payload".into(), Value::from("hunter2"));
        let sent = prepare(event, &limiter, Instant::now()).unwrap();
        let text = serde_json::to_string(&sent).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn fatal_exits_and_panics_are_never_held_back() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..3 {
            let mut event = log_event("the monitor stopped", "sla_monitor", &[]);
            event.level = Level::Fatal;
            assert!(prepare(event, &limiter, now).is_some());
        }
    }

    #[test]
    fn a_dsn_comes_from_the_flag_or_a_file_and_is_checked() {
        let none = ErrorReportingArgs::default();
        assert!(none.dsn().unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dsn");
        std::fs::write(&file, "http://abc@127.0.0.1:9280/1\n").unwrap();
        let from_file = ErrorReportingArgs {
            sentry_dsn_file: Some(file),
            ..Default::default()
        };
        assert_eq!(from_file.dsn().unwrap().unwrap().project_id().value(), "1");
        let bad = ErrorReportingArgs {
            sentry_dsn: Some("not a dsn".into()),
            ..Default::default()
        };
        assert!(bad.dsn().unwrap_err().to_string().contains("KEY@HOST"));
    }
}
