//! What the `alerts` job does for each of its commands, so the binary only parses flags: the
//! rules loaded and checked against their data sources, the time range of a backtest or
//! report, the evaluation times of a backtest (bounded before anything is allocated), and the
//! backtest itself — every rule and variant replayed, scored and gated.

use super::backtest;
use super::datasource;
use super::evaluation::Results;
use super::incidents::{self, Incident};
use super::report::Run;
use super::requirements::{self, Requirement};
use super::rule::{self, AlertRule};
use super::score;
use super::state::Lifecycle;
use super::variants::{self, Variant};
use crate::sink::elasticsearch::{completeness_index_of, values_index_of};
use anyhow::Context;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Evaluations per `_msearch` request of a backtest.
const BACKTEST_BATCH: usize = 500;

/// `_msearch` requests of a backtest under way at once (Elasticsearch runs them on its search
/// threads; one at a time left its cores idle between requests).
const BACKTEST_CONCURRENCY: usize = 2;

/// How a completeness data source's index ends (see [`completeness_index_of`]).
const COMPLETENESS_SUFFIX: &str = "-completeness";
/// How a dimension value data source's index ends (see [`values_index_of`]).
const DIMENSIONS_SUFFIX: &str = "-dimensions";

/// Most evaluations of one rule a backtest replays: a year at 30 s. Checked before the
/// evaluation times are listed, so a huge range costs nothing.
pub const MAX_EVALUATIONS: i64 = 1_000_000;

/// Reads the rule files, checks each rule's data source in `datasources` (it must exist and be
/// Elasticsearch), and warns when a data source names another index than `index`. A rule on
/// the completeness data source (an index ending in `-completeness`) queries
/// `<index>-completeness`, the index the monitor with `--es-index index --source-topic` writes;
/// one on the dimension value data source (an index ending in `-dimensions`) queries
/// `<index>-dimensions`, written with `--dimension`.
pub fn load_rules(
    rule_files: &[PathBuf],
    datasources: &Path,
    index: &str,
) -> anyhow::Result<Vec<AlertRule>> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let mut rules = Vec::new();
    for path in rule_files {
        rules.extend(rule::load(&read(path)?).with_context(|| format!("in {}", path.display()))?);
    }
    let sources = datasource::parse(&read(datasources)?)
        .with_context(|| format!("in {}", datasources.display()))?;
    for r in &mut rules {
        let source = sources.get(&r.datasource_uid).with_context(|| {
            format!(
                "rule {:?} uses data source {:?}, which {} does not define",
                r.title,
                r.datasource_uid,
                datasources.display()
            )
        })?;
        anyhow::ensure!(
            source.kind == "elasticsearch",
            "rule {:?}: data source {} is {}, only elasticsearch is supported",
            r.title,
            source.uid,
            source.kind
        );
        if source
            .index()
            .is_some_and(|i| i.ends_with(COMPLETENESS_SUFFIX))
        {
            r.index = Some(completeness_index_of(index));
        } else if source
            .index()
            .is_some_and(|i| i.ends_with(DIMENSIONS_SUFFIX))
        {
            r.index = Some(values_index_of(index));
        } else if source.index() != Some(index) {
            tracing::warn!(
                "data source {} names index {:?}; querying {index:?} (--es-index)",
                source.uid,
                source.index(),
            );
        }
    }
    anyhow::ensure!(
        !rules.is_empty(),
        "{} define no rule",
        rule_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(rules)
}

/// A `--from` / `--to` value: an RFC 3339 time, or a duration before `now_ms` (`7d`).
pub fn parse_time(text: &str, now_ms: i64, flag: &str) -> Result<i64, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!(
            "{flag} {text:?}: give an RFC 3339 time (2026-11-22T00:00:00Z) or how long ago (7d)"
        )
    })?;
    let ago_ms = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
    Ok(now_ms.saturating_sub(ago_ms))
}

/// The range `--from`..`--to` of a backtest or report, in ms; `--from` must come first.
pub fn parse_range(from: &str, to: &str, now_ms: i64) -> Result<(i64, i64), String> {
    let (from_ms, to_ms) = (
        parse_time(from, now_ms, "--from")?,
        parse_time(to, now_ms, "--to")?,
    );
    if from_ms >= to_ms {
        return Err("--from must be before --to".into());
    }
    Ok((from_ms, to_ms))
}

