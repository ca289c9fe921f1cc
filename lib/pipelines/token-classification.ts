// Token classification (NER): per-token labels, grouped into entities by HF's aggregation strategies.
import type { Encoding } from '../tokenizer/encoding';
import { BertOutput } from '../models/bert';
import { Pipeline, argmax, Row, checkInputs, checkString, floats } from './base';

export type AggregationStrategy = 'none' | 'simple' | 'first' | 'average' | 'max';
export interface TokenEntity {
  entity: string;
  score: number;
  index: number;
  word: string;
  start: number;
  end: number;
}
export interface EntityGroup {
  entity_group: string;
  score: number;
  word: string;
  start: number;
  end: number;
}
export interface TokenClassificationOptions {
  aggregationStrategy?: AggregationStrategy;
  /** labels left out of the result (default ['O']) */
  ignoreLabels?: string[];
  /** windows of maxLength tokens overlapping by `stride`, so long texts are covered whole */
  stride?: number;
}
interface PreEntity {
  word: string;
  scores: Float32Array;
  start: number;
  end: number;
  index: number;
  isSubword: boolean;
}
interface WordEntity {
  entity: string;
  score: number;
  word: string;
  start: number;
  end: number;
  index?: number;
}

export class TokenClassificationPipeline extends Pipeline<Row, Float32Array> {
  /** Entities of one text (a list) or of many (a list of lists), as HF's token-classification pipeline. */
  async call(inputs: string | string[], opts: TokenClassificationOptions = {}): Promise<(TokenEntity | EntityGroup)[] | (TokenEntity | EntityGroup)[][]> {
    const strategy = opts.aggregationStrategy ?? 'none';
    if (!['none', 'simple', 'first', 'average', 'max'].includes(strategy)) throw new TypeError(`aggregationStrategy must be none, simple, first, average or max, got '${strategy}'`);
    if (opts.stride !== undefined) {
      if (!Number.isInteger(opts.stride) || opts.stride < 0 || opts.stride >= this.maxLength - 2) throw new RangeError(`stride must be an integer in [0, ${this.maxLength - 2}), got ${opts.stride}`);
      if (strategy === 'none') throw new TypeError("stride covers the whole text only with an aggregationStrategy other than 'none'");
    }
    const list = checkInputs(inputs, 'token-classification').map((x, i) => checkString(x, Array.isArray(inputs) ? `inputs[${i}]` : 'input'));
    const results = await Promise.all(
      list.map(async (sentence) => {
        const rows = this.encode(sentence, null, opts.stride === undefined ? {} : { stride: opts.stride, overflow: true });
        const scores = await Promise.all(rows.map((r) => this.batcher.submit(r)));
        const ignore = opts.ignoreLabels ?? ['O'];
        let all: (TokenEntity | EntityGroup)[] = [];
        rows.forEach((r, k) => {
          const pre = this.#preEntities(sentence, r, scores[k]);
          const grouped = this.#aggregate(pre, strategy);
          all.push(...grouped.filter((e) => !ignore.includes((e as TokenEntity).entity) && !ignore.includes((e as EntityGroup).entity_group)));
        });
        if (rows.length > 1) all = overlapping(all);
        return all;
      }),
    );
    return Array.isArray(inputs) ? results : results[0];
  }

  protected async extract(out: BertOutput, items: Row[], T: number): Promise<Float32Array[]> {
    const probs = out.logits!.float().softmax(-1);
    const data = await floats(probs);
    const L = out.logits!.size(-1);
    return items.map((r, b) => data.slice(b * T * L, (b * T + r.ids.length) * L));
  }

