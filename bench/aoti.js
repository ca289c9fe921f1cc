#!/usr/bin/env node
// Does an AOTInductor package pay? PyTorch 2's deployment artifact (torch.export, then
// torch._inductor.aoti_compile_and_package with freezing) of the same bert-base-shape weights, run by
// Python's AOTI runner, against torchbert's prepacked copies (fp32, and bf16 on CPUs with bf16 units), on
// the same shapes with the same thread count. Each round times both sides (Python in a subprocess, then
// this process), so a slow phase of a shared machine falls on both; the figures are medians over rounds.
// The packages are compiled once per torch version into bench/out/aoti/ (compileSeconds: null when cached).
// Usage: python3 scripts/fixtures.py bert && node bench/aoti.js [--rounds 3] [--shapes 1x24,16x24,8x128] [--no-bf16]
'use strict';
const fs = require('fs');
const path = require('path');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');
const { cpuInfo } = require('../dist/cpu');
const { arg, median, pythonJson, timeInterleaved, cpuLine } = require('./common');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'bert', 'base');
const OUT = path.join(__dirname, 'out', 'aoti');
const ROUNDS = Number(arg('--rounds', '3'));
const SHAPES = arg('--shapes', '1x24,16x24,8x128').split(',').map((s) => s.split('x').map(Number));
const BF16 = cpuInfo().bf16 && !process.argv.includes('--no-bf16');
const DTYPES = BF16 ? ['fp32', 'bf16'] : ['fp32'];
// Timed calls per shape and side (after two warm-up calls): more for the quick shapes.
const repsFor = (B, T) => Math.max(3, Math.min(10, Math.floor(400 / (B * T)) + 3));

const PRELUDE = `
import json, os, time, warnings, torch, transformers
warnings.filterwarnings('ignore')
torch.set_num_threads(${tb.getNumThreads()})
DIR = ${JSON.stringify(DIR)}
def load(dtype):
    return transformers.BertModel.from_pretrained(DIR, attn_implementation='sdpa', dtype=dtype).eval()
`;

// One package per dtype, batch and length dynamic (1-256 rows, 2-512 tokens), the last hidden state out.
function compile(dtype) {
  return pythonJson(`${PRELUDE}
import torch._inductor.config as cfg
cfg.freezing = True
out = os.path.join(${JSON.stringify(OUT)}, f'bert-base-${dtype}-torch{torch.__version__}.pt2')
secs = None
if not os.path.exists(out):
    class LastHidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__(); self.m = m
        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state
    w = LastHidden(load(torch.${dtype === 'bf16' ? 'bfloat16' : 'float32'}))
    ids = torch.randint(1000, 30000, (4, 32)); mask = torch.ones(4, 32, dtype=torch.long)
    B = torch.export.Dim('B', min=1, max=256); T = torch.export.Dim('T', min=2, max=512)
    t0 = time.time()
    with torch.no_grad():
        ep = torch.export.export(w, (ids, mask), dynamic_shapes=({0: B, 1: T}, {0: B, 1: T}))
        torch._inductor.aoti_compile_and_package(ep, package_path=out[:-4] + '.partial.pt2')
    os.replace(out[:-4] + '.partial.pt2', out)
    secs = round(time.time() - t0)
print(json.dumps({'path': out, 'compileSeconds': secs}))`);
}

// Python's side of one round: ms per call (median of its reps) for each package and shape.
function timeAoti(packages) {
  return pythonJson(`${PRELUDE}
res = {}
with torch.inference_mode():
    for dtype, pkg in ${JSON.stringify(Object.entries(packages))}:
        m = torch._inductor.aoti_load_package(pkg)
        for B, T, reps in ${JSON.stringify(SHAPES.map(([B, T]) => [B, T, repsFor(B, T)]))}:
            ids = torch.randint(1000, 30000, (B, T)); mask = torch.ones(B, T, dtype=torch.long)
            for _ in range(2): m(ids, mask)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter(); m(ids, mask); ts.append((time.perf_counter() - t0) * 1000)
            ts.sort(); res[f'{dtype} {B}x{T}'] = ts[len(ts) // 2]
print(json.dumps(res))`);
}

(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  const compiled = Object.fromEntries(DTYPES.map((d) => [d, compile(d)]));
  const packages = Object.fromEntries(DTYPES.map((d) => [d, compiled[d].path]));
  const fp = (await fromPretrained(DIR)).eval();
  const ours = { fp32: await fp.prepackAsync() };
  if (BF16) ours.bf16 = await (await fromPretrained(DIR, { dtype: 'bfloat16' })).eval().prepackAsync();
  const samples = {};
  const add = (key, side, ms) => ((samples[key] ??= { aoti: [], torchbert: [] })[side].push(ms));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [key, ms] of Object.entries(timeAoti(packages))) add(key, 'aoti', ms);
    for (const [B, T] of SHAPES) {
      const ids = tb.randint(1000, 30000, [B, T]);
      const mask = tb.ones([B, T], { dtype: 'int64' });
      const times = await tb.noGrad(() => timeInterleaved(DTYPES.map((d) => () => ours[d].forward({ inputIds: ids, attentionMask: mask })),
        { reps: repsFor(B, T) }));
      DTYPES.forEach((d, i) => add(`${d} ${B}x${T}`, 'torchbert', times[i]));
    }
  }
  const rows = Object.entries(samples).map(([key, s]) => {
    const [dtype, shape] = key.split(' ');
    const a = median(s.aoti), t = median(s.torchbert);
    return { dtype, shape, aotiMs: +a.toFixed(1), torchbertPrepackedMs: +t.toFixed(1), torchbertSpeedupVsAoti: +(a / t).toFixed(2) };
  });
  console.log(JSON.stringify({ cpu: cpuLine(tb), threads: tb.getNumThreads(), rounds: ROUNDS, libtorch: tb.info().libtorch.version,
    compileSeconds: Object.fromEntries(DTYPES.map((d) => [d, compiled[d].compileSeconds])), rows }, null, 2));
})().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
