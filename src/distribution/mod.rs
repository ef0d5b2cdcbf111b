//! A window's latency distribution: percentiles (exact while a window is small, a t-digest
//! above a threshold) and the whole distribution as value/count pairs within a proved bound,
//! for Elasticsearch's `histogram` field. Pure: no I/O.

pub mod digest;
pub mod latency_histogram;
