//! Where window documents go, and the task that writes them with retries and reports
//! acknowledgements back to the monitor (which commits offsets only after them).

pub mod driver;
pub mod elasticsearch;
pub mod json_lines;
pub mod memory;
pub mod prepared;

use crate::completeness::document::CompletenessDocument;
use crate::event_time::window_document::WindowDocument;
use serde::Serialize;
use std::future::Future;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (unreachable, overloaded, 429, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (bad mapping, authentication, permissions); the message says
    /// what to fix.
    #[error("{0}")]
    Fatal(String),
}

/// A destination for window documents.
pub trait WindowSink: Send + 'static {
    /// Writes the documents; returns `Ok` only once every one is durably acknowledged.
    /// Writing a document whose `id` already exists replaces it.
    fn write(
        &mut self,
        documents: &[WindowDocument],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes the documents of windows' dimension values (`--dimension`), as [`Self::write`]
    /// does window documents, where they do not mix with whole windows'. A sink that cannot
    /// keep them refuses, and the monitor stops with the message.
    fn write_values(
        &mut self,
        documents: &[WindowDocument],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let refusal = format!(
            "{} cannot store dimension value documents ({} of them): run without --dimension \
             or write to Elasticsearch, a JSON-lines file or memory",
            self.describe(),
            documents.len()
        );
        async move { Err(SinkError::Fatal(refusal)) }
    }

    /// Writes completeness documents (`--source-topic`), as [`Self::write`] does window
    /// documents. A sink that cannot keep them refuses, and the monitor stops with the
    /// message.
    fn write_completeness(
        &mut self,
        documents: &[CompletenessDocument],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let refusal = format!(
            "{} cannot store completeness documents ({} of them): run without --source-topic \
             or write to Elasticsearch, a JSON-lines file or memory",
            self.describe(),
            documents.len()
        );
        async move { Err(SinkError::Fatal(refusal)) }
    }

    /// A short description for logs, e.g. the file or URL written to.
    fn describe(&self) -> String;
}

/// A document a sink stores under its own id (a later version replaces it).
pub trait StoredDocument: Serialize + Clone + Send + Sync + 'static {
    /// The document's id.
    fn id(&self) -> &str;
}

impl StoredDocument for WindowDocument {
    fn id(&self) -> &str {
        &self.id
    }
}

impl StoredDocument for CompletenessDocument {
    fn id(&self) -> &str {
        &self.id
    }
}
