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

module.exports = { arg, median, now, matmulPeak, cpuLine };
