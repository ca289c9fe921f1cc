// Character classes of BERT's normalizer and pre-tokenizer, as Hugging Face tokenizers defines them:
// control = Unicode category C* except \t \n \r; whitespace = \t \n \r or White_Space; punctuation =
// ASCII symbol ranges or category P*; nonspacing marks (Mn) for accent stripping; CJK ideograph blocks.
// Computed lazily per code point from the JS engine's Unicode tables and cached.

export const CONTROL = 1;
export const WS_NORM = 2; // replaced by ' ' when cleaning text
export const WS_SPLIT = 4; // splits words in the pre-tokenizer (Rust char::is_whitespace)
export const PUNCT = 8;
export const CHINESE = 16;
export const MARK_NONSPACING = 32;
const KNOWN = 128;

const table = new Uint8Array(0x110000);
const reControl = /^\p{C}$/u;
const reWhite = /^\p{White_Space}$/u;
const rePunct = /^\p{P}$/u;
const reMn = /^\p{Mn}$/u;

function isChinese(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function compute(cp: number): number {
  let f = KNOWN;
  const s = String.fromCodePoint(cp);
  const white = reWhite.test(s);
  if (cp === 9 || cp === 10 || cp === 13) f |= WS_NORM | WS_SPLIT;
  else {
    if (reControl.test(s)) f |= CONTROL;
    if (white) f |= WS_NORM | WS_SPLIT;
  }
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126) || rePunct.test(s)) f |= PUNCT;
  if (isChinese(cp)) f |= CHINESE;
  if (reMn.test(s)) f |= MARK_NONSPACING;
  return f;
}

/** Flags of a code point (CONTROL | WS_NORM | WS_SPLIT | PUNCT | CHINESE | MARK_NONSPACING). */
export function charFlags(cp: number): number {
  let f = table[cp];
  if (f === 0) table[cp] = f = compute(cp);
  return f;
}

// ASCII is the hot path: precompute it.
for (let cp = 0; cp < 128; cp++) charFlags(cp);
