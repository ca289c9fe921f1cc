#!/usr/bin/env node
// Training-step benchmark: forward, backward, clip (1.0) and AdamW on a bert-base-shape
// BertForSequenceClassification, sequence length 128, batch 16, fp32 on the CPU, dropout on:
// torchbert (TorchScript module, ATen's fused AdamW) against the same loop in HF transformers /
// PyTorch (torch.optim.AdamW, foreach), same torch build and thread count, in the same run.
// Usage: python3 scripts/fixtures.py serve_base && node bench/train.js [--steps 3]
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');
const { AdamW, clipGradNorm, weightDecayGroups } = require('../dist/train');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'serve-base');
const B = 16;
const T = 128;
const STEPS = Number(process.argv.includes('--steps') ? process.argv[process.argv.indexOf('--steps') + 1] : 3);
const GFLOP = 3 * B * 22.4; // forward + backward ~ 3x the 22.4 GFLOP forward per sequence
const now = () => Number(process.hrtime.bigint()) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function python() {
  const code = `
import json, time, torch, transformers
torch.set_num_threads(${tb.getNumThreads()})
torch.manual_seed(0)
m = transformers.BertForSequenceClassification.from_pretrained(${JSON.stringify(DIR)}, attn_implementation='sdpa').train()
decay = [p for n, p in m.named_parameters() if not (n.endswith('bias') or 'LayerNorm' in n)]
nodecay = [p for n, p in m.named_parameters() if n.endswith('bias') or 'LayerNorm' in n]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01}, {'params': nodecay, 'weight_decay': 0.0}], lr=2e-5, eps=1e-8)
ids = torch.randint(1000, 30000, (${B}, ${T})); mask = torch.ones(${B}, ${T}, dtype=torch.long); y = torch.randint(0, 2, (${B},))
def step():
    loss = m(input_ids=ids, attention_mask=mask, labels=y).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    return loss.item()
step()
ts = []
for _ in range(${STEPS}):
    t0 = time.perf_counter(); step(); ts.append((time.perf_counter() - t0) * 1000)
ts.sort()
print(json.dumps({'ms': ts[len(ts) // 2], 'all': ts}))`;
  const r = spawnSync(process.env.PYTHON || 'python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

(async () => {
  if (process.env.JIT_OPTIMIZE === '0') tb.setGraphExecutorOptimize(false); // the interpreter without profiling or autodiff subgraphs
  tb.manualSeed(0);
  const m = await fromPretrained(DIR, { kind: 'BertForSequenceClassification' });
  m.train();
  const opt = new AdamW(weightDecayGroups(m.namedParameters(), 0.01), { lr: 2e-5, eps: 1e-8 });
  const ids = tb.randint(1000, 30000, [B, T]);
  const mask = tb.ones([B, T], { dtype: 'int64' });
  const y = tb.randint(0, 2, [B]);
  const step = async () => {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const out = await m.forward({ inputIds: ids, attentionMask: mask, labels: y });
      await out.loss.backward();
      clipGradNorm(m.parameters(), 1.0);
      await opt.step();
      opt.zeroGrad();
    });
    scope.dispose();
  };
  await step();
  const ts = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = now();
    await step();
    ts.push(now() - t0);
  }
  const ours = median(ts);
  m.module.dispose();
  const hf = python();
  const row = { torchbert: ours, hf: hf.ms, speedup: hf.ms / ours, gflops: GFLOP / (ours / 1000), threads: tb.getNumThreads(), oursAll: ts, hfAll: hf.all };
  console.log(`train step (B ${B}, T ${T}): torchbert ${ours.toFixed(0)} ms, HF ${hf.ms.toFixed(0)} ms: ${row.speedup.toFixed(2)}x; ${row.gflops.toFixed(0)} GFLOP/s`);
  console.log(JSON.stringify(row));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
