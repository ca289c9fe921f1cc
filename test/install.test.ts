// Installation: the packed tarball installs into a fresh project with no compiler on PATH and runs a
// forward pass on its prebuilt addon; a libtorch mismatch gives one actionable message; the opt-in
// LibTorch download (checksum, cache, offline, proxy, unsafe archives) against a local HTTP server.
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { spawnSync, execFile, execFileSync } from 'child_process';
import { ROOT, tmpDir } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { downloadLibtorch } = require('../scripts/download-libtorch.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { findLibtorch } = require('../scripts/find-libtorch.js');

const REAL_PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

/** A fake LibTorch folder of the given version (enough for the locator, not for loading). */
function fakeLibtorch(dir: string, version: string): string {
  const [a, b, c] = version.split('.');
  fs.mkdirSync(path.join(dir, 'lib'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'include', 'torch', 'headeronly'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'lib', 'libtorch.so'), '');
  fs.writeFileSync(path.join(dir, 'include', 'torch', 'headeronly', 'version.h'), `#define TORCH_VERSION_MAJOR ${a}\n#define TORCH_VERSION_MINOR ${b}\n#define TORCH_VERSION_PATCH ${c}\n`);
  fs.writeFileSync(path.join(dir, 'build-version'), `${version}+cpu\n`);
  return dir;
}

/** A zip of `files` (name -> content), written by Python's zipfile. */
function makeZip(file: string, files: Record<string, string>): Buffer {
  execFileSync(REAL_PYTHON, ['-c', 'import json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], "w")\nfor k, v in json.loads(sys.argv[2]).items(): z.writestr(k, v)\nz.close()', file, JSON.stringify(files)]);
  return fs.readFileSync(file);
}
const sha256 = (b: Buffer) => require('crypto').createHash('sha256').update(b).digest('hex');

describe('LibTorch download', () => {
  let server: http.Server;
  let base: string;
  const hits: string[] = [];
  const work = tmpDir('torchbert-dl-');
  const version = '2.13.0';
  const zip = makeZip(path.join(work, 'lt.zip'), {
    'libtorch/lib/libtorch.so': '',
    'libtorch/include/torch/headeronly/version.h': '#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 13\n#define TORCH_VERSION_PATCH 0\n',
    'libtorch/build-version': '2.13.0+cpu\n',
  });
  const evil = makeZip(path.join(work, 'evil.zip'), { 'libtorch/lib/libtorch.so': '', '../../escaped.txt': 'x' });

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hits.push(req.url!);
      const body = req.url === '/lt.zip' ? zip : req.url === '/evil.zip' ? evil : null;
      if (!body) {
        res.writeHead(404).end('no');
        return;
      }
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/zip' }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  test('torchbert libtorch download: progress on stderr (a line per 100 MB off a terminal), where it installed on stdout', async () => {
    const cli = [require.resolve('ts-node/register/transpile-only'), path.join(__dirname, '..', 'lib', 'cli.ts')];
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => execFile(process.execPath, ['-r', ...cli, 'libtorch', 'download', '--url', `${base}/lt.zip`, '--sha256', sha256(zip)],
      { env: { ...process.env, TORCHBERT_CACHE: path.join(work, 'cache-cli') } }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve({ stdout, stderr }))));
    expect(r.stderr).toMatch(/^libtorch: 0 MB of 1 MB$/m);
    expect(r.stdout).toContain(`installed: ${path.join(work, 'cache-cli', 'libtorch', '2.13.0-cpu', 'libtorch')}`);
  });

  test('verifies the checksum, caches, and the locator finds the cached copy', async () => {
    const cacheDir = path.join(work, 'cache1');
    await expect(downloadLibtorch({ version, url: `${base}/lt.zip`, cacheDir })).rejects.toThrow(/no SHA-256 is known.*--sha256/);
    await expect(downloadLibtorch({ version, url: `${base}/lt.zip`, cacheDir, sha256: '0'.repeat(64) })).rejects.toThrow(/checksum mismatch.*nothing was installed/);
    expect(fs.readdirSync(path.join(cacheDir, 'libtorch'))).toEqual([]); // no partial download or unpack left
    const r = await downloadLibtorch({ version, url: `${base}/lt.zip`, cacheDir, sha256: sha256(zip) });
    expect(r).toEqual({ root: path.join(cacheDir, 'libtorch', '2.13.0-cpu', 'libtorch'), cached: false });
    const n = hits.length;
    expect((await downloadLibtorch({ version, url: `${base}/lt.zip`, cacheDir, sha256: sha256(zip) })).cached).toBe(true);
    expect(hits.length).toBe(n); // served from the cache
    const env = { ...process.env };
    try {
      delete process.env.LIBTORCH;
      process.env.PYTHON = '/nonexistent/python3';
      process.env.TORCHBERT_CACHE = cacheDir;
      const found = findLibtorch();
      expect(found).toMatchObject({ source: 'torchbert cache', version: '2.13.0', flavour: 'cpu', root: r.root });
    } finally {
      process.env = env;
    }
  });

  test('offline: the cache or a clear error, and no request', async () => {
    const n = hits.length;
    await expect(downloadLibtorch({ version, url: `${base}/lt.zip`, cacheDir: path.join(work, 'empty'), offline: true, sha256: sha256(zip) })).rejects.toThrow(/not in the cache .* downloads are off \(TORCHBERT_OFFLINE\)/);
    expect(hits.length).toBe(n);
  });

  test('HTTP errors and unsafe archives are refused', async () => {
    await expect(downloadLibtorch({ version, url: `${base}/missing.zip`, cacheDir: path.join(work, 'c404'), allowUnverified: true })).rejects.toThrow(/HTTP 404/);
    await expect(downloadLibtorch({ version, url: `${base}/evil.zip`, cacheDir: path.join(work, 'evil'), sha256: sha256(evil) })).rejects.toThrow(/points outside the target folder|invalid relative path/);
    expect(fs.existsSync(path.join(work, 'escaped.txt'))).toBe(false);
    await expect(downloadLibtorch({ version: 'latest' })).rejects.toThrow(/version must look like/);
  });

  test('goes through HTTP_PROXY when set', async () => {
    const tunnels: string[] = [];
    const proxy = http.createServer();
    proxy.on('connect', (req, client, head) => {
      tunnels.push(req.url!);
      const [host, port] = req.url!.split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const env = { ...process.env };
    try {
      process.env.HTTP_PROXY = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
      delete process.env.NO_PROXY;
      delete process.env.no_proxy;
      const r = await downloadLibtorch({ version, url: `${base}/lt.zip`, cacheDir: path.join(work, 'proxied'), sha256: sha256(zip) });
      expect(fs.existsSync(path.join(r.root, 'build-version'))).toBe(true);
      expect(tunnels).toEqual([new URL(base).host]);
    } finally {
      process.env = env;
      await new Promise((r) => proxy.close(r));
    }
  });
});

