//! Alerting in the tests: the `alerts` job live and as a backtest, rule files, Alertmanager
//! configurations, a webhook receiver, and a headless browser for the pages it writes.

use super::*;

/// A loopback HTTP server recording every JSON body POSTed to it.
pub async fn json_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = bodies.clone();
    let app = axum::Router::new().fallback(move |body: axum::Json<serde_json::Value>| {
        let store = store.clone();
        async move {
            store.lock().unwrap().push(body.0);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), bodies)
}

/// Renders `dashboards/alertmanager/alertmanager.yml.tmpl` with `render-config.sh` into `dir`,
/// with only `vars` (and PATH) in the environment: the rendered file, or the script's message.
pub fn render_alertmanager_config(dir: &Path, vars: &[(&str, &str)]) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    render_alertmanager_config_with(Path::new("sh"), &path, dir, "alertmanager.yml", vars)
}

/// [`render_alertmanager_config`] run by `shell` with only `path` to find its tools (busybox's
/// sh and awk, say, as in the Alertmanager image), into `dir/name`.
pub fn render_alertmanager_config_with(
    shell: &Path,
    path: &std::ffi::OsStr,
    dir: &Path,
    name: &str,
    vars: &[(&str, &str)],
) -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = dir.join(name);
    let out = Command::new(shell)
        .arg(repo.join("dashboards/alertmanager/render-config.sh"))
        .arg(repo.join("dashboards/alertmanager/alertmanager.yml.tmpl"))
        .arg(&output)
        .env_clear()
        .env("PATH", path)
        .envs(vars.iter().copied())
        .output()
        .expect("running render-config.sh");
    if out.status.success() {
        Ok(output)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The receiver settings an Alertmanager config needs, pointing nowhere beyond loopback.
pub const LOOPBACK_RECEIVERS: [(&str, &str); 4] = [
    ("SLA_SMTP_SMARTHOST", "127.0.0.1:2525"),
    ("SLA_SMTP_FROM", "sla-monitor@localhost"),
    ("SLA_ALERT_EMAIL", "oncall@localhost"),
    (
        "SLA_ALERT_WEBHOOK_URL",
        "http://127.0.0.1:9199/alertmanager",
    ),
];

/// The `alerts` evaluator on `rules` over `index`, with `extra` flags (webhook, Alertmanagers).
pub fn start_alerts(rules: &Path, index: &str, extra: &[&str], dir: &Path) -> Job {
    let es = es_url();
    let mut args = vec![
        "--rules",
        rules.to_str().unwrap(),
        "--es-url",
        &es,
        "--es-index",
        index,
    ];
    args.extend(extra);
    Job::start_without_brokers(env!("CARGO_BIN_EXE_alerts"), &args, dir)
}

/// `alerts backtest --json` of `rules` over `index` from `from_ms` to `to_ms`: the timelines.
pub fn backtest(rules: &Path, index: &str, from_ms: i64, to_ms: i64) -> serde_json::Value {
    let out = backtest_with(rules, index, from_ms, to_ms, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An RFC 3339 time (ms precision) for flags and files.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `alerts backtest --json` over `[from_ms, to_ms]` with `extra` flags; its exit status and
/// output, whatever they are.
pub fn backtest_with(
    rules: &Path,
    index: &str,
    from_ms: i64,
    to_ms: i64,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alerts"))
        .args(["backtest", "--rules", rules.to_str().unwrap()])
        .args(["--es-url", &es_url(), "--es-index", index, "--json"])
        .args(["--from", &iso_ms(from_ms), "--to", &iso_ms(to_ms)])
        .args(extra)
        .output()
        .unwrap()
}

/// Headless Chromium (Debian's `chromium`; `.ci/run` installs it). Without it the browser
/// checks fail — a skip the test harness hides would pass unseen — unless
/// `SLA_TEST_SKIP_BROWSER=1` says on purpose that this machine has no browser (then `None`).
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        let opted_out = std::env::var("SLA_TEST_SKIP_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            opted_out,
            "no chromium on PATH for the browser checks: install it (apt-get install -y \
             --no-install-recommends chromium) or set SLA_TEST_SKIP_BROWSER=1 to skip them"
        );
        eprintln!("SKIPPED the browser checks (SLA_TEST_SKIP_BROWSER=1)");
    }
    found
}

/// What a real browser made of an HTML page: its DOM after loading, a screenshot (PNG), and
/// the console messages the page logged (`CONSOLE(` lines of Chromium's log).
pub struct Rendered {
    /// The DOM as serialised after loading.
    pub dom: String,
    /// The screenshot's pixels (RGBA) and size.
    pub pixels: Vec<u8>,
    /// Width and height of the screenshot.
    pub size: (u32, u32),
    /// Console messages logged by the page.
    pub console: Vec<String>,
}

/// Opens `page` in headless `chromium`: dumps its DOM and takes a 1400×1000 screenshot.
pub fn render_in_browser(chromium: &Path, page: &Path) -> Rendered {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let shot = dir.path().join("page.png");
    let screenshot = run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1000",
    ]);
    let dumped = run(&["--dump-dom"]);
    let console = [&screenshot.stderr, &dumped.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|line| line.contains(":CONSOLE("))
        .collect();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(info.buffer_size());
    let pixels = match info.color_type {
        png::ColorType::Rgba => pixels,
        png::ColorType::Rgb => pixels
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    Rendered {
        dom: String::from_utf8_lossy(&dumped.stdout).into_owned(),
        pixels,
        size: (info.width, info.height),
        console,
    }
}

/// The provisioned SLA rule with test timings — evaluated every second over 2 s histogram
/// buckets and a 30 s range, pending for `pending` (e.g. `6s`) — and a `test_run` label naming
/// the run; everything else (queries, reducer, threshold, states, labels) as in dashboards/.
pub fn test_rule_file(run: &str, pending: &str) -> String {
    test_rules_of("sla-alert-rules.yaml", run, pending)
}

/// The provisioned rules of `file` (in dashboards/grafana/provisioning/alerting) with the
/// test timings of [`test_rule_file`].
pub fn test_rules_of(file: &str, run: &str, pending: &str) -> String {
    let original = std::fs::read_to_string(format!(
        "{}/dashboards/grafana/provisioning/alerting/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let changed = original
        .replace("    interval: 1m\n", "    interval: 1s\n")
        .replace("interval: 1m", "interval: 2s")
        .replace("from: 600", "from: 30")
        .replace("for: 2m", &format!("for: {pending}"))
        .replace(
            "severity: critical",
            &format!("severity: critical\n          test_run: {run}"),
        );
    assert_ne!(changed, original);
    changed
}
