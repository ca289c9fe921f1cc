// Word vectors from co-occurrence counts: positive pointwise mutual information over a window, reduced
// by a truncated SVD (Levy, Goldberg & Dagan 2015, "Improving distributional similarity with lessons
// learned from word embeddings"). Seconds of work on a corpus that masked-LM pre-training needs minutes
// to learn anything from; the main job starts BERT's word embeddings from them.
import * as tb from '../core';
import { Tensor, op, DisposeScope } from '../core';

export interface WordVectorOptions {
  /** tokens on each side counted as context (default 5), each weighted 1/distance */
  window?: number;
  /** standard deviation of the vectors returned (default 0.02, BERT's initialiser range) */
  std?: number;
  /** exponent smoothing the context distribution (default 0.75) */
  contextSmoothing?: number;
  /** ids never counted (special tokens, padding) */
  skipIds?: number[];
  /** power iterations of the randomised SVD (default 4) */
  iterations?: number;
}

/** Largest vocabulary counted: the counts are a dense [V, V] float32 matrix (1 GiB at 16,384). */
const MAX_VOCAB = 16384;

/**
 * `[vocabSize, dim]` float32 word vectors from token-id rows: U·sqrt(S) of the rank-`dim` SVD of the
 * PPMI matrix, scaled to `std`. Ids that never occur get random vectors of the same scale. Uses the
 * global generator (tb.manualSeed) for the SVD's random start. The counting yields to the event loop
 * between chunks and the products run on the compute thread.
 */
export async function cooccurrenceVectors(rows: number[][], vocabSize: number, dim: number, opts: WordVectorOptions = {}): Promise<Tensor> {
  const V = vocabSize;
  const W = opts.window ?? 5;
  if (!Number.isInteger(V) || V < 2 || V > MAX_VOCAB) throw new RangeError(`cooccurrenceVectors: vocabSize must be an integer from 2 to ${MAX_VOCAB}, got ${V}`);
  if (!Number.isInteger(dim) || dim < 1 || dim >= V) throw new RangeError(`cooccurrenceVectors: dim must be an integer from 1 to vocabSize - 1, got ${dim}`);
  if (!Number.isInteger(W) || W < 1) throw new RangeError(`cooccurrenceVectors: window must be a positive integer, got ${W}`);
  const skip = new Set(opts.skipIds ?? []);
  const scope = new DisposeScope();
  let result: Tensor | undefined;
  try {
    result = await scope.run(async () => {
      // Pairs as flat cell indices a*V+b with weights 1/distance, both directions, summed by bincount in chunks.
      const CHUNK = 1 << 22;
      const keys = new Int32Array(CHUNK);
      const wts = new Float32Array(CHUNK);
      let n = 0;
      const counts = tb.zeros([V * V]);
      const flush = async () => {
        if (!n) return;
        counts.add_(await op('aten::bincount').tAsync(tb.tensor(keys.subarray(0, n)).long(), tb.tensor(wts.subarray(0, n)), V * V));
        n = 0;
      };
      for (const row of rows) {
        const ids = row.filter((id) => !skip.has(id));
        for (let i = 0; i < ids.length; i++) {
          const a = ids[i];
          if (!Number.isInteger(a) || a < 0 || a >= V) throw new RangeError(`cooccurrenceVectors: token id ${a} is outside the vocabulary of ${V}`);
          for (let d = 1; d <= W && i + d < ids.length; d++) {
            if (n + 2 > CHUNK) await flush();
            const b = ids[i + d];
            keys[n] = a * V + b;
            wts[n++] = 1 / d;
            keys[n] = b * V + a;
            wts[n++] = 1 / d;
          }
        }
      }
      await flush();
      const C = counts.view(V, V);
      if (!((C.sum().item() as number) > 0)) throw new RangeError('cooccurrenceVectors: no token has a neighbour within the window (rows too short or empty)');
      const rowSum = C.sum(1, true);
      const ctx = C.sum(0, true).pow(opts.contextSmoothing ?? 0.75);
      // PPMI = max(0, log(P(w,c) / (P(w) P_a(c)))), with P_a the smoothed context distribution; 0 where the pair never occurs.
      const expected = rowSum.mul(ctx.div(ctx.sum().item() as number));
      const ppmi = tb.where(C.gt(0), C.div(expected.clamp(1e-30)).log().clamp(0), tb.zeros([1]));
      // Randomised SVD (Halko, Martinsson & Tropp 2011): a range finder with power iterations, then the
      // exact SVD of the small projected matrix.
      const mm = (x: Tensor, y: Tensor) => op('aten::mm').tAsync(x, y);
      const orth = (y: Tensor) => op('aten::linalg_qr').ts(y, 'reduced')[0];
      const q = Math.min(V, dim + 16);
      let Y = await mm(ppmi, tb.randn([V, q]));
      for (let it = 0; it < (opts.iterations ?? 4); it++) Y = await mm(ppmi, await mm(ppmi.t(), orth(Y)));
      const Q = orth(Y);
      const [Ub, S] = op('aten::linalg_svd').ts(await mm(Q.t(), ppmi), false, null);
      let E = Q.mm(Ub.narrow(1, 0, dim)).mul(S.narrow(0, 0, dim).sqrt());
      // Ids never seen: random vectors of the same scale, so that no two of them start equal.
      E = tb.where(rowSum.eq(0), tb.randn([V, dim]).mul(E.std().item() as number), E);
      return E.mul((opts.std ?? 0.02) / (E.std().item() as number)).contiguous();
    });
    return result;
  } finally {
    scope.dispose(result);
  }
}
