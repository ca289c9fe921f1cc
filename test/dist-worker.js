// One rank of a distributed test (test/distributed.test.ts): runs a scenario on the built package (dist/)
// and prints one JSON line with what it observed. Rank and world come from torchrun's environment.
const tb = require('../dist');
const d = tb.distributed;
const { fromConfig } = require('../dist/models/bert');

const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const scenario = process.argv[2];
const timeoutMs = Number(process.env.DIST_TIMEOUT_MS ?? 20000);
const out = (o) => process.stdout.write(JSON.stringify({ rank, ...o }) + '\n');
const arr = (t) => Array.from(t.dataSync(), Number);

const TINY = { vocab_size: 60, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
function data() {
  tb.manualSeed(1234);
  const ids = tb.randint(1, 60, [16, 12]);
  const labels = tb.randint(0, 2, [16]);
  return { ids, labels };
}
function params(model) {
  return model.namedParameters().map(([n, p]) => [n, arr(p)]);
}

async function train({ optim, accumulate }) {
  // world 1: batch 16 in one process; world 2: batch 8 per rank, the same 16 rows.
  const { ids, labels } = data();
  tb.manualSeed(7);
  const model = fromConfig('BertForSequenceClassification', TINY);
  model.train();
  const ddp = world > 1 ? new d.DistributedDataParallel(model) : null;
  if (ddp) await ddp.ready;
  const ps = model.parameters();
  const opt = optim === 'adamw' ? new tb.AdamW(ps, { lr: 1e-3 }) : null;
  const sched = opt ? tb.getLinearScheduleWithWarmup(opt, { numWarmupSteps: 4, numTrainingSteps: 20 }) : null;
  const losses = [];
  const snapshots = [];
  const per = 16 / world;
  const micro = accumulate ? 2 : 1;
  for (let step = 0; step < 20; step++) {
    let total = 0;
    for (let m = 0; m < micro; m++) {
      const rows = per / micro;
      const start = rank * per + m * rows;
      const inputs = { inputIds: ids.slice(0, start, start + rows), labels: labels.slice(0, start, start + rows) };
      const run = async () => {
        const outp = ddp ? await ddp.forward(inputs) : await model.forward(inputs);
        const loss = micro > 1 ? outp.loss.div(micro) : outp.loss;
        await loss.backward();
        total += loss.item();
      };
      if (ddp && m < micro - 1) await ddp.noSync(run);
      else await run();
    }
    if (opt) {
      tb.clipGradNorm(ps, 1.0);
      await opt.step();
      sched.step();
      opt.zeroGrad();
    } else {
      tb.noGrad(() => { for (const p of ps) { p.sub_(p.grad, 0.1); p.grad = null; } });
    }
    // the mean loss over all 16 rows
    const l = tb.tensor([total]);
    if (world > 1) await d.allReduce(l, { op: 'avg' });
    losses.push(l.item());
    if (world > 1) snapshots.push(params(model).map(([, v]) => v.slice(0, 4)).flat());
  }
  out({ losses, params: params(model), snapshots });
}

async function collectives() {
  const res = {};
  for (const dtype of ['float32', 'float64', 'int32', 'int64']) {
    for (const op of ['sum', 'min', 'max', 'product', ...(dtype.startsWith('float') ? ['avg'] : [])]) {
      const t = tb.tensor([1 + rank, 5 - rank, 3], { dtype });
      await d.allReduce(t, { op });
      res[`allReduce/${dtype}/${op}`] = arr(t);
    }
  }
  const b = rank === 1 ? tb.tensor([7, 8, 9]) : tb.zeros([3]);
  await d.broadcast(b, 1);
  res.broadcast = arr(b);
  const outs = Array.from({ length: world }, () => tb.zeros([2], { dtype: 'int64' }));
  await d.allGather(outs, tb.tensor([BigInt(rank), BigInt(10 * rank)]));
  res.allGather = outs.map(arr);
  const rs = tb.zeros([2]);
  await d.reduceScatter(rs, Array.from({ length: world }, (_, i) => tb.tensor([i + rank, 100 * i])));
  res.reduceScatter = arr(rs);
  const gl = rank === 0 ? Array.from({ length: world }, () => tb.zeros([1])) : undefined;
  await d.gather(tb.tensor([rank + 0.5]), { dst: 0, gatherList: gl });
  res.gather = gl ? gl.map(arr) : null;
  const sc = tb.zeros([2]);
  await d.scatter(sc, { src: 1, scatterList: rank === 1 ? Array.from({ length: world }, (_, i) => tb.tensor([i, -i])) : undefined });
  res.scatter = arr(sc);
  const p2p = rank === 0 ? tb.tensor([3.5, 4.5]) : tb.zeros([2]);
  if (rank === 0) await d.send(p2p, 1, { tag: 3 });
  else await d.recv(p2p, 0, { tag: 3 });
  res.sendRecv = arr(p2p);
  await d.barrier();
  res.objects = await d.allGatherObject({ rank, note: `é${rank}` });
  res.broadcastObject = await d.broadcastObject(rank === 0 ? { stop: true, at: 12 } : undefined, 0);
  const worked = [];
  res.sharded = await d.shardedMap(['a', 'b', 'c', 'd', 'e'], async (x, i) => {
    worked.push(i);
    return `${x}${i}`;
  });
  res.shardedWorked = worked;
  const g = await d.newGroup([1]);
  if (rank === 1) {
    const t = tb.tensor([5]);
    await d.allReduce(t, { group: g });
    res.group = arr(t);
  } else {
    res.group = await d.allReduce(tb.tensor([1]), { group: g }).then(() => 'no error', (e) => e.message);
  }
  // The event loop keeps ticking during a large allreduce.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const big = tb.ones([20_000_000]);
  const t0 = Date.now();
  await d.allReduce(big);
  const ms = Date.now() - t0;
  clearInterval(timer);
  res.big = { first: arr(big.slice(0, 0, 2)), ms, ticks };
  res.backend = [d.getBackend(), d.device()];
  res.errors = {
    twice: await d.initProcessGroup({ rank, worldSize: world }).then(() => 'no error', (e) => e.message),
    disposed: await (async () => { const t = tb.ones([2]); t.dispose(); return d.allReduce(t).then(() => 'no error', (e) => e.message); })(),
    op: await d.allReduce(tb.ones([2]), { op: 'median' }).then(() => 'no error', (e) => e.message),
    avgInt: await d.allReduce(tb.ones([2], { dtype: 'int64' }), { op: 'avg' }).then(() => 'no error', (e) => e.message),
  };
  out(res);
}

async function elastic() {
  // A Trainer run with checkpoints every 2 steps that resumes from the newest one; with KILL_AT, rank 1
  // kills itself (SIGKILL) at that step on the first attempt.
  const { ids, labels } = data();
  tb.manualSeed(7);
  const model = fromConfig('BertForSequenceClassification', TINY);
  const attempt = Number(process.env.TORCHELASTIC_RESTART_COUNT ?? 0);
  const killAt = process.env.KILL_AT === undefined ? -1 : Number(process.env.KILL_AT);
  const trainer = new tb.train.Trainer(model, { maxSteps: 10, learningRate: 1e-3, saveSteps: 2, outputDir: process.env.ELASTIC_DIR, resumeFrom: 'latest', loggingSteps: 1, log: () => {} });
  const per = 16 / world;
  const res = await trainer.train((step) => {
    if (rank === 1 && attempt === 0 && step === killAt) process.kill(process.pid, 'SIGKILL');
    return tb.train.padCollate(Array.from({ length: per }, (_, i) => ({ inputIds: arr(ids.select(0, rank * per + i)), label: Number(labels.select(0, rank * per + i).item()) })), 0);
  }, (b) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels }));
  // Rank 0 alone reports: the ranks share the launcher's stdout, and lines longer than a pipe's atomic
  // write (4 KiB) from two processes can interleave. DDP keeps the ranks' weights equal.
  if (rank === 0) out({ attempt, steps: res.steps, params: params(model), losses: res.losses.map((l) => l.loss) });
}

