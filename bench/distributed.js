// Data-parallel benchmarks, 2 ranks on loopback, one thread per rank, torchbert against Python's
// torch.distributed in the same run (same libtorch, Gloo):
//   allreduce: 110M float32 (bert-base's gradients), median of --reps;
//   ddp: a bert-base-shape training step (S=128, batch 8 per rank, AdamW), 2 ranks against 1 process,
//        and against Python's DistributedDataParallel over HF's BertForSequenceClassification.
// Usage: node bench/distributed.js [--what allreduce,ddp] [--reps 5] [--steps 4] [--numel 110000000]
'use strict';
const net = require('net');
const { spawn } = require('child_process');
const tb = require('../dist');
const { arg, cpuLine } = require('./common');

const what = arg('--what', 'allreduce,ddp').split(',');
const reps = Number(arg('--reps', '5'));
const steps = Number(arg('--steps', '4'));
const numel = Number(arg('--numel', '110000000'));
const PY = process.env.PYTHON ?? 'python3';

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** Runs `world` ranks of cmd/args; resolves rank 0's last JSON line. */
async function ranks(world, cmd, args) {
  const port = await freePort();
  const outs = await Promise.all(
    Array.from({ length: world }, (_, r) => new Promise((resolve, reject) => {
      const p = spawn(cmd, args, { env: { ...process.env, RANK: String(r), WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), OMP_NUM_THREADS: '1' } });
      let out = '';
      let err = '';
      p.stdout.on('data', (b) => (out += b));
      p.stderr.on('data', (b) => (err += b));
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`rank ${r} of ${cmd} failed (${code}): ${err.slice(-2000)}`))));
    })),
  );
  return JSON.parse(outs[0].trim().split('\n').filter((l) => l.startsWith('{')).pop());
}

const nodeAllreduce = `
const tb = require(${JSON.stringify(require.resolve('../dist'))});
(async () => {
  await tb.distributed.initProcessGroup();
  const t = tb.ones([${numel}]);
  await tb.distributed.allReduce(t);
  const ms = [];
  for (let i = 0; i < ${reps}; i++) { await tb.distributed.barrier(); const t0 = performance.now(); await tb.distributed.allReduce(t); ms.push(performance.now() - t0); }
  console.log(JSON.stringify({ ms }));
  await tb.distributed.destroyProcessGroup();
})();`;
const pyAllreduce = `
import json, time, torch, torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group('gloo')
t = torch.ones(${numel})
dist.all_reduce(t)
ms = []
for _ in range(${reps}):
    dist.barrier(); t0 = time.perf_counter(); dist.all_reduce(t); ms.append((time.perf_counter() - t0) * 1000)
print(json.dumps({'ms': ms}), flush=True)
dist.destroy_process_group()`;

const BASE = { vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, max_position_embeddings: 512 };
const nodeDdp = `
const tb = require(${JSON.stringify(require.resolve('../dist'))});
const { fromConfig } = require(${JSON.stringify(require.resolve('../dist/models/bert'))});
(async () => {
  const world = Number(process.env.WORLD_SIZE);
  if (world > 1) await tb.distributed.initProcessGroup();
  tb.manualSeed(0);
  const model = fromConfig('BertForSequenceClassification', ${JSON.stringify(BASE)});
  model.train();
  const ddp = world > 1 ? new tb.distributed.DistributedDataParallel(model) : null;
  if (ddp) await ddp.ready;
  const opt = new tb.AdamW(model.parameters(), { lr: 2e-5 });
  const inputs = { inputIds: tb.randint(0, 30522, [8, 128]), labels: tb.randint(0, 2, [8]) };
  const ms = [];
  for (let i = 0; i <= ${steps}; i++) {
    if (world > 1) await tb.distributed.barrier();
    const t0 = performance.now();
    const out = await (ddp ?? model).forward(inputs);
    await out.loss.backward();
    await opt.step();
    opt.zeroGrad();
    if (i > 0) ms.push(performance.now() - t0);
  }
  console.log(JSON.stringify({ ms }));
  if (world > 1) await tb.distributed.destroyProcessGroup();
})();`;
const pyDdp = `
import json, time, torch, torch.distributed as dist
from transformers import BertConfig, BertForSequenceClassification
torch.set_num_threads(1)
dist.init_process_group('gloo')
torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(**${JSON.stringify(BASE)}, attn_implementation='sdpa'))
model.train()
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
ids = torch.randint(0, 30522, (8, 128)); labels = torch.randint(0, 2, (8,))
ms = []
for i in range(${steps} + 1):
    dist.barrier(); t0 = time.perf_counter()
    loss = ddp(input_ids=ids, labels=labels).loss
    loss.backward(); opt.step(); opt.zero_grad()
    if i > 0: ms.append((time.perf_counter() - t0) * 1000)
print(json.dumps({'ms': ms}), flush=True)
dist.destroy_process_group()`;

const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

(async () => {
  console.log(`# distributed, 2 ranks on loopback, 1 thread each; ${cpuLine(tb)} (this process), libtorch ${tb.info().libtorch.version}`);
  if (what.includes('allreduce')) {
    // alternate the two sides so neither gets a quieter machine
    const ours = [];
    const theirs = [];
    for (let round = 0; round < 2; round++) {
      ours.push(...(await ranks(2, process.execPath, ['-e', nodeAllreduce])).ms);
      theirs.push(...(await ranks(2, PY, ['-c', pyAllreduce])).ms);
    }
    const [a, b] = [med(ours), med(theirs)];
    console.log(`allreduce ${numel} float32 (${((numel * 4) / 1e6).toFixed(0)} MB): torchbert ${a.toFixed(0)} ms, torch.distributed ${b.toFixed(0)} ms, ratio ${(b / a).toFixed(2)}x (Python time / ours; goal >= 0.95)`);
  }
  if (what.includes('ddp')) {
    const one = med((await ranks(1, process.execPath, ['-e', nodeDdp])).ms);
    const two = med((await ranks(2, process.execPath, ['-e', nodeDdp])).ms);
    const py = med((await ranks(2, PY, ['-c', pyDdp])).ms);
    console.log(`ddp step, bert-base shape, S=128, batch 8 per rank, AdamW: 1 process ${one.toFixed(0)} ms, 2 ranks ${two.toFixed(0)} ms per rank (${(two / one).toFixed(2)}x of 1 process; goal <= 1.15), Python DDP 2 ranks ${py.toFixed(0)} ms (torchbert ${(py / two).toFixed(2)}x; goal >= 1.0)`);
  }
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
