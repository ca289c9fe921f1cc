#!/usr/bin/env node
// The GEMMs of a bert-base training step (batch 16 x 128 tokens = 2048 rows) on each backend
// torchbert::linear chooses between: libtorch's BLAS (aten::linear, aten::matmul) and oneDNN
// (mkldnn::_linear_pointwise), forward and grad-input, plus the 2048^2 matmul probe. Which one wins
// changes with this VM's phase; run it next to bench/train.js to see which phase a run was in.
// Usage: node bench/gemm.js [--reps 7]
'use strict';
const tb = require('../dist');
const { op } = require('../dist/tensor');
const { arg, median, now, matmulPeak } = require('./common');

const REPS = Number(arg('--reps', '7'));
const onednn = op('mkldnn::_linear_pointwise');
const linear = op('aten::linear');
const time = (f) => {
  f().dispose();
  const ts = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = now();
    f().dispose();
    ts.push(now() - t0);
  }
  return median(ts);
};

const M = 2048;
const rows = [];
tb.noGrad(() => {
  for (const [K, N] of [[768, 768], [768, 3072], [3072, 768]]) {
    const x = tb.randn([M, K]);
    const w = tb.randn([N, K]);
    const b = tb.randn([N]);
    const gy = tb.randn([M, N]);
    const gflop = (2 * M * K * N) / 1e9;
    const rate = (ms) => Math.round(gflop / (ms / 1000));
    rows.push({
      shape: `${M}x${K} -> ${N}`,
      forwardAten: rate(time(() => linear.t(x._handle, w._handle, b._handle))),
      forwardOneDnn: rate(time(() => onednn.t(x._handle, w._handle, b._handle, 'none', [], ''))),
      gradInputAten: rate(time(() => gy.matmul(w))),
      gradInputOneDnn: rate(time(() => {
        const wt = w.t().contiguous();
        const r = onednn.t(gy._handle, wt._handle, null, 'none', [], '');
        wt.dispose();
        return r;
      })),
    });
  }
});
console.log(`GFLOP/s, median of ${REPS}; 2048^2 matmul probe ${matmulPeak(tb).toFixed(0)} GFLOP/s, ${tb.getNumThreads()} threads`);
console.table(rows);
