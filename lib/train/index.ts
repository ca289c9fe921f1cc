// Training: AdamW, HF learning-rate schedules, gradient clipping, data collation, metrics, Trainer.
export { AdamW, clipGradNorm, clipGradNormAsync, weightDecayGroups } from './optim';
export { GradScaler } from './amp';
export type { GradScalerOptions, GradScalerState } from './amp';
export type { AdamWOptions, ParamGroup, OptimizerStateDict } from './optim';
export * from './schedules';
export { padCollate, packSequences, maskTokens, bagOfWordsTargets, batchIndices, EpochBatches, wholeWordMask, alignLabels, nspPairs } from './collate';
export type { Example, Batch, MlmOptions } from './collate';
export { accuracy, f1, mcc, pearson, spearman, meanSquaredError, multiLabelScores, getEntities, entityScores, normalizeAnswer, qaScore, qaMetrics } from './metrics';
export type { Entity, EntityScores, MultiLabelScores } from './metrics';
export { Trainer, predictClasses, predictLogits } from './trainer';
export type { TrainerOptions, TrainResult } from './trainer';
export { averageWeights } from './soup';
export { rDropLoss } from './rdrop';
export type { NamedParameters } from './soup';
export { cooccurrenceVectors } from './word-vectors';
export type { WordVectorOptions } from './word-vectors';
