// Pipelines shaped like Hugging Face's: text-classification, token-classification (NER), fill-mask,
// question-answering and feature-extraction. Each input is tokenized on the caller's turn, its rows
// go through a Batcher shared by all concurrent callers, and the model runs on a worker thread.
import { Batcher, BatcherOptions } from './batcher';
import { BertTokenizer } from './tokenizer';
import type { Encoding } from './tokenizer/encoding';
import { BertPreTrainedModel, BertOutput, HeadKind, fromPretrained } from './models/bert';
import { HubOptions } from './hub';
import { Tensor, tensor, arange } from './tensor';
import { DisposeScope } from './scope';
import { noGrad } from './torch';
import type { DType } from './tensor';

export type Task = 'text-classification' | 'token-classification' | 'fill-mask' | 'question-answering' | 'feature-extraction';
/** Other names HF accepts for the same tasks. */
const ALIASES: Record<string, Task> = { 'sentiment-analysis': 'text-classification', ner: 'token-classification' };
export const TASKS: Task[] = ['text-classification', 'token-classification', 'fill-mask', 'question-answering', 'feature-extraction'];
const HEAD_FOR: Record<Task, HeadKind> = {
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
}

interface Row {
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

abstract class Pipeline<I extends Row, O> {
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
        const ids = new BigInt64Array(B * T).fill(BigInt(this.tokenizer.padTokenId));
        const types = new BigInt64Array(B * T);
        const mask = new BigInt64Array(B * T);
        items.forEach((r, b) => {
          for (let t = 0; t < r.ids.length; t++) {
            ids[b * T + t] = BigInt(r.ids[t]);
            types[b * T + t] = BigInt(r.typeIds[t]);
            mask[b * T + t] = 1n;
          }
        });
        const o = { shape: [B, T], device: this.device };
        // Grad mode is captured when the call starts (it runs on a worker thread), so it is off only for
        // this synchronous start: concurrent code on the event loop (training, say) keeps its own mode.
        const unpadded = worthUnpadding(items.reduce((n, r) => n + r.ids.length, 0), B * T);
        const { pending } = noGrad(() => ({ pending: this.model.forward({ inputIds: tensor(ids, o), attentionMask: tensor(mask, o), tokenTypeIds: tensor(types, o), unpadded }) }));
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
  /** Finishes the queued calls, then frees the model if the pipeline loaded it (a model passed in stays the caller's). */
  async dispose(): Promise<void> {
    await this.close();
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

function checkString(x: unknown, what: string): string {
  if (typeof x !== 'string') throw new TypeError(`${what} must be a string, got ${x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x}`);
  return x;
}
function checkInputs<T>(inputs: T | T[], what: string): T[] {
  const list = Array.isArray(inputs) ? inputs : [inputs];
  if (list.length === 0) throw new RangeError(`${what}: empty list of inputs`);
  return list;
}
/** A float32 copy of a tensor's data (half-precision models give float32 scores, as HF does). */
async function floats(t: Tensor): Promise<Float32Array> {
  return (await (t.dtype === 'float32' ? t : t.float()).contiguous().data()) as Float32Array;
}

// ---------- text-classification ----------

export type ClassificationFunction = 'softmax' | 'sigmoid' | 'none';
export interface LabelScore {
  label: string;
  score: number;
}
export interface TextClassificationOptions {
  /** how many labels to return, best first; null for all (default: the best one, HF's legacy shape) */
  topK?: number | null;
  functionToApply?: ClassificationFunction;
}
export type TextInput = string | { text: string; textPair?: string };

/** A row's logits and both normalisations, computed for the whole batch in libtorch. */
type ClassScores = Record<ClassificationFunction, Float32Array>;

export class TextClassificationPipeline extends Pipeline<Row, ClassScores> {
  /**
   * Classifies one text (or text pair) or many. Shaped like HF: without topK, a single input gives
   * `[{label, score}]` and a list gives one `{label, score}` per input; with topK, lists of those.
   */
  async call(inputs: TextInput | TextInput[], opts: TextClassificationOptions = {}): Promise<LabelScore[] | LabelScore[][]> {
    const list = checkInputs(inputs, 'text-classification');
    const rows = list.map((x, i) => {
      const [a, b] = typeof x === 'object' && x !== null ? [checkString(x.text, `inputs[${i}].text`), x.textPair === undefined ? null : checkString(x.textPair, `inputs[${i}].textPair`)] : [checkString(x, Array.isArray(inputs) ? `inputs[${i}]` : 'input'), null];
      return this.encode(a, b)[0];
    });
    const legacy = !('topK' in opts);
    const fn = opts.functionToApply ?? this.#defaultFunction();
    if (fn !== 'softmax' && fn !== 'sigmoid' && fn !== 'none') throw new TypeError(`functionToApply must be 'softmax', 'sigmoid' or 'none', got '${String(fn)}'`);
    const outs = await Promise.all(rows.map((r) => this.batcher.submit(r)));
    const id2label = this.model.config.fields.id2label ?? {};
    const results = outs.map((o) => {
      const scores = Array.from(o[fn]);
      if (legacy) {
        const k = argmax(scores);
        return { label: id2label[k] ?? `LABEL_${k}`, score: scores[k] };
      }
      const all = scores.map((score, i) => ({ label: id2label[i] ?? `LABEL_${i}`, score })).sort((a, b) => b.score - a.score);
      return opts.topK === null || opts.topK === undefined ? all : all.slice(0, opts.topK);
    });
    // HF's odd legacy shape: a lone string gives a one-element list, a lone pair the bare result.
    if (legacy) return Array.isArray(inputs) ? (results as LabelScore[]) : typeof inputs === 'string' ? [results[0] as LabelScore] : (results[0] as unknown as LabelScore[]);
    return Array.isArray(inputs) ? (results as LabelScore[][]) : (results[0] as LabelScore[]);
  }

  #defaultFunction(): ClassificationFunction {
    const c = this.model.config.fields;
    if (c.problem_type === 'regression') return 'none';
    if (c.problem_type === 'multi_label_classification' || c.num_labels === 1) return 'sigmoid';
    return 'softmax';
  }

  protected async extract(out: BertOutput, items: Row[]): Promise<ClassScores[]> {
    const logits = out.logits!.float();
    const L = logits.size(-1);
    // Callers in one batch may ask for different functions: both are one op each for the batch.
    const [none, softmax, sigmoid] = await Promise.all([logits, logits.softmax(-1), logits.sigmoid()].map(floats));
    return items.map((_, b) => ({ none: none.slice(b * L, (b + 1) * L), softmax: softmax.slice(b * L, (b + 1) * L), sigmoid: sigmoid.slice(b * L, (b + 1) * L) }));
  }
}
function argmax(x: ArrayLike<number>): number {
  let k = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[k]) k = i;
  return k;
}

// ---------- token-classification ----------

export type AggregationStrategy = 'none' | 'simple' | 'first' | 'average' | 'max';
export interface TokenEntity {
  entity: string;
  score: number;
  index: number;
  word: string;
  start: number;
  end: number;
}
export interface EntityGroup {
  entity_group: string;
  score: number;
  word: string;
  start: number;
  end: number;
}
export interface TokenClassificationOptions {
  aggregationStrategy?: AggregationStrategy;
  /** labels left out of the result (default ['O']) */
  ignoreLabels?: string[];
  /** windows of maxLength tokens overlapping by `stride`, so long texts are covered whole */
  stride?: number;
}
interface PreEntity {
  word: string;
  scores: Float32Array;
  start: number;
  end: number;
  index: number;
  isSubword: boolean;
}
interface WordEntity {
  entity: string;
  score: number;
  word: string;
  start: number;
  end: number;
  index?: number;
}

export class TokenClassificationPipeline extends Pipeline<Row, Float32Array> {
  /** Entities of one text (a list) or of many (a list of lists), as HF's token-classification pipeline. */
  async call(inputs: string | string[], opts: TokenClassificationOptions = {}): Promise<(TokenEntity | EntityGroup)[] | (TokenEntity | EntityGroup)[][]> {
    const strategy = opts.aggregationStrategy ?? 'none';
    if (!['none', 'simple', 'first', 'average', 'max'].includes(strategy)) throw new TypeError(`aggregationStrategy must be none, simple, first, average or max, got '${strategy}'`);
    if (opts.stride !== undefined) {
      if (!Number.isInteger(opts.stride) || opts.stride < 0 || opts.stride >= this.maxLength - 2) throw new RangeError(`stride must be an integer in [0, ${this.maxLength - 2}), got ${opts.stride}`);
      if (strategy === 'none') throw new TypeError("stride covers the whole text only with an aggregationStrategy other than 'none'");
    }
    const list = checkInputs(inputs, 'token-classification').map((x, i) => checkString(x, Array.isArray(inputs) ? `inputs[${i}]` : 'input'));
    const results = await Promise.all(
      list.map(async (sentence) => {
        const rows = this.encode(sentence, null, opts.stride === undefined ? {} : { stride: opts.stride, overflow: true });
        const scores = await Promise.all(rows.map((r) => this.batcher.submit(r)));
        const ignore = opts.ignoreLabels ?? ['O'];
        let all: (TokenEntity | EntityGroup)[] = [];
        rows.forEach((r, k) => {
          const pre = this.#preEntities(sentence, r, scores[k]);
          const grouped = this.#aggregate(pre, strategy);
          all.push(...grouped.filter((e) => !ignore.includes((e as TokenEntity).entity) && !ignore.includes((e as EntityGroup).entity_group)));
        });
        if (rows.length > 1) all = overlapping(all);
        return all;
      }),
    );
    return Array.isArray(inputs) ? results : results[0];
  }

