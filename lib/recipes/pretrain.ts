// Pre-training from scratch behind `torchbert pretrain` and the main job: learn a WordPiece vocabulary
// on the corpus, then train a small BERT encoder, either as a BertForMaskedLM with HF's masking
// (optionally whole-word masking) or as ELECTRA's discriminator (replaced-token detection: a small
// masked-LM generator fills the masked positions by sampling, and the encoder learns, on every token,
// which ones were replaced); saves the tokenizer and the model in HF format.
import * as path from 'path';
import * as tb from '../core';
import { Tensor, F } from '../core';
import { BertTokenizer, WordPieceTrainer } from '../tokenizer';
import { fromConfig, BertPreTrainedModel } from '../models/bert';
import { BertConfig } from '../models/config';
import { Trainer, padCollate, packSequences, maskTokens, bagOfWordsTargets, EpochBatches, wholeWordMask, cooccurrenceVectors } from '../train';
import type { TrainResult } from '../train';
import * as dist from '../distributed/process-group';
import { checkCpuBf16 } from '../cpu';

export interface PretrainOptions {
  /** lines of text */
  corpus: string[];
  out: string;
  vocabSize?: number;
  hidden?: number;
  layers?: number;
  /** attention heads (default hidden / 64, as BERT and its miniatures; at least 1); must divide hidden */
  heads?: number;
  steps?: number;
  seconds?: number;
  seqLen?: number;
  batchSize?: number;
  /**
   * Peak learning rate: 1e-3 for the masked LM, 3e-4 for ELECTRA, whose discriminator collapsed at 1e-3 in
   * the main job (every sentence nearly the same vectors; docs/results.md)
   */
  learningRate?: number;
  wholeWordMask?: boolean;
  /** share of the tokens (or of the words, with wholeWordMask) the masked LM predicts (default 0.15, BERT's) */
  maskProbability?: number;
  /** pack the lines into full seqLen rows (HF run_mlm.py's grouping) instead of one padded row per line */
  pack?: boolean;
  /** 'mlm' (BERT's masked LM, the default) or 'electra' (replaced-token detection) */
  objective?: 'mlm' | 'electra';
  /** ELECTRA: the generator's hidden size (default hidden / 2; its layers as many as the encoder's) */
  generatorHidden?: number;
  /** ELECTRA: weight of the discriminator's loss against the generator's (50, as in the paper) */
  discriminatorWeight?: number;
  /** seeds the weights, masking, dropout and the order of the batches (default: the batch order with 1, the rest from the global generator as it stands) */
  seed?: number;
  /**
   * Start the word embeddings (and so the tied masked-LM decoder) from co-occurrence vectors of the
   * corpus (PPMI + truncated SVD, `cooccurrenceVectors`) instead of random ones: seconds of work that
   * the masked LM would otherwise spend thousands of steps learning.
   */
  wordVectors?: boolean;
  /**
   * Masked LM only: add this weight times a sentence-level term in which the [CLS] vector predicts the
   * row's bag of words through the masked-LM head (`mlmBagOfWordsLoss`), so that the vector fine-tuning's
   * classifier reads starts trained (default 0: off; it cost the main job two to three points on SST-2,
   * docs/results.md).
   */
  bagOfWords?: number;
  /**
   * Task-guided selective masking (Gu et al. 2020, "Train No Evil"): `importance(tokenizer)`, asked once the
   * vocabulary is learned, scores each token id for the task ([vocabSize], non-negative: a classifier's
   * weights, say); `share` of the masking follows those scores and the rest stays uniform, the mean rate over
   * the corpus's tokens staying maskProbability. Masked LM only, without wholeWordMask. The tensor returned is
   * pretrain's to dispose.
   */
  selectiveMask?: { importance: (tok: BertTokenizer) => Tensor | Promise<Tensor>; share: number };
  /** bfloat16 autocast for the forward and loss (Trainer's bf16): on CPUs with bf16 units, or CUDA */
  bf16?: boolean;
  /**
   * Hidden and attention dropout while pre-training (default 0.1, BERT's). The saved config.json keeps 0.1
   * either way: it is what fine-tuning from the checkpoint uses.
   */
  dropout?: number;
  log?: (s: string) => void;
}

