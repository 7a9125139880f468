#!/usr/bin/env bash
# Starts and stops the local servers the integration tests talk to.
#
#   scripts/services.sh start   # prints `export VAR=…` lines for the tests
#   scripts/services.sh stop
#
# Services:
#   moto (S3) on 127.0.0.1:${PITWALL_MOTO_PORT:-5055}
#   kinesalite (Kinesis, in-memory; resharding like Kinesis) on 127.0.0.1:${PITWALL_KINESIS_PORT:-4567},
#   installed with npm into ~/.cache/pitwall/tools on first use;
#   kinesis-mock (npm kinesis-local 0.6.2: Kinesis with SubscribeToShard and
#   ChildShards, for enhanced fan-out) on plain HTTP 127.0.0.1:${PITWALL_KINESIS_MOCK_PORT:-4569};
#   tansu (Kafka protocol, in-memory, no transactions) on 127.0.0.1:${PITWALL_KAFKA_PORT:-19092};
#   installed on first use with `cargo install` into ~/.cache/pitwall/tools (a debug
#   build, ~5-8 min on 2 cores, serves tests well), outside the clone so it is built once;
#   Prometheus (Debian's package, installed on first use) on 127.0.0.1:${PITWALL_PROMETHEUS_PORT:-9090},
#   scraping every second the targets tests write into $state/prometheus-targets/*.json
#   (file_sd), with the chart's alert rules loaded.
set -euo pipefail

state="${PITWALL_SERVICES_DIR:-/tmp/pitwall-services}"
moto_port="${PITWALL_MOTO_PORT:-5055}"
kafka_port="${PITWALL_KAFKA_PORT:-19092}"
kinesis_port="${PITWALL_KINESIS_PORT:-4567}"
kinesis_mock_port="${PITWALL_KINESIS_MOCK_PORT:-4569}"
prometheus_port="${PITWALL_PROMETHEUS_PORT:-9090}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${PITWALL_TOOLS_DIR:-$HOME/.cache/pitwall/tools}"
tansu="$tools/bin/tansu"
mkdir -p "$state"

install_tansu() {
  [ -x "$tansu" ] && return 0
  echo "installing tansu 0.6.0 (once; cached in $tools) ..." >&2
  CARGO_TARGET_DIR="$tools/target" cargo install tansu --version 0.6.0 --locked \
    --features dynostore --debug --root "$tools" >&2
  rm -rf "$tools/target"
}

install_kinesalite() {
  [ -f "$tools/node_modules/kinesalite/cli.js" ] && return 0
  echo "installing kinesalite 3.3.3 (once; cached in $tools) ..." >&2
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" kinesalite@3.3.3 >&2
}

install_kinesis_mock() {
  [ -f "$tools/node_modules/kinesis-local/main.js" ] && return 0
  echo "installing kinesis-local 0.6.2 (once; cached in $tools) ..." >&2
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" kinesis-local@0.6.2 >&2
}

install_prometheus() {
  command -v prometheus >/dev/null 2>&1 && return 0
  echo "installing prometheus (Debian's package, once) ..." >&2
  local sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends prometheus >&2
}

start_prometheus() {
  install_prometheus
  rm -rf "$state/prometheus-data" "$state/prometheus-targets"
  mkdir -p "$state/prometheus-targets"
  cat >"$state/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $repo/deploy/helm/pitwall/files/prometheus-rules.yaml
scrape_configs:
  # Each test writes its targets, with a job label of its own.
  - job_name: pitwall
    file_sd_configs:
      - files: ["$state/prometheus-targets/*.json"]
        refresh_interval: 1s
YML
  prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus-data" \
    --web.listen-address="127.0.0.1:$prometheus_port" >"$state/prometheus.log" 2>&1 &
  echo $! >"$state/prometheus.pid"
  wait_for_port prometheus "$prometheus_port" "$(cat "$state/prometheus.pid")"
}

wait_for_port() { # name port pid
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then
      echo "error: $1 exited during start-up; its log is $state/$1.log:" >&2
      tail -20 "$state/$1.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "error: $1 did not listen on 127.0.0.1:$2 within 20 s; see $state/$1.log" >&2
  return 1
}

start() {
  stop >/dev/null 2>&1 || true
  moto_server -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for_port moto "$moto_port" "$(cat "$state/moto.pid")"
  install_kinesalite
  # Streams become ACTIVE at once, and resharding finishes at once, as tests want.
  node "$tools/node_modules/kinesalite/cli.js" --port "$kinesis_port" --createStreamMs 0 \
    --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 500 >"$state/kinesalite.log" 2>&1 &
  echo $! >"$state/kinesalite.pid"
  wait_for_port kinesalite "$kinesis_port" "$(cat "$state/kinesalite.pid")"
  install_kinesis_mock
  # It reads server.json (its TLS key) from the working directory; its TLS
  # port is moved off kinesalite's, and streams and consumers become ACTIVE
  # after 100 ms.
  (cd "$tools/node_modules/kinesis-local" && KINESIS_MOCK_PLAIN_PORT="$kinesis_mock_port" \
    KINESIS_MOCK_TLS_PORT="$((kinesis_mock_port + 1))" CREATE_STREAM_DURATION=100ms \
    REGISTER_STREAM_CONSUMER_DURATION=100ms SPLIT_SHARD_DURATION=100ms \
    MERGE_SHARDS_DURATION=100ms SHARD_LIMIT=500 LOG_LEVEL=WARN \
    exec node main.js >"$state/kinesis-mock.log" 2>&1) &
  echo $! >"$state/kinesis-mock.pid"
  wait_for_port kinesis-mock "$kinesis_mock_port" "$(cat "$state/kinesis-mock.pid")"
  install_tansu
  "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine "memory://tansu/" >"$state/tansu.log" 2>&1 &
  echo $! >"$state/tansu.pid"
  wait_for_port tansu "$kafka_port" "$(cat "$state/tansu.pid")"
  start_prometheus
  local endpoint="http://127.0.0.1:$moto_port"
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test python3 - "$endpoint" <<'PY'
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket="pitwall-test")
PY
  cat <<ENV
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export PITWALL_TEST_S3_BUCKET=pitwall-test
export PITWALL_TEST_KAFKA=127.0.0.1:$kafka_port
export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:$kinesis_port
export PITWALL_TEST_KINESIS=http://127.0.0.1:$kinesis_port
export PITWALL_TEST_KINESIS_MOCK=http://127.0.0.1:$kinesis_mock_port
export PITWALL_TEST_PROMETHEUS=http://127.0.0.1:$prometheus_port
export PITWALL_TEST_PROMETHEUS_TARGETS=$state/prometheus-targets
ENV
}

stop() {
  for pidfile in "$state"/*.pid; do
    [ -e "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