  protected async extract(out: BertOutput, items: Row[], T: number): Promise<Float32Array[]> {
    const probs = out.logits!.float().softmax(-1);
    const data = await floats(probs);
    const L = out.logits!.size(-1);
    return items.map((r, b) => data.slice(b * T * L, (b * T + r.ids.length) * L));
  }

  #label(i: number): string {
    return this.model.config.fields.id2label?.[String(i)] ?? `LABEL_${i}`;
  }

  #preEntities(sentence: string, r: Encoding, scores: Float32Array): PreEntity[] {
    const L = scores.length / r.ids.length;
    const out: PreEntity[] = [];
    for (let i = 0; i < r.ids.length; i++) {
      if (r.specialTokensMask[i]) continue;
      let word = this.tokenizer.idsToTokens[r.ids[i]];
      const [start, end] = r.offsets[i];
      const ref = sentence.slice(start, end);
      // A WordPiece continuation token ("##ing") is longer than the text it covers.
      let isSubword = word.length !== ref.length;
      if (r.ids[i] === this.tokenizer.unkTokenId) {
        word = ref;
        isSubword = false;
      }
      out.push({ word, scores: scores.subarray(i * L, (i + 1) * L), start, end, index: i, isSubword });
    }
    return out;
  }

  #aggregate(pre: PreEntity[], strategy: AggregationStrategy): (TokenEntity | EntityGroup)[] {
    let entities: WordEntity[];
    if (strategy === 'none' || strategy === 'simple') {
      entities = pre.map((p) => {
        const k = argmax(p.scores);
        return { entity: this.#label(k), score: p.scores[k], index: p.index, word: p.word, start: p.start, end: p.end };
      });
      if (strategy === 'none') return entities as TokenEntity[];
    } else {
      entities = [];
      let group: PreEntity[] = [];
      for (const p of pre) {
        if (group.length && !p.isSubword) {
          entities.push(this.#aggregateWord(group, strategy));
          group = [];
        }
        group.push(p);
      }
      if (group.length) entities.push(this.#aggregateWord(group, strategy));
    }
    return this.#groupEntities(entities);
  }

  #aggregateWord(group: PreEntity[], strategy: AggregationStrategy): WordEntity {
    const word = this.tokenizer.convertTokensToString(group.map((g) => g.word));
    let scores: ArrayLike<number>;
    if (strategy === 'first') scores = group[0].scores;
    else if (strategy === 'max') {
      let best = group[0];
      for (const g of group) if (Math.max(...g.scores) > Math.max(...best.scores)) best = g;
      scores = best.scores;
    } else {
      const avg = new Float64Array(group[0].scores.length);
      for (const g of group) g.scores.forEach((v, i) => (avg[i] += v / group.length));
      scores = avg;
    }
    const k = argmax(scores);
    return { entity: this.#label(k), score: scores[k], word, start: group[0].start, end: group[group.length - 1].end };
  }

  #groupEntities(entities: WordEntity[]): EntityGroup[] {
    const tag = (name: string): [string, string] => (name.startsWith('B-') ? ['B', name.slice(2)] : name.startsWith('I-') ? ['I', name.slice(2)] : ['I', name]);
    const groups: EntityGroup[] = [];
    let run: WordEntity[] = [];
    const close = () => {
      const name = run[0].entity;
      const i = name.indexOf('-');
      groups.push({
        entity_group: i >= 0 ? name.slice(i + 1) : name,
        score: run.reduce((s, e) => s + e.score, 0) / run.length,
        word: this.tokenizer.convertTokensToString(run.map((e) => e.word)),
        start: run[0].start,
        end: run[run.length - 1].end,
      });
    };
    for (const e of entities) {
      if (run.length) {
        const [bi, t] = tag(e.entity);
        const [, lastT] = tag(run[run.length - 1].entity);
        if (!(t === lastT && bi !== 'B')) {
          close();
          run = [];
        }
      }
      run.push(e);
    }
    if (run.length) close();
    return groups;
  }
}

