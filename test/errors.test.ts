// No input from JS can abort the process; errors are typed and carry libtorch's message.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tb from '../lib';
import { native } from '../lib/binding';

/** Native errors come from the main realm, so jest's toThrow(RangeError) cannot match them: check names. */
function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

test('every native entry point survives wrong types, shapes, disposed tensors and absurd sizes', () => {
  // In a scratch folder: the fuzzer calls saveSync('w') with whatever it is given.
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-fuzz-'));
  const r = spawnSync(process.execPath, [path.join(__dirname, 'fuzz-native-child.js')], { encoding: 'utf8', timeout: 120000, cwd });
  fs.rmSync(cwd, { recursive: true, force: true });
  expect(r.stderr).not.toMatch(/terminate called|Aborted|Segmentation/);
  expect(r.status).toBe(0);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
  expect(summary.calls).toBeGreaterThan(2000);
  expect(summary.errors).toBeGreaterThan(1000);
  expect(summary.async).toEqual(['rejected', 'rejected', 'rejected', 'rejected', 'rejected']);
  // Bad input must come back as typed JS errors, libtorch failures as TorchError.
  expect(summary.kinds.TypeError).toBeGreaterThan(0);
  expect(summary.kinds.TorchError).toBeGreaterThan(0);
});

test('TORCHBERT_ADDON loads that addon or fails naming it, never another in its place', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-addon-'));
  const load = (addon: string) =>
    spawnSync(process.execPath, ['-e', "require('./dist'); console.log(require('./dist/binding').loadInfo.addon)"], {
      cwd: path.join(__dirname, '..'), env: { ...process.env, TORCHBERT_ADDON: addon }, encoding: 'utf8',
    });
  try {
    const missing = load(path.join(dir, 'none.node'));
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain(`TORCHBERT_ADDON is ${path.join(dir, 'none.node')}, which does not exist`);
    // A copy of the build whose record says another libtorch: refused with the mismatch message.
    const built = require('../lib/binding').loadInfo.addon as string;
    const meta = JSON.parse(fs.readFileSync(built.replace(/\.node$/, '.json'), 'utf8'));
    fs.copyFileSync(built, path.join(dir, 'other.node'));
    fs.writeFileSync(path.join(dir, 'other.json'), JSON.stringify({ ...meta, torch: '2.12.0' }));
    const other = load(path.join(dir, 'other.node'));
    expect(other.status).not.toBe(0);
    expect(other.stderr).toContain(`the addon ${path.join(dir, 'other.node')} was built for libtorch 2.12.0 (cpu)`);
    // The same copy with its own record loads, and is the one loaded.
    fs.writeFileSync(path.join(dir, 'other.json'), JSON.stringify(meta));
    const ok = load(path.join(dir, 'other.node'));
    expect([ok.status, ok.stdout.trim()]).toEqual([0, path.join(dir, 'other.node')]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('error types', () => {
  test('shape and dtype mismatches are TorchErrors with libtorch messages', () => {
    const a = tb.ones([2, 3]);
    let err: unknown;
    try {
      a.matmul(tb.ones([4, 5]));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(tb.TorchError);
    expect((err as tb.TorchError).code).toBe('TORCH_ERROR');
    expect((err as Error).message).toMatch(/cannot be multiplied|size mismatch|shapes/);
  });

  test('out of memory has its own code', () => {
    let err: any;
    try {
      tb.empty([1e13]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(tb.TorchError);
    expect(err.code).toBe('TORCH_OUT_OF_MEMORY');
  });

  test('index errors are RangeErrors; wrong argument types are TypeErrors naming the argument', () => {
    expect(errorOf(() => tb.ones([2, 3]).select(0, 5)).name).toBe('RangeError');
    expect(() => tb.ones([2]).softmax(1.5)).toThrow(/dim must be an integer/);
    expect(errorOf(() => tb.zeros([2, -1])).name).toBe('RangeError');
    expect(() => tb.zeros([2], { dtype: 'float8' as any })).toThrow(/unknown dtype 'float8'/);
    expect(() => tb.zeros([2], { device: 'tpu' })).toThrow(/invalid device 'tpu'/);
    expect(() => tb.tensor([[1, 2], [3]])).toThrow(/ragged/);
    expect(errorOf(() => tb.ones([2]).add({} as any)).name).toBe('TypeError');
    const e = errorOf(() => tb.op('aten::add.Tensor').t(tb.ones([2])._handle, 'x'));
    expect(e.name).toBe('TypeError');
    expect(e.message).toMatch(/aten::add.Tensor argument 'other' must be a Tensor/);
    expect(errorOf(() => tb.ones([3]).item()).name).toBe('RangeError');
  });

  test('native errors that are not libtorch failures carry codes too', async () => {
    const range = errorOf(() => tb.ones([2, 3]).select(0, 5)) as Error & { code?: string };
    expect([range.name, range.code]).toEqual(['RangeError', 'TORCHBERT_OUT_OF_RANGE']);
    const type = errorOf(() => tb.op('aten::add.Tensor').t(tb.ones([2])._handle, 'x')) as Error & { code?: string };
    expect([type.name, type.code]).toEqual(['TypeError', 'TORCHBERT_INVALID_ARGUMENT']);
    // A stale handle that reaches native code: the same DisposedError TS throws.
    const t = tb.ones([2]);
    const h = t._handle;
    t.dispose();
    const gone = errorOf(() => tb.op('aten::neg').t(h));
    expect(gone).toBeInstanceOf(tb.DisposedError);
    expect([(gone as tb.DisposedError).code, gone.message]).toEqual(['DISPOSED', expect.stringMatching(/Tensor has been disposed/)]);
    // I/O on a worker thread and in a synchronous call.
    const entry = [{ name: 'w', dtype: 'float32', shape: [1], begin: 0, end: 4 }];
    const io = errorOf(() => native.readTensors('/nonexistent/w.safetensors', 8, entry, undefined, false)) as Error & { code?: string };
    expect([io.code, io.message]).toEqual(['TORCHBERT_IO_ERROR', '/nonexistent/w.safetensors: cannot open file']);
    await expect(native.readTensors('/nonexistent/w.safetensors', 8, entry, undefined, true)).rejects.toMatchObject({ code: 'TORCHBERT_IO_ERROR' });
  });

  test('distributed calls out of order say so with TORCHBERT_INVALID_STATE', async () => {
    expect(tb.distributed.isInitialized()).toBe(false);
    await expect((async () => native.distBarrier(0))()).rejects.toMatchObject({ code: 'TORCHBERT_INVALID_STATE', message: expect.stringMatching(/not initialised/) });
  });
});
