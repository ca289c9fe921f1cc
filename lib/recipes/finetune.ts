// Fine-tuning recipes behind `torchbert finetune`: sequence classification, multi-label classification and
// regression of single texts or sentence pairs (as HF's run_glue and run_classification read them) from
// SST-2-style TSV, CSV or JSONL files; NER on CoNLL-2003-style
// files (first sub-token labelled, entity F1 with seqeval's semantics); extractive QA. All use the Trainer
// with AdamW(lr 2e-5, eps 1e-8) and a linear warmup schedule by default, evaluate on the dev file, keep the
// best model by the dev metric and save it with its tokenizer.
import * as fs from 'fs';
import * as path from 'path';
import * as tb from '../core';
import { Tensor } from '../core';
import { BertTokenizer } from '../tokenizer';
import { readSst2, readDelimited, readJsonl, readConll, readLines } from '../data/datasets';
import { fromPretrained } from '../models/bert';
import { Trainer, predictClasses, predictLogits, padCollate, batchIndices, EpochBatches, accuracy, f1, mcc, pearson, spearman, meanSquaredError, multiLabelScores, alignLabels, entityScores } from '../train';
import type { ProblemType } from '../models/config';
import type { Example, Batch, TrainResult } from '../train';
import * as dist from '../distributed/process-group';

/** Data-parallel shard of this process (all data when no process group of several ranks is initialised). */
function shard(): { rank: number; worldSize: number } {
  return dist.isInitialized() ? { rank: dist.getRank(), worldSize: dist.getWorldSize() } : { rank: 0, worldSize: 1 };
}

export interface FinetuneOptions extends ColumnOptions {
  /** model folder or Hub name */
  model: string;
  train: string;
  dev: string;
  out: string;
  epochs?: number;
  /** overrides epochs */
  maxSteps?: number;
  learningRate?: number;
  batchSize?: number;
  maxLength?: number;
  warmupRatio?: number;
  weightDecay?: number;
  evalSteps?: number;
  /** stop after this many evaluations without improvement */
  patience?: number;
  timeBudgetSec?: number;
  /** seeds the head's initialisation, dropout and each epoch's shuffle (default 42) */
  seed?: number;
  /** batch examples of similar length together (HF's group_by_length; default false as there) */
  groupByLength?: boolean;
  /** continue from a checkpoint folder the run wrote (model, optimizer, scheduler, RNG, step) */
  resumeFrom?: string;
  /** write a checkpoint every N steps into out/checkpoint-N */
  saveSteps?: number;
  /** only the first N training examples (quick runs) */
  limit?: number;
  /** bfloat16 / float16 autocast (Trainer's bf16 / fp16) */
  bf16?: boolean;
  fp16?: boolean;
  /** R-Drop's weight (TrainerOptions.rDrop; classification and NER; default 0) */
  rDrop?: number;
  /** start the head afresh where the checkpoint's has another size (another label count), as HF's ignore_mismatched_sizes */
  ignoreMismatchedSizes?: boolean;
  /**
   * classification: regression, one class a row, or multi-label (default: multi-label where the labels are
   * lists, regression where they are real numbers, as run_classification and run_glue decide)
   */
  problemType?: ProblemType;
  log?: (s: string) => void;
}

export interface FinetuneReport {
  task: 'classification' | 'ner' | 'qa';
  examples: { train: number; dev: number };
  steps: number;
  seconds: number;
  best?: TrainResult['best'];
  stoppedEarly: boolean;
  dev: Record<string, number>;
  savedTo: string;
}

/** A labelled row: one text or a sentence pair, and its label as written in the file (a list for multi-label). */
export interface LabelledRow {
  text: string;
  textPair?: string;
  label: string | string[];
}

/** Which columns hold the texts and the label (HF run_glue's names are found without them). */
export interface ColumnOptions {
  /** default: text, sentence or sentence1, the first the file has */
  textColumn?: string;
  /** the second text of a sentence pair; default: text_pair or sentence2 where the file has one, else single texts */
  textPairColumn?: string;
  /** default: label */
  labelColumn?: string;
}

/**
 * Labelled rows from SST-2's TSV (sentence, label), any CSV or TSV with a header, or JSONL: a text column and
 * a label column, and for sentence-pair tasks (MRPC, QNLI, RTE, STS-B...) a second text column. A JSONL label
 * may be a list of labels (multi-label, as run_classification reads a list column); a file holds lists or
 * single labels, not both. Every error names the file, and the row or column that is wrong.
 */