/** Entities from overlapping windows: of two that overlap, the longer (then the higher scoring) stays. */
function overlapping<E extends { start: number; end: number; score: number }>(entities: E[]): E[] {
  if (!entities.length) return entities;
  const sorted = [...entities].sort((a, b) => a.start - b.start);
  const out: E[] = [];
  let prev = sorted[0];
  for (const e of sorted) {
    if (prev.start <= e.start && e.start < prev.end) {
      const cur = e.end - e.start;
      const pl = prev.end - prev.start;
      if (cur > pl || (cur === pl && e.score > prev.score)) prev = e;
    } else {
      out.push(prev);
      prev = e;
    }
  }
  out.push(prev);
  return out;
}

// ---------- fill-mask ----------

export interface FillMaskResult {
  score: number;
  token: number;
  token_str: string;
  sequence: string;
}
export interface FillMaskOptions {
  topK?: number;
  /** score only these tokens (words missing from the vocabulary use their first word piece) */
  targets?: string[];
}
interface MaskRow extends Row {
  k: number;
  targets: number[] | null;
}
type MaskOut = { ids: number[]; scores: number[] }[];

export class FillMaskPipeline extends Pipeline<MaskRow, MaskOut> {
  /** Candidates for each [MASK]: a list for one mask, a list per mask for several, per input for a list. */
  async call(inputs: string | string[], opts: FillMaskOptions = {}): Promise<FillMaskResult[] | FillMaskResult[][] | FillMaskResult[][][]> {
    const topK = opts.topK ?? 5;
    if (!Number.isInteger(topK) || topK < 1) throw new RangeError(`topK must be a positive integer, got ${topK}`);
    const targets = opts.targets ? this.#targetIds(opts.targets) : null;
    const list = checkInputs(inputs, 'fill-mask').map((x, i) => checkString(x, Array.isArray(inputs) ? `inputs[${i}]` : 'input'));
    const mask = this.tokenizer.maskTokenId;
    const results = await Promise.all(
      list.map(async (text) => {
        const r = this.encode(text, null)[0];
        const positions = r.ids.flatMap((id, i) => (id === mask ? [i] : []));
        if (!positions.length) throw new RangeError(`no mask token (${this.tokenizer.options.maskToken}) found in the input: '${text.slice(0, 80)}'`);
        const k = targets ? Math.min(topK, targets.length) : topK;
        const cands = await this.batcher.submit({ ids: r.ids, typeIds: r.typeIds, k, targets });
        const single = positions.length === 1;
        const perMask = cands.map((c, m) =>
          c.ids.map((id, j) => {
            const filled = r.ids.slice();
            filled[positions[m]] = id;
            const seq = filled.filter((x) => x !== this.tokenizer.padTokenId);
            return { score: c.scores[j], token: id, token_str: this.tokenizer.decode([id]), sequence: this.tokenizer.decode(seq, { skipSpecialTokens: single }) };
          }),
        );
        return single ? perMask[0] : perMask;
      }),
    );
    return Array.isArray(inputs) && inputs.length > 1 ? (results as FillMaskResult[][] | FillMaskResult[][][]) : results[0];
  }

