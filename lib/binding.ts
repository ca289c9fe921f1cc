// The only file that loads the native addon; declares its typed interface. Tensors cross as numeric
// handles (BigInt in untyped positions such as TorchScript method results); see native/tensor.h.
import * as fs from 'fs';
import * as path from 'path';
import { LibtorchNotFoundError, TorchError } from './errors';

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

export interface TensorEntry {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface Binding {
  setErrorClass(cls: unknown): void;
  release(h: Handle): void;
  memory(): MemoryInfo;
  isAlive(h: Handle): boolean;
  shape(h: Handle): number[];
  strides(h: Handle): number[];
  dtype(h: Handle): string;
  device(h: Handle): string;
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
  isGradEnabled(): boolean;
  manualSeed(seed: number | bigint): void;
  getRngState(): Handle;
  setRngState(state: Handle): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  cudaIsAvailable(): boolean;
  cudaDeviceCount(): number;
  cudaSynchronize(): void;
  buildInfo(): { torchVersion: string; parallelInfo: string; config: string; cxx11Abi: boolean; napiVersion: number };
  opHandle(name: string): number;
  opSchema(op: number): string;
  callOp(op: number, ...args: Arg[]): unknown;
  callOpInplace(op: number, ...args: Arg[]): void;
  callOpAsync(op: number, ...args: Arg[]): Promise<unknown>;
  NativeModule: NativeModuleClass;
  readTensors(path: string, dataStart: number, entries: TensorEntry[], device: string | undefined, async: true): Promise<Handle[]>;
  readTensors(path: string, dataStart: number, entries: TensorEntry[], device: string | undefined, async: false): Handle[];
  writeTensors(path: string, header: Uint8Array, tensors: Handle[], async: true): Promise<void>;
  writeTensors(path: string, header: Uint8Array, tensors: Handle[], async: false): void;
}

const root = path.resolve(__dirname, '..');

/** Where the addon was loaded from and which libtorch it found, for `torchbert info`. */
export const loadInfo: { addon: string; libtorch: ReturnType<typeof locate> } = { addon: '', libtorch: null };

function locate(): { source: string; root: string; lib: string; version: string; flavour: string } | null {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { findLibtorch } = require(path.join(root, 'scripts', 'find-libtorch.js'));
  return findLibtorch();
}

function candidates(): string[] {
  const out: string[] = [];
  if (process.env.TORCHBERT_ADDON) out.push(path.resolve(process.env.TORCHBERT_ADDON));
  out.push(path.join(root, 'build', 'Release', 'torchbert.node'));
  // Prebuilds (issue: npm install with prebuilt binaries) are chosen by scripts/install.js into build/.
  return out;
}

function load(): Binding {
  // Large CPU allocations on transparent huge pages (a c10 allocator switch read at first use):
  // far fewer page faults for activations and 100 MB copies. Set THP_MEM_ALLOC_ENABLE=0 to opt out.
  if (process.env.THP_MEM_ALLOC_ENABLE === undefined) process.env.THP_MEM_ALLOC_ENABLE = '1';
  const found = candidates().find((p) => fs.existsSync(p));
  let libtorch: ReturnType<typeof locate> = null;
  try {
    libtorch = locate();
  } catch (e) {
    throw new LibtorchNotFoundError((e as Error).message);
  }
  loadInfo.libtorch = libtorch;
  if (!found) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { HOW_TO_GET } = require(path.join(root, 'scripts', 'find-libtorch.js'));
    const why = libtorch
      ? `libtorch ${libtorch.version} (${libtorch.flavour}) was found at ${libtorch.root}, but the addon is not built. Run: npm run build:native`
      : `libtorch was not found.\n${HOW_TO_GET}`;
    throw new LibtorchNotFoundError(`torchbert native addon not found (looked in ${candidates().join(', ')}). ${why}`);
  }
  loadInfo.addon = found;
  let binding: Binding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(found) as Binding;
  } catch (e) {
    const msg = (e as Error).message;
    const hint = libtorch
      ? `The addon was built for a different libtorch than the one found (${libtorch.version} ${libtorch.flavour} at ${libtorch.root}). Rebuild it with: npm run build:native, or set LIBTORCH to the libtorch it was built for.`
      : 'libtorch was not found: set LIBTORCH or pip install torch==2.13.0.';
    throw new LibtorchNotFoundError(`failed to load the torchbert addon ${found}: ${msg}\n${hint}`);
  }
  binding.setErrorClass(TorchError);
  return binding;
}

export const native: Binding = load();
