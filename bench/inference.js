#!/usr/bin/env node
// Inference benchmark: bert-base shape (random weights from the fixture checkpoint), fp32, sequence
// length 128, batch 1, 8 and 32 on the CPU: torchbert (TorchScript, and frozen) against HF
// transformers (PyTorch, same torch and thread count) and transformers.js (onnxruntime-node) on the
// same weights in the same run; GFLOP/s against this machine's measured matmul peak.
// Usage: python3 scripts/fixtures.py bert onnx_base && node bench/inference.js
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'bert', 'base');
const T = 128;
const BATCHES = [1, 8, 32];
const GFLOP_PER_SEQ = 22.4; // 2 x 12 layers x (4 H^2 + 2 T H + 2 H I) x T, at H 768, I 3072, T 128
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function timeModel(forward, B) {
  const ids = tb.randint(1000, 30000, [B, T]);
  const mask = tb.ones([B, T], { dtype: 'int64' });
  for (let i = 0; i < 2; i++) await forward(ids, mask);
  const reps = B === 1 ? 10 : B === 8 ? 4 : 2;
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await forward(ids, mask);
    ts.push(now() - t0);
  }
  return median(ts);
}

function python() {
  const code = `
import json, time, torch, transformers
torch.set_num_threads(${tb.getNumThreads()})
m = transformers.BertModel.from_pretrained(${JSON.stringify(DIR)}, attn_implementation='sdpa').eval()
out = {}
with torch.inference_mode():
    for B in ${JSON.stringify(BATCHES)}:
        ids = torch.randint(1000, 30000, (B, ${T})); mask = torch.ones(B, ${T}, dtype=torch.long)
        for _ in range(2): m(input_ids=ids, attention_mask=mask)
        reps = 10 if B == 1 else 4 if B == 8 else 2
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); m(input_ids=ids, attention_mask=mask); ts.append((time.perf_counter() - t0) * 1000)
        ts.sort(); out[B] = ts[len(ts)//2]
print(json.dumps(out))`;
  const r = spawnSync(process.env.PYTHON || 'python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

(async () => {
  // Matmul peak: a large fp32 GEMM through the same libtorch.
  const a = tb.randn([2048, 2048]);
  a.matmul(a).dispose();
  const t0 = now();
  for (let i = 0; i < 5; i++) a.matmul(a).dispose();
  const peak = (5 * 2 * 2048 ** 3) / ((now() - t0) / 1000) / 1e9;
  const model = await fromPretrained(DIR);
  model.eval();
  const frozen = model.module.freeze();
  const ours = {};
  const oursFrozen = {};
  for (const B of BATCHES) {
    ours[B] = await tb.noGrad(() => timeModel((ids, mask) => model.forward({ inputIds: ids, attentionMask: mask }), B));
    oursFrozen[B] = await tb.noGrad(() => timeModel((ids, mask) => frozen.forward(ids, mask, null, null, false, false), B));
  }
  const hf = python();
  // transformers.js (onnxruntime-node, fp32) on the same weights exported to ONNX by scripts/fixtures.py.
  const js = {};
  const onnxDir = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'onnx-base');
  try {
    const { AutoModel, env, Tensor: JsTensor } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = path.dirname(onnxDir) + path.sep;
    const m = await AutoModel.from_pretrained(path.basename(onnxDir), { dtype: 'fp32', device: 'cpu' });
    for (const B of BATCHES) {
      const t = (v) => new JsTensor('int64', new BigInt64Array(B * T).fill(v), [B, T]);
      const feeds = { input_ids: t(1000n), attention_mask: t(1n), token_type_ids: t(0n) };
      for (let i = 0; i < 2; i++) await m(feeds);
      const reps = B === 1 ? 10 : B === 8 ? 4 : 2;
      const ts = [];
      for (let i = 0; i < reps; i++) {
        const t0 = now();
        await m(feeds);
        ts.push(now() - t0);
      }
      js[B] = median(ts);
    }
  } catch (e) {
    console.error(`transformers.js peer skipped: ${e.message} (run python3 scripts/fixtures.py onnx_base)`);
  }
  const rows = BATCHES.map((B) => ({
    batch: B,
    torchbertMs: ours[B], torchbertFrozenMs: oursFrozen[B], hfMs: hf[B], transformersJsMs: js[B] ?? null,
    speedupVsHf: hf[B] / ours[B], frozenSpeedupVsHf: hf[B] / oursFrozen[B],
    speedupVsTransformersJs: js[B] ? js[B] / Math.min(ours[B], oursFrozen[B]) : null,
    torchbertGflops: (B * GFLOP_PER_SEQ) / (Math.min(ours[B], oursFrozen[B]) / 1000),
  }));
  console.log(JSON.stringify({ threads: tb.getNumThreads(), matmulPeakGflops: peak, rows }, null, 2));
})();
