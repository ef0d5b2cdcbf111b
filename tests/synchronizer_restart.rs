//! At-least-once with nothing lost: offsets are committed only after the output is
//! acknowledged, so a killed synchronizer resumes without losing a record, and a gracefully
//! stopped one resumes without duplicating any.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_synchronizer");

async fn setup(name: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let topics: Vec<String> = ["v", "r", "d", "g"]
        .iter()
        .map(|s| unique(&format!("{name}_{s}")))
        .collect();
    create_topic(&topics[0], 2).await;
    let records: Vec<Outgoing> = (0..n)
        .map(|i| Outgoing {
            key: Some(format!("id-{i}")),
            value: Some(visit_json(&format!("id-{i}"), now_ms())),
            ..Default::default()
        })
        .collect();
    produce(&topics[0], &records).await;
    let args = vec![
        "--visits-topic".into(),
        topics[0].clone(),
        "--reduced-topic".into(),
        topics[1].clone(),
        "--dead-letter-topic".into(),
        topics[2].clone(),
        "--group".into(),
        topics[3].clone(),
        // Slow enough that the first run is interrupted half-way.
        "--delay".into(),
        "3s".into(),
        "--commit-interval".into(),
        "200ms".into(),
        // Input is consumed as output is acknowledged, so a run holds records in flight
        // (consumed, not yet acknowledged) across many commit intervals.
        "--max-in-flight".into(),
        "100".into(),
        // A killed member is replaced after its session expires: keep that short (-X pass-through).
        "-X".into(),
        "session.timeout.ms=6000".into(),
    ];
    (topics, args)
}

fn ids(out: &[Consumed]) -> Vec<String> {
    out.iter()
        .map(|r| r.json()["visit"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_synchronizer_resumes_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400;
    let (topics, args) = setup("kill", n).await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Job::start(BIN, &args, dir.path());
    // Kill while records are delayed in flight: consumed (and, with a broken commit policy,
    // committed) but not yet produced.
    // Killed while records are in flight after commits happened: a policy committing
    // consumed (rather than acknowledged) offsets has committed past them by now.
    let reduced = format!("topic=\"{}\"", topics[1]);
    wait_for(
        "records in flight after acknowledged output",
        Duration::from_secs(30),
        || {
            metric_sum(&first, "sla_records_produced_total", &[&reduced]).is_some_and(|n| n > 0.0)
                && metric_sum(&first, "sla_records_in_flight", &[]).is_some_and(|n| n > 0.0)
        },
    );
    first.kill();
    let second = Job::start(BIN, &args, dir.path());
    // Every visit's output is acknowledged once the second run's committed offsets reach the
    // input's end (replays produce duplicates, so counting records would stop too early).
    let visits = format!("topic=\"{}\"", topics[0]);
    wait_for(
        "the second run to commit every visit",
        Duration::from_secs(120),
        || metric_sum(&second, "sla_committed_offset", &[&visits]) == Some(n as f64),
    );
    let out = consume_to_end(&topics[1]);
    assert!(second.terminate(Duration::from_secs(30)).success());
    let got: BTreeSet<String> = ids(&out).into_iter().collect();
    let lost: Vec<String> = (0..n)
        .map(|i| format!("id-{i}"))
        .filter(|id| !got.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "every input visit must reach the output at least once; lost {}: {lost:?}",
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gracefully_stopped_synchronizer_drains_commits_and_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let (topics, args) = setup("term", n).await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Job::start(BIN, &args, dir.path());
    wait_for("records in flight", Duration::from_secs(30), || {
        metric_sum(&first, "sla_records_in_flight", &[]).is_some_and(|n| n > 0.0)
    });
    // SIGTERM while records wait for their delay: they are produced, then offsets committed.
    let status = first.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    let second = Job::start(BIN, &args, dir.path());
    // One more visit per partition: the second run has finished with its input (including
    // anything it wrongly reprocesses) once the group's committed offsets reach the end.
    let sentinels: Vec<Outgoing> = (0..2)
        .map(|p| Outgoing {
            key: Some(format!("sentinel-{p}")),
            value: Some(visit_json(&format!("sentinel-{p}"), now_ms())),
            partition: Some(p),
            ..Default::default()
        })
        .collect();
    produce(&topics[0], &sentinels).await;
    let total = (n + sentinels.len()) as f64;
    // tansu 0.6 can revoke the second run's partitions when the first run's membership ends
    // and never assign them again (seen under load: revoked 9 s after joining); the job's
    // assignment watchdog rejoins after 30 s (twice the 6 s session, at least 30 s). The
    // records waiting for the delay of a revoked partition are dropped, not produced, so the
    // rejoined run reduces them once: still no duplicates.
    wait_for(
        "the second run to commit every input offset",
        Duration::from_secs(90),
        || {
            metric_sum(
                &second,
                "sla_committed_offset",
                &[&format!("topic=\"{}\"", topics[0])],
            ) == Some(total)
        },
    );
    assert!(second.terminate(Duration::from_secs(30)).success());
    let all = ids(&consume_to_end(&topics[1]));
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), n + sentinels.len(), "nothing lost");
    assert_eq!(
        all.len(),
        n + sentinels.len(),
        "a graceful stop commits what it produced: no duplicates"
    );
}
