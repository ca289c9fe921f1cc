#!/usr/bin/env node
// The compute thread (native/compute.cc) against libuv's pool (TORCHBERT_COMPUTE_THREAD=0, how async jobs
// ran before): forwards of the plain, prepacked and int8 bert-base-shape model at batch 1 x 24 tokens and
// batch 8 x 128, each mode in its own process, the two alternating for --rounds rounds (this VM's speed
// drifts); medians of the rounds and the speedup of the compute thread. Also times PyTorch alone with one
// and two OpenMP teams (bench/omp_teams.py), the effect behind it.
// Usage: python3 scripts/fixtures.py serve_base && node bench/compute-thread.js [--rounds 4] [--no-python]
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');
const { arg, cpuLine } = require('./common');

const MODEL = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'serve-base');
const ROUNDS = Number(arg('--rounds', '4'));

if (process.env.TB_COMPUTE_BENCH_CHILD) {
  const tb = require('../dist');
  const { fromPretrained } = require('../dist/models');
  (async () => {
    const model = await fromPretrained(MODEL);
    model.eval();
    const pre = await model.prepackAsync();
    const q8 = model.quantizeDynamic();
    const res = {};
    for (const [B, T] of [[1, 24], [8, 128]]) {
      const ids = tb.randint(1000, 20000, [B, T]);
      const mask = tb.ones([B, T], { dtype: 'int64' });
      for (const [name, m] of [['plain', model], ['prepacked', pre], ['int8', q8]]) {
        await tb.noGrad(async () => {
          for (let i = 0; i < 2; i++) (await m.forward({ inputIds: ids, attentionMask: mask })).lastHiddenState?.dispose();
          const n = B === 1 ? 15 : 4;
          const ts = [];
          for (let i = 0; i < n; i++) {
            const t0 = process.hrtime.bigint();
            await m.forward({ inputIds: ids, attentionMask: mask });
            ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
          }
          ts.sort((a, b) => a - b);
          res[`${name} ${B}x${T}`] = ts[Math.floor(n / 2)];
        });
      }
    }
    process.stdout.write(JSON.stringify(res) + '\n');
  })();
  return;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = { computeThread: [], pool: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const [mode, v] of [['computeThread', '1'], ['pool', '0']]) {
    const p = spawnSync(process.execPath, [__filename], { env: { ...process.env, TB_COMPUTE_BENCH_CHILD: '1', TORCHBERT_COMPUTE_THREAD: v }, encoding: 'utf8' });
    if (p.status !== 0) throw new Error(p.stderr);
    runs[mode].push(JSON.parse(p.stdout.trim().split('\n').pop()));
  }
}
const rows = Object.keys(runs.pool[0]).map((k) => {
  const [c, p] = [median(runs.computeThread.map((x) => x[k])), median(runs.pool.map((x) => x[k]))];
  return { forward: k, computeThreadMs: +c.toFixed(1), poolMs: +p.toFixed(1), speedup: +(p / c).toFixed(2) };
});
console.log(cpuLine(require('../dist')));
console.log(`medians of ${ROUNDS} rounds, each mode in its own process`);
console.table(rows);
if (!process.argv.includes('--no-python')) {
  const py = spawnSync(process.env.PYTHON || 'python3', [path.join(__dirname, 'omp_teams.py'), MODEL], { encoding: 'utf8' });
  if (py.status !== 0) throw new Error(py.stderr);
  console.log('PyTorch alone, one OpenMP team against two (bench/omp_teams.py):');
  console.log(py.stdout.trim());
}
