#!/usr/bin/env bash
# Opt-in: a weft binary for this machine's CPU only (`-C target-cpu=native`), in
# target/native/release/weft. The default build (`cargo build --release`) is portable: it
# runs on every x86-64 node and picks AVX-512 / AVX2 at run time. Do not copy a native
# binary to another machine: an older CPU stops it with an illegal instruction.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native" cargo build --release --target-dir target/native "$@"
echo "built target/native/release/weft (for this CPU only)"
