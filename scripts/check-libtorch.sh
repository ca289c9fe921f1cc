#!/usr/bin/env bash
# Builds the addon against another libtorch release (pip's torch==VERSION in its own venv, CUDA wheels
# included: they load and run on the CPU without a GPU) with cmake-js, and runs test suites with it:
#   bash scripts/check-libtorch.sh 2.15.0                 # the smoke set (CI)
#   bash scripts/check-libtorch.sh 2.11.0 --all           # the whole suite
# PyPI's torch wheels for Linux are CUDA builds (2.15.0: CUDA 13.2, ~5.3 GB with its nvidia wheels);
# PIP_CONFIG_FILE=/dev/null lets pip take releases a machine-wide constraint file would refuse.
# TORCHBERT_TORCH_VENV overrides the venv folder (default ~/.cache/torchbert/venv-torch-VERSION).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?usage: check-libtorch.sh TORCH_VERSION [--all]}
source scripts/torch-venv.sh
torch_venv "${TORCHBERT_TORCH_VENV:-$HOME/.cache/torchbert/venv-torch-$VERSION}" "$VERSION"
out=build-torch-$VERSION
npx cmake-js build --out "$out" --CDCMAKE_BUILD_TYPE=Release
addon=$PWD/$out/Release/torchbert.node
info=$(TORCHBERT_ADDON=$addon node dist/cli.js info)
echo "$info"
[[ "$info" == *"libtorch    $VERSION "* ]] || { echo "check-libtorch: torchbert info does not report libtorch $VERSION" >&2; exit 1; }
if [ "${2:-}" = --all ]; then
  # install.test.ts packs a prebuild of build/ (the default libtorch's build) and installs it: not this one.
  suites=(--testPathIgnorePatterns test/install.test.ts)
else
  # The smoke set of the Node matrix, plus what leans on libtorch's APIs most: TorchScript modules, the
  # BERT units against transformers' fixtures, AdamW and autograd, c10d (native/compat.h).
  suites=(test/smoke.test.ts test/tensor.test.ts test/module.test.ts test/bert.test.ts test/optim.test.ts test/distributed.test.ts)
fi
TORCHBERT_ADDON=$addon TORCHBERT_TUNING_CACHE=0 npx jest --ci "${suites[@]}"
[ "${2:-}" = --all ] && what="the whole suite (but install.test.ts)" || what="${suites[*]}"
echo "check-libtorch: the addon built against libtorch $VERSION passes $what"
