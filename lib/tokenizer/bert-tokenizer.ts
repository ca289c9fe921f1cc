// BertTokenizer: Hugging Face's BertTokenizer (the tokenizers-backed one of transformers 5) in
// TypeScript: the same ids, type ids, masks, offsets and overflow windows, loaded from vocab.txt or
// tokenizer.json, saved in files transformers loads.
import * as fs from 'fs';
import * as path from 'path';
import { BertPipeline, WordPieceModel, AddedToken, NormalizerOptions } from './pipeline';
import { Encoding, postProcess, truncatePair, toSeq, pad, TruncationStrategy } from './encoding';
import { HubOptions, resolveModelDir } from '../hub';
import type { Tensor } from '../tensor';
import { writeFileAtomicSync } from '../fsutil';
import type { CallOptions } from './options';

export type { CallOptions, Padding, Truncation } from './options';


export interface BertTokenizerOptions {
  doLowerCase?: boolean;
  stripAccents?: boolean | null;
  tokenizeChineseChars?: boolean;
  cleanText?: boolean;
  unkToken?: string;
  sepToken?: string;
  padToken?: string;
  clsToken?: string;
  maskToken?: string;
  modelMaxLength?: number;
  maxInputCharsPerWord?: number;
  wordpiecesPrefix?: string;
  cleanUpTokenizationSpaces?: boolean;
  /** extra added tokens beyond the five BERT special tokens */
  addedTokens?: AddedToken[];
}

type Rows<T> = T[] | T[][];

/** What a tokenizer call returns: arrays (flat for a single text) or int64 tensors with returnTensors 'pt'. */
export class BatchEncoding {
  inputIds: Rows<number> | Tensor;
  tokenTypeIds?: Rows<number> | Tensor;
  attentionMask?: Rows<number> | Tensor;
  offsetMapping?: Rows<[number, number]>;
  specialTokensMask?: Rows<number> | Tensor;
  overflowToSampleMapping?: number[];
  /** One Encoding per row. */
  readonly encodings: Encoding[];

  constructor(encodings: Encoding[], fields: Partial<BatchEncoding>) {
    this.encodings = encodings;
    this.inputIds = fields.inputIds!;
    Object.assign(this, fields);
  }

  #row(i: number): Encoding {
    const e = this.encodings[i];
    if (!e) throw new RangeError(`batch index ${i} out of range (${this.encodings.length} rows)`);
    return e;
  }
  /** Word index of each token (null for special and padding tokens). */
  wordIds(batchIndex = 0): (number | null)[] {
    return this.#row(batchIndex).wordIds.slice();
  }
  /** 0 or 1 for tokens of the first or second sequence, null for special and padding tokens. */
  sequenceIds(batchIndex = 0): (number | null)[] {
    return this.#row(batchIndex).sequenceIds.slice();
  }
  /** Index of the token covering character `charIndex` of sequence `sequenceIndex`, or null. */
  charToToken(batchOrChar: number, charIndex?: number, sequenceIndex = 0): number | null {
    const [b, c] = charIndex === undefined ? [0, batchOrChar] : [batchOrChar, charIndex];
    const e = this.#row(b);
    for (let t = 0; t < e.ids.length; t++) {
      if (e.sequenceIds[t] !== sequenceIndex) continue;
      const [s, x] = e.offsets[t];
      if (c >= s && c < x) return t;
    }
    return null;
  }
  /** Character span of a token in its sequence's text, or null for special tokens. */
  tokenToChars(batchOrToken: number, tokenIndex?: number): { start: number; end: number } | null {
    const [b, t] = tokenIndex === undefined ? [0, batchOrToken] : [batchOrToken, tokenIndex];
    const e = this.#row(b);
    if (t < 0 || t >= e.ids.length) throw new RangeError(`token index ${t} out of range`);
    if (e.sequenceIds[t] === null) return null;
    return { start: e.offsets[t][0], end: e.offsets[t][1] };
  }
  /** Word index of a token. */
  tokenToWord(batchOrToken: number, tokenIndex?: number): number | null {
    const [b, t] = tokenIndex === undefined ? [0, batchOrToken] : [batchOrToken, tokenIndex];
    return this.#row(b).wordIds[t] ?? null;
  }
}

