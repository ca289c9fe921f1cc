// safetensors: round trips with the Python reference, sharded checkpoints, and 10,000 mutated files.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as tb from '../lib';
import { saveFile, loadFile, readHeader } from '../lib/safetensors';
import { fromPretrained } from '../lib/models/bert';
import { FIXTURES, python, tmpDir, maxAbsDiff, mappingsOf, residentKbOf } from './helpers';

test('files written here load in Python safetensors, and back, for every dtype', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 't.safetensors');
  const tensors = new Map<string, tb.Tensor>();
  for (const dtype of tb.DTYPES) tensors.set(`t_${dtype}`, tb.tensor([[1, 0, 2], [3, 1, 0]], { dtype }));
  tensors.set('scalar', tb.tensor(2.5));
  tensors.set('empty', tb.zeros([0, 3]));
  await saveFile(tensors, file, { format: 'pt' });
  const r = python(`import sys, json
from safetensors import safe_open
out = {}
with safe_open(sys.argv[1], 'pt') as f:
    meta = f.metadata()
    for k in f.keys():
        t = f.get_tensor(k)
        out[k] = {'dtype': str(t.dtype), 'shape': list(t.shape), 'sum': float(t.float().sum())}
print(json.dumps({'meta': meta, 't': out}))`, [file]);
  expect(r.meta).toEqual({ format: 'pt' });
  expect(r.t.t_bfloat16).toEqual({ dtype: 'torch.bfloat16', shape: [2, 3], sum: 7 });
  expect(r.t.t_bool.sum).toBe(4);
  expect(r.t.scalar).toEqual({ dtype: 'torch.float32', shape: [], sum: 2.5 });
  expect(r.t.empty.shape).toEqual([0, 3]);
  const back = await loadFile(file);
  for (const [k, t] of tensors) expect(back.get(k)!.equal(t)).toBe(true);
});

test('sharded checkpoints (model.safetensors.index.json) load', async () => {
  const src = path.join(FIXTURES, 'bert', 'BertModel');
  const dir = tmpDir();
  python(`import sys, transformers
m = transformers.BertModel.from_pretrained(sys.argv[1])
m.save_pretrained(sys.argv[2], max_shard_size='20KB')
print('{}')`, [src, dir]);
  expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true);
  const sharded = await fromPretrained(dir);
  const single = await fromPretrained(src);
  expect(sharded.loadReport.missingKeys).toEqual([]);
  for (const [n, p] of single.namedParameters()) expect(maxAbsDiff(p.toArraySync(), sharded.stateDict().get(n)!.toArraySync())).toBe(0);
});

test('mmap: mapped tensors equal read ones, writes stay private, saving over the file keeps them, dispose unmaps', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'w.safetensors');
  const big = tb.randn([256, 128]); // 128 KiB: mapped
  const small = tb.randn([4, 4]); // under 64 KiB: read
  await saveFile(new Map([['big', big], ['small', small]]), file);
  // the process's mappings of the file (after a rename, the line ends in "(deleted)")
  const mappings = () => mappingsOf(file);
  const m = await loadFile(file, { mmap: true });
  expect(mappings()).toBe(1);
  expect(m.get('big')!.equal(big)).toBe(true);
  expect(m.get('small')!.equal(small)).toBe(true);
  // a write copies the page and never reaches the file
  m.get('big')!.fill_(7);
  const reread = await loadFile(file);
  expect(reread.get('big')!.equal(big)).toBe(true);
  // saving over the mapped file replaces it by a rename: the mapped tensor keeps its values
  const m2 = await loadFile(file, { mmap: true });
  await saveFile(new Map([['big', tb.zeros([256, 128])], ['small', small]]), file);
  expect(m2.get('big')!.equal(big)).toBe(true);
  expect((await loadFile(file)).get('big')!.equal(tb.zeros([256, 128]))).toBe(true);
  expect(mappings()).toBe(2);
  // each tensor's mapping goes with its storage
  m.get('big')!.dispose();
  m2.get('big')!.dispose();
  expect(mappings()).toBe(0);
});

