//! Asynchronous offset commits whose outcome comes back to the job.
//!
//! rdkafka's `Consumer::commit(.., CommitMode::Async)` only enqueues the commit: with the event
//! API rdkafka uses, librdkafka reports the coordinator's answer to application commits nowhere
//! (only automatic commits become events), so a refused commit would vanish. Committing with
//! `rd_kafka_commit_queue` onto the consumer's own queue turns the answer into an
//! `OffsetCommit` event, which the consumer serves while it is polled and hands to
//! `ConsumerContext::commit_callback` (see `JobContext::on_commit`).

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::TopicPartitionList;

/// Sends a commit of `offsets` without waiting; the coordinator's answer arrives later in the
/// consumer context's `commit_callback`. Fails at once only when librdkafka refuses to send it
/// (e.g. the consumer has no group).
pub fn commit_async<C, K>(consumer: &K, offsets: &TopicPartitionList) -> KafkaResult<()>
where
    C: ConsumerContext,
    K: Consumer<C> + ?Sized,
{
    let client = consumer.client().native_ptr();
    // SAFETY: `client` is the live consumer's handle (borrowed from `consumer` for this call);
    // the queue handle is released right after use (librdkafka keeps its own reference while
    // the commit is under way); `offsets` is only read (librdkafka copies it).
    let err = unsafe {
        let queue = rdsys::rd_kafka_queue_get_consumer(client);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::UnknownGroup,
            ));
        }
        let err =
            rdsys::rd_kafka_commit_queue(client, offsets.ptr(), queue, None, std::ptr::null_mut());
        rdsys::rd_kafka_queue_destroy(queue);
        err
    };
    if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}