export function readLabelled(file: string, cols: ColumnOptions = {}): LabelledRow[] {
  return readTable(file, cols, true) as LabelledRow[];
}

/**
 * Texts to classify: a CSV, TSV or JSONL file read as readLabelled reads it (the text columns; a label column is
 * not needed and not read), or any other file one text a line (blank lines skipped; '-' reads standard input).
 */
export function readTexts(file: string): { text: string; textPair?: string }[] {
  if (file !== '-' && /\.(jsonl|csv|tsv)$/.test(file)) return readTable(file, {}, false).map(({ text, textPair }) => (textPair === undefined ? { text } : { text, textPair }));
  const lines = file === '-' ? fs.readFileSync(0, 'utf8').split('\n') : readLines(file);
  return lines.map((l) => l.replace(/\r$/, '')).filter((l) => l.trim()).map((text) => ({ text }));
}

function readTable(file: string, cols: ColumnOptions, labelled: boolean): (Omit<LabelledRow, 'label'> & { label?: LabelledRow['label'] })[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const jsonl = file.endsWith('.jsonl');
  const first = jsonl ? '' : fs.readFileSync(file, 'utf8').split('\n', 1)[0];
  if (!jsonl && !cols.textColumn && !cols.textPairColumn && !cols.labelColumn && /^sentence\tlabel/.test(first)) {
    return readSst2(file).map((r) => ({ text: r.text, label: String(r.label) }));
  }
  const rows: Record<string, unknown>[] = jsonl ? readJsonl<Record<string, unknown>>(file) : readDelimited(file);
  if (!rows.length) return [];
  const where = (i: number) => (jsonl ? `${file}:${i + 1}` : `${file}: row ${i + 1}`);
  const names = new Set(rows.flatMap((r) => Object.keys(r)));
  const pick = (given: string | undefined, defaults: string[], what: string, required: boolean): string | undefined => {
    if (given !== undefined) {
      if (!names.has(given)) throw new Error(`${file}: no column '${given}' for ${what} (columns: ${[...names].join(', ')})`);
      return given;
    }
    const found = defaults.find((d) => names.has(d));
    if (!found && required) throw new Error(`${file}: no column for ${what}: name it ${defaults.map((d) => `'${d}'`).join(' or ')}, or choose it with the column options (columns: ${[...names].join(', ')})`);
    return found;
  };
  const textCol = pick(cols.textColumn, ['text', 'sentence', 'sentence1'], 'the text', true)!;
  const pairCol = pick(cols.textPairColumn, ['text_pair', 'sentence2'], 'the second text', false);
  const labelCol = pick(cols.labelColumn, ['label'], 'the label', labelled);
  const lists = labelCol !== undefined && Array.isArray(rows[0][labelCol]);
  return rows.map((r, i) => {
    const text = r[textCol], pair = pairCol === undefined ? undefined : r[pairCol], label = labelCol === undefined ? undefined : r[labelCol];
    if (typeof text !== 'string') throw new Error(`${where(i)}: '${textCol}' must be a string, got ${JSON.stringify(text) ?? 'nothing'}`);
    if (pairCol !== undefined && typeof pair !== 'string') throw new Error(`${where(i)}: '${pairCol}' must be a string, got ${JSON.stringify(pair) ?? 'nothing'}`);
    if (!labelled) return pairCol === undefined ? { text } : { text, textPair: pair as string };
    let value: string | string[];
    if (Array.isArray(label)) {
      if (!lists) throw new Error(`${where(i)}: '${labelCol}' is a list where the first row has one label: a file holds one label a row or lists (multi-label), not both`);
      if (label.some((l) => (typeof l !== 'string' || l === '') && typeof l !== 'number')) throw new Error(`${where(i)}: '${labelCol}' must list labels (strings or numbers), got ${JSON.stringify(label)}`);
      value = [...new Set(label.map(String))];
    } else {
      if (label === undefined || label === null || label === '' || typeof label === 'object') throw new Error(`${where(i)}: '${labelCol}' must be a label (a string or a number${lists ? ', or a list of them as the first row has' : ''}), got ${JSON.stringify(label) ?? 'nothing'}`);
      if (lists) throw new Error(`${where(i)}: '${labelCol}' is one label where the first row has a list: a file holds one label a row or lists (multi-label), not both`);
      value = String(label);
    }
    return pairCol === undefined ? { text, label: value } : { text, textPair: pair as string, label: value };
  });
}

