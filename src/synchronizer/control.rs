//! Runtime control of the synchronizer's artificial faults over HTTP — its delay and its loss
//! switch — so a demo can switch an SLA miss or a loss on and off without restarting the job.
//!
//! - `GET /delay` returns the current policy as JSON (durations in milliseconds).
//! - `PUT /delay?delay=10s&jitter=500ms&mode=blocking` changes it; omitted fields keep their
//!   value. `partition=3` delays only input partition 3 (a held partition: its records wait,
//!   the others flow), `partition=all` every partition again. A delay or jitter above [`MAX_DELAY`](crate::synchronizer::delay::MAX_DELAY) and an unknown
//!   parameter (a typo such as `dealy`) are refused with 400 and the reason; nothing changes
//!   then.
//! - `GET /loss` returns the loss switch (`rate_ppm`, `seed`); `PUT /loss?rate=2%&seed=7`
//!   changes it (at most [`MAX_LOSS_PERCENT`](crate::synchronizer::loss::MAX_LOSS_PERCENT) %;
//!   `rate=0` switches it off), refused like the delay when wrong.
//!
//! With a [`ControlToken`] (`--control-token-file`), `PUT` needs `Authorization: Bearer
//! <token>` (401 otherwise); `GET` stays open. [`require_token_beyond_loopback`] refuses to
//! serve the endpoint beyond this host without one.

use crate::synchronizer::delay::{parse_delay, DelayMode, DelayPolicy};
use crate::synchronizer::loss::{parse_loss_rate, LossPolicy};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// The secret a caller must present to change the delay.
#[derive(Clone)]
pub struct ControlToken(Arc<str>);

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(…)")
    }
}

impl ControlToken {
    /// The token in `path` (surrounding whitespace ignored). The error names the file, never
    /// its content.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the control token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(format!(
                "the control token in {} is shorter than 16 characters: use a random secret, \
                 e.g. `openssl rand -hex 16 > {}`",
                path.display(),
                path.display()
            ));
        }
        Ok(ControlToken(token.into()))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (compared in constant time).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(presented.as_bytes(), self.0.as_bytes())
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        difference |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

/// Refuses to expose `PUT /delay` beyond this host without a token: when `addr` is not a
/// loopback address, a token is required, and the error says how to provide one.
pub fn require_token_beyond_loopback(
    addr: SocketAddr,
    token: Option<&ControlToken>,
) -> Result<(), String> {
    if addr.ip().is_loopback() || token.is_some() {
        return Ok(());
    }
    Err(format!(
        "--http-addr {addr} can be reached beyond this host, and anyone reaching it could change \
         the delay or drop records with PUT /delay or PUT /loss: set --control-token-file (a file holding a random secret, e.g. \
         `openssl rand -hex 16`), or bind to 127.0.0.1"
    ))
}

/// Query parameters of `PUT /delay`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayUpdate {
    /// New fixed delay, e.g. `10s` or `250ms`.
    pub delay: Option<String>,
    /// New jitter bound.
    pub jitter: Option<String>,
    /// New mode.
    pub mode: Option<DelayMode>,
    /// Delay only this input partition (a held partition), or `all`.
    pub partition: Option<String>,
}

impl DelayUpdate {
    /// Applies the update to `policy`, or explains which value is wrong.
    pub fn apply(&self, mut policy: DelayPolicy) -> Result<DelayPolicy, String> {
        let parse = |name: &str, raw: &str| parse_delay(raw).map_err(|e| format!("{name}: {e}"));
        if let Some(raw) = &self.delay {
            policy.delay = parse("delay", raw)?;
        }
        if let Some(raw) = &self.jitter {
            policy.jitter = parse("jitter", raw)?;
        }
        if let Some(mode) = self.mode {
            policy.mode = mode;
        }
        if let Some(raw) = &self.partition {
            policy.partition =
                match raw.as_str() {
                    "all" => None,
                    number => Some(number.parse().ok().filter(|&p: &i32| p >= 0).ok_or_else(
                        || format!("partition: {number:?} is neither a partition number nor `all`"),
                    )?),
                };
        }
        Ok(policy)
    }
}

/// Query parameters of `PUT /loss`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossUpdate {
    /// New rate, e.g. `2%`.
    pub rate: Option<String>,
    /// New seed.
    pub seed: Option<u64>,
}

impl LossUpdate {
    /// Applies the update to `policy`, or explains which value is wrong.
    pub fn apply(&self, mut policy: LossPolicy) -> Result<LossPolicy, String> {
        if let Some(raw) = &self.rate {
            policy.rate_ppm = parse_loss_rate(raw).map_err(|e| format!("rate: {e}"))?;
        }
        if let Some(seed) = self.seed {
            policy.seed = seed;
        }
        Ok(policy)
    }
}

/// The senders of the faults the control routes change.
pub struct Faults {
    /// The delay policy.
    pub delay: watch::Sender<DelayPolicy>,
    /// The loss switch.
    pub loss: watch::Sender<LossPolicy>,
}

/// What the control routes share.
struct Control {
    faults: Faults,
    token: Option<ControlToken>,
}

/// Routes reading and changing the delay and the loss switch; changing them needs `token`
/// when one is given.
pub fn control_router(faults: Faults, token: Option<ControlToken>) -> Router {
    Router::new()
        .route("/delay", get(current_delay).put(update_delay))
        .route("/loss", get(current_loss).put(update_loss))
        .with_state(Arc::new(Control { faults, token }))
}

