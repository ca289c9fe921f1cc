#!/usr/bin/env bash
# The GPU run of issue 16, on the GPU machine (no Node, no network; torch with CUDA in its Python): builds
# the addon from source against that machine's torch with cmake-js, then runs the CUDA checks
# (scripts/gpu-check.js: tensors, autograd, TorchScript, BERT against transformers in fp32 and bf16
# autocast, AdamW, GradScaler, a pipeline and the server) and bench/cuda.js (forward and training step
# against transformers on the same GPU). Everything it reports lands in $OUT: build.log, info.txt,
# checks.json, bench-cuda.json.
#
# Prepared here, then sent as one command (../shared/device/README.md):
#   npm run build:ts && bash ../shared/device/prepare.sh
#   device tool: bash .device/on-device.sh bash scripts/gpu-check.sh      (carry: .device, dist)
# on-device.sh puts Node on PATH and LIBTORCH at the machine's torch. TORCHBERT_CHECK_DEVICE=cpu, with
# LIBTORCH at any torch here (the CUDA one: scripts/check-cuda.sh's venv), tries the same steps without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
start=$(date +%s)
if ! node node_modules/cmake-js/bin/cmake-js build --out build-device --CDCMAKE_BUILD_TYPE=Release > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo "gpu-check: the build against ${LIBTORCH:-the torch found} failed (build.log)" >&2
  exit 1
fi
export TORCHBERT_ADDON=$PWD/build-device/Release/torchbert.node
node dist/cli.js info | tee "$out/info.txt"
echo "gpu-check: built in $(( $(date +%s) - start ))s"
status=0
timeout 300 node scripts/gpu-check.js --out "$out/checks.json" || status=1
timeout 240 node bench/cuda.js --out "$out/bench-cuda.json" ${GPU_CHECK_BENCH_ARGS:-} || status=1
echo "gpu-check: done in $(( $(date +%s) - start ))s, status $status"
exit $status
