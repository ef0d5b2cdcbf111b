//! The monitor's topic preparation on the real broker: missing topics it writes are created
//! with the configured shapes, existing ones are left as they are, the input topic is never
//! created (it waits for it, not ready, saying which flag names it), and the partition counts
//! it reports (which spare the monitor's start two metadata requests) are the broker's.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use sla_monitor::monitor::{self, TopicLayout};
use sla_monitor::runtime::http::Readiness;
use sla_monitor::runtime::shutdown::Shutdown;
use std::time::Duration;
use support::in_process::test_config;
use support::*;

/// Whether the broker's metadata lists `topic` (asking for all topics creates none).
fn topic_exists(topic: &str) -> bool {
    blocking(|| {
        let consumer: BaseConsumer = Cluster::local().config().create().unwrap();
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        metadata.topics().iter().any(|t| t.name() == topic)
    })
}

/// The partition count the broker's metadata gives `topic`.
fn partitions_of(topic: &str) -> i32 {
    blocking(|| {
        let consumer: BaseConsumer = Cluster::local().config().create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        metadata.topics()[0].partitions().len() as i32
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_topics_are_created_and_their_partition_counts_reported() {
    let topics = monitor_topics("prep_new");
    let mut config = test_config(&topics, &unique("prep_new_mg"), Duration::from_secs(5));
    config.shuffle_partitions = 3;
    let (_stop, shutdown) = Shutdown::new();
    let readiness = Readiness::default();
    let preparing = tokio::spawn({
        let (config, readiness) = (config.clone(), readiness.clone());
        async move { monitor::prepare_topics(&config, &readiness, shutdown).await }
    });
    // The input topic is missing: the monitor waits for it, not ready, and creates nothing.
    wait_for(
        "the monitor to say it waits for its input topic",
        Duration::from_secs(30),
        || {
            readiness
                .not_ready_reason()
                .is_some_and(|r| r.contains(&topics.reduced) && r.contains("--input-topic"))
        },
    );
    assert!(!preparing.is_finished());
    assert!(
        !topic_exists(&topics.reduced),
        "the monitor created its input topic"
    );
    create_topic(&topics.reduced, 3).await;
    let layout = tokio::time::timeout(Duration::from_secs(60), preparing)
        .await
        .expect("preparation goes on once the input topic exists")
        .unwrap()
        .unwrap();
    assert_eq!(
        layout,
        TopicLayout {
            input_partitions: Some(3),
            shuffle_partitions: Some(3),
            input_log_append_time: false,
        }
    );
    assert_eq!(partitions_of(&topics.shuffle), 3);
    assert_eq!(partitions_of(&topics.dlq), config.kafka.partitions);
    assert_eq!(partitions_of(&topics.checkpoints), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_topics_keep_their_shape_and_report_it() {
    let topics = monitor_topics("prep_old");
    create_topic(&topics.reduced, 5).await;
    create_topic(&topics.shuffle, 4).await;
    let mut config = test_config(&topics, &unique("prep_old_mg"), Duration::from_secs(5));
    config.shuffle_partitions = 1;
    assert_ne!(config.kafka.partitions, 5);
    let (_stop, shutdown) = Shutdown::new();
    let readiness = Readiness::default();
    let layout = monitor::prepare_topics(&config, &readiness, shutdown.clone())
        .await
        .unwrap();
    assert_eq!(
        layout,
        TopicLayout {
            input_partitions: Some(5),
            shuffle_partitions: Some(4),
            input_log_append_time: false,
        }
    );
    assert_eq!(partitions_of(&topics.reduced), 5);
    assert_eq!(partitions_of(&topics.shuffle), 4);
    // Once every topic exists, a second preparation reports the same without creating any.
    assert_eq!(
        monitor::prepare_topics(&config, &readiness, shutdown)
            .await
            .unwrap(),
        layout
    );
}
