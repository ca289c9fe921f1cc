// Child process for test/safetensors.test.ts: 10,000 mutated safetensors files (flipped bytes, cut
// files, forged header lengths, edited offsets, dtypes and shapes) must each load or fail with an
// error; a crash or an out-of-bounds read kills this process instead.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tb from '../lib';
import { saveFile, loadFileSync } from '../lib/safetensors';

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-fuzz-'));
  const good = path.join(dir, 'good.safetensors');
  // 'd' is 64 KiB: loaded with mmap, it is mapped (every other file of the run)
  await saveFile(new Map([['a', tb.randn([4, 3])], ['b', tb.arange(10, undefined, 1, { dtype: 'int64' })], ['c', tb.ones([2, 2], { dtype: 'float16' })], ['d', tb.randn([128, 128])]]), good);
  const base = fs.readFileSync(good);
  const hlen = Number(base.readBigUInt64LE(0));
  const header = JSON.parse(base.subarray(8, 8 + hlen).toString());
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const withHeader = (h: unknown, data = base.subarray(8 + hlen)) => {
    const body = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(body.length));
    return Buffer.concat([len, body, data]);
  };
  const mutations: (() => Buffer)[] = [
    () => { const b = Buffer.from(base); for (let k = 0; k <= rnd(4); k++) b[rnd(b.length)] = rnd(256); return b; },
    () => { const b = Buffer.from(base); b[8 + rnd(hlen)] = rnd(256); return b; },
    () => base.subarray(0, rnd(base.length)),
    () => { const b = Buffer.from(base); b.writeBigUInt64LE(BigInt(rnd(2 ** 31)) * BigInt(1 + rnd(3) * 1e6), 0); return b; },
    () => { const h = structuredClone(header); const k = ['a', 'b', 'c'][rnd(3)]; h[k].data_offsets = [rnd(200), rnd(400) - 100]; return withHeader(h); },
    () => { const h = structuredClone(header); const k = ['a', 'b', 'c'][rnd(3)]; h[k].dtype = ['F32', 'I64', 'F8_E4M3', 'XX', 7, null][rnd(6)]; return withHeader(h); },
    () => { const h = structuredClone(header); const k = ['a', 'b', 'c'][rnd(3)]; h[k].shape = [[rnd(100)], [-1], [1e20], ['x'], null, [rnd(5), rnd(5)]][rnd(6)]; return withHeader(h); },
    () => { const h = structuredClone(header); h.a.data_offsets = [...h.b.data_offsets]; return withHeader(h); },
    () => withHeader(rnd(2) ? [] : 'string'),
    () => { const h = structuredClone(header); h.__metadata__ = rnd(2) ? { x: 1 } : 'meta'; return withHeader(h); },
    () => withHeader(header, base.subarray(8 + hlen, base.length - 1 - rnd(20))),
  ];
  let ok = 0;
  let failed = 0;
  const file = path.join(dir, 'mut.safetensors');
  for (let i = 0; i < 10000; i++) {
    fs.writeFileSync(file, mutations[i % mutations.length]());
    try {
      const m = loadFileSync(file, { mmap: i % 2 === 1 });
      // a mapped tensor is read here, so a mapping past the file's end would fault now
      for (const t of m.values()) if (t.numel > 0 && t.dtype === 'float32') t.sum().dispose();
      for (const t of m.values()) t.dispose();
      ok++;
    } catch {
      failed++;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ files: ok + failed, ok, failed }));
}
main().catch((e) => {
  console.error(e);
  process.exit(2);
});
