//! `alerts report`: true percentiles, SLA compliance and the error budget over any range, per
//! job, per UTC day and in total — computed by Elasticsearch aggregations over the window
//! documents' `latency_histogram` (every record counted once, whatever the windows), never by
//! averaging per-window percentiles. Where completeness documents exist (monitors with
//! `--source-topic`), records that entered the pipeline and never arrived within the SLA
//! (overdue or lost) count as misses too: in what is judged, and against the budget.
//!
//! This module builds the search and reads its answer (no I/O).

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The percentiles reported.
pub const PERCENTILES: [f64; 4] = [50.0, 75.0, 90.0, 99.0];

/// Compression of Elasticsearch's t-digest for the percentiles over the histogram field. The
/// default (100) was measured up to 2.6 % off over 200 windows of log-normal latencies; 1000
/// with `high_accuracy` within 0.15 %.
pub const PERCENTILE_COMPRESSION: u32 = 1_000;

/// What to report on.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    /// Windows starting at or after this (Unix ms).
    pub from_ms: i64,
    /// …and before this.
    pub to_ms: i64,
    /// Only this job (the monitor's `--job-name`); every job when `None`, each on its own.
    pub job: Option<String>,
    /// Judge against this threshold (ms) instead of the SLA stored with each window.
    pub sla_ms: Option<i64>,
    /// The objective: the share of records that must be within the SLA (0–1, e.g. 0.995).
    pub objective: f64,
    /// Per value of this dimension (`--dimension NAME=…` of the monitor): the report is over
    /// the value documents (`<index>-dimensions`), one per job and value.
    pub by: Option<String>,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    /// The objective is not a share strictly between 0 and 1.
    #[error("the objective {0} is not a percentage strictly between 0 and 100 (e.g. 99.5)")]
    Objective(f64),
    /// The SLA is not positive.
    #[error("the SLA {0} ms is not positive")]
    Sla(i64),
    /// `--by` names no possible dimension.
    #[error("--by {0:?} is not a dimension name (1 to 64 letters, digits, '_' and '-', starting with a letter, as in --dimension NAME=…)")]
    By(String),
    /// Elasticsearch answered something else than the aggregations asked for.
    #[error("unexpected Elasticsearch answer: {0}")]
    Answer(String),
}

impl ReportRequest {
    /// Checks the request's settings.
    pub fn check(&self) -> Result<(), ReportError> {
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(ReportError::Objective(self.objective * 100.0));
        }
        if let Some(sla) = self.sla_ms.filter(|&s| s <= 0) {
            return Err(ReportError::Sla(sla));
        }
        if let Some(by) = &self.by {
            if !crate::dimension::spec::is_dimension_name(by) {
                return Err(ReportError::By(by.clone()));
            }
        }
        Ok(())
    }

    /// Per job (and per value with `by`), `inner` aggregations.
    fn per_job(&self, inner: Value) -> Value {
        let inner = match &self.by {
            Some(name) => json!({ "values": {
                "terms": { "field": format!("dimensions.{name}"), "size": 10_000, "order": { "_key": "asc" } },
                "aggs": inner
            } }),
            None => inner,
        };
        json!({ "jobs": { "terms": { "field": "job", "size": 1000, "order": { "_key": "asc" } },
                          "aggs": inner } })
    }

    fn figures_aggs(&self) -> Value {
        let mut aggs = json!({
            "records": { "sum": { "field": "count" } },
            "within_stored_sla": { "sum": { "field": "within_sla_count" } },
            "records_in_histograms": { "value_count": { "field": "latency_histogram" } },
            "percentiles": { "percentiles": {
                "field": "latency_histogram",
                "percents": PERCENTILES,
                "tdigest": { "compression": PERCENTILE_COMPRESSION, "execution_hint": "high_accuracy" }
            } },
            "stored_slas": { "terms": { "field": "sla_ms", "size": 20 } }
        });
        if self.by.is_some() {
            aggs["elsewhere"] = json!({ "sum": { "field": "records_elsewhere_at_most" } });
        }
        if let Some(sla) = self.sla_ms {
            // Latencies are whole milliseconds: within the SLA is below sla + 1 (a range's `to`
            // is exclusive).
            aggs["within_sla"] =
                json!({ "range": { "field": "latency_histogram", "ranges": [{ "to": sla + 1 }] } });
        }
        aggs
    }

    fn filter(&self) -> Vec<Value> {
        let mut filter = vec![json!({ "range": { "@timestamp": {
            "gte": self.from_ms, "lt": self.to_ms, "format": "epoch_millis"
        } } })];
        if let Some(job) = &self.job {
            filter.push(json!({ "term": { "job": job } }));
        }
        filter
    }

    /// The search body for the completeness index (`<index>-completeness`): per job and UTC
    /// day of the source windows, the records still missing past the SLA in each window's
    /// latest document (overdue + lost).
    pub fn completeness_search_body(&self) -> Value {
        let missing = json!({ "missing": { "sum": { "field": "missing" } } });
        let mut per_job = missing.clone();
        per_job["days"] = json!({
            "date_histogram": {
                "field": "@timestamp", "calendar_interval": "1d", "time_zone": "UTC",
                "min_doc_count": 1, "format": "epoch_millis"
            },
            "aggs": missing
        });
        json!({
            "size": 0,
            "track_total_hits": false,
            "query": { "bool": { "filter": self.filter() } },
            "aggs": { "jobs": { "terms": { "field": "job", "size": 1000, "order": { "_key": "asc" } },
                                "aggs": per_job } }
        })
    }

    /// The search body (for the window index).
    pub fn search_body(&self) -> Value {
        let filter = self.filter();
        let mut per_job = self.figures_aggs();
        per_job["days"] = json!({
            "date_histogram": {
                "field": "@timestamp", "calendar_interval": "1d", "time_zone": "UTC",
                "min_doc_count": 1, "format": "epoch_millis"
            },
            "aggs": self.figures_aggs()
        });
        json!({
            "size": 0,
            "track_total_hits": false,
            "query": { "bool": { "filter": filter } },
            "aggs": self.per_job(per_job)
        })
    }
}

