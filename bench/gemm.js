#!/usr/bin/env node
// The GEMMs of a bert-base training step (batch 16 x 128 tokens = 2048 rows) on each backend
// torchbert::linear chooses between: libtorch's BLAS (aten::linear, aten::matmul) and oneDNN
// (mkldnn::_linear_pointwise), forward and grad-input, plus the 2048^2 matmul probe. Which one wins
// changes with this VM's phase; run it next to bench/train.js to see which phase a run was in.
// Then inference: the dense layers of a bert-base forward with weights packed once, oneDNN's prepacked
// GEMM (mkldnn::_reorder_linear_weight + _linear_pointwise, what prepack() ran before) against
// torchbert::linear_packed (native/kernels.cc), at the row counts of one short request (24), a few (96),
// a batch of 16 short ones (400) and 16 of 128 tokens (2048); each product cycles through 12 layers' weights so they come from memory, as in
// a forward, and the two take turns per shape.
// Every product runs async, on the compute thread with the intra-op threads (sync ops on the main thread
// run on one).
// With training, torchbert::linear's forward + backward (its three GEMMs) per shape of the bert-base step
// and of the main job's small BERT, in two child processes pinned to one backend each
// (TORCHBERT_ONEDNN_LINEAR=0: libtorch's BLAS; =1: oneDNN, the gradients on its matmul where
// tb.info().onednnGradMatmul), so the ratio is what the tuner chooses between.
// Usage: node bench/gemm.js [--reps 7] [--only training|inference] [--rows 1,24,96,400,2048]
'use strict';
const { spawnSync } = require('child_process');
const tb = require('../dist');
const { op } = require('../dist/tensor');
const { arg, median, now, matmulPeak } = require('./common');

const REPS = Number(arg('--reps', '7'));
const onednn = op('mkldnn::_linear_pointwise');
const linear = op('aten::linear');
const mm = op('aten::mm');
const time = async (f) => {
  (await f()).dispose();
  const ts = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = now();
    (await f()).dispose();
    ts.push(now() - t0);
  }
  return median(ts);
};

// rows x in -> out: the bert-base step's three (16 x 128 rows) and the main job's (64 x 14 rows; the masked-LM
// decoder on its ~15% masked rows)
const LINEAR_SHAPES = [[2048, 768, 768], [2048, 768, 3072], [2048, 3072, 768], [896, 128, 512], [896, 512, 128], [134, 128, 8000]];

/** In a child: ms per forward + backward of torchbert::linear per shape, median of REPS after a warm-up. */
async function linearChild() {
  const lin = op('torchbert::linear');
  const out = [];
  for (const [M, K, N] of LINEAR_SHAPES) {
    const x = tb.randn([M, K]).requiresGrad_(true);
    const w = tb.randn([N, K]).mul_(0.02).requiresGrad_(true);
    const b = tb.zeros([N]).requiresGrad_(true);
    const gy = tb.randn([M, N]);
    const ms = await time(async () => {
      const y = await lin.tAsync(x, w, b);
      await y.backward(gy);
      for (const t of [x, w, b]) {
        const g = t.grad;
        t.grad = null;
        g.dispose();
      }
      return y;
    });
    out.push(ms);
  }
  console.log(JSON.stringify({ onednnGradMatmul: tb.info().onednnGradMatmul, ms: out }));
}

