#!/usr/bin/env node
// Locates the libtorch that torchbert builds against and loads at run time. One locator serves
// CMake (cmake-js), node-gyp (binding.gyp) and the runtime loader, so all three agree.
// Order: $LIBTORCH, then the `torch` package of python3, then a LibTorch downloaded into torchbert's
// cache (scripts/download-libtorch.js), then a system install (Debian libtorch-dev).
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const HOW_TO_GET =
  'torchbert needs libtorch (the PyTorch C++ library). Get one of:\n' +
  '  - pip:    python3 -m pip install torch==2.13.0   (CPU; a CUDA wheel works too)\n' +
  '  - folder: download LibTorch from pytorch.org, unpack it and set LIBTORCH=/path/to/libtorch\n' +
  '  - or let torchbert download it into its cache: npx torchbert libtorch download --sha256 <hex>\n' +
  '  - Debian/Ubuntu: apt-get install libtorch-dev\n' +
  'then run the command again. Set LIBTORCH to choose one when several are installed.';

function libName(base) {
  return process.platform === 'darwin' ? `lib${base}.dylib` : process.platform === 'win32' ? `${base}.dll` : `lib${base}.so`;
}

/** Reads the version from the headers, which every layout ships. */
function readVersion(includeDir) {
  for (const rel of ['torch/headeronly/version.h', 'torch/csrc/api/include/torch/version.h']) {
    const f = path.join(includeDir, rel);
    if (!fs.existsSync(f)) continue;
    const src = fs.readFileSync(f, 'utf8');
    const parts = ['MAJOR', 'MINOR', 'PATCH'].map((k) => (src.match(new RegExp(`TORCH_VERSION_${k}\\s+(\\d+)`)) || [])[1]);
    if (parts.every(Boolean)) return parts.join('.');
  }
  return 'unknown';
}

/** A LibTorch distribution folder and a pip `torch` folder share this layout. */
function fromPrefix(root, source) {
  const lib = path.join(root, 'lib');
  const include = path.join(root, 'include');
  if (!fs.existsSync(path.join(lib, libName('torch'))) || !fs.existsSync(path.join(include, 'torch'))) return null;
  const cmakeDir = path.join(root, 'share', 'cmake', 'Torch');
  const flavour = fs.existsSync(path.join(lib, libName('torch_cuda'))) ? cudaFlavour(root) : 'cpu';
  return {
    source, root, lib, cmakeDir: fs.existsSync(cmakeDir) ? cmakeDir : null,
    include: [include, path.join(include, 'torch', 'csrc', 'api', 'include')],
    version: readVersion(include), flavour,
  };
}

function cudaFlavour(root) {
  // pip wheels record the CUDA version in version.py; LibTorch zips in build-version (e.g. 2.11.0+cu130).
  for (const f of ['version.py', 'build-version']) {
    const p = path.join(root, f);
    if (!fs.existsSync(p)) continue;
    const m = fs.readFileSync(p, 'utf8').match(/cuda(?::\s*Optional\[str\])?\s*=\s*'(\d+)\.(\d+)'|\+cu(\d+)/);
    if (m) return m[3] ? `cu${m[3]}` : `cu${m[1]}${m[2]}`;
  }
  return 'cuda';
}

function fromPython() {
  const py = process.env.PYTHON || 'python3';
  try {
    const out = execFileSync(py, ['-c', 'import os, importlib.util as u; s = u.find_spec("torch"); print(os.path.dirname(s.origin) if s else "")'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 20000 }).trim();
    return out ? fromPrefix(out, `${py} torch package`) : null;
  } catch {
    return null;
  }
}

/** torchbert's download cache: $TORCHBERT_CACHE or ~/.cache/torchbert. */
function cacheDir() {
  return process.env.TORCHBERT_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(require('os').homedir(), '.cache'), 'torchbert');
}

