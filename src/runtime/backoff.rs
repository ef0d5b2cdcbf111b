//! The retry schedule of everything that waits for a dependency (Kafka, Elasticsearch) to come
//! back: exponential from a minimum delay, capped, with jitter, without a limit on attempts.

use backon::ExponentialBuilder;
use std::time::Duration;

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Exponential backoff starting at `min`, at most [`MAX_RETRY_DELAY`], jittered, unbounded.
pub fn retry_policy(min: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn grows_and_stays_capped() {
        let delays: Vec<Duration> = retry_policy(Duration::from_millis(100))
            .build()
            .take(20)
            .collect();
        assert_eq!(delays.len(), 20, "never gives up");
        assert!(
            delays.iter().all(|d| *d <= MAX_RETRY_DELAY * 2),
            "{delays:?}"
        );
        assert!(delays[19] >= MAX_RETRY_DELAY, "{delays:?}");
    }
}
