//! When rules are evaluated, the same way live and in a backtest: at the multiples of the
//! rule's interval since the Unix epoch, each evaluation stamped with its *scheduled* time.
//!
//! Grafana's scheduler ticks at multiples of its base interval since the epoch and hands each
//! rule its tick time (`scheduledAt`); the rule's queries run relative to that time and the
//! state machine compares `for` with differences of those times, so a rule with `for: 2m`
//! evaluated every minute fires exactly two evaluations after it started pending. An
//! evaluator stamping each evaluation with the wall clock when it woke (as `alerts` did)
//! measures `120 s − a few ms` about half the time and fires one interval later — a live
//! Pending → Alerting of 3 minutes where the backtest of the same range gave 2.

/// The first scheduled evaluation at or after `at_ms`, for evaluations every `step_ms`.
pub fn first_at_or_after(at_ms: i64, step_ms: i64) -> i64 {
    let step = step_ms.max(1);
    at_ms.saturating_add(step - 1).div_euclid(step) * step
}

/// The last scheduled evaluation at or before `at_ms`.
pub fn last_at_or_before(at_ms: i64, step_ms: i64) -> i64 {
    let step = step_ms.max(1);
    at_ms.div_euclid(step) * step
}

/// The live evaluator's clock: which scheduled evaluation to run next, given the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    step_ms: i64,
    next_ms: i64,
}

impl Schedule {
    /// Evaluations every `step_ms`, the first one at or after `now_ms`.
    pub fn starting(now_ms: i64, step_ms: i64) -> Self {
        Schedule {
            step_ms: step_ms.max(1),
            next_ms: first_at_or_after(now_ms, step_ms),
        }
    }

    /// When the next evaluation is due.
    pub fn next_ms(&self) -> i64 {
        self.next_ms
    }

    /// Called when the clock reads `now_ms` at or after [`Schedule::next_ms`]: the scheduled
    /// time to evaluate at (the latest one reached: evaluations missed while the evaluator was
    /// held up are skipped, as Grafana's ticker drops ticks) and how many were skipped.
    pub fn take(&mut self, now_ms: i64) -> (i64, u64) {
        let due = last_at_or_before(now_ms, self.step_ms).max(self.next_ms);
        let skipped = ((due - self.next_ms) / self.step_ms) as u64;
        self.next_ms = due + self.step_ms;
        (due, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::state::{AlertState, Lifecycle, RuleState};
    use proptest::prelude::*;

    #[test]
    fn evaluations_fall_on_multiples_of_the_interval() {
        assert_eq!(first_at_or_after(125_000, 60_000), 180_000);
        assert_eq!(first_at_or_after(120_000, 60_000), 120_000);
        assert_eq!(last_at_or_before(179_999, 60_000), 120_000);
        let mut schedule = Schedule::starting(125_000, 60_000);
        assert_eq!(schedule.next_ms(), 180_000);
        // Woken 7 ms late: evaluated at the scheduled time.
        assert_eq!(schedule.take(180_007), (180_000, 0));
        assert_eq!(schedule.next_ms(), 240_000);
        // Held up past two ticks: the latest is evaluated, the missed ones counted.
        assert_eq!(schedule.take(370_000), (360_000, 2));
        assert_eq!(schedule.next_ms(), 420_000);
    }

    /// The cause of the live/backtest disagreement, in the state machine: stamped with wake-up
    /// times a few ms apart, a `for: 2m` rule needs a third minute; stamped with scheduled
    /// times, live evaluations are the backtest's and fire after exactly two.
    #[test]
    fn scheduled_times_fire_after_exactly_the_pending_period() {
        let lifecycle = Lifecycle {
            pending_period: std::time::Duration::from_secs(120),
            interval: std::time::Duration::from_secs(60),
            no_data_state: crate::alerting::rule::NoDataState::NoData,
            exec_err_state: crate::alerting::rule::ExecErrState::Error,
        };
        let breach = crate::alerting::evaluation::Evaluation::Value {
            value: 10_000.0,
            met: true,
        };
        let minutes_to_alerting = |stamps: &[i64]| {
            let mut state = RuleState::new(stamps[0]);
            let mut pending_at = None;
            for (i, &t) in stamps.iter().enumerate() {
                state.apply(&lifecycle, &breach, t);
                match state.state {
                    AlertState::Pending => {
                        pending_at.get_or_insert(i);
                    }
                    AlertState::Alerting => return i - pending_at.unwrap_or(i),
                    _ => {}
                }
            }
            usize::MAX
        };
        // Woken 5 ms late at the first evaluation, 2 ms late at the third.
        let wall_clock = [60_005, 120_004, 180_002, 240_003];
        assert_eq!(minutes_to_alerting(&wall_clock), 3, "the bug, reproduced");
        let mut schedule = Schedule::starting(59_000, 60_000);
        let scheduled: Vec<i64> = wall_clock.iter().map(|&w| schedule.take(w).0).collect();
        assert_eq!(scheduled, vec![60_000, 120_000, 180_000, 240_000]);
        assert_eq!(minutes_to_alerting(&scheduled), 2);
    }

    proptest! {
        /// Whatever the wake-up delays (below an interval), the scheduled times are the
        /// backtest's: consecutive multiples of the interval.
        #[test]
        fn live_times_are_the_backtests(start in 0i64..10_000_000, delays in proptest::collection::vec(0i64..59_000, 1..30)) {
            let step = 60_000;
            let mut schedule = Schedule::starting(start, step);
            let mut times = Vec::new();
            for delay in delays {
                let wake = schedule.next_ms() + delay;
                times.push(schedule.take(wake).0);
            }
            let first = first_at_or_after(start, step);
            let expected: Vec<i64> = (0..times.len() as i64).map(|i| first + i * step).collect();
            prop_assert_eq!(times, expected);
        }
    }
}