const SPECIAL_DEFAULTS = { unkToken: '[UNK]', sepToken: '[SEP]', padToken: '[PAD]', clsToken: '[CLS]', maskToken: '[MASK]' };
const VERY_LARGE = 1e30;

export class BertTokenizer {
  readonly pipeline: BertPipeline;
  readonly vocab: Map<string, number>;
  readonly idsToTokens: string[];
  readonly options: Required<Omit<BertTokenizerOptions, 'addedTokens' | 'stripAccents'>> & { stripAccents: boolean | null };
  readonly modelMaxLength: number;

  /**
   * @param vocab token -> id (ids need not be dense)
   * @throws Error when the vocabulary lacks the unknown token
   */
  constructor(vocab: Map<string, number>, opts: BertTokenizerOptions = {}) {
    const o = {
      doLowerCase: true, stripAccents: null as boolean | null, tokenizeChineseChars: true, cleanText: true, ...SPECIAL_DEFAULTS,
      modelMaxLength: VERY_LARGE, maxInputCharsPerWord: 100, wordpiecesPrefix: '##', cleanUpTokenizationSpaces: true, ...stripUndefined(opts),
    };
    delete (o as BertTokenizerOptions).addedTokens;
    this.options = o;
    this.modelMaxLength = o.modelMaxLength;
    this.vocab = vocab;
    this.idsToTokens = [];
    for (const [t, i] of vocab) this.idsToTokens[i] = t;
    const norm: NormalizerOptions = {
      cleanText: o.cleanText, handleChineseChars: o.tokenizeChineseChars,
      stripAccents: o.stripAccents ?? o.doLowerCase, lowercase: o.doLowerCase,
    };
    const model = new WordPieceModel(vocab, o.unkToken, o.wordpiecesPrefix, o.maxInputCharsPerWord);
    const added: AddedToken[] = [];
    for (const t of [o.padToken, o.unkToken, o.clsToken, o.sepToken, o.maskToken]) {
      const id = vocab.get(t);
      if (id !== undefined && !added.some((a) => a.content === t)) added.push({ content: t, id, special: true, normalized: false });
    }
    for (const t of opts.addedTokens ?? []) {
      if (!added.some((a) => a.content === t.content)) added.push(t);
      if (!vocab.has(t.content)) {
        vocab.set(t.content, t.id);
        this.idsToTokens[t.id] = t.content;
      }
    }
    this.pipeline = new BertPipeline(norm, model, added);
  }

  // ---------- loading and saving ----------

