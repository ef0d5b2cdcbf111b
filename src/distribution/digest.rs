//! Latency percentiles per window: exact while a window is small, a t-digest above a
//! threshold, in bounded memory either way.
//!
//! A window keeps one [`LatencyDigest`] per partition and merges them in partition order when
//! it closes, so the result depends only on each partition's own sequence of records, never
//! on how partitions interleaved (t-digests are order-sensitive).

use tdigest::TDigest;

/// How percentiles are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestConfig {
    /// Windows with at most this many records get exact percentiles.
    pub exact_threshold: usize,
    /// t-digest compression (maximum number of centroids) above the threshold.
    pub compression: usize,
}

/// The largest `--exact-threshold`: a window's part carries up to this many raw latencies
/// (8 bytes each) through the shuffle topic, and must stay well within a broker's default
/// record size (1 MB) with its histogram (a test checks the worst case).
pub const MAX_EXACT_THRESHOLD: usize = 50_000;

/// The largest `--digest-compression`: a part past the threshold travels as at most this many
/// centroids (16 bytes each), with the same bound on its size.
pub const MAX_COMPRESSION: usize = 10_000;

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            exact_threshold: 10_000,
            compression: 500,
        }
    }
}

/// The latencies of one partition within one window.
#[derive(Debug, Clone)]
pub struct LatencyDigest {
    config: DigestConfig,
    /// Raw values: every value while exact, a batch awaiting merge once a digest exists.
    values: Vec<f64>,
    digest: Option<TDigest>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl LatencyDigest {
    /// An empty digest.
    pub fn new(config: DigestConfig) -> Self {
        LatencyDigest {
            config,
            values: Vec::new(),
            digest: None,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Adds one latency (finite; the caller validates input).
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.values.push(value);
        let limit = match self.digest {
            None => self.config.exact_threshold,
            Some(_) => self.batch_size(),
        };
        if self.values.len() > limit {
            self.merge_values();
        }
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn batch_size(&self) -> usize {
        (self.config.compression * 10).max(1024)
    }

    fn merge_values(&mut self) {
        let values = std::mem::take(&mut self.values);
        let base = self
            .digest
            .take()
            .unwrap_or_else(|| TDigest::new_with_size(self.config.compression));
        self.digest = Some(base.merge_unsorted(values));
    }

    /// Adds every latency of `other` (built with the same settings): what adding its values one
    /// by one would give while both are exact (the raw values are kept), a t-digest merge of
    /// the two otherwise. What a dimension value's part turns into when it gives up its own
    /// figures and folds into the partition's other values.
    pub fn absorb(&mut self, other: &LatencyDigest) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.digest.is_none() {
            // Raw values join this digest's as if added: exact while both are, a batch for
            // the t-digest after (merged when full, as `add` does).
            self.values.extend_from_slice(&other.values);
            let limit = match self.digest {
                None => self.config.exact_threshold,
                Some(_) => self.batch_size(),
            };
            if self.values.len() > limit {
                self.merge_values();
            }
            return;
        }
        let merged = TDigest::merge_digests(vec![self.to_tdigest(), other.to_tdigest()]);
        self.digest = Some(merged);
        self.values = Vec::new();
    }

    /// Whether raw values are kept (every value while exact, a pending batch after).
    pub fn has_raw_values(&self) -> bool {
        !self.values.is_empty()
    }

    /// Merges the raw values into the t-digest, exactly as [`summarize`] does for a window
    /// above the exact threshold, so that the part travels as at most `compression`
    /// centroids instead of every value. Changes nothing [`summarize`] computes for a window
    /// of more than `exact_threshold` records; call it only for such windows (a smaller one
    /// needs the raw values to be exact).
    pub fn fold_values(&mut self) {
        if self.values.is_empty() {
            return;
        }
        self.digest = Some(self.to_tdigest());
        self.values = Vec::new();
    }

    /// This partition's values as a t-digest (pending values merged in).
    fn to_tdigest(&self) -> TDigest {
        let base = self
            .digest
            .clone()
            .unwrap_or_else(|| TDigest::new_with_size(self.config.compression));
        base.merge_unsorted(self.values.clone())
    }
}

/// One partition's latencies in one window as plain data, to travel between monitor
/// instances (see `shuffle`): rebuilding a [`LatencyDigest`] from it gives back exactly the
/// same state, so merging received parts gives what merging local ones gives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DigestParts {
    /// Raw values (all of them while exact; a batch awaiting merge otherwise).
    pub values: Vec<f64>,
    /// The t-digest, once past the exact threshold.
    pub digest: Option<TDigestParts>,
    /// Number of values added.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// A t-digest's state: centroids as (mean, weight) in order, and its own totals.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TDigestParts {
    /// Centroids (mean, weight), sorted by mean.
    pub centroids: Vec<(f64, f64)>,
    /// Sum of the values it holds.
    pub sum: f64,
    /// Number of values it holds.
    pub count: f64,
    /// Largest value it holds.
    pub max: Option<f64>,
    /// Smallest value it holds.
    pub min: Option<f64>,
}

impl DigestParts {
    /// Whether these parts describe a digest [`LatencyDigest::add`] could have built: at least
    /// one value, every number finite, `min <= max` with every raw value between them, and
    /// counts that add up (raw values plus the t-digest's). Parts read from another process
    /// are checked before use: a digest that fails this would panic or lie when summarised.
    pub fn check(&self) -> Result<(), String> {
        if self.count == 0 {
            return Err("a part without values".into());
        }
        if !(self.min.is_finite() && self.max.is_finite() && self.sum.is_finite()) {
            return Err("min, max or sum is not finite".into());
        }
        if self.min > self.max {
            return Err(format!("min {} is above max {}", self.min, self.max));
        }
        if self
            .values
            .iter()
            .any(|v| !v.is_finite() || *v < self.min || *v > self.max)
        {
            return Err("a raw value is not finite or lies outside [min, max]".into());
        }
        let in_digest = match &self.digest {
            None => 0.0,
            Some(d) => {
                let centroids_ok =
                    d.centroids.iter().all(|(mean, weight)| {
                        mean.is_finite() && weight.is_finite() && *weight > 0.0
                    }) && d.centroids.windows(2).all(|w| w[0].0 <= w[1].0);
                let bounds_ok = [d.min, d.max].iter().flatten().all(|b| b.is_finite())
                    && d.sum.is_finite()
                    && d.count.is_finite()
                    && d.count >= 0.0;
                if !(centroids_ok && bounds_ok) {
                    return Err("the t-digest's centroids or totals are not consistent".into());
                }
                d.count
            }
        };
        if self.values.len() as f64 + in_digest != self.count as f64 {
            return Err(format!(
                "count {} is not the {} raw values plus the t-digest's {in_digest}",
                self.count,
                self.values.len()
            ));
        }
        Ok(())
    }
}

impl LatencyDigest {
    /// This digest as plain data.
    pub fn to_parts(&self) -> DigestParts {
        DigestParts {
            values: self.values.clone(),
            digest: self.digest.as_ref().map(|d| TDigestParts {
                centroids: d
                    .centroids()
                    .iter()
                    .map(|c| (c.mean(), c.weight()))
                    .collect(),
                sum: d.sum(),
                count: d.count(),
                max: d.max(),
                min: d.min(),
            }),
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
        }
    }

