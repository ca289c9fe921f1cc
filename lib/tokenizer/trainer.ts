// WordPieceTrainer: learns a BERT vocabulary from a corpus the way tokenizers' WordPieceTrainer does
// (BertWordPieceTokenizer.train): BERT normalization and pre-tokenization, an alphabet of the most
// frequent characters (limitAlphabet), then BPE merges of the most frequent adjacent pair, with
// non-initial pieces written with the ## prefix, until vocabSize is reached.
import { BertPipeline, WordPieceModel } from './pipeline';
import { BertTokenizer } from './bert-tokenizer';

export interface WordPieceTrainerOptions {
  vocabSize?: number;
  minFrequency?: number;
  specialTokens?: string[];
  limitAlphabet?: number;
  initialAlphabet?: string[];
  lowercase?: boolean;
  stripAccents?: boolean | null;
  handleChineseChars?: boolean;
  prefix?: string;
  /** called with (merges done, merges wanted) */
  onProgress?: (done: number, total: number) => void;
}

/** A binary max-heap of pair keys by count (ties: smaller key first), with lazy invalidation. */
class PairHeap {
  private keys: number[] = [];
  private counts: number[] = [];
  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] | undefined {
    if (!this.keys.length) return undefined;
    const top: [number, number] = [this.keys[0], this.counts[0]];
    const lk = this.keys.pop()!;
    const lc = this.counts.pop()!;
    if (this.keys.length) {
      this.keys[0] = lk;
      this.counts[0] = lc;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.keys.length && this.before(l, m)) m = l;
        if (r < this.keys.length && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
  private before(a: number, b: number): boolean {
    return this.counts[a] > this.counts[b] || (this.counts[a] === this.counts[b] && this.keys[a] < this.keys[b]);
  }
  private swap(a: number, b: number): void {
    [this.keys[a], this.keys[b]] = [this.keys[b], this.keys[a]];
    [this.counts[a], this.counts[b]] = [this.counts[b], this.counts[a]];
  }
}

export class WordPieceTrainer {
  readonly opts: Required<Omit<WordPieceTrainerOptions, 'onProgress' | 'initialAlphabet' | 'stripAccents'>> & Pick<WordPieceTrainerOptions, 'onProgress' | 'initialAlphabet' | 'stripAccents'>;
  #words = new Map<string, number>();

  constructor(opts: WordPieceTrainerOptions = {}) {
    this.opts = {
      vocabSize: 30000, minFrequency: 2, specialTokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], limitAlphabet: 1000,
      lowercase: true, handleChineseChars: true, prefix: '##', ...opts,
    };
    if (!Number.isInteger(this.opts.vocabSize) || this.opts.vocabSize < this.opts.specialTokens.length) {
      throw new RangeError(`vocabSize must be an integer of at least ${this.opts.specialTokens.length} (the special tokens)`);
    }
    if (!this.opts.specialTokens.includes('[UNK]')) throw new RangeError("specialTokens must include '[UNK]'");
  }

  /** Adds texts to the word counts (normalized and pre-tokenized as BERT does). */
  feed(texts: Iterable<string>): this {
    // A throwaway pipeline whose WordPiece model is never used: only normalization and splitting.
    const probe = new BertPipeline(
      { cleanText: true, handleChineseChars: this.opts.handleChineseChars, stripAccents: this.opts.stripAccents ?? this.opts.lowercase, lowercase: this.opts.lowercase },
      new WordPieceModel(new Map([['[UNK]', 0]]), '[UNK]'),
    );
    for (const text of texts) {
      for (const w of probe.words(text)) this.#words.set(w, (this.#words.get(w) ?? 0) + 1);
    }
    return this;
  }

  /** Runs the merges and returns the vocabulary (token -> id), special tokens first. */
  train(): Map<string, number> {
    const { vocabSize, minFrequency, specialTokens, limitAlphabet, prefix } = this.opts;
    const words = [...this.#words.entries()];
    // Alphabet: the limitAlphabet most frequent characters (plus any initial alphabet).
    const charCount = new Map<string, number>();
    for (const [w, c] of words) for (const ch of w) charCount.set(ch, (charCount.get(ch) ?? 0) + c);
    const alphabet = new Set(this.opts.initialAlphabet ?? []);
    [...charCount.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, Math.max(0, limitAlphabet - alphabet.size)).forEach(([ch]) => alphabet.add(ch));
    const symbols: string[] = [];
    const symbolId = new Map<string, number>();
    const intern = (s: string) => {
      let id = symbolId.get(s);
      if (id === undefined) {
        id = symbols.length;
        symbols.push(s);
        symbolId.set(s, id);
      }
      return id;
    };
    const vocab = new Map<string, number>();
    const addVocab = (t: string) => {
      if (!vocab.has(t)) vocab.set(t, vocab.size);
    };
    specialTokens.forEach(addVocab);
    const sortedAlphabet = [...alphabet].sort();
    sortedAlphabet.forEach(addVocab);
    // Words as symbol sequences; characters outside the alphabet make the word untrainable (it maps to [UNK]).
    const seqs: number[][] = [];
    const freq: number[] = [];
    for (const [w, c] of words) {
      const chars = [...w];
      if (!chars.every((ch) => alphabet.has(ch))) continue;
      seqs.push(chars.map((ch, i) => intern(i === 0 ? ch : prefix + ch)));
      freq.push(c);
    }
    for (const s of symbols) addVocab(s);
    const KEY = 1 << 21; // symbol ids stay below 2^21, so a pair packs into one safe integer
    const pairCount = new Map<number, number>();
    const pairWords = new Map<number, Set<number>>();
    const addPair = (a: number, b: number, wi: number, n: number) => {
      const k = a * KEY + b;
      pairCount.set(k, (pairCount.get(k) ?? 0) + n);
      if (n > 0) {
        let set = pairWords.get(k);
        if (!set) pairWords.set(k, (set = new Set()));
        set.add(wi);
      }
    };
    seqs.forEach((s, wi) => {
      for (let i = 0; i + 1 < s.length; i++) addPair(s[i], s[i + 1], wi, freq[wi]);
    });
    const heap = new PairHeap();
    for (const [k, c] of pairCount) heap.push(k, c);
    const wanted = vocabSize - vocab.size;
    let done = 0;
    while (vocab.size < vocabSize) {
      const top = heap.pop();
      if (!top) break;
      const [k, c] = top;
      const current = pairCount.get(k) ?? 0;
      if (current !== c) {
        if (current > 0) heap.push(k, current); // stale entry: requeue with the live count
        continue;
      }
      if (c < minFrequency || c <= 0) break;
      const a = Math.floor(k / KEY);
      const b = k % KEY;
      const merged = symbols[a] + (symbols[b].startsWith(prefix) ? symbols[b].slice(prefix.length) : symbols[b]);
      const m = intern(merged);
      addVocab(merged);
      done++;
      const touched = new Set<number>();
      for (const wi of pairWords.get(k) ?? []) {
        const s = seqs[wi];
        const n = freq[wi];
        for (let i = 0; i + 1 < s.length; i++) {
          if (s[i] !== a || s[i + 1] !== b) continue;
          if (i > 0) {
            addPair(s[i - 1], a, wi, -n);
            addPair(s[i - 1], m, wi, n);
            touched.add(s[i - 1] * KEY + m);
          }
          if (i + 2 < s.length) {
            addPair(b, s[i + 2], wi, -n);
            addPair(m, s[i + 2], wi, n);
            touched.add(m * KEY + s[i + 2]);
          }
          s.splice(i, 2, m);
        }
      }
      pairCount.delete(k);
      pairWords.delete(k);
      for (const t of touched) heap.push(t, pairCount.get(t) ?? 0);
      if (this.opts.onProgress && done % 500 === 0) this.opts.onProgress(done, wanted);
    }
    return vocab;
  }

  /** Trains and returns a BertTokenizer over the learned vocabulary. */
  trainTokenizer(texts?: Iterable<string>): BertTokenizer {
    if (texts) this.feed(texts);
    return new BertTokenizer(this.train(), { doLowerCase: this.opts.lowercase, stripAccents: this.opts.stripAccents ?? null, tokenizeChineseChars: this.opts.handleChineseChars });
  }
}
