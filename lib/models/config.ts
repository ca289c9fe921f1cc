// BertConfig: every field Hugging Face writes for BERT, validated; unknown fields survive a save.
import * as fs from 'fs';
import { writeFileAtomicSync } from '../fsutil';

export const ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'relu', 'tanh', 'silu', 'swish'] as const;
export type Activation = (typeof ACTIVATIONS)[number];
export type ProblemType = 'regression' | 'single_label_classification' | 'multi_label_classification';

export interface BertConfigFields {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: Activation;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  initializer_range: number;
  layer_norm_eps: number;
  pad_token_id: number;
  position_embedding_type: 'absolute';
  classifier_dropout: number | null;
  num_labels?: number;
  id2label?: Record<string, string>;
  label2id?: Record<string, number>;
  problem_type?: ProblemType | null;
  architectures?: string[] | null;
  torch_dtype?: string | null;
  model_type?: string;
  [key: string]: unknown;
}

const DEFAULTS: BertConfigFields = {
  vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
  hidden_act: 'gelu', hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, max_position_embeddings: 512,
  type_vocab_size: 2, initializer_range: 0.02, layer_norm_eps: 1e-12, pad_token_id: 0, position_embedding_type: 'absolute',
  classifier_dropout: null,
};

export class BertConfig {
  readonly fields: BertConfigFields;

  /** @throws RangeError/TypeError naming the invalid field */
  constructor(fields: Partial<BertConfigFields> = {}) {
    const f = { ...DEFAULTS, ...fields } as BertConfigFields;
    // num_labels, id2label and label2id describe one thing: derive what is missing, as HF does.
    if (f.id2label && !f.num_labels) f.num_labels = Object.keys(f.id2label).length;
    if (!f.num_labels) f.num_labels = 2;
    if (!f.id2label) f.id2label = Object.fromEntries(Array.from({ length: f.num_labels }, (_, i) => [String(i), `LABEL_${i}`]));
    if (!f.label2id) f.label2id = Object.fromEntries(Object.entries(f.id2label).map(([k, v]) => [v, Number(k)]));
    f.model_type = 'bert';
    this.fields = f;
    this.validate();
  }

  private validate(): void {
    const f = this.fields;
    const posInt = (k: keyof BertConfigFields) => {
      if (!Number.isInteger(f[k]) || (f[k] as number) <= 0) throw new RangeError(`BertConfig.${String(k)} must be a positive integer, got ${JSON.stringify(f[k])}`);
    };
    (['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'max_position_embeddings', 'type_vocab_size', 'num_labels'] as const).forEach(posInt);
    if (f.hidden_size % f.num_attention_heads !== 0) {
      throw new RangeError(`BertConfig: hidden_size (${f.hidden_size}) is not a multiple of num_attention_heads (${f.num_attention_heads})`);
    }
    if (!ACTIVATIONS.includes(f.hidden_act)) throw new RangeError(`BertConfig.hidden_act '${f.hidden_act}' is not supported (expected one of ${ACTIVATIONS.join(', ')})`);
    for (const k of ['hidden_dropout_prob', 'attention_probs_dropout_prob'] as const) {
      if (typeof f[k] !== 'number' || f[k] < 0 || f[k] > 1) throw new RangeError(`BertConfig.${k} must be in [0, 1], got ${JSON.stringify(f[k])}`);
    }
    if (f.classifier_dropout !== null && (typeof f.classifier_dropout !== 'number' || f.classifier_dropout < 0 || f.classifier_dropout > 1)) {
      throw new RangeError(`BertConfig.classifier_dropout must be null or in [0, 1]`);
    }
    if (!(f.layer_norm_eps > 0)) throw new RangeError('BertConfig.layer_norm_eps must be positive');
    if (f.position_embedding_type !== 'absolute') throw new RangeError(`BertConfig.position_embedding_type '${f.position_embedding_type}' is not supported (only 'absolute')`);
    if (!Number.isInteger(f.pad_token_id) || f.pad_token_id < 0 || f.pad_token_id >= f.vocab_size) throw new RangeError(`BertConfig.pad_token_id must be a token id below vocab_size`);
    if (f.problem_type && !['regression', 'single_label_classification', 'multi_label_classification'].includes(f.problem_type)) {
      throw new RangeError(`BertConfig.problem_type '${f.problem_type}' is not one of regression, single_label_classification, multi_label_classification`);
    }
  }

  get headDim(): number {
    return this.fields.hidden_size / this.fields.num_attention_heads;
  }

  static fromFile(file: string): BertConfig {
    if (!fs.existsSync(file)) throw new Error(`${file}: no such config file`);
    let j: unknown;
    try {
      j = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error(`${file}: expected a JSON object`);
    const mt = (j as any).model_type;
    if (mt !== undefined && mt !== 'bert') throw new Error(`${file}: model_type '${mt}' is not 'bert'`);
    try {
      return new BertConfig(j as Partial<BertConfigFields>);
    } catch (e) {
      (e as Error).message = `${file}: ${(e as Error).message}`;
      throw e;
    }
  }

  /** The JSON HF writes (unknown fields kept). */
  toJSON(): BertConfigFields {
    return { ...this.fields };
  }
  save(file: string): void {
    writeFileAtomicSync(file, JSON.stringify(this.toJSON(), null, 2) + '\n');
  }
  with(fields: Partial<BertConfigFields>): BertConfig {
    return new BertConfig({ ...this.fields, ...fields });
  }
}
