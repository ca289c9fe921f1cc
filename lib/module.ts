// ScriptModule: a TorchScript module, loaded from a .pt or built natively from TorchScript source.
// Method calls run on the compute thread, load and save on libuv's pool; *Sync twins are for code already off the loop.
import * as fs from 'fs';
import { native, NativeModule, Handle } from './binding';
import { Tensor, DType } from './tensor';
import { registerInScope } from './scope';
import { writeFileAtomic, writeFileAtomicSync } from './fsutil';
import { DisposedError } from './errors';

/** Values that cross into TorchScript methods and back. */
export type IValue = Tensor | number | boolean | string | null | undefined | IValue[] | { [key: string]: IValue };

// Untyped positions (tuples, dicts, Any) carry tensors as BigInt handles so they are not confused with ints.
function toNative(v: IValue): unknown {
  if (v instanceof Tensor) return BigInt(v._handle);
  if (Array.isArray(v)) return v.map(toNative);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = toNative(x);
    return o;
  }
  return v;
}

export function fromNative(v: unknown): IValue {
  if (typeof v === 'bigint') return Tensor._wrap(Number(v));
  if (Array.isArray(v)) return v.map(fromNative);
  if (v && typeof v === 'object') {
    const o: Record<string, IValue> = {};
    for (const [k, x] of Object.entries(v)) o[k] = fromNative(x);
    return o;
  }
  return v as IValue;
}

const finalizer = new FinalizationRegistry<NativeModule>((m) => {
  try {
    m.dispose();
  } catch {
    /* busy: the worker holds its own reference */
  }
});

function checkPath(p: unknown, what = 'path'): string {
  if (typeof p !== 'string' || p.length === 0) throw new TypeError(`${what} must be a non-empty string`);
  return p;
}

export class ScriptModule {
  #m: NativeModule | null;

  /** Creates an empty module named `name`; add parameters, submodules and methods, then call it. */
  constructor(name: string);
  /** @internal */
  constructor(native: NativeModule);
  constructor(arg: string | NativeModule) {
    if (typeof arg === 'string') {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(arg)) throw new TypeError(`module name must be an identifier, got '${arg}'`);
      this.#m = new native.NativeModule(arg);
    } else {
      this.#m = arg;
    }
    finalizer.register(this, this.#m, this);
    registerInScope(this);
  }

  get #native(): NativeModule {
    if (!this.#m) throw new DisposedError('ScriptModule has been disposed');
    return this.#m;
  }

  /** Loads a module saved by torch.jit.save (Python) or save() here, on a worker thread. */
  static async load(file: string, opts: { device?: string } = {}): Promise<ScriptModule> {
    checkPath(file);
    if (!fs.existsSync(file)) throw new Error(`ScriptModule.load: no such file '${file}'`);
    return new ScriptModule(await native.NativeModule.load(file, opts.device));
  }
  /**
   * Runs a build (fn) whose new modules share a fresh compilation unit: their class types and compiled
   * methods are freed with the last of those modules, not kept for the life of the process. Model
   * builders use it; modules made outside one go to the process-wide unit.
   */
  static inNewUnit<T>(fn: () => T): T {
    native.beginUnit();
    try {
      return fn();
    } finally {
      native.endUnit();
    }
  }
  static loadSync(file: string, opts: { device?: string } = {}): ScriptModule {
    checkPath(file);
    if (!fs.existsSync(file)) throw new Error(`ScriptModule.loadSync: no such file '${file}'`);
    return new ScriptModule(native.NativeModule.loadSync(file, opts.device));
  }

