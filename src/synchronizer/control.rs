//! Runtime control of the synchronizer's artificial delay over HTTP, so a demo can switch an
//! SLA miss on and off without restarting the job.
//!
//! - `GET /delay` returns the current policy as JSON (durations in milliseconds).
//! - `PUT /delay?delay=10s&jitter=500ms&mode=blocking` changes it; omitted fields keep their
//!   value. A delay or jitter above [`MAX_DELAY`](crate::delay::MAX_DELAY) and an unknown parameter (a typo such as
//!   `dealy`) are refused with 400 and the reason; nothing changes then.

use crate::delay::{parse_delay, DelayMode, DelayPolicy};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::watch;

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
        Ok(policy)
    }
}

/// Routes reading and changing the delay held by `sender`.
pub fn delay_router(sender: watch::Sender<DelayPolicy>) -> Router {
    Router::new()
        .route("/delay", get(current).put(update))
        .with_state(Arc::new(sender))
}

async fn current(State(sender): State<Arc<watch::Sender<DelayPolicy>>>) -> Json<DelayPolicy> {
    Json(*sender.borrow())
}

async fn update(
    State(sender): State<Arc<watch::Sender<DelayPolicy>>>,
    Query(update): Query<DelayUpdate>,
) -> Result<Json<DelayPolicy>, (StatusCode, String)> {
    let policy = update
        .apply(*sender.borrow())
        .map_err(|e| (StatusCode::BAD_REQUEST, e + "\n"))?;
    sender.send_replace(policy);
    Ok(Json(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delay::MAX_DELAY;
    use std::time::Duration;

    #[test]
    fn update_changes_only_given_fields() {
        let start = DelayPolicy {
            delay: Duration::from_secs(1),
            jitter: Duration::from_millis(5),
            mode: DelayMode::Pipelined,
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
    }
}
