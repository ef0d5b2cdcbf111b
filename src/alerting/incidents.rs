//! Known incidents: the stretches of time a team knows its pipeline missed its SLA (from its
//! postmortems or incident tracker), against which a backtest scores a rule (see `score`).
//!
//! The file is YAML, a list of incidents (or a map with an `incidents:` list):
//!
//! ```yaml
//! - name: checkout consumer stuck        # how the team calls it
//!   start: 2026-11-20T10:04:00Z          # RFC 3339
//!   end: 2026-11-20T10:31:00Z
//!   job: checkout-sla                    # optional: only that pipeline's alert instances
//! ```

use super::evaluation::Labels;
use chrono::DateTime;
use serde::{Deserialize, Serialize};

/// One known incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// Its name.
    pub name: String,
    /// When it began (Unix ms).
    pub start_ms: i64,
    /// When it was over (Unix ms, after `start_ms`).
    pub end_ms: i64,
    /// The pipeline (`job` label of the window documents) it concerns; `None`: every one.
    pub job: Option<String>,
}

impl Incident {
    /// Whether an alert instance with `labels` is the one expected to notify of this
    /// incident: every instance for an incident of no particular job, else the instance of
    /// that job (and an instance without a `job` label, which covers every pipeline).
    pub fn concerns(&self, labels: &Labels) -> bool {
        match (&self.job, labels.get("job")) {
            (Some(job), Some(instance_job)) => job == instance_job,
            _ => true,
        }
    }

    /// Whether `[from_ms, to_ms]` overlaps the incident.
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        from_ms <= self.end_ms && to_ms >= self.start_ms
    }

    /// Milliseconds of `[from_ms, to_ms)` inside the incident.
    pub fn overlap_ms(&self, from_ms: i64, to_ms: i64) -> i64 {
        (to_ms.min(self.end_ms) - from_ms.max(self.start_ms)).max(0)
    }
}

/// An incidents file that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum IncidentsError {
    /// Not YAML of the expected shape.
    #[error("not a list of incidents ({{name, start, end, job?}}): {0}")]
    Shape(#[from] serde_norway::Error),
    /// A time is not RFC 3339.
    #[error("incident {name:?}: {field} {value:?} is not an RFC 3339 time (2026-11-20T10:04:00Z)")]
    Time {
        /// The incident.
        name: String,
        /// `start` or `end`.
        field: &'static str,
        /// What the file says.
        value: String,
    },
    /// The end is not after the start, or a name is empty.
    #[error("incident {name:?}: {problem}")]
    Invalid {
        /// The incident.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentSpec {
    name: String,
    start: String,
    end: String,
    #[serde(default)]
    job: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileSpec {
    List(Vec<IncidentSpec>),
    Map { incidents: Vec<IncidentSpec> },
}

/// Reads an incidents file (see the module documentation), sorted by start.
pub fn parse(yaml: &str) -> Result<Vec<Incident>, IncidentsError> {
    let specs = match serde_norway::from_str::<FileSpec>(yaml)? {
        FileSpec::List(specs) | FileSpec::Map { incidents: specs } => specs,
    };
    let mut incidents = specs
        .into_iter()
        .map(|spec| {
            let time = |field: &'static str, value: &str| {
                DateTime::parse_from_rfc3339(value)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| IncidentsError::Time {
                        name: spec.name.clone(),
                        field,
                        value: value.to_string(),
                    })
            };
            let (start_ms, end_ms) = (time("start", &spec.start)?, time("end", &spec.end)?);
            let invalid = |problem: &str| IncidentsError::Invalid {
                name: spec.name.clone(),
                problem: problem.to_string(),
            };
            if spec.name.trim().is_empty() {
                return Err(invalid("the name is empty"));
            }
            if end_ms <= start_ms {
                return Err(invalid("end is not after start"));
            }
            Ok(Incident {
                name: spec.name,
                start_ms,
                end_ms,
                job: spec.job,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    incidents.sort_by_key(|i| (i.start_ms, i.end_ms));
    Ok(incidents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_list_or_a_map_sorted_by_start() {
        let list = "- {name: b, start: '2026-11-20T11:00:00Z', end: '2026-11-20T11:10:00Z', job: checkout}\n\
                    - {name: a, start: '2026-11-20T10:00:00+01:00', end: '2026-11-20T10:30:00+01:00'}\n";
        let incidents = parse(list).unwrap();
        assert_eq!(incidents[0].name, "a");
        let nine_utc = DateTime::parse_from_rfc3339("2026-11-20T09:00:00Z").unwrap();
        assert_eq!(incidents[0].start_ms, nine_utc.timestamp_millis());
        assert_eq!(incidents[1].job.as_deref(), Some("checkout"));
        let map = format!("incidents:\n{}", list.replace("- ", "  - "));
        assert_eq!(parse(&map).unwrap(), incidents);
    }

    #[test]
    fn refuses_what_cannot_be_an_incident_saying_which_and_why() {
        let bad_time = "- {name: x, start: yesterday, end: '2026-11-20T10:00:00Z'}";
        let e = parse(bad_time).unwrap_err().to_string();
        assert!(
            e.contains("\"x\"") && e.contains("start") && e.contains("RFC 3339"),
            "{e}"
        );
        let reversed = "- {name: y, start: '2026-11-20T10:00:00Z', end: '2026-11-20T09:00:00Z'}";
        let e = parse(reversed).unwrap_err().to_string();
        assert!(e.contains("end is not after start"), "{e}");
        let unknown =
            "- {name: z, start: '2026-11-20T10:00:00Z', end: '2026-11-20T11:00:00Z', severity: 1}";
        assert!(parse(unknown).is_err());
    }

    #[test]
    fn an_incident_of_a_job_concerns_that_job_and_job_less_instances() {
        let incident = parse(
            "- {name: x, start: '2026-11-20T10:00:00Z', end: '2026-11-20T11:00:00Z', job: a}",
        )
        .unwrap()
        .remove(0);
        let job = |j: &str| Labels::from([("job".to_string(), j.to_string())]);
        assert!(incident.concerns(&job("a")));
        assert!(!incident.concerns(&job("b")));
        assert!(incident.concerns(&Labels::new()));
        let (s, e) = (incident.start_ms, incident.end_ms);
        assert!(incident.overlaps(e, e + 1) && !incident.overlaps(e + 1, e + 2));
        assert_eq!(incident.overlap_ms(s - 10, s + 10), 10);
    }
}
