// The BERT tokenization pipeline of Hugging Face tokenizers, with offsets into the original text:
// added tokens split out first, then BertNormalizer (clean text, CJK spacing, NFD accent stripping,
// lowercasing), BertPreTokenizer (whitespace split, punctuation isolated) and WordPiece (greedy
// longest match with ## continuations). Offsets are UTF-16 indices into the input string.
import { charFlags, CHINESE, CONTROL, MARK_NONSPACING, PUNCT, WS_NORM, WS_SPLIT } from './unicode';

export interface NormalizerOptions {
  cleanText: boolean;
  handleChineseChars: boolean;
  stripAccents: boolean;
  lowercase: boolean;
}

export interface AddedToken {
  content: string;
  id: number;
  special: boolean;
  singleWord?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
}

/** One tokenized sequence before special tokens are added. */
export interface RawEncoding {
  ids: number[];
  offsets: [number, number][];
  words: number[];
  /** per token: counts as special in the special-tokens mask */
  special: boolean[];
}

/** A normalized string with, per UTF-16 unit, the span of the original text it came from. */
interface Normalized {
  text: string;
  start: Int32Array;
  end: Int32Array;
}

export class WordPieceModel {
  readonly maxTokenLen: number;
  constructor(
    readonly vocab: Map<string, number>,
    readonly unkToken: string,
    readonly prefix = '##',
    readonly maxInputCharsPerWord = 100,
  ) {
    const unk = vocab.get(unkToken);
    if (unk === undefined) throw new Error(`WordPiece: the vocabulary has no unknown token '${unkToken}'`);
    this.unkId = unk;
    let m = 0;
    for (const k of vocab.keys()) m = Math.max(m, k.startsWith(prefix) ? k.length - prefix.length : k.length);
    this.maxTokenLen = m;
  }
  readonly unkId: number;

  /** Tokenizes one word norm.text[a, b), pushing ids and normalized spans. */
  tokenizeWord(text: string, a: number, b: number, ids: number[], spans: number[]): void {
    // Code point count (surrogate pairs count once, as Rust counts chars).
    let chars = 0;
    for (let i = a; i < b; i++) {
      const c = text.charCodeAt(i);
      if (c < 0xdc00 || c > 0xdfff) chars++;
    }
    if (chars > this.maxInputCharsPerWord) {
      ids.push(this.unkId);
      spans.push(a, b);
      return;
    }
    const mark = ids.length;
    let start = a;
    while (start < b) {
      let end = Math.min(b, start + this.maxTokenLen);
      let found = -1;
      while (end > start) {
        // never split a surrogate pair
        const last = text.charCodeAt(end - 1);
        if (last >= 0xd800 && last <= 0xdbff && end < b) {
          end--;
          continue;
        }
        const piece = start === a ? text.slice(start, end) : this.prefix + text.slice(start, end);
        const id = this.vocab.get(piece);
        if (id !== undefined) {
          found = id;
          break;
        }
        end--;
        const c = text.charCodeAt(end);
        if (c >= 0xdc00 && c <= 0xdfff && end > start) end--;
      }
      if (found < 0) {
        ids.length = mark;
        spans.length = mark * 2;
        ids.push(this.unkId);
        spans.push(a, b);
        return;
      }
      ids.push(found);
      spans.push(start, end);
      start = end;
    }
  }
}

export class BertPipeline {
  #addedRe: RegExp | null = null;
  #added = new Map<string, AddedToken>();

  constructor(
    readonly normalizer: NormalizerOptions,
    readonly model: WordPieceModel,
    addedTokens: AddedToken[] = [],
  ) {
    this.setAddedTokens(addedTokens);
  }

