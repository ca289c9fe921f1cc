#!/usr/bin/env node
// Opt-in download of a LibTorch distribution into torchbert's cache (as tch-rs and DJL offer): verified
// against a SHA-256, through HTTP(S)_PROXY / NO_PROXY, never touched under TORCHBERT_OFFLINE=1, unpacked
// beside the cache and renamed into place so an interrupted download leaves nothing half-installed.
// The locator (find-libtorch.js) finds what is here after $LIBTORCH and python3's torch.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { cacheDir: defaultCacheDir } = require('./find-libtorch');

/** pytorch.org's LibTorch zips (cxx11 ABI, with dependencies): the names used since 2.6. */
function defaultUrl(version, flavour) {
  return `https://download.pytorch.org/libtorch/${flavour}/libtorch-shared-with-deps-${version}%2B${flavour}.zip`;
}

/**
 * SHA-256 of pytorch.org zips that someone verified, by "<version>-<flavour>". Empty: pytorch.org
 * publishes no checksums and this project has not had network access to download and record one, so
 * a download needs --sha256 (from a source you trust) or an explicit --allow-unverified.
 */
const KNOWN_SHA256 = {};

function isOffline() {
  return ['1', 'true', 'yes'].includes(String(process.env.TORCHBERT_OFFLINE || '').toLowerCase());
}

/** A fetch dispatcher that honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY (Node's fetch ignores them). */
function proxyDispatcher() {
  const env = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'].some((k) => process.env[k]);
  if (!env) return undefined;
  const { EnvHttpProxyAgent } = require('undici');
  return new EnvHttpProxyAgent();
}

async function fetchTo(url, file, onProgress) {
  const { fetch } = require('undici');
  const res = await fetch(url, { dispatcher: proxyDispatcher(), redirect: 'follow' });
  if (!res.ok || !res.body) throw new Error(`downloading ${url} failed: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const hash = crypto.createHash('sha256');
  const out = fs.createWriteStream(file);
  let got = 0;
  try {
    for await (const chunk of res.body) {
      hash.update(chunk);
      got += chunk.length;
      if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
      if (onProgress) onProgress(got, total);
    }
  } finally {
    await new Promise((r) => out.end(r));
  }
  if (total && got !== total) throw new Error(`downloading ${url}: got ${got} of ${total} bytes`);
  return hash.digest('hex');
}

/** Unzips into dir, refusing entries that would land outside it. */
async function unzip(zipFile, dir) {
  const yauzl = require('yauzl');
  const zip = await new Promise((res, rej) => yauzl.open(zipFile, { lazyEntries: true }, (e, z) => (e ? rej(e) : res(z))));
  const root = path.resolve(dir);
  await new Promise((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', resolve);
    zip.on('entry', (entry) => {
      const target = path.resolve(root, entry.fileName);
      if (target !== root && !target.startsWith(root + path.sep)) {
        zip.close();
        reject(new Error(`${zipFile}: entry '${entry.fileName}' points outside the target folder; refusing to unpack`));
        return;
      }
      if (entry.fileName.endsWith('/')) {
        fs.mkdirSync(target, { recursive: true });
        zip.readEntry();
        return;
      }
      fs.mkdirSync(path.dirname(target), { recursive: true });
      zip.openReadStream(entry, (e, stream) => {
        if (e) return reject(e);
        const mode = (entry.externalFileAttributes >>> 16) & 0o777;
        const out = fs.createWriteStream(target, { mode: mode || 0o644 });
        stream.on('error', reject);
        out.on('error', reject);
        out.on('close', () => zip.readEntry());
        stream.pipe(out);
      });
    });
    zip.readEntry();
  });
}

/**
 * Downloads and unpacks LibTorch into <cache>/libtorch/<version>-<flavour>/libtorch, or returns the copy
 * already there. Returns { root, cached }.
 * @throws when offline and not cached, on HTTP errors, without a checksum (unless allowUnverified), on a
 *   checksum mismatch (nothing is left behind), and on unsafe archives.
 */
async function downloadLibtorch(opts = {}) {
  const version = opts.version || '2.13.0';
  const flavour = opts.flavour || 'cpu';
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`version must look like 2.13.0, got '${version}'`);
  if (!/^(cpu|cu\d{3,4}|rocm[\d.]+)$/.test(flavour)) throw new Error(`flavour must be cpu, cuXXX or rocmX.Y, got '${flavour}'`);
  const cache = opts.cacheDir || defaultCacheDir();
  const dest = path.join(cache, 'libtorch', `${version}-${flavour}`);
  const done = path.join(dest, '.complete');
  if (fs.existsSync(done)) return { root: path.join(dest, 'libtorch'), cached: true };
  if (opts.offline || isOffline()) {
    throw new Error(`LibTorch ${version} (${flavour}) is not in the cache (${dest}) and downloads are off (TORCHBERT_OFFLINE); copy it there, set LIBTORCH, or unset TORCHBERT_OFFLINE`);
  }
  const url = opts.url || process.env.TORCHBERT_LIBTORCH_URL || defaultUrl(version, flavour);
  const expected = (opts.sha256 || process.env.TORCHBERT_LIBTORCH_SHA256 || KNOWN_SHA256[`${version}-${flavour}`] || '').toLowerCase();
  if (expected && !/^[0-9a-f]{64}$/.test(expected)) throw new Error(`sha256 must be 64 hex digits, got '${expected}'`);
  if (!expected && !opts.allowUnverified) {
    throw new Error(`no SHA-256 is known for LibTorch ${version} (${flavour}); pass --sha256 <hex> (TORCHBERT_LIBTORCH_SHA256) from a source you trust, or --allow-unverified to skip the check`);
  }
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const tag = `${process.pid}-${Date.now()}`;
  const part = path.join(path.dirname(dest), `.${version}-${flavour}.${tag}.zip.part`);
  const staging = path.join(path.dirname(dest), `.${version}-${flavour}.${tag}.unpack`);
  try {
    const got = await fetchTo(url, part, opts.onProgress);
    if (expected && got !== expected) throw new Error(`checksum mismatch for ${url}: expected sha256 ${expected}, got ${got}; nothing was installed`);
    await unzip(part, staging);
    if (!fs.existsSync(path.join(staging, 'libtorch', 'lib'))) throw new Error(`${url} is not a LibTorch archive (no libtorch/lib inside)`);
    fs.writeFileSync(path.join(staging, '.complete'), JSON.stringify({ url, sha256: got, version, flavour, verified: !!expected }) + '\n');
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(staging, dest);
    return { root: path.join(dest, 'libtorch'), cached: false };
  } finally {
    fs.rmSync(part, { force: true });
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

module.exports = { downloadLibtorch, defaultUrl, KNOWN_SHA256, isOffline };

if (require.main === module) {
  const args = process.argv.slice(2);
  const get = (k) => (args.includes(k) ? args[args.indexOf(k) + 1] : undefined);
  downloadLibtorch({
    version: get('--version'), flavour: get('--flavour'), url: get('--url'), sha256: get('--sha256'),
    allowUnverified: args.includes('--allow-unverified'), offline: args.includes('--offline'),
  }).then((r) => console.log(r.root), (e) => {
    console.error(`torchbert: ${e.message}`);
    process.exit(1);
  });
}
