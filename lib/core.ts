// The tensor layer the rest of lib/ builds on: tensors and ops, grad mode, RNG and threads, disposal
// scopes, TorchScript modules, functional ops. lib/index.ts re-exports it with the models, training and
// serving layers; files inside lib/ import this (or the defining file), never the package barrel, so
// imports point one way (test/layers.test.ts fails on a cycle).
export { TorchError, LibtorchNotFoundError, DisposedError } from './errors';
export {
  Tensor, tensor, zeros, ones, empty, full, arange, linspace, rand, randn, randint, randperm, eye,
  zerosLike, onesLike, emptyLike, fullLike, randLike, randnLike, cat, stack, where, op, DTYPES,
} from './tensor';
export type { MemoryInfo, CpuCacheStats, LinearTuningEntry, AttentionTuningEntry } from './binding';
export type { DType, Device, Shape, Scalar, TensorLike, TensorOptions, TypedArrayFor, NestedArray } from './tensor';
export { tidy, keep, DisposeScope } from './scope';
export { noGrad, enableGrad, autocast, isGradEnabled, setGradEnabled, manualSeed, getRngState, setRngState, setNumThreads, getNumThreads, setGraphExecutorOptimize, getGraphExecutorOptimize, setPrimitiveCacheCapacity, memory, cpuCache, linearTuning, attentionTuning, attentionMode, cuda, info } from './torch';
export type { AutocastOptions } from './torch';
export { ScriptModule } from './module';
export { cpuInfo } from './cpu';
export type { CpuInfo } from './cpu';
export { profile, Profile } from './profiler';
export type { ProfileOptions, ProfileEvent, OpSummary } from './profiler';
export type { IValue } from './module';
export * as F from './functional';
