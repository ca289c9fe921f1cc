// Hugging Face checkpoints in: config.json + model.safetensors (or sharded with an index), from a folder
// or the Hub, into a BertPreTrainedModel of any head; and fresh models from a config.
import * as fs from 'fs';
import * as path from 'path';
import * as tb from '../../core';
import { ScriptModule, Tensor } from '../../core';
import { BertConfig, BertConfigFields } from '../config';
import { LoadOptions, loadFile } from '../../safetensors';
import { HubOptions, resolveModelDir } from '../../hub';
import type { DType } from '../../tensor';
import { checkCpuBf16 } from '../../cpu';
import { HEADS, HeadKind, buildHead } from './heads';
import { buildUninitialised, initWeights } from './layers';
import { BertPreTrainedModel, LoadReport, PrepackOptions } from './model';

/** Loads config.json + safetensors weights (single file or sharded with an index). */
async function readWeights(dir: string, files: Set<string>, load: LoadOptions): Promise<Map<string, Tensor>> {
  if (files.has('model.safetensors')) return loadFile(path.join(dir, 'model.safetensors'), load);
  if (files.has('model.safetensors.index.json')) {
    const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shards = [...new Set(Object.values(idx.weight_map ?? {}) as string[])];
    if (!shards.length) throw new Error(`${dir}/model.safetensors.index.json: empty weight_map`);
    const out = new Map<string, Tensor>();
    for (const s of shards) for (const [k, t] of await loadFile(path.join(dir, s), load)) out.set(k, t);
    return out;
  }
  throw new Error(`${dir}: no model.safetensors (or model.safetensors.index.json); PyTorch .bin checkpoints are not read, convert them to safetensors`);
}

export interface FromPretrainedOptions extends HubOptions {
  /** the head (default: the first of config.architectures, like AutoModel) */
  kind?: HeadKind;
  device?: string;
  dtype?: DType;
  config?: Partial<BertConfigFields>;
  /**
   * weights whose shape differs from the checkpoint's (a classifier for another label count) start from a fresh
   * initialisation and are listed in loadReport.mismatchedKeys, as HF's ignore_mismatched_sizes; default false
   * (an error naming the weight)
   */
  ignoreMismatchedSizes?: boolean;
  /** an int8 inference copy (quantizeDynamic), the float weights freed */
  quantize?: 'int8';
  /** a prepacked inference copy (prepack; its options, or true), each float weight freed once packed */
  prepack?: boolean | Omit<PrepackOptions, 'consume'>;
  /**
   * Map the safetensors files instead of reading them (loadFile's `mmap`): weights kept as stored (the
   * embeddings of an inference copy; every weight of a float model used as is) stay the page cache's,
   * read as touched and shared by every process serving the same files. The files must not be rewritten
   * in place while the model lives. Default false.
   */
  mmap?: boolean;
  /**
   * With `mmap`: the word embeddings are paged in by the rows looked up (loadFile's `byRows`), so a server
   * keeps resident only the rows of the tokens its traffic uses (in bert-base a few thousand distinct
   * tokens otherwise bring most of the 94 MB table in, through the kernel's fault-around). Each first use
   * of a page reads it from the file. Heads with a masked-LM decoder (BertForMaskedLM, BertForPreTraining)
   * read the whole table, so they load it as usual. Default false.
   */
  embeddingsByRows?: boolean;
}

/**
 * Loads a BERT checkpoint from a folder or Hub name. `kind` picks the head (default: the first of
 * config.architectures, like AutoModel), and the report lists missing/unexpected keys.
 * @example const m = await fromPretrained('./bert-tiny', { kind: 'BertForSequenceClassification' });
 */
