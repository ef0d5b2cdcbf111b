//! The Kafka side of the tests: the broker under test, topics, producing and reading records,
//! and the monitor's topics.

use super::*;

/// The broker under test (`SLA_TEST_BROKERS`, default the local stack's).
pub fn brokers() -> String {
    std::env::var("SLA_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// A Kafka cluster a test talks to: its bootstrap servers and the client properties it needs
/// (TLS, SASL). The free functions below use the local stack's broker.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
}

impl Cluster {
    /// The broker under test, without security.
    pub fn local() -> Cluster {
        Cluster {
            brokers: brokers(),
            properties: Vec::new(),
        }
    }

    /// Client settings for this cluster.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            c.set(key, value);
        }
        c
    }
}

/// Creates a topic (fails the test if the broker is unreachable).
pub async fn create_topic(name: &str, partitions: i32) {
    Cluster::local().create_topic(name, partitions).await
}

/// Produces records in order and waits for every acknowledgement.
pub async fn produce(topic: &str, records: &[Outgoing]) {
    Cluster::local().produce(topic, records).await
}

/// Every record in a topic now: each partition read from its first offset to its high
/// watermark at the call. Fails the test with each partition's progress and the errors seen
/// when a partition does not reach its end within 90 s (never returns a short read).
pub fn consume_to_end(topic: &str) -> Vec<Consumed> {
    Cluster::local().consume_to_end(topic)
}

/// Reads a topic from the beginning until `expected` records arrived (or `timeout`), then
/// keeps reading for `settle` to catch unexpected extra records.
pub fn consume(topic: &str, expected: usize, timeout: Duration, settle: Duration) -> Vec<Consumed> {
    Cluster::local().consume(topic, expected, timeout, settle)
}

impl Cluster {
    /// Creates a topic (fails the test if the broker is unreachable).
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// Creates a topic with topic configs (e.g. `("retention.ms", "3000")`).
    pub async fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topic = configs.iter().fold(
            NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
            |topic, &(key, value)| topic.set(key, value),
        );
        let results = admin
            .create_topics(
                &[topic],
                &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating {name} on {}: {e} (is scripts/stack.sh up?)",
                    self.brokers
                )
            });
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
    }

    /// Produces records in order and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, records: &[Outgoing]) {
        let producer: FutureProducer = self
            .config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let mut deliveries = Vec::new();
        for r in records {
            let mut record = FutureRecord::<str, [u8]>::to(topic);
            if let Some(k) = &r.key {
                record = record.key(k.as_str());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            if let Some(t) = r.timestamp_ms {
                record = record.timestamp(t);
            }
            if !r.headers.is_empty() {
                let mut headers = rdkafka::message::OwnedHeaders::new();
                for (name, value) in &r.headers {
                    headers = headers.insert(rdkafka::message::Header {
                        key: name,
                        value: Some(value.as_bytes()),
                    });
                }
                record = record.headers(headers);
            }
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for d in deliveries {
            d.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }

    /// Reads a topic from the beginning until `expected` records arrived (or `timeout`), then
    /// keeps reading for `settle` to catch unexpected extra records.
    pub fn consume(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Consumed> {
        blocking(|| self.consume_blocking(topic, expected, timeout, settle))
    }

    fn consume_blocking(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Consumed> {
        let consumer = self.reader();
        let deadline = Instant::now() + timeout;
        // The topic may not exist yet: the job under test creates it.
        let partitions = loop {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            let ids: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !ids.is_empty() || Instant::now() >= deadline {
                break ids;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut out = Vec::new();
        let mut settle_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if settle_until.is_some_and(|s| now >= s) || (settle_until.is_none() && now >= deadline)
            {
                break;
            }
            if out.len() >= expected && settle_until.is_none() {
                settle_until = Some(now + settle);
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(Consumed::of(&m));
            }
        }
        out
    }

    /// See [`consume_to_end`].
    pub fn consume_to_end(&self, topic: &str) -> Vec<Consumed> {
        blocking(|| self.consume_to_end_blocking(topic, Duration::from_secs(90)))
    }

    fn consume_to_end_blocking(&self, topic: &str, timeout: Duration) -> Vec<Consumed> {
        // A reader that gets nothing for this long is replaced by a new one that goes on from
        // where it stopped (said on stderr with what it saw).
        const STALL: Duration = Duration::from_secs(15);
        let mut consumer = self.reader();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        // Per partition: its high watermark now and the next offset still to read.
        let mut partitions: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for p in metadata.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            partitions.insert(p.id(), (high, low));
        }
        let progress = |partitions: &BTreeMap<i32, (i64, i64)>| -> String {
            let each: Vec<String> = partitions
                .iter()
                .map(|(p, (high, next))| format!("partition {p}: next {next} of {high}"))
                .collect();
            each.join(", ")
        };
        let assign = |consumer: &BaseConsumer, partitions: &BTreeMap<i32, (i64, i64)>| {
            let mut assignment = TopicPartitionList::new();
            for (p, (high, next)) in partitions {
                if next < high {
                    assignment
                        .add_partition_offset(topic, *p, Offset::Offset(*next))
                        .unwrap();
                }
            }
            consumer.assign(&assignment).unwrap();
        };
        assign(&consumer, &partitions);
        let deadline = Instant::now() + timeout;
        let mut last_record = Instant::now();
        let mut out = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        while partitions.values().any(|(high, next)| next < high) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "reading {topic} to its end: {} records in {timeout:?}, {}; errors: {errors:?}",
                out.len(),
                progress(&partitions)
            );
            if now.duration_since(last_record) >= STALL {
                eprintln!(
                    "[consume_to_end] {topic}: nothing for {STALL:?} ({}; errors: {errors:?}); reading on with a new consumer",
                    progress(&partitions)
                );
                consumer = self.reader();
                assign(&consumer, &partitions);
                last_record = now;
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some((high, next)) = partitions.get_mut(&m.partition()) {
                        last_record = Instant::now();
                        if m.offset() >= *next && m.offset() < *high {
                            out.push(Consumed::of(&m));
                        }
                        *next = (*next).max(m.offset() + 1);
                    }
                }
                Some(Err(e)) => errors.push(e.to_string()),
                None => {}
            }
        }
        out
    }

    /// A consumer outside any job's group that reads what it is assigned from the start
    /// (an offset out of range also resets to the start, never past records).
    fn reader(&self) -> BaseConsumer {
        self.config()
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .unwrap()
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub timestamp_ms: Option<i64>,
    /// Headers, (name, value), in order.
    pub headers: Vec<(String, String)>,
}

/// A consumed record, owned.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub headers: BTreeMap<String, String>,
}

impl Consumed {
    /// An owned copy of a consumed message.
    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
        Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap()).unwrap()
    }
}

/// The topics a monitor under test uses, named for one test.
pub struct MonitorTopics {
    pub reduced: String,
    pub dlq: String,
    pub checkpoints: String,
    pub shuffle: String,
}

impl MonitorTopics {
    /// The monitor flags naming these topics.
    pub fn args(&self) -> Vec<&str> {
        vec![
            "--input-topic",
            &self.reduced,
            "--dead-letter-topic",
            &self.dlq,
            "--checkpoint-topic",
            &self.checkpoints,
            "--shuffle-topic",
            &self.shuffle,
        ]
    }
}

/// Fresh monitor topic names for the test `name`.
pub fn monitor_topics(name: &str) -> MonitorTopics {
    MonitorTopics {
        reduced: unique(&format!("{name}_r")),
        dlq: unique(&format!("{name}_d")),
        checkpoints: unique(&format!("{name}_c")),
        shuffle: unique(&format!("{name}_s")),
    }
}