const NUMBER = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * What the labels ask for, as HF's run_classification and run_glue decide for files: multi-label where the
 * labels are lists, regression where every label is a number and some are written with a fraction or exponent
 * (a float column), one class a row otherwise.
 */
export function inferProblemType(rows: LabelledRow[]): ProblemType {
  if (rows.length && Array.isArray(rows[0].label)) return 'multi_label_classification';
  const single = rows as (LabelledRow & { label: string })[];
  return single.length > 0 && single.every((r) => NUMBER.test(r.label)) && single.some((r) => /[.eE]/.test(r.label)) ? 'regression' : 'single_label_classification';
}

/** A regression label as a number; the error names the file, the example and the label. */
export function regressionTarget(label: string | string[], file: string, i: number): number {
  if (typeof label !== 'string' || !NUMBER.test(label)) throw new Error(`${file}: example ${i + 1}: regression needs a number as the label, got ${typeof label === 'string' ? `'${label}'` : 'a list'}`);
  return Number(label);
}

/** A row's labels as 0/1 per class of label2id; the error names the file, the example and a label the model lacks. */
export function multiHot(label: string | string[], label2id: Map<string, number>, file: string, i: number): number[] {
  if (typeof label === 'string') throw new Error(`${file}: example ${i + 1}: multi-label classification reads each row's labels as a list (JSONL: "label": ["a", "b"]), got '${label}'`);
  const v = new Array<number>(label2id.size).fill(0);
  for (const l of label) {
    const id = label2id.get(l);
    if (id === undefined) throw new Error(`${file}: example ${i + 1}: label '${l}' is none of ${[...label2id.keys()].join(', ')}`);
    v[id] = 1;
  }
  return v;
}

/** Multi-label decisions from logits: a class is predicted where its sigmoid passes the threshold (0.5: logit > 0, as run_classification). */
export const multiLabelDecisions = (logits: number[][], threshold = 0.5) => {
  const cut = Math.log(threshold / (1 - threshold));
  return logits.map((r) => r.map((v) => (v > cut ? 1 : 0)));
};

/** The model's inputs of a batch: token types only for sentence pairs (single texts keep the model's zeros). */
export function classificationFeatures(pairs: boolean): (b: Batch) => import('../models/bert').BertInputs {
  return (b) => (pairs ? { inputIds: b.inputIds, attentionMask: b.attentionMask, tokenTypeIds: b.tokenTypeIds } : { inputIds: b.inputIds, attentionMask: b.attentionMask });
}

/** GLUE's STS-B metrics and the MSE. */
export const regressionMetrics = (pred: number[], gold: number[]) => ({ pearson: pearson(pred, gold), spearmanr: spearman(pred, gold), mse: meanSquaredError(pred, gold) });

/** Micro F1 (run_classification's multi-label metric), macro F1, subset accuracy and Hamming loss. */
export const multiLabelMetrics = (pred: number[][], gold: number[][]) => {
  const s = multiLabelScores(pred, gold);
  return { f1_micro: s.microF1, f1_macro: s.macroF1, subset_accuracy: s.subsetAccuracy, hamming_loss: s.hammingLoss };
};

/** Accuracy, F1 (binary with two classes, macro otherwise) and MCC. */
export const classMetrics = (pred: number[], gold: number[], numLabels: number) => ({ accuracy: accuracy(pred, gold), f1: numLabels === 2 ? f1(pred, gold) : f1(pred, gold, 'macro'), mcc: mcc(pred, gold) });

/** Token ids (and token type ids for pairs) as HF's tokenizer(text, text_pair, truncation=True, max_length) gives them. */
export function encodeLabelled(tok: BertTokenizer, rows: LabelledRow[], maxLength: number): Example[] {
  return rows.map((r) => {
    const e = tok.call(r.text, r.textPair ?? null, { truncation: true, maxLength });
    return r.textPair === undefined ? { inputIds: e.inputIds as number[] } : { inputIds: e.inputIds as number[], tokenTypeIds: e.tokenTypeIds as number[] };
  });
}

function stepsFor(n: number, o: FinetuneOptions): number {
  // per rank: each of worldSize ranks sees n / worldSize examples an epoch
  return o.maxSteps ?? Math.max(1, Math.ceil((Math.ceil(n / shard().worldSize) / (o.batchSize ?? 32)) * (o.epochs ?? 3)));
}

