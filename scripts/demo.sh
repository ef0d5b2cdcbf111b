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
  if [ "${stack_started:-no}" = yes ]; then scripts/stack.sh down kafka; fi
  echo "logs kept in $WORK"
}
trap cleanup EXIT

say "mode: $MODE ($WINDOW windows, SLA $SLA, delay $DELAY while it is on)"
if scripts/stack.sh status kafka | grep -q running; then stack_started=no; else stack_started=yes; fi
scripts/stack.sh up kafka
say "building the jobs (release)"
cargo build --release --quiet --bins
BIN=target/release

say "starting monitor, synchronizer and generator (topics ${RUN}_*)"
$BIN/monitor --reduced-topic "${RUN}_reduced" --dead-letter-topic "${RUN}_reduced_dlq" \
  --checkpoint-topic "${RUN}_checkpoints" --group "${RUN}_monitor" --window "$WINDOW" \
  --idle-timeout "$IDLE" --sla "$SLA" --sink json-lines --output "$WORK/windows.jsonl" --http-addr 127.0.0.1:0 \
  2>"$WORK/monitor.log" & pids+=($!); monitor_pid=$!
$BIN/synchronizer --visits-topic "${RUN}_visits" --reduced-topic "${RUN}_reduced" \
  --dead-letter-topic "${RUN}_visits_dlq" --group "${RUN}_synchronizer" --http-addr "$SYNC_HTTP" \
  2>"$WORK/synchronizer.log" & pids+=($!)
$BIN/generator --visits-topic "${RUN}_visits" --rate 50 --invalid-json-pct 1 --http-addr 127.0.0.1:0 \
  >/dev/null 2>"$WORK/generator.log" & pids+=($!)

# Prints each window document as it is written.
show_windows() {
  tail -n +1 -F --pid="$monitor_pid" "$WORK/windows.jsonl" 2>/dev/null | python3 -u -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    verdict = "MISS" if d["p99"] > d["sla_ms"] else "ok"
    start = d["@timestamp"][11:19]
    print("  window %s  count=%5d  p50=%8.0f ms  p99=%8.0f ms  over SLA=%5d  %s"
          % (start, d["count"], d["p50"], d["p99"], d["over_sla_count"], verdict), flush=True)
' &
  pids+=($!)
}
touch "$WORK/windows.jsonl"
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
python3 - "$WORK/windows.jsonl" <<'PY'
import json, sys
docs = {}
for line in open(sys.argv[1]):
    d = json.loads(line); docs[d["id"]] = d
misses = [d for d in docs.values() if d["p99"] > d["sla_ms"]]
print(f"  {len(docs)} windows written, {len(misses)} missed the SLA")
for d in sorted(misses, key=lambda d: d["@timestamp"]):
    print(f"    SLA miss: window {d['@timestamp']} p99={d['p99']:.0f} ms")
PY
