#!/usr/bin/env node
// CUDA benchmark (issue 16, for the GPU machine: scripts/gpu-check.sh runs it there): a bert-base-shape
// BertModel forward at sequence length 128, batch 8 and 32, in fp32 and under bf16 autocast, and a
// BertForSequenceClassification training step (batch 16 x 128, AdamW) under bf16 autocast: torchbert
// against HF transformers + torch.optim.AdamW on the same device, same run, each the median of timed
// repetitions after warm-up, with the device synchronised around every timing.
// TORCHBERT_CHECK_DEVICE=cpu (with --batches 1 --steps 2) runs it on the CPU, to try it without a GPU.
// Usage: node bench/cuda.js [--batches 8,32] [--steps 10] [--out file.json]
'use strict';
const fs = require('fs');
const tb = require('../dist');
const { fromConfig } = require('../dist/models');
const { AdamW } = require('../dist/train');
const { arg, pythonJson, timeInterleaved } = require('./common');

const DEVICE = process.env.TORCHBERT_CHECK_DEVICE || 'cuda';
const KIND = DEVICE.split(':')[0];
const T = 128;
const BATCHES = arg('--batches', '8,32').split(',').map(Number);
const STEPS = Number(arg('--steps', '10'));
const TRAIN_B = Number(arg('--train-batch', '16'));
const OUT = arg('--out', '');
const CONFIG = { vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, max_position_embeddings: 512, num_labels: 2 };
const sync = () => (KIND === 'cuda' ? tb.cuda.synchronize() : undefined);

const timeIt = async (fn, reps) => (await timeInterleaved([fn], { reps, sync }))[0];

function python() {
  const code = `
import json, time, torch, transformers
dev = ${JSON.stringify(DEVICE)}; kind = ${JSON.stringify(KIND)}
cfg = transformers.BertConfig(**${JSON.stringify(CONFIG)})
sync = (lambda: torch.cuda.synchronize()) if kind == 'cuda' else (lambda: None)
def timed(fn, reps):
    for _ in range(2): fn()
    sync(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); sync(); ts.append((time.perf_counter() - t0) * 1000)
    ts.sort(); return ts[len(ts) // 2]
torch.manual_seed(0)
m = transformers.BertModel(cfg).to(dev).eval()
res = {'forward': {}, 'train': None}
for B in ${JSON.stringify(BATCHES)}:
    ids = torch.randint(1000, 30000, (B, ${T}), device=dev); mask = torch.ones(B, ${T}, dtype=torch.long, device=dev)
    r = res['forward'][B] = {}
    with torch.no_grad():
        r['fp32'] = timed(lambda: m(input_ids=ids, attention_mask=mask), ${STEPS})
        with torch.autocast(kind, dtype=torch.bfloat16):
            r['bf16'] = timed(lambda: m(input_ids=ids, attention_mask=mask), ${STEPS})
del m
c = transformers.BertForSequenceClassification(cfg).to(dev).train()
opt = torch.optim.AdamW(c.parameters(), lr=2e-5, eps=1e-8)
ids = torch.randint(1000, 30000, (${TRAIN_B}, ${T}), device=dev); mask = torch.ones(${TRAIN_B}, ${T}, dtype=torch.long, device=dev)
labels = torch.randint(0, 2, (${TRAIN_B},), device=dev)
def step():
    with torch.autocast(kind, dtype=torch.bfloat16):
        loss = c(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward(); opt.step(); opt.zero_grad()
res['train'] = timed(step, ${STEPS})
print(json.dumps(res))`;
  return pythonJson(code);
}

(async () => {
  if (KIND === 'cuda' && !tb.cuda.isAvailable()) throw new Error('bench/cuda.js: no CUDA device (TORCHBERT_CHECK_DEVICE=cpu runs it on the CPU)');
  tb.manualSeed(0);
  const model = fromConfig('BertModel', CONFIG);
  model.to(DEVICE);
  model.eval();
  const ours = {};
  for (const B of BATCHES) {
    const ids = tb.randint(1000, 30000, [B, T]).to(DEVICE);
    const mask = tb.ones([B, T], { dtype: 'int64' }).to(DEVICE);
    const fwd = () => tb.noGrad(() => model.forward({ inputIds: ids, attentionMask: mask }));
    ours[B] = {
      fp32: await timeIt(fwd, STEPS),
      bf16: await timeIt(() => tb.autocast({ device: KIND, dtype: 'bfloat16' }, fwd), STEPS),
    };
  }
  model.dispose();
  const cls = fromConfig('BertForSequenceClassification', CONFIG);
  cls.to(DEVICE);
  cls.train();
  const opt = new AdamW(cls.parameters(), { lr: 2e-5, eps: 1e-8 });
  const batch = { inputIds: tb.randint(1000, 30000, [TRAIN_B, T]).to(DEVICE), attentionMask: tb.ones([TRAIN_B, T], { dtype: 'int64' }).to(DEVICE), labels: tb.randint(0, 2, [TRAIN_B]).to(DEVICE) };
  const trainMs = await timeIt(async () => {
    const out = await tb.autocast({ device: KIND, dtype: 'bfloat16' }, () => cls.forward(batch));
    await out.loss.backward();
    await opt.step();
    opt.zeroGrad();
  }, STEPS);
  cls.dispose();
  const hf = python();
  const rows = BATCHES.map((B) => ({
    batch: B, torchbertFp32Ms: ours[B].fp32, hfFp32Ms: hf.forward[B].fp32, fp32SpeedupVsHf: hf.forward[B].fp32 / ours[B].fp32,
    torchbertBf16Ms: ours[B].bf16, hfBf16AutocastMs: hf.forward[B].bf16, bf16SpeedupVsHf: hf.forward[B].bf16 / ours[B].bf16,
  }));
  const { libtorch, cuda, threads } = tb.info();
  const report = { device: DEVICE, libtorch: { version: libtorch.version, flavour: libtorch.flavour }, cuda, threads, seqLen: T, forward: rows, trainStepBf16: { batch: TRAIN_B, torchbertMs: trainMs, hfMs: hf.train, speedupVsHf: hf.train / trainMs } };
  console.log(JSON.stringify(report, null, 2));
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(report, null, 2));
})().catch((e) => {
  console.error(e.message);
  process.exitCode = 1;
});
