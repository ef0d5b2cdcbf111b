//! The backtest gate: requirements on a rule's score (`--require
//! 'recall>=1,precision>=0.9,detection<=5m'`), checked so that a rule change can fail CI the
//! way `promtool test rules` fails a Prometheus rule change.

use super::score::Numbers;
use std::fmt;

/// A number of the score a requirement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Share of incidents notified (0–1).
    Recall,
    /// Share of notifications that overlapped an incident (0–1).
    Precision,
    /// Share of the time Alerting that lay inside incidents (0–1).
    TimePrecision,
    /// Longest detection time (a duration; a missed incident is infinitely late).
    Detection,
    /// Longest reset time (a duration; an alert still firing never reset).
    Reset,
    /// Notifications sent.
    Notifications,
    /// Notifications that overlapped no incident.
    FalseNotifications,
}

impl Metric {
    const ALL: [(&'static str, Metric); 7] = [
        ("recall", Metric::Recall),
        ("precision", Metric::Precision),
        ("time_precision", Metric::TimePrecision),
        ("detection", Metric::Detection),
        ("reset", Metric::Reset),
        ("notifications", Metric::Notifications),
        ("false_notifications", Metric::FalseNotifications),
    ];

    fn name(self) -> &'static str {
        Metric::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .expect("every metric is named")
    }

    fn is_duration(self) -> bool {
        matches!(self, Metric::Detection | Metric::Reset)
    }

    /// The value in `numbers` (durations in ms; infinity when unbounded).
    fn value(self, numbers: &Numbers) -> f64 {
        let ms = |v: Option<i64>| v.map_or(f64::INFINITY, |ms| ms as f64);
        match self {
            Metric::Recall => numbers.recall,
            Metric::Precision => numbers.precision,
            Metric::TimePrecision => numbers.time_precision,
            Metric::Detection => ms(numbers.detection_max_ms),
            Metric::Reset => ms(numbers.reset_max_ms),
            Metric::Notifications => numbers.notifications as f64,
            Metric::FalseNotifications => numbers.false_notifications as f64,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`
    AtLeast,
    /// `<=`
    AtMost,
    /// `>`
    Above,
    /// `<`
    Below,
    /// `=` or `==`
    Equal,
}

impl Comparison {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::AtLeast => value >= bound,
            Comparison::AtMost => value <= bound,
            Comparison::Above => value > bound,
            Comparison::Below => value < bound,
            Comparison::Equal => value == bound,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::AtMost => "<=",
            Comparison::Above => ">",
            Comparison::Below => "<",
            Comparison::Equal => "=",
        }
    }
}

/// One requirement, e.g. `detection<=5m`.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// What is compared.
    pub metric: Metric,
    /// How.
    pub comparison: Comparison,
    /// With what (durations in ms).
    pub bound: f64,
}

/// A requirement that cannot be read, with what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("--require {text:?}: {problem}")]
pub struct RequirementError {
    text: String,
    problem: String,
}

/// Reads `recall>=1,precision>=0.9,detection<=5m`.
pub fn parse(text: &str) -> Result<Vec<Requirement>, RequirementError> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_one)
        .collect()
}

fn parse_one(text: &str) -> Result<Requirement, RequirementError> {
    let error = |problem: String| RequirementError {
        text: text.to_string(),
        problem,
    };
    let operators = [
        (">=", Comparison::AtLeast),
        ("<=", Comparison::AtMost),
        ("==", Comparison::Equal),
        (">", Comparison::Above),
        ("<", Comparison::Below),
        ("=", Comparison::Equal),
    ];
    let (position, symbol, comparison) = operators
        .iter()
        .filter_map(|(s, c)| text.find(s).map(|p| (p, *s, *c)))
        .min_by_key(|(p, s, _)| (*p, std::cmp::Reverse(s.len())))
        .ok_or_else(|| error("no comparison: write e.g. recall>=1 or detection<=5m".into()))?;
    let (name, bound) = (
        text[..position].trim(),
        text[position + symbol.len()..].trim(),
    );
    let metric = Metric::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|(n, _)| *n).collect();
            error(format!(
                "unknown measure {name:?}; one of {}",
                names.join(", ")
            ))
        })?;
    let bound = if metric.is_duration() {
        humantime::parse_duration(bound)
            .map_err(|e| error(format!("{bound:?} is not a duration such as 5m: {e}")))?
            .as_millis() as f64
    } else {
        bound
            .parse::<f64>()
            .map_err(|_| error(format!("{bound:?} is not a number")))?
    };
    Ok(Requirement {
        metric,
        comparison,
        bound,
    })
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.metric.name(),
            self.comparison.symbol(),
            show(self.metric, self.bound)
        )
    }
}

fn show(metric: Metric, value: f64) -> String {
    if !value.is_finite() {
        return "unbounded".into();
    }
    if metric.is_duration() {
        return super::backtest::signed_duration(Some(value as i64));
    }
    format!("{value}")
}

/// The requirements `numbers` fail, each said with the value found
/// (`detection 7m 30s, required <=5m`).
pub fn failures(requirements: &[Requirement], numbers: &Numbers) -> Vec<String> {
    requirements
        .iter()
        .filter_map(|r| {
            let value = r.metric.value(numbers);
            (!r.comparison.holds(value, r.bound)).then(|| {
                format!(
                    "{} {}, required {}{}",
                    r.metric.name(),
                    show(r.metric, value),
                    r.comparison.symbol(),
                    show(r.metric, r.bound)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers() -> Numbers {
        Numbers {
            notifications: 4,
            false_notifications: 1,
            precision: 0.75,
            time_precision: 0.9,
            recall: 1.0,
            detection_max_ms: Some(450_000),
            detection_mean_ms: Some(200_000),
            reset_max_ms: None,
            firing_ms: 1,
        }
    }

    #[test]
    fn reads_requirements_and_names_each_failure_with_its_value() {
        let r = parse("recall>=1, precision>=0.9,detection<=5m,false_notifications<2").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[2].bound, 300_000.0);
        assert_eq!(r[0].to_string(), "recall>=1");
        let failed = failures(&r, &numbers());
        assert_eq!(
            failed,
            vec![
                "precision 0.75, required >=0.9".to_string(),
                "detection 7m 30s, required <=5m".to_string()
            ]
        );
        let reset = parse("reset<=10m").unwrap();
        assert_eq!(
            failures(&reset, &numbers()),
            vec!["reset unbounded, required <=10m".to_string()]
        );
    }

    #[test]
    fn refuses_unreadable_requirements_saying_what_to_write() {
        for (text, says) in [
            ("recall", "no comparison"),
            ("speed>=1", "unknown measure"),
            ("detection<=soon", "not a duration"),
            ("recall>=all", "not a number"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
