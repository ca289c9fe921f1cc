// tb.distributed, shaped like torch.distributed: a process group over PyTorch's own c10d engine
// (TCPStore / FileStore rendezvous, Gloo between CPU processes, NCCL between GPUs on CUDA builds), collectives that run off the event loop
// and resolve when done, and small-object exchange for decisions every rank must share.
import { loadInfo, native } from '../binding';
import { Tensor, tensor as makeTensor, zeros } from '../tensor';

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'min' | 'max' | 'product';

export interface InitOptions {
  /**
   * 'gloo' (CPU tensors, and CUDA tensors through host memory) or 'nccl' (CUDA tensors through NCCL, CPU
   * tensors through Gloo; needs a CUDA build with NCCL and a GPU)
   */
  backend?: Backend;
  /** with 'nccl': this rank's GPU (default $LOCAL_RANK as torchrun sets it, else the rank modulo the GPUs) */
  localRank?: number;
  /** 'env://' (default: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE as torchrun sets them), 'tcp://host:port' or 'file:///path' */
  initMethod?: string;
  rank?: number;
  worldSize?: number;
  /** how long rendezvous and each collective may wait for the others (default 30 minutes, as PyTorch) */
  timeoutMs?: number;
  /** the address this rank listens on for its peers (default: $TORCHBERT_LOCAL_ADDR, else MASTER_ADDR when it is a loopback address, else the host's) */
  localAddr?: string;
}

/** A subset of the ranks (newGroup); collectives take it as `group`. */
export class ProcessGroup {
  constructor(
    readonly id: number,
    /** global ranks, in group order */
    readonly ranks: readonly number[],
  ) {}
  get size(): number {
    return this.ranks.length;
  }
}

let world: { rank: number; size: number; backend: Backend; device: string; group: ProcessGroup } | null = null;

const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`initProcessGroup: environment variable ${name} must be a non-negative integer, got '${v}'`);
  return n;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1';
}

/** Whether this build has the distributed engine (Gloo; see scripts/find-libtorch.js glooInclude). */
export function isAvailable(): boolean {
  return native.distInfo().available;
}

/** Whether this build has NCCL process groups (a CUDA libtorch with NCCL's headers at build time; see ncclFlags). */
export function isNcclAvailable(): boolean {
  return native.distInfo().nccl;
}

export function isInitialized(): boolean {
  return world !== null;
}

function need(what: string): NonNullable<typeof world> {
  if (!world) throw new Error(`${what}: the default process group is not initialised (call tb.distributed.initProcessGroup first)`);
  return world;
}

/**
 * Joins the default process group: every rank calls it with the same world size; it resolves once all
 * have joined (or rejects after timeoutMs, naming what was missing).
 */
export async function initProcessGroup(opts: InitOptions = {}): Promise<void> {
  if (world) throw new Error('initProcessGroup: the default process group is already initialised (destroyProcessGroup first)');
  if (!isAvailable()) native.distInit('tcp', '', 0, '', 0, 1, 0, ''); // throws the build's explanation
  const backend = opts.backend ?? 'gloo';
  if (backend !== 'gloo' && backend !== 'nccl') throw new TypeError(`initProcessGroup: backend must be 'gloo' or 'nccl', got '${backend}'`);
  const gpus = backend === 'nccl' && native.cudaIsAvailable() ? native.cudaDeviceCount() : 0;
  if (backend === 'nccl') {
    if (!isNcclAvailable())
      throw new Error(`initProcessGroup: backend 'nccl' needs a CUDA build of libtorch with NCCL; this build (libtorch ${loadInfo.libtorch?.flavour ?? 'unknown'}) has Gloo only (use backend 'gloo')`);
    if (gpus === 0) throw new Error("initProcessGroup: backend 'nccl' needs a GPU, and CUDA reports none on this machine (use backend 'gloo')");
  }
  const rank = opts.rank ?? envInt('RANK');
  const size = opts.worldSize ?? envInt('WORLD_SIZE');
  if (rank === undefined || size === undefined) throw new TypeError('initProcessGroup: rank and worldSize are needed (options, or RANK and WORLD_SIZE as torchrun sets them)');
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`initProcessGroup: worldSize must be a positive integer, got ${size}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new RangeError(`initProcessGroup: rank must be an integer in [0, ${size}), got ${rank}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // With NCCL, this rank's GPU; -1 with Gloo.
  const device = backend === 'nccl' ? (opts.localRank ?? envInt('LOCAL_RANK') ?? rank % gpus) : -1;
  if (backend === 'nccl' && device >= gpus) throw new RangeError(`initProcessGroup: local rank ${device} has no GPU of its own (this machine has ${gpus}); start at most ${gpus} ranks per machine with 'nccl'`);
  if (!(timeoutMs > 0)) throw new RangeError(`initProcessGroup: timeoutMs must be positive, got ${timeoutMs}`);
  const method = opts.initMethod ?? 'env://';
  let kind: 'tcp' | 'file';
  let host = '';
  let port = 0;
  let file = '';
  if (method === 'env://') {
    kind = 'tcp';
    host = process.env.MASTER_ADDR ?? '';
    port = envInt('MASTER_PORT') ?? -1;
    if (!host || port < 0) throw new TypeError('initProcessGroup: env:// needs MASTER_ADDR and MASTER_PORT in the environment');
  } else if (method.startsWith('tcp://')) {
    kind = 'tcp';
    const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(method);
    if (!m) throw new TypeError(`initProcessGroup: expected tcp://host:port, got '${method}'`);
    host = m[1].replace(/^\[|\]$/g, '');
    port = Number(m[2]);
  } else if (method.startsWith('file://')) {
    kind = 'file';
    file = method.slice('file://'.length);
    if (!file) throw new TypeError(`initProcessGroup: expected file:///path, got '${method}'`);
  } else throw new TypeError(`initProcessGroup: initMethod must be env://, tcp://host:port or file:///path, got '${method}'`);
  if (kind === 'tcp' && (port < 1 || port > 65535)) throw new RangeError(`initProcessGroup: port must be in 1..65535, got ${port}`);
  const bind = opts.localAddr ?? process.env.TORCHBERT_LOCAL_ADDR ?? (kind === 'tcp' && isLoopback(host) ? host : kind === 'file' ? '127.0.0.1' : '');
  try {
    await native.distInit(kind, host, port, file, rank, size, timeoutMs, bind, backend === 'nccl', device);
  } catch (e) {
    const where = kind === 'tcp' ? `${host}:${port}` : file;
    throw new Error(`initProcessGroup: rank ${rank} of ${size} could not join the group at ${where} within ${timeoutMs} ms: ${(e as Error).message}`, { cause: e });
  }
  world = { rank, size, backend, device: backend === 'nccl' ? `cuda:${device}` : 'cpu', group: new ProcessGroup(0, Array.from({ length: size }, (_, i) => i)) };
}