test('byRows: a mapped embedding table keeps resident the rows looked up, though the page cache held all of it', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'emb.safetensors');
  const table = tb.randn([4096, 256]); // 4 MiB of 1 KiB rows
  await saveFile(new Map([['emb', table]]), file); // written and synced: its cached pages are clean
  const rows = tb.tensor([5, 2000, 4000], { dtype: 'int64' });
  const want = table.indexSelect(0, rows);
  const lookUp = async (opts: { byRows?: (n: string) => boolean }) => {
    fs.readFileSync(file); // the whole file in the page cache
    const m = await loadFile(file, { mmap: true, ...opts });
    expect(m.get('emb')!.indexSelect(0, rows).equal(want)).toBe(true);
    const kb = residentKbOf(file);
    m.get('emb')!.dispose();
    return kb;
  };
  // plain: the kernel's fault-around maps the cached pages around each of the three faults (64 KiB, or a
  // whole large folio, each; half of 64 KiB asked here)
  expect(await lookUp({})).toBeGreaterThanOrEqual(3 * 32);
  // by rows: the three pages that hold the rows (one 4 KiB page each)
  expect(await lookUp({ byRows: (n) => n === 'emb' })).toBeLessThanOrEqual(3 * 4);
  // a read of the whole table still gets every row
  const m = await loadFile(file, { mmap: true, byRows: () => true });
  expect(m.get('emb')!.equal(table)).toBe(true);
  m.get('emb')!.dispose();
});

test('a model loaded with mmap computes what a read one does; its inference copies keep the mapped embeddings', async () => {
  const src = path.join(FIXTURES, 'bert', 'BertModel');
  const file = path.join(src, 'model.safetensors');
  const mappings = () => mappingsOf(file);
  const ids = tb.tensor([[101, 7, 42, 9, 102]], { dtype: 'int64' });
  const read = await fromPretrained(src);
  const want = (await tb.noGrad(() => read.forward({ inputIds: ids }))).lastHiddenState!;
  for (const opts of [{}, { prepack: true }, { quantize: 'int8' as const }, { prepack: true, embeddingsByRows: true }]) {
    const m = await fromPretrained(src, { ...opts, mmap: true });
    expect(mappings()).toBeGreaterThan(0);
    const got = (await tb.noGrad(() => m.forward({ inputIds: ids }))).lastHiddenState!;
    expect(maxAbsDiff(got.toArraySync(), want.toArraySync())).toBeLessThan('quantize' in opts ? 0.5 : 1e-5);
    m.dispose();
    got.dispose();
    expect(mappings()).toBe(0);
  }
  read.dispose();
  await expect(fromPretrained(src, { embeddingsByRows: true })).rejects.toThrow(/embeddingsByRows pages a mapped checkpoint in: set mmap: true/);
});

test('hostile headers are clear errors', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'bad.safetensors');
  fs.writeFileSync(file, Buffer.from([1, 2, 3]));
  expect(() => readHeader(file)).toThrow(/shorter than the 8-byte header length/);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(10n ** 15n);
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from('{}')]));
  expect(() => readHeader(file)).toThrow(/header length .* exceeds the file/);
  const body = Buffer.from(JSON.stringify({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }));
  len.writeBigUInt64LE(BigInt(body.length));
  fs.writeFileSync(file, Buffer.concat([len, body, Buffer.alloc(8)]));
  expect(() => readHeader(file)).toThrow(/outside the 8-byte data section/);
});

test('10,000 mutated files: every one loads or fails with an error, none crashes', () => {
  const r = spawnSync(process.execPath, ['-r', require.resolve('ts-node/register/transpile-only'), path.join(__dirname, 'fuzz-safetensors-child.ts')], { encoding: 'utf8', timeout: 300000 });
  expect(r.stderr).not.toMatch(/Segmentation|Aborted|terminate called/);
  expect(r.status).toBe(0);
  const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
  console.log(`safetensors fuzz: ${s.files} files, ${s.ok} loaded, ${s.failed} rejected, 0 crashes`);
  expect(s.files).toBe(10000);
  expect(s.failed).toBeGreaterThan(5000);
});
