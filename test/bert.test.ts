// BERT parity with transformers: every head on a tiny random config (outputs, losses, gradients),
// the bert-base shape, old checkpoint names, HF round trips, TorchScript interop, a traced HF .pt,
// and the real pretrained all-MiniLM-L6-v2. Fixtures: scripts/fixtures.py (sections bert, minilm).
import * as path from 'path';
import * as tb from '../lib';
import { Tensor, ScriptModule } from '../lib';
import { BertConfig } from '../lib/models/config';
import { fromPretrained, fromConfig, HEADS, HeadKind, BertOutput } from '../lib/models/bert';
import { loadFileSync } from '../lib/safetensors';
import { BertTokenizer } from '../lib/tokenizer';
import { FIXTURES, fixture, maxAbsDiff, python, tmpDir, flat, forEachMeanPooled } from './helpers';

const fx = fixture('bert.json');
const BERT = path.join(FIXTURES, 'bert');
const i64 = (x: unknown) => tb.tensor((x as number[][]).map((r) => (Array.isArray(r) ? r.map((v: any) => (Array.isArray(v) ? v.map(BigInt) : BigInt(v))) : BigInt(r))) as any);

function inputsFor(head: HeadKind) {
  const I = fx.inputs;
  const mc = head === 'BertForMultipleChoice';
  const ids = i64(mc ? I.mc_input_ids : I.input_ids);
  return {
    inputIds: ids,
    attentionMask: mc ? tb.onesLike(ids) : i64(I.attention_mask),
    tokenTypeIds: mc ? tb.zerosLike(ids) : i64(I.token_type_ids),
    outputHiddenStates: true,
    outputAttentions: true,
    labels: I.labels[head] ? i64(I.labels[head]) : undefined,
    nextSentenceLabel: head === 'BertForPreTraining' ? i64(I.next_sentence_label) : undefined,
    startPositions: head === 'BertForQuestionAnswering' ? i64(I.start_positions) : undefined,
    endPositions: head === 'BertForQuestionAnswering' ? i64(I.end_positions) : undefined,
  };
}

const OUT_KEYS: [keyof BertOutput, string][] = [
  ['lastHiddenState', 'last_hidden_state'], ['poolerOutput', 'pooler_output'], ['logits', 'logits'], ['predictionLogits', 'prediction_logits'],
  ['seqRelationshipLogits', 'seq_relationship_logits'], ['startLogits', 'start_logits'], ['endLogits', 'end_logits'], ['loss', 'loss'],
];

describe.each(HEADS)('%s equals transformers', (head) => {
  test('outputs, hidden states, attentions, loss within 1e-5; gradients within 1e-4 relative', async () => {
    const model = await fromPretrained(path.join(BERT, head), { kind: head });
    expect(model.loadReport.missingKeys).toEqual([]);
    const want = fx.results[head];
    const out = await model.forward(inputsFor(head));
    let compared = 0;
    for (const [ours, theirs] of OUT_KEYS) {
      if (want[theirs] === undefined) continue;
      const t = out[ours] as Tensor;
      expect([head, ours, maxAbsDiff(t.toArraySync(), want[theirs]) < 1e-5]).toEqual([head, ours, true]);
      compared++;
    }
    expect(compared).toBeGreaterThan(0);
    expect(out.hiddenStates!.length).toBe(want.hidden_states.length);
    out.hiddenStates!.forEach((h, i) => expect(maxAbsDiff(h.toArraySync(), want.hidden_states[i])).toBeLessThan(1e-5));
    out.attentions!.forEach((a, i) => expect(maxAbsDiff(a.toArraySync(), want.attentions[i])).toBeLessThan(1e-5));
    if (out.loss) {
      await out.loss.backward();
      const grads = loadFileSync(path.join(BERT, head, 'grads.safetensors'));
      const ours = new Map(model.module.namedParameters());
      let checked = 0;
      // Within 1e-4 of each tensor's largest gradient, and at least fp32 epsilon (1e-7) of the model's
      // largest: gradients that are sums of cancelling terms (a bias before a softmax, ~1e-8 where the
      // model's largest is ~0.7) hold only the rounding of those terms.
      const floor = 1e-7 * Math.max(...[...grads.values()].map((g) => g.abs().max().item() as number));
      for (const [name, g] of grads) {
        const p = ours.get(name) ?? ours.get(name.replace('cls.predictions.decoder.bias', 'cls.predictions.bias'));
        expect(p).toBeDefined();
        const mine = p!.grad;
        const scale = Math.max(...flat(g.toArraySync()).map(Math.abs));
        const diff = mine ? maxAbsDiff(mine.toArraySync(), g.toArraySync()) : Infinity;
        expect([name, diff <= 1e-4 * scale + floor]).toEqual([name, true]);
        checked++;
      }
      expect(checked).toBeGreaterThan(10);
    }
  });
});

