// The parallel batch path: a pool of worker threads, each with its own copy of the tokenizer, encodes
// slices of a batch; results come back as transferred typed arrays (no per-token structured clone)
// and are padded and packed on the calling thread exactly as the single-threaded call does.
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import type { CallOptions } from './options';
import type { Encoding } from './encoding';

interface Packed {
  lengths: Int32Array;
  ids: Int32Array;
  typeIds: Uint8Array;
  special: Uint8Array;
  offsets: Int32Array;
  words: Int32Array;
  seqIds: Int8Array;
}

export function pack(rows: Encoding[]): Packed {
  const n = rows.reduce((a, r) => a + r.ids.length, 0);
  const p: Packed = {
    lengths: Int32Array.from(rows, (r) => r.ids.length), ids: new Int32Array(n), typeIds: new Uint8Array(n), special: new Uint8Array(n),
    offsets: new Int32Array(2 * n), words: new Int32Array(n), seqIds: new Int8Array(n),
  };
  let k = 0;
  for (const r of rows) {
    for (let i = 0; i < r.ids.length; i++, k++) {
      p.ids[k] = r.ids[i];
      p.typeIds[k] = r.typeIds[i];
      p.special[k] = r.specialTokensMask[i];
      p.offsets[2 * k] = r.offsets[i][0];
      p.offsets[2 * k + 1] = r.offsets[i][1];
      p.words[k] = r.wordIds[i] ?? -1;
      p.seqIds[k] = r.sequenceIds[i] ?? -1;
    }
  }
  return p;
}

export function unpack(p: Packed): Encoding[] {
  const rows: Encoding[] = [];
  let k = 0;
  for (const len of p.lengths) {
    const e: Encoding = { ids: new Array(len), typeIds: new Array(len), offsets: new Array(len), specialTokensMask: new Array(len), attentionMask: new Array(len).fill(1), wordIds: new Array(len), sequenceIds: new Array(len) };
    for (let i = 0; i < len; i++, k++) {
      e.ids[i] = p.ids[k];
      e.typeIds[i] = p.typeIds[k];
      e.specialTokensMask[i] = p.special[k];
      e.offsets[i] = [p.offsets[2 * k], p.offsets[2 * k + 1]];
      e.wordIds[i] = p.words[k] < 0 ? null : p.words[k];
      e.sequenceIds[i] = p.seqIds[k] < 0 ? null : p.seqIds[k];
    }
    rows.push(e);
  }
  return rows;
}

type Task = { resolve: (r: { rows: Encoding[]; sampleMap: number[] }) => void; reject: (e: Error) => void };

/** A pool of tokenizer threads. Call close() when done (idle workers do not keep the process alive). */
export class TokenizerPool {
  #workers: Worker[] = [];
  #tasks = new Map<number, Task>();
  #next = 0;
  #rr = 0;

  /** `tokenizer`: a BertTokenizer (what its serialize() gives is rebuilt in each worker). */
  constructor(tokenizer: { serialize(): object }, threads = Math.max(1, os.availableParallelism?.() ?? os.cpus().length)) {
    const init = tokenizer.serialize();
    const ext = path.extname(__filename);
    const file = path.join(__dirname, `parallel-worker${ext}`);
    for (let i = 0; i < threads; i++) {
      const w = new Worker(file, { workerData: init, execArgv: ext === '.ts' ? ['-r', 'ts-node/register/transpile-only'] : [] });
      w.on('message', (m: { id: number; error?: string; packed?: Packed; sampleMap?: number[] }) => {
        const t = this.#tasks.get(m.id);
        if (!t) return;
        this.#tasks.delete(m.id);
        if (m.error) t.reject(new Error(m.error));
        else t.resolve({ rows: unpack(m.packed!), sampleMap: m.sampleMap! });
      });
      w.on('error', (e) => {
        for (const t of this.#tasks.values()) t.reject(e);
        this.#tasks.clear();
      });
      w.unref();
      this.#workers.push(w);
    }
  }

  get threads(): number {
    return this.#workers.length;
  }

  /** Encodes a slice in a worker (no padding or tensors: those happen on the caller). */
  encodeRows(texts: string[], pairs: (string | null)[] | null, opts: CallOptions): Promise<{ rows: Encoding[]; sampleMap: number[] }> {
    const id = this.#next++;
    const w = this.#workers[this.#rr++ % this.#workers.length];
    return new Promise((resolve, reject) => {
      this.#tasks.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ id, texts, pairs, opts });
    }).finally(() => {
      if (![...this.#tasks.keys()].length) for (const x of this.#workers) x.unref();
    }) as Promise<{ rows: Encoding[]; sampleMap: number[] }>;
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#workers = [];
  }
}

