#!/usr/bin/env bash
# Builds the browser viewer into web/dist/: the weft-web crate compiled to wasm32, its
# wasm-bindgen glue (wasm-bindgen-cli of the lockfile's version, installed by setup.sh),
# and the static page. `weft serve` serves that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh web
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_PROFILE_RELEASE_DEBUG=false cargo build --quiet --target wasm32-unknown-unknown -p weft-web --release
rm -rf web/dist.tmp
mkdir -p web/dist.tmp/pkg
wasm-bindgen --target web --no-typescript --out-dir web/dist.tmp/pkg \
  target/wasm32-unknown-unknown/release/weft_web.wasm
cp web/static/* web/dist.tmp/
rm -rf web/dist
mv web/dist.tmp web/dist
echo "built web/dist ($(du -sh web/dist | cut -f1))"
