#!/usr/bin/env node
// What oneDNN's and ideep's caches of compiled primitives hold, and what compiling again costs: the prepacked
// bert-base copy (one weight layout, as `serve --low-memory`) called with one sentence of each length from 6 to
// 69 tokens (64 new shapes), then the same 64 lengths again, in a fresh process per capacity
// (tb.setPrimitiveCacheCapacity before the model loads). Reported: resident memory grown over the first pass,
// and the time of the second, which compiles every shape again when fewer than 64 are kept and finds every one
// cached when 64 are. Processes alternate, capacity by capacity, for --rounds rounds.
// Usage: python3 scripts/fixtures.py serve_base && node bench/primitive-cache.js [--capacities 8,64] [--rounds 2]
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');
const { arg, cpuLine } = require('./common');

const ROOT = path.join(__dirname, '..');
const DIR = path.join(ROOT, 'test', 'fixtures', 'gen', 'serve-base');
const CAPACITIES = arg('--capacities', '8,64').split(',').map(Number);
const ROUNDS = Number(arg('--rounds', '2'));

const child = (capacity) => `
const fs = require('fs');
const tb = require(${JSON.stringify(path.join(ROOT, 'dist'))});
const rssMb = () => Number(/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
(async () => {
  tb.setPrimitiveCacheCapacity(${capacity});
  const m = await tb.models.fromPretrained(${JSON.stringify(DIR)}, { kind: 'BertForSequenceClassification', prepack: { layouts: 'one' } });
  const run = (t) => tb.noGrad(() => m.forward({ inputIds: tb.ones([1, t], { dtype: 'int64' }) }));
  for (let t = 2; t < 6; t++) await run(t);
  const before = rssMb();
  for (let t = 6; t < 70; t++) await run(t);
  const growthMb = rssMb() - before;
  const t0 = performance.now();
  for (let t = 6; t < 70; t++) await run(t);
  console.log(JSON.stringify({ capacity: ${capacity}, growthMb, secondPassMs: performance.now() - t0 }));
})().catch((e) => { console.error(e); process.exit(1); });`;

console.log(cpuLine(require('../dist')));
const results = [];
for (let r = 0; r < ROUNDS; r++) {
  for (const c of CAPACITIES) {
    const p = spawnSync(process.execPath, ['-e', child(c)], { encoding: 'utf8' });
    if (p.status !== 0) throw new Error(`capacity ${c} failed: ${p.stderr.slice(-2000)}`);
    const res = JSON.parse(p.stdout.trim().split('\n').pop());
    results.push(res);
    console.log(`round ${r + 1}, ${c} kept per cache: resident memory +${res.growthMb.toFixed(1)} MB over 64 new shapes; the same 64 again ${res.secondPassMs.toFixed(0)} ms`);
  }
}
console.log(JSON.stringify({ cpu: cpuLine(require('../dist')), results }));
