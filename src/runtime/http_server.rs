//! Serving the jobs' HTTP endpoints with limits, so that no client — a slow one, a broken
//! one, or thousands of idle connections — can make `/healthz` stop answering or take the
//! file descriptors the job needs for Kafka:
//! - a **connection cap**: past it, the oldest connection is closed to make room for the new
//!   one (a probe or a scrape sends its request at once and is served; connections that sit
//!   idle are the ones that go), and the listener keeps accepting, so nothing waits in the
//!   kernel's backlog behind idle connections;
//! - a **header-read timeout**: a connection that has not sent a whole request head (also
//!   between keep-alive requests) is closed;
//! - a **connection lifetime**: every connection is closed after it, served or not;
//! - bounded **request heads** (hyper's read buffer) and **bodies** (axum's body limit).

use axum::extract::DefaultBodyLimit;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics::{counter, gauge};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// The limits of a job's HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; past it the oldest is closed.
    pub max_connections: usize,
    /// How long a connection may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long any connection may stay open.
    pub max_connection_age: Duration,
    /// The largest request head, in bytes (hyper's read buffer: at least 8 KiB).
    pub max_head_bytes: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerLimits {
    /// 256 connections (a quarter of the smallest usual file-descriptor limit), 5 s to send
    /// a request head, 60 s per connection, 16 KiB heads, 64 KiB bodies: the jobs' endpoints
    /// answer scrapes, probes and small control requests.
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            max_connection_age: Duration::from_secs(60),
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// The connections being served, oldest first (by id).
#[derive(Default)]
struct Connections {
    open: BTreeMap<u64, AbortHandle>,
    next_id: u64,
}

/// Serves `router` on `listener` within `limits` until `stopped` completes; then closes every
/// connection. Counts `sla_http_connections` (open now) and
/// `sla_http_connections_evicted_total` (closed to make room under the cap).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stopped: impl std::future::Future<Output = ()>,
) {
    let router = router.layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let connections = Arc::new(Mutex::new(Connections::default()));
    let open = gauge!("sla_http_connections");
    let evicted = counter!("sla_http_connections_evicted_total");
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (or the like): give the job's other sockets a moment.
                tracing::warn!("HTTP endpoint: accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut table = connections.lock().expect("connections lock");
        while table.open.len() >= limits.max_connections.max(1) {
            let Some((_, oldest)) = table.open.pop_first() else {
                break;
            };
            oldest.abort();
            evicted.increment(1);
        }
        let id = table.next_id;
        table.next_id += 1;
        let service = TowerToHyperService::new(router.clone());
        let finished = connections.clone();
        let gauge = open.clone();
        let task = tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_head_bytes.max(8 * 1024));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // Errors are the client's (a timeout, a reset, a malformed request).
            let _ = tokio::time::timeout(limits.max_connection_age, connection).await;
            let mut table = finished.lock().expect("connections lock");
            table.open.remove(&id);
            gauge.set(table.open.len() as f64);
        });
        table.open.insert(id, task.abort_handle());
        open.set(table.open.len() as f64);
    }
    let mut table = connections.lock().expect("connections lock");
    for (_, connection) in std::mem::take(&mut table.open) {
        connection.abort();
    }
    open.set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, put};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn server(
        limits: ServerLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/echo",
                put(|body: String| async move { body.len().to_string() }),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Sends `request` on a new connection and reads the whole answer (the server closes).
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    /// More idle, half-sent connections than the cap: a probe is still answered at once.
    #[tokio::test]
    async fn idle_connections_beyond_the_cap_do_not_stop_a_probe() {
        let limits = ServerLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        };
        let (addr, _stop) = server(limits).await;
        let mut idle = Vec::new();
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\n")
                .await
                .unwrap();
            idle.push(stream);
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), exchange(addr, HEALTHZ))
            .await
            .expect("the probe was answered");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// A connection that does not finish its request head in time is closed.
    #[tokio::test]
    async fn a_half_sent_request_is_closed_after_the_header_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, _stop) = server(limits).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        // Closed by the server (end of stream or a reset), long before the test gives up.
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the server closed the connection");
    }

    #[tokio::test]
    async fn oversized_heads_and_bodies_are_refused() {
        let (addr, _stop) = server(ServerLimits::default()).await;
        let big_head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let answer = exchange(addr, big_head.as_bytes()).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        let body = "b".repeat(128 * 1024);
        let request = format!(
            "PUT /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = exchange(addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let small =
            "PUT /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc";
        let answer = exchange(addr, small.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with('3'),
            "{answer}"
        );
    }
}
