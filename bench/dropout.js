#!/usr/bin/env node
// Dropout in a bert-base training step (batch 16 x 128 tokens, p 0.1): torchbert::dropout (parallel
// counter-based mask, bool mask for backward) against aten::dropout (what PyTorch and HF run: a serial
// bernoulli_ into a float noise tensor) on the step's two shapes, forward and backward, in the same
// process. A step has 12 calls on attention probabilities [16, 12, 128, 128] and 25 on hidden states
// [16, 128, 768] (embeddings and two per layer; the pooled output's one is too small to matter).
// Usage: node bench/dropout.js [--reps 9]
'use strict';
const tb = require('../dist');
const { op } = require('../dist/tensor');
const { arg, median, now } = require('./common');

const REPS = Number(arg('--reps', '9'));
const ours = op('torchbert::dropout');
const aten = op('aten::dropout');

async function time(o, shape) {
  const x = tb.randn(shape).requiresGrad_(true);
  const g = tb.randn(shape);
  const fwd = [];
  const bwd = [];
  for (let i = 0; i <= REPS; i++) {
    const t0 = now();
    const y = o.t(x._handle, 0.1, true);
    const t1 = now();
    await y.backward(g);
    const t2 = now();
    if (i > 0) {
      fwd.push(t1 - t0);
      bwd.push(t2 - t1);
    }
    y.dispose();
    x.grad?.dispose();
  }
  x.dispose();
  g.dispose();
  return { forward: median(fwd), backward: median(bwd) };
}

(async () => {
  const shapes = [['attention probs', [16, 12, 128, 128], 12], ['hidden states', [16, 128, 768], 25]];
  const rows = [];
  const step = { torchbert: 0, aten: 0 };
  for (const [name, shape, calls] of shapes) {
    const a = await time(aten, shape);
    const t = await time(ours, shape);
    step.aten += calls * (a.forward + a.backward);
    step.torchbert += calls * (t.forward + t.backward);
    rows.push({ name, shape: shape.join('x'), calls, atenForwardMs: a.forward, oursForwardMs: t.forward, atenBackwardMs: a.backward, oursBackwardMs: t.backward });
  }
  for (const r of rows) {
    console.log(`${r.name} [${r.shape}]: forward aten ${r.atenForwardMs.toFixed(2)} ms, torchbert ${r.oursForwardMs.toFixed(2)} ms; ` +
      `backward aten ${r.atenBackwardMs.toFixed(2)} ms, torchbert ${r.oursBackwardMs.toFixed(2)} ms`);
  }
  console.log(`per training step (${shapes.map((s) => s[2]).join(' + ')} calls): aten ${step.aten.toFixed(0)} ms, torchbert ${step.torchbert.toFixed(0)} ms (${tb.getNumThreads()} threads)`);
  console.log(JSON.stringify({ threads: tb.getNumThreads(), rows, stepMs: step }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