/// The figures of one period (a day, or the whole range) of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    /// Start of the day (Unix ms); the range's start for the total.
    pub start_ms: i64,
    /// Records in the windows.
    pub records: u64,
    /// Records of windows carrying `latency_histogram` (older documents have none): the
    /// percentiles, and compliance with `--sla`, are over these.
    pub records_in_histograms: u64,
    /// True percentiles (percent, ms) over every record; empty without histograms.
    pub percentiles: Vec<(f64, f64)>,
    /// Records within the SLA.
    pub within_sla: u64,
    /// Records the compliance is over (`records`, or `records_in_histograms` with `--sla`).
    pub judged: u64,
    /// `within_sla / judged` (1 when nothing was judged).
    pub compliance: f64,
    /// Records over the SLA (`judged - within_sla`).
    pub bad: u64,
    /// Share of the range's error budget these bad records used (1 = all of it).
    pub budget_consumed: f64,
    /// Share of the range's budget left after this period (cumulative, may go negative).
    pub budget_left: f64,
    /// Records that entered the pipeline and never arrived within the SLA (overdue or lost,
    /// from the completeness documents): counted in `judged` and `bad`.
    pub missing: u64,
    /// The SLAs (ms) stored with the windows of the period.
    pub stored_slas: Vec<i64>,
    /// With `--by`: how many of the value's records may have been counted under `__other__`
    /// in windows where it had a document (0: these figures hold every one of its records
    /// there; windows where it had none are not in them at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_elsewhere_at_most: Option<u64>,
}

/// One job's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    /// The job.
    pub job: String,
    /// With `--by`: the dimension value (`__other__` for the values without documents of
    /// their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The whole range.
    pub total: Period,
    /// Per UTC day that has windows, in order.
    pub days: Vec<Period>,
}

/// The answer to a [`ReportRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Range start (Unix ms).
    pub from_ms: i64,
    /// Range end (Unix ms).
    pub to_ms: i64,
    /// The threshold asked for, or `None` for the SLA stored with each window.
    pub sla_ms: Option<i64>,
    /// The objective (0–1).
    pub objective: f64,
    /// The dimension reported per value (`--by`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// One per job with windows in the range (per job and value with `--by`).
    pub jobs: Vec<JobReport>,
}

fn number(value: &Value, what: &str) -> Result<f64, ReportError> {
    value
        .as_f64()
        .ok_or_else(|| ReportError::Answer(format!("{what} is missing")))
}

