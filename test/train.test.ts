// Training utilities: masked-LM collation semantics, padding collator, batching, metrics, the Trainer
// and the masked-positions MLM loss.
import * as tb from '../lib';
import { padCollate, packSequences, maskTokens, batchIndices, accuracy, f1, mcc, Trainer, AdamW } from '../lib/train';
import { seededPermutation, seededRandom } from '../lib/distributed/sampler';
import { sst2FullSentences, rtPolarityOutside, sstSpelling } from '../lib/data/datasets';
import { fromConfig, fromPretrained } from '../lib/models';
import type { BertPreTrainedModel, BertInputs } from '../lib/models';

test('masked-LM collation: ~15% masked, 80/10/10, specials and padding never masked', () => {
  tb.manualSeed(0);
  const ids = tb.randint(10, 1000, [128, 64]);
  ids.select(1, 0).fill_(2); // [CLS]
  ids.slice(1, 60).fill_(0); // padding
  const { inputIds, labels } = maskTokens(ids, { maskTokenId: 4, vocabSize: 1000, specialIds: [2, 3], padId: 0 });
  const masked = labels.ne(-100);
  const eligible = 128 * 58;
  const n = masked.float().sum().item() as number;
  expect(Math.abs(n / eligible - 0.15)).toBeLessThan(0.01);
  expect(masked.select(1, 0).any().item()).toBe(false);
  expect(masked.slice(1, 60).any().item()).toBe(false);
  expect(labels.maskedSelect(masked).equal(ids.maskedSelect(masked))).toBe(true);
  const toMask = inputIds.eq(4).logicalAnd(masked).float().sum().item() as number;
  const kept = inputIds.eq(ids).logicalAnd(masked).float().sum().item() as number;
  expect(Math.abs(toMask / n - 0.8)).toBeLessThan(0.03);
  expect(Math.abs(kept / n - 0.1)).toBeLessThan(0.03);
  expect(inputIds.ne(ids).logicalAnd(masked.logicalNot()).any().item()).toBe(false);
});

test('masked-LM collation with tokenWeights: each id masked at mlmProbability times its weight, capped at 1', () => {
  tb.manualSeed(1);
  // ids 10..13 in equal numbers: weights 0, 1, 2, and 10 (0.15 x 10 caps at 1)
  const ids = tb.randint(10, 14, [256, 64]);
  ids.select(1, 0).fill_(2);
  const tokenWeights = tb.tensor(Float32Array.from({ length: 20 }, (_, i) => [0, 1, 2, 10][i - 10] ?? 1), { shape: [20] });
  const { labels } = maskTokens(ids, { maskTokenId: 4, vocabSize: 20, specialIds: [2, 3], padId: 0, tokenWeights });
  const rate = (id: number) => (labels.eq(id).float().sum().item() as number) / (ids.eq(id).float().sum().item() as number);
  expect(rate(10)).toBe(0);
  expect(Math.abs(rate(11) - 0.15)).toBeLessThan(0.02);
  expect(Math.abs(rate(12) - 0.3)).toBeLessThan(0.02);
  expect(rate(13)).toBe(1);
  expect(labels.select(1, 0).ne(-100).any().item()).toBe(false); // [CLS] stays unmasked whatever its weight
  expect(() => maskTokens(ids, { maskTokenId: 4, vocabSize: 30, specialIds: [2], tokenWeights })).toThrow(/tokenWeights must be float32 \[30\].*got float32 \[20\]/);
});

test('padding collator and length-grouped seeded batches', () => {
  const b = padCollate([{ inputIds: [1, 2, 3], label: 1 }, { inputIds: [1, 2], label: 0 }], 0, 4);
  expect(b.inputIds.toArraySync()).toEqual([[1n, 2n, 3n, 0n], [1n, 2n, 0n, 0n]]);
  expect(b.attentionMask.toArraySync()).toEqual([[1n, 1n, 1n, 0n], [1n, 1n, 0n, 0n]]);
  expect(b.labels!.toArraySync()).toEqual([1n, 0n]);
  const lengths = Array.from({ length: 100 }, (_, i) => (i * 37) % 50);
  const a1 = batchIndices(lengths, 8, { seed: 3, groupByLength: true });
  expect(batchIndices(lengths, 8, { seed: 3, groupByLength: true })).toEqual(a1);
  expect(a1.flat().sort((x, y) => x - y)).toEqual(lengths.map((_, i) => i));
  expect(batchIndices(lengths, 8, { seed: 4 })).not.toEqual(batchIndices(lengths, 8, { seed: 3 }));
});

