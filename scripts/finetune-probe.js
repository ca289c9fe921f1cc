#!/usr/bin/env node
// Issue 20's fine-tuning probes on an encoder the main job pre-trained (OUT/pretrained), without
// pre-training again. Measurements for docs/results.md, not part of the library.
//
//   node scripts/finetune-probe.js pooling DIR SEED cls|mean [--epochs N] [--lr X] [--dropout X] [--freeze PREFIX]...
//     fine-tunes DIR by the job's first recipe (one epoch of SST-2, AdamW lr 4e-4, 6% warmup, batch 32, the
//     seed's head weights and batches; the job's since 5 December is --epochs 2 --lr 1e-4) with the
//     classifier on HF's pooler ([CLS], 'cls') or on the mean of the last hidden states over the real tokens
//     ('mean', dropout 0.1 as HF's head), and prints dev accuracy; --epochs: that many epochs, the schedule
//     over all of them; --dropout: BERT's hidden and attention dropout (0.1); --freeze: parameters whose
//     names start with PREFIX keep their pre-trained values
//   node scripts/finetune-probe.js spread DIR...
//     how much the encoder's last hidden states at [CLS] and at the second word piece vary across 64 dev
//     sentences (standard deviation per dimension, averaged): a collapsed encoder gives every sentence
//     nearly the same vectors
// Needs the built package (npm run build); the data folder from TORCHBERT_DATA (default ../shared/data).
'use strict';
const path = require('path');
const { parseArgs } = require('util');
const tb = require('..');
const { F } = tb;
const { Trainer, padCollate, batchIndices, EpochBatches, accuracy } = tb.train;
const { fromPretrained } = tb.models;

const DATA = process.env.TORCHBERT_DATA || path.join(__dirname, '..', '..', 'shared', 'data');
const sst2 = (split) => tb.datasets.readSst2(path.join(DATA, 'sst2', `${split}.tsv`));

async function pooling(dir, seed, mode, { epochs = 1, lr = 4e-4, dropout = 0.1, freeze = [] } = {}) {
  if (!['cls', 'mean'].includes(mode)) throw new TypeError(`pooling must be 'cls' or 'mean', got ${mode}`);
  if (!(epochs > 0)) throw new RangeError(`--epochs must be a positive number, got ${epochs}`);
  if (!(lr > 0)) throw new RangeError(`--lr must be a positive number, got ${lr}`);
  if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`--dropout must be in [0, 1), got ${dropout}`);
  const tok = await tb.BertTokenizer.fromPretrained(dir);
  const ids = (t, n) => tok.call(t, undefined, { truncation: true, maxLength: n }).inputIds;
  const trainEx = sst2('train').map((r, i) => ({ inputIds: ids(r.text, 64), label: r.label, i }));
  const devEx = sst2('dev').map((r) => ({ inputIds: ids(r.text, 128), label: r.label }));
  const devOrder = batchIndices(devEx.map((e) => e.inputIds.length), 64, { shuffle: false });
  const devBatches = devOrder.map((idx) => padCollate(idx.map((i) => devEx[i]), tok.padTokenId));
  const devGold = devOrder.flat().map((i) => devEx[i].label);
  // the job's seeding (lib/recipes/scratch.ts): head weights from seed + 2, then batches and dropout
  tb.manualSeed(seed + 2);
  const m = await fromPretrained(dir, { kind: 'BertForSequenceClassification', config: { num_labels: 2, hidden_dropout_prob: dropout, attention_probs_dropout_prob: dropout } });
  const sd = m.stateDict();
  const [w, b] = [sd.get('classifier.weight'), sd.get('classifier.bias')];
  const frozen = m.namedParameters().filter(([n]) => freeze.some((f) => n.startsWith(f)));
  if (freeze.length && !frozen.length) throw new RangeError(`--freeze ${freeze.join(', ')}: no parameter name starts so`);
  for (const [, p] of frozen) p.requiresGrad = false; // the optimizer skips parameters without a gradient
  const logits = async (inputs) => {
    if (mode === 'cls') return (await m.forward(inputs)).logits;
    const h = (await m.forward({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, outputHiddenStates: true })).hiddenStates.at(-1);
    const mask = inputs.attentionMask.unsqueeze(-1).float();
    return F.linear(F.dropout(h.mul(mask).sum(1).div(mask.sum(1)), 0.1, m.training), w, b);
  };
  tb.manualSeed(seed + 2);
  const batches = new EpochBatches(trainEx.map((e) => e.inputIds.length), 32, { seed: seed + 2, groupByLength: true });
  await new Trainer(m, {
    name: 'probe', learningRate: lr, weightDecay: 0.01, warmupRatio: 0.06, maxSteps: Math.ceil(epochs * trainEx.length / 32), timeBudgetSec: 120 * epochs, fitScheduleToTimeBudget: true, loggingSteps: 500, log: () => {},
  }).train(
    (step) => padCollate(batches.at(step).map((i) => trainEx[i]), tok.padTokenId),
    (bt) => ({ inputIds: bt.inputIds, attentionMask: bt.attentionMask, labels: bt.labels }),
    undefined,
    async (inputs) => F.crossEntropy(await logits(inputs), inputs.labels),
  );
  m.eval();
  const pred = [];
  for (const bt of devBatches) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const l = await tb.noGrad(() => logits({ inputIds: bt.inputIds, attentionMask: bt.attentionMask }));
      for (const v of await l.argmax(-1).data()) pred.push(Number(v));
    });
    scope.dispose();
  }
  m.dispose();
  const variant = [epochs !== 1 && `${epochs} epochs`, lr !== 4e-4 && `lr ${lr}`, dropout !== 0.1 && `dropout ${dropout}`, freeze.length && `frozen ${freeze.join(', ')}`].filter(Boolean).join(', ');
  console.log(`${dir} seed ${seed} ${mode}${variant ? ` (${variant})` : ''}: dev accuracy ${(100 * accuracy(pred, devGold)).toFixed(2)}%`);
}

async function spread(dirs) {
  const texts = sst2('dev').slice(0, 64).map((r) => r.text);
  for (const dir of dirs) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const tok = await tb.BertTokenizer.fromPretrained(dir);
      const m = await fromPretrained(dir, { kind: 'BertModel' });
      m.eval();
      const enc = tok.call(texts, undefined, { padding: true, returnTensors: 'pt' });
      const out = await tb.noGrad(() => m.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask }));
      const std = (t) => t.std(0).mean().item().toFixed(4);
      const h = out.lastHiddenState;
      console.log(`${dir}: [CLS] ${std(h.select(1, 0))}, second word piece ${std(h.select(1, 2))}`);
      m.dispose();
    });
    scope.dispose();
  }
}

const { positionals: [cmd, ...args], values: v } = parseArgs({
  allowPositionals: true,
  options: { epochs: { type: 'string' }, lr: { type: 'string' }, dropout: { type: 'string' }, freeze: { type: 'string', multiple: true } },
});
(cmd === 'pooling' ? pooling(args[0], Number(args[1] ?? 0), args[2] ?? 'cls', { epochs: Number(v.epochs ?? 1), lr: Number(v.lr ?? 4e-4), dropout: Number(v.dropout ?? 0.1), freeze: v.freeze ?? [] })
  : cmd === 'spread' ? spread(args)
    : Promise.reject(new Error('usage: finetune-probe.js pooling DIR SEED cls|mean [--epochs N] [--lr X] [--dropout X] [--freeze PREFIX]... | spread DIR...'))
).catch((e) => { console.error(e.message); process.exit(1); });
