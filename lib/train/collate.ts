// Batching: dynamic padding, length-grouped seeded shuffling, and masked-LM collation with HF's
// DataCollatorForLanguageModeling semantics (15% of tokens; of those 80% [MASK], 10% random, 10% kept;
// special tokens and padding never masked; labels -100 elsewhere). Random draws use libtorch's
// generator, so manualSeed makes them reproducible.
import { DistributedSampler, seededPermutation, seededRandom } from '../distributed/sampler';
import * as tb from '../core';
import { Tensor } from '../core';
import { int64Rows } from '../tensor';

export interface Example {
  inputIds: number[];
  tokenTypeIds?: number[];
  label?: number;
  /** a regression target (float32 labels) in place of a class label */
  target?: number;
  /** multi-label targets, 0 or 1 per class (float32 labels [batch, classes]) */
  targets?: number[];
  labels?: number[];
}

export interface Batch {
  inputIds: Tensor;
  attentionMask: Tensor;
  tokenTypeIds: Tensor;
  labels?: Tensor;
}


/**
 * Packs tokenized lines (without special tokens) into rows of exactly `seqLen` tokens, `[CLS] ... [SEP]`,
 * as HF's run_mlm.py groups texts when not --line_by_line: the lines are concatenated in order, each
 * ended by [SEP], and cut every seqLen - 2 tokens (the last, shorter row kept). Short lines then cost no
 * padding and a row carries context across line ends.
 */
export function packSequences(lines: number[][], seqLen: number, clsId: number, sepId: number): number[][] {
  if (!Number.isInteger(seqLen) || seqLen < 3) throw new RangeError(`packSequences: seqLen must be an integer >= 3, got ${seqLen}`);
  const body = seqLen - 2;
  const rows: number[][] = [];
  let cur: number[] = [];
  for (const line of lines) {
    if (!line.length) continue;
    for (const id of [...line, sepId]) {
      cur.push(id);
      if (cur.length === body) {
        rows.push([clsId, ...cur, sepId]);
        cur = [];
      }
    }
  }
  // the rest, unless it is only the last line's separator (text that ended on a row boundary)
  if (cur.some((id) => id !== sepId)) rows.push([clsId, ...cur, sepId]);
  return rows;
}

/** Pads a list of examples to the longest (optionally to a multiple), with int64 tensors out. */
export function padCollate(examples: Example[], padId = 0, padToMultipleOf?: number): Batch {
  let T = Math.max(...examples.map((e) => e.inputIds.length));
  if (padToMultipleOf && T % padToMultipleOf) T += padToMultipleOf - (T % padToMultipleOf);
  const batch: Batch = {
    inputIds: int64Rows(examples.map((e) => e.inputIds), T, padId),
    attentionMask: int64Rows(examples.map((e) => e.inputIds.map(() => 1)), T, 0),
    tokenTypeIds: int64Rows(examples.map((e) => e.tokenTypeIds ?? []), T, 0),
  };
  if (examples[0].labels) batch.labels = int64Rows(examples.map((e) => e.labels!), T, -100);
  else if (examples[0].label !== undefined) batch.labels = tb.tensor(BigInt64Array.from(examples, (e) => BigInt(e.label!)));
  else if (examples[0].target !== undefined) batch.labels = tb.tensor(Float32Array.from(examples, (e) => e.target!));
  else if (examples[0].targets) batch.labels = tb.tensor(Float32Array.from(examples.flatMap((e) => e.targets!)), { shape: [examples.length, examples[0].targets.length] });
  return batch;
}

export interface MlmOptions {
  mlmProbability?: number;
  maskTokenId: number;
  vocabSize: number;
  specialIds: number[];
  padId?: number;
  /**
   * [vocabSize] float32 multipliers of mlmProbability by token id (task-guided selective masking): a token of
   * weight 2 is masked twice as often as one of weight 1; each probability is capped at 1
   */
  tokenWeights?: Tensor;
}

/**
 * Masks a padded batch in place of HF's DataCollatorForLanguageModeling; returns the labels. With
 * `selected` (a bool [B, T] tensor, e.g. from wholeWordMask) those positions are the ones predicted.
 */
