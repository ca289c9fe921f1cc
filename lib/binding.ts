// The only file that loads the native addon; declares its typed interface. Tensors cross as numeric
// handles (BigInt in untyped positions such as TorchScript method results); see native/tensor.h.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DisposedError, LibtorchNotFoundError, TorchError } from './errors';

export type Handle = number;
export type Arg = unknown;

export interface NativeModule {
  saveSync(path: string): void;
  save(path: string): Promise<void>;
  call(method: string, args: Arg[]): Promise<unknown>;
  callSync(method: string, args: Arg[]): unknown;
  define(src: string): void;
  registerParameter(name: string, t: Handle, isBuffer: boolean): void;
  registerModule(name: string, m: NativeModule): void;
  registerAttribute(name: string, type: string, value: unknown): void;
  setAttr(name: string, value: unknown): void;
  packLinear(name: string, weight: number, bias: number | null, engine: string): void;
  shareAttr(name: string, from: NativeModule): void;
  getAttr(name: string): unknown;
  hasAttr(name: string): boolean;
  methodNames(): string[];
  methodSchema(name: string): string;
  namedParameters(recurse?: boolean): [string, Handle][];
  namedBuffers(recurse?: boolean): [string, Handle][];
  namedChildren(): [string, NativeModule][];
  train(on: boolean): void;
  isTraining(): boolean;
  to(device?: string, dtype?: string): void;
  clone(): NativeModule;
  freeze(preserve?: string[], optimizeForInference?: boolean): NativeModule;
  typeName(): string;
  code(method?: string): string;
  dispose(): void;
  isBusy(): boolean;
}

export interface NativeModuleClass {
  new (name: string): NativeModule;
  load(path: string, device?: string): Promise<NativeModule>;
  loadSync(path: string, device?: string): NativeModule;
}

export interface MemoryInfo {
  tensors: number;
  bytes: number;
  devices: Record<string, { tensors: number; bytes: number }>;
}

/** The caching CPU allocator's state (native/allocator.cc). */
export interface CpuCacheStats {
  /** Bytes held in freed blocks, ready for reuse. */
  cachedBytes: number;
  cachedBlocks: number;
  limitBytes: number;
  /** Allocations of 256 KiB or more served from the cache, and those that needed fresh memory. */
  hits: number;
  misses: number;
  /** Bytes of the blocks of 256 KiB or more in use now, and their peak since the last resetPeak(). */
  inUseBytes: number;
  peakInUseBytes: number;
}

/** One GEMM shape torchbert::linear has timed (native/linear.cc). */
export interface LinearTuningEntry {
  /** forward, grad_input and grad_weight: torchbert::linear (training, timed over its first calls); inference: prepack()'s plan */
  pass: 'forward' | 'grad_input' | 'grad_weight' | 'inference';
  /** rows (batch x tokens): rounded up to a power of two (training), or the row bucket 1, 4, ..., 4096 (inference) */
  rows: number;
  /** output and input features */
  n: number;
  k: number;
  /** inference: the GELU fused into the GEMM ('none', 'gelu' or 'gelu_tanh') */
  activation?: 'none' | 'gelu' | 'gelu_tanh';
  /** inference: the dtype the layer runs in (bfloat16: prepack() of a bf16 model) */
  dtype?: 'float32' | 'bfloat16';
  /** the backend kept, or null while still on trial */
  choice: 'aten' | 'onednn' | 'torchbert' | null;
  /** each backend's best time, picoseconds per multiply-add (null: not available here) */
  atenPsPerMac: number | null;
  onednnPsPerMac: number | null;
  /** inference: torchbert::linear_packed's */
  torchbertPsPerMac?: number | null;
}

/** One attention shape bucket torchbert::attention has met (native/attention.cc). */
export interface AttentionTuningEntry {
  dtype: string;
  /** batch x heads, query and key lengths, each rounded up to a power of two */
  batchHeads: number;
  queryLength: number;
  keyLength: number;
  /** the implementation kept ('sdpa': ATen's fused kernel; 'math': two GEMMs and a softmax), or null while still on trial */
  choice: 'sdpa' | 'math' | null;
  /** each one's best time, picoseconds per (query, key, channel) product; null before its first trial */
  sdpaPs: number | null;
  mathPs: number | null;
}