/** Leaves the process group; collectives fail afterwards until initProcessGroup again. */
export async function destroyProcessGroup(): Promise<void> {
  native.distDestroy();
  world = null;
}

export function getRank(group?: ProcessGroup): number {
  const w = need('getRank');
  return group ? group.ranks.indexOf(w.rank) : w.rank;
}
export function getWorldSize(group?: ProcessGroup): number {
  return group ? group.size : need('getWorldSize').size;
}
export function getBackend(): Backend {
  return need('getBackend').backend;
}
/** Where this rank's model and batches belong: `cuda:<local rank>` with NCCL, else 'cpu'. */
export function device(): string {
  return need('device').device;
}

/** A group of some ranks. Every rank of the world calls it (as torch.distributed.new_group), members or not. */
export async function newGroup(ranks: number[]): Promise<ProcessGroup> {
  const w = need('newGroup');
  const sorted = [...new Set(ranks)].sort((a, b) => a - b);
  if (sorted.length !== ranks.length) throw new TypeError(`newGroup: ranks must be distinct, got ${JSON.stringify(ranks)}`);
  for (const r of sorted) if (!Number.isInteger(r) || r < 0 || r >= w.size) throw new RangeError(`newGroup: rank ${r} is outside the world of ${w.size}`);
  return new ProcessGroup(await native.distNewGroup(sorted), sorted);
}

function gid(what: string, group?: ProcessGroup): number {
  const w = need(what);
  if (group && !group.ranks.includes(w.rank)) throw new Error(`${what}: rank ${w.rank} is not a member of the group [${group.ranks.join(', ')}]`);
  return group ? group.id : 0;
}

const handles = (ts: Tensor[]) => ts.map((t) => t._handle);

/** Reduces `t` across the group in place (sum by default; avg divides the sum by the group size). */
export async function allReduce(t: Tensor, opts: { op?: ReduceOp; group?: ProcessGroup } = {}): Promise<void> {
  await native.distAllReduce(gid('allReduce', opts.group), t._handle, opts.op ?? 'sum');
}

/** Copies `t` from rank `src` (a global rank) into `t` on every other rank. */
export async function broadcast(t: Tensor, src: number, opts: { group?: ProcessGroup } = {}): Promise<void> {
  await native.distBroadcast(gid('broadcast', opts.group), t._handle, src);
}

/** Fills outputs[i] with rank i's `t` (one output per group rank, each shaped like `t`). */
export async function allGather(outputs: Tensor[], t: Tensor, opts: { group?: ProcessGroup } = {}): Promise<void> {
  await native.distAllGather(gid('allGather', opts.group), handles(outputs), t._handle);
}

/** Reduces inputs[i] across the group into rank i's `output`. */
export async function reduceScatter(output: Tensor, inputs: Tensor[], opts: { op?: ReduceOp; group?: ProcessGroup } = {}): Promise<void> {
  await native.distReduceScatter(gid('reduceScatter', opts.group), output._handle, handles(inputs), opts.op ?? 'sum');
}

