#!/usr/bin/env bash
# The whole test suite: unit, conformance and CLI tests, plus the wasm32 build of the pure
# crates (dsl, planner). Run from anywhere; CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace --quiet
cargo check --quiet -p weft-dsl -p weft-planner --target wasm32-unknown-unknown
echo "wasm32 check: dsl and planner build for wasm32-unknown-unknown"
