//! The state of a Grafana-managed alert rule across evaluations, as **Grafana 10.4** keeps it
//! (the version `docker/docker-compose.yml` provisions). Each branch follows a function of
//! `pkg/services/ngalert/state/state.go` (named in its comment), and the tests are rows of
//! Grafana's own `TestProcessEvalResults_StateTransitions` (`manager_private_test.go`), so each
//! can be checked against the source:
//!
//! - `resultAlerting`: a breach moves Normal, NoData or Error to **Pending** when `for` > 0
//!   (to Alerting at once otherwise); Pending becomes **Alerting** once `for` has passed since
//!   it started; Alerting stays Alerting (its end time moves on).
//! - `resultNormal`: a clear condition moves any state to **Normal** at once.
//! - `resultNoData` / `resultError`: with `noDataState: NoData` / `execErrState: Error` the rule
//!   goes **straight** to NoData / Error — there is no pending period for them; `Alerting`
//!   behaves as a breach, `OK` as a clear condition, `KeepLast` as `resultKeepLast`.
//! - `resultKeepLast`: Alerting stays Alerting, Pending becomes Alerting once `for` has passed
//!   (it stays Pending before), Normal stays Normal, and a kept NoData or Error becomes Normal.
//! - A state's *reason* (`StateReason`) is set when the result and the state differ and the
//!   result was NoData or Error: `Alerting (NoData)`, `Normal (Error)`, `Pending (KeepLast)`.
//! - `EndsAt` of a firing state is the evaluation time plus 4 × max(interval, 30 s)
//!   (`nextEndsTime`, "synchronized with Prometheus"); Normal states end when they start. The
//!   Grafana 10 state tests from before KeepLast expect 3 ×; the source at the 10.4 tag itself
//!   could not be read here, so the multiplier is one constant, [`ENDS_AT_INTERVALS`].
//! - Grafana 10.4 has no `keep_firing_for` and no Recovering state (both came with Grafana 12);
//!   a rule that sets `keep_firing_for` is refused when it is loaded.
//!
//! Pure: evaluation results and times are passed in.

use super::evaluation::Evaluation;
use super::rule::{AlertRule, ExecErrState, NoDataState};
use serde::Serialize;
use std::time::Duration;

/// The Grafana version whose semantics this module follows.
pub const GRAFANA_VERSION: &str = "10.4";

/// Grafana's `ResendDelay`: firing alerts are re-sent to Alertmanager at most this often.
pub const RESEND_DELAY: Duration = Duration::from_secs(30);

/// Grafana's `nextEndsTime`: a firing alert ends this many max(interval, resend delay) after
/// the evaluation unless it is re-sent.
pub const ENDS_AT_INTERVALS: u32 = 4;

/// States of an alert rule (Grafana's `eval.State`, minus the internal ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AlertState {
    /// Condition not met.
    Normal,
    /// Met, for less than the pending period.
    Pending,
    /// Met for at least the pending period (Grafana: Alerting / Firing).
    Alerting,
    /// The query returned no data (with `noDataState: NoData`).
    NoData,
    /// Evaluation failed (with `execErrState: Error`).
    Error,
}

impl AlertState {
    /// Whether notifications treat this state as firing (Grafana sends Alerting, NoData and
    /// Error to Alertmanager, never Pending).
    pub fn is_firing(self) -> bool {
        matches!(
            self,
            AlertState::Alerting | AlertState::NoData | AlertState::Error
        )
    }
}

/// Why a state differs from the evaluation's result (Grafana's `StateReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StateReason {
    /// The query returned no data, mapped to this state by `noDataState`.
    NoData,
    /// The evaluation failed, mapped to this state by `execErrState`.
    Error,
    /// No data or an error, and the rule keeps its last state.
    KeepLast,
    /// The instance's series was missing for two evaluation intervals: resolved and removed
    /// (Grafana's stale states).
    MissingSeries,
}

/// Grafana's `FormatStateAndReason`: `Alerting`, `Alerting (NoData)`.
pub fn format_state(state: AlertState, reason: Option<StateReason>) -> String {
    match reason {
        Some(reason) => format!("{state:?} ({reason:?})"),
        None => format!("{state:?}"),
    }
}

