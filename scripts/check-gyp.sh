#!/usr/bin/env bash
# Proves binding.gyp builds the same sources with node-gyp (against the same libtorch as CMake) and
# that the result loads and runs. Builds in a temporary copy so build/ from cmake-js is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/gyp-build.sh
gyp_build
TORCHBERT_ADDON="$GYP_ADDON" node -e "
const t = require('./dist');
const s = t.ones([2, 3]).matmul(t.ones([3, 2])).sum().item();
if (s !== 12) throw new Error('wrong result ' + s);
if (!require('./dist/binding').loadInfo.addon.startsWith('$gyp_work')) throw new Error('loaded the wrong addon');
const gloo = require('child_process').execFileSync('node', ['scripts/find-libtorch.js', '--gloo'], { encoding: 'utf8' }).trim() !== '';
if (t.distributed.isAvailable() !== gloo) throw new Error('the node-gyp build ' + (gloo ? 'lacks' : 'has') + ' tb.distributed');
console.log('node-gyp build OK: ' + require('./dist/binding').loadInfo.addon);
"
