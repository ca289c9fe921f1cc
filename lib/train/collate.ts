// Batching: dynamic padding, length-grouped seeded shuffling, and masked-LM collation with HF's
// DataCollatorForLanguageModeling semantics (15% of tokens; of those 80% [MASK], 10% random, 10% kept;
// special tokens and padding never masked; labels -100 elsewhere). Random draws use libtorch's
// generator, so manualSeed makes them reproducible.
import * as tb from '../index';
import { Tensor } from '../index';

export interface Example {
  inputIds: number[];
  tokenTypeIds?: number[];
  label?: number;
  labels?: number[];
}

export interface Batch {
  inputIds: Tensor;
  attentionMask: Tensor;
  tokenTypeIds: Tensor;
  labels?: Tensor;
}

function mat(rows: number[][], width: number, pad: number): Tensor {
  const flat = new BigInt64Array(rows.length * width).fill(BigInt(pad));
  rows.forEach((r, i) => r.forEach((v, j) => (flat[i * width + j] = BigInt(v))));
  return tb.tensor(flat, { shape: [rows.length, width] });
}

/** Pads a list of examples to the longest (optionally to a multiple), with int64 tensors out. */
export function padCollate(examples: Example[], padId = 0, padToMultipleOf?: number): Batch {
  let T = Math.max(...examples.map((e) => e.inputIds.length));
  if (padToMultipleOf && T % padToMultipleOf) T += padToMultipleOf - (T % padToMultipleOf);
  const batch: Batch = {
    inputIds: mat(examples.map((e) => e.inputIds), T, padId),
    attentionMask: mat(examples.map((e) => e.inputIds.map(() => 1)), T, 0),
    tokenTypeIds: mat(examples.map((e) => e.tokenTypeIds ?? []), T, 0),
  };
  if (examples[0].labels) batch.labels = mat(examples.map((e) => e.labels!), T, -100);
  else if (examples[0].label !== undefined) batch.labels = tb.tensor(BigInt64Array.from(examples, (e) => BigInt(e.label!)));
  return batch;
}

export interface MlmOptions {
  mlmProbability?: number;
  maskTokenId: number;
  vocabSize: number;
  specialIds: number[];
  padId?: number;
}

/** Masks a padded batch in place of HF's DataCollatorForLanguageModeling; returns the labels. */
export function maskTokens(inputIds: Tensor, opts: MlmOptions): { inputIds: Tensor; labels: Tensor } {
  return tb.tidy(() => tb.noGrad(() => {
    const p = opts.mlmProbability ?? 0.15;
    let special = inputIds.eq(opts.padId ?? 0);
    for (const id of opts.specialIds) special = special.logicalOr(inputIds.eq(id));
    const prob = tb.fullLike(inputIds, p, { dtype: 'float32' }).maskedFill(special, 0);
    const masked = tb.op('aten::bernoulli').t(prob._handle, null).bool();
    const labels = inputIds.maskedFill(masked.logicalNot(), -100);
    const replace = tb.op('aten::bernoulli.p').t(tb.fullLike(inputIds, 0, { dtype: 'float32' })._handle, 0.8, null).bool().logicalAnd(masked);
    let ids = inputIds.maskedFill(replace, opts.maskTokenId);
    const random = tb.op('aten::bernoulli.p').t(tb.fullLike(inputIds, 0, { dtype: 'float32' })._handle, 0.5, null).bool().logicalAnd(masked).logicalAnd(replace.logicalNot());
    const words = tb.randint(0, opts.vocabSize, inputIds.shape);
    ids = tb.where(random, words, ids);
    return { inputIds: ids, labels };
  }));
}

/** Batches of indices: shuffled with a seed, grouped by length within windows to limit padding. */
export function batchIndices(lengths: number[], batchSize: number, opts: { shuffle?: boolean; groupByLength?: boolean; seed?: number } = {}): number[][] {
  let order = lengths.map((_, i) => i);
  if (opts.shuffle !== false) {
    let s = (opts.seed ?? 42) >>> 0;
    const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
  }
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
