//! Per-dimension SLAs (issue #36): a window's latencies split by the values of fields or
//! headers of the user's records (tenant, region, endpoint), with a bound on how many values
//! get figures of their own that no stream can break, and counts that always add up to the
//! whole window's. Pure: values in, per-value parts and the window's choice out.
//!
//! - [`spec`]: `--dimension NAME=SOURCE` and reading a record's values;
//! - [`value_table`]: one partition's window split by value, in bounded memory (the heaviest
//!   values kept, the rest folded into one part of other values);
//! - [`sla_rule`]: per-value SLAs (`--sla-for`);
//! - [`split_pieces`]: a partition's split in pieces that fit shuffle records, and put together;
//! - [`split_config`]: a job's split as a whole: its dimensions, bounds and SLAs;
//! - [`selection`]: which values of a window get documents of their own, from every
//!   partition's table, the same on every instance, and how exact each value's figures are.

pub mod selection;
pub mod sla_rule;
pub mod spec;
pub mod split_config;
pub mod split_pieces;
pub mod value_table;