describe('unpadded inference (forward_packed)', () => {
  test.each(HEADS)('%s: real positions equal forward(), padded positions are zeros; training and hidden states fall back', async (head) => {
    const model = await fromPretrained(path.join(BERT, head), { kind: head });
    const base = { ...inputsFor(head), labels: undefined, nextSentenceLabel: undefined, startPositions: undefined, endPositions: undefined, outputHiddenStates: false, outputAttentions: false };
    const full = await tb.noGrad(() => model.forward(base));
    const packed = await tb.noGrad(() => model.forward({ ...base, unpadded: true }));
    const mask = base.attentionMask.to({ dtype: 'float32' });
    let compared = 0;
    for (const [ours] of OUT_KEYS) {
      const a = full[ours] as Tensor | undefined;
      const b = packed[ours] as Tensor | undefined;
      if (!a) continue;
      // Per-token outputs [B, T, ...] keep their real positions; per-sequence ones are whole.
      const perToken = head !== 'BertForMultipleChoice' && a.shape[0] === mask.shape[0] && a.shape[1] === mask.shape[1] && a.shape.length >= 2;
      const m = perToken ? mask.view(...mask.shape, ...Array(a.shape.length - 2).fill(1)) : null;
      expect([ours, maxAbsDiff((m ? a.mul(m) : a).toArraySync(), (m ? b!.mul(m) : b!).toArraySync()) < 1e-5]).toEqual([ours, true]);
      if (m && ours === 'lastHiddenState') expect(b!.mul(m.neg().add(1)).abs().max().item()).toBe(0);
      compared++;
    }
    expect(compared).toBeGreaterThan(0);
    // Hidden states asked for: the padded path runs, and gives them.
    const withHidden = await tb.noGrad(() => model.forward({ ...base, outputHiddenStates: true, unpadded: true }));
    expect(withHidden.hiddenStates!.length).toBe(fx.tiny.num_hidden_layers + 1);
    // Training mode runs the padded path too: with the same seed, the same dropout and the same output
    // (to float rounding: while a GEMM shape is on trial, two calls may use different backends).
    model.train();
    const trainIn = { ...base, outputHiddenStates: false };
    tb.manualSeed(7);
    const t1 = await model.forward(trainIn);
    tb.manualSeed(7);
    const t2 = await model.forward({ ...trainIn, unpadded: true });
    const k = OUT_KEYS.find(([o]) => t1[o])![0];
    expect(maxAbsDiff((t1[k] as Tensor).toArraySync(), (t2[k] as Tensor).toArraySync())).toBeLessThan(1e-6);
  });
});

describe('pooled-output heads in inference: the last layer for the first token only', () => {
  const POOLED: HeadKind[] = ['BertForSequenceClassification', 'BertForNextSentencePrediction', 'BertForMultipleChoice'];
  test.each(POOLED)('%s: logits equal transformers, padded, unpadded, and with the first token padded', async (head) => {
    const model = await fromPretrained(path.join(BERT, head), { kind: head });
    // The path under test is the one taken: the head reads BertModel's pooled_output, which in inference
    // runs the first-token methods (padded and unpadded).
    expect(model.module.graph('run')).toContain('pooled_output');
    using bert = model.module.getAttr('bert') as ScriptModule;
    expect(bert.graph('pooled_output')).toContain('forward_cls');
    expect(bert.graph('pooled_output')).toContain('forward_packed_cls');
    const want = fx.results[head];
    const key = 'logits';
    const theirs = want.logits;
    const base = { ...inputsFor(head), labels: undefined, nextSentenceLabel: undefined, outputHiddenStates: false, outputAttentions: false };
    for (const unpadded of [false, true]) {
      const out = await tb.noGrad(() => model.forward({ ...base, unpadded }));
      expect([unpadded, maxAbsDiff((out[key] as Tensor).toArraySync(), theirs) < 1e-5]).toEqual([unpadded, true]);
    }
    // Left padding: the first token of row 0 is padding. Whatever path runs, the logits are those of
    // the full forward (hidden states asked for), which the test above holds to transformers.
    const ids = base.inputIds.clone();
    const mask = base.attentionMask.clone();
    const row = (t: Tensor) => (head === 'BertForMultipleChoice' ? t.select(0, 0).select(0, 0) : t.select(0, 0));
    row(mask).select(0, 0).fill_(0);
    row(ids).select(0, 0).fill_(0);
    const left = { ...base, inputIds: ids, attentionMask: mask };
    const full = await tb.noGrad(() => model.forward({ ...left, outputHiddenStates: true }));
    for (const unpadded of [false, true]) {
      const out = await tb.noGrad(() => model.forward({ ...left, unpadded }));
      expect([unpadded, maxAbsDiff((out[key] as Tensor).toArraySync(), (full[key] as Tensor).toArraySync()) < 1e-5]).toEqual([unpadded, true]);
    }
  });
});