  #targetIds(targets: string[]): number[] {
    if (!Array.isArray(targets) || !targets.length) throw new RangeError('targets must be a non-empty list of strings');
    const ids = new Set<number>();
    for (const t of targets) {
      checkString(t, 'target');
      const id = this.tokenizer.vocab.get(t);
      if (id !== undefined) ids.add(id);
      else {
        const pieces = this.tokenizer.encode(t, undefined, { addSpecialTokens: false });
        if (!pieces.length) throw new RangeError(`target '${t}' has no tokens`);
        ids.add(pieces[0]);
      }
    }
    return [...ids];
  }

  protected async extract(out: BertOutput, items: MaskRow[], T: number): Promise<MaskOut[]> {
    const logits = out.logits ?? out.predictionLogits!;
    const mask = this.tokenizer.maskTokenId;
    const flat: number[] = [];
    const owner: number[] = [];
    items.forEach((r, b) => r.ids.forEach((id, t) => {
      if (id === mask) {
        flat.push(b * T + t);
        owner.push(b);
      }
    }));
    // Only the masked positions' logits: [N, V] instead of [B, T, V].
    const V = logits.size(-1);
    const picked = logits.view(-1, V).indexSelect(0, tensor(BigInt64Array.from(flat, BigInt), { device: this.device }));
    const probs = picked.float().softmax(-1);
    const res: MaskOut[] = items.map(() => []);
    const plain = items.some((r) => !r.targets);
    let vals: Float32Array | null = null;
    let idx: BigInt64Array | null = null;
    let K = 0;
    if (plain) {
      K = Math.min(V, Math.max(...items.map((r) => r.k)));
      const top = probs.topk(K, -1);
      vals = await floats(top.values);
      idx = (await top.indices.data()) as BigInt64Array;
    }
    for (let n = 0; n < flat.length; n++) {
      const r = items[owner[n]];
      if (!r.targets) {
        res[owner[n]].push({ ids: Array.from(idx!.subarray(n * K, n * K + r.k), Number), scores: Array.from(vals!.subarray(n * K, n * K + r.k)) });
        continue;
      }
      const tp = await floats(probs.select(0, n).indexSelect(0, tensor(BigInt64Array.from(r.targets, BigInt), { device: this.device })));
      const order = r.targets.map((id, j) => ({ id, p: tp[j] })).sort((a, b) => b.p - a.p).slice(0, r.k);
      res[owner[n]].push({ ids: order.map((o) => o.id), scores: order.map((o) => o.p) });
    }
    return res;
  }
}