test('one seeded generator for the shuffles: Numerical Recipes\' LCG, the permutation a Fisher-Yates over it', () => {
  const rnd = seededRandom(7);
  // the recurrence in exact integers: s' = (1664525 s + 1013904223) mod 2^32, drawn as s' / 2^32
  let s = 7n;
  for (let i = 0; i < 5; i++) {
    s = (1664525n * s + 1013904223n) % 2n ** 32n;
    expect(rnd()).toBe(Number(s) / 2 ** 32);
  }
  expect(seededRandom(-1)()).toBe(seededRandom(2 ** 32 - 1)()); // seeds are taken modulo 2^32
  const r = seededRandom(11);
  const order = [0, 1, 2, 3, 4, 5];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  expect(seededPermutation(6, 11)).toEqual(order);
});

test('packed pre-training rows: lines joined by [SEP], cut into full [CLS] ... [SEP] rows, the rest kept', () => {
  // CLS 1, SEP 2; rows of 6 hold 4 tokens of text between them.
  expect(packSequences([[10, 11], [], [12, 13, 14], [15, 16]], 6, 1, 2)).toEqual([
    [1, 10, 11, 2, 12, 2],
    [1, 13, 14, 2, 15, 2],
    [1, 16, 2, 2],
  ]);
  // text that ends on a row boundary leaves no row of separators alone
  expect(packSequences([[10, 11], [], [12, 13, 14], [15]], 6, 1, 2)).toEqual([
    [1, 10, 11, 2, 12, 2],
    [1, 13, 14, 2, 15, 2],
  ]);
  expect(() => packSequences([[10]], 2, 1, 2)).toThrow(/seqLen must be an integer >= 3, got 2/);
});

test('SST-2 sentences from its phrases: rows inside a longer row (on word boundaries) are dropped', () => {
  const rows = ['a gripping film ', 'gripping', 'a gripping film , beautifully acted', 'beautifully acted', 'film ,', 'dull', 'grip', 'dull  and long'];
  expect(sst2FullSentences(rows).sort()).toEqual(['a gripping film , beautifully acted', 'dull and long', 'grip']);
});

test('Rotten Tomatoes snippets outside SST-2: known rows and any overlap with held-out sentences are dropped', () => {
  const rt = ['it\'s a gem .', 'a dull , dull film', 'the best film of the year , and more', 'film of the', 'so funny it hurts', 'the cast is good but slow'].map((text, i) => ({ text, label: i % 2 }));
  const kept = rtPolarityOutside(rt, ['it \'s a gem'], ['The best film of the year', 'the cast is good and so on']);
  // known (spelt differently); holds a held-out sentence; sits in one; shares 'the cast is good'
  expect(kept).toEqual([rt[1], rt[4]]);
  expect(rtPolarityOutside(rt, [], [])).toEqual(rt);
});

test('sstSpelling writes Rotten Tomatoes the Penn Treebank way SST does', () => {
  expect(sstSpelling('he doesn\'t , can\'t and won\'t')).toBe("he does n't , ca n't and wo n't");
  expect(sstSpelling('i cannot say " yes " or " no "')).toBe("i can not say `` yes '' or `` no ''");
  expect(sstSpelling("it's the director's cut")).toBe("it's the director's cut");
});

test('metrics equal their definitions', () => {
  const gold = [1, 0, 1, 1, 0, 0, 1, 0];
  const pred = [1, 0, 0, 1, 0, 1, 1, 0];
  expect(accuracy(pred, gold)).toBe(6 / 8);
  // tp=3, fp=1, fn=1 -> 6/8
  expect(f1(pred, gold)).toBeCloseTo(0.75, 12);
  expect(f1(pred, gold, 'macro')).toBeCloseTo(0.75, 12);
  // (tp*tn - fp*fn)/sqrt(...) = (3*3-1*1)/sqrt(4*4*4*4) = 0.5
  expect(mcc(pred, gold)).toBeCloseTo(0.5, 12);
  expect(() => accuracy([1], [1, 0])).toThrow(/1 predictions for 2 labels/);
});

test('mlmLoss on masked positions equals the full forward loss', async () => {
  tb.manualSeed(0);
  const m = fromConfig('BertForMaskedLM', { vocab_size: 200, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32 }).eval();
  const ids = tb.randint(5, 200, [4, 16]);
  const labels = ids.maskedFill(tb.rand([4, 16]).gt(0.3), -100);
  const full = (await m.forward({ inputIds: ids, labels })).loss!.item() as number;
  const part = (await m.mlmLoss({ inputIds: ids, labels })).item() as number;
  expect(Math.abs(full - part)).toBeLessThan(1e-5);
  // the same loss, and the full forward's logits at the masked positions in row-major order
  const both = await m.mlmLossAndLogits({ inputIds: ids, labels });
  expect(Math.abs((both.loss.item() as number) - part)).toBeLessThan(1e-6);
  const logits = (await m.forward({ inputIds: ids })).logits!;
  const sel = labels.ne(-100);
  expect(both.logits.shape).toEqual([sel.sum().item() as number, 200]);
  expect(both.logits.sub(logits.index([sel])).abs().max().item()).toBeLessThan(1e-5);
  // nothing masked (a data-parallel rank's share of a batch of one-word phrases): 0 and zero gradients, not NaN
  m.train();
  const none = await m.mlmLoss({ inputIds: ids, labels: tb.fullLike(ids, -100) });
  expect(none.item()).toBe(0);
  await none.backward();
  const grads = m.parameters().map((p) => p.grad).filter((g) => g !== null);
  expect(grads.length).toBeGreaterThan(0);
  for (const g of grads) expect(g!.abs().max().item()).toBe(0);
});