/// The figures of one aggregation bucket, before the budget (which needs the total).
fn figures(bucket: &Value, request: &ReportRequest, start_ms: i64) -> Result<Period, ReportError> {
    let records = number(&bucket["records"]["value"], "records")? as u64;
    let in_histograms = number(
        &bucket["records_in_histograms"]["value"],
        "records_in_histograms",
    )? as u64;
    let percentiles = if in_histograms == 0 {
        Vec::new()
    } else {
        PERCENTILES
            .iter()
            .map(|&p| {
                let key = format!("{p:.1}");
                number(&bucket["percentiles"]["values"][&key], "a percentile").map(|v| (p, v))
            })
            .collect::<Result<_, _>>()?
    };
    let (within_sla, judged) = match request.sla_ms {
        None => (
            number(&bucket["within_stored_sla"]["value"], "within_sla_count")? as u64,
            records,
        ),
        Some(_) => (
            number(
                &bucket["within_sla"]["buckets"][0]["doc_count"],
                "the SLA range",
            )? as u64,
            in_histograms,
        ),
    };
    let stored_slas = bucket["stored_slas"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["key"].as_i64())
        .collect();
    Ok(Period {
        start_ms,
        records,
        records_in_histograms: in_histograms,
        percentiles,
        within_sla,
        judged,
        compliance: if judged == 0 {
            1.0
        } else {
            within_sla as f64 / judged as f64
        },
        bad: judged.saturating_sub(within_sla),
        budget_consumed: 0.0,
        budget_left: 0.0,
        missing: 0,
        stored_slas,
        records_elsewhere_at_most: request
            .by
            .as_ref()
            .map(|_| bucket["elsewhere"]["value"].as_f64().unwrap_or(0.0) as u64),
    })
}

/// Records missing past the SLA per job: in total, and per UTC day (start, Unix ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MissingRecords {
    /// Per job: the total and the days.
    pub by_job: BTreeMap<String, (u64, BTreeMap<i64, u64>)>,
}

/// Reads the answer to [`ReportRequest::completeness_search_body`].
pub fn parse_missing(answer: &Value) -> Result<MissingRecords, ReportError> {
    let mut by_job = BTreeMap::new();
    for (job, bucket) in job_buckets(answer)? {
        let total = number(&bucket["missing"]["value"], "missing")? as u64;
        let mut days = BTreeMap::new();
        for day in bucket["days"]["buckets"].as_array().into_iter().flatten() {
            let start = day_start(day)?;
            days.insert(start, number(&day["missing"]["value"], "missing")? as u64);
        }
        by_job.insert(job.to_string(), (total, days));
    }
    Ok(MissingRecords { by_job })
}

/// The per-job buckets of a search's answer, with each job's name.
fn job_buckets(answer: &Value) -> Result<Vec<(&str, &Value)>, ReportError> {
    let buckets = answer["aggregations"]["jobs"]["buckets"]
        .as_array()
        .ok_or_else(|| ReportError::Answer("no jobs aggregation".into()))?;
    buckets
        .iter()
        .map(|bucket| {
            let job = bucket["key"]
                .as_str()
                .ok_or_else(|| ReportError::Answer("a job without a name".into()))?;
            Ok((job, bucket))
        })
        .collect()
}

/// The start (Unix ms) of a day bucket.
fn day_start(day: &Value) -> Result<i64, ReportError> {
    day["key"]
        .as_i64()
        .or_else(|| day["key"].as_str().and_then(|k| k.parse().ok()))
        .ok_or_else(|| ReportError::Answer("a day without a key".into()))
}

/// Counts `missing` records as judged and bad in `period`.
fn add_missing(period: &mut Period, missing: u64) {
    period.missing = missing;
    period.judged += missing;
    period.bad += missing;
    period.compliance = if period.judged == 0 {
        1.0
    } else {
        period.within_sla as f64 / period.judged as f64
    };
}

/// Reads the search's answer, counting the `missing` records of each job as misses.
pub fn parse(
    answer: &Value,
    request: &ReportRequest,
    missing: &MissingRecords,
) -> Result<Report, ReportError> {
    let mut jobs = Vec::new();
    for (job, bucket) in job_buckets(answer)? {
        if request.by.is_none() {
            jobs.push(job_report(job, None, bucket, request, missing)?);
            continue;
        }
        for value in bucket["values"]["buckets"].as_array().into_iter().flatten() {
            let name = super::super::alerting::es_query::text(&value["key"])
                .ok_or_else(|| ReportError::Answer("a value without a key".into()))?;
            jobs.push(job_report(job, Some(name), value, request, missing)?);
        }
    }
    Ok(Report {
        from_ms: request.from_ms,
        to_ms: request.to_ms,
        sla_ms: request.sla_ms,
        objective: request.objective,
        by: request.by.clone(),
        jobs,
    })
}

