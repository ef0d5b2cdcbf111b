//! Helpers shared by the integration tests: every test talks to the real broker started by
//! `scripts/stack.sh` and runs the real job binaries. Each test uses its own topic names and
//! groups, so tests never interfere and never delete topics.
//!
//! By concern: `broker` (Kafka), `es` (Elasticsearch), `jobs` (the binaries as processes and
//! their command lines), `windows` (test data and expected figures), `alerting` (the `alerts`
//! job, Alertmanager, the browser); `private_broker` (a broker of a test's own), `bugsink` (the
//! Sentry-protocol server), `in_process` (the monitor inside the test). Waiting and naming
//! helpers are here. Each test binary compiles all of it and uses a part, hence
//! `allow(dead_code)`.
#![allow(dead_code)]

mod alerting;
mod broker;
pub mod bugsink;
mod es;
pub mod in_process;
mod jobs;
pub mod private_broker;
mod windows;

// Each test binary uses a part of what is re-exported.
#[allow(unused_imports)]
pub use alerting::*;
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use es::*;
#[allow(unused_imports)]
pub use jobs::*;
#[allow(unused_imports)]
pub use windows::*;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Runs blocking test code (polling with sleeps, a synchronous Kafka client, waiting for a
/// process) without stalling the async test's own tasks (proxies, receivers): inside the
/// multi-threaded runtime every async test uses, the worker first hands its tasks to another.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            assert_eq!(
                handle.runtime_flavor(),
                tokio::runtime::RuntimeFlavor::MultiThread,
                "async tests run with #[tokio::test(flavor = \"multi_thread\")] so that blocking helpers do not stall them"
            );
            tokio::task::block_in_place(f)
        }
        Err(_) => f(),
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Unix time now in ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Checks that `condition` keeps holding for all of `period`, polling every 100 ms; panics
/// with `what` as soon as it does not. For claims that something does *not* happen while a
/// stimulus lasts: the period is the stimulus, and a loaded machine can only make the check
/// weaker, never fail it wrongly.
pub fn holds_throughout(what: &str, period: Duration, mut condition: impl FnMut() -> bool) {
    blocking(|| {
        let end = Instant::now() + period;
        while Instant::now() < end {
            assert!(condition(), "{what} stopped holding");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Waits until `condition` holds, polling every 100 ms; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    blocking(|| {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}
