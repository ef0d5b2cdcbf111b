//! Closing Kafka clients off the path that used them: librdkafka's close blocks (a consumer
//! leaves its group, a client's threads notice they should stop within their poll interval,
//! ~100 ms), and a job should not wait for a client it is done with.

use std::sync::Arc;
use std::time::Duration;

/// Drops `old` once nothing else holds it, off the async workers: closing a consumer leaves
/// its group and blocks, and the job's loop may still hold a clone for its current turn.
pub fn retire_when_unshared<T: Send + Sync + 'static>(mut old: Arc<T>) {
    tokio::task::spawn_blocking(move || loop {
        match Arc::try_unwrap(old) {
            Ok(consumer) => return drop(consumer),
            Err(still_shared) => {
                old = still_shared;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
}

/// Drops `client`, a client used for one look-up (an admin request, a probe, a read of a
/// topic), on a thread of its own, so that its close does not delay what comes next; start-up
/// makes several such look-ups in a row.
pub fn retire<T: Send + 'static>(client: T) {
    // When no thread can be started, the closure is dropped here, and the client with it.
    let _ = std::thread::Builder::new()
        .name("retire-client".into())
        .spawn(move || drop(client));
}
