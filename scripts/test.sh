#!/usr/bin/env bash
# The test suite: unit, property and integration tests. Integration tests talk to real
# servers, so this first brings up the local stack (installing it on first use; see
# scripts/stack.sh), removes the Elasticsearch indexes earlier test runs left (sla_test_*),
# then runs cargo test. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh up
scripts/stack.sh up bugsink   # the Sentry-protocol server the error-reporting tests read back
es="${SLA_TEST_ES_URL:-http://127.0.0.1:9200}"
stale=$(curl -fsS "$es/_cat/indices/sla_test_*?h=index" 2>/dev/null | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
if [ -n "$stale" ]; then
  echo "[test] deleting $(tr ',' '\n' <<<"$stale" | wc -l) Elasticsearch indexes left by earlier test runs"
  curl -fsS -X DELETE "$es/$stale" >/dev/null
fi
cargo test --all-targets "$@"
