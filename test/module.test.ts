// TorchScript modules: built natively from source, loaded from Python's torch.jit.save, saved here and
// run in Python; values of every kind crossing both ways.
import * as path from 'path';
import * as tb from '../lib';
import { ScriptModule, tensor, Tensor } from '../lib';
import { FIXTURES, fixture, maxAbsDiff, python, tmpDir } from './helpers';

const devices = ['cpu', ...(tb.cuda.isAvailable() ? ['cuda'] : [])];

function buildLinear(): ScriptModule {
  const lin = new ScriptModule('Lin');
  tb.manualSeed(3);
  lin.registerParameter('weight', tb.randn([3, 4]), { requiresGrad: true });
  lin.registerParameter('bias', tb.zeros([3]), { requiresGrad: true });
  lin.define(`
def forward(self, x: Tensor) -> Tensor:
    return torch.linear(x, self.weight, self.bias)
`);
  const top = new ScriptModule('Top');
  top.registerModule('lin', lin);
  top.registerBuffer('scale', tensor([2]));
  top.registerAttribute('label', 'str', 'hello');
  top.registerAttribute('p', 'float', 0.0);
  top.define(`
def forward(self, x: Tensor, extra: Optional[Tensor] = None) -> Tuple[Tensor, Dict[str, Tensor], str]:
    h = self.lin.forward(x) * self.scale
    h = torch.dropout(h, self.p, self.training)
    if extra is not None:
        h = h + extra
    return h, {'sum': h.sum()}, self.label

def names(self, xs: List[str], n: int, flag: bool) -> List[str]:
    out: List[str] = []
    for i in range(n):
        if flag:
            out.append(xs[i % len(xs)])
    return out
`);
  return top;
}

describe.each(devices)('ScriptModule on %s', (device) => {
  test('built natively: parameters, buffers, attributes, methods, values both ways', async () => {
    const m = buildLinear().to(device).eval();
    expect(m.namedParameters().map(([n]) => n)).toEqual(['lin.weight', 'lin.bias']);
    expect(m.namedBuffers().map(([n]) => n)).toEqual(['scale']);
    expect(m.methodNames.sort()).toEqual(['forward', 'names']);
    const x = tb.randn([2, 4], { device });
    const [h, d, s] = (await m.forward(x)) as [Tensor, { sum: Tensor }, string];
    const w = m.namedParameters()[0][1];
    const want = x.matmul(w.t()).mul(2);
    expect(maxAbsDiff(h.toArraySync(), want.toArraySync())).toBeLessThan(1e-6);
    expect(Math.abs((d.sum.item() as number) - (want.sum().item() as number))).toBeLessThan(1e-5);
    expect(s).toBe('hello');
    const [h2] = m.forwardSync(x, tb.ones([3], { device })) as [Tensor];
    expect(maxAbsDiff(h2.toArraySync(), want.add(1).toArraySync())).toBeLessThan(1e-6);
    expect(m.callSync('names', ['a', 'b'], 3, true)).toEqual(['a', 'b', 'a']);
    expect(m.getAttr('label')).toBe('hello');
    m.setAttr('label', 'bye');
    expect(m.getAttr('label')).toBe('bye');
    expect(m.training).toBe(false);
    m.train();
    expect(m.training).toBe(true);
  });

  test('trains: gradients flow through script methods', async () => {
    const m = buildLinear().to(device);
    const x = tb.randn([5, 4], { device });
    const [h] = (await m.forward(x)) as [Tensor];
    await h.pow(2).mean().backward();
    for (const p of m.parameters()) expect(p.grad).not.toBeNull();
  });

  test('a module scripted in Python loads and gives equal outputs', async () => {
    const fx = fixture('interop.json');
    const m = await ScriptModule.load(path.join(FIXTURES, 'interop.pt'), { device });
    const [h, d, s] = (await m.forward(tensor(fx.x, { device }), ['a', 'b'], { u: tb.ones([2], { device }) }, tb.full([3], 0.5, { device }))) as [Tensor, Record<string, Tensor>, string];
    expect(maxAbsDiff(h.toArraySync(), fx.h)).toBeLessThan(1e-6);
    expect(Math.abs((d.total.item() as number) - fx.total)).toBeLessThan(1e-5);
    expect(d.count.item()).toBe(fx.count);
    expect(s).toBe(fx.s);
    const doubled = m.callSync('double', tensor([1, 2], { device })) as Tensor;
    expect(doubled.toArraySync()).toEqual([2, 4]);
    for (const [n, p] of m.namedParameters()) expect(maxAbsDiff(p.toArraySync(), fx.params[n])).toBe(0);
  });
});

