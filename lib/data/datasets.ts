// Readers for the corpora torchbert trains and tests on: SST-2 TSV, Rotten Tomatoes polarity (Latin-1),
// CoNLL-2003 (IOB1, with IOB2 conversion), plain text lines, CSV/TSV and JSONL. Each reader names the
// file and line of malformed input.
import * as fs from 'fs';
import { parse as parseCsv } from 'csv-parse/sync';
import * as path from 'path';

export interface TextExample {
  text: string;
  label: number;
}
export interface TokenExample {
  tokens: string[];
  tags: string[];
}

function read(file: string, encoding: 'utf8' | 'latin1' = 'utf8'): string {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file (set TORCHBERT_DATA or --data to the folder holding the data)`);
  return encoding === 'latin1' ? fs.readFileSync(file).toString('latin1') : new TextDecoder('utf-8').decode(fs.readFileSync(file));
}

/** Lines of a text file, without the empty string after a final newline. */
export function readLines(file: string, encoding: 'utf8' | 'latin1' = 'utf8'): string[] {
  const lines = read(file, encoding).split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Text trimmed, with each run of whitespace one space: the form sst2FullSentences returns rows in. */
export const singleSpaced = (t: string): string => t.trim().replace(/\s+/g, ' ');

/**
 * SST-2's training rows are the phrases of its sentences' parse trees: the rows no other row contains
 * (on word boundaries), i.e. the sentences, each once. A phrase is looked for only in the kept rows that
 * hold its rarest word.
 */
export function sst2FullSentences(texts: string[]): string[] {
  const byLength = [...new Set(texts.map(singleSpaced))].filter((t) => t).sort((a, b) => b.length - a.length);
  const kept: string[] = [];
  const holding = new Map<string, number[]>(); // word -> indices of the kept rows that contain it
  for (const t of byLength) {
    const words = t.split(' ');
    let rarest: number[] | undefined;
    for (const w of words) {
      const rows = holding.get(w);
      if (!rows) {
        rarest = [];
        break;
      }
      if (!rarest || rows.length < rarest.length) rarest = rows;
    }
    if (rarest?.some((i) => (' ' + kept[i] + ' ').includes(' ' + t + ' '))) continue;
    for (const w of new Set(words)) {
      const rows = holding.get(w);
      if (rows) rows.push(kept.length);
      else holding.set(w, [kept.length]);
    }
    kept.push(t);
  }
  return kept;
}

/** SST-2 (GLUE) TSV: a header, then `sentence<TAB>label`. */
export function readSst2(file: string): TextExample[] {
  const lines = readLines(file);
  const header = (lines.shift() ?? '').split('\t');
  const ti = header.indexOf('sentence') >= 0 ? header.indexOf('sentence') : 0;
  const li = header.indexOf('label') >= 0 ? header.indexOf('label') : 1;
  return lines.map((l, i) => {
    const cols = l.split('\t');
    const label = Number(cols[li]);
    if (cols.length < 2 || !Number.isInteger(label)) throw new Error(`${file}:${i + 2}: expected 'sentence<TAB>label'`);
    return { text: cols[ti], label };
  });
}

/** Rotten Tomatoes polarity: rt-polarity.pos / .neg, one review a line, Latin-1. */
export function readRtPolarity(dir: string): TextExample[] {
  const pos = readLines(path.join(dir, 'rt-polarity.pos'), 'latin1').map((text) => ({ text, label: 1 }));
  const neg = readLines(path.join(dir, 'rt-polarity.neg'), 'latin1').map((text) => ({ text, label: 0 }));
  return [...pos, ...neg];
}

/** Text as its lowercase letters and digits alone: how RT and SST, which spell punctuation differently, are matched. */
export const lettersAndDigits = (t: string): string => t.toLowerCase().replace(/[^a-z0-9]/g, '');

/**
 * The Rotten Tomatoes snippets (RT is what SST was built from) that are none of `known`'s texts and that
 * overlap none of `heldOut`'s: hold one, sit in one, or share four words in a row with one. Compared on
 * lowercase letters and digits, since the two spell punctuation differently; the four-word test catches what
 * that misses (a dev sentence RT spells with an HTML entity, `can&#8217 ; t`).
 */
export function rtPolarityOutside(rt: TextExample[], known: string[], heldOut: string[]): TextExample[] {
  const flat = lettersAndDigits;
  const grams = (t: string) => {
    const w = t.toLowerCase().match(/[a-z0-9]+/g) ?? [];
    return w.slice(3).map((_, i) => w.slice(i, i + 4).join(' '));
  };
  const knownFlat = new Set(known.map(flat));
  const heldFlat = heldOut.map(flat);
  const heldGrams = new Set(heldOut.flatMap(grams));
  return rt.filter((r) => {
    const f = flat(r.text);
    return !knownFlat.has(f) && !heldFlat.some((d) => d.includes(f) || f.includes(d)) && !grams(r.text).some((g) => heldGrams.has(g));
  });
}

/**
 * Rotten Tomatoes' raw spelling in SST's Penn Treebank one, where a BERT tokenizer reads them differently:
 * contractions split before n't (`doesn't` -> `does n't`, `can't` -> `ca n't`), `cannot` -> `can not`, and
 * straight double quotes as opening `` and closing '' in turn. (The other differences, `it's` against `it 's`
 * or `. . .` against `...`, tokenize alike.)
 */
export function sstSpelling(text: string): string {
  let quotes = 0;
  return text
    .replace(/(\w)n't\b/g, "$1 n't")
    .replace(/\bcannot\b/g, 'can not')
    .replace(/"/g, () => (quotes++ % 2 ? "''" : '``'));
}

/** CoNLL-2003: `token POS chunk NER` lines, blank lines between sentences, -DOCSTART- skipped. */
export function readConll(file: string, scheme: 'iob1' | 'iob2' = 'iob2'): TokenExample[] {
  const out: TokenExample[] = [];
  let cur: TokenExample = { tokens: [], tags: [] };
  const flush = () => {
    if (cur.tokens.length) out.push(scheme === 'iob2' ? { tokens: cur.tokens, tags: iob1ToIob2(cur.tags) } : cur);
    cur = { tokens: [], tags: [] };
  };
  readLines(file).forEach((line, i) => {
    const l = line.trim();
    if (!l) return flush();
    if (l.startsWith('-DOCSTART-')) return flush();
    const cols = l.split(/\s+/);
    if (cols.length < 2) throw new Error(`${file}:${i + 1}: expected 'token ... tag'`);
    const tag = cols[cols.length - 1];
    if (tag !== 'O' && !/^[BIES]-\S+$/.test(tag)) throw new Error(`${file}:${i + 1}: tag '${tag}' is not O or B-/I-/E-/S- followed by a type`);
    cur.tokens.push(cols[0]);
    cur.tags.push(tag);
  });
  flush();
  return out;
}

/** Tiny Shakespeare's speeches: blocks between blank lines, less the speaker's line ("First Citizen:"); those of over 20 characters. */
export function readShakespeareSpeeches(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split(/\n\s*\n/).map((b) => b.split('\n').filter((l, i) => !(i === 0 && /:\s*$/.test(l))).join(' ').trim()).filter((t) => t.length > 20);
}

/** IOB1 (I- starts entities unless it follows the same type) to IOB2 (every entity starts with B-). */
export function iob1ToIob2(tags: string[]): string[] {
  return tags.map((t, i) => {
    if (!t.startsWith('I-')) return t;
    const prev = i > 0 ? tags[i - 1] : 'O';
    return prev === 'O' || prev.slice(2) !== t.slice(2) ? `B-${t.slice(2)}` : t;
  });
}

/**
 * CSV or TSV with a header row, read by csv-parse: quoted fields ("a, b", "" escapes, line breaks inside
 * quotes), a UTF-8 byte-order mark, CRLF, blank lines skipped; a quote inside an unquoted field is text
 * (TSV corpora such as SST-2 carry them).
 */
export function readDelimited(file: string, delimiter = file.endsWith('.tsv') ? '\t' : ','): Record<string, string>[] {
  let rows: string[][];
  try {
    rows = parseCsv(read(file), { delimiter, bom: true, relax_quotes: true, skip_empty_lines: true, relax_column_count: true });
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`, { cause: e });
  }
  const [header, ...body] = rows;
  if (!header) throw new Error(`${file}: empty file`);
  return body.map((r, i) => {
    if (r.length !== header.length) throw new Error(`${file}: row ${i + 2} has ${r.length} fields, the header has ${header.length}`);
    return Object.fromEntries(header.map((h, j) => [h, r[j]]));
  });
}

/** JSON Lines: one object per line. */
export function readJsonl<T = Record<string, unknown>>(file: string): T[] {
  return readLines(file).flatMap((l, i) => {
    if (!l.trim()) return [];
    try {
      return [JSON.parse(l) as T];
    } catch (e) {
      throw new Error(`${file}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
  });
}

/** The line sets the tokenizer parity test compares (same rules as scripts/fixtures.py). */
export function parityCorpora(dataDir: string): Record<string, string[]> {
  const d = (...p: string[]) => path.join(dataDir, ...p);
  return {
    'sst2-train': readSst2(d('sst2', 'train.tsv')).map((e) => e.text),
    'sst2-dev': readSst2(d('sst2', 'dev.tsv')).map((e) => e.text),
    conll: ['eng.train', 'eng.testa', 'eng.testb'].flatMap((f) => readConll(d('conll2003', f), 'iob1').map((s) => s.tokens.join(' '))),
    wikitext: [...readLines(d('wikitext-2', 'test.txt')), ...readLines(d('wikitext-2', 'valid.txt'))],
    'rt-polarity': readRtPolarity(d('rt-polarity')).map((e) => e.text),
    shakespeare: readLines(d('tinyshakespeare', 'input.txt')),
  };
}
