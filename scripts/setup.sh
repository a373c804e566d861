#!/usr/bin/env bash
# Installs what weft's build, tests and notebooks need, idempotently (each step runs only
# when its tool is missing or the wrong version). Usage: scripts/setup.sh [core|all]
#   core: the wasm32 target (dsl and planner must compile to WebAssembly);
#   all (default) adds the notebook tooling: the evcxr Jupyter kernel for Rust (cargo
#   install, ~8 min the first time) and a Python venv in .tools/venv with the packages that
#   execute notebooks headlessly.
# Rust itself comes from rustup; Python 3 with venv must be on the machine.
set -euo pipefail
what=${1:-all}
case "$what" in core | all) ;; *) echo "usage: scripts/setup.sh [core|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "weft needs Rust (cargo); install it with rustup first" >&2
  exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
[ "$what" = core ] && exit 0

EVCXR_VERSION=0.22.0
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo install --list | grep -qxF "evcxr_jupyter v$EVCXR_VERSION:" || ! command -v evcxr_jupyter >/dev/null; then
  # --locked: without it evcxr_jupyter does not build.
  cargo install --locked evcxr_jupyter --version "$EVCXR_VERSION"
fi
kernel_dir="${JUPYTER_DATA_DIR:-$HOME/.local/share/jupyter}/kernels/rust"
if [ ! -f "$kernel_dir/kernel.json" ]; then
  evcxr_jupyter --install
fi

venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import nbclient, nbformat, nbconvert" 2>/dev/null; then
  "$venv/bin/pip" install --quiet nbclient nbformat nbconvert
fi
