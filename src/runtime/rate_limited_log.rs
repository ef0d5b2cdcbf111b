//! Logging that stays readable under a flood: each key (e.g. a reject reason) is logged at
//! most once per interval, with the number of occurrences that were not logged.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;
use tokio::time::Instant;

/// Decides, per key, whether an occurrence should be logged now.
#[derive(Debug)]
pub struct RateLimitedLog<K> {
    interval: Duration,
    keys: HashMap<K, KeyState>,
}

#[derive(Debug)]
struct KeyState {
    last_logged: Instant,
    suppressed: u64,
}

impl<K: Eq + Hash> RateLimitedLog<K> {
    /// Logs each key at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            keys: HashMap::new(),
        }
    }

    /// Registers an occurrence of `key` at `now`. Returns `Some(suppressed)` when it should be
    /// logged, where `suppressed` counts the occurrences skipped since the last logged one.
    pub fn should_log(&mut self, key: K, now: Instant) -> Option<u64> {
        match self.keys.get_mut(&key) {
            None => {
                self.keys.insert(
                    key,
                    KeyState {
                        last_logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
            Some(state) if now.duration_since(state.last_logged) >= self.interval => {
                let suppressed = std::mem::take(&mut state.suppressed);
                state.last_logged = now;
                Some(suppressed)
            }
            Some(state) => {
                state.suppressed += 1;
                None
            }
        }
    }

    /// The occurrences of each key not logged since its last line (only keys with some),
    /// cleared: what a job says before it stops, so no count is lost.
    pub fn take_held_back(&mut self) -> Vec<(&K, u64)> {
        self.keys
            .iter_mut()
            .filter(|(_, state)| state.suppressed > 0)
            .map(|(key, state)| (key, std::mem::take(&mut state.suppressed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_held_back_can_be_said_once() {
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(log.should_log("a", now), Some(0));
        assert_eq!(log.should_log("a", now), None);
        assert_eq!(log.should_log("a", now), None);
        assert_eq!(log.should_log("b", now), Some(0));
        assert_eq!(log.take_held_back(), vec![(&"a", 2)]);
        assert!(log.take_held_back().is_empty(), "cleared");
    }

    #[test]
    fn logs_first_occurrence_then_once_per_interval_with_suppressed_count() {
        let t0 = Instant::now();
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.should_log("a", t0), Some(0));
        assert_eq!(log.should_log("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.should_log("a", t0 + Duration::from_secs(2)), None);
        assert_eq!(log.should_log("b", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(log.should_log("a", t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(log.should_log("a", t0 + Duration::from_secs(11)), None);
    }
}
