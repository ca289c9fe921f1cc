// The main job: the seed's story end to end on 2 CPU cores. Learn a WordPiece vocabulary, pre-train a
// small BERT with masked-LM on text from the data folder, fine-tune it on SST-2, report dev accuracy
// beside a majority-class baseline and a bag-of-words logistic regression, save the model (HF format
// and TorchScript) and classify a few sentences.
import * as fs from 'fs';
import * as path from 'path';
import { fork } from 'child_process';
import * as tb from '../core';
import { Tensor, F } from '../core';
import { BertTokenizer } from '../tokenizer';
import { pretrain, attentionHeads } from './pretrain';
import { readSst2, readLines, readDelimited, readConll, readShakespeareSpeeches, sst2FullSentences, readRtPolarity, rtPolarityOutside, sstSpelling } from '../data/datasets';
import { fromPretrained, fromConfig } from '../models/bert';
import type { BertPreTrainedModel } from '../models/bert';
import { Trainer, predictClasses, padCollate, batchIndices, EpochBatches, accuracy, f1, AdamW, averageWeights } from '../train';
import type { Example, Batch, TrainerOptions, TrainResult } from '../train';
import * as dist from '../distributed/process-group';
import { checkCpuBf16 } from '../cpu';

/**
 * The unlabelled texts `ScratchOptions.extraText` names, each read from the data folder; `sst2` is SST-2's text
 * by split, which the in-domain source keeps apart from.
 */
const extraTexts = {
  conll: (data: string) => ['eng.train', 'eng.testa', 'eng.testb'].flatMap((f) => readConll(path.join(data, 'conll2003', f)).map((e) => e.tokens.join(' '))),
  shakespeare: (data: string) => readShakespeareSpeeches(path.join(data, 'tinyshakespeare', 'input.txt')),
  rt: (data: string, sst2: { train: string[]; test: string[]; dev: string[] }) =>
    rtPolarityOutside(readRtPolarity(path.join(data, 'rt-polarity')), [...sst2.train, ...sst2.test], sst2.dev).map((r) => sstSpelling(r.text)),
};
export type ExtraText = keyof typeof extraTexts;

