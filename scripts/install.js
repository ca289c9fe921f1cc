#!/usr/bin/env node
// npm install hook: builds the addon from source with cmake-js against the libtorch the locator finds,
// or fails with one message listing the ways to get libtorch. (Prebuilt binaries: not yet shipped.)
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch, HOW_TO_GET } = require('./find-libtorch');

const root = path.join(__dirname, '..');
if (fs.existsSync(path.join(root, 'build', 'Release', 'torchbert.node')) && !process.env.TORCHBERT_REBUILD) process.exit(0);
let lt;
try {
  lt = findLibtorch();
} catch (e) {
  console.error(`torchbert: ${e.message}`);
  process.exit(1);
}
if (!lt) {
  console.error(`torchbert: libtorch not found, so the native addon cannot be built.\n${HOW_TO_GET}`);
  process.exit(1);
}
console.log(`torchbert: no prebuilt addon for this platform; building from source against libtorch ${lt.version} (${lt.flavour}) at ${lt.root}`);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'build', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