export async function finetuneClassification(o: FinetuneOptions): Promise<FinetuneReport> {
  const log = o.log ?? ((s: string) => console.log(s));
  tb.manualSeed(o.seed ?? 42);
  let train = readLabelled(o.train, o);
  if (o.limit) train = train.slice(0, o.limit);
  const dev = readLabelled(o.dev, o);
  if (!train.length) throw new Error(`${o.train}: no training examples`);
  if (!dev.length) throw new Error(`${o.dev}: no dev examples`);
  if ((train[0].textPair === undefined) !== (dev[0].textPair === undefined)) {
    throw new Error(`${train[0].textPair === undefined ? o.dev : o.train} has sentence pairs and ${train[0].textPair === undefined ? o.train : o.dev} single texts: give both files the same columns`);
  }
  if (o.problemType !== undefined && !['regression', 'single_label_classification', 'multi_label_classification'].includes(o.problemType)) {
    throw new RangeError(`problem type must be regression, single_label_classification or multi_label_classification, got '${o.problemType}'`);
  }
  const lists = Array.isArray(train[0].label);
  if (lists !== Array.isArray(dev[0].label)) throw new Error(`${lists ? o.train : o.dev} lists labels (multi-label) and ${lists ? o.dev : o.train} has one a row: give both files the same kind`);
  const problem = o.problemType ?? inferProblemType(train);
  if (lists !== (problem === 'multi_label_classification')) {
    throw new Error(lists ? `${o.train}: the labels are lists (multi-label); ${problem} needs one label a row` : `${o.train}: multi-label classification reads each row's labels as a list (JSONL: "label": ["a", "b"])`);
  }
  const regression = problem === 'regression';
  const multi = problem === 'multi_label_classification';
  let config: Record<string, unknown>;
  let label: (r: LabelledRow, file: string, i: number) => Partial<Example>;
  let labels: string[] = [];
  // as run_classification: the classes of both files, sorted; a class only the dev file has is kept (the model
  // gets an output for it that no training row is labelled with) and logged
  const classesOf = (inTrain: string[], inDev: string[]) => {
    const seen = new Set(inTrain);
    const devOnly = [...new Set(inDev)].filter((l) => !seen.has(l));
    if (devOnly.length) log(`finetune: ${o.dev} has labels ${o.train} lacks (${devOnly.join(', ')}); the model has them, though no training row does`);
    return [...seen, ...devOnly].sort();
  };
  const named = (ls: string[]) => ({ id2label: Object.fromEntries(ls.map((l, i) => [String(i), l])), label2id: Object.fromEntries(ls.map((l, i) => [l, i])) });
  if (regression) {
    if (o.rDrop) throw new RangeError('R-Drop compares two predicted class distributions; a regression has none (leave --rdrop out)');
    label = (r, file, i) => ({ target: regressionTarget(r.label, file, i) });
    config = { num_labels: 1, problem_type: 'regression', id2label: { 0: 'LABEL_0' }, label2id: { LABEL_0: 0 } };
  } else if (multi) {
    if (o.rDrop) throw new RangeError('R-Drop compares two predicted class distributions; multi-label classification makes a yes or no per class (leave --rdrop out)');
    labels = classesOf(train.flatMap((r) => r.label as string[]), dev.flatMap((r) => r.label as string[]));
    if (labels.length < 2) throw new Error(`${o.train}: ${labels.length ? `only the label '${labels[0]}' occurs` : 'no row has a label'}; multi-label classification needs at least two`);
    const id = new Map(labels.map((l, i) => [l, i]));
    label = (r, file, i) => ({ targets: multiHot(r.label, id, file, i) });
    config = { num_labels: labels.length, problem_type: 'multi_label_classification', ...named(labels) };
  } else {
    labels = classesOf(train.map((r) => r.label as string), dev.map((r) => r.label as string));
    if (labels.length < 2) throw new Error(`${o.train}: every example has the label '${labels[0]}'; classification needs at least two`);
    const id = new Map(labels.map((l, i) => [l, i]));
    label = (r) => ({ label: id.get(r.label as string)! });
    config = { num_labels: labels.length, ...named(labels) };
  }
  const trainLabels = train.map((r, i) => label(r, o.train, i));
  const devLabels = dev.map((r, i) => label(r, o.dev, i));
  const tok = await BertTokenizer.fromPretrained(o.model);
  const model = await fromPretrained(o.model, { kind: 'BertForSequenceClassification', config, ignoreMismatchedSizes: o.ignoreMismatchedSizes });
  const maxLength = Math.min(o.maxLength ?? 128, model.config.fields.max_position_embeddings);
  const trainEx: Example[] = encodeLabelled(tok, train, maxLength).map((e, i) => ({ ...e, ...trainLabels[i] }));
  const devEx: Example[] = encodeLabelled(tok, dev, maxLength).map((e, i) => ({ ...e, ...devLabels[i] }));
  const pairs = train[0].textPair !== undefined;
  const bs = o.batchSize ?? 32;
  const batches = new EpochBatches(trainEx.map((e) => e.inputIds.length), bs, { seed: o.seed ?? 42, groupByLength: o.groupByLength, ...shard() });
  const devOrder = batchIndices(devEx.map((e) => e.inputIds.length), 64, { shuffle: false });
  const devBatches = devOrder.map((idx) => padCollate(idx.map((i) => devEx[i]), tok.padTokenId));
  const features = classificationFeatures(pairs);
  const toInputs = (b: Batch) => ({ ...features(b), labels: b.labels });
  // Data-parallel: each rank predicts its share of the dev batches; the metrics come from all of them.
  const evaluate = regression
    ? async () => {
      const gold = devOrder.flat().map((i) => devEx[i].target!);
      const pred = (await dist.shardedMap(devBatches, async (b) => (await predictLogits(model, [b], features)).map((r) => r[0]))).flat();
      return regressionMetrics(pred, gold);
    }
    : multi ? async () => {
      const gold = devOrder.flat().map((i) => devEx[i].targets!);
      const pred = multiLabelDecisions((await dist.shardedMap(devBatches, (b) => predictLogits(model, [b], features))).flat());
      return multiLabelMetrics(pred, gold);
    }
    : async () => {
      const gold = devOrder.flat().map((i) => devEx[i].label!);
      const pred = (await dist.shardedMap(devBatches, (b) => predictClasses(model, [b], features))).flat();
      return classMetrics(pred, gold, labels.length);
    };
  const maxSteps = stepsFor(trainEx.length, o);
  const what = `${pairs ? 'sentence pairs' : 'texts'}, ${regression ? 'regression' : `${multi ? 'multi-label, ' : ''}labels ${labels.join(', ')}`}`;
  log(`finetune: ${trainEx.length} training and ${devEx.length} dev examples (${what}), ${maxSteps} steps of ${bs}`);
  const res = await runTrainer(model, o, maxSteps, regression ? 'pearson' : multi ? 'f1_micro' : 'accuracy', (s) => padCollate(batches.at(s).map((i) => trainEx[i]), tok.padTokenId), toInputs, evaluate, log);
  const final = await evaluate();
  if (shard().rank === 0) {
    await model.savePretrained(o.out);
    tok.savePretrained(o.out);
  }
  return { task: 'classification', examples: { train: trainEx.length, dev: devEx.length }, steps: res.steps, seconds: res.seconds, best: res.best, stoppedEarly: !!res.stoppedEarly, dev: final, savedTo: o.out };
}

