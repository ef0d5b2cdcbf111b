#!/usr/bin/env bash
# The demo, on a machine without Docker: brings up the local stack (first run installs it),
# builds the jobs, runs generator -> synchronizer -> monitor, turns the synchronizer's delay
# on at runtime (no restart), shows the windows miss the SLA, turns it off, shows recovery,
# prints a timeline and stops everything it started.
#
#   scripts/demo.sh          real 1-minute windows (about 8 minutes)
#   scripts/demo.sh --fast   5-second windows (about 1.5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fast" ]; then
  WINDOW=5s; IDLE=3s; PHASE=25; MODE=fast
else
  WINDOW=1m; IDLE=30s; PHASE=150; MODE=default
fi
DELAY=10s
SLA=5s
RUN=demo$(date +%s)
WORK=$(mktemp -d /tmp/sla-monitor-demo.XXXXXX)
SYNC_HTTP=127.0.0.1:19101
pids=()

say() { printf '\n\033[1m[demo %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${stack_started:-no}" = yes ]; then scripts/stack.sh down; fi
  echo "logs kept in $WORK"
}
trap cleanup EXIT

say "mode: $MODE ($WINDOW windows, SLA $SLA, delay $DELAY while it is on)"
if [ "$(scripts/stack.sh status | grep -c running)" = 2 ]; then stack_started=no; else stack_started=yes; fi
scripts/stack.sh up kafka elasticsearch
say "building the jobs (release)"
cargo build --release --quiet --bins
BIN=target/release

say "starting monitor, synchronizer and generator (topics ${RUN}_*)"
$BIN/monitor --reduced-topic "${RUN}_reduced" --dead-letter-topic "${RUN}_reduced_dlq" \
  --checkpoint-topic "${RUN}_checkpoints" --group "${RUN}_monitor" --window "$WINDOW" \
  --idle-timeout "$IDLE" --sla "$SLA" --job-name "$RUN" --es-index visits_sync_sla --http-addr 127.0.0.1:0 \
  2>"$WORK/monitor.log" & pids+=($!)
$BIN/synchronizer --visits-topic "${RUN}_visits" --reduced-topic "${RUN}_reduced" \
  --dead-letter-topic "${RUN}_visits_dlq" --group "${RUN}_synchronizer" --http-addr "$SYNC_HTTP" \
  2>"$WORK/synchronizer.log" & pids+=($!)
$BIN/generator --visits-topic "${RUN}_visits" --rate 50 --invalid-json-pct 1 --http-addr 127.0.0.1:0 \
  >/dev/null 2>"$WORK/generator.log" & pids+=($!)

# Prints each window document as it appears in Elasticsearch.
show_windows() {
  python3 -u -c '
import json, sys, time, urllib.request
job, seen = sys.argv[1], set()
query = json.dumps({"size": 1000, "sort": [{"@timestamp": "asc"}], "query": {"term": {"job": job}}}).encode()
while True:
    try:
        request = urllib.request.Request("http://127.0.0.1:9200/visits_sync_sla/_search", data=query,
                                         headers={"Content-Type": "application/json"})
        hits = json.load(urllib.request.urlopen(request, timeout=5))["hits"]["hits"]
    except Exception:
        hits = []
    for hit in hits:
        d = hit["_source"]
        if hit["_id"] in seen:
            continue
        seen.add(hit["_id"])
        verdict = "MISS" if d["p99"] > d["sla_ms"] else "ok"
        print("  window %s  count=%5d  p50=%8.0f ms  p99=%8.0f ms  over SLA=%5d  %s"
              % (d["@timestamp"][11:19], d["count"], d["p50"], d["p99"], d["over_sla_count"], verdict), flush=True)
    time.sleep(2)
' "$RUN" &
  pids+=($!)
}
show_windows
timeline=("$(date +%H:%M:%S) start, no delay")

say "phase 1: no delay, p99 well under the SLA (${PHASE}s)"
sleep "$PHASE"
say "turning the delay on at runtime: PUT http://$SYNC_HTTP/delay?delay=$DELAY"
curl -fsS -X PUT "http://$SYNC_HTTP/delay?delay=$DELAY"; echo
timeline+=("$(date +%H:%M:%S) delay on ($DELAY)")
say "phase 2: every record is $DELAY late, windows miss the SLA (${PHASE}s)"
sleep "$PHASE"
say "turning the delay off: PUT http://$SYNC_HTTP/delay?delay=0s"
curl -fsS -X PUT "http://$SYNC_HTTP/delay?delay=0s"; echo
timeline+=("$(date +%H:%M:%S) delay off")
say "phase 3: back under the SLA (${PHASE}s)"
sleep "$PHASE"

say "timeline"
printf '  %s\n' "${timeline[@]}"
curl -fsS -H 'Content-Type: application/json' "http://127.0.0.1:9200/visits_sync_sla/_search" \
  -d "{\"size\":1000,\"query\":{\"term\":{\"job\":\"$RUN\"}}}" | python3 -c '
import json, sys
docs = [h["_source"] for h in json.load(sys.stdin)["hits"]["hits"]]
misses = sorted((d for d in docs if d["p99"] > d["sla_ms"]), key=lambda d: d["@timestamp"])
print("  %d windows in Elasticsearch (index visits_sync_sla, job %s), %d missed the SLA" % (len(docs), sys.argv[1], len(misses)))
for d in misses:
    print("    SLA miss: window %s p99=%.0f ms" % (d["@timestamp"], d["p99"]))
' "$RUN"
echo "  see them yourself: curl -s 'http://127.0.0.1:9200/visits_sync_sla/_search?q=job:$RUN&sort=@timestamp&size=100&pretty'"
