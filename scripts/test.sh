#!/usr/bin/env bash
# The whole test suite: unit, conformance, CLI and distributed tests, the wasm32 build of the
# pure crates (dsl, planner), the browser viewer built to wasm and tested in chromium, and
# every notebook executed with the evcxr kernel. Run from anywhere; CI runs exactly this.
# Ends with one line `tests: N passed, M failed` over all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# One build from scratch: incremental caches would only take disk (they are as large as the
# build itself, and a CI machine's disk is not).
export CARGO_INCREMENTAL=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
cargo check --quiet -p weft-common -p weft-dsl -p weft-planner -p weft-viz --target wasm32-unknown-unknown
echo "wasm32 check: common, dsl, planner and viz build for wasm32-unknown-unknown"
# The viewer: built to wasm, then driven in chromium against `weft serve` (the debug binary
# `cargo test` above built). Screenshots land in target/web-artifacts/.
./scripts/build-web.sh
(cd crates/web/tests && WEFT_BIN="$PWD/../../../target/debug/weft" node viewer.mjs) 2>&1 | tee -a "$log" || status=$?
WEFT_BIN="$PWD/target/debug/weft" .tools/venv/bin/python notebooks/run.py 2>&1 | tee -a "$log" || status=$?
# weft on Spark: a real local-cluster (two executor JVMs) trains and scores through
# python/weft_spark with the weft `cargo test` built.
WEFT_BIN="$PWD/target/debug/weft" .tools/venv/bin/python python/tests/run.py 2>&1 | tee -a "$log" || status=$?
awk '/^(test result:|notebooks:|viewer:|spark:)/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
