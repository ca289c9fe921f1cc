#!/usr/bin/env node
// The CUDA checks of issue 16, for the GPU machine (scripts/gpu-check.sh runs them there): tensors,
// autograd, TorchScript, BERT against transformers on the same device (fp32, and bf16 autocast), AdamW,
// GradScaler with fp16 autocast, a pipeline and the HTTP server on the device, tb.distributed over NCCL
// (a group of one: collectives and a DDP step). Plain Node with node:assert:
// that machine has the production node_modules only (no jest). Python's transformers is the reference.
// TORCHBERT_CHECK_DEVICE=cpu runs the same checks on the CPU (how they are tried without a GPU).
// Usage: node scripts/gpu-check.js [--out results.json]
'use strict';
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const tb = require('../dist');
const { fromConfig } = require('../dist/models');
const { AdamW, GradScaler } = require('../dist/train');
const { pipeline } = require('../dist/pipelines');
const { serve } = require('../dist/serve/server');

const DEVICE = process.env.TORCHBERT_CHECK_DEVICE || 'cuda';
const outArg = process.argv.indexOf('--out');
const OUT = outArg > 0 ? process.argv[outArg + 1] : null;
const PYTHON = process.env.PYTHON || 'python3';
const results = [];

async function check(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    results.push({ name, ok: true, ms: Date.now() - t0, ...(detail ? { detail } : {}) });
    console.log(`ok   ${name}${detail ? ' ' + JSON.stringify(detail) : ''}`);
  } catch (e) {
    results.push({ name, ok: false, ms: Date.now() - t0, error: String((e && e.stack) || e) });
    console.log(`FAIL ${name}: ${e && e.message}`);
  }
}
const int64 = (rows) => tb.tensor(BigInt64Array.from(rows.flat(), BigInt), { shape: [rows.length, rows[0].length] });
const maxDiff = (a, b) => a.float().cpu().sub(b.float().cpu()).abs().max().item();
const close = (a, b, tol, what) => {
  const d = maxDiff(a, b);
  assert.ok(d <= tol, `${what}: max |difference| ${d} > ${tol}`);
  return d;
};

// A small BERT saved in Hugging Face's format, with a vocabulary, for the model, pipeline and server checks.
const WORDS = ['the', 'a', 'film', 'movie', 'good', 'bad', 'dull', 'great', 'acted', 'long', 'too', 'and', 'is', 'was', ',', '.'];
function smallModel(kind, dir) {
  tb.manualSeed(0);
  const m = fromConfig(kind, { vocab_size: 5 + WORDS.length, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128, max_position_embeddings: 64, num_labels: 2, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'vocab.txt'), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...WORDS].join('\n') + '\n');
  return m;
}