export interface TensorEntry {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
  /** mapped: paged in one page at a time as rows are looked up (native/safetensors.cc MapTensor) */
  byRows?: boolean;
}

export interface Binding {
  setErrorClass(torchError: unknown, disposedError: unknown): void;
  release(h: Handle): void;
  memory(): MemoryInfo;
  cpuCacheStats(): CpuCacheStats;
  linearTuning(): LinearTuningEntry[];
  attentionTuning(): AttentionTuningEntry[];
  attentionMode(mode?: string): 'auto' | 'sdpa' | 'math';
  profilerStart(recordShapes: boolean): void;
  profilerStop(tracePath?: string): { name: string[]; thread: Float64Array; startUs: Float64Array; durationUs: Float64Array; shapes: string[]; device: string[] };
  cpuEmptyCache(): void;
  setCpuCacheLimit(bytes: number): void;
  cpuCacheResetPeak(): void;
  strides(h: Handle): number[];
  meta(h: Handle): [string, string, ...number[]];
  isContiguous(h: Handle): boolean;
  storageId(h: Handle): bigint;
  requiresGrad(h: Handle): boolean;
  setRequiresGrad(h: Handle, on: boolean): void;
  grad(h: Handle): Handle | null;
  setGrad(h: Handle, g: Handle | null): void;
  isLeaf(h: Handle): boolean;
  toTypedArray(h: Handle): ArrayBufferView;
  toTypedArrayAsync(h: Handle): Promise<ArrayBufferView>;
  item(h: Handle): number | boolean;
  backward(h: Handle, grad: Handle | undefined, retainGraph: boolean, createGraph: boolean, async: true): Promise<void>;
  backward(h: Handle, grad: Handle | undefined, retainGraph: boolean, createGraph: boolean, async: false): void;
  fromTypedArray(data: ArrayBufferView, shape: number[], dtype: string, device?: string): Handle;
  setGradEnabled(on: boolean): boolean;
  setAutocast(device: string, enabled: boolean, dtype?: string): [boolean, string];
  autocastClearCache(): void;
  isGradEnabled(): boolean;
  manualSeed(seed: number | bigint): void;
  getRngState(): Handle;
  setRngState(state: Handle): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setGraphExecutorOptimize(on: boolean): boolean;
  getGraphExecutorOptimize(): boolean;
  cudaIsAvailable(): boolean;
  cudaDeviceCount(): number;
  cudaSynchronize(): void;
  buildInfo(): { torchVersion: string; parallelInfo: string; computeThread: boolean; config: string; cxx11Abi: boolean; napiVersion: number; onednnGradMatmul: boolean };
  opHandle(name: string): number;
  callOp(op: number, ...args: Arg[]): unknown;
  callOpInplace(op: number, ...args: Arg[]): void;
  callOpAsync(op: number, ...args: Arg[]): Promise<unknown>;
  NativeModule: NativeModuleClass;
  beginUnit(): void;
  endUnit(): void;
  readTensors(path: string, dataStart: number, entries: TensorEntry[], device: string | undefined, async: true, mmap?: boolean): Promise<Handle[]>;
  readTensors(path: string, dataStart: number, entries: TensorEntry[], device: string | undefined, async: false, mmap?: boolean): Handle[];
  writeTensors(path: string, header: Uint8Array, tensors: Handle[], async: true): Promise<void>;
  writeTensors(path: string, header: Uint8Array, tensors: Handle[], async: false): void;
  // native/distributed.cc (c10d); group 0 is the default process group, ranks are global
  distInfo(): { available: boolean; nccl: boolean; initialized: boolean; rank?: number; worldSize?: number };
  distInit(kind: 'tcp' | 'file', host: string, port: number, path: string, rank: number, worldSize: number, timeoutMs: number, bind: string, nccl?: boolean, device?: number): Promise<void>;
  distNewGroup(ranks: number[]): Promise<number>;
  distDestroy(): void;
  distAllReduce(group: number, t: Handle, op: string): Promise<void>;
  distBroadcast(group: number, t: Handle, src: number): Promise<void>;
  distAllGather(group: number, outputs: Handle[], input: Handle): Promise<void>;
  distReduceScatter(group: number, output: Handle, inputs: Handle[], op: string): Promise<void>;
  distGather(group: number, input: Handle, outputs: Handle[] | null, dst: number): Promise<void>;
  distScatter(group: number, output: Handle, inputs: Handle[] | null, src: number): Promise<void>;
  distSend(group: number, t: Handle, dst: number, tag: number): Promise<void>;
  distRecv(group: number, t: Handle, src: number, tag: number): Promise<void>;
  distBarrier(group: number): Promise<void>;
  ddpCreate(group: number, params: Handle[], buffers: Handle[], names: string[], bucketCapBytes: number, firstBucketBytes: number, findUnused: boolean): Promise<number>;
  ddpPrepareForward(id: number): Promise<void>;
  ddpPrepareBackward(id: number, outputs: Handle[]): void;
  ddpDestroy(id: number): void;
}

