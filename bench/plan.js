#!/usr/bin/env node
// The GEMM plans prepack() and quantizeDynamic() measure on this machine for bert-base's linear layers:
// per shape and row count, ms per call of our packed kernel, oneDNN and ATen (fp32), oneDNN and ATen on
// bf16 weights (prepack() of a bf16 model; on CPUs with bf16 units), fbgemm and oneDNN (int8), and the
// choice. Measured fresh (the tuning cache is neither read nor written).
// Usage: node bench/plan.js [--json]
'use strict';
process.env.TORCHBERT_TUNING_CACHE = '0';
const tb = require('../dist');
const { op } = require('../dist/tensor');
const { decideInt8 } = require('../dist/models/linear-plan');
const { cpuLine } = require('./common');
const { cpuInfo } = require('../dist/cpu');

const SHAPES = [[2304, 768, 'none', 'QKV'], [768, 768, 'none', 'attention out'], [3072, 768, 'gelu', 'FFN up + GELU'], [768, 3072, 'none', 'FFN down']];
const ROWS = [1, 4, 16, 64, 256, 1024, 4096];
const fp32 = [];
const bf16 = [];
const int8 = [];
const BF16 = cpuInfo().bf16;
for (const [n, k, act, what] of SHAPES) {
  const ms = op('torchbert::tune_linear').raw(n, k, act);
  const choices = op('torchbert::linear_plan').raw(n, k, act);
  ROWS.forEach((rows, b) => fp32.push({ layer: what, rows, torchbertMs: +ms[3 * b].toFixed(3), onednnMs: +ms[3 * b + 1].toFixed(3), atenMs: +ms[3 * b + 2].toFixed(3), choice: ['torchbert', 'onednn', 'aten'][choices[b]] }));
  if (BF16) {
    const b16 = op('torchbert::tune_linear').raw(n, k, act, 'bfloat16');
    const c16 = op('torchbert::linear_plan').raw(n, k, act, 'bfloat16');
    ROWS.forEach((rows, b) => bf16.push({ layer: what, rows, onednnMs: +b16[3 * b + 1].toFixed(3), atenMs: +b16[3 * b + 2].toFixed(3), choice: ['torchbert', 'onednn', 'aten'][c16[b]] }));
  }
  const q = op('torchbert::tune_int8_linear').raw(n, k);
  int8.push({ layer: what, ...Object.fromEntries(ROWS.map((rows, b) => [`r${rows}`, `${q[2 * b].toFixed(2)}/${q[2 * b + 1].toFixed(2)}`])), ...decideInt8(q) });
}
if (process.argv.includes('--json')) {
  console.log(JSON.stringify({ cpu: cpuLine(tb), fp32, bf16, int8 }, null, 2));
} else {
  console.log(cpuLine(tb));
  console.log('fp32 (prepack): ms per call');
  console.table(fp32);
  if (BF16) {
    console.log('bf16 (prepack() of a bf16 model): ms per call');
    console.table(bf16);
  } else console.log('bf16: not measured (this CPU has no bf16 units)');
  console.log('int8 (quantizeDynamic): ms per call, fbgemm/onednn');
  console.table(int8);
}
