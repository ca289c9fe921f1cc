// torchbert's own operators against ATen's in the same process: torchbert::linear (torch.linear with each
// GEMM shape on the faster of libtorch's BLAS and oneDNN, custom backward) and torchbert::dropout (a
// parallel counter-based mask); the models that call them and their saved TorchScript;
// torchbert::linear_packed (prepack()'s inference GEMM, GELU fused) in its AVX2 and portable kernels; the
// caching CPU allocator (native/allocator.cc).
import * as fs from 'fs';
import * as path from 'path';
import * as tb from '../lib';
import { Tensor, ScriptModule, TorchError } from '../lib';
import { op } from '../lib/tensor';
import { fromConfig, bertTorchScript } from '../lib/models/bert';
import { buildPortable } from '../lib/models/bert/layers';
import { spawnSync } from 'child_process';
import { maxAbsDiff, tmpDir } from './helpers';

const ours = op('torchbert::linear');
const aten = op('aten::linear');
const rel = (a: Tensor, b: Tensor) => maxAbsDiff(a.toArraySync(), b.toArraySync()) / Math.max(1e-12, b.abs().max().item() as number);

describe('torchbert::linear', () => {
  const cases: [string, number[], number, boolean, boolean][] = [
    // name, input shape, out features, bias, transposed (non-contiguous) input
    ['2-D with bias', [64, 96], 80, true, false],
    ['3-D with bias', [4, 33, 96], 200, true, false],
    ['3-D without bias', [2, 17, 96], 48, false, false],
    ['non-contiguous input', [96, 40], 24, true, true],
  ];
  test.each(cases)('%s: output and gradients equal torch.linear', async (_n, shape, out, withBias, transposed) => {
    tb.manualSeed(1);
    const base = tb.randn(shape);
    const x0 = transposed ? base.t() : base;
    const w0 = tb.randn([out, x0.size(-1)]).mul_(0.1);
    const b0 = withBias ? tb.randn([out]) : null;
    // A loss that weights every output differently, so each gradient element is checked.
    const weights = tb.randn([...x0.shape.slice(0, -1), out]);
    const run = async (o: typeof ours) => {
      const x = x0.detach().requiresGrad_(true);
      const w = w0.detach().requiresGrad_(true);
      const b = b0 ? b0.detach().requiresGrad_(true) : null;
      const y = o.t(x._handle, w._handle, b ? b._handle : null);
      await y.mul(weights).sum().backward();
      return { y, gx: x.grad!, gw: w.grad!, gb: b?.grad };
    };
    const a = await run(aten);
    // Eight calls: each GEMM's trials alternate the two backends (one untimed call and three timed of
    // each), so both run the forward, grad_input and grad_weight here.
    for (let i = 0; i < 8; i++) {
      const m = await run(ours);
      expect(m.y.shape).toEqual(a.y.shape);
      expect(rel(m.y, a.y)).toBeLessThan(1e-5);
      expect(rel(m.gx, a.gx)).toBeLessThan(1e-5);
      expect(rel(m.gw, a.gw)).toBeLessThan(1e-5);
      if (withBias) expect(rel(m.gb!, a.gb!)).toBeLessThan(1e-5);
      else expect(m.gb).toBeUndefined();
    }
    const rows = x0.numel / x0.size(-1);
    const bucket = 2 ** Math.ceil(Math.log2(rows));
    // grad_weight is timed where oneDNN's matmul runs (AVX-512 or AVX-NE-CONVERT CPUs); elsewhere it is ATen's mm.
    const passes = tb.info().onednnGradMatmul ? ['forward', 'grad_input', 'grad_weight'] : ['forward', 'grad_input'];
    if (!tb.info().onednnGradMatmul) expect(tb.linearTuning().some((r) => r.pass === 'grad_weight')).toBe(false);
    for (const pass of passes) {
      const row = tb.linearTuning().find((r) => r.pass === pass && r.rows === bucket && r.n === (pass === 'grad_input' ? x0.size(-1) : out) && r.k === (pass === 'grad_input' ? out : x0.size(-1)));
      expect(['aten', 'onednn']).toContain(row?.choice);
    }
  });

  test('each shape is timed on both backends over its first calls, then the faster one is kept', () => {
    const x = tb.randn([300, 72]);
    const w = tb.randn([56, 72]);
    const want = aten.t(x._handle, w._handle, null);
    // 300 rows tune as 512; eight calls give each backend an untimed first call and three timed ones.
    for (let i = 0; i < 8; i++) expect(rel(tb.noGrad(() => ours.t(x._handle, w._handle, null)), want)).toBeLessThan(1e-5);
    const row = tb.linearTuning().find((r) => r.pass === 'forward' && r.rows === 512 && r.n === 56 && r.k === 72)!;
    expect(row).toBeDefined();
    expect(['aten', 'onednn']).toContain(row.choice);
    expect(row.atenPsPerMac).toBeGreaterThan(0);
    expect(row.onednnPsPerMac).toBeGreaterThan(0);
    expect(row.choice).toBe(row.onednnPsPerMac! < row.atenPsPerMac! ? 'onednn' : 'aten');
  });

  test('without grad, in float64, under bf16 autocast and on empty batches it is torch.linear', async () => {
    const x = tb.randn([8, 16]);
    const w = tb.randn([4, 16]);
    const y = tb.noGrad(() => ours.t(x._handle, w._handle, null));
    expect(rel(y, aten.t(x._handle, w._handle, null))).toBeLessThan(1e-5);
    const x64 = x.double();
    const y64 = ours.t(x64._handle, w.double()._handle, null);
    expect(y64.dtype).toBe('float64');
    expect(rel(y64, aten.t(x64._handle, w.double()._handle, null))).toBeLessThan(1e-12);
    const ybf = tb.autocast({ device: 'cpu', dtype: 'bfloat16' }, () => ours.t(x._handle, w._handle, null));
    expect(ybf.dtype).toBe('bfloat16');
    const empty = ours.t(tb.zeros([0, 16])._handle, w._handle, null);
    expect(empty.shape).toEqual([0, 4]);
  });

  test('bad shapes are a TorchError naming them; the process goes on', () => {
    const x = tb.randn([3, 5]);
    const w = tb.randn([4, 6]);
    expect(() => ours.t(x._handle, w._handle, null)).toThrow(TorchError);
    expect(() => ours.t(x._handle, w._handle, null)).toThrow(/cannot be multiplied \(3x5 and 6x4\)/);
    expect(() => ours.t(x._handle, tb.randn([4, 5])._handle, tb.randn([3])._handle)).toThrow(TorchError);
    expect(ours.t(x._handle, tb.randn([4, 5])._handle, null).shape).toEqual([3, 4]);
  });

  test("models built here call it; saveTorchScript writes torch.linear, which Python's loader knows", async () => {
    tb.manualSeed(0);
    const cfg = { vocab_size: 99, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 37, max_position_embeddings: 64 };
    const model = fromConfig('BertForSequenceClassification', cfg);
    const graphs = (m: ScriptModule): string => [...m.methodNames.map((f) => m.graph(f)), ...m.namedChildren().map(([, c]) => graphs(c))].join('\n');
    expect(graphs(model.module)).toContain('torchbert::linear');
    expect(graphs(model.module)).toContain('torchbert::dropout');
    const file = path.join(tmpDir(), 'model.pt');
    model.eval();
    await model.saveTorchScript(file);
    const loaded = await ScriptModule.load(file);
    expect(graphs(loaded)).not.toContain('torchbert::');
    expect(graphs(loaded)).toContain('aten::linear');
    expect(graphs(loaded)).toContain('aten::dropout');
    const ids = tb.tensor([[2n, 7n, 9n, 3n]]);
    const want = (await tb.noGrad(() => model.forward({ inputIds: ids }))).logits!;
    const got = ((await tb.noGrad(() => loaded.forward(ids, null, null, null, false, false))) as Tensor[])[0];
    expect(maxAbsDiff(got.toArraySync(), want.toArraySync())).toBeLessThan(1e-6);
    // Parameters keep training state and values: the copy was made from them, the model is unchanged.
    expect(model.training).toBe(false);
    expect(fs.statSync(file).size).toBeGreaterThan(1000);
    loaded.dispose();
  });
});

