// The Tensor class: a typed, PyTorch-shaped view of a native at::Tensor. Every op is an ATen operator
// called through the dispatcher (native/ops.cc); this file only picks overloads and validates input.
import { native, Handle } from './binding';
import { registerInScope } from './scope';
import { formatTensor } from './format';
import { DisposedError } from './errors';

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int32' | 'int64' | 'int16' | 'int8' | 'uint8' | 'bool';
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type Shape = readonly number[];
export type Scalar = number | boolean | bigint;
export type TensorLike = Tensor | Scalar;
export type NestedArray<T> = T | NestedArray<T>[];

export interface TypedArrayFor {
  float32: Float32Array;
  float64: Float64Array;
  float16: Float32Array;
  bfloat16: Float32Array;
  int32: Int32Array;
  int64: BigInt64Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}
export type AnyTypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/** The one table of dtypes: bytes per element, whether floating, and the code safetensors files use. */
export const DTYPE_INFO: Readonly<Record<DType, { bytes: number; floating: boolean; safetensors: string }>> = {
  float32: { bytes: 4, floating: true, safetensors: 'F32' }, float64: { bytes: 8, floating: true, safetensors: 'F64' },
  float16: { bytes: 2, floating: true, safetensors: 'F16' }, bfloat16: { bytes: 2, floating: true, safetensors: 'BF16' },
  int32: { bytes: 4, floating: false, safetensors: 'I32' }, int64: { bytes: 8, floating: false, safetensors: 'I64' },
  int16: { bytes: 2, floating: false, safetensors: 'I16' }, int8: { bytes: 1, floating: false, safetensors: 'I8' },
  uint8: { bytes: 1, floating: false, safetensors: 'U8' }, bool: { bytes: 1, floating: false, safetensors: 'BOOL' },
};
export const DTYPES: readonly DType[] = Object.keys(DTYPE_INFO) as DType[];
const FLOATING = new Set<DType>(DTYPES.filter((d) => DTYPE_INFO[d].floating));

export interface TensorOptions {
  dtype?: DType;
  device?: Device | string;
  requiresGrad?: boolean;
}

/** An ATen operator resolved once by name, then called through the dispatcher. */
/**
 * A libtorch operator by schema name. Arguments follow its schema: Tensors (or lists of them) for its
 * Tensor arguments, numbers, booleans, strings, arrays, null for None.
 */
class Op {
  #id = -1;
  constructor(readonly name: string) {}
  get id(): number {
    if (this.#id < 0) this.#id = native.opHandle(this.name);
    return this.#id;
  }
  /** Calls an op whose result is one tensor. */
  t(...args: unknown[]): Tensor {
    return Tensor._wrap(native.callOp(this.id, ...handles(args)) as Handle);
  }
  /** Calls an op whose result is a list or tuple of tensors. */
  ts(...args: unknown[]): Tensor[] {
    return (native.callOp(this.id, ...handles(args)) as Handle[]).map((h) => Tensor._wrap(h));
  }
  raw(...args: unknown[]): unknown {
    return native.callOp(this.id, ...handles(args));
  }
  inplace(...args: unknown[]): void {
    native.callOpInplace(this.id, ...handles(args));
  }
  /** Runs the op on the compute thread (for long kernels such as an optimizer step); results come back as handles. */
  async(...args: unknown[]): Promise<unknown> {
    return native.callOpAsync(this.id, ...handles(args));
  }
  /** async() for an op whose result is one tensor. */
  async tAsync(...args: unknown[]): Promise<Tensor> {
    return Tensor._wrap((await this.async(...args)) as Handle);
  }
}
/** Tensor arguments (and lists of them) as the native call takes them: handles, in place of the rest array. */
function handles(args: unknown[]): unknown[] {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a instanceof Tensor) args[i] = handleOf(a);
    else if (Array.isArray(a) && a.length > 0 && a[0] instanceof Tensor) args[i] = (a as Tensor[]).map(handleOf);
  }
  return args;
}
const ops = new Map<string, Op>();
/** Looks up an ATen operator by its schema name, e.g. `aten::add.Tensor`. */
export function op(name: string): Op {
  let o = ops.get(name);
  if (!o) ops.set(name, (o = new Op(name)));
  return o;
}

