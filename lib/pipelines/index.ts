// Pipelines shaped like Hugging Face's: one file per task over the shared base (base.ts), and the
// pipeline() factory.
import { BertTokenizer } from '../tokenizer';
import { BertPreTrainedModel, fromPretrained } from '../models/bert';
import { Task, TASKS, ALIASES, HEAD_FOR, PipelineOptions, tasksFor } from './base';
import { TextClassificationPipeline } from './text-classification';
import { TokenClassificationPipeline } from './token-classification';
import { FillMaskPipeline } from './fill-mask';
import { QuestionAnsweringPipeline } from './question-answering';
import { FeatureExtractionPipeline } from './feature-extraction';

export { TASKS, tasksFor, worthUnpadding } from './base';
export type { Task, PipelineOptions } from './base';
export * from './text-classification';
export * from './token-classification';
export * from './fill-mask';
export * from './question-answering';
export * from './feature-extraction';

export type AnyPipeline = TextClassificationPipeline | TokenClassificationPipeline | FillMaskPipeline | QuestionAnsweringPipeline | FeatureExtractionPipeline;
type PipelineFor<T extends string> = T extends 'text-classification' | 'sentiment-analysis' ? TextClassificationPipeline
  : T extends 'token-classification' | 'ner' ? TokenClassificationPipeline
  : T extends 'fill-mask' ? FillMaskPipeline
  : T extends 'question-answering' ? QuestionAnsweringPipeline
  : T extends 'feature-extraction' ? FeatureExtractionPipeline
  : never;

const CLASSES = {
  'text-classification': TextClassificationPipeline,
  'token-classification': TokenClassificationPipeline,
  'fill-mask': FillMaskPipeline,
  'question-answering': QuestionAnsweringPipeline,
  'feature-extraction': FeatureExtractionPipeline,
};

export function resolveTask(task: string): Task {
  const t = (ALIASES[task] ?? task) as Task;
  if (!TASKS.includes(t)) throw new TypeError(`unknown task '${task}' (expected one of ${[...TASKS, ...Object.keys(ALIASES)].join(', ')})`);
  return t;
}

/**
 * A pipeline for a task over a model folder or Hub name (config.json, model.safetensors, tokenizer
 * files), or over an already loaded model and tokenizer. Feature extraction on a model with a head
 * uses its encoder.
 * @example const clf = await pipeline('text-classification', './sst2-model'); await clf.call('a gripping film')
 */
export async function pipeline<T extends Task | 'sentiment-analysis' | 'ner'>(
  task: T,
  model: string | { model: BertPreTrainedModel; tokenizer: BertTokenizer },
  opts: PipelineOptions = {},
): Promise<PipelineFor<T>> {
  const t = resolveTask(task);
  const warnings: string[] = [];
  let m: BertPreTrainedModel;
  let tok: BertTokenizer;
  if (typeof model === 'string') {
    tok = await BertTokenizer.fromPretrained(model, opts);
    m = await fromPretrained(model, { ...opts, kind: HEAD_FOR[t] === 'BertModel' ? 'BertModel' : t === 'fill-mask' ? undefined : HEAD_FOR[t] });
    if (t === 'fill-mask' && m.kind !== 'BertForMaskedLM' && m.kind !== 'BertForPreTraining') {
      m = await fromPretrained(model, { ...opts, kind: 'BertForMaskedLM' });
    }
  } else {
    if (!(model.model instanceof BertPreTrainedModel) || !(model.tokenizer instanceof BertTokenizer)) throw new TypeError('pipeline() takes a model folder, a Hub name or { model, tokenizer }');
    m = model.model;
    tok = model.tokenizer;
  }
  if (typeof model === 'string' && 'loadReport' in m) {
    const missing = (m as { loadReport: { missingKeys: string[] } }).loadReport.missingKeys;
    // HF's behaviour: a head the checkpoint lacks starts random, with a warning.
    if (missing.length) warnings.push(`${model}: ${missing.length} weights not in the checkpoint were initialised at random (${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', ...' : ''}); train the model before use`);
  }
  for (const w of warnings) process.emitWarning(w, { code: 'TORCHBERT_MISSING_WEIGHTS' });
  if (opts.quantize !== undefined && opts.quantize !== 'int8') throw new TypeError(`quantize must be 'int8', got ${JSON.stringify(opts.quantize)}`);
  if (opts.quantize && opts.prepack) throw new TypeError("choose quantize: 'int8' or prepack, not both");
  if (opts.quantize && !m.quantized) m = m.quantizeDynamic();
  if (opts.prepack && !m.prepacked) m = await m.prepackAsync();
  const kinds = tasksFor(m.kind);
  if (!kinds.includes(t)) throw new TypeError(`a ${m.kind} cannot run '${t}' (it serves ${kinds.join(', ')})`);
  // what this call created (loaded, or copied by quantize/prepack) is the pipeline's to free
  const owned = typeof model === 'string' || m !== model.model ? m : null;
  // the encoder of a model with a head: a handle on its weights, released with the pipeline whoever owns them
  const encoder = t === 'feature-extraction' && m.kind !== 'BertModel' ? encoderOf(m) : null;
  if (encoder) m = encoder;
  m.eval();
  const p = new CLASSES[t](t, tok, m, opts) as PipelineFor<T>;
  p.owned = owned;
  p.encoder = encoder;
  p.warnings.push(...warnings);
  return p;
}

/** The encoder of a model with a head, sharing its weights. */
export function encoderOf(m: BertPreTrainedModel): BertPreTrainedModel {
  if (m.kind === 'BertModel') return m;
  return new BertPreTrainedModel('BertModel', m.config, m.module.getAttr('bert') as import('../module').ScriptModule, { quantized: m.quantized, prepacked: m.prepacked, sharesWeightsWith: m });
}