test('mlmBagOfWordsLoss: the masked-LM loss plus the [CLS] bag-of-words cross entropy of the full forward', async () => {
  const { bagOfWordsTargets } = tb.train;
  tb.manualSeed(0);
  const V = 200;
  const m = fromConfig('BertForMaskedLM', { vocab_size: V, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32 }).eval();
  const ids = tb.randint(5, V, [4, 16]);
  ids.select(1, 0).fill_(1); // [CLS]-like special first token
  ids.select(0, 3).narrow(0, 10, 6).fill_(0); // a padded row
  const specials = [0, 1, 2, 3, 4];
  const labels = ids.maskedFill(tb.rand([4, 16]).gt(0.3).logicalOr(ids.lt(5)), -100);
  // targets: uniform over each row's distinct non-special ids
  const bow = bagOfWordsTargets(ids, V, specials);
  const rows = ids.toArraySync() as number[][];
  const got = bow.toArraySync() as number[][];
  rows.forEach((r, i) => {
    const distinct = [...new Set(r.map(Number).filter((t) => t >= 5))];
    const want = Array.from({ length: V }, (_, t) => (distinct.includes(t) ? 1 / distinct.length : 0));
    got[i].forEach((x, t) => expect([i, t, x]).toEqual([i, t, expect.closeTo(want[t], 7)]));
  });
  // the loss against the full forward: its masked-LM loss and the log-softmax of its [CLS] logits
  const out = await m.forward({ inputIds: ids, labels });
  const reference = tb.noGrad(() => bow.mul(out.logits!.select(1, 0).logSoftmax(-1)).sum().neg().div(4)).item() as number;
  const r = await m.mlmBagOfWordsLoss({ inputIds: ids, labels, bagOfWords: bow }, 0.5);
  expect(Math.abs((r.bagOfWords.item() as number) - reference)).toBeLessThan(1e-5);
  expect(Math.abs((r.loss.item() as number) - ((out.loss!.item() as number) + 0.5 * reference))).toBeLessThan(1e-5);
  // gradients reach the word embeddings through both terms
  m.train();
  const g = await m.mlmBagOfWordsLoss({ inputIds: ids, labels: tb.fullLike(ids, -100), bagOfWords: bow });
  await g.loss.backward();
  expect(m.parameters().some((p) => p.grad !== null && (p.grad.abs().max().item() as number) > 0)).toBe(true);
  await expect(m.mlmBagOfWordsLoss({ inputIds: ids, labels, bagOfWords: bow.narrow(1, 0, 10) })).rejects.toThrow(/bagOfWords must be \[4, 200\].*got \[4, 10\]/);
  await expect(m.mlmBagOfWordsLoss({ inputIds: ids, labels, bagOfWords: bow }, -1)).rejects.toThrow(/weight must be .* got -1/);
  const cls = fromConfig('BertForSequenceClassification', { vocab_size: V, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64 });
  await expect(cls.mlmBagOfWordsLoss({ inputIds: ids, labels, bagOfWords: bow })).rejects.toThrow(/needs a BertForMaskedLM/);
  [m, cls].forEach((x) => x.dispose());
});

test('the [CLS] bag-of-words term is learnable: the vector comes to predict its row\'s words', async () => {
  const { bagOfWordsTargets } = tb.train;
  tb.manualSeed(0);
  const V = 40;
  const m = fromConfig('BertForMaskedLM', { vocab_size: V, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16 });
  const opt = new AdamW(m.parameters(), { lr: 3e-3 });
  let last = Infinity;
  for (let step = 0; step < 300; step++) {
    const scope = new tb.DisposeScope();
    last = await scope.run(async () => {
      // [CLS] and 4 random words of 35; no masked positions, so the loss is the bag term alone
      const ids = tb.cat([tb.full([32, 1], 1, { dtype: 'int64' }), tb.randint(5, V, [32, 4])], 1);
      const r = await m.mlmBagOfWordsLoss({ inputIds: ids, labels: tb.fullLike(ids, -100), bagOfWords: bagOfWordsTargets(ids, V, [0, 1, 2, 3, 4]) });
      await r.loss.backward();
      await opt.step();
      opt.zeroGrad();
      return r.bagOfWords.item() as number;
    });
    scope.dispose();
  }
  // log(35) = 3.56 is the best a vector that ignores the row can do; knowing the row's 4 words, log(4) = 1.39
  expect(last).toBeLessThan(Math.log(35) - 0.4);
  m.dispose();
});