// GC backstop: a tensor that is collected without dispose() is freed here. Handles carry a generation,
// so releasing an already disposed (and possibly reused) handle is a no-op; no unregister is needed.
const finalizer = new FinalizationRegistry<Handle>((h) => native.release(h));
// Registering costs about 1 us, as much as a small op, and most tensors are disposed at once: new
// tensors wait in a nursery and only those still alive when the current job ends (or when the nursery
// fills) are registered. Until then the nursery keeps them reachable, so nothing leaks.
let nursery: Tensor[] = [];
let flushQueued = false;
const NURSERY_MAX = 4096;
function flushNursery(): void {
  const batch = nursery;
  nursery = [];
  flushQueued = false;
  for (const t of batch) if (!t.isDisposed) finalizer.register(t, t._handle);
}

let handleOf: (t: Tensor) => Handle;

function checkDim(name: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`);
}

function checkShape(shape: unknown, what = 'shape'): number[] {
  const s = typeof shape === 'number' ? [shape] : shape;
  if (!Array.isArray(s)) throw new TypeError(`${what} must be an array of non-negative integers`);
  for (const [i, d] of s.entries()) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) throw new RangeError(`${what}[${i}] must be a non-negative integer, got ${String(d)}`);
  }
  return s as number[];
}

function checkDtype(d: unknown): DType {
  if (typeof d !== 'string' || !DTYPES.includes(d as DType)) throw new TypeError(`unknown dtype '${String(d)}' (expected one of ${DTYPES.join(', ')})`);
  return d as DType;
}

function checkDevice(d: unknown): string {
  if (typeof d !== 'string' || !/^(cpu|cuda)(:\d+)?$/.test(d)) throw new TypeError(`invalid device '${String(d)}' (expected 'cpu', 'cuda' or 'cuda:N')`);
  return d;
}

/** The other operand of a binary op: a Tensor's handle or a scalar. */
function operand(x: TensorLike, what: string): Handle | Scalar {
  if (x instanceof Tensor) return handleOf(x);
  if (typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint') return x;
  throw new TypeError(`${what} must be a Tensor or a number, got ${typeof x}`);
}

/**
 * A multi-dimensional array in libtorch memory, on the CPU or a CUDA device.
 * Free it with `dispose()` (or `using`, or inside `tidy`); the GC is only a backstop.
 */
export class Tensor {
  #h: Handle;
  #shape: number[] | undefined;
  #dtype: DType | undefined;
  #device: string | undefined;

  static {
    handleOf = (t: Tensor) => {
      if (t.#h === 0) throw new DisposedError('Tensor has been disposed');
      return t.#h;
    };
  }

  /** @internal Wraps a native handle the caller owns. */
  static _wrap(h: Handle): Tensor {
    return new Tensor(h);
  }

  private constructor(h: Handle) {
    this.#h = h;
    nursery.push(this);
    if (nursery.length >= NURSERY_MAX) flushNursery();
    else if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flushNursery);
    }
    registerInScope(this);
  }

  /** @internal The native handle (throws after dispose). */
  get _handle(): Handle {
    return handleOf(this);
  }

  #meta(): void {
    const m = native.meta(handleOf(this));
    this.#dtype = m[0] as DType;
    this.#device = m[1];
    this.#shape = m.slice(2) as number[];
  }

  /** Sizes of each dimension (a copy). */
  get shape(): number[] {
    if (!this.#shape) this.#meta();
    return this.#shape!.slice();
  }
  get dtype(): DType {
    if (!this.#dtype) this.#meta();
    return this.#dtype!;
  }
  get device(): string {
    if (!this.#device) this.#meta();
    return this.#device!;
  }
  get ndim(): number {
    if (!this.#shape) this.#meta();
    return this.#shape!.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** Size of one dimension (negative counts from the end). */
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`dim ${dim} out of range for a ${s.length}-d tensor`);
    return s[d];
  }
  get strides(): number[] {
    return native.strides(handleOf(this));
  }
  get isContiguous(): boolean {
    return native.isContiguous(handleOf(this));
  }
  get isDisposed(): boolean {
    return this.#h === 0;
  }
  get isFloatingPoint(): boolean {
    return FLOATING.has(this.dtype);
  }

  // ---------- lifetime ----------

  /** Frees the native memory now. Idempotent; any later use throws. */
  dispose(): void {
    if (this.#h !== 0) {
      native.release(this.#h);
      this.#h = 0;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---------- autograd ----------

  get requiresGrad(): boolean {
    return native.requiresGrad(handleOf(this));
  }
  set requiresGrad(on: boolean) {
    native.setRequiresGrad(handleOf(this), on);
  }
  /** Sets requiresGrad in place and returns this tensor. */
  requiresGrad_(on = true): this {
    native.setRequiresGrad(handleOf(this), on);
    return this;
  }
  /** The accumulated gradient (a new Tensor sharing its memory), or null. */
  get grad(): Tensor | null {
    const g = native.grad(handleOf(this));
    return g === null ? null : Tensor._wrap(g);
  }
  set grad(g: Tensor | null) {
    native.setGrad(handleOf(this), g === null ? null : handleOf(g));
  }
  get isLeaf(): boolean {
    return native.isLeaf(handleOf(this));
  }
  /** Computes gradients on the compute thread. */
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): Promise<void> {
    return native.backward(handleOf(this), gradient ? handleOf(gradient) : undefined, !!opts.retainGraph, !!opts.createGraph, true);
  }
  backwardSync(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward(handleOf(this), gradient ? handleOf(gradient) : undefined, !!opts.retainGraph, !!opts.createGraph, false);
  }
  detach(): Tensor {
    return op('aten::detach').t(handleOf(this));
  }
  detach_(): this {
    op('aten::detach_').inplace(handleOf(this));
    return this;
  }

  // ---------- reading back ----------

  /** A copy of the data as a TypedArray (float16/bfloat16 come back as Float32Array), off the event loop. */
  async data<D extends DType = DType>(): Promise<TypedArrayFor[D]> {
    return (await native.toTypedArrayAsync(handleOf(this))) as TypedArrayFor[D];
  }
  dataSync<D extends DType = DType>(): TypedArrayFor[D] {
    return native.toTypedArray(handleOf(this)) as TypedArrayFor[D];
  }
  /** The single value of a one-element tensor. */
  item(): number | boolean {
    return native.item(handleOf(this));
  }
  /** Nested arrays (numbers; bigint for int64; booleans for bool), like PyTorch's tolist(). */
  toArraySync(): NestedArray<number | bigint | boolean> {
    return nest(this.dataSync(), this.shape, this.dtype);
  }
  async toArray(): Promise<NestedArray<number | bigint | boolean>> {
    return nest(await this.data(), this.shape, this.dtype);
  }
  toString(): string {
    return formatTensor(this.dataSync(), this.shape, this.dtype, this.device, this.requiresGrad);
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.isDisposed ? 'tensor(<disposed>)' : this.toString();
  }

  // ---------- conversion ----------

  /** Moves and/or casts: `t.to('cuda')`, `t.to('float16')`, `t.to({device, dtype})`. */
  to(target: DType | Device | string | { device?: string; dtype?: DType }, opts: { nonBlocking?: boolean; copy?: boolean } = {}): Tensor {
    let device: string | undefined;
    let dtype: DType | undefined;
    if (typeof target === 'string') {
      if (DTYPES.includes(target as DType)) dtype = target as DType;
      else device = checkDevice(target);
    } else if (target && typeof target === 'object') {
      device = target.device === undefined ? undefined : checkDevice(target.device);
      dtype = target.dtype === undefined ? undefined : checkDtype(target.dtype);
    } else throw new TypeError('to() needs a device, a dtype or {device, dtype}');
    return op('aten::to.dtype_layout').t(handleOf(this), dtype, undefined, device, undefined, !!opts.nonBlocking, !!opts.copy);
  }
  cpu(): Tensor {
    return this.to('cpu');
  }
  cuda(index = 0): Tensor {
    return this.to(`cuda:${index}`);
  }
  float(): Tensor {
    return this.to('float32');
  }
  double(): Tensor {
    return this.to('float64');
  }
  half(): Tensor {
    return this.to('float16');
  }
  long(): Tensor {
    return this.to('int64');
  }
  int(): Tensor {
    return this.to('int32');
  }
  bool(): Tensor {
    return this.to('bool');
  }
  contiguous(): Tensor {
    return op('aten::contiguous').t(handleOf(this));
  }
  clone(): Tensor {
    return op('aten::clone').t(handleOf(this));
  }
  /** Copies src into this tensor in place (broadcasting). */
  copy_(src: Tensor): this {
    op('aten::copy_').inplace(handleOf(this), handleOf(src));
    return this;
  }

  // ---------- arithmetic ----------

  add(other: TensorLike, alpha: number = 1): Tensor {
    return other instanceof Tensor ? op('aten::add.Tensor').t(handleOf(this), handleOf(other), alpha) : op('aten::add.Scalar').t(handleOf(this), operand(other, 'other'), alpha);
  }
  sub(other: TensorLike, alpha: number = 1): Tensor {
    return other instanceof Tensor ? op('aten::sub.Tensor').t(handleOf(this), handleOf(other), alpha) : op('aten::sub.Scalar').t(handleOf(this), operand(other, 'other'), alpha);
  }
  mul(other: TensorLike): Tensor {
    return other instanceof Tensor ? op('aten::mul.Tensor').t(handleOf(this), handleOf(other)) : op('aten::mul.Scalar').t(handleOf(this), operand(other, 'other'));
  }
  div(other: TensorLike, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode !== undefined) {
      return other instanceof Tensor
        ? op('aten::div.Tensor_mode').t(handleOf(this), handleOf(other), roundingMode)
        : op('aten::div.Scalar_mode').t(handleOf(this), operand(other, 'other'), roundingMode);
    }
    return other instanceof Tensor ? op('aten::div.Tensor').t(handleOf(this), handleOf(other)) : op('aten::div.Scalar').t(handleOf(this), operand(other, 'other'));
  }
  pow(exponent: TensorLike): Tensor {
    return exponent instanceof Tensor
      ? op('aten::pow.Tensor_Tensor').t(handleOf(this), handleOf(exponent))
      : op('aten::pow.Tensor_Scalar').t(handleOf(this), operand(exponent, 'exponent'));
  }
  remainder(other: TensorLike): Tensor {
    return other instanceof Tensor ? op('aten::remainder.Tensor').t(handleOf(this), handleOf(other)) : op('aten::remainder.Scalar').t(handleOf(this), operand(other, 'other'));
  }
  neg(): Tensor {
    return op('aten::neg').t(handleOf(this));
  }
  abs(): Tensor {
    return op('aten::abs').t(handleOf(this));
  }
  add_(other: TensorLike, alpha: number = 1): this {
    if (other instanceof Tensor) op('aten::add_.Tensor').inplace(handleOf(this), handleOf(other), alpha);
    else op('aten::add_.Scalar').inplace(handleOf(this), operand(other, 'other'), alpha);
    return this;
  }
  sub_(other: TensorLike, alpha: number = 1): this {
    if (other instanceof Tensor) op('aten::sub_.Tensor').inplace(handleOf(this), handleOf(other), alpha);
    else op('aten::sub_.Scalar').inplace(handleOf(this), operand(other, 'other'), alpha);
    return this;
  }
  mul_(other: TensorLike): this {
    if (other instanceof Tensor) op('aten::mul_.Tensor').inplace(handleOf(this), handleOf(other));
    else op('aten::mul_.Scalar').inplace(handleOf(this), operand(other, 'other'));
    return this;
  }
  div_(other: TensorLike): this {
    if (other instanceof Tensor) op('aten::div_.Tensor').inplace(handleOf(this), handleOf(other));
    else op('aten::div_.Scalar').inplace(handleOf(this), operand(other, 'other'));
    return this;
  }
  zero_(): this {
    op('aten::zero_').inplace(handleOf(this));
    return this;
  }
  fill_(value: Scalar): this {
    op('aten::fill_.Scalar').inplace(handleOf(this), operand(value, 'value'));
    return this;
  }
  clamp_(min?: number, max?: number): this {
    op('aten::clamp_').inplace(handleOf(this), min, max);
    return this;
  }
  maskedFill_(mask: Tensor, value: Scalar): this {
    op('aten::masked_fill_.Scalar').inplace(handleOf(this), handleOf(mask), operand(value, 'value'));
    return this;
  }

  // ---------- linear algebra ----------

  matmul(other: Tensor): Tensor {
    return op('aten::matmul').t(handleOf(this), handleOf(other));
  }
  mm(other: Tensor): Tensor {
    return op('aten::mm').t(handleOf(this), handleOf(other));
  }
  bmm(other: Tensor): Tensor {
    return op('aten::bmm').t(handleOf(this), handleOf(other));
  }
  /** The matrix transpose of a 2-d tensor (`t.T` in PyTorch). */
  t(): Tensor {
    return op('aten::t').t(handleOf(this));
  }

  // ---------- comparisons ----------

  #cmp(name: string, other: TensorLike): Tensor {
    return other instanceof Tensor ? op(`aten::${name}.Tensor`).t(handleOf(this), handleOf(other)) : op(`aten::${name}.Scalar`).t(handleOf(this), operand(other, 'other'));
  }
  eq(other: TensorLike): Tensor {
    return this.#cmp('eq', other);
  }
  ne(other: TensorLike): Tensor {
    return this.#cmp('ne', other);
  }
  lt(other: TensorLike): Tensor {
    return this.#cmp('lt', other);
  }
  le(other: TensorLike): Tensor {
    return this.#cmp('le', other);
  }
  gt(other: TensorLike): Tensor {
    return this.#cmp('gt', other);
  }
  ge(other: TensorLike): Tensor {
    return this.#cmp('ge', other);
  }
  /** True when shapes and all elements are equal. */
  equal(other: Tensor): boolean {
    return op('aten::equal').raw(handleOf(this), handleOf(other)) as boolean;
  }
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8): boolean {
    return op('aten::allclose').raw(handleOf(this), handleOf(other), rtol, atol, false) as boolean;
  }
  logicalNot(): Tensor {
    return op('aten::logical_not').t(handleOf(this));
  }
  logicalAnd(other: Tensor): Tensor {
    return op('aten::logical_and').t(handleOf(this), handleOf(other));
  }
  logicalOr(other: Tensor): Tensor {
    return op('aten::logical_or').t(handleOf(this), handleOf(other));
  }
  /** Elementwise choice: this where cond, else other. */
  where(cond: Tensor, other: TensorLike): Tensor {
    return where(cond, this, other);
  }

  // ---------- reductions ----------

  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    if (dim === undefined) return op('aten::sum').t(handleOf(this), dtype);
    return op('aten::sum.dim_IntList').t(handleOf(this), dim, keepdim, dtype);
  }
  mean(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    if (dim === undefined) return op('aten::mean').t(handleOf(this), dtype);
    return op('aten::mean.dim').t(handleOf(this), dim, keepdim, dtype);
  }
  /** Maximum of all elements, or `{values, indices}` along dim. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return op('aten::max').t(handleOf(this));
    checkDim('dim', dim);
    const [values, indices] = op('aten::max.dim').ts(handleOf(this), dim, keepdim);
    return { values, indices };
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return op('aten::min').t(handleOf(this));
    checkDim('dim', dim);
    const [values, indices] = op('aten::min.dim').ts(handleOf(this), dim, keepdim);
    return { values, indices };
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return op('aten::argmax').t(handleOf(this), dim, keepdim);
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return op('aten::argmin').t(handleOf(this), dim, keepdim);
  }
  /** Population variance unless correction=1 (the default, as in PyTorch). */
  var(dim?: number | number[], keepdim = false, correction = 1): Tensor {
    return op('aten::var.correction').t(handleOf(this), dim, correction, keepdim);
  }
  std(dim?: number | number[], keepdim = false, correction = 1): Tensor {
    return op('aten::std.correction').t(handleOf(this), dim, correction, keepdim);
  }
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return op('aten::linalg_vector_norm').t(handleOf(this), p, dim, keepdim, undefined);
  }
  any(): Tensor {
    return op('aten::any').t(handleOf(this));
  }
  all(): Tensor {
    return op('aten::all').t(handleOf(this));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [values, indices] = op('aten::topk').ts(handleOf(this), k, dim, largest, sorted);
    return { values, indices };
  }
  cumsum(dim: number, dtype?: DType): Tensor {
    return op('aten::cumsum').t(handleOf(this), dim, dtype);
  }

  // ---------- activations and elementwise math ----------

  softmax(dim: number, dtype?: DType): Tensor {
    checkDim('dim', dim);
    return op('aten::softmax.int').t(handleOf(this), dim, dtype);
  }
  logSoftmax(dim: number, dtype?: DType): Tensor {
    checkDim('dim', dim);
    return op('aten::log_softmax.int').t(handleOf(this), dim, dtype);
  }
  clamp(min?: number, max?: number): Tensor {
    return op('aten::clamp').t(handleOf(this), min, max);
  }
  sqrt(): Tensor {
    return op('aten::sqrt').t(handleOf(this));
  }
  reciprocal(): Tensor {
    return op('aten::reciprocal').t(handleOf(this));
  }
  rsqrt(): Tensor {
    return op('aten::rsqrt').t(handleOf(this));
  }
  exp(): Tensor {
    return op('aten::exp').t(handleOf(this));
  }
  log(): Tensor {
    return op('aten::log').t(handleOf(this));
  }
  tanh(): Tensor {
    return op('aten::tanh').t(handleOf(this));
  }
  sigmoid(): Tensor {
    return op('aten::sigmoid').t(handleOf(this));
  }
  relu(): Tensor {
    return op('aten::relu').t(handleOf(this));
  }
  /** GELU; approximate 'tanh' matches HF's gelu_new. */
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor {
    return op('aten::gelu').t(handleOf(this), approximate);
  }
  /** Dropout with probability p when train is true (identity otherwise). */
  dropout(p: number, train = true): Tensor {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout probability must be in [0, 1], got ${p}`);
    return op('aten::dropout').t(handleOf(this), p, train);
  }
  round(): Tensor {
    return op('aten::round').t(handleOf(this));
  }
  floor(): Tensor {
    return op('aten::floor').t(handleOf(this));
  }
  sign(): Tensor {
    return op('aten::sign').t(handleOf(this));
  }

  // ---------- shapes ----------

  reshape(...shape: number[] | [number[]]): Tensor {
    return op('aten::reshape').t(handleOf(this), flatArgs(shape));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return op('aten::view').t(handleOf(this), flatArgs(shape));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return op('aten::flatten.using_ints').t(handleOf(this), startDim, endDim);
  }
  permute(...dims: number[] | [number[]]): Tensor {
    return op('aten::permute').t(handleOf(this), flatArgs(dims));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return op('aten::transpose.int').t(handleOf(this), dim0, dim1);
  }
  squeeze(dim?: number): Tensor {
    return dim === undefined ? op('aten::squeeze').t(handleOf(this)) : op('aten::squeeze.dim').t(handleOf(this), dim);
  }
  unsqueeze(dim: number): Tensor {
    checkDim('dim', dim);
    return op('aten::unsqueeze').t(handleOf(this), dim);
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return op('aten::expand').t(handleOf(this), flatArgs(shape));
  }
  expandAs(other: Tensor): Tensor {
    return this.expand(other.shape);
  }
  repeat(...times: number[] | [number[]]): Tensor {
    return op('aten::repeat').t(handleOf(this), flatArgs(times));
  }
  /** Splits into chunks of `size` (or of the given sizes) along dim. */
  split(size: number | number[], dim = 0): Tensor[] {
    return Array.isArray(size) ? op('aten::split_with_sizes').ts(handleOf(this), size, dim) : op('aten::split.Tensor').ts(handleOf(this), size, dim);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return op('aten::chunk').ts(handleOf(this), chunks, dim);
  }
  unbind(dim = 0): Tensor[] {
    return op('aten::unbind.int').ts(handleOf(this), dim);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return op('aten::narrow').t(handleOf(this), dim, start, length);
  }
  /** Python's t[..., start:end:step] along one dim. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return op('aten::slice.Tensor').t(handleOf(this), dim, start, end, step);
  }
  /** Python's t[i] along one dim (removes that dim). */
  select(dim: number, index: number): Tensor {
    return op('aten::select.int').t(handleOf(this), dim, index);
  }

  // ---------- indexing ----------

  /** Advanced indexing, like `t[idx0, idx1]` with tensors (null skips a dim). */
  index(indices: (Tensor | null)[]): Tensor {
    return op('aten::index.Tensor').t(handleOf(this), indices.map((t) => (t === null ? null : handleOf(t))));
  }
  /** In-place `t[indices] = values`. */
  indexPut_(indices: (Tensor | null)[], values: Tensor, accumulate = false): this {
    op('aten::index_put_').inplace(handleOf(this), indices.map((t) => (t === null ? null : handleOf(t))), handleOf(values), accumulate);
    return this;
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return op('aten::index_select').t(handleOf(this), dim, handleOf(index));
  }
  gather(dim: number, index: Tensor): Tensor {
    return op('aten::gather').t(handleOf(this), dim, handleOf(index), false);
  }
  scatter(dim: number, index: Tensor, src: TensorLike): Tensor {
    return src instanceof Tensor
      ? op('aten::scatter.src').t(handleOf(this), dim, handleOf(index), handleOf(src))
      : op('aten::scatter.value').t(handleOf(this), dim, handleOf(index), operand(src, 'value'));
  }
  maskedFill(mask: Tensor, value: TensorLike): Tensor {
    return value instanceof Tensor
      ? op('aten::masked_fill.Tensor').t(handleOf(this), handleOf(mask), handleOf(value))
      : op('aten::masked_fill.Scalar').t(handleOf(this), handleOf(mask), operand(value, 'value'));
  }
  maskedSelect(mask: Tensor): Tensor {
    return op('aten::masked_select').t(handleOf(this), handleOf(mask));
  }
  nonzero(): Tensor {
    return op('aten::nonzero').t(handleOf(this));
  }

  // ---------- *Like factories ----------

  zerosLike(opts: TensorOptions = {}): Tensor {
    return zerosLike(this, opts);
  }
  onesLike(opts: TensorOptions = {}): Tensor {
    return onesLike(this, opts);
  }
}

