#!/usr/bin/env node
// Memory benchmark: peak resident memory (the kernel's high-water mark: getrusage maxrss, /proc VmHWM)
//  - of a training run: a bert-base-shape BertForSequenceClassification, batch 16 x 128 tokens, fp32,
//    forward + backward + clip + AdamW (weight decay groups) for --steps steps, each side in its own fresh
//    process: torchbert (Node) against HF transformers + torch.optim.AdamW (Python), same torch build;
//  - of the servers under load: `torchbert serve` (its default: prepack()ed fp32) against the fastify +
//    transformers.js (onnxruntime) server of bench/serve.js, each loaded with SST-2 dev sentences at
//    concurrency 64 for --seconds, one after the other.
// Each process's peak includes its runtime and libtorch (or onnxruntime) themselves; "after load" is the
// resident memory once the model is loaded, before the first step or request. With the servers, the
// resident memory of a torchbert process stage by stage up to its first forward.
// Usage: python3 scripts/fixtures.py serve_base && node bench/memory.js [--steps 3] [--seconds 10] [--only train|serve]
//   [--rounds N] (N runs of each server, taking turns; the median peaks' ratio)
//   [--windows N] (the load in N windows, the servers' resident memory after each: growth under sustained load)
//   [--no-mmap] (torchbert reads its checkpoint into memory instead of mapping it, the server's default)
//   [--weight-layouts auto|one] (the server's prepacked layouts: a second where it measured faster, or one per layer)
//   [--no-graph-optimize] (the server without TorchScript's optimised plans: `serve --no-graph-optimize`)
//   [--embeddings-by-rows] [--low-memory] (the word embeddings paged in by rows; `serve --low-memory`'s settings)
//   [--max-batch-size N] [--max-batch-tokens N] [--cpu-cache-mb N] [--cpu-cache-batches X] [--primitive-cache N] [--workers N] [--threads N] (handed to `torchbert
//   serve`; batches of at most 1,024 tokens unless given, as in bench/serve.js)
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { arg, median, serveFlags, serveSettings, SERVE_DEFAULTS, cpuLine, startServer, stopServer, loadClassify, sst2Sentences, hfTrainingSetup } = require('./common');

const ROOT = path.join(__dirname, '..');
const DIR = path.join(ROOT, 'test', 'fixtures', 'gen', 'serve-base');
const STEPS = Number(arg('--steps', '3'));
const SECONDS = Number(arg('--seconds', '10'));
const ONLY = arg('--only', null); // train | serve
const ROUNDS = Number(arg('--rounds', '1')); // servers' runs, taking turns; the median peak of each side
const WINDOWS = Number(arg('--windows', '1')); // the load split in windows, resident memory read after each
const SERVER_ARGS = serveFlags(SERVE_DEFAULTS);
// The same settings for the in-process startup readings.
const { mmap: MMAP, layouts: LAYOUTS, graphOptimize: GRAPH_OPTIMIZE, embeddingsByRows: BY_ROWS } = serveSettings();
const B = 16;
const T = 128;
const MB = (kb) => kb / 1024;

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function torchbertTraining() {
  const code = `
const tb = require(${JSON.stringify(path.join(ROOT, 'dist'))});
const { fromPretrained } = require(${JSON.stringify(path.join(ROOT, 'dist', 'models'))});
const { AdamW, clipGradNormAsync, weightDecayGroups } = require(${JSON.stringify(path.join(ROOT, 'dist', 'train'))});
const fs = require('fs');
const rssKb = () => Number(/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
(async () => {
  tb.manualSeed(0);
  const m = await fromPretrained(${JSON.stringify(DIR)}, { kind: 'BertForSequenceClassification' });
  m.train();
  const opt = new AdamW(weightDecayGroups(m.namedParameters(), 0.01), { lr: 2e-5, eps: 1e-8 });
  const ids = tb.randint(1000, 30000, [${B}, ${T}]);
  const mask = tb.ones([${B}, ${T}], { dtype: 'int64' });
  const y = tb.randint(0, 2, [${B}]);
  const afterLoad = rssKb();
  for (let i = 0; i < ${STEPS}; i++) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const out = await m.forward({ inputIds: ids, attentionMask: mask, labels: y });
      await out.loss.backward();
      await clipGradNormAsync(m.parameters(), 1.0);
      await opt.step();
      opt.zeroGrad();
      out.loss.item();
    });
    scope.dispose();
  }
  console.log(JSON.stringify({ afterLoadKb: afterLoad, peakKb: process.resourceUsage().maxRSS, endKb: rssKb() }));
})().catch((e) => { console.error(e); process.exit(1); });`;
  return run(process.execPath, ['-e', code], 'torchbert training');
}

