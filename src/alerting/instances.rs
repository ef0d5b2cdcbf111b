//! The alert instances of one rule, as Grafana 10.4's state manager keeps them
//! (`ProcessEvalResults`): one state per label set of the results (one per series — per
//! `job` for a rule split by a terms aggregation — and the rule-level instance without labels
//! that carries NoData when no series came back at all, and errors), each through the state
//! machine of [`super::state`]. An instance whose series has been missing for two evaluation
//! intervals is stale (`stateIsStale`: last evaluation + 2 × interval ≤ now): it becomes
//! Normal with reason MissingSeries, is sent resolved if it was Alerting, and is removed
//! (`deleteStaleStatesFromCache`). With `noDataState: NoData`, as provisioned, NoData is its own
//! instance and does not touch the per-series ones (Grafana applies NoData to every instance
//! only for the Alerting/OK/KeepLast mappings behind a feature flag that is off in 10.4).
//!
//! Pure: results and times are passed in.

use super::evaluation::{Labels, Results};
use super::state::{AlertState, Lifecycle, RuleState, StateReason, Transition};
use serde::Serialize;
use std::collections::BTreeMap;

/// One instance's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceState {
    /// The instance's labels (its series').
    pub labels: Labels,
    /// Its state.
    pub state: RuleState,
}

/// A change of one instance's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceTransition {
    /// The instance's labels.
    pub labels: Labels,
    /// The change.
    #[serde(flatten)]
    pub transition: Transition,
}

/// What one evaluation changed and what it sends.
#[derive(Debug, Default)]
pub struct Applied {
    /// Changes of state, results first (in their order), then stale instances.
    pub transitions: Vec<InstanceTransition>,
    /// States to send to Alertmanager now (already marked sent), resolved stale ones included.
    pub to_send: Vec<InstanceState>,
}

/// Every instance of a rule.
#[derive(Debug, Clone, Default)]
pub struct RuleInstances {
    instances: BTreeMap<Labels, RuleState>,
}

