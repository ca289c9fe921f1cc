// tb.distributed on PyTorch's c10d (Gloo), with 2 processes on 127.0.0.1, one thread each: every
// collective, DDP against one process on the same data (plain SGD and AdamW + schedule, with and without
// noSync accumulation), a Python rank in the same group, PyTorch's own launcher starting Node ranks, and
// the faults (a rank that never joins, a port in use, a rank killed mid-run, mismatched models).
import * as net from 'net';
import * as path from 'path';
import { spawn } from 'child_process';
import * as tb from '../lib';
import { ROOT } from './helpers';

const WORKER = path.join(ROOT, 'test', 'dist-worker.js');
const available = tb.distributed.isAvailable();
const maybe = available ? describe : describe.skip;
if (!available) console.log('distributed tests skipped: this build has no Gloo (see scripts/find-libtorch.js glooInclude)');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

interface RankResult {
  code: number | null;
  signal: string | null;
  out: any;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<RankResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, OMP_NUM_THREADS: '1', ...env }, cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    p.on('close', (code, signal) => {
      const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      resolve({ code, signal, out: line ? JSON.parse(line) : null, stdout, stderr });
    });
  });
}

async function ranks(world: number, args: string[], extra: (rank: number) => Record<string, string> = () => ({}), only?: number[]): Promise<RankResult[]> {
  const port = await freePort();
  const base = { WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
  return Promise.all((only ?? Array.from({ length: world }, (_, i) => i)).map((r) => run(process.execPath, [WORKER, ...args], { ...base, RANK: String(r), LOCAL_RANK: String(r), ...extra(r) })));
}

const close = (a: number[], b: number[], tol: number) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= tol);

