// Training: AdamW, HF learning-rate schedules, gradient clipping, data collation, metrics, Trainer.
export { AdamW, clipGradNorm, weightDecayGroups } from './optim';
export type { AdamWOptions, ParamGroup, OptimizerStateDict } from './optim';
export * from './schedules';