  #label(i: number): string {
    return this.model.config.fields.id2label?.[String(i)] ?? `LABEL_${i}`;
  }

  #preEntities(sentence: string, r: Encoding, scores: Float32Array): PreEntity[] {
    const L = scores.length / r.ids.length;
    const out: PreEntity[] = [];
    for (let i = 0; i < r.ids.length; i++) {
      if (r.specialTokensMask[i]) continue;
      let word = this.tokenizer.idsToTokens[r.ids[i]];
      const [start, end] = r.offsets[i];
      const ref = sentence.slice(start, end);
      // A WordPiece continuation token ("##ing") is longer than the text it covers.
      let isSubword = word.length !== ref.length;
      if (r.ids[i] === this.tokenizer.unkTokenId) {
        word = ref;
        isSubword = false;
      }
      out.push({ word, scores: scores.subarray(i * L, (i + 1) * L), start, end, index: i, isSubword });
    }
    return out;
  }

  #aggregate(pre: PreEntity[], strategy: AggregationStrategy): (TokenEntity | EntityGroup)[] {
    let entities: WordEntity[];
    if (strategy === 'none' || strategy === 'simple') {
      entities = pre.map((p) => {
        const k = argmax(p.scores);
        return { entity: this.#label(k), score: p.scores[k], index: p.index, word: p.word, start: p.start, end: p.end };
      });
      if (strategy === 'none') return entities as TokenEntity[];
    } else {
      entities = [];
      let group: PreEntity[] = [];
      for (const p of pre) {
        if (group.length && !p.isSubword) {
          entities.push(this.#aggregateWord(group, strategy));
          group = [];
        }
        group.push(p);
      }
      if (group.length) entities.push(this.#aggregateWord(group, strategy));
    }
    return this.#groupEntities(entities);
  }

  #aggregateWord(group: PreEntity[], strategy: AggregationStrategy): WordEntity {
    const word = this.tokenizer.convertTokensToString(group.map((g) => g.word));
    let scores: ArrayLike<number>;
    if (strategy === 'first') scores = group[0].scores;
    else if (strategy === 'max') {
      let best = group[0];
      for (const g of group) if (Math.max(...g.scores) > Math.max(...best.scores)) best = g;
      scores = best.scores;
    } else {
      const avg = new Float64Array(group[0].scores.length);
      for (const g of group) g.scores.forEach((v, i) => (avg[i] += v / group.length));
      scores = avg;
    }
    const k = argmax(scores);
    return { entity: this.#label(k), score: scores[k], word, start: group[0].start, end: group[group.length - 1].end };
  }

  #groupEntities(entities: WordEntity[]): EntityGroup[] {
    const tag = (name: string): [string, string] => (name.startsWith('B-') ? ['B', name.slice(2)] : name.startsWith('I-') ? ['I', name.slice(2)] : ['I', name]);
    const groups: EntityGroup[] = [];
    let run: WordEntity[] = [];
    const close = () => {
      const name = run[0].entity;
      const i = name.indexOf('-');
      groups.push({
        entity_group: i >= 0 ? name.slice(i + 1) : name,
        score: run.reduce((s, e) => s + e.score, 0) / run.length,
        word: this.tokenizer.convertTokensToString(run.map((e) => e.word)),
        start: run[0].start,
        end: run[run.length - 1].end,
      });
    };
    for (const e of entities) {
      if (run.length) {
        const [bi, t] = tag(e.entity);
        const [, lastT] = tag(run[run.length - 1].entity);
        if (!(t === lastT && bi !== 'B')) {
          close();
          run = [];
        }
      }
      run.push(e);
    }
    if (run.length) close();
    return groups;
  }
}

/** Entities from overlapping windows: of two that overlap, the longer (then the higher scoring) stays. */
function overlapping<E extends { start: number; end: number; score: number }>(entities: E[]): E[] {
  if (!entities.length) return entities;
  const sorted = [...entities].sort((a, b) => a.start - b.start);
  const out: E[] = [];
  let prev = sorted[0];
  for (const e of sorted) {
    if (prev.start <= e.start && e.start < prev.end) {
      const cur = e.end - e.start;
      const pl = prev.end - prev.start;
      if (cur > pl || (cur === pl && e.score > prev.score)) prev = e;
    } else {
      out.push(prev);
      prev = e;
    }
  }
  out.push(prev);
  return out;
}
