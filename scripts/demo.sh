#!/usr/bin/env bash
# The demo, on a machine without Docker: brings up the local stack (the first run installs it),
# builds the jobs, runs generator -> synchronizer -> monitor -> Elasticsearch and the `alerts`
# evaluator on the provisioned Grafana rule, turns the synchronizer's delay on at runtime (no
# restart, no code edit), shows the rule go Pending then Firing (and Alertmanager receive it),
# turns the delay off, shows it return to Normal. Then completeness (the monitor reconciles with
# the visits topic and the synchronizer's dead letters): holds one visits partition until the
# "Records missing" rule fires, releases it and shows the rule clear; switches the loss switch on
# until the rule fires again, and off. Prints a timeline and stops what it started.
#
#   scripts/demo.sh          the real settings: 1-minute windows, the rules as provisioned
#                            (SLA: every 1m, for: 2m; Records missing: every 1m, for: 1m, over
#                            30 minutes, so lost records keep it firing for 30 minutes: the demo
#                            does not wait for that) -- about 15 minutes
#   scripts/demo.sh --fast   5-second windows, the same rules with a 5 s interval, for: 20s and
#                            ranges of 2 minutes (SLA) and 1 minute (Records missing), records
#                            lost after 2 minutes -- about 5 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=dashboards/grafana/provisioning/alerting/sla-alert-rules.yaml
MISSING_RULES=dashboards/grafana/provisioning/alerting/completeness-alert-rules.yaml
RUN=demo$(date +%s)
WORK=$(mktemp -d /tmp/sla-monitor-demo.XXXXXX)
if [ "${1:-}" = "--fast" ]; then
  MODE=fast; WINDOW=5s; OOO=1s; IDLE=3s; WARMUP=20; TIMEOUT=240; LOST_AFTER=2m
  # The provisioned rules with demo timings; queries, reducers, thresholds and states unchanged.
  sed -e 's/^    interval: 1m$/    interval: 5s/' -e 's/interval: 1m$/interval: 5s/' \
      -e 's/from: 600/from: 120/' -e 's/for: 2m/for: 20s/' "$RULES" >"$WORK/rules.yaml"
  RULES="$WORK/rules.yaml"
  sed -e 's/^    interval: 1m$/    interval: 5s/' -e 's/interval: 1m$/interval: 5s/' \
      -e 's/from: 1800/from: 60/' -e 's/for: 1m/for: 20s/' "$MISSING_RULES" >"$WORK/missing-rules.yaml"
  MISSING_RULES="$WORK/missing-rules.yaml"
else
  MODE=default; WINDOW=1m; OOO=5s; IDLE=30s; WARMUP=150; TIMEOUT=720; LOST_AFTER=10m
