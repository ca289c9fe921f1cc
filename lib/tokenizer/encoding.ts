// Encodings after the pipeline: truncation with overflow and stride, the [CLS] A [SEP] B [SEP] template,
// and padding, following Hugging Face tokenizers' semantics (truncate_encodings, Encoding::truncate,
// TemplateProcessing, Encoding::merge_with, pad).
import type { RawEncoding } from './pipeline';

export interface Encoding {
  ids: number[];
  typeIds: number[];
  offsets: [number, number][];
  specialTokensMask: number[];
  attentionMask: number[];
  wordIds: (number | null)[];
  sequenceIds: (number | null)[];
}

/** A sequence (one side of the input) with its overflowing windows. */
export interface Seq {
  ids: number[];
  offsets: [number, number][];
  words: number[];
  special: boolean[];
  overflowing: Seq[];
}

export function toSeq(r: RawEncoding): Seq {
  return { ids: r.ids, offsets: r.offsets, words: r.words, special: r.special, overflowing: [] };
}

function slice(s: Seq, a: number, b: number): Seq {
  return { ids: s.ids.slice(a, b), offsets: s.offsets.slice(a, b), words: s.words.slice(a, b), special: s.special.slice(a, b), overflowing: [] };
}

/** Keeps the first maxLen tokens; the rest become windows of maxLen that overlap by stride. */
export function truncateSeq(s: Seq, maxLen: number, stride: number): Seq {
  const n = s.ids.length;
  if (maxLen >= n) return s;
  if (maxLen === 0) {
    const empty = slice(s, 0, 0);
    empty.overflowing = [s];
    return empty;
  }
  if (stride >= maxLen) throw new RangeError(`stride (${stride}) must be smaller than the truncated length (${maxLen})`);
  const step = maxLen - stride;
  const ranges: [number, number][] = [];
  for (let start = 0; start < n; start += step) {
    const stop = Math.min(start + maxLen, n);
    ranges.push([start, stop]);
    if (stop === n) break;
  }
  const main = slice(s, ranges[0][0], ranges[0][1]);
  for (let i = 1; i < ranges.length; i++) main.overflowing.push(slice(s, ranges[i][0], ranges[i][1]));
  return main;
}

export type TruncationStrategy = 'longest_first' | 'only_first' | 'only_second';

/** truncate_encodings: maxLength excludes the special tokens the template adds. */
export function truncatePair(a: Seq, b: Seq | null, maxLength: number, strategy: TruncationStrategy, stride: number): [Seq, Seq | null] {
  if (maxLength === 0) return [truncateSeq(a, 0, stride), b && truncateSeq(b, 0, stride)];
  const total = a.ids.length + (b ? b.ids.length : 0);
  if (total <= maxLength) return [a, b];
  const toRemove = total - maxLength;
  if (strategy === 'longest_first') {
    if (!b) return [truncateSeq(a, total - toRemove, stride), null];
    let n1 = a.ids.length;
    let n2 = b.ids.length;
    const swap = n1 > n2;
    if (swap) [n1, n2] = [n2, n1];
    n2 = n1 > maxLength ? n1 : Math.max(n1, maxLength - n1);
    if (n1 + n2 > maxLength) {
      n1 = Math.floor(maxLength / 2);
      n2 = n1 + (maxLength % 2);
    }
    if (swap) [n1, n2] = [n2, n1];
    return [truncateSeq(a, n1, stride), truncateSeq(b, n2, stride)];
  }
  const first = strategy === 'only_first';
  if (!first && !b) throw new Error("truncation 'only_second' needs a pair of sequences");
  const target = first ? a : b!;
  if (target.ids.length <= toRemove) {
    throw new RangeError(`truncation '${strategy}': the sequence to truncate (${target.ids.length} tokens) is too short to fit max_length`);
  }
  const t = truncateSeq(target, target.ids.length - toRemove, stride);
  return first ? [t, b] : [a, t];
}

export interface Template {
  cls: number;
  sep: number;
}

function templated(s: Seq, seqId: 0 | 1, tpl: Template | null, lead: boolean): Encoding {
  // [CLS] A [SEP] for the first sequence, B [SEP] for the second.
  const e: Encoding = { ids: [], typeIds: [], offsets: [], specialTokensMask: [], attentionMask: [], wordIds: [], sequenceIds: [] };
  const special = (id: number) => {
    e.ids.push(id);
    e.typeIds.push(seqId);
    e.offsets.push([0, 0]);
    e.specialTokensMask.push(1);
    e.attentionMask.push(1);
    e.wordIds.push(null);
    e.sequenceIds.push(null);
  };
  if (tpl && lead) special(tpl.cls);
  for (let i = 0; i < s.ids.length; i++) {
    e.ids.push(s.ids[i]);
    e.typeIds.push(seqId);
    e.offsets.push(s.offsets[i]);
    e.specialTokensMask.push(s.special[i] ? 1 : 0);
    e.attentionMask.push(1);
    e.wordIds.push(s.words[i]);
    e.sequenceIds.push(seqId);
  }
  if (tpl) special(tpl.sep);
  return e;
}

function concat(x: Encoding, y: Encoding): Encoding {
  return {
    ids: x.ids.concat(y.ids), typeIds: x.typeIds.concat(y.typeIds), offsets: x.offsets.concat(y.offsets),
    specialTokensMask: x.specialTokensMask.concat(y.specialTokensMask), attentionMask: x.attentionMask.concat(y.attentionMask),
    wordIds: x.wordIds.concat(y.wordIds), sequenceIds: x.sequenceIds.concat(y.sequenceIds),
  };
}

/** Applies the template and merges a pair; returns the main encoding followed by every overflow row. */
export function postProcess(a: Seq, b: Seq | null, tpl: Template | null): Encoding[] {
  const ta = templated(a, 0, tpl, true);
  const oa = a.overflowing.map((o) => templated(o, 0, tpl, true));
  if (!b) return [ta, ...oa];
  const tb = templated(b, 1, tpl, false);
  const ob = b.overflowing.map((o) => templated(o, 1, tpl, false));
  // Encoding::merge_with: each overflow of A with B and with each overflow of B, then A with B's overflows.
  const rows = [concat(ta, tb)];
  for (const x of oa) {
    rows.push(concat(x, tb));
    for (const y of ob) rows.push(concat(x, y));
  }
  for (const y of ob) rows.push(concat(ta, y));
  return rows;
}

export function pad(e: Encoding, length: number, padId: number, side: 'right' | 'left' = 'right'): void {
  const n = length - e.ids.length;
  if (n <= 0) return;
  if (side === 'left') {
    const fill = <T>(arr: T[], v: T) => arr.unshift(...new Array<T>(n).fill(v));
    fill(e.ids, padId);
    fill(e.typeIds, 0);
    for (let i = 0; i < n; i++) e.offsets.unshift([0, 0]);
    fill(e.specialTokensMask, 1);
    fill(e.attentionMask, 0);
    fill(e.wordIds, null);
    fill(e.sequenceIds, null);
    return;
  }
  // Plain loops: no temporary arrays or spread calls on the batch hot path.
  for (let i = 0; i < n; i++) {
    e.ids.push(padId);
    e.typeIds.push(0);
    e.offsets.push([0, 0]);
    e.specialTokensMask.push(1);
    e.attentionMask.push(0);
    e.wordIds.push(null);
    e.sequenceIds.push(null);
  }
}