// ---------- question-answering ----------

export interface QAInput {
  question: string;
  context: string;
}
export interface QAAnswer {
  score: number;
  start: number;
  end: number;
  answer: string;
}
export interface QuestionAnsweringOptions {
  topK?: number;
  /** overlap of consecutive context windows in tokens (default min(maxSeqLen / 2, 128)) */
  docStride?: number;
  maxAnswerLen?: number;
  /** tokens per window, question included (default min(tokenizer limit, 384)) */
  maxSeqLen?: number;
  handleImpossibleAnswer?: boolean;
  alignToWords?: boolean;
}
interface QARow extends Row {
  allowed: Uint8Array;
  k: number;
  maxAnswerLen: number;
}
interface QAOut {
  starts: number[];
  ends: number[];
  scores: number[];
  nullScore: number;
}

export class QuestionAnsweringPipeline extends Pipeline<QARow, QAOut> {
  /**
   * Extractive answers with character offsets into the context, long contexts in stride windows
   * (HF's question-answering pipeline). One input gives an answer (a list when topK > 1).
   */
  async call(inputs: QAInput | QAInput[], opts: QuestionAnsweringOptions = {}): Promise<QAAnswer | QAAnswer[] | (QAAnswer | QAAnswer[])[]> {
    const topK = opts.topK ?? 1;
    const maxAnswerLen = opts.maxAnswerLen ?? 15;
    if (!Number.isInteger(topK) || topK < 1) throw new RangeError(`topK must be >= 1, got ${topK}`);
    if (!Number.isInteger(maxAnswerLen) || maxAnswerLen < 1) throw new RangeError(`maxAnswerLen must be >= 1, got ${maxAnswerLen}`);
    const maxSeqLen = opts.maxSeqLen ?? Math.min(this.tokenizer.modelMaxLength, 384, this.maxLength);
    const stride = opts.docStride ?? Math.min(Math.floor(maxSeqLen / 2), 128);
    if (stride > maxSeqLen) throw new RangeError(`docStride (${stride}) is larger than maxSeqLen (${maxSeqLen})`);
    const align = opts.alignToWords ?? true;
    const list = checkInputs(inputs, 'question-answering');
    const results = await Promise.all(
      list.map(async (x, i) => {
        if (typeof x !== 'object' || x === null) throw new TypeError(`inputs[${i}] must be {question, context}`);
        const q = checkString(x.question, `inputs[${i}].question`);
        const ctx = checkString(x.context, `inputs[${i}].context`);
        if (!q.trim() || !ctx.trim()) throw new RangeError(`inputs[${i}]: question and context must not be empty`);
        const { rows } = this.tokenizer.encodeRows([q], [ctx], { truncation: 'only_second', maxLength: maxSeqLen, stride, returnOverflowingTokens: true });
        const k = align ? topK * 2 + 10 : topK;
        const outs = await Promise.all(
          rows.map((r) => {
            // Context tokens and [CLS] may hold the answer; the question and [SEP]s may not.
            const allowed = Uint8Array.from(r.sequenceIds, (s, t) => (s === 1 || r.ids[t] === this.tokenizer.clsTokenId ? 1 : 0));
            return this.batcher.submit({ ids: r.ids, typeIds: r.typeIds, allowed, k, maxAnswerLen });
          }),
        );
        let minNull = 1e6;
        const answers: QAAnswer[] = [];
        outs.forEach((o, w) => {
          const enc = rows[w];
          minNull = Math.min(minNull, o.nullScore);
          o.starts.forEach((s, j) => {
            const e = o.ends[j];
            const [a, b] = spanChars(enc, s, e, align);
            const text = ctx.slice(a, b);
            const same = answers.find((x) => x.answer.toLowerCase() === text.toLowerCase());
            if (same) same.score += o.scores[j];
            else answers.push({ score: o.scores[j], start: a, end: b, answer: text });
          });
        });
        if (opts.handleImpossibleAnswer) answers.push({ score: minNull, start: 0, end: 0, answer: '' });
        const top = answers.sort((a, b) => b.score - a.score).slice(0, topK);
        return top.length === 1 ? top[0] : top;
      }),
    );
    return Array.isArray(inputs) ? results : results[0];
  }