const root = path.resolve(__dirname, '..');

type Found = { source: string; root: string; lib: string; version: string; flavour: string };
type Meta = { torch: string; flavour: string; napi: number };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const locator = require(path.join(root, 'scripts', 'find-libtorch.js')) as {
  findLibtorch(): Found | null;
  selectPrebuild(root: string, t: Found): { file: string; meta: Meta } | null;
  listPrebuilds(root: string): { file: string; meta: Meta }[];
  addonMeta(addon: string): Meta | null;
  describe(m: Meta): string;
  libName(base: string): string;
  cacheDir(): string;
  HOW_TO_GET: string;
};

/** torchbert's cache folder: $TORCHBERT_CACHE or ~/.cache/torchbert (the libtorch download, GEMM timings). */
export const cacheDir = (): string => locator.cacheDir();

/** Where the addon was loaded from and which libtorch it found, for `torchbert info`. */
export const loadInfo: { addon: string; prebuilt: boolean; libtorch: Found | null } = { addon: '', prebuilt: false, libtorch: null };


/**
 * Loads libtorch's libraries from the found install before the addon, so the addon's DT_NEEDED entries
 * resolve to them by soname whatever its rpath says (prebuilds carry none). RTLD_NODELETE keeps them
 * loaded after process.dlopen reports that they are not Node modules.
 */
function preload(lt: Found): void {
  if (process.platform !== 'linux') return;
  const RTLD_NODELETE = 0x1000;
  const flags = os.constants.dlopen.RTLD_NOW! | RTLD_NODELETE;
  for (const name of ['c10', 'torch_cpu', 'c10_cuda', 'torch_cuda', 'torch']) {
    const f = path.join(lt.lib, locator.libName(name));
    if (!fs.existsSync(f)) continue;
    try {
      process.dlopen({ exports: {} } as NodeJS.Module, f, flags);
    } catch (e) {
      if (!/self-register|napi_register_module/i.test((e as Error).message)) throw new LibtorchNotFoundError(`cannot load ${f} (libtorch ${lt.version} from ${lt.source}): ${(e as Error).message}`);
    }
  }
}

function mismatch(what: string, metas: Meta[], lt: Found): string {
  const pip = (m: Meta) => `python3 -m pip install torch==${m.torch}${m.flavour === 'cpu' ? ' --index-url https://download.pytorch.org/whl/cpu' : ''}`;
  const one = metas.length === 1;
  return (
    `torchbert: ${what} ${one ? 'was' : 'were'} built for ${metas.map(locator.describe).join(', ')}, but the libtorch found is ${lt.version} (${lt.flavour}) at ${lt.root} (from ${lt.source}). Do one of:\n` +
    `  - use ${one ? 'the libtorch it was' : 'a libtorch one was'} built for: ${metas.map(pip).join(' or ')}, or set LIBTORCH to a LibTorch ${metas.map((m) => `${m.torch} (${m.flavour})`).join(' or ')} folder\n` +
    `  - or build torchbert for the libtorch you have: npm rebuild torchbert --build-from-source (needs cmake and a C++ compiler)`
  );
}

