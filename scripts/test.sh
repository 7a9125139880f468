#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   1. installs the Python tools the tests use (scripts/requirements-test.txt)
#      and the Debian packages of the checks (chromium, Go),
#   2. checks the event contract with `datacontract lint`,
#   3. checks the deployment files: Helm chart, Dockerfile, Airflow DAG,
#   4. starts the local servers (scripts/services.sh) and stops them on exit,
#   5. checks formatting, lints and dependencies (cargo deny),
#   6. cross-checks `pitwall score run` against the independent DuckDB
#      implementation of the spec on a generated fleet,
#   7. builds the Python package (crates/py) and runs its tests against the
#      binary, pitwall.spark on Spark in local mode included,
#   8. runs every Rust test.
# Builds go to $CARGO_TARGET_DIR (default ~/.cache/pitwall/target), outside
# the clone, so later runs are warm.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pitwall/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental caches only help edit-compile loops; in CI they grow the target dir by gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step() { printf '\n== %s\n' "$*"; }

step "installing test tools"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

step "datacontract lint (the event contracts are valid ODCS)"
# datacontract-cli pins many packages of its own: it gets a venv outside the clone.
dc_venv="${PITWALL_TOOLS_DIR:-$HOME/.cache/pitwall/tools}/datacontract"
if [ ! -x "$dc_venv/bin/datacontract" ]; then
  python3 -m venv "$dc_venv"
  "$dc_venv/bin/pip" install --quiet --disable-pip-version-check datacontract-cli==1.2.8
fi
for c in contracts/*.odcs.yaml; do "$dc_venv/bin/datacontract" lint "$c"; done

# Debian packages the checks need: chromium (the status page test), Go with
# Sprig and yaml.v3 (the Helm chart is rendered by Go templates, as helm does).
debs=()
command -v chromium >/dev/null 2>&1 || debs+=(chromium fonts-liberation)
command -v go >/dev/null 2>&1 || debs+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || debs+=(golang-github-masterminds-sprig-dev)
[ -d /usr/share/gocode/src/gopkg.in/yaml.v3 ] || debs+=(golang-gopkg-yaml.v3-dev)
# values.schema.json is checked with the library helm 3 used for it.
[ -d /usr/share/gocode/src/github.com/xeipuuv/gojsonschema ] || debs+=(golang-github-xeipuuv-gojsonschema-dev)
if [ ${#debs[@]} -gt 0 ]; then
  step "installing ${debs[*]}"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
fi

step "deployment: the Helm chart renders to valid Kubernetes objects, the Dockerfile, the Airflow DAG"
tools="${PITWALL_TOOLS_DIR:-$HOME/.cache/pitwall/tools}"
mkdir -p "$tools"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$tools/go-cache" \
  go build -o "$tools/helm-render" deploy/helm/render/main.go
python3 deploy/check_chart.py --render "$tools/helm-render"
# Airflow pins hundreds of packages: a venv of its own, outside the clone.
af_venv="$tools/airflow"
if ! "$af_venv/bin/python" -c "import airflow.providers.cncf.kubernetes" >/dev/null 2>&1; then
  python3 -m venv "$af_venv"
  "$af_venv/bin/pip" install --quiet --disable-pip-version-check \
    apache-airflow==3.1.3 apache-airflow-providers-cncf-kubernetes==10.25.0
fi
af_home="$(mktemp -d)"
if ! AIRFLOW_HOME="$af_home" "$af_venv/bin/python" deploy/check_dag.py >"$af_home/check.log" 2>&1; then
  cat "$af_home/check.log"; exit 1
fi
tail -n 1 "$af_home/check.log"

step "starting services"
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
# Under this script every integration test must find its services.
export PITWALL_REQUIRE_SERVICES=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo deny: licences, banned crates, sources (deny.toml)"
deny="$tools/cargo-deny/bin/cargo-deny"
if [ ! -x "$deny" ]; then
  # Built once into the tools folder (about 2 minutes on 2 cores), kept there.
  cargo install --quiet --locked cargo-deny@0.20.2 --root "$tools/cargo-deny" --target-dir "$tools/cargo-build"
fi
# Advisories need the RustSec database from GitHub, which these machines
# cannot fetch: a connected CI adds `advisories` (docs/testing.md, "Dependencies").
"$deny" --log-level error check --hide-inclusion-graph licenses bans sources

step "cross-check against the DuckDB implementation of the spec"
cargo build --quiet --bin pitwall
python3 bench/score_vs_duckdb.py --rentals 300 --seed 11 --check-only \
  --pitwall "$CARGO_TARGET_DIR/debug/pitwall" --work "$(mktemp -d)"

step "Python package: the wheel's engine and pitwall.spark against the binary"
# A venv of its own (PySpark is large): built once, outside the clone.
py_venv="$tools/python"
# Installed again whenever scripts/requirements-python.txt changes.
if ! cmp -s scripts/requirements-python.txt "$py_venv/requirements.txt"; then
  python3 -m venv "$py_venv"
  "$py_venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-python.txt
  cp scripts/requirements-python.txt "$py_venv/requirements.txt"
fi
# A debug build into the same target dir as the workspace: its crates are already built.
VIRTUAL_ENV="$py_venv" PATH="$py_venv/bin:$PATH" maturin develop --quiet --manifest-path crates/py/Cargo.toml
PITWALL_BIN="$CARGO_TARGET_DIR/debug/pitwall" "$py_venv/bin/python" -m pytest -q -p no:cacheprovider crates/py/tests

step "cargo test"
# The score soak's second form runs librdkafka's mock cluster as a process.
cargo build --quiet -p pitwall-publish --example kafka_mock_cluster
# Doc tests first: nextest's summary line must close the run.
cargo test --workspace --doc --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
