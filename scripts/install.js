#!/usr/bin/env node
// npm install hook. Uses the prebuilt addon for this platform and the libtorch found (no compiler
// needed); otherwise says why and builds from source with cmake-js; without libtorch, fails with one
// message listing the ways to get it (or downloads LibTorch when TORCHBERT_DOWNLOAD_LIBTORCH=1).
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch, checkBuildVersion, selectPrebuild, listPrebuilds, describe, addonMeta, HOW_TO_GET, cmakeJsEnv } = require('./find-libtorch');

const root = path.join(__dirname, '..');
const truthy = (v) => ['1', 'true', 'yes'].includes(String(v || '').toLowerCase());

async function main() {
  let lt;
  try {
    lt = findLibtorch();
  } catch (e) {
    console.error(`torchbert: ${e.message}`);
    return 1;
  }
  if (!lt && (truthy(process.env.TORCHBERT_DOWNLOAD_LIBTORCH) || truthy(process.env.npm_config_torchbert_download_libtorch))) {
    const { downloadLibtorch } = require('./download-libtorch');
    console.log('torchbert: downloading LibTorch into the cache (TORCHBERT_DOWNLOAD_LIBTORCH)');
    try {
      await downloadLibtorch({ version: process.env.TORCHBERT_LIBTORCH_VERSION, flavour: process.env.TORCHBERT_LIBTORCH_FLAVOUR });
    } catch (e) {
      console.error(`torchbert: ${e.message}`);
      return 1;
    }
    lt = findLibtorch();
  }
  if (!lt) {
    console.error(`torchbert: libtorch not found, so the native addon can be neither chosen nor built.\n${HOW_TO_GET}`);
    return 1;
  }
  const forced = truthy(process.env.npm_config_build_from_source) || truthy(process.env.TORCHBERT_REBUILD);
  let why;
  if (forced) why = 'a build from source was asked for';
  else {
    const pre = selectPrebuild(root, lt);
    if (pre) {
      console.log(`torchbert: using the prebuilt addon ${path.relative(root, pre.file)} for libtorch ${lt.version} (${lt.flavour}) at ${lt.root}`);
      return 0;
    }
    const m = addonMeta(path.join(root, 'build', 'Release', 'torchbert.node'));
    if (m && m.torch === lt.version && m.flavour === lt.flavour) return 0; // already built for it
    const all = listPrebuilds(root);
    why = all.length
      ? `the prebuilt addons here are for ${all.map((p) => describe(p.meta)).join(', ')}, not libtorch ${lt.version} (${lt.flavour})`
      : `this package has no prebuilt addon for ${process.platform}-${process.arch}`;
  }
  console.log(`torchbert: building from source against libtorch ${lt.version} (${lt.flavour}) at ${lt.root}: ${why}`);
  try {
    checkBuildVersion(lt);
  } catch (e) {
    console.error(`torchbert: ${e.message}`);
    return 1;
  }
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const r = spawnSync(process.execPath, [cmakeJs, 'build', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit', env: cmakeJsEnv() });
  if (r.status !== 0) {
    console.error('torchbert: the build from source failed; it needs cmake (>= 3.18), make or ninja, and a C++20 compiler (g++ >= 10). ' +
      'On Debian/Ubuntu: apt-get install cmake g++ make. Or install a libtorch a prebuilt addon exists for: python3 -m pip install torch==2.13.0');
    return r.status || 1;
  }
  return 0;
}

main().then((code) => process.exit(code));