export function maskTokens(inputIds: Tensor, opts: MlmOptions, selected?: Tensor): { inputIds: Tensor; labels: Tensor } {
  const w = opts.tokenWeights;
  if (w && (w.ndim !== 1 || w.size(0) !== opts.vocabSize || w.dtype !== 'float32')) throw new RangeError(`maskTokens: tokenWeights must be float32 [${opts.vocabSize}] (one weight per token id), got ${w.dtype} [${w.shape.join(', ')}]`);
  return tb.tidy(() => tb.noGrad(() => {
    const p = opts.mlmProbability ?? 0.15;
    let special = inputIds.eq(opts.padId ?? 0);
    for (const id of opts.specialIds) special = special.logicalOr(inputIds.eq(id));
    const prob = (w ? w.index([inputIds]).mul(p).clamp(0, 1) : tb.fullLike(inputIds, p, { dtype: 'float32' })).maskedFill(special, 0);
    const masked = selected ? selected.logicalAnd(special.logicalNot()) : tb.op('aten::bernoulli').t(prob, null).bool();
    const labels = inputIds.maskedFill(masked.logicalNot(), -100);
    const replace = tb.op('aten::bernoulli.p').t(tb.fullLike(inputIds, 0, { dtype: 'float32' }), 0.8, null).bool().logicalAnd(masked);
    let ids = inputIds.maskedFill(replace, opts.maskTokenId);
    const random = tb.op('aten::bernoulli.p').t(tb.fullLike(inputIds, 0, { dtype: 'float32' }), 0.5, null).bool().logicalAnd(masked).logicalAnd(replace.logicalNot());
    const words = tb.randint(0, opts.vocabSize, inputIds.shape);
    ids = tb.where(random, words, ids);
    return { inputIds: ids, labels };
  }));
}

/**
 * Each row's bag of words as a distribution for the [CLS] term of `mlmBagOfWordsLoss`: [B, V], uniform over
 * the distinct tokens of the row (before masking), special tokens and padding left out. A few passes over
 * [B, V] (2 MB at B 64, V 8,000), run inline as maskTokens' are.
 */
export function bagOfWordsTargets(ids: Tensor, vocabSize: number, specialIds: number[]): Tensor {
  return tb.noGrad(() => {
    const seen = tb.zeros([ids.size(0), vocabSize]).scatter(1, ids, 1);
    const keep = tb.ones([vocabSize]).indexPut_([tb.tensor(BigInt64Array.from(specialIds, BigInt))], tb.tensor(0));
    const bag = seen.mul(keep);
    return bag.div(bag.sum(1, true).clamp(1));
  });
}

/** Batches of indices: shuffled with a seed, grouped by length within windows to limit padding. */
export function batchIndices(lengths: number[], batchSize: number, opts: { shuffle?: boolean; groupByLength?: boolean; seed?: number } = {}): number[][] {
  let order = opts.shuffle !== false ? seededPermutation(lengths.length, opts.seed ?? 42) : lengths.map((_, i) => i);
  if (opts.groupByLength) {
    const win = batchSize * 50;
    const grouped: number[] = [];
    for (let i = 0; i < order.length; i += win) grouped.push(...order.slice(i, i + win).sort((a, b) => lengths[b] - lengths[a]));
    order = grouped;
  }
  const out: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) out.push(order.slice(i, i + batchSize));
  return out;
}

/**
 * The training batches of every epoch, as HF's Trainer draws them: a fresh seeded shuffle each epoch
 * (seed + epoch, as PyTorch's DistributedSampler seeds it), optionally grouped by length (HF's
 * group_by_length, off by default there too). `at(step)` is the batch of a global step, so a run resumed
 * at step k continues with the batches an uninterrupted run would have drawn.
 */
