//! One truth per fact: what docs/operations.md says of the jobs' flags and metrics is what the
//! code declares, and no message the jobs print carries a run of spaces from a string literal
//! continued onto the next line without `\`. Reads the sources and the jobs' `--help`; no
//! servers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's and the jobs' sources.
fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("jobs"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect()
}

fn operations() -> String {
    std::fs::read_to_string(root().join("docs/operations.md")).unwrap()
}

/// The text under `heading` (a whole line, e.g. `### monitor`) of a Markdown document, up to
/// the next heading of any level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &doc[start + 1 + heading.len()..];
    let end = rest.find("\n#").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// Metric names declared with `counter!`, `gauge!` or `histogram!` in `text`.
fn declared_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for macro_name in ["counter!(", "gauge!(", "histogram!("] {
        for (i, _) in text.match_indices(macro_name) {
            let rest = text[i + macro_name.len()..].trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                let name: String = quoted.chars().take_while(|&c| c != '"').collect();
                names.insert(name);
            }
        }
    }
    names
}

/// Metric names (`sla_…`) written in backquotes in `text`.
fn documented_metrics(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("sla_"))
        .map(|s| s.split('{').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let mut declared = BTreeSet::new();
    for (_, text) in sources() {
        declared.extend(declared_metrics(&text));
    }
    assert!(declared.len() > 20, "found only {declared:?}");
    let doc = operations();
    let documented = documented_metrics(section(&doc, "## Metrics (on `/metrics`)"));
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/operations.md's metric list: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&declared).collect();
    assert!(
        stale.is_empty(),
        "docs/operations.md lists metrics no code declares: {stale:?}"
    );
}

#[test]
fn every_monitor_metric_is_declared_in_its_metrics_module() {
    for (path, text) in sources() {
        if path.ends_with("src/monitor/metrics.rs") {
            continue;
        }
        let elsewhere: Vec<_> = declared_metrics(&text)
            .into_iter()
            .filter(|m| m.starts_with("sla_monitor_"))
            .collect();
        assert!(
            elsewhere.is_empty(),
            "{} declares {elsewhere:?}: the monitor's metrics are declared in src/monitor/metrics.rs",
            path.display()
        );
    }
}

/// Lines (1-based) where a non-raw string literal of `text` goes on to the next line without
/// a `\` continuation (the literal then holds the newline and the next line's indentation),
/// or holds a run of three or more spaces after a word (what is left when such a line break
/// is joined by hand). Spaces after an escaped `\n` are indentation meant for the reader.
fn literal_line_breaks(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let (mut i, mut line, mut found) = (0, 1, Vec::new());
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                line += text[i..end].matches('\n').count();
                i = end;
                continue;
            }
            // A raw string (r"…", r#"…"#, br#"…"#), not an identifier ending in r.
            b'r' if matches!(bytes.get(i + 1), Some(b'"') | Some(b'#'))
                && starts_token(bytes, i) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|&&b| b == b'#').count();
                if bytes.get(i + 1 + hashes) == Some(&b'"') {
                    let close = format!("\"{}", "#".repeat(hashes));
                    let body = i + 2 + hashes;
                    let end = text[body..].find(&close).map_or(bytes.len(), |e| body + e);
                    line += text[i..end].matches('\n').count();
                    i = end + close.len();
                    continue;
                }
            }
            b'\'' => {
                // A char literal ('"', '\n', '\'') or a lifetime ('a).
                if bytes.get(i + 1) == Some(&b'\\') {
                    let end = text[i + 2..].find('\'').map_or(bytes.len(), |e| i + 2 + e);
                    i = end + 1;
                    continue;
                }
                let next = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                if bytes.get(i + 1 + next) == Some(&b'\'') {
                    i += 2 + next;
                    continue;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    match bytes[i] {
                        b'\\' => {
                            i += 2;
                            if bytes.get(i - 1) == Some(&b'\n') {
                                // A continuation: the next line's indentation is not in the
                                // literal.
                                line += 1;
                                while matches!(bytes.get(i), Some(b' ') | Some(b'\t')) {
                                    i += 1;
                                }
                            }
                            continue;
                        }
                        b'\n' => {
                            found.push(line);
                            line += 1;
                        }
                        b' ' if !matches!(bytes[i - 1], b' ' | b'\n') => {
                            let run = bytes[i..].iter().take_while(|&&b| b == b' ').count();
                            let after_escaped_newline = i >= 2 && &bytes[i - 2..i] == b"\\n";
                            if run >= 3 && !after_escaped_newline && bytes[i - 1] != b'"' {
                                found.push(line);
                            }
                            i += run;
                            continue;
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Whether the `r` at `i` starts a token (optionally after a `b` prefix).
fn starts_token(bytes: &[u8], i: usize) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match i {
        0 => true,
        _ if !ident(bytes[i - 1]) => true,
        1 => bytes[0] == b'b',
        _ => bytes[i - 1] == b'b' && !ident(bytes[i - 2]),
    }
}

#[test]
fn the_scanner_finds_a_literal_broken_without_continuation() {
    let good = "let a = \"one \\\n    two\"; let b = r#\"x\n y\"#; let c = '\"'; fn f<'a>() {}\n\
                let d = br#\"{\"a\":\n1}\"#; let e = b'\"';\n";
    assert!(literal_line_breaks(good).is_empty());
    let bad = "// \"\nlet a = 1;\nlet m = \"one\n    two\";\n";
    assert_eq!(literal_line_breaks(bad), vec![3]);
    let joined = "let a = 1;\nlet m = \"one,      two\"; let y = \"a:\\n    b\";\n";
    assert_eq!(literal_line_breaks(joined), vec![2]);
}

#[test]
fn no_message_carries_a_run_of_spaces_from_a_broken_literal() {
    let mut broken = Vec::new();
    for (path, text) in sources() {
        for line in literal_line_breaks(&text) {
            broken.push(format!("{}:{line}", path.display()));
        }
    }
    assert!(
        broken.is_empty(),
        "string literals going on to the next line without `\\` (the message then holds the \
         newline and the indentation): {broken:#?}"
    );
}

/// Each long flag of a job's `--help` with its default and environment variable.
fn help_flags(
    binary: &str,
    subcommand: &[&str],
) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(binary)
        .args(subcommand)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Each flag's block of text (its line and its description, wrapped lines joined).
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        // clap writes `  -X, --name …` and `      --name …`; descriptions are indented
        // further (and may start with a flag's name), possible values are `- value:` lines.
        let indent = line.len() - trimmed.len();
        let flag_line = (indent == 2 && trimmed.starts_with('-') && !trimmed.starts_with("- "))
            || (indent == 6 && trimmed.starts_with("--"));
        if flag_line {
            let long = trimmed
                .split([' ', ',', '='])
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(['<', '>']).to_string());
            if let Some(long) = long {
                blocks.push((long, trimmed.to_string()));
            }
            continue;
        }
        if let Some((_, block)) = blocks.last_mut() {
            block.push(' ');
            block.push_str(line.trim());
        }
    }
    let field = |block: &str, name: &str| {
        block
            .find(name)
            .map(|i| block[i + name.len()..].trim_start())
            .map(|rest| rest.split(['=', ']']).next().unwrap().trim().to_string())
    };
    blocks
        .into_iter()
        .map(|(flag, block)| {
            let default = field(&block, "[default:");
            let env = field(&block, "[env:");
            (flag, (default, env))
        })
        .collect()
}

