//! A synchronizer left without partitions by its consumer group notices it and recovers: with
//! the broker frozen (SIGSTOP) longer than the session timeout, tansu revokes the member's
//! partitions and never assigns them again — the job's watchdog rejoins with a fresh consumer;
//! with group members killed in quick succession, the next member still gets to work. In both,
//! every visit reaches the output (duplicates are counted, none lost) within 90 s. Each test
//! runs a private tansu so the shared broker is not disturbed.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::private_broker::{free_port, start_tansu};
use support::*;

/// How long a job may take to get every visit through after the disturbance.
const RECOVERY_BOUND: Duration = Duration::from_secs(90);

fn visits(from: usize, to: usize) -> Vec<Outgoing> {
    (from..to)
        .map(|i| Outgoing {
            key: Some(format!("id-{i}")),
            value: Some(visit_json(&format!("id-{i}"), now_ms())),
            ..Default::default()
        })
        .collect()
}

fn synchronizer(
    cluster: &Cluster,
    group: &str,
    topics: (&str, &str),
    dir: &std::path::Path,
) -> Job {
    #[rustfmt::skip]
    let args = [
        "--brokers", &cluster.brokers, "--visits-topic", topics.0, "--reduced-topic", topics.1,
        "--dead-letter-topic", &unique("recovery_dlq"), "--group", group,
        "-X", "session.timeout.ms=6000", "--assignment-timeout", "12s",
    ];
    Job::start_without_brokers(env!("CARGO_BIN_EXE_synchronizer"), &args, dir)
}

/// Waits until every id in `0..n` is on `topic`; returns how many records carried a duplicate.
fn every_visit_arrives(cluster: &Cluster, topic: &str, n: usize, job: &Job) -> usize {
    let wanted: BTreeSet<String> = (0..n).map(|i| format!("id-{i}")).collect();
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let out = cluster.consume(topic, n, Duration::from_secs(5), Duration::from_millis(200));
        let ids: BTreeSet<String> = out.iter().filter_map(|r| r.key.clone()).collect();
        if ids == wanted {
            return out.len() - ids.len();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} visits reduced {RECOVERY_BOUND:?} after the disturbance; job log:\n{}",
            ids.len(),
            job.log_text()
        );
    }
}

/// A private tansu in `dir` and the cluster it serves.
fn private_broker(dir: &std::path::Path) -> (std::process::Child, Cluster) {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let broker = start_tansu(dir, port, &address, false);
    let cluster = Cluster {
        brokers: address,
        properties: Vec::new(),
    };
    (broker, cluster)
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_broker_leaves_no_member_without_partitions_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, cluster) = private_broker(dir.path());
    let (input, output) = (unique("frozen_visits"), unique("frozen_reduced"));
    cluster.create_topic(&input, 2).await;
    cluster.produce(&input, &visits(0, 100)).await;
    let job = synchronizer(&cluster, &unique("frozen_g"), (&input, &output), dir.path());
    every_visit_arrives(&cluster, &output, 100, &job);

    // Longer than the 6 s session timeout: the broker expires the member when it wakes.
    signal(broker.id(), "STOP");
    tokio::time::sleep(Duration::from_secs(12)).await;
    signal(broker.id(), "CONT");
    cluster.produce(&input, &visits(100, 200)).await;
    let duplicates = every_visit_arrives(&cluster, &output, 200, &job);
    // The member holds its partitions again. Whether tansu re-admitted it by itself (seen:
    // re-assigned 6.5 s after the freeze) or left it stranded until the watchdog rejoined
    // (seen in other runs) varies from run to run, so the outcome is asserted, not the path.
    let input_topic = format!("topic=\"{input}\"");
    wait_for(
        "the member to hold both partitions",
        Duration::from_secs(30),
        || metric_sum(&job, "sla_assigned_partitions", &[&input_topic]) == Some(2.0),
    );
    let rejoins = metric_sum(&job, "sla_consumer_group_rejoins_total", &[]).unwrap_or(0.0);
    eprintln!(
        "all 200 visits reduced after the freeze, {duplicates} duplicates; watchdog rejoins: {rejoins}"
    );
    assert!(job.terminate(Duration::from_secs(30)).success());
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn members_killed_while_joining_leave_the_next_member_working() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, cluster) = private_broker(dir.path());
    let (input, output) = (unique("killed_visits"), unique("killed_reduced"));
    let group = unique("killed_g");
    cluster.create_topic(&input, 2).await;
    let doomed: Vec<Job> = (0..2)
        .map(|_| synchronizer(&cluster, &group, (&input, &output), dir.path()))
        .collect();
    wait_for(
        "both members to start joining",
        Duration::from_secs(30),
        || {
            doomed
                .iter()
                .all(|job| job.log_text().contains("synchronizer started"))
        },
    );
    for job in doomed {
        job.kill();
    }
    let job = synchronizer(&cluster, &group, (&input, &output), dir.path());
    cluster.produce(&input, &visits(0, 100)).await;
    let duplicates = every_visit_arrives(&cluster, &output, 100, &job);
    eprintln!("all 100 visits reduced, {duplicates} duplicates");
    assert!(job.terminate(Duration::from_secs(30)).success());
    broker.kill().unwrap();
    broker.wait().unwrap();
}