function flatArgs(a: number[] | [number[]]): number[] {
  return Array.isArray(a[0]) ? (a[0] as number[]) : (a as number[]);
}

function nest(flat: ArrayLike<number | bigint>, shape: number[], dtype: DType): NestedArray<number | bigint | boolean> {
  const conv = dtype === 'bool' ? (v: number | bigint) => v !== 0 : (v: number | bigint) => v;
  if (shape.length === 0) return conv(flat[0]);
  let pos = 0;
  const build = (d: number): NestedArray<number | bigint | boolean> => {
    const n = shape[d];
    const out: NestedArray<number | bigint | boolean>[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = d === shape.length - 1 ? conv(flat[pos++]) : build(d + 1);
    return out;
  };
  return build(0);
}

// ---------- creation ----------

const ARRAY_DTYPE = new Map<unknown, DType>([
  [Float32Array, 'float32'], [Float64Array, 'float64'], [Int32Array, 'int32'], [BigInt64Array, 'int64'],
  [Int16Array, 'int16'], [Int8Array, 'int8'], [Uint8Array, 'uint8'],
]);

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * Rows of integers as one int64 [rows.length, width] tensor, each row padded with `pad` (what batches of
 * token ids, type ids, attention masks and labels are made of).
 * @throws RangeError when a row is longer than `width`
 */
export function int64Rows(rows: readonly ArrayLike<number>[], width: number, pad = 0): Tensor {
  const flat = new BigInt64Array(rows.length * width);
  if (pad !== 0) flat.fill(BigInt(pad));
  rows.forEach((r, i) => {
    if (r.length > width) throw new RangeError(`int64Rows: row ${i} has ${r.length} values, more than the width ${width}`);
    for (let j = 0; j < r.length; j++) flat[i * width + j] = BigInt(r[j]);
  });
  return tensor(flat, { shape: [rows.length, width] });
}

/**
 * Creates a tensor from nested arrays, a TypedArray or a scalar, copying the data.
 * Numbers default to float32 (JS has no integer type), bigints to int64, booleans to bool.
 * @throws TypeError for ragged arrays or mixed element kinds
 * @example tensor([[1, 2], [3, 4]]); tensor(new BigInt64Array([101n, 102n]), { shape: [1, 2] })
 */
export function tensor(data: NestedArray<number | bigint | boolean> | AnyTypedArray, opts: TensorOptions & { shape?: number[] } = {}): Tensor {
  const device = opts.device === undefined ? undefined : checkDevice(opts.device);
  if (ArrayBuffer.isView(data)) {
    const natural = ARRAY_DTYPE.get(data.constructor);
    const dtype = opts.dtype ? checkDtype(opts.dtype) : natural;
    if (!dtype) throw new TypeError(`${data.constructor.name} needs an explicit dtype (float16 or bfloat16 bits)`);
    const shape = checkShape(opts.shape ?? [(data as AnyTypedArray).length]);
    return finish(Tensor._wrap(native.fromTypedArray(data, shape, dtype, device)), opts);
  }
  const shape: number[] = [];
  let probe: unknown = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const flat = shape.length === 0 ? [data] : (data as unknown[]).flat(Infinity);
  const numel = shape.reduce((a, b) => a * b, 1);
  if (flat.length !== numel) throw new TypeError(`tensor(): ragged nested array: expected ${numel} elements for shape [${shape.join(', ')}], found ${flat.length}`);
  const kind = typeof (flat.length ? flat[0] : 0);
  for (const v of flat) {
    if (typeof v !== kind || !(kind === 'number' || kind === 'bigint' || kind === 'boolean')) throw new TypeError(`tensor(): elements must all be numbers, all bigints or all booleans`);
  }
  const dtype = opts.dtype ? checkDtype(opts.dtype) : kind === 'bigint' ? 'int64' : kind === 'boolean' ? 'bool' : 'float32';
  let arr: AnyTypedArray;
  if (kind === 'bigint') arr = BigInt64Array.from(flat as bigint[]);
  else if (kind === 'boolean') arr = Uint8Array.from(flat as boolean[], (b) => (b ? 1 : 0));
  else if (dtype === 'int64') arr = BigInt64Array.from(flat as number[], (v) => BigInt(Math.trunc(v)));
  else if (dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16') arr = Float32Array.from(flat as number[]);
  else arr = Float64Array.from(flat as number[]);
  // The native side converts from the array's own element type to dtype.
  return finish(Tensor._wrap(native.fromTypedArray(arr, shape, dtype, device)), opts);
}

function factoryArgs(opts: TensorOptions): [DType, undefined, string | undefined] {
  return [opts.dtype === undefined ? 'float32' : checkDtype(opts.dtype), undefined, opts.device === undefined ? undefined : checkDevice(opts.device)];
}

export function zeros(shape: Shape | number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::zeros').t(checkShape(shape), ...factoryArgs(opts)), opts);
}
export function ones(shape: Shape | number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::ones').t(checkShape(shape), ...factoryArgs(opts)), opts);
}
export function empty(shape: Shape | number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::empty.memory_format').t(checkShape(shape), ...factoryArgs(opts)), opts);
}
export function full(shape: Shape | number, value: Scalar, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::full').t(checkShape(shape), operand(value, 'value'), ...factoryArgs(opts)), opts);
}
/** Values from start (inclusive) to end (exclusive) by step; `arange(n)` counts 0..n-1. float32 unless dtype says. */
export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new RangeError('arange(): step must be non-zero');
  return finish(op('aten::arange.start_step').t(start, end, step, ...factoryArgs(opts)), opts);
}
export function linspace(start: number, end: number, steps: number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::linspace').t(start, end, steps, ...factoryArgs(opts)), opts);
}
/** Uniform [0, 1) samples from the global generator (same stream as PyTorch's CPU generator). */
export function rand(shape: Shape | number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::rand').t(checkShape(shape), ...factoryArgs(opts)), opts);
}
export function randn(shape: Shape | number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::randn').t(checkShape(shape), ...factoryArgs(opts)), opts);
}
/** Integers in [low, high); int64 unless dtype says. */
export function randint(low: number, high: number, shape: Shape | number, opts: TensorOptions = {}): Tensor {
  if (!(high > low)) throw new RangeError(`randint(): high (${high}) must be greater than low (${low})`);
  return finish(op('aten::randint.low').t(low, high, checkShape(shape), ...factoryArgs({ dtype: 'int64', ...opts })), opts);
}
export function eye(n: number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::eye').t(n, ...factoryArgs(opts)), opts);
}
export function randperm(n: number, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::randperm').t(n, ...factoryArgs({ dtype: 'int64', ...opts })), opts);
}
function likeArgs(t: Tensor, opts: TensorOptions): unknown[] {
  return [t._handle, opts.dtype === undefined ? undefined : checkDtype(opts.dtype), undefined, opts.device === undefined ? undefined : checkDevice(opts.device)];
}
export function zerosLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::zeros_like').t(...likeArgs(t, opts)), opts);
}
export function onesLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::ones_like').t(...likeArgs(t, opts)), opts);
}
export function emptyLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::empty_like').t(...likeArgs(t, opts)), opts);
}
export function fullLike(t: Tensor, value: Scalar, opts: TensorOptions = {}): Tensor {
  const [h, dtype, layout, device] = likeArgs(t, opts);
  return finish(op('aten::full_like').t(h, operand(value, 'value'), dtype, layout, device), opts);
}
export function randLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::rand_like').t(...likeArgs(t, opts)), opts);
}
export function randnLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return finish(op('aten::randn_like').t(...likeArgs(t, opts)), opts);
}

// ---------- functions over several tensors ----------

export function cat(tensors: Tensor[], dim = 0): Tensor {
  return op('aten::cat').t(tensors.map((t) => t._handle), dim);
}
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return op('aten::stack').t(tensors.map((t) => t._handle), dim);
}
/** Elementwise: x where cond, else y. */
export function where(cond: Tensor, x: TensorLike, y: TensorLike): Tensor {
  if (x instanceof Tensor && y instanceof Tensor) return op('aten::where.self').t(cond._handle, x._handle, y._handle);
  if (x instanceof Tensor) return op('aten::where.ScalarOther').t(cond._handle, x._handle, operand(y, 'y'));
  if (y instanceof Tensor) return op('aten::where.ScalarSelf').t(cond._handle, operand(x, 'x'), y._handle);
  return op('aten::where.Scalar').t(cond._handle, operand(x, 'x'), operand(y, 'y'));
}
