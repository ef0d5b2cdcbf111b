//! Accuracy bar of the window percentiles against exact values (numpy's linear definition):
//! relative error at most 1% at p50, p75, p90 and p99 for log-normal, uniform and bimodal
//! latencies at 1e5 and 1e6 records per window, split over two partitions like the monitor
//! does; exact at or below the threshold; never outside [min, max].

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sla_monitor::distribution::digest::{exact_quantile, summarize, DigestConfig, LatencyDigest};

const QUANTILES: [f64; 4] = [0.5, 0.75, 0.9, 0.99];

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box-Muller transform.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn log_normal(rng: &mut StdRng) -> f64 {
    (200f64.ln() + 1.5 * standard_normal(rng)).exp()
}

fn uniform(rng: &mut StdRng) -> f64 {
    rng.random_range(0.0..20_000.0)
}

fn bimodal(rng: &mut StdRng) -> f64 {
    let base = 50.0 + 10.0 * standard_normal(rng);
    let base = base.max(1.0);
    if rng.random_bool(0.02) {
        base + 10_000.0
    } else {
        base
    }
}

/// Rounds like the monitor sees latencies: whole milliseconds.
fn sample(n: usize, seed: u64, dist: fn(&mut StdRng) -> f64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| dist(&mut rng).round()).collect()
}

fn check(name: &str, values: &[f64], config: DigestConfig) {
    let mut partitions = [LatencyDigest::new(config), LatencyDigest::new(config)];
    for (i, &v) in values.iter().enumerate() {
        partitions[i % 2].add(v);
    }
    let stats = summarize(&[&partitions[0], &partitions[1]], &QUANTILES, config).unwrap();
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    assert_eq!(stats.count as usize, values.len());
    assert_eq!(
        stats.exact,
        values.len() <= config.exact_threshold,
        "{name}"
    );
    for &(q, estimate) in &stats.quantiles {
        let exact = exact_quantile(&sorted, q);
        let relative = (estimate - exact).abs() / exact.abs().max(1.0);
        println!(
            "{name:>24} n={:>8} p{:<4} exact={exact:>10.2} estimate={estimate:>10.2} error={:.4}%",
            values.len(),
            q * 100.0,
            relative * 100.0
        );
        assert!(
            relative <= 0.01,
            "{name} n={} p{}: exact {exact}, estimate {estimate}, error {:.3}%",
            values.len(),
            q * 100.0,
            relative * 100.0
        );
        assert!(estimate >= stats.min && estimate <= stats.max);
        if stats.exact {
            assert_eq!(estimate, exact, "{name}: must be exact below the threshold");
        }
    }
}

#[test]
fn exact_at_and_below_the_threshold() {
    let config = DigestConfig::default();
    check(
        "log-normal",
        &sample(config.exact_threshold, 1, log_normal),
        config,
    );
    check("bimodal", &sample(5_000, 2, bimodal), config);
    check("uniform", &sample(17, 3, uniform), config);
}

#[test]
fn log_normal_within_one_percent() {
    for (n, seed) in [(100_000, 11), (1_000_000, 12)] {
        check(
            "log-normal",
            &sample(n, seed, log_normal),
            DigestConfig::default(),
        );
    }
}

#[test]
fn uniform_within_one_percent() {
    for (n, seed) in [(100_000, 21), (1_000_000, 22)] {
        check(
            "uniform",
            &sample(n, seed, uniform),
            DigestConfig::default(),
        );
    }
}

#[test]
fn bimodal_within_one_percent() {
    for (n, seed) in [(100_000, 31), (1_000_000, 32)] {
        check(
            "bimodal",
            &sample(n, seed, bimodal),
            DigestConfig::default(),
        );
    }
}
