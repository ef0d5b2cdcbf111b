//! The merge stage's state (see `merge_stage` for its loop): a [`WindowMerger`] per shuffle partition the merge
//! group gave this instance, fed with what it reads from the shuffle topic. No I/O: the loop
//! passes records in and takes whole windows out.
//!
//! A merger re-reads its shuffle partition from the beginning whenever it is assigned (the
//! topic is compacted, and written windows' parts are deleted), and writes nothing until it
//! has reached the partition's end once: before that, a `merged` marker further on may say a
//! window is already written.

use crate::completeness::ledger::{
    Accounted, CompletenessLedger, Due, SourceAnswers, WindowAccount,
};
use crate::completeness::stream::CompletenessRules;
use crate::dimension::split_pieces::SplitPiece;
use crate::event_time::merge::WindowMerger;
use crate::event_time::window::{WindowConfig, WindowResult};
use crate::shuffle::{
    latest_plausible, window_part, Refused, Shuffle, ShuffleEvent, ShuffleRecord,
    COMPLETENESS_PARTITION,
};
use std::collections::BTreeMap;

/// One owned shuffle partition: its merger, whether it was read to its end once, and, on
/// the [`COMPLETENESS_PARTITION`] of a monitor with `--source-topic`, the ledger.
struct OwnedShufflePartition {
    merger: WindowMerger,
    caught_up: bool,
    ledger: Option<CompletenessLedger>,
}

/// Whole windows ready to be written: which shuffle partition merged them and the watermark
/// (every input partition's progress) they were merged at.
#[derive(Debug)]
pub struct MergedWindows {
    /// The shuffle partition whose windows these are.
    pub shuffle_partition: i32,
    /// Windows closing at or before this are merged.
    pub watermark: i64,
    /// The windows, in start order.
    pub windows: Vec<WindowResult>,
}

/// The shuffle partitions this instance merges.
pub struct MergeState {
    config: WindowConfig,
    shuffle: Shuffle,
    max_future_ms: i64,
    input_partitions: Vec<i32>,
    partitions: BTreeMap<i32, OwnedShufflePartition>,
    /// Parts received for windows already merged (replays after a failover).
    pub duplicate_parts: u64,
    /// How arrivals are judged, with `--source-topic`.
    completeness: Option<CompletenessRules>,
    /// With `--dimension`: how many values per window get documents of their own.
    max_values: Option<usize>,
}

impl MergeState {
    /// Merges windows of `config` for the monitor whose records `shuffle` names, accepting
    /// event times up to `max_future_ms` ahead (`--max-future`).
    pub fn new(config: WindowConfig, shuffle: Shuffle, max_future_ms: i64) -> Self {
        MergeState {
            config,
            shuffle,
            max_future_ms,
            input_partitions: Vec::new(),
            partitions: BTreeMap::new(),
            duplicate_parts: 0,
            completeness: None,
            max_values: None,
        }
    }

    /// Also merges windows split by dimension value (`--dimension`), at most `max_values`
    /// values (and every value of 1 %) per window with documents of their own.
    pub fn with_values(mut self, max_values: usize) -> Self {
        self.max_values = Some(max_values);
        self
    }

    /// Also keeps the completeness ledger while it owns the [`COMPLETENESS_PARTITION`].
    pub fn with_completeness(mut self, rules: CompletenessRules) -> Self {
        self.completeness = Some(rules);
        self
    }

    fn new_ledger(&self, m: i32) -> Option<CompletenessLedger> {
        let rules = self.completeness.filter(|_| m == COMPLETENESS_PARTITION)?;
        let mut ledger = CompletenessLedger::new(rules, self.config.allowed_lateness_ms);
        ledger.set_input_partitions(self.input_partitions.clone());
        Some(ledger)
    }