test('Trainer lowers the loss of a learnable task and logs JSONL', async () => {
  tb.manualSeed(0);
  const m = fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16, num_labels: 2 });
  // label = whether token 7 occurs
  const data = Array.from({ length: 64 }, (_, i) => {
    const ids = [1, ...Array.from({ length: 6 }, (_, j) => 10 + ((i * 7 + j * 3) % 30)), 2];
    if (i % 2) ids[3] = 7;
    return { inputIds: ids, label: i % 2 };
  });
  const lines: string[] = [];
  const trainer = new Trainer(m, { learningRate: 3e-3, maxSteps: 60, loggingSteps: 20, log: (s) => lines.push(s) });
  const res = await trainer.train((s) => padCollate(data.slice((s % 4) * 16, (s % 4) * 16 + 16)), (b) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels }));
  expect(res.steps).toBe(60);
  expect(res.losses.at(-1)!.loss).toBeLessThan(res.losses[0].loss * 0.5);
  expect(lines.some((l) => /step 60\/60 loss/.test(l))).toBe(true);
  expect(() => new Trainer(m, { maxSteps: 0 })).toThrow(/maxSteps/);
});

describe('R-Drop (rDropLoss, TrainerOptions.rDrop)', () => {
  const cfg = { vocab_size: 100, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32, hidden_dropout_prob: 0.3, attention_probs_dropout_prob: 0.3 };
  // the mean cross-entropy of K copies' logit rows per example and their symmetric KL averaged over the pairs,
  // in plain JS from the repeated forward's logits (copy k of example i is row k * n + i)
  const byHand = (logits: number[][], labels: number[], alpha: number, copies = 2) => {
    const logSoftmax = (r: number[]) => { const mx = Math.max(...r); const z = Math.log(r.reduce((s, x) => s + Math.exp(x - mx), 0)) + mx; return r.map((x) => x - z); };
    const n = labels.length;
    let ce = 0; let kl = 0; let real = 0;
    for (let i = 0; i < n; i++) {
      if (labels[i] === -100) continue;
      const p = Array.from({ length: copies }, (_, k) => logSoftmax(logits[k * n + i]));
      ce += -p.reduce((s, a) => s + a[labels[i]], 0) / copies;
      let pairs = 0;
      let sum = 0;
      for (let a = 0; a < copies; a++) {
        for (let b = a + 1; b < copies; b++, pairs++) sum += p[a].reduce((s, x, c) => s + (Math.exp(x) - Math.exp(p[b][c])) * (x - p[b][c]), 0) / 2;
      }
      kl += sum / pairs;
      real++;
    }
    return ce / real + alpha * kl / real;
  };
  const batchOf = (n: number) => padCollate(Array.from({ length: n }, (_, i) => ({ inputIds: Array.from({ length: 8 }, (_, t) => 5 + ((i * 13 + t * 7) % 95)), label: i % 2 })), 0);

  test.each([2, 3])('the loss over %i copies is their mean cross-entropy plus alpha times their symmetric KL, over labelled rows only', async (copies) => {
    tb.manualSeed(0);
    const m = fromConfig('BertForTokenClassification', { ...cfg, num_labels: 3 });
    const inputIds = tb.randint(5, 100, [3, 8]);
    const attentionMask = tb.onesLike(inputIds);
    const labels = tb.randint(0, 3, [3, 8]).maskedFill(tb.rand([3, 8]).gt(0.6), -100);
    const repeated = { inputIds: tb.cat(Array(copies).fill(inputIds), 0), attentionMask: tb.cat(Array(copies).fill(attentionMask), 0) };
    tb.manualSeed(7);
    const logits = (await m.forward(repeated)).logits!.toArraySync() as number[][][];
    tb.manualSeed(7);
    const got = (await (copies === 2 ? tb.train.rDropLoss(m, { inputIds, attentionMask, labels }, 2.5) : tb.train.rDropLoss(m, { inputIds, attentionMask, labels }, 2.5, copies))).item() as number;
    const flatLabels = (labels.toArraySync() as bigint[][]).flat().map(Number);
    // the repeated batch's rows, token by token: token i of copy k is in row k * 3 + (i / 8 | 0)
    const rows = Array.from({ length: copies }, (_, k) => k).flatMap((k) => flatLabels.map((_, i) => logits[k * 3 + ((i / 8) | 0)][i % 8]));
    const want = byHand(rows, flatLabels, 2.5, copies);
    expect(Math.abs(got - want)).toBeLessThan(1e-5);
    // dropout differs between the copies: the KL term is there
    expect(Math.abs(want - byHand(rows, flatLabels, 0, copies))).toBeGreaterThan(1e-4);
  });

  test('without dropout (eval) it is the model\'s own loss; bad inputs are refused by name', async () => {
    tb.manualSeed(0);
    const m = fromConfig('BertForSequenceClassification', { ...cfg, num_labels: 2 }).eval();
    const inputs = { inputIds: tb.randint(5, 100, [4, 8]), labels: tb.tensor(BigInt64Array.from([0n, 1n, 1n, 0n])) };
    const own = (await m.forward(inputs)).loss!.item() as number;
    expect(Math.abs(((await tb.train.rDropLoss(m, inputs, 4)).item() as number) - own)).toBeLessThan(1e-6);
    await expect(tb.train.rDropLoss(m, inputs, -1)).rejects.toThrow(/alpha must be a non-negative number, got -1/);
    await expect(tb.train.rDropLoss(m, inputs, 1, 1)).rejects.toThrow(/copies must be an integer of at least 2, got 1/);
    await expect(tb.train.rDropLoss(m, { inputIds: inputs.inputIds }, 1)).rejects.toThrow(/the batch has no labels/);
    await expect(tb.train.rDropLoss(m, { ...inputs, labels: tb.rand([4]) }, 1)).rejects.toThrow(/needs class labels \(int64\), got float32/);
    expect(() => new Trainer(m, { maxSteps: 1, rDrop: NaN })).toThrow(/rDrop must be a non-negative number, got NaN/);
    const trainer = new Trainer(m, { maxSteps: 1, rDrop: 1, log: () => {} });
    const batch = batchOf(4);
    await expect(trainer.train(() => batch, (b) => b, undefined, async () => tb.tensor([0]))).rejects.toThrow(/rDrop replaces the model's loss, and a lossFn was given/);
    // question answering has no class logits: refused before any data is read
    const { finetuneQa } = await import('../lib/recipes/finetune');
    await expect(finetuneQa({ model: 'none', train: 'none', dev: 'none', out: 'none', rDrop: 1 })).rejects.toThrow(/QA predicts start and end positions \(classification and ner take it\)/);
  });

  test('the Trainer trains with it: each step\'s logged loss is rDropLoss of its batch', async () => {
    tb.manualSeed(0);
    const m = fromConfig('BertForSequenceClassification', { ...cfg, num_labels: 2 });
    const batch = batchOf(8);
    const before = m.stateDict().get('classifier.weight')!.clone();
    const trainer = new Trainer(m, { maxSteps: 3, rDrop: 1, loggingSteps: 1, learningRate: 1e-3, log: () => {} });
    const seen: number[] = [];
    const lossFn = tb.train.rDropLoss;
    // the same steps through a lossFn that records rDropLoss's values: the option and the explicit call agree
    tb.manualSeed(3);
    const r = await trainer.train(() => batch, (b) => b);
    expect(r.steps).toBe(3);
    expect(m.stateDict().get('classifier.weight')!.sub(before).abs().max().item()).toBeGreaterThan(0);
    tb.manualSeed(0);
    const m2 = fromConfig('BertForSequenceClassification', { ...cfg, num_labels: 2 });
    const t2 = new Trainer(m2, { maxSteps: 3, loggingSteps: 1, learningRate: 1e-3, log: () => {} });
    tb.manualSeed(3);
    const r2 = await t2.train(() => batch, (b) => b, undefined, async (inputs) => { const l = await lossFn(m2, inputs, 1); seen.push(l.item() as number); return l; });
    expect(r.losses.map((x) => x.loss)).toEqual(r2.losses.map((x) => expect.closeTo(x.loss, 5)));
    expect(r2.losses.map((x) => x.loss)).toEqual(seen.map((x) => expect.closeTo(x, 6)));
  });
});

describe('checkpoints', () => {
  const data = Array.from({ length: 64 }, (_, i) => ({ inputIds: [1, 10 + (i % 20), 11 + ((i * 3) % 25), 2], label: i % 2 }));
  const make = () => {
    tb.manualSeed(7);
    return fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16, num_labels: 2, hidden_dropout_prob: 0.1 });
  };
  const batch = (s: number) => padCollate(data.slice((s % 4) * 16, (s % 4) * 16 + 16));
  const inputs = (b: ReturnType<typeof padCollate>) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels });

  test('resuming from a checkpoint gives the losses of an uninterrupted run (dropout on)', async () => {
    const dir = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'ckpt-'));
    const full = await new Trainer(make(), { maxSteps: 20, loggingSteps: 1, learningRate: 1e-3, log: () => {} }).train(batch, inputs);
    const first = await new Trainer(make(), { maxSteps: 20, loggingSteps: 1, learningRate: 1e-3, saveSteps: 10, outputDir: dir, saveTotalLimit: 1, timeBudgetSec: 1e9, log: () => {} })
      .train((s) => { if (s === 12) throw new Error('simulated crash'); return batch(s); }, inputs)
      .catch((e) => e);
    expect(String(first)).toMatch(/simulated crash/);
    expect(require('fs').readdirSync(dir)).toEqual(['checkpoint-10']);
    tb.manualSeed(999); // the checkpoint restores the generator
    const resumed = await new Trainer(make(), { maxSteps: 20, loggingSteps: 1, learningRate: 1e-3, resumeFrom: `${dir}/checkpoint-10`, log: () => {} }).train(batch, inputs);
    expect(resumed.losses.map((l) => l.step)).toEqual(Array.from({ length: 10 }, (_, i) => i + 11));
    const tail = full.losses.slice(10).map((l) => l.loss);
    resumed.losses.forEach((l, i) => expect(Math.abs(l.loss - tail[i])).toBeLessThan(1e-6));
  });

  test('kill -9 during checkpoint saves leaves the previous checkpoint intact', async () => {
    const fs = require('fs');
    const path = require('path');
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'kill-'));
    const code = `
const tb = require(${JSON.stringify(path.join(__dirname, '..', 'lib'))});
const { Trainer, padCollate } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'train'))});
const { fromConfig } = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'models'))});
tb.manualSeed(1);
const m = fromConfig('BertForSequenceClassification', { vocab_size: 3000, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 128, max_position_embeddings: 16 });
const b = padCollate([{ inputIds: [1, 5, 6, 2], label: 1 }, { inputIds: [1, 7, 2], label: 0 }]);
new Trainer(m, { maxSteps: 100000, saveSteps: 1, outputDir: ${JSON.stringify(dir)}, saveTotalLimit: 2, loggingSteps: 1000, log: () => {} })
  .train(() => b, (x) => ({ inputIds: x.inputIds, attentionMask: x.attentionMask, labels: x.labels }));`;
    const child = require('child_process').spawn(process.execPath, ['-r', require.resolve('ts-node/register/transpile-only'), '-e', code], { stdio: 'ignore' });
    // Wait until a few checkpoints exist, then kill at an arbitrary moment of the save loop.
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 100));
      if (fs.readdirSync(dir).filter((d: string) => /^checkpoint-\d+$/.test(d)).length >= 2) break;
    }
    await new Promise((r) => setTimeout(r, 137));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const cks = fs.readdirSync(dir).filter((d: string) => /^checkpoint-\d+$/.test(d));
    expect(cks.length).toBeGreaterThanOrEqual(1);
    for (const c of cks) {
      const m = await fromPretrained(path.join(dir, c), { kind: 'BertForSequenceClassification' });
      expect(m.loadReport.missingKeys).toEqual([]);
      for (const f of ['optimizer.safetensors', 'optimizer.json', 'scheduler.json', 'trainer_state.json']) expect(fs.existsSync(path.join(dir, c, f))).toBe(true);
    }
  });
});

