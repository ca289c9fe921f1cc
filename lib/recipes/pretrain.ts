// Pre-training from scratch behind `torchbert pretrain` and the main job: learn a WordPiece vocabulary
// on the corpus, then train a small BertForMaskedLM with HF's masking (optionally whole-word masking);
// saves the tokenizer and the model in HF format.
import * as path from 'path';
import { BertTokenizer, WordPieceTrainer } from '../tokenizer';
import { fromConfig, BertPreTrainedModel } from '../models/bert';
import { Trainer, padCollate, maskTokens, EpochBatches, wholeWordMask } from '../train';
import type { TrainResult } from '../train';
import * as dist from '../distributed/process-group';

export interface PretrainOptions {
  /** lines of text */
  corpus: string[];
  out: string;
  vocabSize?: number;
  hidden?: number;
  layers?: number;
  steps?: number;
  seconds?: number;
  seqLen?: number;
  batchSize?: number;
  learningRate?: number;
  wholeWordMask?: boolean;
  log?: (s: string) => void;
}

export interface PretrainResult {
  tokenizer: BertTokenizer;
  model: BertPreTrainedModel;
  result: TrainResult;
  /** folder with config.json, model.safetensors and the tokenizer files */
  dir: string;
}

export async function pretrain(o: PretrainOptions): Promise<PretrainResult> {
  // every rank learns the same vocabulary (deterministic); rank 0 logs and writes what is saved
  const main = !dist.isInitialized() || dist.getRank() === 0;
  const log = main ? (o.log ?? ((s: string) => console.log(s))) : () => {};
  if (!o.corpus.length) throw new Error('pretrain: the corpus is empty');
  const seqLen = o.seqLen ?? 64;
  let t0 = Date.now();
  const tok = new WordPieceTrainer({ vocabSize: o.vocabSize ?? 8000 }).trainTokenizer(o.corpus);
  if (main) tok.savePretrained(path.join(o.out, 'tokenizer'));
  log(`vocabulary: ${tok.vocabSize} WordPiece tokens learned from ${o.corpus.length} lines in ${((Date.now() - t0) / 1000).toFixed(1)}s`);

  const H = o.hidden ?? 128;
  const config = { vocab_size: tok.vocabSize, hidden_size: H, num_hidden_layers: o.layers ?? 2, num_attention_heads: Math.max(1, H / 64), intermediate_size: 4 * H, max_position_embeddings: 128, pad_token_id: tok.padTokenId };
  const mlm = fromConfig('BertForMaskedLM', config);
  const ids = o.corpus.map((t) => tok.call(t, undefined, { truncation: true, maxLength: seqLen }).inputIds as number[]);
  const shard = dist.isInitialized() ? { rank: dist.getRank(), worldSize: dist.getWorldSize() } : {};
  const batches = new EpochBatches(ids.map((r) => r.length), o.batchSize ?? 64, { seed: 1, groupByLength: true, ...shard });
  const specialIds = [tok.clsTokenId, tok.sepTokenId, tok.padTokenId, tok.unkTokenId, tok.maskTokenId];
  t0 = Date.now();
  const trainer = new Trainer(mlm, {
    name: 'pretrain', learningRate: o.learningRate ?? 1e-3, weightDecay: 0.01, warmupRatio: 0.05, maxSteps: o.steps ?? 6000, timeBudgetSec: o.seconds ?? 480, loggingSteps: 100,
    logFile: path.join(o.out, 'metrics.jsonl'), plotFile: path.join(o.out, 'pretrain-curves.svg'), log,
  });
  const result = await trainer.train(
    (step) => padCollate(batches.at(step).map((i) => ({ inputIds: ids[i] })), tok.padTokenId),
    (b) => {
      // Whole words are chosen on the unpadded rows (one copy of the batch out of libtorch).
      const [rows, T] = b.inputIds.shape;
      const flat = b.inputIds.dataSync() as BigInt64Array;
      const unpadded = o.wholeWordMask ? Array.from({ length: rows }, (_, r) => Array.from(flat.subarray(r * T, (r + 1) * T), Number).filter((id) => id !== tok.padTokenId)) : null;
      const sel = unpadded ? wholeWordMask(unpadded, T, tok.idsToTokens, specialIds) : undefined;
      const m = maskTokens(b.inputIds, { maskTokenId: tok.maskTokenId, vocabSize: tok.vocabSize, specialIds, padId: tok.padTokenId }, sel);
      return { inputIds: m.inputIds, attentionMask: b.attentionMask, labels: m.labels };
    },
    undefined,
    (inputs) => mlm.mlmLoss({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, labels: inputs.labels! }),
  );
  const dir = path.join(o.out, 'pretrained');
  if (main) {
    await mlm.savePretrained(dir);
    tok.savePretrained(dir);
  }
  log(`pre-training: ${result.steps} steps in ${result.seconds.toFixed(0)}s, MLM loss ${result.losses[0]?.loss.toFixed(3)} -> ${result.losses.at(-1)?.loss.toFixed(3)}`);
  return { tokenizer: tok, model: mlm, result, dir };
}
