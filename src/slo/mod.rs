//! SLO answers from the window documents' latency histograms: [`report`] (true percentiles,
//! compliance for any threshold and the error budget over any range), [`spec`] (the SLO file)
//! and [`rules`] (the burn-rate alert rules generated from it). [`fetch_report`] is the one
//! I/O edge: the report's search.

pub mod report;
pub mod rules;
pub mod spec;

use elasticsearch::{Elasticsearch, SearchParts};
use report::{Report, ReportRequest};

/// Runs the report's search on `index` and reads its answer.
pub async fn fetch_report(
    client: &Elasticsearch,
    index: &str,
    request: &ReportRequest,
) -> anyhow::Result<Report> {
    request.check()?;
    let response = client
        .search(SearchParts::Index(&[index]))
        .body(request.search_body())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("querying Elasticsearch: {e}"))?;
    let status = response.status_code().as_u16();
    let answer: serde_json::Value = response
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("reading the Elasticsearch answer: {e}"))?;
    if status == 404 {
        anyhow::bail!("index {index:?} does not exist: has a monitor written to it (--es-index)?");
    }
    if !(200..300).contains(&status) {
        let reason = answer["error"]["root_cause"][0]["reason"]
            .as_str()
            .or(answer["error"]["reason"].as_str())
            .unwrap_or("");
        anyhow::bail!("Elasticsearch answered {status}: {reason}");
    }
    Ok(report::parse(&answer, request)?)
}