/// The timing and mapping settings of a rule that drive its state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// Pending period (`for`).
    pub pending_period: Duration,
    /// Evaluation interval of the rule group (for `EndsAt`).
    pub interval: Duration,
    /// No-data mapping.
    pub no_data_state: NoDataState,
    /// Error mapping.
    pub exec_err_state: ExecErrState,
}

impl Lifecycle {
    /// The lifecycle of `rule` evaluated every `interval` (its group's when `None`; at least
    /// 100 ms).
    pub fn of(rule: &AlertRule, interval: Option<Duration>) -> Self {
        Lifecycle {
            pending_period: rule.pending_period,
            interval: interval
                .unwrap_or(rule.interval)
                .max(Duration::from_millis(100)),
            no_data_state: rule.no_data_state,
            exec_err_state: rule.exec_err_state,
        }
    }

    /// Grafana's `nextEndsTime`: when a firing state evaluated at `now_ms` expires.
    pub fn next_ends_ms(&self, now_ms: i64) -> i64 {
        let step = self.interval.max(RESEND_DELAY).as_millis() as i64;
        now_ms + i64::from(ENDS_AT_INTERVALS) * step
    }
}

/// A change of state (or of its reason), as Grafana's `StateTransition.Changed()` sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Previous state.
    pub from: AlertState,
    /// Previous reason.
    pub from_reason: Option<StateReason>,
    /// New state.
    pub to: AlertState,
    /// New reason.
    pub reason: Option<StateReason>,
    /// When (Unix ms).
    pub at_ms: i64,
    /// How long the previous state lasted (ms).
    pub previous_lasted_ms: i64,
    /// The value of B at the evaluation, if any.
    pub value: Option<f64>,
    /// The error, for transitions caused by one.
    pub error: Option<String>,
}

/// Where a rule stands (the fields of Grafana's `State` this evaluator uses).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleState {
    /// Current state.
    pub state: AlertState,
    /// Why the state differs from the last result, if it does.
    pub reason: Option<StateReason>,
    /// When the current state started (Unix ms).
    pub starts_at_ms: i64,
    /// When the current state expires unless maintained (Unix ms); equals `starts_at_ms` for
    /// Normal.
    pub ends_at_ms: i64,
    /// Value of B at the last evaluation.
    pub last_value: Option<f64>,
    /// The error of the last evaluation, if it failed.
    pub error: Option<String>,
    /// When the rule was last evaluated (Unix ms).
    pub last_evaluation_ms: Option<i64>,
    /// Whether the last evaluation resolved a firing alert (Alerting → Normal).
    pub resolved: bool,
    /// When the state was last sent to Alertmanager (Unix ms).
    pub last_sent_ms: Option<i64>,
}

/// The result of an evaluation, as Grafana's `eval.State` of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Observed {
    Normal,
    Alerting,
    NoData,
    Error,
}

