// Which GEMM runs each linear layer of a prepacked model. torchbert::tune_linear (native/linear_select.cc)
// times our packed kernel, oneDNN and ATen for a shape on this machine and keeps the choice per row
// count for the process; this file asks it only for shapes it has not seen, and caches the timings on
// disk per CPU model, libtorch version and thread count, so a later process (a server restart) starts
// from them without measuring.
import * as fs from 'fs';
import * as path from 'path';
import { op } from '../tensor';
import { native, cacheDir } from '../binding';
import { cpuInfo } from '../cpu';
import { writeFileAtomicSync } from '../fsutil';

export type LinearBackend = 'torchbert' | 'onednn' | 'aten';
export const LINEAR_BACKENDS: LinearBackend[] = ['torchbert', 'onednn', 'aten'];
export type LinearActivation = 'none' | 'gelu' | 'gelu_tanh';
/** The dtypes a prepacked layer runs in: bfloat16 for prepack() of a bf16 model (CPUs with bf16 units). */
export type LinearDtype = 'float32' | 'bfloat16';
export interface LinearShape {
  n: number;
  k: number;
  activation: LinearActivation;
  /** default float32 */
  dtype?: LinearDtype;
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

/** The timings file: TORCHBERT_TUNING_CACHE (a path, or 0 for none), else linear-plan.json in torchbert's cache folder. */
export function tuningCachePath(): string | null {
  const env = process.env.TORCHBERT_TUNING_CACHE;
  if (env === '0') return null;
  if (env) return env;
  return path.join(cacheDir(), 'linear-plan.json');
}

/** What the timings depend on besides the shape; a file keeps one section per key. */
function cacheKey(): string {
  const c = cpuInfo();
  return `${c.model} [${c.flags.join(' ')}] | libtorch ${native.buildInfo().torchVersion} | ${native.getNumThreads()} threads | ` +
    `${process.env.ONEDNN_MAX_CPU_ISA ?? ''} ${process.env.ATEN_CPU_CAPABILITY ?? ''} | v3`;
}
// fp32 keys keep the form they had before bf16 plans existed, so earlier caches stay valid.
const shapeKey = (s: LinearShape) => `${s.n}x${s.k} ${s.activation}${s.dtype === 'bfloat16' ? ' bfloat16' : ''}`;
const dtypeOf = (s: LinearShape): LinearDtype => s.dtype ?? 'float32';

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
    writeFileAtomicSync(file, JSON.stringify(all, null, 1));
  } catch (e) {
    process.emitWarning(`could not write the GEMM tuning cache ${file}: ${(e as Error).message}`, { code: 'TORCHBERT_TUNING_CACHE' });
  }
}

// ---- int8 (quantizeDynamic): the engine that packs each layer, fbgemm or oneDNN, by measurement ----

export type Int8Engine = 'fbgemm' | 'onednn';
const INT8_ENGINES: Int8Engine[] = ['fbgemm', 'onednn'];
const tuneInt8 = op('torchbert::tune_int8_linear');
const int8Chosen = new Map<string, { plan: Int8Plan; ms: (number | null)[] }>();

/** The engine every int8 layer must use (TORCHBERT_INT8_ENGINE), or null: measured. */
export function forcedInt8Engine(): Int8Engine | null {
  const v = process.env.TORCHBERT_INT8_ENGINE ?? 'auto';
  if (v === 'auto' || v === '') return null;
  if (!INT8_ENGINES.includes(v as Int8Engine)) throw new TypeError(`TORCHBERT_INT8_ENGINE must be auto, fbgemm or onednn; got '${v}'`);
  return v as Int8Engine;
}

const ROWS = [1, 4, 16, 64, 256, 1024, 4096];
/** How a shape's int8 layers run: one engine, or fbgemm below `onednnFromRows` rows and oneDNN from there. */
export interface Int8Plan {
  engine: Int8Engine | 'both';
  onednnFromRows: number | null;
}

/**
 * From the timings ([rows bucket][fbgemm, onednn]): oneDNN for the row counts from which it is more than
 * 10% faster at every larger count, fbgemm below (a second packed copy of the int8 weight is kept only
 * then). Ties stay with fbgemm, the engine torch.ao's quantize_dynamic uses on x86.
 */
export function decideInt8(ms: (number | null)[]): Int8Plan {
  const ok = (v: number | null): v is number => typeof v === 'number' && Number.isFinite(v);
  let from = ROWS.length;
  for (let b = ROWS.length - 1; b >= 0; b--) {
    const [f, o] = [ms[2 * b], ms[2 * b + 1]];
    if (!ok(o) || (ok(f) && o * 1.1 >= f)) break;
    from = b;
  }
  if (from === ROWS.length) return { engine: 'fbgemm', onednnFromRows: null };
  if (from === 0) return { engine: 'onednn', onednnFromRows: null };
  // The boundary between the buckets (geometric mean of their row counts), as linear_prepacked rounds.
  return { engine: 'both', onednnFromRows: Math.floor(Math.sqrt(ROWS[from - 1] * ROWS[from])) + 1 };
}