  /** Parses vocab.txt contents, with errors naming the file and the problem. */
  static parseVocab(buf: Buffer, file = 'vocab.txt'): Map<string, number> {
    if (buf.length === 0) throw new Error(`${file}: the vocabulary file is empty`);
    if (buf.includes(0)) throw new Error(`${file}: the vocabulary file is binary (contains NUL bytes), not one token per line`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } catch {
      throw new Error(`${file}: the vocabulary file is not valid UTF-8`);
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    const vocab = new Map<string, number>();
    lines.forEach((line, i) => {
      const tok = line.replace(/\r$/, '').trimEnd();
      if (vocab.has(tok)) throw new Error(`${file}: duplicate token '${tok}' on lines ${vocab.get(tok)! + 1} and ${i + 1}`);
      vocab.set(tok, i);
    });
    if (vocab.size === 0) throw new Error(`${file}: the vocabulary file has no tokens`);
    return vocab;
  }

  static fromVocabFile(file: string, opts: BertTokenizerOptions = {}): BertTokenizer {
    if (!fs.existsSync(file)) throw new Error(`${file}: no such vocabulary file`);
    const vocab = BertTokenizer.parseVocab(fs.readFileSync(file), file);
    const unk = opts.unkToken ?? '[UNK]';
    if (!vocab.has(unk)) throw new Error(`${file}: the vocabulary has no unknown token '${unk}'`);
    return new BertTokenizer(vocab, opts);
  }

  /** Loads HF's fast format (tokenizer.json): BertNormalizer, BertPreTokenizer, WordPiece, template. */
  static fromTokenizerJson(file: string, opts: BertTokenizerOptions = {}): BertTokenizer {
    let j: any;
    try {
      j = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
    const fail = (what: string) => {
      throw new Error(`${file}: ${what}`);
    };
    if (!j || typeof j !== 'object') fail('expected a JSON object');
    const m = j.model;
    if (!m || typeof m !== 'object') fail("missing 'model'");
    const type = m.type ?? (m.continuing_subword_prefix !== undefined || m.max_input_chars_per_word !== undefined ? 'WordPiece' : undefined);
    if (type !== 'WordPiece') fail(`model type '${type ?? 'unknown'}' is not WordPiece (BERT tokenizers use WordPiece)`);
    if (!m.vocab || typeof m.vocab !== 'object' || Array.isArray(m.vocab)) fail("model.vocab must be an object of token -> id");
    const vocab = new Map<string, number>();
    const seen: string[] = [];
    for (const t in m.vocab) {
      const id = m.vocab[t];
      if (!Number.isInteger(id) || id < 0) fail(`model.vocab['${t}'] is not a non-negative integer id`);
      if (seen[id] !== undefined) fail(`model.vocab: tokens '${seen[id]}' and '${t}' share id ${id}`);
      seen[id] = t;
      vocab.set(t, id);
    }
    if (vocab.size === 0) fail('model.vocab is empty');
    const n = j.normalizer;
    if (n && n.type !== 'BertNormalizer') fail(`normalizer type '${n.type}' is not supported (expected BertNormalizer)`);
    const pre = j.pre_tokenizer;
    if (pre && pre.type !== 'BertPreTokenizer') fail(`pre_tokenizer type '${pre.type}' is not supported (expected BertPreTokenizer)`);
    const unk = m.unk_token ?? '[UNK]';
    if (!vocab.has(unk)) fail(`the vocabulary has no unknown token '${unk}'`);
    const added: AddedToken[] = (Array.isArray(j.added_tokens) ? j.added_tokens : []).map((t: any) => ({
      content: t.content, id: t.id, special: !!t.special, singleWord: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip, normalized: !!t.normalized,
    }));
    const special = (name: string) => {
      const tpl = j.post_processor?.special_tokens;
      return tpl?.[name]?.tokens?.[0];
    };
    return new BertTokenizer(vocab, {
      doLowerCase: n ? !!n.lowercase : false,
      stripAccents: n ? (n.strip_accents ?? null) : false,
      tokenizeChineseChars: n ? n.handle_chinese_chars !== false : false,
      cleanText: n ? n.clean_text !== false : false,
      unkToken: unk,
      clsToken: special('[CLS]') ?? '[CLS]',
      sepToken: special('[SEP]') ?? '[SEP]',
      maxInputCharsPerWord: m.max_input_chars_per_word ?? 100,
      wordpiecesPrefix: m.continuing_subword_prefix ?? '##',
      cleanUpTokenizationSpaces: j.decoder?.cleanup ?? true,
      addedTokens: added.filter((a) => !['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].includes(a.content)),
      ...stripUndefined(opts),
    });
  }

  /**
   * Loads from a folder (tokenizer.json, or vocab.txt with tokenizer_config.json and
   * special_tokens_map.json) or a Hub name, resolved in the HF cache, then downloaded.
   * @example const tok = await BertTokenizer.fromPretrained('bert-base-uncased');
   */
  static async fromPretrained(dirOrName: string, opts: BertTokenizerOptions & HubOptions = {}): Promise<BertTokenizer> {
    const { dir, files } = await resolveModelDir(dirOrName, {
      required: [['tokenizer.json', 'vocab.txt']],
      optional: ['tokenizer_config.json', 'special_tokens_map.json'],
    }, opts);
    return BertTokenizer.fromDir(dir, files, opts);
  }

  static fromDir(dir: string, files: Set<string> = new Set(fs.readdirSync(dir)), opts: BertTokenizerOptions = {}): BertTokenizer {
    const cfg: any = files.has('tokenizer_config.json') ? readJson(path.join(dir, 'tokenizer_config.json')) : {};
    const map: any = files.has('special_tokens_map.json') ? readJson(path.join(dir, 'special_tokens_map.json')) : {};
    const tokenName = (v: unknown) => (typeof v === 'string' ? v : v && typeof v === 'object' ? (v as any).content : undefined);
    const fromCfg: BertTokenizerOptions = stripUndefined({
      doLowerCase: cfg.do_lower_case,
      stripAccents: cfg.strip_accents,
      tokenizeChineseChars: cfg.tokenize_chinese_chars,
      modelMaxLength: typeof cfg.model_max_length === 'number' && cfg.model_max_length < 1e20 ? cfg.model_max_length : undefined,
      cleanUpTokenizationSpaces: cfg.clean_up_tokenization_spaces,
      unkToken: tokenName(map.unk_token ?? cfg.unk_token),
      sepToken: tokenName(map.sep_token ?? cfg.sep_token),
      padToken: tokenName(map.pad_token ?? cfg.pad_token),
      clsToken: tokenName(map.cls_token ?? cfg.cls_token),
      maskToken: tokenName(map.mask_token ?? cfg.mask_token),
    });
    const merged = { ...fromCfg, ...stripUndefined(opts) };
    if (files.has('tokenizer.json')) {
      // tokenizer.json carries the normalizer; tokenizer_config only adds limits and token names.
      const t = BertTokenizer.fromTokenizerJson(path.join(dir, 'tokenizer.json'), stripUndefined({ ...opts, modelMaxLength: merged.modelMaxLength, cleanUpTokenizationSpaces: merged.cleanUpTokenizationSpaces }));
      return t;
    }
    if (!files.has('vocab.txt')) throw new Error(`${dir}: no tokenizer.json or vocab.txt`);
    return BertTokenizer.fromVocabFile(path.join(dir, 'vocab.txt'), merged);
  }

  /** Writes vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json. */
  savePretrained(dir: string): string[] {
    fs.mkdirSync(dir, { recursive: true });
    const o = this.options;
    const ids = [...this.vocab.values()].sort((a, b) => a - b);
    const written: string[] = [];
    const write = (name: string, data: string) => {
      const p = path.join(dir, name);
      writeFileAtomicSync(p, data);
      written.push(p);
    };
    write('vocab.txt', ids.map((i) => this.idsToTokens[i]).join('\n') + '\n');
    const added = this.pipeline.addedTokens.map((t) => ({
      id: t.id, content: t.content, single_word: !!t.singleWord, lstrip: !!t.lstrip, rstrip: !!t.rstrip, normalized: !!t.normalized, special: t.special,
    })).sort((a, b) => a.id - b.id);
    const cls = this.tokenToId(o.clsToken);
    const sep = this.tokenToId(o.sepToken);
    const json = {
      version: '1.0', truncation: null, padding: null, added_tokens: added,
      normalizer: { type: 'BertNormalizer', clean_text: o.cleanText, handle_chinese_chars: o.tokenizeChineseChars, strip_accents: o.stripAccents, lowercase: o.doLowerCase },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: o.clsToken, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: o.sepToken, type_id: 0 } }],
        pair: [{ SpecialToken: { id: o.clsToken, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: o.sepToken, type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: o.sepToken, type_id: 1 } }],
        special_tokens: { [o.clsToken]: { id: o.clsToken, ids: [cls], tokens: [o.clsToken] }, [o.sepToken]: { id: o.sepToken, ids: [sep], tokens: [o.sepToken] } },
      },
      decoder: { type: 'WordPiece', prefix: o.wordpiecesPrefix, cleanup: o.cleanUpTokenizationSpaces },
      model: { type: 'WordPiece', unk_token: o.unkToken, continuing_subword_prefix: o.wordpiecesPrefix, max_input_chars_per_word: o.maxInputCharsPerWord, vocab: Object.fromEntries(ids.map((i) => [this.idsToTokens[i], i])) },
    };
    write('tokenizer.json', JSON.stringify(json));
    write('tokenizer_config.json', JSON.stringify({
      tokenizer_class: 'BertTokenizer', do_lower_case: o.doLowerCase, strip_accents: o.stripAccents, tokenize_chinese_chars: o.tokenizeChineseChars,
      model_max_length: o.modelMaxLength >= VERY_LARGE ? 1000000000000000019884624838656 : o.modelMaxLength, clean_up_tokenization_spaces: o.cleanUpTokenizationSpaces,
      unk_token: o.unkToken, sep_token: o.sepToken, pad_token: o.padToken, cls_token: o.clsToken, mask_token: o.maskToken,
    }, null, 2));
    write('special_tokens_map.json', JSON.stringify({ unk_token: o.unkToken, sep_token: o.sepToken, pad_token: o.padToken, cls_token: o.clsToken, mask_token: o.maskToken }, null, 2));
    return written;
  }

