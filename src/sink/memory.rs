//! A sink keeping window documents in memory, shared with its creator: for running the monitor
//! inside another program (a test harness, an embedding) and reading what it wrote, by id, as
//! soon as the monitor counts it acknowledged.

use super::{SinkError, StoredDocument, WindowSink};
use crate::completeness::document::CompletenessDocument;
use crate::event_time::window_document::WindowDocument;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The documents written so far, by id (a replay replaces a document, as in Elasticsearch).
#[derive(Debug, Clone)]
pub struct MemorySink {
    documents: Arc<Mutex<BTreeMap<String, WindowDocument>>>,
    /// Dimension value documents, by id.
    values: Arc<Mutex<BTreeMap<String, WindowDocument>>>,
    /// Completeness documents, by id (each version replaces the last).
    completeness: Arc<Mutex<BTreeMap<String, CompletenessDocument>>>,
    /// Documents written in all, replays included.
    writes: Arc<watch::Sender<u64>>,
}

impl Default for MemorySink {
    fn default() -> Self {
        MemorySink {
            documents: Arc::default(),
            values: Arc::default(),
            completeness: Arc::default(),
            writes: Arc::new(watch::channel(0).0),
        }
    }
}

impl MemorySink {
    /// An empty sink; clones share its documents.
    pub fn new() -> Self {
        Self::default()
    }

    /// The documents written so far, by id.
    pub fn documents(&self) -> BTreeMap<String, WindowDocument> {
        self.documents.lock().expect("sink poisoned").clone()
    }

    /// The dimension value documents written so far, by id.
    pub fn value_documents(&self) -> BTreeMap<String, WindowDocument> {
        self.values.lock().expect("sink poisoned").clone()
    }

    /// Waits until `condition` holds for the dimension value documents written so far, and
    /// returns them.
    pub async fn wait_for_values(
        &self,
        condition: impl FnMut(&BTreeMap<String, WindowDocument>) -> bool,
    ) -> BTreeMap<String, WindowDocument> {
        self.wait_on(&self.values, condition).await
    }

    /// The completeness documents written so far, by id (their latest versions).
    pub fn completeness_documents(&self) -> BTreeMap<String, CompletenessDocument> {
        self.completeness.lock().expect("sink poisoned").clone()
    }

    /// Waits until `condition` holds for the completeness documents written so far, and
    /// returns them.
    pub async fn wait_for_completeness(
        &self,
        condition: impl FnMut(&BTreeMap<String, CompletenessDocument>) -> bool,
    ) -> BTreeMap<String, CompletenessDocument> {
        self.wait_on(&self.completeness, condition).await
    }

    /// How many documents were written in all, a replaced one counted each time.
    pub fn written(&self) -> u64 {
        *self.writes.borrow()
    }

    /// Waits until `condition` holds for the documents written so far, and returns them.
    pub async fn wait_until(
        &self,
        condition: impl FnMut(&BTreeMap<String, WindowDocument>) -> bool,
    ) -> BTreeMap<String, WindowDocument> {
        self.wait_on(&self.documents, condition).await
    }

    /// Waits until `condition` holds for the documents of `stored`, and returns them.
    async fn wait_on<D: Clone>(
        &self,
        stored: &Mutex<BTreeMap<String, D>>,
        mut condition: impl FnMut(&BTreeMap<String, D>) -> bool,
    ) -> BTreeMap<String, D> {
        let mut writes = self.writes.subscribe();
        loop {
            let documents = stored.lock().expect("sink poisoned").clone();
            if condition(&documents) {
                return documents;
            }
            // Every write bumps the counter; the sender lives as long as any clone.
            let _ = writes.changed().await;
        }
    }

    /// Stores `documents` in `stored` by id (replacing earlier versions) and counts the writes.
    fn store<D: StoredDocument>(&self, stored: &Mutex<BTreeMap<String, D>>, documents: &[D]) {
        {
            let mut stored = stored.lock().expect("sink poisoned");
            for document in documents {
                stored.insert(document.id().to_string(), document.clone());
            }
        }
        self.writes.send_modify(|n| *n += documents.len() as u64);
    }
}

impl WindowSink for MemorySink {
    async fn write(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.store(&self.documents, documents);
        Ok(())
    }

    async fn write_values(&mut self, documents: &[WindowDocument]) -> Result<(), SinkError> {
        self.store(&self.values, documents);
        Ok(())
    }

    async fn write_completeness(
        &mut self,
        documents: &[CompletenessDocument],
    ) -> Result<(), SinkError> {
        self.store(&self.completeness, documents);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}
