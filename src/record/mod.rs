//! What a record is: the visits the synchronizer reads, the reduced records it writes, where a
//! record came from (its lineage), where a
//! record's latency starts and ends (a JSON field or a header, any time format), and the fixed
//! set of reasons a record is refused. Pure: no I/O.

pub mod json_pointer;
pub mod lineage;
pub mod plain_scan;
pub mod reduced_visit;
pub mod rejection;
pub mod stamp;
pub mod visit;
