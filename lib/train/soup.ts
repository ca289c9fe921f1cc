// Weight averaging ("model soups", Wortsman et al. 2022): copies fine-tuned from the same pre-trained
// weights and the same head initialisation, on different batch orders, stay in one basin of the loss, so
// the mean of their weights is a single model that is usually better than each of them.
import * as tb from '../core';
import type { Tensor } from '../core';

/** What averageWeights needs of a model: its parameters by name (a BertPreTrainedModel, a Module). */
export interface NamedParameters {
  namedParameters(): [string, Tensor][];
}

/**
 * Averages the models' parameters into the first one (a uniform soup) and returns it; the other models are
 * left as they were. Every model must have the same parameter names, shapes and floating-point dtypes.
 */
export function averageWeights<M extends NamedParameters>(models: M[]): M {
  if (!models.length) throw new RangeError('averageWeights: no models to average');
  const target = models[0].namedParameters();
  const others = models.slice(1).map((m, k) => {
    const named = new Map(m.namedParameters());
    if (named.size !== target.length) throw new TypeError(`averageWeights: model ${k + 1} has ${named.size} parameters, model 0 has ${target.length}`);
    return target.map(([name, t]) => {
      const p = named.get(name);
      if (!p) throw new TypeError(`averageWeights: model ${k + 1} has no parameter ${name}`);
      if (p.shape.join() !== t.shape.join() || p.dtype !== t.dtype) {
        throw new TypeError(`averageWeights: ${name} is ${p.dtype} [${p.shape}] in model ${k + 1} and ${t.dtype} [${t.shape}] in model 0`);
      }
      return p;
    });
  });
  for (const [name, t] of target) if (!t.isFloatingPoint) throw new TypeError(`averageWeights: ${name} is ${t.dtype}, not a floating-point parameter`);
  tb.noGrad(() => {
    target.forEach(([, t], j) => {
      for (const o of others) t.add_(o[j]);
      t.mul_(1 / models.length);
    });
  });
  return models[0];
}