/// One job's (or, with `value`, one of its values') report from its aggregation bucket.
fn job_report(
    job: &str,
    value: Option<String>,
    bucket: &Value,
    request: &ReportRequest,
    missing: &MissingRecords,
) -> Result<JobReport, ReportError> {
    {
        let job = job.to_string();
        let mut total = figures(bucket, request, request.from_ms)?;
        let no_days = BTreeMap::new();
        let (missing_total, missing_days) = missing
            .by_job
            .get(&job)
            .map_or((0, &no_days), |(total, days)| (*total, days));
        add_missing(&mut total, missing_total);
        // The budget of the range: the bad records the objective allows over all it judged.
        let allowed = (1.0 - request.objective) * total.judged as f64;
        let share = |bad: u64| {
            if bad == 0 {
                0.0
            } else if allowed > 0.0 {
                bad as f64 / allowed
            } else {
                f64::INFINITY
            }
        };
        let mut left = 1.0;
        let mut days = Vec::new();
        for day in bucket["days"]["buckets"].as_array().into_iter().flatten() {
            let start = day_start(day)?;
            let mut period = figures(day, request, start)?;
            add_missing(&mut period, missing_days.get(&start).copied().unwrap_or(0));
            period.budget_consumed = share(period.bad);
            left -= period.budget_consumed;
            period.budget_left = left;
            days.push(period);
        }
        total.budget_consumed = share(total.bad);
        total.budget_left = 1.0 - total.budget_consumed;
        Ok(JobReport {
            job,
            value,
            total,
            days,
        })
    }
}

fn day_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.3} %", share * 100.0)
    } else {
        "all (objective 100 %)".into()
    }
}

