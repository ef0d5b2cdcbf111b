//! Each job's `--help` (and `-h`) opens with what that job does, not with the crate's
//! description shared by all four.

use std::process::Command;

const CRATE_DESCRIPTION: &str = env!("CARGO_PKG_DESCRIPTION");

fn help(binary: &str, flag: &str) -> String {
    let output = Command::new(binary).arg(flag).output().unwrap();
    assert!(output.status.success(), "{binary} {flag}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn each_job_help_opens_with_what_the_job_does() {
    for (binary, opening) in [
        (
            env!("CARGO_BIN_EXE_generator"),
            "Produces JSON visit records",
        ),
        (
            env!("CARGO_BIN_EXE_synchronizer"),
            "Consumes visit records, reduces each",
        ),
        (
            env!("CARGO_BIN_EXE_monitor"),
            "Consumes a pipeline's output (by default reduced visits)",
        ),
        (
            env!("CARGO_BIN_EXE_alerts"),
            "Reads Grafana alert-rule and data-source provisioning files",
        ),
    ] {
        for flag in ["--help", "-h"] {
            let text = help(binary, flag);
            assert!(
                text.starts_with(opening),
                "{binary} {flag} opens with:\n{}",
                text.lines().next().unwrap_or_default()
            );
            assert!(!text.contains(CRATE_DESCRIPTION), "{binary} {flag}");
        }
    }
}
