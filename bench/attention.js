#!/usr/bin/env node
// The two implementations torchbert::attention chooses between (native/attention.cc): ATen's fused
// kernel (scaled_dot_product_attention; flash attention on the CPU) and the steps spelled out (two
// batched GEMMs around an in-place softmax), at the shapes of bert-base inference: 12 heads of 64
// channels, batch 1, 8 and 32, 24, 128 and 512 tokens, with a padding mask, in fp32 and (on CPUs with
// bf16 units) bf16. Each implementation runs in its own process (TORCHBERT_ATTENTION=sdpa|math), the two
// alternating for --rounds rounds; ms per call are medians of the rounds.
// Usage: node bench/attention.js [--rounds 3]
'use strict';
const { spawnSync } = require('child_process');
const { arg, median, now, cpuLine } = require('./common');

const ROUNDS = Number(arg('--rounds', '3'));
const SHAPES = [[1, 24], [8, 24], [32, 24], [1, 128], [8, 128], [32, 128], [1, 512], [8, 512]];

if (process.env.TB_ATTENTION_BENCH_CHILD) {
  const tb = require('../dist');
  const { op } = require('../dist/tensor');
  const attention = op('torchbert::attention');
  (async () => {
    const dtypes = ['float32', ...(tb.cpuInfo().bf16 ? ['bfloat16'] : [])];
    const res = {};
    await tb.noGrad(async () => {
      for (const dtype of dtypes) {
        for (const [B, T] of SHAPES) {
          const [q, k, v] = [0, 1, 2].map(() => tb.randn([B, 12, T, 64]).to({ dtype }));
          // The additive mask BERT builds: zeros, and the last eighth of each sequence padded.
          const mask = tb.zeros([B, 1, 1, T]).to({ dtype });
          mask.narrow(-1, T - Math.max(1, T >> 3), Math.max(1, T >> 3)).fill_(-1e4);
          const reps = Math.max(3, Math.min(50, Math.round(2e8 / (B * 12 * T * T * 64))));
          for (let i = 0; i < 2; i++) (await attention.tAsync(q, k, v, mask)).dispose();
          const ts = [];
          for (let i = 0; i < reps; i++) {
            const t0 = now();
            (await attention.tAsync(q, k, v, mask)).dispose();
            ts.push(now() - t0);
          }
          res[`${dtype} ${B}x${T}`] = median(ts);
        }
      }
    });
    process.stdout.write(JSON.stringify(res) + '\n');
  })();
  return;
}

const runs = { sdpa: [], math: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const mode of ['sdpa', 'math']) {
    const p = spawnSync(process.execPath, [__filename], { env: { ...process.env, TB_ATTENTION_BENCH_CHILD: '1', TORCHBERT_ATTENTION: mode }, encoding: 'utf8' });
    if (p.status !== 0) throw new Error(p.stderr);
    runs[mode].push(JSON.parse(p.stdout.trim().split('\n').pop()));
  }
}
console.log(cpuLine(require('../dist')));
console.log(`ms per call (12 heads x 64 channels), medians of ${ROUNDS} rounds, each implementation in its own process`);
console.table(Object.keys(runs.sdpa[0]).map((k) => {
  const [s, m] = [median(runs.sdpa.map((x) => x[k])), median(runs.math.map((x) => x[k]))];
  return { shape: k, sdpaMs: +s.toFixed(3), mathMs: +m.toFixed(3), faster: s <= m ? 'sdpa' : 'math', ratio: +(Math.max(s, m) / Math.min(s, m)).toFixed(2) };
}));
