#!/usr/bin/env node
// Tokenizer benchmark: batch-encode SST-2 train (67k sentences, batches of 32, padding to longest) and
// single-sentence latency, and one long document (SST-2's sentences joined up to 1 MB, its few accented
// letters included) encoded whole with offsets, torchbert against the Rust tokenizer (Python `tokenizers`, single-threaded,
// and the `tokenizers` npm package) and transformers.js, in the same run. Usage: node bench/tokenizer.js
'use strict';
process.env.RAYON_NUM_THREADS = process.env.RAYON_NUM_THREADS || '1';
const path = require('path');
const { BertTokenizer } = require('../dist/tokenizer');
const { readSst2 } = require('../dist/data/datasets');
const { DATA, median, now, pythonJson } = require('./common');

const TOK = path.join(DATA, 'bert-base-uncased');
const lines = readSst2(path.join(DATA, 'sst2', 'train.tsv')).map((e) => e.text);
const ROUNDS = 3;

async function timeit(batchFn, singleFn) {
  const batch = [];
  const single = [];
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = now();
    for (let i = 0; i < lines.length; i += 32) await batchFn(lines.slice(i, i + 32));
    batch.push(now() - t0);
    t0 = now();
    for (let i = 0; i < 5000; i++) await singleFn(lines[i]);
    single.push(((now() - t0) / 5000) * 1000);
  }
  return { batchMs: median(batch), sentencesPerSec: lines.length / (median(batch) / 1000), singleUs: median(single) };
}

// the long document: whole sentences up to 1,000,000 characters
const DOC = lines.join(' ').slice(0, 1_000_000).replace(/ [^ ]*$/, '');
async function timeDoc(fn) {
  const t = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = now();
    await fn(DOC);
    t.push(now() - t0);
  }
  return median(t);
}

function python() {
  const code = `
import json, time, os
from tokenizers import Tokenizer
t = Tokenizer.from_file(os.path.join(${JSON.stringify(TOK)}, 'tokenizer.json'))
lines = [l.split('\\t')[0] for l in open(${JSON.stringify(path.join(DATA, 'sst2', 'train.tsv'))}, encoding='utf-8').read().split('\\n')[1:] if l]
t.enable_padding()
b, s = [], []
for r in range(${ROUNDS}):
    t0 = time.perf_counter()
    for i in range(0, len(lines), 32): t.encode_batch(lines[i:i+32])
    b.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    for l in lines[:5000]: t.encode(l)
    s.append((time.perf_counter() - t0) / 5000 * 1e6)
b.sort(); s.sort()
t.no_padding()
doc = ' '.join(lines)[:1000000].rsplit(' ', 1)[0]
d = []
for r in range(${ROUNDS}):
    t0 = time.perf_counter()
    t.encode(doc)
    d.append((time.perf_counter() - t0) * 1000)
d.sort()
print(json.dumps({'batchMs': b[len(b)//2], 'sentencesPerSec': len(lines) / (b[len(b)//2] / 1000), 'singleUs': s[len(s)//2], 'documentMs': d[len(d)//2]}))`;
  return pythonJson(code, { env: { RAYON_NUM_THREADS: '1', TOKENIZERS_PARALLELISM: 'false' } });
}

(async () => {
  const results = {};
  const ours = await BertTokenizer.fromPretrained(TOK);
  results.torchbert = await timeit(async (b) => ours.call(b, undefined, { padding: true }), async (s) => ours.call(s));
  results.torchbert.documentMs = await timeDoc(async (d) => ours.call(d, undefined, { returnOffsetsMapping: true }));
  // The parallel batch path: the same batches of 32 (each padded to its longest), encoded by a pool of
  // worker threads, 64 batches in flight at a time.
  const pool = ours.createPool();
  const batches = [];
  for (let i = 0; i < lines.length; i += 32) batches.push(lines.slice(i, i + 32));
  const par = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = now();
    for (let i = 0; i < batches.length; i += 64) await Promise.all(batches.slice(i, i + 64).map((b) => ours.callParallel(b, undefined, { padding: true }, pool)));
    par.push(now() - t0);
  }
  await pool.close();
  results[`torchbert parallel (${pool.threads || require('os').cpus().length} threads)`] = { batchMs: median(par), sentencesPerSec: lines.length / (median(par) / 1000) };
  results['tokenizers (Python, Rust, 1 thread)'] = python();
  try {
    const { Tokenizer } = require('tokenizers');
    const rust = Tokenizer.fromFile(path.join(TOK, 'tokenizer.json'));
    rust.setPadding({});
    results['tokenizers (npm, Rust)'] = await timeit((b) => rust.encodeBatch(b), (s) => rust.encode(s));
    rust.disablePadding();
    results['tokenizers (npm, Rust)'].documentMs = await timeDoc((d) => rust.encode(d));
  } catch (e) {
    results['tokenizers (npm, Rust)'] = { error: e.message };
  }
  try {
    const { BertTokenizer: JsBert } = await import('@huggingface/transformers');
    const fs = require('fs');
    const js = new JsBert(JSON.parse(fs.readFileSync(path.join(TOK, 'tokenizer.json'), 'utf8')), { do_lower_case: true, model_max_length: 512 });
    results['transformers.js'] = await timeit(async (b) => js(b, { padding: true, return_tensor: false }), async (s) => js(s, { return_tensor: false }));
    results['transformers.js'].documentMs = await timeDoc(async (d) => js(d, { return_tensor: false }));
  } catch (e) {
    results['transformers.js'] = { error: e.message };
  }
  const base = results.torchbert;
  for (const [k, v] of Object.entries(results)) {
    if (v.batchMs) v.batchSpeedupOfTorchbert = v.batchMs / base.batchMs;
    if (v.singleUs) v.singleSpeedupOfTorchbert = v.singleUs / base.singleUs;
    if (v.documentMs) v.documentSpeedupOfTorchbert = v.documentMs / base.documentMs;
  }
  console.log(JSON.stringify({ sentences: lines.length, documentChars: DOC.length, rounds: ROUNDS, results }, null, 2));
})();
