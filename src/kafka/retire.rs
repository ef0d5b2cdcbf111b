//! Closing a consumer that was replaced by a fresh one (a job rejoining its group).

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
