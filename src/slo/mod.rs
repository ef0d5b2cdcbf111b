//! SLO answers from the window documents' latency histograms: [`report`] (true percentiles,
//! compliance for any threshold and the error budget over any range), [`spec`] (the SLO file)
//! and [`rules`] (the burn-rate alert rules generated from it). [`fetch_report`] is the one
//! I/O edge: the report's searches.

pub mod report;
pub mod rules;
pub mod spec;

use crate::sink::elasticsearch::{completeness_index_of, values_index_of};
use elasticsearch::{Elasticsearch, SearchParts};
use report::{MissingRecords, Report, ReportRequest};
use serde_json::Value;

/// Runs the report's search on `index` — and on its completeness index, whose missing records
/// count as misses where it exists — and reads the answers.
pub async fn fetch_report(
    client: &Elasticsearch,
    index: &str,
    request: &ReportRequest,
) -> anyhow::Result<Report> {
    request.check()?;
    let values = values_index_of(index);
    let index = if request.by.is_some() { &values } else { index };
    let answer = search(client, index, request.search_body())
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "index {index:?} does not exist: has a monitor written to it (--es-index)?"
            )
        })?;
    // Missing records are accounted per job, not per value.
    let completeness = completeness_index_of(index);
    let missing = match request.by {
        Some(_) => MissingRecords::default(),
        None => match search(client, &completeness, request.completeness_search_body()).await? {
            Some(answer) => report::parse_missing(&answer)?,
            None => MissingRecords::default(),
        },
    };
    Ok(report::parse(&answer, request, &missing)?)
}

/// The answer to `body` on `index`; `None` when the index does not exist.
async fn search(client: &Elasticsearch, index: &str, body: Value) -> anyhow::Result<Option<Value>> {
    let response = client
        .search(SearchParts::Index(&[index]))
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("querying Elasticsearch: {e}"))?;
    let status = response.status_code().as_u16();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("reading the Elasticsearch answer: {e}"))?;
    if status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        let reason = answer["error"]["root_cause"][0]["reason"]
            .as_str()
            .or(answer["error"]["reason"].as_str())
            .unwrap_or("");
        anyhow::bail!("Elasticsearch answered {status} on {index}: {reason}");
    }
    Ok(Some(answer))
}