function load(): Binding {
  // c10's allocator puts its allocations of 2 MiB or more on transparent huge pages under this switch
  // (read at first use): far fewer page faults for fresh buffers. With the CPU cache on, blocks of
  // 256 KiB or more are the cache's own mappings (native/allocator.cc, normal pages), so the switch
  // matters with TORCHBERT_CPU_CACHE=0. Set THP_MEM_ALLOC_ENABLE=0 to opt out.
  if (process.env.THP_MEM_ALLOC_ENABLE === undefined) process.env.THP_MEM_ALLOC_ENABLE = '1';
  let lt: Found | null = null;
  try {
    lt = locator.findLibtorch();
  } catch (e) {
    throw new LibtorchNotFoundError((e as Error).message);
  }
  loadInfo.libtorch = lt;
  // An explicit TORCHBERT_ADDON (that one or an error, never another in its place), else a source build,
  // then the prebuild for the libtorch found.
  const explicit = process.env.TORCHBERT_ADDON ? path.resolve(process.env.TORCHBERT_ADDON) : null;
  if (explicit && !fs.existsSync(explicit)) throw new LibtorchNotFoundError(`TORCHBERT_ADDON is ${explicit}, which does not exist (unset it to load the build or the prebuild that matches the libtorch found)`);
  const built = explicit ?? path.join(root, 'build', 'Release', 'torchbert.node');
  let chosen: { file: string; prebuilt: boolean } | null = null;
  let refused: string | null = null;
  if (fs.existsSync(built)) {
    const meta = locator.addonMeta(built); // node-gyp builds write none: trusted as built for the libtorch found
    if (meta && lt && (meta.torch !== lt.version || meta.flavour !== lt.flavour)) {
      refused = mismatch(`the addon ${built}`, [meta], lt);
      if (explicit) throw new LibtorchNotFoundError(refused);
    } else chosen = { file: built, prebuilt: false };
  }
  if (!chosen && lt) {
    const pre = locator.selectPrebuild(root, lt);
    if (pre) chosen = { file: pre.file, prebuilt: true };
    else {
      const all = locator.listPrebuilds(root);
      if (all.length && !refused) refused = mismatch(`every prebuilt addon in this package (${all.map((p) => path.basename(p.file)).join(', ')})`, all.map((p) => p.meta), lt);
    }
  }
  if (!chosen) {
    if (refused) throw new LibtorchNotFoundError(refused);
    const why = lt
      ? `libtorch ${lt.version} (${lt.flavour}) was found at ${lt.root}, but no addon is built for it and no prebuild matches. Run: npm rebuild torchbert --build-from-source (or npm run build:native in a checkout)`
      : `libtorch was not found.\n${locator.HOW_TO_GET}`;
    throw new LibtorchNotFoundError(`torchbert native addon not found. ${why}`);
  }
  loadInfo.addon = chosen.file;
  loadInfo.prebuilt = chosen.prebuilt;
  let binding: Binding;
  try {
    if (lt) preload(lt);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(chosen.file) as Binding;
  } catch (e) {
    if (e instanceof LibtorchNotFoundError) throw e;
    const msg = (e as Error).message;
    // Loaded, but refused: another thread of this process owns the addon's process-wide state.
    if (msg.startsWith('torchbert is already loaded by another thread')) throw Object.assign(new Error(msg), { code: 'ADDON_IN_OTHER_THREAD' });
    const hint = lt
      ? `It may have been built for another libtorch than ${lt.version} (${lt.flavour}) at ${lt.root}: rebuild with npm rebuild torchbert --build-from-source, or set LIBTORCH to the libtorch it was built for.`
      : `libtorch was not found.\n${locator.HOW_TO_GET}`;
    throw new LibtorchNotFoundError(`failed to load the torchbert addon ${chosen.file}: ${msg}\n${hint}`);
  }
  binding.setErrorClass(TorchError, DisposedError);
  return binding;
}

export const native: Binding = load();