maybe('collectives (2 ranks)', () => {
  test('every collective and dtype gives the reduced results; errors are clear; the event loop ticks during a large allreduce', async () => {
    const res = await ranks(2, ['collectives']);
    for (const r of res) expect([r.code, r.stderr]).toEqual([0, '']);
    const [a, b] = res.map((r) => r.out);
    for (const dtype of ['float32', 'float64', 'int32', 'int64']) {
      // rank 0: [1, 5, 3], rank 1: [2, 4, 3]
      expect(a[`allReduce/${dtype}/sum`]).toEqual([3, 9, 6]);
      expect(a[`allReduce/${dtype}/min`]).toEqual([1, 4, 3]);
      expect(a[`allReduce/${dtype}/max`]).toEqual([2, 5, 3]);
      expect(a[`allReduce/${dtype}/product`]).toEqual([2, 20, 9]);
      if (dtype.startsWith('float')) expect(a[`allReduce/${dtype}/avg`]).toEqual([1.5, 4.5, 3]);
      for (const k of Object.keys(a)) if (k.startsWith('allReduce/')) expect([k, b[k]]).toEqual([k, a[k]]);
    }
    expect([a.broadcast, b.broadcast]).toEqual([[7, 8, 9], [7, 8, 9]]);
    expect([a.allGather, b.allGather]).toEqual([[[0, 0], [1, 10]], [[0, 0], [1, 10]]]);
    // rank i gets sum over ranks r of inputs_r[i] = [i + r, 100 i]
    expect([a.reduceScatter, b.reduceScatter]).toEqual([[1, 0], [3, 200]]);
    expect([a.gather, b.gather]).toEqual([[[0.5], [1.5]], null]);
    expect([a.scatter, b.scatter]).toEqual([[0, 0], [1, -1]]); // JSON has no -0
    expect(b.sendRecv).toEqual([3.5, 4.5]);
    expect(a.objects).toEqual([{ rank: 0, note: 'é0' }, { rank: 1, note: 'é1' }]);
    expect([a.broadcastObject, b.broadcastObject]).toEqual([{ stop: true, at: 12 }, { stop: true, at: 12 }]);
    // shardedMap: each rank works on every second item from its rank; both get all results in order
    expect([a.shardedWorked, b.shardedWorked]).toEqual([[0, 2, 4], [1, 3]]);
    expect([a.sharded, b.sharded]).toEqual([['a0', 'b1', 'c2', 'd3', 'e4'], ['a0', 'b1', 'c2', 'd3', 'e4']]);
    expect(b.group).toEqual([5]);
    expect(a.group).toMatch(/allReduce: rank 0 is not a member of the group \[1\]/);
    expect([a.big.first, b.big.first]).toEqual([[2, 2], [2, 2]]);
    // the main thread ran timers while the 80 MB allreduce was in flight
    for (const r of [a, b]) if (r.big.ms > 20) expect(r.big.ticks).toBeGreaterThan(0);
    expect([a.backend, b.backend]).toEqual([['gloo', 'cpu'], ['gloo', 'cpu']]);
    expect(a.errors.twice).toMatch(/already initialised/);
    expect(a.errors.disposed).toMatch(/disposed/);
    expect(a.errors.op).toMatch(/reduce op must be sum, avg, min, max or product, got 'median'/);
    expect(a.errors.avgInt).toMatch(/avg needs a floating-point tensor, got int64/);
  });

  test('a Python rank (torch.distributed, Gloo) and a Node rank share one group: the allreduce gives the same sum on both', async () => {
    const port = await freePort();
    const env = { WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
    const py = `
import os, json, torch, torch.distributed as dist
dist.init_process_group('gloo', timeout=__import__('datetime').timedelta(seconds=30))
r = dist.get_rank()
t = torch.tensor([1.0, 2.0, 3.0]) * (r + 1)
dist.all_reduce(t)
print(json.dumps({'rank': r, 'sum': t.tolist()}), flush=True)
dist.destroy_process_group()`;
    for (const pyRank of [0, 1]) {
      const [n, p] = await Promise.all([
        run(process.execPath, [WORKER, 'interop'], { ...env, RANK: String(1 - pyRank) }),
        run(process.env.PYTHON ?? 'python3', ['-c', py], { ...env, RANK: String(pyRank) }),
      ]);
      expect([n.code, p.code]).toEqual([0, 0]);
      expect(n.out.sum).toEqual([3, 6, 9]);
      expect(p.out).toEqual({ rank: pyRank, sum: [3, 6, 9] });
    }
  });

  test("PyTorch's launcher (python -m torch.distributed.run --no-python) starts Node ranks", async () => {
    const port = await freePort();
    const r = await run(process.env.PYTHON ?? 'python3', ['-m', 'torch.distributed.run', '--no-python', '--nproc-per-node', '2', '--master-addr', '127.0.0.1', '--master-port', String(port), process.execPath, WORKER, 'interop'], {});
    expect(r.code).toBe(0);
  });
});

maybe('DistributedDataParallel: 2 ranks x batch 8 equal 1 process x batch 16', () => {
  test.each([
    ['sgd', '', 1e-6],
    ['adamw', '', 1e-4],
    ['sgd', 'accumulate', 1e-6],
    ['adamw', 'accumulate', 1e-4],
  ])('%s %s: losses and final weights within %s; weights bit-identical across ranks at every step', async (optim, acc, tol) => {
    const [single] = await ranks(1, ['train', optim, acc]);
    expect([single.code, single.stderr]).toEqual([0, '']);
    const [a, b] = await ranks(2, ['train', optim, acc]);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, '']);
    expect(a.out.snapshots).toEqual(b.out.snapshots);
    expect(a.out.params).toEqual(b.out.params);
    expect(close(a.out.losses, single.out.losses, tol)).toBe(true);
    let worst = 0;
    single.out.params.forEach(([n, v]: [string, number[]], i: number) => {
      expect(a.out.params[i][0]).toBe(n);
      v.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - a.out.params[i][1][j]))));
    });
    expect(worst).toBeLessThanOrEqual(tol);
  });
});

