// Pipelines against Hugging Face's: text-classification, token-classification (every aggregation
// strategy, stride windows), fill-mask, question-answering (transformers 4.57, the last with it) and
// feature-extraction, on tiny random models and on all-MiniLM-L6-v2 with seeded heads. Fixtures:
// scripts/fixtures.py section pipelines. Also the batcher: coalescing, isolation of errors, the queue bound.
import * as path from 'path';
import { pipeline, TextClassificationPipeline } from '../lib/pipelines';
import { Batcher, QueueFullError } from '../lib/batcher';
import { FIXTURES, fixture } from './helpers';

const fx = fixture('pipelines.json');
const dir = (name: string) => path.join(FIXTURES, fx.models[name]);

/** Deep equality with scores within tol: the same labels, words, offsets and order as HF. */
function expectLike(actual: unknown, expected: unknown, tol = 2e-4, where = '$'): void {
  if (typeof expected === 'number') {
    if (typeof actual !== 'number') throw new Error(`${where}: expected number ${expected}, got ${JSON.stringify(actual)}`);
    if (Number.isInteger(expected) && Math.abs(expected) > 1 && Number.isInteger(actual)) {
      if (actual !== expected) throw new Error(`${where}: expected ${expected}, got ${actual}`);
    } else if (Math.abs(actual - expected) > tol * Math.max(1, Math.abs(expected))) throw new Error(`${where}: expected ${expected}, got ${actual}`);
    return;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) throw new Error(`${where}: expected an array of ${expected.length}, got ${JSON.stringify(actual)?.slice(0, 300)}`);
    expected.forEach((e, i) => expectLike(actual[i], e, tol, `${where}[${i}]`));
    return;
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object') throw new Error(`${where}: expected an object, got ${JSON.stringify(actual)}`);
    const ek = Object.keys(expected).sort();
    const ak = Object.keys(actual as object).sort();
    if (ek.join() !== ak.join()) throw new Error(`${where}: keys ${ak} instead of ${ek}`);
    for (const k of ek) expectLike((actual as any)[k], (expected as any)[k], tol, `${where}.${k}`);
    return;
  }
  if (actual !== expected) throw new Error(`${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const prefixes = ['tiny', ...(fx.minilm ? ['minilm'] : [])];

describe.each(prefixes)('pipelines match transformers (%s)', (pre) => {
  const r = fx[pre];
  const model = (head: string) => dir(`${pre}-${head}`);

  test('text-classification: legacy shape, topK, sigmoid, pairs', async () => {
    const clf = await pipeline('text-classification', model('BertForSequenceClassification'));
    expectLike(await clf.call(fx.texts.slice(0, 8)), r.clf_legacy);
    expectLike(await clf.call(fx.texts[0]), r.clf_single);
    expectLike(await clf.call(fx.texts.slice(0, 4), { topK: null }), r.clf_all);
    expectLike(await clf.call(fx.texts[0], { topK: 1 }), r.clf_top1);
    expectLike(await clf.call(fx.texts.slice(0, 2), { topK: null, functionToApply: 'sigmoid' }), r.clf_sigmoid);
    expectLike(await clf.call({ text: fx.texts[1], textPair: fx.texts[2] }), r.clf_pair);
  });

  test('token-classification: every aggregation strategy', async () => {
    const ner = await pipeline('ner', model('BertForTokenClassification'));
    const inputs = [...fx.sents, 'Héllo naïve [UNK] xyzzyq'];
    for (const s of ['none', 'simple', 'first', 'average', 'max'] as const) {
      expectLike(await ner.call(inputs, { aggregationStrategy: s }), r[`ner_${s}`], 2e-4, s);
    }
    if (r.ner_stride) expectLike(await ner.call(fx.long_text, { aggregationStrategy: 'first', stride: 16 }), r.ner_stride);
  });

  test('fill-mask: one and several masks, topK, targets', async () => {
    const fm = await pipeline('fill-mask', model('BertForMaskedLM'));
    for (let i = 0; i < fx.masked.length; i++) expectLike(await fm.call(fx.masked[i]), r.fill[i], 2e-4, `fill[${i}]`);
    expectLike(await fm.call(fx.masked[0], { topK: 2 }), r.fill_top2);
    expectLike(await fm.call(fx.masked[0], { targets: ['good', 'bad', 'xyzzy'] }), r.fill_targets);
    await expect(fm.call('no mask here')).rejects.toThrow(/no mask token/);
  });

  test('question-answering: windows, topK, impossible answers, token spans', async () => {
    const qa = await pipeline('question-answering', model('BertForQuestionAnswering'));
    const q = r.qa;
    for (let i = 0; i < fx.qa.length; i++) {
      const x = fx.qa[i];
      expectLike(await qa.call(x), q.top1[i], 1e-3, `top1[${i}]`);
      expectLike(await qa.call(x, { topK: 3 }), q.top3[i], 1e-3, `top3[${i}]`);
      expectLike(await qa.call(x, { maxSeqLen: 64, docStride: 16 }), q.small[i], 1e-3, `small[${i}]`);
      expectLike(await qa.call(x, { handleImpossibleAnswer: true, topK: 2 }), q.impossible[i], 1e-3, `impossible[${i}]`);
      expectLike(await qa.call(x, { alignToWords: false, maxAnswerLen: 5 }), q.chars[i], 1e-3, `chars[${i}]`);
    }
    // All at once: batched together, the same answers.
    expectLike(await qa.call(fx.qa), q.top1, 1e-3, 'batched');
  });

  test('feature-extraction: hidden states as HF, pooled and normalised vectors', async () => {
    const fe = await pipeline('feature-extraction', model('BertModel'));
    const raw = (await fe.call(fx.texts.slice(0, 3))) as number[][][][];
    expectLike(raw, r.features, 2e-4);
    const pooled = (await fe.call(fx.texts.slice(0, 3), { pooling: 'mean', normalize: true })) as number[][];
    raw.forEach((x, i) => {
      const T = x[0].length;
      const mean = x[0][0].map((_, j) => x[0].reduce((s, row) => s + row[j], 0) / T);
      const n = Math.hypot(...mean);
      expectLike(pooled[i], mean.map((v) => v / n), 1e-4, `pooled[${i}]`);
    });
    const cls = (await fe.call(fx.texts[0], { pooling: 'cls' })) as number[];
    expectLike(cls, raw[0][0][0], 1e-5);
    // The encoder of a model with a head: the same weights as the head's checkpoint.
    const fromHead = await pipeline('feature-extraction', model('BertForSequenceClassification'));
    expect(((await fromHead.call('x', { pooling: 'cls' })) as number[]).length).toBe(raw[0][0][0].length);
  });
});

test('concurrent pipelines leave grad mode as they found it', async () => {
  const { isGradEnabled } = await import('../lib');
  const clf = await pipeline('text-classification', dir('tiny-BertForSequenceClassification'));
  const fe = await pipeline('feature-extraction', dir('tiny-BertModel'));
  await Promise.all([clf.call(fx.texts), fe.call(fx.texts.slice(0, 5)), clf.call(fx.texts[0]), fe.call('x')]);
  expect(isGradEnabled()).toBe(true);
});

test('a model call that waits its turn runs with the grad mode and autocast of the moment it was made', async () => {
  const tb = await import('../lib');
  const { fromConfig } = await import('../lib/models/bert');
  const m = fromConfig('BertModel', { vocab_size: 99, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 37 });
  m.eval();
  const inputIds = tb.randint(1, 99, [2, 7]);
  // The pipelines' pattern: grad off only for the synchronous start. The second call starts after the
  // first (their turn), when noGrad has ended; it must still run without building a graph.
  const first = tb.noGrad(() => ({ pending: m.forward({ inputIds }) })).pending;
  const second = tb.noGrad(() => ({ pending: m.forward({ inputIds }) })).pending;
  const third = tb.autocast({ dtype: 'bfloat16' }, () => ({ pending: m.forward({ inputIds }) })).pending;
  const outs = await Promise.all([first, second, third]);
  expect(tb.isGradEnabled()).toBe(true);
  expect(outs.map((o) => o.lastHiddenState!.requiresGrad)).toEqual([false, false, true]);
  expect(outs.map((o) => o.poolerOutput!.dtype)).toEqual(['float32', 'float32', 'bfloat16']); // the pooler's Linear under autocast
  expect((await m.forward({ inputIds })).poolerOutput!.dtype).toBe('float32'); // nothing leaked into later calls
});

test('a classifier and a feature extractor over the same weights take turns, never run at once', async () => {
  const { BertTokenizer } = await import('../lib/tokenizer');
  const { fromPretrained } = await import('../lib/models/bert');
  const d = dir('tiny-BertForSequenceClassification');
  const [model, tokenizer] = [await fromPretrained(d, { kind: 'BertForSequenceClassification' }), await BertTokenizer.fromPretrained(d)];
  const clf = (await pipeline('text-classification', { model, tokenizer })) as TextClassificationPipeline;
  const fe = await pipeline('feature-extraction', { model, tokenizer });
  // The encoder's module is the classifier's submodule: one busy state.
  const encoder = model.module.getAttr('bert') as import('../lib').ScriptModule;
  const call = clf.call(fx.texts);
  let sawBusy = false;
  for (let i = 0; i < 5000 && !sawBusy; i++) {
    await new Promise((r) => setImmediate(r));
    sawBusy = model.module.isBusy && encoder.isBusy;
  }
  expect(sawBusy).toBe(true);
  // Calls through both, all at once: each waits its turn, none fails as busy.
  const [a, b, c] = await Promise.all([call, fe.call(fx.texts.slice(0, 5)), clf.call(fx.texts[0])]);
  expect([(a as unknown[]).length, (b as unknown[]).length, (c as unknown[]).length]).toEqual([fx.texts.length, 5, 1]);
  expect(encoder.isBusy).toBe(false);
});

describe('pipeline errors', () => {
  test('bad inputs and tasks name what is wrong', async () => {
    await expect(pipeline('summarization' as any, dir('tiny-BertModel'))).rejects.toThrow(/unknown task 'summarization'/);
    const random = await pipeline('text-classification', dir('tiny-BertModel'));
    expect(random.model.kind).toBe('BertForSequenceClassification');
    expect(random.warnings.join()).toMatch(/initialised at random \(classifier.weight, classifier.bias\)/);
    const clf = (await pipeline('text-classification', dir('tiny-BertForSequenceClassification'))) as TextClassificationPipeline;
    await expect(clf.call(42 as any)).rejects.toThrow(/input must be a string, got number/);
    await expect(clf.call([])).rejects.toThrow(/empty list/);
    await expect(clf.call(['ok', null as any])).rejects.toThrow(/inputs\[1\] must be a string/);
    await expect(clf.call('ok', { functionToApply: 'tanh' as any })).rejects.toThrow(/functionToApply/);
    const qa = await pipeline('question-answering', dir('tiny-BertForQuestionAnswering'));
    await expect(qa.call({ question: 'q' } as any)).rejects.toThrow(/context must be a string/);
    const ner = await pipeline('token-classification', dir('tiny-BertForTokenClassification'));
    await expect(ner.call('x', { stride: 8 })).rejects.toThrow(/aggregationStrategy/);
    await expect(ner.call('x', { aggregationStrategy: 'median' as any })).rejects.toThrow(/aggregationStrategy/);
  });
});

describe('Batcher', () => {
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

  test('concurrent submissions coalesce, each caller gets its own result', async () => {
    const sizes: number[] = [];
    const b = new Batcher<number, number>(async (xs) => {
      sizes.push(xs.length);
      await wait(5);
      return xs.map((x) => x * 2);
    }, () => 1, { maxBatchSize: 8, maxWaitMs: 2 });
    const out = await Promise.all(Array.from({ length: 40 }, (_, i) => b.submit(i)));
    expect(out).toEqual(Array.from({ length: 40 }, (_, i) => i * 2));
    expect(Math.max(...sizes)).toBe(8);
    expect(sizes.length).toBeLessThanOrEqual(6);
    expect(sizes.reduce((a, c) => a + c, 0)).toBe(40);
  });

  test('batches group by length and respect maxBatchTokens', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>(async (xs) => {
      if (xs[0] === 1) await gate; // the queue fills while the first batch runs
      batches.push(xs);
      return xs;
    }, (x) => x, { maxBatchSize: 4, maxBatchTokens: 400, maxWaitMs: 0 });
    const first = b.submit(1);
    const lens = [10, 100, 11, 99, 12, 98, 13, 97];
    const rest = Promise.all(lens.map((l) => b.submit(l)));
    release();
    await Promise.all([first, rest]);
    batches.shift();
    for (const x of batches) expect(Math.max(...x) * x.length).toBeLessThanOrEqual(400);
    expect(batches[0]).toEqual([10, 11, 12, 13]);
    expect(batches.flat().sort((a, c) => a - c)).toEqual([...lens].sort((a, c) => a - c));
  });

  test('companions come from the oldest 2 x maxBatchSize waiting, so none is passed over for long', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>(async (xs) => {
      if (xs[0] === 1) await gate;
      batches.push(xs);
      return xs;
    }, (x) => x, { maxBatchSize: 2, maxWaitMs: 0 });
    const first = b.submit(1);
    const rest = Promise.all([10, 100, 101, 102, 11].map((l) => b.submit(l)));
    release();
    await Promise.all([first, rest]);
    batches.shift();
    // 11 is the closest to 10 but arrived fifth: outside the window of four, it waits its turn.
    expect(batches).toEqual([[10, 100], [101, 102], [11]]);
  });

  test('a lone caller stops paying maxWaitMs after three waits found no companions; items arriving during a batch bring the wait back', async () => {
    const gate: { release: (() => void) | null } = { release: null };
    const b = new Batcher<number, number>(async (xs) => {
      if (gate.release === null && xs[0] === 100) await new Promise<void>((r) => (gate.release = r));
      return xs;
    }, () => 1, { maxBatchSize: 8, maxWaitMs: 1 });
    expect(b.waitsForCompanions).toBe(true);
    for (let i = 0; i < 3; i++) {
      expect(b.waitsForCompanions).toBe(true);
      await b.submit(i); // alone: its wait finds nobody
      await wait(3); // the next arrives when the batcher is idle, as a lone client's next request does
    }
    expect(b.waitsForCompanions).toBe(false);
    // Runs at once; two more arrive while it runs, and run together right after it.
    const first = b.submit(100);
    while (gate.release === null) await wait(1);
    const later = [b.submit(101), b.submit(102)];
    gate.release();
    expect(await Promise.all([first, ...later])).toEqual([100, 101, 102]);
    expect(b.waitsForCompanions).toBe(true);
    expect(new Batcher(async (xs: number[]) => xs, () => 1, { maxWaitMs: 0 }).waitsForCompanions).toBe(false);
  });

  test('an error fails only the items that cause it', async () => {
    const b = new Batcher<number, number>(async (xs) => {
      if (xs.includes(3)) throw new Error('bad item 3');
      return xs.map((x) => x + 1);
    }, () => 1, { maxBatchSize: 8, maxWaitMs: 2 });
    const res = await Promise.allSettled([1, 2, 3, 4].map((x) => b.submit(x)));
    expect(res.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((res[2] as PromiseRejectedResult).reason.message).toBe('bad item 3');
    expect((res[3] as PromiseFulfilledResult<number>).value).toBe(5);
  });

  test('a full queue rejects with QueueFullError; close() drains and refuses', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>(async (xs) => {
      await gate;
      return xs;
    }, () => 1, { maxBatchSize: 1, maxQueue: 3, maxWaitMs: 0 });
    const first = b.submit(0); // runs, holding the gate
    const queued = [1, 2, 3].map((x) => b.submit(x));
    const over = await b.submit(4).catch((e) => e);
    expect(over).toBeInstanceOf(QueueFullError);
    expect(over.code).toBe('QUEUE_FULL');
    expect(b.queueDepth).toBe(3);
    const closing = b.close();
    await expect(b.submit(5)).rejects.toThrow(/closed/);
    release();
    expect(await Promise.all([first, ...queued])).toEqual([0, 1, 2, 3]);
    await closing;
    expect(b.queueDepth).toBe(0);
    expect(() => new Batcher(async (x) => x, () => 1, { maxBatchSize: 0 })).toThrow(/maxBatchSize/);
  });
});
