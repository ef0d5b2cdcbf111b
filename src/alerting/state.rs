//! The state of an alert rule across evaluations, following Grafana's documented lifecycle:
//!
//! - A breach (or no data / an error mapped to a state) moves Normal to **Pending**; it becomes
//!   **Alerting** (or **NoData** / **Error**) once it has lasted the pending period (`for`), so
//!   firing takes at least two evaluations. With `for: 0` it fires at once.
//! - Pending returns to **Normal** as soon as the condition clears (the pending period restarts).
//! - Alerting enters **Recovering** when the condition clears if `keep_firing_for` is set, and
//!   returns to Normal once it has stayed clear that long (a new breach resumes Alerting).
//! - `noDataState` / `execErrState` map no data and errors to NoData / Error, to a breach
//!   (`Alerting`), to a clear condition (`OK`), or keep the last state (`KeepLast`).
//!
//! Pure: evaluation results and times are passed in.

use super::evaluation::Evaluation;
use super::rule::{ExecErrState, NoDataState};
use serde::Serialize;
use std::time::Duration;

/// States of an alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AlertState {
    /// Condition not met.
    Normal,
    /// Met, for less than the pending period.
    Pending,
    /// Met for at least the pending period (Grafana: Alerting / Firing).
    Alerting,
    /// Cleared after firing, for less than `keep_firing_for`.
    Recovering,
    /// No data, past the pending period.
    NoData,
    /// Evaluation failing, past the pending period.
    Error,
}

impl AlertState {
    /// Whether notifications treat this state as firing.
    pub fn is_firing(self) -> bool {
        matches!(
            self,
            AlertState::Alerting | AlertState::Recovering | AlertState::NoData | AlertState::Error
        )
    }
}

/// The timing and mapping settings of a rule that drive its state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// Pending period (`for`).
    pub pending_period: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// No-data mapping.
    pub no_data_state: NoDataState,
    /// Error mapping.
    pub exec_err_state: ExecErrState,
}

/// A change of state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Previous state.
    pub from: AlertState,
    /// New state.
    pub to: AlertState,
    /// When (Unix ms).
    pub at_ms: i64,
    /// How long the previous state lasted (ms).
    pub previous_lasted_ms: i64,
    /// The value of B at the evaluation, if any.
    pub value: Option<f64>,
    /// The error, for transitions caused by one.
    pub error: Option<String>,
}

/// Where a rule stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleState {
    /// Current state.
    pub state: AlertState,
    /// Since when (Unix ms).
    pub since_ms: i64,
    /// The state the current Pending period leads to.
    pub pending_target: Option<AlertState>,
    /// Value of B at the last evaluation.
    pub last_value: Option<f64>,
    /// When the rule was last evaluated (Unix ms).
    pub last_evaluation_ms: Option<i64>,
}

/// What an evaluation amounts to once no-data and error mappings are applied.
enum Outcome {
    /// The given problem state is wanted (Alerting, NoData or Error).
    Problem(AlertState),
    /// Condition clear.
    Clear,
    /// Keep the last state.
    Keep,
}