/// The evaluation times of a rule over `[from_ms, to_ms]` every `step_ms` (Grafana's scheduler
/// ticks at multiples of the interval); refused, naming `title`, when there would be more than
/// [`MAX_EVALUATIONS`] — counted first, so nothing is allocated for a range too large.
pub fn evaluation_times(
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
    title: &str,
) -> Result<Vec<i64>, String> {
    if step_ms <= 0 {
        return Err(format!(
            "{title:?}: the evaluation interval must be positive"
        ));
    }
    // The live evaluator's times too (`schedule`): multiples of the interval.
    let first = super::schedule::first_at_or_after(from_ms, step_ms);
    let count = if first > to_ms {
        0
    } else {
        (to_ms - first) / step_ms + 1
    };
    if count > MAX_EVALUATIONS {
        return Err(format!(
            "{count} evaluations of {title:?} in that range (at most {MAX_EVALUATIONS}); \
             shorten it or raise --interval"
        ));
    }
    Ok((0..count).map(|i| first + i * step_ms).collect())
}

/// The evaluations of `rule` at `times`, `BACKTEST_CONCURRENCY` `_msearch` requests at a time.
async fn evaluations(
    rule: &AlertRule,
    client: &elasticsearch::Elasticsearch,
    index: &str,
    times: Vec<i64>,
) -> Vec<(i64, Results)> {
    let batches: Vec<Vec<Results>> = futures::stream::iter(times.chunks(BACKTEST_BATCH))
        .map(|batch| rule.evaluate_range(client, index, batch))
        .buffered(BACKTEST_CONCURRENCY)
        .collect()
        .await;
    times
        .into_iter()
        .zip(batches.into_iter().flatten())
        .collect()
}

/// How a backtest is judged: known incidents, the requirements the rules as provisioned must
/// meet, and what-if variants replayed beside them.
#[derive(Debug, Default)]
pub struct Judging {
    /// Incidents to score against.
    pub incidents: Option<Vec<Incident>>,
    /// Requirements of the gate (need incidents).
    pub requirements: Vec<Requirement>,
    /// Variants besides the rule as provisioned.
    pub variants: Vec<Variant>,
}

impl Judging {
    /// Reads the incidents file and parses the requirements and variants of the flags.
    pub fn read(
        incidents_file: Option<&Path>,
        require: Option<&str>,
        variants: &[String],
    ) -> anyhow::Result<Self> {
        let incidents = match incidents_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))
                    .and_then(|text| {
                        incidents::parse(&text).with_context(|| format!("in {}", path.display()))
                    })?,
            ),
            None => None,
        };
        let requirements = match require {
            Some(text) => {
                anyhow::ensure!(
                    incidents.is_some(),
                    "--require needs --incidents: the requirements are about known incidents"
                );
                requirements::parse(text)?
            }
            None => Vec::new(),
        };
        let variants = variants
            .iter()
            .map(|text| Variant::parse(text))
            .collect::<Result<_, _>>()?;
        Ok(Judging {
            incidents,
            requirements,
            variants,
        })
    }
}

/// What a backtest found.
#[derive(Debug)]
pub struct BacktestOutcome {
    /// Per rule, the rule as provisioned first, then each variant.
    pub runs: Vec<Run>,
    /// The requirements the rules as provisioned failed, each naming its rule.
    pub failures: Vec<String>,
    /// Whether variants were replayed (the text output then names each run).
    pub with_variants: bool,
    /// The reduce expression's ref (the series shown) of each run's rule, in `runs` order.
    pub reduce_refs: Vec<String>,
}