describe('companion models (ELECTRA\'s generator)', () => {
  const cfg = { vocab_size: 60, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16 };
  const data = Array.from({ length: 64 }, (_, i) => ({ inputIds: [1, 10 + (i % 20), 11 + ((i * 3) % 25), 12 + ((i * 7) % 30), 2] }));
  const make = () => {
    tb.manualSeed(3);
    return { disc: fromConfig('BertForTokenClassification', { ...cfg, num_labels: 1 }), gen: fromConfig('BertForMaskedLM', cfg) };
  };
  const batch = (s: number) => padCollate(data.slice((s % 4) * 16, (s % 4) * 16 + 16));
  const inputs = (b: ReturnType<typeof padCollate>) => {
    const m = maskTokens(b.inputIds, { maskTokenId: 4, vocabSize: 60, specialIds: [1, 2], padId: 0, mlmProbability: 0.3 });
    return { inputIds: m.inputIds, attentionMask: b.attentionMask, labels: m.labels };
  };
  // both models in the loss: the generator's MLM loss plus a loss of the discriminator's logits
  const lossOf = (gen: BertPreTrainedModel, disc: BertPreTrainedModel) => async (x: BertInputs) => {
    const g = await gen.mlmLoss({ inputIds: x.inputIds, attentionMask: x.attentionMask, labels: x.labels! });
    const d = (await disc.forward({ inputIds: x.inputIds, attentionMask: x.attentionMask })).logits!;
    return g.add(d.pow(2).mean());
  };

  test('the optimizer trains them, checkpoints keep them, and resuming equals an uninterrupted run', async () => {
    const fs = require('fs');
    const dir = fs.mkdtempSync(require('path').join(require('os').tmpdir(), 'companion-'));
    const a = make();
    const before = a.gen.stateDict().get('bert.encoder.layer.0.output.dense.weight')!.clone();
    const full = await new Trainer(a.disc, { companions: { generator: a.gen }, maxSteps: 12, loggingSteps: 1, learningRate: 1e-3, log: () => {} }).train(batch, inputs, undefined, lossOf(a.gen, a.disc));
    expect(a.gen.stateDict().get('bert.encoder.layer.0.output.dense.weight')!.sub(before).abs().max().item()).toBeGreaterThan(1e-4);
    expect(a.gen.training).toBe(false);
    const b = make();
    await new Trainer(b.disc, { companions: { generator: b.gen }, maxSteps: 12, loggingSteps: 1, learningRate: 1e-3, saveSteps: 6, outputDir: dir, log: () => {} })
      .train((s) => { if (s === 8) throw new Error('simulated crash'); return batch(s); }, inputs, undefined, lossOf(b.gen, b.disc))
      .catch(() => {});
    expect(fs.existsSync(`${dir}/checkpoint-6/generator/model.safetensors`)).toBe(true);
    const c = make();
    tb.manualSeed(999);
    const resumed = await new Trainer(c.disc, { companions: { generator: c.gen }, maxSteps: 12, loggingSteps: 1, learningRate: 1e-3, resumeFrom: `${dir}/checkpoint-6`, log: () => {} }).train(batch, inputs, undefined, lossOf(c.gen, c.disc));
    const tail = full.losses.slice(6).map((l) => l.loss);
    resumed.losses.forEach((l, i) => expect(Math.abs(l.loss - tail[i])).toBeLessThan(1e-5));
    fs.rmSync(`${dir}/checkpoint-6/generator`, { recursive: true });
    const d = make();
    await expect(new Trainer(d.disc, { companions: { generator: d.gen }, maxSteps: 12, resumeFrom: `${dir}/checkpoint-6`, log: () => {} }).train(batch, inputs, undefined, lossOf(d.gen, d.disc)))
      .rejects.toThrow(/missing generator\/model.safetensors/);
    expect(() => new Trainer(d.disc, { companions: { 'a/b': d.gen }, maxSteps: 1 })).toThrow(/companion "a\/b"/);
    expect(() => new Trainer(d.disc, { companions: { self: d.disc }, maxSteps: 1 })).toThrow(/another model/);
  });
});

