//! A job's split by dimension as a whole (`--dimension`, `--max-dimension-values`,
//! `--sla-for`): what the partition stage reads of each record, how many values each
//! partition's window keeps, how many get documents, and which SLA each value has.

use super::sla_rule::SlaRules;
use super::spec::{read_key_found, Dimension, ValueSource};
use super::value_table::MIN_CAPACITY;
use crate::record::json_pointer::{JsonPointer, Scalar};
use crate::record::stamp::{EndSource, LatencyStamps, RecordHeaders, StampSource};

/// The fields of a record read in one pass ([`crate::record::json_pointer::find_each`]): the
/// field dimensions and the field stamps, by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPass {
    /// The pointers, in slot order (at most 3 dimensions and 2 stamps).
    pub pointers: Vec<JsonPointer>,
    /// The start stamp's slot, if it is a field.
    pub start: Option<usize>,
    /// The end stamp's slot, if it is a field.
    pub end: Option<usize>,
    /// Per dimension, its slot if it is a field.
    pub dimensions: Vec<Option<usize>>,
}

/// Default of `--max-dimension-values`: values per window and job with documents of their own.
pub const DEFAULT_MAX_VALUES: usize = 100;

/// Largest `--max-dimension-values`: each value is a document per window, and an alert
/// instance.
pub const MAX_MAX_VALUES: usize = 10_000;

/// How a job splits its windows by dimension value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitConfig {
    /// The dimensions, in the order a key holds their values (checked by
    /// [`super::spec::check_dimensions`]).
    pub dimensions: Vec<Dimension>,
    /// Values per window with documents of their own (besides every value holding 1 % of
    /// the window's records).
    pub max_values: usize,
    /// Per-value SLAs.
    pub sla_rules: SlaRules,
}

impl SplitConfig {
    /// How many values each partition's open window keeps a part for: at least
    /// [`MIN_CAPACITY`], and twice the values that get documents, so that the values chosen
    /// are, in all but hostile streams, counted exactly.
    pub fn capacity(&self) -> usize {
        (2 * self.max_values).max(MIN_CAPACITY)
    }

    /// The dimensions' names, in key order.
    pub fn names(&self) -> Vec<&str> {
        self.dimensions.iter().map(|d| d.name.as_str()).collect()
    }

    /// The record headers the dimensions read.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.dimensions.iter().filter_map(|d| match &d.source {
            ValueSource::Header(name) => Some(name.as_str()),
            ValueSource::Field(_) => None,
        })
    }

    /// The one pass over a record's value for its field stamps and field dimensions, when a
    /// dimension is a field (`None` otherwise: nothing to share).
    pub fn field_pass(&self, stamps: &LatencyStamps) -> Option<FieldPass> {
        let mut pointers = Vec::new();
        let mut slot = |source: Option<&JsonPointer>| {
            source.map(|pointer| {
                pointers.push(pointer.clone());
                pointers.len() - 1
            })
        };
        let dimensions: Vec<Option<usize>> = self
            .dimensions
            .iter()
            .map(|d| {
                slot(match &d.source {
                    ValueSource::Field(pointer) => Some(pointer),
                    ValueSource::Header(_) => None,
                })
            })
            .collect();
        if dimensions.iter().all(Option::is_none) {
            return None;
        }
        fn field(source: &StampSource) -> Option<&JsonPointer> {
            match source {
                StampSource::Field(pointer) => Some(pointer),
                _ => None,
            }
        }
        let start = slot(field(&stamps.start.source));
        let end = slot(match &stamps.end {
            EndSource::Stamp(stamp) => field(&stamp.source),
            EndSource::KafkaTimestamp => None,
        });
        Some(FieldPass {
            pointers,
            start,
            end,
            dimensions,
        })
    }

    /// Reads the key of the record whose value is `payload` and headers are `headers` into
    /// `out` (field dimensions `found` in a shared pass taken as found: see
    /// [`read_key_found`]), and returns its SLA (`default_sla_ms` unless a rule names one of
    /// its values).
    pub fn key_of<'a>(
        &self,
        payload: Option<&[u8]>,
        headers: &dyn RecordHeaders,
        default_sla_ms: i64,
        found: &dyn Fn(usize) -> Option<Option<&'a Scalar<'a>>>,
        out: &mut String,
    ) -> i64 {
        read_key_found(&self.dimensions, payload, headers, found, out);
        self.sla_rules.sla_for(out, default_sla_ms)
    }
}