  // ---------- vocabulary ----------

  get vocabSize(): number {
    return this.vocab.size;
  }
  tokenToId(token: string): number {
    const id = this.vocab.get(token);
    return id === undefined ? this.vocab.get(this.options.unkToken)! : id;
  }
  convertTokensToIds(tokens: string): number;
  convertTokensToIds(tokens: string[]): number[];
  convertTokensToIds(tokens: string | string[]): number | number[] {
    return Array.isArray(tokens) ? tokens.map((t) => this.tokenToId(t)) : this.tokenToId(tokens);
  }
  convertIdsToTokens(ids: number, skipSpecialTokens?: boolean): string;
  convertIdsToTokens(ids: number[], skipSpecialTokens?: boolean): string[];
  convertIdsToTokens(ids: number | number[], skipSpecialTokens = false): string | string[] {
    if (!Array.isArray(ids)) return this.#idToToken(ids);
    const special = this.allSpecialIds;
    return ids.filter((i) => !(skipSpecialTokens && special.has(i))).map((i) => this.#idToToken(i));
  }
  #idToToken(id: number): string {
    const t = this.idsToTokens[id];
    if (t === undefined) throw new RangeError(`token id ${id} is not in the vocabulary (size ${this.vocab.size})`);
    return t;
  }
  get padTokenId(): number {
    return this.tokenToId(this.options.padToken);
  }
  get clsTokenId(): number {
    return this.tokenToId(this.options.clsToken);
  }
  get sepTokenId(): number {
    return this.tokenToId(this.options.sepToken);
  }
  get maskTokenId(): number {
    return this.tokenToId(this.options.maskToken);
  }
  get unkTokenId(): number {
    return this.tokenToId(this.options.unkToken);
  }
  get allSpecialIds(): Set<number> {
    return new Set(this.pipeline.addedTokens.filter((t) => t.special).map((t) => t.id));
  }
  /** Adds tokens matched in raw text before normalization; returns how many were new. */
  addTokens(tokens: string[], special = false): number {
    let added = 0;
    const current = this.pipeline.addedTokens;
    for (const t of tokens) {
      if (current.some((a) => a.content === t)) continue;
      let id = this.vocab.get(t);
      if (id === undefined) {
        id = this.idsToTokens.length;
        this.vocab.set(t, id);
        this.idsToTokens[id] = t;
        added++;
      }
      current.push({ content: t, id, special, normalized: !special });
    }
    this.pipeline.setAddedTokens(current);
    return added;
  }
  addSpecialTokens(tokens: string[]): number {
    return this.addTokens(tokens, true);
  }

