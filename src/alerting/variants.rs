//! What-if variants of a rule for backtests (`--set for=5m,threshold=4000`): the same history
//! replayed with a changed pending period, threshold or interval, side by side with the rule
//! as provisioned, so a team can pick the settings that detect fastest without paging on
//! noise.

use super::evaluation::{Evaluation, Results};
use super::expressions::Threshold;
use super::rule::AlertRule;
use std::time::Duration;

/// Changes to a rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Variant {
    /// How it is shown: the settings as given (`for=5m,threshold=4000`), `as provisioned` for
    /// the rule itself.
    pub name: String,
    /// A new pending period (`for`).
    pub pending_period: Option<Duration>,
    /// A new threshold: one bound (above/below rules) or two (range rules).
    pub threshold: Option<Vec<f64>>,
    /// A new evaluation interval.
    pub interval: Option<Duration>,
}

/// A variant that cannot be read, with what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("--set {text:?}: {problem}")]
pub struct VariantError {
    text: String,
    problem: String,
}

impl Variant {
    /// The rule as provisioned.
    pub fn provisioned() -> Self {
        Variant {
            name: "as provisioned".into(),
            ..Variant::default()
        }
    }

    /// Reads `for=5m,threshold=4000,interval=30s` (`threshold=a..b` for range rules).
    pub fn parse(text: &str) -> Result<Self, VariantError> {
        let error = |problem: String| VariantError {
            text: text.to_string(),
            problem,
        };
        let mut variant = Variant {
            name: text.trim().to_string(),
            ..Variant::default()
        };
        for setting in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| error(format!("{setting:?} is not key=value")))?;
            let duration = |value: &str| {
                humantime::parse_duration(value.trim())
                    .map_err(|e| error(format!("{key}: {value:?} is not a duration: {e}")))
            };
            match key.trim() {
                "for" => variant.pending_period = Some(duration(value)?),
                "interval" => {
                    let interval = duration(value)?;
                    if interval < Duration::from_secs(1) {
                        return Err(error("interval: at least 1s".into()));
                    }
                    variant.interval = Some(interval);
                }
                "threshold" => {
                    let bounds = value
                        .split("..")
                        .map(|b| b.trim().parse::<f64>())
                        .collect::<Result<Vec<f64>, _>>()
                        .map_err(|_| {
                            error(format!("threshold: {value:?} is not a number (or a..b)"))
                        })?;
                    variant.threshold = Some(bounds);
                }
                other => {
                    return Err(error(format!(
                        "unknown setting {other:?}; one of for, threshold, interval"
                    )))
                }
            }
        }
        if variant == Variant::default() || variant.name.is_empty() {
            return Err(error("no setting given".into()));
        }
        Ok(variant)
    }

    /// The rule with this variant's changes; an error when a threshold does not fit the rule's
    /// kind of threshold (one bound for above/below, two for ranges).
    pub fn apply(&self, rule: &AlertRule) -> Result<AlertRule, VariantError> {
        let mut changed = rule.clone();
        if let Some(pending) = self.pending_period {
            changed.pending_period = pending;
        }
        if let Some(interval) = self.interval {
            changed.interval = interval;
        }
        if let Some(bounds) = &self.threshold {
            changed.threshold = match (rule.threshold, bounds.as_slice()) {
                (Threshold::Above(_), [t]) => Threshold::Above(*t),
                (Threshold::Below(_), [t]) => Threshold::Below(*t),
                (Threshold::WithinRange(..), [a, b]) => Threshold::WithinRange(*a, *b),
                (Threshold::OutsideRange(..), [a, b]) => Threshold::OutsideRange(*a, *b),
                (kind, _) => {
                    return Err(VariantError {
                        text: self.name.clone(),
                        problem: format!(
                            "rule {:?} has a {kind:?} threshold: give {}",
                            rule.title,
                            match kind {
                                Threshold::Above(_) | Threshold::Below(_) => "one number",
                                _ => "a range a..b",
                            }
                        ),
                    })
                }
            };
        }
        Ok(changed)
    }
}

/// Evaluations of the same queries judged against `rule`'s threshold: the values do not
/// depend on it, so a threshold variant needs no new query.
pub fn rejudge(rule: &AlertRule, evaluations: &[(i64, Results)]) -> Vec<(i64, Results)> {
    evaluations
        .iter()
        .map(|(at, results)| {
            let results = results
                .iter()
                .map(|(labels, e)| {
                    let e = match e {
                        Evaluation::Value { value, .. } => Evaluation::Value {
                            value: *value,
                            met: rule.threshold.is_met(*value),
                        },
                        other => other.clone(),
                    };
                    (labels.clone(), e)
                })
                .collect();
            (*at, results)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::evaluation::Labels;
    use crate::alerting::rule::provisioned_sla_rule;

    #[test]
    fn reads_settings_and_changes_only_those() {
        let rule = provisioned_sla_rule();
        let v = Variant::parse("for=5m, threshold=250").unwrap();
        assert_eq!(v.name, "for=5m, threshold=250");
        let changed = v.apply(&rule).unwrap();
        assert_eq!(changed.pending_period, Duration::from_secs(300));
        assert_eq!(changed.threshold, Threshold::Above(250.0));
        assert_eq!(changed.interval, rule.interval);
        assert_eq!(changed.query, rule.query);
    }

    #[test]
    fn refuses_unknown_or_misfitting_settings() {
        for (text, says) in [
            ("speed=3", "unknown setting"),
            ("for=soon", "not a duration"),
            ("threshold=high", "not a number"),
            ("interval=10ms", "at least 1s"),
            ("for", "not key=value"),
            ("", "no setting"),
        ] {
            let e = Variant::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let range = Variant::parse("threshold=1..2").unwrap();
        let e = range
            .apply(&provisioned_sla_rule())
            .unwrap_err()
            .to_string();
        assert!(e.contains("one number"), "{e}");
    }

    #[test]
    fn rejudging_applies_the_new_threshold_to_the_same_values() {
        let mut rule = provisioned_sla_rule();
        rule.threshold = Threshold::Above(100.0);
        let evaluations = vec![(
            0,
            vec![
                (
                    Labels::new(),
                    Evaluation::Value {
                        value: 50.0,
                        met: true,
                    },
                ),
                (Labels::new(), Evaluation::NoData),
            ],
        )];
        let judged = rejudge(&rule, &evaluations);
        assert_eq!(
            judged[0].1[0].1,
            Evaluation::Value {
                value: 50.0,
                met: false
            }
        );
        assert_eq!(judged[0].1[1].1, Evaluation::NoData);
    }
}