describe('checkpoints', () => {
  test('the bert-base shape loads and equals transformers', async () => {
    const model = await fromPretrained(path.join(BERT, 'base'));
    expect(model.loadReport.missingKeys).toEqual([]);
    const I = fx.inputs;
    const out = tb.noGrad(() => model.forwardSync({ inputIds: i64(I.input_ids), attentionMask: i64(I.attention_mask), tokenTypeIds: i64(I.token_type_ids) }));
    expect(maxAbsDiff(out.lastHiddenState!.toArraySync(), fx.results.base.last_hidden_state)).toBeLessThan(1e-5);
    expect(maxAbsDiff(out.poolerOutput!.toArraySync(), fx.results.base.pooler_output)).toBeLessThan(1e-5);
  });

  test('old gamma/beta names without the bert. prefix load into every head', async () => {
    const m = await fromPretrained(path.join(BERT, 'old-names'), { kind: 'BertForSequenceClassification' });
    expect(m.loadReport.missingKeys).toEqual(['classifier.weight', 'classifier.bias']);
    expect(m.loadReport.unexpectedKeys).toEqual([]);
    // The model is built without drawing weights it is about to load; what the checkpoint lacks gets HF's
    // initialisation afterwards: N(0, initializer_range) weights, zero bias.
    const params = new Map(m.namedParameters());
    const w = params.get('classifier.weight')!;
    const std = Math.sqrt(w.var().item() as number);
    expect(Math.abs(std - m.config.fields.initializer_range)).toBeLessThan(0.25 * m.config.fields.initializer_range);
    expect(Math.abs(w.mean().item() as number)).toBeLessThan(m.config.fields.initializer_range);
    expect(params.get('classifier.bias')!.abs().sum().item()).toBe(0);
    const pooled = params.get('bert.pooler.dense.weight')!;
    const basePooled = new Map((await fromPretrained(path.join(BERT, 'old-names'), { kind: 'BertModel' })).namedParameters()).get('pooler.dense.weight')!;
    expect(pooled.equal(basePooled)).toBe(true);
    const base = await fromPretrained(path.join(BERT, 'old-names'), { kind: 'BertModel' });
    expect(base.loadReport.missingKeys).toEqual([]);
  });

  test('savePretrained: transformers loads it with no missing keys; HF -> torchbert -> HF is bit-identical', async () => {
    const src = path.join(BERT, 'BertForMaskedLM');
    const m = await fromPretrained(src);
    const dir = tmpDir();
    await m.savePretrained(dir);
    const r = python(
      `import sys, json, torch, transformers
from safetensors.torch import load_file
m, info = transformers.BertForMaskedLM.from_pretrained(sys.argv[1], output_loading_info=True)
ref = transformers.BertForMaskedLM.from_pretrained(sys.argv[2])
a, b = m.state_dict(), ref.state_dict()
same = all(torch.equal(a[k], b[k]) for k in b)
print(json.dumps({'missing': sorted(info['missing_keys']), 'unexpected': sorted(info['unexpected_keys']), 'identical': same, 'keys': len(b)}))`,
      [dir, src],
    );
    expect(r.missing).toEqual([]);
    expect(r.unexpected).toEqual([]);
    expect(r.identical).toBe(true);
    expect(r.keys).toBeGreaterThan(30);
  });

  test('a model saved as TorchScript runs in torch.jit.load with equal outputs', async () => {
    const m = await fromPretrained(path.join(BERT, 'BertForSequenceClassification'));
    const file = path.join(tmpDir(), 'cls.pt');
    await m.saveTorchScript(file);
    const I = fx.inputs;
    const r = python(
      `import sys, json, torch
m = torch.jit.load(sys.argv[1]); m.eval()
I = json.loads(sys.argv[2])
t = lambda k: torch.tensor(I[k])
logits, hs, ats = m(t('input_ids'), t('attention_mask'), t('token_type_ids'), None, False, False)
print(json.dumps(logits.tolist()))`,
      [file, JSON.stringify({ input_ids: I.input_ids, attention_mask: I.attention_mask, token_type_ids: I.token_type_ids })],
    );
    expect(maxAbsDiff(r, fx.results.BertForSequenceClassification.logits)).toBeLessThan(1e-5);
  });

  test('a .pt traced from HF BertModel in Python runs here', async () => {
    const m = await ScriptModule.load(path.join(BERT, 'traced.pt'));
    const I = fx.inputs;
    const [h, p] = (await m.forward(i64(I.input_ids), i64(I.attention_mask), i64(I.token_type_ids))) as Tensor[];
    expect(maxAbsDiff(h.toArraySync(), fx.results.traced.last_hidden_state)).toBeLessThan(1e-5);
    expect(maxAbsDiff(p.toArraySync(), fx.results.traced.pooler_output)).toBeLessThan(1e-5);
  });

  test('config: every HF field, validation, unknown fields survive a save', () => {
    const c = new BertConfig({ hidden_size: 64, num_attention_heads: 4, custom_field: { a: 1 } } as any);
    const file = path.join(tmpDir(), 'config.json');
    c.save(file);
    const back = BertConfig.fromFile(file).toJSON();
    expect(back.custom_field).toEqual({ a: 1 });
    for (const k of ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'hidden_act', 'hidden_dropout_prob',
      'attention_probs_dropout_prob', 'max_position_embeddings', 'type_vocab_size', 'initializer_range', 'layer_norm_eps', 'pad_token_id',
      'position_embedding_type', 'classifier_dropout', 'num_labels', 'id2label', 'label2id']) expect(back).toHaveProperty(k);
    expect(() => new BertConfig({ hidden_size: 30, num_attention_heads: 4 })).toThrow(/not a multiple of num_attention_heads/);
    expect(() => new BertConfig({ hidden_act: 'mish' as any })).toThrow(/hidden_act 'mish' is not supported/);
    expect(() => new BertConfig({ hidden_dropout_prob: 2 })).toThrow(/hidden_dropout_prob/);
    expect(() => fromConfig('BertForMagic' as any, {})).toThrow(/unknown BERT architecture/);
  });

  test('train mode applies dropout, eval mode does not', async () => {
    tb.manualSeed(0);
    const m = fromConfig('BertModel', { ...fx.tiny, hidden_dropout_prob: 0.5 });
    const x = { inputIds: i64(fx.inputs.input_ids) };
    m.eval();
    const a = (await m.forward(x)).lastHiddenState!;
    const b = (await m.forward(x)).lastHiddenState!;
    expect(a.equal(b)).toBe(true);
    m.train();
    const c = (await m.forward(x)).lastHiddenState!;
    expect(c.equal(a)).toBe(false);
  });
});

