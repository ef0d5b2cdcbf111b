//! The Elasticsearch side of the tests: the server under test, test indexes, documents read
//! back, raw requests, and a TCP proxy that can cut a connection.

use super::*;

/// The Elasticsearch under test (`SLA_TEST_ES_URL`, default the local stack's).
pub fn es_url() -> String {
    std::env::var("SLA_TEST_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_string())
}

/// A client of the test Elasticsearch at `url`.
pub fn es_client(url: &str) -> elasticsearch::Elasticsearch {
    let pool = elasticsearch::http::transport::SingleNodeConnectionPool::new(url.parse().unwrap());
    elasticsearch::Elasticsearch::new(
        elasticsearch::http::transport::TransportBuilder::new(pool)
            .build()
            .unwrap(),
    )
}

/// Every document of `index` by id (after a refresh); empty if the index does not exist.
pub async fn es_documents(index: &str) -> BTreeMap<String, serde_json::Value> {
    let client = es_client(&es_url());
    let _ = client
        .indices()
        .refresh(elasticsearch::indices::IndicesRefreshParts::Index(&[index]))
        .send()
        .await;
    let response = client
        .search(elasticsearch::SearchParts::Index(&[index]))
        .body(serde_json::json!({"size": 10_000, "query": {"match_all": {}}}))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "searching {index} on {}: {e} (is scripts/stack.sh up?)",
                es_url()
            )
        });
    let body: serde_json::Value = response.json().await.unwrap();
    body["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `index` holds at least `n` documents and returns them.
pub async fn wait_for_es_documents(
    index: &str,
    n: usize,
    timeout: Duration,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let docs = es_documents(index).await;
        if docs.len() >= n {
            return docs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} documents in {index}; have {}",
            docs.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A raw HTTP request to Elasticsearch, for tests that set up indexes by hand.
pub async fn es_request(
    method: elasticsearch::http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = es_client(&es_url());
    let body = body.map(elasticsearch::http::request::JsonBody::new);
    let response = client
        .send(
            method,
            path,
            elasticsearch::http::headers::HeaderMap::new(),
            Option::<&()>::None,
            body,
            None,
        )
        .await
        .unwrap();
    let status = response.status_code().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// A TCP proxy in front of a real server, which a test can cut and restore to simulate an
/// outage without disturbing other tests that share the server.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, connections2, upstream) = (up.clone(), connections.clone(), upstream.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections2.lock().unwrap().push(handle);
            }
        });
        Proxy {
            addr,
            up,
            connections,
        }
    }

    /// Cuts every connection and refuses new ones (`false`), or accepts them again (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for handle in self.connections.lock().unwrap().drain(..) {
                handle.abort();
            }
        }
    }
}

/// Prefix of every Elasticsearch index a test creates; `scripts/test.sh` deletes them before a run.
pub const TEST_INDEX_PREFIX: &str = "sla_test_";

/// A fresh index name for the test `name`.
pub fn test_index(name: &str) -> String {
    unique(&format!("{TEST_INDEX_PREFIX}{name}")).to_lowercase()
}
