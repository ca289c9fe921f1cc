// R-Drop (Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks"): each example goes through the
// model twice, with different dropout, and the loss adds the symmetric KL divergence between the two
// predictions to their cross-entropy. It is what lifted the main job's small BERT on SST-2 (docs/results.md).
import * as tb from '../core';
import { Tensor, F } from '../core';
import type { BertPreTrainedModel, BertInputs } from '../models/bert';

/**
 * The R-Drop loss of a classification batch (sequence, token or multiple-choice classification: logits over
 * classes and integer labels, -100 ignored): the batch is repeated `copies` times (2 by default, the paper's
 * form) along its first dimension and run in one forward, so each copy draws its own dropout masks in one pass
 * of larger GEMMs; the result is the mean cross-entropy of the copies plus `alpha` times the mean, over the
 * pairs of copies and the labelled rows, of (KL(p1 || p2) + KL(p2 || p1)) / 2. alpha 0 is plain cross-entropy
 * on the repeated batch (multi-sample dropout).
 */
export async function rDropLoss(model: BertPreTrainedModel, inputs: BertInputs, alpha: number, copies = 2): Promise<Tensor> {
  if (!(alpha >= 0 && Number.isFinite(alpha))) throw new RangeError(`rDropLoss: alpha must be a non-negative number, got ${alpha}`);
  if (!(Number.isInteger(copies) && copies >= 2)) throw new RangeError(`rDropLoss: copies must be an integer of at least 2, got ${copies}`);
  const labels = inputs.labels;
  if (!labels) throw new TypeError('rDropLoss: the batch has no labels');
  if (labels.dtype !== 'int64') throw new TypeError(`rDropLoss: needs class labels (int64), got ${labels.dtype} (regression has no class distribution to compare)`);
  const repeat = (t: Tensor | undefined) => (t ? tb.cat(Array<Tensor>(copies).fill(t), 0) : undefined);
  const out = await model.forward({ inputIds: repeat(inputs.inputIds)!, attentionMask: repeat(inputs.attentionMask), tokenTypeIds: repeat(inputs.tokenTypeIds), positionIds: repeat(inputs.positionIds) });
  if (!out.logits) throw new TypeError(`rDropLoss: ${model.constructor.name} gives no class logits (R-Drop here is for classification heads)`);
  const classes = out.logits.shape.at(-1)!;
  if (classes < 2) throw new TypeError(`rDropLoss: needs at least 2 classes, got logits of shape [${out.logits.shape.join(', ')}]`);
  const n = labels.shape[0];
  const parts = Array.from({ length: copies }, (_, k) => out.logits!.narrow(0, k * n, n));
  const flat = labels.reshape([-1]);
  const ce = parts.map((l) => F.crossEntropy(l.reshape([-1, classes]), flat)).reduce((a, b) => a.add(b)).div(copies);
  if (alpha === 0) return ce;
  const logp = parts.map((l) => l.logSoftmax(-1));
  // per row (or token) and pair: the two directions' KL summed over the classes, halved
  const pairs: Tensor[] = [];
  for (let i = 0; i < copies; i++) for (let j = i + 1; j < copies; j++) pairs.push(logp[i].exp().sub(logp[j].exp()).mul(logp[i].sub(logp[j])).sum(-1).div(2));
  const kl = pairs.reduce((a, b) => a.add(b)).div(pairs.length).reshape([-1]);
  const real = flat.ne(-100).float();
  return ce.add(kl.mul(real).sum().div(real.sum().clamp(1)).mul(alpha));
}
