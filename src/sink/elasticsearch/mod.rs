//! The Elasticsearch sink: window documents indexed in bulk under deterministic ids, into an
//! index whose mapping is created explicitly at start.

pub mod bulk;
pub mod mapping;

use super::{SinkError, StoredDocument, WindowSink};
use crate::completeness::document::CompletenessDocument;
use crate::elasticsearch_connection::{ConfigError, ElasticsearchArgs};
use crate::event_time::window_document::WindowDocument;
use crate::runtime::backoff::{retry_policy, MAX_RETRY_DELAY};
use crate::runtime::shutdown::Shutdown;
use backon::BackoffBuilder;
use bulk::{bulk_body, classify, classify_bulk, BulkOutcome};
use elasticsearch::indices::{
    IndicesCreateParts, IndicesPutIndexTemplateParts, IndicesPutMappingParts,
};
use elasticsearch::{BulkParts, Elasticsearch};
use serde_json::{json, Value};
use std::time::Duration;

/// When a written window document becomes searchable (Elasticsearch's `refresh` parameter of
/// the bulk request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Refresh {
    /// At once: the shards the bulk wrote to are refreshed before it is answered. Window
    /// documents are few (one per window and job), so the refresh costs Elasticsearch
    /// little, and dashboards, alert rules and `alerts` see a window as soon as it is written.
    #[default]
    #[value(name = "true")]
    Immediately,
    /// The bulk is answered once the next periodic refresh made the documents searchable
    /// (the acknowledgement, and the offset commit after it, wait up to the index's
    /// `refresh_interval`).
    #[value(name = "wait_for")]
    WaitFor,
    /// Not asked: the documents become searchable at the index's next periodic refresh (1 s by
    /// default, or never while the index gets no searches, per Elasticsearch's idle shards).
    #[value(name = "false")]
    Periodic,
}

impl Refresh {
    fn parameter(self) -> elasticsearch::params::Refresh {
        match self {
            Refresh::Immediately => elasticsearch::params::Refresh::True,
            Refresh::WaitFor => elasticsearch::params::Refresh::WaitFor,
            Refresh::Periodic => elasticsearch::params::Refresh::False,
        }
    }
}

/// Writes window documents to one index. Clones share the client.
#[derive(Clone)]
pub struct ElasticsearchSink {
    client: Elasticsearch,
    url: String,
    index: String,
    /// Where completeness documents go, if written.
    completeness_index: Option<String>,
    /// Where dimension value documents go, if written, and the dimensions' names.
    values_index: Option<(String, Vec<String>)>,
    refresh: Refresh,
}

/// The index of dimension value documents beside the window index `index`.
pub fn values_index_of(index: &str) -> String {
    format!("{index}-dimensions")
}

/// The index of completeness documents beside the window index `index`.
pub fn completeness_index_of(index: &str) -> String {
    format!("{index}-completeness")
}