/// The flags in the first column of the table under `### name` of docs/operations.md, with the
/// row's default column.
fn documented_flags(doc: &str, job: &str) -> BTreeMap<String, String> {
    let table = section(doc, &format!("### {job}"));
    let mut flags = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let names: Vec<String> = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("--"))
            .map(|s| s.split(' ').next().unwrap().to_string())
            .collect();
        let defaults: Vec<&str> = cells[2].split('`').skip(1).step_by(2).collect();
        for (i, name) in names.iter().enumerate() {
            let default = if names.len() == defaults.len() {
                defaults[i].to_string()
            } else {
                cells[2].to_string()
            };
            flags.insert(name.clone(), default);
        }
    }
    flags
}

/// Flags every job has, documented once under "Common to every job".
const COMMON: &[&str] = &[
    "--brokers",
    "--kafka-config",
    "--kafka-property",
    "--partitions",
    "--replication-factor",
    "--compression",
    "--help",
    "--version",
    "--http-addr",
    "--log-format",
    "--sentry-environment",
    "--sentry-release",
];

#[test]
fn the_jobs_flags_are_those_docs_operations_md_documents() {
    let doc = operations();
    for (job, binary) in [
        ("generator", env!("CARGO_BIN_EXE_generator")),
        ("synchronizer", env!("CARGO_BIN_EXE_synchronizer")),
        ("monitor", env!("CARGO_BIN_EXE_monitor")),
    ] {
        let help = help_flags(binary, &[]);
        let documented = documented_flags(&doc, job);
        let mut problems = Vec::new();
        for (flag, default) in &documented {
            match help.get(flag) {
                None => problems.push(format!("{flag} is documented but {job} has no such flag")),
                Some((Some(actual), _)) if !default.contains(actual.as_str()) => problems.push(
                    format!("{flag}: the docs say default {default:?}, --help says {actual:?}"),
                ),
                _ => {}
            }
        }
        for (flag, (_, env)) in &help {
            let undocumented = !documented.contains_key(flag)
                && !COMMON.contains(&flag.as_str())
                && !doc.contains(&format!("`{flag}"));
            if undocumented {
                problems.push(format!("{flag} of {job} is not in docs/operations.md"));
            }
            if env.is_none() && !COMMON.contains(&flag.as_str()) && flag != "-X" {
                problems.push(format!("{flag} of {job} has no environment variable"));
            }
        }
        assert!(problems.is_empty(), "{job}:\n{}", problems.join("\n"));
    }
}

#[test]
fn every_flag_of_the_alerts_evaluator_has_an_environment_variable() {
    let help = help_flags(env!("CARGO_BIN_EXE_alerts"), &[]);
    assert!(help.contains_key("--alertmanager-url"), "{help:?}");
    let without: Vec<&String> = help
        .iter()
        .filter(|(flag, (_, env))| {
            env.is_none() && !["--help", "--version"].contains(&flag.as_str())
        })
        .map(|(flag, _)| flag)
        .collect();
    assert!(
        without.is_empty(),
        "alerts flags without an environment variable: {without:?}"
    );
}
