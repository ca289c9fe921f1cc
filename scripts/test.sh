#!/usr/bin/env bash
# The test command: sets up whatever is missing, generates parity fixtures with the Python reference,
# then runs jest. Extra arguments go to jest (e.g. `npm test -- test/tensor.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
${PYTHON:-python3} scripts/fixtures.py
# Tests measure GEMM plans per process (tiny shapes); they write no tuning cache into the home folder.
export TORCHBERT_TUNING_CACHE=${TORCHBERT_TUNING_CACHE:-0}
export TORCHBERT_DATA=${TORCHBERT_DATA:-$(cd .. && pwd)/shared/data}
if [ $# -gt 0 ]; then exec npx jest --ci "$@"; fi
# The event-loop timing test runs alone so other test workers do not compete for the 2 cores.
npx jest --ci --testPathIgnorePatterns test/async.test.ts
npx jest --ci test/async.test.ts
