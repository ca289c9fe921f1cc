// Extractive question answering: answer spans from the context, long contexts in strided windows.
import type { Encoding } from '../tokenizer/encoding';
import { BertOutput } from '../models/bert';
import { Tensor, tensor, arange } from '../tensor';
import { Pipeline, Row, checkInputs, checkString, floats } from './base';

export interface QAInput {
  question: string;
  context: string;
}
export interface QAAnswer {
  score: number;
  start: number;
  end: number;
  answer: string;
}
export interface QuestionAnsweringOptions {
  topK?: number;
  /** overlap of consecutive context windows in tokens (default min(maxSeqLen / 2, 128)) */
  docStride?: number;
  maxAnswerLen?: number;
  /** tokens per window, question included (default min(tokenizer limit, 384)) */
  maxSeqLen?: number;
  handleImpossibleAnswer?: boolean;
  alignToWords?: boolean;
}
interface QARow extends Row {
  allowed: Uint8Array;
  k: number;
  maxAnswerLen: number;
}
interface QAOut {
  starts: number[];
  ends: number[];
  scores: number[];
  nullScore: number;
}

export class QuestionAnsweringPipeline extends Pipeline<QARow, QAOut> {
  /**
   * Extractive answers with character offsets into the context, long contexts in stride windows
   * (HF's question-answering pipeline). One input gives an answer (a list when topK > 1).
   */
  async call(inputs: QAInput | QAInput[], opts: QuestionAnsweringOptions = {}): Promise<QAAnswer | QAAnswer[] | (QAAnswer | QAAnswer[])[]> {
    const topK = opts.topK ?? 1;
    const maxAnswerLen = opts.maxAnswerLen ?? 15;
    if (!Number.isInteger(topK) || topK < 1) throw new RangeError(`topK must be >= 1, got ${topK}`);
    if (!Number.isInteger(maxAnswerLen) || maxAnswerLen < 1) throw new RangeError(`maxAnswerLen must be >= 1, got ${maxAnswerLen}`);
    const maxSeqLen = opts.maxSeqLen ?? Math.min(this.tokenizer.modelMaxLength, 384, this.maxLength);
    const stride = opts.docStride ?? Math.min(Math.floor(maxSeqLen / 2), 128);
    if (stride > maxSeqLen) throw new RangeError(`docStride (${stride}) is larger than maxSeqLen (${maxSeqLen})`);
    const align = opts.alignToWords ?? true;
    const list = checkInputs(inputs, 'question-answering');
    const results = await Promise.all(
      list.map(async (x, i) => {
        if (typeof x !== 'object' || x === null) throw new TypeError(`inputs[${i}] must be {question, context}`);
        const q = checkString(x.question, `inputs[${i}].question`);
        const ctx = checkString(x.context, `inputs[${i}].context`);
        if (!q.trim() || !ctx.trim()) throw new RangeError(`inputs[${i}]: question and context must not be empty`);
        const { rows } = this.tokenizer.encodeRows([q], [ctx], { truncation: 'only_second', maxLength: maxSeqLen, stride, returnOverflowingTokens: true });
        const k = align ? topK * 2 + 10 : topK;
        const outs = await Promise.all(
          rows.map((r) => {
            // Context tokens and [CLS] may hold the answer; the question and [SEP]s may not.
            const allowed = Uint8Array.from(r.sequenceIds, (s, t) => (s === 1 || r.ids[t] === this.tokenizer.clsTokenId ? 1 : 0));
            return this.batcher.submit({ ids: r.ids, typeIds: r.typeIds, allowed, k, maxAnswerLen });
          }),
        );
        let minNull = 1e6;
        const answers: QAAnswer[] = [];
        outs.forEach((o, w) => {
          const enc = rows[w];
          minNull = Math.min(minNull, o.nullScore);
          o.starts.forEach((s, j) => {
            const e = o.ends[j];
            const [a, b] = spanChars(enc, s, e, align);
            const text = ctx.slice(a, b);
            const same = answers.find((x) => x.answer.toLowerCase() === text.toLowerCase());
            if (same) same.score += o.scores[j];
            else answers.push({ score: o.scores[j], start: a, end: b, answer: text });
          });
        });
        if (opts.handleImpossibleAnswer) answers.push({ score: minNull, start: 0, end: 0, answer: '' });
        const top = answers.sort((a, b) => b.score - a.score).slice(0, topK);
        return top.length === 1 ? top[0] : top;
      }),
    );
    return Array.isArray(inputs) ? results : results[0];
  }

  protected async extract(out: BertOutput, items: QARow[], T: number): Promise<QAOut[]> {
    const B = items.length;
    const allowed = new Uint8Array(B * T);
    items.forEach((r, b) => allowed.set(r.allowed, b * T));
    const ok = tensor(allowed, { shape: [B, T], dtype: 'bool', device: this.device });
    const probs = (l: Tensor) => l.float().maskedFill(ok.logicalNot(), -10000).softmax(-1);
    const start = probs(out.startLogits!);
    const end = probs(out.endLogits!);
    const nullScores = await floats(start.select(1, 0).mul(end.select(1, 0)));
    start.select(1, 0).fill_(0);
    end.select(1, 0).fill_(0);
    // Span scores p(start) p(end) for end - start in [0, maxAnswerLen - 1]: [B, T, T], top k per row.
    const outer = start.unsqueeze(2).mul(end.unsqueeze(1));
    const pos = arange(T, undefined, 1, { device: this.device, dtype: 'int64' });
    const diff = pos.view(1, 1, T).sub(pos.view(1, T, 1));
    const maxLen = tensor(BigInt64Array.from(items, (r) => BigInt(r.maxAnswerLen - 1)), { shape: [B, 1, 1], device: this.device });
    const band = diff.ge(0).logicalAnd(diff.le(maxLen));
    const cand = outer.mul(band).view(B, T * T);
    const K = Math.min(T * T, Math.max(...items.map((r) => r.k)));
    const top = cand.topk(K, -1);
    const vals = await floats(top.values);
    const idx = (await top.indices.data()) as BigInt64Array;
    return items.map((r, b) => {
      const o: QAOut = { starts: [], ends: [], scores: [], nullScore: nullScores[b] };
      for (let j = 0; j < Math.min(r.k, K); j++) {
        const flat = Number(idx[b * K + j]);
        const s = Math.floor(flat / T);
        const e = flat % T;
        if (!r.allowed[s] || !r.allowed[e]) continue;
        o.starts.push(s);
        o.ends.push(e);
        o.scores.push(vals[b * K + j]);
      }
      return o;
    });
  }
}

/** Character span of tokens s..e in the context: whole words when aligning, else the tokens' offsets. */
function spanChars(enc: Encoding, s: number, e: number, align: boolean): [number, number] {
  if (align) {
    const ws = enc.wordIds[s];
    const we = enc.wordIds[e];
    if (ws !== null && we !== null) {
      let a = Infinity;
      let b = -Infinity;
      for (let t = 0; t < enc.ids.length; t++) {
        if (enc.sequenceIds[t] !== 1) continue;
        if (enc.wordIds[t] === ws) a = Math.min(a, enc.offsets[t][0]);
        if (enc.wordIds[t] === we) b = Math.max(b, enc.offsets[t][1]);
      }
      if (a !== Infinity && b !== -Infinity) return [a, b];
    }
  }
  return [enc.offsets[s][0], enc.offsets[e][1]];
}