  /** Saves (atomically) in the TorchScript format that Python's torch.jit.load reads. */
  async save(file: string): Promise<void> {
    checkPath(file);
    await writeFileAtomic(file, (tmp) => this.#native.save(tmp));
  }
  saveSync(file: string): void {
    checkPath(file);
    writeFileAtomicSync(file, (tmp) => this.#native.saveSync(tmp));
  }

  /** Compiles TorchScript source (one or more `def` methods using `self`). */
  define(source: string): this {
    this.#native.define(source);
    return this;
  }
  registerParameter(name: string, t: Tensor, opts: { requiresGrad?: boolean } = {}): this {
    if (opts.requiresGrad !== undefined) t.requiresGrad = opts.requiresGrad;
    this.#native.registerParameter(name, t._handle, false);
    return this;
  }
  registerBuffer(name: string, t: Tensor): this {
    this.#native.registerParameter(name, t._handle, true);
    return this;
  }
  registerModule(name: string, m: ScriptModule): this {
    this.#native.registerModule(name, m.#native);
    return this;
  }
  /** Adds a typed attribute: 'int' | 'float' | 'bool' | 'str' | 'Tensor' | 'Optional[Tensor]' | 'List[int]' | ... */
  registerAttribute(name: string, type: string, value: IValue): this {
    this.#native.registerAttribute(name, type, toNative(value));
    return this;
  }
  /**
   * Registers (or replaces) attribute `name` as an int8 dynamically quantised linear layer packed from
   * `weight` [out, in] and `bias`: per-output-channel symmetric scales, for
   * `ops.quantized.linear_dynamic(x, self.<name>, True)` in TorchScript (CPU only).
   */
  packLinear(name: string, weight: Tensor, bias?: Tensor | null, engine?: 'fbgemm' | 'onednn' | 'x86'): this {
    this.#native.packLinear(name, weight._handle, bias ? bias._handle : null, engine ?? '');
    return this;
  }
  /** Sets attribute `name` to the object `from` holds under that name, shared, whatever its type (an int8 layer's packed weights). */
  shareAttr(name: string, from: ScriptModule): this {
    this.#native.shareAttr(name, from.#native);
    return this;
  }
  setAttr(name: string, value: IValue): void {
    this.#native.setAttr(name, toNative(value));
  }
  getAttr(name: string): IValue | ScriptModule {
    const v = this.#native.getAttr(name);
    if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as NativeModule).callSync === 'function') return new ScriptModule(v as NativeModule);
    return fromNative(v);
  }
  hasAttr(name: string): boolean {
    return this.#native.hasAttr(name);
  }

  /** Runs forward on the compute thread. */
  forward(...args: IValue[]): Promise<IValue> {
    return this.call('forward', ...args);
  }
  forwardSync(...args: IValue[]): IValue {
    return this.callSync('forward', ...args);
  }
  /** Runs a named method on the compute thread. */
  async call(method: string, ...args: IValue[]): Promise<IValue> {
    return fromNative(await this.#native.call(method, args.map(toNative)));
  }
  callSync(method: string, ...args: IValue[]): IValue {
    return fromNative(this.#native.callSync(method, args.map(toNative)));
  }
  get methodNames(): string[] {
    return this.#native.methodNames();
  }
  methodSchema(name = 'forward'): string {
    return this.#native.methodSchema(name);
  }
  /** The optimised graph of a method, for debugging. */
  graph(method = 'forward'): string {
    return this.#native.code(method);
  }

  namedParameters(recurse = true): [string, Tensor][] {
    return this.#native.namedParameters(recurse).map(([n, h]: [string, Handle]) => [n, Tensor._wrap(h)]);
  }
  parameters(recurse = true): Tensor[] {
    return this.namedParameters(recurse).map(([, t]) => t);
  }
  namedBuffers(recurse = true): [string, Tensor][] {
    return this.#native.namedBuffers(recurse).map(([n, h]: [string, Handle]) => [n, Tensor._wrap(h)]);
  }
  buffers(recurse = true): Tensor[] {
    return this.namedBuffers(recurse).map(([, t]) => t);
  }
  namedChildren(): [string, ScriptModule][] {
    return this.#native.namedChildren().map(([n, m]) => [n, new ScriptModule(m)]);
  }
  /** Parameters and buffers by dotted name (HF's state_dict naming). */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  train(on = true): this {
    this.#native.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  get training(): boolean {
    return this.#native.isTraining();
  }
  /** Moves and/or casts parameters and buffers in place. */
  to(target: string | { device?: string; dtype?: DType }): this {
    const t = typeof target === 'string' ? (/^(cpu|cuda)/.test(target) ? { device: target } : { dtype: target as DType }) : target;
    this.#native.to(t.device, t.dtype);
    return this;
  }
  clone(): ScriptModule {
    return new ScriptModule(this.#native.clone());
  }
  /** An inference-only copy with weights folded into the graph (torch.jit.freeze). */
  freeze(opts: { preserve?: string[]; optimizeForInference?: boolean } = {}): ScriptModule {
    return new ScriptModule(this.#native.freeze(opts.preserve ?? [], !!opts.optimizeForInference));
  }
  get typeName(): string {
    return this.#native.typeName();
  }
  get isBusy(): boolean {
    return this.#m !== null && this.#m.isBusy();
  }
  get isDisposed(): boolean {
    return this.#m === null;
  }
  /** Releases this handle on the module now (tensors it returned stay valid). */
  dispose(): void {
    if (this.#m) {
      this.#m.dispose();
      finalizer.unregister(this);
      this.#m = null;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
