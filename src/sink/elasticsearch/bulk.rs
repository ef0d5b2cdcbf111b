//! Bulk requests and the decision on their responses: acknowledged, worth retrying, or an
//! error that retrying cannot fix (reported with what to do about it).

use crate::sink::StoredDocument;
use elasticsearch::http::request::JsonBody;
use serde_json::{json, Value};

/// The body of a `_bulk` request indexing each document under its own id (a replay
/// overwrites the same document instead of adding one).
pub fn bulk_body(index: &str, documents: &[impl StoredDocument]) -> Vec<JsonBody<Value>> {
    let mut body = Vec::with_capacity(documents.len() * 2);
    for document in documents {
        body.push(json!({ "index": { "_index": index, "_id": document.id() } }).into());
        body.push(serde_json::to_value(document).expect("serialisable").into());
    }
    body
}

/// What a bulk response means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkOutcome {
    /// Every document was written.
    Acknowledged,
    /// Overloaded or unavailable (429, 5xx): retry the batch later.
    Retry(String),
    /// Refused for a reason retrying cannot fix; the message says what to fix.
    Fatal(String),
}

fn reason(error: &Value) -> String {
    let kind = error["type"].as_str().unwrap_or("error");
    let reason = error["reason"].as_str().unwrap_or("");
    format!("{kind}: {reason}")
}

fn retriable(status: u64) -> bool {
    status == 429 || status >= 500
}

/// Classifies the response of a bulk request to `index` (HTTP status and JSON body).
pub fn classify(status: u16, body: &Value, index: &str) -> BulkOutcome {
    let status = u64::from(status);
    match status {
        401 => {
            return BulkOutcome::Fatal(format!(
                "Elasticsearch refused the credentials ({}): check SLA_ES_USERNAME with SLA_ES_PASSWORD or \
                 --es-password-file, or SLA_ES_API_KEY / --es-api-key-file",
                reason(&body["error"])
            ))
        }
        403 => {
            return BulkOutcome::Fatal(format!(
                "Elasticsearch denied the write ({}): the user needs the create_index and write privileges on {index}",
                reason(&body["error"])
            ))
        }
        s if retriable(s) => return BulkOutcome::Retry(format!("Elasticsearch answered {s}: {}", reason(&body["error"]))),
        s if !(200..300).contains(&s) => {
            return BulkOutcome::Fatal(format!("Elasticsearch refused the bulk request ({s}): {}", reason(&body["error"])))
        }
        _ => {}
    }
    if body["errors"].as_bool() != Some(true) {
        return BulkOutcome::Acknowledged;
    }
    let mut retry = None;
    for item in body["items"].as_array().into_iter().flatten() {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .unwrap_or(&Value::Null);
        let item_status = result["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&item_status) {
            continue;
        }
        let id = result["_id"].as_str().unwrap_or("?");
        if retriable(item_status) {
            retry.get_or_insert_with(|| {
                format!("document {id}: {item_status} {}", reason(&result["error"]))
            });
        } else {
            return BulkOutcome::Fatal(format!(
                "Elasticsearch refused document {id} ({item_status} {}): the mapping of index {index} does not fit the \
                 monitor's documents; fix or delete the index (its template is recreated at start)",
                reason(&result["error"])
            ));
        }
    }
    match retry {
        Some(message) => BulkOutcome::Retry(message),
        None => BulkOutcome::Acknowledged,
    }
}

