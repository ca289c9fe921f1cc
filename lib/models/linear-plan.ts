// Which GEMM runs each linear layer of a prepacked model. torchbert::tune_linear (native/linear_select.cc)
// times our packed kernel, oneDNN and ATen for a shape on this machine and keeps the choice per row
// count for the process; this file asks it only for shapes it has not seen, and caches the timings on
// disk per CPU model, libtorch version and thread count, so a later process (a server restart) starts
// from them without measuring.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { op } from '../tensor';
import { native } from '../binding';
import { cpuInfo } from '../cpu';

export type LinearBackend = 'torchbert' | 'onednn' | 'aten';
export const LINEAR_BACKENDS: LinearBackend[] = ['torchbert', 'onednn', 'aten'];
export type LinearActivation = 'none' | 'gelu' | 'gelu_tanh';
export interface LinearShape {
  n: number;
  k: number;
  activation: LinearActivation;
}

const tune = op('torchbert::tune_linear');
const setPlan = op('torchbert::set_linear_plan');
const planOf = op('torchbert::linear_plan');

/** The backend every layer must run (prepack({ backend }) or TORCHBERT_PREPACKED), or null: measured. */
export function forcedBackend(backend?: LinearBackend | 'auto'): LinearBackend | null {
  const v = backend ?? process.env.TORCHBERT_PREPACKED ?? 'auto';
  if (v === 'auto' || v === '') return null;
  if (!LINEAR_BACKENDS.includes(v as LinearBackend)) {
    throw new TypeError(`${backend ? 'prepack backend' : 'TORCHBERT_PREPACKED'} must be auto, ${LINEAR_BACKENDS.join(', ')}; got '${v}'`);
  }
  return v as LinearBackend;
}

/** The timings file: TORCHBERT_TUNING_CACHE (a path, or 0 for none), else ~/.cache/torchbert/linear-plan.json. */
export function tuningCachePath(): string | null {
  const env = process.env.TORCHBERT_TUNING_CACHE;
  if (env === '0') return null;
  if (env) return env;
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'torchbert', 'linear-plan.json');
}

/** What the timings depend on besides the shape; a file keeps one section per key. */
function cacheKey(): string {
  const c = cpuInfo();
  return `${c.model} [${c.flags.join(' ')}] | libtorch ${native.buildInfo().torchVersion} | ${native.getNumThreads()} threads | ` +
    `${process.env.ONEDNN_MAX_CPU_ISA ?? ''} ${process.env.ATEN_CPU_CAPABILITY ?? ''} | v1`;
}
const shapeKey = (s: LinearShape) => `${s.n}x${s.k} ${s.activation}`;

type CacheFile = Record<string, Record<string, (number | null)[]>>;
function readCache(file: string): CacheFile {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {}; // absent or unreadable: measure again
  }
}
function writeCache(file: string, measured: Map<string, number[]>): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const all = readCache(file);
    const key = cacheKey();
    all[key] = { ...all[key] };
    for (const [k, ms] of measured) all[key][k] = ms.map((v) => (Number.isFinite(v) ? v : null));
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(all, null, 1));
    fs.renameSync(tmp, file);
  } catch (e) {
    process.emitWarning(`could not write the GEMM tuning cache ${file}: ${(e as Error).message}`, { code: 'TORCHBERT_TUNING_CACHE' });
  }
}

const known = (s: LinearShape) => (planOf.raw(s.n, s.k, s.activation) as number[]).length > 0;

/** Installs cached timings for the shapes this process has not tuned; returns those still to measure. */
function fromCache(shapes: LinearShape[]): LinearShape[] {
  const unique = [...new Map(shapes.map((s) => [shapeKey(s), s])).values()].filter((s) => !known(s));
  const file = tuningCachePath();
  if (!unique.length || !file) return unique;
  const section = readCache(file)[cacheKey()] ?? {};
  return unique.filter((s) => {
    const ms = section[shapeKey(s)];
    if (!Array.isArray(ms)) return true;
    try {
      setPlan.raw(s.n, s.k, s.activation, ms.map((v) => (typeof v === 'number' ? v : NaN)));
      return false;
    } catch {
      return true; // a stale or damaged entry: measure again
    }
  });
}
function remember(measured: Map<string, number[]>): void {
  const file = tuningCachePath();
  if (file && measured.size) writeCache(file, measured);
}

/** Makes sure every shape has a plan, measuring on this thread (seconds the first time on a machine). */
export function ensureLinearPlan(shapes: LinearShape[]): void {
  const measured = new Map<string, number[]>();
  for (const s of fromCache(shapes)) measured.set(shapeKey(s), tune.raw(s.n, s.k, s.activation) as number[]);
  remember(measured);
}
/** ensureLinearPlan with the measurements on a worker thread. */
export async function ensureLinearPlanAsync(shapes: LinearShape[]): Promise<void> {
  const measured = new Map<string, number[]>();
  for (const s of fromCache(shapes)) measured.set(shapeKey(s), (await tune.async(s.n, s.k, s.activation)) as number[]);
  remember(measured);
}

/** The backends a layer of this shape runs across row counts (its weight is kept in each one's layout). */
export function planBackends(s: LinearShape): LinearBackend[] {
  const choices = planOf.raw(s.n, s.k, s.activation) as number[];
  return [...new Set(choices.filter((c) => c >= 0).map((c) => LINEAR_BACKENDS[c]))];
}

/** The plans of the shapes in this machine's section of the tuning cache (for `torchbert info`), installed for this process. */
export function cachedPlans(): { shape: string; rows: number[]; choices: LinearBackend[] }[] {
  const file = tuningCachePath();
  if (!file) return [];
  const section = readCache(file)[cacheKey()] ?? {};
  const out: { shape: string; rows: number[]; choices: LinearBackend[] }[] = [];
  for (const key of Object.keys(section)) {
    const m = /^(\d+)x(\d+) (none|gelu|gelu_tanh)$/.exec(key);
    if (!m) continue;
    const s: LinearShape = { n: Number(m[1]), k: Number(m[2]), activation: m[3] as LinearActivation };
    if (fromCache([s]).length) continue; // unreadable entry
    const choices = planOf.raw(s.n, s.k, s.activation) as number[];
    out.push({ shape: key, rows: [1, 4, 16, 64, 256, 1024], choices: choices.map((c) => LINEAR_BACKENDS[c]) });
  }
  return out;
}
