// BERT, laid out as modeling_bert.py is: the torch.nn pieces and run modes (layers.ts), BertModel's
// units (units.ts), the task heads (heads.ts), the model class (model.ts), checkpoints (checkpoint.ts).
import * as tb from '../../core';
import { ScriptModule } from '../../core';
import { BertConfig, BertConfigFields } from '../config';
import { HeadKind, buildHead } from './heads';
import { LinearMode, buildUninitialised, recordSources } from './layers';

export { HEADS } from './heads';
export type { HeadKind } from './heads';
export type { LinearMode } from './layers';
export { BertPreTrainedModel } from './model';
export type { BertInputs, BertOutput, LoadReport, PrepackOptions, QuantizeOptions } from './model';
export type { FromPretrainedOptions } from './checkpoint';
export { fromPretrained, fromConfig } from './checkpoint';

/**
 * The TorchScript a model of `kind` runs in `mode` ('float': trainable, 'portable': what
 * saveTorchScript writes, 'int8': quantizeDynamic(), 'prepacked': prepack()): each unit's class and
 * methods once, in the order they are built (innermost first), for reading and review.
 */
export function bertTorchScript(kind: HeadKind, config: BertConfig | Partial<BertConfigFields>, mode: LinearMode = 'float'): string {
  const fields = config instanceof BertConfig ? config.fields : new BertConfig(config).fields;
  const { result, sources } = recordSources(() => tb.tidy(() => tb.noGrad(() => ScriptModule.inNewUnit(() => buildUninitialised(() => buildHead(kind, fields, mode))))));
  result.dispose();
  const seen = new Set<string>();
  const out: string[] = [];
  for (const { unit, source } of sources) {
    const key = `${unit}\n${source}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(`class ${unit}:${source.replace(/\n(?!\n|$)/g, '\n    ')}`);
  }
  return `${out.join('\n')}`;
}
