// Global libtorch switches: grad mode, seeding, threads, CUDA queries and memory accounting.
import { native, loadInfo, MemoryInfo, CpuCacheStats, LinearTuningEntry, AttentionTuningEntry } from './binding';
import { Tensor } from './tensor';
import { cpuInfo } from './cpu';
import { cachedPlans, int8Plans, tuningCachePath } from './models/linear-plan';

/**
 * Runs fn with gradient tracking off (torch.no_grad()). Async functions keep it off until they settle;
 * grad mode is per thread in libtorch, so other code interleaving on the event loop sees it too.
 */
export function noGrad<T>(fn: () => T): T {
  return withGrad(false, fn);
}
/** Runs fn with gradient tracking on (torch.enable_grad()). */
export function enableGrad<T>(fn: () => T): T {
  return withGrad(true, fn);
}
// Async noGrad calls that overlap on the event loop settle in any order: a count of the pending ones
// restores grad mode once, when the last settles (restoring each call's own "previous" state would
// leave grad off whenever an inner call outlives an outer one).
let asyncNoGrad = 0;
let beforeAsyncNoGrad = true;

function withGrad<T>(on: boolean, fn: () => T): T {
  const prev = native.setGradEnabled(on);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    native.setGradEnabled(prev);
    throw e;
  }
  if (result instanceof Promise) {
    if (on) return result.finally(() => native.setGradEnabled(prev)) as T;
    if (asyncNoGrad++ === 0) beforeAsyncNoGrad = prev;
    return result.finally(() => {
      if (--asyncNoGrad === 0) native.setGradEnabled(beforeAsyncNoGrad);
    }) as T;
  }
  native.setGradEnabled(prev);
  return result;
}
export interface AutocastOptions {
  /** where to autocast: 'cpu' or 'cuda' (default 'cpu') */
  device?: 'cpu' | 'cuda';
  /** the lower precision (default 'bfloat16'; 'float16' wants a GradScaler when training) */
  dtype?: 'bfloat16' | 'float16';
  /** false runs fn without autocast (handy for a flag) */
  enabled?: boolean;
}
// Open regions per device (the cache is cleared when the last closes), and for overlapping async
// regions the state before the first, restored when the last settles (as noGrad does for grad mode).
const autocastDepth = { cpu: 0, cuda: 0 };
const asyncAutocast = { cpu: { pending: 0, before: [false, 'bfloat16'] as [boolean, string] }, cuda: { pending: 0, before: [false, 'float16'] as [boolean, string] } };

/**
 * Runs fn under automatic mixed precision (torch.autocast): matmuls, linear layers and attention in
 * `dtype`, precision-sensitive ops (softmax, norms, losses) in float32, as PyTorch's autocast op lists
 * decide. Native calls started inside fn (forwards on the compute thread included) run with it; async fns
 * keep it on until they settle. Backward belongs outside, as in PyTorch.
 * @example const out = await tb.autocast({ device: 'cuda' }, () => model.forward(batch));
 */
