// Helpers the benchmark scripts share.
'use strict';

/** The value after `--key` on the command line, or `dflt`. */
const arg = (key, dflt) => (process.argv.includes(key) ? process.argv[process.argv.indexOf(key) + 1] : dflt);
/** The upper median (no averaging: a time that was measured). */
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** This machine's fp32 GEMM rate right now: five 2048^2 matmuls through libtorch, in GFLOP/s. */
function matmulPeak(tb) {
  const a = tb.randn([2048, 2048]);
  a.matmul(a).dispose();
  const t0 = now();
  for (let i = 0; i < 5; i++) a.matmul(a).dispose();
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
const { spawn } = require('child_process');
const ROOT = path.join(__dirname, '..');

/** SST-2 dev sentences (TORCHBERT_DATA, else ../shared/data). */
function sst2Sentences() {
  const data = process.env.TORCHBERT_DATA || path.join(ROOT, '..', 'shared', 'data');
  return fs.readFileSync(path.join(data, 'sst2', 'dev.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t')[0]);
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

module.exports = { arg, median, now, matmulPeak, cpuLine, sst2Sentences, startServer, stopServer, loadClassify };
