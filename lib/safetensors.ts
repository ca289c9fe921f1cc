// safetensors read and write. The header (8-byte little-endian length, then JSON) is parsed and
// validated here: known dtypes, integer shapes, offsets inside the file, sorted, contiguous and not
// overlapping, sizes matching shapes. The bulk data moves natively (native/safetensors.cc), which
// re-checks every range against the real file size.
import * as fs from 'fs';
import { native } from './binding';
import { Tensor, DType, DTYPE_INFO, DTYPES as ALL_DTYPES } from './tensor';
import { writeFileAtomic } from './fsutil';

// safetensors code -> dtype and element size, from the one dtype table.
const DTYPES: Record<string, { dtype: DType; size: number }> = Object.fromEntries(
  ALL_DTYPES.map((d) => [DTYPE_INFO[d].safetensors, { dtype: d, size: DTYPE_INFO[d].bytes }]),
);
const TO_ST: Record<string, string> = Object.fromEntries(ALL_DTYPES.map((d) => [d, DTYPE_INFO[d].safetensors]));
const MAX_HEADER = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  readonly code = 'SAFETENSORS_INVALID';
  constructor(file: string, what: string) {
    super(`${file}: invalid safetensors file: ${what}`);
    this.name = 'SafetensorsError';
  }
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  dataStart: number;
  tensors: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[];
}

/** Reads and validates the header of a safetensors file. */
export function readHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const fail = (what: string): never => {
      throw new SafetensorsError(file, what);
    };
    if (size < 8) fail(`file is ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(Math.min(MAX_HEADER, size - 8))) fail(`header length ${n} exceeds the file (${size} bytes) or the ${MAX_HEADER}-byte limit`);
    const hlen = Number(n);
    const hbuf = Buffer.alloc(hlen);
    fs.readSync(fd, hbuf, 0, hlen, 8);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(hbuf));
    } catch (e) {
      fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) fail('header is not a JSON object');
    const dataStart = 8 + hlen;
    const dataSize = size - dataStart;
    const tensors: SafetensorsHeader['tensors'] = [];
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(json as Record<string, any>)) {
      if (name === '__metadata__') {
        if (!v || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) fail('__metadata__ must map strings to strings');
        metadata = v;
        continue;
      }
      if (!v || typeof v !== 'object') fail(`entry '${name}' is not an object`);
      const dt = DTYPES[v.dtype];
      if (!dt) fail(`tensor '${name}' has unsupported dtype '${String(v.dtype)}'`);
      if (!Array.isArray(v.shape) || v.shape.some((d: unknown) => !Number.isSafeInteger(d) || (d as number) < 0)) fail(`tensor '${name}' has an invalid shape`);
      const off = v.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0)) fail(`tensor '${name}' has invalid data_offsets`);
      const [begin, end] = off as [number, number];
      if (end < begin) fail(`tensor '${name}' ends before it begins`);
      if (end > dataSize) fail(`tensor '${name}' data [${begin}, ${end}) lies outside the ${dataSize}-byte data section`);
      const numel = (v.shape as number[]).reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(numel * dt.size) || numel * dt.size !== end - begin) fail(`tensor '${name}' has ${end - begin} bytes but shape [${v.shape}] of ${v.dtype} needs ${numel * dt.size}`);
      tensors.push({ name, dtype: dt.dtype, shape: v.shape, begin, end });
    }
    const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
    let pos = 0;
    for (const t of sorted) {
      if (t.begin < pos) fail(`tensor '${t.name}' overlaps another tensor`);
      if (t.begin > pos) fail(`gap in the data section before tensor '${t.name}'`);
      pos = t.end;
    }
    if (pos !== dataSize) fail(`data section is ${dataSize} bytes but tensors cover ${pos}`);
    return { metadata, dataStart, tensors };
  } finally {
    fs.closeSync(fd);
  }
}

export interface LoadOptions {
  device?: string;
  /**
   * Map the file instead of reading it (CPU tensors of 64 KiB or more), as safetensors' `safe_open` and
   * `torch.load(mmap=True)`: a page is read when first touched and, until written, belongs to the page
   * cache, shared with every process that maps the same file; a write copies the page and never reaches
   * the file. The file must not be rewritten in place while mapped (a writer that truncates it makes
   * the next read of a lost page fail with SIGBUS); writers that replace it by a rename, as saveFile does,
   * are safe.
   */
  mmap?: boolean;
  /**
   * With `mmap`: the tensors read by rows (embedding tables) that are paged in one page at a time as rows
   * are looked up: no readahead, and the page cache's copies of them that no process maps are dropped at
   * load, so the kernel's fault-around (which maps every cached page near a fault) maps nothing more. A
   * process then keeps resident the rows it uses, whatever the cache held; each first touch of a page is
   * a read from the file. A tensor read whole (a tied MLM decoder) comes in page by page once.
   */
  byRows?: (name: string) => boolean;
}

const entries = (tensors: SafetensorsHeader['tensors'], opts: LoadOptions) =>
  opts.mmap && opts.byRows ? tensors.map((t) => ({ ...t, byRows: opts.byRows!(t.name) })) : tensors;

/** Loads every tensor (or those named in `only`) on a worker thread. */
export async function loadFile(file: string, opts: LoadOptions & { only?: Set<string> } = {}): Promise<Map<string, Tensor>> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const h = readHeader(file);
  const wanted = opts.only ? h.tensors.filter((t) => opts.only!.has(t.name)) : h.tensors;
  const handles = await native.readTensors(file, h.dataStart, entries(wanted, opts), opts.device, true, !!opts.mmap);
  return new Map(wanted.map((t, i) => [t.name, Tensor._wrap(handles[i])]));
}
export function loadFileSync(file: string, opts: LoadOptions = {}): Map<string, Tensor> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const h = readHeader(file);
  const handles = native.readTensors(file, h.dataStart, entries(h.tensors, opts), opts.device, false, !!opts.mmap);
  return new Map(h.tensors.map((t, i) => [t.name, Tensor._wrap(handles[i])]));
}

function buildHeader(tensors: Map<string, Tensor>, metadata?: Record<string, string>): { header: Uint8Array; order: Tensor[] } {
  // Larger element sizes first, then by name (the reference writer's order), offsets contiguous.
  const entries = [...tensors.entries()].sort((a, b) => DTYPES[TO_ST[b[1].dtype]].size - DTYPES[TO_ST[a[1].dtype]].size || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const json: Record<string, unknown> = {};
  if (metadata) json.__metadata__ = metadata;
  let pos = 0;
  for (const [name, t] of entries) {
    const st = TO_ST[t.dtype];
    if (!st) throw new TypeError(`cannot save tensor '${name}' of dtype ${t.dtype}`);
    const bytes = t.numel * DTYPES[st].size;
    json[name] = { dtype: st, shape: t.shape, data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  let text = JSON.stringify(json);
  while ((Buffer.byteLength(text) + 8) % 8 !== 0) text += ' ';
  const body = Buffer.from(text, 'utf8');
  const header = Buffer.alloc(8 + body.length);
  header.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(header, 8);
  return { header, order: entries.map(([, t]) => t) };
}

/** Writes tensors (atomically: a temporary file, then a rename) on a worker thread. */
export async function saveFile(tensors: Map<string, Tensor>, file: string, metadata?: Record<string, string>): Promise<void> {
  const { header, order } = buildHeader(tensors, metadata);
  await writeFileAtomic(file, (tmp) => native.writeTensors(tmp, header, order.map((t) => t._handle), true));
}
