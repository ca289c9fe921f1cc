// Deterministic lifetime: dispose, using, tidy, async scopes, memory accounting, GC backstop, leaks.
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as tb from '../lib';
import { ScriptModule, Tensor, F } from '../lib';

const live = () => tb.memory().tensors;

test('dispose is idempotent, frees now, and use after dispose throws', () => {
  const before = tb.memory();
  const t = tb.zeros([1000]);
  expect(tb.memory().tensors).toBe(before.tensors + 1);
  expect(tb.memory().bytes).toBe(before.bytes + 4000);
  t.dispose();
  t.dispose();
  expect(t.isDisposed).toBe(true);
  expect(tb.memory().tensors).toBe(before.tensors);
  expect(tb.memory().bytes).toBe(before.bytes);
  expect(() => t.add(1)).toThrow(/disposed/);
  expect(() => t.shape).toThrow(/disposed/);
  expect(() => tb.ones([2]).add(t)).toThrow(/disposed/);
});

test('views share storage and are counted once', () => {
  const before = tb.memory();
  const t = tb.zeros([10, 10]);
  const v = t.view(100);
  expect(tb.memory().tensors).toBe(before.tensors + 2);
  expect(tb.memory().bytes).toBe(before.bytes + 400);
  t.dispose();
  const s = v.sum(); // the view keeps the storage alive
  expect(s.item()).toBe(0);
  s.dispose();
  v.dispose();
  expect(tb.memory().bytes).toBe(before.bytes);
});

test('using disposes at the end of the block', () => {
  const before = live();
  {
    using a = tb.ones([3]);
    using b = a.mul(2);
    expect(b.sum().item()).toBe(6);
    expect(live()).toBeGreaterThan(before);
  }
  expect(live()).toBe(before + 1); // only the unscoped sum() result remains
});

test('tidy disposes temporaries, keeps what is returned and what is kept', () => {
  const x = tb.ones([4]);
  const before = live();
  let kept: Tensor | undefined;
  const out = tb.tidy(() => {
    const a = x.mul(2);
    const b = a.add(1);
    kept = tb.keep(b.mul(10));
    return { y: b.sum(), list: [a.neg()] };
  });
  expect(live()).toBe(before + 3); // y, list[0] and kept survive; a and b are gone
  expect(out.y.item()).toBe(12);
  using s = out.list[0].sum();
  expect(s.item()).toBe(-8);
  expect(kept!.isDisposed).toBe(false);
  const inner = tb.tidy(() => tb.tidy(() => x.mul(3)));
  expect(inner.isDisposed).toBe(false);
  expect(() => tb.tidy(() => Promise.resolve(1) as any)).toThrow(/synchronous/);
  expect(() => tb.tidy(() => {
    x.mul(5);
    throw new Error('inside');
  })).toThrow('inside');
  expect(live()).toBe(before + 3 + 1 /* s */ + 1 /* inner */);
});

test('async DisposeScope tracks only its own work, across awaits', async () => {
  // Each run's intermediates, checked by identity: the process-wide live count also moves when the GC
  // backstop frees earlier tests' undisposed tensors during the awaits.
  const made: Tensor[][] = [[], []];
  const run = async (k: number) => {
    const scope = new tb.DisposeScope();
    const result = await scope.run(async () => {
      const a = tb.full([8], k);
      await new Promise((r) => setTimeout(r, 5 * k));
      const b = a.mul(2); // run 2 makes this after run 1's scope was disposed
      const arr = await b.data();
      const s = b.sum();
      made[k - 1].push(a, b, s);
      return s.add(arr[0]);
    });
    scope.dispose(result);
    return result;
  };
  const [r1, r2] = await Promise.all([run(1), run(2)]);
  expect(r1.item()).toBe(18);
  expect(r2.item()).toBe(36);
  expect(made.flat().map((t) => t.isDisposed)).toEqual(Array(6).fill(true));
  expect([r1.isDisposed, r2.isDisposed]).toEqual([false, false]);
  r1.dispose();
  r2.dispose();
});

