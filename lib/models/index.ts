// BERT models: config, TorchScript modules with HF heads, checkpoint I/O.
export { BertConfig, ACTIVATIONS } from './config';
export type { BertConfigFields, Activation, ProblemType } from './config';
export { BertPreTrainedModel, fromPretrained, fromConfig, HEADS, bertTorchScript } from './bert';
export type { HeadKind, BertInputs, BertOutput, LoadReport, LinearMode, PrepackOptions, QuantizeOptions, FromPretrainedOptions } from './bert';
