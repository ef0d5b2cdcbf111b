//! The completeness ledger of one monitor: every output partition's arrivals per output
//! window (as the partition stages publish them on the shuffle topic), every output
//! partition's progress, and through which source-time window the accounting is final. No
//! I/O: it says which source windows are due and which offset look-ups they need, and turns
//! the answers into one [`Completeness`] per window.
//!
//! Time is the monitor's merged progress, not a clock: `as_of` is the end of the last output
//! window every output partition has closed, so every arrival before it is known. A source
//! window is accounted once it has ended (`as_of` past its end), again at each later
//! `as_of`, and finally once `as_of` is `lost_after` past its end: every arrival that can
//! still count has been seen, so its final counts are the same whichever instance computes
//! them and whenever. Its stream records are then no longer needed.

use super::accounting::{account, Completeness, PartitionBounds, PartitionEvidence};
use super::arrival_union::ArrivalUnion;
use super::declarations::Declarations;
use super::offset_ranges::OffsetRanges;
use super::stream::{CompletenessRules, StreamArrivals};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Through which source window the accounting is final, as recorded on the shuffle topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounted {
    /// The first source window accounted (ms): the source window of the earliest arrival in
    /// the first output window that had any.
    pub first_window: i64,
    /// Source windows ending at or before this (ms) are final and written.
    pub final_through: i64,
}

/// One time to look up in every source partition: the first offset at or after `time_ms`,
/// with the floor each partition's answer cannot be below (one past an offset known to be
/// older), if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeQuery {
    /// The time (ms).
    pub time_ms: i64,
    /// Per source partition, the floor.
    pub floors: BTreeMap<i32, i64>,
}

/// Source windows to account at `as_of`, and the look-ups they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The merged progress (ms).
    pub as_of: i64,
    /// The first source window accounted.
    pub first_window: i64,
    /// Starts of the source windows to account, ascending.
    pub windows: Vec<i64>,
    /// Of them, those final at `as_of` (a prefix).
    pub finals: usize,
    /// The times to look up, ascending.
    pub queries: Vec<TimeQuery>,
}

/// What the source answered for a [`Due`]: per time, per source partition, the first offset
/// at or after it; per partition, the first offset still in the log; and what the stages
/// declared on their dead-letter topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAnswers {
    /// Per queried time.
    pub offsets: BTreeMap<i64, BTreeMap<i32, i64>>,
    /// Per source partition, its log start.
    pub log_starts: BTreeMap<i32, i64>,
    /// Source records dead-lettered or declared filtered (at least those at or after the
    /// first window's start).
    pub declarations: Declarations,
}

/// One accounted source window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowAccount {
    /// The window's start (ms).
    pub window_start: i64,
    /// Whether no later arrival can change it.
    pub is_final: bool,
    /// The counts.
    pub completeness: Completeness,
}

/// What the ledger keeps of one output window: every output partition's arrivals in it,
/// merged. A stage that re-keys records scatters each output partition's stream, but the
/// streams of one output window together cover a nearly contiguous band of each source
/// partition's offsets, so the merged arrivals are a few ranges where the streams apart would
/// be one range per record.
#[derive(Debug, Default)]
struct OutputWindow {
    /// The records merged, `(output partition, piece)`: a replay of one changes nothing.
    pieces: BTreeSet<(i32, u32)>,
    /// Per source partition, the arrivals.
    sources: BTreeMap<i32, ArrivalUnion>,
    /// Per source partition and source window (its start), the highest offset that arrived.
    newest_by_window: BTreeMap<i32, BTreeMap<i64, i64>>,
    /// The earliest source time among the arrivals (ms).
    earliest_source_ms: Option<i64>,
}

