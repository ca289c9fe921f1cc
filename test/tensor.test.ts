// Native layer: creation, dtypes, ops against PyTorch fixtures, printing, seeding, reading back.
import * as tb from '../lib';
import { Tensor, tensor, F } from '../lib';
import { fixture, maxAbsDiff } from './helpers';

const core = fixture('core.json');
const nums = (a: ArrayLike<number | bigint>): number[] => Array.from(a as ArrayLike<number>);
const devices = ['cpu', ...(tb.cuda.isAvailable() ? ['cuda'] : [])];

describe.each(devices)('tensors on %s', (device) => {
  test('creation from nested arrays and TypedArrays for every dtype', () => {
    for (const dtype of tb.DTYPES) {
      const t = tensor([[1, 0], [2, 3]], { dtype, device });
      expect(t.shape).toEqual([2, 2]);
      expect(t.dtype).toBe(dtype);
      expect(t.device).toBe(device === 'cuda' ? 'cuda:0' : 'cpu');
      const back = t.toArraySync();
      if (dtype === 'bool') expect(back).toEqual([[true, false], [true, true]]);
      else if (dtype === 'int64') expect(back).toEqual([[1n, 0n], [2n, 3n]]);
      else expect(back).toEqual([[1, 0], [2, 3]]);
    }
    const i64 = tensor(new BigInt64Array([9007199254740993n, -5n]), { device });
    expect(i64.dtype).toBe('int64');
    expect(i64.dataSync()).toEqual(new BigInt64Array([9007199254740993n, -5n]));
    const f = tensor(new Float32Array([1.5, 2.5, 3.5, 4.5, 5.5, 6.5]), { shape: [2, 3], device });
    expect(f.shape).toEqual([2, 3]);
    expect(nums(f.dataSync())).toEqual([1.5, 2.5, 3.5, 4.5, 5.5, 6.5]);
    expect(tensor(7, { device }).shape).toEqual([]);
    expect(tensor(7, { device }).item()).toBe(7);
  });

  test('factories', () => {
    expect(tb.zeros([2, 3], { device }).toArraySync()).toEqual([[0, 0, 0], [0, 0, 0]]);
    expect(tb.ones(2, { dtype: 'int32', device }).toArraySync()).toEqual([1, 1]);
    expect(tb.full([2], 7, { device }).toArraySync()).toEqual([7, 7]);
    expect(nums(tb.arange(0, 1, 0.25, { device }).dataSync())).toEqual([0, 0.25, 0.5, 0.75]);
    expect(tb.arange(3, undefined, 1, { dtype: 'int64', device }).toArraySync()).toEqual([0n, 1n, 2n]);
    expect(nums(tb.linspace(0, 1, 5, { dtype: 'float64', device }).dataSync())).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(tb.empty([4, 0], { device }).shape).toEqual([4, 0]);
    const r = tb.randint(3, 5, [100], { device });
    expect(r.dtype).toBe('int64');
    expect(r.ge(3).all().item()).toBe(true);
    expect(r.lt(5).all().item()).toBe(true);
    const x = tb.randn([3, 2], { dtype: 'float64', device });
    expect(tb.zerosLike(x).dtype).toBe('float64');
    expect(tb.onesLike(x, { dtype: 'int8' }).toArraySync()).toEqual([[1, 1], [1, 1], [1, 1]]);
    expect(tb.fullLike(x, 2).sum().item()).toBe(12);
    expect(tb.randLike(x).shape).toEqual([3, 2]);
    expect(tb.randnLike(x).dtype).toBe('float64');
    expect(tb.emptyLike(x).shape).toEqual([3, 2]);
  });

  test('arithmetic with broadcasting, in place and scalar forms', () => {
    const a = tensor([[1, 2, 3], [4, 5, 6]], { device });
    const b = tensor([10, 20, 30], { device });
    expect(a.add(b).toArraySync()).toEqual([[11, 22, 33], [14, 25, 36]]);
    expect(a.sub(b, 2).toArraySync()).toEqual([[-19, -38, -57], [-16, -35, -54]]);
    expect(a.mul(2).toArraySync()).toEqual([[2, 4, 6], [8, 10, 12]]);
    expect(a.div(2).toArraySync()).toEqual([[0.5, 1, 1.5], [2, 2.5, 3]]);
    expect(a.div(4, 'floor').toArraySync()).toEqual([[0, 0, 0], [1, 1, 1]]);
    expect(a.pow(2).sum().item()).toBe(91);
    expect(a.neg().abs().equal(a)).toBe(true);
    const c = a.clone();
    const id = c.add_(1).mul_(2).sub_(2).div_(2);
    expect(id).toBe(c);
    expect(c.equal(a)).toBe(true);
    expect(a.matmul(a.t()).toArraySync()).toEqual([[14, 32], [32, 77]]);
    expect(a.remainder(4).toArraySync()).toEqual([[1, 2, 3], [0, 1, 2]]);
    expect(a.clamp(2, 5).toArraySync()).toEqual([[2, 2, 3], [4, 5, 5]]);
  });

  test('comparisons, where and masks', () => {
    const a = tensor([1, 5, 3], { device });
    expect(a.gt(2).toArraySync()).toEqual([false, true, true]);
    expect(a.eq(tensor([1, 0, 3], { device })).toArraySync()).toEqual([true, false, true]);
    expect(tb.where(a.gt(2), a, 0).toArraySync()).toEqual([0, 5, 3]);
    expect(a.where(a.lt(4), -1).toArraySync()).toEqual([1, -1, 3]);
    expect(a.maskedFill(a.ge(3), 9).toArraySync()).toEqual([1, 9, 9]);
    expect(a.maskedSelect(a.ne(5)).toArraySync()).toEqual([1, 3]);
    expect(a.gt(2).logicalNot().toArraySync()).toEqual([true, false, false]);
  });

  test('shape ops', () => {
    const x = tb.arange(24, undefined, 1, { device }).reshape(2, 3, 4);
    expect(x.view([6, 4]).shape).toEqual([6, 4]);
    expect(x.permute(2, 0, 1).shape).toEqual([4, 2, 3]);
    expect(x.transpose(0, 2).shape).toEqual([4, 3, 2]);
    expect(x.transpose(0, 2).isContiguous).toBe(false);
    expect(x.transpose(0, 2).contiguous().isContiguous).toBe(true);
    expect(x.unsqueeze(1).shape).toEqual([2, 1, 3, 4]);
    expect(x.unsqueeze(1).squeeze(1).shape).toEqual([2, 3, 4]);
    expect(tensor([[1], [2]], { device }).expand(2, 3).toArraySync()).toEqual([[1, 1, 1], [2, 2, 2]]);
    expect(tb.cat([x, x], 0).shape).toEqual([4, 3, 4]);
    expect(tb.stack([x, x], 1).shape).toEqual([2, 2, 3, 4]);
    expect(x.split(2, 2).map((t) => t.shape)).toEqual([[2, 3, 2], [2, 3, 2]]);
    expect(x.split([1, 3], 2).map((t) => t.shape)).toEqual([[2, 3, 1], [2, 3, 3]]);
    expect(x.chunk(3, 1).length).toBe(3);
    expect(x.narrow(2, 1, 2).shape).toEqual([2, 3, 2]);
    expect(x.flatten().shape).toEqual([24]);
    expect(x.select(0, 1).slice(1, 1, 3).toArraySync()).toEqual([[13, 14], [17, 18], [21, 22]]);
    expect(x.size(-1)).toBe(4);
    expect(x.ndim).toBe(3);
    expect(x.numel).toBe(24);
  });

  test('indexing', () => {
    const x = tensor([[1, 2, 3], [4, 5, 6]], { device });
    const idx = tensor([2n, 0n], { device });
    expect(x.indexSelect(1, idx).toArraySync()).toEqual([[3, 1], [6, 4]]);
    expect(x.gather(1, tensor([[0n, 0n], [1n, 2n]], { device })).toArraySync()).toEqual([[1, 1], [5, 6]]);
    expect(x.index([tensor([1n, 0n], { device }), idx]).toArraySync()).toEqual([6, 1]);
    expect(x.index([null, idx]).toArraySync()).toEqual([[3, 1], [6, 4]]);
    const y = x.clone();
    y.indexPut_([tensor([0n], { device }), tensor([1n], { device })], tensor([9], { device }));
    expect(y.toArraySync()).toEqual([[1, 9, 3], [4, 5, 6]]);
    expect(x.scatter(1, tensor([[0n], [2n]], { device }), 0).toArraySync()).toEqual([[0, 2, 3], [4, 5, 0]]);
  });

  test('reductions and functional ops equal PyTorch', () => {
    const o = core.ops;
    const x = tensor(o.x, { device });
    const y = tensor(o.y, { device });
    const target = tensor(o.target.map(BigInt), { device });
    const check = (t: Tensor, want: unknown, tol = 1e-6) => expect(maxAbsDiff(t.toArraySync(), want)).toBeLessThan(tol);
    check(x.softmax(1), o.softmax1);
    check(x.logSoftmax(0), o.logSoftmax0);
    check(x.gelu(), o.gelu);
    check(x.gelu('tanh'), o.geluTanh);
    check(x.tanh(), o.tanh);
    check(F.crossEntropy(x, target), o.crossEntropy);
    check(F.crossEntropy(x, target, { reduction: 'sum', labelSmoothing: 0.1 }), o.crossEntropySum, 1e-5);
    check(F.mseLoss(x, y), o.mse);
    check(F.bceWithLogits(x, y.gt(0).float()), o.bce);
    check(F.layerNorm(x, [5], tensor(o.w, { device }), tensor(o.b, { device }), 1e-12), o.layerNorm, 1e-5);
    const eye2 = tb.eye(5, { device }).mul(2);
    check(F.linear(x, eye2, tensor(o.b, { device })), o.linear);
    const attn = F.scaledDotProductAttention(tensor(o.q, { device }), tensor(o.k, { device }), tensor(o.v, { device }), { attnMask: tensor(o.mask, { device }) });
    check(attn, o.sdpa, 1e-5);
    check(x.sum(1, true), o.sum1keep, 1e-5);
    check(x.mean(0), o.mean0);
    const m = x.max(1);
    check(m.values, o.max1[0]);
    expect(m.indices.toArraySync()).toEqual(o.max1[1].map(BigInt));
    expect(Number(x.argmax().item())).toBe(o.argmax);
    check(x.var(1), o.var1, 1e-5);
    check(x.norm(), o.norm, 1e-5);
    check(x.cumsum(1), o.cumsum, 1e-5);
  });

  test('autograd matches PyTorch', async () => {
    const o = core.ops;
    const x = tensor(o.x, { device }).requiresGrad_();
    const loss = F.crossEntropy(x.tanh().mul(3), tensor(o.target.map(BigInt), { device }));
    await loss.backward();
    expect(maxAbsDiff(x.grad!.toArraySync(), o.gradCE)).toBeLessThan(1e-6);
    expect(x.isLeaf).toBe(true);
    expect(loss.isLeaf).toBe(false);
    x.grad = null;
    expect(x.grad).toBeNull();
  });

  test('reading back asynchronously', async () => {
    const t = tb.arange(10, undefined, 1, { device });
    expect(nums(await t.data())).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await t.reshape(2, 5).toArray()).toEqual([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]);
    const h = t.to('float16');
    expect(h.dtype).toBe('float16');
    expect(nums(await h.data())).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The copy must not alias the tensor.
    const d = t.dataSync();
    d[0] = 42;
    expect(t.item === undefined).toBe(false);
    expect(t.select(0, 0).item()).toBe(0);
  });
});

