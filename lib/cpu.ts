// What the CPU can do, read once: the model name and the ISA flags that decide which kernels are worth
// running (AVX2, AVX-512, VNNI, bf16 units, AMX). Linux reads /proc/cpuinfo; elsewhere only the model
// name is known and the flags are empty.
import * as fs from 'fs';
import * as os from 'os';

export interface CpuInfo {
  model: string;
  /** the ISA flags torchbert looks at, of those the CPU reports */
  flags: string[];
  /**
   * bf16 arithmetic units (avx512_bf16 or amx_bf16) that oneDNN may use: bf16 runs faster than fp32. False
   * where the environment caps oneDNN below them (ONEDNN_MAX_CPU_ISA=AVX2 made a bf16 GEMM 10x slower on a
   * Zen 4 EPYC, 4.6x slower than fp32).
   */
  bf16: boolean;
  /** int8 dot-product units (avx512_vnni, avx_vnni or amx_int8) */
  vnni: boolean;
  /** oneDNN's ISA cap from the environment (ONEDNN_MAX_CPU_ISA or DNNL_MAX_CPU_ISA), as set; null when none */
  onednnIsaCap: string | null;
}

// oneDNN's dnnl_cpu_isa_t masks (dnnl_types.h): a cap admits an ISA when it holds all of the ISA's bits.
const ONEDNN_ISA: Record<string, number> = {
  SSE41: 0x1, AVX: 0x3, AVX2: 0x7, AVX2_VNNI: 0xf, AVX2_VNNI_2: 0x1f, AVX512_CORE: 0x27, AVX512_CORE_VNNI: 0x67,
  AVX512_CORE_BF16: 0xe7, AVX10_1_512: 0x1ef, AVX512_CORE_FP16: 0x1ef, AVX10_1_512_AMX: 0xfef, AVX512_CORE_AMX: 0xfef,
  AVX10_1_512_AMX_FP16: 0x1fef, AVX512_CORE_AMX_FP16: 0x1fef, AVX10_2_512: 0x201ff, AVX10_2_512_AMX_2: 0x22fff,
};
/** Whether the CPU has bf16 units, whether or not a cap lets oneDNN use them. */
export function hasBf16Units(c: CpuInfo): boolean {
  return c.flags.includes('avx512_bf16') || c.flags.includes('amx_bf16');
}
/** The cap's mask; undefined when unset, DEFAULT/ALL, or a name oneDNN would ignore. */
function onednnCapMask(cap: string | null): number | undefined {
  return cap ? ONEDNN_ISA[cap.toUpperCase()] : undefined;
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
  const cap = process.env.ONEDNN_MAX_CPU_ISA || process.env.DNNL_MAX_CPU_ISA || null;
  const mask = onednnCapMask(cap);
  const admits = (isa: number) => mask === undefined || (mask & isa) === isa;
  cached = {
    model, flags,
    bf16: (has('avx512_bf16') && admits(ONEDNN_ISA.AVX512_CORE_BF16)) || (has('amx_bf16') && admits(ONEDNN_ISA.AVX512_CORE_AMX)),
    vnni: has('avx512_vnni') || has('avx_vnni') || has('amx_int8'),
    onednnIsaCap: cap,
  };
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
  const hidden = hasBf16Units(c);
  const why = hidden
    ? `this CPU (${c.model}) has bf16 units, but ONEDNN_MAX_CPU_ISA=${c.onednnIsaCap} keeps oneDNN from using them`
    : `this CPU (${c.model}) has no bf16 units (avx512_bf16 or amx_bf16)`;
  throw new Error(`${what}: ${why}, so bf16 would be emulated and slower than float32; use float32, or int8 for speed (quantize)` +
    `${hidden ? ', or lift the cap' : ''}, or set TORCHBERT_ALLOW_SLOW_BF16=1 to run it anyway`);
}
