// What the CPU can do, read once: the model name and the ISA flags that decide which kernels are worth
// running (AVX2, AVX-512, VNNI, bf16 units, AMX). Linux reads /proc/cpuinfo; elsewhere only the model
// name is known and the flags are empty.
import * as fs from 'fs';
import * as os from 'os';

export interface CpuInfo {
  model: string;
  /** the ISA flags torchbert looks at, of those the CPU reports */
  flags: string[];
  /** bf16 arithmetic units (avx512_bf16 or amx_bf16): bf16 runs faster than fp32 */
  bf16: boolean;
  /** int8 dot-product units (avx512_vnni, avx_vnni or amx_int8) */
  vnni: boolean;
}

const WATCHED = ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'avx_vnni', 'amx_bf16', 'amx_int8', 'amx_tile'];
let cached: CpuInfo | undefined;

export function cpuInfo(): CpuInfo {
  if (cached) return cached;
  let model = os.cpus()[0]?.model?.trim() ?? 'unknown';
  let flags: string[] = [];
  try {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1].trim() ?? model;
    const all = new Set((/^flags\s*:\s*(.+)$/m.exec(text)?.[1] ?? '').split(/\s+/));
    flags = WATCHED.filter((f) => all.has(f));
  } catch {
    // not Linux: flags unknown
  }
  const has = (f: string) => flags.includes(f);
  cached = { model, flags, bf16: has('avx512_bf16') || has('amx_bf16'), vnni: has('avx512_vnni') || has('avx_vnni') || has('amx_int8') };
  return cached;
}

/**
 * Refuses bf16 on a CPU without bf16 units, where libtorch emulates it and runs slower than fp32 (say so
 * rather than run slowly). TORCHBERT_ALLOW_SLOW_BF16=1 runs it anyway (for tests of the bf16 path).
 */
export function checkCpuBf16(what: string): void {
  if (process.env.TORCHBERT_ALLOW_SLOW_BF16 === '1') return;
  const c = cpuInfo();
  if (c.bf16) return;
  throw new Error(`${what}: this CPU (${c.model}) has no bf16 units (avx512_bf16 or amx_bf16), so bf16 would be emulated and slower ` +
    'than float32; use float32, or int8 for speed (quantize), or set TORCHBERT_ALLOW_SLOW_BF16=1 to run it anyway');
}