describe('seeding and printing (CPU)', () => {
  test('manualSeed gives PyTorch CPU numbers', () => {
    const s = core.seed;
    tb.manualSeed(1234);
    expect(maxAbsDiff(tb.rand([5]).toArraySync(), s.rand)).toBe(0);
    expect(maxAbsDiff(tb.randn([2, 3]).toArraySync(), s.randn)).toBe(0);
    expect(tb.randint(0, 10, [6]).toArraySync()).toEqual(s.randint.map(BigInt));
    expect(maxAbsDiff(tb.rand([3], { dtype: 'float64' }).toArraySync(), s.rand64)).toBe(0);
    expect(tb.randperm(7).toArraySync()).toEqual(s.randperm.map(BigInt));
  });

  test.each(Object.keys(core.print))('prints %s like PyTorch', (key) => {
    const p = core.print[key];
    const data = p.dtype === 'int64' ? p.data.map(BigInt) : p.dtype === 'bool' ? p.data : p.data;
    const t = tensor(data, { dtype: p.dtype }).reshape(p.shape);
    expect(t.toString()).toBe(p.str);
  });

  test('threads and CUDA queries', () => {
    const n = tb.getNumThreads();
    tb.setNumThreads(1);
    expect(tb.getNumThreads()).toBe(1);
    tb.setNumThreads(n);
    expect(typeof tb.cuda.isAvailable()).toBe('boolean');
    expect(tb.cuda.deviceCount()).toBeGreaterThanOrEqual(0);
    const i = tb.info() as any;
    expect(i.libtorch.version).toMatch(/^2\.\d+/);
  });

  test('noGrad and enableGrad', async () => {
    const x = tb.ones(2).requiresGrad_();
    expect(tb.noGrad(() => x.mul(2)).requiresGrad).toBe(false);
    expect(tb.isGradEnabled()).toBe(true);
    const y = await tb.noGrad(async () => x.mul(2));
    expect(y.requiresGrad).toBe(false);
    expect(tb.isGradEnabled()).toBe(true);
    expect(tb.noGrad(() => tb.enableGrad(() => x.mul(2))).requiresGrad).toBe(true);
    expect(() => tb.noGrad(() => { throw new Error('boom'); })).toThrow('boom');
    expect(tb.isGradEnabled()).toBe(true);
    // Overlapping async calls that settle inner-last: grad mode is back on when the last one settles.
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const outer = tb.noGrad(async () => wait(5));
    const inner = tb.noGrad(async () => wait(30));
    await outer;
    expect(tb.isGradEnabled()).toBe(false);
    await inner;
    expect(tb.isGradEnabled()).toBe(true);
  });
});