impl RuleState {
    /// A rule that has not been evaluated yet: Normal since `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        RuleState {
            state: AlertState::Normal,
            reason: None,
            starts_at_ms: now_ms,
            ends_at_ms: now_ms,
            last_value: None,
            error: None,
            last_evaluation_ms: None,
            resolved: false,
            last_sent_ms: None,
        }
    }

    fn set(&mut self, state: AlertState, starts_at_ms: i64, ends_at_ms: i64) {
        self.state = state;
        self.starts_at_ms = starts_at_ms;
        self.ends_at_ms = ends_at_ms;
    }

    /// `resultNormal`.
    fn result_normal(&mut self, now_ms: i64) {
        if self.state != AlertState::Normal {
            self.set(AlertState::Normal, now_ms, now_ms);
        }
    }

    /// `resultAlerting`.
    fn result_alerting(&mut self, l: &Lifecycle, now_ms: i64) {
        let ends = l.next_ends_ms(now_ms);
        match self.state {
            AlertState::Alerting => self.ends_at_ms = ends,
            AlertState::Pending => {
                if now_ms - self.starts_at_ms >= l.pending_period.as_millis() as i64 {
                    self.set(AlertState::Alerting, now_ms, ends);
                }
            }
            _ if l.pending_period.is_zero() => self.set(AlertState::Alerting, now_ms, ends),
            _ => self.set(AlertState::Pending, now_ms, ends),
        }
    }

    /// `resultKeepLast`.
    fn result_keep_last(&mut self, l: &Lifecycle, now_ms: i64) {
        match self.state {
            AlertState::Alerting => self.result_alerting(l, now_ms),
            AlertState::Pending => {
                if now_ms - self.starts_at_ms >= l.pending_period.as_millis() as i64 {
                    self.result_alerting(l, now_ms);
                }
            }
            // Normal stays Normal; a kept NoData or Error is reverted to Normal ("this should
            // not happen, add as failsafe" in Grafana).
            _ => self.result_normal(now_ms),
        }
    }

    /// `resultNoData` (and `resultError` for `problem` = Error): the state the mapping asks
    /// for, entered at once, or maintained.
    fn result_problem(&mut self, problem: AlertState, l: &Lifecycle, now_ms: i64) {
        if self.state == problem {
            self.ends_at_ms = l.next_ends_ms(now_ms);
        } else {
            self.set(problem, now_ms, l.next_ends_ms(now_ms));
        }
    }

    /// Applies an evaluation made at `now_ms` (Grafana's `setNextState`); returns the
    /// transition if the state or its reason changed.
    pub fn apply(
        &mut self,
        lifecycle: &Lifecycle,
        evaluation: &Evaluation,
        now_ms: i64,
    ) -> Option<Transition> {
        if self.last_evaluation_ms.is_none() {
            // Grafana's newState: a state is created by its first result, Normal from then.
            (self.starts_at_ms, self.ends_at_ms) = (now_ms, now_ms);
        }
        let (from, from_reason, from_starts) = (self.state, self.reason, self.starts_at_ms);
        self.last_evaluation_ms = Some(now_ms);
        (self.last_value, self.error) = match evaluation {
            Evaluation::Value { value, .. } => (Some(*value), None),
            Evaluation::NoData => (None, None),
            Evaluation::Error(e) => (None, Some(e.clone())),
        };
        let result = match evaluation {
            Evaluation::Value { met: true, .. } => Observed::Alerting,
            Evaluation::Value { met: false, .. } => Observed::Normal,
            Evaluation::NoData => Observed::NoData,
            Evaluation::Error(_) => Observed::Error,
        };
        match result {
            Observed::Normal => self.result_normal(now_ms),
            Observed::Alerting => self.result_alerting(lifecycle, now_ms),
            Observed::NoData => match lifecycle.no_data_state {
                NoDataState::Alerting => self.result_alerting(lifecycle, now_ms),
                NoDataState::NoData => self.result_problem(AlertState::NoData, lifecycle, now_ms),
                NoDataState::Ok => self.result_normal(now_ms),
                NoDataState::KeepLast => self.result_keep_last(lifecycle, now_ms),
            },
            Observed::Error => match lifecycle.exec_err_state {
                ExecErrState::Alerting => self.result_alerting(lifecycle, now_ms),
                ExecErrState::Error => self.result_problem(AlertState::Error, lifecycle, now_ms),
                ExecErrState::Ok => self.result_normal(now_ms),
                ExecErrState::KeepLast => self.result_keep_last(lifecycle, now_ms),
            },
        }
        // "Set reason iff: result and state are different, reason is not Alerting or Normal"
        // (resultStateReason).
        let same = matches!(
            (result, self.state),
            (Observed::NoData, AlertState::NoData) | (Observed::Error, AlertState::Error)
        );
        self.reason = match result {
            Observed::Normal | Observed::Alerting => None,
            _ if same => None,
            _ if lifecycle.no_data_state == NoDataState::KeepLast
                || lifecycle.exec_err_state == ExecErrState::KeepLast =>
            {
                Some(StateReason::KeepLast)
            }
            Observed::NoData => Some(StateReason::NoData),
            Observed::Error => Some(StateReason::Error),
        };
        self.resolved = from == AlertState::Alerting && self.state == AlertState::Normal;
        if from == self.state && from_reason == self.reason {
            return None;
        }
        Some(Transition {
            from,
            from_reason,
            to: self.state,
            reason: self.reason,
            at_ms: now_ms,
            previous_lasted_ms: now_ms - from_starts,
            value: self.last_value,
            error: self.error.clone(),
        })
    }

    /// Grafana 10.4's `NeedsSending`: never for Pending; for Normal only the evaluation that
    /// resolved a firing alert; firing states when they were last sent at least `RESEND_DELAY`
    /// before this evaluation (or never).
    pub fn needs_sending(&self) -> bool {
        match self.state {
            AlertState::Pending => false,
            AlertState::Normal => self.resolved,
            _ => match (self.last_sent_ms, self.last_evaluation_ms) {
                (None, _) => true,
                (Some(sent), Some(evaluated)) => {
                    sent + RESEND_DELAY.as_millis() as i64 <= evaluated
                }
                (Some(_), None) => false,
            },
        }
    }
}

