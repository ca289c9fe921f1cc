#!/usr/bin/env node
// Training-step benchmark: forward, backward, clip (1.0) and AdamW on a bert-base-shape
// BertForSequenceClassification, sequence length 128, batch 16, fp32 on the CPU, dropout on:
// torchbert (TorchScript module, linear layers on the faster of MKL and oneDNN per shape, caching CPU
// allocator, ATen's fused AdamW)
// against the same loop in HF transformers / PyTorch (torch.optim.AdamW), same torch build and thread
// count. Both models live side by side and take turns step by step (the Python peer waits on a pipe),
// so drift in this shared VM's speed hits both alike; the ratio is the median of the per-pair ratios.
// With --bf16 (CPUs with bf16 units) both sides run forward and loss under bfloat16 autocast.
// Usage: python3 scripts/fixtures.py serve_base && node bench/train.js [--steps 5] [--bf16]
//   [--peer-preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2]   (HF with another malloc)
// Ablations: TORCHBERT_CPU_CACHE=0 (glibc malloc), TORCHBERT_ONEDNN_LINEAR=0 (always ATen's GEMM) or =1
// (always oneDNN).
'use strict';
const path = require('path');
const readline = require('readline');
const { spawn } = require('child_process');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');
const { AdamW, clipGradNorm, weightDecayGroups } = require('../dist/train');
const { arg, median, now, cpuLine, hfTrainingSetup } = require('./common');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'serve-base');
const B = 16;
const T = 128;
const STEPS = Number(arg('--steps', '5'));
const PRELOAD = arg('--peer-preload', '');
const BF16 = process.argv.includes('--bf16');
if (BF16 && !require('../dist/cpu').cpuInfo().bf16) {
  console.error('--bf16: this CPU has no bf16 units (avx512_bf16, amx_bf16); bf16 would be emulated');
  process.exit(2);
}
const GFLOP = 3 * B * 22.4; // forward + backward ~ 3x the 22.4 GFLOP forward per sequence

/** The HF loop in a Python child that runs one step per 'step' line and answers with its time. */
function startPeer() {
  const code = `
import json, sys, time, torch, transformers
torch.set_num_threads(${tb.getNumThreads()})
${hfTrainingSetup(DIR, B, T, { bf16: BF16 })}print('ready', flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    step()
    print(json.dumps((time.perf_counter() - t0) * 1000), flush=True)`;
  const env = { ...process.env, ...(PRELOAD ? { LD_PRELOAD: PRELOAD } : {}) };
  const child = spawn(process.env.PYTHON || 'python3', ['-c', code], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error(`HF peer exited: ${err.slice(-2000)}`);
    return r.value;
  };
  return {
    ready: next,
    async step() {
      child.stdin.write('step\n');
      return Number(await next());
    },
    close: () => child.stdin.end(),
  };
}

(async () => {
  const peer = startPeer();
  await peer.ready();
  tb.manualSeed(0);
  const m = await fromPretrained(DIR, { kind: 'BertForSequenceClassification' });
  m.train();
  const opt = new AdamW(weightDecayGroups(m.namedParameters(), 0.01), { lr: 2e-5, eps: 1e-8 });
  const ids = tb.randint(1000, 30000, [B, T]);
  const mask = tb.ones([B, T], { dtype: 'int64' });
  const y = tb.randint(0, 2, [B]);
  const step = async () => {
    const t0 = now();
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const out = await tb.autocast({ device: 'cpu', dtype: 'bfloat16', enabled: BF16 }, () => m.forward({ inputIds: ids, attentionMask: mask, labels: y }));
      await out.loss.backward();
      clipGradNorm(m.parameters(), 1.0);
      await opt.step();
      opt.zeroGrad();
      out.loss.item();
    });
    scope.dispose();
    return now() - t0;
  };
  // Two warm-up steps each (TorchScript's profiling executor optimises on the second call).
  for (let i = 0; i < 2; i++) {
    await step();
    await peer.step();
  }
  const ours = [];
  const hf = [];
  for (let i = 0; i < STEPS; i++) {
    ours.push(await step());
    hf.push(await peer.step());
  }
  peer.close();
  const ratios = ours.map((t, i) => hf[i] / t);
  const row = {
    torchbert: median(ours),
    hf: median(hf),
    speedup: median(ratios),
    gflops: GFLOP / (median(ours) / 1000),
    threads: tb.getNumThreads(),
    bf16: BF16,
    cpuCache: process.env.TORCHBERT_CPU_CACHE !== '0',
    onednnLinear: process.env.TORCHBERT_ONEDNN_LINEAR !== '0',
    peerPreload: PRELOAD || null,
    // Which backend each GEMM shape of the step settled on (torchbert::linear's tuning).
    gemms: tb.linearTuning().filter((r) => r.rows >= 1024).map((r) => `${r.pass} ${r.rows}x${r.n}x${r.k}: ${r.choice ?? 'on trial'}`),
    oursAll: ours.map(Math.round),
    hfAll: hf.map(Math.round),
  };
  console.log(`train step (B ${B}, T ${T}${BF16 ? ', bf16 autocast' : ''}): torchbert ${row.torchbert.toFixed(0)} ms, HF ${row.hf.toFixed(0)} ms: ${row.speedup.toFixed(2)}x (median of paired steps); ${row.gflops.toFixed(0)} GFLOP/s`);
  console.log(cpuLine(tb));
  console.log(JSON.stringify({ cpu: cpuLine(tb), ...row }));
  m.module.dispose();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