describe('real pretrained all-MiniLM-L6-v2', () => {
  const mini = fixture('minilm.json');
  const run = mini.missing ? test.skip : test;
  run('hidden states within 1e-4; mean-pooled embeddings of 1,000 SST-2 sentences at cosine >= 0.99999', async () => {
    const model = await fromPretrained(mini.dir, { kind: 'BertModel' });
    expect(model.loadReport.missingKeys).toEqual([]);
    const fb = mini.first_batch;
    const h = tb.noGrad(() => model.forwardSync({ inputIds: i64(fb.input_ids), attentionMask: i64(fb.attention_mask), tokenTypeIds: i64(fb.token_type_ids) }));
    expect(maxAbsDiff(h.lastHiddenState!.toArraySync(), fb.last_hidden_state)).toBeLessThan(1e-4);
    const tok = await BertTokenizer.fromPretrained(mini.dir);
    const sents = tb.datasets.readSst2(path.join(process.env.TORCHBERT_DATA ?? path.join(__dirname, '..', '..', 'shared', 'data'), 'sst2', 'train.tsv')).slice(0, 1000).map((e) => e.text);
    let minCos = 1;
    await forEachMeanPooled(model, tok, sents, (emb, i) => {
      const ref = tb.tensor(mini.embeddings.slice(i, i + 50));
      minCos = Math.min(minCos, tb.F.cosineSimilarity(emb, ref, 1, 1e-12).min().item() as number);
    });
    console.log(`MiniLM: minimum cosine similarity over 1000 SST-2 sentences: ${minCos}`);
    expect(minCos).toBeGreaterThanOrEqual(0.99999);
  });
});