export function autocast<T>(opts: AutocastOptions, fn: () => T): T {
  const device = opts.device ?? 'cpu';
  const dtype = opts.dtype ?? 'bfloat16';
  if (device !== 'cpu' && device !== 'cuda') throw new TypeError(`autocast device must be 'cpu' or 'cuda', got '${device}'`);
  if (dtype !== 'bfloat16' && dtype !== 'float16') throw new TypeError(`autocast dtype must be 'bfloat16' or 'float16', got '${dtype}'`);
  if (opts.enabled === false) return fn();
  const prev = native.setAutocast(device, true, dtype);
  autocastDepth[device]++;
  const close = () => {
    // Leaving the outermost region drops the cached low-precision weight copies (PyTorch does the same).
    if (--autocastDepth[device] === 0) native.autocastClearCache();
  };
  let result: T;
  try {
    result = fn();
  } catch (e) {
    native.setAutocast(device, prev[0], prev[1]);
    close();
    throw e;
  }
  if (result instanceof Promise) {
    const a = asyncAutocast[device];
    if (a.pending++ === 0) a.before = prev;
    return result.finally(() => {
      if (--a.pending === 0) native.setAutocast(device, a.before[0], a.before[1]);
      close();
    }) as T;
  }
  native.setAutocast(device, prev[0], prev[1]);
  close();
  return result;
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** The thread-local modes a native call takes with it to the thread that runs it: grad mode and autocast. */
export interface CallModes {
  grad: boolean;
  autocast: Record<'cpu' | 'cuda', [boolean, string]>;
}
/** This thread's modes now (what a call started now would run with). */
export function currentModes(): CallModes {
  const read = (device: 'cpu' | 'cuda'): [boolean, string] => {
    const prev = native.setAutocast(device, false);
    native.setAutocast(device, prev[0], prev[1]);
    return prev;
  };
  return { grad: native.isGradEnabled(), autocast: { cpu: read('cpu'), cuda: read('cuda') } };
}
/**
 * Runs fn (which starts a native call synchronously) under `modes`, then restores this thread's own.
 * For calls that start later than they were made (after waiting their turn) but must run as the caller
 * was when it made them: under noGrad, say, which has ended by then.
 */
export function withModes<T>(modes: CallModes, fn: () => T): T {
  const grad = native.setGradEnabled(modes.grad);
  const cpu = native.setAutocast('cpu', modes.autocast.cpu[0], modes.autocast.cpu[1]);
  const cuda = native.setAutocast('cuda', modes.autocast.cuda[0], modes.autocast.cuda[1]);
  try {
    return fn();
  } finally {
    native.setAutocast('cuda', cuda[0], cuda[1]);
    native.setAutocast('cpu', cpu[0], cpu[1]);
    native.setGradEnabled(grad);
  }
}
export function setGradEnabled(on: boolean): void {
  native.setGradEnabled(on);
}

/** Seeds the global generators; the same seed and calls give PyTorch's CPU numbers. */
export function manualSeed(seed: number | bigint): void {
  native.manualSeed(seed);
}
/** The CPU generator's state (torch.get_rng_state()). */
export function getRngState(): Tensor {
  return Tensor._wrap(native.getRngState());
}
/** Restores a state from getRngState() (torch.set_rng_state()). */
export function setRngState(state: Tensor): void {
  native.setRngState(state._handle);
}
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
/**
 * TorchScript's graph executor optimisations (profiling, autodiff subgraphs, fusion), on by default as in
 * PyTorch (torch._C._set_graph_executor_optimize), for every later model call in this process (libtorch
 * keeps the switch per thread; torchbert applies it on the threads that run calls). Off, a model's first
 * call builds no optimised plan: less memory, slower small calls. Returns the previous setting.
 */
export function setGraphExecutorOptimize(on: boolean): boolean {
  return native.setGraphExecutorOptimize(on);
}
/** The graph executor setting as the thread that runs model calls sees it. */
export function getGraphExecutorOptimize(): boolean {
  return native.getGraphExecutorOptimize();
}
/**
 * How many compiled primitives oneDNN and ideep each keep: one per GEMM shape, about half a MB each at
 * bert-base's widths (64 by default here, 1,024 in libtorch). A server's batch shapes rarely repeat, so
 * its cached primitives are mostly memory; making one again costs little beside the GEMM it runs
 * (docs/benchmarks.md, Memory). Both caches read the value once, when the process first runs oneDNN:
 * set it before loading a model. Replaces ONEDNN_PRIMITIVE_CACHE_CAPACITY and LRU_CACHE_CAPACITY;
 * `info().primitiveCaches` shows it.
 */
export function setPrimitiveCacheCapacity(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`primitive cache capacity must be a positive integer, got ${n}`);
  process.env.ONEDNN_PRIMITIVE_CACHE_CAPACITY = String(n);
  process.env.LRU_CACHE_CAPACITY = String(n);
}
export function getNumThreads(): number {
  return native.getNumThreads();
}
/** Live tensors and their bytes, per device (storage shared by views is counted once). */
export function memory(): MemoryInfo {
  return native.memory();
}