/** Word pieces of pre-split words: [CLS] pieces... [SEP], each piece's word index, truncated to maxLength. */
export function encodeWords(tok: BertTokenizer, words: string[], maxLength: number): { ids: number[]; wordIds: (number | null)[] } {
  const ids = [tok.clsTokenId];
  const wordIds: (number | null)[] = [null];
  for (let w = 0; w < words.length; w++) {
    const pieces = tok.encode(words[w], undefined, { addSpecialTokens: false });
    if (ids.length + pieces.length > maxLength - 1) break;
    for (const p of pieces) {
      ids.push(p);
      wordIds.push(w);
    }
  }
  ids.push(tok.sepTokenId);
  wordIds.push(null);
  return { ids, wordIds };
}

export async function finetuneNer(o: FinetuneOptions & { scheme?: 'iob1' | 'iob2' }): Promise<FinetuneReport> {
  const log = o.log ?? ((s: string) => console.log(s));
  tb.manualSeed(o.seed ?? 42);
  const scheme = o.scheme ?? 'iob2';
  let train = readConll(o.train, scheme);
  if (o.limit) train = train.slice(0, o.limit);
  const dev = readConll(o.dev, scheme);
  if (!train.length) throw new Error(`${o.train}: no sentences`);
  if (!dev.length) throw new Error(`${o.dev}: no sentences`);
  const labels = [...new Set([...train, ...dev].flatMap((s) => s.tags))].sort((a, b) => (a === 'O' ? -1 : b === 'O' ? 1 : a.slice(2).localeCompare(b.slice(2)) || a.localeCompare(b)));
  const id = new Map(labels.map((l, i) => [l, i]));
  const tok = await BertTokenizer.fromPretrained(o.model);
  const model = await fromPretrained(o.model, {
    kind: 'BertForTokenClassification',
    config: { num_labels: labels.length, id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])), label2id: Object.fromEntries(labels.map((l, i) => [l, i])) },
    ignoreMismatchedSizes: o.ignoreMismatchedSizes,
  });
  const maxLength = Math.min(o.maxLength ?? 128, model.config.fields.max_position_embeddings);
  const enc = (s: { tokens: string[]; tags: string[] }) => {
    const e = encodeWords(tok, s.tokens, maxLength);
    return { inputIds: e.ids, labels: alignLabels(e.wordIds, s.tags.map((t) => id.get(t)!)), wordIds: e.wordIds };
  };
  const trainEx = train.map(enc);
  const devEx = dev.map(enc);
  const bs = o.batchSize ?? 32;
  const batches = new EpochBatches(trainEx.map((e) => e.inputIds.length), bs, { seed: o.seed ?? 42, groupByLength: o.groupByLength, ...shard() });
  const devOrder = batchIndices(devEx.map((e) => e.inputIds.length), 64, { shuffle: false });
  const evaluate = async () => {
    model.eval();
    const pred: string[][] = new Array(dev.length);
    // Data-parallel: each rank tags its share of the dev batches; the scores come from all of them.
    const tagged = await dist.shardedMap(devOrder, async (idx) => {
      const scope = new tb.DisposeScope();
      try {
        return await scope.run(async () => {
          const b = padCollate(idx.map((i) => devEx[i]), tok.padTokenId);
          const out = await tb.noGrad(() => model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask }));
          const T = b.inputIds.shape[1];
          const arg = (await (out.logits as Tensor).argmax(-1).data()) as BigInt64Array;
          return idx.map((i, r) => {
            // Each word takes its first sub-token's label; words cut by truncation are O.
            const tags = dev[i].tokens.map(() => 'O');
            let prev: number | null = null;
            devEx[i].wordIds.forEach((w, t) => {
              if (w !== null && w !== prev) tags[w] = labels[Number(arg[r * T + t])];
              prev = w;
            });
            return tags;
          });
        });
      } finally {
        scope.dispose();
      }
    });
    devOrder.forEach((idx, k) => idx.forEach((i, r) => (pred[i] = tagged[k][r])));
    const s = entityScores(pred, dev.map((d) => d.tags));
    return { f1: s.f1, precision: s.precision, recall: s.recall };
  };
  const maxSteps = stepsFor(trainEx.length, o);
  log(`finetune (NER): ${trainEx.length} training and ${devEx.length} dev sentences, ${labels.length} labels, ${maxSteps} steps of ${bs}`);
  const res = await runTrainer(model, o, maxSteps, 'f1', (s) => padCollate(batches.at(s).map((i) => trainEx[i]), tok.padTokenId), (b) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels }), evaluate, log);
  const final = await evaluate();
  if (shard().rank === 0) {
    await model.savePretrained(o.out);
    tok.savePretrained(o.out);
  }
  return { task: 'ner', examples: { train: trainEx.length, dev: devEx.length }, steps: res.steps, seconds: res.seconds, best: res.best, stoppedEarly: !!res.stoppedEarly, dev: final, savedTo: o.out };
}

