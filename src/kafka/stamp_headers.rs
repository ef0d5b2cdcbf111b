//! The headers of a consumed Kafka record that the latency stamps name (and the lineage, with
//! `--source-topic`), looked up once per record (nothing is looked up when none is needed).

use crate::record::stamp::RecordHeaders;
use rdkafka::message::{Headers, Message};

/// The most headers a record is asked for: the two stamps, the lineage and three dimensions.
pub const MAX_READ_HEADERS: usize = 6;

/// The values of the (at most [`MAX_READ_HEADERS`]) headers the stamps, the lineage and the
/// dimensions read, borrowed from the record.
pub struct StampHeaders<'a> {
    found: [(&'a str, Option<&'a [u8]>); MAX_READ_HEADERS],
}

impl<'a> StampHeaders<'a> {
    /// Looks up, in `message`, the last header of each of `names` (at most
    /// [`MAX_READ_HEADERS`]: the header names the stamps read,
    /// [`crate::record::stamp::LatencyStamps::header_names`], the lineage and the dimensions'
    /// headers; computed once per job).
    pub fn of<M: Message>(message: &'a M, names: &'a [String]) -> StampHeaders<'a> {
        let mut found: [(&str, Option<&[u8]>); MAX_READ_HEADERS] = [("", None); MAX_READ_HEADERS];
        if names.is_empty() {
            // No stamp is a header: the record's headers are not even asked for (librdkafka
            // parses them on request).
            return StampHeaders { found };
        }
        for (slot, name) in found.iter_mut().zip(names) {
            slot.0 = name;
        }
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                for slot in found.iter_mut().filter(|(name, _)| !name.is_empty()) {
                    if header.key == slot.0 {
                        slot.1 = Some(header.value.unwrap_or_default());
                    }
                }
            }
        }
        StampHeaders { found }
    }
}

impl RecordHeaders for StampHeaders<'_> {
    fn last(&self, name: &str) -> Option<&[u8]> {
        self.found
            .iter()
            .find(|(n, _)| !n.is_empty() && *n == name)
            .and_then(|(_, v)| *v)
    }
}
