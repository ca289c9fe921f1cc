// Tokenizer parity with Hugging Face (transformers 5 BertTokenizer, backed by tokenizers): every line of
// the corpora in ../shared/data with four vocabularies, pairs under each truncation strategy, overflow
// with stride, each padding mode, edge inputs and decoding. Fixtures: scripts/fixtures.py.
import * as path from 'path';
import { BertTokenizer } from '../lib/tokenizer/bert-tokenizer';
import { parityCorpora } from '../lib/data/datasets';
import { DATA, fixture } from './helpers';

// Module-local: Math looked up as a global on every character is 70x slower inside Jest's vm context.
const imul = Math.imul;
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
/** Must match canonical() in scripts/fixtures.py. */
function canonical(ids: number[], types: number[], attn: number[], offsets: [number, number][], special: number[]): string {
  return [ids.join(','), types.join(','), attn.join(','), offsets.map(([a, b]) => `${a}-${b}`).join(','), special.join(',')].join('|');
}

const tokenizers: Record<string, BertTokenizer> = {
  uncased: BertTokenizer.fromDir(path.join(DATA, 'bert-base-uncased')),
  cased: BertTokenizer.fromDir(path.join(DATA, 'bert-base-cased'), undefined, { doLowerCase: false }),
  chinese: BertTokenizer.fromDir(path.join(DATA, 'bert-base-chinese'), undefined, { doLowerCase: false }),
  multilingual: BertTokenizer.fromDir(path.join(DATA, 'bert-base-multilingual-cased'), undefined, { doLowerCase: false }),
};

describe('every line of the corpora', () => {
  const fx = fixture('tokenizer-corpora.json');
  const corpora = parityCorpora(DATA);
  const cases: [string, string][] = [];
  for (const t of Object.keys(tokenizers)) for (const c of Object.keys(corpora)) cases.push([t, c]);
  let compared = 0;
  let mismatched = 0;

  test.each(cases)('%s on %s', (tname, cname) => {
    const lines = corpora[cname];
    expect(lines.length).toBe(fx.counts[cname]);
    const want: number[] = fx.hashes[`${tname}/${cname}`];
    const tok = tokenizers[tname];
    const bad: number[] = [];
    for (let i = 0; i < lines.length; i++) {
      const r = tok.call(lines[i], undefined, { returnOffsetsMapping: true, returnSpecialTokensMask: true });
      const h = fnv1a(canonical(r.inputIds as number[], r.tokenTypeIds as number[], r.attentionMask as number[], r.offsetMapping as [number, number][], r.specialTokensMask as number[]));
      if (h !== want[i]) bad.push(i);
    }
    compared += lines.length;
    mismatched += bad.length;
    if (bad.length) {
      const i = bad[0];
      console.log(`${tname}/${cname}: ${bad.length} mismatches; first line ${i}: ${JSON.stringify(lines[i])} -> ${JSON.stringify(tok.call(lines[i], undefined, { returnOffsetsMapping: true }).inputIds)}`);
    }
    expect(bad.length).toBe(0);
  });

  afterAll(() => {
    console.log(`tokenizer parity: compared ${compared} lines, ${mismatched} mismatches`);
  });
});

