#!/usr/bin/env bash
# Builds the browser viewer into crates/web/dist/: the weft-web crate compiled to wasm32, its
# wasm-bindgen glue (wasm-bindgen-cli of the lockfile's version, installed by setup.sh),
# and the static page. `weft serve` serves that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh web
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_PROFILE_RELEASE_DEBUG=false cargo build --quiet --target wasm32-unknown-unknown -p weft-web --release
rm -rf crates/web/dist.tmp
mkdir -p crates/web/dist.tmp/pkg
wasm-bindgen --target web --no-typescript --out-dir crates/web/dist.tmp/pkg \
  target/wasm32-unknown-unknown/release/weft_web.wasm
cp crates/web/static/* crates/web/dist.tmp/
rm -rf crates/web/dist
mv crates/web/dist.tmp crates/web/dist
echo "built crates/web/dist ($(du -sh crates/web/dist | cut -f1))"