export interface ScratchOptions {
  data: string;
  out: string;
  /** WordPiece vocabulary learned by the job (default 8000) */
  vocabSize?: number;
  /** the BERT's hidden size and encoder layers (default 128 and 2, BERT-Tiny's shape) */
  hidden?: number;
  layers?: number;
  /** attention heads (default hidden / 64) */
  heads?: number;
  /** at most this many pre-training steps (default 10,000) */
  pretrainSteps?: number;
  /** fine-tuning steps of each copy and of the control; default `finetuneEpochs` epochs of SST-2 train */
  finetuneSteps?: number;
  /** epochs of fine-tuning where finetuneSteps is not given (default 2, at finetuneLr's 1e-4) */
  finetuneEpochs?: number;
  /**
   * Time budgets (default 540 s for pre-training, 150 s for each fine-tuning, R-Drop doubling its batches): each phase fits its schedule
   * to the steps its budget holds at the pace measured, so a slower machine runs fewer steps, not longer
   */
  pretrainSeconds?: number;
  finetuneSeconds?: number;
  seqLen?: number;
  /** seeds the weights, masking, dropout and the order of the batches (default 0) */
  seed?: number;
  /** pre-training objective: 'mlm' or 'electra' (replaced-token detection) */
  objective?: 'mlm' | 'electra';
  /** peak learning rate of pre-training (PretrainOptions.learningRate: 1e-3, with ELECTRA 3e-4) */
  pretrainLr?: number;
  /**
   * Pre-train on full rows of packed text (SST-2's training sentences once each, not every sub-phrase)
   * rather than one padded row per line.
   */
  pack?: boolean;
  /** start pre-training from co-occurrence word vectors of the corpus (PretrainOptions.wordVectors) */
  wordVectors?: boolean;
  /** weight of the [CLS] bag-of-words term beside the masked LM (PretrainOptions.bagOfWords; default 0) */
  bagOfWords?: number;
  /**
   * Task-guided selective masking (PretrainOptions.selectiveMask): this share of pre-training's masks follows
   * each word piece's weight in the bag-of-words baseline (|w_positive - w_negative|, the regression trained
   * on SST-2's labelled phrases before pre-training), the rest stays uniform (default 0: off)
   */
  selectiveMask?: number;
  /** mask whole words in pre-training (PretrainOptions.wholeWordMask) */
  wholeWordMask?: boolean;
  /** share of the tokens the masked LM predicts (PretrainOptions.maskProbability; default 0.15) */
  maskProbability?: number;
  /**
   * More unlabelled text for the vocabulary and pre-training, from the data folder: 'conll' (CoNLL-2003's
   * Reuters sentences, all three files), 'shakespeare' (tiny Shakespeare's speeches), 'rt' (the Rotten
   * Tomatoes snippets that are not SST-2 training rows or test sentences and overlap no dev sentence,
   * datasets.rtPolarityOutside, spelt as SST is; in-domain: SST's sentences come from RT).
   */
  extraText?: ExtraText[];
  /**
   * Add WikiText-2's test and valid articles to the text the vocabulary and pre-training read (default false:
   * SST-2's own sentences alone, task-adaptive pre-training; with WikiText-2 until 5 December, 0.6 points
   * lower on SST-2 dev, docs/results.md).
   */
  wikitext?: boolean;
  /**
   * Reuse a pre-trained encoder (an earlier run's `OUT/pretrained` folder, with its tokenizer) instead of
   * learning a vocabulary and pre-training: the job fine-tunes, runs its control and baselines as usual.
   * With `seed` it separates what fine-tuning varies from what pre-training does; the same seed as the
   * run that made the encoder repeats that run's fine-tuning (the same head weights and batches). The
   * pre-training options are refused with it, by name.
   */
  pretrained?: string;
  /** peak learning rate of fine-tuning (default 1e-4) */
  finetuneLr?: number;
  /**
   * Fine-tune this many copies of the pre-trained BERT (the same head initialisation, different batch orders
   * and dropout) and average their weights into the model the job reports and saves: a uniform model soup
   * (default 1: a single fine-tuning; averaging 3 did not raise this job's accuracy, docs/results.md). The
   * control is one fine-tuning, as one copy.
   */
  soup?: number;
  /** also fine-tune the same BERT from random weights with the same recipe: what pre-training buys (default true) */
  control?: boolean;
  /**
   * Fine-tune the model and its control side by side, each in its own process on half the intra-op threads,
   * within the sum of their two budgets (default true where it applies: one copy, no process group, at least 2
   * threads, and the compiled worker beside this file). Small GEMMs scale poorly across threads, so two
   * one-thread fine-tunings finish more steps than the same two run one after the other on two threads.
   */
  parallelControl?: boolean;
  /**
   * Global batch sizes (default 64 for pre-training, 32 for fine-tuning). Under an initialised process group
   * (`main --nproc N`) each rank takes 1/N of every batch, so the recipe is the same at any world size.
   */
  pretrainBatch?: number;
  finetuneBatch?: number;
  /** hidden and attention dropout of pre-training (PretrainOptions.dropout; default 0.1); fine-tuning keeps 0.1 */
  pretrainDropout?: number;
  /**
   * R-Drop's weight in every fine-tuning (the model's and the control's; TrainerOptions.rDrop): each batch
   * runs twice with different dropout and the loss adds this times the symmetric KL divergence of the two
   * predictions (default 1; 0 turns it off)
   */
  rDrop?: number;
  /** bfloat16 autocast in every training phase (pre-training, fine-tuning, the control): CPUs with bf16 units, or CUDA */
  bf16?: boolean;
  log?: (s: string) => void;
}

export interface ScratchReport {
  vocabSize: number;
  /** steps 0 and `from` set where the job reused an encoder (ScratchOptions.pretrained) */
  pretrain: { steps: number; seconds: number; firstLoss: number; lastLoss: number; from?: string };
  /** steps of each copy fine-tuned (the fewest, where the time budget cut copies differently); seconds of all of them */
  finetune: { steps: number; seconds: number; copies: number };
  /** accuracy: the averaged model's; copies: each fine-tuned copy's alone */
  dev: { accuracy: number; f1: number; copies: number[]; majority: number; bagOfWords: number; noPretraining?: number };
  /** the control's fine-tuning, where it ran; alongside: beside the model's, in its own process */
  control?: { steps: number; seconds: number; alongside: boolean };
  predictions: { text: string; label: string; score: number }[];
  savedTo: { hf: string; torchscript: string };
}

