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
# jest runs test files in parallel processes (jest.config.js maxWorkers): each gets its share of the cores,
# as `serve --workers` and `launch` give theirs. Two processes whose OpenMP teams are each as wide as the
# machine spin against each other between parallel ops (docs/benchmarks.md, "Processes sharing a
# machine"). OMP_NUM_THREADS, when set, wins.
workers=$(node -p "require('./jest.config.js').maxWorkers")
share=$(( $(nproc) / workers )); [ "$share" -ge 1 ] || share=1
share=${OMP_NUM_THREADS:-$share}
if [ $# -gt 0 ]; then OMP_NUM_THREADS=$share exec npx jest --ci "$@"; fi
OMP_NUM_THREADS=$share npx jest --ci --testPathIgnorePatterns test/async.test.ts
# The event-loop timing test runs alone (all cores) so other test workers do not compete for them.
npx jest --ci test/async.test.ts