  protected async extract(out: BertOutput, items: QARow[], T: number): Promise<QAOut[]> {
    const B = items.length;
    const allowed = new Uint8Array(B * T);
    items.forEach((r, b) => allowed.set(r.allowed, b * T));
    const ok = tensor(allowed, { shape: [B, T], dtype: 'bool', device: this.device });
    const probs = (l: Tensor) => l.float().maskedFill(ok.logicalNot(), -10000).softmax(-1);
    const start = probs(out.startLogits!);
    const end = probs(out.endLogits!);
    const nullScores = await floats(start.select(1, 0).mul(end.select(1, 0)));
    start.select(1, 0).fill_(0);
    end.select(1, 0).fill_(0);
    // Span scores p(start) p(end) for end - start in [0, maxAnswerLen - 1]: [B, T, T], top k per row.
    const outer = start.unsqueeze(2).mul(end.unsqueeze(1));
    const pos = arange(T, undefined, 1, { device: this.device, dtype: 'int64' });
    const diff = pos.view(1, 1, T).sub(pos.view(1, T, 1));
    const maxLen = tensor(BigInt64Array.from(items, (r) => BigInt(r.maxAnswerLen - 1)), { shape: [B, 1, 1], device: this.device });
    const band = diff.ge(0).logicalAnd(diff.le(maxLen));
    const cand = outer.mul(band).view(B, T * T);
    const K = Math.min(T * T, Math.max(...items.map((r) => r.k)));
    const top = cand.topk(K, -1);
    const vals = await floats(top.values);
    const idx = (await top.indices.data()) as BigInt64Array;
    return items.map((r, b) => {
      const o: QAOut = { starts: [], ends: [], scores: [], nullScore: nullScores[b] };
      for (let j = 0; j < Math.min(r.k, K); j++) {
        const flat = Number(idx[b * K + j]);
        const s = Math.floor(flat / T);
        const e = flat % T;
        if (!r.allowed[s] || !r.allowed[e]) continue;
        o.starts.push(s);
        o.ends.push(e);
        o.scores.push(vals[b * K + j]);
      }
      return o;
    });
  }
}

