#!/usr/bin/env node
// Model load time: fromPretrained of a bert-base-shape BertForSequenceClassification checkpoint
// (config.json + model.safetensors, 110M parameters) against transformers' from_pretrained of the same
// folder, in the same run (Python's import time excluded). First load in the process and the median of
// the next ones; what a server or a CLI command pays at start.
// Usage: python3 scripts/fixtures.py serve_base && node bench/load.js [--reps 3]
'use strict';
const path = require('path');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');
const { arg, median, now, pythonJson } = require('./common');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'serve-base');
const REPS = Number(arg('--reps', '3'));

function python() {
  const code = `
import json, time, torch, transformers
transformers.logging.set_verbosity_error()
torch.set_num_threads(${tb.getNumThreads()})
ts = []
for _ in range(${REPS + 1}):
    t0 = time.perf_counter()
    m = transformers.BertForSequenceClassification.from_pretrained(${JSON.stringify(DIR)})
    ts.append((time.perf_counter() - t0) * 1000)
    del m
print(json.dumps(ts))`;
  return pythonJson(code, { env: { HF_HUB_OFFLINE: '1', TQDM_DISABLE: '1' } });
}

(async () => {
  const ours = [];
  for (let i = 0; i <= REPS; i++) {
    const t0 = now();
    const m = await fromPretrained(DIR, { kind: 'BertForSequenceClassification' });
    ours.push(now() - t0);
    m.module.dispose();
  }
  const hf = python();
  const row = { torchbertFirstMs: ours[0], torchbertMs: median(ours.slice(1)), hfFirstMs: hf[0], hfMs: median(hf.slice(1)) };
  console.log(`load bert-base: torchbert ${row.torchbertFirstMs.toFixed(0)} ms first, ${row.torchbertMs.toFixed(0)} ms after; ` +
    `transformers ${row.hfFirstMs.toFixed(0)} ms first, ${row.hfMs.toFixed(0)} ms after`);
  console.log(JSON.stringify(row));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