test('the GC frees tensors that were never disposed (backstop)', () => {
  const code = `
const tb = require(${JSON.stringify(path.join(__dirname, '..', 'lib'))});
const base = tb.memory().tensors;
for (let i = 0; i < 20000; i++) tb.ones([64]).mul(2);
const peak = tb.memory().tensors;
setTimeout(() => {
  global.gc(); global.gc();
  setTimeout(() => { global.gc(); console.log(JSON.stringify({ base, peak, after: tb.memory().tensors })); }, 50);
}, 10);`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-r', require.resolve('ts-node/register/transpile-only'), '-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const { base, peak, after } = JSON.parse(r.stdout);
  expect(peak).toBeGreaterThan(base + 1000);
  expect(after).toBeLessThan(base + 1000);
});

test('leak: 1,000 steps of forward + backward + update return to the live-tensor baseline, RSS flat', async () => {
  tb.manualSeed(0);
  const m = new ScriptModule('LeakNet');
  m.registerParameter('w1', tb.randn([32, 64]).mul(0.1), { requiresGrad: true });
  m.registerParameter('w2', tb.randn([2, 32]).mul(0.1), { requiresGrad: true });
  m.define(`
def forward(self, x: Tensor) -> Tensor:
    return torch.linear(torch.tanh(torch.linear(x, self.w1)), self.w2)
`);
  const params = m.parameters();
  const x = tb.randn([16, 64]);
  const y = tb.randint(0, 2, [16]);
  const step = async () => {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const logits = (await m.forward(x)) as Tensor;
      const loss = F.crossEntropy(logits, y);
      await loss.backward();
      tb.noGrad(() => {
        for (const p of params) {
          const g = p.grad!;
          p.sub_(g, 0.01);
          g.zero_();
        }
      });
    });
    scope.dispose();
  };
  for (let i = 0; i < 100; i++) await step(); // warm-up: allocator pools, JIT profiling
  if (global.gc) global.gc();
  const baseline = live();
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < 1000; i++) await step();
  if (global.gc) global.gc();
  // No growth: a leak adds at least one tensor per step (1,000 here). The count may fall below the
  // baseline when the GC backstop frees earlier tests' undisposed tensors meanwhile.
  expect(live()).toBeLessThanOrEqual(baseline);
  const growth = (process.memoryUsage().rss - rss0) / rss0;
  expect(growth).toBeLessThan(0.05);
});