/** Character span of tokens s..e in the context: whole words when aligning, else the tokens' offsets. */
function spanChars(enc: Encoding, s: number, e: number, align: boolean): [number, number] {
  if (align) {
    const ws = enc.wordIds[s];
    const we = enc.wordIds[e];
    if (ws !== null && we !== null) {
      let a = Infinity;
      let b = -Infinity;
      for (let t = 0; t < enc.ids.length; t++) {
        if (enc.sequenceIds[t] !== 1) continue;
        if (enc.wordIds[t] === ws) a = Math.min(a, enc.offsets[t][0]);
        if (enc.wordIds[t] === we) b = Math.max(b, enc.offsets[t][1]);
      }
      if (a !== Infinity && b !== -Infinity) return [a, b];
    }
  }
  return [enc.offsets[s][0], enc.offsets[e][1]];
}

// ---------- feature-extraction ----------

export type Pooling = 'none' | 'mean' | 'cls';
export interface FeatureExtractionOptions {
  /** 'none' (HF's pipeline: every token's hidden state), 'mean' (over the attention mask) or 'cls' */
  pooling?: Pooling;
  /** L2-normalise pooled vectors (cosine similarity becomes a dot product) */
  normalize?: boolean;
}
interface FeatRow extends Row {
  pooling: Pooling;
  normalize: boolean;
}

export class FeatureExtractionPipeline extends Pipeline<FeatRow, number[] | number[][][]> {
  /** Hidden states shaped [1, tokens, hidden] per input as HF's pipeline gives, or one pooled vector. */
  async call(inputs: string | string[], opts: FeatureExtractionOptions = {}): Promise<number[] | number[][][] | (number[] | number[][][])[]> {
    const pooling = opts.pooling ?? 'none';
    if (!['none', 'mean', 'cls'].includes(pooling)) throw new TypeError(`pooling must be 'none', 'mean' or 'cls', got '${pooling}'`);
    if (opts.normalize && pooling === 'none') throw new TypeError("normalize needs pooling 'mean' or 'cls'");
    const list = checkInputs(inputs, 'feature-extraction').map((x, i) => checkString(x, Array.isArray(inputs) ? `inputs[${i}]` : 'input'));
    const results = await Promise.all(list.map((t) => {
      const r = this.encode(t, null)[0];
      return this.batcher.submit({ ids: r.ids, typeIds: r.typeIds, pooling, normalize: !!opts.normalize });
    }));
    return Array.isArray(inputs) ? results : results[0];
  }

  protected async extract(out: BertOutput, items: FeatRow[], T: number): Promise<(number[] | number[][][])[]> {
    const h = out.lastHiddenState!.float();
    const [B, , H] = h.shape;
    const res: (number[] | number[][][])[] = new Array(B);
    const need = (p: Pooling) => items.some((r) => r.pooling === p);
    const pooled = async (t: Tensor, p: Pooling) => {
      const n = await floats(t.div(t.norm(2, -1, true).clamp(1e-12)));
      const raw = await floats(t);
      items.forEach((r, b) => {
        if (r.pooling === p) res[b] = Array.from((r.normalize ? n : raw).subarray(b * H, (b + 1) * H));
      });
    };
    if (need('mean')) {
      const lens = BigInt64Array.from(items, (r) => BigInt(r.ids.length));
      const m = arange(T, undefined, 1, { device: this.device, dtype: 'int64' }).view(1, T).lt(tensor(lens, { shape: [B, 1], device: this.device })).unsqueeze(-1).float();
      await pooled(h.mul(m).sum(1).div(m.sum(1).clamp(1e-9)), 'mean');
    }
    if (need('cls')) await pooled(h.select(1, 0), 'cls');
    if (need('none')) {
      const d = await floats(h);
      items.forEach((r, b) => {
        if (r.pooling !== 'none') return;
        const rows: number[][] = [];
        for (let t = 0; t < r.ids.length; t++) rows.push(Array.from(d.subarray((b * T + t) * H, (b * T + t + 1) * H)));
        res[b] = [rows];
      });
    }
    return res;
  }
}

// ---------- the factory ----------

export type AnyPipeline = TextClassificationPipeline | TokenClassificationPipeline | FillMaskPipeline | QuestionAnsweringPipeline | FeatureExtractionPipeline;
type PipelineFor<T extends string> = T extends 'text-classification' | 'sentiment-analysis' ? TextClassificationPipeline
  : T extends 'token-classification' | 'ner' ? TokenClassificationPipeline
  : T extends 'fill-mask' ? FillMaskPipeline
  : T extends 'question-answering' ? QuestionAnsweringPipeline
  : T extends 'feature-extraction' ? FeatureExtractionPipeline
  : never;

