// What every pipeline shares: the tasks and their heads, the options, and the Pipeline base class
// (tokenize on the caller's turn, rows through a Batcher shared by all concurrent callers, the model
// on the compute thread).
import { Batcher, BatcherOptions } from '../batcher';
import { BertTokenizer } from '../tokenizer';
import type { Encoding } from '../tokenizer/encoding';
import { BertPreTrainedModel, BertOutput, HeadKind } from '../models/bert';
import { HubOptions } from '../hub';
import { Tensor, int64Rows } from '../tensor';
import { DisposeScope } from '../scope';
import { noGrad } from '../torch';
import type { DType } from '../tensor';

export type Task = 'text-classification' | 'token-classification' | 'fill-mask' | 'question-answering' | 'feature-extraction';
/** Other names HF accepts for the same tasks. */
export const ALIASES: Record<string, Task> = { 'sentiment-analysis': 'text-classification', ner: 'token-classification' };
export const TASKS: Task[] = ['text-classification', 'token-classification', 'fill-mask', 'question-answering', 'feature-extraction'];
export const HEAD_FOR: Record<Task, HeadKind> = {
  'text-classification': 'BertForSequenceClassification',
  'token-classification': 'BertForTokenClassification',
  'fill-mask': 'BertForMaskedLM',
  'question-answering': 'BertForQuestionAnswering',
  'feature-extraction': 'BertModel',
};

export interface PipelineOptions extends HubOptions {
  device?: string;
  dtype?: DType;
  /** longest row in tokens (default: the smaller of the tokenizer's and the model's limit) */
  maxLength?: number;
  batch?: BatcherOptions;
  /** 'int8': run the linear layers as int8 dynamic quantisation (CPU; see BertPreTrainedModel.quantizeDynamic) */
  quantize?: 'int8';
  /** fp32 linear layers with weights packed once (CPU; see BertPreTrainedModel.prepack) */
  prepack?: boolean;
  /** map the checkpoint rather than read it (see fromPretrained's `mmap`) */
  mmap?: boolean;
  /** with mmap: the word embeddings paged in by the rows looked up (see fromPretrained's `embeddingsByRows`) */
  embeddingsByRows?: boolean;
}

export interface Row {
  ids: number[];
  typeIds: number[];
}

/**
 * Whether a batch of `real` tokens padded to `padded` should run unpadded: batches over 10% padding skip
 * it in the dense layers; nearly even ones run the plain forward, as fast without the gather/scatter.
 */
export function worthUnpadding(real: number, padded: number): boolean {
  return real < 0.9 * padded;
}

/** The task a model's architecture serves, and the ones every BERT serves. */
export function tasksFor(kind: HeadKind): Task[] {
  const own = (Object.keys(HEAD_FOR) as Task[]).filter((t) => HEAD_FOR[t] === kind && t !== 'feature-extraction');
  if (kind === 'BertForPreTraining') own.push('fill-mask');
  return [...own, 'feature-extraction'];
}

export abstract class Pipeline<I extends Row, O> {
  readonly batcher: Batcher<I, O>;
  readonly maxLength: number;
  /** what loading found questionable (also emitted as process warnings) */
  readonly warnings: string[] = [];
  protected readonly device: string | undefined;

  constructor(
    readonly task: Task,
    readonly tokenizer: BertTokenizer,
    readonly model: BertPreTrainedModel,
    opts: PipelineOptions = {},
  ) {
    this.maxLength = opts.maxLength ?? Math.min(tokenizer.modelMaxLength, model.config.fields.max_position_embeddings);
    this.device = opts.device;
    this.batcher = new Batcher((items) => this.#run(items), (it) => it.ids.length, opts.batch);
  }

  /** Per-row results from the model output of a batch padded to T tokens (called inside a dispose scope). */
  protected abstract extract(out: BertOutput, items: I[], T: number): Promise<O[]>;

  async #run(items: I[]): Promise<O[]> {
    const scope = new DisposeScope();
    try {
      return await scope.run(async () => {
        const T = Math.max(...items.map((r) => r.ids.length));
        const B = items.length;
        const onDevice = (t: Tensor) => (this.device ? t.to(this.device) : t);
        const ids = onDevice(int64Rows(items.map((r) => r.ids), T, this.tokenizer.padTokenId));
        const types = onDevice(int64Rows(items.map((r) => r.typeIds), T));
        const mask = onDevice(int64Rows(items.map((r) => new Array<number>(r.ids.length).fill(1)), T));
        // Grad mode is captured when the call starts (it runs on the compute thread), so it is off only for
        // this synchronous start: concurrent code on the event loop (training, say) keeps its own mode.
        const unpadded = worthUnpadding(items.reduce((n, r) => n + r.ids.length, 0), B * T);
        const { pending } = noGrad(() => ({ pending: this.model.forward({ inputIds: ids, attentionMask: mask, tokenTypeIds: types, unpadded }) }));
        const out = await pending;
        return await this.extract(out, items, T);
      });
    } finally {
      scope.dispose();
    }
  }

  /** Runs one short input through the pipeline (first calls pay for lazy initialisation). */
  async warmup(): Promise<void> {
    const done = this.call(this.task === 'question-answering' ? ({ question: 'warm up?', context: 'warm up' } as never) : (`warm up ${this.tokenizer.options.maskToken}` as never));
    this.batcher.flush(); // call() queued its rows synchronously: no need to wait for companions
    await done;
  }
  abstract call(inputs: never, opts?: object): Promise<unknown>;

  /** Stops taking inputs and waits for the ones in flight. */
  async close(): Promise<void> {
    await this.batcher.close();
  }

  /** The model the pipeline loaded or copied itself (disposed with it); null when the caller's. */
  owned: BertPreTrainedModel | null = null;
  /** @internal The encoder view this pipeline made of a model with a head (its handle released with the pipeline). */
  encoder: BertPreTrainedModel | null = null;
  /** Finishes the queued calls, then frees the model if the pipeline loaded it (a model passed in stays the caller's). */
  async dispose(): Promise<void> {
    await this.close();
    this.encoder?.dispose();
    this.encoder = null;
    this.owned?.dispose();
    this.owned = null;
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  protected encode(text: string, pair: string | null, extra: { stride?: number; overflow?: boolean } = {}): Encoding[] {
    const { rows } = this.tokenizer.encodeRows([text], pair === null ? null : [pair], {
      truncation: true,
      maxLength: this.maxLength,
      stride: extra.stride,
      returnOverflowingTokens: extra.overflow,
    });
    return rows;
  }
}

export function checkString(x: unknown, what: string): string {
  if (typeof x !== 'string') throw new TypeError(`${what} must be a string, got ${x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x}`);
  return x;
}
export function checkInputs<T>(inputs: T | T[], what: string): T[] {
  const list = Array.isArray(inputs) ? inputs : [inputs];
  if (list.length === 0) throw new RangeError(`${what}: empty list of inputs`);
  return list;
}
/** A float32 copy of a tensor's data (half-precision models give float32 scores, as HF does). */
export async function floats(t: Tensor): Promise<Float32Array> {
  return (await (t.dtype === 'float32' ? t : t.float()).contiguous().data()) as Float32Array;
}

export function argmax(x: ArrayLike<number>): number {
  let k = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[k]) k = i;
  return k;
}
