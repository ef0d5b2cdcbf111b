//! A sink writing one JSON object per line to stdout or a file (appending, fsync'd per batch).
//! Each line carries the document's `id`; readers keep the last line per id.

use super::{SinkError, StoredDocument, WindowSink};
use crate::completeness::document::CompletenessDocument;
use crate::event_time::window_document::WindowDocument;
use std::io::Write;
use std::path::PathBuf;

/// JSON-lines output: stdout when no path is given.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: Option<PathBuf>,
}

impl JsonLinesSink {
    /// Writes to `path` (appending), or to stdout when `None`.
    pub fn new(path: Option<PathBuf>) -> Self {
        JsonLinesSink { path }
    }
}

/// One document as a JSON line with its `id` first.
pub fn to_line(document: &impl StoredDocument) -> String {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), document.id().into());
    if let serde_json::Value::Object(fields) = serde_json::to_value(document).expect("serialisable")
    {
        object.extend(fields);
    }
    serde_json::Value::Object(object).to_string()
}

impl WindowSink for JsonLinesSink {
    async fn write(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.append(documents).await
    }

    async fn write_values(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.append(documents).await
    }

    async fn write_completeness(
        &mut self,
        documents: &[CompletenessDocument],
    ) -> Result<(), SinkError> {
        self.append(documents).await
    }

    fn describe(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "stdout".to_string(), |p| p.display().to_string())
    }
}

impl JsonLinesSink {
    /// Appends one line per document, durably.
    async fn append(&self, documents: &[impl StoredDocument]) -> Result<(), SinkError> {
        let mut text = String::new();
        for document in documents {
            text.push_str(&to_line(document));
            text.push('\n');
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            match path {
                Some(path) => {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    file.write_all(text.as_bytes())?;
                    file.sync_data()
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())?;
                    out.flush()
                }
            }
        })
        .await
        .map_err(|e| SinkError::Fatal(format!("writing documents: {e}")))?
        .map_err(|e| SinkError::Transient(format!("writing documents to {}: {e}", self.describe())))
    }
}
