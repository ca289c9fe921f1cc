#!/usr/bin/env node
// What the caching CPU allocator saves: five training forwards (dropout on, autograd recording) of a
// bert-base-shape classifier, batch 16 x 128 tokens, run like every torchbert call on a worker thread;
// minor page faults (pages the kernel had to find and zero) and time per forward. Compare:
//   node bench/alloc.js;  TORCHBERT_CPU_CACHE=0 node bench/alloc.js
// Needs: python3 scripts/fixtures.py serve_base
'use strict';
const path = require('path');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');
const { arg, median, now } = require('./common');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'serve-base');
const N = Number(arg('--forwards', '5'));

(async () => {
  const m = await fromPretrained(DIR, { kind: 'BertForSequenceClassification' });
  m.train();
  const ids = tb.randint(1000, 30000, [16, 128]);
  const mask = tb.ones([16, 128], { dtype: 'int64' });
  const y = tb.randint(0, 2, [16]);
  const forward = async () => {
    const scope = new tb.DisposeScope();
    await scope.run(() => m.forward({ inputIds: ids, attentionMask: mask, labels: y }));
    scope.dispose();
  };
  await forward(); // warm-up: the first call compiles and first touches everything
  const faults0 = process.resourceUsage().minorPageFault;
  const ts = [];
  for (let i = 0; i < N; i++) {
    const t0 = now();
    await forward();
    ts.push(now() - t0);
  }
  const faults = process.resourceUsage().minorPageFault - faults0;
  const cache = process.env.TORCHBERT_CPU_CACHE !== '0';
  console.log(JSON.stringify({ cache, forwards: N, minorPageFaultsPerForward: Math.round(faults / N), msPerForward: Math.round(median(ts)), cpuCache: tb.cpuCache.stats() }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