/** The newest LibTorch unpacked into the cache (libtorch/<version>-<flavour>/libtorch). */
function fromCache() {
  const dir = path.join(cacheDir(), 'libtorch');
  if (!fs.existsSync(dir)) return null;
  const found = fs.readdirSync(dir).sort().reverse().map((d) => fromPrefix(path.join(dir, d, 'libtorch'), 'torchbert cache')).filter(Boolean);
  return found[0] || null;
}

function fromSystem() {
  const candidates = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib'];
  for (const lib of candidates) {
    if (!fs.existsSync(path.join(lib, libName('torch')))) continue;
    const include = ['/usr/include', '/usr/local/include'].find((d) => fs.existsSync(path.join(d, 'torch')));
    if (!include) continue;
    const apiInc = path.join(include, 'torch', 'csrc', 'api', 'include');
    const cmakeDir = path.join(lib, 'cmake', 'Torch');
    return {
      source: 'system install', root: path.dirname(lib), lib, cmakeDir: fs.existsSync(cmakeDir) ? cmakeDir : null,
      include: fs.existsSync(apiInc) ? [include, apiInc] : [include], version: readVersion(include),
      flavour: fs.existsSync(path.join(lib, libName('torch_cuda'))) ? 'cuda' : 'cpu',
    };
  }
  return null;
}

/**
 * Finds libtorch. Returns null when none is found, or throws when $LIBTORCH points at something
 * that is not libtorch (an explicit choice must not silently fall through to another install).
 */
function findLibtorch() {
  const env = process.env.LIBTORCH;
  if (env) {
    const found = fromPrefix(path.resolve(env), 'LIBTORCH');
    if (!found) throw new Error(`LIBTORCH=${env} is not a libtorch folder: expected ${libName('torch')} under lib/ and headers under include/torch.`);
    return found;
  }
  return fromPython() || fromCache() || fromSystem();
}

/**
 * Environment for spawning cmake-js: point it at the running Node's own headers when they are installed
 * (a Debian nodejs has /usr/include/node), so it need not download them from nodejs.org.
 */
function cmakeJsEnv() {
  const env = { ...process.env };
  if (!env.npm_config_nodedir) {
    const prefix = path.dirname(path.dirname(process.execPath));
    if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
  }
  return env;
}

/** What an addon was built against; written beside every build and prebuild, checked before loading. */
function buildInfo(t) {
  return { torch: t.version, flavour: t.flavour, napi: 8, platform: process.platform, arch: process.arch, libtorch: t.root };
}

/** The prebuilds folder of a package root: prebuilds/<platform>-<arch>/<name>.json + .node pairs. */
/** The build record beside an addon (x.node -> x.json: libtorch version, flavour, Node-API), or null. */
function addonMeta(addon) {
  try {
    return JSON.parse(fs.readFileSync(addon.replace(/\.node$/, '.json'), 'utf8'));
  } catch {
    return null; // node-gyp builds write none
  }
}

function listPrebuilds(root) {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.node')).map((f) => ({ file: path.join(dir, f), meta: addonMeta(path.join(dir, f)) }))
    .filter((p) => p.meta);
}

/** The prebuild for this libtorch (same version and flavour, a Node-API version this Node has), or null. */
function selectPrebuild(root, t) {
  const napi = Number(process.versions.napi);
  return listPrebuilds(root).find((p) => p.meta.torch === t.version && p.meta.flavour === t.flavour && p.meta.napi <= napi) || null;
}

function describe(meta) {
  return `libtorch ${meta.torch} (${meta.flavour})`;
}

function requireLibtorch() {
  const found = findLibtorch();
  if (!found) throw new Error(`libtorch not found.\n${HOW_TO_GET}`);
  return found;
}

/** TORCH_CXX_FLAGS as TorchConfig.cmake sets it (the C++ ABI flag on older builds), for node-gyp. */
function cxxFlags(t) {
  const cfg = t.cmakeDir && path.join(t.cmakeDir, 'TorchConfig.cmake');
  if (cfg && fs.existsSync(cfg)) {
    const m = fs.readFileSync(cfg, 'utf8').match(/set\(TORCH_CXX_FLAGS\s+"([^"]*)"\)/);
    if (m) return m[1];
  }
  return '-D_GLIBCXX_USE_CXX11_ABI=1';
}

