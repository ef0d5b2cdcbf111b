//! What the monitor stores beside each committed offset (Kafka commit metadata), so that a
//! restart rebuilds exactly the windows it had not yet written.

use serde::{Deserialize, Serialize};

/// Per-partition state committed with the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The partition's highest event time among records before the committed offset.
    #[serde(rename = "max_ts", skip_serializing_if = "Option::is_none")]
    pub max_event_time_before: Option<i64>,
    /// Watermark through which every window was written and acknowledged by the sink.
    #[serde(rename = "closed", skip_serializing_if = "Option::is_none")]
    pub durable_through: Option<i64>,
    /// The next offset the run that committed had not yet consumed: records below it were
    /// already processed once (a restart replays them without counting them twice).
    #[serde(rename = "end")]
    pub consumed_end: i64,
}

/// Version tag so a future format can be told apart.
const PREFIX: &str = "sla1:";

impl Checkpoint {
    /// Encodes as commit metadata.
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{}",
            serde_json::to_string(self).expect("serialisable")
        )
    }

    /// Decodes commit metadata; `None` for empty or foreign metadata (e.g. committed by
    /// another tool), in which case the partition starts without restored state.
    pub fn decode(metadata: &str) -> Option<Checkpoint> {
        serde_json::from_str(metadata.strip_prefix(PREFIX)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_foreign_metadata() {
        let c = Checkpoint {
            max_event_time_before: Some(1_700_000_000_000),
            durable_through: Some(1_699_999_999_999),
            consumed_end: 42,
        };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        assert_eq!(Checkpoint::decode(""), None);
        assert_eq!(Checkpoint::decode("{\"end\":1}"), None);
        let empty = Checkpoint::default();
        assert_eq!(empty.encode(), "sla1:{\"end\":0}");
    }
}
