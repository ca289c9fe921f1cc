// Helpers the benchmark scripts share.
'use strict';

/** The value after `--key` on the command line, or `dflt`. */
const arg = (key, dflt) => (process.argv.includes(key) ? process.argv[process.argv.indexOf(key) + 1] : dflt);
// `torchbert serve` options the serving benchmarks hand on as given: with a value, or switches.
const SERVE_OPTIONS = ['--threads', '--workers', '--cpu-cache-mb', '--cpu-cache-batches', '--primitive-cache', '--weight-layouts', '--max-batch-size', '--max-batch-tokens'];
const SERVE_SWITCHES = ['--no-mmap', '--no-graph-optimize', '--embeddings-by-rows', '--low-memory'];
// The serving benchmarks' batch bound unless given: 1,024 tokens (rows: the server's own default, 16, or 8
// with --low-memory), bench/serve.js and bench/memory.js alike.
const SERVE_DEFAULTS = { '--max-batch-tokens': '1024' };
const serveFlags = (defaults = {}) => [
  ...SERVE_OPTIONS.flatMap((flag) => (arg(flag, defaults[flag]) ? [flag, String(arg(flag, defaults[flag]))] : [])),
  ...SERVE_SWITCHES.filter((flag) => process.argv.includes(flag)),
];
/**
 * How `torchbert serve` loads and runs its model under this command line's flags (`--low-memory`'s settings
 * where not given), for the benchmarks that run the same model in process.
 */
function serveSettings() {
  const low = process.argv.includes('--low-memory') ? require('../dist/serve/defaults').LOW_MEMORY_OPTIONS : {};
  return {
    mmap: !process.argv.includes('--no-mmap'),
    layouts: arg('--weight-layouts', low.weightLayouts ?? 'auto'),
    graphOptimize: (low.graphOptimize ?? true) && !process.argv.includes('--no-graph-optimize'),
    embeddingsByRows: !!low.embeddingsByRows || process.argv.includes('--embeddings-by-rows'),
  };
}
/** The upper median (no averaging: a time that was measured). */
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e6;

/**
 * The median wall time (ms) of each of `fns` over `reps` rounds, after `warmup` calls of each. The
 * functions take turns call by call in an order that rotates every round, so a slow phase of a shared
 * machine falls on all of them alike. `sync` runs after each call (a device synchronisation).
 */
async function timeInterleaved(fns, { reps, warmup = 2, warmEach = 0, sync = () => {} }) {
  for (const f of fns) for (let i = 0; i < warmup; i++) await f();
  sync();
  const ts = fns.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (let j = 0; j < fns.length; j++) {
      const k = (r + j) % fns.length;
      // warmEach: untimed calls of the same function first, so that its weights are back in the caches the
      // other functions' turns evicted (as in a loop of its own: how the peers are timed, and how a server runs)
      for (let w = 0; w < warmEach; w++) await fns[k]();
      sync();
      const t0 = now();
      await fns[k]();
      sync();
      ts[k].push(now() - t0);
    }
  }
  return ts.map(median);
}

/**
 * This machine's fp32 GEMM rate right now: five 2048^2 matmuls through libtorch, in GFLOP/s. Async: on the
 * compute thread with the intra-op threads (sync ops on the main thread run on one).
 */
async function matmulPeak(tb) {
  const mm = require('../dist/tensor').op('aten::mm');
  const a = tb.randn([2048, 2048]);
  (await mm.tAsync(a, a)).dispose();
  const t0 = now();
  for (let i = 0; i < 5; i++) (await mm.tAsync(a, a)).dispose();
  a.dispose();
  return (5 * 2 * 2048 ** 3) / ((now() - t0) / 1000) / 1e9;
}

/** The CPU a benchmark ran on, its ISA flags and libtorch's kernel dispatch level, for the docs' tables. */
function cpuLine(tb) {
  const { cpuInfo } = require('../dist/cpu');
  const c = cpuInfo();
  const env = ['ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]}`);
  return `${c.model} [${c.flags.join(' ')}]${env.length ? ` (${env.join(' ')})` : ''}, ${tb.getNumThreads()} threads`;
}

const fs = require('fs');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const ROOT = path.join(__dirname, '..');

/**
 * Runs a benchmark's Python side (`python3 -c code`, or $PYTHON) and returns the JSON value its last line
 * of output prints; extra environment variables in `env`. A failure throws with the end of its stderr.
 */
function pythonJson(code, { env } = {}) {
  const r = spawnSync(process.env.PYTHON || 'python3', ['-c', code], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`the Python side failed: ${r.stderr.slice(-4000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** The data folder: TORCHBERT_DATA, else ../shared/data next to the checkout. */
const DATA = process.env.TORCHBERT_DATA || path.join(ROOT, '..', 'shared', 'data');

/** SST-2 dev sentences. */
function sst2Sentences() {
  return fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t')[0]);
}

/** Starts a Node server script (args, then the port) from the repo root; resolves once its output matches `ready`. */
function startServer(args, port, ready) {
  const child = spawn(process.execPath, [...args, String(port)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const on = (d) => {
      out += d;
      if (ready.test(out)) resolve(child);
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (c) => reject(new Error(`server exited ${c}: ${out}`)));
  });
}
const stopServer = (child) => new Promise((r) => {
  child.removeAllListeners('exit');
  child.on('exit', r);
  child.kill('SIGTERM');
});

/** autocannon on /v1/classify: one sentence per request, cycling through `texts`, for `seconds`. */
function loadClassify(url, connections, texts, seconds) {
  const autocannon = require('autocannon');
  let i = 0;
  return new Promise((resolve, reject) => {
    autocannon({
      url: `${url}/v1/classify`,
      connections,
      duration: seconds,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ inputs: texts[i++ % texts.length] }) }) }],
      timeout: 60,
    }, (err, r) => (err ? reject(err) : resolve(r)));
  });
}

/**
 * Python source for the HF side of the training benchmarks (train.js times it, memory.js weighs it):
 * the bert-base-shape classifier from `dir` with SDPA attention, torch.optim.AdamW over weight-decay
 * groups (lr 2e-5, eps 1e-8, decay 0.01 except biases and LayerNorm), a random batch of B x T tokens, and
 * step(): forward, backward, clip to 1.0, AdamW, the loss read back; with bf16, forward and loss under
 * bfloat16 autocast (HF's bf16=True). Needs torch and transformers imported.
 */
function hfTrainingSetup(dir, B, T, { bf16 = false } = {}) {
  return `
torch.manual_seed(0)
m = transformers.BertForSequenceClassification.from_pretrained(${JSON.stringify(dir)}, attn_implementation='sdpa').train()
decay = [p for n, p in m.named_parameters() if not (n.endswith('bias') or 'LayerNorm' in n)]
nodecay = [p for n, p in m.named_parameters() if n.endswith('bias') or 'LayerNorm' in n]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01}, {'params': nodecay, 'weight_decay': 0.0}], lr=2e-5, eps=1e-8)
ids = torch.randint(1000, 30000, (${B}, ${T})); mask = torch.ones(${B}, ${T}, dtype=torch.long); y = torch.randint(0, 2, (${B},))
def step():
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=${bf16 ? 'True' : 'False'}):
        loss = m(input_ids=ids, attention_mask=mask, labels=y).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    return loss.item()
`;
}

module.exports = { DATA, arg, serveFlags, serveSettings, SERVE_DEFAULTS, median, pythonJson, now, timeInterleaved, matmulPeak, cpuLine, sst2Sentences, startServer, stopServer, loadClassify, hfTrainingSetup };