const CLASSES = {
  'text-classification': TextClassificationPipeline,
  'token-classification': TokenClassificationPipeline,
  'fill-mask': FillMaskPipeline,
  'question-answering': QuestionAnsweringPipeline,
  'feature-extraction': FeatureExtractionPipeline,
};

export function resolveTask(task: string): Task {
  const t = (ALIASES[task] ?? task) as Task;
  if (!TASKS.includes(t)) throw new TypeError(`unknown task '${task}' (expected one of ${[...TASKS, ...Object.keys(ALIASES)].join(', ')})`);
  return t;
}

/**
 * A pipeline for a task over a model folder or Hub name (config.json, model.safetensors, tokenizer
 * files), or over an already loaded model and tokenizer. Feature extraction on a model with a head
 * uses its encoder.
 * @example const clf = await pipeline('text-classification', './sst2-model'); await clf.call('a gripping film')
 */
export async function pipeline<T extends Task | 'sentiment-analysis' | 'ner'>(
  task: T,
  model: string | { model: BertPreTrainedModel; tokenizer: BertTokenizer },
  opts: PipelineOptions = {},
): Promise<PipelineFor<T>> {
  const t = resolveTask(task);
  const warnings: string[] = [];
  let m: BertPreTrainedModel;
  let tok: BertTokenizer;
  if (typeof model === 'string') {
    tok = await BertTokenizer.fromPretrained(model, opts);
    m = await fromPretrained(model, { ...opts, kind: HEAD_FOR[t] === 'BertModel' ? 'BertModel' : t === 'fill-mask' ? undefined : HEAD_FOR[t] });
    if (t === 'fill-mask' && m.kind !== 'BertForMaskedLM' && m.kind !== 'BertForPreTraining') {
      m = await fromPretrained(model, { ...opts, kind: 'BertForMaskedLM' });
    }
  } else {
    if (!(model.model instanceof BertPreTrainedModel) || !(model.tokenizer instanceof BertTokenizer)) throw new TypeError('pipeline() takes a model folder, a Hub name or { model, tokenizer }');
    m = model.model;
    tok = model.tokenizer;
  }
  if (typeof model === 'string' && 'loadReport' in m) {
    const missing = (m as { loadReport: { missingKeys: string[] } }).loadReport.missingKeys;
    // HF's behaviour: a head the checkpoint lacks starts random, with a warning.
    if (missing.length) warnings.push(`${model}: ${missing.length} weights not in the checkpoint were initialised at random (${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', ...' : ''}); train the model before use`);
  }
  for (const w of warnings) process.emitWarning(w, { code: 'TORCHBERT_MISSING_WEIGHTS' });
  if (opts.quantize !== undefined && opts.quantize !== 'int8') throw new TypeError(`quantize must be 'int8', got ${JSON.stringify(opts.quantize)}`);
  if (opts.quantize && opts.prepack) throw new TypeError("choose quantize: 'int8' or prepack, not both");
  if (opts.quantize && !m.quantized) m = m.quantizeDynamic();
  if (opts.prepack && !m.prepacked) m = await m.prepackAsync();
  const kinds = tasksFor(m.kind);
  if (!kinds.includes(t)) throw new TypeError(`a ${m.kind} cannot run '${t}' (it serves ${kinds.join(', ')})`);
  // what this call created (loaded, or copied by quantize/prepack) is the pipeline's to free
  const owned = typeof model === 'string' || m !== model.model ? m : null;
  if (t === 'feature-extraction' && m.kind !== 'BertModel') m = encoderOf(m);
  m.eval();
  const p = new CLASSES[t](t, tok, m, opts) as PipelineFor<T>;
  p.owned = owned;
  p.warnings.push(...warnings);
  return p;
}

/** The encoder of a model with a head, sharing its weights. */
export function encoderOf(m: BertPreTrainedModel): BertPreTrainedModel {
  if (m.kind === 'BertModel') return m;
  return new BertPreTrainedModel('BertModel', m.config, m.module.getAttr('bert') as import('./module').ScriptModule, { quantized: m.quantized, prepacked: m.prepacked });
}