function hfTraining() {
  const code = `
import json, resource, torch, transformers
def rss_kb():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
${hfTrainingSetup(DIR, B, T)}after = rss_kb()
for _ in range(${STEPS}):
    step()
print(json.dumps({'afterLoadKb': after, 'peakKb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 'endKb': rss_kb()}))`;
  return run(process.env.PYTHON || 'python3', ['-c', code], 'HF training');
}

// Where a prepacked server's resident memory comes from before its first request, stage by stage.
function torchbertStartup() {
  const code = `
const fs = require('fs');
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
const out = { nodeKb: rss() };
const tb = require(${JSON.stringify(path.join(ROOT, 'dist'))});
out.libtorchKb = rss();
const { fromPretrained } = require(${JSON.stringify(path.join(ROOT, 'dist', 'models'))});
const { BertTokenizer } = require(${JSON.stringify(path.join(ROOT, 'dist', 'tokenizer'))});
(async () => {
  if (!${GRAPH_OPTIMIZE}) tb.setGraphExecutorOptimize(false);
  await BertTokenizer.fromPretrained(${JSON.stringify(DIR)});
  out.tokenizerKb = rss();
  const m = await fromPretrained(${JSON.stringify(DIR)}, { prepack: { layouts: '${LAYOUTS}' }, mmap: ${MMAP}, embeddingsByRows: ${BY_ROWS} });
  out.modelKb = rss();
  await tb.noGrad(() => m.forward({ inputIds: tb.tensor([[101, 2000, 2001, 102]], { dtype: 'int64' }) }));
  out.firstForwardKb = rss();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });`;
  return run(process.execPath, ['-e', code], 'torchbert startup');
}

