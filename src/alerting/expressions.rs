//! Grafana server-side expressions used by alert rules: Reduce and Threshold.

use serde::Deserialize;

/// Reduce function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReduceFunction {
    /// The last value.
    Last,
    /// The mean.
    Mean,
    /// The maximum.
    Max,
    /// The minimum.
    Min,
    /// The sum.
    Sum,
    /// The number of values.
    Count,
}

/// How a reducer treats null/NaN values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReduceMode {
    /// Nulls make the result NaN (Grafana's default mode).
    Strict,
    /// Nulls are dropped.
    DropNonNumbers,
    /// Nulls are replaced by this value.
    ReplaceNonNumbers(f64),
}

/// A Reduce expression: series → one number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reduce {
    /// Function.
    pub function: ReduceFunction,
    /// Null handling.
    pub mode: ReduceMode,
}

impl Reduce {
    /// Reduces a series. `None` means no data (an empty series, or nothing left after
    /// dropping nulls); `Some(NaN)` is a strict reduction over nulls, as in Grafana.
    pub fn apply(&self, series: &[Option<f64>]) -> Option<f64> {
        let values: Vec<f64> = match self.mode {
            ReduceMode::Strict => series.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
            ReduceMode::DropNonNumbers => series
                .iter()
                .filter_map(|v| v.filter(|x| x.is_finite()))
                .collect(),
            ReduceMode::ReplaceNonNumbers(r) => series
                .iter()
                .map(|v| v.filter(|x| x.is_finite()).unwrap_or(r))
                .collect(),
        };
        if values.is_empty() {
            return None;
        }
        Some(match self.function {
            ReduceFunction::Last => *values.last().expect("non-empty"),
            ReduceFunction::Mean => values.iter().sum::<f64>() / values.len() as f64,
            ReduceFunction::Max => values.iter().copied().fold(f64::NEG_INFINITY, |a, b| {
                if b.is_nan() || a.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }),
            ReduceFunction::Min => values.iter().copied().fold(f64::INFINITY, |a, b| {
                if b.is_nan() || a.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }),
            ReduceFunction::Sum => values.iter().sum(),
            ReduceFunction::Count => values.len() as f64,
        })
    }
}

/// A Threshold expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Firing when the value is above.
    Above(f64),
    /// Firing when the value is below.
    Below(f64),
    /// Firing when the value is strictly inside the range.
    WithinRange(f64, f64),
    /// Firing when the value is strictly outside the range.
    OutsideRange(f64, f64),
}

impl Threshold {
    /// Whether the condition holds for `value` (NaN never holds).
    pub fn is_met(&self, value: f64) -> bool {
        match *self {
            Threshold::Above(t) => value > t,
            Threshold::Below(t) => value < t,
            Threshold::WithinRange(a, b) => value > a && value < b,
            Threshold::OutsideRange(a, b) => value < a || value > b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reduce(function: ReduceFunction, mode: ReduceMode, series: &[Option<f64>]) -> Option<f64> {
        Reduce { function, mode }.apply(series)
    }

    #[test]
    fn last_with_drop_nn_skips_trailing_empty_buckets() {
        let s = [Some(1.0), Some(9000.0), None, None];
        assert_eq!(
            reduce(ReduceFunction::Last, ReduceMode::DropNonNumbers, &s),
            Some(9000.0)
        );
        assert!(reduce(ReduceFunction::Last, ReduceMode::Strict, &s)
            .unwrap()
            .is_nan());
        assert_eq!(
            reduce(ReduceFunction::Last, ReduceMode::ReplaceNonNumbers(0.0), &s),
            Some(0.0)
        );
        assert_eq!(
            reduce(
                ReduceFunction::Last,
                ReduceMode::DropNonNumbers,
                &[None, None]
            ),
            None
        );
        assert_eq!(reduce(ReduceFunction::Last, ReduceMode::Strict, &[]), None);
    }

    #[test]
    fn other_reducers() {
        let s = [Some(1.0), Some(3.0), None];
        let d = ReduceMode::DropNonNumbers;
        assert_eq!(reduce(ReduceFunction::Mean, d, &s), Some(2.0));
        assert_eq!(reduce(ReduceFunction::Max, d, &s), Some(3.0));
        assert_eq!(reduce(ReduceFunction::Min, d, &s), Some(1.0));
        assert_eq!(reduce(ReduceFunction::Sum, d, &s), Some(4.0));
        assert_eq!(reduce(ReduceFunction::Count, d, &s), Some(2.0));
    }

    #[test]
    fn thresholds() {
        assert!(Threshold::Above(5000.0).is_met(5000.1));
        assert!(!Threshold::Above(5000.0).is_met(5000.0));
        assert!(!Threshold::Above(5000.0).is_met(f64::NAN));
        assert!(Threshold::Below(1.0).is_met(0.5));
        assert!(Threshold::WithinRange(1.0, 3.0).is_met(2.0));
        assert!(!Threshold::WithinRange(1.0, 3.0).is_met(3.0));
        assert!(Threshold::OutsideRange(1.0, 3.0).is_met(4.0));
    }
}