  // ---------- encoding ----------

  /** WordPiece tokens of a text, without special tokens. */
  tokenize(text: string): string[] {
    return this.pipeline.encode(checkText(text, 'text')).ids.map((i) => this.idsToTokens[i]);
  }

  /** Ids of one text (or pair) with special tokens, like `tokenizer.encode`. */
  encode(text: string, pair?: string, opts: Omit<CallOptions, 'returnTensors'> = {}): number[] {
    const r = this.call(text, pair, opts);
    return r.inputIds as number[];
  }

  /**
   * Tokenizes like calling an HF tokenizer: `tokenizer(text | texts, pair?, options)`.
   * @throws TypeError for inputs that are not strings, RangeError for impossible lengths
   * @example tok.call(['a sentence', 'another'], undefined, { padding: true, returnTensors: 'pt' })
   */
  call(text: string | string[], pair?: string | string[] | null, opts: CallOptions = {}): BatchEncoding {
    const batched = Array.isArray(text);
    const texts = batched ? (text as string[]) : [text as string];
    texts.forEach((t, i) => checkText(t, batched ? `text[${i}]` : 'text'));
    let pairs: (string | null)[] = texts.map(() => null);
    if (pair !== undefined && pair !== null) {
      if (Array.isArray(pair) !== batched) throw new TypeError('text and pair must both be strings or both be arrays');
      pairs = batched ? (pair as string[]) : [pair as string];
      if (pairs.length !== texts.length) throw new RangeError(`got ${texts.length} texts but ${pairs.length} pairs`);
      pairs.forEach((p, i) => checkText(p, batched ? `pair[${i}]` : 'pair'));
    }
    const { rows, sampleMap } = this.encodeRows(texts, pair === undefined || pair === null ? null : pairs, opts);
    this.#pad(rows, opts);
    return this.#output(rows, sampleMap, batched || !!opts.returnOverflowingTokens, opts);
  }

