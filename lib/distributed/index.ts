// tb.distributed: process groups and collectives (process-group.ts), DistributedDataParallel (ddp.ts),
// DistributedSampler (sampler.ts).
export * from './process-group';
export { DistributedDataParallel } from './ddp';
export type { DdpOptions, DdpModel } from './ddp';
export { DistributedSampler, seededPermutation, seededRandom } from './sampler';
export { launch, LaunchError } from './launch';
export type { LaunchOptions } from './launch';