/// `{job="checkout"}`; `{}` for the rule-level instance.
pub fn labels_text(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

impl RuleInstances {
    /// The current instances, by labels.
    pub fn states(&self) -> Vec<InstanceState> {
        self.instances
            .iter()
            .map(|(labels, state)| InstanceState {
                labels: labels.clone(),
                state: state.clone(),
            })
            .collect()
    }

    /// Whether any instance is firing (Alerting, NoData or Error).
    pub fn any_firing(&self) -> bool {
        self.instances.values().any(|s| s.state.is_firing())
    }

    /// Applies the results of an evaluation at `now_ms`. With `sending`, the states Grafana
    /// would send to Alertmanager are marked sent and returned.
    pub fn apply(
        &mut self,
        lifecycle: &Lifecycle,
        results: &Results,
        now_ms: i64,
        sending: bool,
    ) -> Applied {
        let mut applied = Applied::default();
        for (labels, evaluation) in results {
            let state = self
                .instances
                .entry(labels.clone())
                .or_insert_with(|| RuleState::new(now_ms));
            if let Some(transition) = state.apply(lifecycle, evaluation, now_ms) {
                applied.transitions.push(InstanceTransition {
                    labels: labels.clone(),
                    transition,
                });
            }
            if sending && state.needs_sending() {
                // Grafana marks the state sent when it hands it to its senders.
                state.last_sent_ms = Some(now_ms);
                applied.to_send.push(InstanceState {
                    labels: labels.clone(),
                    state: state.clone(),
                });
            }
        }
        let missing_for = 2 * lifecycle.interval.as_millis() as i64;
        let stale: Vec<Labels> = self
            .instances
            .iter()
            .filter(|(_, s)| {
                s.last_evaluation_ms
                    .is_some_and(|last| last + missing_for <= now_ms)
            })
            .map(|(labels, _)| labels.clone())
            .collect();
        for labels in stale {
            let mut state = self.instances.remove(&labels).expect("listed above");
            let (from, from_reason) = (state.state, state.reason);
            let previous_lasted_ms = now_ms - state.starts_at_ms;
            // deleteStaleStatesFromCache: StartsAt is kept, EndsAt is now.
            state.state = AlertState::Normal;
            state.reason = Some(StateReason::MissingSeries);
            state.ends_at_ms = now_ms;
            state.last_evaluation_ms = Some(now_ms);
            state.last_value = None;
            state.error = None;
            state.resolved = from == AlertState::Alerting;
            applied.transitions.push(InstanceTransition {
                labels: labels.clone(),
                transition: Transition {
                    from,
                    from_reason,
                    to: AlertState::Normal,
                    reason: state.reason,
                    at_ms: now_ms,
                    previous_lasted_ms,
                    value: None,
                    error: None,
                },
            });
            if sending && state.needs_sending() {
                state.last_sent_ms = Some(now_ms);
                applied.to_send.push(InstanceState { labels, state });
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::evaluation::Evaluation;
    use AlertState::*;

    const MIN: i64 = 60_000;

    fn lifecycle() -> Lifecycle {
        crate::alerting::state::minute_lifecycle()
    }

    fn job(name: &str) -> Labels {
        [("job".to_string(), name.to_string())].into()
    }

    fn value(over: bool) -> Evaluation {
        Evaluation::Value {
            value: if over { 250.0 } else { -4_000.0 },
            met: over,
        }
    }

    fn state_of(instances: &RuleInstances, labels: &Labels) -> Option<AlertState> {
        instances
            .states()
            .into_iter()
            .find(|i| &i.labels == labels)
            .map(|i| i.state.state)
    }

    #[test]
    fn each_series_has_its_own_state_machine() {
        let mut r = RuleInstances::default();
        let l = lifecycle();
        for minute in 0..4 {
            let results = vec![
                (job("checkout"), value(true)),
                (job("visits"), value(false)),
            ];
            r.apply(&l, &results, minute * MIN, true);
        }
        assert_eq!(state_of(&r, &job("checkout")), Some(Alerting));
        assert_eq!(state_of(&r, &job("visits")), Some(Normal));
        assert!(r.any_firing());
    }

    #[test]
    fn a_missing_series_is_resolved_after_two_intervals_and_removed() {
        let mut r = RuleInstances::default();
        let l = lifecycle();
        let both = vec![
            (job("checkout"), value(true)),
            (job("visits"), value(false)),
        ];
        for minute in 0..3 {
            r.apply(&l, &both, minute * MIN, true);
        }
        assert_eq!(state_of(&r, &job("checkout")), Some(Alerting));
        let only_visits = vec![(job("visits"), value(false))];
        // One interval without the series: kept, nothing sent for it.
        let applied = r.apply(&l, &only_visits, 3 * MIN, true);
        assert!(applied.transitions.is_empty(), "{:?}", applied.transitions);
        assert_eq!(state_of(&r, &job("checkout")), Some(Alerting));
        // Two intervals: Normal (MissingSeries), sent resolved, gone.
        let applied = r.apply(&l, &only_visits, 4 * MIN, true);
        let [t] = applied.transitions.as_slice() else {
            panic!("{:?}", applied.transitions)
        };
        assert_eq!(
            (t.labels.clone(), t.transition.from, t.transition.to),
            (job("checkout"), Alerting, Normal)
        );
        assert_eq!(t.transition.reason, Some(StateReason::MissingSeries));
        let [sent] = applied.to_send.as_slice() else {
            panic!("{:?}", applied.to_send)
        };
        assert_eq!(sent.labels, job("checkout"));
        assert!(sent.state.resolved);
        assert_eq!(sent.state.ends_at_ms, 4 * MIN);
        assert_eq!(state_of(&r, &job("checkout")), None);
        assert_eq!(state_of(&r, &job("visits")), Some(Normal));
    }

    #[test]
    fn a_series_without_a_value_is_no_data_for_its_own_instance_only() {
        let mut r = RuleInstances::default();
        let l = lifecycle();
        let results = vec![
            (job("checkout"), Evaluation::NoData),
            (job("visits"), value(false)),
        ];
        let applied = r.apply(&l, &results, 0, true);
        assert_eq!(state_of(&r, &job("checkout")), Some(NoData));
        assert_eq!(state_of(&r, &job("visits")), Some(Normal));
        assert_eq!(state_of(&r, &Labels::new()), None, "no rule-level instance");
        let [sent] = applied.to_send.as_slice() else {
            panic!("{:?}", applied.to_send)
        };
        assert_eq!(sent.labels, job("checkout"));
    }

    #[test]
    fn no_series_at_all_is_a_rule_level_no_data_instance_beside_the_others() {
        let mut r = RuleInstances::default();
        let l = lifecycle();
        r.apply(&l, &vec![(job("visits"), value(false))], 0, true);
        let nothing = vec![(Labels::new(), Evaluation::NoData)];
        let applied = r.apply(&l, &nothing, MIN, true);
        assert_eq!(state_of(&r, &Labels::new()), Some(NoData));
        assert_eq!(
            state_of(&r, &job("visits")),
            Some(Normal),
            "untouched, not yet stale"
        );
        assert_eq!(applied.to_send.len(), 1, "NoData is sent at once");
        r.apply(&l, &nothing, 2 * MIN, true);
        assert_eq!(
            state_of(&r, &job("visits")),
            None,
            "stale after two intervals"
        );
        // Data again: the NoData instance goes stale in turn, Normal and not resolved (its
        // DatasourceNoData alert expires in Alertmanager).
        let back = vec![(job("visits"), value(false))];
        r.apply(&l, &back, 3 * MIN, true);
        let applied = r.apply(&l, &back, 4 * MIN, true);
        assert_eq!(state_of(&r, &Labels::new()), None);
        assert!(applied.to_send.is_empty(), "{:?}", applied.to_send);
        assert_eq!(applied.transitions[0].transition.from, NoData);
    }
}