export interface PretrainResult {
  tokenizer: BertTokenizer;
  /** the masked LM, or ELECTRA's discriminator (a BertForTokenClassification with one logit per token) */
  model: BertPreTrainedModel;
  result: TrainResult;
  /** folder with config.json, model.safetensors and the tokenizer files */
  dir: string;
  /**
   * Masked LM (without bagOfWords): the loss of predicting every masked word piece by its frequency alone (the entropy of the masked
   * targets over the corpus, in nats). A last loss near it means the encoder has not learned to read context:
   * the run ended on the plateau every masked LM starts on, and a warning says so.
   */
  unigramLoss?: number;
}

/** The attention heads of a BERT of hidden size H: `heads`, or H / 64 as BERT and its miniatures (at least 1); refused unless they divide H. */
export function attentionHeads(who: string, hidden: number, heads?: number): number {
  const h = heads ?? Math.max(1, Math.floor(hidden / 64));
  if (!(Number.isInteger(h) && h >= 1 && hidden % h === 0)) throw new RangeError(`${who}: heads must be a positive integer that divides hidden (${hidden}), got ${heads}`);
  return h;
}

export async function pretrain(o: PretrainOptions): Promise<PretrainResult> {
  // every rank learns the same vocabulary (deterministic); rank 0 logs and writes what is saved
  const main = !dist.isInitialized() || dist.getRank() === 0;
  const log = main ? (o.log ?? ((s: string) => console.log(s))) : () => {};
  if (!o.corpus.length) throw new Error('pretrain: the corpus is empty');
  if (o.objective !== undefined && !['mlm', 'electra'].includes(o.objective)) throw new TypeError(`pretrain: objective must be 'mlm' or 'electra', got ${JSON.stringify(o.objective)}`);
  const electra = o.objective === 'electra';
  const bowWeight = o.bagOfWords ?? 0;
  if (!Number.isFinite(bowWeight) || bowWeight < 0) throw new RangeError(`pretrain: bagOfWords must be a weight >= 0, got ${o.bagOfWords}`);
  if (bowWeight > 0 && electra) throw new TypeError("pretrain: bagOfWords goes with the masked-LM objective, not 'electra'");
  const maskP = o.maskProbability ?? 0.15;
  if (!(maskP > 0 && maskP < 1)) throw new RangeError(`pretrain: maskProbability must be between 0 and 1, got ${o.maskProbability}`);
  const dropout = o.dropout ?? 0.1;
  if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`pretrain: dropout must be in [0, 1), got ${o.dropout}`);
  const sm = o.selectiveMask;
  if (sm && !(sm.share > 0 && sm.share <= 1)) throw new RangeError(`pretrain: selectiveMask.share must be in (0, 1], got ${sm.share}`);
  if (sm && (electra || o.wholeWordMask)) throw new TypeError(`pretrain: selectiveMask goes with the masked LM on word pieces, not ${electra ? "'electra'" : 'wholeWordMask'}`);
  const H = o.hidden ?? 128;
  const heads = attentionHeads('pretrain', H, o.heads);
  if (o.bf16) checkCpuBf16('pretrain --bf16'); // before the vocabulary is written
  const seqLen = o.seqLen ?? 64;
  if (o.seed !== undefined) tb.manualSeed(o.seed);
  let t0 = Date.now();
  const tok = new WordPieceTrainer({ vocabSize: o.vocabSize ?? 8000 }).trainTokenizer(o.corpus);
  if (main) tok.savePretrained(path.join(o.out, 'tokenizer'));
  log(`vocabulary: ${tok.vocabSize} WordPiece tokens learned from ${o.corpus.length} lines in ${((Date.now() - t0) / 1000).toFixed(1)}s`);

  const config = { vocab_size: tok.vocabSize, hidden_size: H, num_hidden_layers: o.layers ?? 2, num_attention_heads: heads, intermediate_size: 4 * H, max_position_embeddings: 128, pad_token_id: tok.padTokenId, hidden_dropout_prob: dropout, attention_probs_dropout_prob: dropout };
  const G = o.generatorHidden ?? Math.max(32, H / 2);
  // ELECTRA: the generator is a smaller masked LM; the encoder kept is the discriminator's.
  const mlm = electra
    ? fromConfig('BertForMaskedLM', { ...config, hidden_size: G, num_attention_heads: attentionHeads('pretrain', G), intermediate_size: 4 * G })
    : fromConfig('BertForMaskedLM', config);
  const disc = electra ? fromConfig('BertForTokenClassification', { ...config, num_labels: 1 }) : null;
  const ids = o.pack
    ? packSequences(o.corpus.map((t) => tok.call(t, undefined, { addSpecialTokens: false }).inputIds as number[]), seqLen, tok.clsTokenId, tok.sepTokenId)
    : o.corpus.map((t) => tok.call(t, undefined, { truncation: true, maxLength: seqLen }).inputIds as number[]);
  const specialIds = [...tok.allSpecialIds];
  if (o.wordVectors) {
    // Every rank computes the same vectors (same rows, same seed), as it learns the same vocabulary.
    t0 = Date.now();
    for (const m of disc ? [mlm, disc] : [mlm]) {
      // The scope frees the state dict's handles, the vectors and the row views (the weights are the model's).
      const scope = new tb.DisposeScope();
      await scope.run(async () => {
        const emb = m.stateDict().get('bert.embeddings.word_embeddings.weight')!;
        const vectors = await cooccurrenceVectors(ids, tok.vocabSize, emb.size(1), { skipIds: specialIds, std: m.config.fields.initializer_range });
        tb.noGrad(() => {
          const pad = emb.select(0, tok.padTokenId).clone(); // the padding row keeps its initialisation
          emb.copy_(vectors);
          emb.select(0, tok.padTokenId).copy_(pad);
        });
      });
      scope.dispose();
    }
    log(`word vectors: PPMI + SVD of the corpus's co-occurrences as the initial word embeddings in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  }
  // the corpus's token counts, taken once where selective masking or the plateau check asks for them
  let counted: Float64Array | undefined;
  const counts = () => (counted ??= tokenCounts(ids, specialIds, tok.vocabSize));
  let tokenWeights: Tensor | undefined;
  if (sm) {
    const importance = await sm.importance(tok);
    try {
      tokenWeights = selectiveMaskWeights(importance, counts(), sm.share, tok, log);
    } finally {
      importance.dispose();
    }
  }
  const shard = dist.isInitialized() ? { rank: dist.getRank(), worldSize: dist.getWorldSize() } : {};
  const batches = new EpochBatches(ids.map((r) => r.length), o.batchSize ?? 64, { seed: o.seed ?? 1, groupByLength: true, ...shard });
  t0 = Date.now();
  const lr = o.learningRate ?? (electra ? 3e-4 : 1e-3);
  const trainer = new Trainer(disc ?? mlm, {
    companions: disc ? { generator: mlm } : undefined,
    name: 'pretrain', learningRate: lr, weightDecay: 0.01, warmupRatio: 0.05, maxSteps: o.steps ?? 6000, timeBudgetSec: o.seconds ?? 480, fitScheduleToTimeBudget: true, loggingSteps: 100, bf16: o.bf16,
    logFile: path.join(o.out, 'metrics.jsonl'), plotFile: path.join(o.out, 'pretrain-curves.svg'), log,
  });
  const result = await trainer.train(
    (step) => padCollate(batches.at(step).map((i) => ({ inputIds: ids[i] })), tok.padTokenId),
    (b) => {
      // Whole words are chosen on the unpadded rows (one copy of the batch out of libtorch).
      const [rows, T] = b.inputIds.shape;
      const flat = b.inputIds.dataSync() as BigInt64Array;
      const unpadded = o.wholeWordMask ? Array.from({ length: rows }, (_, r) => Array.from(flat.subarray(r * T, (r + 1) * T), Number).filter((id) => id !== tok.padTokenId)) : null;
      const sel = unpadded ? wholeWordMask(unpadded, T, tok.idsToTokens, specialIds, maskP) : undefined;
      const m = maskTokens(b.inputIds, { maskTokenId: tok.maskTokenId, vocabSize: tok.vocabSize, specialIds, padId: tok.padTokenId, mlmProbability: maskP, tokenWeights }, sel);
      return { inputIds: m.inputIds, attentionMask: b.attentionMask, labels: m.labels, ...(electra || bowWeight > 0 ? { originalIds: b.inputIds } : {}) };
    },
    undefined,
    disc
      ? (inputs) => replacedTokenLoss(mlm, disc, inputs as ElectraInputs, o.discriminatorWeight ?? 50)
      : bowWeight > 0
        ? async (inputs) => {
          const { originalIds } = inputs as ElectraInputs;
          const bagOfWords = bagOfWordsTargets(originalIds, tok.vocabSize, specialIds);
          return (await mlm.mlmBagOfWordsLoss({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, labels: inputs.labels!, bagOfWords }, bowWeight)).loss;
        }
        : (inputs) => mlm.mlmLoss({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, labels: inputs.labels! }),
  );
  const dir = path.join(o.out, 'pretrained');
  if (main) {
    if (disc) {
      // The discriminator's encoder is what fine-tuning starts from (a BertModel checkpoint, which every head loads).
      const enc = fromConfig('BertModel', disc.config.fields);
      enc.loadStateDict(disc.stateDict());
      await enc.savePretrained(dir);
      enc.dispose();
    } else await mlm.savePretrained(dir);
    if (dropout !== 0.1) {
      // the checkpoint is for fine-tuning, which wants BERT's dropout whatever pre-training ran with
      const cfg = path.join(dir, 'config.json');
      BertConfig.fromFile(cfg).with({ hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 }).save(cfg);
    }
    tok.savePretrained(dir);
  }
  log(`pre-training (${electra ? 'ELECTRA, generator hidden ' + G : bowWeight > 0 ? `masked LM + ${bowWeight} x [CLS] bag of words` : 'masked LM'}): ${result.steps} steps in ${result.seconds.toFixed(0)}s at peak lr ${lr.toExponential()}, loss ${result.losses[0]?.loss.toFixed(3)} -> ${result.losses.at(-1)?.loss.toFixed(3)}`);
  let unigramLoss: number | undefined;
  if (!electra && bowWeight === 0) {
    unigramLoss = maskedTargetEntropy(counts(), tokenWeights);
    const last = result.losses.at(-1)?.loss;
    // 0.5 nats: runs that left the plateau late still end well below it (5.9 against 6.9 on SST-2), stuck ones above
    if (last !== undefined && last > unigramLoss - 0.5) {
      log(`warning: pre-training ended on the masked-LM plateau (loss ${last.toFixed(2)}; guessing each masked word piece by its frequency alone costs ${unigramLoss.toFixed(2)}): the encoder has barely learned to read context, and a classifier fine-tuned from it may stay at the majority class. More steps, or a lower peak learning rate, let it leave the plateau.`);
    }
  }
  if (disc) mlm.dispose();
  tokenWeights?.dispose();
  return { tokenizer: tok, model: disc ?? mlm, result, dir, unigramLoss };
}

/** How often each token id occurs in the rows, special tokens left out (both functions below read it). */
function tokenCounts(rows: number[][], specialIds: number[], vocabSize: number): Float64Array {
  const counts = new Float64Array(vocabSize);
  for (const r of rows) for (const id of r) counts[id]++;
  for (const id of specialIds) counts[id] = 0;
  return counts;
}

/**
 * Selective masking's multipliers of the masking rate by token id: (1 - share) + share * importance / its mean
 * over the corpus's token occurrences (special tokens left out), so the corpus's mean rate is unchanged.
 */
function selectiveMaskWeights(importance: Tensor, counts: Float64Array, share: number, tok: BertTokenizer, log: (s: string) => void): Tensor {
  const V = tok.vocabSize;
  if (importance.ndim !== 1 || importance.size(0) !== V) throw new RangeError(`pretrain: selectiveMask.importance must give [${V}] scores (one per token id), got [${importance.shape.join(', ')}]`);
  const imp = tb.tidy(() => importance.float().dataSync() as Float32Array);
  if (imp.some((x) => !(x >= 0 && Number.isFinite(x)))) throw new RangeError('pretrain: selectiveMask.importance must give finite, non-negative scores');
  const [sum, n] = counts.reduce(([s, k], c, id) => [s + c * imp[id], k + c], [0, 0]);
  if (!(sum > 0)) throw new RangeError("pretrain: selectiveMask.importance scores every token of the corpus 0: nothing to guide the masking");
  const w = Float32Array.from(imp, (x) => 1 - share + (share * x * n) / sum);
  const top = [...w.keys()].filter((id) => counts[id] > 0).sort((a, b) => w[b] - w[a]).slice(0, 8);
  log(`selective masking: ${share} of the masks by task importance; most masked: ${top.map((id) => `${tok.idsToTokens[id]} x${w[id].toFixed(1)}`).join(', ')}`);
  return tb.tensor(w, { shape: [V] });
}

/** Entropy (nats) of the masked LM's targets: the corpus's word pieces, weighted by their masking rates. */
function maskedTargetEntropy(counts: Float64Array, tokenWeights?: Tensor): number {
  const w = tokenWeights?.dataSync() as Float32Array | undefined;
  const mass = counts.map((c, id) => c * (w ? w[id] : 1));
  const total = mass.reduce((a, b) => a + b, 0);
  return mass.reduce((h, m) => (m > 0 ? h - (m / total) * Math.log(m / total) : h), 0);
}

type ElectraInputs = { inputIds: Tensor; attentionMask?: Tensor; labels?: Tensor; originalIds: Tensor };

/**
 * ELECTRA's loss (Clark et al. 2020): the generator's masked-LM loss plus `weight` times the
 * discriminator's binary cross entropy, over every real token, of "was this token replaced?". The
 * masked positions are filled by sampling the generator's softmax (Gumbel-max, no gradient); a sample
 * equal to the original token counts as original.
 */
async function replacedTokenLoss(gen: BertPreTrainedModel, disc: BertPreTrainedModel, inputs: ElectraInputs, weight: number): Promise<Tensor> {
  const labels = inputs.labels!;
  const { loss: genLoss, logits } = await gen.mlmLossAndLogits({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, labels });
  const corrupted = tb.noGrad(() => {
    const u = tb.randLike(logits).clamp(1e-9, 1 - 1e-9);
    const sampled = logits.sub(u.log().neg().log()).argmax(-1); // argmax(logits + Gumbel noise)
    return inputs.originalIds.clone().indexPut_([labels.ne(-100)], sampled);
  });
  const replaced = corrupted.ne(inputs.originalIds).float();
  const out = await disc.forward({ inputIds: corrupted, attentionMask: inputs.attentionMask });
  const real = inputs.attentionMask ? inputs.attentionMask.bool() : tb.onesLike(replaced).bool();
  const discLoss = F.bceWithLogits(out.logits!.squeeze(-1).maskedSelect(real), replaced.maskedSelect(real));
  return genLoss.add(discLoss.mul(weight));
}