  /** @internal Encodes texts (and pairs) into rows without padding; sampleMap gives each row's input. */
  encodeRows(texts: string[], pairs: (string | null)[] | null, opts: CallOptions): { rows: Encoding[]; sampleMap: number[] } {
    const rows: Encoding[] = [];
    const sampleMap: number[] = [];
    texts.forEach((t, i) => {
      for (const e of this.#encodeOne(t, pairs ? pairs[i] : null, opts)) {
        rows.push(e);
        sampleMap.push(i);
      }
    });
    return { rows, sampleMap };
  }

  /**
   * The parallel batch path: like call() for a list of texts, encoded by a pool of worker threads.
   * @example const pool = tok.createPool(); const r = await tok.callParallel(texts, undefined, { padding: true }, pool);
   */
  async callParallel(texts: string[], pair: string[] | null | undefined, opts: CallOptions, pool: import('./parallel').TokenizerPool): Promise<BatchEncoding> {
    if (!Array.isArray(texts)) throw new TypeError('callParallel takes an array of texts');
    texts.forEach((t, i) => checkText(t, `text[${i}]`));
    if (pair) {
      if (!Array.isArray(pair) || pair.length !== texts.length) throw new RangeError(`got ${texts.length} texts but ${Array.isArray(pair) ? pair.length : 'no array of'} pairs`);
      pair.forEach((p, i) => checkText(p, `pair[${i}]`));
    }
    const chunk = Math.ceil(texts.length / pool.threads);
    const parts = await Promise.all(
      Array.from({ length: pool.threads }, (_, k) => {
        const a = k * chunk;
        return pool.encodeRows(texts.slice(a, a + chunk), pair ? pair.slice(a, a + chunk) : null, { ...opts, returnTensors: undefined });
      }),
    );
    const rows: Encoding[] = [];
    const sampleMap: number[] = [];
    parts.forEach((p, k) => {
      rows.push(...p.rows);
      for (const s of p.sampleMap) sampleMap.push(s + k * chunk);
    });
    this.#pad(rows, opts);
    return this.#output(rows, sampleMap, true, opts);
  }

