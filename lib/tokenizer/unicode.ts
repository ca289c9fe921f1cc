// Character classes and per-character mappings of BERT's normalizer and pre-tokenizer, exactly as Hugging
// Face tokenizers has them: probed from it for every code point by scripts/unicode_tables.py and carried
// here (unicode-data.ts), because V8's Unicode tables change between Node versions and tokenizers' Rust
// tables do not follow them (e.g. tokenizers keeps unassigned code points, which \p{C} would drop).
import { FLAG_RUNS, LOWERCASE, STRIP_ACCENTS } from './unicode-data';

export const CONTROL = 1; // removed when cleaning text
export const WS_NORM = 2; // replaced by ' ' when cleaning text
export const WS_SPLIT = 4; // splits words in the pre-tokenizer (Rust char::is_whitespace)
export const PUNCT = 8; // isolated by the pre-tokenizer
export const CHINESE = 16; // padded with spaces (CJK ideographs)
export const WORD = 64; // a word character for single-word added tokens

const table = new Uint8Array(0x110000);
{
  const runs = FLAG_RUNS.split(',').map((r) => r.split(':').map((x) => parseInt(x, 16)));
  for (let i = 0; i < runs.length; i++) table.fill(runs[i][1], runs[i][0], i + 1 < runs.length ? runs[i + 1][0] : 0x110000);
  // A lone surrogate reaches tokenizers as U+FFFD (what UTF-8 encoding of a JS string gives).
  table.fill(table[0xfffd], 0xd800, 0xe000);
}

function decodeMap(s: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const e of s.split(';')) {
    const [cp, out] = e.split(':');
    m.set(parseInt(cp, 16), out ? String.fromCodePoint(...out.split(',').map((x) => parseInt(x, 16))) : '');
  }
  return m;
}
let strip: Map<number, string> | null = null;
let lower: Map<number, string> | null = null;

/** Flags of a code point (CONTROL | WS_NORM | WS_SPLIT | PUNCT | CHINESE | WORD). */
export function charFlags(cp: number): number {
  return table[cp];
}

/** BertNormalizer's accent stripping of one code point: canonical decomposition, nonspacing marks removed. */
export function stripAccents(cp: number): string {
  if (cp >= 0xac00 && cp <= 0xd7a3) {
    // Hangul syllables decompose algorithmically into their jamo (Unicode 3.12).
    const s = cp - 0xac00;
    const t = s % 28;
    const lv = String.fromCharCode(0x1100 + Math.floor(s / 588), 0x1161 + Math.floor((s % 588) / 28));
    return t ? lv + String.fromCharCode(0x11a7 + t) : lv;
  }
  strip ??= decodeMap(STRIP_ACCENTS);
  return strip.get(cp) ?? String.fromCodePoint(cp);
}

/** BertNormalizer's lowercasing of one code point (Rust char::to_lowercase: no final-sigma context). */
export function lowercase(cp: number): string {
  lower ??= decodeMap(LOWERCASE);
  return lower.get(cp) ?? String.fromCodePoint(cp);
}
