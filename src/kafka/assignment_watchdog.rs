//! Notices a consumer-group member that holds no partition for too long. A job in a group can
//! be left with nothing by a rebalance that never completes for it (a session that expired
//! while the broker was frozen, members that died while joining); it then sits idle while its
//! input grows. The watchdog decides when that has lasted long enough to act; the job checks
//! that the input has partitions and the broker answers, then rejoins with a fresh consumer.
//! Each further attempt waits twice as long, up to a cap, until partitions are held again.

use std::time::Duration;
use tokio::time::Instant;

/// The default limit: twice the group session timeout, at least 30 s (a normal rebalance,
/// including a dead member's expiry, finishes well within it).
pub fn default_limit(session_timeout: Duration) -> Duration {
    (session_timeout * 2).max(Duration::from_secs(30))
}

/// The longest wait between two rejoin attempts.
pub const MAX_LIMIT: Duration = Duration::from_secs(600);

/// What the watchdog says about the current assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Partitions are held.
    Assigned,
    /// None held, for less than the limit so far.
    Waiting,
    /// None held for `for_how_long` (at least the limit): time to rejoin.
    Stuck {
        /// Since when nothing is held.
        for_how_long: Duration,
    },
}

/// The state of the watchdog of one consumer.
#[derive(Debug, Clone)]
pub struct AssignmentWatchdog {
    base_limit: Duration,
    limit: Duration,
    empty_since: Option<Instant>,
}

impl AssignmentWatchdog {
    /// A watchdog acting after `limit` without partitions, counting from `now` (a consumer
    /// that just subscribed holds nothing yet).
    pub fn new(limit: Duration, now: Instant) -> Self {
        AssignmentWatchdog {
            base_limit: limit,
            limit,
            empty_since: Some(now),
        }
    }

    /// Judges the number of partitions held at `now`.
    pub fn observe(&mut self, assigned: usize, now: Instant) -> Verdict {
        if assigned > 0 {
            self.empty_since = None;
            self.limit = self.base_limit;
            return Verdict::Assigned;
        }
        let since = *self.empty_since.get_or_insert(now);
        let for_how_long = now.saturating_duration_since(since);
        if for_how_long >= self.limit {
            Verdict::Stuck { for_how_long }
        } else {
            Verdict::Waiting
        }
    }

    /// The job rejoined (or decided not to, e.g. the broker did not answer) at `now`: the next
    /// attempt comes after twice the previous wait, at most [`MAX_LIMIT`].
    pub fn acted(&mut self, now: Instant) {
        self.empty_since = Some(now);
        self.limit = (self.limit * 2).min(MAX_LIMIT.max(self.base_limit));
    }

    /// The current wait before the next attempt.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn stuck_only_after_the_limit_without_partitions() {
        let t0 = Instant::now();
        let mut dog = AssignmentWatchdog::new(30 * S, t0);
        assert_eq!(dog.observe(0, t0 + 10 * S), Verdict::Waiting);
        assert_eq!(dog.observe(2, t0 + 20 * S), Verdict::Assigned);
        assert_eq!(
            dog.observe(0, t0 + 40 * S),
            Verdict::Waiting,
            "the clock restarted"
        );
        assert_eq!(
            dog.observe(0, t0 + 70 * S),
            Verdict::Stuck {
                for_how_long: 30 * S
            }
        );
    }

    #[test]
    fn attempts_back_off_and_recover_on_assignment() {
        let t0 = Instant::now();
        let mut dog = AssignmentWatchdog::new(30 * S, t0);
        assert!(matches!(dog.observe(0, t0 + 30 * S), Verdict::Stuck { .. }));
        dog.acted(t0 + 30 * S);
        assert_eq!(dog.limit(), 60 * S);
        assert_eq!(dog.observe(0, t0 + 80 * S), Verdict::Waiting);
        assert!(matches!(dog.observe(0, t0 + 90 * S), Verdict::Stuck { .. }));
        for _ in 0..10 {
            dog.acted(t0);
        }
        assert_eq!(dog.limit(), MAX_LIMIT);
        assert_eq!(dog.observe(1, t0), Verdict::Assigned);
        assert_eq!(dog.limit(), 30 * S, "back to the base limit");
    }

    #[test]
    fn the_default_limit_is_twice_the_session_timeout_and_at_least_30s() {
        assert_eq!(default_limit(45 * S), 90 * S);
        assert_eq!(default_limit(6 * S), 30 * S);
    }
}