/**
 * Whether libtorch's ATen runs its parallel loops on OpenMP (ATen/Config.h). at::parallel_for's OpenMP loop
 * is compiled into the caller (native/dropout.cc, linear_packed.cc), so those files then need -fopenmp. It is compiled, not
 * linked, with it: the GOMP_* calls stay undefined in the addon and bind at load time to the OpenMP runtime
 * libtorch itself loaded (pip's libgomp.so.1, a LibTorch zip's libgomp-<hash>.so.1), one thread pool for
 * both, and no second runtime or a path that differs between the two layouts.
 */
function usesOpenMP(t) {
  if (process.platform !== 'linux') return false;
  const cfg = t.include.map((d) => path.join(d, 'ATen', 'Config.h')).find((f) => fs.existsSync(f));
  return !!cfg && /#define AT_PARALLEL_OPENMP 1/.test(fs.readFileSync(cfg, 'utf8'));
}

/**
 * The folder holding Gloo's headers, or null. libtorch (Linux) contains Gloo and c10d's ProcessGroupGloo,
 * but pip's wheels do not ship Gloo's own headers, which c10d's header includes: they come from libtorch's
 * include folder when present, else from the system (Debian/Ubuntu: libgloo-dev). Without them the addon
 * builds without tb.distributed.
 */
function glooInclude(t) {
  if (process.platform !== 'linux' || process.env.TORCHBERT_NO_DISTRIBUTED === '1') return null;
  return [...t.include, '/usr/include', '/usr/local/include'].find((d) => fs.existsSync(path.join(d, 'gloo', 'algorithm.h'))) ?? null;
}

/** Compiler flags enabling the distributed module (see glooInclude). */
function glooFlags(t) {
  const dir = glooInclude(t);
  if (!dir) return '';
  return ['-DTORCHBERT_HAVE_GLOO', '-DUSE_C10D_GLOO', '-DUSE_DISTRIBUTED', ...(t.include.includes(dir) || dir === '/usr/include' ? [] : [`-I${dir}`])].join(' ');
}

/**
 * NCCL for tb.distributed on a CUDA libtorch (ProcessGroupNCCL lives in libtorch_cuda): the flags that compile
 * c10d's NCCL header, or '' (no Gloo, a CPU libtorch, or headers not found). nccl.h comes from pip's
 * nvidia-nccl wheel beside torch, $NCCL_INCLUDE_DIR or the system; the CUDA headers c10d includes (cuBLAS,
 * cuSPARSE, cuSOLVER) from pip's nvidia wheels or the toolkit.
 */
function ncclFlags(t) {
  if (!glooInclude(t) || !t.flavour.startsWith('cu') || process.env.TORCHBERT_NO_NCCL === '1') return '';
  const nvidia = path.join(t.root, '..', 'nvidia');
  const has = (dir, file) => fs.existsSync(path.join(dir, file));
  const nccl = [process.env.NCCL_INCLUDE_DIR, path.join(nvidia, 'nccl', 'include'), '/usr/include', '/usr/local/include'].find((d) => d && has(d, 'nccl.h'));
  const toolkit = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean).map((d) => path.join(d, 'include'));
  const pip = fs.existsSync(nvidia) ? fs.readdirSync(nvidia).map((d) => path.join(nvidia, d, 'include')) : [];
  const needed = ['cuda_runtime_api.h', 'cublas_v2.h', 'cusparse.h', 'cusolverDn.h'];
  const cuda = [...pip, ...toolkit].filter((d) => needed.some((f) => has(d, f)));
  if (!nccl || !needed.every((f) => cuda.some((d) => has(d, f)))) return '';
  return ['-DTORCHBERT_HAVE_NCCL', '-DUSE_C10D_NCCL', ...[nccl, ...cuda].filter((d, i, a) => a.indexOf(d) === i && d !== '/usr/include').map((d) => `-I${d}`)].join(' ');
}