    /// The digest `parts` describe, with `config` (the same on every instance of a job).
    pub fn from_parts(parts: DigestParts, config: DigestConfig) -> Self {
        LatencyDigest {
            config,
            values: parts.values,
            digest: parts.digest.map(|d| {
                TDigest::new(
                    d.centroids
                        .into_iter()
                        .map(|(mean, weight)| tdigest::Centroid::new(mean, weight))
                        .collect(),
                    d.sum,
                    d.count,
                    d.max,
                    d.min,
                    config.compression,
                )
            }),
            count: parts.count,
            sum: parts.sum,
            min: parts.min,
            max: parts.max,
        }
    }
}

/// Summary statistics of the latencies in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyStats {
    /// Number of latencies.
    pub count: u64,
    /// Smallest latency.
    pub min: f64,
    /// Largest latency.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Requested quantiles (0–1) with their values, in the order requested.
    pub quantiles: Vec<(f64, f64)>,
    /// Whether the quantiles are exact (window at or below the threshold).
    pub exact: bool,
}

/// Summarises the digests of a window's partitions, given in a fixed (partition) order.
/// Returns `None` when there are no values.
pub fn summarize(
    parts: &[&LatencyDigest],
    quantiles: &[f64],
    config: DigestConfig,
) -> Option<LatencyStats> {
    let count: u64 = parts.iter().map(|p| p.count).sum();
    if count == 0 {
        return None;
    }
    let min = parts.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let max = parts
        .iter()
        .map(|p| p.max)
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = parts.iter().map(|p| p.sum).sum();
    let exact =
        count as usize <= config.exact_threshold && parts.iter().all(|p| p.digest.is_none());
    let values: Vec<(f64, f64)> = if exact {
        let mut all: Vec<f64> = parts
            .iter()
            .flat_map(|p| p.values.iter().copied())
            .collect();
        all.sort_unstable_by(f64::total_cmp);
        quantiles
            .iter()
            .map(|&q| (q, exact_quantile(&all, q)))
            .collect()
    } else {
        let merged = TDigest::merge_digests(parts.iter().map(|p| p.to_tdigest()).collect());
        quantiles
            .iter()
            .map(|&q| {
                let estimate = merged.estimate_quantile(q).unwrap_or(max);
                (q, estimate.clamp(min, max))
            })
            .collect()
    };
    Some(LatencyStats {
        count,
        min,
        max,
        mean: sum / count as f64,
        quantiles: values,
        exact,
    })
}

