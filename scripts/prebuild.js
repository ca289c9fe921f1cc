#!/usr/bin/env node
// Makes the prebuilt addon for this platform and the libtorch the locator finds (set LIBTORCH to build
// for another one): the cmake-js build, copied into prebuilds/<platform>-<arch>/
// torchbert.torch-<version>-<flavour>.napi<N>.node with its rpath removed (CMake's own ELF editor), so
// it is relocatable: the loader preloads the libtorch it finds. A .json beside it records what it was
// built against. `npm pack` then ships prebuilds/.
// Usage: node scripts/prebuild.js [--build-dir build]   (another folder keeps build/ for the default
// libtorch: LIBTORCH=<cuda torch> node scripts/prebuild.js --build-dir build-cuda makes the CUDA flavour)
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { requireLibtorch, buildInfo, cmakeJsEnv } = require('./find-libtorch');

const root = path.join(__dirname, '..');
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: cmakeJsEnv() });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : `exit ${r.status}`})`);
};

const at = process.argv.indexOf('--build-dir');
const buildDir = path.resolve(root, at > 0 ? process.argv[at + 1] : 'build');
const lt = requireLibtorch();
console.log(`prebuild: libtorch ${lt.version} (${lt.flavour}) at ${lt.root}`);
// Incremental: nothing is recompiled when build/Release is current for this libtorch.
run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'build', '--out', buildDir, '--CDCMAKE_BUILD_TYPE=Release']);
const built = path.join(buildDir, 'Release', 'torchbert.node');
const info = buildInfo(lt);
const meta = JSON.parse(fs.readFileSync(path.join(buildDir, 'Release', 'torchbert.json'), 'utf8'));
if (meta.torch !== info.torch || meta.flavour !== info.flavour) throw new Error(`${path.relative(root, buildDir)}/Release is for libtorch ${meta.torch} (${meta.flavour}), not ${info.torch} (${info.flavour})`);
delete info.libtorch; // a prebuild is not tied to the folder it was built against

const name = `torchbert.torch-${info.torch}-${info.flavour}.napi${info.napi}`;
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const out = path.join(dir, `${name}.node`);
fs.copyFileSync(built, out);
if (process.platform === 'linux') {
  const script = path.join(dir, '.rpath.cmake');
  fs.writeFileSync(script, `file(RPATH_REMOVE FILE "${out}")\n`);
  try {
    run('cmake', ['-P', script]);
  } finally {
    fs.rmSync(script, { force: true });
  }
}
const glibc = process.report && process.report.getReport().header.glibcVersionRuntime;
const sha256 = crypto.createHash('sha256').update(fs.readFileSync(out)).digest('hex');
fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ ...info, glibc, node: process.version, sha256, built: new Date().toISOString() }, null, 2) + '\n');
console.log(`prebuild: ${path.relative(root, out)}`);