/** transformers on the same device: the last hidden state in fp32 and under bf16 autocast, as flat lists. */
function reference(dir, ids, mask) {
  const code = `
import json, sys, torch, transformers
dev = ${JSON.stringify(DEVICE)}
m = transformers.BertModel.from_pretrained(${JSON.stringify(dir)}).to(dev).eval()
ids = torch.tensor(${JSON.stringify(ids)}, device=dev); mask = torch.tensor(${JSON.stringify(mask)}, device=dev)
out = {}
with torch.no_grad():
    out['fp32'] = m(input_ids=ids, attention_mask=mask).last_hidden_state.float().flatten().tolist()
    with torch.autocast(dev.split(':')[0], dtype=torch.bfloat16):
        out['bf16'] = m(input_ids=ids, attention_mask=mask).last_hidden_state.float().flatten().tolist()
print(json.dumps(out))`;
  const r = spawnSync(PYTHON, ['-c', code], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`transformers reference failed: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

(async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-check-'));
  const info = tb.info();
  console.log(`device ${DEVICE}; libtorch ${info.libtorch.version} (${info.libtorch.flavour}); CUDA devices ${tb.cuda.deviceCount()}`);

  await check('device present', () => {
    if (DEVICE.startsWith('cuda')) assert.ok(tb.cuda.isAvailable(), 'tb.cuda.isAvailable() is false: no GPU, or the addon was built against a CPU libtorch');
    return { cudaDevices: tb.cuda.deviceCount() };
  });

  await check('tensors: ops on the device equal the CPU, copies round-trip', () => {
    tb.manualSeed(1);
    const a = tb.randn([64, 96]);
    const b = tb.randn([96, 32]);
    const [ga, gb] = [a.to(DEVICE), b.to(DEVICE)];
    assert.strictEqual(ga.device, DEVICE === 'cuda' ? 'cuda:0' : DEVICE);
    close(ga.matmul(gb), a.matmul(b), 1e-4, 'matmul');
    close(ga.softmax(-1), a.softmax(-1), 1e-6, 'softmax');
    close(ga.sum([0]), a.sum([0]), 1e-4, 'sum');
    assert.strictEqual(maxDiff(ga.to('cpu'), a), 0);
    for (const dtype of ['bfloat16', 'float16', 'int64']) assert.strictEqual(ga.to({ dtype }).dtype, dtype);
  });

  await check('autograd on the device', async () => {
    const x = tb.randn([8, 16]);
    const gx = x.to(DEVICE).requiresGrad_();
    await gx.mul(gx).exp().sum().backward();
    // d/dx exp(x^2) = 2x exp(x^2)
    close(gx.grad, x.mul(x).exp().mul(x).mul(2), 1e-4, 'gradient');
  });

  await check('TorchScript: a module moved to the device runs as on the CPU', async () => {
    const m = new tb.ScriptModule('M');
    m.registerParameter('w', tb.randn([16, 8]), { requiresGrad: true });
    m.define('def forward(self, x: Tensor) -> Tensor:\n    return torch.gelu(torch.matmul(x, self.w))\n');
    const x = tb.randn([4, 16]);
    const cpu = await m.forward(x);
    m.to({ device: DEVICE });
    close(await m.forward(x.to(DEVICE)), cpu, 1e-5, 'forward');
  });

  const bertDir = path.join(tmp, 'bert');
  const ids = [[2, 5, 7, 8, 9, 3, 0, 0], [2, 10, 11, 12, 13, 14, 15, 3]];
  const mask = ids.map((r) => r.map((v) => (v === 0 ? 0 : 1)));
  await check('BERT against transformers on the device: fp32, and bf16 autocast', async () => {
    const m = smallModel('BertModel', bertDir);
    await m.savePretrained(bertDir);
    m.to(DEVICE);
    const [tIds, tMask] = [int64(ids).to(DEVICE), int64(mask).to(DEVICE)];
    const fp32 = (await tb.noGrad(() => m.forward({ inputIds: tIds, attentionMask: tMask }))).lastHiddenState;
    const bf16 = (await tb.noGrad(() => tb.autocast({ device: DEVICE.split(':')[0], dtype: 'bfloat16' }, () => m.forward({ inputIds: tIds, attentionMask: tMask })))).lastHiddenState;
    const ref = reference(bertDir, ids, mask);
    const shape = fp32.shape;
    const [hf32, hf16] = [tb.tensor(Float32Array.from(ref.fp32), { shape }), tb.tensor(Float32Array.from(ref.bf16), { shape })];
    const dFp32 = close(fp32, hf32, 1e-4, 'fp32 against transformers');
    // bf16: as close to transformers' bf16 as twice its own distance from fp32 (kernels round differently)
    const hfErr = maxDiff(hf16, hf32);
    const dBf16 = close(bf16, hf16, Math.max(2 * hfErr, 2e-2), 'bf16 autocast against transformers bf16 autocast');
    return { fp32MaxDiff: dFp32, bf16MaxDiff: dBf16, transformersBf16FromFp32: hfErr };
  });

  await check('AdamW on the device equals AdamW on the CPU', async () => {
    tb.manualSeed(2);
    const p = tb.randn([32, 16]);
    const [cpuP, devP] = [p.clone().requiresGrad_(), p.to(DEVICE).requiresGrad_()];
    const [oc, od] = [new AdamW([cpuP], { lr: 1e-2, weightDecay: 0.01 }), new AdamW([devP], { lr: 1e-2, weightDecay: 0.01 })];
    for (let s = 0; s < 3; s++) {
      const g = tb.randn([32, 16]);
      await cpuP.mul(g).sum().backward();
      await devP.mul(g.to(DEVICE)).sum().backward();
      await oc.step();
      await od.step();
      oc.zeroGrad();
      od.zeroGrad();
    }
    return { maxDiff: close(devP.detach(), cpuP.detach(), 1e-6, 'weights after 3 steps') };
  });

  await check('GradScaler with float16 autocast: steps, and skips a step with inf gradients', async () => {
    const m = smallModel('BertForSequenceClassification', path.join(tmp, 'scaler'));
    m.to(DEVICE);
    m.train();
    const opt = new AdamW(m.parameters(), { lr: 1e-3 });
    const scaler = new GradScaler({ initScale: 1024 });
    const batch = { inputIds: int64(ids).to(DEVICE), attentionMask: int64(mask).to(DEVICE), labels: tb.tensor([0n, 1n]).to(DEVICE) };
    const before = m.parameters()[0].detach().clone();
    const out = await tb.autocast({ device: DEVICE.split(':')[0], dtype: 'float16' }, () => m.forward(batch));
    await scaler.scale(out.loss).backward();
    assert.ok(await scaler.step(opt), 'the first step was skipped');
    scaler.update();
    opt.zeroGrad();
    assert.ok(maxDiff(m.parameters()[0].detach(), before) > 0, 'the step changed nothing');
    // an inf in a gradient: the step is skipped and the scale halves
    const out2 = await tb.autocast({ device: DEVICE.split(':')[0], dtype: 'float16' }, () => m.forward(batch));
    await scaler.scale(out2.loss.mul(Infinity)).backward();
    const scale = scaler.getScale();
    assert.strictEqual(await scaler.step(opt), false);
    scaler.update();
    assert.strictEqual(scaler.getScale(), scale / 2);
    return { scale: scaler.getScale() };
  });

  const clsDir = path.join(tmp, 'cls');
  await check('a text-classification pipeline on the device answers as on the CPU', async () => {
    const m = smallModel('BertForSequenceClassification', clsDir);
    await m.savePretrained(clsDir);
    const texts = ['a good film , well acted .', 'dull and too long', 'the movie was great'];
    const onCpu = await pipeline('text-classification', clsDir);
    const onDev = await pipeline('text-classification', clsDir, { device: DEVICE });
    const [a, b] = [await onCpu.call(texts, { topK: null }), await onDev.call(texts, { topK: null })];
    a.forEach((r, i) => r.forEach((l, j) => {
      assert.strictEqual(b[i][j].label, l.label);
      assert.ok(Math.abs(b[i][j].score - l.score) < 1e-4, `score of ${texts[i]}: ${b[i][j].score} against ${l.score}`);
    }));
    await onCpu.dispose();
    await onDev.dispose();
  });

  await check('the HTTP server on the device', async () => {
    const s = await serve({ model: clsDir, port: 0, device: DEVICE });
    try {
      await s.warm;
      const r = await fetch(`${s.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: ['a good film', 'dull'] }) });
      assert.strictEqual(r.status, 200);
      const body = await r.json();
      assert.strictEqual(body.results.length, 2);
      return { first: body.results[0] };
    } finally {
      await s.close();
    }
  });

  await check('tb.distributed on the device: a group of one (NCCL on CUDA, Gloo on the CPU), collectives and a DDP step', async () => {
    const d = tb.distributed;
    const backend = DEVICE.startsWith('cuda') ? 'nccl' : 'gloo';
    await d.initProcessGroup({ backend, initMethod: `file://${path.join(tmp, 'store')}`, rank: 0, worldSize: 1, timeoutMs: 60_000 });
    try {
      assert.strictEqual(d.device(), backend === 'nccl' ? 'cuda:0' : 'cpu');
      const t = tb.tensor([1, 2, 3]).to(DEVICE);
      await d.allReduce(t, { op: 'avg' });
      await d.broadcast(t, 0);
      const outs = [tb.zeros([3]).to(DEVICE)];
      await d.allGather(outs, t);
      await d.barrier();
      assert.deepStrictEqual(Array.from(outs[0].cpu().dataSync()), [1, 2, 3]);
      assert.deepStrictEqual(await d.allGatherObject({ backend }), [{ backend }]); // CPU tensors: Gloo
      // DDP over one rank leaves the gradients of plain backward
      tb.manualSeed(3);
      const w = tb.randn([8, 4]).to(DEVICE).requiresGrad_();
      const model = { namedParameters: () => [['w', w]], forward: async (x) => x.matmul(w).tanh().sum() };
      const ddp = new d.DistributedDataParallel(model);
      const x = tb.randn([5, 8]).to(DEVICE);
      await (await ddp.forward(x)).backward();
      const viaDdp = w.grad.clone();
      w.grad.zero_();
      await (await model.forward(x)).backward();
      ddp.dispose();
      return { backend, ddpGradMaxDiff: close(viaDdp, w.grad, 1e-6, 'DDP gradient against plain backward') };
    } finally {
      await d.destroyProcessGroup();
    }
  });

  fs.rmSync(tmp, { recursive: true, force: true });
  const failed = results.filter((r) => !r.ok).length;
  const report = { device: DEVICE, info: tb.info(), passed: results.length - failed, failed, results };
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(report, null, 2));
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
})();
