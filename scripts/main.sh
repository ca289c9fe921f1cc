#!/usr/bin/env bash
# The main job: sets up whatever is missing, then runs the most complete end-to-end path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TORCHBERT_DATA=${TORCHBERT_DATA:-$(cd .. && pwd)/shared/data}
node dist/cli.js main "$@"
