#!/usr/bin/env node
// Processes sharing a machine: P processes (default 2, as jest's test workers or `serve --workers 2`) each
// run the same small training job at once (ELECTRA pre-training of a 1-layer, hidden-32 BERT on WikiText-2,
// the test suite's job), with OpenMP teams as wide as the machine (libtorch's default) and with each
// process given cores / P threads (what `serve --workers`, `launch` and scripts/test.sh do); one process
// alone with every core for reference. Wall seconds per case, the cases alternating for --rounds rounds
// (this VM's speed drifts); medians and the slowdown of full-width teams against shared-out cores.
// Usage: node bench/processes.js [--processes 2] [--steps 200] [--rounds 2]
'use strict';
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { DATA, arg, median, cpuLine } = require('./common');

const P = Number(arg('--processes', '2'));
const STEPS = Number(arg('--steps', '200'));
const ROUNDS = Number(arg('--rounds', '2'));

if (process.env.TB_PROCESSES_CHILD) {
  const fs = require('fs');
  const { pretrain } = require('../dist/recipes/pretrain');
  const corpus = fs.readFileSync(path.join(DATA, 'wikitext-2', 'valid.txt'), 'utf8').split('\n').filter((l) => l.trim().length > 20 && !l.trim().startsWith('=')).slice(0, 400);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-processes-'));
  const t0 = process.hrtime.bigint();
  pretrain({ corpus, out, vocabSize: 600, hidden: 32, layers: 1, steps: STEPS, seconds: 3600, seqLen: 32, objective: 'electra', seed: 5, log: () => {} })
    .then(() => {
      fs.rmSync(out, { recursive: true, force: true });
      console.log(JSON.stringify({ seconds: Number(process.hrtime.bigint() - t0) / 1e9 }));
    })
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
  return;
}

function child(threads) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [__filename, '--steps', String(STEPS)], { env: { ...process.env, TB_PROCESSES_CHILD: '1', OMP_NUM_THREADS: String(threads) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()).seconds) : reject(new Error(`child exited ${code}`))));
  });
}

(async () => {
  const cores = os.availableParallelism();
  const share = Math.max(1, Math.floor(cores / P));
  const cases = { [`1 process x ${cores} threads`]: [cores], [`${P} processes x ${cores} threads`]: Array(P).fill(cores), [`${P} processes x ${share} threads`]: Array(P).fill(share) };
  const times = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, threads] of Object.entries(cases)) {
      const secs = await Promise.all(threads.map(child));
      (times[name] ??= []).push(Math.max(...secs)); // the case ends when its slowest process does
    }
  }
  const tb = require('../dist');
  tb.setNumThreads(cores);
  console.log(`${cpuLine(tb)}; ELECTRA pre-training, ${STEPS} steps per process, ${ROUNDS} rounds`);
  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  for (const [k, v] of Object.entries(med)) console.log(`  ${k}: ${v.toFixed(1)} s (rounds: ${times[k].map((t) => t.toFixed(1)).join(', ')})`);
  const full = med[`${P} processes x ${cores} threads`];
  const shared = med[`${P} processes x ${share} threads`];
  console.log(`  full-width teams against cores shared out: ${(full / shared).toFixed(2)}x the wall time`);
  console.log(JSON.stringify({ cores, processes: P, steps: STEPS, seconds: med }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
