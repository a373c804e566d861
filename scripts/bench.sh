#!/usr/bin/env bash
# weft's CPU benchmarks side by side with a baseline, in one invocation (ratios, since the
# machine is shared and noisy). Usage: scripts/bench.sh [torch|numpy]   (default: torch)
# Baselines are scripts/baselines/ (override with BASELINES=dir); their Python
# packages go into .tools/baselines-venv (torch is a large download, once).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-torch}
base=${BASELINES:-scripts/baselines}
venv=.tools/baselines-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import numpy, sklearn" 2>/dev/null || "$venv/bin/pip" install -q numpy scikit-learn
cargo build --release --quiet
case "$which" in
  torch)
    "$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/pip" install -q torch
    target/release/weft bench --baseline "$venv/bin/python $base/bench_torch.py eager {key}" ;;
  numpy)
    target/release/weft bench higgs-b32 higgs-b1024 --baseline "$venv/bin/python $base/bench_numpy.py {batch}" ;;
  *) echo "usage: scripts/bench.sh [torch|numpy]" >&2; exit 2 ;;
esac