test('use after dispose throws DisposedError (code DISPOSED) for tensors, modules and scopes', () => {
  const t = tb.ones([2]);
  t.dispose();
  const m = new ScriptModule('M');
  m.dispose();
  const s = new tb.DisposeScope();
  s.dispose();
  for (const use of [() => t.add(1), () => m.namedParameters(), () => s.run(() => 1)]) {
    let err: unknown;
    try {
      use();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(tb.DisposedError);
    expect((err as tb.DisposedError).code).toBe('DISPOSED');
  }
});

test('models and pipelines end cleanly: dispose() frees the weights a pipeline loaded, not a model passed in', async () => {
  const { fromConfig } = await import('../lib/models/bert');
  const { pipeline } = await import('../lib/pipelines');
  const { FIXTURES, fixture } = await import('./helpers');
  const base = live();
  tb.cpuCache.emptyCache();
  // room for the embedding whatever limit earlier test files in this worker process left behind
  const limit = tb.cpuCache.stats().limitBytes;
  tb.cpuCache.setLimit(Math.max(limit, 64 * 2 ** 20));
  const model = fromConfig('BertModel', { vocab_size: 50000, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16 });
  // building leaves no tensor handles behind: the weights live in the module (<=: earlier tests' garbage may be collected meanwhile)
  expect(live()).toBeLessThanOrEqual(base);
  {
    using m = model;
    expect(m.kind).toBe('BertModel');
  }
  // the 12.8 MB embedding went back to the allocator's cache at the end of the block, not at GC
  expect(tb.cpuCache.stats().cachedBytes).toBeGreaterThanOrEqual(50000 * 64 * 4);
  tb.cpuCache.setLimit(limit);
  expect(() => model.namedParameters()).toThrow(tb.DisposedError);
  const fx = fixture('pipelines.json');
  const dir = path.join(FIXTURES, fx.models['tiny-BertForSequenceClassification']);
  const loaded = await pipeline('text-classification', dir);
  expect((await loaded.call('a fine film')).length).toBe(1);
  await loaded.dispose();
  expect(() => loaded.model.namedParameters()).toThrow(tb.DisposedError);
  // a model passed in stays the caller's
  const own = await pipeline('text-classification', dir);
  const borrowed = await pipeline('text-classification', { model: own.model, tokenizer: own.tokenizer });
  await borrowed.dispose();
  expect((await own.call('still here')).length).toBe(1);
  await own.dispose();
  expect(live()).toBeLessThanOrEqual(base); // loading and running left no handles behind
});

test('inference copies (every prepack backend, int8; consuming or not) leave no handles behind and free their weights at dispose, not at GC', async () => {
  const { fromConfig } = await import('../lib/models/bert');
  const fields = { vocab_size: 50000, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 128, max_position_embeddings: 16 };
  const limit = tb.cpuCache.stats().limitBytes;
  tb.cpuCache.setLimit(Math.max(limit, 64 * 2 ** 20));
  try {
    const copies: [string, (m: import('../lib/models/bert').BertPreTrainedModel) => import('../lib/models/bert').BertPreTrainedModel][] = [
      ...(['torchbert', 'onednn', 'aten', 'auto'] as const).map((backend) => [`prepack ${backend}`, (m: any) => m.prepack({ backend })] as [string, any]),
      ['prepack consume', (m) => m.prepack({ consume: true })],
      ['int8', (m) => m.quantizeDynamic()],
      ['int8 consume', (m) => m.quantizeDynamic({ consume: true })],
    ];
    for (const [what, make] of copies) {
      const base = live();
      const model = fromConfig('BertForMaskedLM', fields);
      const copy = make(model);
      model.dispose();
      expect([what, live()]).toEqual([what, base]);
      tb.cpuCache.emptyCache();
      copy.dispose();
      // the copy's 12.8 MB embedding (its own or handed over) went back to the cache with the copy's last handle
      expect([what, tb.cpuCache.stats().cachedBytes >= 50000 * 64 * 4]).toEqual([what, true]);
    }
  } finally {
    tb.cpuCache.setLimit(limit);
  }
});

test('one JS thread owns the addon: a worker may hold it alone (its tensors freed when it exits); a second thread is refused; async jobs work in each owner', () => {
  const dist = JSON.stringify(path.join(__dirname, '..', 'dist'));
  const code = `
const { Worker } = require('worker_threads');
const load = \`const { parentPort } = require('worker_threads');
try {
  const tb = require(${dist});
  tb.ones([3]).data().then((d) => parentPort.postMessage({ sum: tb.ones([3]).sum().item(), asyncSum: d.reduce((a, b) => a + b), tensors: tb.memory().tensors }));
} catch (e) {
  parentPort.postMessage({ error: e.message, code: e.code });
}\`;
const run = () => new Promise((done) => { const w = new Worker(load, { eval: true }); w.once('message', (m) => w.once('exit', () => done(m))); });
(async () => {
  const alone = await run();
  const tb = require(${dist});
  const before = tb.memory().tensors;
  const x = tb.ones([2]);
  const second = await run();
  const d = await x.data(); // after the worker's jobs: the main thread's own way back from the compute thread
  console.log(JSON.stringify({ alone, before, second, main: x.sum().item(), mainAsync: d[0] + d[1] }));
})();`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const { alone, before, second, main, mainAsync } = JSON.parse(r.stdout);
  expect(alone.sum).toBe(3);
  expect(alone.asyncSum).toBe(3);
  expect(mainAsync).toBe(2);
  expect(alone.tensors).toBeGreaterThan(0);
  expect(before).toBe(0); // the worker's tensors went with it
  expect(second.code).toBe('ADDON_IN_OTHER_THREAD');
  expect(second.error).toMatch(/already loaded by another thread of this process/);
  expect(main).toBe(2);
});

/**
 * A fresh process with a prepacked one-layer model (hidden 64) on oneDNN: 20 sequence lengths to warm up, then
 * lengths 21 to 320, 300 new shapes (a server's batches); freed activations go back to the OS, so only what
 * caches keep stays. Returns the anonymous memory grown over the new shapes and the caches' capacities.
 * `capacity`, when given, is set in that process after torchbert loads and before the model.
 */
function shapesGrowth(env: Record<string, string>, capacity = '') {
  const code = `
const fs = require('fs');
const tb = require(${JSON.stringify(path.join(__dirname, '..', 'dist'))});
const { fromConfig } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'models'))});
const anonMb = () => Number(/RssAnon:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
(async () => {
  if (process.argv[1]) tb.setPrimitiveCacheCapacity(Number(process.argv[1]));
  tb.cpuCache.setLimit(0);
  const m = fromConfig('BertModel', { vocab_size: 100, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 256, max_position_embeddings: 512 }).prepack({ backend: 'onednn' });
  const run = (t) => tb.noGrad(() => m.forward({ inputIds: tb.ones([1, t], { dtype: 'int64' }) }));
  for (let t = 1; t <= 20; t++) await run(t);
  const warm = anonMb();
  for (let t = 21; t <= 320; t++) await run(t);
  console.log(JSON.stringify({ growthMb: anonMb() - warm, caches: tb.info().primitiveCaches }));
})().catch((e) => { console.error(e); process.exit(1); });`;
  const base = { ...process.env };
  delete base.ONEDNN_PRIMITIVE_CACHE_CAPACITY;
  delete base.LRU_CACHE_CAPACITY;
  const r = spawnSync(process.execPath, ['-e', code, capacity], { encoding: 'utf8', env: { ...base, ...env } });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { growthMb: number; caches: { onednn: number; ideep: number } };
}

test('a model called with hundreds of batch shapes stays flat: oneDNN and ideep keep 64 compiled shapes, not 1,024 (an exported value wins)', () => {
  // 300 new shapes after the warm-up
  const growth = (env: Record<string, string>) => shapesGrowth(env).growthMb;
  // 28 MB here (Zen 4, torch 2.13) against 515 MB with the libraries' own bounds, which a user may still choose
  expect(growth({})).toBeLessThan(150);
  expect(growth({ ONEDNN_PRIMITIVE_CACHE_CAPACITY: '1024', LRU_CACHE_CAPACITY: '1024' })).toBeGreaterThan(200);
});

test('setPrimitiveCacheCapacity, called after torchbert loads and before the model, sets how many compiled shapes oneDNN and ideep keep', () => {
  // The 300 shapes of the test above, whose margins hold on AVX2 and AVX-512 alike (one compiled shape's size
  // differs several-fold between them): room for all of them grows as the exported 1,024 does, room for 4 stays
  // under the bound the default 64 meets (Zen 2, torch 2.13: 561.6 MB against 22.5; 28.0 at 64)
  const growth = (capacity: string) => shapesGrowth({}, capacity);
  const wide = growth('1024');
  const four = growth('4');
  expect(wide.caches).toEqual({ onednn: 1024, ideep: 1024 });
  expect(four.caches).toEqual({ onednn: 4, ideep: 4 });
  expect(wide.growthMb).toBeGreaterThan(200);
  expect(four.growthMb).toBeLessThan(150);
  expect(() => tb.setPrimitiveCacheCapacity(0)).toThrow(RangeError);
  expect(() => tb.setPrimitiveCacheCapacity(2.5)).toThrow(/positive integer/);
});
