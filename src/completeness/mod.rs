//! Completeness: every source record that enters a pipeline is accounted for, per source-time
//! window — arrived within the SLA, arrived late, dead-lettered, filtered, in flight, overdue,
//! lost or unknown — with repeated arrivals counted apart as duplicates. Pure: offsets and
//! bounds in, counts out (docs/completeness.md).
//!
//! - [`offset_ranges`]: sets of offsets as ranges (what is kept instead of one entry per
//!   record);
//! - [`arrivals`]: what one stream of output records showed of one source partition;
//! - [`accounting`]: one window's counts from the evidence of every stream.

pub mod accounting;
pub mod arrivals;
pub mod offset_ranges;
