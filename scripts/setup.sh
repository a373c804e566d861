#!/usr/bin/env bash
# Installs what weft's build, tests and notebooks need, idempotently (each step runs only
# when its tool is missing or the wrong version). Usage: scripts/setup.sh [core|web|all]
#   core: the wasm32 target (dsl and planner must compile to WebAssembly);
#   web: core + what building the browser viewer needs: wasm-bindgen-cli of the lockfile's
#   version (cargo install, ~12 min the first time);
#   all (default): web + what the tests need: Mesa's software Vulkan driver and the Vulkan
#   loader (apt: mesa-vulkan-drivers libvulkan1; the GPU tests run on it where there is no
#   GPU), qemu-user (the portability test), Debian's chromium (apt, as root or through sudo) and npm's playwright-core (in crates/web/tests/node_modules) for the viewer's browser
#   tests, the evcxr Jupyter kernel for Rust (cargo install, ~8 min the first time) and a
#   Python venv in .tools/venv with the packages that execute notebooks headlessly and
#   validate specs against the JSON Schema (jsonschema, PyYAML), moto's S3-compatible
#   server for the object-store tests, and pyspark + pyarrow + weft_spark (python/) with a
#   JDK 17 (apt openjdk-17-jre-headless where `java` is missing) for the Spark tests.
# Rust itself comes from rustup; Python 3 with venv must be on the machine.
set -euo pipefail
what=${1:-all}
case "$what" in core | web | all) ;; *) echo "usage: scripts/setup.sh [core|web|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "weft needs Rust (cargo); install it with rustup first" >&2
  exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
[ "$what" = core ] && exit 0

export PATH="$HOME/.cargo/bin:$PATH"
# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qxF "wasm-bindgen $wb_version"; then
  # Without --locked: wasm-bindgen-cli's own lockfile does not build with every toolchain.
  cargo install wasm-bindgen-cli --version "$wb_version"
fi
[ "$what" = web ] && exit 0

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" ||
      { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; }
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" ||
      { sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; }
  else
    echo "weft's tests need: $* (apt); install them as root, then run this again" >&2
    exit 1
  fi
}
# lavapipe, Mesa's software Vulkan driver, and the Vulkan loader: wgpu finds a (slow)
# adapter on any machine, so the GPU executor is tested everywhere.
# (ldconfig lives in /sbin, off a normal user's PATH.)
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! /sbin/ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  apt_install mesa-vulkan-drivers libvulkan1
fi
command -v chromium >/dev/null || apt_install chromium
# qemu's user-mode emulator runs the weft binary as an older CPU (no AVX) would, so a test
# can check that the default build stays portable.
if [ "$(uname -m)" = x86_64 ] && ! command -v qemu-x86_64 >/dev/null; then
  apt_install qemu-user
fi
command -v npm >/dev/null || apt_install nodejs npm
if [ ! -f crates/web/tests/node_modules/playwright-core/package.json ]; then
  (cd crates/web/tests && npm install --no-audit --no-fund --silent)
fi

EVCXR_VERSION=0.22.0
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
if ! "$venv/bin/python" -c "import nbclient, nbformat, nbconvert, jsonschema, yaml, moto.server" 2>/dev/null; then
  # jsonschema + PyYAML: the tests validate every shipped spec against `weft schema`;
  # moto's server is the S3-compatible store the object-store tests read from.
  "$venv/bin/pip" install --quiet nbclient nbformat nbconvert jsonschema pyyaml "moto[server]"
fi

# Spark: pyspark (a ~460 MB source package from PyPI that builds in a few minutes the
# first time; pip caches the wheel) and pyarrow in the same venv, weft_spark installed
# editable from python/, and a JDK 17 for Spark's JVMs. The tests run a real
# local-cluster (python/tests/run.py).
if ! command -v java >/dev/null; then
  apt_install openjdk-17-jre-headless
fi
# (pyspark.ml needs numpy, mapInArrow checks for pandas; pyspark 4 supports pandas < 3.)
# ipykernel: the Python kernel of the Spark notebook (notebooks/05-spark.ipynb).
if ! "$venv/bin/python" -c "import pyspark, pyarrow, numpy, pandas, ipykernel" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "pyspark>=4.0,<5" "pyarrow>=12" numpy "pandas>=2.2,<3" ipykernel
fi
if ! "$venv/bin/python" -c "import weft_spark" 2>/dev/null; then
  "$venv/bin/pip" install --quiet -e ./python
fi
