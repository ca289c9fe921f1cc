#!/usr/bin/env node
// torchbert and transformers.js (onnxruntime-node) in one process, taking turns, as a Node service that
// runs both would: bert-base's int8 copies on one short sentence (batch 1 x 24 tokens), each timed alone
// in a loop of its own and then call after call with the other, with onnxruntime's thread pools spinning
// between runs (its default) and not (session option `session.intra_op.allow_spinning` = '0', and inter_op).
// Both libraries' pools spin for a while after each call, on the cores the other one needs next.
// Usage: python3 scripts/fixtures.py bert onnx_base && node bench/coresident.js [--reps 30]
'use strict';
const path = require('path');
const tb = require('../dist');
const { fromPretrained } = require('../dist/models');
const { arg, median, now, cpuLine } = require('./common');

const DIR = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'bert', 'base');
const ONNX = path.join(__dirname, '..', 'test', 'fixtures', 'gen', 'onnx-base');
const [B, T] = [1, 24];
const REPS = Number(arg('--reps', '30'));

async function timed(f) {
  const t0 = now();
  await f();
  return now() - t0;
}

(async () => {
  const model = await fromPretrained(DIR);
  const int8 = model.eval().quantizeDynamic();
  const ids = tb.randint(1000, 30000, [B, T]);
  const mask = tb.ones([B, T], { dtype: 'int64' });
  const ours = () => tb.noGrad(() => int8.forward({ inputIds: ids, attentionMask: mask }));
  const { AutoModel, env, Tensor: JsTensor } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = path.dirname(ONNX) + path.sep;
  const t = (v) => new JsTensor('int64', new BigInt64Array(B * T).fill(v), [B, T]);
  const feeds = { input_ids: t(1000n), attention_mask: t(1n), token_type_ids: t(0n) };
  const rows = [];
  for (const spinning of [true, false]) {
    const flag = spinning ? '1' : '0';
    const js = await AutoModel.from_pretrained(path.basename(ONNX), {
      dtype: 'q8', device: 'cpu', session_options: { extra: { session: { intra_op: { allow_spinning: flag }, inter_op: { allow_spinning: flag } } } },
    });
    const theirs = () => js(feeds);
    const alone = async (f) => {
      for (let i = 0; i < 5; i++) await f();
      const ts = [];
      for (let i = 0; i < REPS; i++) ts.push(await timed(f));
      return median(ts);
    };
    const [oursAlone, theirsAlone] = [await alone(ours), await alone(theirs)];
    const [oursTurns, theirsTurns] = [[], []];
    for (let i = 0; i < REPS; i++) {
      theirsTurns.push(await timed(theirs));
      oursTurns.push(await timed(ours));
    }
    rows.push({
      onnxruntimeSpinning: spinning, torchbertAloneMs: oursAlone, transformersJsAloneMs: theirsAlone,
      torchbertInTurnsMs: median(oursTurns), transformersJsInTurnsMs: median(theirsTurns),
      pairInTurnsMs: median(oursTurns) + median(theirsTurns),
    });
    await js.dispose();
  }
  console.log(JSON.stringify({ cpu: cpuLine(tb), shape: `${B}x${T}`, reps: REPS, rows }, null, 2));
})();