async function runTrainer(
  model: import('../models/bert').BertPreTrainedModel, o: FinetuneOptions, maxSteps: number, metric: string,
  next: (step: number) => Batch, toInputs: (b: Batch) => import('../models/bert').BertInputs, evaluate: () => Promise<Record<string, number>>, log: (s: string) => void,
): Promise<TrainResult> {
  fs.mkdirSync(o.out, { recursive: true });
  // the Trainer appends to its log (a resumed run continues it); a new run into an old folder starts it afresh
  if (!o.resumeFrom && shard().rank === 0) fs.rmSync(path.join(o.out, 'metrics.jsonl'), { force: true });
  const trainer = new Trainer(model, {
    name: 'finetune', learningRate: o.learningRate ?? 2e-5, adamEpsilon: 1e-8, weightDecay: o.weightDecay ?? 0.01, warmupRatio: o.warmupRatio ?? 0.1,
    maxSteps, timeBudgetSec: o.timeBudgetSec, loggingSteps: Math.max(1, Math.min(50, Math.floor(maxSteps / 20))),
    evalSteps: o.evalSteps ?? Math.max(1, Math.floor(maxSteps / 5)), metricForBestModel: metric, loadBestModelAtEnd: true, earlyStoppingPatience: o.patience,
    logFile: path.join(o.out, 'metrics.jsonl'), plotFile: path.join(o.out, 'curves.svg'), seed: o.seed ?? 42, bf16: o.bf16, fp16: o.fp16, log,
    outputDir: o.out, saveSteps: o.saveSteps, resumeFrom: o.resumeFrom, rDrop: o.rDrop,
  });
  return trainer.train(next, toInputs, evaluate);
}

