//! Lineage: where a record of a pipeline stage's output came from — the source record's topic,
//! partition, offset and Kafka timestamp — carried in one header, `lineage`, whose value is
//! `<topic>:<partition>:<offset>:<timestamp ms>` (`visits:3:48213:1795000000123`; without a
//! timestamp, `visits:3:48213`). Kafka topic names never contain `:`, so the value is read
//! unambiguously from the left.
//!
//! One header rather than four: librdkafka allocates and encodes each header of each record, and
//! four cost the synchronizer a quarter of its speed (docs/benchmarks.md). Any stage in any
//! language writes it in a line (docs/completeness.md).

/// Name of the header carrying a record's lineage.
pub const LINEAGE_HEADER: &str = "lineage";

/// Longest topic name Kafka accepts.
const MAX_TOPIC_LENGTH: usize = 249;

/// Where one output record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage<'a> {
    /// The source record's topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its Kafka timestamp (Unix ms), when it had one.
    pub timestamp_ms: Option<i64>,
}

/// Why a `lineage` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineageError {
    /// The value is not UTF-8 text.
    #[error("the lineage header is not UTF-8 text")]
    NotText,
    /// Not three or four `:`-separated fields.
    #[error("the lineage header has {0} fields; expected topic:partition:offset[:timestamp_ms]")]
    Fields(usize),
    /// The topic is not a Kafka topic name.
    #[error("the lineage header's topic {0:?} is not a Kafka topic name")]
    Topic(String),
    /// A number field is not a non-negative integer.
    #[error("the lineage header's {field} {value:?} is not a non-negative integer")]
    Number {
        /// Which field.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

impl<'a> Lineage<'a> {
    /// Appends the header value to `buffer` (cleared first), so that a caller reuses one buffer
    /// for every record.
    pub fn encode_into(&self, buffer: &mut Vec<u8>) {
        let mut digits = itoa::Buffer::new();
        buffer.clear();
        buffer.extend_from_slice(self.topic.as_bytes());
        buffer.push(b':');
        buffer.extend_from_slice(digits.format(self.partition).as_bytes());
        buffer.push(b':');
        buffer.extend_from_slice(digits.format(self.offset).as_bytes());
        if let Some(timestamp) = self.timestamp_ms {
            buffer.push(b':');
            buffer.extend_from_slice(digits.format(timestamp).as_bytes());
        }
    }

    /// The header value.
    pub fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(self.topic.len() + 36);
        self.encode_into(&mut buffer);
        buffer
    }

    /// Reads a header value.
    pub fn parse(value: &'a [u8]) -> Result<Lineage<'a>, LineageError> {
        // Read once per record by the monitor: a well-formed value is read in one pass over
        // its bytes; anything else goes the way that says what is wrong.
        match Self::parse_well_formed(value) {
            Some(lineage) => Ok(lineage),
            None => Self::parse_explaining(value),
        }
    }

    /// A well-formed value, read without checking it as text first (a topic name is ASCII,
    /// numbers are digits), or `None`.
    fn parse_well_formed(value: &'a [u8]) -> Option<Lineage<'a>> {
        let mut fields = value.split(|&b| b == b':');
        let topic = fields.next()?;
        let partition = digits(fields.next()?)?;
        let offset = digits(fields.next()?)?;
        let timestamp = match fields.next() {
            Some(field) => Some(digits(field)?),
            None => None,
        };
        if fields.next().is_some() || !is_topic_name_bytes(topic) {
            return None;
        }
        Some(Lineage {
            topic: std::str::from_utf8(topic).ok()?,
            partition: i32::try_from(partition).ok()?,
            offset: i64::try_from(offset).ok()?,
            timestamp_ms: match timestamp {
                Some(t) => Some(i64::try_from(t).ok()?),
                None => None,
            },
        })
    }

    /// Reads a header value, saying what is wrong with it.
    fn parse_explaining(value: &'a [u8]) -> Result<Lineage<'a>, LineageError> {
        let text = std::str::from_utf8(value).map_err(|_| LineageError::NotText)?;
        let mut fields = text.split(':');
        let mut next = || fields.next();
        let (Some(topic), Some(partition), Some(offset)) = (next(), next(), next()) else {
            return Err(LineageError::Fields(text.split(':').count()));
        };
        let timestamp = next();
        if next().is_some() {
            return Err(LineageError::Fields(text.split(':').count()));
        }
        if !is_topic_name(topic) {
            return Err(LineageError::Topic(topic.to_string()));
        }
        Ok(Lineage {
            topic,
            partition: number(partition, "partition")?,
            offset: number(offset, "offset")?,
            timestamp_ms: timestamp.map(|t| number(t, "timestamp")).transpose()?,
        })
    }
}

/// Whether `name` is a topic name Kafka accepts: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_topic_name(name: &str) -> bool {
    is_topic_name_bytes(name.as_bytes())
}

fn is_topic_name_bytes(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LENGTH
        && name != b"."
        && name != b".."
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 1 to 19 ASCII digits as a number no larger than `i64::MAX`, or `None`.
fn digits(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &byte in field {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    (value <= i64::MAX as u64).then_some(value)
}

fn number<T: TryFrom<u64>>(text: &str, field: &'static str) -> Result<T, LineageError> {
    // 19 digits fit a u64; the field's type (i32, i64 ≥ 0) bounds it further.
    digits(text.as_bytes())
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| LineageError::Number {
            field,
            value: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_it_writes_and_the_documented_example() {
        let lineage = Lineage::parse(b"visits:3:48213:1795000000123").unwrap();
        assert_eq!(
            lineage,
            Lineage {
                topic: "visits",
                partition: 3,
                offset: 48213,
                timestamp_ms: Some(1_795_000_000_123)
            }
        );
        assert_eq!(lineage.encode(), b"visits:3:48213:1795000000123");
        let untimed = Lineage::parse(b"visits:0:7").unwrap();
        assert_eq!(untimed.timestamp_ms, None);
        assert_eq!(untimed.encode(), b"visits:0:7");
    }

    #[test]
    fn refuses_what_is_not_a_lineage_saying_why() {
        assert_eq!(Lineage::parse(b"visits:3"), Err(LineageError::Fields(2)));
        assert_eq!(Lineage::parse(b"a:1:2:3:4"), Err(LineageError::Fields(5)));
        assert_eq!(
            Lineage::parse(b"vis its:1:2"),
            Err(LineageError::Topic("vis its".into()))
        );
        assert_eq!(Lineage::parse(b":1:2"), Err(LineageError::Topic("".into())));
        assert!(matches!(
            Lineage::parse(b"visits:-1:2"),
            Err(LineageError::Number {
                field: "partition",
                ..
            })
        ));
        assert!(matches!(
            Lineage::parse(b"visits:1:+2"),
            Err(LineageError::Number {
                field: "offset",
                ..
            })
        ));
        assert!(matches!(
            Lineage::parse(b"visits:1:2:"),
            Err(LineageError::Number {
                field: "timestamp",
                ..
            })
        ));
        assert!(matches!(
            Lineage::parse(b"visits:99999999999:2"),
            Err(LineageError::Number {
                field: "partition",
                ..
            })
        ));
        assert_eq!(Lineage::parse(&[0xff, b':']), Err(LineageError::NotText));
        let long = format!("{}:1:2", "t".repeat(250));
        assert!(matches!(
            Lineage::parse(long.as_bytes()),
            Err(LineageError::Topic(_))
        ));
    }

    proptest! {
        #[test]
        fn any_lineage_reads_back_as_written(
            topic in "[a-zA-Z0-9._-]{1,40}",
            partition in 0..i32::MAX,
            offset in 0..i64::MAX,
            timestamp_ms in proptest::option::of(0..i64::MAX),
        ) {
            prop_assume!(topic != "." && topic != "..");
            let lineage = Lineage { topic: &topic, partition, offset, timestamp_ms };
            let mut buffer = b"left over".to_vec();
            lineage.encode_into(&mut buffer);
            prop_assert_eq!(Lineage::parse(&buffer), Ok(lineage));
        }

        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Lineage::parse(&bytes);
        }

        /// The one-pass reading accepts only what the explaining one accepts, and reads it
        /// the same (inputs close to lineages: digits, colons, topic characters, others).
        #[test]
        fn the_fast_reading_agrees_with_the_explaining_one(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"0123456789::::ab._-+ \xff".to_vec()), 0..40),
        ) {
            if let Some(fast) = Lineage::parse_well_formed(&bytes) {
                prop_assert_eq!(Lineage::parse_explaining(&bytes), Ok(fast));
            }
            if let Ok(slow) = Lineage::parse_explaining(&bytes) {
                prop_assert_eq!(Lineage::parse_well_formed(&bytes), Some(slow));
            }
        }
    }
}
