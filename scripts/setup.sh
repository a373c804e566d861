#!/usr/bin/env bash
# Installs what weft's build and tests need, idempotently: the wasm32 target (dsl and planner
# must compile to WebAssembly). Rust itself comes from rustup (https://rustup.rs).
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "weft needs Rust (cargo); install it with rustup first" >&2
  exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