test('fitScheduleToTimeBudget: a budget that holds fewer steps than maxSteps gets a complete, shorter schedule', async () => {
  tb.manualSeed(0);
  const m = fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16, num_labels: 2 });
  const b = padCollate([{ inputIds: [1, 5, 6, 2], label: 1 }, { inputIds: [1, 7, 2], label: 0 }]);
  // A fake clock that each batch moves on by 10 ms: the pace is exactly 100 steps/s on any machine, so the
  // budget of 3 s holds 294 steps (98% of it) and the fitted schedule does not depend on the machine's load.
  let ms = 0;
  const clock = () => ms;
  const slow = () => {
    ms += 10;
    return b;
  };
  const lines: string[] = [];
  const res = await new Trainer(m, { maxSteps: 100000, warmupRatio: 0.1, learningRate: 1e-3, timeBudgetSec: 3, fitScheduleToTimeBudget: true, loggingSteps: 10, clock, log: (s) => lines.push(s) })
    .train(slow, (x) => ({ inputIds: x.inputIds, attentionMask: x.attentionMask, labels: x.labels }));
  // refitted after 16, 32, 64, 128 and 256 steps, each from the pace of 100 steps/s: 0.98 * 3 s holds 294
  expect(res.scheduledSteps).toBeGreaterThanOrEqual(293);
  expect(res.scheduledSteps).toBeLessThanOrEqual(295);
  expect(lines.some((l) => /schedule fitted to \d+ steps \(100\.00 steps\/s, 3s budget\)/.test(l))).toBe(true);
  // the run ends on its schedule (the decay reached 0), inside the budget
  expect(res.steps).toBe(res.scheduledSteps);
  expect(res.seconds).toBeLessThanOrEqual(3);
  expect(res.losses.at(-1)!.step).toBe(res.steps);
  expect(res.losses.at(-1)!.lr).toBe(0);
  // past the warmup of the fitted schedule (a tenth of it), at the peak
  expect(Math.max(...res.losses.map((l) => l.lr))).toBeGreaterThan(1e-3 * 0.9);
  // without the option, the same budget cuts the long schedule in its warmup: 1 s is 100 steps of 10000
  ms = 0;
  const cut = await new Trainer(m, { maxSteps: 100000, warmupRatio: 0.1, learningRate: 1e-3, timeBudgetSec: 1, loggingSteps: 10, clock, log: () => {} })
    .train(slow, (x) => ({ inputIds: x.inputIds, attentionMask: x.attentionMask, labels: x.labels }));
  expect(cut.scheduledSteps).toBe(100000);
  expect(cut.steps).toBe(101);
  expect(Math.max(...cut.losses.map((l) => l.lr))).toBeLessThan(1e-3 * 0.05);
});