/// The exact quantile `q` (0–1) of sorted values with linear interpolation between closest
/// ranks: numpy's default (`method="linear"`). Panics on an empty slice.
pub fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lower = h.floor() as usize;
    let upper = h.ceil() as usize;
    sorted[lower] + (h - lower as f64) * (sorted[upper] - sorted[lower])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_real_digest_pass_the_check_and_broken_ones_do_not() {
        let config = DigestConfig {
            exact_threshold: 10,
            compression: 20,
        };
        for n in [1u64, 10, 11, 5_000] {
            let mut digest = LatencyDigest::new(config);
            (0..n).for_each(|i| digest.add(i as f64));
            assert_eq!(digest.to_parts().check(), Ok(()), "{n} values");
        }
        let mut digest = LatencyDigest::new(config);
        digest.add(5.0);
        let good = digest.to_parts();
        let broken = [
            DigestParts {
                values: Vec::new(),
                ..good.clone()
            },
            DigestParts {
                min: 9.0,
                ..good.clone()
            },
            DigestParts {
                max: f64::NAN,
                ..good.clone()
            },
            DigestParts {
                count: 0,
                values: Vec::new(),
                ..good.clone()
            },
        ];
        for parts in broken {
            assert!(parts.check().is_err(), "{parts:?}");
        }
    }
    use proptest::prelude::*;

    proptest! {
        /// A digest rebuilt from its parts (through the shuffle's encoding) is the same digest:
        /// it summarises identically alone and merged with others, and keeps growing alike.
        #[test]
        fn a_digest_rebuilt_from_its_parts_is_the_same(
            a in proptest::collection::vec(0.0f64..1e6, 0..3_000),
            b in proptest::collection::vec(0.0f64..1e6, 1..500),
            more in proptest::collection::vec(0.0f64..1e6, 0..2_000),
        ) {
            let config = DigestConfig { exact_threshold: 1_000, compression: 50 };
            let mut original = LatencyDigest::new(config);
            a.iter().for_each(|&v| original.add(v));
            let bytes = postcard::to_stdvec(&original.to_parts()).unwrap();
            let mut rebuilt = LatencyDigest::from_parts(postcard::from_bytes(&bytes).unwrap(), config);
            let mut other = LatencyDigest::new(config);
            b.iter().for_each(|&v| other.add(v));
            let q = [0.5, 0.9, 0.99];
            prop_assert_eq!(
                summarize(&[&original, &other], &q, config),
                summarize(&[&rebuilt, &other], &q, config)
            );
            for &v in &more {
                original.add(v);
                rebuilt.add(v);
            }
            prop_assert_eq!(original.to_parts(), rebuilt.to_parts());
        }
    }

    #[test]
    fn exact_quantile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) == [1, 1.75, 2.5, 3.7, 4]
        let v = [1.0, 2.0, 3.0, 4.0];
        let got: Vec<f64> = [0.0, 0.25, 0.5, 0.9, 1.0]
            .iter()
            .map(|&q| exact_quantile(&v, q))
            .collect();
        let want = [1.0, 1.75, 2.5, 3.7, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(exact_quantile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn small_windows_are_exact_across_partitions() {
        let config = DigestConfig::default();
        let mut a = LatencyDigest::new(config);
        let mut b = LatencyDigest::new(config);
        for v in [5.0, 1.0, 9.0] {
            a.add(v);
        }
        for v in [3.0, 7.0] {
            b.add(v);
        }
        let s = summarize(&[&a, &b], &[0.5, 0.75], config).unwrap();
        assert!(s.exact);
        assert_eq!(s.count, 5);
        assert_eq!((s.min, s.max, s.mean), (1.0, 9.0, 5.0));
        assert_eq!(s.quantiles, vec![(0.5, 5.0), (0.75, 7.0)]);
    }

    #[test]
    fn switches_to_a_digest_above_the_threshold() {
        let config = DigestConfig {
            exact_threshold: 100,
            compression: 100,
        };
        let mut d = LatencyDigest::new(config);
        for i in 0..1000 {
            d.add(i as f64);
        }
        let s = summarize(&[&d], &[0.5], config).unwrap();
        assert!(!s.exact);
        assert!((s.quantiles[0].1 - 499.5).abs() < 5.0, "{s:?}");
    }

    #[test]
    fn an_absorbed_digest_counts_as_its_values_added_one_by_one() {
        let config = DigestConfig {
            exact_threshold: 100,
            compression: 50,
        };
        let quantiles = [0.5, 0.9, 0.99];
        for (a, b) in [(30u32, 40u32), (60, 60), (500, 7), (3, 2_000)] {
            let (mut left, mut right, mut both) = (
                LatencyDigest::new(config),
                LatencyDigest::new(config),
                LatencyDigest::new(config),
            );
            (0..a).for_each(|i| left.add(f64::from(i * 7 % 101)));
            (0..b).for_each(|i| right.add(f64::from(i * 13 % 211)));
            (0..a).for_each(|i| both.add(f64::from(i * 7 % 101)));
            (0..b).for_each(|i| both.add(f64::from(i * 13 % 211)));
            left.absorb(&right);
            let got = summarize(&[&left], &quantiles, config).unwrap();
            let want = summarize(&[&both], &quantiles, config).unwrap();
            assert_eq!(
                (got.count, got.min, got.max, got.exact),
                (want.count, want.min, want.max, want.exact)
            );
            assert!((got.mean - want.mean).abs() < 1e-9);
            for ((_, g), (_, w)) in got.quantiles.iter().zip(&want.quantiles) {
                if want.exact {
                    assert_eq!(g, w, "{a} + {b} values, exact");
                } else {
                    assert!((g - w).abs() <= 0.05 * 211.0, "{a} + {b}: {g} against {w}");
                }
            }
            assert_eq!(left.to_parts().check(), Ok(()));
        }
    }

    #[test]
    fn empty_window_has_no_summary() {
        let config = DigestConfig::default();
        assert!(summarize(&[&LatencyDigest::new(config)], &[0.5], config).is_none());
    }

    proptest! {
        /// Folding the raw values of some parts of a window above the exact threshold (what
        /// the monitor does before publishing them) changes none of its statistics.
        #[test]
        fn folding_parts_of_a_window_above_the_threshold_changes_nothing(
            parts in proptest::collection::vec(proptest::collection::vec(0u32..100_000, 0..1_500), 1..5),
            fold in proptest::collection::vec(any::<bool>(), 5),
        ) {
            let config = DigestConfig { exact_threshold: 500, compression: 40 };
            let total: usize = parts.iter().map(Vec::len).sum();
            prop_assume!(total > config.exact_threshold);
            let digests: Vec<LatencyDigest> = parts
                .iter()
                .map(|values| {
                    let mut digest = LatencyDigest::new(config);
                    values.iter().for_each(|&v| digest.add(f64::from(v)));
                    digest
                })
                .collect();
            let mut folded = digests.clone();
            for (digest, fold) in folded.iter_mut().zip(&fold) {
                if *fold {
                    digest.fold_values();
                    prop_assert!(!digest.has_raw_values());
                    // It travels through the shuffle as plain data.
                    *digest = LatencyDigest::from_parts(digest.to_parts(), config);
                }
            }
            let quantiles = [0.5, 0.75, 0.9, 0.99];
            let before = summarize(&digests.iter().collect::<Vec<_>>(), &quantiles, config);
            let after = summarize(&folded.iter().collect::<Vec<_>>(), &quantiles, config);
            prop_assert_eq!(before, after);
        }

        #[test]
        fn below_threshold_equals_exact_and_stays_in_range(
            parts in proptest::collection::vec(proptest::collection::vec(0u32..100_000, 0..200), 1..4),
            q in 0.0f64..=1.0,
        ) {
            let config = DigestConfig::default();
            let digests: Vec<LatencyDigest> = parts.iter().map(|vals| {
                let mut d = LatencyDigest::new(config);
                for &v in vals { d.add(v as f64); }
                d
            }).collect();
            let refs: Vec<&LatencyDigest> = digests.iter().collect();
            let mut all: Vec<f64> = parts.iter().flatten().map(|&v| v as f64).collect();
            all.sort_unstable_by(f64::total_cmp);
            match summarize(&refs, &[q], config) {
                None => prop_assert!(all.is_empty()),
                Some(s) => {
                    prop_assert_eq!(s.quantiles[0].1, exact_quantile(&all, q));
                    prop_assert!(s.quantiles[0].1 >= s.min && s.quantiles[0].1 <= s.max);
                }
            }
        }

        #[test]
        fn above_threshold_never_leaves_min_max(values in proptest::collection::vec(0u32..1_000_000, 50..400), q in 0.0f64..=1.0) {
            let config = DigestConfig { exact_threshold: 20, compression: 20 };
            let mut d = LatencyDigest::new(config);
            for &v in &values { d.add(v as f64); }
            let s = summarize(&[&d], &[q], config).unwrap();
            let v = s.quantiles[0].1;
            prop_assert!(v >= s.min && v <= s.max);
        }
    }
}