/// Classifies the answer to a bulk request of `documents` documents. A success status alone
/// acknowledges nothing: the body must say, per document, what happened (`errors` and one
/// entry in `items` per document); an unreadable or incomplete body is retried (documents are
/// written under their ids, so a retry never duplicates).
pub fn classify_bulk(status: u16, body: &Value, index: &str, documents: usize) -> BulkOutcome {
    let complete = body["errors"].is_boolean()
        && body["items"]
            .as_array()
            .is_some_and(|items| items.len() == documents);
    if (200..300).contains(&status) && !complete {
        return BulkOutcome::Retry(format!(
            "Elasticsearch answered {status} to a bulk request of {documents} documents without a \
             readable result for each"
        ));
    }
    classify(status, body, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbitrary_json::arbitrary_json;
    use proptest::prelude::*;

    proptest! {
        /// Any reply Elasticsearch (or something in its place) sends to a bulk request is
        /// classified — acknowledged, retried or fatal — never a panic.
        #[test]
        fn any_bulk_reply_is_classified(
            status in 100u16..600,
            body in arbitrary_json(&["errors", "items", "index", "status", "error", "type", "reason", "caused_by", "root_cause", "_id", "result"]),
            documents in 0usize..4,
        ) {
            let _ = classify_bulk(status, &body, "i", documents);
        }
    }

    #[test]
    fn a_success_status_with_an_unreadable_or_short_body_is_retried_not_acknowledged() {
        assert!(matches!(
            classify_bulk(200, &Value::Null, "i", 1),
            BulkOutcome::Retry(_)
        ));
        let short = body(r#"{"took":3,"errors":false,"items":[]}"#);
        assert!(matches!(
            classify_bulk(200, &short, "i", 2),
            BulkOutcome::Retry(_)
        ));
        let ok = body(r#"{"took":3,"errors":false,"items":[{"index":{"_id":"a","status":201}}]}"#);
        assert_eq!(classify_bulk(200, &ok, "i", 1), BulkOutcome::Acknowledged);
        assert!(matches!(
            classify_bulk(503, &Value::Null, "i", 1),
            BulkOutcome::Retry(_)
        ));
    }

    fn body(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn all_items_written() {
        let b = body(
            r#"{"took":5,"errors":false,"items":[{"index":{"_index":"i","_id":"a","_version":2,"result":"updated","status":200}}]}"#,
        );
        assert_eq!(classify(200, &b, "i"), BulkOutcome::Acknowledged);
    }

    #[test]
    fn rejected_execution_is_retried() {
        let b = body(
            r#"{"took":1,"errors":true,"items":[
              {"index":{"_index":"i","_id":"a","status":201,"result":"created"}},
              {"index":{"_index":"i","_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=0]"}}}]}"#,
        );
        assert!(
            matches!(classify(200, &b, "i"), BulkOutcome::Retry(m) if m.contains("document b"))
        );
        assert!(matches!(
            classify(
                503,
                &body(
                    r#"{"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"},"status":503}"#
                ),
                "i"
            ),
            BulkOutcome::Retry(_)
        ));
        assert!(matches!(
            classify(429, &Value::Null, "i"),
            BulkOutcome::Retry(_)
        ));
    }

    #[test]
    fn mapping_errors_stop_with_a_fix() {
        let b = body(
            r#"{"took":1,"errors":true,"items":[
              {"index":{"_index":"i","_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},
              {"index":{"_index":"i","_id":"job-1","status":400,"error":{"type":"strict_dynamic_mapping_exception","reason":"[1:20] mapping set to strict, dynamic introduction of [p99_9] within [_doc] is not allowed"}}}]}"#,
        );
        match classify(200, &b, "visits_sync_sla") {
            BulkOutcome::Fatal(m) => {
                assert!(
                    m.contains("job-1")
                        && m.contains("strict_dynamic_mapping_exception")
                        && m.contains("visits_sync_sla"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authentication_and_authorisation_errors_say_what_to_set() {
        let unauthenticated = body(
            r#"{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"}],"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]","header":{"WWW-Authenticate":["Basic realm=\"security\" charset=\"UTF-8\"","ApiKey"]}},"status":401}"#,
        );
        assert!(
            matches!(classify(401, &unauthenticated, "i"), BulkOutcome::Fatal(m) if m.contains("SLA_ES_PASSWORD"))
        );
        let forbidden = body(
            r#"{"error":{"root_cause":[{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [reader] with effective roles [viewer] on indices [visits_sync_sla]"}],"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [reader]"},"status":403}"#,
        );
        assert!(
            matches!(classify(403, &forbidden, "visits_sync_sla"), BulkOutcome::Fatal(m) if m.contains("write privileges"))
        );
    }
}
