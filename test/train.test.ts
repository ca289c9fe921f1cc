// Training utilities: masked-LM collation semantics, padding collator, batching, metrics, the Trainer
// and the masked-positions MLM loss.
import * as tb from '../lib';
import { padCollate, maskTokens, batchIndices, accuracy, f1, mcc, Trainer } from '../lib/train';
import { fromConfig } from '../lib/models';

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