function encodeAll(tok: BertTokenizer, texts: string[], maxLength: number): number[][] {
  return texts.map((t) => tok.call(t, undefined, { truncation: true, maxLength }).inputIds as number[]);
}

/** SST-2 as the job fine-tunes and scores it. */
export interface Sst2Task {
  /** the training phrases, encoded to at most seqLen tokens; `i` is the row's index */
  trainEx: Example[];
  /** the dev sentences (up to 128 tokens) in batches of 64 sorted by length, and their gold labels in that order */
  devBatches: Batch[];
  devGold: number[];
  padId: number;
}

export function sst2Task(tok: BertTokenizer, train: { text: string; label: number }[], dev: { text: string; label: number }[], seqLen: number): Sst2Task {
  const trainEx: Example[] = train.map((r, i) => ({ inputIds: encodeAll(tok, [r.text], seqLen)[0], label: r.label, i }));
  const devEx: Example[] = dev.map((r) => ({ inputIds: encodeAll(tok, [r.text], 128)[0], label: r.label }));
  const devOrder = batchIndices(devEx.map((e) => e.inputIds.length), 64, { shuffle: false });
  return {
    trainEx,
    devBatches: devOrder.map((idx) => padCollate(idx.map((i) => devEx[i]), tok.padTokenId)),
    devGold: devOrder.flat().map((i) => devEx[i].label!),
    padId: tok.padTokenId,
  };
}

/**
 * The job's fine-tuning of m on the task: AdamW (weight decay 0.01), 6% warmup and linear decay over `steps`,
 * fitted to `seconds`, batches of similar length drawn by `seed` (which also seeds dropout) and, under a process
 * group, sharded over the ranks. `trainer` adds or overrides Trainer options (name, logging, evaluation).
 */
export function sst2FineTuning(m: BertPreTrainedModel, task: Pick<Sst2Task, 'trainEx' | 'padId'>, o: { seed: number; batch: number; lr: number; steps: number; seconds: number; shard?: { rank: number; worldSize: number }; trainer?: Partial<TrainerOptions> }) {
  tb.manualSeed(o.seed); // the same dropout draws and batches for a model and its control
  const batches = new EpochBatches(task.trainEx.map((e) => e.inputIds.length), o.batch / (o.shard?.worldSize ?? 1), { seed: o.seed, groupByLength: true, ...o.shard });
  const trainer = new Trainer(m, { learningRate: o.lr, weightDecay: 0.01, warmupRatio: 0.06, maxSteps: o.steps, timeBudgetSec: o.seconds, fitScheduleToTimeBudget: true, ...o.trainer });
  const nextBatch = (step: number) => padCollate(batches.at(step).map((i) => task.trainEx[i]), task.padId);
  const toInputs = (b: Batch) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels });
  // step's rows (indices into task.trainEx), for a loss that reads more of each row than the batch carries
  const rows = (step: number) => batches.at(step);
  return { trainer, nextBatch, toInputs, rows };
}

/** One fine-tuning as the job runs it (the model's, a soup copy's, the control's): what sst2FineTuning needs beyond the model. */
export interface JobFineTuning {
  seed: number;
  batch: number;
  lr: number;
  steps: number;
  seconds: number;
  rDrop: number;
  bf16?: boolean;
  /** the run's folder: the trainer appends its metrics to metrics.jsonl there */
  out: string;
  shard?: { rank: number; worldSize: number };
}

/** Fine-tunes m on the task as the job does, scoring dev accuracy every 500 steps. */
export function jobFineTune(m: BertPreTrainedModel, task: Sst2Task, o: JobFineTuning, name: string, log: (s: string) => void): Promise<TrainResult> {
  const { trainer, nextBatch, toInputs } = sst2FineTuning(m, task, {
    seed: o.seed, batch: o.batch, lr: o.lr, steps: o.steps, seconds: o.seconds, shard: o.shard,
    trainer: { name, loggingSteps: 100, evalSteps: 500, bf16: o.bf16, rDrop: o.rDrop, logFile: path.join(o.out, 'metrics.jsonl'), log },
  });
  return trainer.train(nextBatch, toInputs, async () => ({ accuracy: accuracy(await predictDev(m, task), task.devGold) }));
}