fn period_line(label: &str, p: &Period) -> String {
    let percentiles = if p.percentiles.is_empty() {
        "no latency histograms".to_string()
    } else {
        p.percentiles
            .iter()
            .map(|(q, v)| format!("p{q:.0} {v:.0} ms"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let missing = if p.missing > 0 {
        format!("  {} missing (never arrived within the SLA)", p.missing)
    } else {
        String::new()
    };
    format!(
        "  {label:<10} {:>12} records  {percentiles}  compliance {}  budget used {}  left {}{missing}",
        p.records,
        percent(p.compliance),
        percent(p.budget_consumed),
        percent(p.budget_left),
    )
}

/// The report as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let sla = match report.sla_ms {
        Some(ms) => format!("latency <= {ms} ms"),
        None => "the SLA stored with each window".into(),
    };
    out.push_str(&format!(
        "SLO report {} to {} (UTC days), judged against {sla}, objective {}\n",
        crate::alerting::backtest::iso(report.from_ms),
        crate::alerting::backtest::iso(report.to_ms),
        percent(report.objective)
    ));
    if report.jobs.is_empty() {
        out.push_str("  no window documents in this range\n");
    }
    if let Some(name) = &report.by {
        out.push_str(&format!(
            "  per value of {name}: over the windows in which the value had a document of its \
             own (a value's records in other windows are under __other__)\n"
        ));
    }
    for job in &report.jobs {
        let t = &job.total;
        let value = match (&report.by, &job.value) {
            (Some(name), Some(value)) => format!(", {name}={value}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "job {}{value} (stored SLA {}):\n",
            job.job,
            t.stored_slas
                .iter()
                .map(|s| format!("{s} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for day in &job.days {
            out.push_str(&period_line(&day_text(day.start_ms), day));
            out.push('\n');
        }
        out.push_str(&period_line("total", t));
        out.push('\n');
        if let Some(elsewhere) = t.records_elsewhere_at_most.filter(|&n| n > 0) {
            out.push_str(&format!(
                "  up to {elsewhere} of its records may be counted under __other__ instead \
                 (windows where a partition kept too many values; docs/dimensions.md)\n"
            ));
        }
        if t.records_in_histograms < t.records {
            out.push_str(&format!(
                "  {} records are in windows written before latency_histogram existed: \
                 the percentiles{} leave them out\n",
                t.records - t.records_in_histograms,
                if report.sla_ms.is_some() {
                    " and the compliance"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sla_ms: Option<i64>) -> ReportRequest {
        ReportRequest {
            from_ms: 0,
            to_ms: 2 * 86_400_000,
            job: Some("sync".into()),
            sla_ms,
            objective: 0.99,
            by: None,
        }
    }

    fn bucket(records: u64, within_stored: u64, in_histograms: u64, within: u64) -> Value {
        json!({
            "records": { "value": records as f64 },
            "within_stored_sla": { "value": within_stored as f64 },
            "records_in_histograms": { "value": in_histograms },
            "percentiles": { "values": { "50.0": 10.0, "75.0": 20.0, "90.0": 30.0, "99.0": 40.0 } },
            "within_sla": { "buckets": [{ "to": 3001.0, "doc_count": within }] },
            "stored_slas": { "buckets": [{ "key": 5000, "doc_count": 3 }] }
        })
    }

    #[test]
    fn the_search_asks_for_every_figure_per_job_and_day() {
        let body = request(Some(3_000)).search_body();
        let per_job = &body["aggs"]["jobs"]["aggs"];
        assert_eq!(per_job["within_sla"]["range"]["ranges"][0]["to"], 3_001);
        assert_eq!(
            per_job["percentiles"]["percentiles"]["field"],
            "latency_histogram"
        );
        assert_eq!(per_job["days"]["date_histogram"]["calendar_interval"], "1d");
        assert!(per_job["days"]["aggs"]["within_sla"].is_object());
        assert_eq!(body["query"]["bool"]["filter"][1]["term"]["job"], "sync");
        assert!(request(None).search_body()["aggs"]["jobs"]["aggs"]["within_sla"].is_null());
    }

    /// Job `sync`: 2,000 records over two days (995 and 975 within the stored SLA).
    fn two_days_of_sync() -> Value {
        let mut total = bucket(2_000, 1_970, 2_000, 1_900);
        total["key"] = json!("sync");
        let mut day1 = bucket(1_000, 995, 1_000, 990);
        day1["key"] = json!(0);
        let mut day2 = bucket(1_000, 975, 1_000, 910);
        day2["key"] = json!(86_400_000);
        total["days"] = json!({ "buckets": [day1, day2] });
        json!({ "aggregations": { "jobs": { "buckets": [total] } } })
    }

    #[test]
    fn budget_is_shared_out_over_the_days() {
        let answer = two_days_of_sync();
        // Stored SLA: 30 bad of 2000, 20 allowed.
        let report = parse(&answer, &request(None), &MissingRecords::default()).unwrap();
        let job = &report.jobs[0];
        assert_eq!((job.total.bad, job.total.judged), (30, 2_000));
        assert!((job.total.budget_consumed - 1.5).abs() < 1e-12);
        assert!((job.days[0].budget_consumed - 0.25).abs() < 1e-12);
        assert!((job.days[1].budget_left - -0.5).abs() < 1e-12);
        assert!((job.total.compliance - 0.985).abs() < 1e-12);
        // Another threshold: from the histogram range.
        let report = parse(&answer, &request(Some(3_000)), &MissingRecords::default()).unwrap();
        assert_eq!(report.jobs[0].total.bad, 100);
        assert_eq!(report.jobs[0].days[1].within_sla, 910);
        let text = render_text(&report);
        assert!(text.contains("p99 40 ms"), "{text}");
        assert!(text.contains("latency <= 3000 ms"), "{text}");
    }

    #[test]
    fn records_that_never_arrived_are_misses_of_their_job_and_day() {
        let answer = two_days_of_sync();
        let completeness = json!({ "aggregations": { "jobs": { "buckets": [
            { "key": "sync", "missing": { "value": 10.0 }, "days": { "buckets": [
                { "key": 86_400_000, "missing": { "value": 10.0 } }
            ] } },
            { "key": "other", "missing": { "value": 4.0 }, "days": { "buckets": [] } }
        ] } } });
        let missing = parse_missing(&completeness).unwrap();
        let report = parse(&answer, &request(None), &missing).unwrap();
        let job = &report.jobs[0];
        // 30 slow and 10 missing of 2010 judged; 20.1 allowed.
        assert_eq!(
            (job.total.bad, job.total.judged, job.total.missing),
            (40, 2_010, 10)
        );
        assert!((job.total.compliance - 1_970.0 / 2_010.0).abs() < 1e-12);
        assert!((job.total.budget_consumed - 40.0 / 20.1).abs() < 1e-9);
        assert_eq!((job.days[0].missing, job.days[0].bad), (0, 5));
        assert_eq!((job.days[1].missing, job.days[1].bad), (10, 35));
        assert!(render_text(&report).contains("10 missing"));
        let body = request(None).completeness_search_body();
        assert_eq!(
            body["aggs"]["jobs"]["aggs"]["missing"]["sum"]["field"],
            "missing"
        );
        assert_eq!(body["query"]["bool"]["filter"][1]["term"]["job"], "sync");
    }

    #[test]
    fn impossible_settings_are_refused() {
        let mut r = request(None);
        r.objective = 1.0;
        assert!(r.check().is_err());
        r.objective = 0.995;
        assert!(r.check().is_ok());
        r.sla_ms = Some(0);
        assert!(r.check().is_err());
    }
}
