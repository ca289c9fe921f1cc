// torchbert: libtorch tensors, TorchScript modules, BERT tokenizers and models for Node.js.
export * from './core';
export { BertTokenizer, BatchEncoding, WordPieceTrainer } from './tokenizer';
export type { CallOptions, BertTokenizerOptions, Encoding } from './tokenizer';
export * as datasets from './data/datasets';
export { hubFile, hubCacheDir } from './hub';
export * as models from './models';
export * as train from './train';
export { AdamW, clipGradNorm, clipGradNormAsync, getLinearScheduleWithWarmup, getScheduler } from './train';
export { pipeline, tasksFor, TextClassificationPipeline, TokenClassificationPipeline, FillMaskPipeline, QuestionAnsweringPipeline, FeatureExtractionPipeline } from './pipelines';
export type { Task, PipelineOptions, LabelScore, TokenEntity, EntityGroup, FillMaskResult, QAInput, QAAnswer, AggregationStrategy, Pooling } from './pipelines';
export * as distributed from './distributed';
export { Batcher, QueueFullError, BatcherClosedError } from './batcher';
export type { BatcherOptions, BatchInfo } from './batcher';