const predictDev = (m: BertPreTrainedModel, task: Sst2Task) => predictClasses(m, task.devBatches, (b) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask }));

/** What the control's worker process (control-worker.ts) is sent: everything it needs to rebuild the control. */
export interface ControlSpec {
  data: string;
  /** the folder of the encoder's tokenizer: the vocabulary the model was fine-tuned with */
  tokenizer: string;
  seqLen: number;
  /** the model's config (with its labels): the control is the same BERT from random weights */
  config: Record<string, unknown>;
  /** the seed of the control's weights (the job's seed + 3) */
  initSeed: number;
  fineTuning: JobFineTuning;
  threads: number;
}

/** What the control reports: its dev accuracy and the fine-tuning steps and seconds it ran. */
export interface ControlResult {
  accuracy: number;
  steps: number;
  seconds: number;
}

/** The control: the same BERT from random weights, fine-tuned on the task as the model; its dev accuracy. */
export async function runControl(task: Sst2Task, config: Record<string, unknown>, initSeed: number, ft: JobFineTuning, log: (s: string) => void): Promise<ControlResult> {
  tb.manualSeed(initSeed);
  const raw = fromConfig('BertForSequenceClassification', config);
  try {
    const r = await jobFineTune(raw, task, ft, 'control', log);
    return { accuracy: accuracy(await predictDev(raw, task), task.devGold), steps: r.steps, seconds: r.seconds };
  } finally {
    raw.dispose();
  }
}

/** runControl from a ControlSpec, in the worker process: the task rebuilt from the data and the tokenizer. */
export async function runControlSpec(spec: ControlSpec, log: (s: string) => void): Promise<ControlResult> {
  tb.setNumThreads(spec.threads);
  const tok = await BertTokenizer.fromPretrained(spec.tokenizer);
  const task = sst2Task(tok, readSst2(path.join(spec.data, 'sst2', 'train.tsv')), readSst2(path.join(spec.data, 'sst2', 'dev.tsv')), spec.seqLen);
  return runControl(task, spec.config, spec.initSeed, spec.fineTuning, log);
}

/**
 * Runs the control in a worker process while the caller fine-tunes the model: resolves to its result, rejects
 * with the worker's error. The worker is this folder's compiled control-worker.js; `stop()` ends it early.
 */
function controlAlongside(worker: string, spec: ControlSpec, log: (s: string) => void) {
  // The thread count goes twice: in the env, which the OpenMP and MKL runtimes read as the addon loads (before
  // any of the worker's code runs), and in the spec, whose setNumThreads (runControlSpec) is the count libtorch
  // itself uses for intra-op work.
  const child = fork(worker, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, OMP_NUM_THREADS: String(spec.threads), MKL_NUM_THREADS: String(spec.threads) } });
  const result = new Promise<ControlResult>((resolve, reject) => {
    let done = false;
    child.on('message', (msg: { log?: string; result?: ControlResult; error?: string }) => {
      if (msg.log !== undefined) log(msg.log);
      else if (msg.result) { done = true; resolve(msg.result); }
      else if (msg.error !== undefined) { done = true; reject(new Error(`main: the control's fine-tuning failed: ${msg.error}`)); }
    });
    child.on('error', (e) => { if (!done) { done = true; reject(new Error(`main: the control's worker could not run: ${e.message}`)); } });
    child.on('exit', (code, signal) => { if (!done) { done = true; reject(new Error(`main: the control's worker exited (${signal ?? `code ${code}`}) before reporting`)); } });
  });
  child.send(spec);
  return { result, stop: () => { if (child.exitCode === null) child.kill(); } };
}

/**
 * Bag-of-words logistic regression on token presence (the classic baseline), trained with AdamW: its weights
 * [2, vocab] and bias [2]. Exported for scripts/finetune-probe.js.
 */