describe('torchbert::dropout', () => {
  const dropout = op('torchbert::dropout');
  const N = 1 << 18;
  // Zeros among n draws at drop rate p: within 6 standard deviations of n p.
  const expectRate = (zeros: number, n: number, p: number) => expect(Math.abs(zeros - n * p)).toBeLessThan(6 * Math.sqrt(n * p * (1 - p)));

  test.each([0.1, 0.5, 0.9])('p = %f: drops that share of elements, everywhere alike, and scales the rest by 1/(1-p)', (p) => {
    tb.manualSeed(0);
    const x = tb.randn([N]).add(5); // no zeros among the inputs
    const y = dropout.t(x._handle, p, true);
    const dropped = y.eq(0);
    expectRate(dropped.sum().item() as number, N, p);
    // Each 64-bit draw feeds an even and an odd element; blocks of the tensor go to different threads.
    const halves = dropped.view([-1, 2]).float().sum(0).toArraySync() as number[];
    for (const z of halves) expectRate(z, N / 2, p);
    for (const part of dropped.view([8, -1]).float().sum(1).toArraySync() as number[]) expectRate(part, N / 8, p);
    // Neighbours are independent: both dropped at rate p^2.
    expectRate(dropped.narrow(0, 0, N - 1).logicalAnd(dropped.narrow(0, 1, N - 1)).sum().item() as number, N - 1, p * p);
    const kept = dropped.logicalNot();
    expect(maxAbsDiff(y.maskedSelect(kept).toArraySync(), x.maskedSelect(kept).mul(1 / (1 - p)).toArraySync())).toBeLessThan(1e-6);
  });

  test('seeded by manualSeed, fresh on every call, the same with 1 or 2 threads', () => {
    const x = tb.randn([3, 1000, 77]); // odd element count: the last element takes a draw of its own
    tb.manualSeed(42);
    const a = dropout.t(x._handle, 0.3, true);
    const b = dropout.t(x._handle, 0.3, true);
    expect(a.equal(b)).toBe(false);
    const threads = tb.getNumThreads();
    try {
      tb.setNumThreads(1);
      tb.manualSeed(42);
      expect(dropout.t(x._handle, 0.3, true).equal(a)).toBe(true);
    } finally {
      tb.setNumThreads(threads);
    }
    tb.manualSeed(42);
    expect(dropout.t(x._handle, 0.3, true).equal(a)).toBe(true);
  });

  test('gradient: the incoming gradient through the same mask and scale, also with create_graph', async () => {
    tb.manualSeed(1);
    const x = tb.randn([64, 33]).requiresGrad_(true);
    const w = tb.randn([64, 33]);
    const y = dropout.t(x._handle, 0.25, true);
    await y.mul(w).sum().backward();
    const want = w.mul(y.ne(0).float()).mul(1 / 0.75);
    expect(maxAbsDiff(x.grad!.toArraySync(), want.toArraySync())).toBeLessThan(1e-6);
    // Second order: d/dx sum(dropout(x^2)) = 2x * mask / (1-p), whose own gradient is 2 * mask / (1-p).
    const x2 = x.detach().requiresGrad_(true);
    const z = dropout.t(x2.mul(x2)._handle, 0.25, true);
    const kept = z.ne(0).float();
    await z.sum().backward(undefined, { createGraph: true });
    const g = x2.grad!;
    const first = g.detach().clone();
    expect(maxAbsDiff(first.toArraySync(), x2.detach().mul(2).mul(kept).mul(1 / 0.75).toArraySync())).toBeLessThan(1e-5);
    await g.sum().backward(); // adds the second derivative to x2.grad
    expect(maxAbsDiff(x2.grad!.sub(first).toArraySync(), kept.mul(2 / 0.75).toArraySync())).toBeLessThan(1e-5);
  });

  test('eval, p = 0, p = 1, float64 and empty tensors are torch.dropout; a bad p is its TorchError', () => {
    const x = tb.randn([100, 10]);
    expect(dropout.t(x._handle, 0.5, false).equal(x)).toBe(true);
    expect(dropout.t(x._handle, 0, true).equal(x)).toBe(true);
    expect(dropout.t(x._handle, 1, true).abs().sum().item()).toBe(0);
    const y64 = dropout.t(x.to({ dtype: 'float64' })._handle, 0.5, true);
    expect(y64.dtype).toBe('float64');
    expectRate(y64.eq(0).sum().item() as number, 1000, 0.5);
    expect(dropout.t(tb.zeros([0, 4])._handle, 0.5, true).shape).toEqual([0, 4]);
    expect(() => dropout.t(x._handle, 1.5, true)).toThrow(TorchError);
    expect(() => dropout.t(x._handle, -0.1, true)).toThrow(/dropout probability has to be between 0 and 1, but got -0.1/);
    expect(() => dropout.t(x._handle, Number.NaN, true)).toThrow(/but got nan/);
  });
});