    /// The input topic's partitions (every one must pass a window before it is merged).
    pub fn set_input_partitions(&mut self, partitions: Vec<i32>) {
        for state in self.partitions.values_mut() {
            state.merger.set_input_partitions(partitions.clone());
            if let Some(ledger) = &mut state.ledger {
                ledger.set_input_partitions(partitions.clone());
            }
        }
        self.input_partitions = partitions;
    }

    /// How many partitions the input topic has (0 before the first shuffle assignment).
    pub fn input_partition_count(&self) -> usize {
        self.input_partitions.len()
    }

    /// Shuffle partitions assigned: each starts empty, reading from its beginning.
    pub fn assign(&mut self, shuffle_partitions: &[i32]) {
        for &m in shuffle_partitions {
            let ledger = self.new_ledger(m);
            let merger = WindowMerger::new(self.config.clone(), self.input_partitions.clone());
            self.partitions.insert(
                m,
                OwnedShufflePartition {
                    merger: match self.max_values {
                        Some(max_values) => merger.split_by_value(max_values),
                        None => merger,
                    },
                    caught_up: false,
                    ledger,
                },
            );
        }
    }

    /// Shuffle partitions taken away: their state is dropped (the new owner re-reads them).
    pub fn revoke(&mut self, shuffle_partitions: &[i32]) {
        for m in shuffle_partitions {
            self.partitions.remove(m);
        }
    }

    /// Whether this instance merges shuffle partition `m`.
    pub fn owns(&self, m: i32) -> bool {
        self.partitions.contains_key(&m)
    }

