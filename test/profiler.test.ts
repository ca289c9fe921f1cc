// tb.profile (PyTorch's profiler around JS work) and the one compute thread every async job runs on.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tb from '../lib';
import { ScriptModule, Tensor } from '../lib';

test('profile() records sync and async operators, with calls, self and total times', async () => {
  const a = tb.randn([64, 64]);
  const prof = await tb.profile(async () => {
    for (let i = 0; i < 3; i++) a.matmul(a).dispose();
    const outs = await Promise.all([0, 1].map(() => tb.F.crossEntropyAsync(tb.randn([4, 5]), tb.tensor([0, 1, 2, 3], { dtype: 'int64' }))));
    outs.forEach((t) => t.dispose());
  });
  const ops = prof.keyAverages();
  const mm = ops.find((o) => o.name === 'aten::mm');
  expect(mm?.calls).toBe(3);
  expect(ops.find((o) => o.name === 'aten::cross_entropy_loss')?.calls).toBe(2);
  for (const e of prof.events) {
    expect(e.selfUs).toBeGreaterThanOrEqual(0);
    expect(e.selfUs).toBeLessThanOrEqual(e.durationUs + 1e-9);
  }
  // matmul calls mm: its total includes mm's time, its self time does not.
  const matmul = ops.find((o) => o.name === 'aten::matmul')!;
  expect(matmul.totalUs).toBeGreaterThanOrEqual(mm!.totalUs);
  expect(matmul.selfUs).toBeLessThan(matmul.totalUs);
  const table = prof.table({ rows: 5 });
  expect(table.split('\n')[0]).toMatch(/^name\s+self %\s+self ms\s+total ms\s+calls/);
  expect(table).toMatch(/self time in total: [\d.]+ ms/);
});

test('recordShapes groups by input shapes; tracePath writes a Chrome trace', async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tb-prof-')), 'trace.json');
  const [x, y] = [tb.randn([8, 16]), tb.randn([16, 4])];
  const prof = await tb.profile(() => {
    x.matmul(y).dispose();
    y.t().matmul(x.t()).dispose();
  }, { recordShapes: true, tracePath: file });
  const mm = prof.keyAverages({ groupByShapes: true }).filter((o) => o.name === 'aten::mm').map((o) => o.shapes).sort();
  expect(mm).toEqual(['[4, 16], [16, 8]', '[8, 16], [16, 4]']);
  const trace = JSON.parse(fs.readFileSync(file, 'utf8'));
  expect(trace.traceEvents.some((e: { name?: string }) => e.name === 'aten::mm')).toBe(true);
});

test('one profile at a time; a failing piece of work stops the profiler and rethrows', async () => {
  await expect(tb.profile(async () => {
    await expect(tb.profile(() => undefined)).rejects.toThrow(/already running/);
    throw new Error('work failed');
  })).rejects.toThrow('work failed');
  // stopped: a new profile starts
  const prof = await tb.profile(() => tb.ones([2]).add(1).dispose());
  expect(prof.keyAverages().some((o) => o.name === 'aten::add')).toBe(true);
});

const computeThread = tb.info().computeThread as boolean;
(computeThread ? test : test.skip)('every async job runs on one compute thread, not the main thread', async () => {
  const m = new ScriptModule('Mm');
  m.define('def forward(self, x: Tensor) -> Tensor:\n    return torch.mm(x, x)\n');
  const x = tb.randn([32, 32]);
  const prof = await tb.profile(async () => {
    x.matmul(x).dispose(); // sync, on the main thread
    // Eight jobs at once: libuv would spread them over its pool threads; they all run on one.
    const outs = await Promise.all(Array.from({ length: 8 }, () => m.clone().forward(x) as Promise<Tensor>));
    outs.forEach((t) => t.dispose());
  });
  const threadsOf = (name: string) => new Set(prof.events.filter((e) => e.name === name).map((e) => e.thread));
  const main = threadsOf('aten::matmul');
  const compute = threadsOf('aten::mm');
  expect(main.size).toBe(1);
  // mm ran 9 times: once under the sync matmul on the main thread, 8 times on the compute thread
  expect(prof.keyAverages().find((o) => o.name === 'aten::mm')?.calls).toBe(9);
  expect(compute.size).toBe(2);
  const [mainThread] = main;
  expect([...compute].filter((t) => t !== mainThread)).toHaveLength(1);
});

test('setNumThreads sets the compute thread; libtorch reports it there', () => {
  const before = tb.getNumThreads();
  try {
    tb.setNumThreads(1);
    expect(tb.getNumThreads()).toBe(1);
    expect((tb.info().parallel as string)).toMatch(/at::get_num_threads\(\) : 1/);
  } finally {
    tb.setNumThreads(before);
  }
  expect(tb.getNumThreads()).toBe(before);
  expect((tb.info().parallel as string)).toMatch(new RegExp(`at::get_num_threads\\(\\) : ${before}`));
});

test('setGraphExecutorOptimize reaches the thread that runs model calls (libtorch keeps it per thread)', () => {
  expect(tb.getGraphExecutorOptimize()).toBe(true);
  try {
    expect(tb.setGraphExecutorOptimize(false)).toBe(true);
    expect(tb.getGraphExecutorOptimize()).toBe(false);
  } finally {
    expect(tb.setGraphExecutorOptimize(true)).toBe(false);
  }
  expect(tb.getGraphExecutorOptimize()).toBe(true);
});