describe('ScriptModule interop and errors (CPU)', () => {
  test('to({ dtype }) casts floating-point parameters and buffers only, as nn.Module.to: integer buffers keep their dtype', () => {
    const m = new ScriptModule('M');
    m.registerParameter('w', tb.randn([3, 2]), { requiresGrad: true });
    m.registerBuffer('ids', tb.arange(5, undefined, 1, { dtype: 'int64' }));
    m.registerBuffer('scale', tb.ones([2]));
    m.to({ dtype: 'bfloat16' });
    const dtypes = Object.fromEntries([...m.namedParameters(), ...m.namedBuffers()].map(([n, t]) => [n, t.dtype]));
    expect(dtypes).toEqual({ w: 'bfloat16', ids: 'int64', scale: 'bfloat16' });
    expect((m.getAttr('ids') as Tensor).toArraySync()).toEqual([0n, 1n, 2n, 3n, 4n]);
  });

  test('a module built and saved in Node runs in Python with equal outputs', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'node_built.pt');
    const m = buildLinear().eval();
    await m.save(file);
    const x = tb.randn([3, 4]);
    const [h] = (await m.forward(x)) as [Tensor];
    const out = python(
      `import sys, json, torch
m = torch.jit.load(sys.argv[1]); m.eval()
x = torch.tensor(json.loads(sys.argv[2]))
h, d, s = m(x)
print(json.dumps({'h': h.tolist(), 'sum': d['sum'].item(), 's': s, 'names': m.names(['x'], 2, True)}))`,
      [file, JSON.stringify(x.toArraySync())],
    );
    expect(maxAbsDiff(out.h, h.toArraySync())).toBeLessThan(1e-6);
    expect(out.s).toBe('hello');
    expect(out.names).toEqual(['x', 'x']);
    // And back again.
    const again = ScriptModule.loadSync(file);
    const [h3] = again.forwardSync(x) as [Tensor];
    expect(h3.equal(h)).toBe(true);
  });

  test('bad source, bad arguments and busy modules are clear errors', async () => {
    const m = buildLinear();
    expect(() => m.define('def broken(self, x):\n    return x +\n')).toThrow();
    expect(() => m.forwardSync('not a tensor' as any)).toThrow(/must be a Tensor/);
    expect(() => m.callSync('nope')).toThrow(/has no method 'nope'/);
    expect(() => m.forwardSync(tb.randn([2, 5]))).toThrow(tb.TorchError);
    const p = m.forward(tb.randn([2, 4]));
    expect(m.isBusy).toBe(true);
    expect(() => m.forwardSync(tb.randn([2, 4]))).toThrow(expect.objectContaining({ code: 'TORCHBERT_BUSY', message: expect.stringMatching(/busy/) }));
    await expect(m.forward(tb.randn([2, 4]))).rejects.toMatchObject({ code: 'TORCHBERT_BUSY', message: expect.stringMatching(/busy/) });
    await p;
    expect(m.isBusy).toBe(false);
    await expect(ScriptModule.load('/nonexistent/file.pt')).rejects.toThrow(/no such file/);
    m.dispose();
    m.dispose();
    expect(() => m.forwardSync(tb.randn([2, 4]))).toThrow(/disposed/);
  });

  test('freeze gives an inference copy with equal outputs', async () => {
    const m = buildLinear().eval();
    const x = tb.randn([2, 4]);
    const frozen = m.freeze();
    const [a] = (await m.forward(x)) as [Tensor];
    const [b] = (await frozen.forward(x)) as [Tensor];
    expect(maxAbsDiff(a.toArraySync(), b.toArraySync())).toBeLessThan(1e-6);
  });
});