maybe('launching: torchbert run, restarts, two loopback nodes', () => {
  const CLI = path.join(ROOT, 'dist', 'cli.js');
  test('kill -9 of one rank mid-run: --max-restarts 1 restarts both, they resume from the last checkpoint, and the final weights equal an uninterrupted run', async () => {
    const { tmpDir } = await import('./helpers');
    const launchRun = async (extra: Record<string, string>, restarts: number) =>
      run(process.execPath, [CLI, 'run', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--max-restarts', String(restarts), WORKER, 'elastic'], { ELASTIC_DIR: tmpDir(), ...extra });
    const [plain, killed] = [await launchRun({}, 0), await launchRun({ KILL_AT: '5' }, 1)];
    expect([plain.code, killed.code]).toEqual([0, 0]);
    expect(killed.stderr).toMatch(/rank 1 was killed by SIGKILL; restarting all 2 local ranks \(restart 1 of 1\)/);
    expect(killed.out.attempt).toBe(1);
    expect(killed.out.steps).toBe(10);
    let worst = 0;
    plain.out.params.forEach(([n, v]: [string, number[]], i: number) => {
      expect(killed.out.params[i][0]).toBe(n);
      v.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - killed.out.params[i][1][j]))));
    });
    expect(worst).toBeLessThanOrEqual(1e-6);
    // without restarts left, the launcher fails naming the rank and how it ended
    const failed = await launchRun({ KILL_AT: '3' }, 0);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/torchbert run: rank 1 was killed by SIGKILL/);
  }, 300_000); // three launches of two ranks each, beside the suite's other workers on 2 cores

  test('finetune --nproc 2: two ranks, each a shard of the data; rank 0 logs, saves and reports', async () => {
    const { tmpDir, FIXTURES, DATA } = await import('./helpers');
    const out = tmpDir();
    const r = await run(process.execPath, [CLI, 'finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertModel'), '--train', path.join(DATA, 'sst2', 'train.tsv'), '--dev', path.join(DATA, 'sst2', 'dev.tsv'),
      '--limit', '256', '--epochs', '1', '--batch-size', '16', '--lr', '1e-3', '--out', out, '--nproc', '2'], {});
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.out.task).toBe('classification');
    expect(r.out.steps).toBe(8); // 256 examples / 2 ranks / 16 per batch
    const fs = await import('fs');
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toMatch(/"type":"train"/);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')).dev.accuracy).toBe(r.out.dev.accuracy);
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
    // The evaluation was sharded over the two ranks: it equals one process evaluating the saved model.
    const one = await run(process.execPath, [CLI, 'eval', out, '--file', path.join(DATA, 'sst2', 'dev.tsv')], {});
    expect(one.code).toBe(0);
    expect(one.out.examples).toBe(872);
    expect(one.out.accuracy).toBe(r.out.dev.accuracy);
  });

  test('pretrain --nproc 2: masked-LM pre-training data-parallel (the loss goes through DDP), rank 0 saves', async () => {
    const { tmpDir, DATA } = await import('./helpers');
    const out = tmpDir();
    const r = await run(process.execPath, [CLI, 'pretrain', path.join(DATA, 'wikitext-2', 'valid.txt'), '--out', out, '--steps', '6', '--seconds', '120', '--vocab-size', '600', '--hidden', '32', '--layers', '1', '--nproc', '2'], {});
    expect([r.code, r.stderr]).toEqual([0, '']);
    const fs = await import('fs');
    expect(fs.existsSync(path.join(out, 'pretrained', 'model.safetensors'))).toBe(true);
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(0); // one writer: rank 0
    expect(r.stdout).toMatch(/data-parallel over 2 ranks: global batch 128 = 64 per rank x 2 ranks x 1 accumulation/);
  });

  test('main --nproc 2: the end-to-end job data-parallel, global batches split over the ranks; rank 0 alone reports and saves', async () => {
    const { tmpDir, DATA } = await import('./helpers');
    const out = tmpDir();
    const r = await run(process.execPath, [CLI, 'main', '--data', DATA, '--out', out, '--pretrain-steps', '4', '--finetune-steps', '4', '--hidden', '32', '--layers', '1', '--pretrain-seconds', '60', '--finetune-seconds', '60', '--nproc', '2'], {});
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/data-parallel over 2 ranks: pre-training batch 64 = 32 x 2, fine-tuning batch 32 = 16 x 2/);
    expect(r.stdout).toMatch(/finetune: data-parallel over 2 ranks: global batch 32 = 16 per rank x 2 ranks/);
    expect(r.stdout.match(/SST-2 dev accuracy: \d+\.\d%/g)).toHaveLength(1);
    const fs = await import('fs');
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect([rep.pretrain.steps, rep.finetune.steps]).toEqual([4, 4]);
    expect(rep.dev.bagOfWords).toBeGreaterThan(0.5);
    for (const f of ['sst2-model/model.safetensors', 'sst2-model.pt', 'pretrained/model.safetensors']) expect([f, fs.existsSync(path.join(out, f))]).toEqual([f, true]);
    // 3 ranks do not divide the batches: a clear error, not a skewed recipe
    const bad = await run(process.execPath, [CLI, 'main', '--data', DATA, '--out', tmpDir(), '--pretrain-steps', '1', '--hidden', '32', '--layers', '1', '--nproc', '3'], {});
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/3 ranks must divide the global batches \(64 for pre-training, 32 for fine-tuning\)/);
  }, 300_000);

  test('two "nodes" on 127.0.0.1 and 127.0.0.2 (--nnodes 2 --node-rank, MASTER_ADDR) form one group', async () => {
    const port = await freePort();
    const node = (r: number) => run(process.execPath, [CLI, 'run', '--nnodes', '2', '--node-rank', String(r), '--nproc-per-node', '1', '--master-addr', '127.0.0.1', '--master-port', String(port), '--local-addr', `127.0.0.${r + 1}`, WORKER, 'interop'], {});
    const [a, b] = await Promise.all([node(0), node(1)]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect([a.out, b.out]).toEqual([{ rank: 0, sum: [3, 6, 9] }, { rank: 1, sum: [3, 6, 9] }]);
  });
});

