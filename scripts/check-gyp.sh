#!/usr/bin/env bash
# Proves binding.gyp builds the same sources with node-gyp (against the same libtorch as CMake) and
# that the result loads and runs. Builds in a temporary copy so build/ from cmake-js is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r package.json binding.gyp native scripts "$work"/
ln -s "$PWD/node_modules" "$work/node_modules"
nodedir=$(dirname "$(dirname "$(command -v node)")")
[ -f "$nodedir/include/node/node_api.h" ] || nodedir=/usr
(cd "$work" && npx --no-install node-gyp rebuild --nodedir="$nodedir" -j 2 >"$work/gyp.log" 2>&1) || { tail -40 "$work/gyp.log"; exit 1; }
TORCHBERT_ADDON="$work/build/Release/torchbert.node" node -e "
const t = require('./dist');
const s = t.ones([2, 3]).matmul(t.ones([3, 2])).sum().item();
if (s !== 12) throw new Error('wrong result ' + s);
if (!require('./dist/binding').loadInfo.addon.startsWith('$work')) throw new Error('loaded the wrong addon');
const gloo = require('child_process').execFileSync('node', ['scripts/find-libtorch.js', '--gloo'], { encoding: 'utf8' }).trim() !== '';
if (t.distributed.isAvailable() !== gloo) throw new Error('the node-gyp build ' + (gloo ? 'lacks' : 'has') + ' tb.distributed');
console.log('node-gyp build OK: ' + require('./dist/binding').loadInfo.addon);
"