test('cooccurrenceVectors: the rank-k SVD of the PPMI matrix counted independently here, scaled; bad input is a RangeError; no tensor left behind', async () => {
  // A corpus in which every id of 12 occurs; 1 and 2 share all their contexts, so they should share a vector.
  const rows = [[3, 1, 4, 5], [3, 2, 4, 5], [6, 7, 8, 9, 10, 11], [11, 10, 3, 1, 4], [11, 10, 3, 2, 4], [0, 6, 9, 7], [8, 0, 5]];
  const V = 12, k = 4, W = 2;
  const live = tb.memory().tensors;
  tb.manualSeed(0);
  const E = await tb.train.cooccurrenceVectors(rows, V, k, { window: W, std: 0.5 });
  expect(tb.memory().tensors).toBe(live + 1); // the result alone
  expect(E.shape).toEqual([V, k]);
  expect(E.std().item()).toBeCloseTo(0.5, 5);
  // Reference: counts weighted 1/distance both ways, PPMI with the context distribution smoothed by 0.75.
  const C = Array.from({ length: V }, () => new Float64Array(V));
  for (const r of rows) for (let i = 0; i < r.length; i++) for (let d = 1; d <= W && i + d < r.length; d++) {
    C[r[i]][r[i + d]] += 1 / d;
    C[r[i + d]][r[i]] += 1 / d;
  }
  const rowSum = C.map((r) => r.reduce((a, b) => a + b));
  const ctx = Array.from({ length: V }, (_, c) => C.reduce((a, r) => a + r[c], 0) ** 0.75);
  const ctxSum = ctx.reduce((a, b) => a + b);
  const ppmi = C.map((r, w) => Array.from(r, (x, c) => (x > 0 ? Math.max(0, Math.log(x / ((rowSum[w] * ctx[c]) / ctxSum))) : 0)));
  const [U, S] = tb.op('aten::linalg_svd').ts(tb.tensor(ppmi, { dtype: 'float64' }), false, null);
  const Uk = U.narrow(1, 0, k).mul(S.narrow(0, 0, k).sqrt());
  // E is U_k sqrt(S_k) up to the signs of its columns and a scale: compare the sign-free Gram matrices.
  const gram = (x: tb.Tensor) => {
    const g = x.double().mm(x.double().t());
    return g.div(g.norm().item());
  };
  expect(gram(E).sub(gram(Uk)).abs().max().item()).toBeLessThan(1e-4);
  const cos = (a: number, b: number) => tb.F.cosineSimilarity(E.select(0, a), E.select(0, b), 0).item() as number;
  expect(cos(1, 2)).toBeGreaterThan(0.999);
  expect(cos(1, 6)).toBeLessThan(0.9);
  E.dispose();
  const before = tb.memory().tensors;
  await expect(tb.train.cooccurrenceVectors([[0, 12]], V, k)).rejects.toThrow(/cooccurrenceVectors: token id 12 is outside the vocabulary of 12/);
  await expect(tb.train.cooccurrenceVectors([[0], [1]], V, k)).rejects.toThrow(/no token has a neighbour/);
  await expect(tb.train.cooccurrenceVectors(rows, 20000, k)).rejects.toThrow(/vocabSize must be an integer from 2 to 16384, got 20000/);
  await expect(tb.train.cooccurrenceVectors(rows, V, V)).rejects.toThrow(/dim must be/);
  expect(tb.memory().tensors).toBe(before); // nothing left behind by the calls that failed
});