export async function trainBagOfWords(tok: BertTokenizer, train: { text: string; label: number }[]): Promise<{ w: Tensor; b: Tensor }> {
  const yTrain = train.map((r) => r.label);
  const w = tb.zeros([2, tok.vocabSize]).requiresGrad_();
  const b = tb.zeros([2]).requiresGrad_();
  const opt = new AdamW([w, b], { lr: 0.01, weightDecay: 0.01 });
  const batches = batchIndices(train.map(() => 1), 256, { seed: 1 });
  for (let epoch = 0; epoch < 2; epoch++) {
    for (const idx of batches) {
      const scope = new tb.DisposeScope();
      await scope.run(async () => {
        const x = bagOfWordsFeatures(tok, idx.map((i) => train[i]));
        const y = tb.tensor(BigInt64Array.from(idx, (i) => BigInt(yTrain[i])));
        await F.crossEntropy(F.linear(x, w, b), y).backward();
        await opt.step();
        opt.zeroGrad();
      });
      scope.dispose();
    }
  }
  return { w, b };
}

/** The regression's inputs: [rows, vocab], 1 where the row holds the word piece. */
function bagOfWordsFeatures(tok: BertTokenizer, rows: { text: string }[]): Tensor {
  const V = tok.vocabSize;
  const flat = new Float32Array(rows.length * V);
  rows.forEach((r, i) => {
    for (const id of tok.call(r.text, undefined, { addSpecialTokens: false }).inputIds as number[]) flat[i * V + id] = 1;
  });
  return tb.tensor(flat, { shape: [rows.length, V] });
}

/** The regression's logits [rows, 2] on the rows (scripts/finetune-probe.js reads them too). */
export function bagOfWordsLogits(tok: BertTokenizer, bow: { w: Tensor; b: Tensor }, rows: { text: string }[]): Tensor {
  return tb.noGrad(() => F.linear(bagOfWordsFeatures(tok, rows), bow.w, bow.b));
}

function bagOfWordsAccuracy(tok: BertTokenizer, bow: { w: Tensor; b: Tensor }, dev: { text: string; label: number }[]): number {
  const pred = tb.tidy(() => Array.from(bagOfWordsLogits(tok, bow, dev).argmax(1).dataSync() as BigInt64Array, Number));
  return accuracy(pred, dev.map((r) => r.label));
}

