// What `torchbert serve` sets beyond the library's defaults, kept apart from the server so that the CLI can
// describe it without loading the addon, and the benchmarks can run the same model in process.

/**
 * Compiled primitives each of oneDNN's and ideep's caches keeps in a server (setPrimitiveCacheCapacity): a
 * server's batch shapes rarely repeat, and compiling one again measured no slower beside its GEMMs
 * (bench/primitive-cache.js), so the library's 64 were mostly memory.
 */
export const SERVE_PRIMITIVE_CACHE = 8;

/** What `torchbert serve --low-memory` sets, by CLI option name (an option given on the command line wins). */
export const LOW_MEMORY_OPTIONS = { weightLayouts: 'one', graphOptimize: false, embeddingsByRows: true, maxBatchSize: 8, cpuCacheBatches: 1 } as const;

/** The options as command-line flags: `--weight-layouts one --no-graph-optimize ...`. */
export function asFlags(options: Record<string, string | number | boolean>): string {
  const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  return Object.entries(options)
    .map(([k, v]) => (v === true ? `--${kebab(k)}` : v === false ? `--no-${kebab(k)}` : `--${kebab(k)} ${v}`))
    .join(' ');
}