  /** A pool of worker threads for callParallel (threads defaults to the number of cores). */
  createPool(threads?: number): import('./parallel').TokenizerPool {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { TokenizerPool } = require('./parallel') as typeof import('./parallel');
    return new TokenizerPool(this, threads);
  }

  /** A plain-data form of this tokenizer (for worker threads). */
  serialize(): { vocab: [string, number][]; options: BertTokenizerOptions; added: AddedToken[] } {
    return { vocab: [...this.vocab.entries()], options: { ...this.options }, added: this.pipeline.addedTokens };
  }
  static deserialize(d: { vocab: [string, number][]; options: BertTokenizerOptions; added: AddedToken[] }): BertTokenizer {
    const t = new BertTokenizer(new Map(d.vocab), d.options);
    t.pipeline.setAddedTokens(d.added);
    return t;
  }

  #encodeOne(a: string, b: string | null, opts: CallOptions): Encoding[] {
    const addSpecial = opts.addSpecialTokens !== false;
    let sa = toSeq(this.pipeline.encode(a));
    let sb = b === null ? null : toSeq(this.pipeline.encode(b));
    const trunc = opts.truncation;
    const strategy: TruncationStrategy | null =
      trunc === true ? 'longest_first' : trunc === false || trunc === undefined || trunc === 'do_not_truncate' ? null : trunc;
    if (strategy && !['longest_first', 'only_first', 'only_second'].includes(strategy)) throw new TypeError(`unknown truncation strategy '${strategy}'`);
    if (strategy) {
      const maxLength = opts.maxLength ?? this.modelMaxLength;
      checkLength(maxLength, 'maxLength');
      const added = addSpecial ? (sb ? 3 : 2) : 0;
      if (maxLength < added) throw new RangeError(`maxLength ${maxLength} leaves no room for the ${added} special tokens`);
      [sa, sb] = truncatePair(sa, sb, Math.min(maxLength, 1e15) - added, strategy, opts.stride ?? 0);
    }
    const tpl = addSpecial ? { cls: this.clsTokenId, sep: this.sepTokenId } : null;
    const rows = postProcess(sa, sb, tpl);
    return opts.returnOverflowingTokens ? rows : rows.slice(0, 1);
  }

  #pad(rows: Encoding[], opts: CallOptions): void {
    const p = opts.padding;
    const mode = p === true ? 'longest' : p === false || p === undefined || p === 'do_not_pad' ? null : p;
    if (mode && mode !== 'longest' && mode !== 'max_length') throw new TypeError(`unknown padding strategy '${String(mode)}'`);
    let target: number;
    if (mode === 'max_length') {
      const m = opts.maxLength ?? (this.modelMaxLength < VERY_LARGE ? this.modelMaxLength : undefined);
      if (m === undefined) throw new RangeError("padding 'max_length' needs maxLength");
      checkLength(m, 'maxLength');
      target = m;
    } else if (mode === 'longest') {
      target = Math.max(0, ...rows.map((r) => r.ids.length));
    } else return;
    const mult = opts.padToMultipleOf;
    if (mult !== undefined) {
      checkLength(mult, 'padToMultipleOf');
      if (mult > 0 && target % mult !== 0) target = (Math.floor(target / mult) + 1) * mult;
    }
    const padId = this.padTokenId;
    for (const r of rows) pad(r, target, padId);
  }

  #output(rows: Encoding[], sampleMap: number[], batched: boolean, opts: CallOptions): BatchEncoding {
    const pick = <T>(f: (e: Encoding) => T[]): Rows<T> => (batched ? rows.map(f) : f(rows[0]));
    const pt = opts.returnTensors === 'pt';
    if (opts.returnTensors !== undefined && !pt) throw new TypeError(`returnTensors must be 'pt', got '${opts.returnTensors}'`);
    const toTensor = (name: string, f: (e: Encoding) => number[]): Tensor => {
      const n = rows[0]?.ids.length ?? 0;
      if (rows.some((r) => r.ids.length !== n)) throw new RangeError(`returnTensors 'pt' needs rows of equal length for ${name}: use padding`);
      // Loaded lazily so tokenization works without the native addon.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { int64Rows } = require('../tensor') as typeof import('../tensor');
      return int64Rows(rows.map(f), n);
    };
    const field = (name: string, f: (e: Encoding) => number[]) => (pt ? toTensor(name, f) : pick(f));
    const out: Partial<BatchEncoding> = { inputIds: field('inputIds', (e) => e.ids) };
    if (opts.returnTokenTypeIds !== false) out.tokenTypeIds = field('tokenTypeIds', (e) => e.typeIds);
    if (opts.returnAttentionMask !== false) out.attentionMask = field('attentionMask', (e) => e.attentionMask);
    if (opts.returnSpecialTokensMask) out.specialTokensMask = field('specialTokensMask', (e) => e.specialTokensMask);
    if (opts.returnOffsetsMapping) out.offsetMapping = pick((e) => e.offsets);
    if (opts.returnOverflowingTokens) out.overflowToSampleMapping = sampleMap;
    return new BatchEncoding(rows, out);
  }

  // ---------- decoding ----------

  /** Text of ids, like HF decode (WordPiece decoder: ## joined, optional cleanup of spaces). */
  decode(ids: number[] | Tensor, opts: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean } = {}): string {
    const list = Array.isArray(ids) ? ids : (ids.toArraySync() as unknown as (bigint | number)[]).flat(Infinity as 1).map(Number);
    return this.convertTokensToString(this.convertIdsToTokens(list as number[], !!opts.skipSpecialTokens) as string[], opts);
  }

  /** Tokens back to text with the WordPiece decoder (what HF's convert_tokens_to_string does). */
  convertTokensToString(tokens: string[], opts: { cleanUpTokenizationSpaces?: boolean } = {}): string {
    const prefix = this.options.wordpiecesPrefix;
    const clean = opts.cleanUpTokenizationSpaces ?? this.options.cleanUpTokenizationSpaces;
    let s = '';
    tokens.forEach((t, i) => {
      let piece = t;
      if (i > 0) piece = t.startsWith(prefix) ? t.slice(prefix.length) : ` ${t}`;
      // The WordPiece decoder cleans each piece on its own, so only in-piece patterns apply.
      s += clean ? cleanup(piece) : piece;
    });
    return s;
  }
  batchDecode(batch: number[][] | Tensor, opts: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean } = {}): string[] {
    const rows = Array.isArray(batch) ? batch : (batch.toArraySync() as unknown as bigint[][]).map((r) => r.map(Number));
    return rows.map((r) => this.decode(r, opts));
  }
}

/** The WordPiece decoder's cleanup of one piece: spaces before punctuation and contractions. */
function cleanup(s: string): string {
  return s
    .replace(/ \./g, '.').replace(/ \?/g, '?').replace(/ !/g, '!').replace(/ ,/g, ',').replace(/ ' /g, "'")
    .replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ do not/g, " don't").replace(/ 's/g, "'s").replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
}

function checkText(t: unknown, what: string): string {
  if (typeof t !== 'string') throw new TypeError(`${what} must be a string, got ${t === null ? 'null' : typeof t}`);
  return t;
}
function checkLength(n: unknown, what: string): void {
  if (typeof n !== 'number' || !(n >= 0) || !Number.isInteger(n) && n < 1e20) throw new RangeError(`${what} must be a non-negative integer, got ${String(n)}`);
}
function readJson(file: string): any {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}
function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