describe('libtorch versions a build accepts', () => {
  const work = tmpDir('torchbert-versions-');
  const locate = (version: string, extra: Record<string, string> = {}) =>
    spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'find-libtorch.js'), '--root'], { env: { ...process.env, LIBTORCH: fakeLibtorch(path.join(work, version), version), ...extra }, encoding: 'utf8' });
  test('2.11 to 2.15 build; older and newer ones are refused naming the tested releases, unless asked for', () => {
    for (const v of ['2.11.0', '2.12.1', '2.15.0']) expect([v, locate(v).status]).toEqual([v, 0]);
    const old = locate('2.10.0');
    expect(old.status).toBe(1);
    expect(old.stderr).toMatch(/libtorch 2\.10\.0 at .*2\.10\.0: older than 2\.11, the oldest release torchbert builds against \(tested: 2\.11\.0, 2\.13\.0, 2\.14\.1, 2\.15\.0\)/);
    expect(old.stderr).toMatch(/build anyway with TORCHBERT_ALLOW_UNTESTED_LIBTORCH=1/);
    expect(locate('2.16.0').stderr).toMatch(/libtorch 2\.16\.0 at .*: newer than any release torchbert has been tested against/);
    const anyway = locate('2.16.0', { TORCHBERT_ALLOW_UNTESTED_LIBTORCH: '1' });
    expect([anyway.status, anyway.stdout.trim()]).toEqual([0, path.join(work, '2.16.0')]);
  });
});

