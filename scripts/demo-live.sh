#!/usr/bin/env bash
# The live chain on one machine, every part a real process against a real
# server: a simulated fleet (`pitwall gen stream`) puts telemetry on Kinesis
# (kinesalite), `pitwall ingest run` lands it in a local lake against the
# telemetry contract, and `pitwall score watch` scores and publishes each
# member's new record to Kafka (tansu) within seconds of a car's return.
# Opens nothing: it prints where the status pages are. Ctrl-C stops
# everything, the servers included.
#
#   scripts/demo-live.sh [CARS] [SPEEDUP]      (default 50 cars, 10x real time)
#
# The demo's model lowers the eligibility distance to 1 km (a member of a
# fresh simulated fleet has driven little); everything else is the embedded
# model. Work files are in $PITWALL_DEMO_DIR (default a new temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

cars="${1:-50}"
speedup="${2:-10}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
work="${PITWALL_DEMO_DIR:-$(mktemp -d -t pitwall-live-XXXXXX)}"
mkdir -p "$work"

echo "building pitwall (release) ..." >&2
cargo build --release --quiet -p pitwall
bin="$target/release/pitwall"
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt >&2

pids=()
stop() {
  trap - INT TERM EXIT
  echo >&2
  echo "stopping: the watcher finishes its cycle, the ingestion commits its files ..." >&2
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  scripts/services.sh stop >/dev/null 2>&1 || true
  echo "stopped; the lake, the state and the logs stay in $work" >&2
}
trap stop INT TERM EXIT

echo "starting the servers (moto, kinesalite, tansu) ..." >&2
scripts/services.sh start >"$work/services.env"
# shellcheck disable=SC1091
source "$work/services.env"

stream="pitwall-demo-telemetry"
topic="driving-score.member.v1"
python3 crates/pitwall/tests/kinesis_admin.py create "$stream" 2 >/dev/null
python3 - "$PITWALL_TEST_KAFKA" "$topic" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], 2, 1)]).values():
    f.result(30)
EOF
"$bin" score model | sed 's/^eligible_min_distance_km = .*/eligible_min_distance_km = 1.0/' >"$work/model.toml"

"$bin" ingest run --stream "$stream" --lake "$work/lake" \
  --contract contracts/telemetry.kinematics.odcs.yaml --leases "sqlite:$work/ingest-leases.db" \
  --roll-age 10s --listen 127.0.0.1:9464 2>"$work/ingest.log" &
pids+=($!)
"$bin" gen stream --stream "$stream" --rentals "$work/rentals.parquet" --cars "$cars" \
  --speedup "$speedup" --duration 24h --rental-minutes 5..30 --idle-minutes 0.5..10 \
  2>"$work/gen.log" &
pids+=($!)
# The simulator writes the (empty) rentals file first; the watcher reads it.
while [ ! -e "$work/rentals.parquet" ]; do sleep 0.2; done
"$bin" score watch --state "$work/state" --rentals "$work/rentals.parquet" \
  --telemetry "$work/lake/telemetry.kinematics" --model "$work/model.toml" --every 15s \
  --leases "sqlite:$work/watch-leases.db" --out "$work/cycles" --listen 127.0.0.1:9465 \
  --brokers "$PITWALL_TEST_KAFKA" --topic "$topic" --registry "file:$work/registry" \
  --transactional=false 2>"$work/watch.log" &
pids+=($!)

cat <<EOF

pitwall live demo: $cars cars at ${speedup}x real time
  ingestion status   http://127.0.0.1:9464/     (metrics: /metrics)
  score watch status http://127.0.0.1:9465/     (metrics: /metrics, cycles: /status.json)
  lake               $work/lake/telemetry.kinematics/dt=…/hour=…/
  topic              $topic on $PITWALL_TEST_KAFKA (schema in $work/registry)
  logs               $work/{gen,ingest,watch}.log
Ctrl-C stops everything.
EOF
wait "${pids[@]}"
