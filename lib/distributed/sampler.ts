// PyTorch's DistributedSampler: each rank a disjoint shard of a shuffled order, the same seeded shuffle
// (seed + epoch) on every rank, padded by repeating from the start so every shard has the same length.
export class DistributedSampler {
  readonly numSamples: number;
  #epoch = 0;
  constructor(
    readonly size: number,
    readonly opts: { numReplicas: number; rank: number; shuffle?: boolean; seed?: number; dropLast?: boolean },
  ) {
    const { numReplicas, rank } = opts;
    if (!Number.isInteger(numReplicas) || numReplicas < 1) throw new RangeError(`DistributedSampler: numReplicas must be a positive integer, got ${numReplicas}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= numReplicas) throw new RangeError(`DistributedSampler: rank must be in [0, ${numReplicas}), got ${rank}`);
    this.numSamples = opts.dropLast ? Math.floor(size / numReplicas) : Math.ceil(size / numReplicas);
  }
  setEpoch(epoch: number): void {
    this.#epoch = epoch;
  }
  /** This rank's indices for the current epoch. */
  indices(): number[] {
    let order = Array.from({ length: this.size }, (_, i) => i);
    if (this.opts.shuffle !== false) order = seededPermutation(this.size, (this.opts.seed ?? 0) + this.#epoch);
    const total = this.numSamples * this.opts.numReplicas;
    if (total > order.length) {
      const pad = total - order.length;
      for (let i = 0; i < pad; i++) order.push(order[i % this.size]);
    } else order = order.slice(0, total);
    const out: number[] = [];
    for (let i = this.opts.rank; i < total; i += this.opts.numReplicas) out.push(order[i]);
    return out;
  }
}

/**
 * Uniform draws in [0, 1) from a 32-bit LCG (Numerical Recipes' constants) seeded by `seed`: the same
 * sequence on every rank and platform, and apart from libtorch's generator, whose draws (dropout,
 * masking) it leaves where they were.
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
}

/** A permutation of 0..n-1 from seededRandom, identical on every rank (batchIndices and the sampler shuffle with it). */
export function seededPermutation(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rnd = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