async function mismatch() {
  tb.manualSeed(0);
  const model = fromConfig('BertForSequenceClassification', { ...TINY, intermediate_size: rank === 0 ? 32 : 48 });
  const ddp = new d.DistributedDataParallel(model);
  out({ error: await ddp.ready.then(() => 'no error', (e) => e.message) });
}

async function interop() {
  const t = tb.tensor([1, 2, 3].map((x) => x * (rank + 1)));
  await d.allReduce(t);
  out({ sum: arr(t) });
}

async function killed() {
  // rank 1 dies mid-way; rank 0's next collective must fail with an error, not hang
  const t = tb.ones([4]);
  await d.allReduce(t);
  if (rank === 1) process.kill(process.pid, 'SIGKILL');
  const r = await d.allReduce(tb.ones([1_000_000])).then(() => 'no error', (e) => e.message);
  out({ error: r });
}

(async () => {
  if (scenario === 'before-init') {
    out({
      error: await d.allReduce(tb.ones([1])).then(() => 'no error', (e) => e.message),
      // refused before any rendezvous where the build lacks NCCL or the machine a GPU
      nccl: await d.initProcessGroup({ backend: 'nccl', rank: 0, worldSize: 1, timeoutMs: 2000 }).then(() => 'no error', (e) => e.message),
      ncclBuilt: d.isNcclAvailable(),
      gpus: tb.cuda.isAvailable() ? tb.cuda.deviceCount() : 0,
    });
    return;
  }
  if (scenario === 'join') {
    out({ error: await d.initProcessGroup({ timeoutMs }).then(() => 'no error', (e) => e.message) });
    process.exit(0);
  }
  if (world > 1 || scenario !== 'train') await d.initProcessGroup({ timeoutMs });
  if (scenario === 'collectives') await collectives();
  else if (scenario === 'train') await train({ optim: process.argv[3], accumulate: process.argv[4] === 'accumulate' });
  else if (scenario === 'mismatch') await mismatch();
  else if (scenario === 'interop') await interop();
  else if (scenario === 'killed') await killed();
  else if (scenario === 'elastic') await elastic();
  else throw new Error(`unknown scenario ${scenario}`);
  if (d.isInitialized()) await d.destroyProcessGroup();
  process.exit(0);
})().catch((e) => {
  process.stderr.write(`rank ${rank}: ${e.stack}\n`);
  process.exit(1);
});