// ---------- extractive question answering ----------

export interface QAExample {
  id: string;
  question: string;
  context: string;
  /** gold answers; the first is the training target */
  answers: { text: string; start: number }[];
}

/**
 * SQuAD v1.1/v2.0 JSON ({data: [{paragraphs: [{context, qas: [{id, question, answers}]}]}]}) or JSONL in
 * HF datasets' layout ({id, question, context, answers: {text: [], answer_start: []}}).
 */
export function readQa(file: string): QAExample[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const check = (x: QAExample, where: string) => {
    if (typeof x.question !== 'string' || typeof x.context !== 'string') throw new Error(`${where}: expected a question and a context`);
    for (const a of x.answers) {
      if (x.context.slice(a.start, a.start + a.text.length) !== a.text) throw new Error(`${where}: answer '${a.text}' is not at offset ${a.start} of the context`);
    }
    return x;
  };
  if (file.endsWith('.jsonl')) {
    return readJsonl<{ id?: string; question: string; context: string; answers: { text: string[]; answer_start: number[] } }>(file).map((r, i) =>
      check({ id: r.id ?? String(i), question: r.question, context: r.context, answers: (r.answers?.text ?? []).map((t, k) => ({ text: t, start: r.answers.answer_start[k] })) }, `${file}:${i + 1}`),
    );
  }
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(doc.data)) throw new Error(`${file}: not SQuAD JSON (no "data" list)`);
  const out: QAExample[] = [];
  for (const article of doc.data) {
    for (const p of article.paragraphs ?? []) {
      for (const qa of p.qas ?? []) {
        out.push(check({ id: String(qa.id), question: qa.question, context: p.context, answers: (qa.answers ?? []).map((a: { text: string; answer_start: number }) => ({ text: a.text, start: a.answer_start })) }, `${file}: question ${qa.id}`));
      }
    }
  }
  return out;
}

/**
 * Training features of one example, as HF's run_qa prepares them: question + context windows
 * (only_second truncation with stride); each window's start/end token of the first answer, or [CLS]
 * (0, 0) when the answer is not inside the window.
 */
export function qaFeatures(tok: BertTokenizer, ex: QAExample, maxLength: number, stride: number): { inputIds: number[]; tokenTypeIds: number[]; start: number; end: number }[] {
  const { rows } = tok.encodeRows([ex.question], [ex.context], { truncation: 'only_second', maxLength, stride, returnOverflowingTokens: true });
  const a = ex.answers[0];
  return rows.map((r) => {
    let start = 0;
    let end = 0;
    if (a) {
      const s = a.start;
      const e = a.start + a.text.length;
      const ctx = r.sequenceIds.map((q, t) => (q === 1 ? t : -1)).filter((t) => t >= 0);
      if (ctx.length && r.offsets[ctx[0]][0] <= s && r.offsets[ctx[ctx.length - 1]][1] >= e) {
        start = ctx.find((t) => r.offsets[t][1] > s) ?? 0;
        end = [...ctx].reverse().find((t) => r.offsets[t][0] < e) ?? 0;
      }
    }
    return { inputIds: r.ids, tokenTypeIds: r.typeIds, start, end };
  });
}

/**
 * Throws, naming the first example and how many there are, when a question leaves context windows
 * (maxLength minus the question and 3 special tokens) no longer than the stride: the tokenizer cannot
 * window such an example (HF's tokenizer refuses it the same way).
 */
