// DistributedDataParallel over c10d::Reducer, the engine Python's DDP is a thin wrapper around: parameters
// and buffers broadcast from the group's first rank when wrapped (after a check that every rank has the
// same parameters), gradients bucketed (first bucket small, the rest bucketCapMb) and allreduced while
// backward is still running, averaged over the group. Backward, AdamW and clipGradNorm are unchanged.
import { native } from '../binding';
import { Tensor } from '../tensor';
import { isGradEnabled } from '../torch';
import * as dist from './process-group';

export interface DdpOptions {
  /** bucket size for the gradient allreduce (default 25, as PyTorch) */
  bucketCapMb?: number;
  /** the first bucket's size in MB (default 1, as PyTorch: it starts communicating early) */
  firstBucketCapMb?: number;
  /** parameters a forward does not use are marked ready, so backward never waits for them */
  findUnusedParameters?: boolean;
  group?: dist.ProcessGroup;
}

/** What DDP needs of a model: its parameters and buffers by name, a forward, train/eval state. */
export interface DdpModel<I, O> {
  namedParameters(): [string, Tensor][];
  namedBuffers?(): [string, Tensor][];
  forward(inputs: I): Promise<O>;
  readonly training?: boolean;
}

function outputTensors(o: unknown, out: Tensor[] = []): Tensor[] {
  if (o instanceof Tensor) out.push(o);
  else if (Array.isArray(o)) for (const x of o) outputTensors(x, out);
  else if (o && typeof o === 'object') for (const x of Object.values(o)) outputTensors(x, out);
  return out;
}

export class DistributedDataParallel<I = unknown, O = unknown> {
  /** resolves when the weights are synchronised and the reducer is built (forward waits for it) */
  readonly ready: Promise<void>;
  #id = 0;
  #sync = true;
  #disposed = false;
  readonly #findUnused: boolean;

  constructor(
    readonly module: DdpModel<I, O>,
    opts: DdpOptions = {},
  ) {
    if (!dist.isInitialized()) throw new Error('DistributedDataParallel: initialise the process group first (tb.distributed.initProcessGroup)');
    const params = module.namedParameters().filter(([, p]) => p.requiresGrad);
    // BertPreTrainedModel keeps its buffers on its TorchScript module
    const buffers = module.namedBuffers?.() ?? (module as { module?: { namedBuffers?(): [string, Tensor][] } }).module?.namedBuffers?.() ?? [];
    const mb = (x: number | undefined, d: number, what: string) => {
      const v = x ?? d;
      if (!(v > 0)) throw new RangeError(`DistributedDataParallel: ${what} must be positive, got ${x}`);
      return Math.round(v * 1024 * 1024);
    };
    this.#findUnused = !!opts.findUnusedParameters;
    const group = opts.group?.id ?? 0;
    if (opts.group && !opts.group.ranks.includes(dist.getRank())) throw new Error(`DistributedDataParallel: rank ${dist.getRank()} is not in the group`);
    this.ready = native
      .ddpCreate(group, params.map(([, p]) => p._handle), buffers.map(([, b]) => b._handle), params.map(([n]) => n), mb(opts.bucketCapMb, 25, 'bucketCapMb'), mb(opts.firstBucketCapMb, 1, 'firstBucketCapMb'), this.#findUnused)
      .then(
        (id) => {
          this.#id = id;
        },
        (e: Error) => {
          // c10d names parameters by index: "[r]: params[i] in this process with sizes [...] appears not to match ..."
          const m = /\[(\d+)\]: params\[(\d+)\] in this process with sizes (\[[^\]]*\]) appears not to match sizes of the same param in process (\d+)/.exec(e.message);
          if (m) throw new Error(`DistributedDataParallel: parameter '${params[Number(m[2])]?.[0]}' (params[${m[2]}]) has shape ${m[3]} on rank ${m[1]}, not the shape it has on rank ${m[4]}: every rank must wrap the same model`, { cause: e });
          throw e;
        },
      );
    this.ready.catch(() => {}); // reported by forward or by awaiting ready
  }

  /**
   * The wrapped model's forward; when gradients are enabled and sync is on, the next backward allreduces
   * the gradients (bucket by bucket, while it runs) and leaves their average over the group in .grad.
   */
  async forward(inputs: I): Promise<O> {
    return this.call(() => this.module.forward(inputs));
  }

  /**
   * Runs any forward computation of the wrapped model (a custom loss, another method) the way forward()
   * does: the next backward through its result allreduces the gradients.
   */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#disposed) throw new Error('DistributedDataParallel: disposed');
    await this.ready;
    const grad = isGradEnabled();
    if (grad) await native.ddpPrepareForward(this.#id);
    const out = await fn();
    if (grad && this.#sync) native.ddpPrepareBackward(this.#id, this.#findUnused ? outputTensors(out).map((t) => t._handle) : []);
    return out;
  }

  /**
   * Runs fn with gradient synchronisation off: backward inside accumulates locally (gradient
   * accumulation steps); the next synchronised backward allreduces the accumulated gradients.
   */
  async noSync<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#sync;
    this.#sync = false;
    try {
      return await fn();
    } finally {
      this.#sync = prev;
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#id) native.ddpDestroy(this.#id);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
