// Feature extraction: hidden states per token, or pooled (mean or [CLS]) sentence embeddings.
import { BertOutput } from '../models/bert';
import { Tensor, tensor, arange } from '../tensor';
import { Pipeline, Row, checkInputs, checkString, floats } from './base';

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