describe('npm pack, then install with no compiler', () => {
  const work = tmpDir('torchbert-pack-');
  const app = path.join(work, 'app');
  const bin = path.join(work, 'bin');
  const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const env = (extra: Record<string, string> = {}) => {
    const e: Record<string, string> = { HOME: process.env.HOME!, PATH: bin, npm_config_cache: process.env.npm_config_cache ?? path.join(process.env.HOME!, '.npm'), ...extra };
    return e;
  };
  const pkg = path.join(app, 'node_modules', 'torchbert');
  /** The installed package's install script, run again as npm would, with `extra` in its environment. */
  const installScript = (extra: Record<string, string>) => spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.js')], { cwd: pkg, env: env(extra), encoding: 'utf8' });
  /** A BERT forward in the app through the installed package; what it ran on. */
  const forwardInApp = (extra: Record<string, string> = {}) => {
    const script = `
      const tb = require('torchbert');
      const m = tb.models.fromConfig('BertForSequenceClassification', { vocab_size: 100, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 32 });
      m.eval();
      tb.noGrad(() => m.forward({ inputIds: tb.tensor([[1n, 5n, 7n, 2n]]) })).then((o) => {
        const i = tb.info();
        console.log(JSON.stringify({ shape: o.logits.shape, prebuilt: i.prebuilt, addon: i.addon, flavour: i.libtorch.flavour }));
      });`;
    return spawnSync(process.execPath, ['-e', script], { cwd: app, env: env(extra), encoding: 'utf8' });
  };

  beforeAll(() => {
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync(REAL_PYTHON, path.join(bin, 'python3'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh')); // npm runs install scripts with sh
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  });

  test('the tarball installs from its prebuild and runs a forward pass', () => {
    const pre = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.js')], { cwd: ROOT, encoding: 'utf8' });
    expect(pre.stderr + pre.stdout).toMatch(/prebuild: prebuilds\/linux-x64\/torchbert\.torch-2\.13\.0-cpu\.napi8\.node/);
    const pack = spawnSync(process.execPath, [npmCli, 'pack', '--pack-destination', work, '--silent'], { cwd: ROOT, encoding: 'utf8' });
    expect(pack.status).toBe(0);
    const tarball = path.join(work, pack.stdout.trim().split('\n').pop()!);
    expect(fs.existsSync(tarball)).toBe(true);
    // No compiler, cmake or make on PATH: only node and python3 (for the locator to find pip's torch).
    expect(spawnSync('/bin/sh', ['-c', 'command -v g++ || command -v cc || command -v cmake || command -v make'], { env: env() }).status).not.toBe(0);
    const inst = spawnSync(process.execPath, [npmCli, 'install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: app, env: env(), encoding: 'utf8' });
    const log = inst.stdout + inst.stderr;
    expect([inst.status, log]).toEqual([0, expect.stringContaining('torchbert: using the prebuilt addon prebuilds/linux-x64/torchbert.torch-2.13.0-cpu.napi8.node')]);
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false);
    // A source build from the installed package (cmake-js or node-gyp) runs these scripts when it configures.
    for (const f of ['CMakeLists.txt', 'binding.gyp']) {
      const scripts = [...fs.readFileSync(path.join(ROOT, f), 'utf8').matchAll(/scripts\/[\w-]+\.js/g)].map((m) => m[0]);
      expect(scripts.length).toBeGreaterThan(0);
      for (const s of scripts) expect([f, s, fs.existsSync(path.join(pkg, s))]).toEqual([f, s, true]);
    }
    const run = forwardInApp();
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout.trim());
    expect(out.shape).toEqual([1, 2]);
    expect(out.prebuilt).toBe(true);
    expect(out.addon).toContain(path.join('node_modules', 'torchbert', 'prebuilds', 'linux-x64'));
  });

  // scripts/check-cuda.sh makes the CUDA prebuild (prebuild.js --build-dir build-cuda against pip's CUDA
  // torch) and runs this file with the CUDA torch's folder here, so the tarball above carries both flavours.
  const cudaTorch = process.env.TORCHBERT_PREBUILD_CUDA_LIBTORCH;
  if (!cudaTorch) console.log('install.test: the CUDA flavour is checked by scripts/check-cuda.sh (TORCHBERT_PREBUILD_CUDA_LIBTORCH unset)');
  (cudaTorch ? test : test.skip)('the same tarball against a CUDA libtorch: install and import pick the CUDA prebuild, with no compiler', () => {
    const cuda = fs.readdirSync(path.join(pkg, 'prebuilds', 'linux-x64')).filter((f) => /-cu\d+\.napi\d+\.node$/.test(f));
    expect(cuda).toHaveLength(1);
    const inst = installScript({ LIBTORCH: cudaTorch! });
    expect([inst.status, inst.stdout]).toEqual([0, expect.stringContaining(`torchbert: using the prebuilt addon prebuilds/linux-x64/${cuda[0]}`)]);
    const run = forwardInApp({ LIBTORCH: cudaTorch! });
    const out = JSON.parse(run.stdout.trim().split('\n').pop()!);
    expect(out.shape).toEqual([1, 2]);
    expect(out.prebuilt).toBe(true);
    expect(path.basename(out.addon)).toBe(cuda[0]);
    expect(cuda[0]).toContain(`-${out.flavour}.napi`);
  });

  test('a libtorch the prebuild was not made for: one actionable message, at install and at import', () => {
    expect(fs.existsSync(pkg)).toBe(true);
    const fake = fakeLibtorch(path.join(work, 'libtorch-2.99.0'), '2.99.0');
    const run = spawnSync(process.execPath, ['-e', "require('torchbert')"], { cwd: app, env: env({ LIBTORCH: fake }), encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    // Every prebuild the tarball carries (the CUDA one too where scripts/check-cuda.sh made it) is named.
    const carried = fs.readdirSync(path.join(pkg, 'prebuilds', 'linux-x64')).filter((f) => f.endsWith('.node')).sort();
    const flavours = carried.map((f) => /torch-([\d.]+)-(\w+)\.napi/.exec(f)!).map((m) => `libtorch ${m[1]} (${m[2]})`);
    expect(carried).toContain('torchbert.torch-2.13.0-cpu.napi8.node');
    expect(run.stderr).toContain(`every prebuilt addon in this package (${carried.join(', ')}) ${carried.length > 1 ? 'were' : 'was'} built for ${flavours.join(', ')}, but the libtorch found is 2.99.0 (cpu) at `);
    expect(run.stderr).toMatch(/libtorch-2\.99\.0 \(from LIBTORCH\)/);
    expect(run.stderr).toMatch(/pip install torch==2\.13\.0/);
    expect(run.stderr).toMatch(/npm rebuild torchbert --build-from-source/);
    expect(run.stderr).not.toMatch(/undefined symbol/);
    const inst = installScript({ LIBTORCH: fake });
    expect(inst.status).not.toBe(0);
    expect(inst.stdout).toContain(`building from source against libtorch 2.99.0 (cpu)`);
    expect(inst.stdout).toContain(`: the prebuilt addons here are for ${flavours.join(', ')}, not libtorch 2.99.0 (cpu)`);
    expect(inst.stderr).toMatch(/libtorch 2\.99\.0 at .*: newer than any release torchbert has been tested against \(tested: 2\.11\.0, 2\.13\.0, 2\.14\.1, 2\.15\.0\)\..*TORCHBERT_ALLOW_UNTESTED_LIBTORCH=1/);
    // Asked to build anyway, it tries (and here, with no compiler, says what the build needs).
    const anyway = installScript({ LIBTORCH: fake, TORCHBERT_ALLOW_UNTESTED_LIBTORCH: '1' });
    expect(anyway.status).not.toBe(0);
    expect(anyway.stderr).toMatch(/the build from source failed; it needs cmake/);
  });
});
