// Deterministic lifetime of native memory: every Tensor registers with the current scope; tidy() (sync)
// and DisposeScope (async, tracked through AsyncLocalStorage so concurrent tasks do not mix) dispose
// what was created inside except what is returned or kept. The GC is only a backstop.
import { AsyncLocalStorage } from 'async_hooks';
import { DisposedError } from './errors';

/** Anything with a deterministic dispose(). */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const current = new AsyncLocalStorage<DisposeScope>();
const kept = new WeakSet<Disposable>();

/**
 * A scope that owns the tensors created while it runs.
 * @example
 * using scope = new DisposeScope();   // or: try { ... } finally { scope.dispose(); }
 * const out = await scope.run(async () => model.forward(x));
 * scope.keep(out);
 */
export class DisposeScope {
  #items = new Set<Disposable>();
  #disposed = false;
  readonly parent: DisposeScope | undefined;

  constructor() {
    this.parent = current.getStore();
  }

  /** Runs fn with this scope current; sync or async, tensors made inside (and in its awaits) join it. */
  run<T>(fn: () => T): T {
    if (this.#disposed) throw new DisposedError('DisposeScope has been disposed');
    return current.run(this, fn);
  }

  /** Adds an object to this scope. */
  track<T extends Disposable>(item: T): T {
    if (this.#disposed) throw new DisposedError('DisposeScope has been disposed');
    this.#items.add(item);
    return item;
  }

  /** Removes objects from this scope (and moves them to the parent scope, if any). */
  detach(...items: Disposable[]): void {
    for (const it of items) {
      if (this.#items.delete(it)) this.parent?.track(it);
    }
  }

  get size(): number {
    return this.#items.size;
  }

  /** Disposes everything tracked except `except` (searched through arrays, Maps and plain objects). */
  dispose(except?: unknown): void {
    if (this.#disposed) return;
    const survivors = new Set<Disposable>();
    collect(except, survivors);
    for (const it of this.#items) {
      if (survivors.has(it)) continue;
      if (kept.has(it)) continue;
      it.dispose();
    }
    for (const it of survivors) if (this.#items.has(it)) this.parent?.track(it);
    this.#items.clear();
    this.#disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function collect(v: unknown, out: Set<Disposable>, depth = 0): void {
  if (v === null || typeof v !== 'object' || depth > 8) return;
  if (typeof (v as Disposable).dispose === 'function' && 'isDisposed' in (v as object)) {
    out.add(v as Disposable);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collect(x, out, depth + 1);
  else if (v instanceof Map) for (const x of v.values()) collect(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, depth + 1);
}

/** Called by every new Tensor. */
export function registerInScope(item: Disposable): void {
  current.getStore()?.track(item);
}

/**
 * Runs a synchronous function and disposes every tensor it created except those it returns or keeps.
 * @throws TypeError if fn returns a Promise (use DisposeScope for async code).
 * @example const y = tidy(() => x.mul(2).add(1));
 */
export function tidy<T>(fn: () => T): T {
  const scope = new DisposeScope();
  let result: T;
  try {
    result = scope.run(fn);
  } catch (e) {
    scope.dispose();
    throw e;
  }
  if (result instanceof Promise) {
    scope.dispose();
    throw new TypeError('tidy() takes a synchronous function; for async code use `new DisposeScope().run(async () => ...)`');
  }
  scope.dispose(result);
  return result;
}

/** Marks objects so that no scope disposes them; they live until dispose() (or GC). */
export function keep<T extends Disposable | Disposable[]>(x: T): T {
  for (const it of Array.isArray(x) ? x : [x]) kept.add(it);
  return x;
}