describe('torchbert::linear_packed', () => {
  const pack = op('torchbert::pack_linear_weight');
  const packed = op('torchbert::linear_packed');
  const gelu = op('aten::gelu');
  // [input shape, out features, bias]: row counts around the 6-row blocks, outputs around the 16-wide panels,
  // and past the 168-row chunks and 768-wide blocks of K (with tails of each).
  const shapes: [number[], number, boolean][] = [[[1, 64], 16, true], [[5, 96], 40, true], [[7, 64], 2, true], [[13, 300], 48, false], [[2, 17, 96], 200, true],
    [[24, 768], 768, true], [[0, 32], 16, true], [[400, 1000], 40, true], [[170, 1600], 24, false]];

  test.each(shapes)('input %j, %i outputs (bias %s): equals torch.linear, with GELU fused equals torch.gelu of it', (shape, N, withBias) => {
    tb.noGrad(() => {
      tb.manualSeed(3);
      const x = tb.randn(shape).mul_(2);
      const w = tb.randn([N, shape[shape.length - 1]]).mul_(0.1);
      const b = withBias ? tb.randn([N]) : null;
      const pw = pack.t(w._handle);
      expect(pw.shape).toEqual([Math.ceil(N / 16), shape[shape.length - 1], 16]);
      const ref = aten.t(x._handle, w._handle, b ? b._handle : null);
      for (const [act, want] of [['none', ref], ['gelu', gelu.t(ref._handle, 'none')], ['gelu_tanh', gelu.t(ref._handle, 'tanh')]] as const) {
        const y = packed.t(x._handle, pw._handle, b ? b._handle : null, N, act);
        expect(y.shape).toEqual([...shape.slice(0, -1), N]);
        if (y.numel > 0) expect([act, rel(y, want) < 1e-5]).toEqual([act, true]);
      }
    });
  });

  test('the fused GELU itself: identity weights, inputs over [-12, 12], within 1e-6 of torch.gelu', () => {
    tb.noGrad(() => {
      const x = tb.linspace(-12, 12, 16 * 601).view([601, 16]);
      const eye = pack.t(tb.eye(16)._handle);
      expect(maxAbsDiff(packed.t(x._handle, eye._handle, null, 16, 'none').toArraySync(), x.toArraySync())).toBe(0);
      for (const approx of ['none', 'tanh']) {
        const y = packed.t(x._handle, eye._handle, null, 16, approx === 'none' ? 'gelu' : 'gelu_tanh');
        expect([approx, maxAbsDiff(y.toArraySync(), gelu.t(x._handle, approx).toArraySync()) < 1e-6]).toEqual([approx, true]);
      }
    });
  });

  test('bad arguments are errors naming what is wrong', () => {
    const x = tb.randn([3, 32]);
    const pw = pack.t(tb.randn([20, 32])._handle);
    expect(() => pack.t(tb.randn([4])._handle)).toThrow(/2-D float32 CPU weight/);
    expect(() => pack.t(tb.randn([4, 0])._handle)).toThrow(/2-D float32 CPU weight/);
    expect(() => packed.t(tb.randn([3, 0])._handle, tb.zeros([2, 0, 16])._handle, null, 20, 'none')).toThrow(/no input features/);
    expect(() => packed.t(x._handle, tb.randn([2, 32])._handle, null, 20, 'none')).toThrow(/pack_linear_weight/);
    expect(() => packed.t(x._handle, pw._handle, null, 40, 'none')).toThrow(/out_features 40/);
    expect(() => packed.t(tb.randn([3, 31])._handle, pw._handle, null, 20, 'none')).toThrow(/in_features 32/);
    expect(() => packed.t(x._handle, pw._handle, tb.randn([7])._handle, 20, 'none')).toThrow(/bias of 7/);
    expect(() => packed.t(x._handle, pw._handle, null, 20, 'relu')).toThrow(/none, gelu or gelu_tanh/);
    expect(() => packed.t(x.to({ dtype: 'float64' })._handle, pw._handle, null, 20, 'none')).toThrow(/float32 CPU input/);
  });

  test('the portable kernel (CPUs without AVX2) gives the same results, over several row chunks and blocks of K', () => {
    const root = path.join(__dirname, '..');
    const code = `
      const tb = require(${JSON.stringify(root)}); const { op } = require(${JSON.stringify(path.join(root, 'dist', 'tensor'))});
      tb.manualSeed(5); const x = tb.randn([200, 1000]); const w = tb.randn([40, 1000]).mul_(0.05); const b = tb.randn([40]);
      const pw = op('torchbert::pack_linear_weight').t(w._handle);
      const y = ['none', 'gelu', 'gelu_tanh'].map((a) => op('torchbert::linear_packed').t(x._handle, pw._handle, b._handle, 40, a).toArraySync());
      console.log(JSON.stringify(y));`;
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, ...env } });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout) as number[][][];
    };
    const fast = run({});
    const portable = run({ TORCHBERT_LINEAR_PACKED: 'portable' });
    fast.forEach((y, i) => expect(maxAbsDiff(portable[i], y)).toBeLessThan(1e-4));
  });

});