    /// The shuffle partitions this instance merges.
    pub fn owned(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// A record read from shuffle partition `m` at processing time `now_ms`. A record of this
    /// monitor that does not decode or fails [`ShuffleRecord::check`] is refused (the caller
    /// counts and logs it) and changes nothing.
    pub fn on_record(
        &mut self,
        m: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), Refused> {
        let event = self.shuffle.decode(key, value).map_err(|e| Refused {
            reason: e.reason(),
            detail: e.to_string(),
        })?;
        let ShuffleEvent::Record(record) = event else {
            return Ok(()); // a tombstone, or another monitor's record
        };
        let latest = latest_plausible(now_ms, self.max_future_ms);
        record.check(self.config.size_ms, latest, self.input_partitions.len())?;
        let digest_config = self.config.digest;
        let Some(state) = self.partitions.get_mut(&m) else {
            return Ok(());
        };
        match record {
            ShuffleRecord::Part {
                window_start,
                partition,
                digest,
                over_sla,
                histogram,
            } => {
                let part = window_part(digest, over_sla, histogram, digest_config);
                if !state.merger.on_part(window_start, partition, part) {
                    self.duplicate_parts += 1;
                }
            }
            ShuffleRecord::Progress {
                partition,
                closed_through,
            } => {
                state.merger.on_progress(partition, closed_through);
                if let Some(ledger) = &mut state.ledger {
                    ledger.on_progress(partition, closed_through);
                }
            }
            ShuffleRecord::Merged { written_through } => state.merger.on_written(written_through),
            ShuffleRecord::Arrivals {
                window_start,
                partition,
                arrivals,
            } => {
                if let Some(ledger) = &mut state.ledger {
                    ledger.on_arrivals(window_start, partition, 0, arrivals);
                }
            }
            ShuffleRecord::ArrivalsPiece {
                window_start,
                partition,
                piece,
                arrivals,
            } => {
                if let Some(ledger) = &mut state.ledger {
                    ledger.on_arrivals(window_start, partition, piece, arrivals);
                }
            }
            ShuffleRecord::Values {
                window_start,
                partition,
                piece,
                pieces,
                other,
                untracked_at_most,
                values,
            } => {
                let piece = SplitPiece {
                    piece,
                    pieces,
                    other: other.map(|o| o.decode(digest_config)),
                    untracked_at_most,
                    values: values
                        .into_iter()
                        .map(|v| (v.key, v.part.decode(digest_config), v.inherited))
                        .collect(),
                };
                if !state.merger.on_split_piece(window_start, partition, piece) {
                    self.duplicate_parts += 1;
                }
            }
            ShuffleRecord::Accounted {
                first_window,
                final_through,
            } => {
                if let Some(ledger) = &mut state.ledger {
                    ledger.on_accounted(Accounted {
                        first_window,
                        final_through,
                    });
                }
            }
        }
        Ok(())
    }

    fn ledger(&self) -> Option<&CompletenessLedger> {
        let state = self.partitions.get(&COMPLETENESS_PARTITION)?;
        state.ledger.as_ref().filter(|_| state.caught_up)
    }

    /// The completeness accounting due now, if this instance keeps the ledger and has read
    /// its shuffle partition to the end once.
    pub fn completeness_due(&self) -> Option<Due> {
        self.ledger()?.due()
    }

    /// Accounts for `due` from the source's answers (see [`CompletenessLedger::account`]);
    /// nothing when the ledger was rebuilt meanwhile (the shuffle partition moved away and
    /// back) and has not read as far again.
    pub fn account(&mut self, due: &Due, answers: &SourceAnswers) -> Vec<WindowAccount> {
        let current = self
            .ledger()
            .and_then(CompletenessLedger::as_of)
            .is_some_and(|as_of| as_of >= due.as_of);
        match self.ledger_mut() {
            Some(ledger) if current => ledger.account(due, answers),
            _ => Vec::new(),
        }
    }

    fn ledger_mut(&mut self) -> Option<&mut CompletenessLedger> {
        self.partitions
            .get_mut(&COMPLETENESS_PARTITION)?
            .ledger
            .as_mut()
    }

    /// The accounting is final and written through `accounted.final_through`: returns the
    /// arrivals records no longer needed (to delete), `(window start, input partition,
    /// piece)`.
    pub fn accounted(&mut self, accounted: Accounted) -> Vec<(i64, i32, u32)> {
        let Some(ledger) = self.ledger_mut() else {
            return Vec::new();
        };
        let streams = ledger.streams_final_through(accounted.final_through);
        ledger.on_accounted(accounted);
        streams
    }

    /// The bytes the ledger's arrivals hold (0 without one).
    pub fn ledger_bytes(&self) -> usize {
        self.partitions
            .get(&COMPLETENESS_PARTITION)
            .and_then(|s| s.ledger.as_ref())
            .map_or(0, CompletenessLedger::arrival_bytes)
    }

    /// The consumer reached the end of shuffle partition `m`: it may write from now on.
    pub fn caught_up(&mut self, m: i32) {
        if let Some(state) = self.partitions.get_mut(&m) {
            state.caught_up = true;
        }
    }

    /// Windows every input partition has passed, of the caught-up shuffle partitions.
    pub fn ready(&mut self) -> Vec<MergedWindows> {
        self.partitions
            .iter_mut()
            .filter(|(_, state)| state.caught_up)
            .filter_map(|(&m, state)| {
                let (watermark, windows) = state.merger.ready()?;
                Some(MergedWindows {
                    shuffle_partition: m,
                    watermark,
                    windows,
                })
            })
            .collect()
    }

    /// The sink wrote shuffle partition `m`'s windows through `watermark`.
    pub fn written(&mut self, m: i32, watermark: i64) {
        if let Some(state) = self.partitions.get_mut(&m) {
            state.merger.on_written(watermark);
        }
    }

    /// The lowest merge watermark over the owned shuffle partitions.
    pub fn watermark(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(|s| s.merger.watermark())
            .min()
    }

    /// Windows waiting for progress, over the owned shuffle partitions.
    pub fn pending_windows(&self) -> usize {
        self.partitions
            .values()
            .map(|s| s.merger.pending_windows())
            .sum()
    }

    /// Input partitions holding back the oldest pending window of any owned shuffle partition.
    pub fn holding_back(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self
            .partitions
            .values()
            .flat_map(|s| s.merger.holding_back())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::digest::{DigestConfig, LatencyDigest};
    use crate::event_time::window::WindowPart;
    use crate::shuffle::authentication::RecordAuthentication;
    use crate::shuffle::{part_record, JobIdentity, CLOCK_SKEW_MS};

    fn config() -> WindowConfig {
        WindowConfig {
            size_ms: 1_000,
            allowed_lateness_ms: 0,
            sla_ms: 500,
            quantiles: vec![0.5],
            digest: DigestConfig::default(),
        }
    }

    /// Processing time of the tests' records.
    const NOW: i64 = 1_000_000;

    fn send(stage: &mut MergeState, shuffle: &Shuffle, m: i32, record: &ShuffleRecord) {
        let key = shuffle.key(record);
        stage
            .on_record(m, Some(key.as_bytes()), Some(&shuffle.encode(record)), NOW)
            .unwrap();
    }

    fn refusal(stage: &mut MergeState, key: &str, value: &[u8]) -> &'static str {
        stage
            .on_record(0, Some(key.as_bytes()), Some(value), NOW)
            .expect_err("refused")
            .reason
    }

    fn one_value_part(value: f64, over_sla: u64) -> WindowPart {
        let mut digest = LatencyDigest::new(config().digest);
        digest.add(value);
        WindowPart {
            digest,
            over_sla,
            histogram: None,
        }
    }

    #[test]
    fn records_this_monitor_could_not_have_written_are_refused_and_change_nothing() {
        let shuffle = Shuffle::new(
            JobIdentity::new("g", "t", "job", 60_000),
            RecordAuthentication::none(),
        );
        let mut stage = MergeState::new(config(), shuffle.clone(), 60_000);
        stage.set_input_partitions(vec![0]);
        stage.assign(&[0]);
        assert_eq!(
            refusal(&mut stage, &shuffle.part_key(0, 0), &[0xff, 0xff, 0xff]),
            "undecodable"
        );
        let mut no_values = part_record(0, 0, &one_value_part(7.0, 0));
        if let ShuffleRecord::Part { digest, .. } = &mut no_values {
            digest.values.clear(); // count 1, no value: would panic when summarised
        }
        for (record, reason) in [
            (no_values, "inconsistent_part"),
            (
                part_record(0, 0, &one_value_part(7.0, 2)),
                "inconsistent_part",
            ),
            (
                part_record(500, 0, &one_value_part(7.0, 0)),
                "unaligned_window",
            ),
            (
                ShuffleRecord::Merged {
                    written_through: i64::MAX,
                },
                "time_out_of_bounds",
            ),
            (
                ShuffleRecord::Progress {
                    partition: -1,
                    closed_through: 999,
                },
                "bad_partition",
            ),
            // The input topic has one partition.
            (part_record(0, 1, &one_value_part(7.0, 0)), "bad_partition"),
            // Beyond the clock plus --max-future (60 s here) and a minute of skew: a marker
            // that would make the merger drop every window until then.
            (
                ShuffleRecord::Merged {
                    written_through: NOW + 60_000 + CLOCK_SKEW_MS + 1,
                },
                "time_out_of_bounds",
            ),
            (
                ShuffleRecord::Progress {
                    partition: 0,
                    closed_through: NOW + 3_600_000,
                },
                "time_out_of_bounds",
            ),
        ] {
            let (key, value) = (shuffle.key(&record), shuffle.encode(&record));
            assert_eq!(refusal(&mut stage, &key, &value), reason, "{record:?}");
        }
        // Nothing refused moved anything: a valid part and progress still merge.
        send(
            &mut stage,
            &shuffle,
            0,
            &part_record(0, 0, &one_value_part(7.0, 0)),
        );
        send(
            &mut stage,
            &shuffle,
            0,
            &ShuffleRecord::Progress {
                partition: 0,
                closed_through: 999,
            },
        );
        stage.caught_up(0);
        let ready = stage.ready();
        assert_eq!(ready[0].windows.len(), 1);
        assert_eq!(ready[0].windows[0].stats.count, 1);
    }

    proptest::proptest! {
        /// Any bytes under this monitor's keys decode to a record or a refusal, never a panic,
        /// and whatever is accepted can be merged and summarised without one.
        #[test]
        fn any_bytes_are_a_record_or_a_refusal(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            kind in 0usize..3,
        ) {
            let shuffle = Shuffle::new(JobIdentity::new("g", "t", "job", 60_000), RecordAuthentication::none());
            let mut stage = MergeState::new(config(), shuffle.clone(), 60_000);
            stage.set_input_partitions(vec![0]);
            stage.assign(&[0]);
            let key = match kind {
                0 => shuffle.part_key(0, 0),
                1 => shuffle.key(&ShuffleRecord::Progress { partition: 0, closed_through: 0 }),
                _ => shuffle.key(&ShuffleRecord::Merged { written_through: 0 }),
            };
            let _ = stage.on_record(0, Some(key.as_bytes()), Some(&value), NOW);
            let _ = stage.on_record(0, Some(key.as_bytes()), Some(&value), NOW);
            send(&mut stage, &shuffle, 0, &ShuffleRecord::Progress { partition: 0, closed_through: NOW });
            stage.caught_up(0);
            let _ = stage.ready();
        }
    }

    #[test]
    fn nothing_is_written_before_the_partition_was_read_to_its_end() {
        let shuffle = Shuffle::new(
            JobIdentity::new("g", "t", "job", 60_000),
            RecordAuthentication::none(),
        );
        let mut stage = MergeState::new(config(), shuffle.clone(), 60_000);
        stage.set_input_partitions(vec![0]);
        stage.assign(&[0]);
        let mut digest = LatencyDigest::new(config().digest);
        digest.add(7.0);
        let part = WindowPart {
            digest,
            over_sla: 0,
            histogram: None,
        };
        send(&mut stage, &shuffle, 0, &part_record(0, 0, &part));
        send(
            &mut stage,
            &shuffle,
            0,
            &ShuffleRecord::Progress {
                partition: 0,
                closed_through: 999,
            },
        );
        assert!(stage.ready().is_empty(), "a marker may follow");
        send(
            &mut stage,
            &shuffle,
            0,
            &ShuffleRecord::Merged {
                written_through: 999,
            },
        );
        stage.caught_up(0);
        assert!(
            stage.ready().iter().all(|m| m.windows.is_empty()),
            "already written by the previous owner"
        );
        // A replayed part of the written window is counted as a duplicate, not merged again.
        send(&mut stage, &shuffle, 0, &part_record(0, 0, &part));
        assert_eq!(stage.duplicate_parts, 1);
    }

    #[test]
    fn a_revoked_shuffle_partition_is_forgotten() {
        let shuffle = Shuffle::new(
            JobIdentity::new("g", "t", "job", 60_000),
            RecordAuthentication::none(),
        );
        let mut stage = MergeState::new(config(), shuffle.clone(), 60_000);
        stage.set_input_partitions(vec![0]);
        stage.assign(&[0, 1]);
        stage.revoke(&[0]);
        assert_eq!(stage.owned(), vec![1]);
        send(
            &mut stage,
            &shuffle,
            0,
            &ShuffleRecord::Progress {
                partition: 0,
                closed_through: 999,
            },
        );
        assert!(stage.watermark().is_none());
    }

    /// A partition stage's core splitting by tenant publishes parts and splits; through the
    /// shuffle's encoding, the merge state writes each tenant's figures, and the values add up.
    #[test]
    fn splits_published_by_a_core_merge_into_values_that_add_up() {
        use crate::dimension::split_config::SplitConfig;
        use crate::dimension::split_pieces::into_pieces;
        use crate::event_time::watermark::WatermarkConfig;
        use crate::monitor::decisions::{CoreConfig, MonitorCore};
        use crate::monitor::measurement::{InputRecord, Plausibility, TimestampKind};
        use crate::monitor::restore::PartitionResume;
        use crate::shuffle::values_records;
        let dimensions = vec!["tenant=field:/tenant".parse().unwrap()];
        let split = SplitConfig {
            sla_rules: crate::dimension::sla_rule::SlaRules::new(
                &dimensions,
                &["tenant=b:5ms".parse().unwrap()],
            )
            .unwrap(),
            dimensions,
            max_values: 1,
        };
        let mut core = MonitorCore::new(CoreConfig {
            input_topic: "t".into(),
            group: "g".into(),
            job_name: "job".into(),
            window: config(),
            watermark: WatermarkConfig {
                max_out_of_orderness_ms: 0,
                idle_timeout_ms: 60_000,
                producer_hold_ms: 0,
                assume_broker_stamped: false,
            },
            plausibility: Plausibility {
                max_future_ms: 60_000,
                max_latency_ms: 3_600_000,
                max_clock_skew_ms: 5_000,
            },
            stamps: crate::record::stamp::LatencyStamps::default(),
            completeness: None,
            split: Some(split),
        });
        core.assign(
            &PartitionResume {
                partition: 0,
                offset: None,
                restored: None,
                move_consumer: false,
            },
            0,
        );
        // Window 0: a ×6 (10 ms), b ×3 (10 ms: over b's 5 ms), c ×1; then a record of window 1.
        let tenants = ["a", "a", "b", "a", "c", "a", "b", "a", "b", "a", "a"];
        for (offset, tenant) in tenants.iter().enumerate() {
            let t = if offset == 10 {
                1_500
            } else {
                100 + offset as i64
            };
            let value = format!(
                r#"{{"visit":{{"id":"v","event_time":1}},"start_processing_time_ms":{},"tenant":"{tenant}"}}"#,
                t - 10
            );
            core.on_record(
                0,
                offset as i64,
                &InputRecord {
                    timestamp: Some((TimestampKind::CreateTime, t)),
                    payload: Some(value.as_bytes()),
                    headers: &crate::record::stamp::NoHeaders,
                },
                t,
            );
        }
        let publication = core.on_tick(1_500).expect("window 0 closed");
        assert_eq!(publication.splits.len(), 1);
        let shuffle = Shuffle::new(
            JobIdentity::new("g", "t", "job", 1_000),
            RecordAuthentication::none(),
        );
        let mut stage = MergeState::new(config(), shuffle.clone(), 60_000).with_values(1);
        stage.set_input_partitions(vec![0]);
        stage.assign(&[0]);
        for (start, partition, part) in &publication.parts {
            send(
                &mut stage,
                &shuffle,
                0,
                &part_record(*start, *partition, part),
            );
        }
        for (start, partition, split) in publication.splits {
            // Tiny pieces: one value each.
            for record in values_records(start, partition, into_pieces(split, 1, |_, _| 1)) {
                send(&mut stage, &shuffle, 0, &record);
            }
        }
        for (partition, closed_through) in publication.progress {
            send(
                &mut stage,
                &shuffle,
                0,
                &ShuffleRecord::Progress {
                    partition,
                    closed_through,
                },
            );
        }
        stage.caught_up(0);
        let merged = stage.ready();
        let window = &merged[0].windows[0];
        assert_eq!(window.stats.count, 10);
        let values = window.values.as_ref().expect("split");
        assert!(values.complete);
        assert_eq!(values.pieces.len(), 3, "a, b and c, one piece each");
        let counts: Vec<(&str, u64, u64)> = values
            .windows
            .iter()
            .map(|v| (v.key.as_str(), v.figures.stats.count, v.figures.over_sla))
            .collect();
        // a is the heaviest; b and c hold over 1 % each; nothing is left for other.
        assert_eq!(counts, [("a", 6, 0), ("b", 3, 3), ("c", 1, 0)]);
    }
}
