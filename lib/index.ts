// torchbert: libtorch tensors, TorchScript modules, BERT tokenizers and models for Node.js.
export { TorchError, LibtorchNotFoundError } from './errors';
export {
  Tensor, tensor, zeros, ones, empty, full, arange, linspace, rand, randn, randint, randperm, eye,
  zerosLike, onesLike, emptyLike, fullLike, randLike, randnLike, cat, stack, where, op, DTYPES,
} from './tensor';
export type { MemoryInfo, CpuCacheStats, LinearTuningEntry } from './binding';
export type { DType, Device, Shape, Scalar, TensorLike, TensorOptions, TypedArrayFor, NestedArray } from './tensor';
export { tidy, keep, DisposeScope } from './scope';
export { noGrad, enableGrad, autocast, isGradEnabled, setGradEnabled, manualSeed, getRngState, setRngState, setNumThreads, getNumThreads, setGraphExecutorOptimize, memory, cpuCache, linearTuning, cuda, info } from './torch';
export type { AutocastOptions } from './torch';
export { ScriptModule } from './module';
export { cpuInfo } from './cpu';
export type { CpuInfo } from './cpu';
export type { IValue } from './module';
export * as F from './functional';
export { BertTokenizer, BatchEncoding, WordPieceTrainer } from './tokenizer';
export type { CallOptions, BertTokenizerOptions, Encoding } from './tokenizer';
export * as datasets from './data/datasets';
export { hubFile, hubCacheDir } from './hub';
export * as models from './models';
export * as train from './train';
export { AdamW, clipGradNorm, getLinearScheduleWithWarmup, getScheduler } from './train';
export { pipeline, tasksFor, TextClassificationPipeline, TokenClassificationPipeline, FillMaskPipeline, QuestionAnsweringPipeline, FeatureExtractionPipeline } from './pipelines';
export type { Task, PipelineOptions, LabelScore, TokenEntity, EntityGroup, FillMaskResult, QAInput, QAAnswer, AggregationStrategy, Pooling } from './pipelines';
export * as distributed from './distributed';
export { Batcher, QueueFullError, BatcherClosedError } from './serve/batcher';
export type { BatcherOptions, BatchInfo } from './serve/batcher';