const statusKb = (pid, key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

// Each model file wholly in the page cache before a server starts, as after a download or a copy: what a
// mapped server keeps resident depends on what the cache holds (the kernel maps the cached pages around
// each fault), so every run starts from the same state, whatever the one before left.
function cacheFiles(dir) {
  const buf = Buffer.allocUnsafe(16 << 20);
  for (const f of ['model.safetensors', path.join('onnx', 'model.onnx')]) {
    const fd = fs.openSync(path.join(dir, f), 'r');
    try {
      while (fs.readSync(fd, buf) > 0);
    } finally {
      fs.closeSync(fd);
    }
  }
}

async function serverPeak(name, args, ready, port, texts) {
  cacheFiles(DIR);
  const child = await startServer(args, port, ready);
  try {
    const afterLoad = statusKb(child.pid, 'VmRSS');
    // anonymous (heap, weights) and file-backed (the runtime's code pages) resident memory
    const split = { anonKb: statusKb(child.pid, 'RssAnon'), fileKb: statusKb(child.pid, 'RssFile') };
    const rssKb = [];
    const fileKbs = [];
    let requests = 0;
    let errors = 0;
    for (let w = 0; w < WINDOWS; w++) {
      const r = await loadClassify(`http://127.0.0.1:${port}`, 64, texts, SECONDS / WINDOWS);
      requests += r.requests.total;
      errors += r.errors + r.non2xx;
      rssKb.push(statusKb(child.pid, 'VmRSS'));
      fileKbs.push(statusKb(child.pid, 'RssFile'));
    }
    return { server: name, afterLoadKb: afterLoad, ...split, peakKb: statusKb(child.pid, 'VmHWM'), rssKb, fileKbs, reqPerSec: requests / SECONDS, errors };
  } finally {
    await stopServer(child);
  }
}

(async () => {
  console.log(cpuLine(require('../dist')));
  let train = null;
  if (ONLY !== 'serve') {
    const ours = torchbertTraining();
    const hf = hfTraining();
    train = { steps: STEPS, torchbert: ours, hf, peakRatio: ours.peakKb / hf.peakKb };
    console.log(`training (B ${B}, T ${T}, ${STEPS} steps): peak RSS torchbert ${MB(ours.peakKb).toFixed(0)} MB, HF + torch.optim ${MB(hf.peakKb).toFixed(0)} MB: ` +
      `${train.peakRatio.toFixed(2)}x (after load ${MB(ours.afterLoadKb).toFixed(0)} vs ${MB(hf.afterLoadKb).toFixed(0)} MB)`);
  }
  if (ONLY === 'train') return console.log(JSON.stringify({ cpu: cpuLine(require('../dist')), train }));
  const startup = torchbertStartup();
  console.log(`torchbert startup, resident MB: node ${MB(startup.nodeKb).toFixed(0)}, + libtorch ${MB(startup.libtorchKb).toFixed(0)}, + tokenizer ` +
    `${MB(startup.tokenizerKb).toFixed(0)}, + prepacked model ${MB(startup.modelKb).toFixed(0)}, + first forward ${MB(startup.firstForwardKb).toFixed(0)}`);
  const texts = sst2Sentences();
  // Rounds take turns, torchbert then the peer: the peer's own peak moves by up to 70 MB from run to run.
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const servers = [
      await serverPeak('torchbert', [path.join('dist', 'cli.js'), 'serve', DIR, ...SERVER_ARGS, '--port'], /serving/, 18611, texts),
      await serverPeak('transformers.js', [path.join('bench', 'peers', 'transformersjs-server.js'), DIR, 'fp32'], /serving on/, 18612, texts),
    ];
    if (ROUNDS > 1) console.log(`round ${r + 1} of ${ROUNDS}:`);
    for (const s of servers) {
      console.log(`server ${s.server}: peak RSS ${MB(s.peakKb).toFixed(0)} MB under c=64 for ${SECONDS} s (after load ${MB(s.afterLoadKb).toFixed(0)} MB: anonymous ${MB(s.anonKb).toFixed(0)}, file-backed ${MB(s.fileKb).toFixed(0)}), ${s.reqPerSec.toFixed(1)} req/s, ${s.errors} errors`);
      if (WINDOWS > 1) console.log(`  resident MB after each ${(SECONDS / WINDOWS).toFixed(0)} s: ${s.rssKb.map((k) => MB(k).toFixed(0)).join(' ')} (file-backed ${s.fileKbs.map((k) => MB(k).toFixed(0)).join(' ')})`);
    }
    console.log(`server peak ratio torchbert / transformers.js: ${(servers[0].peakKb / servers[1].peakKb).toFixed(2)}x`);
    rounds.push(servers);
  }
  const peaks = (i) => rounds.map((servers) => servers[i].peakKb);
  const serveRatio = median(peaks(0)) / median(peaks(1));
  if (ROUNDS > 1) {
    const range = (xs) => `${MB(Math.min(...xs)).toFixed(0)}-${MB(Math.max(...xs)).toFixed(0)}`;
    console.log(`over ${ROUNDS} rounds, median peak torchbert ${MB(median(peaks(0))).toFixed(0)} MB (${range(peaks(0))}), transformers.js ${MB(median(peaks(1))).toFixed(0)} MB (${range(peaks(1))}): ${serveRatio.toFixed(2)}x`);
  }
  console.log(JSON.stringify({ cpu: cpuLine(require('../dist')), serverArgs: SERVER_ARGS, train, startup, rounds, serveRatio }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
