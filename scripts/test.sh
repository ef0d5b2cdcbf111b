#!/usr/bin/env bash
# The test suite: unit, property and integration tests. Integration tests talk to real
# servers, so this first brings up the local stack (installing it on first use; see
# scripts/stack.sh), removes the Elasticsearch indexes earlier test runs left (sla_test_*) and
# the broker's store when earlier runs' topics made it large, then runs cargo test. Extra
# arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh up
scripts/stack.sh up bugsink   # the Sentry-protocol server the error-reporting tests read back
# Every test creates its own topics, and tansu's SQLite store keeps them all: past a few hundred
# MB the broker takes seconds per request (a monitor's restore took 13 s) and timing-bound tests
# fail. A large store holds nothing but earlier runs' topics: start the broker afresh.
db="${SLA_STACK_STATE:-/var/tmp/sla-monitor-stack}/kafka/tansu.db"
if [ -f "$db" ] && [ "$(du -m "$db" | cut -f1)" -gt 64 ]; then
  echo "[test] the local broker's store is $(du -m "$db" | cut -f1) MB of earlier runs' topics: starting it afresh"
  scripts/stack.sh reset kafka
fi
es="${SLA_TEST_ES_URL:-http://127.0.0.1:9200}"
stale=$(curl -fsS "$es/_cat/indices/sla_test_*?h=index" 2>/dev/null | tr -s ' \n' '\n' | sed '/^$/d' || true)
if [ -n "$stale" ]; then
  echo "[test] deleting $(wc -l <<<"$stale") Elasticsearch indexes left by earlier test runs"
  # 20 names per request: a request line longer than 4 KB is refused (400), and deleting by
  # wildcard is refused by default (action.destructive_requires_name).
  xargs -n 20 <<<"$stale" | while read -r names; do
    curl -fsS -X DELETE "$es/${names// /,}" >/dev/null
  done
fi
cargo test --all-targets "$@"