fi
SLA_RULE=sla-miss
MISSING_RULE=sla-records-missing
DELAY=10s
INDEX="sla_${RUN}"
SYNC_HTTP=127.0.0.1:19101
# The secret PUT /delay requires (kept in the run's work directory, never printed).
TOKEN_FILE="$WORK/control_token"
(umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TOKEN_FILE")
ALERTS_HTTP=127.0.0.1:19103
ALERTMANAGER=http://127.0.0.1:9093   # the stack's HA pair: alerts go to both replicas
ALERTMANAGER_2=http://127.0.0.1:9095
pids=()
started=()

say() { printf '\n\033[1m[demo %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Stops exactly the components this run started (alertmanager stands for the HA pair).
  for c in "${started[@]}"; do scripts/stack.sh down "$c"; done
  echo "logs kept in $WORK"
}
trap cleanup EXIT

# The state of the demo pipeline's instance (label job=visits-synchronizer) of rule uid $1.
rule_state() {
  curl -fsS "http://$ALERTS_HTTP/state" 2>/dev/null | python3 -c '
import json, sys
rule = next(r for r in json.load(sys.stdin) if r["uid"] == sys.argv[1])
print(next(i["state"]["state"] for i in rule["instances"] if i["labels"].get("job") == "visits-synchronizer"))' \
    "$1" 2>/dev/null || echo starting
}

# Waits until the instance of rule uid $1 is in state $2.
wait_for_state() {
  local rule=$1 wanted=$2 start=$SECONDS
  until [ "$(rule_state "$rule")" = "$wanted" ]; do
    (( SECONDS - start < TIMEOUT )) || { echo "rule $rule did not reach $wanted within ${TIMEOUT}s; logs in $WORK"; exit 1; }
    sleep 2
  done
}

# PUT on the synchronizer's control endpoint, e.g. control "delay?delay=10s".
control() {
  curl -fsS -X PUT -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "http://$SYNC_HTTP/$1"; echo
}

say "mode: $MODE ($WINDOW windows, SLA 5s, a $DELAY delay while it is on)"
# Components already running are left running afterwards; the others are stopped again. The
# status is read whole first: a grep that stops at its first match would end stack.sh with
# SIGPIPE, which pipefail reports as a failure.
status_before=$(scripts/stack.sh status)
started=()
for c in kafka elasticsearch prometheus alertmanager; do
  lines=("$c"); [ "$c" != alertmanager ] || lines+=(alertmanager-2)
  for line in "${lines[@]}"; do
    if ! grep -q "^$line: running" <<<"$status_before"; then started+=("$c"); break; fi
  done
done
scripts/stack.sh up
say "building the jobs (release)"
cargo build --release --quiet --bins
BIN=target/release

say "starting monitor, synchronizer, generator and the alert evaluator (topics ${RUN}_*, index $INDEX)"
$BIN/monitor --input-topic "${RUN}_reduced" --dead-letter-topic "${RUN}_reduced_dlq" \
  --checkpoint-topic "${RUN}_checkpoints" --group "${RUN}_monitor" --window "$WINDOW" \
  --max-out-of-orderness "$OOO" --idle-timeout "$IDLE" --max-producer-hold "$IDLE" --sla 5s --es-index "$INDEX" \
  --source-topic "${RUN}_visits" --source-dead-letters "${RUN}_visits_dlq" --lost-after "$LOST_AFTER" \
  --http-addr 127.0.0.1:0 2>"$WORK/monitor.log" & pids+=($!)
$BIN/synchronizer --visits-topic "${RUN}_visits" --reduced-topic "${RUN}_reduced" \
  --dead-letter-topic "${RUN}_visits_dlq" --group "${RUN}_synchronizer" --http-addr "$SYNC_HTTP" \
  --control-token-file "$TOKEN_FILE" \
  2>"$WORK/synchronizer.log" & pids+=($!)
$BIN/generator --visits-topic "${RUN}_visits" --rate 50 --invalid-json-pct 1 --http-addr 127.0.0.1:0 \
  >/dev/null 2>"$WORK/generator.log" & pids+=($!)

# Prints every window as it lands in Elasticsearch and every state change of the rule.
python3 -u -c '
import json, sys, time, urllib.request
index, alerts = sys.argv[1], sys.argv[2]
seen_windows, seen_transitions, seen_accounts = set(), {}, {}
query = json.dumps({"size": 1000, "sort": [{"@timestamp": "asc"}], "query": {"match_all": {}}}).encode()
while True:
    try:
        request = urllib.request.Request("http://127.0.0.1:9200/%s/_search" % index, data=query,
                                         headers={"Content-Type": "application/json"})
        hits = json.load(urllib.request.urlopen(request, timeout=5))["hits"]["hits"]
    except Exception:
        hits = []
    for hit in hits:
        d = hit["_source"]
        if hit["_id"] in seen_windows:
            continue
        seen_windows.add(hit["_id"])
        verdict = "MISS" if d["p99"] > d["sla_ms"] else "ok"
        print("  window %s  count=%5d  p50=%8.0f ms  p99=%8.0f ms  over SLA=%5d  %s"
              % (d["@timestamp"][11:19], d["count"], d["p50"], d["p99"], d["over_sla_count"], verdict), flush=True)
    try:
        request = urllib.request.Request("http://127.0.0.1:9200/%s-completeness/_search" % index, data=query,
                                         headers={"Content-Type": "application/json"})
        accounts = json.load(urllib.request.urlopen(request, timeout=5))["hits"]["hits"]
    except Exception:
        accounts = []
    for hit in accounts:
        d = hit["_source"]
        said = (d["overdue"] + d["lost"] > 0, d["final"])
        if seen_accounts.get(hit["_id"], (False, False)) == said:
            continue
        seen_accounts[hit["_id"]] = said
        print("  source window %s  expected=%5d  in time=%5d  late=%4d  dead-lettered=%3d  overdue=%4d  lost=%4d%s"
              % (d["@timestamp"][11:19], d["expected"], d["arrived_within_sla"], d["arrived_late"],
                 d["dead_lettered"], d["overdue"], d["lost"], "  final" if d["final"] else ""), flush=True)
    try:
        for rule in json.load(urllib.request.urlopen("http://%s/state" % alerts, timeout=5)):
            seen = seen_transitions.get(rule["uid"], 0)
            for t in rule["transitions"][seen:]:
                value = "no value" if t["value"] is None else "%+.0f" % t["value"]
                print("  \033[1m%s %s %s: %s -> %s\033[0m (value %s, %s lasted %.0f s)"
                      % (rule["title"].upper(), time.strftime("%H:%M:%S", time.localtime(t["at_ms"] / 1000)),
                         t["labels"].get("job", "(rule)"), t["from"], t["to"], value, t["from"],
                         t["previous_lasted_ms"] / 1000), flush=True)
            seen_transitions[rule["uid"]] = len(rule["transitions"])
    except Exception:
        pass
    time.sleep(2)
' "$INDEX" "$ALERTS_HTTP" & pids+=($!)

# The evaluator starts once the first window is indexed: before that the rule would see no
# data (and, as in Grafana 10.4, go straight to NoData).
say "waiting for the first window in Elasticsearch"
until curl -fsS "http://127.0.0.1:9200/$INDEX/_count" 2>/dev/null | grep -qv '"count":0'; do sleep 2; done
$BIN/alerts --rules "$RULES,$MISSING_RULES" --es-index "$INDEX" --alertmanager-url "$ALERTMANAGER,$ALERTMANAGER_2" \
  --http-addr "$ALERTS_HTTP" 2>"$WORK/alerts.log" & pids+=($!)
wait_for_state "$SLA_RULE" Normal
timeline=("$(date +%H:%M:%S) start, no delay")
say "phase 1: no delay, p99 well under the SLA (${WARMUP}s)"
sleep "$WARMUP"
say "turning the delay on at runtime: PUT http://$SYNC_HTTP/delay?delay=$DELAY"
control "delay?delay=$DELAY"
timeline+=("$(date +%H:%M:%S) delay on ($DELAY)")
say "phase 2: waiting for the rule to go Pending, then Firing (Alerting)"
wait_for_state "$SLA_RULE" Alerting
say "Alertmanager received:"
curl -fsS "$ALERTMANAGER/api/v2/alerts?filter=alertname%3D%22SLA%20miss%22" | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    print("  %s [%s] %s" % (a["labels"]["alertname"], a["status"]["state"], a["annotations"].get("summary", "")))'
say "turning the delay off: PUT http://$SYNC_HTTP/delay?delay=0s"
control "delay?delay=0s"
timeline+=("$(date +%H:%M:%S) delay off")
say "phase 3: waiting for the rule to return to Normal"
wait_for_state "$SLA_RULE" Normal

# Completeness. Every visit is accounted for; the malformed ones the generator makes count as
# dead-lettered (read from ${RUN}_visits_dlq), not missing, so Records missing is Normal.
wait_for_state "$MISSING_RULE" Normal
say "phase 4: holding visits partition 0 in the synchronizer (PUT /delay?partition=0): its records wait, the others flow"
control "delay?delay=$LOST_AFTER&partition=0"
timeline+=("$(date +%H:%M:%S) partition 0 held")
say "waiting for Records missing to fire while the records are still held (no late record has been measured yet)"
wait_for_state "$MISSING_RULE" Alerting
say "releasing partition 0: the held records arrive, late, and are no longer missing"
control "delay?delay=0s&partition=all"
timeline+=("$(date +%H:%M:%S) partition 0 released")
wait_for_state "$MISSING_RULE" Normal
say "phase 5: the loss switch on (PUT /loss?rate=5%): the synchronizer drops records silently; p99 stays green"
control "loss?rate=5%25"
timeline+=("$(date +%H:%M:%S) loss on (5%)")
wait_for_state "$MISSING_RULE" Alerting
control "loss?rate=0"
timeline+=("$(date +%H:%M:%S) loss off")
if [ "$MODE" = fast ]; then
  say "loss off: the lost records stay lost; the rule clears once their windows leave its range"
  wait_for_state "$MISSING_RULE" Normal
else
  say "loss off: the lost records stay lost, and keep Records missing firing until their windows leave its 30-minute range (the demo does not wait)"
fi
sleep 3

say "timeline"
{
  printf '%s\n' "${timeline[@]}"
  curl -fsS "http://$ALERTS_HTTP/state" | python3 -c '
import json, sys, time
for rule in json.load(sys.stdin):
    for t in rule["transitions"]:
        if t["labels"].get("job") != "visits-synchronizer":
            continue
        print("%s %s %s -> %s (after %.0f s)" % (time.strftime("%H:%M:%S", time.localtime(t["at_ms"] / 1000)),
              rule["title"], t["from"], t["to"], t["previous_lasted_ms"] / 1000))'
} | sort | sed 's/^/  /'
echo "  see the windows: curl -s 'http://127.0.0.1:9200/$INDEX/_search?sort=@timestamp&size=100&pretty'"
echo "  and completeness: curl -s 'http://127.0.0.1:9200/$INDEX-completeness/_search?sort=@timestamp&size=100&pretty'"
