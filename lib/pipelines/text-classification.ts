// Text classification (and sentiment analysis): class scores per input, optionally for a text pair.
import { BertOutput } from '../models/bert';
import { Pipeline, argmax, Row, checkInputs, checkString, floats } from './base';

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