maybe('faults end in a clear error within the timeout, never a hang', () => {
  test('a collective before initProcessGroup', async () => {
    const [r] = await ranks(1, ['before-init']);
    expect(r.out.error).toMatch(/allReduce: the default process group is not initialised/);
  });
  test("backend 'nccl' where it cannot run (no NCCL in the build, or no GPU): refused before rendezvous, naming what is missing", async () => {
    const [r] = await ranks(1, ['before-init']);
    if (!r.out.ncclBuilt) expect(r.out.nccl).toMatch(/backend 'nccl' needs a CUDA build of libtorch with NCCL; this build \(libtorch cpu\) has Gloo only/);
    else if (r.out.gpus === 0) expect(r.out.nccl).toMatch(/backend 'nccl' needs a GPU, and CUDA reports none/);
    else expect(r.out.nccl).toBe('no error'); // a GPU: a group of one forms
  });
  test('a rank that never joins: the others fail at rendezvous, naming the address', async () => {
    const [r] = await ranks(2, ['join'], () => ({ DIST_TIMEOUT_MS: '3000' }), [0]);
    expect(r.code).toBe(0);
    expect(r.out.error).toMatch(/initProcessGroup: rank 0 of 2 could not join the group at 127\.0\.0\.1:\d+ within 3000 ms/);
  });
  test('an unreachable master (no rank 0 listening): the joining rank fails naming the address', async () => {
    const [r] = await ranks(2, ['join'], () => ({ DIST_TIMEOUT_MS: '3000' }), [1]);
    expect(r.code).toBe(0);
    expect(r.out.error).toMatch(/initProcessGroup: rank 1 of 2 could not join the group at 127\.0\.0\.1:\d+ within 3000 ms/);
  });
  test('a port already in use', async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as net.AddressInfo).port;
    const r = await run(process.execPath, [WORKER, 'join'], { RANK: '0', WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), DIST_TIMEOUT_MS: '3000' });
    server.close();
    expect(r.out.error).toMatch(new RegExp(`could not join the group at 127\\.0\\.0\\.1:${port}.*(in use|EADDRINUSE|bind)`, 'i'));
  });
  test('models whose parameters differ between ranks', async () => {
    const res = await ranks(2, ['mismatch']);
    // every rank fails; the one that finds the difference names the parameter (the other sees its peer leave)
    for (const r of res) expect(r.out.error).not.toBe('no error');
    expect(res.map((r) => r.out.error).join('\n')).toMatch(/DistributedDataParallel: parameter 'bert\.encoder\.layer\.0\.intermediate\.dense\.weight' \(params\[\d+\]\) has shape \[(48|32), 16\] on rank \d, not the shape it has on rank \d/);
  });
  test('a rank killed mid-run: the other fails with an error and exits', async () => {
    const [a, b] = await ranks(2, ['killed'], () => ({ DIST_TIMEOUT_MS: '5000' }));
    expect(b.signal).toBe('SIGKILL');
    expect(a.code).toBe(0);
    expect(a.out.error).not.toBe('no error');
  });
});
