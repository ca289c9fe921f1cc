// Every Unicode scalar value (U+0000..U+10FFFF, surrogates excluded) alone, between ASCII letters and
// repeated, through four vocabularies, against Hugging Face's fast tokenizer: ids, UTF-16 offsets and the
// special-tokens mask, compared as one CRC-32 per input. Fixtures: scripts/fixtures.py tokenizer_sweep.
// Split over two test files so jest's two workers share it; scripts/node-matrix.sh runs both on every
// supported Node version: the tokenizer carries its own Unicode tables, so V8's must not matter.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { BertTokenizer } from '../lib/tokenizer/bert-tokenizer';
import { DATA, FIXTURES, fixture } from './helpers';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
/** zlib's CRC-32 of an ASCII string (what the fixture script hashes). */
function crc32(s: string): number {
  let c = 0xffffffff;
  for (let i = 0; i < s.length; i++) c = CRC_TABLE[(c ^ s.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// Module-local: a global (String) looked up in the 1.1M-iteration loop is slow inside Jest's vm context.
const fromCodePoint = String.fromCodePoint;
const FORMS: Record<string, (c: string) => string> = { alone: (c) => c, between: (c) => `a${c}b`, repeated: (c) => c + c + c };

const tokenizers: Record<string, () => BertTokenizer> = {
  uncased: () => BertTokenizer.fromDir(path.join(DATA, 'bert-base-uncased')),
  cased: () => BertTokenizer.fromDir(path.join(DATA, 'bert-base-cased'), undefined, { doLowerCase: false }),
  chinese: () => BertTokenizer.fromDir(path.join(DATA, 'bert-base-chinese'), undefined, { doLowerCase: false }),
  multilingual: () => BertTokenizer.fromDir(path.join(DATA, 'bert-base-multilingual-cased'), undefined, { doLowerCase: false }),
};

const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

/** Declares the sweep's tests for some of the fixture's vocabularies. */
export function sweep(vocabularies: string[]): void {
  describe('every code point against Hugging Face', () => {
    const meta = fixture('tokenizer-sweep.json');
    const cases: [string, string][] = [];
    for (const t of vocabularies) {
      if (!meta.vocabularies.includes(t)) throw new Error(`the sweep fixture has no vocabulary '${t}'`);
      for (const f of meta.forms) cases.push([t, f]);
    }

    test.each(cases)('%s, %s', (tname, form) => {
      const buf = zlib.gunzipSync(fs.readFileSync(path.join(FIXTURES, 'sweep', `${tname}-${form}.u32.gz`)));
      const want = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      expect(want.length).toBe(meta.count);
      const tok = tokenizers[tname]();
      const make = FORMS[form];
      const bad: number[] = [];
      let i = 0;
      for (let cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        const r = tok.call(make(fromCodePoint(cp)), undefined, { returnOffsetsMapping: true, returnSpecialTokensMask: true });
        const canon = `${(r.inputIds as number[]).join(',')}|${(r.offsetMapping as [number, number][]).map(([a, b]) => `${a}-${b}`).join(',')}|${(r.specialTokensMask as number[]).join(',')}`;
        if (crc32(canon) !== want[i]) bad.push(cp);
        i++;
      }
      expect(i).toBe(meta.count);
      if (bad.length) {
        const show = bad.slice(0, 12).map((cp) => `${hex(cp)} -> ${JSON.stringify(tok.call(make(fromCodePoint(cp))).inputIds)}`);
        console.log(`${tname}/${form}: ${bad.length} code points differ from HF; first: ${show.join('; ')}`);
      }
      expect(bad.length).toBe(0);
    });
  });
}