/// The provisioned rule's lifecycle (every minute, `for: 2m`, NoData, Error), for tests.
#[cfg(test)]
pub(crate) fn minute_lifecycle() -> Lifecycle {
    Lifecycle {
        pending_period: Duration::from_secs(120),
        interval: Duration::from_secs(60),
        no_data_state: NoDataState::NoData,
        exec_err_state: ExecErrState::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertState::*;

    /// Grafana's test interval (`evaluationInterval := 10 * time.Second`); tN = N intervals.
    const INTERVAL_MS: i64 = 10_000;

    fn t(n: i64) -> i64 {
        n * INTERVAL_MS
    }

    /// `ends(n)`: EndsAt of a firing state evaluated at tN: tN + 4 × max(10 s, 30 s).
    fn ends(n: i64) -> i64 {
        t(n) + 4 * 30_000
    }

    /// A rule like Grafana's `baseRule` (NoData / Error), `for` = `for_n` intervals
    /// (`WithForNTimes`).
    fn rule(for_n: u64, no_data: NoDataState, exec_err: ExecErrState) -> Lifecycle {
        Lifecycle {
            pending_period: Duration::from_millis(for_n * INTERVAL_MS as u64),
            interval: Duration::from_millis(INTERVAL_MS as u64),
            no_data_state: no_data,
            exec_err_state: exec_err,
        }
    }

    fn base(for_n: u64) -> Lifecycle {
        rule(for_n, NoDataState::NoData, ExecErrState::Error)
    }

    const N: Evaluation = Evaluation::Value {
        value: 100.0,
        met: false,
    };
    const A: Evaluation = Evaluation::Value {
        value: 10_000.0,
        met: true,
    };
    const ND: Evaluation = Evaluation::NoData;

    fn err() -> Evaluation {
        Evaluation::Error("[sse.dataQueryError] failed to execute query [A]".into())
    }

    /// What a row expects after an evaluation: state, reason, StartsAt, EndsAt.
    type Expect = (AlertState, Option<StateReason>, i64, i64);

    /// Runs evaluations at t1, t2, … and checks the state after each against `expected`
    /// (`None` where Grafana's row asserts nothing at that time).
    fn check(row: &str, l: &Lifecycle, results: &[Evaluation], expected: &[Option<Expect>]) {
        assert_eq!(results.len(), expected.len(), "{row}: table shape");
        let mut s = RuleState::new(0);
        for (i, (result, want)) in results.iter().zip(expected).enumerate() {
            let n = i as i64 + 1;
            s.apply(l, result, t(n));
            if let Some(want) = want {
                let got = (s.state, s.reason, s.starts_at_ms, s.ends_at_ms);
                assert_eq!(got, *want, "{row}: at t{n}");
            }
        }
    }

    const R_ND: Option<StateReason> = Some(StateReason::NoData);
    const R_ERR: Option<StateReason> = Some(StateReason::Error);
    const R_KEEP: Option<StateReason> = Some(StateReason::KeepLast);

    // ---- Rows of TestProcessEvalResults_StateTransitions (single series, labels {}) ----

    #[test]
    fn normal_and_alerting_rows() {
        check(
            "t1[{}:normal] at t1",
            &base(0),
            &[N],
            &[Some((Normal, None, t(1), t(1)))],
        );
        check(
            "t1[{}:alerting] at t1",
            &base(0),
            &[A],
            &[Some((Alerting, None, t(1), ends(1)))],
        );
        check(
            "t1[{}:alerting] and 'for'>0 at t1",
            &base(3),
            &[A],
            &[Some((Pending, None, t(1), ends(1)))],
        );
        check(
            "t1[{}:normal] t2[{}:alerting] at t2",
            &base(0),
            &[N, A],
            &[None, Some((Alerting, None, t(2), ends(2)))],
        );
        check(
            "t1[1:alerting] t2[1:alerting] t3[1:alerting] and 'for'=2 at t1,t2,t3",
            &base(2),
            &[A, A, A],
            &[
                Some((Pending, None, t(1), ends(1))),
                Some((Pending, None, t(1), ends(1))),
                Some((Alerting, None, t(3), ends(3))),
            ],
        );
        check(
            "t1[1:alerting], t2[1:normal] and 'for'=2 at t2",
            &base(2),
            &[A, N],
            &[None, Some((Normal, None, t(2), t(2)))],
        );
        check(
            "t1:[1:alerting] t2[1:normal] at t2 (resolved)",
            &base(0),
            &[A, N],
            &[None, Some((Normal, None, t(2), t(2)))],
        );
    }

    #[test]
    fn alerting_is_maintained_and_resolved_once() {
        let l = base(0);
        let mut s = RuleState::new(0);
        s.apply(&l, &A, t(1));
        s.apply(&l, &A, t(2));
        assert_eq!(
            (s.state, s.starts_at_ms, s.ends_at_ms),
            (Alerting, t(1), ends(2))
        );
        s.apply(&l, &N, t(3));
        assert!(s.resolved, "Alerting → Normal is Grafana's Resolved");
        s.apply(&l, &N, t(4));
        assert!(!s.resolved, "only the evaluation that resolved it");
    }

    #[test]
    fn no_data_rows_for_each_no_data_state() {
        let nodata = rule(0, NoDataState::NoData, ExecErrState::Error);
        let alerting = rule(0, NoDataState::Alerting, ExecErrState::Error);
        let ok = rule(0, NoDataState::Ok, ExecErrState::Error);
        // t1[NoData] at t1
        check(
            "t1[NoData] NoData",
            &nodata,
            &[ND],
            &[Some((NoData, None, t(1), ends(1)))],
        );
        check(
            "t1[NoData] Alerting",
            &alerting,
            &[ND],
            &[Some((Alerting, R_ND, t(1), ends(1)))],
        );
        check(
            "t1[NoData] OK",
            &ok,
            &[ND],
            &[Some((Normal, R_ND, t(1), t(1)))],
        );
        // t1[{}:alerting] t2[NoData] t3[NoData] at t3 (series without labels)
        check(
            "t1[{}:alerting] t2[NoData] t3[NoData] NoData",
            &nodata,
            &[A, ND, ND],
            &[
                None,
                Some((NoData, None, t(2), ends(2))),
                Some((NoData, None, t(2), ends(3))),
            ],
        );
        check(
            "t1[{}:alerting] t2[NoData] t3[NoData] Alerting",
            &alerting,
            &[A, ND, ND],
            &[
                None,
                Some((Alerting, R_ND, t(1), ends(2))),
                Some((Alerting, R_ND, t(1), ends(3))),
            ],
        );
        check(
            "t1[{}:alerting] t2[NoData] t3[NoData] OK",
            &ok,
            &[A, ND, ND],
            &[
                None,
                Some((Normal, R_ND, t(2), t(2))),
                Some((Normal, R_ND, t(2), t(2))),
            ],
        );
    }

    #[test]
    fn no_data_has_no_pending_period_and_leaving_it_pends() {
        // "t1[{}:alerting] t2[NoData] t3[{}:alerting] and 'for'=2 at t2*,t3". Grafana's row
        // gives the NoData result the labels of a query that returned no frames, a separate
        // instance; here the NoData comes from B having no value for the same series (the
        // Elasticsearch query always returns its buckets), so the one instance goes straight
        // to NoData and, on the next breach, through Pending again (resultAlerting's default).
        let nodata = rule(2, NoDataState::NoData, ExecErrState::Error);
        check(
            "for=2, NoData",
            &nodata,
            &[A, ND, A],
            &[
                Some((Pending, None, t(1), ends(1))),
                Some((NoData, None, t(2), ends(2))),
                Some((Pending, None, t(3), ends(3))),
            ],
        );
        let alerting = rule(2, NoDataState::Alerting, ExecErrState::Error);
        check(
            "for=2, NoData as Alerting",
            &alerting,
            &[A, ND, A],
            &[
                None,
                Some((Pending, R_ND, t(1), ends(1))),
                Some((Alerting, None, t(3), ends(3))),
            ],
        );
        let ok = rule(2, NoDataState::Ok, ExecErrState::Error);
        check(
            "for=2, NoData as OK",
            &ok,
            &[A, ND, A],
            &[
                None,
                Some((Normal, R_ND, t(2), t(2))),
                Some((Pending, None, t(3), ends(3))),
            ],
        );
        // "t1[1:normal,2:alerting] t2[NoData] t3[NoData] and 'for'=1": NoData as Alerting
        // pends first (t2), then fires (t3).
        check(
            "for=1, NoData as Alerting",
            &rule(1, NoDataState::Alerting, ExecErrState::Error),
            &[N, ND, ND],
            &[
                None,
                Some((Pending, R_ND, t(2), ends(2))),
                Some((Alerting, R_ND, t(3), ends(3))),
            ],
        );
    }

    #[test]
    fn error_rows_for_each_exec_err_state() {
        let error = rule(0, NoDataState::NoData, ExecErrState::Error);
        let alerting = rule(0, NoDataState::NoData, ExecErrState::Alerting);
        let ok = rule(0, NoDataState::NoData, ExecErrState::Ok);
        // t1[QueryError] at t1
        check(
            "t1[QueryError] Error",
            &error,
            &[err()],
            &[Some((Error, None, t(1), ends(1)))],
        );
        check(
            "t1[QueryError] Alerting",
            &alerting,
            &[err()],
            &[Some((Alerting, R_ERR, t(1), ends(1)))],
        );
        check(
            "t1[QueryError] OK",
            &ok,
            &[err()],
            &[Some((Normal, R_ERR, t(1), t(1)))],
        );
        // t1[QueryError] t2[{}:normal] at t2
        check(
            "t1[QueryError] t2[{}:normal] Error",
            &error,
            &[err(), N],
            &[None, Some((Normal, None, t(2), t(2)))],
        );
        // "t1[{}:alerting] t2[QueryError] and 'for'=1 at t1*,t2"
        check(
            "for=1, Error",
            &rule(1, NoDataState::NoData, ExecErrState::Error),
            &[A, err()],
            &[
                Some((Pending, None, t(1), ends(1))),
                Some((Error, None, t(2), ends(2))),
            ],
        );
        check(
            "for=1, Error as Alerting",
            &rule(1, NoDataState::NoData, ExecErrState::Alerting),
            &[A, err()],
            &[None, Some((Alerting, R_ERR, t(2), ends(2)))],
        );
        check(
            "for=1, Error as OK",
            &rule(1, NoDataState::NoData, ExecErrState::Ok),
            &[A, err()],
            &[None, Some((Normal, R_ERR, t(2), t(2)))],
        );
        // "t1[{}:alerting] t2[QueryError] t3[{}:alerting] and 'for'=2 at t2,t3": leaving Error
        // on a breach pends first.
        check(
            "for=2, Error",
            &rule(2, NoDataState::NoData, ExecErrState::Error),
            &[A, err(), A],
            &[
                None,
                Some((Error, None, t(2), ends(2))),
                Some((Pending, None, t(3), ends(3))),
            ],
        );
        check(
            "for=2, Error as Alerting",
            &rule(2, NoDataState::NoData, ExecErrState::Alerting),
            &[A, err(), A],
            &[
                None,
                Some((Pending, R_ERR, t(1), ends(1))),
                Some((Alerting, None, t(3), ends(3))),
            ],
        );
        check(
            "for=2, Error as OK",
            &rule(2, NoDataState::NoData, ExecErrState::Ok),
            &[A, err(), A],
            &[
                None,
                Some((Normal, R_ERR, t(2), t(2))),
                Some((Pending, None, t(3), ends(3))),
            ],
        );
    }

    #[test]
    fn keep_last_follows_result_keep_last() {
        let keep = rule(2, NoDataState::KeepLast, ExecErrState::KeepLast);
        // A kept Pending still fires once `for` has passed.
        check(
            "Pending kept until for passes",
            &keep,
            &[A, ND, err()],
            &[
                Some((Pending, None, t(1), ends(1))),
                Some((Pending, R_KEEP, t(1), ends(1))),
                Some((Alerting, R_KEEP, t(3), ends(3))),
            ],
        );
        // Alerting is kept (and maintained); Normal is kept.
        let keep0 = rule(0, NoDataState::KeepLast, ExecErrState::KeepLast);
        check(
            "Alerting kept",
            &keep0,
            &[A, ND, err()],
            &[
                None,
                Some((Alerting, R_KEEP, t(1), ends(2))),
                Some((Alerting, R_KEEP, t(1), ends(3))),
            ],
        );
        check(
            "Normal kept",
            &keep0,
            &[N, ND],
            &[None, Some((Normal, R_KEEP, t(1), t(1)))],
        );
        // A kept NoData (entered while noDataState was NoData) becomes Normal.
        let mut s = RuleState::new(0);
        s.apply(&base(0), &ND, t(1));
        assert_eq!(s.state, NoData);
        s.apply(&keep0, &ND, t(2));
        assert_eq!((s.state, s.reason, s.starts_at_ms), (Normal, R_KEEP, t(2)));
    }

    #[test]
    fn transitions_report_state_or_reason_changes() {
        let l = rule(0, NoDataState::Alerting, ExecErrState::Error);
        let mut s = RuleState::new(0);
        assert_eq!(s.apply(&l, &N, t(1)), None, "Normal stays Normal");
        let tr = s.apply(&l, &A, t(2)).unwrap();
        assert_eq!(
            (tr.from, tr.to, tr.previous_lasted_ms),
            (Normal, Alerting, t(1)),
            "Normal since the first evaluation (t1)"
        );
        assert_eq!(s.apply(&l, &A, t(3)), None);
        let tr = s.apply(&l, &ND, t(4)).unwrap();
        assert_eq!(
            (tr.from, tr.from_reason, tr.to, tr.reason),
            (Alerting, None, Alerting, R_ND),
            "Alerting → Alerting (NoData) is a change in Grafana"
        );
    }

    #[test]
    fn sending_follows_needs_sending() {
        let l = rule(1, NoDataState::NoData, ExecErrState::Error);
        let mut s = RuleState::new(0);
        s.apply(&l, &A, t(1));
        assert!(!s.needs_sending(), "Pending is never sent");
        s.apply(&l, &A, t(2));
        assert!(s.needs_sending(), "first Alerting evaluation");
        s.last_sent_ms = Some(t(2));
        s.apply(&l, &A, t(3));
        assert!(
            !s.needs_sending(),
            "10 s after sending: within the 30 s resend delay"
        );
        s.apply(&l, &A, t(5));
        assert!(s.needs_sending(), "30 s after sending");
        s.last_sent_ms = Some(t(5));
        s.apply(&l, &N, t(6));
        assert!(
            s.needs_sending(),
            "the resolving evaluation is sent at once"
        );
        s.last_sent_ms = Some(t(6));
        s.apply(&l, &N, t(9));
        assert!(!s.needs_sending(), "Normal afterwards is not");
        s.apply(&l, &ND, t(10));
        assert!(s.needs_sending(), "NoData is sent");
        s.last_sent_ms = Some(t(10));
        s.apply(&l, &N, t(11));
        assert!(
            !s.needs_sending(),
            "NoData → Normal is not resolved explicitly: the alert expires at its EndsAt"
        );
    }

    #[test]
    fn ends_at_is_four_times_the_interval_or_resend_delay() {
        let mut l = base(0);
        assert_eq!(l.next_ends_ms(0), 120_000, "10 s interval: 4 × 30 s");
        l.interval = Duration::from_secs(60);
        assert_eq!(l.next_ends_ms(0), 240_000, "1 m interval: 4 × 1 m");
    }
}
