// R-Drop (Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks"): each example goes through the
// model twice, with different dropout, and the loss adds the symmetric KL divergence between the two
// predictions to their cross-entropy. It is what lifted the main job's small BERT on SST-2 (docs/results.md).
import * as tb from '../core';
import { Tensor, F } from '../core';
import type { BertPreTrainedModel, BertInputs } from '../models/bert';

/**
 * The R-Drop loss of a classification batch (sequence, token or multiple-choice classification: logits over
 * classes and integer labels, -100 ignored): the batch is doubled along its first dimension and run in one
 * forward, so each copy draws its own dropout masks in one pass of larger GEMMs; the result is the mean
 * cross-entropy of both copies plus `alpha` times the mean over the labelled rows of
 * (KL(p1 || p2) + KL(p2 || p1)) / 2. alpha 0 is plain cross-entropy on the doubled batch.
 */
export async function rDropLoss(model: BertPreTrainedModel, inputs: BertInputs, alpha: number): Promise<Tensor> {
  if (!(alpha >= 0 && Number.isFinite(alpha))) throw new RangeError(`rDropLoss: alpha must be a non-negative number, got ${alpha}`);
  const labels = inputs.labels;
  if (!labels) throw new TypeError('rDropLoss: the batch has no labels');
  if (labels.dtype !== 'int64') throw new TypeError(`rDropLoss: needs class labels (int64), got ${labels.dtype} (regression has no class distribution to compare)`);
  const twice = (t: Tensor | undefined) => (t ? tb.cat([t, t], 0) : undefined);
  const out = await model.forward({ inputIds: twice(inputs.inputIds)!, attentionMask: twice(inputs.attentionMask), tokenTypeIds: twice(inputs.tokenTypeIds), positionIds: twice(inputs.positionIds) });
  if (!out.logits) throw new TypeError(`rDropLoss: ${model.constructor.name} gives no class logits (R-Drop here is for classification heads)`);
  const classes = out.logits.shape.at(-1)!;
  if (classes < 2) throw new TypeError(`rDropLoss: needs at least 2 classes, got logits of shape [${out.logits.shape.join(', ')}]`);
  const n = labels.shape[0];
  const [l1, l2] = [out.logits.narrow(0, 0, n), out.logits.narrow(0, n, n)];
  const flat = labels.reshape([-1]);
  const ce = F.crossEntropy(l1.reshape([-1, classes]), flat).add(F.crossEntropy(l2.reshape([-1, classes]), flat)).div(2);
  if (alpha === 0) return ce;
  const [a, b] = [l1.logSoftmax(-1), l2.logSoftmax(-1)];
  // per row (or token): the two directions' KL summed over the classes, halved; the mean over labelled rows
  const kl = a.exp().sub(b.exp()).mul(a.sub(b)).sum(-1).div(2).reshape([-1]);
  const real = flat.ne(-100).float();
  return ce.add(kl.mul(real).sum().div(real.sum().clamp(1)).mul(alpha));
}