/** Runs the job; resolves to its report on rank 0 (or without a process group) and to null on other ranks. */
export async function fromScratch(o: ScratchOptions): Promise<ScratchReport | null> {
  // Data-parallel: every rank learns the same vocabulary and runs every phase on its shard of each batch;
  // rank 0 alone logs, trains the bag-of-words baseline, saves and classifies the examples.
  const world = dist.isInitialized() ? dist.getWorldSize() : 1;
  const rank = dist.isInitialized() ? dist.getRank() : 0;
  const [preBatch, ftBatch] = [o.pretrainBatch ?? 64, o.finetuneBatch ?? 32];
  for (const [k, v] of [['pretrainBatch', preBatch], ['finetuneBatch', ftBatch]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`main: ${k} must be a positive integer, got ${v}`);
  }
  attentionHeads('main', o.hidden ?? 128, o.heads); // before anything is written
  if (preBatch % world || ftBatch % world) throw new RangeError(`main: ${world} ranks must divide the global batches (${preBatch} for pre-training, ${ftBatch} for fine-tuning)`);
  const main = rank === 0;
  const copies = o.soup ?? 1;
  if (!Number.isInteger(copies) || copies < 1) throw new RangeError(`main: soup must be a positive integer (copies to fine-tune and average), got ${copies}`);
  const epochs = o.finetuneEpochs ?? 2;
  if (!(epochs > 0 && Number.isFinite(epochs))) throw new RangeError(`main: finetuneEpochs must be a positive number, got ${epochs}`);
  const rDrop = o.rDrop ?? 1;
  if (!(rDrop >= 0 && Number.isFinite(rDrop))) throw new RangeError(`main: rDrop must be a non-negative number, got ${o.rDrop}`);
  const log = main ? (o.log ?? ((s: string) => console.log(s))) : () => {};
  if (world > 1) log(`data-parallel over ${world} ranks: pre-training batch ${preBatch} = ${preBatch / world} x ${world}, fine-tuning batch ${ftBatch} = ${ftBatch / world} x ${world}`);
  if (o.pretrained !== undefined) {
    // the options whose defaults live here count as given when defined; the others when they turn something on
    const given = (['vocabSize', 'hidden', 'layers', 'heads', 'pretrainSteps', 'pretrainSeconds', 'pretrainLr', 'pretrainBatch', 'maskProbability', 'pretrainDropout'] as const).filter((k) => o[k] !== undefined);
    const set = [...Object.entries({ objective: o.objective === 'electra', pack: o.pack, wordVectors: o.wordVectors, bagOfWords: !!o.bagOfWords, selectiveMask: !!o.selectiveMask, wholeWordMask: o.wholeWordMask, extraText: !!o.extraText?.length, wikitext: o.wikitext }).filter(([, v]) => v).map(([k]) => k), ...given];
    if (set.length) throw new RangeError(`main: pretrained reuses an encoder, so the pre-training options (${set.join(', ')}) do not apply`);
    if (!fs.existsSync(path.join(o.pretrained, 'config.json')) || !fs.existsSync(path.join(o.pretrained, 'vocab.txt'))) {
      throw new RangeError(`main: pretrained must be a pre-trained model folder with config.json and vocab.txt (an earlier run's OUT/pretrained), got ${o.pretrained}`);
    }
  }
  if (o.selectiveMask !== undefined && !(o.selectiveMask >= 0 && o.selectiveMask <= 1)) throw new RangeError(`main: selectiveMask must be a share in [0, 1], got ${o.selectiveMask}`);
  const names = Object.keys(extraTexts);
  const unknown = (o.extraText ?? []).filter((t) => !names.includes(t));
  if (unknown.length) throw new RangeError(`main: extraText takes ${names.slice(0, -1).map((t) => `'${t}'`).join(', ')} and '${names.at(-1)}', got ${unknown.map((t) => JSON.stringify(t)).join(', ')}`);
  if (o.bf16) checkCpuBf16('main --bf16'); // before anything is written
  const seqLen = o.seqLen ?? 64;
  const seed = o.seed ?? 0;
  tb.manualSeed(seed);
  fs.mkdirSync(o.out, { recursive: true });
  const train = readSst2(path.join(o.data, 'sst2', 'train.tsv'));
  const dev = readSst2(path.join(o.data, 'sst2', 'dev.tsv'));

  // 1-2. Vocabulary and masked-LM pre-training, or the encoder of an earlier run.
  let tok: BertTokenizer;
  let mlmDir: string;
  let preReport: ScratchReport['pretrain'];
  let bow: { w: Tensor; b: Tensor; seconds: number } | undefined;
  const bagOfWords = async (t: BertTokenizer) => {
    const t0 = Date.now();
    return { ...(await trainBagOfWords(t, train)), seconds: (Date.now() - t0) / 1000 };
  };
  if (o.pretrained !== undefined) {
    [tok, mlmDir] = [await BertTokenizer.fromPretrained(o.pretrained), o.pretrained];
    preReport = { steps: 0, seconds: 0, firstLoss: NaN, lastLoss: NaN, from: o.pretrained };
    log(`pre-training: none, reusing the encoder in ${o.pretrained} (vocabulary of ${tok.vocabSize})`);
  } else {
    // Unlabelled text: SST-2's training and (unlabelled) test sentences, with wikitext WikiText-2's test and
    // valid articles too; never the dev sentences scored below.
    const test = readDelimited(path.join(o.data, 'sst2', 'test.tsv')).map((r) => r.sentence);
    const wiki = !o.wikitext ? [] : [...readLines(path.join(o.data, 'wikitext-2', 'test.txt')), ...readLines(path.join(o.data, 'wikitext-2', 'valid.txt'))].filter((l) => l.trim().length > 20 && !l.trim().startsWith('='));
    const extra = (o.extraText ?? []).flatMap((t) => extraTexts[t](o.data, { train: train.map((r) => r.text), test, dev: dev.map((r) => r.text) }));
    const corpus = [...(o.pack ? sst2FullSentences(train.map((r) => r.text)) : train.map((r) => r.text)), ...test, ...wiki, ...extra];
    if (extra.length) log(`extra text: ${extra.length} lines (${o.extraText!.join(', ')})`);
    const [steps, seconds] = [o.pretrainSteps ?? 10000, o.pretrainSeconds ?? 540];
    log(`pre-training: at most ${steps} steps of ${preBatch} within ${seconds}s`);
    const pre = await pretrain({
      corpus, out: o.out, vocabSize: o.vocabSize ?? 8000, hidden: o.hidden ?? 128, layers: o.layers ?? 2, heads: o.heads, steps, seconds, seqLen, log,
      objective: o.objective, learningRate: o.pretrainLr, seed: seed + 1, batchSize: preBatch / world, pack: o.pack, wordVectors: o.wordVectors, bagOfWords: o.bagOfWords, wholeWordMask: o.wholeWordMask, maskProbability: o.maskProbability, bf16: o.bf16, dropout: o.pretrainDropout,
      // the baseline's regression, trained first here, scores the word pieces and is reported as usual
      selectiveMask: o.selectiveMask ? {
        share: o.selectiveMask,
        importance: async (t) => {
          const r = (bow = await bagOfWords(t));
          return tb.tidy(() => tb.noGrad(() => r.w.select(0, 1).sub(r.w.select(0, 0)).abs()));
        },
      } : undefined,
    });
    [tok, mlmDir] = [pre.tokenizer, pre.dir];
    const r = pre.result;
    preReport = { steps: r.steps, seconds: r.seconds, firstLoss: r.losses[0]?.loss ?? NaN, lastLoss: r.losses.at(-1)?.loss ?? NaN };
    pre.model.dispose();
    if (world > 1) await dist.barrier(); // rank 0 has written the pre-trained encoder every rank loads next
  }

  // 3. Fine-tuning on SST-2, of `soup` copies whose weights are averaged: two epochs at 1e-4 by default. One
  // epoch at 4e-4 (the recipe until 5 December) gave the pre-trained encoder and the control the same
  // accuracy; the lower rate keeps what pre-training gave the encoder, and R-Drop added 0.2-1.3 points to
  // each of six encoders (docs/results.md).
  const labels = { num_labels: 2, id2label: { 0: 'negative', 1: 'positive' }, label2id: { negative: 0, positive: 1 } };
  const task = sst2Task(tok, train, dev, seqLen);
  const { trainEx, devGold } = task;
  const [ftSteps, ftLr, ftSeconds] = [o.finetuneSteps ?? Math.ceil((epochs * trainEx.length) / ftBatch), o.finetuneLr ?? 1e-4, o.finetuneSeconds ?? 150];
  // The control beside the model, each on half the threads, within both budgets together (ScratchOptions.parallelControl).
  const threads = tb.getNumThreads();
  // the compiled worker beside the compiled job; beside the sources when they run under ts-node (the CLI's tests)
  const worker = path.join(__dirname, `control-worker${path.extname(__filename)}`);
  const runnable = fs.existsSync(worker) && (worker.endsWith('.js') || process.execArgv.some((a) => a.includes('ts-node')));
  const alongside = o.control !== false && o.parallelControl !== false && copies === 1 && world === 1 && threads >= 2 && runnable;
  if (o.parallelControl !== false && !alongside && o.control !== false) log(`the control runs after the model: side by side needs one copy, no process group, 2 threads and a runnable ${worker}`);
  const seconds = alongside ? 2 * ftSeconds : ftSeconds;
  log(`fine-tuning: ${ftSteps} steps of ${ftBatch} (${Number(((ftSteps * ftBatch) / trainEx.length).toPrecision(2))} epochs of SST-2's ${trainEx.length} phrases) at peak lr ${ftLr.toExponential()}${rDrop ? `, R-Drop ${rDrop}` : ''}, ${alongside ? `the model and its control side by side (${Math.floor(threads / 2)} threads each) within ${seconds}s` : `within ${ftSeconds}s each`}`);
  // `copy` varies the batch order and dropout of each copy of a soup; the head initialisation stays that of seed.
  const ft = (copy: number): JobFineTuning => ({
    seed: seed + 2 + 1000 * copy, batch: ftBatch, lr: ftLr, steps: ftSteps, seconds, rDrop, bf16: o.bf16, out: o.out, shard: world > 1 ? { rank, worldSize: world } : undefined,
  });
  const members: BertPreTrainedModel[] = [];
  const copyAccuracy: number[] = [];
  const ftRes = { steps: 0, seconds: 0, copies };
  let side: ReturnType<typeof controlAlongside> | undefined;
  try {
    for (let k = 0; k < copies; k++) {
      tb.manualSeed(seed + 2); // every copy starts from the same head weights: their average stays in one basin
      const m = await fromPretrained(mlmDir, { kind: 'BertForSequenceClassification', config: labels });
      if (k === 0) log(`fine-tuning from the pre-trained encoder (new weights: ${m.loadReport.missingKeys.join(', ')})${copies > 1 ? `, ${copies} copies to average` : ''}`);
      if (alongside && k === 0) {
        log('control: fine-tuning the same BERT from random weights, in a second process');
        side = controlAlongside(worker, { data: o.data, tokenizer: mlmDir, seqLen, config: { ...m.config.fields, ...labels }, initSeed: seed + 3, fineTuning: ft(0), threads: Math.floor(threads / 2) }, log);
        side.result.catch(() => {}); // awaited below; a failure while the model trains is reported there
        tb.setNumThreads(Math.floor(threads / 2)); // equal shares: neither fine-tuning gets more of the machine
      }
      const r = await jobFineTune(m, task, ft(k), copies > 1 ? `finetune-${k + 1}` : 'finetune', log);
      ftRes.steps = k === 0 ? r.steps : Math.min(ftRes.steps, r.steps);
      ftRes.seconds += r.seconds;
      members.push(m);
      if (copies > 1) {
        copyAccuracy.push(accuracy(await predictDev(m, task), devGold));
        log(`copy ${k + 1} of ${copies} alone: dev accuracy ${(100 * copyAccuracy[k]).toFixed(2)}%`);
      }
    }
  } catch (e) {
    side?.stop();
    throw e;
  } finally {
    if (alongside) tb.setNumThreads(threads);
  }
  const cls = averageWeights(members);
  members.slice(1).forEach((m) => m.dispose());
  const pred = await predictDev(cls, task);
  const acc = accuracy(pred, devGold);
  if (copies === 1) copyAccuracy.push(acc);
  else log(`the average of the ${copies} copies: dev accuracy ${(100 * acc).toFixed(2)}%`);
  // The control: the same architecture, vocabulary and fine-tuning (one copy's) from random weights.
  let control: ScratchReport['control'];
  let noPretraining: number | undefined;
  if (o.control !== false) {
    if (!side) log('control: fine-tuning the same BERT from random weights');
    const r = side ? await side.result : await runControl(task, { ...cls.config.fields, ...labels }, seed + 3, ft(0), log);
    noPretraining = r.accuracy;
    control = { steps: r.steps, seconds: r.seconds, alongside: !!side };
  }
  const ones = dev.filter((r) => r.label === 1).length;
  const majority = Math.max(ones, dev.length - ones) / dev.length;
  const hfDir = path.join(o.out, 'sst2-model');
  const ts = path.join(o.out, 'sst2-model.pt');
  // The other ranks are done: the report is rank 0's.
  if (!main) {
    [bow?.w, bow?.b].forEach((t) => t?.dispose()); // each rank's regression guided its own masking
    return null;
  }
  bow ??= await bagOfWords(tok);
  const bowAccuracy = bagOfWordsAccuracy(tok, bow, dev);
  log(`bag-of-words logistic regression trained in ${bow.seconds.toFixed(0)}s${o.selectiveMask ? ' (before pre-training: its weights chose the masks)' : ''}`);
  bow.w.dispose();
  bow.b.dispose();

  // 4. Save and classify a few sentences.
  await cls.savePretrained(hfDir);
  tok.savePretrained(hfDir);
  await cls.saveTorchScript(ts);
  const samples = ['a gripping , beautifully acted film .', 'dull , lifeless and far too long .', 'the best movie i have seen this year', 'i wanted my two hours back .'];
  const enc = tok.call(samples, undefined, { padding: true, returnTensors: 'pt' });
  const logits = (await tb.noGrad(() => cls.forward({ inputIds: enc.inputIds as Tensor, attentionMask: enc.attentionMask as Tensor }))).logits!;
  const probs = logits.softmax(-1).toArraySync() as number[][];
  const predictions = samples.map((text, i) => {
    const k = probs[i][1] > probs[i][0] ? 1 : 0;
    return { text, label: k ? 'positive' : 'negative', score: probs[i][k] };
  });
  return {
    vocabSize: tok.vocabSize,
    pretrain: preReport,
    finetune: ftRes,
    dev: { accuracy: acc, f1: f1(pred, devGold), copies: copyAccuracy, majority, bagOfWords: bowAccuracy, noPretraining },
    control,
    predictions,
    savedTo: { hf: hfDir, torchscript: ts },
  };
}
