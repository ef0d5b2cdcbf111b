//! Completeness: every source record that enters a pipeline is accounted for, per source-time
//! window — arrived within the SLA, arrived late, dead-lettered, filtered, in flight, overdue,
//! lost or unknown — with repeated arrivals counted apart as duplicates. Pure: offsets and
//! bounds in, counts out (docs/completeness.md).
//!
//! - [`offset_ranges`]: sets of offsets as ranges (what is kept instead of one entry per
//!   record);
//! - [`arrivals`]: what one stream of output records showed of one source partition;
//! - [`offset_set`]: a set of offsets as ranges or a bitmap, whichever is smaller (what
//!   bounds the ledger in bytes);
//! - [`arrival_union`]: the arrivals of many streams merged (what the ledger keeps per output
//!   window);
//! - [`accounting`]: one window's counts from the evidence of every stream;
//! - [`declarations`]: what the stages' dead letters declared of source records (refused or
//!   filtered);
//! - [`stream`]: what one output partition's records of one output window showed of the
//!   source (what the partition stage publishes);
//! - [`ledger`]: every stream and every output partition's progress, turned into one
//!   accounting per source-time window as the merged progress moves;
//! - [`document`]: the document written per source-time window.

pub mod accounting;
pub mod arrival_union;
pub mod arrivals;
pub mod declarations;
pub mod document;
pub mod ledger;
pub mod offset_ranges;
pub mod offset_set;
pub mod stream;
