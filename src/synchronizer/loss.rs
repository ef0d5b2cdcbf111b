//! The loss switch: the synchronizer drops a chosen fraction of the visits it would reduce —
//! consumes them, produces nothing, commits past them — the silent fault a completeness
//! monitor must catch (a bug that filters too much, a producer error swallowed).
//!
//! Which records are dropped is a pure function of the seed and the record's source position,
//! so a test (or an operator checking the monitor) knows exactly which ones:
//! [`LossPolicy::drops`]. Bounded by [`MAX_LOSS_PERCENT`]; off by default.

use std::fmt;

/// Parts per million in one percent.
const PPM_PER_PERCENT: f64 = 10_000.0;

/// The highest loss rate the switch accepts, in percent.
pub const MAX_LOSS_PERCENT: f64 = 50.0;

/// Which records the synchronizer drops: a rate (parts per million of records) and the seed
/// that picks them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LossPolicy {
    /// Records dropped per million (0: none).
    pub rate_ppm: u32,
    /// Picks which records: the same seed drops the same source positions.
    pub seed: u64,
}

impl LossPolicy {
    /// Drops nothing.
    pub const NONE: LossPolicy = LossPolicy {
        rate_ppm: 0,
        seed: 0,
    };

    /// Whether the record at `offset` of source `partition` is dropped under this policy.
    pub fn drops(&self, partition: i32, offset: i64) -> bool {
        self.rate_ppm > 0 && score(self.seed, partition, offset) < u64::from(self.rate_ppm)
    }

    /// The rate in percent.
    pub fn percent(&self) -> f64 {
        f64::from(self.rate_ppm) / PPM_PER_PERCENT
    }

    /// The rate as a share of records (0 to 0.5), as the metric shows it.
    pub fn ratio(&self) -> f64 {
        f64::from(self.rate_ppm) / 1_000_000.0
    }
}

impl fmt::Display for LossPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rate_ppm == 0 {
            return f.write_str("off");
        }
        write!(f, "{}% (seed {})", self.percent(), self.seed)
    }
}

/// Reads a loss rate: `2%`, `0.5%`, `0`; at most [`MAX_LOSS_PERCENT`], to a millionth.
pub fn parse_loss_rate(text: &str) -> Result<u32, String> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim());
    let percent: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number: write a percentage such as 2% or 0.5%"))?;
    if !(0.0..=MAX_LOSS_PERCENT).contains(&percent) {
        return Err(format!(
            "a loss rate must be from 0% to {MAX_LOSS_PERCENT}%, not {text}"
        ));
    }
    let ppm = (percent * PPM_PER_PERCENT).round();
    if (ppm / PPM_PER_PERCENT - percent).abs() > 1e-9 {
        return Err(format!(
            "a loss rate of {text} is finer than a millionth (0.0001%)"
        ));
    }
    Ok(ppm as u32)
}

/// A number in `0..1_000_000` spread uniformly over source positions (SplitMix64 finalizer).
fn score(seed: u64, partition: i32, offset: i64) -> u64 {
    let position = ((partition as u32 as u64) << 48) ^ (offset as u64);
    mix(seed ^ mix(position)) % 1_000_000
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_bounded_and_exact() {
        assert_eq!(parse_loss_rate("2%"), Ok(20_000));
        assert_eq!(parse_loss_rate("0.5%"), Ok(5_000));
        assert_eq!(parse_loss_rate("0"), Ok(0));
        assert_eq!(parse_loss_rate("50%"), Ok(500_000));
        assert_eq!(parse_loss_rate("0.0001%"), Ok(1));
        assert!(parse_loss_rate("51%")
            .unwrap_err()
            .contains("must be from 0% to 50%"));
        assert!(parse_loss_rate("-1%").unwrap_err().contains("must be from"));
        assert!(parse_loss_rate("two").unwrap_err().contains("2%"));
        assert!(parse_loss_rate("0.00001%")
            .unwrap_err()
            .contains("millionth"));
        assert!(parse_loss_rate("NaN%").is_err());
    }

    #[test]
    fn the_chosen_records_are_the_rate_and_the_seed_decides_which() {
        let policy = LossPolicy {
            rate_ppm: 20_000,
            seed: 7,
        };
        let dropped: Vec<(i32, i64)> = (0..4)
            .flat_map(|p| (0..50_000).map(move |o| (p, o)))
            .filter(|&(p, o)| policy.drops(p, o))
            .collect();
        // 2 % of 200,000 is 4,000; a uniform choice stays within a few percent of it.
        assert!((3_700..4_300).contains(&dropped.len()), "{}", dropped.len());
        for p in 0..4 {
            let in_partition = dropped.iter().filter(|(q, _)| *q == p).count();
            assert!(
                (850..1_150).contains(&in_partition),
                "partition {p}: {in_partition}"
            );
        }
        let other_seed = LossPolicy { seed: 8, ..policy };
        let again: Vec<(i32, i64)> = dropped
            .iter()
            .copied()
            .filter(|&(p, o)| other_seed.drops(p, o))
            .collect();
        assert!(again.len() < 200, "another seed picks other records");
        assert!(
            dropped.iter().all(|&(p, o)| policy.drops(p, o)),
            "reproducible"
        );
        assert!(!(0..10_000).any(|o| LossPolicy::NONE.drops(0, o)));
    }

    #[test]
    fn it_says_what_it_does() {
        assert_eq!(LossPolicy::NONE.to_string(), "off");
        let policy = LossPolicy {
            rate_ppm: 25_000,
            seed: 3,
        };
        assert_eq!(policy.to_string(), "2.5% (seed 3)");
        assert_eq!(policy.ratio(), 0.025);
    }
}
