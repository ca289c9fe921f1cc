// The platform smoke set, run by scripts/node-matrix.sh on every supported Node version and libtorch
// build: the addon loads, tensors compute, TorchScript round-trips, a BERT forward equals transformers
// (fixture), and the server answers like Hugging Face's pipeline. The full suite covers each in depth.
import * as path from 'path';
import * as tb from '../lib';
import { ScriptModule, Tensor } from '../lib';
import { fromPretrained } from '../lib/models/bert';
import { serve } from '../lib/serve/server';
import { FIXTURES, fixture, maxAbsDiff, tmpDir } from './helpers';

test('the addon loads and reports its libtorch', () => {
  const lt = tb.info().libtorch as { version: string };
  expect(lt.version).toMatch(/^2\.\d+\.\d+/);
  console.log(`node ${process.version}, libtorch ${JSON.stringify(lt)}`);
});

test('tensors: arithmetic, matmul, autograd', async () => {
  const a = tb.tensor([[1, 2], [3, 4]], { requiresGrad: true });
  const y = a.matmul(a).sum();
  expect(y.item()).toBe(54);
  await y.backward();
  expect(a.grad!.toArraySync()).toEqual([[7, 11], [9, 13]]);
});

test('TorchScript: a module from Python loads, one built here saves and reloads with equal outputs', async () => {
  const fx = fixture('interop.json');
  const m = await ScriptModule.load(path.join(FIXTURES, 'interop.pt'));
  const [h] = (await m.forward(tb.tensor(fx.x), ['a', 'b'], { u: tb.ones([2]) }, tb.full([3], 0.5))) as [Tensor];
  expect(maxAbsDiff(h.toArraySync(), fx.h)).toBeLessThan(1e-6);
  const file = path.join(tmpDir(), 'm.pt');
  await m.save(file);
  const again = await ScriptModule.load(file);
  const [h2] = (await again.forward(tb.tensor(fx.x), ['a', 'b'], { u: tb.ones([2]) }, tb.full([3], 0.5))) as [Tensor];
  expect(maxAbsDiff(h2.toArraySync(), fx.h)).toBeLessThan(1e-6);
});

test('a BERT forward equals transformers', async () => {
  const fx = fixture('bert.json');
  const model = await fromPretrained(path.join(FIXTURES, 'bert', 'BertModel'), { kind: 'BertModel' });
  const i64 = (x: number[][]) => tb.tensor(x.map((r) => r.map(BigInt)));
  const out = await model.forward({ inputIds: i64(fx.inputs.input_ids), attentionMask: i64(fx.inputs.attention_mask), tokenTypeIds: i64(fx.inputs.token_type_ids) });
  expect(maxAbsDiff(out.lastHiddenState!.toArraySync(), fx.results.BertModel.last_hidden_state)).toBeLessThan(1e-5);
});

test('the server answers a classification request as the HF pipeline does', async () => {
  const fx = fixture('pipelines.json');
  const s = await serve({ model: path.join(FIXTURES, fx.models['tiny-BertForSequenceClassification']), port: 0 });
  try {
    await s.warm;
    const r = await fetch(`${s.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: fx.texts.slice(0, 4), top_k: null }) });
    expect(r.status).toBe(200);
    const got = ((await r.json()) as any).results;
    const want = fx.tiny.clf_all;
    got.forEach((row: any[], i: number) => row.forEach((l, j) => {
      expect(l.label).toBe(want[i][j].label);
      expect(Math.abs(l.score - want[i][j].score)).toBeLessThan(1e-5);
    }));
  } finally {
    await s.close();
  }
});
