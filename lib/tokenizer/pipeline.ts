// The BERT tokenization pipeline of Hugging Face tokenizers, with offsets into the original text:
// added tokens split out first, then BertNormalizer (clean text, CJK spacing, NFD accent stripping,
// lowercasing), BertPreTokenizer (whitespace split, punctuation isolated) and WordPiece (greedy
// longest match with ## continuations). Offsets are UTF-16 indices into the input string.
import { charFlags, CHINESE, CONTROL, lowercase, PUNCT, stripAccents, WORD, WS_NORM, WS_SPLIT } from './unicode';

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

// Module-local: a global looked up in a hot loop is slow inside a vm context (as Jest runs code), 30-70x for Math.imul.
const imul = Math.imul;

/** Length (UTF-16 units) past which encode() normalizes a text in pieces. */
const SEGMENT_PIECE = 4096;

/**
 * A normalized string with, per UTF-16 unit, the span of the original text it came from. When the
 * alignment is the identity (printable ASCII, the common case), the arrays are omitted and unit i of
 * text came from base + i.
 */
interface Normalized {
  text: string;
  base: number;
  start?: Int32Array;
  end?: Int32Array;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * A trie over UTF-16 units for one-pass longest-prefix matching in WordPiece. Edges live in one
 * open-addressing hash table of typed arrays keyed by (node, unit): no objects or Maps per node.
 */
class Trie {
  #nodes = 1;
  #tokenId = new Int32Array(1024).fill(-1);
  #keyNode = new Int32Array(1024).fill(-1);
  #keyUnit = new Int32Array(1024);
  #child = new Int32Array(1024);
  #mask = 1023;
  #edges = 0;

  // Edges go straight into the table: built as Map keys of strings first, a vocabulary's edges grew
  // V8's heap, which it keeps after loading.
  constructor(entries: Iterable<[string, number]>) {
    for (const [s, id] of entries) {
      let n = 0;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        let m = this.step(n, c);
        if (m === -1) {
          m = this.#nodes++;
          this.#insert(n, c, m);
        }
        n = m;
      }
      this.#setId(n, id);
    }
  }
  #insert(node: number, unit: number, child: number): void {
    if (2 * (this.#edges + 1) > this.#mask + 1) this.#grow(); // load factor at most 1/2
    let h = (imul(node, 0x9e3779b1) ^ unit) & this.#mask;
    while (this.#keyNode[h] !== -1) h = (h + 1) & this.#mask;
    this.#keyNode[h] = node;
    this.#keyUnit[h] = unit;
    this.#child[h] = child;
    this.#edges++;
  }
  #grow(): void {
    const [keyNode, keyUnit, child] = [this.#keyNode, this.#keyUnit, this.#child];
    const size = 2 * (this.#mask + 1);
    this.#keyNode = new Int32Array(size).fill(-1);
    this.#keyUnit = new Int32Array(size);
    this.#child = new Int32Array(size);
    this.#mask = size - 1;
    this.#edges = 0;
    for (let h = 0; h < keyNode.length; h++) if (keyNode[h] !== -1) this.#insert(keyNode[h], keyUnit[h], child[h]);
  }
  #setId(node: number, id: number): void {
    if (node >= this.#tokenId.length) {
      const grown = new Int32Array(Math.max(node + 1, this.#tokenId.length * 2)).fill(-1);
      grown.set(this.#tokenId);
      this.#tokenId = grown;
    }
    this.#tokenId[node] = id;
  }
  /** Child of node by unit, or -1. */
  step(node: number, unit: number): number {
    let h = (imul(node, 0x9e3779b1) ^ unit) & this.#mask;
    for (;;) {
      const k = this.#keyNode[h];
      if (k === -1) return -1;
      if (k === node && this.#keyUnit[h] === unit) return this.#child[h];
      h = (h + 1) & this.#mask;
    }
  }
  id(node: number): number {
    return node < this.#tokenId.length ? this.#tokenId[node] : -1;
  }
}

function* continuations(vocab: Map<string, number>, prefix: string): Generator<[string, number]> {
  for (const [k, id] of vocab) if (k.startsWith(prefix)) yield [k.slice(prefix.length), id];
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
    this.#initial = new Trie(vocab);
    this.#cont = new Trie(continuations(vocab, prefix));
  }
  readonly unkId: number;
  readonly #initial: Trie;
  readonly #cont: Trie;

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
      // Longest vocabulary entry starting at `start`, in one walk down the trie.
      const trie = start === a ? this.#initial : this.#cont;
      let node = 0;
      let found = -1;
      let foundEnd = start;
      for (let i = start; i < b; i++) {
        const c = text.charCodeAt(i);
        node = trie.step(node, c);
        if (node < 0) break;
        const id = trie.id(node);
        // never end inside a surrogate pair
        if (id >= 0 && !(c >= 0xd800 && c <= 0xdbff && i + 1 < b)) {
          found = id;
          foundEnd = i + 1;
        }
      }
      if (found < 0) {
        ids.length = mark;
        spans.length = mark * 2;
        ids.push(this.unkId);
        spans.push(a, b);
        return;
      }
      ids.push(found);
      spans.push(start, foundEnd);
      start = foundEnd;
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
    const seg = a === 0 && b === input.length ? input : input.slice(a, b);
    if (PRINTABLE_ASCII.test(seg)) return { text: o.lowercase ? seg.toLowerCase() : seg, base: a };
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
      let s: string;
      if (o.cleanText && f & CONTROL) continue;
      if (o.cleanText && f & WS_NORM) s = ' ';
      else if (o.stripAccents) s = stripAccents(cp);
      else s = String.fromCodePoint(cp);
      if (o.lowercase) {
        let l = '';
        for (const ch of s) l += lowercase(ch.codePointAt(0)!);
        s = l;
      }
      if (o.handleChineseChars && f & CHINESE) s = ` ${s} `;
      if (s) emit(s, os, oe);
    }
    return { text: out, base: a, start: Int32Array.from(start), end: Int32Array.from(end) };
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
      // A long text is normalized in pieces cut at ASCII spaces (which split words before and after
      // normalization, so the tokens are the same): each piece takes the printable-ASCII fast path on its
      // own, where one accented letter would otherwise send the whole text down the per-character path.
      while (b - a > 2 * SEGMENT_PIECE) {
        const cut = input.indexOf(' ', a + SEGMENT_PIECE);
        if (cut < 0 || cut >= b - SEGMENT_PIECE) break;
        segment(a, cut);
        a = cut;
      }
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
          offsets.push(norm.start ? [norm.start[spans[2 * k]], norm.end![spans[2 * k + 1] - 1]] : [norm.base + spans[2 * k], norm.base + spans[2 * k + 1]]);
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
          if (charFlags(before) & WORD || charFlags(after) & WORD) continue;
        }
        if (tok.lstrip) while (s > pos && charFlags(input.charCodeAt(s - 1)) & WS_SPLIT) s--;
        if (tok.rstrip) while (e < input.length && charFlags(input.charCodeAt(e)) & WS_SPLIT) e++;
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