/** The int8 plan for a layer of this shape: from this process, the tuning cache, or measured now. */
export function int8Plan(n: number, k: number): Int8Plan {
  const forced = forcedInt8Engine();
  if (forced) return { engine: forced, onednnFromRows: null };
  const key = `int8 ${n}x${k}`;
  let hit = int8Chosen.get(key);
  if (!hit) {
    const file = tuningCachePath();
    const cached = file ? readCache(file)[cacheKey()]?.[key] : undefined;
    const ms = Array.isArray(cached) && cached.length === 2 * ROWS.length ? cached : (tuneInt8.raw(n, k) as number[]);
    hit = { plan: decideInt8(ms), ms };
    int8Chosen.set(key, hit);
    if (file && ms !== cached) writeCache(file, new Map([[key, ms.map((v) => (v === null ? NaN : v))]]));
  }
  return hit.plan;
}

/** Installs int8 timings measured elsewhere (as set_linear_plan does for fp32): the plan follows from them. */
export function setInt8Timings(n: number, k: number, ms: (number | null)[]): Int8Plan {
  if (ms.length !== 2 * ROWS.length) throw new RangeError(`setInt8Timings: expected ${2 * ROWS.length} timings, got ${ms.length}`);
  const plan = decideInt8(ms);
  int8Chosen.set(`int8 ${n}x${k}`, { plan, ms });
  return plan;
}

/** The int8 plans chosen in this process, per shape, with their timings (ms at rows 1, 4, ..., 4096). */
export function int8Plans(): ({ shape: string; fbgemmMs: (number | null)[]; onednnMs: (number | null)[] } & Int8Plan)[] {
  const num = (v: number | null) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return [...int8Chosen].map(([key, { plan, ms }]) => ({
    shape: key.slice(5), ...plan,
    fbgemmMs: ms.filter((_, i) => i % 2 === 0).map(num),
    onednnMs: ms.filter((_, i) => i % 2 === 1).map(num),
  }));
}

const known = (s: LinearShape) => (planOf.raw(s.n, s.k, s.activation, dtypeOf(s)) as number[]).length > 0;

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
      setPlan.raw(s.n, s.k, s.activation, ms.map((v) => (typeof v === 'number' ? v : NaN)), dtypeOf(s));
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
  for (const s of fromCache(shapes)) measured.set(shapeKey(s), tune.raw(s.n, s.k, s.activation, dtypeOf(s)) as number[]);
  remember(measured);
}
/** ensureLinearPlan with the measurements on the compute thread. */
export async function ensureLinearPlanAsync(shapes: LinearShape[]): Promise<void> {
  const measured = new Map<string, number[]>();
  for (const s of fromCache(shapes)) measured.set(shapeKey(s), (await tune.async(s.n, s.k, s.activation, dtypeOf(s))) as number[]);
  remember(measured);
}

/**
 * The backends a layer of this shape runs across row counts (its weight is kept in each one's layout):
 * as measured ('auto': a second layout where it pays), or the one that costs least over all row counts.
 */
export function planBackends(s: LinearShape, layouts: 'auto' | 'one' = 'auto'): LinearBackend[] {
  const choices = planOf.raw(s.n, s.k, s.activation, dtypeOf(s), layouts === 'one' ? 1 : 0) as number[];
  return [...new Set(choices.filter((c) => c >= 0).map((c) => LINEAR_BACKENDS[c]))];
}

/** The plans of the shapes in this machine's section of the tuning cache (for `torchbert info`), installed for this process. */
export function cachedPlans(): { shape: string; rows: number[]; choices: LinearBackend[] }[] {
  const file = tuningCachePath();
  if (!file) return [];
  const section = readCache(file)[cacheKey()] ?? {};
  const out: { shape: string; rows: number[]; choices: LinearBackend[] }[] = [];
  for (const key of Object.keys(section)) {
    const m = /^(\d+)x(\d+) (none|gelu|gelu_tanh)( bfloat16)?$/.exec(key);
    if (!m) continue;
    const s: LinearShape = { n: Number(m[1]), k: Number(m[2]), activation: m[3] as LinearActivation, dtype: m[4] ? 'bfloat16' : 'float32' };
    if (fromCache([s]).length) continue; // unreadable entry
    const choices = planOf.raw(s.n, s.k, s.activation, dtypeOf(s)) as number[];
    out.push({ shape: key, rows: ROWS, choices: choices.map((c) => LINEAR_BACKENDS[c]) });
  }
  return out;
}
