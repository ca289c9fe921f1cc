#!/usr/bin/env bash
# Builds the addon against a CUDA libtorch (pip torch==2.14.1, CUDA 13, in its own venv) with cmake-js
# and with node-gyp, and proves each loads and runs without a GPU: `torchbert info` names the flavour
# (cu130), CUDA reports unavailable, NCCL is built in (pip's nvidia-nccl headers) and refuses to start
# without a GPU, and the smoke and tensor suites pass (their cuda cases skip); then the CUDA prebuild, and
# the packed tarball (cpu and CUDA prebuilds) installed against each torch with no compiler.
# Needs the CUDA toolkit (nvcc on PATH or CUDA_HOME); about 5.5 GB for the venv.
# Usage: bash scripts/check-cuda.sh   (TORCHBERT_CUDA_VENV, TORCHBERT_CUDA_TORCH override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-venv.sh
torch_venv "${TORCHBERT_CUDA_VENV:-$HOME/.cache/torchbert/venv-cu130}" "${TORCHBERT_CUDA_TORCH:-2.14.1}"
flavour=$(node scripts/find-libtorch.js --json | node -e "process.stdin.on('data', (d) => console.log(JSON.parse(d).flavour))")
[ "$flavour" != cpu ] || { echo "check-cuda: $LIBTORCH is not a CUDA build" >&2; exit 1; }
nccl=$(node scripts/find-libtorch.js --nccl)

check() { # addon
  local info
  info=$(TORCHBERT_ADDON=$1 node dist/cli.js info)
  echo "$info"
  [[ "$info" == *"$flavour"* ]] || { echo "check-cuda: torchbert info does not report $flavour" >&2; exit 1; }
  TORCHBERT_ADDON=$1 node -e "
const tb = require('./dist');
if (tb.cuda.isAvailable()) console.log('a GPU is present: ' + tb.cuda.deviceCount());
else console.log('no GPU: tb.cuda.isAvailable() is false');
if (require('./dist/binding').loadInfo.addon !== require('path').resolve('$1')) throw new Error('loaded the wrong addon');
// NCCL is built in exactly when the build found its headers (scripts/find-libtorch.js --nccl)
if (tb.distributed.isNcclAvailable() !== ('$nccl' !== '')) throw new Error('tb.distributed.isNcclAvailable() is ' + tb.distributed.isNcclAvailable() + ', but find-libtorch --nccl says ' + JSON.stringify('$nccl'));
console.log('NCCL process groups: ' + (tb.distributed.isNcclAvailable() ? 'built in' : 'not built (headers not found)'));
if (tb.distributed.isNcclAvailable() && !tb.cuda.isAvailable())
  tb.distributed.initProcessGroup({ backend: 'nccl', rank: 0, worldSize: 1 }).then(() => { throw new Error('nccl without a GPU did not fail'); }, (e) => {
    if (!/needs a GPU, and CUDA reports none/.test(e.message)) throw e;
    console.log('without a GPU: ' + e.message);
  });"
  TORCHBERT_ADDON=$1 TORCHBERT_TUNING_CACHE=0 npx jest --ci test/smoke.test.ts test/tensor.test.ts
}

npx cmake-js build --out build-cuda --CDCMAKE_BUILD_TYPE=Release
check build-cuda/Release/torchbert.node

source scripts/gyp-build.sh
gyp_build
check "$GYP_ADDON"
echo "check-cuda: cmake-js and node-gyp builds against libtorch $flavour load and pass"

# The CUDA prebuild beside the CPU one (prebuilds/), and the packed tarball installed with no compiler on
# PATH against the CPU torch and against this one: each gets its own prebuild (test/install.test.ts).
node scripts/prebuild.js --build-dir build-cuda
env -u LIBTORCH TORCHBERT_PREBUILD_CUDA_LIBTORCH="$LIBTORCH" TORCHBERT_ADDON= npx jest --ci test/install.test.ts -t 'npm pack'
echo "check-cuda: the tarball carries the cpu and the $flavour prebuild, and each libtorch loads its own"
