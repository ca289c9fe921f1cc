// Hugging Face Hub files: resolution in the local cache (~/.cache/huggingface/hub layout, HF_HOME,
// HF_HUB_CACHE) and download (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE), written into the same layout
// (blobs/ + snapshots/<commit>/ + refs/<revision>) so Python's huggingface_hub shares the cache.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { writeFileAtomic } from './fsutil';

export interface HubOptions {
  revision?: string;
  cacheDir?: string;
  endpoint?: string;
  token?: string;
  offline?: boolean;
}

export function hubCacheDir(opts: HubOptions = {}): string {
  if (opts.cacheDir) return opts.cacheDir;
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  const home = process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'hub');
}

function repoDir(repo: string, opts: HubOptions): string {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repo)) throw new TypeError(`invalid model name '${repo}' (expected 'name' or 'org/name')`);
  return path.join(hubCacheDir(opts), `models--${repo.replace('/', '--')}`);
}

/** The cached file, or undefined. */
export function cachedFile(repo: string, file: string, opts: HubOptions = {}): string | undefined {
  const dir = repoDir(repo, opts);
  const rev = opts.revision ?? 'main';
  const ref = path.join(dir, 'refs', rev);
  const commit = fs.existsSync(ref) ? fs.readFileSync(ref, 'utf8').trim() : rev;
  const p = path.join(dir, 'snapshots', commit, file);
  return fs.existsSync(p) ? p : undefined;
}

function offline(opts: HubOptions): boolean {
  if (opts.offline !== undefined) return opts.offline;
  const v = (process.env.HF_HUB_OFFLINE ?? '').toLowerCase();
  return v === '1' || v === 'true' || v === 'yes';
}

/**
 * Returns a local path for `file` of `repo`: from the cache, else downloaded from the Hub.
 * Resolves to undefined when the Hub says the file does not exist (404) and `optional` is set.
 * @throws Error naming the repo and file when offline and not cached, or on a failed download
 */
export async function hubFile(repo: string, file: string, opts: HubOptions & { optional?: boolean } = {}): Promise<string | undefined> {
  const hit = cachedFile(repo, file, opts);
  if (hit) return hit;
  if (offline(opts)) {
    if (opts.optional) return undefined;
    throw new Error(`'${file}' of '${repo}' is not in the Hugging Face cache (${hubCacheDir(opts)}) and HF_HUB_OFFLINE is set`);
  }
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/$/, '');
  const rev = opts.revision ?? 'main';
  const url = `${endpoint}/${repo}/resolve/${encodeURIComponent(rev)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  const token = opts.token ?? process.env.HF_TOKEN;
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, redirect: 'follow' });
  } catch (e) {
    throw new Error(`cannot download '${file}' of '${repo}' from ${endpoint}: ${(e as Error).message}`);
  }
  if (res.status === 404 && opts.optional) return undefined;
  if (!res.ok) throw new Error(`cannot download '${file}' of '${repo}' from ${endpoint}: HTTP ${res.status} ${res.statusText}`);
  const commit = res.headers.get('x-repo-commit') ?? rev;
  const etag = (res.headers.get('x-linked-etag') ?? res.headers.get('etag') ?? `${commit}-${file}`).replace(/^W\//, '').replace(/"/g, '');
  const dir = repoDir(repo, opts);
  const blob = path.join(dir, 'blobs', etag.replace(/[^\w.-]/g, '_'));
  const snap = path.join(dir, 'snapshots', commit, file);
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  fs.mkdirSync(path.dirname(snap), { recursive: true });
  // Streamed to a temporary file beside the blob (a checkpoint is not held in memory), renamed when whole.
  const expected = res.headers.get('content-length');
  await writeFileAtomic(blob, async (tmp) => {
    if (!res.body) throw new Error(`download of '${file}' of '${repo}' has no body`);
    try {
      await pipeline(Readable.fromWeb(res.body as import('stream/web').ReadableStream), fs.createWriteStream(tmp));
    } catch (e) {
      const got = fs.existsSync(tmp) ? fs.statSync(tmp).size : 0;
      throw new Error(`download of '${file}' of '${repo}' from ${endpoint} broke off after ${got}${expected !== null ? ` of ${expected}` : ''} bytes: ${(e as Error).message}`);
    }
    const got = fs.statSync(tmp).size;
    if (expected !== null && Number(expected) !== got) throw new Error(`download of '${file}' of '${repo}' was truncated (${got} of ${expected} bytes)`);
  });
  fs.rmSync(snap, { force: true });
  fs.symlinkSync(path.relative(path.dirname(snap), blob), snap);
  fs.mkdirSync(path.join(dir, 'refs'), { recursive: true });
  if (rev !== commit) fs.writeFileSync(path.join(dir, 'refs', rev), commit);
  return snap;
}

/** A local folder, or a Hub name whose listed files are fetched (missing optional files are skipped). */
export async function resolveModelDir(nameOrDir: string, files: { required: string[][]; optional: string[] }, opts: HubOptions = {}): Promise<{ dir: string; files: Set<string> }> {
  if (fs.existsSync(nameOrDir) && fs.statSync(nameOrDir).isDirectory()) {
    return { dir: nameOrDir, files: new Set(fs.readdirSync(nameOrDir)) };
  }
  if (nameOrDir.startsWith('.') || nameOrDir.startsWith('/') || nameOrDir.includes('\\')) throw new Error(`no such folder '${nameOrDir}'`);
  const got = new Set<string>();
  let dir = '';
  const take = (p: string | undefined, f: string) => {
    if (!p) return false;
    got.add(f);
    dir = path.dirname(p);
    return true;
  };
  for (const f of files.optional) take(await hubFile(nameOrDir, f, { ...opts, optional: true }), f);
  // Each required group is satisfied by its first file that exists.
  for (const group of files.required) {
    let ok = group.some((f) => got.has(f));
    for (const f of group) {
      if (ok) break;
      ok = take(await hubFile(nameOrDir, f, { ...opts, optional: true }), f);
    }
    if (!ok) throw new Error(`'${nameOrDir}' has none of ${group.join(', ')} (looked in the cache ${hubCacheDir(opts)} and on the Hub)`);
  }
  return { dir, files: got };
}
