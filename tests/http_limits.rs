//! The jobs' HTTP endpoints under thousands of idle connections: with the file-descriptor
//! limit of a typical container (1,024), a job held ~1,100 half-sent requests open, ran out
//! of descriptors and stopped answering `/healthz` (a liveness probe would have restarted a
//! healthy job). Now the server caps its connections, closing the oldest, and times out
//! request heads: the job keeps consuming and `/healthz` answers throughout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;

/// Half-sent requests the test holds open at once: well past the job's descriptor limit.
const IDLE_CONNECTIONS: usize = 3_000;
const JOB_FILE_LIMIT: u64 = 1_024;

/// `GET /healthz` on a new connection, answered within `timeout`.
fn healthz(addr: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_idle_connections_neither_stop_the_job_nor_its_probes() {
    let dir = tempfile::tempdir().unwrap();
    let visits = unique("idle_http_visits");
    let reduced = unique("idle_http_reduced");
    create_topic(&visits, 2).await;
    let job = Job::start_with_file_limit(
        env!("CARGO_BIN_EXE_synchronizer"),
        &[
            "--visits-topic",
            &visits,
            "--reduced-topic",
            &reduced,
            "--dead-letter-topic",
            &unique("idle_http_dlq"),
            "--group",
            &unique("idle_http_group"),
        ],
        dir.path(),
        JOB_FILE_LIMIT,
    );
    let addr = http_addr_of(&job);
    let batch = |from: i64, n: i64| -> Vec<Outgoing> {
        (from..from + n)
            .map(|i| Outgoing {
                key: Some(format!("visit-{i}")),
                value: Some(visit_json(&format!("visit-{i}"), now_ms())),
                partition: Some((i % 2) as i32),
                ..Default::default()
            })
            .collect()
    };
    produce(&visits, &batch(0, 100)).await;
    let _ = consume(&reduced, 100, Duration::from_secs(60), Duration::ZERO);

    // Thousands of connections, each a request head begun and never finished.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        idle.push(stream);
    }
    // While they are held: probes answer, each promptly, and records keep flowing.
    for probe in 0..5 {
        let answer = healthz(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("probe {probe} unanswered: {e}\n{}", job.log_text()));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "probe {probe}: {answer}"
        );
    }
    produce(&visits, &batch(100, 100)).await;
    let out = consume(&reduced, 200, Duration::from_secs(60), Duration::ZERO);
    assert_eq!(
        out.len(),
        200,
        "the job stopped consuming\n{}",
        job.log_text()
    );
    let descriptors = open_descriptors(job.pid());
    assert!(
        descriptors < 600,
        "the job holds {descriptors} descriptors under {IDLE_CONNECTIONS} idle connections"
    );
    drop(idle);
    assert!(job.terminate(Duration::from_secs(30)).success());
}