/// Replays every rule (and each variant) over `[from_ms, to_ms]`, evaluated every `interval`
/// (or each rule group's), scoring each run when there are incidents.
pub async fn backtest(
    rules: &[AlertRule],
    client: &elasticsearch::Elasticsearch,
    index: &str,
    (from_ms, to_ms): (i64, i64),
    interval: Option<Duration>,
    judging: &Judging,
) -> anyhow::Result<BacktestOutcome> {
    let mut variants = vec![Variant::provisioned()];
    variants.extend(judging.variants.iter().cloned());
    let mut runs: Vec<Run> = Vec::new();
    let mut failures = Vec::new();
    let mut reduce_refs = Vec::new();
    for rule in rules {
        // The queries do not change with `for` or the threshold: one set per interval.
        let mut by_interval: BTreeMap<i64, Vec<(i64, Results)>> = BTreeMap::new();
        for (number, variant) in variants.iter().enumerate() {
            let changed = variant.apply(rule)?;
            let lifecycle = Lifecycle::of(&changed, variant.interval.or(interval));
            let step = lifecycle.interval.as_millis() as i64;
            if let std::collections::btree_map::Entry::Vacant(entry) = by_interval.entry(step) {
                let started = std::time::Instant::now();
                let times = evaluation_times(from_ms, to_ms, step, &rule.title)
                    .map_err(anyhow::Error::msg)?;
                let found = evaluations(rule, client, index, times).await;
                tracing::info!(
                    "{:?}: {} evaluations queried in {:.1?}",
                    rule.title,
                    found.len(),
                    started.elapsed()
                );
                entry.insert(found);
            }
            let evaluations = &by_interval[&step];
            let timeline = if variant.threshold.is_some() {
                backtest::replay(
                    &changed,
                    &lifecycle,
                    &variants::rejudge(&changed, evaluations),
                    to_ms,
                )
            } else {
                backtest::replay(&changed, &lifecycle, evaluations, to_ms)
            };
            let score = judging
                .incidents
                .as_ref()
                .map(|i| score::score(&timeline, i));
            // The gate judges the rules as provisioned; variants are for comparing.
            if let (Some(score), 0) = (&score, number) {
                failures.extend(
                    requirements::failures(&judging.requirements, &score.numbers)
                        .into_iter()
                        .map(|f| format!("rule {:?}: {f}", rule.title)),
                );
            }
            reduce_refs.push(rule.reduce_ref.clone());
            runs.push(Run {
                timeline,
                variant: variant.name.clone(),
                threshold: Some(changed.threshold),
                score,
            });
        }
    }
    Ok(BacktestOutcome {
        runs,
        failures,
        with_variants: variants.len() > 1,
        reduce_refs,
    })
}

/// The text a backtest prints: each run's timeline (headed by rule and variant when there are
/// variants) and score, then, with variants and incidents, the scores side by side.
pub fn render_backtest_text(outcome: &BacktestOutcome) -> String {
    let mut out = String::new();
    for (run, reduce_ref) in outcome.runs.iter().zip(&outcome.reduce_refs) {
        if outcome.with_variants {
            out.push_str(&format!(
                "=== {:?}, {} ===\n",
                run.timeline.rule, run.variant
            ));
        }
        out.push_str(&backtest::render_text(&run.timeline, reduce_ref));
        out.push('\n');
        if let Some(score) = &run.score {
            out.push_str(&score::render_text(score));
            out.push('\n');
        }
    }
    if outcome.with_variants && outcome.runs.iter().any(|r| r.score.is_some()) {
        out.push_str("Variants side by side:\n");
        for run in &outcome.runs {
            if let Some(score) = &run.score {
                out.push_str(&format!(
                    "  {:?} {:<24} {}\n",
                    run.timeline.rule,
                    run.variant,
                    score::numbers_text(&score.numbers)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_how_long_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z", now, "--from"),
            Ok(1_800_000_000_000)
        );
        assert_eq!(parse_time("7d", now, "--from"), Ok(now - 7 * 86_400_000));
        let refused = parse_time("yesterday", now, "--from").unwrap_err();
        assert!(refused.starts_with("--from \"yesterday\""), "{refused}");
        assert_eq!(
            parse_range("1h", "2h", now),
            Err("--from must be before --to".into())
        );
        assert_eq!(
            parse_range("2h", "1h", now),
            Ok((now - 7_200_000, now - 3_600_000))
        );
    }

    #[test]
    fn evaluation_times_are_multiples_of_the_step_within_the_range() {
        assert_eq!(
            evaluation_times(1_001, 5_000, 1_000, "r"),
            Ok(vec![2_000, 3_000, 4_000, 5_000])
        );
        assert_eq!(evaluation_times(1_001, 1_500, 1_000, "r"), Ok(vec![]));
        assert!(evaluation_times(0, 1, 0, "r").is_err());
    }

    #[test]
    fn a_range_too_large_is_refused_before_anything_is_allocated() {
        // Ten years at one second: 315 million evaluations, refused by counting alone.
        let ten_years = 10 * 365 * 86_400_000i64;
        let refused = evaluation_times(0, ten_years, 1_000, "SLA miss").unwrap_err();
        assert!(
            refused.starts_with("315360001 evaluations of \"SLA miss\""),
            "{refused}"
        );
        assert_eq!(
            evaluation_times(0, (MAX_EVALUATIONS - 1) * 1_000, 1_000, "r")
                .unwrap()
                .len() as i64,
            MAX_EVALUATIONS
        );
    }
}
