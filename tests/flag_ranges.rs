//! Every count, size and percentage flag of every job has a range, and a value outside it is
//! refused before the job starts, naming the flag and the range (durations: see
//! `runtime::cli::duration_in`, tested there). No servers: the jobs stop at parsing.

use std::process::Command;

/// (binary, arguments before the flag, flag, a value outside its range).
const OUT_OF_RANGE: &[(&str, &[&str], &str, &str)] = &[
    (env!("CARGO_BIN_EXE_generator"), &[], "--rate", "0"),
    (env!("CARGO_BIN_EXE_generator"), &[], "--rate", "NaN"),
    (env!("CARGO_BIN_EXE_generator"), &[], "--count", "0"),
    (
        env!("CARGO_BIN_EXE_generator"),
        &[],
        "--invalid-json-pct",
        "101",
    ),
    (
        env!("CARGO_BIN_EXE_generator"),
        &[],
        "--missing-field-pct",
        "-1",
    ),
    (
        env!("CARGO_BIN_EXE_generator"),
        &[],
        "--wrong-type-pct",
        "1000",
    ),
    (
        env!("CARGO_BIN_EXE_generator"),
        &[],
        "--duplicate-pct",
        "100.5",
    ),
    (env!("CARGO_BIN_EXE_generator"), &[], "--late-pct", "inf"),
    (env!("CARGO_BIN_EXE_generator"), &[], "--partitions", "0"),
    (
        env!("CARGO_BIN_EXE_synchronizer"),
        &[],
        "--max-in-flight",
        "0",
    ),
    (env!("CARGO_BIN_EXE_synchronizer"), &[], "--loss", "51%"),
    (
        env!("CARGO_BIN_EXE_synchronizer"),
        &[],
        "--max-in-flight",
        "1000000000",
    ),
    (
        env!("CARGO_BIN_EXE_synchronizer"),
        &[],
        "--max-waiting-bytes",
        "0",
    ),
    (
        env!("CARGO_BIN_EXE_synchronizer"),
        &[],
        "--max-waiting-bytes",
        "64GiB",
    ),
    (
        env!("CARGO_BIN_EXE_synchronizer"),
        &[],
        "--replication-factor",
        "0",
    ),
    (
        env!("CARGO_BIN_EXE_monitor"),
        &[],
        "--exact-threshold",
        "10000000",
    ),
    (
        env!("CARGO_BIN_EXE_monitor"),
        &[],
        "--digest-compression",
        "100000",
    ),
    (
        env!("CARGO_BIN_EXE_monitor"),
        &[],
        "--shuffle-partitions",
        "0",
    ),
    (
        env!("CARGO_BIN_EXE_monitor"),
        &[],
        "--shuffle-partitions",
        "100000",
    ),
    (env!("CARGO_BIN_EXE_monitor"), &[], "--partitions", "100000"),
    (
        env!("CARGO_BIN_EXE_monitor"),
        &[],
        "--max-dimension-values",
        "0",
    ),
    (
        env!("CARGO_BIN_EXE_monitor"),
        &[],
        "--max-dimension-values",
        "10001",
    ),
    (
        env!("CARGO_BIN_EXE_alerts"),
        &["report", "--from", "1d"],
        "--objective",
        "100",
    ),
];

#[test]
fn a_count_size_or_percentage_outside_its_range_is_refused_naming_flag_and_range() {
    for (binary, before, flag, value) in OUT_OF_RANGE {
        let output = Command::new(binary)
            .args(*before)
            .arg(format!("{flag}={value}"))
            .env_clear()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{binary} {flag} {value}: {stderr}"
        );
        assert!(stderr.contains(flag), "{binary} {flag} {value}: {stderr}");
        assert!(
            stderr.contains("must be from") || stderr.contains("not a number"),
            "{binary} {flag} {value}: {stderr}"
        );
    }
}

/// The range is documented where the flag is: in `--help`.
#[test]
fn the_ranges_are_in_the_help() {
    let help = |binary: &str| {
        String::from_utf8(Command::new(binary).arg("--help").output().unwrap().stdout).unwrap()
    };
    let monitor = help(env!("CARGO_BIN_EXE_monitor"));
    assert!(
        monitor.contains("50000"),
        "--exact-threshold's range:\n{monitor}"
    );
    let synchronizer = help(env!("CARGO_BIN_EXE_synchronizer"));
    assert!(
        synchronizer.contains("4 GiB"),
        "--max-waiting-bytes' range:\n{synchronizer}"
    );
}
