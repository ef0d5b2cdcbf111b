//! Per-value SLAs (`--sla-for tenant=gold:500ms`): the SLA a record, and a value's document,
//! is judged against when its value of a dimension is named by a rule. Several rules can match
//! a record of several dimensions: the strictest (shortest) SLA wins, so naming a stricter
//! tier never loosens another.

use super::spec::{key_values, Dimension, DimensionError};
use std::str::FromStr;
use std::time::Duration;

/// One `--sla-for NAME=VALUE:DURATION`, as written (its dimension resolved by
/// [`SlaRules::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaFor {
    /// The dimension's name.
    pub dimension: String,
    /// The value, as the dimension's documents spell it.
    pub value: String,
    /// The SLA of that value's records.
    pub sla: Duration,
}

impl FromStr for SlaFor {
    type Err = DimensionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            DimensionError::new(format!(
                "{text:?} is not a per-value SLA: write NAME=VALUE:DURATION, e.g. \
                 tenant=gold:500ms (NAME a --dimension)"
            ))
        };
        let (dimension, rest) = text.split_once('=').ok_or_else(usage)?;
        let (value, duration) = rest.rsplit_once(':').ok_or_else(usage)?;
        if dimension.is_empty() || value.is_empty() {
            return Err(usage());
        }
        let sla = humantime::parse_duration(duration).map_err(|e| {
            DimensionError::new(format!(
                "--sla-for {text}: {duration:?} is not a duration like 500ms or 2s ({e})"
            ))
        })?;
        if sla.is_zero() || sla > Duration::from_secs(24 * 3600) {
            return Err(DimensionError::new(format!(
                "--sla-for {text}: the SLA must be from 1ms to 1 day"
            )));
        }
        Ok(SlaFor {
            dimension: dimension.to_string(),
            value: value.to_string(),
            sla,
        })
    }
}

/// A job's per-value SLAs, resolved against its dimensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaRules {
    /// (the dimension's position in a key, value, SLA in ms).
    rules: Vec<(usize, String, i64)>,
}

impl SlaRules {
    /// Resolves `rules` against `dimensions`; a rule naming no dimension is refused, as is a
    /// value named twice.
    pub fn new(dimensions: &[Dimension], rules: &[SlaFor]) -> Result<Self, DimensionError> {
        let mut resolved: Vec<(usize, String, i64)> = Vec::with_capacity(rules.len());
        for rule in rules {
            let Some(position) = dimensions.iter().position(|d| d.name == rule.dimension) else {
                let names: Vec<&str> = dimensions.iter().map(|d| d.name.as_str()).collect();
                return Err(DimensionError::new(format!(
                    "--sla-for {}={}: no --dimension is named {} (dimensions: {})",
                    rule.dimension,
                    rule.value,
                    rule.dimension,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            };
            if resolved
                .iter()
                .any(|(p, v, _)| *p == position && *v == rule.value)
            {
                return Err(DimensionError::new(format!(
                    "--sla-for {}={} is given twice",
                    rule.dimension, rule.value
                )));
            }
            let ms = rule.sla.as_millis().min(i64::MAX as u128) as i64;
            resolved.push((position, rule.value.clone(), ms));
        }
        Ok(SlaRules { rules: resolved })
    }

    /// Whether no value has an SLA of its own.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The SLA (ms) of a record or value whose key is `key`: the strictest rule matching one
    /// of its values, else `default_ms`.
    pub fn sla_for(&self, key: &str, default_ms: i64) -> i64 {
        if self.rules.is_empty() {
            return default_ms;
        }
        let mut sla: Option<i64> = None;
        for (position, value) in key_values(key).enumerate() {
            for (p, v, ms) in &self.rules {
                if *p == position && v == value {
                    sla = Some(sla.map_or(*ms, |s| s.min(*ms)));
                }
            }
        }
        sla.unwrap_or(default_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimension::spec::KEY_SEPARATOR;

    fn dimensions(names: &[&str]) -> Vec<Dimension> {
        names
            .iter()
            .map(|n| format!("{n}=field:/{n}").parse().unwrap())
            .collect()
    }

    #[test]
    fn parses_and_refuses_with_the_fix() {
        let rule: SlaFor = "tenant=gold:500ms".parse().unwrap();
        assert_eq!(rule.dimension, "tenant");
        assert_eq!(rule.value, "gold");
        assert_eq!(rule.sla, Duration::from_millis(500));
        let colon: SlaFor = "endpoint=/a:b:2s".parse().unwrap();
        assert_eq!(colon.value, "/a:b", "the duration follows the last colon");
        for bad in ["tenant", "tenant=gold", "=gold:1s", "tenant=:1s"] {
            let e = bad.parse::<SlaFor>().unwrap_err().to_string();
            assert!(e.contains("NAME=VALUE:DURATION"), "{bad}: {e}");
        }
        let e = "tenant=gold:fast"
            .parse::<SlaFor>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a duration"), "{e}");
        let e = "tenant=gold:0s".parse::<SlaFor>().unwrap_err().to_string();
        assert!(e.contains("1ms to 1 day"), "{e}");
    }

    #[test]
    fn a_rule_must_name_a_dimension_once() {
        let dims = dimensions(&["tenant"]);
        let e = SlaRules::new(&dims, &["region=eu:1s".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no --dimension is named region"), "{e}");
        let twice = [
            "tenant=a:1s".parse().unwrap(),
            "tenant=a:2s".parse().unwrap(),
        ];
        let e = SlaRules::new(&dims, &twice).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn the_strictest_matching_rule_wins() {
        let dims = dimensions(&["tenant", "region"]);
        let rules = SlaRules::new(
            &dims,
            &[
                "tenant=gold:500ms".parse().unwrap(),
                "region=eu:200ms".parse().unwrap(),
                "region=gold:50ms".parse().unwrap(),
            ],
        )
        .unwrap();
        let key = |t: &str, r: &str| format!("{t}{KEY_SEPARATOR}{r}");
        assert_eq!(rules.sla_for(&key("gold", "us"), 5_000), 500);
        assert_eq!(rules.sla_for(&key("gold", "eu"), 5_000), 200);
        assert_eq!(rules.sla_for(&key("free", "us"), 5_000), 5_000);
        assert_eq!(
            rules.sla_for(&key("eu", "us"), 5_000),
            5_000,
            "a value matches its own dimension only"
        );
        assert!(SlaRules::default().is_empty());
        assert_eq!(SlaRules::default().sla_for("gold", 7), 7);
    }
}