export function checkQaLengths(tok: BertTokenizer, examples: QAExample[], file: string, maxLength: number, stride: number): void {
  if (stride >= maxLength) throw new RangeError(`--doc-stride (${stride}) must be smaller than --max-length (${maxLength})`);
  const bad: { id: string; room: number; q: number }[] = [];
  for (const x of examples) {
    const q = tok.encode(x.question, undefined, { addSpecialTokens: false }).length;
    const room = maxLength - q - 3;
    if (room <= stride) bad.push({ id: x.id, room, q });
  }
  if (!bad.length) return;
  const b = bad[0];
  const fit = Math.min(...bad.map((x) => x.room));
  throw new RangeError(
    `${file}: question ${b.id} is ${b.q} tokens, which leaves context windows of ${b.room} tokens at --max-length ${maxLength}, not more than --doc-stride ${stride}` +
      (bad.length > 1 ? ` (${bad.length} questions are too long)` : '') +
      (fit > 0 ? `; use --doc-stride below ${fit}, a larger --max-length, or remove them` : '; use a larger --max-length or remove them'),
  );
}

export async function finetuneQa(o: FinetuneOptions & { docStride?: number }): Promise<FinetuneReport> {
  if (o.rDrop) throw new RangeError('finetune --task qa: rDrop compares class distributions, and QA predicts start and end positions (classification and ner take it)');
  const log = o.log ?? ((s: string) => console.log(s));
  tb.manualSeed(o.seed ?? 42);
  let train = readQa(o.train).filter((x) => x.answers.length);
  if (o.limit) train = train.slice(0, o.limit);
  const dev = readQa(o.dev);
  const tok = await BertTokenizer.fromPretrained(o.model);
  const model = await fromPretrained(o.model, { kind: 'BertForQuestionAnswering' });
  const maxLength = Math.min(o.maxLength ?? 384, model.config.fields.max_position_embeddings);
  const stride = o.docStride ?? Math.min(128, Math.floor(maxLength / 2));
  if (!train.length) throw new Error(`${o.train}: no questions with an answer`);
  // Every question of both files must leave context windows longer than the stride; found here, before
  // training, rather than at the first evaluation.
  checkQaLengths(tok, train, o.train, maxLength, stride);
  checkQaLengths(tok, dev, o.dev, maxLength, stride);
  const feats = train.flatMap((x) => qaFeatures(tok, x, maxLength, stride));
  const bs = o.batchSize ?? 32;
  const batches = new EpochBatches(feats.map((f) => f.inputIds.length), bs, { seed: o.seed ?? 42, groupByLength: o.groupByLength, ...shard() });
  const { pipeline } = await import('../pipelines');
  const qa = await pipeline('question-answering', { model, tokenizer: tok }, { maxLength });
  // Data-parallel: each rank answers its share of the dev questions (in chunks of 32); the scores come from all.
  const chunks = Array.from({ length: Math.ceil(dev.length / 32) }, (_, k) => dev.slice(32 * k, 32 * k + 32));
  const evaluate = async () => {
    model.eval();
    const answers = (await dist.shardedMap(chunks, async (c) =>
      ((await qa.call(c.map((x) => ({ question: x.question, context: x.context })), { maxSeqLen: maxLength, docStride: stride })) as { answer: string }[]).map((p) => p.answer))).flat();
    const { qaMetrics } = await import('../train');
    return qaMetrics(answers, dev.map((x) => x.answers.map((a) => a.text)));
  };
  const next = (s: number): Batch => {
    const idx = batches.at(s);
    const b = padCollate(idx.map((i) => feats[i]), tok.padTokenId) as Batch & { start: Tensor; end: Tensor };
    b.start = tb.tensor(BigInt64Array.from(idx, (i) => BigInt(feats[i].start)));
    b.end = tb.tensor(BigInt64Array.from(idx, (i) => BigInt(feats[i].end)));
    return b;
  };
  const toInputs = (b: Batch) => {
    const q = b as Batch & { start: Tensor; end: Tensor };
    return { inputIds: q.inputIds, attentionMask: q.attentionMask, tokenTypeIds: q.tokenTypeIds, startPositions: q.start, endPositions: q.end };
  };
  const maxSteps = stepsFor(feats.length, o);
  log(`finetune (QA): ${train.length} training questions (${feats.length} windows of up to ${maxLength} tokens, stride ${stride}) and ${dev.length} dev questions, ${maxSteps} steps of ${bs}`);
  const res = await runTrainer(model, o, maxSteps, 'f1', next, toInputs, evaluate, log);
  const final = await evaluate();
  await qa.close();
  if (shard().rank === 0) {
    await model.savePretrained(o.out);
    tok.savePretrained(o.out);
  }
  return { task: 'qa', examples: { train: train.length, dev: dev.length }, steps: res.steps, seconds: res.seconds, best: res.best, stoppedEarly: !!res.stoppedEarly, dev: final, savedTo: o.out };
}
