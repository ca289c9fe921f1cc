#!/usr/bin/env bash
# Compiles every native/*.cc (syntax and types, no object code) against the headers of another libtorch
# release, to see which APIs differ before building and testing against it:
#   bash scripts/check-libtorch-api.sh 2.15.0
# The torch wheel (CUDA builds: ~540 MB, only its include/ is unpacked) is cached in ~/.cache/torchbert/wheels;
# PIP_CONFIG_FILE=/dev/null lets pip fetch releases a machine-wide constraint file would refuse.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?usage: check-libtorch-api.sh TORCH_VERSION (e.g. 2.15.0)}
CACHE=${TORCHBERT_CACHE:-$HOME/.cache/torchbert}
ROOT=$CACHE/libtorch-headers-$VERSION
if [ ! -f "$ROOT/torch/include/torch/script.h" ]; then
  mkdir -p "$CACHE/wheels" "$ROOT"
  wheel=$(ls "$CACHE"/wheels/torch-"$VERSION"-cp*-manylinux*_x86_64.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    PIP_CONFIG_FILE=/dev/null ${PYTHON:-python3} -m pip download -q "torch==$VERSION" --no-deps -d "$CACHE/wheels"
    wheel=$(ls "$CACHE"/wheels/torch-"$VERSION"-cp*-manylinux*_x86_64.whl | head -1)
  fi
  ${PYTHON:-python3} -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.startswith('torch/include/')]" "$wheel" "$ROOT"
fi
INC=$ROOT/torch/include
NAPI=$(node -p "require('node-addon-api').include_dir")
NODE_INC=$(node -p "require('path').join(process.execPath, '..', '..', 'include', 'node')")
[ -f "$NODE_INC/node_api.h" ] || NODE_INC=/usr/include/node
# The NCCL path too, with the NCCL and CUDA headers of the CUDA venv scripts/check-cuda.sh makes, when present.
venv=${TORCHBERT_CUDA_VENV:-$HOME/.cache/torchbert/venv-cu130}
cuda_torch=$(ls -d "$venv"/lib/python3*/site-packages/torch 2>/dev/null | head -1 || true)
NCCL=$([ -n "$cuda_torch" ] && LIBTORCH=$cuda_torch node scripts/find-libtorch.js --nccl || true)
if [ -n "$NCCL" ]; then echo "check-libtorch-api: the NCCL path too (its headers from $venv)"; else echo "check-libtorch-api: the NCCL path is not checked (no CUDA venv with the NCCL headers; scripts/check-cuda.sh makes one)"; fi
# In as many unity batches as cores (as CMake's unity build): each batch parses the headers once.
batches=$(mktemp -d); trap 'rm -rf "$batches"' EXIT
n=$(nproc); i=0
for f in native/*.cc; do echo "#include \"$PWD/$f\"" >> "$batches/batch$((i % n)).cc"; i=$((i + 1)); done
export INC NAPI NODE_INC NCCL
ls "$batches"/*.cc | xargs -P "$n" -I{} sh -c \
  'g++ -fsyntax-only -std=gnu++20 -fopenmp -D_GLIBCXX_USE_CXX11_ABI=1 -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_CPP_EXCEPTIONS_ALL \
     -DNODE_ADDON_API_DISABLE_DEPRECATED -DUSE_C10D_GLOO -DUSE_DISTRIBUTED -DTORCHBERT_HAVE_GLOO $NCCL \
     -I"$NODE_INC" -I"$NAPI" -isystem "$INC" -isystem "$INC/torch/csrc/api/include" {} && sed "s|.*/native/|  ok native/|; s|\"||" {}'
echo "check-libtorch-api: native/ compiles against torch $VERSION's headers"