/** Collects every rank's `t` into gatherList on rank `dst` (gatherList only there). */
export async function gather(t: Tensor, opts: { dst?: number; gatherList?: Tensor[]; group?: ProcessGroup } = {}): Promise<void> {
  const dst = opts.dst ?? 0;
  const mine = getRank() === dst;
  if (mine !== !!opts.gatherList) throw new TypeError(mine ? 'gather: the destination rank must pass gatherList' : 'gather: only the destination rank passes gatherList');
  await native.distGather(gid('gather', opts.group), t._handle, opts.gatherList ? handles(opts.gatherList) : null, dst);
}

/** Sends scatterList[i] from rank `src` into rank i's `t` (scatterList only on src). */
export async function scatter(t: Tensor, opts: { src?: number; scatterList?: Tensor[]; group?: ProcessGroup } = {}): Promise<void> {
  const src = opts.src ?? 0;
  const mine = getRank() === src;
  if (mine !== !!opts.scatterList) throw new TypeError(mine ? 'scatter: the source rank must pass scatterList' : 'scatter: only the source rank passes scatterList');
  await native.distScatter(gid('scatter', opts.group), t._handle, opts.scatterList ? handles(opts.scatterList) : null, src);
}

export async function send(t: Tensor, dst: number, opts: { tag?: number; group?: ProcessGroup } = {}): Promise<void> {
  await native.distSend(gid('send', opts.group), t._handle, dst, opts.tag ?? 0);
}
export async function recv(t: Tensor, src: number, opts: { tag?: number; group?: ProcessGroup } = {}): Promise<void> {
  await native.distRecv(gid('recv', opts.group), t._handle, src, opts.tag ?? 0);
}

/** Resolves once every rank of the group has reached it. */
export async function barrier(opts: { group?: ProcessGroup } = {}): Promise<void> {
  await native.distBarrier(gid('barrier', opts.group));
}

function encode(obj: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(obj) ?? 'null');
}
function decode(bytes: Uint8Array): unknown {
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** Every rank's JSON value, in rank order (small values: decisions, metrics). */
export async function allGatherObject<T>(obj: T, opts: { group?: ProcessGroup } = {}): Promise<T[]> {
  const n = getWorldSize(opts.group);
  const bytes = encode(obj);
  const len = makeTensor([BigInt(bytes.length)]);
  const lens = Array.from({ length: n }, () => zeros([1], { dtype: 'int64' }));
  await allGather(lens, len, opts);
  const sizes = lens.map((t) => Number(t.item()));
  const max = Math.max(...sizes);
  const padded = new Uint8Array(max);
  padded.set(bytes);
  const outs = Array.from({ length: n }, () => zeros([max], { dtype: 'uint8' }));
  const mine = makeTensor(padded, { dtype: 'uint8' });
  await allGather(outs, mine, opts);
  const res = outs.map((t, i) => decode((t.dataSync() as Uint8Array).subarray(0, sizes[i])) as T);
  for (const t of [len, mine, ...lens, ...outs]) t.dispose();
  return res;
}

/**
 * Runs `work` on this rank's share of `items` (every world-size-th, from its rank) and gives every rank all
 * the results in the order of `items`: evaluation sharded over the ranks, with metrics then computed on the
 * whole set exactly as one process computes them. Results must be JSON values. Every rank must call it
 * with the same items. Without a process group of several ranks it runs every item here.
 */
export async function shardedMap<I, O>(items: readonly I[], work: (item: I, index: number) => Promise<O>, opts: { group?: ProcessGroup } = {}): Promise<O[]> {
  const world = isInitialized() ? getWorldSize(opts.group) : 1;
  const rank = world > 1 ? getRank(opts.group) : 0;
  const mine: [number, O][] = [];
  for (let i = rank; i < items.length; i += world) mine.push([i, await work(items[i], i)]);
  if (world === 1) return mine.map(([, o]) => o);
  const out = new Array<O>(items.length);
  for (const part of await allGatherObject(mine, opts)) for (const [i, o] of part) out[i] = o;
  return out;
}

/** Rank `src`'s JSON value on every rank. */
export async function broadcastObject<T>(obj: T, src = 0, opts: { group?: ProcessGroup } = {}): Promise<T> {
  const mine = getRank() === src;
  const bytes = mine ? encode(obj) : new Uint8Array(0);
  const len = makeTensor([BigInt(bytes.length)]);
  await broadcast(len, src, opts);
  const n = Number(len.item());
  const buf = mine ? makeTensor(bytes, { dtype: 'uint8' }) : zeros([n], { dtype: 'uint8' });
  if (n > 0) await broadcast(buf, src, opts);
  const res = decode(buf.dataSync() as Uint8Array) as T;
  len.dispose();
  buf.dispose();
  return res;
}
