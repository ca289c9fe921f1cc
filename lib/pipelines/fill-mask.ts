// Fill-mask: the likeliest tokens for each [MASK].
import { BertOutput } from '../models/bert';
import { tensor } from '../tensor';
import { Pipeline, Row, checkInputs, checkString, floats } from './base';

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