describe('pairs, truncation, overflow, padding, decoding, edge inputs', () => {
  const fx = fixture('tokenizer-cases.json');
  const tok = tokenizers.uncased;
  const camel = (cfg: Record<string, unknown>) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(cfg)) o[k.replace(/_(\w)/g, (_, c) => c.toUpperCase())] = v;
    return o;
  };

  test.each(fx.cases.map((c: any, i: number) => [i, JSON.stringify(c.config)]) as [number, string][])('case %i %s', (i) => {
    const c = fx.cases[i as number];
    const opts = { ...camel(c.config), returnOffsetsMapping: true, returnSpecialTokensMask: true };
    if (c.result.error) {
      expect(() => tok.call(c.a, c.b, opts)).toThrow();
      return;
    }
    const r = tok.call(c.a, c.b, opts);
    expect(r.inputIds).toEqual(c.result.input_ids);
    expect(r.tokenTypeIds).toEqual(c.result.token_type_ids);
    expect(r.attentionMask).toEqual(c.result.attention_mask);
    expect(r.specialTokensMask).toEqual(c.result.special_tokens_mask);
    expect(r.offsetMapping).toEqual(c.result.offset_mapping);
    if (c.result.overflow_to_sample_mapping) expect(r.overflowToSampleMapping).toEqual(c.result.overflow_to_sample_mapping);
    // one assertion over all rows (thousands with overflow): Jest's per-call overhead dominated this test
    expect(c.result.word_ids.map((_: unknown, k: number) => r.wordIds(k))).toEqual(c.result.word_ids);
    expect(c.result.sequence_ids.map((_: unknown, k: number) => r.sequenceIds(k))).toEqual(c.result.sequence_ids);
  });

  test('single sequences with overflow and stride', () => {
    const r = tok.call(fx.singles.texts, undefined, { truncation: true, maxLength: 16, stride: 5, returnOverflowingTokens: true });
    expect(r.inputIds).toEqual(fx.singles.input_ids);
    expect(r.overflowToSampleMapping).toEqual(fx.singles.overflow_to_sample_mapping);
  });

  test('decode and batchDecode', () => {
    const ids = (tok.call(fx.decode.texts).inputIds as number[][]);
    expect(tok.batchDecode(ids)).toEqual(fx.decode.plain);
    expect(tok.batchDecode(ids, { skipSpecialTokens: true })).toEqual(fx.decode.skip);
  });

  test('tokenize', () => {
    for (const [text, want] of Object.entries(fx.tokenize)) expect(tok.tokenize(text)).toEqual(want);
  });

  test('10 MB of text equals HF', () => {
    const sents = parityCorpora(DATA)['sst2-train'].slice(0, 2000);
    let s = 12345;
    const parts: string[] = [];
    let n = 0;
    while (n < 10_000_000) {
      s = Number((BigInt(s) * 1103515245n + 12345n) % 2147483648n);
      parts.push(sents[s % sents.length]);
      n += parts[parts.length - 1].length + 1;
    }
    const big = parts.join(' ').slice(0, 10_000_000);
    expect(big.length).toBe(fx.big.chars);
    const r = tok.call(big, undefined, { returnOffsetsMapping: true });
    expect((r.inputIds as number[]).length).toBe(fx.big.tokens);
    expect(fnv1a(canonical(r.inputIds as number[], [], [], r.offsetMapping as [number, number][], []))).toBe(fx.big.hash);
  });

  test('edge inputs equal HF without a crash', () => {
    const edges: Record<string, string> = {
      empty: '', spaces: '   \t\n  ', punct: '!!?...,;:--((', word1mb: 'a'.repeat(1_000_000),
      surrogate: 'abc \ud800 def \udfff', nul: 'a\x00b\x00 c', combining: 'e\u0301 a\u0308\u0308 n\u0303o Z\u0335\u0327a',
      zwj: 'family 👩\u200d👩\u200d👧 and 🏳️\u200d🌈 flag', rtl: 'שלום עולם مرحبا بالعالم', fullwidth: 'ＡＢＣ１２３！？　ｘｙｚ',
      controls: 'a\u0085b\u200bc\u00add\ufeffe\u2028f', cjk: '日本語の文章と中文句子, 한국어 문장',
    };
    // a long text mixing them, which the pipeline normalizes in pieces cut at spaces (scripts/fixtures.py builds the same)
    edges.long_mixed = [...['combining', 'zwj', 'rtl', 'fullwidth', 'controls', 'cjk'].map((k) => edges[k]), 'the résumé\tof a café\n'].join(' ').repeat(300);
    for (const [name, text] of Object.entries(edges)) {
      for (const tname of ['uncased', 'cased', 'multilingual']) {
        const r = tokenizers[tname].call(text, undefined, { returnOffsetsMapping: true, returnSpecialTokensMask: true });
        const h = fnv1a(canonical(r.inputIds as number[], r.tokenTypeIds as number[], r.attentionMask as number[], r.offsetMapping as [number, number][], r.specialTokensMask as number[]));
        expect([`${tname}/${name}`, h]).toEqual([`${tname}/${name}`, fx.edges[`${tname}/${name}`]]);
      }
    }
  });
});
