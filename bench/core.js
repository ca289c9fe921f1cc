#!/usr/bin/env node
// Core benchmarks (issue: the core): per-call overhead of a small op from TS against the same call in
// Python torch, and 100 MB TypedArray <-> tensor copies. Peers run in the same invocation, alternating
// rounds; medians are reported. Usage: node bench/core.js [--json out.json]
'use strict';
const tb = require('../dist');

const ROUNDS = 5;
const N = 200000;
const { median, pythonJson } = require('./common');

function tsAdd() {
  const a = tb.randn([16]);
  const b = tb.randn([16]);
  for (let i = 0; i < 20000; i++) a.add(b).dispose();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) a.add(b).dispose();
  return Number(process.hrtime.bigint() - t0) / N;
}

function pyAdd() {
  const code = `
import time, torch
a = torch.randn(16); b = torch.randn(16)
for _ in range(20000): a.add(b)
t = time.perf_counter_ns()
for _ in range(${N}): a.add(b)
print((time.perf_counter_ns() - t) / ${N})`;
  return pythonJson(code);
}

function copies() {
  const n = 25 * 1024 * 1024; // 100 MiB of float32
  const src = new Float32Array(n).map((_, i) => i % 1000);
  const bytes = n * 4;
  const res = { toTensor: [], toTypedArray: [], toTypedArrayAsync: [] };
  return (async () => {
    for (let r = 0; r < ROUNDS; r++) {
      let t0 = process.hrtime.bigint();
      const t = tb.tensor(src);
      res.toTensor.push(bytes / Number(process.hrtime.bigint() - t0));
      t0 = process.hrtime.bigint();
      const back = t.dataSync();
      res.toTypedArray.push(bytes / Number(process.hrtime.bigint() - t0));
      if (back[999] !== 999) throw new Error('bad copy');
      t0 = process.hrtime.bigint();
      await t.data();
      res.toTypedArrayAsync.push(bytes / Number(process.hrtime.bigint() - t0));
      t.dispose();
    }
    return Object.fromEntries(Object.entries(res).map(([k, v]) => [k, median(v)])); // bytes/ns == GB/s
  })();
}

(async () => {
  const ts = [];
  const py = [];
  for (let r = 0; r < ROUNDS; r++) {
    ts.push(tsAdd());
    py.push(pyAdd());
  }
  const out = {
    machine: `${require('os').cpus()[0].model}, ${require('os').cpus().length} cores`,
    threads: tb.getNumThreads(),
    addOverheadNs: { torchbert: median(ts), pythonTorch: median(py), ratio: median(ts) / median(py) },
    copyGBs: await copies(),
  };
  console.log(JSON.stringify(out, null, 2));
  const i = process.argv.indexOf('--json');
  if (i > 0) require('fs').writeFileSync(process.argv[i + 1], JSON.stringify(out, null, 2));
})();
