#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   1. installs the Python tools the tests use (scripts/requirements-test.txt)
#      and Debian's chromium (the status page test),
#   2. starts the local servers (scripts/services.sh) and stops them on exit,
#   3. checks formatting and lints, and the event contract with `datacontract lint`,
#   4. cross-checks `pitwall score run` against the independent DuckDB
#      implementation of the spec on a generated fleet,
#   5. runs every Rust test.
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

step "datacontract lint (the event contract is valid ODCS)"
# datacontract-cli pins many packages of its own: it gets a venv outside the clone.
dc_venv="${PITWALL_TOOLS_DIR:-$HOME/.cache/pitwall/tools}/datacontract"
if [ ! -x "$dc_venv/bin/datacontract" ]; then
  python3 -m venv "$dc_venv"
  "$dc_venv/bin/pip" install --quiet --disable-pip-version-check datacontract-cli==1.2.8
fi
"$dc_venv/bin/datacontract" lint contracts/server_log.api_request.odcs.yaml

if ! command -v chromium >/dev/null 2>&1; then
  step "installing chromium (the status page is tested in headless Chromium)"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >/dev/null
fi

step "starting services"
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
# Under this script every integration test must find its services.
export PITWALL_REQUIRE_SERVICES=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cross-check against the DuckDB implementation of the spec"
cargo build --quiet --bin pitwall
python3 bench/score_vs_duckdb.py --rentals 300 --seed 11 --check-only \
  --pitwall "$CARGO_TARGET_DIR/debug/pitwall" --work "$(mktemp -d)"

step "cargo test"
# Doc tests first: nextest's summary line must close the run.
cargo test --workspace --doc --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
