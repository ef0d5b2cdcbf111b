//! The loss switch on the real broker: `PUT /loss` makes the synchronizer drop exactly the
//! records `LossPolicy::drops` names — consumed, never produced, committed past — and keeps
//! every other record with its lineage; switched off, nothing more is dropped.

mod support;

use sla_monitor::synchronizer::loss::LossPolicy;
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_synchronizer");

#[tokio::test(flavor = "multi_thread")]
async fn the_loss_switch_drops_exactly_the_records_its_seed_names() {
    let dir = tempfile::tempdir().unwrap();
    let (visits, reduced, dlq, group) = (
        unique("loss_v"),
        unique("loss_r"),
        unique("loss_d"),
        unique("loss"),
    );
    create_topic(&visits, 2).await;
    let token = "9a8b7c6d5e4f3a2b1c0d";
    let token_file = dir.path().join("control_token");
    std::fs::write(&token_file, token).unwrap();
    let job = Job::start(
        BIN,
        &[
            "--visits-topic",
            &visits,
            "--reduced-topic",
            &reduced,
            "--dead-letter-topic",
            &dlq,
            "--group",
            &group,
            "--control-token-file",
            token_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    let control = format!("http://{}/loss", http_addr_of(&job));
    let client = reqwest::Client::new();
    let put = |query: &str| put_authorized(format!("{control}?{query}"), token);
    // Refusals change nothing and say why.
    let anonymous = client
        .put(format!("{control}?rate=5%25"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, body) = put("rate=60%25").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("50%"), "{body}");
    let (status, body) = put("rat=5%25").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("rat"), "{body}");
    let current: serde_json::Value = client
        .get(&control)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["rate_ppm"], 0, "off until switched on: {current}");

    let (status, body) = put("rate=10%25&seed=42").await;
    assert_eq!(status, 200, "{body}");
    let policy = LossPolicy {
        rate_ppm: 100_000,
        seed: 42,
    };
    wait_for("the switch on", Duration::from_secs(30), || {
        metric_sum(&job, "sla_synchronizer_loss_ratio", &[]) == Some(0.1)
    });
    let n = 400;
    let batch = |from: usize| -> Vec<Outgoing> {
        (from..from + n)
            .map(|i| Outgoing {
                key: Some(format!("v{i}")),
                value: Some(visit_json(&format!("v{i}"), now_ms())),
                partition: Some((i % 2) as i32),
                ..Default::default()
            })
            .collect()
    };
    produce(&visits, &batch(0)).await;
    // Record i is at offset i / 2 of partition i % 2.
    let kept: BTreeSet<String> = (0..n)
        .filter(|i| !policy.drops((i % 2) as i32, (i / 2) as i64))
        .map(|i| format!("v{i}"))
        .collect();
    let dropped = n - kept.len();
    assert!((20..70).contains(&dropped), "about a tenth: {dropped}");
    wait_for(
        "the dropped records counted",
        Duration::from_secs(60),
        || metric_sum(&job, "sla_synchronizer_records_dropped_total", &[]) == Some(dropped as f64),
    );
    let out = consume(
        &reduced,
        kept.len(),
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let arrived: BTreeSet<String> = out.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(out.len(), kept.len(), "no record twice");
    assert_eq!(arrived, kept, "exactly the records the policy keeps");
    for r in &out {
        let i: usize = r.key.as_deref().unwrap()[1..].parse().unwrap();
        assert!(
            r.headers["lineage"].starts_with(&format!("{visits}:{}:{}:", i % 2, i / 2)),
            "{:?}",
            r.headers
        );
    }
    assert_eq!(
        metric_sum(&job, "sla_synchronizer_loss_ratio", &[]),
        Some(0.1)
    );

    // Off: every later record arrives; the group committed past the dropped ones.
    let (status, body) = put("rate=0").await;
    assert_eq!(status, 200, "{body}");
    wait_for("the switch off", Duration::from_secs(30), || {
        metric_sum(&job, "sla_synchronizer_loss_ratio", &[]) == Some(0.0)
    });
    produce(&visits, &batch(n)).await;
    let out = consume(
        &reduced,
        kept.len() + n,
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    assert_eq!(out.len(), kept.len() + n, "nothing dropped once off");
    wait_for("every offset committed", Duration::from_secs(30), || {
        (0..2).all(|p| {
            metric_sum(
                &job,
                "sla_committed_offset",
                &[
                    &format!("topic=\"{visits}\""),
                    &format!("partition=\"{p}\""),
                ],
            ) == Some(n as f64)
        })
    });
    assert_eq!(
        metric_sum(&job, "sla_synchronizer_records_dropped_total", &[]),
        Some(dropped as f64)
    );
    assert!(job.terminate(Duration::from_secs(30)).success());
}
