// torch.nn.functional for the ops that BERT, its heads and training loops need (F.cross_entropy, ...).
import { Tensor, op } from './tensor';

export type Reduction = 'none' | 'mean' | 'sum';
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

function reduction(r: Reduction | undefined): number {
  const v = REDUCTION[r ?? 'mean'];
  if (v === undefined) throw new TypeError(`reduction must be 'none', 'mean' or 'sum', got '${String(r)}'`);
  return v;
}

/**
 * Cross entropy over class logits [N, C] (or [N, C, ...]) with int64 targets, like F.cross_entropy.
 * @example crossEntropy(logits, labels, { ignoreIndex: -100 })
 */
export function crossEntropy(input: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  return op('aten::cross_entropy_loss').t(input, target, opts.weight, reduction(opts.reduction), opts.ignoreIndex ?? -100, opts.labelSmoothing ?? 0);
}
export interface CrossEntropyOptions {
  weight?: Tensor;
  ignoreIndex?: number;
  reduction?: Reduction;
  labelSmoothing?: number;
}
/** crossEntropy on the compute thread: for losses over large logits (masked LM's [B*T, vocab]) that would hold the event loop. */
export async function crossEntropyAsync(input: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Promise<Tensor> {
  return op('aten::cross_entropy_loss').tAsync(input, target, opts.weight, reduction(opts.reduction), opts.ignoreIndex ?? -100, opts.labelSmoothing ?? 0);
}

export function nllLoss(input: Tensor, target: Tensor, opts: { weight?: Tensor; ignoreIndex?: number; reduction?: Reduction } = {}): Tensor {
  return op('aten::nll_loss_nd').t(input, target, opts.weight, reduction(opts.reduction), opts.ignoreIndex ?? -100);
}

export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  return op('aten::mse_loss').t(input, target, reduction(opts.reduction));
}

export function bceWithLogits(input: Tensor, target: Tensor, opts: { weight?: Tensor; posWeight?: Tensor; reduction?: Reduction } = {}): Tensor {
  return op('aten::binary_cross_entropy_with_logits').t(input, target, opts.weight, opts.posWeight, reduction(opts.reduction));
}

/** y = x W^T + b */
export function linear(input: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return op('aten::linear').t(input, weight, bias);
}

export function layerNorm(input: Tensor, normalizedShape: number[], weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return op('aten::layer_norm').t(input, normalizedShape, weight, bias, eps, true);
}

export function embedding(weight: Tensor, indices: Tensor, paddingIdx = -1): Tensor {
  return op('aten::embedding').t(weight, indices, paddingIdx, false, false);
}

export function softmax(input: Tensor, dim: number): Tensor {
  return input.softmax(dim);
}
export function logSoftmax(input: Tensor, dim: number): Tensor {
  return input.logSoftmax(dim);
}
export function gelu(input: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return input.gelu(approximate);
}
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  return input.dropout(p, training);
}

/** softmax(QK^T / sqrt(d) + mask) V, through ATen's fused kernels. Shapes [B, nH, T, dH]. */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: { attnMask?: Tensor; dropoutP?: number; isCausal?: boolean; scale?: number } = {}): Tensor {
  return op('aten::scaled_dot_product_attention').t(q, k, v, opts.attnMask, opts.dropoutP ?? 0, !!opts.isCausal, opts.scale);
}

/** Cosine similarity along dim. */
export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return op('aten::cosine_similarity').t(a, b, dim, eps);
}

/** L_p normalisation along dim (F.normalize). */
export function normalize(input: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const n = input.norm(p, dim, true);
  const d = n.clamp(eps);
  n.dispose();
  const out = input.div(d);
  d.dispose();
  return out;
}