export async function fromPretrained(dirOrName: string, opts: FromPretrainedOptions = {}): Promise<BertPreTrainedModel & { loadReport: LoadReport }> {
  if (opts.quantize && opts.prepack) throw new TypeError("choose quantize: 'int8' or prepack, not both");
  if (opts.quantize !== undefined && opts.quantize !== 'int8') throw new TypeError(`quantize must be 'int8', got ${JSON.stringify(opts.quantize)}`);
  if ((opts.quantize || opts.prepack) && opts.device && !opts.device.startsWith('cpu')) throw new TypeError('quantize and prepack run on the CPU');
  if (opts.quantize && opts.dtype && opts.dtype !== 'float32') throw new TypeError('quantize runs from float32 weights');
  if (opts.prepack && opts.dtype && opts.dtype !== 'float32' && opts.dtype !== 'bfloat16') throw new TypeError(`prepack runs float32 or bfloat16 weights, not ${opts.dtype}`);
  if (opts.embeddingsByRows && !opts.mmap) throw new TypeError('embeddingsByRows pages a mapped checkpoint in: set mmap: true');
  const { dir, files } = await resolveModelDir(dirOrName, { required: [['config.json'], ['model.safetensors', 'model.safetensors.index.json']], optional: [] }, opts);
  if (files.has('model.safetensors.index.json') && !files.has('model.safetensors') && !fs.existsSync(path.join(dir, 'model.safetensors'))) {
    // Sharded on the Hub: fetch the shards the index names.
    const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    for (const s of new Set(Object.values(idx.weight_map ?? {}) as string[])) if (!fs.existsSync(path.join(dir, s))) await resolveModelDir(dirOrName, { required: [[s]], optional: [] }, opts);
  }
  if (opts.dtype === 'bfloat16' && !(opts.device ?? 'cpu').startsWith('cuda')) checkCpuBf16('fromPretrained({ dtype: bfloat16 })');
  let config = BertConfig.fromFile(path.join(dir, 'config.json'));
  if (opts.config) config = config.with(opts.config);
  const arch = opts.kind ?? (config.fields.architectures?.find((a) => HEADS.includes(a as HeadKind)) as HeadKind | undefined) ?? 'BertModel';
  // A masked-LM decoder multiplies by the whole table (or packs a copy of it): paging by rows buys nothing.
  const byRows = opts.embeddingsByRows && arch !== 'BertForMaskedLM' && arch !== 'BertForPreTraining';
  const state = await readWeights(dir, new Set([...files, ...fs.readdirSync(dir)]), { mmap: !!opts.mmap, byRows: byRows ? (name) => /(^|\.)word_embeddings\.weight$/.test(name) : undefined });
  const module = tb.tidy(() => tb.noGrad(() => ScriptModule.inNewUnit(() => buildUninitialised(() => buildHead(arch, config.fields)))));
  const model = new BertPreTrainedModel(arch, config, module);
  let report: LoadReport;
  try {
    report = model.loadStateDict(state, { assign: true, ignoreMismatchedSizes: opts.ignoreMismatchedSizes });
  } catch (e) {
    module.dispose();
    throw e;
  } finally {
    for (const t of state.values()) t.dispose();
    // An inference copy is made next: the checkpoint's blocks would sit in the CPU cache beside both models.
    if (opts.quantize || opts.prepack) tb.cpuCache.emptyCache();
  }
  const fresh = [...report.missingKeys, ...report.mismatchedKeys.map((m) => m.key)];
  if (fresh.length) {
    const params = new Map(model.module.namedParameters());
    initWeights(params, fresh, config.fields.initializer_range, config.fields.pad_token_id);
    for (const p of params.values()) p.dispose();
  }
  if (opts.device || opts.dtype) model.to({ device: opts.device, dtype: opts.dtype });
  model.eval();
  if (opts.quantize || opts.prepack) {
    const q = opts.quantize ? model.quantizeDynamic({ consume: true }) : await model.prepackAsync({ ...(typeof opts.prepack === 'object' ? opts.prepack : {}), consume: true });
    model.module.dispose();
    // An inference process will not reuse the float weights' (and the checkpoint's) blocks: back to the OS.
    tb.cpuCache.emptyCache();
    return Object.assign(q, { loadReport: report });
  }
  return Object.assign(model, { loadReport: report });
}

/** A model of the given architecture with fresh HF-style initialisation. */
export function fromConfig(kind: HeadKind, config: BertConfig | Partial<BertConfigFields>): BertPreTrainedModel {
  return new BertPreTrainedModel(kind, config instanceof BertConfig ? config : new BertConfig(config));
}