/**
 * The caching allocator behind CPU tensors: freed blocks of 256 KiB or more are kept for reuse instead of
 * going back to the OS (fresh pages cost the kernel a zeroing pass each time), up to a limit that
 * defaults to a quarter of physical memory (TORCHBERT_CPU_CACHE_MB; TORCHBERT_CPU_CACHE=0 at start-up
 * turns the allocator off). Like torch.cuda.empty_cache(), emptyCache() returns what is cached.
 */
export const cpuCache = {
  stats: (): CpuCacheStats => native.cpuCacheStats(),
  emptyCache: (): void => native.cpuEmptyCache(),
  /** Caps the bytes kept (past it, the blocks freed longest ago go first); lowering it frees the largest cached blocks first. */
  setLimit: (bytes: number): void => native.setCpuCacheLimit(bytes),
  /** Restarts peakInUseBytes from what is in use now: the peak after a piece of work, less inUseBytes before it, is its working set. */
  resetPeak: (): void => native.cpuCacheResetPeak(),
};

/**
 * The GEMM shapes the linear layers of models built here have met on the CPU, and for each whether
 * libtorch's BLAS or oneDNN was faster in its first calls (and is used from then on).
 */
export function linearTuning(): LinearTuningEntry[] {
  return native.linearTuning();
}

/**
 * The attention shapes inference copies (prepack(), quantizeDynamic()) have met on the CPU, and for each
 * whether ATen's fused kernel or the spelled-out steps were faster in its first calls (and run from then on).
 */
export function attentionTuning(): AttentionTuningEntry[] {
  return native.attentionTuning();
}

/**
 * What torchbert::attention runs in the inference copies: 'auto' (whichever measured faster per shape),
 * 'sdpa' (ATen's fused kernel, op for op what torch runs) or 'math' (the spelled-out steps). Sets it when
 * given (for every thread; TORCHBERT_ATTENTION sets it at startup); returns the mode in effect.
 */
export function attentionMode(mode?: 'auto' | 'sdpa' | 'math'): 'auto' | 'sdpa' | 'math' {
  return native.attentionMode(mode);
}

export const cuda = {
  isAvailable: (): boolean => native.cudaIsAvailable(),
  deviceCount: (): number => native.cudaDeviceCount(),
  synchronize: (): void => native.cudaSynchronize(),
};

/** Versions, library paths, CUDA and threads (what `npx torchbert info` prints). */
export function info(): Record<string, unknown> {
  const b = native.buildInfo();
  return {
    torchbert: require('../package.json').version,
    node: process.version,
    napiVersion: b.napiVersion,
    libtorch: { version: b.torchVersion, ...loadInfo.libtorch, cxx11Abi: b.cxx11Abi },
    addon: loadInfo.addon,
    prebuilt: loadInfo.prebuilt,
    cuda: { available: native.cudaIsAvailable(), devices: native.cudaDeviceCount() },
    // tb.distributed: whether this build has c10d's Gloo process group, and NCCL's
    distributed: native.distInfo(),
    threads: native.getNumThreads(),
    parallel: b.parallelInfo.trim(),
    // async jobs run on one compute thread (TORCHBERT_COMPUTE_THREAD=0: on libuv's pool)
    computeThread: b.computeThread,
    // whether torchbert::linear's grad-weight GEMM may run on oneDNN (its matmul needs AVX-512 or AVX-NE-CONVERT here; else ATen's)
    onednnGradMatmul: b.onednnGradMatmul,
    // compiled shapes oneDNN and ideep keep (64 unless exported or set: a server's changing batch shapes otherwise fill 1,024 each)
    primitiveCaches: { onednn: Number(process.env.ONEDNN_PRIMITIVE_CACHE_CAPACITY), ideep: Number(process.env.LRU_CACHE_CAPACITY) },
    cpu: cpuInfo(),
    // prepack()'s GEMM per shape and row count, as measured on this machine (the tuning cache)
    linearPlan: { cache: tuningCachePath(), shapes: cachedPlans() },
    // quantizeDynamic()'s engines per shape, as chosen in this process
    int8Plans: int8Plans(),
  };
}