impl RuleState {
    /// A rule that has not been evaluated yet: Normal since `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        RuleState {
            state: AlertState::Normal,
            since_ms: now_ms,
            pending_target: None,
            last_value: None,
            last_evaluation_ms: None,
        }
    }

    fn outcome(lifecycle: &Lifecycle, evaluation: &Evaluation) -> Outcome {
        match evaluation {
            Evaluation::Value { met: true, .. } => Outcome::Problem(AlertState::Alerting),
            Evaluation::Value { met: false, .. } => Outcome::Clear,
            Evaluation::NoData => match lifecycle.no_data_state {
                NoDataState::NoData => Outcome::Problem(AlertState::NoData),
                NoDataState::Alerting => Outcome::Problem(AlertState::Alerting),
                NoDataState::Ok => Outcome::Clear,
                NoDataState::KeepLast => Outcome::Keep,
            },
            Evaluation::Error(_) => match lifecycle.exec_err_state {
                ExecErrState::Error => Outcome::Problem(AlertState::Error),
                ExecErrState::Alerting => Outcome::Problem(AlertState::Alerting),
                ExecErrState::Ok => Outcome::Clear,
                ExecErrState::KeepLast => Outcome::Keep,
            },
        }
    }

    /// Applies an evaluation made at `now_ms`; returns the transition, if the state changed.
    pub fn apply(
        &mut self,
        lifecycle: &Lifecycle,
        evaluation: &Evaluation,
        now_ms: i64,
    ) -> Option<Transition> {
        self.last_evaluation_ms = Some(now_ms);
        self.last_value = match evaluation {
            Evaluation::Value { value, .. } => Some(*value),
            _ => None,
        };
        let elapsed = |since: i64| Duration::from_millis((now_ms - since).max(0) as u64);
        let next = match (Self::outcome(lifecycle, evaluation), self.state) {
            (Outcome::Keep, _) => None,
            (Outcome::Problem(target), AlertState::Normal) => {
                if lifecycle.pending_period.is_zero() {
                    Some(target)
                } else {
                    self.pending_target = Some(target);
                    Some(AlertState::Pending)
                }
            }
            (Outcome::Problem(target), AlertState::Pending) => {
                self.pending_target = Some(target);
                (elapsed(self.since_ms) >= lifecycle.pending_period).then_some(target)
            }
            (Outcome::Problem(AlertState::Alerting), AlertState::Recovering) => {
                Some(AlertState::Alerting)
            }
            (Outcome::Problem(target), current) => (target != current).then_some(target),
            (Outcome::Clear, AlertState::Normal) => None,
            (Outcome::Clear, AlertState::Alerting) if !lifecycle.keep_firing_for.is_zero() => {
                Some(AlertState::Recovering)
            }
            (Outcome::Clear, AlertState::Recovering) => {
                (elapsed(self.since_ms) >= lifecycle.keep_firing_for).then_some(AlertState::Normal)
            }
            (Outcome::Clear, _) => Some(AlertState::Normal),
        };
        let to = next.filter(|&to| to != self.state)?;
        if to != AlertState::Pending {
            self.pending_target = None;
        }
        let transition = Transition {
            from: self.state,
            to,
            at_ms: now_ms,
            previous_lasted_ms: now_ms - self.since_ms,
            value: self.last_value,
            error: match evaluation {
                Evaluation::Error(e) => Some(e.clone()),
                _ => None,
            },
        };
        self.state = to;
        self.since_ms = now_ms;
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertState::*;

    const S: i64 = 1_000;

    fn lifecycle(pending_s: u64, keep_s: u64) -> Lifecycle {
        Lifecycle {
            pending_period: Duration::from_secs(pending_s),
            keep_firing_for: Duration::from_secs(keep_s),
            no_data_state: NoDataState::NoData,
            exec_err_state: ExecErrState::Error,
        }
    }

    fn breach() -> Evaluation {
        Evaluation::Value {
            value: 10_000.0,
            met: true,
        }
    }

    fn clear() -> Evaluation {
        Evaluation::Value {
            value: 100.0,
            met: false,
        }
    }

    /// Feeds (time in s, evaluation) pairs and returns the states after each.
    fn run(l: &Lifecycle, steps: &[(i64, Evaluation)]) -> Vec<AlertState> {
        let mut s = RuleState::new(0);
        steps
            .iter()
            .map(|(t, e)| {
                s.apply(l, e, t * S);
                s.state
            })
            .collect()
    }

    #[test]
    fn pending_then_alerting_after_the_pending_period() {
        let l = lifecycle(120, 0);
        let states = run(
            &l,
            &[
                (0, clear()),
                (60, breach()),
                (120, breach()),
                (180, breach()),
                (240, clear()),
            ],
        );
        assert_eq!(states, vec![Normal, Pending, Pending, Alerting, Normal]);
    }

    #[test]
    fn pending_resets_when_the_condition_clears() {
        let l = lifecycle(120, 0);
        let states = run(
            &l,
            &[
                (0, breach()),
                (60, clear()),
                (120, breach()),
                (180, breach()),
                (240, breach()),
            ],
        );
        assert_eq!(
            states,
            vec![Pending, Normal, Pending, Pending, Alerting],
            "the pending period restarts at 120 s"
        );
    }

    #[test]
    fn without_pending_period_fires_at_once() {
        assert_eq!(
            run(&lifecycle(0, 0), &[(0, breach()), (1, clear())]),
            vec![Alerting, Normal]
        );
    }

    #[test]
    fn keep_firing_for_holds_recovering_then_normal() {
        let l = lifecycle(0, 120);
        let states = run(
            &l,
            &[
                (0, breach()),
                (60, clear()),
                (120, breach()),
                (180, clear()),
                (240, clear()),
                (300, clear()),
            ],
        );
        assert_eq!(
            states,
            vec![Alerting, Recovering, Alerting, Recovering, Recovering, Normal]
        );
    }

    #[test]
    fn no_data_goes_through_pending_to_no_data_and_back() {
        let l = lifecycle(60, 0);
        let states = run(
            &l,
            &[
                (0, Evaluation::NoData),
                (30, Evaluation::NoData),
                (60, Evaluation::NoData),
                (90, clear()),
            ],
        );
        assert_eq!(states, vec![Pending, Pending, NoData, Normal]);
    }

    #[test]
    fn no_data_and_error_mappings() {
        let mut l = lifecycle(0, 0);
        l.no_data_state = NoDataState::Ok;
        assert_eq!(
            run(&l, &[(0, breach()), (1, Evaluation::NoData)]),
            vec![Alerting, Normal]
        );
        l.no_data_state = NoDataState::KeepLast;
        assert_eq!(
            run(&l, &[(0, breach()), (1, Evaluation::NoData)]),
            vec![Alerting, Alerting]
        );
        l.no_data_state = NoDataState::Alerting;
        assert_eq!(run(&l, &[(0, Evaluation::NoData)]), vec![Alerting]);
        l.exec_err_state = ExecErrState::Error;
        assert_eq!(
            run(&l, &[(0, Evaluation::Error("down".into())), (1, clear())]),
            vec![Error, Normal]
        );
        l.exec_err_state = ExecErrState::KeepLast;
        assert_eq!(
            run(&l, &[(0, clear()), (1, Evaluation::Error("down".into()))]),
            vec![Normal, Normal]
        );
    }

    #[test]
    fn firing_switches_directly_between_problem_states() {
        let l = lifecycle(60, 0);
        let states = run(
            &l,
            &[
                (0, breach()),
                (60, breach()),
                (120, Evaluation::NoData),
                (180, breach()),
            ],
        );
        assert_eq!(states, vec![Pending, Alerting, NoData, Alerting]);
    }

    #[test]
    fn transitions_report_the_value_and_how_long_the_previous_state_lasted() {
        let l = lifecycle(120, 0);
        let mut s = RuleState::new(0);
        assert_eq!(
            s.apply(&l, &clear(), 10 * S),
            None,
            "Normal stays Normal: no transition to report"
        );
        let t = s.apply(&l, &breach(), 70 * S).unwrap();
        assert_eq!(
            (t.from, t.to, t.previous_lasted_ms, t.value),
            (Normal, Pending, 70 * S, Some(10_000.0))
        );
        assert_eq!(s.apply(&l, &breach(), 130 * S), None);
        let t = s.apply(&l, &breach(), 190 * S).unwrap();
        assert_eq!(
            (t.from, t.to, t.previous_lasted_ms),
            (Pending, Alerting, 120 * S)
        );
    }
}
