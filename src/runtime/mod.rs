//! What every job runs on: its command line (secrets refused as flags, bounded durations),
//! logging and metrics, the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`) and its bounded
//! server, graceful
//! shutdown, the retry schedule, rate-limited logs, redaction of credentials, and error
//! reporting to a Sentry-protocol server.

pub mod backoff;
pub mod cli;
pub mod error_reporting;
pub mod http;
pub mod http_server;
pub mod rate_limited_log;
pub mod redact;
pub mod shutdown;
pub mod telemetry;