impl OutputWindow {
    /// Merges one stream record, unless it was merged before (a replay).
    fn merge(&mut self, partition: i32, piece: u32, stream: StreamArrivals) {
        if !self.pieces.insert((partition, piece)) {
            return;
        }
        for (source_partition, source) in stream.sources {
            self.sources
                .entry(source_partition)
                .or_default()
                .add(&source.arrivals);
            let newest = self.newest_by_window.entry(source_partition).or_default();
            for (window, offset) in source.newest_by_window {
                let entry = newest.entry(window).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
        if let Some(earliest) = stream.earliest_source_ms {
            self.earliest_source_ms = Some(
                self.earliest_source_ms
                    .map_or(earliest, |e| e.min(earliest)),
            );
        }
    }

    /// The bytes its arrivals hold.
    fn bytes(&self) -> usize {
        self.sources.values().map(ArrivalUnion::bytes).sum()
    }
}

/// The ledger (see the module documentation).
#[derive(Debug)]
pub struct CompletenessLedger {
    rules: CompletenessRules,
    allowed_lateness_ms: i64,
    input_partitions: Vec<i32>,
    progress: BTreeMap<i32, i64>,
    /// Per output window (its start), its arrivals.
    windows: BTreeMap<i64, OutputWindow>,
    accounted: Option<Accounted>,
    /// The `as_of` of the last accounting handed out.
    accounted_as_of: Option<i64>,
    /// Per (source window, source partition) not yet final, its offset range as first
    /// answered: records retention deletes later stay expected (and read unknown).
    ranges_seen: BTreeMap<(i64, i32), Range<i64>>,
}

impl CompletenessLedger {
    /// An empty ledger for output windows closing `allowed_lateness_ms` after their end.
    pub fn new(rules: CompletenessRules, allowed_lateness_ms: i64) -> Self {
        CompletenessLedger {
            rules,
            allowed_lateness_ms,
            input_partitions: Vec::new(),
            progress: BTreeMap::new(),
            windows: BTreeMap::new(),
            accounted: None,
            accounted_as_of: None,
            ranges_seen: BTreeMap::new(),
        }
    }

    /// The output topic's partitions: every one must pass a time before it counts as known.
    pub fn set_input_partitions(&mut self, partitions: Vec<i32>) {
        self.input_partitions = partitions;
    }

    /// Output partition `partition`'s arrivals in the output window starting at
    /// `window_start`, or piece `piece` of them (merged into the window's arrivals; a replay
    /// of a record merged before changes nothing).
    pub fn on_arrivals(
        &mut self,
        window_start: i64,
        partition: i32,
        piece: u32,
        stream: StreamArrivals,
    ) {
        if self
            .accounted
            .is_some_and(|a| window_start + self.rules.window_ms <= a.final_through)
        {
            return; // every source window it can touch is final
        }
        self.windows
            .entry(window_start)
            .or_default()
            .merge(partition, piece, stream);
    }

    /// Output partition `partition` closed its windows through `closed_through`.
    pub fn on_progress(&mut self, partition: i32, closed_through: i64) {
        let entry = self.progress.entry(partition).or_insert(closed_through);
        *entry = (*entry).max(closed_through);
    }

    /// The accounting was final through `accounted.final_through` (read back from the shuffle
    /// topic, or just written).
    pub fn on_accounted(&mut self, accounted: Accounted) {
        if self
            .accounted
            .is_some_and(|a| a.final_through >= accounted.final_through)
        {
            return;
        }
        self.accounted = Some(accounted);
        let through = accounted.final_through;
        let window_ms = self.rules.window_ms;
        self.windows.retain(|&start, _| start + window_ms > through);
        self.ranges_seen.retain(|&(start, _), _| start >= through);
    }

    /// What was recorded as final.
    pub fn accounted(&self) -> Option<Accounted> {
        self.accounted
    }

    /// The end of the last output window every output partition has closed (ms).
    pub fn as_of(&self) -> Option<i64> {
        if self.input_partitions.is_empty() {
            return None;
        }
        self.input_partitions
            .iter()
            .map(|p| {
                self.progress
                    .get(p)
                    .map(|&c| c + 1 - self.allowed_lateness_ms)
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// The stream records a final accounting through `final_through` no longer needs:
    /// `(output window start, output partition, piece)`.
    pub fn streams_final_through(&self, final_through: i64) -> Vec<(i64, i32, u32)> {
        let window_ms = self.rules.window_ms;
        self.windows
            .range(..final_through - window_ms + 1)
            .flat_map(|(&start, w)| w.pieces.iter().map(move |&(p, piece)| (start, p, piece)))
            .collect()
    }

    /// Stream records held.
    pub fn stream_count(&self) -> usize {
        self.windows.values().map(|w| w.pieces.len()).sum()
    }

    /// The bytes the arrivals held take (their offset sets: ranges or bitmaps).
    pub fn arrival_bytes(&self) -> usize {
        self.windows.values().map(OutputWindow::bytes).sum()
    }

    /// The first source window to account: recorded, or the source window of the earliest
    /// arrival in the first output window with arrivals, once that output window is known
    /// whole.
    fn first_window(&self, as_of: i64) -> Option<i64> {
        if let Some(accounted) = self.accounted {
            return Some(accounted.first_window);
        }
        let (&first, window) = self
            .windows
            .iter()
            .find(|(_, w)| w.earliest_source_ms.is_some())?;
        if first + self.rules.window_ms > as_of {
            return None;
        }
        Some(self.rules.window_start(window.earliest_source_ms?))
    }

    /// The accounting due now, if `as_of` moved since the last one handed out: every source
    /// window not final that has ended.
    pub fn due(&self) -> Option<Due> {
        let as_of = self.as_of()?;
        if self.accounted_as_of.is_some_and(|a| a >= as_of) {
            return None;
        }
        let first_window = self.first_window(as_of)?;
        let window_ms = self.rules.window_ms;
        let from = self
            .accounted
            .map_or(first_window, |a| a.final_through.max(first_window));
        let windows: Vec<i64> = (0..)
            .map(|i| from + i * window_ms)
            .take_while(|&start| start + window_ms <= as_of)
            .collect();
        if windows.is_empty() {
            return None;
        }
        let finals = windows
            .iter()
            .take_while(|&&start| start + window_ms + self.rules.lost_after_ms <= as_of)
            .count();
        let mut times = windows.clone();
        times.push(windows[windows.len() - 1] + window_ms);
        times.push(as_of - self.rules.sla_ms);
        times.push(as_of - self.rules.lost_after_ms);
        times.sort_unstable();
        times.dedup();
        let queries = times
            .into_iter()
            .map(|time_ms| TimeQuery {
                time_ms,
                floors: self.floors(time_ms),
            })
            .collect();
        Some(Due {
            as_of,
            first_window,
            windows,
            finals,
            queries,
        })
    }

    /// Per source partition, one past the highest offset that arrived from a source window
    /// ending at or before `time_ms`: its record is older than `time_ms`.
    fn floors(&self, time_ms: i64) -> BTreeMap<i32, i64> {
        let window_ms = self.rules.window_ms;
        let mut floors = BTreeMap::new();
        for window in self.windows.values() {
            for (&partition, newest_by_window) in &window.newest_by_window {
                let newest = newest_by_window
                    .range(..=time_ms - window_ms)
                    .map(|(_, &o)| o)
                    .max();
                if let Some(offset) = newest {
                    let floor = floors.entry(partition).or_insert(offset + 1);
                    *floor = (*floor).max(offset + 1);
                }
            }
        }
        floors
    }

    /// Accounts for the windows of `due` from the source's answers, and remembers that
    /// `due.as_of` was handed out.
    pub fn account(&mut self, due: &Due, answers: &SourceAnswers) -> Vec<WindowAccount> {
        self.accounted_as_of = Some(due.as_of);
        let window_ms = self.rules.window_ms;
        // The arrivals of every output window the merged progress has passed.
        let mut by_partition: BTreeMap<i32, Vec<&ArrivalUnion>> = BTreeMap::new();
        for (_, window) in self
            .windows
            .range(..(due.as_of - window_ms).saturating_add(1))
        {
            for (&partition, arrivals) in &window.sources {
                by_partition.entry(partition).or_default().push(arrivals);
            }
        }
        let nothing = OffsetRanges::new();
        let mut partitions_seen: Vec<i32> = by_partition.keys().copied().collect();
        partitions_seen.extend(answers.declarations.partitions().keys());
        let evidence: BTreeMap<i32, PartitionEvidence<'_>> = partitions_seen
            .into_iter()
            .map(|partition| {
                let declared = answers.declarations.of(partition);
                (
                    partition,
                    PartitionEvidence {
                        streams: by_partition.get(&partition).map_or(&[][..], Vec::as_slice),
                        dead_lettered: declared.map_or(&nothing, |d| &d.dead_lettered),
                        filtered: declared.map_or(&nothing, |d| &d.filtered),
                    },
                )
            })
            .collect();
        let at = |time: i64, partition: i32| -> i64 {
            answers
                .offsets
                .get(&time)
                .and_then(|o| o.get(&partition))
                .copied()
                .unwrap_or(0)
        };
        let partitions: Vec<i32> = answers.log_starts.keys().copied().collect();
        let mut accounts = Vec::with_capacity(due.windows.len());
        for (i, &start) in due.windows.iter().enumerate() {
            let mut bounds = BTreeMap::new();
            for &p in &partitions {
                let answered = at(start, p)..at(start + window_ms, p);
                let expected = remembered(&mut self.ranges_seen, (start, p), answered);
                let bound = PartitionBounds {
                    expected,
                    lost_below: at(due.as_of - self.rules.lost_after_ms, p),
                    overdue_below: at(due.as_of - self.rules.sla_ms, p),
                    log_start: answers.log_starts.get(&p).copied().unwrap_or(0),
                };
                bounds.insert(p, bound);
            }
            accounts.push(WindowAccount {
                window_start: start,
                is_final: i < due.finals,
                completeness: account(&bounds, &evidence),
            });
        }
        accounts
    }
}

/// A window's offset range in one partition: as first answered, widened by later answers,
/// but kept when a later answer lies wholly past it (retention deleted the window's records,
/// and offsets-for-times now answers the first record kept).
fn remembered(
    seen: &mut BTreeMap<(i64, i32), Range<i64>>,
    key: (i64, i32),
    answered: Range<i64>,
) -> Range<i64> {
    let range = seen.entry(key).or_insert_with(|| answered.clone());
    if range.is_empty() {
        *range = answered;
    } else if answered.start < range.end {
        range.start = range.start.min(answered.start);
        range.end = range.end.max(answered.end);
    }
    range.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CompletenessRules = CompletenessRules {
        window_ms: 1_000,
        sla_ms: 100,
        lost_after_ms: 3_000,
    };

    fn ledger() -> CompletenessLedger {
        let mut ledger = CompletenessLedger::new(RULES, 0);
        ledger.set_input_partitions(vec![0, 1]);
        ledger
    }

    /// Output window start, arrivals of source partition 0 as (offset, source ms, arrival ms).
    fn stream(records: &[(i64, i64, i64)]) -> StreamArrivals {
        let mut stream = StreamArrivals::default();
        for &(offset, source, arrival) in records {
            stream.record(&RULES, 0, offset, source, arrival);
        }
        stream
    }

    /// The source: one record per 100 ms from t = 10,000 at offset 0, in partition 0.
    fn answers(due: &Due) -> SourceAnswers {
        let offsets = due
            .queries
            .iter()
            .map(|q| {
                let first = ((q.time_ms - 10_000).max(0) + 99) / 100;
                (q.time_ms, BTreeMap::from([(0, first.min(100))]))
            })
            .collect();
        SourceAnswers {
            offsets,
            log_starts: BTreeMap::from([(0, 0)]),
            ..SourceAnswers::default()
        }
    }

    #[test]
    fn nothing_is_due_before_every_output_partition_passed_a_window() {
        let mut ledger = ledger();
        ledger.on_arrivals(10_000, 0, 0, stream(&[(0, 10_000, 10_050)]));
        ledger.on_progress(0, 10_999);
        assert_eq!(ledger.due(), None, "partition 1 has not passed");
        ledger.on_progress(1, 10_999);
        let due = ledger.due().expect("due");
        assert_eq!(due.as_of, 11_000);
        assert_eq!(due.first_window, 10_000);
        assert_eq!(due.windows, vec![10_000]);
        assert_eq!(due.finals, 0);
    }

    #[test]
    fn a_missing_record_is_in_flight_then_overdue_then_lost_and_final() {
        let mut ledger = ledger();
        // Source window 10,000..11,000 holds offsets 0..10; offset 4 never arrives.
        let arrived: Vec<(i64, i64, i64)> = (0..10)
            .filter(|&o| o != 4)
            .map(|o| (o, 10_000 + o * 100, 10_000 + o * 100 + 50))
            .collect();
        ledger.on_arrivals(10_000, 0, 0, stream(&arrived));
        let at = |ledger: &mut CompletenessLedger, through: i64| {
            ledger.on_progress(0, through - 1);
            ledger.on_progress(1, through - 1);
            let due = ledger.due().expect("due");
            let answers = answers(&due);
            ledger.account(&due, &answers).remove(0)
        };
        let first = at(&mut ledger, 11_000);
        assert_eq!(first.completeness.expected, 10);
        assert_eq!(first.completeness.arrived_within_sla, 9);
        assert_eq!(
            first.completeness.overdue, 1,
            "entered at 10,400: past the SLA"
        );
        assert!(!first.is_final);
        let later = at(&mut ledger, 13_000);
        assert_eq!(later.completeness.overdue, 1);
        let last = at(&mut ledger, 14_000);
        assert!(last.is_final);
        assert_eq!(last.completeness.lost, 1);
        assert_eq!(last.completeness.overdue, 0);
        assert_eq!(last.completeness.accounted(), 10);
        assert_eq!(last.completeness.first_missing, BTreeMap::from([(0, 4)]));
    }

    #[test]
    fn declared_records_are_accounted_even_from_a_partition_nothing_arrived_from() {
        use crate::completeness::declarations::Declaration;
        let mut ledger = ledger();
        // Source window 10,000..11,000 of partition 0 holds offsets 0..10: 0..8 arrived, 8 was
        // dead-lettered, 9 filtered. Partition 1 holds offsets 0..2, both dead-lettered.
        let arrived: Vec<(i64, i64, i64)> = (0..8)
            .map(|o| (o, 10_000 + o * 100, 10_000 + o * 100 + 50))
            .collect();
        ledger.on_arrivals(10_000, 0, 0, stream(&arrived));
        ledger.on_progress(0, 10_999);
        ledger.on_progress(1, 10_999);
        let due = ledger.due().expect("due");
        let mut answers = answers(&due);
        for query in answers.offsets.values_mut() {
            let first = if query[&0] == 0 { 0 } else { 2 };
            query.insert(1, first);
        }
        answers.log_starts.insert(1, 0);
        for (partition, offset, filtered) in
            [(0, 8, false), (0, 9, true), (1, 0, false), (1, 1, false)]
        {
            let declaration = Declaration {
                partition,
                offset,
                source_timestamp_ms: Some(10_000 + offset * 100),
                filtered,
            };
            answers
                .declarations
                .record(&RULES, &declaration, Some(10_990));
        }
        let account = ledger.account(&due, &answers).remove(0).completeness;
        assert_eq!(account.expected, 12);
        assert_eq!(account.arrived_within_sla, 8);
        assert_eq!((account.dead_lettered, account.filtered), (3, 1));
        assert_eq!(account.overdue + account.lost + account.in_flight, 0);
        assert_eq!(account.accounted(), account.expected);
    }

    #[test]
    fn records_retention_deletes_after_they_were_expected_are_unknown_never_lost() {
        let mut ledger = ledger();
        // Source window 10,000..11,000 holds offsets 0..10: 0..5 arrived, 5..10 never do.
        let arrived: Vec<(i64, i64, i64)> = (0..5)
            .map(|o| (o, 10_000 + o * 100, 10_000 + o * 100 + 50))
            .collect();
        ledger.on_arrivals(10_000, 0, 0, stream(&arrived));
        let mut account_at = |through: i64, deleted_below: i64| {
            ledger.on_progress(0, through - 1);
            ledger.on_progress(1, through - 1);
            let due = ledger.due().expect("due");
            let mut answers = answers(&due);
            // Retention deleted offsets below `deleted_below`: offsets-for-times answers the
            // first record kept for any earlier time, and the log starts there.
            for offsets in answers.offsets.values_mut() {
                for offset in offsets.values_mut() {
                    *offset = (*offset).max(deleted_below);
                }
            }
            answers.log_starts.insert(0, deleted_below);
            ledger.account(&due, &answers).remove(0)
        };
        let before = account_at(12_000, 0);
        assert_eq!(
            (before.completeness.expected, before.completeness.overdue),
            (10, 5)
        );
        let partly = account_at(13_000, 7);
        assert_eq!(partly.completeness.expected, 10, "still expected");
        assert_eq!(
            (partly.completeness.unknown, partly.completeness.overdue),
            (2, 3)
        );
        let last = account_at(14_000, 40);
        assert!(last.is_final);
        let c = last.completeness;
        assert_eq!(
            (c.expected, c.arrived_within_sla, c.unknown, c.lost),
            (10, 5, 5, 0)
        );
        assert!(c.first_missing.is_empty(), "{c:?}");
    }

    #[test]
    fn streams_of_windows_not_yet_passed_everywhere_do_not_count() {
        let mut ledger = ledger();
        ledger.on_arrivals(10_000, 0, 0, stream(&[(0, 10_000, 10_050)]));
        // Offset 1 arrived in output window 11,000 of partition 1, which partition 0 has not
        // passed: not known at as_of 11,000 (an instance ahead must not change the answer).
        ledger.on_arrivals(11_000, 1, 0, stream(&[(1, 10_100, 11_050)]));
        ledger.on_progress(0, 10_999);
        ledger.on_progress(1, 11_999);
        let due = ledger.due().unwrap();
        let account = ledger.account(&due, &answers(&due)).remove(0);
        assert_eq!(account.completeness.arrived_within_sla, 1);
        assert_eq!(account.completeness.arrived_late, 0);
    }

    #[test]
    fn final_accounting_forgets_what_it_no_longer_needs() {
        let mut ledger = ledger();
        ledger.on_arrivals(10_000, 0, 0, stream(&[(0, 10_000, 10_050)]));
        ledger.on_arrivals(12_000, 0, 0, stream(&[(21, 12_100, 12_150)]));
        assert_eq!(ledger.streams_final_through(11_000), vec![(10_000, 0, 0)]);
        ledger.on_accounted(Accounted {
            first_window: 10_000,
            final_through: 11_000,
        });
        assert_eq!(ledger.stream_count(), 1);
        ledger.on_arrivals(10_000, 1, 0, stream(&[(3, 10_300, 10_350)]));
        assert_eq!(
            ledger.stream_count(),
            1,
            "a replayed stream of a final window"
        );
        ledger.on_progress(0, 14_999);
        ledger.on_progress(1, 14_999);
        let due = ledger.due().unwrap();
        assert_eq!(due.windows, vec![11_000, 12_000, 13_000, 14_000]);
        assert_eq!(due.finals, 1);
    }

    #[test]
    fn scattered_streams_of_a_window_are_held_merged_and_a_replay_changes_nothing() {
        // A re-keying stage: output partition p gets every 4th record of source window
        // 10,000..11,000 (offsets 0..10, one per 100 ms); offset 6 is lost.
        let mut ledger = CompletenessLedger::new(RULES, 0);
        ledger.set_input_partitions(vec![0, 1, 2, 3]);
        let of = |p: i64| -> StreamArrivals {
            let records: Vec<(i64, i64, i64)> = (0..10)
                .filter(|o| o % 4 == p && *o != 6)
                .map(|o| (o, 10_000 + o * 100, 10_000 + o * 100 + 50))
                .collect();
            stream(&records)
        };
        for p in 0..4 {
            ledger.on_arrivals(10_000, p as i32, 0, of(p));
        }
        // Within the SLA and arrived: 0..6 and 7..10 each, as one bitmap word (smaller than
        // two ranges); the streams apart would be 8 ranges.
        assert_eq!(ledger.arrival_bytes(), 2 * 8);
        ledger.on_arrivals(10_000, 1, 0, of(1));
        assert_eq!(ledger.stream_count(), 4, "a replay is not a new record");
        (0..4).for_each(|p| ledger.on_progress(p, 13_999));
        let due = ledger.due().unwrap();
        let last = ledger.account(&due, &answers(&due)).remove(0);
        assert!(last.is_final);
        assert_eq!(last.completeness.arrived_within_sla, 9);
        assert_eq!(last.completeness.lost, 1);
        assert_eq!(
            last.completeness.duplicates, 0,
            "the replay counted no duplicate"
        );
    }

    #[test]
    fn floors_come_from_records_known_to_be_older() {
        let mut ledger = ledger();
        ledger.on_arrivals(
            10_000,
            0,
            0,
            stream(&[(7, 10_500, 10_550), (9, 11_200, 11_250)]),
        );
        assert_eq!(ledger.floors(11_000), BTreeMap::from([(0, 8)]));
        assert_eq!(ledger.floors(12_000), BTreeMap::from([(0, 10)]));
        assert_eq!(ledger.floors(10_000), BTreeMap::new());
    }
}