/// The status and JSON body of a response, or a transport error (unreachable, timeout).
async fn send(
    request: impl std::future::Future<
        Output = Result<elasticsearch::http::response::Response, elasticsearch::Error>,
    >,
) -> Result<(u16, Value), SinkError> {
    let response = request
        .await
        .map_err(|e| SinkError::Transient(format!("Elasticsearch unreachable: {e}")))?;
    let status = response.status_code().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Classifies the answer to a set-up request: fine, worth retrying, or fatal.
fn setup_outcome(what: &str, status: u16, body: &Value, index: &str) -> Result<(), SinkError> {
    match classify(status, body, index) {
        BulkOutcome::Acknowledged => Ok(()),
        BulkOutcome::Retry(m) => Err(SinkError::Transient(format!("{what}: {m}"))),
        BulkOutcome::Fatal(m) => Err(SinkError::Fatal(format!("{what}: {m}"))),
    }
}

/// "Elasticsearch <url>/<index>".
fn destination(url: &str, index: &str) -> String {
    format!("Elasticsearch {}/{index}", url.trim_end_matches('/'))
}

impl ElasticsearchSink {
    /// How a sink with these settings describes itself (before it is built).
    pub fn description(args: &ElasticsearchArgs) -> String {
        destination(&args.url, &args.index)
    }

    /// Connects (lazily) with the given settings; misconfiguration is reported at once.
    /// Documents become searchable as `refresh` says.
    pub fn new(args: &ElasticsearchArgs, refresh: Refresh) -> Result<Self, ConfigError> {
        Ok(ElasticsearchSink {
            client: args.client()?,
            url: args.url.clone(),
            index: args.index.clone(),
            completeness_index: None,
            values_index: None,
            refresh,
        })
    }

    /// Also writes completeness documents (`--source-topic`), to `<index>-completeness`.
    pub fn with_completeness(mut self) -> Self {
        self.completeness_index = Some(completeness_index_of(&self.index));
        self
    }

    /// Also writes the documents of windows' dimension values (`--dimension`, the dimensions
    /// named `names`), to `<index>-dimensions`.
    pub fn with_values(mut self, names: Vec<String>) -> Self {
        self.values_index = Some((values_index_of(&self.index), names));
        self
    }

    /// Creates or updates the index template, creates the index if missing and adds any
    /// missing field to its mapping (and the same for the completeness index, if written). A
    /// mapping conflict stops with a message saying what to fix.
    pub async fn prepare(&self, quantiles: &[f64]) -> Result<(), SinkError> {
        self.prepare_index(
            &self.index,
            mapping::index_template(&self.index, quantiles),
            mapping::properties(quantiles),
        )
        .await?;
        if let Some((index, names)) = &self.values_index {
            self.prepare_index(
                index,
                mapping::values_template(index, quantiles, names),
                mapping::values_properties(quantiles, names),
            )
            .await?;
        }
        if let Some(index) = &self.completeness_index {
            self.prepare_index(
                index,
                mapping::completeness_template(index),
                mapping::completeness_properties(),
            )
            .await?;
        }
        Ok(())
    }

    async fn prepare_index(
        &self,
        index: &str,
        template: Value,
        properties: Value,
    ) -> Result<(), SinkError> {
        let name = format!("{index}-sla-monitor");
        let (status, body) = send(
            self.client
                .indices()
                .put_index_template(IndicesPutIndexTemplateParts::Name(&name))
                .body(template)
                .send(),
        )
        .await?;
        setup_outcome(
            &format!("putting index template {name}"),
            status,
            &body,
            index,
        )?;
        let (status, body) = send(
            self.client
                .indices()
                .create(IndicesCreateParts::Index(index))
                .send(),
        )
        .await?;
        let exists = body["error"]["type"] == "resource_already_exists_exception";
        if !exists {
            setup_outcome(&format!("creating index {index}"), status, &body, index)?;
        }
        let (status, body) = send(
            self.client
                .indices()
                .put_mapping(IndicesPutMappingParts::Index(&[index]))
                .body(json!({ "properties": properties }))
                .send(),
        )
        .await?;
        setup_outcome(&format!("updating the mapping of {index}"), status, &body, index).map_err(|e| match e {
            SinkError::Fatal(m) => SinkError::Fatal(format!(
                "{m} — the existing index {index} has a conflicting mapping: delete it or choose another --es-index"
            )),
            other => other,
        })
    }

    /// Indexes `documents` in bulk into `index`, each under its id.
    async fn index_documents(
        &self,
        index: &str,
        documents: &[impl StoredDocument],
    ) -> Result<(), SinkError> {
        if documents.is_empty() {
            return Ok(());
        }
        let body = bulk_body(index, documents);
        let (status, response) = send(
            self.client
                .bulk(BulkParts::None)
                .refresh(self.refresh.parameter())
                .body(body)
                .send(),
        )
        .await?;
        match classify_bulk(status, &response, index, documents.len()) {
            BulkOutcome::Acknowledged => Ok(()),
            BulkOutcome::Retry(m) => Err(SinkError::Transient(m)),
            BulkOutcome::Fatal(m) => Err(SinkError::Fatal(m)),
        }
    }

    /// [`Self::prepare`], retried with backoff while Elasticsearch is unreachable, until
    /// shutdown.
    pub async fn prepare_when_reachable(
        &self,
        quantiles: &[f64],
        mut shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let mut backoff = retry_policy(Duration::from_millis(500)).build();
        loop {
            match self.prepare(quantiles).await {
                Ok(()) => return Ok(()),
                Err(SinkError::Fatal(m)) => anyhow::bail!(m),
                Err(SinkError::Transient(m)) => {
                    let wait = backoff.next().unwrap_or(MAX_RETRY_DELAY);
                    tracing::warn!("{} ({}): {m}; retrying in {wait:.1?}", self.index, self.url);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => anyhow::bail!("stopped before Elasticsearch became reachable"),
                    }
                }
            }
        }
    }
}

impl WindowSink for ElasticsearchSink {
    async fn write(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.index_documents(&self.index, documents).await
    }

    async fn write_values(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        let Some((index, _)) = &self.values_index else {
            return Err(SinkError::Fatal(
                "dimension value documents reached a sink prepared without --dimension".into(),
            ));
        };
        self.index_documents(index, documents).await
    }

    async fn write_completeness(
        &mut self,
        documents: &[CompletenessDocument],
    ) -> Result<(), SinkError> {
        let Some(index) = &self.completeness_index else {
            return Err(SinkError::Fatal(
                "completeness documents reached a sink prepared without --source-topic".into(),
            ));
        };
        self.index_documents(index, documents).await
    }

    fn describe(&self) -> String {
        destination(&self.url, &self.index)
    }
}