  setAddedTokens(tokens: AddedToken[]): void {
    this.#added = new Map(tokens.map((t) => [t.content, t]));
    const contents = [...this.#added.keys()].filter((c) => c.length > 0).sort((x, y) => y.length - x.length);
    this.#addedRe = contents.length ? new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g') : null;
  }
  get addedTokens(): AddedToken[] {
    return [...this.#added.values()];
  }

  /** BertNormalizer over text[a, b). */
  normalize(input: string, a: number, b: number): Normalized {
    const o = this.normalizer;
    let out = '';
    const start: number[] = [];
    const end: number[] = [];
    const emit = (s: string, os: number, oe: number) => {
      out += s;
      for (let k = 0; k < s.length; k++) {
        start.push(os);
        end.push(oe);
      }
    };
    for (let i = a; i < b; ) {
      const cp = input.codePointAt(i)!;
      const n = cp > 0xffff ? 2 : 1;
      const os = i;
      const oe = i + n;
      i += n;
      if (cp < 128) {
        // ASCII fast path: no accents, no CJK; controls removed, \t\n\r mapped to ' '.
        if (o.cleanText) {
          if (cp === 0) continue;
          const f = charFlags(cp);
          if (f & CONTROL) continue;
          if (f & WS_NORM) {
            emit(' ', os, oe);
            continue;
          }
        }
        emit(o.lowercase && cp >= 65 && cp <= 90 ? String.fromCharCode(cp + 32) : String.fromCharCode(cp), os, oe);
        continue;
      }
      const f = charFlags(cp);
      let s = String.fromCodePoint(cp);
      if (o.cleanText) {
        if (cp === 0xfffd || f & CONTROL) continue;
        if (f & WS_NORM) s = ' ';
      }
      if (o.handleChineseChars && f & CHINESE) {
        emit(' ', os, oe);
        emit(s, os, oe);
        emit(' ', os, oe);
        continue;
      }
      if (o.stripAccents) {
        const d = s.normalize('NFD');
        s = '';
        for (const ch of d) if (!(charFlags(ch.codePointAt(0)!) & MARK_NONSPACING)) s += ch;
      }
      if (o.lowercase) s = s.toLowerCase();
      if (s) emit(s, os, oe);
    }
    return { text: out, start: Int32Array.from(start), end: Int32Array.from(end) };
  }

  /** The pre-tokenized words of a text (normalized), as the WordPiece trainer counts them. */
  words(input: string): string[] {
    const norm = this.normalize(input, 0, input.length).text;
    const out: string[] = [];
    let w0 = -1;
    for (let i = 0; i < norm.length; ) {
      const cp = norm.codePointAt(i)!;
      const n = cp > 0xffff ? 2 : 1;
      const f = charFlags(cp);
      if (f & (WS_SPLIT | PUNCT)) {
        if (w0 >= 0) out.push(norm.slice(w0, i));
        w0 = -1;
        if (f & PUNCT) out.push(norm.slice(i, i + n));
      } else if (w0 < 0) w0 = i;
      i += n;
    }
    if (w0 >= 0) out.push(norm.slice(w0));
    return out;
  }

  /**
   * Tokenizes one text. `wordBase` is the index given to the first word (pre-tokenized split), so
   * word ids count splits in order as tokenizers does.
   */
  encode(input: string): RawEncoding {
    const ids: number[] = [];
    const offsets: [number, number][] = [];
    const words: number[] = [];
    const special: boolean[] = [];
    let word = 0;
    const segment = (a: number, b: number) => {
      if (a >= b) return;
      const norm = this.normalize(input, a, b);
      const t = norm.text;
      const spans: number[] = [];
      const pieceIds: number[] = [];
      // BertPreTokenizer: split on whitespace (removed) and isolate punctuation.
      let w0 = -1;
      const flush = (end: number) => {
        if (w0 < 0) return;
        pieceIds.length = 0;
        spans.length = 0;
        this.model.tokenizeWord(t, w0, end, pieceIds, spans);
        for (let k = 0; k < pieceIds.length; k++) {
          ids.push(pieceIds[k]);
          offsets.push([norm.start[spans[2 * k]], norm.end[spans[2 * k + 1] - 1]]);
          words.push(word);
          special.push(false);
        }
        word++;
        w0 = -1;
      };
      for (let i = 0; i < t.length; ) {
        const cp = t.codePointAt(i)!;
        const n = cp > 0xffff ? 2 : 1;
        const f = charFlags(cp);
        if (f & WS_SPLIT) {
          flush(i);
        } else if (f & PUNCT) {
          flush(i);
          w0 = i;
          flush(i + n);
        } else if (w0 < 0) {
          w0 = i;
        }
        i += n;
      }
      flush(t.length);
    };
    let pos = 0;
    const re = this.#addedRe;
    if (re) {
      re.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = re.exec(input)) !== null) {
        const tok = this.#added.get(m[0])!;
        let s = m.index;
        let e = s + m[0].length;
        if (tok.singleWord) {
          const before = s > 0 ? input.codePointAt(s - 1)! : 32;
          const after = e < input.length ? input.codePointAt(e)! : 32;
          const isWordChar = (c: number) => /[\p{L}\p{N}_]/u.test(String.fromCodePoint(c));
          if (isWordChar(before) || isWordChar(after)) continue;
        }
        if (tok.lstrip) while (s > pos && /\s/.test(input[s - 1])) s--;
        if (tok.rstrip) while (e < input.length && /\s/.test(input[e])) e++;
        segment(pos, s);
        ids.push(tok.id);
        offsets.push([m.index, m.index + m[0].length]);
        words.push(word++);
        // tokenizers marks only template tokens in the special-tokens mask, not added tokens in the text
        special.push(false);
        pos = e;
        re.lastIndex = e;
      }
    }
    segment(pos, input.length);
    return { ids, offsets, words, special };
  }
}