/** The libtorch releases the suite has passed against (CI, scripts/check-libtorch.sh); builds accept the minor versions from the first to the last. */
const TESTED = ['2.11.0', '2.13.0', '2.14.1', '2.15.0'];
const minorOf = (v) => {
  const m = /^(\d+)\.(\d+)\./.exec(v);
  return m ? Number(m[1]) * 100 + Number(m[2]) : NaN;
};

/**
 * Refuses to build against a libtorch outside 2.11-2.15, the span of TESTED (older ones lack APIs the sources use; newer ones
 * were never tried) with a message naming the tested releases, unless TORCHBERT_ALLOW_UNTESTED_LIBTORCH=1.
 */
function checkBuildVersion(t) {
  if (['1', 'true', 'yes'].includes(String(process.env.TORCHBERT_ALLOW_UNTESTED_LIBTORCH || '').toLowerCase())) return;
  const [minor, oldest, newest] = [t.version, TESTED[0], TESTED.at(-1)].map(minorOf);
  if (minor >= oldest && minor <= newest) return;
  const why = Number.isNaN(minor) ? 'its version could not be read from its headers' : minor < oldest ? 'older than 2.11, the oldest release torchbert builds against' : 'newer than any release torchbert has been tested against';
  throw new Error(
    `libtorch ${t.version} at ${t.root}: ${why} (tested: ${TESTED.join(', ')}). ` +
      'Use a tested one (python3 -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, or set LIBTORCH), ' +
      'or build anyway with TORCHBERT_ALLOW_UNTESTED_LIBTORCH=1',
  );
}

/** Linker flags for node-gyp: only the chosen lib/, with an rpath so no LD_LIBRARY_PATH is needed. */
function linkFlags(t) {
  const libs = ['c10', 'torch_cpu', 'torch'];
  // CUDA kernels register from these at load time; --no-as-needed keeps them linked.
  for (const l of ['c10_cuda', 'torch_cuda']) if (fs.existsSync(path.join(t.lib, libName(l)))) libs.push(l);
  return [`-L${t.lib}`, `-Wl,-rpath,${t.lib}`, '-Wl,--no-as-needed', ...libs.map((l) => `-l${l}`), '-Wl,--as-needed'].join(' ');
}

module.exports = { findLibtorch, requireLibtorch, checkBuildVersion, TESTED, HOW_TO_GET, cxxFlags, linkFlags, usesOpenMP, glooInclude, glooFlags, ncclFlags, cacheDir, buildInfo, addonMeta, listPrebuilds, selectPrebuild, describe, libName, cmakeJsEnv };

if (require.main === module) {
  try {
    const t = requireLibtorch();
    const what = process.argv[2] || '--json';
    const out = {
      '--json': () => JSON.stringify(t, null, 2),
      '--root': () => (checkBuildVersion(t), t.root),
      '--lib': () => t.lib,
      '--include': () => (checkBuildVersion(t), t.include.join(' ')),
      '--cmake': () => t.cmakeDir || '',
      '--version': () => t.version,
      '--cxxflags': () => [cxxFlags(t), usesOpenMP(t) ? '-fopenmp' : '', glooFlags(t), ncclFlags(t)].filter(Boolean).join(' '),
      '--gloo': () => glooFlags(t),
      '--nccl': () => ncclFlags(t),
      '--distributed': () => [glooFlags(t), ncclFlags(t)].filter(Boolean).join(' '),
      '--openmp': () => (usesOpenMP(t) ? '-fopenmp' : ''),
      '--libs': () => linkFlags(t),
      '--build-info': () => {
        const json = JSON.stringify(buildInfo(t));
        if (process.argv[3]) fs.writeFileSync(process.argv[3], json + '\n');
        return json;
      },
    }[what];
    if (!out) throw new Error(`unknown option ${what}`);
    process.stdout.write(out() + '\n');
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}