async fn current_delay(State(control): State<Arc<Control>>) -> Json<DelayPolicy> {
    Json(*control.faults.delay.borrow())
}

async fn current_loss(State(control): State<Arc<Control>>) -> Json<LossPolicy> {
    Json(*control.faults.loss.borrow())
}

type Refusal = (StatusCode, String);

/// Refuses a `PUT` of `route` without the token, when there is one.
fn authorize(control: &Control, headers: &HeaderMap, route: &str) -> Result<(), Refusal> {
    match &control.token {
        Some(token) if !token.admits(headers) => Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "PUT {route} needs `Authorization: Bearer <token>`, the token in the \
                 synchronizer's --control-token-file\n"
            ),
        )),
        _ => Ok(()),
    }
}

type QueryOf<U> = Result<Query<U>, axum::extract::rejection::QueryRejection>;

async fn update_delay(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    query: QueryOf<DelayUpdate>,
) -> Result<Json<DelayPolicy>, Refusal> {
    authorize(&control, &headers, "/delay")?;
    change(&control.faults.delay, query, DelayUpdate::apply)
}

async fn update_loss(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    query: QueryOf<LossUpdate>,
) -> Result<Json<LossPolicy>, Refusal> {
    authorize(&control, &headers, "/loss")?;
    change(&control.faults.loss, query, LossUpdate::apply)
}

/// Applies the update in `query` to the policy `sender` holds and puts the result in force; a
/// malformed query or a value `apply` refuses changes nothing and answers 400 with the reason.
fn change<P: Copy, U>(
    sender: &watch::Sender<P>,
    query: QueryOf<U>,
    apply: impl FnOnce(&U, P) -> Result<P, String>,
) -> Result<Json<P>, Refusal> {
    let Query(update) =
        query.map_err(|e| (StatusCode::BAD_REQUEST, format!("{}\n", e.body_text())))?;
    let policy =
        apply(&update, *sender.borrow()).map_err(|e| (StatusCode::BAD_REQUEST, e + "\n"))?;
    sender.send_replace(policy);
    Ok(Json(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synchronizer::delay::MAX_DELAY;
    use std::time::Duration;

    #[test]
    fn a_token_is_required_beyond_loopback_and_compared_exactly() {
        let loopback: SocketAddr = "127.0.0.1:9101".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:9101".parse().unwrap();
        assert!(require_token_beyond_loopback(loopback, None).is_ok());
        let err = require_token_beyond_loopback(everywhere, None).unwrap_err();
        assert!(err.contains("--control-token-file"), "{err}");
        let token = ControlToken("0123456789abcdef".into());
        assert!(require_token_beyond_loopback(everywhere, Some(&token)).is_ok());
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(token.admits(&with("Bearer 0123456789abcdef")));
        assert!(!token.admits(&with("Bearer 0123456789abcdeF")));
        assert!(!token.admits(&with("Bearer 0123456789abcde")));
        assert!(!token.admits(&with("0123456789abcdef")));
        assert!(!token.admits(&HeaderMap::new()));
        assert!(!format!("{token:?}").contains("0123"), "never printed");
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_a_short_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        assert!(ControlToken::read(&path)
            .unwrap()
            .admits(&HeaderMap::from_iter([(
                header::AUTHORIZATION,
                "Bearer 0123456789abcdef".parse().unwrap()
            )])));
        std::fs::write(&path, "short").unwrap();
        let err = ControlToken::read(&path).unwrap_err();
        assert!(err.contains("shorter") && !err.contains("short\n"), "{err}");
        assert!(ControlToken::read(&dir.path().join("missing"))
            .unwrap_err()
            .contains("missing"));
    }

    #[test]
    fn update_changes_only_given_fields() {
        let start = DelayPolicy {
            delay: Duration::from_secs(1),
            jitter: Duration::from_millis(5),
            mode: DelayMode::Pipelined,
            partition: None,
        };
        let next = DelayUpdate {
            delay: Some("10s".into()),
            ..Default::default()
        }
        .apply(start)
        .unwrap();
        assert_eq!(next.delay, Duration::from_secs(10));
        assert_eq!(next.jitter, Duration::from_millis(5));
        let err = DelayUpdate {
            jitter: Some("soon".into()),
            ..Default::default()
        }
        .apply(start)
        .unwrap_err();
        assert!(err.contains("jitter"), "{err}");
        for (update, named) in [
            (
                DelayUpdate {
                    delay: Some("300000000000y".into()),
                    ..Default::default()
                },
                "delay",
            ),
            (
                DelayUpdate {
                    jitter: Some("2h".into()),
                    ..Default::default()
                },
                "jitter",
            ),
        ] {
            let err = update.apply(start).unwrap_err();
            assert!(err.starts_with(named) && err.contains("maximum"), "{err}");
        }
        let longest = DelayUpdate {
            delay: Some("1h".into()),
            jitter: Some("1h".into()),
            ..Default::default()
        }
        .apply(start)
        .unwrap();
        assert_eq!((longest.delay, longest.jitter), (MAX_DELAY, MAX_DELAY));
        let hold = |raw: &str| {
            DelayUpdate {
                partition: Some(raw.into()),
                ..Default::default()
            }
            .apply(start)
        };
        let held = hold("3").unwrap();
        assert_eq!((held.partition, held.delay), (Some(3), start.delay));
        assert_eq!(hold("all").unwrap().partition, None);
        for wrong in ["-1", "three", ""] {
            let err = hold(wrong).unwrap_err();
            assert!(err.starts_with("partition:"), "{err}");
        }
    }
}