// prepack()'s linear layers: each shape's GEMM chosen by timing ours, oneDNN and ATen on this machine
// (native/linear_select.cc, lib/models/linear-plan.ts).
describe('torchbert::linear_prepacked and its plan', () => {
  const prepacked = op('torchbert::linear_prepacked');
  const setPlan = op('torchbert::set_linear_plan');
  const planOf = op('torchbert::linear_plan');
  const pack = op('torchbert::pack_linear_weight');
  const reorder = op('torchbert::reorder_linear_weight');
  const none = () => tb.zeros([0]);
  const cfg = { vocab_size: 99, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 37 };
  const graphs = (m: ScriptModule): string => [...m.methodNames.map((f) => m.graph(f)), ...m.namedChildren().map(([, c]) => graphs(c))].join('\n');
  // ms[bucket][backend] for rows 1, 4, 16, 64, 256, 1024, 4096 and backends torchbert, onednn, aten.
  const timings = (f: (bucket: number, backend: number) => number) => Array.from({ length: 21 }, (_, i) => f(Math.floor(i / 3), i % 3));

  test('tune_linear times the three GEMMs at seven row counts and keeps a choice per row count', () => {
    const ms = op('torchbert::tune_linear').raw(40, 24, 'gelu') as number[];
    expect(ms).toHaveLength(21);
    for (const v of ms) expect(v).toBeGreaterThan(0); // every backend ran (oneDNN is in the pip libtorch)
    const choices = planOf.raw(40, 24, 'gelu') as number[];
    expect(choices).toHaveLength(7);
    for (const c of choices) expect([0, 1, 2]).toContain(c);
    const rows = tb.linearTuning().filter((r) => r.pass === 'inference' && r.n === 40 && r.k === 24 && r.activation === 'gelu');
    expect(rows.map((r) => r.rows)).toEqual([1, 4, 16, 64, 256, 1024, 4096]);
    rows.forEach((r, b) => {
      expect(r.choice).toBe(['torchbert', 'onednn', 'aten'][choices[b]]);
      expect(r.torchbertPsPerMac).toBeCloseTo((ms[3 * b] * 1e9) / (r.rows * 40 * 24), 6);
    });
    expect(planOf.raw(41, 24, 'gelu')).toEqual([]); // never tuned
  });

  test('each call runs its row count\'s choice, on the layout the module holds for it', () => {
    // Ours faster up to 16 rows, ATen from 64 (by more than 10%): both layouts are wanted. Two different
    // weights in the two layouts show which GEMM ran.
    setPlan.raw(48, 20, 'none', timings((b, k) => (k === 0 ? (b <= 2 ? 1 : 2) : k === 2 ? (b <= 2 ? 2 : 1) : 3)));
    expect(planOf.raw(48, 20, 'none')).toEqual([0, 0, 0, 2, 2, 2, 2]);
    const [w1, w2, bias] = [tb.randn([48, 20]), tb.randn([48, 20]), tb.randn([48])];
    const packedW1 = pack.t(w1._handle);
    for (const [rows, expected] of [[1, w1], [3, w1], [24, w1], [40, w2], [300, w2], [5000, w2]] as const) {
      const x = tb.randn([rows, 20]);
      const y = prepacked.t(x._handle, packedW1._handle, none()._handle, w2._handle, bias._handle, 48, 'none');
      expect(rel(y, aten.t(x._handle, expected._handle, bias._handle))).toBeLessThan(1e-5);
    }
    // A layout the module lacks: the first one it holds runs.
    const x = tb.randn([500, 20]);
    expect(rel(prepacked.t(x._handle, packedW1._handle, none()._handle, none()._handle, bias._handle, 48, 'none'), aten.t(x._handle, w1._handle, bias._handle))).toBeLessThan(1e-5);
  });

  test('the fewest backends that run every row count from 16 up within 10% of its fastest are kept (one layout where one suffices)', () => {
    // Ours fastest up to 16 rows, oneDNN from 64 rows and within 10% of ours below: oneDNN everywhere.
    setPlan.raw(52, 20, 'none', timings((b, k) => (k === 0 ? (b <= 2 ? 1 : 1.3) : k === 1 ? (b <= 2 ? 1.09 : 1) : 2)));
    expect(planOf.raw(52, 20, 'none')).toEqual([1, 1, 1, 1, 1, 1, 1]);
    // Each backend fastest somewhere, but two cover every row count within 10%: ATen's layout is not kept.
    setPlan.raw(60, 20, 'none', timings((b, k) => [[1, 3, 3], [1, 3, 3], [1, 3, 3], [2, 1.08, 1], [2, 1, 1.5], [2, 1, 1.5], [2, 1, 1.5]][b][k]));
    expect(planOf.raw(60, 20, 'none')).toEqual([0, 0, 0, 1, 1, 1, 1]);
    // Ours 1.6x faster at 1 and 4 rows, oneDNN within 10% from 16 rows up: one layout (oneDNN) runs them all;
    // a second copy of the weights is not kept for one- or two-word inputs.
    setPlan.raw(54, 20, 'none', timings((b, k) => (k === 0 ? (b <= 1 ? 1 : 1.5) : k === 1 ? (b <= 1 ? 1.6 : b === 2 ? 1.09 : 1) : 3)));
    expect(planOf.raw(54, 20, 'none')).toEqual([1, 1, 1, 1, 1, 1, 1]);
    // A backend that is unavailable (NaN) is never chosen.
    setPlan.raw(56, 20, 'none', timings((b, k) => (k === 1 ? NaN : k === 2 ? 1 : 3)));
    expect(planOf.raw(56, 20, 'none')).toEqual([2, 2, 2, 2, 2, 2, 2]);
    // One layout asked for (max_layouts 1): the backend with the least time over the fastest, summed over
    // row counts. Ours fastest up to 16 rows, ATen from 64: two layouts as measured; alone, ours costs
    // 3 x 1 + 4 x 2.2 = 11.8, ATen 3 x 2 + 4 x 1 = 10, oneDNN 21: ATen.
    setPlan.raw(62, 20, 'none', timings((b, k) => (k === 0 ? (b <= 2 ? 1 : 2.2) : k === 2 ? (b <= 2 ? 2 : 1) : 3)));
    expect(planOf.raw(62, 20, 'none')).toEqual([0, 0, 0, 2, 2, 2, 2]);
    expect(planOf.raw(62, 20, 'none', 'float32', 1)).toEqual([2, 2, 2, 2, 2, 2, 2]);
    expect(planOf.raw(56, 20, 'none', 'float32', 1)).toEqual([2, 2, 2, 2, 2, 2, 2]);
    expect(() => planOf.raw(56, 20, 'none', 'float32', 2)).toThrow(/max_layouts must be 0 \(as measured\) or 1, got 2/);
    expect(() => setPlan.raw(56, 20, 'none', [1, 2])).toThrow(/expected 21 timings, got 2/);
    expect(() => setPlan.raw(56, 20, 'relu', timings(() => 1))).toThrow(/activation must be none, gelu or gelu_tanh, got relu/);
  });

  test.each(['none', 'gelu', 'gelu_tanh'])('every backend computes act(x W^T + b) (%s), 2-D and 3-D', (act) => {
    const [w, bias] = [tb.randn([70, 33]), tb.randn([70])];
    const layouts = [[pack.t(w._handle), none(), none()], [none(), reorder.t(w._handle), none()], [none(), none(), w]];
    for (const shape of [[5, 33], [2, 7, 33]]) {
      const x = tb.randn(shape);
      const lin = aten.t(x._handle, w._handle, bias._handle);
      const want = act === 'none' ? lin : act === 'gelu' ? tb.F.gelu(lin) : tb.F.gelu(lin, 'tanh');
      for (const [a, b, c] of layouts) {
        const y = prepacked.t(x._handle, a._handle, b._handle, c._handle, bias._handle, 70, act);
        expect(y.shape).toEqual(want.shape);
        expect(rel(y, want)).toBeLessThan(1e-5);
      }
    }
  });

  test('bad arguments are errors naming what is wrong', () => {
    const x = tb.randn([4, 8]);
    const w = tb.randn([6, 8]);
    expect(() => prepacked.t(x._handle, none()._handle, none()._handle, none()._handle, null, 6, 'none')).toThrow(/holds no weight layout/);
    expect(() => prepacked.t(tb.randn([4, 9])._handle, none()._handle, none()._handle, w._handle, null, 6, 'none')).toThrow(/does not end in in_features 8/);
    expect(() => prepacked.t(x.to({ dtype: 'float64' })._handle, none()._handle, none()._handle, w._handle, null, 6, 'none')).toThrow(/expected a float32 or bfloat16 CPU input, got Double/);
    expect(() => prepacked.t(x.to({ dtype: 'bfloat16' })._handle, none()._handle, none()._handle, w._handle, null, 6, 'none')).toThrow(/a BFloat16 input needs BFloat16 weights, the module holds Float/);
    expect(() => prepacked.t(x.to({ dtype: 'bfloat16' })._handle, pack.t(w._handle)._handle, none()._handle, none()._handle, null, 6, 'none')).toThrow(/holds no BFloat16 weight layout/);
    expect(() => op('torchbert::tune_linear').raw(8, 8, 'none', 'float16')).toThrow(/dtype must be float32 or bfloat16, got float16/);
    expect(() => prepacked.t(x._handle, none()._handle, none()._handle, w._handle, null, 6, 'relu')).toThrow(/activation must be none, gelu or gelu_tanh/);
    expect(() => op('torchbert::tune_linear').raw(0, 8, 'none')).toThrow(/must be positive/);
  });

  test('bf16: tune_linear times oneDNN and ATen on bf16 weights (our kernel is fp32 only); each computes act(x W^T + b) in bf16', () => {
    const ms = op('torchbert::tune_linear').raw(40, 24, 'gelu', 'bfloat16') as number[];
    expect(ms).toHaveLength(21);
    for (let b = 0; b < 7; b++) {
      expect(ms[3 * b]).toBeNaN(); // ours
      expect(ms[3 * b + 2]).toBeGreaterThan(0); // ATen runs bf16 everywhere; oneDNN's bf16 needs AVX-512 (NaN without it)
    }
    const choices = planOf.raw(40, 24, 'gelu', 'bfloat16') as number[];
    expect(choices).toHaveLength(7);
    for (const c of choices) expect([1, 2]).toContain(c);
    expect(tb.linearTuning().filter((r) => r.pass === 'inference' && r.n === 40 && r.k === 24 && r.dtype === 'bfloat16')).toHaveLength(7);
    // The fp32 plan of the same shape is its own.
    setPlan.raw(40, 24, 'gelu', timings((b, k) => (k === 0 ? 1 : 2)));
    expect(planOf.raw(40, 24, 'gelu')).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(planOf.raw(40, 24, 'gelu', 'bfloat16')).toEqual(choices);
    const [w, bias] = [tb.randn([40, 24]).to({ dtype: 'bfloat16' }), tb.randn([40]).to({ dtype: 'bfloat16' })];
    const x = tb.randn([2, 5, 24]).to({ dtype: 'bfloat16' });
    const want = tb.F.gelu(aten.t(x.float()._handle, w.float()._handle, bias.float()._handle));
    const layouts = [[none(), none(), w]];
    if (Number.isFinite(ms[1])) layouts.push([none(), reorder.t(w._handle), none()]);
    for (const [a, b, c] of layouts) {
      const y = prepacked.t(x._handle, a._handle, b._handle, c._handle, bias._handle, 40, 'gelu');
      expect(y.dtype).toBe('bfloat16');
      expect(y.shape).toEqual([2, 5, 40]);
      expect(rel(y.float(), want)).toBeLessThan(2e-2); // bf16 output rounding (8 bits of mantissa)
    }
  });

  test('prepack() lays out each weight for the GEMMs its plan runs, GELU fused; each forced backend equals the float model', async () => {
    const model = fromConfig('BertForSequenceClassification', cfg);
    model.eval();
    const ids = tb.randint(1, 99, [3, 9]);
    const a = await tb.noGrad(() => model.forward({ inputIds: ids }));
    const layoutOf = { torchbert: 'packed_weight', onednn: 'onednn_weight', aten: 'weight' } as const;
    const held = (m: ScriptModule): string[] => m.namedChildren().flatMap(([n, c]) =>
      c.hasAttr('packed_weight') ? [Object.entries(layoutOf).filter(([, k]) => (c.getAttr(k) as Tensor).numel > 0).map(([b]) => b).join('+')] : held(c).map((x) => `${n}.${x}`));
    const activations = (m: ScriptModule): string[] => m.namedChildren().flatMap(([n, c]) =>
      c.hasAttr('packed_weight') ? [`${n}:${c.getAttr('activation')}`] : activations(c).map((x) => `${n}.${x}`));
    for (const backend of ['auto', 'torchbert', 'onednn', 'aten'] as const) {
      const p = backend === 'auto' ? await model.prepackAsync() : model.prepack({ backend });
      const g = graphs(p.module);
      expect(g).toContain('torchbert::linear_prepacked');
      // GELU runs inside the intermediate layers' GEMMs, nowhere after them.
      expect(g).not.toContain('aten::gelu');
      expect(activations(p.module).filter((a) => !a.endsWith(':none'))).toEqual(['bert.encoder.layer.0.intermediate.dense:gelu', 'bert.encoder.layer.1.intermediate.dense:gelu']);
      const layouts = held(p.module).map((l) => l.slice(l.lastIndexOf('.') + 1));
      expect(layouts.length).toBe(2 * 4 + 2); // per layer qkv, output, intermediate, output; pooler, classifier
      if (backend !== 'auto') for (const l of layouts) expect(l).toBe(backend);
      else for (const l of layouts) expect(l.length).toBeGreaterThan(0);
      const b = await tb.noGrad(() => p.forward({ inputIds: ids }));
      expect(rel(b.logits!, a.logits!)).toBeLessThan(1e-5);
      p.module.dispose();
    }
    expect(() => model.prepack({ backend: 'mkl' as never })).toThrow(/prepack backend must be auto, torchbert, onednn, aten; got 'mkl'/);
    // layouts 'one': every layer holds a single layout, and computes the same
    const one = await model.prepackAsync({ layouts: 'one' });
    for (const l of held(one.module)) expect(l.slice(l.lastIndexOf('.') + 1)).toMatch(/^(torchbert|onednn|aten)$/);
    const c = await tb.noGrad(() => one.forward({ inputIds: ids }));
    expect(rel(c.logits!, a.logits!)).toBeLessThan(1e-5);
    one.dispose();
    expect(() => model.prepack({ layouts: 'two' as never })).toThrow(/prepack layouts must be 'auto' or 'one', got "two"/);
  });

  test('the timings are cached on disk per CPU, libtorch and thread count; a later process decides from them without measuring', () => {
    const file = path.join(tmpDir(), 'plan.json');
    const code = `
      const tb = require(${JSON.stringify(path.resolve(__dirname, '..'))});
      const { fromConfig } = require(${JSON.stringify(path.resolve(__dirname, '../dist/models/bert'))});
      const m = fromConfig('BertModel', ${JSON.stringify({ ...cfg, hidden_size: 48, intermediate_size: 40 })}).eval();
      const p = m.prepack();
      const q = p.module.getAttr('encoder').getAttr('layer').getAttr('0').getAttr('intermediate').getAttr('dense');
      console.log(JSON.stringify({ tuned: tb.linearTuning().filter((r) => r.pass === 'inference').length,
        held: ['packed_weight', 'onednn_weight', 'weight'].filter((k) => q.getAttr(k).numel > 0) }));`;
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, TORCHBERT_TUNING_CACHE: file, ...env } });
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n').pop()!);
    };
    expect(run({}).tuned).toBeGreaterThan(0);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    const [key] = Object.keys(saved);
    expect(key).toMatch(/libtorch 2\.\d+.* threads/);
    expect(Object.keys(saved[key])).toEqual(expect.arrayContaining(['144x48 none', '48x48 none', '40x48 gelu', '48x40 none']));
    // Rewritten so that ATen is fastest everywhere for the intermediate layer: the next process follows the file.
    saved[key]['40x48 gelu'] = timings((b, k) => (k === 2 ? 1 : 5));
    fs.writeFileSync(file, JSON.stringify(saved));
    expect(run({}).held).toEqual(['weight']);
    expect(run({ TORCHBERT_PREPACKED: 'onednn' }).held).toEqual(['onednn_weight']);
    const bad = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, TORCHBERT_PREPACKED: 'fast' } });
    expect(bad.stderr).toMatch(/TORCHBERT_PREPACKED must be auto, torchbert, onednn, aten; got 'fast'/);
  });

  test('under an ISA cap (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2, as on an AVX2 CPU) the plan is measured again under its own key, prepack still equals the float model, bf16 is refused where the cap hides the units, and the gradients of torchbert::linear stay on ATen', () => {
    const file = path.join(tmpDir(), 'plan.json');
    const code = `
      const tb = require(${JSON.stringify(path.resolve(__dirname, '..'))});
      const { fromConfig } = require(${JSON.stringify(path.resolve(__dirname, '../dist/models/bert'))});
      const m = fromConfig('BertModel', ${JSON.stringify(cfg)}).eval();
      const ids = tb.randint(1, 99, [3, 9]);
      const a = tb.noGrad(() => m.forwardSync({ inputIds: ids })).lastHiddenState;
      const b = tb.noGrad(() => m.prepack().forwardSync({ inputIds: ids })).lastHiddenState;
      const c = tb.cpuInfo();
      let bf16 = 'loaded';
      try { fromConfig('BertModel', ${JSON.stringify(cfg)}).to({ dtype: 'bfloat16' }).prepack(); } catch (e) { bf16 = e.message; }
      console.log(JSON.stringify({ rel: a.sub(b).abs().max().item() / a.abs().max().item(),
        cap: c.onednnIsaCap, usable: c.bf16, hardware: c.flags.includes('avx512_bf16') || c.flags.includes('amx_bf16'), bf16, gradMatmul: tb.info().onednnGradMatmul }));`;
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, TORCHBERT_TUNING_CACHE: file, ...env } });
      expect(r.stderr).not.toMatch(/Error/);
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n').pop()!);
    };
    const free = run({ ONEDNN_MAX_CPU_ISA: '', ATEN_CPU_CAPABILITY: '' });
    const capped = run({ ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' });
    for (const r of [free, capped]) expect(r.rel).toBeLessThan(1e-5);
    // Two plans in the cache: the capped process did not reuse the timings of the uncapped one.
    const keys = Object.keys(JSON.parse(fs.readFileSync(file, 'utf8')));
    expect(keys).toHaveLength(2);
    expect(keys.filter((k) => k.endsWith('AVX2 avx2 | v3'))).toHaveLength(1);
    expect(free.cap).toBeNull();
    expect(capped.cap).toBe('AVX2');
    expect(capped.usable).toBe(false);
    // oneDNN's matmul (torchbert::linear's grad-weight candidate) needs AVX-512: under the cap the gradients stay on ATen.
    expect(capped.gradMatmul).toBe(false);
    if (capped.hardware) {
      expect(free.gradMatmul).toBe(true);
      expect(free.usable).toBe(true);
      expect(free.bf16).toBe('loaded');
      expect(capped.bf16).toMatch(/has bf16 units, but ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN from using them.*lift the cap/);
    } else expect(capped.bf16).toMatch(/has no bf16 units/);
    // A cap that still admits the bf16 units leaves them usable; a name oneDNN does not know is no cap.
    const usable = (cap: string) => JSON.parse(spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(path.resolve(__dirname, '..'))}).cpuInfo()))`],
      { encoding: 'utf8', env: { ...process.env, ONEDNN_MAX_CPU_ISA: cap } }).stdout).bf16;
    for (const cap of ['AVX512_CORE_BF16', 'avx10_1_512_amx', 'NONSENSE']) expect(usable(cap)).toBe(free.usable);
    expect(usable('AVX512_CORE_VNNI')).toBe(false);
  });
});

describe('torchbert::attention', () => {
  const attention = op('torchbert::attention');
  const sdpa = op('aten::scaled_dot_product_attention');
  test.each(['float32', 'bfloat16'] as const)('%s: every call equals SDPA (the trials alternate fused and spelled out), masked by a bool or additive mask; the choice is kept', (dtype) => {
    const tol = dtype === 'float32' ? 1e-5 : 2e-2;
    const [q, k, v] = [tb.randn([2, 3, 7, 8]), tb.randn([2, 3, 5, 8]), tb.randn([2, 3, 5, 8])].map((t) => t.to({ dtype }));
    const keep = tb.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).to({ dtype: 'bool' }).view([2, 1, 1, 5]);
    const additive = tb.zeros([2, 1, 1, 5], { dtype }).maskedFill(keep.logicalNot(), -Infinity);
    for (const mask of [keep, additive, null]) {
      const want = sdpa.t(q, k, v, mask).float();
      for (let i = 0; i < 8; i++) {
        const y = attention.t(q, k, v, mask);
        expect(y.dtype).toBe(dtype);
        expect(y.shape).toEqual([2, 3, 7, 8]);
        expect(rel(y.float(), want)).toBeLessThan(tol);
      }
    }
    const row = tb.attentionTuning().find((r) => r.dtype === (dtype === 'float32' ? 'Float' : 'BFloat16') && r.batchHeads === 8 && r.queryLength === 8 && r.keyLength === 8)!;
    expect(['sdpa', 'math']).toContain(row.choice);
    expect(row.sdpaPs).toBeGreaterThan(0);
    expect(row.mathPs).toBeGreaterThan(0);
  });

  test('with gradients it runs SDPA, and they flow; bad shapes are errors naming them', async () => {
    const q = tb.randn([1, 2, 4, 8]).requiresGrad_();
    const y = attention.t(q, tb.randn([1, 2, 4, 8]), tb.randn([1, 2, 4, 8]), null);
    await y.sum().backward();
    expect(q.grad!.shape).toEqual([1, 2, 4, 8]);
    expect(() => attention.t(tb.randn([4, 8]), tb.randn([4, 8]), tb.randn([4, 8]), null)).toThrow(/q, k and v must be \[\.\.\., T, d\] of one rank, got \[4, 8\]/);
  });

  test('attentionMode() pins the implementation at run time and checks its argument', async () => {
    const q = fromConfig('BertModel', { vocab_size: 99, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 37 }).eval().quantizeDynamic();
    const ids = tb.randint(1, 99, [8, 24]);
    const before = tb.attentionMode();
    try {
      for (const [mode, kernel] of [['sdpa', 'aten::_scaled_dot_product_flash_attention_for_cpu'], ['math', 'aten::bmm']] as const) {
        expect(tb.attentionMode(mode)).toBe(mode);
        const ran = (await tb.profile(async () => { await tb.noGrad(() => q.forward({ inputIds: ids })); })).keyAverages().map((o) => o.name);
        expect(ran).toContain('torchbert::attention');
        expect(ran).toContain(kernel);
      }
      expect(() => tb.attentionMode('fast' as 'auto')).toThrow(/attentionMode must be 'auto', 'sdpa' or 'math', got 'fast'/);
      expect(tb.attentionMode()).toBe('math');
    } finally {
      tb.attentionMode(before);
    }
    q.dispose();
  });

  test('the inference copies (prepacked, int8) run it; trainable and portable models, and the int8 TorchScript saved for Python, run SDPA', () => {
    const cfg = { vocab_size: 99, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 37 };
    const sources = (mode: string) => bertTorchScript('BertModel', cfg, mode as never);
    for (const mode of ['prepacked', 'int8']) {
      expect(sources(mode)).toContain('ops.torchbert.attention(q, k, v, mask)');
      expect(sources(mode)).not.toContain('scaled_dot_product_attention');
    }
    for (const mode of ['float', 'portable']) expect(sources(mode)).not.toContain('ops.torchbert.attention');
    const saved = buildPortable(() => sources('int8'));
    expect(saved).not.toContain('ops.torchbert.');
    expect(saved).toContain('scaled_dot_product_attention');
  });
});

describe('caching CPU allocator', () => {
  afterEach(() => tb.cpuCache.setLimit(4 * 2 ** 30));

  test('a freed block of 1 MiB is reused by the next tensor of that size; emptyCache gives it back', () => {
    tb.cpuCache.emptyCache();
    const before = tb.cpuCache.stats();
    expect(before.cachedBytes).toBe(0);
    expect(before.limitBytes).toBeGreaterThan(0);
    tb.randn([512, 512]).dispose(); // 1 MiB
    const cached = tb.cpuCache.stats();
    expect(cached.cachedBytes).toBeGreaterThanOrEqual(2 ** 20);
    const z = tb.zeros([512, 512]); // the same block again, and still zeros
    const after = tb.cpuCache.stats();
    expect(after.hits).toBe(cached.hits + 1);
    expect(after.cachedBytes).toBe(cached.cachedBytes - 2 ** 20);
    expect(z.abs().sum().item()).toBe(0);
    z.dispose();
    tb.cpuCache.emptyCache();
    expect(tb.cpuCache.stats()).toMatchObject({ cachedBytes: 0, cachedBlocks: 0 });
  });

  test('a freed block serves requests down to two thirds of its size; the peak bytes in use measure a piece of work', () => {
    tb.cpuCache.emptyCache();
    tb.zeros([1536, 512]).dispose(); // 3 MiB cached
    const s0 = tb.cpuCache.stats();
    tb.zeros([1024, 512]).dispose(); // 2 MiB: served by the 3 MiB block
    expect(tb.cpuCache.stats().hits).toBe(s0.hits + 1);
    tb.zeros([512, 512]).dispose(); // 1 MiB: too small for it, fresh memory
    expect(tb.cpuCache.stats().misses).toBe(s0.misses + 1);
    tb.cpuCache.emptyCache();
    const base = tb.cpuCache.stats().inUseBytes;
    tb.cpuCache.resetPeak();
    const a = tb.zeros([1024, 512]);
    const b = tb.zeros([1024, 512]);
    expect(tb.cpuCache.stats().inUseBytes - base).toBe(4 * 2 ** 20);
    a.dispose();
    b.dispose();
    const s1 = tb.cpuCache.stats();
    expect(s1.inUseBytes).toBe(base);
    expect(s1.peakInUseBytes - base).toBe(4 * 2 ** 20);
    tb.cpuCache.resetPeak();
    expect(tb.cpuCache.stats().peakInUseBytes).toBe(base);
    tb.cpuCache.emptyCache();
  });

  test('small tensors bypass it; the limit caps what is kept and lowering it frees blocks', () => {
    tb.cpuCache.emptyCache();
    const s0 = tb.cpuCache.stats();
    tb.randn([100]).dispose();
    expect(tb.cpuCache.stats()).toMatchObject({ hits: s0.hits, misses: s0.misses, cachedBytes: 0 });
    const big = [tb.randn([1024, 512]), tb.randn([1024, 512]), tb.randn([1024, 512])]; // 2 MiB each
    tb.cpuCache.setLimit(5 * 2 ** 20);
    big.forEach((t) => t.dispose());
    expect(tb.cpuCache.stats()).toMatchObject({ cachedBytes: 4 * 2 ** 20, cachedBlocks: 2 }); // the first freed made room for the third
    tb.randn([1024, 3072]).dispose(); // 12 MiB: over the limit, not kept
    expect(tb.cpuCache.stats()).toMatchObject({ cachedBytes: 4 * 2 ** 20, cachedBlocks: 2 });
    tb.cpuCache.setLimit(2 ** 20);
    expect(tb.cpuCache.stats().cachedBytes).toBe(0);
    expect(() => tb.cpuCache.setLimit(-1)).toThrow(/bytes/);
  });

  test('emptyCache returns the blocks to the OS (resident memory falls)', () => {
    if (process.platform !== 'linux') return;
    const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
    tb.cpuCache.emptyCache();
    const t = tb.ones([64, 1024, 1024]); // 256 MiB, every page written
    const held = rssMb();
    t.dispose();
    expect(tb.cpuCache.stats().cachedBytes).toBeGreaterThanOrEqual(256 * 2 ** 20);
    tb.cpuCache.emptyCache();
    expect(held - rssMb()).toBeGreaterThan(200);
  });

  test('a training step reuses its buffers: after the first step nearly every large allocation is a hit', async () => {
    tb.manualSeed(0);
    const model = fromConfig('BertForMaskedLM', { vocab_size: 500, hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 512 });
    model.train();
    const ids = tb.randint(5, 500, [8, 64]);
    const step = async () => {
      const scope = new tb.DisposeScope();
      await scope.run(async () => {
        const out = await model.forward({ inputIds: ids, labels: ids });
        await out.loss!.backward();
      });
      scope.dispose();
    };
    await step();
    const s1 = tb.cpuCache.stats();
    await step();
    await step();
    const s3 = tb.cpuCache.stats();
    const hits = s3.hits - s1.hits;
    const misses = s3.misses - s1.misses;
    expect(hits).toBeGreaterThan(20);
    expect(misses / (hits + misses)).toBeLessThan(0.1);
    model.module.dispose();
  });
});