export class EpochBatches {
  #epoch = -1;
  #batches: number[][] = [];
  readonly perEpoch: number;
  constructor(
    readonly lengths: number[],
    readonly batchSize: number,
    /** rank/worldSize: data-parallel, each rank a disjoint shard as PyTorch's DistributedSampler draws it */
    readonly opts: { seed?: number; groupByLength?: boolean; shuffle?: boolean; rank?: number; worldSize?: number } = {},
  ) {
    if (!lengths.length) throw new RangeError('EpochBatches: no examples');
    const shard = opts.worldSize && opts.worldSize > 1 ? new DistributedSampler(lengths.length, { numReplicas: opts.worldSize, rank: opts.rank ?? 0 }).numSamples : lengths.length;
    this.perEpoch = Math.ceil(shard / batchSize);
  }
  /** The batches of one epoch (0-based). */
  epoch(e: number): number[][] {
    if (e !== this.#epoch) {
      const seed = (this.opts.seed ?? 42) + e;
      const world = this.opts.worldSize ?? 1;
      if (world > 1) {
        const sampler = new DistributedSampler(this.lengths.length, { numReplicas: world, rank: this.opts.rank ?? 0, shuffle: this.opts.shuffle, seed });
        const mine = sampler.indices();
        this.#batches = batchIndices(mine.map((i) => this.lengths[i]), this.batchSize, { shuffle: false, groupByLength: this.opts.groupByLength }).map((b) => b.map((k) => mine[k]));
      } else this.#batches = batchIndices(this.lengths, this.batchSize, { ...this.opts, seed });
      this.#epoch = e;
    }
    return this.#batches;
  }
  /** The batch of global step `step` (0-based). */
  at(step: number): number[] {
    return this.epoch(Math.floor(step / this.perEpoch))[step % this.perEpoch];
  }
}

/**
 * Whole-word masking (HF's DataCollatorForWholeWordMask): picks whole words (a token and the "##"
 * pieces after it) in random order until about mlmProbability of each row's tokens are chosen; returns
 * the bool [B, T] selection for maskTokens, which then applies 80/10/10 per token. Randomness comes from
 * libtorch's generator (manualSeed reproduces it).
 */
export function wholeWordMask(rows: number[][], width: number, idsToTokens: string[], specialIds: number[], mlmProbability = 0.15, maxPredictions = 512): Tensor {
  const sel = new Uint8Array(rows.length * width);
  const special = new Set(specialIds);
  rows.forEach((ids, b) => {
    const words: number[][] = [];
    ids.forEach((id, i) => {
      if (special.has(id)) return;
      if (words.length && (idsToTokens[id] ?? '').startsWith('##')) words[words.length - 1].push(i);
      else words.push([i]);
    });
    if (!words.length) return;
    const order = tb.tidy(() => Array.from(tb.randperm(words.length).dataSync() as BigInt64Array, Number));
    const want = Math.min(maxPredictions, Math.max(1, Math.round(ids.length * mlmProbability)));
    let n = 0;
    for (const w of order) {
      if (n >= want) break;
      if (n + words[w].length > want) continue;
      for (const i of words[w]) sel[b * width + i] = 1;
      n += words[w].length;
    }
  });
  return tb.tensor(sel, { shape: [rows.length, width], dtype: 'bool' });
}

/** NER label alignment: each word's label on its first sub-token, -100 on the others and on special tokens. */
export function alignLabels(wordIds: (number | null)[], wordLabels: number[], labelAllTokens = false): number[] {
  let prev: number | null = null;
  return wordIds.map((w) => {
    if (w === null) return -100;
    if (w >= wordLabels.length) throw new RangeError(`alignLabels: word ${w} has no label (${wordLabels.length} labels)`);
    const first = w !== prev;
    prev = w;
    return first || labelAllTokens ? wordLabels[w] : -100;
  });
}

/**
 * Next-sentence-prediction pairs from documents (lists of sentences): each sentence with the one after it
 * (label 0, IsNext) or, half the time, with a random sentence of another document (label 1, NotNext).
 */
export function nspPairs(docs: string[][], seed = 42): { a: string; b: string; label: 0 | 1 }[] {
  const rnd = seededRandom(seed);
  const out: { a: string; b: string; label: 0 | 1 }[] = [];
  const usable = docs.map((d, i) => (d.length ? i : -1)).filter((i) => i >= 0);
  docs.forEach((doc, d) => {
    for (let i = 0; i + 1 < doc.length; i++) {
      if (usable.length > 1 && rnd() < 0.5) {
        let o = d;
        while (o === d) o = usable[Math.floor(rnd() * usable.length)];
        const other = docs[o];
        out.push({ a: doc[i], b: other[Math.floor(rnd() * other.length)], label: 1 });
      } else out.push({ a: doc[i], b: doc[i + 1], label: 0 });
    }
  });
  return out;
}
