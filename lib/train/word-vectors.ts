// Word vectors from co-occurrence counts: positive pointwise mutual information over a window, reduced
// by a truncated SVD (Levy, Goldberg & Dagan 2015, "Improving distributional similarity with lessons
// learned from word embeddings"). Seconds of work on a corpus that masked-LM pre-training needs minutes
// to learn anything from; the main job starts BERT's word embeddings from them.
import * as tb from '../core';
import { Tensor, op, DisposeScope, ScriptModule } from '../core';

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

// PPMI = max(0, log(P(w,c) / (P(w) P_a(c)))), P_a the smoothed context distribution, 0 where the pair never
// occurs; then a randomised SVD (Halko, Martinsson & Tropp 2011): a range finder with power iterations and
// the exact SVD of the small projected matrix. Ids never seen get the 'unseen' noise at the vectors' scale,
// so that no two of them start equal; the result is scaled to 'std'.
const PPMI_SVD = `
def forward(self, C: Tensor, smoothing: float, start: Tensor, iterations: int, dim: int, unseen: Tensor, std: float) -> Tensor:
    row = C.sum(1, keepdim=True)
    ctx = C.sum(0, keepdim=True).pow(smoothing)
    ppmi = torch.where(C > 0, (C / (row * (ctx / ctx.sum())).clamp_min(1e-30)).log().clamp_min(0.0), torch.zeros([1]))
    Y = ppmi.mm(start)
    for _ in range(iterations):
        Y = ppmi.mm(ppmi.t().mm(torch.linalg_qr(Y, 'reduced')[0]))
    Q = torch.linalg_qr(Y, 'reduced')[0]
    Ub, S, Vh = torch.linalg_svd(Q.t().mm(ppmi), False)
    E = Q.mm(Ub.narrow(1, 0, dim)) * S.narrow(0, 0, dim).sqrt()
    E = torch.where(row == 0, unseen * E.std(), E)
    return (E * (std / E.std())).contiguous()
`;

/** Largest vocabulary counted: the counts are a dense [V, V] float32 matrix (1 GiB at 16,384). */
const MAX_VOCAB = 16384;

/**
 * `[vocabSize, dim]` float32 word vectors from token-id rows: U·sqrt(S) of the rank-`dim` SVD of the
 * PPMI matrix, scaled to `std`. Ids that never occur get random vectors of the same scale. Uses the
 * global generator (tb.manualSeed) for the SVD's random start. The counting yields to the event loop
 * between chunks; every pass over the counts runs on the compute thread.
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
      let counts: Tensor | undefined; // the first chunk's bincount, then the sum (no sync 1 GiB zero-fill)
      const flush = async () => {
        if (!n) return;
        const part = await op('aten::bincount').tAsync(tb.tensor(keys.subarray(0, n)).long(), tb.tensor(wts.subarray(0, n)), V * V);
        if (counts) await op('aten::add_.Tensor').tAsync(counts, part, 1);
        else counts = part;
        n = 0;
      };
      for (let r = 0; r < rows.length; r++) {
        if (r % 2048 === 2047) await new Promise(setImmediate); // a slice of counting at a time
        const ids = rows[r].filter((id) => !skip.has(id));
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
      if (!counts) throw new RangeError('cooccurrenceVectors: no token has a neighbour within the window (rows too short or empty)');
      // The [V, V] steps (a dozen passes over up to 1 GiB) run as one TorchScript call on the compute
      // thread, so the event loop stays free; the random inputs are drawn here from the global generator.
      const q = Math.min(V, dim + 16);
      const start = tb.randn([V, q]);
      const unseen = tb.randn([V, dim]);
      const svd = ScriptModule.inNewUnit(() => new ScriptModule('CooccurrenceSvd').define(PPMI_SVD));
      try {
        return (await svd.call('forward', counts.view(V, V), opts.contextSmoothing ?? 0.75, start, opts.iterations ?? 4, dim, unseen, opts.std ?? 0.02)) as Tensor;
      } finally {
        svd.dispose();
      }
    });
    return result;
  } finally {
    scope.dispose(result);
  }
}