(async () => {
if (process.argv.includes('--linear-child')) return linearChild();

const ONLY = arg('--only', null);
const M = 2048;
const rows = [];
if (ONLY !== 'inference') await tb.noGrad(async () => {
  for (const [K, N] of [[768, 768], [768, 3072], [3072, 768]]) {
    const x = tb.randn([M, K]);
    const w = tb.randn([N, K]);
    const b = tb.randn([N]);
    const gy = tb.randn([M, N]);
    const gflop = (2 * M * K * N) / 1e9;
    const rate = (ms) => Math.round(gflop / (ms / 1000));
    rows.push({
      shape: `${M}x${K} -> ${N}`,
      forwardAten: rate(await time(() => linear.tAsync(x, w, b))),
      forwardOneDnn: rate(await time(() => onednn.tAsync(x, w, b, 'none', [], ''))),
      gradInputAten: rate(await time(() => mm.tAsync(gy, w))),
      gradInputOneDnn: rate(await time(async () => {
        const wt = await op('aten::contiguous').tAsync(w.t());
        const r = await onednn.tAsync(gy, wt, null, 'none', [], '');
        wt.dispose();
        return r;
      })),
    });
  }
});
console.log(`GFLOP/s, median of ${REPS}; 2048^2 matmul probe ${(await matmulPeak(tb)).toFixed(0)} GFLOP/s, ${tb.getNumThreads()} threads`);
if (rows.length) console.table(rows);

if (ONLY !== 'inference') {
  const child = (mode) => {
    const r = spawnSync(process.execPath, [__filename, '--linear-child', '--reps', String(REPS)], { encoding: 'utf8', env: { ...process.env, TORCHBERT_ONEDNN_LINEAR: mode } });
    if (r.status !== 0) throw new Error(`linear child (TORCHBERT_ONEDNN_LINEAR=${mode}) failed: ${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  const [blas, dnn] = [child('0'), child('1')];
  console.log(`torchbert::linear forward + backward, ms (median of ${REPS}); oneDNN's gradients on its matmul: ${dnn.onednnGradMatmul}`);
  console.table(LINEAR_SHAPES.map(([M, K, N], i) => ({ shape: `${M}x${K} -> ${N}`, blasMs: +blas.ms[i].toFixed(3), onednnMs: +dnn.ms[i].toFixed(3), onednnSpeedup: +(blas.ms[i] / dnn.ms[i]).toFixed(2) })));
}

if (ONLY !== 'training') {
  const reorder = op('mkldnn::_reorder_linear_weight');
  const pack = op('torchbert::pack_linear_weight');
  const packed = op('torchbert::linear_packed');
  const LAYERS = 12;
  const inf = [];
  await tb.noGrad(async () => {
    for (const rowsM of arg('--rows', '1,24,96,400,2048').split(',').map(Number)) {
      const total = { onednn: 0, torchbert: 0 };
      for (const [K, N, act] of [[768, 2304, 'none'], [768, 768, 'none'], [768, 3072, 'gelu'], [3072, 768, 'none']]) {
        const ws = Array.from({ length: LAYERS }, () => tb.randn([N, K]).mul_(0.02));
        const b = tb.randn([N]);
        const x = tb.randn([rowsM, K]);
        const dnn = await Promise.all(ws.map((w) => reorder.tAsync(w, rowsM)));
        const ours = await Promise.all(ws.map((w) => pack.tAsync(w)));
        const calls = {
          onednn: (i) => onednn.tAsync(x, dnn[i], b, act, [], act === 'gelu' ? 'none' : ''),
          torchbert: (i) => packed.tAsync(x, ours[i], b, N, act),
        };
        const ts = { onednn: [], torchbert: [] };
        for (let r = 0; r <= REPS; r++) {
          for (const k of ['onednn', 'torchbert']) {
            const t0 = now();
            for (let i = 0; i < LAYERS; i++) (await calls[k](i)).dispose();
            if (r > 0) ts[k].push((now() - t0) / LAYERS); // the first round warms up
          }
        }
        const gflop = (2 * rowsM * K * N) / 1e9;
        const ms = { onednn: median(ts.onednn), torchbert: median(ts.torchbert) };
        total.onednn += ms.onednn;
        total.torchbert += ms.torchbert;
        inf.push({
          shape: `${rowsM}x${K} -> ${N}${act === 'gelu' ? ' +gelu' : ''}`, onednnMs: +ms.onednn.toFixed(3), torchbertMs: +ms.torchbert.toFixed(3),
          onednnGflops: Math.round(gflop / (ms.onednn / 1000)), torchbertGflops: Math.round(gflop / (ms.torchbert / 1000)),
          speedup: +(ms.onednn / ms.torchbert).toFixed(2),
        });
        for (const t of [...ws, ...dnn, ...ours, b, x]) t.dispose();
      }
      inf.push({ shape: `${rowsM} rows: one layer's four`, onednnMs: +total.onednn.toFixed(2), torchbertMs: +total.torchbert.toFixed(2), speedup: +(total.onednn / total.torchbert).toFixed(2) });
    }
  });
  console.log(`Inference, prepacked weights: ms per product (median of ${REPS}), weights from memory`);
  console.table(inf);
}
})();