test('averageWeights: a uniform soup is the mean of each parameter, into the first model; mismatches are TypeErrors naming the parameter', () => {
  const cfg = { vocab_size: 50, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 16, num_labels: 2 };
  const ms = [0, 1, 2].map((s) => {
    tb.manualSeed(s);
    return fromConfig('BertForSequenceClassification', cfg);
  });
  const before = ms.map((m) => new Map(m.namedParameters().map(([n, p]) => [n, p.clone()])));
  expect(tb.train.averageWeights(ms)).toBe(ms[0]);
  for (const [n, p] of ms[0].namedParameters()) {
    const mean = before[0].get(n)!.add(before[1].get(n)!).add(before[2].get(n)!).div(3);
    expect([n, p.allclose(mean, 1e-6, 1e-6)]).toEqual([n, true]);
    // the other models are left as they were
    expect([n, ms[1].stateDict().get(n)!.equal(before[1].get(n)!)]).toEqual([n, true]);
  }
  const wide = fromConfig('BertForSequenceClassification', { ...cfg, intermediate_size: 96 });
  expect(() => tb.train.averageWeights([ms[0], wide])).toThrow(/averageWeights: bert\.encoder\.layer\.0\.intermediate\.dense\.weight is float32 \[96,32\] in model 1/);
  const mlm = fromConfig('BertForMaskedLM', cfg);
  expect(() => tb.train.averageWeights([ms[0], mlm])).toThrow(/averageWeights: model 1 has/);
  expect(() => tb.train.averageWeights([])).toThrow(RangeError);
  [...ms, wide, mlm].forEach((m) => m.dispose());
});
